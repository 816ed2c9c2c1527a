//! What the Kafka client (librdkafka) reports, logged so that an operator
//! can read it: every client of the process reports into one view.
//!
//! - A lost broker is one warning ("kafka broker lost"), and its return
//!   one more ("kafka broker back") with the outage's length and the count
//!   of reports in between, however many clients retry however often.
//! - Any other report is logged the first time; repeats of the same kind
//!   (facility or error code) within [`WINDOW`] are counted and logged as
//!   one line with `repeated`, the count, when the window has passed.
//! - Everything goes to the `librdkafka` target through `tracing`, not
//!   through the `log` crate, so no line carries a source path.
//!
//! librdkafka's messages name brokers, topics and partitions; they never
//! carry message content.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::Statistics;
use tracing::{debug, error, info, warn};

/// How long repeats of one kind of report are counted before they are
/// logged as one line.
pub const WINDOW: Duration = Duration::from_secs(60);

/// After the broker is back, connection reports of clients that have not
/// reconnected yet are counted, not taken for a new outage, for this long.
const SETTLE: Duration = Duration::from_secs(15);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

struct Repeat {
    since: Instant,
    count: u64,
    level: Level,
    client: &'static str,
    last: String,
}

#[derive(Default)]
struct Inner {
    /// While the broker is lost: since when, and the reports since.
    outage: Option<(Instant, u64)>,
    back_at: Option<Instant>,
    repeats: HashMap<String, Repeat>,
}

fn inner() -> &'static Mutex<Inner> {
    static INNER: OnceLock<Mutex<Inner>> = OnceLock::new();
    INNER.get_or_init(Mutex::default)
}

fn emit(level: Level, client: &str, kind: &str, repeated: u64, message: &str) {
    match level {
        Level::Error => {
            error!(target: "librdkafka", client, kind, repeated, "{message}")
        }
        Level::Warn => warn!(target: "librdkafka", client, kind, repeated, "{message}"),
        Level::Info => info!(target: "librdkafka", client, kind, repeated, "{message}"),
        Level::Debug => debug!(target: "librdkafka", client, kind, repeated, "{message}"),
    }
}

/// Whether a report is about reaching the brokers.
fn is_connectivity(kind: &str, message: &str) -> bool {
    matches!(
        kind,
        "AllBrokersDown" | "BrokerTransportFailure" | "Resolve" | "FAIL" | "BROKERFAIL"
    ) || message.contains("Connection refused")
        || message.contains("Disconnected")
        || message.contains("all brokers down")
}

fn report(level: Level, client: &'static str, kind: &str, message: &str) {
    let now = Instant::now();
    let mut inner = inner().lock().unwrap_or_else(|e| e.into_inner());
    flush_due(&mut inner, now);
    if level >= Level::Warn && is_connectivity(kind, message) {
        if let Some((_, count)) = &mut inner.outage {
            *count += 1;
            return;
        }
        if inner
            .back_at
            .is_some_and(|at| now.duration_since(at) < SETTLE)
        {
            return;
        }
        inner.outage = Some((now, 0));
        warn!(target: "librdkafka", client, kind, "kafka broker lost: {message}");
        return;
    }
    match inner.repeats.get_mut(kind) {
        Some(repeat) => {
            repeat.count += 1;
            repeat.level = repeat.level.max(level);
            repeat.client = client;
            repeat.last = message.to_owned();
        }
        None => {
            emit(level, client, kind, 0, message);
            inner.repeats.insert(
                kind.to_owned(),
                Repeat {
                    since: now,
                    count: 0,
                    level,
                    client,
                    last: String::new(),
                },
            );
        }
    }
}

/// Log the counted repeats whose window has passed, and forget the kinds
/// that did not repeat.
fn flush_due(inner: &mut Inner, now: Instant) {
    inner.repeats.retain(|kind, repeat| {
        if now.duration_since(repeat.since) < WINDOW {
            return true;
        }
        if repeat.count > 0 {
            emit(
                repeat.level,
                repeat.client,
                kind,
                repeat.count,
                &format!("{} (and {} more like it)", repeat.last, repeat.count - 1),
            );
        }
        false
    });
}

/// A client's statistics: whether it sees a broker up. The first client to
/// see one after an outage ends it.
pub(crate) fn observe(stats: &Statistics) {
    let up = stats
        .brokers
        .values()
        .any(|b| b.nodeid >= 0 && b.state == "UP");
    let now = Instant::now();
    let mut inner = inner().lock().unwrap_or_else(|e| e.into_inner());
    flush_due(&mut inner, now);
    if !up {
        return;
    }
    if let Some((since, count)) = inner.outage.take() {
        let secs = now.duration_since(since).as_secs();
        warn!(target: "librdkafka", outage_secs = secs, reports = count, "kafka broker back");
        inner.back_at = Some(now);
    }
}

/// librdkafka's log callback.
pub(crate) fn log(client: &'static str, level: RDKafkaLogLevel, fac: &str, message: &str) {
    let level = match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => Level::Error,
        // An idempotent or transactional producer asks the broker for its
        // producer id at every start, and is told to retry until the
        // transaction coordinator is up: routine, not a warning.
        RDKafkaLogLevel::Warning if fac == "GETPID" => Level::Info,
        RDKafkaLogLevel::Warning => Level::Warn,
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => Level::Info,
        RDKafkaLogLevel::Debug => Level::Debug,
    };
    report(level, client, fac, message);
}

/// librdkafka's error callback.
pub(crate) fn error(client: &'static str, error: &KafkaError, reason: &str) {
    let kind = match error.rdkafka_error_code() {
        Some(code) => format!("{code:?}"),
        None => "client".to_owned(),
    };
    let level = match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::PartitionEOF) => return,
        _ => Level::Warn,
    };
    report(level, client, &kind, &format!("{error}: {reason}"));
}

/// A client context that only logs: for the feedback producer, the admin
/// client and `vroeg send`.
pub struct Logged(pub &'static str);

impl ClientContext for Logged {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log(self.0, level, fac, message);
    }

    fn error(&self, e: KafkaError, reason: &str) {
        error(self.0, &e, reason);
    }

    fn stats(&self, stats: Statistics) {
        observe(&stats);
    }
}

impl ConsumerContext for Logged {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connectivity_reports_are_recognised() {
        assert!(is_connectivity("FAIL", "anything"));
        assert!(is_connectivity(
            "client",
            "127.0.0.1:9092/1: Connect to ipv4#127.0.0.1:9092 failed: Connection refused"
        ));
        assert!(!is_connectivity(
            "GETPID",
            "Failed to acquire idempotence PID"
        ));
    }
}
