//! `config/vroeg.toml`: the service configuration.
//!
//! Read as a raw serde struct with `deny_unknown_fields`, overridden from
//! `VROEG_<SECTION>_<KEY>` environment variables, then [`RawConfig::validate`]
//! returns every problem at once. The household secret comes from
//! `VROEG_HOUSEHOLD_SECRET` (or `engine.household_secret`, not recommended).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;
use vroeg_kafka::{ContentMode, KafkaSettings};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub engine: RawEngine,
    #[serde(default)]
    pub kafka: RawKafka,
    #[serde(default)]
    pub api: RawApi,
    #[serde(default)]
    pub retention: RawRetention,
}

/// `[retention]`: how long Vroeg keeps what it no longer needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRetention {
    /// Closed cases, their signals and client details are deleted this many
    /// calendar months after closing.
    pub closed_case_months: u32,
    /// How often the purge runs; 0 turns it off.
    pub purge_interval_secs: u64,
}

impl RawRetention {
    /// The engine's retention policy.
    pub fn policy(&self) -> vroeg_engine::Retention {
        vroeg_engine::Retention {
            closed_case_months: self.closed_case_months,
        }
    }
}

impl Default for RawRetention {
    fn default() -> Self {
        RawRetention {
            closed_case_months: 12,
            purge_interval_secs: 3600,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawEngine {
    /// sled state directory.
    pub state_dir: PathBuf,
    /// sled page cache, in MiB.
    pub cache_mb: u64,
    /// Rule files or directories.
    pub rules: Vec<PathBuf>,
    /// Wijkteam routing (`config/wijkteams.yaml`); without it every case
    /// goes to the team `standaard`.
    pub routing: Option<PathBuf>,
    /// Combine school-absence signals with debt signals (AVG purpose binding).
    pub school_purpose: bool,
    /// Prefer `VROEG_HOUSEHOLD_SECRET`.
    pub household_secret: Option<String>,
    /// Largest accepted signal, in bytes.
    pub max_message_bytes: usize,
    /// How far into the future a signal's time may lie, in seconds.
    pub max_future_secs: u64,
    /// How long a graceful shutdown may take, in seconds.
    pub shutdown_deadline_secs: u64,
    /// `wall` (default): rules and timers run on the wall clock. `event`:
    /// on the signals' own time, as in `vroeg replay`, so that reprocessing
    /// a topic gives the same state and events (reconstruction, drills).
    pub clock: String,
    /// The objection list (AVG art. 21): addresses and persons whose
    /// signals are dropped at intake. See `vroeg_core::optout`.
    pub opt_out: Option<PathBuf>,
}

impl Default for RawEngine {
    fn default() -> Self {
        RawEngine {
            state_dir: PathBuf::from("state"),
            cache_mb: vroeg_store::DEFAULT_CACHE_BYTES >> 20,
            rules: vec![PathBuf::from("rules")],
            routing: None,
            school_purpose: false,
            household_secret: None,
            max_message_bytes: vroeg_core::signal::DEFAULT_MAX_BYTES,
            max_future_secs: 86_400,
            shutdown_deadline_secs: 30,
            clock: "wall".into(),
            opt_out: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawKafka {
    pub brokers: String,
    pub group_id: String,
    /// Static group membership id (`group.instance.id`); default
    /// `<group_id>-1`.
    pub instance_id: Option<String>,
    pub signal_topics: Vec<String>,
    pub alerts_topic: String,
    pub dlq_topic: String,
    /// Wijkteam feedback (contact attempts and outcomes), consumed.
    pub feedback_topic: String,
    /// The restricted status per signal for partners, produced.
    pub partner_feedback_topic: String,
    /// `structured` or `binary`.
    pub alerts_content_mode: String,
    pub batch_size: usize,
    pub batch_time_ms: u64,
    pub outbox_max: usize,
    pub delivery_timeout_ms: u64,
    /// CloudEvents `source` of the events Vroeg publishes.
    pub event_source: String,
    /// The household topic: valid signals and feedback, re-keyed by
    /// household (partitioned roles).
    pub household_topic: String,
    /// The compacted changelog of the household state (partitioned roles).
    pub changelog_topic: String,
    /// The compacted case topic that feeds the read models.
    pub cases_topic: String,
    /// Partitions of the household topic and the changelog; fixed once the
    /// topics exist.
    pub partitions: u32,
    /// `transaction.timeout.ms` of the transactional producers.
    pub transaction_timeout_ms: u64,
    /// Passed to librdkafka as they are.
    pub client: BTreeMap<String, toml::Value>,
}

impl Default for RawKafka {
    fn default() -> Self {
        RawKafka {
            brokers: "127.0.0.1:9092".into(),
            group_id: "vroeg".into(),
            instance_id: None,
            signal_topics: vec!["vroeg.signalen".into()],
            alerts_topic: "vroeg.meldingen".into(),
            dlq_topic: "vroeg.signalen.dlq".into(),
            feedback_topic: "vroeg.terugkoppeling".into(),
            partner_feedback_topic: "vroeg.partner-terugkoppeling".into(),
            alerts_content_mode: "structured".into(),
            batch_size: 500,
            batch_time_ms: 50,
            outbox_max: 100_000,
            delivery_timeout_ms: 30_000,
            event_source: "urn:vroeg".into(),
            household_topic: "vroeg.huishoudens".into(),
            changelog_topic: "vroeg.huishoudens.changelog".into(),
            cases_topic: "vroeg.zaken".into(),
            partitions: 12,
            transaction_timeout_ms: 60_000,
            client: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawApi {
    pub enabled: bool,
    pub listen: String,
    /// Bearer tokens of the case API, stored as SHA-256 hashes.
    pub tokens: Vec<RawToken>,
    /// A file of more `[[tokens]]` entries (the same fields), for example a
    /// mounted Kubernetes or Docker secret, so that tokens need no edit of
    /// this file. `VROEG_API_TOKENS_FILE` sets it; `VROEG_API_TOKENS` can
    /// also give the entries themselves, as a TOML array of inline tables.
    pub tokens_file: Option<std::path::PathBuf>,
    /// Serve the case API and the inbox from a read model this process
    /// keeps. `false`: `vroeg run` serves health and metrics only and keeps
    /// no read model, so that state instances do not each follow every
    /// case; `vroeg serve` instances serve the cases.
    pub case_api: bool,
    /// The case read model's sled directory: the API answers from it. It is
    /// rebuilt from the case topic when deleted.
    pub read_model_dir: PathBuf,
    /// The read model's sled page cache, in MiB: more is faster for the
    /// follower and the API, and uses more memory.
    pub read_model_cache_mb: u64,
    /// The inbox signs a session out after this many minutes without a
    /// request.
    pub session_idle_minutes: u32,
    /// Mark the inbox's session cookie `Secure`. On by itself with
    /// `tls_cert`; set it when a proxy in front serves the pages over TLS.
    pub secure_cookie: bool,
    /// Serve the API and the inbox over TLS (rustls) with this certificate
    /// chain (PEM)...
    pub tls_cert: Option<PathBuf>,
    /// ... and this private key (PEM).
    pub tls_key: Option<PathBuf>,
}

/// A tokens file: `[[tokens]]` entries.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTokensFile {
    #[serde(default)]
    tokens: Vec<RawToken>,
}

impl Default for RawApi {
    fn default() -> Self {
        RawApi {
            enabled: true,
            listen: "127.0.0.1:8080".into(),
            tokens: Vec::new(),
            tokens_file: None,
            case_api: true,
            read_model_dir: PathBuf::from("leesmodel"),
            read_model_cache_mb: vroeg_readmodel::DEFAULT_CACHE_BYTES >> 20,
            session_idle_minutes: 30,
            secure_cookie: false,
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// One `[[api.tokens]]` entry: a wijkteam's token, an admin token or a
/// read-only token.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    /// Who holds it; the audit log names this.
    pub name: String,
    /// SHA-256 of the token, hex (`vroeg token new` prints both).
    pub sha256: String,
    /// The wijkteam whose cases the token may see: a team of the routing
    /// file.
    #[serde(default)]
    pub team: Option<String>,
    /// An admin token sees every case and the audit log, exports and
    /// reloads.
    #[serde(default)]
    pub admin: bool,
    /// A read-only token sees every case and the audit log and changes
    /// nothing: for auditors and API tests.
    #[serde(default)]
    pub read_only: bool,
    /// The last day the token works (YYYY-MM-DD, Dutch time); none: no
    /// expiry.
    #[serde(default)]
    pub expires: Option<String>,
}

impl RawToken {
    fn role(&self) -> Option<vroeg_api::auth::Role> {
        use vroeg_api::auth::Role;
        match (&self.team, self.admin, self.read_only) {
            (Some(t), false, false) if !t.trim().is_empty() => Some(Role::Team(t.clone())),
            (None, true, false) => Some(Role::Admin),
            (None, false, true) => Some(Role::ReadOnly),
            _ => None,
        }
    }

    fn expires(&self) -> Option<vroeg_core::time::Day> {
        self.expires
            .as_deref()
            .and_then(vroeg_core::time::Day::parse)
    }
}

/// librdkafka settings that Vroeg manages itself; setting them in
/// `[kafka.client]` would break the delivery guarantees.
const MANAGED: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.idempotence",
    "acks",
    "group.instance.id",
    "statistics.interval.ms",
    "transactional.id",
    "isolation.level",
    "partition.assignment.strategy",
];

fn valid_topic(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 249
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The checked configuration.
pub struct Config {
    pub engine: RawEngine,
    pub retention: RawRetention,
    pub kafka: KafkaSettings,
    pub api: Option<SocketAddr>,
    pub api_tokens: Vec<vroeg_api::auth::TokenEntry>,
    /// Whether `vroeg run` serves the case API from a read model of its own.
    pub case_api: bool,
    pub read_model_dir: PathBuf,
    /// The read model's page cache, in bytes.
    pub read_model_cache_bytes: u64,
    /// The inbox's session idle limit, in minutes.
    pub session_idle_minutes: u32,
    pub secure_cookie: bool,
    /// The TLS certificate chain and key files, when the API serves TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub household_secret: Vec<u8>,
}

impl RawConfig {
    /// Every problem, not just the first.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let k = &self.kafka;
        if k.brokers.trim().is_empty() {
            problems.push("kafka.brokers: must name at least one broker (host:port)".into());
        }
        if k.group_id.trim().is_empty() {
            problems.push("kafka.group_id: must not be empty".into());
        }
        if k.instance_id
            .as_deref()
            .is_some_and(|i| i.trim().is_empty())
        {
            problems.push("kafka.instance_id: must not be empty when given".into());
        }
        if k.signal_topics.is_empty() {
            problems.push("kafka.signal_topics: must name at least one topic".into());
        }
        let outputs = [
            &k.alerts_topic,
            &k.dlq_topic,
            &k.partner_feedback_topic,
            &k.household_topic,
            &k.changelog_topic,
            &k.cases_topic,
        ];
        for t in k
            .signal_topics
            .iter()
            .chain(outputs)
            .chain([&k.feedback_topic])
        {
            if !valid_topic(t) {
                problems.push(format!("kafka: {t:?} is not a valid topic name (letters, digits, `.`, `_`, `-`; at most 249)"));
            }
        }
        for t in outputs {
            if k.signal_topics.contains(t) || *t == k.feedback_topic {
                problems.push(format!("kafka: {t:?} is both an input and an output topic"));
            }
        }
        if k.signal_topics.contains(&k.feedback_topic) {
            problems.push(format!(
                "kafka: {:?} is both a signal and the feedback topic",
                k.feedback_topic
            ));
        }
        let distinct: std::collections::BTreeSet<&String> = outputs.iter().copied().collect();
        if distinct.len() != outputs.len() {
            problems.push(
                "kafka: alerts_topic, dlq_topic, partner_feedback_topic, household_topic, changelog_topic and cases_topic must differ".into(),
            );
        }
        if !(1..=1000).contains(&k.partitions) {
            problems.push("kafka.partitions: must be from 1 to 1000".into());
        }
        if !(1000..=900_000).contains(&k.transaction_timeout_ms) {
            problems.push("kafka.transaction_timeout_ms: must be from 1000 to 900000".into());
        }
        if k.delivery_timeout_ms > k.transaction_timeout_ms {
            problems.push(
                "kafka.delivery_timeout_ms: must not exceed kafka.transaction_timeout_ms (librdkafka refuses a transactional producer otherwise)".into(),
            );
        }
        if !matches!(k.alerts_content_mode.as_str(), "structured" | "binary") {
            problems.push(format!(
                "kafka.alerts_content_mode: expected \"structured\" or \"binary\", found {:?}",
                k.alerts_content_mode
            ));
        }
        if k.batch_size == 0 || k.batch_size > 100_000 {
            problems.push("kafka.batch_size: must be from 1 to 100000".into());
        }
        if k.batch_time_ms == 0 || k.batch_time_ms > 60_000 {
            problems.push("kafka.batch_time_ms: must be from 1 to 60000".into());
        }
        if k.outbox_max < k.batch_size {
            problems.push("kafka.outbox_max: must be at least kafka.batch_size".into());
        }
        if k.delivery_timeout_ms < 1000 {
            problems.push("kafka.delivery_timeout_ms: must be at least 1000".into());
        }
        if !k.event_source.starts_with("urn:") {
            problems
                .push("kafka.event_source: must be a URN, e.g. urn:vroeg:gemeente-utrecht".into());
        }
        for (key, value) in &k.client {
            if MANAGED.contains(&key.as_str()) {
                problems.push(format!(
                    "kafka.client.{key:?}: Vroeg sets this itself; use the [kafka] keys instead"
                ));
            }
            if !matches!(
                value,
                toml::Value::String(_) | toml::Value::Integer(_) | toml::Value::Boolean(_)
            ) {
                problems.push(format!(
                    "kafka.client.{key:?}: must be a string, number or boolean"
                ));
            }
        }
        let a = &self.api;
        if !(1..=24 * 60).contains(&a.session_idle_minutes) {
            problems.push("api.session_idle_minutes: must be from 1 to 1440".into());
        }
        match (&a.tls_cert, &a.tls_key) {
            (Some(_), None) | (None, Some(_)) => problems.push(
                "api.tls_cert and api.tls_key: give both (a PEM certificate chain and its key), or neither".into(),
            ),
            (Some(cert), Some(key)) => {
                for (name, path) in [("tls_cert", cert), ("tls_key", key)] {
                    if !path.is_file() {
                        problems.push(format!("api.{name}: {} is not a file", path.display()));
                    }
                }
            }
            (None, None) => {}
        }
        let e = &self.engine;
        if e.rules.is_empty() {
            problems.push("engine.rules: must name at least one rule file or directory".into());
        }
        if e.max_message_bytes < 1024 || e.max_message_bytes > 16 * 1024 * 1024 {
            problems.push("engine.max_message_bytes: must be from 1024 to 16777216".into());
        }
        if !(16..=65_536).contains(&e.cache_mb) {
            problems.push("engine.cache_mb: must be from 16 to 65536".into());
        }
        if !(16..=65_536).contains(&self.api.read_model_cache_mb) {
            problems.push("api.read_model_cache_mb: must be from 16 to 65536".into());
        }
        if !matches!(e.clock.as_str(), "wall" | "event") {
            problems.push(format!(
                "engine.clock: {:?} is not `wall` or `event`",
                e.clock
            ));
        }
        let r = &self.retention;
        if !(1..=120).contains(&r.closed_case_months) {
            problems.push("retention.closed_case_months: must be from 1 to 120".into());
        }
        if let Some(p) = &e.opt_out {
            if !p.is_file() {
                problems.push(format!("engine.opt_out: {} is not a file", p.display()));
            }
        }
        if e.shutdown_deadline_secs == 0 {
            problems.push("engine.shutdown_deadline_secs: must be at least 1".into());
        }
        if self.api.enabled && self.api.listen.parse::<SocketAddr>().is_err() {
            problems.push(format!(
                "api.listen: {:?} is not an address such as 127.0.0.1:8080",
                self.api.listen
            ));
        }
        for (i, t) in self.api.tokens.iter().enumerate() {
            if t.name.trim().is_empty() {
                problems.push(format!("api.tokens[{i}].name: must not be empty"));
            }
            if t.role().is_none() {
                problems.push(format!(
                    "api.tokens[{i}] ({:?}): set exactly one of `team = \"<wijkteam>\"`, `admin = true` or `read_only = true`",
                    t.name
                ));
            }
            if let Some(e) = &t.expires {
                if t.expires().is_none() {
                    problems.push(format!(
                        "api.tokens[{i}].expires ({:?}): {e:?} is not a date (YYYY-MM-DD)",
                        t.name
                    ));
                }
            }
        }
        if let Err(errors) = vroeg_api::auth::Tokens::new(&self.token_entries()) {
            problems.extend(errors.iter().map(|e| format!("api.tokens: {e}")));
        }
        if secret_from(self).is_none() {
            problems.push("the household secret is not set: set VROEG_HOUSEHOLD_SECRET (or engine.household_secret)".into());
        }
        problems
    }
}

/// A team token must name a team of the routing file: a token for a team
/// that does not exist would see an empty inbox without a word.
fn token_teams(raw: &RawConfig) -> Vec<String> {
    let teams: Vec<(usize, &str, &str)> = raw
        .api
        .tokens
        .iter()
        .enumerate()
        .filter_map(|(i, t)| Some((i, t.name.as_str(), t.team.as_deref()?)))
        .collect();
    if teams.is_empty() {
        return Vec::new();
    }
    // A routing file that does not load is reported where it is used.
    let Ok(routing) = crate::run::load_routing(raw.engine.routing.as_deref()) else {
        return Vec::new();
    };
    let known = routing.teams();
    teams
        .into_iter()
        .filter(|(_, _, team)| !known.contains(team))
        .map(|(i, name, team)| {
            format!(
                "api.tokens[{i}] ({name:?}): team {team:?} is not a team of the routing ({}); known teams: {}",
                raw.engine
                    .routing
                    .as_deref()
                    .map_or("no engine.routing: every case goes to the default team".into(), |p| p.display().to_string()),
                known.join(", ")
            )
        })
        .collect()
}

impl RawConfig {
    fn token_entries(&self) -> Vec<vroeg_api::auth::TokenEntry> {
        self.api
            .tokens
            .iter()
            .filter_map(|t| {
                Some(vroeg_api::auth::TokenEntry {
                    name: t.name.clone(),
                    sha256: t.sha256.to_ascii_lowercase(),
                    role: t.role()?,
                    expires: t.expires(),
                })
            })
            .collect()
    }
}

fn secret_from(raw: &RawConfig) -> Option<String> {
    std::env::var("VROEG_HOUSEHOLD_SECRET")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            raw.engine
                .household_secret
                .clone()
                .filter(|s| !s.is_empty())
        })
}

/// Apply `VROEG_<SECTION>_<KEY>=value` overrides to the parsed TOML. Values
/// are read as TOML (`true`, `42`, `["a","b"]`), else as a string; a plain
/// string for a list key is split on commas.
fn apply_env(doc: &mut toml::Table, vars: impl Iterator<Item = (String, String)>) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, raw) in vars {
        let Some(rest) = name.strip_prefix("VROEG_") else {
            continue;
        };
        if matches!(
            rest,
            "LOG" | "LOG_JSON" | "HOUSEHOLD_SECRET" | "CLOCK_OFFSET_SECS" | "ROLE"
        ) || rest.starts_with("TEST_")
        {
            continue;
        }
        let lower = rest.to_ascii_lowercase();
        if rest == "KAFKA_SASL_PASSWORD" {
            // A secret, so not in the file: becomes kafka.client."sasl.password".
            let kafka = doc
                .entry("kafka")
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let Some(kafka) = kafka.as_table_mut() {
                let client = kafka
                    .entry("client")
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if let Some(client) = client.as_table_mut() {
                    client.insert("sasl.password".into(), toml::Value::String(raw));
                }
            }
            continue;
        }
        let Some((section, key)) = ["engine", "kafka", "api", "retention"]
            .iter()
            .find_map(|s| {
                lower
                    .strip_prefix(&format!("{s}_"))
                    .map(|k| (*s, k.to_owned()))
            })
        else {
            problems.push(format!(
                "{name}: not a VROEG_<ENGINE|KAFKA|API|RETENTION>_<KEY> override"
            ));
            continue;
        };
        let table = doc
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(table) = table.as_table_mut() else {
            continue;
        };
        let parsed = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.clone()));
        let list_key = matches!(key.as_str(), "signal_topics" | "rules");
        let value = match parsed {
            toml::Value::String(s) if list_key => toml::Value::Array(
                s.split(',')
                    .map(|p| toml::Value::String(p.trim().to_owned()))
                    .collect(),
            ),
            v => v,
        };
        table.insert(key, value);
    }
    problems
}

impl Config {
    /// Read, override from the environment, and validate. The error lists
    /// every problem.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut doc: toml::Table =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let mut problems = apply_env(&mut doc, std::env::vars());
        let mut raw: RawConfig = toml::Value::Table(doc)
            .try_into()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        if let Some(file) = raw.api.tokens_file.clone() {
            match std::fs::read_to_string(&file) {
                Err(e) => problems.push(format!(
                    "api.tokens_file: cannot read {}: {e}",
                    file.display()
                )),
                Ok(text) => match toml::from_str::<RawTokensFile>(&text) {
                    Err(e) => problems.push(format!("api.tokens_file: {}: {e}", file.display())),
                    Ok(more) => raw.api.tokens.extend(more.tokens),
                },
            }
        }
        problems.extend(raw.validate());
        problems.extend(token_teams(&raw));
        if !problems.is_empty() {
            anyhow::bail!(
                "{} has {} problem(s):\n  - {}",
                path.display(),
                problems.len(),
                problems.join("\n  - ")
            );
        }
        let secret = secret_from(&raw).unwrap_or_default().into_bytes();
        let k = &raw.kafka;
        let kafka = KafkaSettings {
            brokers: k.brokers.clone(),
            group_id: k.group_id.clone(),
            instance_id: k
                .instance_id
                .clone()
                .unwrap_or_else(|| format!("{}-1", k.group_id)),
            signal_topics: k.signal_topics.clone(),
            alerts_topic: k.alerts_topic.clone(),
            dlq_topic: k.dlq_topic.clone(),
            feedback_topic: k.feedback_topic.clone(),
            partner_feedback_topic: k.partner_feedback_topic.clone(),
            alerts_mode: if k.alerts_content_mode == "binary" {
                ContentMode::Binary
            } else {
                ContentMode::Structured
            },
            client: k
                .client
                .iter()
                .map(|(key, v)| {
                    let v = match v {
                        toml::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (key.clone(), v)
                })
                .collect(),
            batch_size: k.batch_size,
            batch_time: Duration::from_millis(k.batch_time_ms),
            outbox_max: k.outbox_max,
            delivery_timeout: Duration::from_millis(k.delivery_timeout_ms),
            event_source: k.event_source.clone(),
            household_topic: k.household_topic.clone(),
            changelog_topic: k.changelog_topic.clone(),
            cases_topic: k.cases_topic.clone(),
            partitions: k.partitions,
            transaction_timeout: Duration::from_millis(k.transaction_timeout_ms),
        };
        let api = if raw.api.enabled {
            raw.api.listen.parse().ok()
        } else {
            None
        };
        let api_tokens = raw.token_entries();
        Ok(Config {
            engine: raw.engine,
            retention: raw.retention,
            kafka,
            api,
            api_tokens,
            case_api: raw.api.case_api,
            read_model_dir: raw.api.read_model_dir.clone(),
            read_model_cache_bytes: raw.api.read_model_cache_mb << 20,
            session_idle_minutes: raw.api.session_idle_minutes,
            secure_cookie: raw.api.secure_cookie || raw.api.tls_cert.is_some(),
            tls: raw.api.tls_cert.clone().zip(raw.api.tls_key.clone()),
            household_secret: secret,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_come_from_a_secrets_file_and_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let hash = |c: char| c.to_string().repeat(64);
        let tokens = dir.path().join("tokens.toml");
        std::fs::write(
            &tokens,
            format!(
                "[[tokens]]\nname = \"noord\"\nsha256 = \"{}\"\nteam = \"noord\"\n",
                hash('a')
            ),
        )
        .unwrap();
        let config = dir.path().join("vroeg.toml");
        std::fs::write(
            &config,
            format!(
                "[engine]\nhousehold_secret = \"s\"\nrouting = {:?}\n[api]\ntokens_file = {:?}\n[[api.tokens]]\nname = \"beheer\"\nsha256 = \"{}\"\nadmin = true\n",
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/wijkteams.yaml").to_str().unwrap(),
                tokens.to_str().unwrap(),
                hash('b')
            ),
        )
        .unwrap();
        let loaded = Config::load(&config).unwrap();
        let names: Vec<&str> = loaded.api_tokens.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["beheer", "noord"]);
        // A broken file is a problem of the configuration, with its path.
        std::fs::write(&tokens, "[[tokens]]\nname = \"x\"\nkleur = 1\n").unwrap();
        let error = Config::load(&config).err().unwrap().to_string();
        assert!(
            error.contains("api.tokens_file") && error.contains("tokens.toml"),
            "{error}"
        );
        // The environment form: a TOML array of inline tables.
        let mut doc: toml::Table = toml::from_str("").unwrap();
        let problems = apply_env(
            &mut doc,
            [(
                "VROEG_API_TOKENS".to_string(),
                format!(
                    "[{{ name = \"zuid\", sha256 = \"{}\", team = \"zuid\" }}]",
                    hash('c')
                ),
            )]
            .into_iter(),
        );
        assert!(problems.is_empty(), "{problems:?}");
        let raw: RawConfig = toml::Value::Table(doc).try_into().unwrap();
        assert_eq!(raw.api.tokens.len(), 1);
        assert_eq!(raw.api.tokens[0].team.as_deref(), Some("zuid"));
    }

    #[test]
    fn every_problem_is_reported() {
        let raw: RawConfig = toml::from_str(
            r#"
            [kafka]
            brokers = ""
            signal_topics = ["in", "bad topic"]
            alerts_topic = "in"
            alerts_content_mode = "xml"
            batch_size = 0
            [kafka.client]
            "group.id" = "x"
            [api]
            listen = "nowhere"
            session_idle_minutes = 0
            tls_cert = "/no/such/cert.pem"
            [[api.tokens]]
            name = "noord"
            sha256 = "abc"
            team = "noord"
            [[api.tokens]]
            name = "beide"
            sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
            team = "noord"
            admin = true
            "#,
        )
        .unwrap();
        let problems = raw.validate().join("\n");
        for needle in [
            "kafka.brokers",
            "\"bad topic\"",
            "both an input and an output",
            "alerts_content_mode",
            "batch_size",
            "\"group.id\"",
            "api.listen",
            "64 hexadecimal digits",
            "exactly one of `team",
            "api.session_idle_minutes",
            "give both",
        ] {
            assert!(problems.contains(needle), "missing {needle} in\n{problems}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<RawConfig>("[kafka]\nbrokerz = \"x\"").is_err());
    }

    #[test]
    fn environment_overrides() {
        let mut doc: toml::Table = toml::from_str("[kafka]\nbrokers = \"a:1\"").unwrap();
        let problems = apply_env(
            &mut doc,
            vec![
                ("VROEG_KAFKA_BROKERS".to_string(), "b:2".to_string()),
                ("VROEG_KAFKA_BATCH_SIZE".to_string(), "7".to_string()),
                ("VROEG_KAFKA_SIGNAL_TOPICS".to_string(), "x, y".to_string()),
                ("VROEG_API_CASE_API".to_string(), "false".to_string()),
                ("VROEG_NOPE".to_string(), "1".to_string()),
            ]
            .into_iter(),
        );
        let raw: RawConfig = toml::Value::Table(doc).try_into().unwrap();
        assert!(!raw.api.case_api);
        assert_eq!(raw.kafka.brokers, "b:2");
        assert_eq!(raw.kafka.batch_size, 7);
        assert_eq!(raw.kafka.signal_topics, vec!["x", "y"]);
        assert_eq!(problems.len(), 1);
    }
}

#[cfg(test)]
mod token_tests {
    use super::*;

    /// A config with these `[[api.tokens]]` lines and no routing file
    /// (every case to the default team, `standaard`).
    fn load_with(tokens: &str) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("vroeg.toml");
        std::fs::write(
            &config,
            format!("[engine]\nhousehold_secret = \"s\"\n[api]\n{tokens}"),
        )
        .unwrap();
        Config::load(&config).map_err(|e| format!("{e:#}"))
    }

    fn entry(name: &str, fill: char, role: &str) -> String {
        format!(
            "[[api.tokens]]\nname = {name:?}\nsha256 = \"{}\"\n{role}\n",
            fill.to_string().repeat(64)
        )
    }

    #[test]
    fn roles_expiry_and_teams_are_checked_and_every_problem_reported() {
        let ok = load_with(
            &[
                entry("team", 'a', "team = \"standaard\""),
                entry("beheer", 'b', "admin = true\nexpires = \"2027-01-31\""),
                entry("accountant", 'c', "read_only = true"),
            ]
            .concat(),
        )
        .unwrap();
        let roles: Vec<_> = ok.api_tokens.iter().map(|t| t.role.clone()).collect();
        use vroeg_api::auth::Role;
        assert_eq!(
            roles,
            [Role::Team("standaard".into()), Role::Admin, Role::ReadOnly]
        );
        assert_eq!(
            ok.api_tokens[1].expires,
            vroeg_core::time::Day::parse("2027-01-31")
        );

        let error = load_with(
            &[
                entry("west", 'a', "team = \"west\""),
                entry("beide", 'b', "admin = true\nread_only = true"),
                entry("datum", 'c', "read_only = true\nexpires = \"31-01-2027\""),
            ]
            .concat(),
        )
        .err()
        .expect("refused");
        assert!(error.contains("3 problem(s)"), "{error}");
        assert!(
            error.contains("team \"west\" is not a team of the routing")
                && error.contains("known teams: standaard"),
            "{error}"
        );
        assert!(error.contains("set exactly one of"), "{error}");
        assert!(error.contains("\"31-01-2027\" is not a date"), "{error}");
    }
}
