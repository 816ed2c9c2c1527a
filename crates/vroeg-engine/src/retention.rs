//! The retention purge: what Vroeg no longer needs, it deletes.
//!
//! - A closed case's record, with the signals and client details it holds,
//!   is deleted [`Retention::closed_case_months`] (default 12) calendar
//!   months after the day it closed.
//! - Signals older than the rule set's lookback window are dropped from
//!   households without an open case. (Households with an open case are
//!   left to their own timers, which age signals out and may close the
//!   case; the case record keeps what the case was built on.)
//! - A household that then holds nothing, and has no case record left, is
//!   deleted. Only its case counter stays behind (see `vroeg_store`), so
//!   that a household returning later never gets a case id, or alert ids,
//!   that were used before.
//!
//! - Objections reach back: a household on the objection list loses its
//!   signals, contact details and closed case records, and is deleted; a
//!   person on it loses their signals in every household. (An open case is
//!   left for its wijkteam to close; the purge after that takes it.)
//!
//! The purge runs in the engine, the store's only writer, between batches,
//! and commits in chunks. It is idempotent: a purge cut short by a crash is
//! finished by the next one. "Now" follows the engine's clock mode, like
//! timers do. It never touches input positions, and the outbox only to
//! publish the deletion of a purged case record (`publish_cases`).

use std::collections::HashSet;

use vroeg_core::archive::CaseStatus;
use vroeg_core::time::Millis;
use vroeg_core::HouseholdKey;
use vroeg_store::{Commit, HouseholdWrite};

use crate::engine::{Engine, EngineError};

/// How long data is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Calendar months after closing that a closed case, its signals and
    /// its client details are deleted (default 12).
    pub closed_case_months: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            closed_case_months: 12,
        }
    }
}

/// What one purge deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PurgeStats {
    /// Closed case records.
    pub cases: u64,
    /// Whole households.
    pub households: u64,
    /// Signals: those in purged case records, and those aged out of the
    /// lookback window in households without a case.
    pub signals: u64,
}

/// Writes per commit: bounds the size of one sled batch. (The consumer
/// waits for the whole purge: it runs on the consumer's thread.)
const CHUNK: usize = 1000;

impl Engine {
    /// Delete what has outlived its retention at `wall_now` (or at the
    /// event-time watermark in event-time mode). Call it between batches.
    pub fn purge(
        &mut self,
        wall_now: Millis,
        retention: &Retention,
    ) -> Result<PurgeStats, EngineError> {
        let store = self.store().clone();
        self.purge_with(
            wall_now,
            retention,
            &mut |commit| Ok(store.commit(&commit)?),
        )
    }

    /// [`Engine::purge`], handing each chunk's commit to `write` instead of
    /// writing it to the store (the partitioned service writes it to the
    /// changelog first). `write` must have written a chunk before it
    /// returns: the next chunk is computed from the store.
    pub fn purge_with(
        &mut self,
        wall_now: Millis,
        retention: &Retention,
        write: &mut dyn FnMut(Commit) -> Result<(), EngineError>,
    ) -> Result<PurgeStats, EngineError> {
        let mut stats = PurgeStats::default();
        let Some(now) = self.now(wall_now) else {
            return Ok(stats); // event time, and no signal seen yet
        };
        let settings = self.rules().state_settings();
        let store = self.store().clone();
        let opt_out = self.opt_out().clone();
        let keyer = self.keyer().clone();
        let objected =
            |key: &str| !opt_out.is_empty() && opt_out.has_household(&HouseholdKey(key.into()));

        // Case records past retention; the households that still have one.
        let mut kept: HashSet<String> = HashSet::new();
        let mut purged = Vec::new();
        for record in store.cases() {
            let record = record?;
            let closed = record.status == CaseStatus::Gesloten;
            if record.past_retention(now, retention.closed_case_months)
                || (closed && objected(&record.huishouden))
            {
                stats.signals += record.signalen.len() as u64;
                purged.push(record.id);
            } else {
                kept.insert(record.huishouden);
            }
        }
        let publish = self.config.publish_cases;
        for chunk in purged.chunks(CHUNK) {
            let outbox = if publish {
                chunk
                    .iter()
                    .map(|id| crate::engine::case_entry(id, None))
                    .collect()
            } else {
                Vec::new()
            };
            write(Commit {
                purged_cases: chunk.to_vec(),
                outbox,
                ..Commit::default()
            })?;
        }
        stats.cases = purged.len() as u64;

        // Households without an open case.
        let mut commit = Commit::default();
        for item in store.households() {
            let (key, state) = item?;
            if state.case.is_some() {
                continue;
            }
            let mut next = state.clone();
            next.expire(now, &settings);
            let objector = objected(&key.0);
            if objector {
                next.arrears.clear();
                next.absences.clear();
                next.contact = None;
            } else if !opt_out.is_empty() {
                next.arrears.retain(|r| {
                    !r.client
                        .bsn
                        .as_deref()
                        .is_some_and(|bsn| opt_out.has_person(bsn, &keyer))
                });
            }
            let dropped = (state.arrears.len() - next.arrears.len())
                + (state.absences.len() - next.absences.len());
            stats.signals += dropped as u64;
            if next.holds_nothing() && (objector || !kept.contains(key.as_str())) {
                stats.households += 1;
                if state.episodes > 0 {
                    commit.retired.push((key.clone(), state.episodes));
                }
                commit.households.push(HouseholdWrite {
                    key,
                    state: None,
                    old_timer: state.timer_due,
                });
            } else if next != state {
                commit.households.push(HouseholdWrite {
                    key,
                    state: Some(Box::new(next)),
                    old_timer: state.timer_due,
                });
            }
            if commit.households.len() >= CHUNK {
                write(std::mem::take(&mut commit))?;
            }
        }
        if !commit.is_empty() {
            write(commit)?;
        }
        Ok(stats)
    }
}
