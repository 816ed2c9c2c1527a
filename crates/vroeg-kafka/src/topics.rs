//! The topics Vroeg reads and writes, with their settings, and creating
//! them (`vroeg topics create`).
//!
//! The household topic and the changelog are Vroeg's own: `vroeg run`
//! creates them when they are missing, and refuses to start when their
//! partition counts differ from `kafka.partitions` (a changed count would
//! move households between partitions).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::client_log::Logged;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientConfig;

use crate::settings::KafkaSettings;
use tracing::{info, warn};

/// What a topic is for, which decides its settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Partner signals or wijkteam feedback: written by others.
    Input,
    /// Vroeg's household topic.
    Household,
    /// Vroeg's compacted changelog.
    Changelog,
    /// Vroeg's compacted case topic (any partition count: read models
    /// read every partition).
    Cases,
    /// Case events, dead letters, partner feedback.
    Output,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub role: Role,
    pub partitions: i32,
    pub config: Vec<(&'static str, String)>,
}

/// Every topic of a configuration, with its partition count and settings.
/// `input_partitions` is used for the partner and feedback topics.
pub fn plan(settings: &KafkaSettings, input_partitions: i32) -> Vec<TopicSpec> {
    let n = settings.partitions as i32;
    let spec = |name: &str, role, partitions, config: Vec<(&'static str, String)>| TopicSpec {
        name: name.to_owned(),
        role,
        partitions,
        config,
    };
    let mut out: Vec<TopicSpec> = settings
        .input_topics()
        .into_iter()
        .map(|t| spec(t, Role::Input, input_partitions, Vec::new()))
        .collect();
    out.push(spec(
        &settings.household_topic,
        Role::Household,
        n,
        // Signals are in the changelog once processed; a week is room for
        // any outage of the state role.
        vec![("retention.ms", (7 * 24 * 3600 * 1000u64).to_string())],
    ));
    out.push(spec(
        &settings.changelog_topic,
        Role::Changelog,
        n,
        vec![
            ("cleanup.policy", "compact".into()),
            // Roll segments hourly, so that compaction keeps restores short.
            ("segment.ms", (3600 * 1000u64).to_string()),
            // Tombstones (retention) stay a week: a cache that was away for
            // less still sees every deletion.
            ("delete.retention.ms", (7 * 24 * 3600 * 1000u64).to_string()),
        ],
    ));
    out.push(spec(
        &settings.cases_topic,
        Role::Cases,
        n,
        vec![
            ("cleanup.policy", "compact".into()),
            ("segment.ms", (3600 * 1000u64).to_string()),
            // A read model that was away for less than a week still sees
            // every purged case disappear.
            ("delete.retention.ms", (7 * 24 * 3600 * 1000u64).to_string()),
        ],
    ));
    out.push(spec(&settings.alerts_topic, Role::Output, n, Vec::new()));
    out.push(spec(&settings.dlq_topic, Role::Output, 1, Vec::new()));
    out.push(spec(
        &settings.partner_feedback_topic,
        Role::Output,
        input_partitions,
        Vec::new(),
    ));
    out
}

#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("failed to reach the brokers: {0}")]
    Client(#[source] KafkaError),
    #[error("failed to create topic {topic}: {source}")]
    Create {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error(
        "topic {topic} has {found} partitions, but kafka.partitions is {expected}; \
         the household topic and the changelog must both have kafka.partitions partitions \
         (changing the count moves households between partitions: start from new topics)"
    )]
    Partitions {
        topic: String,
        found: i32,
        expected: i32,
    },
    #[error("topic {0} does not exist")]
    Missing(String),
}

/// What happened to one topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Created { partitions: i32, replication: i32 },
    Exists { partitions: i32 },
}

fn admin(settings: &KafkaSettings) -> Result<AdminClient<Logged>, TopicError> {
    let mut config = ClientConfig::new();
    for (k, v) in &settings.client {
        config.set(k, v);
    }
    config
        .set("bootstrap.servers", &settings.brokers)
        .create_with_context(Logged("admin"))
        .map_err(TopicError::Client)
}

/// Partition counts of existing topics (absent: not there).
fn partition_counts(
    admin: &AdminClient<Logged>,
) -> Result<(std::collections::BTreeMap<String, i32>, usize), TopicError> {
    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(15))
        .map_err(TopicError::Client)?;
    let topics = metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| (t.name().to_owned(), t.partitions().len() as i32))
        .collect();
    Ok((topics, metadata.brokers().len()))
}

/// Create the topics of `specs` that do not exist yet, with replication
/// `replication` (default: 3, or the number of brokers if fewer) and
/// `min.insync.replicas` one less than that (at least 1). Existing topics
/// are left as they are, but a household topic or changelog with another
/// partition count is an error.
pub fn create(
    settings: &KafkaSettings,
    specs: &[TopicSpec],
    replication: Option<i32>,
) -> Result<Vec<(String, Outcome)>, TopicError> {
    let admin = admin(settings)?;
    let (existing, brokers) = partition_counts(&admin)?;
    let replication = replication.unwrap_or_else(|| (brokers as i32).clamp(1, 3));
    let min_insync = (replication - 1).max(1).to_string();
    let mut out = Vec::new();
    for spec in specs {
        if let Some(&found) = existing.get(&spec.name) {
            check_count(spec, found)?;
            out.push((spec.name.clone(), Outcome::Exists { partitions: found }));
            continue;
        }
        let mut topic = NewTopic::new(
            &spec.name,
            spec.partitions,
            TopicReplication::Fixed(replication),
        )
        .set("min.insync.replicas", &min_insync);
        for (k, v) in &spec.config {
            topic = topic.set(k, v);
        }
        let results =
            futures::executor::block_on(admin.create_topics([&topic], &AdminOptions::new()))
                .map_err(|source| TopicError::Create {
                    topic: spec.name.clone(),
                    source,
                })?;
        for result in results {
            match result {
                Ok(_) => out.push((
                    spec.name.clone(),
                    Outcome::Created {
                        partitions: spec.partitions,
                        replication,
                    },
                )),
                // Created meanwhile by another instance.
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    out.push((
                        spec.name.clone(),
                        Outcome::Exists {
                            partitions: spec.partitions,
                        },
                    ));
                }
                Err((_, code)) => {
                    return Err(TopicError::Create {
                        topic: spec.name.clone(),
                        source: KafkaError::AdminOp(code),
                    })
                }
            }
        }
    }
    // Topics created just now may take a moment to show in metadata;
    // check the counts of those that were there already only.
    Ok(out)
}

fn check_count(spec: &TopicSpec, found: i32) -> Result<(), TopicError> {
    if matches!(spec.role, Role::Household | Role::Changelog) && found != spec.partitions {
        return Err(TopicError::Partitions {
            topic: spec.name.clone(),
            found,
            expected: spec.partitions,
        });
    }
    Ok(())
}

/// Make sure Vroeg's own topics (household topic, changelog and case
/// topic) exist, the first two with `kafka.partitions` partitions: create
/// them if missing, refuse if their counts differ.
pub fn ensure_internal(settings: &KafkaSettings) -> Result<Vec<(String, Outcome)>, TopicError> {
    let specs: Vec<TopicSpec> = plan(settings, 1)
        .into_iter()
        .filter(|s| matches!(s.role, Role::Household | Role::Changelog | Role::Cases))
        .collect();
    create(settings, &specs, None)
}

/// Make sure the case topic exists (the single-node model and `vroeg
/// serve`, which do not create the household topics).
pub fn ensure_cases(settings: &KafkaSettings) -> Result<Vec<(String, Outcome)>, TopicError> {
    let specs: Vec<TopicSpec> = plan(settings, 1)
        .into_iter()
        .filter(|s| s.role == Role::Cases)
        .collect();
    create(settings, &specs, None)
}

/// [`ensure_internal`], retried until it succeeds or `stop` is set: at
/// start the brokers may not be reachable yet (the service stays alive and
/// not ready meanwhile). A partition count that differs from
/// `kafka.partitions` is not retried. Returns `false` when stopped first.
pub fn await_internal(settings: &KafkaSettings, stop: &AtomicBool) -> Result<bool, TopicError> {
    let mut wait = Duration::from_millis(500);
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(false);
        }
        match ensure_internal(settings) {
            Ok(outcomes) => {
                for (topic, outcome) in outcomes {
                    if let Outcome::Created {
                        partitions,
                        replication,
                    } = outcome
                    {
                        info!(topic, partitions, replication, "created topic");
                    }
                }
                return Ok(true);
            }
            Err(e @ TopicError::Partitions { .. }) => return Err(e),
            Err(e) => {
                warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "cannot make sure the household topic and changelog exist; retrying");
                let until = std::time::Instant::now() + wait;
                while std::time::Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                }
                wait = (wait * 2).min(Duration::from_secs(30));
            }
        }
    }
}
