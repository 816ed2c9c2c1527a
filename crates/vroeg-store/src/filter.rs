//! Which keys a sled tree may hold: a filter that answers "absent" without
//! asking sled. The store uses one per tree, for its households, case
//! counters and cases; the read model one for its case records.
//!
//! Most signals are the first of their household, and most alerts open a
//! case: the engine asks for a household, its case counter and a case
//! record that do not exist yet. sled answers that a key is absent only
//! after it has paged in the leaf where the key would be, and with a
//! million households that leaf is rarely in its cache (BENCHMARKS.md).
//! RocksDB, under Kafka Streams, answers the same question from a Bloom
//! filter; this is the same idea, exact for writes and in memory.
//!
//! The filter holds a 64-bit hash of every key under its prefixes that the
//! tree may hold. It is built from the tree the first time it is
//! asked, and every write of such a key adds its hash before the write
//! reaches sled, under the same lock the build holds: a key is either in
//! the tree when the build scans it, or in the filter already. A removed
//! key keeps its hash, and two keys may share one: both only cost a read
//! of sled, never a wrong answer. A hash that is absent means the key is.

use std::hash::BuildHasher;
use std::sync::Mutex;

use rustc_hash::{FxBuildHasher, FxHashSet};

fn hash(key: &[u8]) -> u64 {
    FxBuildHasher.hash_one(key)
}

pub struct KeyFilter {
    /// The first bytes of the keys it tracks.
    prefixes: &'static [u8],
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Whether `hashes` covers the tree (it is built on first use).
    built: bool,
    hashes: FxHashSet<u64>,
}

impl KeyFilter {
    /// A filter of the keys that start with one of `prefixes`, built from
    /// the tree when it is first asked.
    pub fn new(prefixes: &'static [u8]) -> KeyFilter {
        KeyFilter {
            prefixes,
            inner: Mutex::default(),
        }
    }

    fn filtered(&self, key: &[u8]) -> bool {
        key.first().is_some_and(|p| self.prefixes.contains(p))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere cannot leave a hash half-inserted.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Note keys about to be written to the tree. Call before the write.
    pub fn note<'a>(&self, keys: impl IntoIterator<Item = &'a [u8]>) {
        let mut inner = self.lock();
        for key in keys {
            if self.filtered(key) {
                inner.hashes.insert(hash(key));
            }
        }
    }

    /// Whether `tree` may hold `key`. `false` means it does not.
    pub fn may_hold(&self, tree: &sled::Tree, key: &[u8]) -> Result<bool, sled::Error> {
        if !self.filtered(key) {
            return Ok(true);
        }
        let mut inner = self.lock();
        if !inner.built {
            for prefix in self.prefixes {
                for k in tree.scan_prefix([*prefix]).keys() {
                    inner.hashes.insert(hash(&k?));
                }
            }
            inner.built = true;
        }
        Ok(inner.hashes.contains(&hash(key)))
    }

    /// Empty `tree` and the filter with it.
    pub fn clear(&self, tree: &sled::Tree) -> Result<(), sled::Error> {
        let mut inner = self.lock();
        tree.clear()?;
        inner.hashes = FxHashSet::default();
        inner.built = true;
        Ok(())
    }
}
