//! What the engine needs of a store, as a trait, and the two stores that
//! implement it: sled ([`Store`], for `vroeg run` and `vroeg replay`) and
//! memory ([`MemoryStore`], for the rule tests and `vroeg rules diff`).
//!
//! Both apply a [`Commit`] the same way: households with their timers,
//! positions, metadata, case records, retired households and the
//! event-time merge queue. The engine cannot tell them apart; only what
//! survives the process differs.

use std::cell::RefCell;

use rustc_hash::FxHashMap;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use vroeg_core::archive::CaseRecord;
use vroeg_core::state::HouseholdState;
use vroeg_core::time::Millis;
use vroeg_core::HouseholdKey;

use crate::{Commit, Message, QueuedRecord, Store, StoreError};

/// A household lent for a batch, with its key.
pub type Lent = (HouseholdKey, Box<HouseholdState>);

/// The reads and the one write the engine makes. Reads see every earlier
/// [`StateStore::write`]; a write is all or nothing.
pub trait StateStore {
    /// Whether [`StateStore::lend_household`] moves a household out of the
    /// store instead of reading a copy. The engine then writes every
    /// household it was lent back with the batch, changed or not, and a
    /// batch that fails leaves the store short of them: the engine refuses
    /// every later batch.
    const LENDS: bool = false;

    fn household(&self, key: &HouseholdKey) -> Result<Option<HouseholdState>, StoreError>;

    /// A household for the batch being prepared: a copy read from the
    /// store ([`StateStore::household`]), or with [`StateStore::LENDS`] the
    /// household itself, moved out until the batch's write puts it back.
    /// With its key, which a lending store hands over too (no copy).
    fn lend_household(&self, key: &HouseholdKey) -> Result<Option<Lent>, StoreError> {
        Ok(self.household(key)?.map(|s| (key.clone(), Box::new(s))))
    }
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

/// A timer in the memory store's time index, in (due, household) order.
/// The household key's first eight bytes stand beside it, in the same
/// order as the key itself, so that most comparisons of timers due at the
/// same moment (aging out happens at midnight) do not read the key's text.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    due: Millis,
    prefix: u64,
    key: HouseholdKey,
}

impl Timer {
    fn new(due: Millis, key: HouseholdKey) -> Timer {
        let mut first = [0u8; 8];
        let bytes = key.as_str().as_bytes();
        let n = bytes.len().min(8);
        first[..n].copy_from_slice(&bytes[..n]);
        Timer {
            due,
            prefix: u64::from_be_bytes(first),
            key,
        }
    }
}

/// A store in memory: maps, nothing on disk. The outbox collects every
/// entry written, in order, until [`MemoryStore::take_outbox`].
///
/// It lends its households to the engine ([`StateStore::LENDS`]): a batch
/// moves each household it touches out and writes it back, so a step
/// costs no copy and no encoding of the household.
#[derive(Debug, Default)]
pub struct MemoryStore {
    /// Boxed, so that the map's free slots stay small. FxHash: the keys
    /// are HMAC digests (or a rule test's names), not chosen by an attacker.
    households: RefCell<FxHashMap<HouseholdKey, Box<HouseholdState>>>,
    timers: BTreeSet<Timer>,
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
    ) -> impl Iterator<Item = Result<(HouseholdKey, HouseholdState), StoreError>> {
        let copies: Vec<_> = self
            .households
            .borrow()
            .iter()
            .map(|(k, state)| Ok((k.clone(), (**state).clone())))
            .collect();
        copies.into_iter()
    }

    /// Every case record, in no particular order.
    pub fn cases(&self) -> impl Iterator<Item = &CaseRecord> {
        self.cases.values()
    }
}

impl StateStore for MemoryStore {
    const LENDS: bool = true;

    fn household(&self, key: &HouseholdKey) -> Result<Option<HouseholdState>, StoreError> {
        Ok(self
            .households
            .borrow()
            .get(key)
            .map(|state| (**state).clone()))
    }

    fn lend_household(&self, key: &HouseholdKey) -> Result<Option<Lent>, StoreError> {
        Ok(self.households.borrow_mut().remove_entry(key))
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
            Some((due, key)) => {
                let after = Timer::new(*due, key.clone());
                self.timers.range((Excluded(after), Unbounded)).next()
            }
            None => self.timers.first(),
        };
        Ok(next.map(|t| (t.due, t.key.clone())))
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
        // Every change is a map update: a write is all or nothing.
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
        let mut map = self.households.borrow_mut();
        for w in households {
            let new_timer = w.state.as_ref().and_then(|s| s.timer_due);
            if new_timer != w.old_timer {
                if let Some(old) = w.old_timer {
                    self.timers.remove(&Timer::new(old, w.key.clone()));
                }
                if let Some(due) = new_timer {
                    self.timers.insert(Timer::new(due, w.key.clone()));
                }
            }
            match w.state {
                None => {
                    map.remove(&w.key);
                }
                Some(state) => {
                    map.insert(w.key, state);
                }
            }
        }
        drop(map);
        for (stream, partition, offset) in positions {
            self.positions.insert((stream, partition), offset);
        }
        self.meta.extend(meta);
        for case in cases {
            self.cases.insert(case.id.clone(), case);
        }
        for id in purged_cases {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The prefix orders timers as their keys do, shorter keys and keys
    /// that differ after eight bytes included.
    #[test]
    fn timers_sort_as_due_then_household_key() {
        let keys = [
            "",
            "a",
            "ab",
            "ab\u{1}",
            "abcdefgh",
            "abcdefgh0",
            "abcdefgi",
            "b",
            "h1",
            "h10",
            "h2",
            "ff00",
            "0f",
            "gezin-a",
            "gezin-b",
        ];
        let mut pairs = Vec::new();
        for due in [5, 3] {
            for k in keys {
                pairs.push((due as Millis, HouseholdKey(k.into())));
            }
        }
        let mut by_pair = pairs.clone();
        by_pair.sort();
        let mut by_timer: Vec<Timer> = pairs.into_iter().map(|(d, k)| Timer::new(d, k)).collect();
        by_timer.sort();
        let by_timer: Vec<(Millis, HouseholdKey)> =
            by_timer.into_iter().map(|t| (t.due, t.key)).collect();
        assert_eq!(by_timer, by_pair);
    }
}
