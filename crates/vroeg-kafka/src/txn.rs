//! One Kafka transaction per batch (exactly-once, KIP-98 and KIP-447).
//!
//! A [`TxnProducer`] has a `transactional.id` that stays the same across
//! restarts of one instance's role (`<instance_id>-intake`,
//! `<instance_id>-state`). [`TxnProducer::commit`] runs one transaction:
//! begin, produce every message, send the input offsets with the consumer's
//! group metadata, commit. Either all of it becomes visible to
//! `read_committed` consumers, or none of it.
//!
//! Errors are sorted the way librdkafka asks:
//! - retriable: the same call is tried again, a bounded number of times;
//! - abortable (`txn_requires_abort`): the transaction is aborted and
//!   [`TxnError::Aborted`] returned; the caller throws the batch away and
//!   rewinds its input;
//! - fatal (among them a producer fenced by a newer instance with the same
//!   id, or by a newer group generation): [`TxnError::Fatal`]; the caller
//!   must drop this producer and its consumer and start again, from what
//!   Kafka committed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::TopicPartitionList;
use tracing::warn;

use crate::producer::{idempotent_config, ProducerHealth};
use crate::settings::KafkaSettings;

/// One message of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    pub topic: String,
    /// `None`: librdkafka's partitioner chooses by key.
    pub partition: Option<i32>,
    pub key: Option<Vec<u8>>,
    /// `None`: a tombstone (compacted topics delete the key).
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum TxnError {
    /// The transaction was aborted: nothing of it is visible. Throw the
    /// batch away and read its input again.
    #[error("the transaction was aborted: {0}")]
    Aborted(#[source] KafkaError),
    /// The producer cannot be used again (fenced, or a fatal error).
    #[error("the transactional producer failed fatally: {0}")]
    Fatal(#[source] KafkaError),
}

/// How often a retriable error is retried before the transaction is
/// aborted.
const RETRIES: usize = 5;

/// Where each message of a committed transaction landed, by topic and
/// partition: the highest offset written there.
pub type Landed = BTreeMap<(String, i32), i64>;

pub struct TxnProducer {
    producer: FutureProducer<ProducerHealth>,
    timeout: Duration,
}

impl TxnProducer {
    /// Create the producer and initialise its transactions: this fences any
    /// older producer with the same id and aborts its open transaction.
    pub fn new(
        settings: &KafkaSettings,
        transactional_id: &str,
        health: Arc<crate::Health>,
    ) -> Result<TxnProducer, KafkaError> {
        let mut config = idempotent_config(settings);
        config
            .set("transactional.id", transactional_id)
            .set(
                "transaction.timeout.ms",
                settings.transaction_timeout.as_millis().to_string(),
            )
            .set("linger.ms", "5")
            .set("message.max.bytes", "2097152")
            .set("statistics.interval.ms", "2000");
        let producer: FutureProducer<ProducerHealth> =
            config.create_with_context(ProducerHealth::new(health))?;
        let timeout = settings.delivery_timeout;
        retry(|| producer.init_transactions(timeout))?;
        Ok(TxnProducer { producer, timeout })
    }

    /// One transaction: `messages`, then `offsets` (the next offsets to
    /// read) for the group of `group`. Returns the highest offset written
    /// per topic partition.
    pub fn commit(
        &self,
        messages: &[Outgoing],
        offsets: &TopicPartitionList,
        group: Option<&ConsumerGroupMetadata>,
    ) -> Result<Landed, TxnError> {
        retry(|| self.producer.begin_transaction()).map_err(|e| self.fail(e))?;
        let mut deliveries = Vec::with_capacity(messages.len());
        for m in messages {
            let mut headers = OwnedHeaders::new_with_capacity(m.headers.len());
            for (k, v) in &m.headers {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(v),
                });
            }
            let mut record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&m.topic).headers(headers);
            if let Some(p) = m.partition {
                record = record.partition(p);
            }
            if let Some(k) = &m.key {
                record = record.key(k.as_slice());
            }
            if let Some(p) = &m.payload {
                record = record.payload(p.as_slice());
            }
            loop {
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        deliveries.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        // librdkafka's queue is full: let it deliver.
                        record = r;
                        self.producer.poll(Duration::from_millis(50));
                    }
                    Err((error, _)) => return Err(self.fail(error)),
                }
            }
        }
        if offsets.count() > 0 {
            if let Some(group) = group {
                retry(|| {
                    self.producer
                        .send_offsets_to_transaction(offsets, group, self.timeout)
                })
                .map_err(|e| self.fail(e))?;
            } else {
                // No group metadata yet (not joined): nothing may commit.
                return Err(self.fail(KafkaError::Global(RDKafkaErrorCode::State)));
            }
        }
        retry(|| self.producer.commit_transaction(self.timeout)).map_err(|e| self.fail(e))?;
        // Committed: every delivery report is in.
        let mut landed = Landed::new();
        for (m, result) in messages
            .iter()
            .zip(futures::executor::block_on(join_all(deliveries)))
        {
            if let Ok(Ok(d)) = result {
                let e = landed
                    .entry((m.topic.clone(), d.partition))
                    .or_insert(d.offset);
                *e = (*e).max(d.offset);
            }
        }
        Ok(landed)
    }

    /// Sort an error: fatal, or abortable (then abort).
    fn fail(&self, error: KafkaError) -> TxnError {
        if is_fatal(&error) {
            return TxnError::Fatal(error);
        }
        match retry(|| self.producer.abort_transaction(self.timeout)) {
            Ok(()) => TxnError::Aborted(error),
            Err(abort) => {
                warn!(error = %abort, "failed to abort a transaction; the producer is replaced");
                TxnError::Fatal(error)
            }
        }
    }
}

fn is_fatal(error: &KafkaError) -> bool {
    match error {
        KafkaError::Transaction(e) => e.is_fatal(),
        _ => false,
    }
}

/// Call `f` until it succeeds or fails with an error that is not
/// retriable, at most [`RETRIES`] times.
fn retry(mut f: impl FnMut() -> Result<(), KafkaError>) -> Result<(), KafkaError> {
    let mut tries = 0;
    loop {
        match f() {
            Err(KafkaError::Transaction(e)) if e.is_retriable() && tries < RETRIES => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(100 << tries));
            }
            other => return other,
        }
    }
}

/// The next offsets to read, as a list for `send_offsets_to_transaction`.
pub fn offsets(next: &BTreeMap<(String, i32), i64>) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in next {
        // Adding a partition with an offset fails only for an invalid offset.
        let _ = tpl.add_partition_offset(topic, *partition, rdkafka::Offset::Offset(*offset));
    }
    tpl
}

/// Whether `error` is Kafka's (or librdkafka's) way of saying this
/// instance is a zombie.
pub fn is_fenced(error: &TxnError) -> bool {
    let code = match error {
        TxnError::Aborted(e) | TxnError::Fatal(e) => e.rdkafka_error_code(),
    };
    matches!(
        code,
        Some(
            RDKafkaErrorCode::Fenced
                | RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
                | RDKafkaErrorCode::FencedInstanceId
                | RDKafkaErrorCode::IllegalGeneration
                | RDKafkaErrorCode::UnknownMemberId
        )
    )
}
