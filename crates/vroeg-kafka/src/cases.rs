//! The read model's follower: it reads the case topic (`read_committed`)
//! into a [`ReadModel`], from the positions the read model stored with the
//! records, and reports how far behind it is.
//!
//! It joins no consumer group: every read model reads every partition, so
//! any number of them can run, and each starts where its own store left
//! off (from the beginning, when new or deleted: a rebuild).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tracing::{info, warn};
use vroeg_readmodel::{Incoming, PartitionProgress, Progress, ReadModel, ReadModelError};

use crate::client_log::Logged;
use crate::consumer::consumer_config;
use crate::settings::KafkaSettings;
use crate::wall_now;

#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("failed to create the read model's consumer: {0}")]
    Create(#[source] KafkaError),
    #[error("failed to assign the case topic {topic}: {source}")]
    Assign {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error(transparent)]
    ReadModel(#[from] ReadModelError),
}

/// Records per read-model batch at most.
const BATCH: usize = 2_000;

/// How often the ends of the partitions are read, for the lag.
const MEASURE_EVERY: Duration = Duration::from_secs(1);

/// Follow the case topic into `model` until `stop` is set. A record that
/// does not decode stops the follower with an error (the read model keeps
/// what it had, and says so through its lag).
pub fn follow(
    settings: &KafkaSettings,
    model: ReadModel,
    progress: Arc<Progress>,
    stop: Arc<AtomicBool>,
) -> Result<(), FollowError> {
    let topic = settings.cases_topic.clone();
    // The case topic may not exist yet (a new installation, or the
    // single-node model): create it, waiting for the brokers if need be.
    let mut wait = Duration::from_millis(500);
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        match crate::topics::ensure_cases(settings) {
            Ok(_) => break,
            Err(error) => {
                warn!(%error, topic, "cannot make sure the case topic exists; trying again");
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
    let mut config = consumer_config(settings);
    config
        .remove("group.instance.id")
        .set("group.id", format!("{}-leesmodel", settings.group_id))
        .set("isolation.level", "read_committed")
        .set("fetch.max.bytes", "16777216");
    let consumer: BaseConsumer<Logged> = config
        .create_with_context(Logged("readmodel"))
        .map_err(FollowError::Create)?;
    // The ends of the partitions are asked on connections of their own: on
    // the follower's, each request would queue behind its long-polling
    // fetches (a broker answers a connection's requests in order), and a
    // catch-up stalled for seconds while the lag went stale.
    let ends: BaseConsumer<Logged> = config
        .create_with_context(Logged("readmodel-lag"))
        .map_err(FollowError::Create)?;
    let mut assigned: BTreeMap<i32, ()> = BTreeMap::new();
    let mut next_measure = Instant::now();
    let mut batch: Vec<Incoming> = Vec::with_capacity(BATCH);
    let mut applied = 0u64;
    let started = Instant::now();
    let mut caught_up_logged = false;
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() >= next_measure {
            next_measure = Instant::now() + MEASURE_EVERY;
            // New partitions (or the first time): assign them from the
            // positions the read model holds.
            if let Ok(metadata) = consumer.fetch_metadata(Some(&topic), Duration::from_secs(2)) {
                let count = metadata
                    .topics()
                    .iter()
                    .find(|t| t.name() == topic)
                    .map_or(0, |t| t.partitions().len() as i32);
                if count as usize != assigned.len() && count > 0 {
                    let stored: BTreeMap<i32, i64> = model.positions()?.into_iter().collect();
                    let mut tpl = TopicPartitionList::new();
                    for p in 0..count {
                        let from = stored
                            .get(&p)
                            .map_or(Offset::Beginning, |o| Offset::Offset(*o));
                        let _ = tpl.add_partition_offset(&topic, p, from);
                        assigned.insert(p, ());
                    }
                    consumer
                        .assign(&tpl)
                        .map_err(|source| FollowError::Assign {
                            topic: topic.clone(),
                            source,
                        })?;
                    info!(
                        topic,
                        partitions = count,
                        "read model follows the case topic"
                    );
                }
            }
            let lag = measure(&consumer, &ends, &model, &topic, &assigned, &progress)?;
            if lag == Some(0) && !caught_up_logged {
                caught_up_logged = true;
                info!(
                    records = applied,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "read model caught up with the case topic"
                );
            }
        }
        if assigned.is_empty() {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        let deadline = Instant::now() + Duration::from_millis(100);
        while batch.len() < BATCH {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match consumer.poll(left) {
                None => break,
                Some(Ok(m)) => batch.push(Incoming {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().unwrap_or_default().to_vec(),
                    value: m.payload().map(<[u8]>::to_vec),
                }),
                // Broker trouble is logged by the client's context and
                // retried by librdkafka.
                Some(Err(_)) => break,
            }
        }
        if !batch.is_empty() {
            model.apply(&batch)?;
            applied += batch.len() as u64;
            batch.clear();
        }
    }
    Ok(())
}

/// Read the partitions' ends (with `ends`, the last stable offsets, as the
/// consumers are `read_committed`) and publish the progress; the lag, if
/// every end could be read.
fn measure(
    consumer: &BaseConsumer<Logged>,
    ends: &BaseConsumer<Logged>,
    model: &ReadModel,
    topic: &str,
    assigned: &BTreeMap<i32, ()>,
    progress: &Progress,
) -> Result<Option<i64>, FollowError> {
    let stored: BTreeMap<i32, i64> = model.positions()?.into_iter().collect();
    let position = consumer.position().ok();
    let mut out = Vec::new();
    for p in assigned.keys() {
        let Ok((_, high)) = ends.fetch_watermarks(topic, *p, Duration::from_secs(1)) else {
            return Ok(None);
        };
        // The consumer's position is past commit markers; the stored one
        // is the next offset after the last record applied.
        let fetched = position
            .as_ref()
            .and_then(|tpl| tpl.find_partition(topic, *p))
            .and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            });
        let applied = stored.get(p).copied().unwrap_or(0);
        let positie = fetched.map_or(applied, |f| f.max(applied));
        out.push(PartitionProgress {
            partitie: *p,
            positie,
            einde: high,
        });
    }
    progress.set(out, wall_now());
    Ok(progress.lag())
}
