//! Publishing signal files to Kafka: `vroeg send`, for partners testing
//! their feed, for loading a topic before a benchmark, and for tests.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::util::Timeout;
use serde_json::Value;

use crate::settings::ContentMode;

/// Counts the messages the broker did not take, and logs the client's
/// reports like the service does.
#[derive(Default)]
struct Deliveries {
    failed: std::sync::atomic::AtomicU64,
    first: std::sync::Mutex<Option<KafkaError>>,
}

impl ClientContext for Deliveries {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        crate::client_log::log("send", level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        crate::client_log::error("send", &error, reason);
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result {
            self.failed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.first
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert_with(|| error.clone());
        }
    }
}

/// Publish JSON-lines signals to `topic`, one message per line, keyed by
/// the CloudEvent `source` (so a partner's signals share a partition). In binary mode the CloudEvents attributes go to
/// `ce_*` headers and `data` is the value; a line that is not a JSON object
/// is sent as it is (so invalid input can be tested). Returns the count.
pub fn send_lines(
    brokers: &str,
    client: &BTreeMap<String, String>,
    topic: &str,
    mode: ContentMode,
    lines: impl BufRead,
) -> Result<u64, SendError> {
    let mut config = ClientConfig::new();
    for (k, v) in client {
        config.set(k, v);
    }
    let producer: ThreadedProducer<Deliveries> = config
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // Keyed lines go by their key's hash; lines without a key (not a
        // JSON object) all go to one partition, so that sending the same
        // file twice gives the same partitions and offsets.
        .set("partitioner", "consistent")
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "500000")
        .set("message.max.bytes", "2097152")
        .create_with_context(Deliveries::default())
        .map_err(SendError::Kafka)?;
    let mut sent = 0u64;
    for line in lines.split(b'\n') {
        let line = line.map_err(SendError::Io)?;
        if line.is_empty() {
            continue;
        }
        let parsed: Option<serde_json::Map<String, Value>> = serde_json::from_slice(&line).ok();
        let key = parsed
            .as_ref()
            .and_then(|m| m.get("source"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let (payload, headers) = match (mode, parsed) {
            (ContentMode::Binary, Some(mut event)) => {
                let data = event.remove("data").unwrap_or(Value::Null);
                let mut headers = OwnedHeaders::new();
                for (k, v) in &event {
                    let value = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    let name = if k == "datacontenttype" {
                        "content-type".to_owned()
                    } else {
                        format!("ce_{k}")
                    };
                    headers = headers.insert(Header {
                        key: &name,
                        value: Some(value.as_bytes()),
                    });
                }
                (serde_json::to_vec(&data).unwrap_or_default(), Some(headers))
            }
            _ => (line, None),
        };
        let mut record: BaseRecord<'_, String, Vec<u8>> = BaseRecord::to(topic).payload(&payload);
        if let Some(k) = &key {
            record = record.key(k);
        }
        if let Some(h) = headers {
            record = record.headers(h);
        }
        let mut record = record;
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(SendError::Kafka(e)),
            }
        }
        sent += 1;
    }
    producer
        .flush(Timeout::After(Duration::from_secs(60)))
        .map_err(SendError::Kafka)?;
    // A message the broker refused is not sent: say so, never count it.
    let context = producer.context();
    let failed = context.failed.load(std::sync::atomic::Ordering::Relaxed);
    if failed > 0 {
        let first = context
            .first
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        return Err(SendError::Refused {
            failed,
            of: sent,
            first: first.map_or_else(String::new, |e| e.to_string()),
        });
    }
    Ok(sent)
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("kafka: {0}")]
    Kafka(#[source] KafkaError),
    #[error(
        "the broker refused {failed} of {of} messages (the first: {first}); {} were delivered",
        of - failed
    )]
    Refused { failed: u64, of: u64, first: String },
    #[error("reading signals: {0}")]
    Io(#[source] std::io::Error),
}

/// Read every committed message of `topic` from the beginning (or, with
/// `since`, from each partition's first message whose Kafka timestamp is
/// at or after it) until each partition is read to the end it had when
/// the read began, and hand each to `visit` as a record of that topic
/// (`vroeg validate --topic`, `vroeg rules diff --topic`). Returns how many
/// were read.
pub fn read_topic(
    brokers: &str,
    topic: &str,
    since: Option<vroeg_core::time::Millis>,
    mut visit: impl FnMut(vroeg_engine::Record),
) -> Result<u64, ReadError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: BaseConsumer<crate::client_log::Logged> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "vroeg-validate")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create_with_context(crate::client_log::Logged("validate"))
        .map_err(ReadError::Kafka)?;
    let timeout = Duration::from_secs(30);
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(ReadError::Kafka)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(ReadError::NoTopic(topic.to_owned()));
    }
    let mut assignment = TopicPartitionList::new();
    for p in &partitions {
        let from = since.map_or(Offset::Beginning, Offset::Offset);
        assignment
            .add_partition_offset(topic, *p, from)
            .map_err(ReadError::Kafka)?;
    }
    if since.is_some() {
        assignment = consumer
            .offsets_for_times(assignment, timeout)
            .map_err(ReadError::Kafka)?;
    }
    // A partition with nothing at or after `since` is read already.
    let mut open: std::collections::BTreeSet<i32> = std::collections::BTreeSet::new();
    let mut from = TopicPartitionList::new();
    for e in assignment.elements() {
        if e.offset() != Offset::End {
            open.insert(e.partition());
            from.add_partition_offset(topic, e.partition(), e.offset())
                .map_err(ReadError::Kafka)?;
        }
    }
    consumer.assign(&from).map_err(ReadError::Kafka)?;
    let mut read = 0u64;
    let mut quiet = std::time::Instant::now();
    while !open.is_empty() {
        match consumer.poll(Duration::from_millis(500)) {
            None => {
                if quiet.elapsed() > timeout {
                    return Err(ReadError::Stalled(topic.to_owned()));
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
                quiet = std::time::Instant::now();
            }
            Some(Err(e)) => return Err(ReadError::Kafka(e)),
            Some(Ok(m)) => {
                quiet = std::time::Instant::now();
                visit(crate::consumer::record(&m));
                read += 1;
            }
        }
    }
    Ok(read)
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("kafka: {0}")]
    Kafka(#[source] KafkaError),
    #[error("topic {0:?} does not exist (or has no partitions)")]
    NoTopic(String),
    #[error("reading {0:?} stalled: no message and no end of a partition for 30 s")]
    Stalled(String),
}
