//! Which keys a tree may hold: a filter that answers "absent" without
//! asking sled.
//!
//! Most signals are the first of their household, and most alerts open a
//! case: the engine asks for a household, its case counter and a case
//! record that do not exist yet. sled answers that a key is absent only
//! after it has paged in the leaf where the key would be, and with a
//! million households that leaf is rarely in its cache (BENCHMARKS.md).
//! RocksDB, under Kafka Streams, answers the same question from a Bloom
//! filter; this is the same idea, exact for writes and in memory.
//!
//! The filter holds a 64-bit hash of every household, case counter and case
//! key the tree may hold. It is built from the tree the first time it is
//! asked, and every write of such a key adds its hash before the write
//! reaches sled, under the same lock the build holds: a key is either in
//! the tree when the build scans it, or in the filter already. A removed
//! key keeps its hash, and two keys may share one: both only cost a read
//! of sled, never a wrong answer. A hash that is absent means the key is.

use std::hash::BuildHasher;
use std::sync::Mutex;

use rustc_hash::{FxBuildHasher, FxHashSet};

use crate::{sled_err, StoreError, P_CASE, P_HOUSEHOLD, P_RETIRED};

/// The prefixes whose keys the filter tracks: the ones the engine reads by
/// key and usually does not find.
const FILTERED: [u8; 3] = [P_HOUSEHOLD, P_RETIRED, P_CASE];

fn filtered(key: &[u8]) -> bool {
    key.first().is_some_and(|p| FILTERED.contains(p))
}

fn hash(key: &[u8]) -> u64 {
    FxBuildHasher.hash_one(key)
}

#[derive(Default)]
pub(crate) struct KeyFilter {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Whether `hashes` covers the tree (it is built on first use).
    built: bool,
    hashes: FxHashSet<u64>,
}

impl KeyFilter {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere cannot leave a hash half-inserted.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Note keys about to be written to the tree. Call before the write.
    pub(crate) fn note<'a>(&self, keys: impl IntoIterator<Item = &'a [u8]>) {
        let mut inner = self.lock();
        for key in keys {
            if filtered(key) {
                inner.hashes.insert(hash(key));
            }
        }
    }

    /// Whether `tree` may hold `key`. `false` means it does not.
    pub(crate) fn may_hold(&self, tree: &sled::Tree, key: &[u8]) -> Result<bool, StoreError> {
        if !filtered(key) {
            return Ok(true);
        }
        let mut inner = self.lock();
        if !inner.built {
            for prefix in FILTERED {
                for k in tree.scan_prefix([prefix]).keys() {
                    let k = k.map_err(sled_err("build the key filter"))?;
                    inner.hashes.insert(hash(&k));
                }
            }
            inner.built = true;
        }
        Ok(inner.hashes.contains(&hash(key)))
    }

    /// Empty `tree` and the filter with it.
    pub(crate) fn clear(&self, tree: &sled::Tree) -> Result<(), StoreError> {
        let mut inner = self.lock();
        tree.clear().map_err(sled_err("clear a partition cache"))?;
        inner.hashes = FxHashSet::default();
        inner.built = true;
        Ok(())
    }
}
