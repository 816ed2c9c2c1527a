//! The pipeline between the consumer and the engine: the batch in flight,
//! the engine, and the sink that drains the outbox.
//!
//! It sits behind a mutex because two places drive it on the consumer's
//! thread: the poll loop, and the rebalance callback, which must finish the
//! batch in flight before partitions are given up.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};
use vroeg_engine::{BatchObserver, Engine, EngineError, Record, Retention};

use crate::producer::KafkaSink;

pub struct Pipeline {
    engine: Engine,
    sink: KafkaSink,
    observer: Arc<dyn BatchObserver>,
    pending: Vec<Record>,
    first_pending: Option<Instant>,
    outbox_depth: usize,
    /// Durable positions not yet acknowledged upstream, because their
    /// outbox entries are not all delivered yet.
    unacked: BTreeMap<(String, i32), i64>,
    /// The retention purge: its policy, interval and next run.
    retention: Option<(Retention, Duration, Instant)>,
}

/// The first purge after start waits at most this long.
const FIRST_PURGE: Duration = Duration::from_secs(60);

static CLOCK_OFFSET_MS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// Shift the service's clock by `ms` (for tests and drills of deadlines and
/// escalation: `VROEG_CLOCK_OFFSET_SECS`). Zero unless set at start-up.
pub fn set_clock_offset(ms: i64) {
    CLOCK_OFFSET_MS.store(ms, std::sync::atomic::Ordering::Relaxed);
}

/// Wall-clock milliseconds since the epoch, plus the clock offset.
pub fn wall_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
        + CLOCK_OFFSET_MS.load(std::sync::atomic::Ordering::Relaxed)
}

impl Pipeline {
    pub fn new(
        engine: Engine,
        sink: KafkaSink,
        observer: Arc<dyn BatchObserver>,
    ) -> Result<Self, EngineError> {
        let outbox_depth = engine.store().outbox_len()?;
        observer.outbox_depth(outbox_depth);
        Ok(Pipeline {
            engine,
            sink,
            observer,
            pending: Vec::new(),
            first_pending: None,
            outbox_depth,
            unacked: BTreeMap::new(),
            retention: None,
        })
    }

    /// Run the retention purge every `every` (the first run after at most a
    /// minute). Without this call the pipeline never purges.
    pub fn set_retention(&mut self, retention: Retention, every: Duration) {
        let first = Instant::now() + every.min(FIRST_PURGE);
        self.retention = Some((retention, every, first));
    }

    /// Purge, if a purge is due. Call it between batches.
    pub fn purge_if_due(&mut self) -> Result<(), EngineError> {
        let Some((retention, every, next)) = &mut self.retention else {
            return Ok(());
        };
        if Instant::now() < *next {
            return Ok(());
        }
        *next = Instant::now() + *every;
        let retention = retention.clone();
        let started = Instant::now();
        let stats = self.engine.purge(wall_now(), &retention)?;
        self.observer.purged(&stats);
        info!(
            cases = stats.cases,
            households = stats.households,
            signals = stats.signals,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "retention purge done"
        );
        Ok(())
    }

    pub fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    pub fn push(&mut self, record: Record) {
        if self.pending.is_empty() {
            self.first_pending = Some(Instant::now());
        }
        self.pending.push(record);
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// How long the oldest pending record has waited.
    pub fn waited(&self) -> Duration {
        self.first_pending.map(|t| t.elapsed()).unwrap_or_default()
    }

    pub fn outbox_depth(&self) -> usize {
        self.outbox_depth
    }

    /// Process the batch in flight (and due timers) as one atomic commit,
    /// then drain the outbox. Returns the positions to acknowledge upstream:
    /// those whose batch is durable **and** whose alerts and dead letters
    /// are delivered. While the outbox cannot drain, nothing is returned and
    /// the positions wait for a later flush.
    pub fn flush(&mut self) -> Result<BTreeMap<(String, i32), i64>, EngineError> {
        let started = Instant::now();
        let records = std::mem::take(&mut self.pending);
        self.first_pending = None;
        let stats = self.engine.process_batch(&records, wall_now())?;
        self.outbox_depth +=
            stats.alerts.values().sum::<u64>() as usize + stats.rejected_total() as usize;
        self.observer.batch(&stats, started.elapsed());
        for r in &records {
            let e = self
                .unacked
                .entry((r.stream.to_string(), r.partition))
                .or_insert(r.offset + 1);
            *e = (*e).max(r.offset + 1);
        }
        self.publish();
        Ok(self.acknowledgeable())
    }

    /// The durable positions that may be acknowledged upstream now: all of
    /// them once the outbox is empty, none before.
    pub fn acknowledgeable(&mut self) -> BTreeMap<(String, i32), i64> {
        if self.outbox_depth == 0 {
            std::mem::take(&mut self.unacked)
        } else {
            BTreeMap::new()
        }
    }

    /// Drain the outbox into Kafka. A failure leaves the entries in the
    /// outbox for the next attempt; it is logged and counted, not fatal.
    pub fn publish(&mut self) -> bool {
        match self.engine.publish_outbox(&mut self.sink, usize::MAX) {
            Ok(n) => {
                self.outbox_depth = self.outbox_depth.saturating_sub(n);
                if n > 0 {
                    self.observer.published(n);
                }
                self.observer.outbox_depth(self.outbox_depth);
                true
            }
            Err(error) => {
                warn!(%error, outbox_depth = self.outbox_depth, "failed to publish the outbox; will retry");
                self.observer.publish_failed();
                // The count may be off after a partial failure; read it back.
                if let Ok(depth) = self.engine.store().outbox_len() {
                    self.outbox_depth = depth;
                }
                self.observer.outbox_depth(self.outbox_depth);
                false
            }
        }
    }

    pub fn observer(&self) -> &Arc<dyn BatchObserver> {
        &self.observer
    }

    /// Wait for the producer's outstanding deliveries (shutdown).
    pub fn flush_producer(&self, timeout: Duration) {
        self.sink.flush(timeout);
    }
}
