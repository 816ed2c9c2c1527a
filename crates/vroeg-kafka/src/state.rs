//! The state role: the household partitions assigned to this instance.
//!
//! It consumes the household topic (`read_committed`, in the group
//! `<group_id>-state`). Each assigned partition has its own [`Engine`] over
//! its own sled tree, which is a cache of the same partition of the
//! changelog topic. For each batch, one Kafka transaction commits together:
//! the changelog records of every household and case record the batch
//! changed, its case events, dead letters and partner feedback, and the
//! household topic offsets that pass it. While the transaction commits, on
//! a thread of its own, the batch is written to sled without a changelog
//! offset; once it committed, the cache's offset follows. sled is not
//! flushed per batch. A crash or an abort before the commit lands leaves a
//! cache that reflects no offset: it is rebuilt from the changelog (as
//! Kafka Streams wipes its stores after an unclean exit under exactly-once)
//! and the input is read again. A crash after it leaves the cache behind
//! the changelog, and the next assignment catches up.
//!
//! On assignment a partition is restored first: its changelog is read
//! (`read_committed`) from the offset the cache reflects up to its end, and
//! only then does the partition take input. A changelog record that does
//! not decode refuses the partition: it is paused, logged, counted
//! (`vroeg_changelog_refused_partitions`), and the service is not ready.
//!
//! A fatal producer error (this instance was fenced as a zombie) ends the
//! session: the consumer and producer are replaced, the group rebalances,
//! and every partition assigned again is restored from the changelog, so
//! nothing the zombie had in memory survives.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientContext;
use tracing::{debug, error, info, warn};
use vroeg_engine::{
    BatchObserver, Engine, EngineConfig, EngineError, Forwarded, ForwardedRecord, Prepared,
    Retention,
};
use vroeg_store::{ChangelogRecord, Commit, Store, StoreError};

use crate::consumer::{
    consumer_config, give_up_assignment, observe_stats, role_consumer_config, take_assignment,
    Health,
};
use crate::control::Control;
use crate::producer::outgoing;
use crate::settings::KafkaSettings;
use crate::txn::{is_fenced, offsets, Outgoing, TxnError, TxnProducer};
use crate::wall_now;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("failed to create the state role's Kafka clients: {0}")]
    Create(#[source] KafkaError),
    #[error("failed to subscribe to {topic}: {source}")]
    Subscribe {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("processing failed; the state role stopped: {0}")]
    Engine(#[from] EngineError),
    #[error("the household topic record at {topic}/{partition}@{offset} does not decode ({detail}); intake and state must run the same release")]
    Forwarded {
        topic: String,
        partition: i32,
        offset: i64,
        detail: String,
    },
    #[error(transparent)]
    Topics(#[from] crate::topics::TopicError),
}

/// Everything the state role is made of.
pub struct StateRole {
    pub settings: KafkaSettings,
    /// The state directory; partition caches are trees in it.
    pub root: Store,
    pub engine_config: EngineConfig,
    pub control: Arc<Control>,
    pub observer: Arc<dyn BatchObserver>,
    pub health: Arc<Health>,
    /// The retention purge and how often it runs.
    pub retention: Option<(Retention, Duration)>,
    /// Held while a batch, a purge or a rebalance writes the partition
    /// caches. A reader that holds it (the admin exports) sees the state
    /// between two batches.
    pub gate: ReadGate,
}

/// See [`StateRole::gate`].
pub type ReadGate = Arc<Mutex<()>>;

/// Hold `gate`, whatever a panic elsewhere left behind.
pub fn hold(gate: &Mutex<()>) -> MutexGuard<'_, ()> {
    gate.lock().unwrap_or_else(|e| e.into_inner())
}

/// Records per restore write.
const RESTORE_CHUNK: usize = 10_000;

/// At most this many threads restore partitions.
const RESTORE_WORKERS: usize = 4;

/// The records a bulk restore gathers before it writes them in key order
/// (keys and values, in bytes). One such run per worker is in memory.
const RESTORE_RUN_BYTES: usize = 32 * 1024 * 1024;

/// What each restore worker's consumer may prefetch, in KiB. A worker reads
/// far faster than it writes, so a little prefetch keeps it fed; more only
/// costs memory (128 MiB measured no faster, BENCHMARKS.md).
const RESTORE_PREFETCH_KIB: usize = 32 * 1024;

/// What the consumer thread and the rebalance callback share.
struct Core {
    role: StateRole,
    engines: BTreeMap<i32, Engine>,
    refused: BTreeSet<i32>,
    pending: Vec<ForwardedRecord>,
    first_pending: Option<Instant>,
    /// The rule set generation the engines run.
    generation: u64,
    failure: Option<StateError>,
    /// Set when the service is stopping: a final revoke keeps the
    /// assignment on record for `vroeg state dump`.
    stopping: bool,
    next_purge: Option<Instant>,
}

fn lock(core: &Mutex<Core>) -> MutexGuard<'_, Core> {
    core.lock().unwrap_or_else(|e| e.into_inner())
}

struct Ctx {
    core: Arc<Mutex<Core>>,
    gate: ReadGate,
    health: Arc<Health>,
    observer: Arc<dyn BatchObserver>,
    /// The configuration of the consumer that reads the changelog while
    /// partitions are restored (one per assignment, assigned, never
    /// subscribed).
    restorer: rdkafka::ClientConfig,
}

/// The restore consumer's context: reaching the end of a partition is how
/// a restore ends, not an error.
struct Quiet;

impl ClientContext for Quiet {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(error, KafkaError::PartitionEOF(_)) {
            crate::client_log::error("restore", &error, reason);
        }
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        crate::client_log::log("restore", level, fac, message);
    }
}

impl ConsumerContext for Quiet {}

impl ClientContext for Ctx {
    fn stats(&self, stats: Statistics) {
        observe_stats(&stats, &self.health, self.observer.as_ref());
    }

    fn error(&self, error: KafkaError, reason: &str) {
        crate::client_log::error("state", &error, reason);
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        crate::client_log::log("state", level, fac, message);
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
                let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                if lock(&self.core).stopping {
                    // The consumer is closing (a SIGTERM): partitions that
                    // reach it now go on to the others as it leaves. A
                    // restore would only hold up the shutdown (reading the
                    // committed offsets of a closing consumer waits out
                    // its timeouts, past the shutdown deadline).
                    info!(partitions = ?partitions, "household partitions assigned while stopping: handed on unrestored");
                    take_assignment(consumer, tpl);
                    return;
                }
                let mut paused = TopicPartitionList::new();
                {
                    let _gate = hold(&self.gate);
                    let mut core = lock(&self.core);
                    self.health
                        .restoring
                        .fetch_add(partitions.len(), Ordering::Relaxed);
                    self.observer
                        .restoring(self.health.restoring.load(Ordering::Relaxed));
                    let topic = core.role.settings.household_topic.clone();
                    match core.restore(
                        &self.restorer,
                        consumer,
                        &partitions,
                        self.observer.as_ref(),
                    ) {
                        Ok(positions) => {
                            for p in &partitions {
                                match positions.get(p) {
                                    Some(position) => {
                                        let _ = tpl.set_partition_offset(&topic, *p, *position);
                                    }
                                    None => {
                                        let _ = paused.add_partition(&topic, *p);
                                    }
                                }
                            }
                        }
                        Err(e) => {
                            error!(error = %e, "failed to restore household partitions");
                            core.failure = Some(e);
                        }
                    }
                    self.health
                        .restoring
                        .fetch_sub(partitions.len(), Ordering::Relaxed);
                    self.observer
                        .restoring(self.health.restoring.load(Ordering::Relaxed));
                    self.health
                        .refused
                        .store(core.refused.len(), Ordering::Relaxed);
                    self.observer.refused(core.refused.len());
                }
                take_assignment(consumer, tpl);
                if paused.count() > 0 {
                    if let Err(error) = consumer.pause(&paused) {
                        error!(%error, "failed to pause refused partitions");
                    }
                }
                self.after_rebalance(consumer);
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let revoked: BTreeSet<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                {
                    let _gate = hold(&self.gate);
                    let mut core = lock(&self.core);
                    // Nothing of a revoked partition is in a transaction
                    // between polls: drop what waits, and the engine.
                    core.pending.retain(|r| !revoked.contains(&r.partition));
                    for p in &revoked {
                        core.engines.remove(p);
                        core.refused.remove(p);
                    }
                    info!(partitions = ?revoked, "household partitions revoked");
                }
                give_up_assignment(consumer, tpl);
                self.after_rebalance(consumer);
            }
            other => {
                error!(code = ?other, "rebalance error (state)");
                if let Err(error) = consumer.unassign() {
                    error!(%error, "failed to unassign after a rebalance error");
                }
                lock(&self.core).engines.clear();
            }
        }
    }
}

impl Ctx {
    fn after_rebalance(&self, consumer: &BaseConsumer<Self>) {
        let assigned: Vec<u32> = consumer
            .assignment()
            .map(|a| a.elements().iter().map(|e| e.partition() as u32).collect())
            .unwrap_or_default();
        let core = lock(&self.core);
        self.health
            .refused
            .store(core.refused.len(), Ordering::Relaxed);
        if !core.stopping {
            if let Err(error) = core.role.root.set_assigned(&assigned) {
                warn!(%error, "failed to record the assignment");
            }
            info!(partitions = ?assigned, "household partitions assigned to this instance");
        }
        self.health.joined.store(true, Ordering::Relaxed);
        // The group coordinator just answered, and a restore read the
        // changelog: a broker is reachable. (Statistics, which say so too,
        // are served only between polls, and the first batch after a long
        // restore, with its due timers, can keep the next poll waiting.)
        self.health.broker_reachable.store(true, Ordering::Relaxed);
    }
}

impl Core {
    /// Restore `partitions` from their changelog partitions and make their
    /// engines. Returns where each one's input resumes; a partition
    /// missing from the result is refused.
    fn restore(
        &mut self,
        restorer: &rdkafka::ClientConfig,
        consumer: &BaseConsumer<Ctx>,
        partitions: &[i32],
        observer: &dyn BatchObserver,
    ) -> Result<BTreeMap<i32, Offset>, StateError> {
        let started = Instant::now();
        let settings = self.role.settings.clone();
        let mut stores = BTreeMap::new();
        for p in partitions {
            self.engines.remove(p);
            self.refused.remove(p);
            let store = self
                .role
                .root
                .partition(*p as u32)
                .map_err(EngineError::from)?;
            stores.insert(*p, store);
        }
        let mut totals: BTreeMap<i32, u64> = BTreeMap::new();
        // The group's committed offset moves in the same transaction as the
        // changelog; read the changelog until each cache reflects it (a
        // transaction another instance was committing as the partition
        // moved may land just after the first pass).
        let committed: BTreeMap<i32, Option<i64>> = partitions
            .iter()
            .map(|p| {
                (
                    *p,
                    committed_offset(consumer, &settings.household_topic, *p),
                )
            })
            .collect();
        let mut todo: BTreeMap<i32, Store> = stores.clone();
        for pass in 0..50 {
            if todo.is_empty() {
                break;
            }
            let results = restore_partitions(restorer, &settings.changelog_topic, &todo, observer);
            let mut behind = BTreeMap::new();
            for (p, result) in results {
                match result {
                    Ok(n) => *totals.entry(p).or_default() += n,
                    Err(RestoreError::Store(
                        e @ (StoreError::Corrupt { .. } | StoreError::Version { .. }),
                    )) => {
                        error!(partition = p, error = %e, "a changelog record does not decode; refusing the partition until the changelog is repaired");
                        self.refused.insert(p);
                        continue;
                    }
                    Err(RestoreError::Store(e)) => return Err(EngineError::from(e).into()),
                    Err(RestoreError::Kafka(e)) => {
                        error!(partition = p, error = %e, "the changelog cannot be read; refusing the partition");
                        self.refused.insert(p);
                        continue;
                    }
                }
                let store = &stores[&p];
                let position = store
                    .position(&settings.household_topic, p)
                    .map_err(EngineError::from)?;
                if let Some(c) = committed[&p] {
                    if position.is_none_or(|pos| pos < c) {
                        debug!(
                            partition = p,
                            committed = c,
                            ?position,
                            pass,
                            "the changelog is behind the committed offset; reading on"
                        );
                        behind.insert(p, store.clone());
                    }
                }
            }
            if !behind.is_empty() {
                std::thread::sleep(Duration::from_millis(200));
            }
            todo = behind;
        }
        for p in todo.keys() {
            warn!(
                partition = p,
                "the changelog stayed behind the committed offset; resuming from the changelog"
            );
        }
        let (rules, opt_out, generation) = self.role.control.get();
        let mut positions = BTreeMap::new();
        for (p, store) in stores {
            if self.refused.contains(&p) {
                continue;
            }
            let mut engine = Engine::new(store, rules.clone(), self.role.engine_config.clone())?;
            engine.set_opt_out(opt_out.clone());
            let position = engine.position(&settings.household_topic.as_str().into(), p)?;
            info!(
                partition = p,
                records = totals.get(&p).copied().unwrap_or(0),
                position,
                committed = committed.get(&p).copied().flatten(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "household partition restored from the changelog"
            );
            self.engines.insert(p, engine);
            positions.insert(p, position.map_or(Offset::Beginning, Offset::Offset));
        }
        self.generation = self.generation.max(generation);
        Ok(positions)
    }
}

fn committed_offset(consumer: &BaseConsumer<Ctx>, topic: &str, p: i32) -> Option<i64> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, p);
    match consumer.committed_offsets(tpl, Duration::from_secs(10)) {
        Ok(list) => list
            .find_partition(topic, p)
            .and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            }),
        Err(error) => {
            warn!(%error, partition = p, "failed to read the committed offset");
            None
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum RestoreError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Kafka(#[from] KafkaError),
}

/// Read the changelog partitions of `stores` from the offset each store
/// reflects to their end (the last stable offset), applying every record.
/// Returns, per partition, how many records it applied.
///
/// Worker threads (one per core, at most [`RESTORE_WORKERS`]) each take
/// the next partition, read it with a consumer of their own (made from
/// `config`) and write it; sled takes most of the time, and partitions are
/// independent. A worker that waits for sled holds up no other partition:
/// its consumer's queue fills while it writes.
fn restore_partitions(
    config: &rdkafka::ClientConfig,
    changelog: &str,
    stores: &BTreeMap<i32, Store>,
    observer: &dyn BatchObserver,
) -> BTreeMap<i32, Result<u64, RestoreError>> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, RESTORE_WORKERS)
        .min(stores.len());
    // Taken from the back: the lowest partition first.
    let queue = Mutex::new(stores.keys().rev().copied().collect::<Vec<i32>>());
    let next_partition = || queue.lock().unwrap_or_else(|e| e.into_inner()).pop();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut results = BTreeMap::new();
                    let reader = config.create_with_context::<_, BaseConsumer<Quiet>>(Quiet);
                    while let Some(p) = next_partition() {
                        let result = match &reader {
                            Ok(reader) => {
                                restore_partition(reader, changelog, p, &stores[&p], observer)
                            }
                            Err(e) => Err(RestoreError::Kafka(e.clone())),
                        };
                        results.insert(p, result);
                    }
                    results
                })
            })
            .collect();
        let mut results = BTreeMap::new();
        for handle in handles {
            match handle.join() {
                Ok(done) => results.extend(done),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        results
    })
}

/// Read changelog partition `p` into `store` from the offset the store
/// reflects to the end. A cache that reflects an offset gets the records
/// since, in atomic chunks ([`Store::restore`]). A cache that reflects
/// none (a new or lost state directory, or a restore that did not finish)
/// is rebuilt from the beginning by a bulk restore
/// ([`Store::bulk_restore`]), which writes in key order and is several
/// times faster.
fn restore_partition(
    reader: &BaseConsumer<Quiet>,
    changelog: &str,
    p: i32,
    store: &Store,
    observer: &dyn BatchObserver,
) -> Result<u64, RestoreError> {
    let from = store.changelog_offset()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(changelog, p, from.map_or(Offset::Beginning, Offset::Offset))?;
    reader.assign(&tpl)?;
    let result = (|| {
        let mut bulk = match from {
            None => Some(store.bulk_restore(RESTORE_RUN_BYTES)?),
            Some(_) => None,
        };
        let mut chunk: Vec<(i64, ChangelogRecord)> = Vec::new();
        let mut next = from.unwrap_or(0);
        let (mut total, mut counted) = (0u64, 0u64);
        let mut last_log = Instant::now();
        let mut failing_since: Option<Instant> = None;
        loop {
            match reader.poll(Duration::from_millis(500)) {
                Some(Ok(msg)) => {
                    failing_since = None;
                    if msg.partition() != p {
                        continue;
                    }
                    next = msg.offset() + 1;
                    total += 1;
                    let key = msg.key().unwrap_or_default();
                    match &mut bulk {
                        Some(bulk) => bulk.push(msg.offset(), key, msg.payload())?,
                        None => {
                            let record = ChangelogRecord {
                                key: key.to_vec(),
                                value: msg.payload().map(<[u8]>::to_vec),
                            };
                            chunk.push((msg.offset(), record));
                            if chunk.len() >= RESTORE_CHUNK {
                                store.restore(&chunk, next)?;
                                chunk.clear();
                            }
                        }
                    }
                    if total - counted >= RESTORE_CHUNK as u64 {
                        observer.restored(p, total - counted);
                        counted = total;
                    }
                    if last_log.elapsed() > Duration::from_secs(5) {
                        info!(
                            partition = p,
                            records = total,
                            "restoring a household partition"
                        );
                        last_log = Instant::now();
                    }
                }
                Some(Err(KafkaError::PartitionEOF(q))) if q == p => break,
                Some(Err(KafkaError::PartitionEOF(_))) | None => {}
                Some(Err(e)) => {
                    // Brokers away, leader elections: librdkafka retries.
                    // Give up after two minutes of errors.
                    warn!(error = %e, partition = p, "changelog read failed; retrying");
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_secs(120) {
                        return Err(RestoreError::Kafka(e));
                    }
                }
            }
        }
        match bulk {
            Some(bulk) => bulk.finish(next)?,
            None => store.restore(&chunk, next)?,
        }
        observer.restored(p, total - counted);
        Ok(total)
    })();
    let _ = reader.unassign();
    result
}

/// How one session ended.
enum SessionEnd {
    Stopped,
    /// Fenced or fatal: replace the clients and rejoin.
    Fatal(String),
}

/// Run the state role until `stop` is set (then finish the batch in
/// flight, commit it, and return), or until processing fails.
pub fn run_state(role: StateRole, stop: Arc<AtomicBool>) -> Result<(), StateError> {
    if !crate::topics::await_internal(&role.settings, &stop)? {
        return Ok(());
    }
    let health = role.health.clone();
    let observer = role.observer.clone();
    let retention_every = role.retention.as_ref().map(|(_, every)| *every);
    let core = Arc::new(Mutex::new(Core {
        role,
        engines: BTreeMap::new(),
        refused: BTreeSet::new(),
        pending: Vec::new(),
        first_pending: None,
        generation: 0,
        failure: None,
        stopping: false,
        next_purge: retention_every
            .map(|every| Instant::now() + every.min(Duration::from_secs(60))),
    }));
    loop {
        match session(&core, &health, &observer, &stop)? {
            SessionEnd::Stopped => return Ok(()),
            SessionEnd::Fatal(reason) => {
                warn!(
                    reason,
                    "state role: the kafka clients failed fatally; rejoining with new ones"
                );
                health.joined.store(false, Ordering::Relaxed);
                let mut c = lock(&core);
                c.engines.clear();
                c.pending.clear();
                c.first_pending = None;
                drop(c);
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

fn role_settings(settings: &KafkaSettings) -> KafkaSettings {
    KafkaSettings {
        group_id: format!("{}-state", settings.group_id),
        instance_id: format!("{}-state", settings.instance_id),
        ..settings.clone()
    }
}

fn session(
    core: &Arc<Mutex<Core>>,
    health: &Arc<Health>,
    observer: &Arc<dyn BatchObserver>,
    stop: &Arc<AtomicBool>,
) -> Result<SessionEnd, StateError> {
    let settings = lock(core).role.settings.clone();
    let role_settings = role_settings(&settings);
    let mut restorer_config = consumer_config(&role_settings);
    restorer_config
        .remove("group.instance.id")
        .set("group.id", format!("{}-restore", role_settings.group_id))
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        // A restore reads to the end and stops: no waiting at the end.
        .set("fetch.wait.max.ms", "10")
        .set("max.partition.fetch.bytes", "16777216")
        .set("queued.min.messages", "500000")
        .set(
            "queued.max.messages.kbytes",
            RESTORE_PREFETCH_KIB.to_string(),
        )
        .set("statistics.interval.ms", "0");
    let ctx = Ctx {
        core: core.clone(),
        gate: lock(core).role.gate.clone(),
        health: health.clone(),
        observer: observer.clone(),
        restorer: restorer_config,
    };
    let consumer: BaseConsumer<Ctx> = role_consumer_config(&role_settings)
        .create_with_context(ctx)
        .map_err(StateError::Create)?;
    let producer = TxnProducer::new(
        &settings,
        &format!("{}-state", settings.instance_id),
        health.clone(),
    )
    .map_err(StateError::Create)?;
    consumer
        .subscribe(&[&settings.household_topic])
        .map_err(|source| StateError::Subscribe {
            topic: settings.household_topic.clone(),
            source,
        })?;
    health.store_open.store(true, Ordering::Relaxed);
    let mut last_tick = Instant::now();
    let mut last_batch = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if let Some((code, reason)) = consumer.client().fatal_error() {
            return Ok(SessionEnd::Fatal(format!("{code:?}: {reason}")));
        }
        if let Some(e) = lock(core).failure.take() {
            return Err(e);
        }
        let wait = {
            let c = lock(core);
            match c.first_pending {
                Some(t) => settings.batch_time.saturating_sub(t.elapsed()),
                None => Duration::from_millis(50),
            }
        };
        match consumer.poll(wait) {
            Some(Ok(msg)) => {
                let forwarded =
                    Forwarded::decode(msg.payload().unwrap_or_default()).map_err(|e| {
                        StateError::Forwarded {
                            topic: msg.topic().to_owned(),
                            partition: msg.partition(),
                            offset: msg.offset(),
                            detail: e.to_string(),
                        }
                    })?;
                let mut c = lock(core);
                if c.pending.is_empty() {
                    c.first_pending = Some(Instant::now());
                }
                c.pending.push(ForwardedRecord {
                    stream: msg.topic().into(),
                    partition: msg.partition(),
                    offset: msg.offset(),
                    forwarded,
                });
            }
            Some(Err(error)) => debug!(%error, "poll error (state)"),
            None => {}
        }
        let (pending, waited) = {
            let c = lock(core);
            (
                c.pending.len(),
                c.first_pending.map(|t| t.elapsed()).unwrap_or_default(),
            )
        };
        // Every second a tick: a batch for the timers that fell due, and a
        // purge if one is due. A batch fires due timers too, so a tick
        // within a second of the last batch has no batch of its own: under
        // load a batch takes about a second, and a tick after each one made
        // every other transaction one of a record or two.
        let tick = last_tick.elapsed() >= Duration::from_secs(1);
        let due = pending >= settings.batch_size || (pending > 0 && waited >= settings.batch_time);
        if due || (tick && last_batch.elapsed() >= Duration::from_secs(1)) {
            if let Some(end) = flush(core, &consumer, &producer, observer)? {
                return Ok(end);
            }
            last_batch = Instant::now();
        }
        if tick {
            last_tick = Instant::now();
            if let Some(end) = purge_if_due(core, &producer, observer)? {
                return Ok(end);
            }
        }
    }
    info!("state role stopping: committing the batch in flight");
    let end = flush(core, &consumer, &producer, observer)?;
    lock(core).stopping = true;
    drop(consumer);
    Ok(end.unwrap_or(SessionEnd::Stopped))
}

/// Process what is pending (and due timers) on every assigned partition,
/// in one transaction. `Some(end)` when the session must end.
fn flush(
    core: &Arc<Mutex<Core>>,
    consumer: &BaseConsumer<Ctx>,
    producer: &TxnProducer,
    observer: &Arc<dyn BatchObserver>,
) -> Result<Option<SessionEnd>, StateError> {
    let started = Instant::now();
    let gate = lock(core).role.gate.clone();
    let _gate = hold(&gate);
    let mut c = lock(core);
    let c = &mut *c;
    c.reload_if_changed();
    let records = std::mem::take(&mut c.pending);
    c.first_pending = None;
    let mut by_partition: BTreeMap<i32, Vec<ForwardedRecord>> = BTreeMap::new();
    for r in records {
        by_partition.entry(r.partition).or_default().push(r);
    }
    let now = wall_now();
    let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let settings = c.role.settings.clone();
    // Household partitions are independent: each engine prepares its
    // batch, and its messages are encoded, on one of the cores.
    let work: Vec<(i32, &mut Engine, Vec<ForwardedRecord>)> = c
        .engines
        .iter_mut()
        .map(|(p, engine)| (*p, engine, by_partition.remove(p).unwrap_or_default()))
        .collect();
    for (p, _, records) in &work {
        if let Some(last) = records.last() {
            next.insert((settings.household_topic.clone(), *p), last.offset + 1);
        }
    }
    let results = on_cores(work, |(p, engine, records)| {
        let batch = engine.prepare_forwarded(&records, now)?;
        if batch.is_empty() {
            return Ok((p, None));
        }
        let mut messages: Vec<Outgoing> = batch
            .commit()
            .outbox
            .iter()
            .map(|e| outgoing(&settings, e))
            .collect();
        let outbox = messages.len();
        match changelog_messages(&settings.changelog_topic, p, batch.commit()) {
            Ok(changelog) => messages.extend(changelog),
            Err(e) => {
                engine.abandon(batch);
                return Err(e);
            }
        }
        Ok((p, Some((batch, messages, outbox))))
    });
    // Each partition's batch, with where its changelog records are in
    // `messages`: its cache is written from them, not encoded again.
    let mut prepared: Vec<(i32, (Prepared, std::ops::Range<usize>))> = Vec::new();
    let mut messages: Vec<Outgoing> = Vec::new();
    let mut failure: Option<StateError> = None;
    for result in results {
        match result {
            Ok((p, Some((batch, m, outbox)))) => {
                let start = messages.len() + outbox;
                messages.extend(m);
                prepared.push((p, (batch, start..messages.len())));
            }
            Ok((_, None)) => {}
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    if let Some(e) = failure {
        for (q, (b, _)) in prepared.drain(..) {
            if let Some(engine) = c.engines.get_mut(&q) {
                engine.abandon(b);
            }
        }
        return Err(e);
    }
    // Records of partitions without an engine (refused, or revoked while
    // they waited) are not processed: their offsets do not move.
    if prepared.is_empty() {
        return Ok(None);
    }
    let group = consumer.group_metadata();
    let prepared_in = started.elapsed();
    // The transaction commits on a thread of its own while each partition's
    // cache is written, on the cores, as Kafka Streams writes its stores
    // before it commits. A cache written ahead of its transaction reflects
    // no changelog offset until the commit lands: should it abort, or the
    // process die first, the partition is restored from the changelog.
    let partitions: Vec<i32> = prepared.iter().map(|(p, _)| *p).collect();
    let mut batches: BTreeMap<i32, _> = prepared.into_iter().collect();
    let work: Vec<(i32, &mut Engine, Prepared, &[Outgoing])> = c
        .engines
        .iter_mut()
        .filter_map(|(p, engine)| {
            let (batch, changelog) = batches.remove(p)?;
            Some((*p, engine, batch, &messages[changelog]))
        })
        .collect();
    let offsets = offsets(&next);
    let (committed, written, cached_in) = std::thread::scope(|scope| {
        let commit = scope.spawn(|| {
            let result = producer.commit(&messages, &offsets, group.as_ref());
            (result, started.elapsed())
        });
        let written = on_cores(work, |(p, engine, batch, changelog)| {
            let before = engine
                .store()
                .changelog_offset()
                .map_err(EngineError::from)?;
            let mut records: Vec<(&[u8], Option<&[u8]>)> = Vec::with_capacity(changelog.len());
            for m in changelog {
                let Some(key) = m.key.as_deref() else {
                    engine.abandon(batch);
                    let e = "a changelog record without a key".to_owned();
                    return Err(StateError::Engine(EngineError::Encode(e)));
                };
                records.push((key, m.payload.as_deref()));
            }
            let stats = engine.complete_cached(batch, &records, None)?;
            Ok::<_, StateError>((p, before, stats))
        });
        let cached_in = started.elapsed();
        match commit.join() {
            Ok(committed) => (committed, written, cached_in),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    });
    let (committed, committed_in) = committed;
    let mut total = vroeg_engine::Stats::default();
    let mut before = BTreeMap::new();
    let mut cache_failure: Option<StateError> = None;
    for result in written {
        match result {
            Ok((p, offset, stats)) => {
                total.merge(&stats);
                before.insert(p, offset);
            }
            Err(e) => cache_failure = cache_failure.or(Some(e)),
        }
    }
    match committed {
        Ok(landed) => {
            observer.transaction(true);
            // sled cannot write: the role stops. What it could not write
            // reflects no changelog offset, so a restart restores it.
            if let Some(e) = cache_failure {
                return Err(e);
            }
            // The caches now reflect their changelog up to this transaction.
            let changelog_topic = &settings.changelog_topic;
            for (p, offset) in before {
                let next = match landed.get(&(changelog_topic.clone(), p)) {
                    Some(last) => Some(last + 1),
                    None => offset,
                };
                if let (Some(next), Some(engine)) = (next, c.engines.get(&p)) {
                    engine
                        .store()
                        .set_changelog_offset(next)
                        .map_err(EngineError::from)?;
                }
            }
            // Intake counted these records when it read them.
            total.records = 0;
            debug!(
                messages = messages.len(),
                prepare_ms = prepared_in.as_millis() as u64,
                cache_ms = (cached_in - prepared_in).as_millis() as u64,
                commit_ms = (committed_in - prepared_in).as_millis() as u64,
                "state batch committed"
            );
            observer.batch(&total, started.elapsed());
            Ok(None)
        }
        Err(error) => {
            observer.transaction(false);
            if let Some(e) = cache_failure {
                return Err(e);
            }
            match error {
                TxnError::Aborted(ref e) if !is_fenced(&error) => {
                    warn!(error = %e, "state transaction aborted; restoring its partitions from the changelog and reading their input again");
                    let restorer = consumer.context().restorer.clone();
                    let positions =
                        c.restore(&restorer, consumer, &partitions, observer.as_ref())?;
                    for (p, from) in positions {
                        if let Err(e) = consumer.seek(
                            &settings.household_topic,
                            p,
                            from,
                            Duration::from_secs(10),
                        ) {
                            return Ok(Some(SessionEnd::Fatal(format!(
                                "failed to rewind after an abort: {e}"
                            ))));
                        }
                    }
                    Ok(None)
                }
                other => Ok(Some(SessionEnd::Fatal(other.to_string()))),
            }
        }
    }
}

/// `f` over `items` on up to as many threads as there are cores (the
/// calling thread among them), each thread taking every n-th item; the
/// results in the items' order. Household partitions are independent, so
/// their engines run side by side.
fn on_cores<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len());
    if threads <= 1 {
        return items.into_iter().map(f).collect();
    }
    let count = items.len();
    let mut shares: Vec<Vec<(usize, T)>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        shares[i % threads].push((i, item));
    }
    let f = &f;
    let run = move |share: Vec<(usize, T)>| {
        share
            .into_iter()
            .map(|(i, item)| (i, f(item)))
            .collect::<Vec<_>>()
    };
    let mut first = shares.remove(0);
    let mut done: Vec<(usize, R)> = std::thread::scope(|scope| {
        let handles: Vec<_> = shares
            .into_iter()
            .map(|share| scope.spawn(move || run(share)))
            .collect();
        let mut done = run(std::mem::take(&mut first));
        for h in handles {
            // A panic in an engine is a bug; let it reach the caller.
            done.extend(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        }
        done
    });
    done.sort_unstable_by_key(|(i, _)| *i);
    debug_assert_eq!(done.len(), count);
    done.into_iter().map(|(_, r)| r).collect()
}

/// The changelog messages of one partition's commit.
fn changelog_messages(topic: &str, p: i32, commit: &Commit) -> Result<Vec<Outgoing>, StateError> {
    Ok(commit
        .changelog()
        .map_err(EngineError::from)?
        .into_iter()
        .map(|r| Outgoing {
            topic: topic.to_owned(),
            partition: Some(p),
            key: Some(r.key),
            payload: r.value,
            headers: Vec::new(),
        })
        .collect())
}

impl Core {
    /// Hand a reloaded rule set and objection list to every engine.
    fn reload_if_changed(&mut self) {
        let (rules, opt_out, generation) = self.role.control.get();
        if generation != self.generation {
            for engine in self.engines.values_mut() {
                engine.set_rules(rules.clone());
                engine.set_opt_out(opt_out.clone());
            }
            self.generation = generation;
        }
    }
}

/// Run the retention purge on every assigned partition if it is due, each
/// chunk in a transaction of its own.
fn purge_if_due(
    core: &Arc<Mutex<Core>>,
    producer: &TxnProducer,
    observer: &Arc<dyn BatchObserver>,
) -> Result<Option<SessionEnd>, StateError> {
    let gate = lock(core).role.gate.clone();
    let _gate = hold(&gate);
    let mut c = lock(core);
    let c = &mut *c;
    let Some((retention, every)) = c.role.retention.clone() else {
        return Ok(None);
    };
    if c.next_purge.is_none_or(|t| Instant::now() < t) {
        return Ok(None);
    }
    c.next_purge = Some(Instant::now() + every);
    let started = Instant::now();
    let changelog = c.role.settings.changelog_topic.clone();
    let settings = c.role.settings.clone();
    let mut total = vroeg_engine::PurgeStats::default();
    let mut fatal = None;
    for (p, engine) in c.engines.iter_mut() {
        let store = engine.store().clone();
        let mut write = |commit: Commit| -> Result<(), EngineError> {
            let mut messages =
                changelog_messages(&changelog, *p, &commit).map_err(|e| match e {
                    StateError::Engine(e) => e,
                    other => EngineError::Encode(other.to_string()),
                })?;
            // The deletions of purged case records, for the read models.
            messages.extend(commit.outbox.iter().map(|e| outgoing(&settings, e)));
            match producer.commit(&messages, &TopicPartitionList::new(), None) {
                Ok(landed) => {
                    observer.transaction(true);
                    let next = match landed.get(&(changelog.clone(), *p)) {
                        Some(last) => last + 1,
                        None => store.changelog_offset()?.unwrap_or(0),
                    };
                    store.commit_cached(&commit, Some(next))?;
                    Ok(())
                }
                Err(e) => {
                    observer.transaction(false);
                    Err(EngineError::Sink(vroeg_engine::SinkError {
                        destination: "kafka",
                        message: e.to_string(),
                    }))
                }
            }
        };
        match engine.purge_with(wall_now(), &retention, &mut write) {
            Ok(stats) => {
                total.cases += stats.cases;
                total.households += stats.households;
                total.signals += stats.signals;
            }
            // The purge is idempotent: the next run finishes it.
            Err(EngineError::Sink(e)) => {
                fatal = Some(e.to_string());
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }
    observer.purged(&total);
    info!(
        cases = total.cases,
        households = total.households,
        signals = total.signals,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "retention purge done"
    );
    Ok(fatal.map(SessionEnd::Fatal))
}
