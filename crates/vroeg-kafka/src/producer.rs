//! The Kafka sink: publishes outbox entries (alerts, dead letters) with an
//! idempotent producer and confirms only when every delivery report is in.

use std::time::Duration;

use futures::future::join_all;
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::statistics::Statistics;
use rdkafka::util::Timeout;
use rdkafka::ClientContext;
use tracing::warn;
use vroeg_engine::{Sink, SinkError};
use vroeg_store::{DeadLetter, Message};

use crate::cloudevents::encode_alert;
use crate::settings::KafkaSettings;
use crate::txn::Outgoing;

/// The `[kafka.client]` settings, then the ones Vroeg manages for an
/// idempotent producer: `enable.idempotence=true`, `acks=all`, and the
/// delivery timeout.
pub(crate) fn idempotent_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    // Defaults `[kafka.client]` may override. Keep a connection to every
    // broker, idle or not: with sparse connections (librdkafka's default)
    // an idle producer does not reconnect after an outage until it has
    // something to send, and `/readyz`, which waits for the producer to see
    // a broker again, stayed false through quiet periods. And try again at
    // least every 2 s (librdkafka backs off up to 10 s), so that readiness
    // returns within seconds of the broker.
    config
        .set("enable.sparse.connections", "false")
        .set("reconnect.backoff.max.ms", "2000")
        // Case events, case records and the changelog are JSON and
        // postcard with repeated names: LZ4 makes them a fraction of
        // their size on the wire and on the broker's disk, for little
        // CPU. Consumers decompress without being told.
        .set("compression.type", "lz4");
    for (k, v) in &settings.client {
        config.set(k, v);
    }
    config
        .set("bootstrap.servers", &settings.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set(
            "delivery.timeout.ms",
            settings.delivery_timeout.as_millis().to_string(),
        );
    config
}

/// The producer's view of the brokers, for `/readyz`. Its callbacks run on
/// the producer's own thread, so an outage shows even while the consumer's
/// thread waits on a delivery.
pub struct ProducerHealth(Arc<crate::Health>);

impl ProducerHealth {
    pub fn new(health: Arc<crate::Health>) -> Self {
        ProducerHealth(health)
    }
}

impl ClientContext for ProducerHealth {
    fn stats(&self, stats: Statistics) {
        crate::client_log::observe(&stats);
        if stats
            .brokers
            .values()
            .any(|b| b.nodeid >= 0 && b.state == "UP")
        {
            self.0.producer_down.store(false, Ordering::Relaxed);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::AllBrokersDown)
        ) {
            self.0.producer_down.store(true, Ordering::Relaxed);
        }
        crate::client_log::error("producer", &error, reason);
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        crate::client_log::log("producer", level, fac, message);
    }
}

pub struct KafkaSink {
    producer: FutureProducer<ProducerHealth>,
    settings: KafkaSettings,
}

impl KafkaSink {
    /// An idempotent producer (`enable.idempotence=true`, `acks=all`), plus
    /// the `[kafka.client]` settings.
    /// A sink that reports broker outages to `health` (see [`crate::Health`]).
    pub fn new(
        settings: &KafkaSettings,
        health: Arc<crate::Health>,
    ) -> Result<KafkaSink, rdkafka::error::KafkaError> {
        let mut config = idempotent_config(settings);
        config
            .set("linger.ms", "5")
            .set("message.max.bytes", "2097152")
            .set("statistics.interval.ms", "2000");
        Ok(KafkaSink {
            producer: config.create_with_context(ProducerHealth(health))?,
            settings: settings.clone(),
        })
    }

    /// Wait for outstanding deliveries (at shutdown).
    pub fn flush(&self, timeout: Duration) {
        if let Err(error) = self.producer.flush(Timeout::After(timeout)) {
            warn!(%error, "failed to flush the producer");
        }
    }
}

/// What an outbox message becomes on Kafka: its topic, key, headers and
/// payload. Case events are CloudEvents in the configured content mode;
/// a dead letter is the original record with its reason in `vroeg_*`
/// headers (docs/operations.md); a partner status is a small JSON object;
/// a case record is its JSON, or a tombstone for a deletion.
pub fn outgoing(settings: &KafkaSettings, message: &Message) -> Outgoing {
    let key = message.key().map(|k| k.as_bytes().to_vec());
    let (topic, headers, payload) = match message {
        Message::Alert(alert) => {
            let (h, p) = encode_alert(settings.alerts_mode, &settings.event_source, alert);
            (&settings.alerts_topic, h, Some(p))
        }
        Message::DeadLetter(d) => (
            &settings.dlq_topic,
            dead_letter_headers(d),
            Some(d.payload.clone()),
        ),
        Message::PartnerStatus { signal, status } => (
            &settings.partner_feedback_topic,
            Vec::new(),
            Some(partner_status(signal, *status)),
        ),
        Message::Case { record, .. } => (
            &settings.cases_topic,
            Vec::new(),
            record
                .as_ref()
                .map(|r| serde_json::to_vec(r).unwrap_or_default()),
        ),
    };
    Outgoing {
        topic: topic.clone(),
        partition: None,
        key,
        payload,
        headers,
    }
}

/// What a partner receives of one of its signals: only the source, the id
/// and the status, never content. The same JSON on the partner topic and in
/// replay's output.
pub fn partner_status(
    signal: &vroeg_core::state::SignalRef,
    status: vroeg_core::feedback::PartnerStatus,
) -> Vec<u8> {
    serde_json::json!({"source": signal.source, "id": signal.id, "status": status.as_str()})
        .to_string()
        .into_bytes()
}

/// A dead letter's Kafka headers: the original record's, then why it was
/// refused and where it came from.
pub fn dead_letter_headers(d: &DeadLetter) -> Vec<(String, Vec<u8>)> {
    let mut headers = d.headers.clone();
    let mut add = |name: &str, value: String| headers.push((name.to_owned(), value.into_bytes()));
    add("vroeg_error_code", d.error.code.as_str().to_owned());
    if let Some(field) = &d.error.field {
        add("vroeg_error_field", field.clone());
    }
    add("vroeg_error_detail", d.error.detail.clone());
    add("vroeg_source_topic", d.stream.clone());
    add("vroeg_source_partition", d.partition.to_string());
    add("vroeg_source_offset", d.offset.to_string());
    if let Some(cut) = &d.cut {
        add("vroeg_original_bytes", cut.bytes.to_string());
        add("vroeg_original_sha256", cut.sha256.clone());
    }
    headers
}

impl Sink for KafkaSink {
    fn send(&mut self, messages: &[Message]) -> Result<(), SinkError> {
        let mut deliveries = Vec::with_capacity(messages.len());
        for message in messages {
            let m = outgoing(&self.settings, message);
            let mut owned = OwnedHeaders::new_with_capacity(m.headers.len());
            for (k, v) in &m.headers {
                owned = owned.insert(Header {
                    key: k,
                    value: Some(v),
                });
            }
            let topic = &m.topic;
            let mut record = FutureRecord::to(topic).headers(owned);
            if let Some(payload) = &m.payload {
                record = record.payload(payload);
            }
            if let Some(key) = &m.key {
                record = record.key(key);
            }
            match self.producer.send_result(record) {
                Ok(delivery) => deliveries.push(delivery),
                Err((error, _)) => {
                    return Err(SinkError {
                        destination: "kafka",
                        message: format!("failed to enqueue to {topic}: {error}"),
                    })
                }
            }
        }
        // Confirm only when every message of the chunk is acknowledged.
        for result in futures::executor::block_on(join_all(deliveries)) {
            match result {
                Ok(Ok(_)) => {}
                Ok(Err((error, _))) => {
                    return Err(SinkError {
                        destination: "kafka",
                        message: format!("delivery failed: {error}"),
                    })
                }
                Err(_) => {
                    return Err(SinkError {
                        destination: "kafka",
                        message: "delivery was cancelled".into(),
                    })
                }
            }
        }
        Ok(())
    }
}

/// Publishes feedback taken by the case API to the feedback topic, from
/// where the engine applies it. Idempotent, `acks=all`.
#[derive(Clone)]
pub struct FeedbackProducer {
    producer: FutureProducer<crate::client_log::Logged>,
    topic: String,
    timeout: Duration,
}

impl FeedbackProducer {
    pub fn new(settings: &KafkaSettings) -> Result<FeedbackProducer, rdkafka::error::KafkaError> {
        Ok(FeedbackProducer {
            producer: idempotent_config(settings)
                .set("statistics.interval.ms", "2000")
                .create_with_context(crate::client_log::Logged("feedback"))?,
            topic: settings.feedback_topic.clone(),
            timeout: settings.delivery_timeout,
        })
    }

    /// Send one message (key: the case id) and wait for its delivery report.
    pub async fn send(&self, key: &str, payload: &[u8]) -> Result<(), rdkafka::error::KafkaError> {
        let record = FutureRecord::to(&self.topic).key(key).payload(payload);
        self.producer
            .send(record, Timeout::After(self.timeout))
            .await
            .map(|_| ())
            .map_err(|(error, _)| error)
    }
}
