//! `vroeg rules diff`: the same signals under two rule sets, compared.
//!
//! Both replays run at once, one per core, through `vroeg replay`'s own
//! path (the engine, sled in a temporary directory, event time), so each
//! side's counts are those of a separate replay. The comparison itself is
//! `vroeg_rules::diff`.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use vroeg_rules::diff::{compare, html, table, Compare, Event};

use crate::replay::{replay, ReplayArgs};

#[derive(Args)]
pub struct RulesDiffArgs {
    /// The rule files or directories in force now.
    #[arg(long, required = true, num_args = 1..)]
    pub base: Vec<PathBuf>,
    /// The changed rule files or directories.
    #[arg(long, required = true, num_args = 1..)]
    pub candidate: Vec<PathBuf>,
    /// The history: signals as JSON lines (`vroeg gen`, or an export of the
    /// signal topic).
    #[arg(long)]
    pub signals: PathBuf,
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

fn side(args: &RulesDiffArgs, rules: &[PathBuf], dir: &Path, name: &str) -> ReplayArgs {
    ReplayArgs {
        rules: rules.to_vec(),
        signals: args.signals.clone(),
        out: Some(dir.join(format!("{name}.alerts.jsonl"))),
        rejects: Some(dir.join(format!("{name}.rejects.jsonl"))),
        state: Some(dir.join(format!("{name}.state"))),
        batch_size: 20_000,
        no_fsync: true,
        school_purpose: args.school_purpose,
        no_escalation: !args.escalate,
        routing: args.routing.clone(),
        household_secret: args.household_secret.clone(),
        now: args.now.clone(),
        feedback: None,
        summary_json: None,
        until: None,
        quiet: true,
    }
}

/// A replay's case events, as much of each as the comparison reads; the
/// contact details only when they are to be shown.
fn events(path: &Path, personal: bool) -> anyhow::Result<Vec<Event>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        let mut event: Event = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not a case event", path.display(), n + 1))?;
        if !personal {
            event.contact = None;
        }
        out.push(event);
    }
    Ok(out)
}

pub fn run(args: &RulesDiffArgs) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let (base, candidate) = (
        side(args, &args.base, dir.path(), "basis"),
        side(args, &args.candidate, dir.path(), "kandidaat"),
    );
    let (b, c) = std::thread::scope(|scope| {
        let b = scope.spawn(|| replay(&base, false));
        let c = scope.spawn(|| replay(&candidate, false));
        (b.join(), c.join())
    });
    let b = b
        .map_err(|_| anyhow::anyhow!("the base replay panicked"))?
        .context("the base rules")?;
    let c = c
        .map_err(|_| anyhow::anyhow!("the candidate replay panicked"))?
        .context("the candidate rules")?;
    anyhow::ensure!(
        b.stats.records > 0,
        "{} holds no signals: nothing to compare",
        args.signals.display()
    );
    let diff = compare(
        &events(&b.alerts_file, args.with_personal_data)?,
        &events(&c.alerts_file, args.with_personal_data)?,
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
        b.stats.records,
        b.rules_version,
        c.rules_version,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
