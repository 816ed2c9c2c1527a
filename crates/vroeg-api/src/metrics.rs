//! Prometheus metrics, named `vroeg_<name>_<unit>`, with `_total` on
//! counters. Served as Prometheus text 0.0.4 by default and as OpenMetrics
//! 1.0 to a client that asks for it (see [`Format::negotiate`]). The
//! families and their types are documented in docs/operations.md; a test
//! parses the output with Prometheus's own Python parser against that list.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
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
struct RejectedLabels {
    code: String,
    partner_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TeamLabel {
    team: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: &'static str,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: String,
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
    rejected: Family<RejectedLabels, Counter>,
    feedback_rejected: Family<CodeLabel, Counter>,
    escalations: Family<TeamLabel, Counter>,
    open_cases: Family<TeamLabel, Gauge>,
    overdue_cases: Family<TeamLabel, Gauge>,
    /// Every team the case gauges have named, so that a team whose last
    /// case closed reads 0 rather than vanishing.
    teams: Mutex<BTreeSet<String>>,
    /// When the case gauges were last counted.
    counted_at: Mutex<Option<std::time::Instant>>,
    api_requests: Family<RequestLabels, Counter>,
    api_duration: Family<RouteLabel, Histogram>,
    reload_failures: Counter,
    rules_info: Family<VersionLabel, Gauge>,
    case_events: Family<KindLabel, Counter>,
    published: Counter,
    publish_failures: Counter,
    rule_errors: Counter,
    timers: Counter,
    outbox_depth: Gauge,
    lag: Family<PartitionLabel, Gauge>,
    read_model_lag: Gauge,
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
        let rejected = Family::<RejectedLabels, Counter>::default();
        let feedback_rejected = Family::<CodeLabel, Counter>::default();
        let escalations = Family::<TeamLabel, Counter>::default();
        let open_cases = Family::<TeamLabel, Gauge>::default();
        let overdue_cases = Family::<TeamLabel, Gauge>::default();
        let api_requests = Family::<RequestLabels, Counter>::default();
        let api_duration = Family::<RouteLabel, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.001, 2.0, 14))) as fn() -> Histogram,
        );
        let reload_failures = Counter::default();
        let rules_info = Family::<VersionLabel, Gauge>::default();
        let build_info = Family::<VersionLabel, Gauge>::default();
        build_info
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
        registry.register(
            "vroeg_build_info",
            "The running build: its version (always 1)",
            build_info,
        );
        registry.register(
            "vroeg_rules_info",
            "The rule set in force: its version (always 1)",
            rules_info.clone(),
        );
        registry.register(
            "vroeg_rules_reload_failures",
            "Reloads refused because the rule files or objection list do not load",
            reload_failures.clone(),
        );
        registry.register(
            "vroeg_feedback_rejected_messages",
            "Feedback (contact attempts, outcomes) sent to the dead-letter topic, by error code",
            feedback_rejected.clone(),
        );
        registry.register(
            "vroeg_case_escalations",
            "Escalations sent for cases without a contact attempt past their deadline, by team",
            escalations.clone(),
        );
        registry.register(
            "vroeg_open_cases",
            "Open cases, by team",
            open_cases.clone(),
        );
        registry.register(
            "vroeg_overdue_cases",
            "Open cases past their contact deadline with no contact attempt, by team",
            overdue_cases.clone(),
        );
        registry.register(
            "vroeg_api_requests",
            "HTTP requests answered, by route, method and status",
            api_requests.clone(),
        );
        registry.register(
            "vroeg_api_request_duration_seconds",
            "Time to answer an HTTP request, by route",
            api_duration.clone(),
        );
        let case_events = Family::<KindLabel, Counter>::default();
        let published = Counter::default();
        let publish_failures = Counter::default();
        let rule_errors = Counter::default();
        let timers = Counter::default();
        let outbox_depth = Gauge::default();
        let lag = Family::<PartitionLabel, Gauge>::default();
        // Not measured (yet), or no read model in this process.
        let read_model_lag = Gauge::default();
        read_model_lag.set(-1);
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
            "Invalid signals sent to the dead-letter topic, by error code and partner type",
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
            "vroeg_readmodel_lag_messages",
            "Case-topic records the read model has not applied yet, as its follower last measured; -1 before it measured, or without a read model",
            read_model_lag.clone(),
        );
        registry.register(
            "vroeg_batch_duration_seconds",
            "Time to process and commit one batch",
            batch_duration.clone(),
        );
        for kind in ["case", "household", "signal"] {
            let _ = purged.get_or_create(&KindLabel { kind: kind.into() });
        }
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
            feedback_rejected,
            escalations,
            open_cases,
            overdue_cases,
            teams: Mutex::new(BTreeSet::new()),
            counted_at: Mutex::new(None),
            api_requests,
            api_duration,
            reload_failures,
            rules_info,
            case_events,
            published,
            publish_failures,
            rule_errors,
            timers,
            outbox_depth,
            lag,
            read_model_lag,
            batch_duration,
            restored,
            restoring,
            refused,
            transactions,
        }
    }

    /// The exposition in `format`.
    pub fn encode(&self, format: Format) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        match format {
            Format::OpenMetrics => out,
            Format::Prometheus => openmetrics_to_prometheus(&out),
        }
    }

    /// The rule set now in force (at start and after every reload).
    pub fn rule_set(&self, version: &str) {
        self.rules_info.clear();
        self.rules_info
            .get_or_create(&VersionLabel {
                version: version.to_owned(),
            })
            .set(1);
    }

    /// A reload was refused.
    pub fn reload_failed(&self) {
        self.reload_failures.inc();
    }

    /// Teams that exist by configuration: their case gauges read 0 until
    /// they have cases.
    pub fn known_teams<'a>(&self, teams: impl IntoIterator<Item = &'a str>) {
        let mut known = self.teams.lock().unwrap_or_else(|e| e.into_inner());
        for team in teams {
            // Declared at 0, so that a rate over it exists from the start.
            let _ = self.escalations.get_or_create(&TeamLabel {
                team: team.to_owned(),
            });
            known.insert(team.to_owned());
        }
    }

    /// Whether the case gauges are due for a count: at most once per
    /// `every`, however many scrapers ask (a count reads every open case).
    pub fn case_counts_due(&self, every: Duration) -> bool {
        let mut at = self.counted_at.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        if at.is_some_and(|t| now.duration_since(t) < every) {
            return false;
        }
        *at = Some(now);
        true
    }

    /// Open and overdue cases per team, as counted now. A team that was
    /// counted before and has none now reads 0.
    pub fn case_counts(&self, counts: &BTreeMap<String, (u64, u64)>) {
        let mut known = self.teams.lock().unwrap_or_else(|e| e.into_inner());
        known.extend(counts.keys().cloned());
        for team in known.iter() {
            let (open, overdue) = counts.get(team).copied().unwrap_or_default();
            let label = TeamLabel { team: team.clone() };
            self.open_cases.get_or_create(&label).set(open as i64);
            self.overdue_cases.get_or_create(&label).set(overdue as i64);
        }
    }

    /// How far the read model is behind the case topic (set by the scrape).
    pub fn read_model_lag(&self, lag: i64) {
        self.read_model_lag.set(lag);
    }

    /// One HTTP request answered. `route` is the route's pattern (bounded
    /// by the router), never the path a client sent.
    pub fn request(
        &self,
        route: &str,
        method: &axum::http::Method,
        status: u16,
        elapsed: Duration,
    ) {
        let method = match *method {
            axum::http::Method::GET => "GET",
            axum::http::Method::POST => "POST",
            axum::http::Method::HEAD => "HEAD",
            _ => "other",
        };
        self.api_requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                method,
                status: status.to_string(),
            })
            .inc();
        self.api_duration
            .get_or_create(&RouteLabel {
                route: route.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }
}

/// The two text expositions Prometheus reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`: the default, and what most scrapers and
    /// tools expect.
    Prometheus,
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// The format an `Accept` header prefers: OpenMetrics only when it is
    /// asked for with a higher weight than the plain text format (or
    /// anything else); Prometheus text otherwise, and without a header.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Prometheus;
        };
        let mut openmetrics = None::<f32>;
        let mut text = None::<f32>;
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let mut q = 1.0f32;
            for param in parts {
                if let Some(v) = param
                    .strip_prefix("q=")
                    .or_else(|| param.strip_prefix("Q="))
                {
                    q = v.trim().parse().unwrap_or(0.0);
                }
            }
            let slot = match media.as_str() {
                "application/openmetrics-text" => &mut openmetrics,
                "text/plain" | "text/*" | "*/*" => &mut text,
                _ => continue,
            };
            *slot = Some(slot.map_or(q, |old| old.max(q)));
        }
        match (openmetrics, text) {
            (Some(om), Some(t)) if om > t => Format::OpenMetrics,
            (Some(om), None) if om > 0.0 => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }
}

/// Rewrite prometheus-client's OpenMetrics text as Prometheus text 0.0.4.
/// The samples are the same; what differs is the metadata:
/// - a counter family is declared under its sample name (`x_total`), so
///   that the samples belong to the declared family;
/// - there are no `# UNIT` lines and no `# EOF`.
fn openmetrics_to_prometheus(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut counters: BTreeSet<&str> = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(name) = rest.strip_suffix(" counter") {
                counters.insert(name);
            }
        }
    }
    for line in text.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = line
            .strip_prefix("# HELP ")
            .map(|r| ("# HELP ", r))
            .or_else(|| line.strip_prefix("# TYPE ").map(|r| ("# TYPE ", r)));
        if let Some((prefix, rest)) = meta {
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            if counters.contains(name) {
                out.push_str(prefix);
                out.push_str(name);
                out.push_str("_total ");
                out.push_str(tail);
                out.push('\n');
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

impl BatchObserver for Metrics {
    fn batch(&self, stats: &Stats, elapsed: Duration) {
        self.consumed.inc_by(stats.records);
        self.applied.inc_by(stats.applied);
        self.duplicates.inc_by(stats.duplicates);
        self.purpose_disabled.inc_by(stats.purpose_disabled);
        self.outside_window.inc_by(stats.outside_window);
        self.opted_out.inc_by(stats.opted_out);
        for ((code, partner_type), n) in &stats.rejected_signals {
            self.rejected
                .get_or_create(&RejectedLabels {
                    code: code.clone(),
                    partner_type,
                })
                .inc_by(*n);
        }
        for (code, n) in &stats.rejected_feedback {
            self.feedback_rejected
                .get_or_create(&CodeLabel { code: code.clone() })
                .inc_by(*n);
        }
        for (team, n) in &stats.escalations {
            self.escalations
                .get_or_create(&TeamLabel { team: team.clone() })
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
