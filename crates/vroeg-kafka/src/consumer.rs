//! The signal consumer: polls the signal topics, feeds the pipeline in
//! batches, and acknowledges to Kafka only after a batch is durable.
//!
//! Positions live in sled. On assignment every partition is sought to the
//! stored position (partitions this store has never seen start from the
//! group's committed offset, else the earliest). On revoke the batch in
//! flight is processed and persisted before the partitions are given up.
//! When the outbox grows past its bound the assignment is paused while the
//! outbox drains. If the broker cannot be reached the consumer keeps
//! retrying (librdkafka backs off) and reports not-ready; it does not exit.
//! A store failure stops consumption and is returned: nothing after the
//! last durable batch is acknowledged. A fatal librdkafka error (for
//! example a static member fenced after a long broker outage) replaces the
//! consumer; the new one seeks to the positions in sled.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientContext;
use tracing::{debug, error, info, warn};
use vroeg_engine::{EngineError, Record};

use crate::pipeline::Pipeline;
use crate::settings::KafkaSettings;

/// What `/readyz` reports.
#[derive(Debug, Default)]
pub struct Health {
    pub broker_reachable: AtomicBool,
    pub assigned_partitions: AtomicUsize,
    pub store_open: AtomicBool,
    /// The producer lost every broker (set from its own thread).
    pub producer_down: AtomicBool,
    /// The partitioned roles have joined their groups (an instance may
    /// rightly hold no partition of a role).
    pub joined: AtomicBool,
    /// Household partitions being restored from the changelog.
    pub restoring: AtomicUsize,
    /// Household partitions refused (their changelog does not decode).
    pub refused: AtomicUsize,
}

impl Health {
    /// What keeps the service from being ready, for `/readyz`'s answer;
    /// empty when it is ready.
    pub fn unready_reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if !self.broker_reachable.load(Ordering::Relaxed) {
            reasons.push("the consumers reach no broker".to_owned());
        }
        if self.assigned_partitions.load(Ordering::Relaxed) == 0
            && !self.joined.load(Ordering::Relaxed)
        {
            reasons.push("no partition assigned and the groups not joined".to_owned());
        }
        if !self.store_open.load(Ordering::Relaxed) {
            reasons.push("the store is not open".to_owned());
        }
        if self.producer_down.load(Ordering::Relaxed) {
            reasons.push("the producer reaches no broker".to_owned());
        }
        match self.restoring.load(Ordering::Relaxed) {
            0 => {}
            n => reasons.push(format!(
                "{n} household partition(s) restoring from the changelog"
            )),
        }
        match self.refused.load(Ordering::Relaxed) {
            0 => {}
            n => reasons.push(format!(
                "{n} household partition(s) refused (changelog does not decode)"
            )),
        }
        reasons
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("failed to create the Kafka consumer: {0}")]
    Create(#[source] KafkaError),
    #[error("failed to subscribe to {topics:?}: {source}")]
    Subscribe {
        topics: Vec<String>,
        #[source]
        source: KafkaError,
    },
    #[error("processing failed; consumption stopped: {0}")]
    Engine(#[from] EngineError),
}

struct Ctx {
    pipeline: Arc<Mutex<Pipeline>>,
    health: Arc<Health>,
    failure: Mutex<Option<EngineError>>,
}

fn lock(p: &Mutex<Pipeline>) -> MutexGuard<'_, Pipeline> {
    // A panic while holding the lock is a bug; keep the data reachable so
    // shutdown can still persist what it can.
    p.lock().unwrap_or_else(|e| e.into_inner())
}

/// Broker state for readiness and consumer lag for metrics, from
/// librdkafka's statistics (shared by every consumer of the service).
pub(crate) fn observe_stats(
    stats: &Statistics,
    health: &Health,
    observer: &dyn vroeg_engine::BatchObserver,
) {
    let up = stats
        .brokers
        .values()
        .any(|b| b.nodeid >= 0 && b.state == "UP");
    health.broker_reachable.store(up, Ordering::Relaxed);
    crate::client_log::observe(stats);
    for (name, topic) in &stats.topics {
        for (id, p) in &topic.partitions {
            if *id < 0 {
                continue;
            }
            if p.consumer_lag >= 0 {
                observer.lag(name, *id, p.consumer_lag);
            } else if p.next_offset >= 0 && p.ls_offset >= 0 {
                // The partitioned roles commit offsets inside transactions,
                // which librdkafka's lag (against its own commits) does not
                // see: count what is not yet fetched plus what waits in the
                // fetch queue, against the last stable offset.
                let lag = (p.ls_offset - p.next_offset).max(0) + p.fetchq_cnt;
                observer.lag(name, *id, lag);
            }
        }
    }
}

impl ClientContext for Ctx {
    /// librdkafka's statistics (every `statistics.interval.ms`): broker
    /// state for readiness, and consumer lag per partition for metrics.
    /// Served on the consumer thread during `poll`, with no extra network
    /// round trips in the processing loop.
    fn stats(&self, stats: Statistics) {
        let observer = lock(&self.pipeline).observer().clone();
        observe_stats(&stats, &self.health, observer.as_ref());
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        crate::client_log::log("consumer", level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::AllBrokersDown)
        ) {
            self.health.broker_reachable.store(false, Ordering::Relaxed);
        }
        crate::client_log::error("consumer", &error, reason);
    }
}

impl Ctx {
    /// Finish the batch in flight and acknowledge it, synchronously.
    fn finish_in_flight(&self, consumer: &BaseConsumer<Self>) {
        let mut pipeline = lock(&self.pipeline);
        match pipeline.flush() {
            Ok(done) => commit(consumer, &done, CommitMode::Sync),
            Err(e) => {
                error!(error = %e, "failed to persist the batch in flight at a rebalance");
                *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
            }
        }
    }
}

impl ConsumerContext for Ctx {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                {
                    let mut pipeline = lock(&self.pipeline);
                    let engine = pipeline.engine_mut();
                    engine.forget_positions();
                    let assigned: Vec<(String, i32)> = tpl
                        .elements()
                        .iter()
                        .map(|e| (e.topic().to_owned(), e.partition()))
                        .collect();
                    for (topic, partition) in assigned {
                        match engine.position(&topic.as_str().into(), partition) {
                            Ok(Some(pos)) => {
                                if let Err(error) =
                                    tpl.set_partition_offset(&topic, partition, Offset::Offset(pos))
                                {
                                    warn!(%error, topic, partition, "failed to seek to the stored position");
                                }
                                info!(
                                    topic,
                                    partition,
                                    offset = pos,
                                    "assigned; seeking to the stored position"
                                );
                            }
                            Ok(None) => info!(
                                topic,
                                partition,
                                "assigned; no stored position, starting from the group offset"
                            ),
                            Err(e) => {
                                error!(error = %e, topic, partition, "failed to read the stored position");
                                *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                            }
                        }
                    }
                }
                take_assignment(consumer, tpl);
                let n = consumer.assignment().map(|a| a.count()).unwrap_or(0);
                self.health.assigned_partitions.store(n, Ordering::Relaxed);
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                info!(
                    partitions = tpl.count(),
                    "partitions revoked; finishing the batch in flight"
                );
                self.finish_in_flight(consumer);
                give_up_assignment(consumer, tpl);
                let n = consumer.assignment().map(|a| a.count()).unwrap_or(0);
                self.health.assigned_partitions.store(n, Ordering::Relaxed);
            }
            other => {
                error!(code = ?other, "rebalance error");
                if let Err(error) = consumer.unassign() {
                    error!(%error, "failed to unassign after a rebalance error");
                }
                self.health.assigned_partitions.store(0, Ordering::Relaxed);
            }
        }
    }
}

/// In a rebalance callback: take on the partitions of `tpl`, incrementally
/// when the group rebalances cooperatively (`cooperative-sticky`), else as
/// the whole assignment. A failure is logged.
pub(crate) fn take_assignment<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tpl: &TopicPartitionList,
) {
    let result = if cooperative(consumer) {
        consumer.incremental_assign(tpl)
    } else {
        consumer.assign(tpl)
    };
    if let Err(error) = result {
        error!(%error, "failed to assign partitions");
    }
}

/// In a rebalance callback: give up the partitions of `tpl` (all of them,
/// unless the group rebalances cooperatively). A failure is logged.
pub(crate) fn give_up_assignment<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tpl: &TopicPartitionList,
) {
    let result = if cooperative(consumer) {
        consumer.incremental_unassign(tpl)
    } else {
        consumer.unassign()
    };
    if let Err(error) = result {
        error!(%error, "failed to unassign partitions");
    }
}

fn cooperative<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> bool {
    matches!(
        consumer.rebalance_protocol(),
        RebalanceProtocol::Cooperative
    )
}

/// Acknowledge durable positions to Kafka (for lag monitoring and for
/// partitions this store has never seen).
fn commit(consumer: &BaseConsumer<Ctx>, done: &BTreeMap<(String, i32), i64>, mode: CommitMode) {
    if done.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in done {
        if let Err(error) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset)) {
            warn!(%error, topic, partition, offset, "failed to add offset to commit");
        }
    }
    if let Err(error) = consumer.commit(&tpl, mode) {
        // Not fatal: sled holds the truth; the next commit catches up.
        warn!(%error, "failed to commit offsets to kafka");
    }
}

pub(crate) fn record(msg: &rdkafka::message::BorrowedMessage<'_>) -> Record {
    let headers = msg
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| {
                    (
                        h.key.to_owned(),
                        h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Record {
        stream: msg.topic().into(),
        partition: msg.partition(),
        offset: msg.offset(),
        payload: msg.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        headers,
    }
}

pub(crate) fn consumer_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    // Bound librdkafka's prefetch queue (default 64 MiB); `[kafka.client]`
    // may raise it.
    config.set("queued.max.messages.kbytes", "16384");
    // Try a lost broker again at least every 2 s (librdkafka backs off up
    // to 10 s), so that `/readyz` returns within seconds of the broker.
    config.set("reconnect.backoff.max.ms", "2000");
    for (k, v) in &settings.client {
        config.set(k, v);
    }
    config
        .set("bootstrap.servers", &settings.brokers)
        .set("group.id", &settings.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("statistics.interval.ms", "2000")
        // Static membership: a restarted instance takes its partitions back
        // at once instead of waiting for the old session to time out.
        .set("group.instance.id", &settings.instance_id);
    config
}

/// The consumer of a partitioned role (intake or state): dynamic
/// membership, so that a graceful shutdown leaves the group at once and
/// hands its partitions over (a static member would hold them until its
/// session times out; two instances with one id still cannot both write,
/// because the second transactional producer fences the first);
/// `read_committed`; cooperative rebalancing, so that partitions that stay
/// put keep working through a rebalance.
pub(crate) fn role_consumer_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = consumer_config(settings);
    config
        .remove("group.instance.id")
        .set("isolation.level", "read_committed")
        .set("partition.assignment.strategy", "cooperative-sticky");
    config
}

/// Run the consumer until `stop` is set (then finish the batch, drain the
/// outbox within `shutdown`, commit, and return `Ok`), or until processing
/// fails (then return the error without acknowledging anything more).
pub fn run_consumer(
    settings: &KafkaSettings,
    pipeline: Arc<Mutex<Pipeline>>,
    health: Arc<Health>,
    stop: Arc<AtomicBool>,
    shutdown: Duration,
) -> Result<(), ConsumerError> {
    loop {
        match session(settings, &pipeline, &health, &stop, shutdown)? {
            SessionEnd::Stopped => return Ok(()),
            SessionEnd::Fatal(reason) => {
                // E.g. a static member fenced after a long broker outage.
                // The consumer cannot be used again; a new one resumes from
                // the positions in sled, so nothing is lost or doubled.
                warn!(
                    reason,
                    "the kafka consumer hit a fatal error; starting a new one"
                );
                health.assigned_partitions.store(0, Ordering::Relaxed);
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// How one consumer's life ended.
enum SessionEnd {
    /// `stop` was set and the shutdown finished.
    Stopped,
    /// librdkafka raised a fatal error; the consumer must be replaced.
    Fatal(String),
}

fn session(
    settings: &KafkaSettings,
    pipeline: &Arc<Mutex<Pipeline>>,
    health: &Arc<Health>,
    stop: &Arc<AtomicBool>,
    shutdown: Duration,
) -> Result<SessionEnd, ConsumerError> {
    let ctx = Ctx {
        pipeline: pipeline.clone(),
        health: health.clone(),
        failure: Mutex::new(None),
    };
    let consumer: BaseConsumer<Ctx> = consumer_config(settings)
        .create_with_context(ctx)
        .map_err(ConsumerError::Create)?;
    let topics = settings.input_topics();
    consumer
        .subscribe(&topics)
        .map_err(|source| ConsumerError::Subscribe {
            topics: topics.iter().map(|t| t.to_string()).collect(),
            source,
        })?;
    health.store_open.store(true, Ordering::Relaxed);
    let mut last_tick = Instant::now();
    let mut paused = false;
    let mut backoff = Duration::from_millis(100);
    while !stop.load(Ordering::Relaxed) {
        if let Some((code, reason)) = consumer.client().fatal_error() {
            return Ok(SessionEnd::Fatal(format!("{code:?}: {reason}")));
        }
        if let Some(e) = consumer
            .context()
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            return Err(e.into());
        }
        // Backpressure: pause while the outbox is over its bound.
        let depth = lock(pipeline).outbox_depth();
        if depth > settings.outbox_max && !paused {
            warn!(
                outbox_depth = depth,
                bound = settings.outbox_max,
                "outbox over its bound; pausing consumption"
            );
            if let Ok(a) = consumer.assignment() {
                let _ = consumer.pause(&a);
            }
            paused = true;
        }
        if paused {
            let ok = lock(pipeline).publish();
            if lock(pipeline).outbox_depth() <= settings.outbox_max / 2 {
                info!("outbox drained; resuming consumption");
                if let Ok(a) = consumer.assignment() {
                    let _ = consumer.resume(&a);
                }
                paused = false;
                backoff = Duration::from_millis(100);
            } else if !ok {
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
        // Never sleep past the moment the batch in flight is due.
        let wait = {
            let p = lock(pipeline);
            if p.pending() > 0 {
                settings.batch_time.saturating_sub(p.waited())
            } else {
                Duration::from_millis(50)
            }
        };
        match consumer.poll(wait) {
            Some(Ok(msg)) => {
                lock(pipeline).push(record(&msg));
            }
            Some(Err(error)) => {
                debug!(%error, "poll error");
            }
            None => {}
        }
        let (pending, waited) = {
            let p = lock(pipeline);
            (p.pending(), p.waited())
        };
        let tick_due = last_tick.elapsed() >= Duration::from_secs(1);
        if pending >= settings.batch_size
            || (pending > 0 && waited >= settings.batch_time)
            || (pending == 0 && tick_due)
        {
            let done = lock(pipeline).flush()?;
            commit(&consumer, &done, CommitMode::Async);
            if pending == 0 {
                lock(pipeline).purge_if_due()?;
            }
            last_tick = Instant::now();
            // A failed publish is retried with the next flush or tick; its
            // positions are acknowledged once it succeeds.
        }
    }
    info!("stopping: finishing the batch in flight and draining the outbox");
    let done = lock(pipeline).flush()?;
    commit(&consumer, &done, CommitMode::Sync);
    let deadline = Instant::now() + shutdown;
    while lock(pipeline).outbox_depth() > 0 && Instant::now() < deadline {
        if !lock(pipeline).publish() {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let done = lock(pipeline).acknowledgeable();
    commit(&consumer, &done, CommitMode::Sync);
    let left = lock(pipeline).outbox_depth();
    if left > 0 {
        warn!(
            outbox_depth = left,
            "outbox not empty at shutdown; it is sent on the next start"
        );
    }
    lock(pipeline).flush_producer(Duration::from_secs(5));
    Ok(SessionEnd::Stopped)
}
