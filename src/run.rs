//! `vroeg run`: the streaming service. Kafka in, Kafka out, effectively
//! once (see `vroeg_engine::guarantees`), with the HTTP API beside it.
//!
//! The consumer loop runs on its own thread (sled and librdkafka are
//! blocking); the API and signal handling run on a small tokio runtime. On
//! SIGTERM or SIGINT the loop stops polling, finishes the batch, drains the
//! outbox and commits; the process exits 0 if that fits in the shutdown
//! deadline, 1 otherwise. A store failure stops consumption and exits 1.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use tracing::{error, info, warn};
use vroeg_api::Metrics;
use vroeg_engine::{ClockMode, Engine, EngineConfig};
use vroeg_kafka::control::Control;
use vroeg_kafka::intake::{run_intake, IntakeRole};
use vroeg_kafka::state::{hold, run_state, ReadGate, StateRole};
use vroeg_kafka::{run_consumer, Health, KafkaSink, Pipeline};
use vroeg_rules::{LoadOptions, RuleSet};
use vroeg_store::Store;

use crate::config::Config;

#[derive(Args)]
pub struct RunArgs {
    /// The configuration file.
    #[arg(long, default_value = "config/vroeg.toml")]
    pub config: PathBuf,
    /// What this process does. `all` (the default): intake and state,
    /// partitioned over Kafka; several instances with one group id share
    /// the work. `intake` or `state`: one of the two. `single`: the
    /// single-node model of earlier releases, without the household topic
    /// (positions and an outbox in sled). Without this option, a state
    /// directory that holds the single-node model keeps running as
    /// `single`.
    #[arg(long, env = "VROEG_ROLE", value_enum)]
    pub role: Option<Role>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    All,
    Intake,
    State,
    Single,
}

impl Role {
    fn intake(self) -> bool {
        matches!(self, Role::All | Role::Intake)
    }
    fn state(self) -> bool {
        matches!(self, Role::All | Role::State)
    }
}

#[derive(Args)]
pub struct SendArgs {
    /// Bootstrap servers (host:port,...).
    #[arg(long, env = "VROEG_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    #[arg(long, default_value = "vroeg.signalen")]
    pub topic: String,
    /// Signals as JSON lines (`-` for standard input).
    #[arg(long)]
    pub signals: PathBuf,
    /// Send CloudEvents in binary mode (ce_* headers) instead of structured.
    #[arg(long)]
    pub binary: bool,
}

pub fn send(args: &SendArgs) -> anyhow::Result<ExitCode> {
    let mode = if args.binary {
        vroeg_kafka::ContentMode::Binary
    } else {
        vroeg_kafka::ContentMode::Structured
    };
    let started = std::time::Instant::now();
    let n = if args.signals.as_os_str() == "-" {
        vroeg_kafka::send::send_lines(
            &args.brokers,
            &Default::default(),
            &args.topic,
            mode,
            std::io::stdin().lock(),
        )?
    } else {
        let file = std::fs::File::open(&args.signals)
            .with_context(|| format!("cannot open {}", args.signals.display()))?;
        let reader = std::io::BufReader::with_capacity(1 << 20, file);
        vroeg_kafka::send::send_lines(
            &args.brokers,
            &Default::default(),
            &args.topic,
            mode,
            reader,
        )?
    };
    eprintln!(
        "sent {n} messages to {} in {:.1}s",
        args.topic,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct StateArgs {
    /// The sled state directory.
    #[arg(long, default_value = "state")]
    pub state: PathBuf,
}

pub fn open_state(args: &StateArgs) -> anyhow::Result<Store> {
    anyhow::ensure!(
        args.state.join("conf").exists(),
        "{} is not a Vroeg state directory",
        args.state.display()
    );
    let store = Store::open(&args.state, false).with_context(|| {
        format!(
            "cannot open {} (is the service still running? or is the directory damaged, e.g. copied while it ran?)",
            args.state.display()
        )
    })?;
    // A partitioned instance's cases and households are in the caches of
    // the household partitions it held last.
    Ok(store.spanning())
}

pub fn state_dump(args: &StateArgs) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    let store = open_state(args)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for item in store.households() {
        let (key, state) = item?;
        serde_json::to_writer(
            &mut out,
            &serde_json::json!({ "household": key.0, "state": state }),
        )?;
        out.write_all(b"\n")?;
    }
    for record in store.cases() {
        let record = record?;
        serde_json::to_writer(
            &mut out,
            &serde_json::json!({ "case": record.id, "record": record }),
        )?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct PurgeArgs {
    /// The service configuration (state directory, rules, `[retention]`).
    #[arg(long, default_value = "config/vroeg.toml")]
    pub config: PathBuf,
    /// Purge as on this day (YYYY-MM-DD, start of the day, UTC) instead of
    /// now: to see what a later purge would delete, or in drills.
    #[arg(long, value_parser = crate::export::parse_day)]
    pub at: Option<vroeg_core::time::Day>,
}

pub fn state_purge(args: &PurgeArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    let now = args
        .at
        .map_or_else(vroeg_kafka::wall_now, |day| day.start_millis());
    let rules = load_rules(&config)?;
    let store = open_state(&StateArgs {
        state: config.engine.state_dir.clone(),
    })?;
    anyhow::ensure!(
        store.partitions().is_empty(),
        "{} is the state of the partitioned roles: there, the running service purges through the changelog (retention.purge_interval_secs); a purge of the cache alone would be undone by the next restore",
        config.engine.state_dir.display()
    );
    // The purge follows the wall clock here, whatever engine.clock says:
    // `now` is given.
    let engine_config = EngineConfig::new(config.household_secret.clone(), ClockMode::Wall);
    let mut engine = Engine::new(store, Arc::new(rules), engine_config)?;
    let stats = engine.purge(now, &config.retention.policy())?;
    engine.store().flush()?;
    println!(
        "purged {} closed case(s), {} household(s), {} signal(s)",
        stats.cases, stats.households, stats.signals
    );
    Ok(ExitCode::SUCCESS)
}

pub fn state_stats(args: &StateArgs) -> anyhow::Result<ExitCode> {
    let store = open_state(args)?;
    let (mut households, mut open_cases, mut with_timer) = (0u64, 0u64, 0u64);
    for item in store.households() {
        let (_, state) = item?;
        households += 1;
        open_cases += u64::from(state.case.is_some());
        with_timer += u64::from(state.timer_due.is_some());
    }
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    writeln!(out, "households      {households}")?;
    writeln!(out, "open cases      {open_cases}")?;
    writeln!(out, "with a timer    {with_timer}")?;
    writeln!(out, "outbox entries  {}", store.outbox_len()?)?;
    writeln!(out, "purged (counter kept) {}", store.retired_len())?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct ConfigCheckArgs {
    /// The configuration file.
    #[arg(default_value = "config/vroeg.toml")]
    pub file: PathBuf,
}

fn load_rules(config: &Config) -> anyhow::Result<RuleSet> {
    let options = LoadOptions {
        school_purpose: config.engine.school_purpose,
        ..LoadOptions::default()
    };
    let (rules, _) = RuleSet::load(&config.engine.rules, &options).map_err(|diags| {
        anyhow::anyhow!(
            "the rule set does not load ({} error(s)):\n{diags}",
            diags.errors().count()
        )
    })?;
    Ok(rules)
}

/// The objection list the config names (empty without one). Errors name
/// the file, line and column; none echoes a BSN.
pub fn load_opt_out(
    path: Option<&std::path::Path>,
    secret: &[u8],
) -> anyhow::Result<vroeg_core::optout::OptOut> {
    let Some(path) = path else {
        return Ok(Default::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the objection list {}", path.display()))?;
    let keyer = vroeg_core::HouseholdKeyer::new(secret);
    vroeg_core::optout::OptOut::parse(&text, &keyer).map_err(|errors| {
        anyhow::anyhow!(
            "the objection list does not load ({} error(s)):\n{}",
            errors.len(),
            errors
                .iter()
                .map(|e| format!("  {}:{e}", path.display()))
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

/// What a reload does with a rule set and objection list that loaded:
/// returns the version of the rule set it replaces.
type Apply = Box<dyn Fn(Arc<RuleSet>, Arc<vroeg_core::optout::OptOut>) -> String + Send + Sync>;

/// The case API's tokens of a checked configuration.
fn tokens_of(config: &Config) -> Result<vroeg_api::auth::Tokens, Vec<String>> {
    let tokens = vroeg_api::auth::Tokens::new(&config.api_tokens).map_err(|errors| {
        errors
            .iter()
            .map(|e| format!("api.tokens: {e}"))
            .collect::<Vec<_>>()
    })?;
    let expired = tokens.expired(vroeg_kafka::wall_now());
    if expired > 0 {
        warn!(
            expired,
            "api tokens past their expiry day are refused (401); remove them from the config"
        );
    }
    Ok(tokens)
}

/// Read the configuration file again for its tokens, with every check of
/// a start (a team token must name a team of the routing).
fn reload_tokens(path: &std::path::Path) -> Result<vroeg_api::auth::Tokens, Vec<String>> {
    let config = Config::load(path).map_err(|e| {
        format!("{e:#}")
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    })?;
    tokens_of(&config)
}

/// What a reload reloads: the tokens (where this process serves the case
/// API) and the rules (where it runs the engine).
struct Reloads {
    config_path: PathBuf,
    tokens: Option<Arc<vroeg_api::auth::TokenSet>>,
    rules: Option<Apply>,
}

/// Reload the configuration's tokens, and the configured rule files and
/// objection list, which go to `apply`. Everything is loaded first; if any
/// part is refused, every error is logged and nothing changes. The rule
/// swap waits for the batch in flight.
fn reloader(config: &Config, metrics: Arc<Metrics>, reloads: Reloads) -> vroeg_api::Reload {
    let paths = config.engine.rules.clone();
    let options = LoadOptions {
        school_purpose: config.engine.school_purpose,
        ..LoadOptions::default()
    };
    let (opt_out_path, secret) = (
        config.engine.opt_out.clone(),
        config.household_secret.clone(),
    );
    let refused = move |metrics: &Metrics, what: &str, errors: Vec<String>| {
        for error in &errors {
            error!(%error, "{what} refused");
        }
        warn!(
            errors = errors.len(),
            "the reload is refused; the previous rules and tokens stay in force"
        );
        metrics.reload_failed();
        errors
    };
    Arc::new(move || {
        let tokens = match &reloads.tokens {
            None => None,
            Some(_) => Some(
                reload_tokens(&reloads.config_path)
                    .map_err(|e| refused(&metrics, "configuration", e))?,
            ),
        };
        let rules = match &reloads.rules {
            None => None,
            Some(_) => {
                let (rules, _) = RuleSet::load(&paths, &options).map_err(|diags| {
                    refused(
                        &metrics,
                        "rule set",
                        diags.errors().map(|d| d.to_string()).collect(),
                    )
                })?;
                // The objection list is read again too; a broken list is
                // refused like a broken rule set.
                let opt_out = load_opt_out(opt_out_path.as_deref(), &secret).map_err(|e| {
                    refused(
                        &metrics,
                        "objection list",
                        e.to_string().lines().map(str::to_owned).collect(),
                    )
                })?;
                Some((rules, opt_out))
            }
        };
        let mut done = vroeg_api::Reloaded {
            regelset: None,
            tokens: 0,
        };
        if let (Some(set), Some(tokens)) = (&reloads.tokens, tokens) {
            done.tokens = tokens.len();
            set.set(tokens);
            info!(tokens = done.tokens, "api tokens reloaded");
        }
        if let (Some(apply), Some((rules, opt_out))) = (&reloads.rules, rules) {
            let version = rules.version.to_string();
            let entries = opt_out.len();
            let old = apply(Arc::new(rules), Arc::new(opt_out));
            info!(from = %old, to = %version, opt_out_entries = entries, "rule set reloaded");
            metrics.rule_set(&version);
            done.regelset = Some(version);
        }
        Ok(done)
    })
}

/// Reload on every SIGHUP, until the runtime stops.
fn reload_on_hangup(reload: vroeg_api::Reload) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            warn!("cannot listen for SIGHUP; reload with POST /admin/reload");
            return;
        };
        while hup.recv().await.is_some() {
            info!("SIGHUP: reloading the rule files and the api tokens");
            let reload = reload.clone();
            let _ = tokio::task::spawn_blocking(move || reload()).await;
        }
    });
}

/// The API's TLS configuration, loaded now (a bad file stops the start).
fn load_tls(config: &Config) -> anyhow::Result<Option<vroeg_api::TlsConfig>> {
    let Some((cert, key)) = &config.tls else {
        return Ok(None);
    };
    let tls = vroeg_api::Tls {
        cert: cert.clone(),
        key: key.clone(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    Ok(Some(runtime.block_on(vroeg_api::load_tls(&tls))?))
}

/// The inbox's settings: the session limits from `[api]`, the team names
/// from the routing file, and the rule descriptions for the explanations
/// (where the rules load; `vroeg serve` may run without them).
fn inbox_settings(config: &Config) -> anyhow::Result<vroeg_api::inbox::Settings> {
    let routing = load_routing(config.engine.routing.as_deref())?;
    let teams = routing
        .teams()
        .into_iter()
        .map(|t| (t.to_owned(), routing.name(t).to_owned()))
        .collect();
    let (rules, categories) = match load_rules(config) {
        Ok(rules) => {
            let mut categories: Vec<String> = rules
                .rules
                .iter()
                .map(|r| r.categorie.to_string())
                .filter(|c| !c.is_empty())
                .collect();
            categories.sort();
            categories.dedup();
            let texts = rules
                .rules
                .iter()
                .map(|r| (r.id.to_string(), r.description.clone()))
                .collect();
            (texts, categories)
        }
        Err(error) => {
            warn!(%error, "the inbox explains cases without the rules' descriptions");
            Default::default()
        }
    };
    Ok(vroeg_api::inbox::Settings {
        idle_ms: i64::from(config.session_idle_minutes) * 60_000,
        secure_cookie: config.secure_cookie,
        teams,
        rules,
        categories,
    })
}

/// The routing table a config names, or everything to the default team.
pub fn load_routing(
    path: Option<&std::path::Path>,
) -> anyhow::Result<vroeg_rules::routing::Routing> {
    match path {
        None => Ok(vroeg_rules::routing::Routing::single(
            vroeg_engine::DEFAULT_TEAM,
        )),
        Some(p) => vroeg_rules::routing::Routing::load(p).map_err(|diags| {
            anyhow::anyhow!(
                "the routing file does not load ({} error(s)):\n{diags}",
                diags.errors().count()
            )
        }),
    }
}

#[derive(Args)]
pub struct TopicsArgs {
    /// The configuration file (brokers, topic names, `kafka.partitions`).
    #[arg(long, default_value = "config/vroeg.toml")]
    pub config: PathBuf,
    /// Partitions of the partner topics and the feedback topic, where
    /// they do not exist yet.
    #[arg(long, default_value_t = 3)]
    pub input_partitions: i32,
    /// Replication factor of new topics (default: 3, or the number of
    /// brokers if fewer). `min.insync.replicas` is one less (at least 1).
    #[arg(long)]
    pub replication_factor: Option<i32>,
}

/// `vroeg topics create`: every topic of the configuration, with its
/// settings; existing topics are left as they are.
pub fn topics_create(args: &TopicsArgs) -> anyhow::Result<ExitCode> {
    use vroeg_kafka::topics::{create, plan, Outcome};
    let config = Config::load(&args.config)?;
    anyhow::ensure!(
        args.input_partitions >= 1,
        "--input-partitions must be at least 1"
    );
    let specs = plan(&config.kafka, args.input_partitions);
    let results = create(&config.kafka, &specs, args.replication_factor)?;
    for (spec, (topic, outcome)) in specs.iter().zip(results) {
        let settings: Vec<String> = spec
            .config
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        match outcome {
            Outcome::Created {
                partitions,
                replication,
            } => println!(
                "created  {topic}: {partitions} partition(s), replication {replication} {}",
                settings.join(" ")
            ),
            Outcome::Exists { partitions } => {
                println!("exists   {topic}: {partitions} partition(s), left as it is")
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn config_check(args: &ConfigCheckArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.file)?;
    let rules = load_rules(&config)?;
    load_routing(config.engine.routing.as_deref())?;
    load_opt_out(config.engine.opt_out.as_deref(), &config.household_secret)?;
    println!(
        "ok: {} (brokers {}, topics {:?} -> {} / {}, rule set {} with {} active rules)",
        args.file.display(),
        config.kafka.brokers,
        config.kafka.signal_topics,
        config.kafka.alerts_topic,
        config.kafka.dlq_topic,
        rules.version,
        rules.active_rules().count()
    );
    Ok(ExitCode::SUCCESS)
}

/// The case API's feedback, published to the feedback topic.
struct KafkaFeedback(vroeg_kafka::FeedbackProducer);

impl vroeg_api::FeedbackSink for KafkaFeedback {
    fn submit(
        &self,
        key: String,
        payload: Vec<u8>,
    ) -> vroeg_api::cases::BoxFuture<Result<(), String>> {
        let producer = self.0.clone();
        Box::pin(async move {
            producer
                .send(&key, &payload)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// The engine's state, for the admin exports: read between two batches,
/// under the lock the batch loop holds while it writes.
enum EngineState {
    /// The single-node model: its pipeline's lock.
    Single(Arc<Mutex<Pipeline>>),
    /// The state role: its gate, and the state directory's caches.
    Partitioned { gate: ReadGate, root: Store },
}

impl vroeg_api::Exports for EngineState {
    fn snapshot(&self) -> Result<vroeg_export::Snapshot, vroeg_export::ExportError> {
        match self {
            EngineState::Single(pipeline) => {
                let mut pipeline = pipeline.lock().unwrap_or_else(|p| p.into_inner());
                let store = pipeline.engine_mut().store().spanning();
                vroeg_export::Snapshot::read(&store)
            }
            EngineState::Partitioned { gate, root } => {
                let _gate = hold(gate);
                vroeg_export::Snapshot::read(&root.spanning())
            }
        }
    }
}

/// Open the read model the config names.
fn open_read_model(
    config: &Config,
) -> anyhow::Result<(vroeg_readmodel::ReadModel, Arc<vroeg_readmodel::Progress>)> {
    let model = vroeg_readmodel::ReadModel::open_with_cache(
        &config.read_model_dir,
        config.read_model_cache_bytes,
    )
    .with_context(|| {
        format!(
            "cannot open the read model in {} (api.read_model_dir)",
            config.read_model_dir.display()
        )
    })?;
    Ok((model, Arc::new(vroeg_readmodel::Progress::default())))
}

/// The case API over a read model: tokens and the feedback producer.
fn case_api(
    config: &Config,
    model: &vroeg_readmodel::ReadModel,
    progress: &Arc<vroeg_readmodel::Progress>,
) -> anyhow::Result<vroeg_api::CaseApi> {
    if config.api_tokens.is_empty() {
        warn!("no api tokens configured: every case API request will be refused (401)");
    }
    let tokens = tokens_of(config).map_err(|errors| anyhow::anyhow!(errors.join("; ")))?;
    let producer = vroeg_kafka::FeedbackProducer::new(&config.kafka)
        .context("cannot create the feedback producer")?;
    Ok(vroeg_api::CaseApi {
        cases: model.clone(),
        progress: progress.clone(),
        tokens: Arc::new(vroeg_api::auth::TokenSet::new(tokens)),
        feedback: Arc::new(KafkaFeedback(producer)),
        clock: Arc::new(vroeg_kafka::wall_now),
        reload: None,  // set by `run`, once the workers exist
        exports: None, // likewise
        inbox: Arc::new(inbox_settings(config)?),
    })
}

#[derive(Args)]
pub struct ServeArgs {
    /// The configuration file (`[kafka]` brokers and topics, `[api]`).
    #[arg(long, default_value = "config/vroeg.toml")]
    pub config: PathBuf,
}

/// `vroeg serve`: the case API alone, from a read model of its own that
/// follows the case topic. Any number can run beside the engine.
pub fn serve(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    let addr = config
        .api
        .context("vroeg serve needs the API: set [api] enabled = true and listen")?;
    let (model, progress) = open_read_model(&config)?;
    let api = case_api(&config, &model, &progress)?;
    let metrics = Arc::new(Metrics::new());
    // `vroeg serve` runs no engine: a reload reloads its tokens.
    let reload = reloader(
        &config,
        metrics.clone(),
        Reloads {
            config_path: args.config.clone(),
            tokens: Some(api.tokens.clone()),
            rules: None,
        },
    );
    let api = vroeg_api::CaseApi {
        reload: Some(reload.clone()),
        ..api
    };
    metrics.known_teams(load_routing(config.engine.routing.as_deref())?.teams());
    let stop = Arc::new(AtomicBool::new(false));
    let follower = {
        let (settings, model, progress, stop) = (
            config.kafka.clone(),
            model.clone(),
            progress.clone(),
            stop.clone(),
        );
        std::thread::Builder::new()
            .name("vroeg-readmodel".into())
            .spawn(move || vroeg_kafka::cases::follow(&settings, model, progress, stop))?
    };
    info!(read_model = %config.read_model_dir.display(), topic = %config.kafka.cases_topic, "serving the case API from the read model");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // Ready while the follower measures its lag (it reaches the brokers).
    let ready_progress = progress.clone();
    let ready: vroeg_api::Readiness = Arc::new(move || {
        let measured = ready_progress
            .measured()
            .is_some_and(|t| vroeg_kafka::wall_now() - t < 10_000);
        if measured {
            Vec::new()
        } else {
            vec!["the read model has not measured its lag in the last 10 s".to_owned()]
        }
    });
    let router = vroeg_api::router(metrics, ready, Some(api));
    let tls = load_tls(&config)?;
    let served = runtime.block_on(async {
        reload_on_hangup(reload);
        vroeg_api::serve(addr, router, tls, async {
            shutdown_signal().await;
            info!("shutdown requested");
        })
        .await
    });
    stop.store(true, Ordering::Relaxed);
    let followed = follower
        .join()
        .map_err(|_| anyhow::anyhow!("the read model thread panicked"))?;
    served.with_context(|| format!("the http api on {addr} failed"))?;
    followed?;
    model.flush()?;
    info!("stopped cleanly");
    Ok(ExitCode::SUCCESS)
}

/// A worker thread of the service: the single-node consumer, or a role.
type Worker = std::thread::JoinHandle<Result<(), String>>;

pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    let tls = load_tls(&config)?;
    // For tests and drills of contact deadlines and escalation only.
    if let Ok(offset) = std::env::var("VROEG_CLOCK_OFFSET_SECS") {
        let secs: i64 = offset.trim().parse().with_context(|| {
            format!("VROEG_CLOCK_OFFSET_SECS={offset:?} is not a number of seconds")
        })?;
        if secs != 0 {
            warn!(offset_secs = secs, "the service clock is shifted (VROEG_CLOCK_OFFSET_SECS); never do this in production");
        }
        vroeg_kafka::set_clock_offset(secs * 1000);
    }
    let rules = Arc::new(load_rules(&config)?);
    let clock = if config.engine.clock == "event" {
        warn!("engine.clock = \"event\": rules and timers follow the signals' own time, not the wall clock");
        ClockMode::EventTime
    } else {
        ClockMode::Wall
    };
    let mut engine_config = EngineConfig::new(config.household_secret.clone(), clock);
    engine_config.max_bytes = config.engine.max_message_bytes;
    engine_config.max_future = config.engine.max_future_secs as i64 * 1000;
    engine_config.routing = Arc::new(load_routing(config.engine.routing.as_deref())?);
    engine_config.feedback_streams = vec![config.kafka.feedback_topic.clone()];
    // Every changed case record goes to the case topic, for the read models.
    engine_config.publish_cases = true;
    let opt_out = load_opt_out(config.engine.opt_out.as_deref(), &config.household_secret)?;
    if !opt_out.is_empty() {
        info!(entries = opt_out.len(), "objection list loaded");
    }
    engine_config.opt_out = Arc::new(opt_out);
    // The intake role alone keeps no state.
    let (role, store) = if args.role == Some(Role::Intake) {
        (Role::Intake, None)
    } else {
        let store = Store::open_with_cache(
            &config.engine.state_dir,
            // The single-node model's sled is the truth: flush every batch.
            // The partitioned roles' sled is a cache of the changelog.
            args.role == Some(Role::Single),
            config.engine.cache_mb * 1024 * 1024,
        )
        .with_context(|| {
            format!(
                "cannot open the state store in {}",
                config.engine.state_dir.display()
            )
        })?;
        let (role, store) = match args.role {
            Some(role) => (role, store),
            None if layout(&store) == Layout::Single => {
                warn!(state_dir = %config.engine.state_dir.display(), "the state directory holds the single-node model: running as --role single; see the README (Scaling out) to move to the partitioned model");
                (Role::Single, store.with_durability(true))
            }
            None => (Role::All, store),
        };
        check_layout(&store, role, &config.engine.state_dir)?;
        (role, Some(store))
    };
    info!(rules = %rules.version, active = rules.active_rules().count(), state_dir = %config.engine.state_dir.display(), role = ?role, "starting");
    // The case API answers from the read model, which follows the case
    // topic; a process without state (intake alone) serves no cases, and
    // neither does one told to leave them to `vroeg serve`.
    let read_model = match (&config.api, &store) {
        (Some(_), Some(_)) if config.case_api => Some(open_read_model(&config)?),
        (Some(_), Some(_)) => {
            info!("api.case_api = false: serving health and metrics only; vroeg serve serves the cases");
            None
        }
        _ => None,
    };
    let case_api = read_model
        .as_ref()
        .map(|(model, progress)| case_api(&config, model, progress))
        .transpose()?;
    let health = Arc::new(Health::default());
    let metrics = Arc::new(Metrics::new());
    metrics.rule_set(&rules.version);
    metrics.known_teams(engine_config.routing.teams());
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Duration::from_secs(config.engine.shutdown_deadline_secs);
    let retention = (config.retention.purge_interval_secs > 0).then(|| {
        (
            config.retention.policy(),
            Duration::from_secs(config.retention.purge_interval_secs),
        )
    });
    if retention.is_none() {
        warn!("retention.purge_interval_secs = 0: the retention purge is off");
    }
    let (done_tx, done_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let spawn = |name: &str, work: Box<dyn FnOnce() -> Result<(), String> + Send>| {
        let done = done_tx.clone();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let result = work();
                let _ = done.send(());
                result
            })
    };
    let mut workers: Vec<Worker> = Vec::new();
    if let Some((model, progress)) = read_model {
        let (settings, s) = (config.kafka.clone(), stop.clone());
        workers.push(spawn(
            "vroeg-readmodel",
            Box::new(move || {
                vroeg_kafka::cases::follow(&settings, model, progress, s).map_err(|e| e.to_string())
            }),
        )?);
    }
    let mut exports: Option<Arc<dyn vroeg_api::Exports>> = None;
    let tokens = case_api.as_ref().map(|api| api.tokens.clone());
    let reload = if role == Role::Single {
        let store = store.clone().expect("single keeps state");
        let engine = Engine::new(store, rules, engine_config)?;
        let sink = KafkaSink::new(&config.kafka, health.clone())
            .context("cannot create the Kafka producer")?;
        let mut pipeline = Pipeline::new(engine, sink, metrics.clone())?;
        if let Some((policy, every)) = retention {
            pipeline.set_retention(policy, every);
        }
        let pipeline = Arc::new(Mutex::new(pipeline));
        exports = Some(Arc::new(EngineState::Single(pipeline.clone())));
        let (settings, p, h, s) = (
            config.kafka.clone(),
            pipeline.clone(),
            health.clone(),
            stop.clone(),
        );
        workers.push(spawn(
            "vroeg-consumer",
            Box::new(move || run_consumer(&settings, p, h, s, deadline).map_err(|e| e.to_string())),
        )?);
        reloader(
            &config,
            metrics.clone(),
            Reloads {
                config_path: args.config.clone(),
                tokens: tokens.clone(),
                rules: Some(Box::new(move |rules, opt_out| {
                    let mut pipeline = pipeline.lock().unwrap_or_else(|p| p.into_inner());
                    let old = pipeline.engine_mut().rules().version.to_string();
                    pipeline.engine_mut().set_rules(rules);
                    pipeline.engine_mut().set_opt_out(opt_out);
                    old
                })),
            },
        )
    } else {
        let control = Arc::new(Control::new(rules, engine_config.opt_out.clone()));
        if role.intake() {
            let intake = IntakeRole {
                settings: config.kafka.clone(),
                engine_config: engine_config.clone(),
                control: control.clone(),
                observer: metrics.clone(),
                health: health.clone(),
            };
            let s = stop.clone();
            workers.push(spawn(
                "vroeg-intake",
                Box::new(move || run_intake(intake, s).map_err(|e| e.to_string())),
            )?);
        }
        if role.state() {
            let gate = ReadGate::default();
            let root = store.clone().expect("the state role keeps state");
            exports = Some(Arc::new(EngineState::Partitioned {
                gate: gate.clone(),
                root: root.clone(),
            }));
            let state = StateRole {
                settings: config.kafka.clone(),
                root,
                engine_config,
                control: control.clone(),
                observer: metrics.clone(),
                health: health.clone(),
                retention,
                gate,
            };
            let s = stop.clone();
            workers.push(spawn(
                "vroeg-state",
                Box::new(move || run_state(state, s).map_err(|e| e.to_string())),
            )?);
        }
        reloader(
            &config,
            metrics.clone(),
            Reloads {
                config_path: args.config.clone(),
                tokens: tokens.clone(),
                rules: Some(Box::new(move |rules, opt_out| {
                    let old = control.get().0.version.to_string();
                    control.set(rules, opt_out);
                    old
                })),
            },
        )
    };
    drop(done_tx);
    let case_api = case_api.map(|api| vroeg_api::CaseApi {
        reload: Some(reload.clone()),
        exports,
        ..api
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let timed_out = runtime.block_on(async {
        let (api_stop_tx, api_stop_rx) = tokio::sync::oneshot::channel::<()>();
        if let Some(addr) = config.api {
            let ready_health = health.clone();
            let ready: vroeg_api::Readiness = Arc::new(move || ready_health.unready_reasons());
            let router = vroeg_api::router(metrics.clone(), ready, case_api);
            tokio::spawn(async move {
                if let Err(e) = vroeg_api::serve(addr, router, tls, async {
                    let _ = api_stop_rx.await;
                })
                .await
                {
                    error!(error = %e, %addr, "http api failed");
                }
            });
        }
        reload_on_hangup(reload.clone());
        let mut done_rx = done_rx;
        // Stop on a signal, or as soon as one worker ends (an error).
        let stopped_by_signal = tokio::select! {
            _ = shutdown_signal() => true,
            _ = done_rx.recv() => false,
        };
        if stopped_by_signal {
            info!(deadline_secs = deadline.as_secs(), "shutdown requested");
        }
        stop.store(true, Ordering::Relaxed);
        // The workers' own drain is bounded by the deadline; allow a little
        // more for the final commit.
        let all_done = async {
            let mut left = workers.len() - usize::from(!stopped_by_signal);
            while left > 0 && done_rx.recv().await.is_some() {
                left -= 1;
            }
        };
        let timed_out = tokio::time::timeout(deadline + Duration::from_secs(5), all_done)
            .await
            .is_err();
        let _ = api_stop_tx.send(());
        timed_out
    });
    if timed_out {
        error!("shutdown did not finish within the deadline");
        return Ok(ExitCode::FAILURE);
    }
    let mut code = ExitCode::SUCCESS;
    for worker in workers {
        let name = worker.thread().name().unwrap_or("worker").to_owned();
        match worker.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                error!(error = %e, worker = name, "stopped on an error");
                code = ExitCode::FAILURE;
            }
            Err(_) => anyhow::bail!("the {name} thread panicked"),
        }
    }
    if code == ExitCode::SUCCESS {
        info!("stopped cleanly");
    }
    Ok(code)
}

#[derive(Debug, PartialEq, Eq)]
enum Layout {
    Empty,
    Single,
    Partitioned,
}

/// What a state directory holds.
fn layout(store: &Store) -> Layout {
    if !store.partitions().is_empty() {
        Layout::Partitioned
    } else if store.households().next().is_some() || store.cases().next().is_some() {
        Layout::Single
    } else {
        Layout::Empty
    }
}

/// The single-node model and the partitioned roles keep different layouts
/// in a state directory; refuse to mix them.
fn check_layout(store: &Store, role: Role, dir: &std::path::Path) -> anyhow::Result<()> {
    let layout = layout(store);
    if role == Role::Single && layout == Layout::Partitioned {
        anyhow::bail!(
            "{} holds household partition caches of the partitioned roles; `--role single` needs a state directory of its own",
            dir.display()
        );
    }
    if role != Role::Single && layout == Layout::Single {
        anyhow::bail!(
            "{} holds the state of `--role single`; the partitioned roles keep their state in the changelog and need a state directory of their own",
            dir.display()
        );
    }
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = tokio::signal::ctrl_c() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
