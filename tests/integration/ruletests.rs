//! One engine: every shipped rule test, run by `vroeg rules test`'s
//! runner, gives the same case events as `vroeg replay` of the same
//! signals.
//!
//! The runner names its households (`a`, `b`); replay finds them by the
//! pseudonym of their address. So replay's household keys are written back
//! as the names before the events are compared, whole: type, time, ids,
//! category, priority, rules, values, team, work queue, contact details.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};
use vroeg_core::time::{format_rfc3339, parse_rfc3339};
use vroeg_core::HouseholdKeyer;
use vroeg_engine::testing::{replay_inputs, run_file, test_files};

use crate::kafka::root;

const SECRET: &str = "regeltest-en-replay";

#[test]
fn a_rule_test_and_a_replay_of_its_signals_give_identical_case_events() {
    let dir = tempfile::tempdir().unwrap();
    let files = test_files(&[root().join("rules/tests")]).unwrap();
    let keyer = HouseholdKeyer::new(SECRET.as_bytes());
    let (mut compared, mut events, mut with_feedback) = (0, 0, 0);
    let mut skipped: Vec<String> = Vec::new();
    let mut kinds = std::collections::BTreeSet::new();
    for file in &files {
        let outcome = run_file(file).unwrap();
        let inputs = replay_inputs(file).unwrap();
        assert_eq!(outcome.tests.len(), inputs.tests.len());
        for (n, (test, input)) in outcome.tests.iter().zip(&inputs.tests).enumerate() {
            assert!(
                test.failures.is_empty(),
                "{}: {:?}",
                test.name,
                test.failures
            );
            let key = |name: &str| {
                let (_, address) = input.households.iter().find(|(n, _)| n == name).unwrap();
                keyer.key(address).0
            };
            let signals = dir.path().join(format!("{}-{n}.jsonl", file_stem(file)));
            std::fs::write(&signals, input.lines.join("\n") + "\n").unwrap();
            let out = dir
                .path()
                .join(format!("{}-{n}.alerts.jsonl", file_stem(file)));
            let mut args = vec![
                "replay".to_owned(),
                "--quiet".into(),
                "--signals".into(),
                signals.display().to_string(),
                "--out".into(),
                out.display().to_string(),
                // The signals' own time is never "in the future".
                "--now".into(),
                "2100-01-01T00:00:00Z".into(),
            ];
            for rules in &inputs.rule_files {
                args.extend(["--rules".into(), rules.display().to_string()]);
            }
            if inputs.school_purpose {
                args.push("--school-purpose".into());
            }
            if let Some(routing) = &inputs.routing {
                args.extend(["--routing".into(), routing.display().to_string()]);
            }
            // The contact attempts, as a wijkteam's feedback on the case the
            // household had open then (in the test's own events).
            if !input.contact_attempts.is_empty() {
                let mut lines = String::new();
                for (i, (time, name)) in input.contact_attempts.iter().enumerate() {
                    let Some(case) = test.events.iter().rfind(|a| {
                        a.huishouden == *name && parse_rfc3339(&a.tijd).unwrap() <= *time
                    }) else {
                        skipped.push(test.name.clone());
                        continue;
                    };
                    let zaak = case.zaak_id.replacen(name.as_str(), &key(name), 1);
                    let day = vroeg_core::time::Day::of_millis(*time);
                    lines +=
                        &json!({"id": format!("c{i}"), "zaak_id": zaak, "type": "contactpoging",
                        "contactsoort": "Telefoon", "bereikt": false, "datum": day.to_string()})
                        .to_string();
                    lines += "\n";
                }
                let feedback = dir
                    .path()
                    .join(format!("{}-{n}.feedback.jsonl", file_stem(file)));
                std::fs::write(&feedback, lines).unwrap();
                args.extend(["--feedback".into(), feedback.display().to_string()]);
                with_feedback += 1;
            }
            if let Some(until) = input.until {
                args.extend(["--until".into(), format_rfc3339(until)]);
            }
            let run = Command::new(env!("CARGO_BIN_EXE_vroeg"))
                .args(&args)
                .env("VROEG_HOUSEHOLD_SECRET", SECRET)
                .output()
                .unwrap();
            assert!(
                run.status.success(),
                "{}: {}",
                test.name,
                String::from_utf8_lossy(&run.stderr)
            );
            // Replay's household keys written back as the test's names.
            let mut replayed = std::fs::read_to_string(&out).unwrap();
            for (name, _) in &input.households {
                replayed = replayed.replace(key(name).as_str(), name);
            }
            let replayed: Vec<Value> = replayed
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            let tested: Vec<Value> = test
                .events
                .iter()
                .map(|a| serde_json::to_value(a).unwrap())
                .collect();
            assert_eq!(
                tested,
                replayed,
                "{}: {}: the rule test and the replay differ",
                file.display(),
                test.name
            );
            compared += 1;
            events += tested.len();
            kinds.extend(test.events.iter().map(|a| a.kind.as_str()));
        }
    }
    eprintln!(
        "{compared} rule tests compared with replay ({with_feedback} with contact attempts), \
         {events} case events identical"
    );
    // Every test takes part: a contact attempt always finds its case.
    assert!(skipped.is_empty(), "left out: {skipped:?}");
    assert!(compared >= 37, "only {compared} tests compared");
    assert!(
        with_feedback >= 5,
        "only {with_feedback} tests with contact attempts"
    );
    // Between them they open, update, escalate and close cases.
    for kind in ["geopend", "bijgewerkt", "escalatie", "gesloten"] {
        assert!(kinds.contains(kind), "no {kind} event compared");
    }
}

fn file_stem(file: &Path) -> String {
    file.file_stem().unwrap().to_string_lossy().into_owned()
}
