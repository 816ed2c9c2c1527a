//! The partitioned service (`vroeg run --role all`) on a real broker:
//! three instances in one group share twelve household partitions while
//! instances are SIGKILLed and restarted, against an uninterrupted
//! single-instance reference; one instance's state directory is deleted
//! and rebuilt from the changelog; the embedded engine (`vroeg replay`)
//! gives the same case events for the same input; and a changelog record
//! that does not decode refuses its partition, whether the restore reads a
//! cache's tail or rebuilds it whole.
//!
//! The partner topic has three partitions keyed by partner, so a
//! household's signals arrive through several partitions, interleaved
//! differently in every run. Both runs use `engine.clock = "event"`.
//!
//! CI runs a reduced loop. The full one (100 k signals, 10 kills):
//! `scripts/kill-loop.sh --partitioned`. Knobs:
//! `VROEG_TEST_PARTITIONED_SIGNALS`, `VROEG_TEST_PARTITIONED_KILLS`,
//! `VROEG_TEST_PARTITIONED_SEED`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use vroeg_kafka::ContentMode;

use crate::kafka::{
    broker, create_topics, send, settle, unique, Extra, Msg, Reader, Service, Topics,
};
use crate::killloop::{dump, input, knob, seed};

/// Household partitions in these tests.
const PARTITIONS: i32 = 12;

/// The topics and group of one run.
struct Run {
    topics: Topics,
    group: String,
}

impl Run {
    fn new(name: &str) -> Run {
        Run {
            topics: create_topics(name, 3),
            group: unique("g"),
        }
    }

    /// `vroeg run --role all` as instance `instance`, on event time and
    /// without the purge (which runs on a timer).
    fn start(&self, dir: &Path, instance: &str) -> Service {
        let extra = Extra {
            engine: "clock = \"event\"".into(),
            sections: "[retention]\npurge_interval_secs = 0".into(),
            env: vec![
                ("VROEG_KAFKA_PARTITIONS".into(), PARTITIONS.to_string()),
                ("VROEG_KAFKA_INSTANCE_ID".into(), instance.into()),
            ],
            ..Extra::default()
        };
        Service::start_extra(
            broker(),
            &self.topics,
            dir,
            &self.group,
            "structured",
            200,
            &extra,
        )
    }
}

/// What a run published and kept.
struct Outcome {
    /// Case events by id: every distinct content seen, and how many.
    alerts: BTreeMap<String, Vec<Vec<u8>>>,
    alert_count: usize,
    /// Dead letters by source partition and offset.
    dead: BTreeMap<(String, String), Vec<Vec<u8>>>,
    dead_count: usize,
    /// The union of the state dump lines of every instance. (After a
    /// graceful shutdown hands partitions over, several instances hold the
    /// same partition; their copies must agree line by line, and any stale
    /// copy would show as a line the reference does not have.)
    state: BTreeSet<String>,
}

fn read_all(topic: &str) -> Vec<Msg> {
    let mut reader = Reader::new(topic);
    reader.until(0, Duration::from_secs(5), Duration::from_secs(600));
    reader.msgs
}

fn outcome(run: &Run, dirs: &[&Path]) -> Outcome {
    let mut alerts: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    let msgs = read_all(&run.topics.alerts);
    for m in &msgs {
        // The CloudEvent's `time` and `id` are the alert's own; the whole
        // payload must match.
        let id = m.alert()["id"].as_str().unwrap().to_owned();
        let seen = alerts.entry(id).or_default();
        if !seen.contains(&m.payload) {
            seen.push(m.payload.clone());
        }
    }
    let mut dead: BTreeMap<(String, String), Vec<Vec<u8>>> = BTreeMap::new();
    let dead_msgs = read_all(&run.topics.dlq);
    for m in &dead_msgs {
        let key = (
            m.header("vroeg_source_partition").unwrap(),
            m.header("vroeg_source_offset").unwrap(),
        );
        let mut content = m.payload.clone();
        content.extend(m.header("vroeg_error_code").unwrap().into_bytes());
        dead.entry(key).or_default().push(content);
    }
    let state: BTreeSet<String> = dirs.iter().flat_map(|d| dump(d)).collect();
    Outcome {
        alerts,
        alert_count: msgs.len(),
        dead,
        dead_count: dead_msgs.len(),
        state,
    }
}

/// Everything that differs between a run and the reference, by kind.
#[derive(Debug, Default, PartialEq, Eq)]
struct Diff {
    lost: usize,
    unexpected: usize,
    differing: usize,
    duplicated: usize,
    state_lines: usize,
}

fn diff(run: &Outcome, reference: &Outcome) -> Diff {
    let lost = reference
        .alerts
        .keys()
        .filter(|k| !run.alerts.contains_key(*k))
        .count()
        + reference
            .dead
            .keys()
            .filter(|k| !run.dead.contains_key(*k))
            .count();
    let unexpected = run
        .alerts
        .keys()
        .filter(|k| !reference.alerts.contains_key(*k))
        .count()
        + run
            .dead
            .keys()
            .filter(|k| !reference.dead.contains_key(*k))
            .count();
    let differing = run
        .alerts
        .iter()
        .filter(|(k, v)| reference.alerts.get(*k).is_some_and(|r| r != *v))
        .count()
        + run
            .dead
            .iter()
            .filter(|(k, v)| reference.dead.get(*k).is_some_and(|r| r[0] != v[0]))
            .count();
    Diff {
        lost,
        unexpected,
        differing,
        duplicated: (run.alert_count - run.alerts.len()) + (run.dead_count - run.dead.len()),
        state_lines: run.state.symmetric_difference(&reference.state).count(),
    }
}

fn dirs(n: usize) -> Vec<tempfile::TempDir> {
    (0..n).map(|_| tempfile::tempdir().unwrap()).collect()
}

fn state_dir(dir: &Path) -> PathBuf {
    dir.join("state")
}

#[test]
fn three_instances_killed_ten_times_publish_each_case_event_exactly_once_and_restore_from_the_changelog(
) {
    let signals = knob("VROEG_TEST_PARTITIONED_SIGNALS", 20_000) as usize;
    let kills = knob("VROEG_TEST_PARTITIONED_KILLS", 10) as usize;
    let seed = seed("VROEG_TEST_PARTITIONED_SEED");
    let lines = input(signals, 23);
    let started = Instant::now();

    // The reference: one instance, never interrupted.
    let reference_run = Run::new("pref");
    send(
        &reference_run.topics.signals,
        &lines,
        ContentMode::Structured,
    );
    let ref_dir = tempfile::tempdir().unwrap();
    let service = reference_run.start(ref_dir.path(), "ref-1");
    settle(&reference_run.topics, &reference_run.group, &[&service]);
    assert_eq!(service.terminate(), 0);
    let reference = outcome(&reference_run, &[ref_dir.path()]);
    assert_eq!(
        reference.alert_count,
        reference.alerts.len(),
        "the reference sent nothing twice"
    );
    assert!(
        reference.alerts.len() > 100 && !reference.dead.is_empty() && !reference.state.is_empty()
    );
    let reference_secs = started.elapsed().as_secs_f64();

    // The embedded engine on the same lines gives the same case events.
    let file = ref_dir.path().join("signalen.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vroeg"))
        .args(["replay", "--rules"])
        .arg(crate::kafka::root().join("rules"))
        .arg("--signals")
        .arg(&file)
        .arg("--state")
        .arg(ref_dir.path().join("replay-state"))
        .env("VROEG_HOUSEHOLD_SECRET", "integration-test-secret")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replayed: BTreeMap<String, serde_json::Value> =
        std::fs::read_to_string(ref_dir.path().join("signalen.jsonl.alerts.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (v["id"].as_str().unwrap().to_owned(), v)
            })
            .collect();
    let published: BTreeMap<String, serde_json::Value> = read_all(&reference_run.topics.alerts)
        .iter()
        .map(|m| {
            let v = m.alert();
            (v["id"].as_str().unwrap().to_owned(), v)
        })
        .collect();
    assert_eq!(
        published.len(),
        replayed.len(),
        "replay and the service differ in number"
    );
    let unlike = published
        .iter()
        .filter(|(k, v)| replayed.get(*k) != Some(*v))
        .count();
    assert_eq!(
        unlike, 0,
        "case events of replay and the partitioned service differ"
    );

    // Three instances in one group, SIGKILLed at random moments.
    let run = Run::new("pkill");
    send(&run.topics.signals, &lines, ContentMode::Structured);
    let dirs = dirs(3);
    let mut services: Vec<Option<Service>> = (0..3)
        .map(|i| Some(run.start(dirs[i].path(), &format!("vroeg-{i}"))))
        .collect();
    let mut rng = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        rng >> 33
    };
    let mut reader = Reader::new(&run.topics.alerts);
    let total = reference.alerts.len();
    for k in 0..kills {
        // Kill at a random point of the stream, spread over its length.
        let target =
            total * (k + 1) / (kills + 2) + (next() as usize % (total / (kills + 2)).max(1));
        reader.until(target, Duration::ZERO, Duration::from_secs(600));
        let victim = next() as usize % 3;
        services[victim].take().unwrap().kill();
        std::thread::sleep(Duration::from_millis(next() % 1500));
        services[victim] = Some(run.start(dirs[victim].path(), &format!("vroeg-{victim}")));
    }
    settle(
        &run.topics,
        &run.group,
        &services.iter().flatten().collect::<Vec<_>>(),
    );
    for s in &mut services {
        assert_eq!(s.take().unwrap().terminate(), 0);
    }
    let paths: Vec<&Path> = dirs.iter().map(|d| d.path()).collect();
    let killed = outcome(&run, &paths);
    let d = diff(&killed, &reference);
    println!(
        "partitioned kill loop: {} signals, {kills} SIGKILLs of 3 instances (seed {seed}); reference: {} case events, {} dead letters, \
         {} state lines in {reference_secs:.1} s; killed run: {d:?}; whole test {:.1} s",
        lines.len(),
        reference.alerts.len(),
        reference.dead.len(),
        reference.state.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        d,
        Diff::default(),
        "the killed run differs from the reference"
    );

    // Restore: one instance's state directory is deleted; it rebuilds its
    // partitions from the changelog.
    std::fs::remove_dir_all(state_dir(dirs[1].path())).unwrap();
    let mut services: Vec<Service> = (0..3)
        .map(|i| run.start(dirs[i].path(), &format!("vroeg-{i}")))
        .collect();
    let restarted = Instant::now();
    settle(
        &run.topics,
        &run.group,
        &services.iter().collect::<Vec<_>>(),
    );
    for s in services.drain(..) {
        assert_eq!(s.terminate(), 0);
    }
    let rebuilt = dump(dirs[1].path());
    assert!(!rebuilt.is_empty(), "the rebuilt instance holds partitions");
    let known: BTreeSet<&String> = reference.state.iter().collect();
    assert!(
        rebuilt.iter().all(|l| known.contains(l)),
        "a rebuilt line differs from the reference"
    );
    let again = outcome(&run, &paths);
    assert_eq!(
        diff(&again, &reference),
        Diff::default(),
        "after the restore"
    );
    println!(
        "restore: {} state lines rebuilt from the changelog; settled {:.1} s after the restart",
        rebuilt.len(),
        restarted.elapsed().as_secs_f64()
    );
}

#[test]
fn a_changelog_record_that_does_not_decode_refuses_its_partition_in_both_restore_paths() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    const BROKEN: i32 = 5;
    let run = Run::new("pcorrupt");
    let dir = tempfile::tempdir().unwrap();
    // A first start creates the internal topics and an (empty) cache of
    // every partition.
    let service = run.start(dir.path(), "vroeg-0");
    service.wait_ready();
    assert_eq!(service.terminate(), 0);
    // A household record whose value does not decode, as a version skew or
    // a hand-written record would leave it.
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker())
        .create()
        .unwrap();
    let value = [vroeg_store::FORMAT_VERSION, 0xff, 0xff, 0xff];
    producer
        .send(
            BaseRecord::to(&run.topics.changelog)
                .partition(BROKEN)
                .key("hbroken")
                .payload(&value[..]),
        )
        .map_err(|(e, _)| e)
        .unwrap();
    producer.flush(Duration::from_secs(30)).unwrap();

    // The same state directory reads the tail of each partition in atomic
    // chunks; a new one rebuilds every partition in a bulk restore. Both
    // refuse the broken partition, say why, count it, and are not ready.
    for path in ["tail", "bulk"] {
        if path == "bulk" {
            std::fs::remove_dir_all(state_dir(dir.path())).unwrap();
        }
        let service = run.start(dir.path(), "vroeg-0");
        let deadline = Instant::now() + Duration::from_secs(120);
        let refused = loop {
            let metrics = service.http("/metrics").map(|(_, m)| m).unwrap_or_default();
            let refused = crate::faults::counter(&metrics, "vroeg_changelog_refused_partitions");
            if refused > 0.0 || Instant::now() > deadline {
                break refused;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        assert_eq!(refused, 1.0, "{path}: one partition refused");
        assert_eq!(
            service.http("/readyz").map(|(s, _)| s),
            Some(503),
            "{path}: not ready with a refused partition"
        );
        let log = std::fs::read_to_string(&service.log).unwrap();
        let line = log
            .lines()
            .find(|l| l.contains("does not decode"))
            .unwrap_or_else(|| panic!("{path}: no error logged:\n{log}"));
        assert!(
            line.contains(&format!("\"partition\":{BROKEN}")) && line.contains("at offset 0"),
            "{path}: {line}"
        );
        assert_eq!(service.terminate(), 0, "{path}");
    }
}
