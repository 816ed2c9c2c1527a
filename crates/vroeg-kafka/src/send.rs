//! Publishing signal files to Kafka: `vroeg send`, for partners testing
//! their feed, for loading a topic before a benchmark, and for tests.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::util::Timeout;
use serde_json::Value;

use crate::settings::ContentMode;

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
    let producer: ThreadedProducer<DefaultProducerContext> = config
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
        .create()
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
    Ok(sent)
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("kafka: {0}")]
    Kafka(#[source] KafkaError),
    #[error("reading signals: {0}")]
    Io(#[source] std::io::Error),
}
