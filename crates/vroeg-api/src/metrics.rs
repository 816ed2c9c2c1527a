//! Prometheus metrics, named `vroeg_<name>_<unit>_total` for counters.

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use vroeg_engine::{BatchObserver, Stats};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabel {
    topic: String,
    partition: String,
}

pub struct Metrics {
    registry: Registry,
    consumed: Counter,
    applied: Counter,
    duplicates: Counter,
    purpose_disabled: Counter,
    outside_window: Counter,
    opted_out: Counter,
    purged: Family<KindLabel, Counter>,
    rejected: Family<CodeLabel, Counter>,
    case_events: Family<KindLabel, Counter>,
    published: Counter,
    publish_failures: Counter,
    rule_errors: Counter,
    timers: Counter,
    outbox_depth: Gauge,
    lag: Family<PartitionLabel, Gauge>,
    batch_duration: Histogram,
    restored: Family<PartitionNumber, Counter>,
    restoring: Gauge,
    refused: Gauge,
    transactions: Family<OutcomeLabel, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionNumber {
    partition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let consumed = Counter::default();
        let applied = Counter::default();
        let duplicates = Counter::default();
        let purpose_disabled = Counter::default();
        let outside_window = Counter::default();
        let opted_out = Counter::default();
        let purged = Family::<KindLabel, Counter>::default();
        let rejected = Family::<CodeLabel, Counter>::default();
        let case_events = Family::<KindLabel, Counter>::default();
        let published = Counter::default();
        let publish_failures = Counter::default();
        let rule_errors = Counter::default();
        let timers = Counter::default();
        let outbox_depth = Gauge::default();
        let lag = Family::<PartitionLabel, Gauge>::default();
        let batch_duration = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let restored = Family::<PartitionNumber, Counter>::default();
        let restoring = Gauge::default();
        let refused = Gauge::default();
        let transactions = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "vroeg_changelog_restored_records",
            "Changelog records applied while restoring a household partition, by partition",
            restored.clone(),
        );
        registry.register(
            "vroeg_changelog_restoring_partitions",
            "Household partitions being restored from the changelog now",
            restoring.clone(),
        );
        registry.register(
            "vroeg_changelog_refused_partitions",
            "Household partitions refused because a changelog record does not decode",
            refused.clone(),
        );
        registry.register(
            "vroeg_kafka_transactions",
            "Kafka transactions, by outcome (committed, aborted)",
            transactions.clone(),
        );
        registry.register(
            "vroeg_signals_consumed_messages",
            "Records read from the signal topics",
            consumed.clone(),
        );
        registry.register(
            "vroeg_signals_applied_messages",
            "Valid signals applied to a household",
            applied.clone(),
        );
        registry.register(
            "vroeg_signals_duplicate_messages",
            "Signals seen before (same source and id)",
            duplicates.clone(),
        );
        registry.register(
            "vroeg_signals_purpose_disabled_messages",
            "School signals dropped because the school purpose is off",
            purpose_disabled.clone(),
        );
        registry.register(
            "vroeg_signals_outside_window_messages",
            "Signals older than the lookback window, with no effect",
            outside_window.clone(),
        );
        registry.register(
            "vroeg_signals_opted_out_messages",
            "Signals dropped at intake because their address or person objected",
            opted_out.clone(),
        );
        registry.register(
            "vroeg_retention_purged_items",
            "Deleted by the retention purge, by kind (case, household, signal)",
            purged.clone(),
        );
        registry.register(
            "vroeg_signals_rejected_messages",
            "Invalid records sent to the dead-letter topic, by error code",
            rejected.clone(),
        );
        registry.register(
            "vroeg_case_events_messages",
            "Case events produced, by kind",
            case_events.clone(),
        );
        registry.register(
            "vroeg_outbox_published_messages",
            "Outbox entries delivered (alerts and dead letters)",
            published.clone(),
        );
        registry.register(
            "vroeg_outbox_publish_failures",
            "Failed attempts to drain the outbox",
            publish_failures.clone(),
        );
        registry.register(
            "vroeg_rule_evaluation_errors",
            "Rule evaluations that failed",
            rule_errors.clone(),
        );
        registry.register(
            "vroeg_timers_fired",
            "Household timers fired",
            timers.clone(),
        );
        registry.register(
            "vroeg_outbox_depth_messages",
            "Entries waiting in the outbox",
            outbox_depth.clone(),
        );
        registry.register(
            "vroeg_consumer_lag_messages",
            "Messages behind the high watermark, per input partition",
            lag.clone(),
        );
        registry.register(
            "vroeg_batch_duration_seconds",
            "Time to process and commit one batch",
            batch_duration.clone(),
        );
        Metrics {
            registry,
            consumed,
            applied,
            duplicates,
            purpose_disabled,
            outside_window,
            opted_out,
            purged,
            rejected,
            case_events,
            published,
            publish_failures,
            rule_errors,
            timers,
            outbox_depth,
            lag,
            batch_duration,
            restored,
            restoring,
            refused,
            transactions,
        }
    }

    /// The Prometheus / OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl BatchObserver for Metrics {
    fn batch(&self, stats: &Stats, elapsed: Duration) {
        self.consumed.inc_by(stats.records);
        self.applied.inc_by(stats.applied);
        self.duplicates.inc_by(stats.duplicates);
        self.purpose_disabled.inc_by(stats.purpose_disabled);
        self.outside_window.inc_by(stats.outside_window);
        self.opted_out.inc_by(stats.opted_out);
        for (code, n) in &stats.rejected {
            self.rejected
                .get_or_create(&CodeLabel { code: code.clone() })
                .inc_by(*n);
        }
        for (kind, n) in &stats.alerts {
            self.case_events
                .get_or_create(&KindLabel { kind: kind.clone() })
                .inc_by(*n);
        }
        self.rule_errors.inc_by(stats.rule_errors);
        self.timers.inc_by(stats.timers);
        if stats.records > 0 || stats.timers > 0 {
            self.batch_duration.observe(elapsed.as_secs_f64());
        }
    }

    fn published(&self, entries: usize) {
        self.published.inc_by(entries as u64);
    }

    fn outbox_depth(&self, depth: usize) {
        self.outbox_depth.set(depth as i64);
    }

    fn publish_failed(&self) {
        self.publish_failures.inc();
    }

    fn purged(&self, stats: &vroeg_engine::PurgeStats) {
        for (kind, n) in [
            ("case", stats.cases),
            ("household", stats.households),
            ("signal", stats.signals),
        ] {
            self.purged
                .get_or_create(&KindLabel { kind: kind.into() })
                .inc_by(n);
        }
    }

    fn restored(&self, partition: i32, records: u64) {
        self.restored
            .get_or_create(&PartitionNumber {
                partition: partition.to_string(),
            })
            .inc_by(records);
    }

    fn restoring(&self, partitions: usize) {
        self.restoring.set(partitions as i64);
    }

    fn refused(&self, partitions: usize) {
        self.refused.set(partitions as i64);
    }

    fn transaction(&self, committed: bool) {
        self.transactions
            .get_or_create(&OutcomeLabel {
                outcome: if committed { "committed" } else { "aborted" },
            })
            .inc();
    }

    fn lag(&self, topic: &str, partition: i32, lag: i64) {
        self.lag
            .get_or_create(&PartitionLabel {
                topic: topic.to_owned(),
                partition: partition.to_string(),
            })
            .set(lag);
    }
}
