//! The intake role: partner topics and wijkteam feedback in, the household
//! topic and the dead-letter topic out. It holds no state.
//!
//! It consumes the partner topics, partitioned any way, and the feedback
//! topic (`read_committed`, in the group `<group_id>-intake`). Each record
//! is classified by the engine's own [`Intake`]: a valid signal or feedback
//! message goes to the household topic, keyed by its household and to the
//! partition of that household (a case id carries its household key, so
//! feedback lands with its household); an invalid one goes to the
//! dead-letter topic with its reason; one about an objector is counted and
//! dropped. Each batch is one Kafka transaction with the input offsets that
//! pass it, so a crash forwards nothing twice and loses nothing.
//!
//! With `engine.clock = "event"`, every batch also sends a progress marker
//! to every household partition (see [`vroeg_engine::ForwardedItem`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::Offset;
use rdkafka::ClientContext;
use tracing::{debug, info, warn};
use vroeg_core::time::Millis;
use vroeg_engine::{
    dead_letter, BatchObserver, Classified, ClockMode, EngineConfig, Forwarded, ForwardedError,
    ForwardedItem, Intake, Origin, Record, Stats,
};

use crate::consumer::{observe_stats, record, role_consumer_config, Health};
use crate::control::Control;
use crate::settings::KafkaSettings;
use crate::txn::{is_fenced, offsets, Outgoing, TxnError, TxnProducer};
use crate::wall_now;

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("failed to create the intake role's Kafka clients: {0}")]
    Create(#[source] KafkaError),
    #[error("failed to subscribe to {topics:?}: {source}")]
    Subscribe {
        topics: Vec<String>,
        #[source]
        source: KafkaError,
    },
    #[error(transparent)]
    Encode(#[from] ForwardedError),
    #[error(transparent)]
    Topics(#[from] crate::topics::TopicError),
}

/// Everything the intake role is made of.
pub struct IntakeRole {
    pub settings: KafkaSettings,
    /// The secret, limits, feedback topic and clock of the engine.
    pub engine_config: EngineConfig,
    pub control: Arc<Control>,
    pub observer: Arc<dyn BatchObserver>,
    pub health: Arc<Health>,
}

struct Ctx {
    pending: Arc<Mutex<Vec<Record>>>,
    health: Arc<Health>,
    observer: Arc<dyn BatchObserver>,
    /// Source partitions librdkafka's latest statistics saw read to their
    /// end (fetched up to the last stable offset, nothing left in the fetch
    /// queue), and when those statistics came.
    caught_up: CaughtUp,
}

/// Source partitions read to their end, and when librdkafka said so.
type CaughtUp = Arc<Mutex<(Vec<(String, i32)>, Option<Instant>)>>;

impl ClientContext for Ctx {
    fn stats(&self, stats: Statistics) {
        observe_stats(&stats, &self.health, self.observer.as_ref());
        let mut caught_up = Vec::new();
        for (name, topic) in &stats.topics {
            for (id, p) in &topic.partitions {
                if *id >= 0
                    && p.fetch_state == "active"
                    && p.fetchq_cnt == 0
                    && p.ls_offset >= 0
                    && p.next_offset >= p.ls_offset
                {
                    caught_up.push((name.clone(), *id));
                }
            }
        }
        *self.caught_up.lock().unwrap_or_else(|e| e.into_inner()) =
            (caught_up, Some(Instant::now()));
    }

    fn error(&self, error: KafkaError, reason: &str) {
        crate::client_log::error("intake", &error, reason);
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        crate::client_log::log("intake", level, fac, message);
    }
}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            // Nothing is in a transaction between polls: what waits of a
            // revoked partition is read again by its next owner.
            let revoked: BTreeSet<(String, i32)> = tpl
                .elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect();
            self.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|r| !revoked.contains(&(r.stream.to_string(), r.partition)));
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, _: &Rebalance<'_>) {
        let n = consumer.assignment().map(|a| a.count()).unwrap_or(0);
        info!(
            partitions = n,
            "intake partitions assigned to this instance"
        );
        self.health.joined.store(true, Ordering::Relaxed);
    }
}

enum SessionEnd {
    Stopped,
    Fatal(String),
}

/// Run the intake role until `stop` is set (then commit the batch in
/// flight and return).
pub fn run_intake(role: IntakeRole, stop: Arc<AtomicBool>) -> Result<(), IntakeError> {
    if !crate::topics::await_internal(&role.settings, &stop)? {
        return Ok(());
    }
    let mut intake = Intake::new(&role.engine_config);
    let mut generation = 0;
    loop {
        match session(&role, &mut intake, &mut generation, &stop)? {
            SessionEnd::Stopped => return Ok(()),
            SessionEnd::Fatal(reason) => {
                warn!(
                    reason,
                    "intake role: the kafka clients failed fatally; rejoining with new ones"
                );
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

fn session(
    role: &IntakeRole,
    intake: &mut Intake,
    generation: &mut u64,
    stop: &Arc<AtomicBool>,
) -> Result<SessionEnd, IntakeError> {
    let settings = &role.settings;
    let role_settings = KafkaSettings {
        group_id: format!("{}-intake", settings.group_id),
        ..settings.clone()
    };
    let pending: Arc<Mutex<Vec<Record>>> = Arc::default();
    let caught_up: CaughtUp = Arc::default();
    // When the last record of each source partition was polled.
    let mut last_polled: BTreeMap<(String, i32), Instant> = BTreeMap::new();
    // Event time: the source partitions announced idle to the household
    // partitions (a record polled from one makes it busy again).
    let mut idle_sent: BTreeSet<(String, i32)> = BTreeSet::new();
    let consumer: BaseConsumer<Ctx> = role_consumer_config(&role_settings)
        .create_with_context(Ctx {
            pending: pending.clone(),
            health: role.health.clone(),
            observer: role.observer.clone(),
            caught_up: caught_up.clone(),
        })
        .map_err(IntakeError::Create)?;
    let event_time = role.engine_config.clock == ClockMode::EventTime;
    let producer = TxnProducer::new(
        settings,
        &format!("{}-intake", settings.instance_id),
        role.health.clone(),
    )
    .map_err(IntakeError::Create)?;
    let topics = settings.input_topics();
    consumer
        .subscribe(&topics)
        .map_err(|source| IntakeError::Subscribe {
            topics: topics.iter().map(|t| t.to_string()).collect(),
            source,
        })?;
    let mut first_pending: Option<Instant> = None;
    let mut topic_partitions: BTreeMap<String, u32> = BTreeMap::new();
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        if let Some((code, reason)) = consumer.client().fatal_error() {
            return Ok(SessionEnd::Fatal(format!("{code:?}: {reason}")));
        }
        if !stopping {
            let wait = match first_pending {
                Some(t) => settings.batch_time.saturating_sub(t.elapsed()),
                None => Duration::from_millis(50),
            };
            match consumer.poll(wait) {
                Some(Ok(msg)) => {
                    let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
                    if p.is_empty() {
                        first_pending = Some(Instant::now());
                    }
                    let r = record(&msg);
                    if event_time {
                        last_polled.insert((r.stream.to_string(), r.partition), Instant::now());
                    }
                    p.push(r);
                }
                Some(Err(error)) => debug!(%error, "poll error (intake)"),
                None => {}
            }
        }
        // Event time: source partitions to announce idle. A source counts
        // as idle once statistics saw it read to its end,
        // nothing of it was polled in the second before, and a moment has
        // passed for anything still queued inside librdkafka to arrive.
        let idle: Vec<(String, i32)> = if event_time {
            let (sources, at) = caught_up.lock().unwrap_or_else(|e| e.into_inner()).clone();
            match at {
                Some(at) if at.elapsed() > Duration::from_millis(200) => sources
                    .into_iter()
                    .filter(|s| {
                        settings.signal_topics.contains(&s.0)
                            && !idle_sent.contains(s)
                            && last_polled
                                .get(s)
                                .is_none_or(|t| *t + Duration::from_secs(1) < at)
                    })
                    .collect(),
                _ => Vec::new(),
            }
        } else {
            Vec::new()
        };
        let batch: Vec<Record> = {
            let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
            let due = p.len() >= settings.batch_size
                || first_pending.is_some_and(|t| t.elapsed() >= settings.batch_time)
                || stopping;
            // With nothing pending, sources to announce idle make a batch
            // of their own. (This runs after every polled record: it must
            // not look at the pending records, which made the loop
            // quadratic in the batch.)
            let idle_only = p.is_empty() && !idle.is_empty();
            if (!due || p.is_empty()) && !idle_only {
                if p.is_empty() {
                    first_pending = None;
                }
                if stopping {
                    return Ok(SessionEnd::Stopped);
                }
                continue;
            }
            std::mem::take(&mut *p)
        };
        for r in &batch {
            idle_sent.remove(&(r.stream.to_string(), r.partition));
        }
        let batch_sources: BTreeSet<(String, i32)> = batch
            .iter()
            .map(|r| (r.stream.to_string(), r.partition))
            .collect();
        let idle: Vec<(String, i32)> = idle
            .into_iter()
            .filter(|s| !batch_sources.contains(s))
            .collect();
        first_pending = None;
        let (_, opt_out, g) = role.control.get();
        if g != *generation {
            intake.set_opt_out(opt_out);
            *generation = g;
        }
        let started = Instant::now();
        let counts = partition_counts(&consumer, settings, &mut topic_partitions);
        let (messages, stats) = forward(
            intake,
            &role.engine_config,
            settings,
            &batch,
            &idle,
            &counts,
        )?;
        let classified_in = started.elapsed();
        let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
        let mut first: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for r in &batch {
            let key = (r.stream.to_string(), r.partition);
            first.entry(key.clone()).or_insert(r.offset);
            next.insert(key, r.offset + 1);
        }
        match producer.commit(
            &messages,
            &offsets(&next),
            consumer.group_metadata().as_ref(),
        ) {
            Ok(_) => {
                role.observer.transaction(true);
                debug!(
                    messages = messages.len(),
                    classify_ms = classified_in.as_millis() as u64,
                    commit_ms = (started.elapsed() - classified_in).as_millis() as u64,
                    "intake batch committed"
                );
                role.observer.batch(&stats, started.elapsed());
                idle_sent.extend(idle);
            }
            Err(error) => {
                role.observer.transaction(false);
                match error {
                    TxnError::Aborted(ref e) if !is_fenced(&error) => {
                        warn!(error = %e, "intake transaction aborted; reading its input again");
                        for ((topic, p), offset) in &first {
                            if let Err(e) = consumer.seek(
                                topic,
                                *p,
                                Offset::Offset(*offset),
                                Duration::from_secs(10),
                            ) {
                                return Ok(SessionEnd::Fatal(format!(
                                    "failed to rewind after an abort: {e}"
                                )));
                            }
                        }
                    }
                    other => return Ok(SessionEnd::Fatal(other.to_string())),
                }
            }
        }
    }
}

/// The partition counts of the partner topics (from the brokers' metadata,
/// once per topic and session).
fn partition_counts(
    consumer: &BaseConsumer<Ctx>,
    settings: &KafkaSettings,
    known: &mut BTreeMap<String, u32>,
) -> BTreeMap<String, u32> {
    for topic in &settings.signal_topics {
        if known.contains_key(topic) {
            continue;
        }
        match consumer.fetch_metadata(Some(topic), Duration::from_secs(10)) {
            Ok(m) => {
                if let Some(t) = m.topics().first().filter(|t| !t.partitions().is_empty()) {
                    known.insert(topic.clone(), t.partitions().len() as u32);
                }
            }
            Err(error) => warn!(%error, topic, "failed to read the partition count"),
        }
    }
    known.clone()
}

/// The messages of one intake batch: forwarded records, dead letters and,
/// on event time, progress markers. Also what the batch did.
fn forward(
    intake: &Intake,
    engine_config: &EngineConfig,
    settings: &KafkaSettings,
    batch: &[Record],
    idle: &[(String, i32)],
    counts: &BTreeMap<String, u32>,
) -> Result<(Vec<Outgoing>, Stats), IntakeError> {
    let now = wall_now();
    let mut stats = Stats::default();
    let mut messages = Vec::with_capacity(batch.len());
    // Per source partition: its last record, and the latest signal time.
    let mut progress: BTreeMap<(String, i32), (i64, Millis)> = BTreeMap::new();
    for r in batch {
        stats.records += 1;
        let classified = intake.classify(r, now);
        match &classified {
            Classified::Rejected(error) => {
                intake.count_rejection(&mut stats, r, error);
                let entry = dead_letter(r, error);
                messages.push(crate::producer::outgoing(settings, &entry));
                continue;
            }
            Classified::OptedOut => {
                stats.opted_out += 1;
                continue;
            }
            Classified::Signal { signal, .. } => {
                let e = progress
                    .entry((r.stream.to_string(), r.partition))
                    .or_insert((r.offset, signal.time));
                *e = (r.offset, e.1.max(signal.time));
            }
            Classified::Feedback { .. } => {}
        }
        if let Some((key, forwarded)) = Forwarded::new(r, classified) {
            messages.push(Outgoing {
                topic: settings.household_topic.clone(),
                partition: Some(key.partition(settings.partitions) as i32),
                key: Some(key.0.as_bytes().to_vec()),
                payload: Some(forwarded.encode()?),
                headers: Vec::new(),
            });
        }
    }
    if engine_config.clock == ClockMode::EventTime {
        let mut markers: Vec<(Origin, Millis, bool, u32)> = Vec::new();
        for ((stream, partition), (offset, clock)) in progress {
            // Only the partner topics take part in the merge.
            if let Some(count) = counts.get(&stream) {
                markers.push((
                    Origin {
                        stream,
                        partition,
                        offset,
                    },
                    clock,
                    false,
                    *count,
                ));
            }
        }
        for (stream, partition) in idle {
            if let Some(count) = counts.get(stream) {
                let origin = Origin {
                    stream: stream.clone(),
                    partition: *partition,
                    offset: -1,
                };
                markers.push((origin, i64::MIN, true, *count));
            }
        }
        for (origin, clock, idle, partitions) in markers {
            let marker = Forwarded {
                origin,
                item: ForwardedItem::Progress {
                    clock,
                    idle,
                    partitions,
                },
            }
            .encode()?;
            for p in 0..settings.partitions {
                messages.push(Outgoing {
                    topic: settings.household_topic.clone(),
                    partition: Some(p as i32),
                    key: None,
                    payload: Some(marker.clone()),
                    headers: Vec::new(),
                });
            }
        }
    }
    Ok((messages, stats))
}
