//! Counters of what the engine did. Bounded keys only: error codes, alert
//! kinds, categories and priorities, never a household.

use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Records read from the source (after skipping already-processed ones).
    pub records: u64,
    /// Valid signals applied to a household.
    pub applied: u64,
    /// Signals seen before (same source and id).
    pub duplicates: u64,
    /// School-absence signals dropped because the school purpose is off.
    pub purpose_disabled: u64,
    /// Signals older than the lookback window.
    pub outside_window: u64,
    /// Signals dropped at intake because their address or person objected.
    pub opted_out: u64,
    /// Rejected records by error code (signals and feedback).
    pub rejected: BTreeMap<String, u64>,
    /// Rejected signals by error code and partner type (`school` for
    /// absence, `onbekend` where the message does not say).
    #[serde(skip)]
    pub rejected_signals: BTreeMap<(String, &'static str), u64>,
    /// Rejected feedback (contact attempts, outcomes) by error code.
    #[serde(skip)]
    pub rejected_feedback: BTreeMap<String, u64>,
    /// Escalations sent, by wijkteam.
    #[serde(skip)]
    pub escalations: BTreeMap<String, u64>,
    /// Alert events by kind.
    pub alerts: BTreeMap<String, u64>,
    /// Opened cases by main category.
    pub opened_by_category: BTreeMap<String, u64>,
    /// Opened cases by priority.
    pub opened_by_priority: BTreeMap<u8, u64>,
    /// Evaluations stopped by a suppression rule.
    pub suppressed: u64,
    /// Timers fired.
    pub timers: u64,
    /// Rule evaluation errors.
    pub rule_errors: u64,
    /// Batches committed.
    pub batches: u64,
    /// Feedback messages applied (contact attempts, outcomes).
    pub feedback: u64,
    /// Status messages for partners.
    pub partner_feedback: u64,
}

impl Stats {
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// Count a rejected signal of `partner_type` (see
    /// [`vroeg_core::signal::partner_label`]).
    pub fn reject_signal(&mut self, code: &str, partner_type: &'static str) {
        *self.rejected.entry(code.to_owned()).or_default() += 1;
        *self
            .rejected_signals
            .entry((code.to_owned(), partner_type))
            .or_default() += 1;
    }

    /// Count a rejected feedback message.
    pub fn reject_feedback(&mut self, code: &str) {
        *self.rejected.entry(code.to_owned()).or_default() += 1;
        *self.rejected_feedback.entry(code.to_owned()).or_default() += 1;
    }

    pub fn merge(&mut self, other: &Stats) {
        self.records += other.records;
        self.applied += other.applied;
        self.duplicates += other.duplicates;
        self.purpose_disabled += other.purpose_disabled;
        self.outside_window += other.outside_window;
        self.opted_out += other.opted_out;
        for (k, v) in &other.rejected {
            *self.rejected.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.rejected_signals {
            *self.rejected_signals.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.rejected_feedback {
            *self.rejected_feedback.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.escalations {
            *self.escalations.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.alerts {
            *self.alerts.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.opened_by_category {
            *self.opened_by_category.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.opened_by_priority {
            *self.opened_by_priority.entry(*k).or_default() += v;
        }
        self.suppressed += other.suppressed;
        self.timers += other.timers;
        self.rule_errors += other.rule_errors;
        self.batches += other.batches;
        self.feedback += other.feedback;
        self.partner_feedback += other.partner_feedback;
    }
}

/// Receives what a running pipeline did, for metrics. Implementations must
/// use bounded labels only: never a household.
pub trait BatchObserver: Send + Sync {
    /// A batch was committed.
    fn batch(&self, stats: &Stats, elapsed: std::time::Duration);
    /// Outbox entries were delivered.
    fn published(&self, entries: usize);
    fn outbox_depth(&self, depth: usize);
    fn publish_failed(&self);
    /// Consumer lag of one input partition, in messages.
    fn lag(&self, topic: &str, partition: i32, lag: i64);
    /// The retention purge ran.
    fn purged(&self, _stats: &crate::PurgeStats) {}
    /// Changelog records applied while restoring a household partition.
    fn restored(&self, _partition: i32, _records: u64) {}
    /// Household partitions being restored now.
    fn restoring(&self, _partitions: usize) {}
    /// Household partitions refused because their changelog does not
    /// decode.
    fn refused(&self, _partitions: usize) {}
    /// A Kafka transaction ended: committed, or aborted.
    fn transaction(&self, _committed: bool) {}
}
