//! What the engine needs of a store, as a trait, and the two stores that
//! implement it: sled ([`Store`], for `vroeg run` and `vroeg replay`) and
//! memory ([`MemoryStore`], for the rule tests and `vroeg rules diff`).
//!
//! Both apply a [`Commit`] the same way: households with their timers,
//! positions, metadata, case records, retired households and the
//! event-time merge queue. The engine cannot tell them apart; only what
//! survives the process differs.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use vroeg_core::archive::CaseRecord;
use vroeg_core::state::HouseholdState;
use vroeg_core::time::Millis;
use vroeg_core::HouseholdKey;

use crate::{Commit, Message, QueuedRecord, Store, StoreError};

/// The reads and the one write the engine makes. Reads see every earlier
/// [`StateStore::write`]; a write is all or nothing.
pub trait StateStore {
    fn household(&self, key: &HouseholdKey) -> Result<Option<HouseholdState>, StoreError>;
    /// The case counter of a household the retention purge deleted.
    fn retired(&self, key: &HouseholdKey) -> Result<Option<u32>, StoreError>;
    fn case(&self, id: &str) -> Result<Option<CaseRecord>, StoreError>;
    /// The next offset to read for a stream partition.
    fn position(&self, stream: &str, partition: i32) -> Result<Option<i64>, StoreError>;
    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Metadata whose names start with `prefix`: (name, value), by name.
    fn meta_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    /// The first timer strictly after `after` in (due, household) order;
    /// the first of all without `after`.
    fn timer_after(
        &self,
        after: Option<&(Millis, HouseholdKey)>,
    ) -> Result<Option<(Millis, HouseholdKey)>, StoreError>;
    /// The records in the event-time merge queue before `before`, in
    /// queue order.
    fn queued_before(&self, before: Millis) -> Result<Vec<QueuedRecord>, StoreError>;
    /// Apply one batch atomically, its outbox included.
    fn write(&mut self, commit: Commit) -> Result<(), StoreError>;
}

impl StateStore for Store {
    fn household(&self, key: &HouseholdKey) -> Result<Option<HouseholdState>, StoreError> {
        Store::household(self, key)
    }

    fn retired(&self, key: &HouseholdKey) -> Result<Option<u32>, StoreError> {
        Store::retired(self, key)
    }

    fn case(&self, id: &str) -> Result<Option<CaseRecord>, StoreError> {
        Store::case(self, id)
    }

    fn position(&self, stream: &str, partition: i32) -> Result<Option<i64>, StoreError> {
        Store::position(self, stream, partition)
    }

    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Store::meta(self, name)
    }

    fn meta_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Store::meta_with_prefix(self, prefix)
    }

    fn timer_after(
        &self,
        after: Option<&(Millis, HouseholdKey)>,
    ) -> Result<Option<(Millis, HouseholdKey)>, StoreError> {
        let raw = after.map(|(due, key)| crate::timer_key(*due, key));
        Ok(Store::timer_after(self, raw.as_deref())?.map(|(due, key, _)| (due, key)))
    }

    fn queued_before(&self, before: Millis) -> Result<Vec<QueuedRecord>, StoreError> {
        Store::queued_before(self, before)
    }

    fn write(&mut self, commit: Commit) -> Result<(), StoreError> {
        Store::commit(self, &commit)
    }
}

/// A store in memory: maps, households in postcard, nothing on disk. The
/// outbox collects every entry written, in order, until
/// [`MemoryStore::take_outbox`].
#[derive(Debug, Default)]
pub struct MemoryStore {
    /// Postcard, as sled holds them (without its version byte): a
    /// household's state is a fraction of its size in memory, and a
    /// million of them are what a what-if holds.
    households: HashMap<HouseholdKey, Vec<u8>>,
    timers: BTreeSet<(Millis, HouseholdKey)>,
    retired: HashMap<HouseholdKey, u32>,
    cases: HashMap<String, CaseRecord>,
    positions: HashMap<(String, i32), i64>,
    meta: BTreeMap<String, Vec<u8>>,
    queue: BTreeMap<Vec<u8>, Vec<u8>>,
    outbox: Vec<Message>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// The outbox entries written since the last call, oldest first.
    pub fn take_outbox(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.outbox)
    }

    /// Every household, in no particular order.
    pub fn households(
        &self,
    ) -> impl Iterator<Item = Result<(&HouseholdKey, HouseholdState), StoreError>> {
        self.households
            .iter()
            .map(|(k, bytes)| Ok((k, decode_compact(bytes)?)))
    }

    /// Every case record, in no particular order.
    pub fn cases(&self) -> impl Iterator<Item = &CaseRecord> {
        self.cases.values()
    }
}

impl StateStore for MemoryStore {
    fn household(&self, key: &HouseholdKey) -> Result<Option<HouseholdState>, StoreError> {
        self.households
            .get(key)
            .map(|bytes| decode_compact(bytes))
            .transpose()
    }

    fn retired(&self, key: &HouseholdKey) -> Result<Option<u32>, StoreError> {
        Ok(self.retired.get(key).copied())
    }

    fn case(&self, id: &str) -> Result<Option<CaseRecord>, StoreError> {
        Ok(self.cases.get(id).cloned())
    }

    fn position(&self, stream: &str, partition: i32) -> Result<Option<i64>, StoreError> {
        Ok(self.positions.get(&(stream.to_owned(), partition)).copied())
    }

    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.meta.get(name).cloned())
    }

    fn meta_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Ok(self
            .meta
            .range(prefix.to_owned()..)
            .take_while(|(name, _)| name.starts_with(prefix))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect())
    }

    fn timer_after(
        &self,
        after: Option<&(Millis, HouseholdKey)>,
    ) -> Result<Option<(Millis, HouseholdKey)>, StoreError> {
        use std::ops::Bound::{Excluded, Unbounded};
        let next = match after {
            Some(a) => self.timers.range((Excluded(a), Unbounded)).next(),
            None => self.timers.first(),
        };
        Ok(next.cloned())
    }

    fn queued_before(&self, before: Millis) -> Result<Vec<QueuedRecord>, StoreError> {
        let end = crate::queue_key(before, "", i32::MIN, i64::MIN);
        Ok(self
            .queue
            .range(..end)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn write(&mut self, commit: Commit) -> Result<(), StoreError> {
        // Everything that can fail (encoding) happens first; after it,
        // every change is a map update, so a write is all or nothing.
        let mut encoded = Vec::with_capacity(commit.households.len());
        for w in &commit.households {
            let bytes = match &w.state {
                None => None,
                Some(state) => {
                    Some(
                        postcard::to_allocvec(state).map_err(|e| StoreError::Encode {
                            what: "household state",
                            detail: e.to_string(),
                        })?,
                    )
                }
            };
            encoded.push(bytes);
        }
        let Commit {
            households,
            positions,
            mut outbox,
            meta,
            cases,
            purged_cases,
            retired,
            queued,
        } = commit;
        for (w, bytes) in households.into_iter().zip(encoded) {
            let new_timer = w.state.as_ref().and_then(|s| s.timer_due);
            if new_timer != w.old_timer {
                if let Some(old) = w.old_timer {
                    self.timers.remove(&(old, w.key.clone()));
                }
                if let Some(due) = new_timer {
                    self.timers.insert((due, w.key.clone()));
                }
            }
            match bytes {
                None => {
                    self.households.remove(&w.key);
                }
                Some(bytes) => {
                    self.households.insert(w.key, bytes);
                }
            }
        }
        for (stream, partition, offset) in positions {
            self.positions.insert((stream, partition), offset);
        }
        self.meta.extend(meta);
        for case in cases {
            self.cases.insert(case.id.clone(), case);
        }
        for (id, _team) in purged_cases {
            self.cases.remove(&id);
        }
        self.retired.extend(retired);
        for (key, value) in queued {
            match value {
                Some(v) => self.queue.insert(key, v),
                None => self.queue.remove(&key),
            };
        }
        self.outbox.append(&mut outbox);
        Ok(())
    }
}

fn decode_compact(bytes: &[u8]) -> Result<HouseholdState, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt {
        what: "household state",
        detail: e.to_string(),
    })
}
