//! The kill loop: `vroeg run` on a topic of generated signals, SIGKILLed at
//! random points and restarted each time, against an uninterrupted
//! reference run of the same input. Both run with `engine.clock = "event"`,
//! so that their states and events can be compared byte for byte.
//!
//! CI runs a reduced loop (20 k signals, 5 kills). The full one:
//! `scripts/kill-loop.sh` (200 k signals, 20 kills). Knobs:
//! `VROEG_KILL_LOOP_SIGNALS`, `VROEG_KILL_LOOP_KILLS`, `VROEG_KILL_LOOP_SEED`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use vroeg_kafka::ContentMode;

use crate::kafka::{broker, create_topics, send, unique, Extra, Msg, Reader, Service};

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `signals` generated lines, dated so that the recent ones are in window.
fn input(signals: usize) -> Vec<String> {
    let households = (signals as u64 * 7 / 2).max(1000);
    let lines: Vec<String> = crate::kafka::generated(households, 11)
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

fn event_clock() -> Extra {
    Extra {
        engine: "clock = \"event\"".into(),
        ..Extra::default()
    }
}

fn start(topics: &crate::kafka::Topics, dir: &Path, group: &str) -> Service {
    Service::start_extra(
        broker(),
        topics,
        dir,
        group,
        "structured",
        50,
        &event_clock(),
    )
}

fn dump(dir: &Path) -> Vec<String> {
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
fn by_id(msgs: &[Msg], dead: bool) -> (BTreeMap<String, Vec<Vec<u8>>>, usize) {
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
fn drain(
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

#[test]
fn kill_loop_loses_nothing_and_doubles_only_exact_resends() {
    let signals = knob("VROEG_KILL_LOOP_SIGNALS", 20_000) as usize;
    let kills = knob("VROEG_KILL_LOOP_KILLS", 5) as usize;
    let seed = knob(
        "VROEG_KILL_LOOP_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    );
    let lines = input(signals);
    let started = Instant::now();

    // The reference: one uninterrupted run.
    let ref_topics = create_topics("killref", 1);
    send(&ref_topics.signals, &lines, ContentMode::Structured);
    let ref_dir = tempfile::tempdir().unwrap();
    let service = start(&ref_topics, ref_dir.path(), &unique("g"));
    let mut reader = Reader::new(&ref_topics.alerts);
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
        let service = start(&topics, dir.path(), &group);
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
    let service = start(&topics, dir.path(), &group);
    let (alerts, count) = drain(&mut reader, false, Some(ref_alerts.len()));
    assert_eq!(service.terminate(), 0);
    let (dead, dead_count) = drain(&mut Reader::new(&topics.dlq), true, Some(ref_dead.len()));
    let state = dump(dir.path());

    let lost = ref_alerts
        .keys()
        .filter(|id| !alerts.contains_key(*id))
        .count()
        + ref_dead.keys().filter(|o| !dead.contains_key(*o)).count();
    let unexpected = alerts
        .keys()
        .filter(|id| !ref_alerts.contains_key(*id))
        .count();
    let differing = alerts
        .iter()
        .filter(|(id, contents)| ref_alerts.get(*id).is_some_and(|r| *contents != r))
        .count()
        + dead
            .iter()
            .filter(|(o, contents)| ref_dead.get(*o).is_some_and(|r| *contents != r))
            .count();
    let duplicates = (count - alerts.len()) + (dead_count - dead.len());
    let state_diff = ref_state.iter().zip(&state).filter(|(a, b)| a != b).count()
        + ref_state.len().abs_diff(state.len());
    println!(
        "kill loop: {} signals, {survived} SIGKILLs survived (seed {seed}); {} alerts and {} dead letters in the reference; \
         lost {lost}, unexpected {unexpected}, duplicates {duplicates} (exact re-sends), differing content {differing}; \
         state dump {} lines, {state_diff} differing; reference run {ref_secs:.1} s, whole loop {:.1} s",
        lines.len(),
        ref_alerts.len(),
        ref_dead.len(),
        state.len(),
        started.elapsed().as_secs_f64(),
    );
    assert_eq!(lost, 0, "events lost");
    assert_eq!(unexpected, 0, "events the reference run did not have");
    assert_eq!(differing, 0, "a duplicate must be an exact re-send");
    assert_eq!(state_diff, 0, "final states differ from the reference");
}
