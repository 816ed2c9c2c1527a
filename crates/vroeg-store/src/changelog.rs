//! The changelog: the store's primary keys and values as Kafka records.
//!
//! In the partitioned service every household partition has a partition of
//! a compacted changelog topic, and its sled tree is a cache of that
//! partition. A batch's [`Commit`] becomes changelog records
//! ([`Commit::changelog`]): every primary key it writes (households, case
//! records, positions, metadata, case counters of purged households) with
//! the value exactly as sled stores it, and a deletion as a tombstone. The
//! outbox is not part of it (its entries go to the output topics in the same
//! transaction), and neither is the derived index (the time index of
//! timers): [`Store::restore`] rebuilds it from the values, so a restored
//! cache equals the one the live service wrote.
//!
//! A changelog record that does not decode is an error, never skipped: the
//! caller refuses the partition.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::BuildHasher;

use vroeg_core::archive::CaseStatus;
use vroeg_core::HouseholdKey;

use crate::{
    case_key, decode_json, decode_state, encode_json, encode_state, household_key, meta_key,
    position_key, queue_time, retired_key, sled_err, timer_key, versioned, Commit, Store,
    StoreError, FORMAT_VERSION, P_CASE, P_HOUSEHOLD, P_META, P_POSITION, P_QUEUE, P_RETIRED,
};

/// The metadata key holding the changelog offset a partition cache reflects
/// (the next offset to read).
pub const CHANGELOG_OFFSET: &str = "changelog.offset";

/// One changelog record: a primary key of the store and its value, `None`
/// for a deletion (a tombstone on a compacted topic).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangelogRecord {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

impl Commit {
    /// The changelog records of this commit, in the order sled would apply
    /// them. Values are encoded as the store encodes them.
    pub fn changelog(&self) -> Result<Vec<ChangelogRecord>, StoreError> {
        let mut out = Vec::with_capacity(
            self.households.len()
                + self.cases.len()
                + self.positions.len()
                + self.meta.len()
                + self.purged_cases.len()
                + self.retired.len(),
        );
        for w in &self.households {
            out.push(ChangelogRecord {
                key: household_key(&w.key),
                value: w.state.as_deref().map(encode_state).transpose()?,
            });
        }
        for (stream, partition, offset) in &self.positions {
            out.push(ChangelogRecord {
                key: position_key(stream, *partition),
                value: Some(offset.to_be_bytes().to_vec()),
            });
        }
        for (name, value) in &self.meta {
            out.push(ChangelogRecord {
                key: meta_key(name),
                value: Some(value.clone()),
            });
        }
        for case in &self.cases {
            out.push(ChangelogRecord {
                key: case_key(&case.id),
                value: Some(encode_json("case", case)?),
            });
        }
        for id in &self.purged_cases {
            out.push(ChangelogRecord {
                key: case_key(id),
                value: None,
            });
        }
        for (key, episodes) in &self.retired {
            out.push(ChangelogRecord {
                key: retired_key(key),
                value: Some(episodes.to_be_bytes().to_vec()),
            });
        }
        for (key, value) in &self.queued {
            out.push(ChangelogRecord {
                key: key.clone(),
                value: value.as_ref().map(|v| {
                    let mut stored = Vec::with_capacity(1 + v.len());
                    stored.push(FORMAT_VERSION);
                    stored.extend_from_slice(v);
                    stored
                }),
            });
        }
        Ok(out)
    }
}

/// Where a changelog record failed.
fn bad(offset: i64, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what: "changelog record",
        detail: format!("at offset {offset}: {detail}"),
    }
}

/// What a restore checks of a case record: that it is one. Decoding only
/// this reads the whole record as JSON, and is several times faster than
/// decoding it whole, which a restore of a million cases feels.
#[derive(serde::Deserialize)]
#[allow(dead_code)] // read to check the record, not used
struct CaseCheck {
    id: String,
    wijkteam: String,
    status: CaseStatus,
}

/// Whether the derived index follows the values under `key`'s prefix, so a
/// restore needs the value a record replaces: households (their timers).
fn indexed(key: &[u8]) -> bool {
    key.first() == Some(&P_HOUSEHOLD)
}

fn household_of(offset: i64, key: &[u8]) -> Result<HouseholdKey, StoreError> {
    std::str::from_utf8(&key[1..])
        .map(|k| HouseholdKey(k.into()))
        .map_err(|_| bad(offset, "household key is not UTF-8"))
}

impl Store {
    /// The changelog offset this cache reflects (the next one to read), or
    /// `None` for a cache that has never been written, or whose last write
    /// ([`Store::commit_cached`] with `None`) waits for its transaction.
    pub fn changelog_offset(&self) -> Result<Option<i64>, StoreError> {
        match self.meta(CHANGELOG_OFFSET)? {
            None => Ok(None),
            Some(v) => {
                let b: [u8; 8] = v.as_slice().try_into().map_err(|_| StoreError::Corrupt {
                    what: "changelog offset",
                    detail: format!("{} bytes, expected 8", v.len()),
                })?;
                Ok(Some(i64::from_be_bytes(b)))
            }
        }
    }

    /// Record that this cache reflects the changelog up to `next`: the
    /// transaction of its last write ([`Store::commit_cached`] with `None`)
    /// committed.
    pub fn set_changelog_offset(&self, next: i64) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        batch.insert(meta_key(CHANGELOG_OFFSET), next.to_be_bytes().to_vec());
        self.apply(batch)
    }

    /// Apply changelog records (each with its offset, in offset order) and
    /// record `next` as the changelog offset this cache now reflects, in one
    /// atomic sled batch. The time index follows the values. Every value is
    /// decoded first: a record that does not decode fails the whole call and
    /// changes nothing.
    ///
    /// This is the path for a cache that reflects an offset already (the
    /// tail written since it was last written); a cache that reflects none
    /// is rebuilt faster by [`Store::bulk_restore`].
    pub fn restore(&self, records: &[(i64, ChangelogRecord)], next: i64) -> Result<(), StoreError> {
        let added = records.iter().filter(|(_, r)| r.value.is_some());
        self.filter.note(added.map(|(_, r)| r.key.as_slice()));
        let mut batch = sled::Batch::default();
        // The latest value of each key written by this call, so that a key
        // written twice updates the indexes from its own previous value.
        let mut written: HashMap<&[u8], Option<&[u8]>> = HashMap::new();
        for (offset, record) in records {
            let key = record.key.as_slice();
            let value = record.value.as_deref();
            let old: Option<Vec<u8>> = if !indexed(key) {
                None
            } else if let Some(v) = written.get(key) {
                v.map(<[u8]>::to_vec)
            } else {
                self.tree
                    .get(key)
                    .map_err(sled_err("read a cached value"))?
                    .map(|v| v.to_vec())
            };
            check_record(*offset, key, old.as_deref(), value, &mut |k, v| match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            })?;
            match value {
                Some(v) => batch.insert(key, v),
                None => batch.remove(key),
            }
            written.insert(key, value);
        }
        batch.insert(meta_key(CHANGELOG_OFFSET), next.to_be_bytes().to_vec());
        self.apply(batch)
    }

    /// Start rebuilding this cache from the beginning of its changelog.
    /// Whatever the cache holds is removed first: a cache that reflects no
    /// changelog offset holds at most the remains of a restore that did not
    /// finish. See [`BulkRestore`].
    pub fn bulk_restore(&self, run_bytes: usize) -> Result<BulkRestore, StoreError> {
        self.filter
            .clear(&self.tree)
            .map_err(sled_err("clear a partition cache"))?;
        self.tree
            .insert(meta_key("format"), vec![FORMAT_VERSION])
            .map_err(sled_err("write the format version"))?;
        Ok(BulkRestore {
            store: self.clone(),
            written: HashSet::new(),
            hasher: std::hash::RandomState::new(),
            run: BTreeMap::new(),
            run_bytes: 0,
            limit: run_bytes.max(1),
        })
    }
}

/// A cache being rebuilt from the beginning of its changelog
/// ([`Store::bulk_restore`]): Kafka Streams' bulk loading of a state store,
/// for sled.
///
/// sled's cost per key is several times lower for keys written in order
/// than for keys in the changelog's (random) order, and most of the time
/// of a restore is spent there. So records are gathered in runs of about
/// `run_bytes`, the latest value of each key wins within a run, and a run
/// is written in key order, derived index entries included. The cache's
/// changelog offset is written last, after a flush: a restore that stops
/// half-way leaves a cache that reflects no offset, which the next restore
/// clears and rebuilds. Every record is decoded, the superseded ones
/// included: a record that does not decode fails the restore.
pub struct BulkRestore {
    store: Store,
    /// Hashes of the household keys earlier runs wrote: a key not among
    /// them has no old value to look up (the cache was cleared first).
    written: HashSet<u64>,
    hasher: std::hash::RandomState,
    /// The current run: per key, the offset and value of its latest record.
    run: BTreeMap<sled::IVec, (i64, Option<sled::IVec>)>,
    run_bytes: usize,
    limit: usize,
}

impl BulkRestore {
    /// Add the record at `offset` (records come in offset order): `key`
    /// and `value` (`None` for a tombstone), copied once, into sled's own
    /// buffers. A full run is written out.
    pub fn push(
        &mut self,
        offset: i64,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        self.run_bytes += key.len() + value.map_or(0, <[u8]>::len);
        let value = value.map(sled::IVec::from);
        match self.run.entry(sled::IVec::from(key)) {
            Entry::Vacant(entry) => {
                entry.insert((offset, value));
            }
            Entry::Occupied(mut entry) => {
                let (old_offset, old_value) = entry.insert((offset, value));
                // Superseded within the run: decoded all the same.
                check_record(
                    old_offset,
                    entry.key(),
                    None,
                    old_value.as_deref(),
                    &mut |_, _| {},
                )?;
            }
        }
        if self.run_bytes >= self.limit {
            self.write_run()?;
        }
        Ok(())
    }

    /// Write the last run, flush, and record `next` as the changelog offset
    /// the cache reflects.
    pub fn finish(mut self, next: i64) -> Result<(), StoreError> {
        self.write_run()?;
        self.store
            .db
            .flush()
            .map_err(sled_err("flush a restored cache"))?;
        self.store
            .tree
            .insert(meta_key(CHANGELOG_OFFSET), next.to_be_bytes().to_vec())
            .map_err(sled_err("write the changelog offset"))?;
        Ok(())
    }

    fn write_run(&mut self) -> Result<(), StoreError> {
        let run = std::mem::take(&mut self.run);
        self.run_bytes = 0;
        let tree = &self.store.tree;
        // Decode everything before writing anything of this run.
        let mut writes: BTreeMap<sled::IVec, Option<sled::IVec>> = BTreeMap::new();
        for (key, (offset, value)) in &run {
            // Present already if an earlier run wrote it.
            let old = if !indexed(key) || self.written.insert(self.hasher.hash_one(key)) {
                None
            } else {
                tree.get(key).map_err(sled_err("read a cached value"))?
            };
            check_record(
                *offset,
                key,
                old.as_deref(),
                value.as_deref(),
                &mut |k, v| {
                    writes.insert(k.into(), v.map(sled::IVec::from));
                },
            )?;
        }
        // Index keys and primary keys have different prefixes.
        for (key, (_, value)) in run {
            writes.insert(key, value);
        }
        let added = writes.iter().filter(|(_, v)| v.is_some());
        self.store.filter.note(added.map(|(k, _)| k.as_ref()));
        for (key, value) in writes {
            match value {
                Some(v) => tree.insert(key, v).map(drop),
                None => tree.remove(key).map(drop),
            }
            .map_err(sled_err("write a restored value"))?;
        }
        Ok(())
    }
}

/// Receives the changes of the derived indexes: a key, and its value or
/// `None` to remove it.
type IndexChange<'a> = dyn FnMut(Vec<u8>, Option<&[u8]>) + 'a;

/// Check one changelog record, the value it replaces (`old`) and the value
/// it writes (`value`, `None` for a tombstone), and pass the changes of the
/// derived indexes to `index` (a key and its value, `None` to remove it), in
/// the order they apply.
fn check_record(
    offset: i64,
    key: &[u8],
    old: Option<&[u8]>,
    value: Option<&[u8]>,
    index: &mut IndexChange<'_>,
) -> Result<(), StoreError> {
    match key.first() {
        Some(&P_HOUSEHOLD) => {
            let household = household_of(offset, key)?;
            let timer = |bytes: Option<&[u8]>| -> Result<_, StoreError> {
                Ok(match bytes {
                    None => None,
                    Some(b) => decode_state(b).map_err(|e| bad(offset, e))?.timer_due,
                })
            };
            let (before, after) = (timer(old)?, timer(value)?);
            if before != after {
                if let Some(due) = before {
                    index(timer_key(due, &household), None);
                }
                if let Some(due) = after {
                    index(timer_key(due, &household), Some(&[]));
                }
            }
        }
        Some(&P_CASE) => {
            if let Some(v) = value {
                decode_json::<CaseCheck>("case", v).map_err(|e| bad(offset, e))?;
            }
        }
        Some(&P_POSITION) => {
            if value.is_some_and(|v| v.len() != 8) {
                return Err(bad(offset, "a position is not 8 bytes"));
            }
        }
        Some(&P_RETIRED) => {
            household_of(offset, key)?;
            if value.is_some_and(|v| v.len() != 4) {
                return Err(bad(offset, "a case counter is not 4 bytes"));
            }
        }
        Some(&P_META) => {}
        Some(&P_QUEUE) => {
            if queue_time(key).is_none() {
                return Err(bad(offset, "a queue key is too short"));
            }
            if let Some(v) = value {
                versioned("queued record", v).map_err(|e| bad(offset, e))?;
            }
        }
        Some(other) => {
            return Err(bad(
                offset,
                format!("unknown key prefix {:?}", char::from(*other)),
            ))
        }
        None => return Err(bad(offset, "empty key")),
    }
    Ok(())
}
