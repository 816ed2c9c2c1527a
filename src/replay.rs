//! `vroeg replay` and `vroeg demo`: the engine over files, no Kafka.
//!
//! Replay reads signals as JSON lines, runs them through the same
//! `vroeg-engine` loop the Kafka service uses (batches, one atomic sled
//! commit per batch, the outbox), and drains the outbox into an alerts file
//! and a rejects file. The clock is the signals' own time. Re-running with
//! the same `--state` directory resumes after the last committed line.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use vroeg_engine::{
    ClockMode, Engine, EngineConfig, FileRecords, Input, Record, Sink, SinkError, Stats,
};
use vroeg_rules::{LoadOptions, RuleSet};
use vroeg_store::{Message, Store};

/// The secret used when none is configured: fine for demos and tests, never
/// for real data.
pub const DEVELOPMENT_SECRET: &str = "vroeg-development-secret";

#[derive(Args, Clone)]
pub struct ReplayArgs {
    /// Rule files or directories.
    #[arg(long, default_value = "rules")]
    pub rules: Vec<PathBuf>,
    /// Signals as JSON lines (one CloudEvent per line).
    #[arg(long)]
    pub signals: PathBuf,
    /// Where to write alert events as JSON lines (default: <signals>.alerts.jsonl).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Where to write rejected lines with their reasons (default: <signals>.rejects.jsonl).
    #[arg(long)]
    pub rejects: Option<PathBuf>,
    /// sled state directory; reuse it to resume (default: a temporary directory).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Signals per batch (one atomic commit per batch).
    #[arg(long, default_value_t = 5000)]
    pub batch_size: usize,
    /// Skip the flush after each batch (faster, not crash-safe).
    #[arg(long)]
    pub no_fsync: bool,
    /// Enable the school-absence purpose (combine school and debt signals).
    #[arg(long)]
    pub school_purpose: bool,
    /// Do not escalate overdue cases: for replays of history whose contact
    /// attempts are not part of the input (otherwise every case escalates
    /// weekly until it closes).
    #[arg(long)]
    pub no_escalation: bool,
    /// Wijkteam routing file (default: every case to the team `standaard`).
    #[arg(long)]
    pub routing: Option<PathBuf>,
    /// Secret of the household pseudonym.
    #[arg(long, env = "VROEG_HOUSEHOLD_SECRET", hide_env_values = true)]
    pub household_secret: Option<String>,
    /// Treat this RFC 3339 time as "now" for the future-date check (default: the wall clock).
    #[arg(long)]
    pub now: Option<String>,
    /// Wijkteam feedback (contact attempts and outcomes) as JSON lines, as
    /// `gen --feedback` writes it: applied among the signals at noon of its
    /// `datum` (notes, assignments and corrections, which have none, right
    /// after the line before them), as if from the feedback topic.
    #[arg(long)]
    pub feedback: Option<PathBuf>,
    /// At the end of the input, move the clock on to this moment (an RFC
    /// 3339 time, or a day: its end, Dutch time) and fire every timer due by
    /// then: escalations and signals ageing out after the last signal.
    #[arg(long)]
    pub until: Option<String>,
    /// Write the summary as JSON to this file too.
    #[arg(long)]
    pub summary_json: Option<PathBuf>,
    /// Never show a progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Args, Clone)]
pub struct DemoArgs {
    /// Households in the generated municipality.
    #[arg(long, default_value_t = 20_000)]
    pub households: u32,
    /// Months to generate.
    #[arg(long, default_value_t = 6)]
    pub months: u32,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Rule files or directories (default: ./rules if present, else the shipped rules).
    #[arg(long)]
    pub rules: Vec<PathBuf>,
}

/// The replay sink: alerts and rejects to files, synced before confirming.
struct FileSink {
    alerts: BufWriter<File>,
    rejects: BufWriter<File>,
}

impl FileSink {
    fn write(&mut self, message: &Message) -> std::io::Result<()> {
        match message {
            Message::Alert(alert) => {
                serde_json::to_writer(&mut self.alerts, alert)?;
                self.alerts.write_all(b"\n")
            }
            // A partner status follows an outcome in the feedback file; it
            // goes with the alerts, in the form partners receive it.
            Message::PartnerStatus { signal, status } => {
                let line = vroeg_kafka::producer::partner_status(signal, *status);
                self.alerts.write_all(&line)?;
                self.alerts.write_all(b"\n")
            }
            // Replay does not publish case records (`publish_cases` is off).
            Message::Case { .. } => Ok(()),
            Message::DeadLetter(d) => {
                let line = json!({
                    "file": d.stream.split_once(':').map(|(_, f)| f),
                    "line": d.offset + 1,
                    "code": d.error.code.as_str(),
                    "field": d.error.field,
                    "detail": d.error.detail,
                    "raw": String::from_utf8_lossy(&d.payload),
                });
                serde_json::to_writer(&mut self.rejects, &line)?;
                self.rejects.write_all(b"\n")
            }
        }
    }
}

impl Sink for FileSink {
    fn send(&mut self, messages: &[Message]) -> Result<(), SinkError> {
        let io = |e: std::io::Error| SinkError {
            destination: "file",
            message: e.to_string(),
        };
        for m in messages {
            self.write(m).map_err(io)?;
        }
        self.alerts.flush().map_err(io)?;
        self.rejects.flush().map_err(io)?;
        self.alerts.get_ref().sync_data().map_err(io)?;
        self.rejects.get_ref().sync_data().map_err(io)?;
        Ok(())
    }
}

fn open_append(path: &Path) -> anyhow::Result<BufWriter<File>> {
    let f = File::options()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {} for writing", path.display()))?;
    Ok(BufWriter::with_capacity(1 << 20, f))
}

pub fn secret(arg: &Option<String>) -> Vec<u8> {
    match arg {
        Some(s) if !s.is_empty() => s.as_bytes().to_vec(),
        _ => {
            eprintln!("warning: no VROEG_HOUSEHOLD_SECRET set; using the development secret (never for real data)");
            DEVELOPMENT_SECRET.as_bytes().to_vec()
        }
    }
}

fn wall_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What a replay did, for the summary.
pub struct ReplayOutcome {
    pub stats: Stats,
    pub seconds: f64,
    pub alerts_file: PathBuf,
    pub rejects_file: PathBuf,
    pub rules_version: String,
}

pub fn replay(args: &ReplayArgs, show_progress: bool) -> anyhow::Result<ReplayOutcome> {
    let options = LoadOptions {
        school_purpose: args.school_purpose,
        no_escalation: args.no_escalation,
    };
    let (rules, warnings) = RuleSet::load(&args.rules, &options).map_err(|diags| {
        anyhow::anyhow!(
            "the rule set does not load ({} error(s)):\n{diags}",
            diags.errors().count()
        )
    })?;
    for w in &warnings.0 {
        eprintln!("{w}");
    }
    anyhow::ensure!(args.batch_size > 0, "--batch-size must be at least 1");
    let now = match &args.now {
        Some(s) => vroeg_core::time::parse_rfc3339(s)
            .with_context(|| format!("--now {s:?} is not an RFC 3339 time"))?,
        None => wall_now(),
    };
    let until = match &args.until {
        Some(s) => Some(vroeg_core::time::parse_moment(s, true).with_context(|| {
            format!("--until {s:?} is not a day (YYYY-MM-DD) or an RFC 3339 time")
        })?),
        None => None,
    };
    let with_ext = |ext: &str| {
        let mut p = args.signals.clone().into_os_string();
        p.push(ext);
        PathBuf::from(p)
    };
    let alerts_file = args
        .out
        .clone()
        .unwrap_or_else(|| with_ext(".alerts.jsonl"));
    let rejects_file = args
        .rejects
        .clone()
        .unwrap_or_else(|| with_ext(".rejects.jsonl"));
    let temp;
    let state_dir = match &args.state {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::tempdir().context("cannot create a temporary state directory")?;
            temp.path().to_owned()
        }
    };
    let resuming = args.state.is_some() && state_dir.join("conf").exists();
    if !resuming {
        // A fresh run writes fresh output files.
        for f in [&alerts_file, &rejects_file] {
            File::create(f).with_context(|| format!("cannot create {}", f.display()))?;
        }
    }
    let store = Store::open(&state_dir, !args.no_fsync)
        .with_context(|| format!("cannot open the state store in {}", state_dir.display()))?;
    let mut config = EngineConfig::new(secret(&args.household_secret), ClockMode::EventTime);
    config.routing = Arc::new(crate::run::load_routing(args.routing.as_deref())?);
    let mut feedback = match &args.feedback {
        Some(path) => read_feedback(path)?,
        None => FeedbackFile::default(),
    };
    if args.feedback.is_some() {
        config.feedback_streams = vec![feedback.stream.to_string()];
    }
    let rules_version = rules.version.to_string();
    let mut engine = Engine::new(store, Arc::new(rules), config)?;
    let mut sink = FileSink {
        alerts: open_append(&alerts_file)?,
        rejects: open_append(&rejects_file)?,
    };
    // A previous run may have left confirmed-but-unremoved entries; send them first.
    engine.publish_outbox(&mut sink, usize::MAX)?;

    let file = File::open(&args.signals)
        .with_context(|| format!("cannot open {}", args.signals.display()))?;
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let progress = if show_progress && !args.quiet && std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Some(bar)
    } else {
        None
    };
    let started = Instant::now();
    let mut lines = FileRecords::new(&args.signals, BufReader::with_capacity(1 << 20, file));
    let mut batch = Vec::with_capacity(args.batch_size);
    loop {
        let next = lines
            .next_record()
            .context("cannot read the signals file")?;
        let at_end = next.is_none();
        match next {
            Some((record, n)) => {
                // Feedback that took effect before this signal goes first.
                if feedback.next_time().is_some() {
                    if let Some(time) = signal_time(&record.payload) {
                        feedback.take_until(Some(time), &mut batch);
                    }
                }
                batch.push(Input::Record(record));
                if let Some(bar) = &progress {
                    bar.inc(n as u64);
                }
            }
            // The feedback after the last signal.
            None => feedback.take_until(None, &mut batch),
        }
        if batch.len() >= args.batch_size || (at_end && !batch.is_empty()) {
            engine.process_inputs(&batch, now)?;
            engine.publish_outbox(&mut sink, usize::MAX)?;
            batch.clear();
            if let Some(bar) = &progress {
                let s = engine.stats();
                bar.set_message(format!(
                    "{} signals, {} cases",
                    s.records,
                    s.alerts.get("geopend").unwrap_or(&0)
                ));
            }
        }
        if at_end {
            break;
        }
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    if let Some(until) = until {
        engine.advance(until, now)?;
        engine.publish_outbox(&mut sink, usize::MAX)?;
    }
    engine.store().flush()?;
    Ok(ReplayOutcome {
        stats: engine.stats().clone(),
        seconds: started.elapsed().as_secs_f64(),
        alerts_file,
        rejects_file,
        rules_version,
    })
}

/// A feedback file, read whole (it is small beside the signals), in the
/// order its messages take effect.
#[derive(Default)]
struct FeedbackFile {
    stream: Arc<str>,
    /// (takes effect, offset in the file, line), by time.
    lines: std::collections::VecDeque<(i64, i64, Vec<u8>)>,
}

impl FeedbackFile {
    fn next_time(&self) -> Option<i64> {
        self.lines.front().map(|(t, _, _)| *t)
    }

    /// Move every message that takes effect before `time` (all, without
    /// one) into `batch`, each after the moment it takes effect: the
    /// engine's clock moves on to it first, so the timers due by then fire
    /// before it, as they would in the service.
    fn take_until(&mut self, time: Option<i64>, batch: &mut Vec<Input>) {
        while let Some((t, _, _)) = self.lines.front() {
            if time.is_some_and(|time| *t > time) {
                break;
            }
            let Some((at, offset, payload)) = self.lines.pop_front() else {
                break;
            };
            if at != i64::MIN {
                batch.push(Input::ClockAt(at));
            }
            batch.push(Input::Record(Record {
                stream: self.stream.clone(),
                partition: 0,
                offset,
                payload,
                headers: Vec::new(),
            }));
        }
    }
}

fn read_feedback(path: &Path) -> anyhow::Result<FeedbackFile> {
    let text = std::fs::read(path)
        .with_context(|| format!("cannot read the feedback file {}", path.display()))?;
    let mut lines = Vec::new();
    let mut previous = i64::MIN;
    for (offset, line) in text.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let value = serde_json::from_slice::<Value>(line).ok();
        let dated = value
            .as_ref()
            .and_then(|v| v["datum"].as_str().and_then(vroeg_core::time::Day::parse))
            .map(vroeg_core::feedback::effective_time);
        // Notes, assignments and corrections carry no date: they apply
        // right after the line before them. Any other line without a
        // readable date still goes through the decoder, first, so that it
        // is rejected with its reason.
        let undated = value.as_ref().is_some_and(|v| {
            matches!(
                v["type"].as_str(),
                Some("notitie" | "toewijzing" | "correctie")
            )
        });
        let time = match dated {
            Some(t) => t,
            None if undated => previous,
            None => i64::MIN,
        };
        previous = time;
        lines.push((time, offset as i64, line.to_vec()));
    }
    // Stable: messages of one day keep their order in the file.
    lines.sort_by_key(|(t, _, _)| *t);
    Ok(FeedbackFile {
        stream: format!(
            "feedback:{}",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        )
        .into(),
        lines: lines.into(),
    })
}

/// The `time` of a signal line, where it has a readable one.
fn signal_time(line: &[u8]) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Time<'a> {
        #[serde(borrow)]
        time: Option<std::borrow::Cow<'a, str>>,
    }
    let t: Time<'_> = serde_json::from_slice(line).ok()?;
    vroeg_core::time::parse_rfc3339(&t.time?)
}

pub fn print_summary(o: &ReplayOutcome) {
    let s = &o.stats;
    println!("replay summary (rule set {})", o.rules_version);
    println!("  records read         {:>10}", s.records);
    println!("  signals applied      {:>10}", s.applied);
    if s.feedback > 0 {
        println!("  feedback applied     {:>10}", s.feedback);
    }
    println!("  duplicates           {:>10}", s.duplicates);
    if s.purpose_disabled > 0 {
        println!(
            "  school signals dropped (purpose off) {:>3}",
            s.purpose_disabled
        );
    }
    if s.outside_window > 0 {
        println!("  older than lookback  {:>10}", s.outside_window);
    }
    println!("  rejected             {:>10}", s.rejected_total());
    for (code, n) in &s.rejected {
        println!("    {code:<22} {n:>8}");
    }
    println!("  case events");
    for (kind, n) in &s.alerts {
        println!("    {kind:<22} {n:>8}");
    }
    println!("  cases opened by category");
    for (c, n) in &s.opened_by_category {
        println!("    {c:<22} {n:>8}");
    }
    println!("  cases opened by priority");
    for (p, n) in s.opened_by_priority.iter().rev() {
        println!("    {p:<22} {n:>8}");
    }
    println!("  suppressed evaluations {:>8}", s.suppressed);
    println!("  timers fired         {:>10}", s.timers);
    if s.rule_errors > 0 {
        println!("  RULE ERRORS          {:>10}", s.rule_errors);
    }
    let rate = if o.seconds > 0.0 {
        s.records as f64 / o.seconds
    } else {
        0.0
    };
    println!(
        "  time                 {:>9.2}s ({:.0} records/s)",
        o.seconds, rate
    );
    println!("  alerts  -> {}", o.alerts_file.display());
    println!("  rejects -> {}", o.rejects_file.display());
}

fn summary_json(o: &ReplayOutcome) -> Value {
    json!({ "stats": o.stats, "seconds": o.seconds, "rules_version": o.rules_version })
}

pub fn run(args: &ReplayArgs) -> anyhow::Result<ExitCode> {
    let outcome = replay(args, true)?;
    print_summary(&outcome);
    if let Some(path) = &args.summary_json {
        std::fs::write(path, serde_json::to_vec_pretty(&summary_json(&outcome))?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(if outcome.stats.rule_errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

const SHIPPED_RULES: &str = include_str!("../rules/regels.yaml");

pub fn demo(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let rules = if !args.rules.is_empty() {
        args.rules.clone()
    } else if Path::new("rules/regels.yaml").exists() {
        vec![PathBuf::from("rules")]
    } else {
        let p = dir.path().join("regels.yaml");
        std::fs::write(&p, SHIPPED_RULES)?;
        vec![p]
    };
    let signals = dir.path().join("signalen.jsonl");
    let gen_args = crate::gen::GenArgs {
        households: args.households,
        months: args.months,
        seed: args.seed,
        start: "2026-01-01".into(),
        now: None,
        rate: 0.05,
        invalid: 0.02,
        out: Some(signals.clone()),
        feedback: None,
        rules: rules.clone(),
        household_secret: Some(DEVELOPMENT_SECRET.into()),
    };
    // The demo replays on the event clock: its history may run past today.
    let lines = crate::gen::generate_all(&gen_args)?;
    crate::gen::write(&lines, &mut File::create(&signals)?)?;
    // What the wijkteams did: contact attempts and outcomes for the cases.
    let feedback_file = dir.path().join("terugkoppeling.jsonl");
    let feedback =
        crate::gen::feedback_for(&lines, &rules, &Some(DEVELOPMENT_SECRET.into()), args.seed)?;
    crate::gen::write(&feedback, &mut File::create(&feedback_file)?)?;
    println!(
        "generated {} signals for {} households over {} months (seed {}), and {} wijkteam feedback messages\n",
        lines.len(),
        args.households,
        args.months,
        args.seed,
        feedback.len()
    );
    let replay_args = ReplayArgs {
        rules: rules.clone(),
        signals: signals.clone(),
        out: None,
        rejects: None,
        state: Some(dir.path().join("state")),
        batch_size: 5000,
        no_fsync: false,
        school_purpose: false,
        routing: None,
        no_escalation: false,
        household_secret: Some(DEVELOPMENT_SECRET.into()),
        now: Some("2026-11-01T00:00:00Z".into()),
        summary_json: None,
        until: None,
        quiet: false,
        feedback: Some(feedback_file),
    };
    let outcome = replay(&replay_args, true)?;
    print_summary(&outcome);
    println!();
    show_examples(&outcome.alerts_file, &rules)?;
    Ok(ExitCode::SUCCESS)
}

/// Print three opened cases of different categories with their explanation.
fn show_examples(alerts: &Path, rules: &[PathBuf]) -> anyhow::Result<()> {
    let (ruleset, _) = RuleSet::load(rules, &LoadOptions::default())
        .map_err(|d| anyhow::anyhow!("rules do not load:\n{d}"))?;
    let describe = |id: &str| {
        ruleset
            .rules
            .iter()
            .find(|r| r.id == id)
            .map(|r| r.description.clone())
            .unwrap_or_default()
    };
    let file = BufReader::new(File::open(alerts)?);
    let mut shown: Vec<String> = Vec::new();
    for line in file.lines() {
        let v: Value = serde_json::from_str(&line?)?;
        let cat = v["categorie"].as_str().unwrap_or("").to_owned();
        if v["type"] != "geopend" || shown.contains(&cat) {
            continue;
        }
        if !["crisis", "meervoudig", "opeenvolgend", "enkelvoudig"].contains(&cat.as_str()) {
            continue;
        }
        shown.push(cat.clone());
        println!(
            "example case {} ({}, priority {})",
            v["zaak_id"].as_str().unwrap_or(""),
            cat,
            v["prioriteit"]
        );
        println!("  opened   {}", v["tijd"].as_str().unwrap_or(""));
        println!("  because");
        for r in v["regels"].as_array().into_iter().flatten() {
            let id = r["id"].as_str().unwrap_or("");
            println!("    - rule {id} v{}: {}", r["version"], describe(id));
        }
        println!("  on the values");
        for (k, val) in v["variabelen"].as_object().into_iter().flatten() {
            println!("    {k} = {val}");
        }
        println!("  signals");
        for s in v["signalen"].as_array().into_iter().flatten() {
            println!(
                "    {} {}",
                s["source"].as_str().unwrap_or(""),
                s["id"].as_str().unwrap_or("")
            );
        }
        println!();
        if shown.len() == 3 {
            break;
        }
    }
    Ok(())
}
