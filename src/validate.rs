//! `vroeg validate`: a partner's pre-flight check. Runs the engine's own
//! decoder (the intake's classification, with the same limits) over a file
//! or a topic and reports every message it would dead-letter, with its line
//! (or partition and offset), error code, field and reason. The decoder's
//! reasons never repeat the personal data they found, and nothing else of a
//! message is printed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use vroeg_engine::{Classified, ClockMode, EngineConfig, Intake, Record};

#[derive(Args)]
pub struct ValidateArgs {
    /// Files to check: JSON lines, one message per line (`-` for standard
    /// input). Blank lines are skipped, as `vroeg send` skips them.
    #[arg(required_unless_present = "topic")]
    pub files: Vec<PathBuf>,
    /// Each file is one whole message (as sent in one Kafka message), not
    /// JSON lines.
    #[arg(long)]
    pub message: bool,
    /// The messages are wijkteam feedback (contact attempts and outcomes),
    /// not partner signals.
    #[arg(long)]
    pub feedback: bool,
    /// Check every message on this Kafka topic instead, from the beginning
    /// to its end when the check starts (committed messages only).
    #[arg(long, conflicts_with = "files")]
    pub topic: Option<String>,
    /// Bootstrap servers, for `--topic`.
    #[arg(long, env = "VROEG_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Treat this RFC 3339 time as now, for the check on dates in the
    /// future (default: the wall clock).
    #[arg(long)]
    pub now: Option<String>,
    /// Largest accepted message in bytes (the service's
    /// `engine.max_message_bytes`).
    #[arg(long, default_value_t = vroeg_core::signal::DEFAULT_MAX_BYTES)]
    pub max_message_bytes: usize,
    /// Print at most this many problems (the counts are always complete).
    #[arg(long, default_value_t = 1000)]
    pub max_problems: usize,
}

/// What the check found.
#[derive(Default)]
struct Tally {
    messages: u64,
    problems: u64,
    by_code: BTreeMap<String, u64>,
}

impl Tally {
    fn check(&mut self, intake: &Intake, record: &Record, now: i64, at: &str, max: usize) {
        self.messages += 1;
        if let Classified::Rejected(error) = intake.classify(record, now) {
            self.problems += 1;
            *self
                .by_code
                .entry(error.code.as_str().to_owned())
                .or_default() += 1;
            if self.problems as usize <= max {
                println!("{at}: {error}");
            } else if self.problems as usize == max + 1 {
                println!("(more problems; only the counts follow)");
            }
        }
    }
}

pub fn run(args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let now = match &args.now {
        Some(s) => vroeg_core::time::parse_rfc3339(s)
            .with_context(|| format!("--now {s:?} is not an RFC 3339 time"))?,
        None => vroeg_kafka::wall_now(),
    };
    // The secret only keys households; validation never shows a key.
    let mut config = EngineConfig::new(b"validate".to_vec(), ClockMode::Wall);
    config.max_bytes = args.max_message_bytes;
    // The stream the records come from: the topic, or a name for files.
    // Feedback is told from signals by its stream, as in the service.
    let stream: Arc<str> = match (&args.topic, args.feedback) {
        (Some(topic), _) => topic.as_str().into(),
        (None, true) => "feedback".into(),
        (None, false) => "signals".into(),
    };
    if args.feedback {
        config.feedback_streams = vec![stream.to_string()];
    }
    let intake = Intake::new(&config);
    let mut tally = Tally::default();
    if let Some(topic) = &args.topic {
        vroeg_kafka::send::read_topic(&args.brokers, topic, None, |record| {
            let at = format!("{topic}/{}@{}", record.partition, record.offset);
            tally.check(&intake, &record, now, &at, args.max_problems);
        })?;
        report(&tally, topic);
    }
    for file in &args.files {
        let name = file.display().to_string();
        let bytes = if file.as_os_str() == "-" {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut b)
                .context("cannot read standard input")?;
            b
        } else {
            std::fs::read(file).with_context(|| format!("cannot read {name}"))?
        };
        let record = |offset: i64, payload: &[u8]| Record {
            stream: stream.clone(),
            partition: 0,
            offset,
            payload: payload.to_vec(),
            headers: Vec::new(),
        };
        let (messages, problems) = (tally.messages, tally.problems);
        if args.message {
            tally.check(&intake, &record(0, &bytes), now, &name, args.max_problems);
        } else {
            for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let at = format!("{name}:{}", i + 1);
                tally.check(
                    &intake,
                    &record(i as i64, line),
                    now,
                    &at,
                    args.max_problems,
                );
            }
            if tally.messages == messages {
                // An empty file checks nothing: never report that as a pass.
                println!("{name}: no messages");
                tally.problems += 1;
                *tally.by_code.entry("no_messages".into()).or_default() += 1;
            } else if args.files.len() > 1 {
                println!(
                    "{name}: {} messages, {} with problems",
                    tally.messages - messages,
                    tally.problems - problems
                );
            }
        }
    }
    if !args.files.is_empty() {
        let what = match args.files.as_slice() {
            [one] => one.display().to_string(),
            many => format!("{} files", many.len()),
        };
        report(&tally, &what);
    }
    Ok(if tally.problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn report(tally: &Tally, what: &str) {
    let codes = tally
        .by_code
        .iter()
        .map(|(code, n)| format!("{code} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    println!(
        "{what}: {} messages, {} valid, {} with problems{}",
        tally.messages,
        tally.messages - tally.problems.min(tally.messages),
        tally.problems,
        if codes.is_empty() {
            String::new()
        } else {
            format!(" ({codes})")
        }
    );
}
