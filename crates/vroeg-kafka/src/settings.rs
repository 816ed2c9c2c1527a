//! Settings the Kafka binding needs. The binary's config turns into these.

use std::collections::BTreeMap;
use std::time::Duration;

/// CloudEvents content mode on Kafka.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentMode {
    /// The whole event is the JSON value of the message.
    Structured,
    /// Attributes as `ce_*` headers, the data as the value.
    Binary,
}

#[derive(Clone, Debug)]
pub struct KafkaSettings {
    pub brokers: String,
    pub group_id: String,
    /// `group.instance.id`: static group membership, so that a restart
    /// resumes at once. One active instance per id.
    pub instance_id: String,
    pub signal_topics: Vec<String>,
    pub alerts_topic: String,
    pub dlq_topic: String,
    /// Wijkteam feedback (contact attempts, outcomes), consumed.
    pub feedback_topic: String,
    /// The restricted status per signal for partners, produced.
    pub partner_feedback_topic: String,
    pub alerts_mode: ContentMode,
    /// Passed to librdkafka as they are (SASL, SSL and the rest).
    pub client: BTreeMap<String, String>,
    /// Records per batch.
    pub batch_size: usize,
    /// The longest a record waits for its batch to fill.
    pub batch_time: Duration,
    /// Stop consuming while more outbox entries than this wait.
    pub outbox_max: usize,
    /// How long a producer waits for delivery before the outbox retries.
    pub delivery_timeout: Duration,
    /// The `source` of the CloudEvents Vroeg publishes.
    pub event_source: String,
    /// The household topic: intake's valid signals and feedback, keyed and
    /// partitioned by household.
    pub household_topic: String,
    /// The compacted changelog of the state, one partition per household
    /// partition.
    pub changelog_topic: String,
    /// The compacted case topic: every case record as it now is, keyed by
    /// case id, for the read models.
    pub cases_topic: String,
    /// Partitions of the household and changelog topics.
    pub partitions: u32,
    /// `transaction.timeout.ms`: longer than the longest batch.
    pub transaction_timeout: Duration,
}

impl KafkaSettings {
    /// The topics Vroeg consumes from outside: the partner topics and the
    /// wijkteam feedback topic.
    pub fn input_topics(&self) -> Vec<&str> {
        self.signal_topics
            .iter()
            .chain([&self.feedback_topic])
            .map(String::as_str)
            .collect()
    }
}
