//! The kill loop: `vroeg run` on a topic of generated signals, SIGKILLed at
//! random points and restarted each time, against an uninterrupted
//! reference run of the same input. Both run with `engine.clock = "event"`,
//! so that their states and events can be compared byte for byte.
//!
//! CI runs a reduced loop (20 k signals, 5 kills). The full one:
//! `scripts/kill-loop.sh` (200 k signals, 20 kills). Knobs:
//! `VROEG_TEST_KILL_LOOP_SIGNALS`, `VROEG_TEST_KILL_LOOP_KILLS`, `VROEG_TEST_KILL_LOOP_SEED`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use vroeg_kafka::ContentMode;

use crate::kafka::{broker, create_topics, send, settle, unique, Extra, Msg, Reader, Service};

pub(crate) fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A seed knob: `name` if set, else the current time (printed, so that a
/// failing run can be repeated).
pub(crate) fn seed(name: &str) -> u64 {
    let seed = knob(
        name,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    );
    // Printed first, so that a run that fails on the way can be repeated.
    eprintln!("{name}={seed}");
    seed
}

/// `signals` generated lines (generator seed `seed`), dated so that the
/// recent ones are in window.
pub(crate) fn input(signals: usize, seed: u64) -> Vec<String> {
    let households = (signals as u64 * 7 / 2).max(1000);
    let lines: Vec<String> = crate::kafka::generated(households, seed)
        .into_iter()
        .take(signals)
        .collect();
    assert!(
        lines.len() >= signals * 9 / 10,
        "generated {} of {signals}",
        lines.len()
    );
    lines
}

/// Event time, and no retention purge: the purge runs on a timer, so the
/// runs would purge at different points and their states could differ.
pub(crate) fn event_clock() -> Extra {
    Extra {
        engine: "clock = \"event\"".into(),
        sections: "[retention]\npurge_interval_secs = 0".into(),
        ..Extra::default()
    }
}

/// `vroeg run` on event time without the purge ([`event_clock`]).
pub(crate) fn start_on(
    brokers: &str,
    topics: &crate::kafka::Topics,
    dir: &Path,
    group: &str,
) -> Service {
    Service::start_extra(
        brokers,
        topics,
        dir,
        group,
        "structured",
        50,
        &event_clock(),
    )
}

pub(crate) fn dump(dir: &Path) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_vroeg"))
        .args([
            "state",
            "dump",
            "--state",
            dir.join("state").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Messages by id (alert id, or dead-letter source offset): the distinct
/// contents seen for each, and how many messages there were.
pub(crate) fn by_id(msgs: &[Msg], dead: bool) -> (BTreeMap<String, Vec<Vec<u8>>>, usize) {
    let mut map: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for m in msgs {
        let id = if dead {
            m.header("vroeg_source_offset").unwrap()
        } else {
            m.alert()["id"].as_str().unwrap().to_owned()
        };
        let contents = map.entry(id).or_default();
        if !contents.contains(&m.payload) {
            contents.push(m.payload.clone());
        }
    }
    (map, msgs.len())
}

/// Read a topic until at least `distinct` ids are in (any number with
/// `None`) and nothing new came for a few seconds.
pub(crate) fn drain(
    reader: &mut Reader,
    dead: bool,
    distinct: Option<usize>,
) -> (BTreeMap<String, Vec<Vec<u8>>>, usize) {
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let before = reader.msgs.len();
        reader.until(0, Duration::from_secs(4), Duration::from_secs(30));
        let have = by_id(&reader.msgs, dead);
        let quiet = reader.msgs.len() == before;
        if (quiet && distinct.is_none_or(|d| have.0.len() >= d)) || Instant::now() > deadline {
            return have;
        }
    }
}

/// What a run left behind: its alerts and dead letters by id (with how
/// many messages there were), and its final state dump.
pub(crate) struct Outcome {
    pub alerts: BTreeMap<String, Vec<Vec<u8>>>,
    pub alert_count: usize,
    pub dead: BTreeMap<String, Vec<Vec<u8>>>,
    pub dead_count: usize,
    pub state: Vec<String>,
}

/// How a run differs from the reference run of the same input.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Diff {
    /// Events of the reference the run lacks.
    pub lost: usize,
    /// Events the reference does not have.
    pub unexpected: usize,
    /// Ids whose messages differ in content from the reference.
    pub differing: usize,
    /// Extra copies of a message.
    pub duplicates: usize,
    /// State dump lines that differ.
    pub state_diff: usize,
}

impl Outcome {
    pub(crate) fn diff(&self, reference: &Outcome) -> Diff {
        let missing = |mine: &BTreeMap<String, Vec<Vec<u8>>>,
                       theirs: &BTreeMap<String, Vec<Vec<u8>>>| {
            theirs.keys().filter(|id| !mine.contains_key(*id)).count()
        };
        let differing = |mine: &BTreeMap<String, Vec<Vec<u8>>>,
                         theirs: &BTreeMap<String, Vec<Vec<u8>>>| {
            mine.iter()
                .filter(|(id, contents)| theirs.get(*id).is_some_and(|r| *contents != r))
                .count()
        };
        Diff {
            lost: missing(&self.alerts, &reference.alerts) + missing(&self.dead, &reference.dead),
            unexpected: missing(&reference.alerts, &self.alerts),
            differing: differing(&self.alerts, &reference.alerts)
                + differing(&self.dead, &reference.dead),
            duplicates: (self.alert_count - self.alerts.len())
                + (self.dead_count - self.dead.len()),
            state_diff: reference
                .state
                .iter()
                .zip(&self.state)
                .filter(|(a, b)| a != b)
                .count()
                + reference.state.len().abs_diff(self.state.len()),
        }
    }
}

#[test]
fn kill_loop_loses_nothing_and_doubles_nothing() {
    let signals = knob("VROEG_TEST_KILL_LOOP_SIGNALS", 20_000) as usize;
    let kills = knob("VROEG_TEST_KILL_LOOP_KILLS", 5) as usize;
    let seed = seed("VROEG_TEST_KILL_LOOP_SEED");
    let lines = input(signals, 11);
    let started = Instant::now();

    // The reference: one uninterrupted run.
    let ref_topics = create_topics("killref", 1);
    send(&ref_topics.signals, &lines, ContentMode::Structured);
    let ref_dir = tempfile::tempdir().unwrap();
    let ref_group = unique("g");
    let service = start_on(broker(), &ref_topics, ref_dir.path(), &ref_group);
    let mut reader = Reader::new(&ref_topics.alerts);
    settle(&ref_topics, &ref_group, &[&service]);
    let (ref_alerts, ref_count) = drain(&mut reader, false, Some(1));
    assert_eq!(service.terminate(), 0);
    assert_eq!(
        ref_count,
        ref_alerts.len(),
        "the reference run sent nothing twice"
    );
    let (ref_dead, _) = drain(&mut Reader::new(&ref_topics.dlq), true, None);
    let ref_state = dump(ref_dir.path());
    assert!(ref_alerts.len() > 100 && !ref_dead.is_empty() && !ref_state.is_empty());
    let ref_secs = started.elapsed().as_secs_f64();

    // The same input, killed at `kills` random points.
    let topics = create_topics("killloop", 1);
    send(&topics.signals, &lines, ContentMode::Structured);
    let dir = tempfile::tempdir().unwrap();
    let group = unique("g");
    let mut rng = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut points: Vec<usize> = (0..kills)
        .map(|_| {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let fraction = 0.02 + 0.96 * ((rng >> 33) as f64 / (1u64 << 31) as f64);
            (ref_alerts.len() as f64 * fraction) as usize
        })
        .collect();
    points.sort_unstable();
    let mut reader = Reader::new(&topics.alerts);
    let mut survived = 0;
    for target in &points {
        let service = start_on(broker(), &topics, dir.path(), &group);
        let seen = reader
            .until(*target, Duration::ZERO, Duration::from_secs(600))
            .len();
        assert!(
            seen >= *target,
            "alerts stopped flowing at {seen} of {target}"
        );
        service.kill(); // SIGKILL
        survived += 1;
    }
    let service = start_on(broker(), &topics, dir.path(), &group);
    let (alerts, count) = drain(&mut reader, false, Some(ref_alerts.len()));
    assert_eq!(service.terminate(), 0);
    let (dead, dead_count) = drain(&mut Reader::new(&topics.dlq), true, Some(ref_dead.len()));
    let state = dump(dir.path());

    let reference = Outcome {
        alerts: ref_alerts.clone(),
        alert_count: ref_count,
        dead: ref_dead.clone(),
        dead_count: ref_dead.len(),
        state: ref_state,
    };
    let Diff {
        lost,
        unexpected,
        differing,
        duplicates,
        state_diff,
    } = Outcome {
        alerts,
        alert_count: count,
        dead,
        dead_count,
        state,
    }
    .diff(&reference);
    let state_len = reference.state.len();
    println!(
        "kill loop: {} signals, {survived} SIGKILLs survived (seed {seed}); {} alerts and {} dead letters in the reference; \
         lost {lost}, unexpected {unexpected}, duplicates {duplicates}, differing content {differing}; \
         state dump {} lines, {state_diff} differing; reference run {ref_secs:.1} s, whole loop {:.1} s",
        lines.len(),
        ref_alerts.len(),
        ref_dead.len(),
        state_len,
        started.elapsed().as_secs_f64(),
    );
    assert_eq!(lost, 0, "events lost");
    assert_eq!(unexpected, 0, "events the reference run did not have");
    assert_eq!(differing, 0, "content differs from the reference");
    assert_eq!(
        duplicates, 0,
        "a read_committed consumer saw a message twice"
    );
    assert_eq!(state_diff, 0, "final states differ from the reference");
}
