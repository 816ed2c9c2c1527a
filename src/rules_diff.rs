//! `vroeg rules diff`: the same signals under two rule sets, compared.
//!
//! Both replays run at once, one per core, through `vroeg replay`'s own
//! path (the engine, event time) over a store in memory
//! (`vroeg_engine::whatif`), so each side's counts are those of a separate
//! replay. The comparison itself is `vroeg_rules::diff`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use vroeg_rules::diff::{compare_tallies, html, table, Compare, Event, Tally};

use vroeg_engine::whatif::{Replayed, Side};
use vroeg_engine::{ClockMode, EngineConfig};
use vroeg_rules::{LoadOptions, RuleSet};
use vroeg_store::Message;

use crate::replay::secret;

#[derive(Args)]
pub struct RulesDiffArgs {
    /// The rule files or directories in force now.
    #[arg(long, required = true, num_args = 1..)]
    pub base: Vec<PathBuf>,
    /// The changed rule files or directories.
    #[arg(long, required = true, num_args = 1..)]
    pub candidate: Vec<PathBuf>,
    /// The history: signals as JSON lines (`vroeg gen`, or an export of the
    /// signal topic), in time order.
    #[arg(long, required_unless_present = "topic", conflicts_with = "topic")]
    pub signals: Option<PathBuf>,
    /// Or read the history from this Kafka topic (the partners' signal
    /// topic), from the beginning or `--since`, to its end when the read
    /// begins; put in the order of the signals' time.
    #[arg(long)]
    pub topic: Option<String>,
    /// With `--topic`: start at the first message the broker received at or
    /// after this moment (a day, YYYY-MM-DD, meaning its start, Dutch time;
    /// or an RFC 3339 time).
    #[arg(long, requires = "topic")]
    pub since: Option<String>,
    /// Bootstrap servers, for `--topic`.
    #[arg(long, env = "VROEG_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Wijkteam routing file (default: every case to `standaard`).
    #[arg(long)]
    pub routing: Option<PathBuf>,
    /// Enable the school-absence purpose on both sides.
    #[arg(long)]
    pub school_purpose: bool,
    /// Escalate overdue cases (off by default: a history holds no contact
    /// attempts, so every case would escalate weekly).
    #[arg(long)]
    pub escalate: bool,
    /// Secret of the household pseudonym.
    #[arg(long, env = "VROEG_HOUSEHOLD_SECRET", hide_env_values = true)]
    pub household_secret: Option<String>,
    /// Treat this RFC 3339 time as "now" for the future-date check.
    #[arg(long)]
    pub now: Option<String>,
    /// Write the comparison as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the comparison as a self-contained HTML report to this file.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Show names and addresses with the sample households (off: only the
    /// pseudonymous household key).
    #[arg(long)]
    pub with_personal_data: bool,
    /// Sample households per group.
    #[arg(long, default_value_t = 3)]
    pub samples: usize,
}

/// Where the history comes from.
enum History {
    File(PathBuf),
    /// A topic's records, read once for both sides, in time order.
    Records(Vec<vroeg_engine::Record>),
}

fn load_rules(args: &RulesDiffArgs, rules: &[PathBuf], which: &str) -> anyhow::Result<RuleSet> {
    let options = LoadOptions {
        school_purpose: args.school_purpose,
        no_escalation: !args.escalate,
    };
    let (rules, _) = RuleSet::load(rules, &options).map_err(|diags| {
        anyhow::anyhow!(
            "the {which} rule set does not load ({} error(s)):\n{diags}",
            diags.errors().count()
        )
    })?;
    Ok(rules)
}

/// Both rule sets over the history at once, in memory, one per core, as
/// `vroeg replay` replays it (the engine, event time), keeping of each
/// case event what the comparison reads; the contact details only when
/// they are to be shown.
fn replay_both(
    args: &RulesDiffArgs,
    history: &History,
    base: RuleSet,
    candidate: RuleSet,
    wall_now: i64,
) -> anyhow::Result<([Tally; 2], Vec<Replayed>)> {
    let mut config = EngineConfig::new(secret(&args.household_secret), ClockMode::EventTime);
    config.routing = std::sync::Arc::new(crate::run::load_routing(args.routing.as_deref())?);
    // The comparison reads the case events alone.
    config.case_records = false;
    // Names and addresses only when they are to be shown.
    config.personal_data = args.with_personal_data;
    let what_if = vroeg_engine::whatif::WhatIf {
        config,
        wall_now,
        batch_size: BATCH,
    };
    let personal_data = args.with_personal_data;
    let (mut base_tally, mut candidate_tally) = (Tally::default(), Tally::default());
    let sides = vec![
        tally_side(base, &mut base_tally, personal_data),
        tally_side(candidate, &mut candidate_tally, personal_data),
    ];
    let history = match history {
        History::File(path) => vroeg_engine::whatif::History::File(path),
        History::Records(records) => vroeg_engine::whatif::History::Records(records),
    };
    let replayed = what_if
        .replay(history, sides)
        .context("the replay of the history under the two rule sets failed")?;
    Ok(([base_tally, candidate_tally], replayed))
}

/// A side of the what-if that tallies, on its own thread, what the
/// comparison reads of each case event.
fn tally_side(rules: RuleSet, tally: &mut Tally, personal_data: bool) -> Side<'_> {
    Side {
        rules: std::sync::Arc::new(rules),
        sink: Box::new(move |message| {
            if let Message::Alert(alert) = message {
                tally.add(Event::of(*alert, personal_data));
            }
        }),
    }
}

/// Records per batch: the memory store writes nothing to disk, so a batch
/// costs little; a large one keeps the per-batch work small beside it.
const BATCH: usize = 20_000;

pub fn run(args: &RulesDiffArgs) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let wall_now = match &args.now {
        Some(s) => vroeg_core::time::parse_rfc3339(s)
            .with_context(|| format!("--now {s:?} is not an RFC 3339 time"))?,
        None => vroeg_kafka::wall_now(),
    };
    let (history, source) = match (&args.signals, &args.topic) {
        (Some(file), _) => (History::File(file.clone()), file.display().to_string()),
        (None, Some(topic)) => {
            let since = args
                .since
                .as_deref()
                .map(|s| {
                    let day = vroeg_core::time::Day::parse(s).map(|d| d.local_start());
                    day.or_else(|| vroeg_core::time::parse_rfc3339(s))
                        .with_context(|| {
                            format!("--since {s:?} is not a day (YYYY-MM-DD) or an RFC 3339 time")
                        })
                })
                .transpose()?;
            let mut records = Vec::new();
            vroeg_kafka::send::read_topic(&args.brokers, topic, since, |r| records.push(r))
                .with_context(|| format!("cannot read topic {topic}"))?;
            vroeg_engine::whatif::in_time_order(&mut records);
            (History::Records(records), format!("topic {topic}"))
        }
        (None, None) => anyhow::bail!("give --signals FILE or --topic TOPIC"),
    };
    let base = load_rules(args, &args.base, "base")?;
    let candidate = load_rules(args, &args.candidate, "candidate")?;
    let (base_version, candidate_version) = (base.version.clone(), candidate.version.clone());
    let ([base_tally, candidate_tally], replayed) =
        replay_both(args, &history, base, candidate, wall_now)?;
    let b = &replayed
        .first()
        .context("no replay of the base rules")?
        .stats;
    anyhow::ensure!(
        b.records > 0,
        "{source} holds no signals: nothing to compare"
    );
    let diff = compare_tallies(
        &base_tally,
        &candidate_tally,
        &Compare {
            personal_data: args.with_personal_data,
            samples: args.samples,
        },
    );
    print!("{}", table(&diff));
    let names = |paths: &[PathBuf]| {
        paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    if let Some(path) = &args.json {
        let mut text = serde_json::to_string_pretty(&diff)?;
        text.push('\n');
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.html {
        std::fs::write(
            path,
            html(&diff, &names(&args.base), &names(&args.candidate)),
        )
        .with_context(|| format!("cannot write {}", path.display()))?;
    }
    eprintln!(
        "rules diff: {} signals under rule sets {} and {} in {:.1} s",
        b.records,
        base_version,
        candidate_version,
        started.elapsed().as_secs_f64()
    );
    // A million households per side and both tallies go with the process:
    // freeing them one allocation at a time took more than a second.
    std::mem::forget((replayed, base_tally, candidate_tally, history));
    Ok(ExitCode::SUCCESS)
}
