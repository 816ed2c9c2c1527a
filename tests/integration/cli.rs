//! End-to-end tests of the `vroeg` binary without Kafka: rule checking and
//! testing, generation, replay and the demo.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn vroeg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vroeg"))
        .args(args)
        .current_dir(root())
        .env_remove("VROEG_HOUSEHOLD_SECRET")
        .output()
        .expect("vroeg runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn every_broken_rule_fixture_is_reported_with_its_location() {
    let dir = root().join("tests/fixtures/rules-broken");
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    fixtures.sort();
    assert!(fixtures.len() >= 10, "at least 10 broken rule fixtures");
    for fixture in fixtures {
        let rel = fixture
            .strip_prefix(root())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let out = vroeg(&["rules", "check", &rel]);
        let text = stdout(&out);
        let expected = std::fs::read_to_string(fixture.with_extension("expected")).unwrap();
        assert!(!expected.trim().is_empty(), "{rel} has expected messages");
        // A fixture of lints (warnings only) loads; every other one fails.
        let lints_only = expected.lines().all(|l| l.contains(": warning["));
        assert_eq!(
            out.status.success(),
            lints_only,
            "{rel}: exit status {:?}\n{text}",
            out.status
        );
        for line in expected.lines() {
            assert!(text.contains(line), "{rel}: missing\n  {line}\nin\n{text}");
            // Every message carries file:line:col.
            let loc = line.split(": ").next().unwrap();
            assert_eq!(loc.split(':').count(), 3, "{line}");
        }
    }
}

#[test]
fn the_shipped_rules_check_clean() {
    let out = vroeg(&["rules", "check", "rules"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(!stdout(&out).contains("error"), "{}", stdout(&out));
    // Nor does it draw a lint.
    assert!(!stdout(&out).contains("warning"), "{}", stdout(&out));
    // The school rules: refused with the purpose off (the AVG purpose
    // binding), with their place; with the purpose on, active, no warnings.
    let out = vroeg(&["rules", "check", "rules", "rules/school"]);
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("rules/school/gezin.yaml:19:11: error[purpose-off]"),
        "{}",
        stdout(&out)
    );
    let out = vroeg(&[
        "rules",
        "check",
        "--school-purpose",
        "rules",
        "rules/school",
    ]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).contains("8 active"), "{}", stdout(&out));
    assert!(!stdout(&out).contains("warning"), "{}", stdout(&out));
}

#[test]
fn the_shipped_rule_tests_pass_and_a_changed_expectation_fails() {
    let out = vroeg(&["rules", "test", "rules/tests"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).contains(" 0 failed"), "{}", stdout(&out));

    let tmp = tempfile::tempdir().unwrap();
    let original = std::fs::read_to_string(root().join("rules/tests/meervoudig.yaml")).unwrap();
    let changed = original.replacen("prioriteit: 6", "prioriteit: 5", 1);
    assert_ne!(original, changed);
    let rules = root().join("rules");
    let file = tmp.path().join("meervoudig.yaml");
    std::fs::write(
        &file,
        format!("rule_files: [{:?}]\n{changed}", rules.to_string_lossy()),
    )
    .unwrap();
    let out = vroeg(&["rules", "test", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let text = stdout(&out);
    assert!(text.contains("FAILED"), "{text}");
    assert!(text.contains("prioriteit: expected 5, got 6"), "{text}");
}

fn gen(dir: &Path, name: &str, seed: &str) -> PathBuf {
    let file = dir.join(name);
    let out = vroeg(&[
        "gen",
        "--households",
        "3000",
        "--months",
        "6",
        "--seed",
        seed,
        "--out",
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    file
}

#[test]
fn gen_is_deterministic_and_realistic() {
    let tmp = tempfile::tempdir().unwrap();
    let a = std::fs::read(gen(tmp.path(), "a.jsonl", "5")).unwrap();
    let b = std::fs::read(gen(tmp.path(), "b.jsonl", "5")).unwrap();
    let c = std::fs::read(gen(tmp.path(), "c.jsonl", "6")).unwrap();
    assert_eq!(a, b, "same seed, same bytes");
    assert_ne!(a, c, "another seed, other data");
    let text = String::from_utf8(a).unwrap();
    let mut partners = std::collections::BTreeMap::<String, usize>::new();
    let (mut total, mut invalid) = (0usize, 0usize);
    for line in text.lines() {
        total += 1;
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(v) => {
                if let Some(p) = v["data"]["signaalpartner"].as_str() {
                    if v["data"]["status"] == "open" {
                        *partners.entry(p.to_owned()).or_default() += 1;
                    }
                }
            }
            Err(_) => invalid += 1,
        }
    }
    assert!(total > 500, "{total}");
    assert!(invalid > 0, "some lines are not even JSON");
    let opened: usize = partners.values().sum();
    let share = |p: &str| *partners.get(p).unwrap_or(&0) as f64 / opened as f64;
    assert!(
        (0.38..0.52).contains(&share("Zorg")),
        "Zorg {}",
        share("Zorg")
    );
    assert!(
        (0.19..0.31).contains(&share("Energie")),
        "Energie {}",
        share("Energie")
    );
    assert!(
        (0.14..0.25).contains(&share("Huur")),
        "Huur {}",
        share("Huur")
    );
}

/// `vroeg replay` of `signals` into `out` (plus `extra` arguments), which
/// must succeed; returns its output and its JSON summary.
fn replay_with(signals: &Path, out: &Path, extra: &[&str]) -> (Output, serde_json::Value) {
    let summary = out.with_extension("summary.json");
    let mut args = vec![
        "replay",
        "--signals",
        signals.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--now",
        "2026-12-01T00:00:00Z",
        "--summary-json",
        summary.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = vroeg(&args);
    assert!(
        o.status.success(),
        "{}{}",
        stdout(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    let v = serde_json::from_slice(&std::fs::read(summary).unwrap()).unwrap();
    (o, v)
}

fn replay(signals: &Path, out: &Path, state: Option<&Path>) -> (Output, serde_json::Value) {
    match state {
        Some(s) => replay_with(signals, out, &["--state", s.to_str().unwrap()]),
        None => replay_with(signals, out, &[]),
    }
}

#[test]
fn replay_is_deterministic_and_accounts_for_every_line() {
    let tmp = tempfile::tempdir().unwrap();
    let signals = gen(tmp.path(), "s.jsonl", "11");
    let lines = std::fs::read_to_string(&signals).unwrap().lines().count() as u64;
    let (o1, s1) = replay(&signals, &tmp.path().join("a1.jsonl"), None);
    let (_, s2) = replay(&signals, &tmp.path().join("a2.jsonl"), None);
    let a1 = std::fs::read(tmp.path().join("a1.jsonl")).unwrap();
    let a2 = std::fs::read(tmp.path().join("a2.jsonl")).unwrap();
    assert!(!a1.is_empty());
    assert_eq!(a1, a2, "byte-identical alerts");
    assert_eq!(s1["stats"], s2["stats"]);
    let st = &s1["stats"];
    let n = |k: &str| st[k].as_u64().unwrap();
    let rejected: u64 = st["rejected"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(n("records"), lines);
    assert_eq!(
        n("applied") + n("duplicates") + n("purpose_disabled") + n("outside_window") + rejected,
        lines
    );
    // Every rejected line is in the rejects file with its reason.
    let rejects = std::fs::read_to_string(signals.with_extension("jsonl.rejects.jsonl")).unwrap();
    assert_eq!(rejects.lines().count() as u64, rejected);
    for r in rejects.lines() {
        let v: serde_json::Value = serde_json::from_str(r).unwrap();
        assert!(
            v["code"].is_string() && v["detail"].is_string() && v["line"].is_u64(),
            "{r}"
        );
    }
    assert!(stdout(&o1).contains("cases opened by category"));
    // Personal data of the input never reaches the summary output.
    assert!(!stdout(&o1).contains("Dorpsstraat") && !stdout(&o1).contains("Jansen"));
}

#[test]
fn replay_resumes_from_its_state_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let signals = gen(tmp.path(), "s.jsonl", "12");
    let all = std::fs::read_to_string(&signals).unwrap();
    let lines: Vec<&str> = all.lines().collect();
    let (_, _) = replay(&signals, &tmp.path().join("ref.jsonl"), None);
    // First half, then the whole file with the same state directory.
    let partial = tmp.path().join("p.jsonl");
    std::fs::write(&partial, lines[..lines.len() / 2].join("\n") + "\n").unwrap();
    let state = tmp.path().join("state");
    let out = tmp.path().join("resumed.jsonl");
    replay(&partial, &out, Some(&state));
    std::fs::write(&partial, all.clone()).unwrap();
    let (_, summary) = replay(&partial, &out, Some(&state));
    assert_eq!(
        summary["stats"]["records"].as_u64().unwrap() as usize,
        lines.len() - lines.len() / 2
    );
    assert_eq!(
        std::fs::read(out).unwrap(),
        std::fs::read(tmp.path().join("ref.jsonl")).unwrap()
    );
}

#[test]
fn demo_shows_cases_with_explanations() {
    let out = vroeg(&["demo", "--households", "3000"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    assert!(text.contains("replay summary"), "{text}");
    assert_eq!(text.matches("example case ").count(), 3, "{text}");
    assert!(
        text.contains("because") && text.contains("on the values"),
        "{text}"
    );
    // The wijkteams' feedback is applied, none of it refused, and
    // escalation is the exception: fewer escalations than cases.
    let count = |label: &str| -> u64 {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .and_then(|rest| rest.trim().parse().ok())
            .unwrap_or(0)
    };
    let (opened, escalations, feedback) = (
        count("geopend"),
        count("escalatie"),
        count("feedback applied"),
    );
    assert!(opened > 100, "{text}");
    assert!(feedback > opened, "{text}");
    assert!(
        escalations < opened,
        "{escalations} escalations for {opened} cases\n{text}"
    );
    assert!(!text.contains("unknown_case"), "{text}");
}

#[test]
fn replay_applies_generated_feedback_and_rejects_none() {
    let tmp = tempfile::tempdir().unwrap();
    let signals = tmp.path().join("s.jsonl");
    let feedback = tmp.path().join("f.jsonl");
    let out = vroeg(&[
        "gen",
        "--households",
        "2000",
        "--months",
        "4",
        "--seed",
        "3",
        "--start",
        "2026-01-01",
        "--now",
        "2026-06-30",
        "--out",
        signals.to_str().unwrap(),
        "--feedback",
        feedback.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = std::fs::read_to_string(&feedback).unwrap();
    assert!(lines.lines().count() > 100, "{lines}");
    for line in lines.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["datum"].as_str().unwrap() <= "2026-06-30", "{line}");
    }
    let out = vroeg(&[
        "replay",
        "--signals",
        signals.to_str().unwrap(),
        "--feedback",
        feedback.to_str().unwrap(),
        "--now",
        "2026-07-01T00:00:00Z",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    assert!(text.contains("feedback applied"), "{text}");
    // Every feedback message found its case: no rejected line is from the
    // feedback file.
    let rejects = std::fs::read_to_string(tmp.path().join("s.jsonl.rejects.jsonl")).unwrap();
    assert!(!rejects.contains("\"file\":\"f.jsonl\""), "{rejects}");
    let alerts = std::fs::read_to_string(tmp.path().join("s.jsonl.alerts.jsonl")).unwrap();
    assert!(alerts.contains("\"resultaat\":"), "outcomes close cases");
}

#[test]
fn docs_list_every_variable_of_the_catalogue() {
    let out = vroeg(&["rules", "variables"]);
    assert!(out.status.success());
    let doc = std::fs::read_to_string(root().join("docs/rules.md")).unwrap();
    let table = stdout(&out);
    assert!(table.lines().count() > 80, "{table}");
    for line in table.lines() {
        assert!(doc.contains(line), "docs/rules.md lacks (or has an outdated)\n  {line}\nregenerate it with `vroeg rules variables`");
    }
}

#[test]
fn replay_routes_every_case_to_its_wijkteam() {
    let tmp = tempfile::tempdir().unwrap();
    let signals = gen(tmp.path(), "s.jsonl", "13");
    let routing = tmp.path().join("wijkteams.yaml");
    std::fs::write(
        &routing,
        "standaard: rest\nteams:\n  - id: rest\n  - id: oost\n    postcodes: ['1000-1999']\n  - id: west\n    postcodes: ['2000', '2001-2999', '1000AC']\n",
    )
    .unwrap();
    let out_file = tmp.path().join("alerts.jsonl");
    replay_with(
        &signals,
        &out_file,
        &["--routing", routing.to_str().unwrap()],
    );
    let expected = |pc: &str| match (pc.replace(' ', "").as_str(), &pc[..1]) {
        ("1000AC", _) => "west",
        (_, "1") => "oost",
        (_, "2") => "west",
        _ => "rest",
    };
    let mut teams = std::collections::BTreeMap::<String, usize>::new();
    for line in std::fs::read_to_string(&out_file).unwrap().lines() {
        let a: serde_json::Value = serde_json::from_str(line).unwrap();
        let team = a["wijkteam"].as_str().unwrap();
        *teams.entry(team.to_owned()).or_default() += 1;
        if let Some(pc) = a["contact"]["postcode"].as_str() {
            assert_eq!(team, expected(pc), "{pc}");
        }
    }
    // `gen` spreads households over every area: each team has cases.
    assert!(
        ["oost", "west", "rest"]
            .iter()
            .all(|t| teams.contains_key(*t)),
        "{teams:?}"
    );

    // A broken routing file stops the replay with every problem located.
    std::fs::write(
        &routing,
        "standaard: x\nteams:\n  - id: a\n    postcodes: ['1000', '1000']\n",
    )
    .unwrap();
    let o = vroeg(&[
        "replay",
        "--signals",
        signals.to_str().unwrap(),
        "--routing",
        routing.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("wijkteams.yaml:1:12: error[unknown-team]")
            && err.contains("wijkteams.yaml:4:25: error[overlap]"),
        "{err}"
    );
}

#[test]
fn replay_escalates_overdue_cases_unless_told_not_to() {
    let tmp = tempfile::tempdir().unwrap();
    let signals = gen(tmp.path(), "s.jsonl", "14");
    let count = |extra: &[&str]| {
        let out = tmp.path().join(format!("a{}.jsonl", extra.len()));
        replay_with(&signals, &out, extra);
        std::fs::read_to_string(out)
            .unwrap()
            .lines()
            .filter(|l| l.contains("\"type\":\"escalatie\""))
            .count()
    };
    // Generated history has no contact attempts: every case escalates.
    assert!(count(&[]) > 0);
    assert_eq!(count(&["--no-escalation"]), 0);
}

#[test]
fn state_dump_is_identical_for_a_resumed_and_an_uninterrupted_replay() {
    let tmp = tempfile::tempdir().unwrap();
    let signals = gen(tmp.path(), "s.jsonl", "15");
    let dump = |state: &Path| {
        let o = vroeg(&["state", "dump", "--state", state.to_str().unwrap()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        stdout(&o)
    };
    let whole = tmp.path().join("whole");
    replay(&signals, &tmp.path().join("w.jsonl"), Some(&whole));
    let reference = dump(&whole);
    assert!(reference.lines().count() > 100);
    let first: serde_json::Value = serde_json::from_str(reference.lines().next().unwrap()).unwrap();
    assert_eq!(first["household"].as_str().unwrap().len(), 32);

    // The same input in two runs, resuming from the state directory.
    let all = std::fs::read_to_string(&signals).unwrap();
    let lines: Vec<&str> = all.lines().collect();
    let partial = tmp.path().join("p.jsonl");
    std::fs::write(&partial, lines[..lines.len() / 3].join("\n") + "\n").unwrap();
    let resumed = tmp.path().join("resumed");
    replay(&partial, &tmp.path().join("r.jsonl"), Some(&resumed));
    assert_ne!(
        dump(&resumed),
        reference,
        "a third of the input gives another state"
    );
    std::fs::write(&partial, &all).unwrap();
    replay(&partial, &tmp.path().join("r.jsonl"), Some(&resumed));
    assert_eq!(dump(&resumed), reference);
}

/// `vroeg state dump | head -1`: the reader goes away after one line, and
/// the dump stops quietly with success instead of an error.
#[test]
fn state_dump_stops_quietly_when_its_reader_goes_away() {
    use std::io::BufRead as _;
    let tmp = tempfile::tempdir().unwrap();
    let signals = gen(tmp.path(), "s.jsonl", "16");
    let state = tmp.path().join("state");
    replay(&signals, &tmp.path().join("a.jsonl"), Some(&state));
    let mut child = Command::new(env!("CARGO_BIN_EXE_vroeg"))
        .args(["state", "dump", "--state", state.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("{\"household\""), "{first}");
    // The reader is dropped here, with far more than a pipe's buffer unread.
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {err}", out.status);
    assert!(err.is_empty(), "{err}");
}

/// A rent-arrears CloudEvent for 1000 XX `nr`, dated `day`.
fn rent(id: &str, nr: u32, status: &str, cent: u64, day: &str) -> String {
    format!(
        r#"{{"specversion":"1.0","id":"{id}","source":"urn:vroeg:partner:woning-1","type":"nl.vroeg.signaal.betalingsachterstand.v1","time":"{day}T10:00:00Z","datacontenttype":"application/json","data":{{"signaalpartner":"Huur","referentie":"H-{nr}","status":"{status}","bedrag_cent":{cent},"ontstaansdatum":"{day}","signaaldatum":"{day}","crisissignaal":false,"eindelevering":false,"client":{{"voorletters":"A.","achternaam":"Jansen","geboortedatum":"1970-01-01","straatnaam":"Dorpsstraat","postcode":"1000 XX","huisnummer":{nr},"plaatsnaam":"Utrecht"}}}}}}"#
    )
}

#[test]
fn state_purge_deletes_what_is_past_retention_as_the_state_dump_shows() {
    let dir = tempfile::tempdir().unwrap();
    let signals = dir.path().join("signals.jsonl");
    std::fs::write(
        &signals,
        [
            rent("a1", 1, "open", 80_000, "2026-01-10"), // a case
            rent("b1", 2, "open", 5_000, "2026-01-10"),  // too small for a case
            rent("a2", 1, "betaald", 0, "2026-02-01"),   // the case closes
        ]
        .join("\n"),
    )
    .unwrap();
    let state = dir.path().join("state");
    replay_with(
        &signals,
        &dir.path().join("alerts.jsonl"),
        &["--state", state.to_str().unwrap(), "--no-escalation"],
    );
    let config = dir.path().join("vroeg.toml");
    std::fs::write(
        &config,
        format!(
            "[engine]\nstate_dir = {:?}\nrules = [{:?}]\nhousehold_secret = \"cli-test\"\n\n[retention]\nclosed_case_months = 12\n",
            state.to_str().unwrap(),
            root().join("rules").to_str().unwrap()
        ),
    )
    .unwrap();
    let state_cmd = |cmd: &str| {
        let out = vroeg(&["state", cmd, "--state", state.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout(&out)
    };
    let dump = || {
        state_cmd("dump")
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    let households =
        |d: &[serde_json::Value]| d.iter().filter(|v| v.get("household").is_some()).count();
    let cases = |d: &[serde_json::Value]| d.iter().filter(|v| v.get("case").is_some()).count();
    let before = dump();
    assert_eq!((households(&before), cases(&before)), (2, 1));
    assert!(state_cmd("dump").contains("Jansen"));

    let purge_at = |at: &str| {
        vroeg(&[
            "state",
            "purge",
            "--config",
            config.to_str().unwrap(),
            "--at",
            at,
        ])
    };
    let purge = |at: &str| {
        let out = purge_at(at);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout(&out)
    };
    // Mid-August 2026: all three signals left the 6-month window. The small
    // one's household goes; the other keeps its closed case (12 months).
    assert_eq!(
        purge("2026-08-15").trim(),
        "purged 0 closed case(s), 1 household(s), 3 signal(s)"
    );
    let after = dump();
    assert_eq!((households(&after), cases(&after)), (1, 1));
    // 1 February 2027: 12 months after closing. Nothing of the household is
    // left, and no personal data at all.
    assert!(purge("2027-02-01").starts_with("purged 1 closed case(s), 1 household(s)"));
    assert_eq!(
        state_cmd("dump"),
        "",
        "the state dump is empty after the purge"
    );
    let stats = state_cmd("stats");
    assert!(stats.contains("purged (counter kept) 1"), "{stats}");
    // A bad date is a clear error.
    let out = purge_at("2027-13-01");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a date"));
}

#[test]
fn validate_reports_every_corpus_message_with_its_code_and_passes_a_clean_file() {
    let corpus = root().join("tests/corpus");
    let expected: Vec<(String, String)> = std::fs::read_to_string(corpus.join("expected.tsv"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (file, code) = l.split_once('\t').unwrap();
            (format!("tests/corpus/{file}"), code.to_owned())
        })
        .collect();
    assert_eq!(expected.len(), 61);
    let mut args = vec!["validate", "--message"];
    args.extend(expected.iter().map(|(f, _)| f.as_str()));
    let out = vroeg(&args);
    assert_eq!(out.status.code(), Some(1), "any problem fails the check");
    let text = stdout(&out);
    for (file, code) in &expected {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{file}: ")))
            .unwrap_or_else(|| panic!("{file} is not reported:\n{text}"));
        assert!(
            line.starts_with(&format!("{file}: {code}")),
            "{file}: expected {code}, got {line}"
        );
    }
    assert!(
        text.contains("61 files: 61 messages, 0 valid, 61 with problems"),
        "{text}"
    );
    assert!(crate::privacy::personal_data(&text).is_empty(), "{text}");

    // JSON lines: the line number of each problem; blank lines skipped.
    let tmp = tempfile::tempdir().unwrap();
    let clean = tmp.path().join("clean.jsonl");
    let out = vroeg(&[
        "gen",
        "--households",
        "800",
        "--months",
        "3",
        "--invalid",
        "0",
        "--start",
        "2026-01-01",
        "--now",
        "2026-04-30",
        "--out",
        clean.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let out = vroeg(&[
        "validate",
        "--now",
        "2026-05-01T00:00:00Z",
        clean.to_str().unwrap(),
    ]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains(" 0 with problems"), "{text}");
    let lines = std::fs::read_to_string(&clean).unwrap();
    let first = lines.lines().next().unwrap();
    let broken = std::fs::read_to_string(corpus.join("45-postcode-letters-first.bin")).unwrap();
    let mixed = tmp.path().join("mixed.jsonl");
    std::fs::write(&mixed, format!("{first}\n{broken}\n\n{first}\n")).unwrap();
    let out = vroeg(&[
        "validate",
        "--now",
        "2026-05-01T00:00:00Z",
        mixed.to_str().unwrap(),
    ]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "{}:2: invalid_postcode at `data.client.postcode`",
            mixed.display()
        )),
        "{text}"
    );
    assert!(
        text.contains("3 messages, 2 valid, 1 with problems"),
        "{text}"
    );
    // An empty file is not a pass.
    let empty = tmp.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let out = vroeg(&["validate", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("no messages"));
}

/// The README's recipe (5,000 households over four months) with the shipped
/// routing table gives every team cases: `gen` spreads households over every
/// postcode area, and each shipped team claims a hundred of them.
#[test]
fn the_readme_recipe_gives_every_shipped_team_cases() {
    let tmp = tempfile::tempdir().unwrap();
    let signals = tmp.path().join("signalen.jsonl");
    let out = vroeg(&[
        "gen",
        "--households",
        "5000",
        "--months",
        "4",
        "--start",
        "2026-01-01",
        "--now",
        "2026-05-10",
        "--out",
        signals.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let alerts = tmp.path().join("alerts.jsonl");
    replay_with(&signals, &alerts, &["--routing", "config/wijkteams.yaml"]);
    let mut opened = std::collections::BTreeMap::<String, usize>::new();
    for line in std::fs::read_to_string(&alerts).unwrap().lines() {
        let a: serde_json::Value = serde_json::from_str(line).unwrap();
        if a["type"] == "geopend" {
            *opened
                .entry(a["wijkteam"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    for team in ["centrum", "noord", "zuid"] {
        assert!(
            opened.get(team).is_some_and(|n| *n > 0),
            "{team}: {opened:?}"
        );
    }
}

/// The offline exports refuse, non-zero and without writing a file, an
/// empty state, a period without signals or cases, and a damaged state.
#[test]
fn exports_refuse_an_empty_or_damaged_state_and_never_write_an_empty_delivery() {
    let tmp = tempfile::tempdir().unwrap();
    let export = |state: &Path, from: &str, to: &str, out: &Path| {
        vroeg(&[
            "export",
            "ddas",
            "--state",
            state.to_str().unwrap(),
            "--gemeentecode",
            "0363",
            "--from",
            from,
            "--to",
            to,
            "--out",
            out.to_str().unwrap(),
        ])
    };
    let refused = |o: &Output, out: &Path, why: &str| {
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains(why), "expected {why:?} in: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!out.exists(), "nothing is written");
    };
    let out = tmp.path().join("ddas.json");

    // An empty state: a replay of no signals.
    let empty_signals = tmp.path().join("empty.jsonl");
    std::fs::write(&empty_signals, "").unwrap();
    let empty = tmp.path().join("empty");
    replay(&empty_signals, &tmp.path().join("e.jsonl"), Some(&empty));
    refused(
        &export(&empty, "2026-02-01", "2026-02-28", &out),
        &out,
        "no households and no cases",
    );
    let o = vroeg(&[
        "report",
        "--state",
        empty.to_str().unwrap(),
        "--from",
        "2026-02-01",
        "--to",
        "2026-02-28",
    ]);
    assert_eq!(o.status.code(), Some(1));

    // A state with cases: February exports; a month before the first
    // signal does not.
    let signals = tmp.path().join("s.jsonl");
    let o = vroeg(&[
        "gen",
        "--households",
        "500",
        "--months",
        "2",
        "--start",
        "2026-01-01",
        "--out",
        signals.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let state = tmp.path().join("state");
    replay(&signals, &tmp.path().join("a.jsonl"), Some(&state));
    let o = export(&state, "2026-02-01", "2026-02-28", &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::remove_file(&out).unwrap();
    refused(
        &export(&state, "2025-01-01", "2025-01-31", &out),
        &out,
        "an empty delivery is never written",
    );
    refused(
        &export(&state, "2026-02-28", "2026-02-01", &out),
        &out,
        "lies after its last day",
    );

    // Damaged: the store's log overwritten past its first page.
    let db = state.join("db");
    let mut bytes = std::fs::read(&db).unwrap();
    for b in bytes.iter_mut().skip(4096) {
        *b = 0x5a;
    }
    std::fs::write(&db, bytes).unwrap();
    refused(
        &export(&state, "2026-02-01", "2026-02-28", &out),
        &out,
        "or is the directory damaged",
    );
}

/// A recorded outcome corrected through the feedback file: the case
/// reopens with the reason, closes again with the right outcome, and the
/// DDAS export shows the corrected outcome; a note rides along and stays
/// out of the export.
#[test]
fn a_corrected_outcome_reopens_the_case_and_the_export_shows_the_correction() {
    let tmp = tempfile::tempdir().unwrap();
    let signals = tmp.path().join("s.jsonl");
    let o = vroeg(&[
        "gen",
        "--households",
        "400",
        "--months",
        "2",
        "--start",
        "2026-01-01",
        "--now",
        "2026-03-01",
        "--out",
        signals.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let first = tmp.path().join("first.jsonl");
    replay(&signals, &first, Some(&tmp.path().join("probe")));
    // The first case that opened, and the day after it opened.
    let opened: serde_json::Value = std::fs::read_to_string(&first)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|a| a["type"] == "geopend")
        .unwrap();
    let zaak = opened["zaak_id"].as_str().unwrap().to_owned();
    let day = vroeg_core::time::Day::parse(&opened["tijd"].as_str().unwrap()[..10]).unwrap();
    let next = vroeg_core::time::Day(day.0 + 1).to_string();
    let feedback = tmp.path().join("feedback.jsonl");
    let lines = [
        serde_json::json!({"id": "f1", "zaak_id": zaak, "type": "contactpoging", "contactsoort": "Telefoon", "bereikt": true, "datum": next}),
        serde_json::json!({"id": "f2", "zaak_id": zaak, "type": "resultaat", "resultaat": "(Budget)advies en/of quick fix", "datum": next}),
        serde_json::json!({"id": "f3", "zaak_id": zaak, "type": "correctie", "reden": "Verkeerd resultaat gekozen: het is een verwijzing."}),
        serde_json::json!({"id": "f4", "zaak_id": zaak, "type": "notitie", "tekst": "Doorverwezen naar schuldhulp.", "auteur": "coordinator"}),
        serde_json::json!({"id": "f5", "zaak_id": zaak, "type": "resultaat", "resultaat": "Vervolghulp en/of verwijzing financieel", "datum": next}),
        // A second correction of the same outcome id is a re-send: no effect.
        serde_json::json!({"id": "f3", "zaak_id": zaak, "type": "correctie", "reden": "Verkeerd resultaat gekozen: het is een verwijzing."}),
    ];
    std::fs::write(
        &feedback,
        lines
            .iter()
            .map(|l| l.to_string() + "\n")
            .collect::<String>(),
    )
    .unwrap();
    let state = tmp.path().join("state");
    let (o, summary) = replay_with(
        &signals,
        &tmp.path().join("second.jsonl"),
        &[
            "--state",
            state.to_str().unwrap(),
            "--feedback",
            feedback.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let alerts: Vec<serde_json::Value> = std::fs::read_to_string(tmp.path().join("second.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|a: &serde_json::Value| a["zaak_id"] == zaak.as_str())
        .collect();
    let closes: Vec<&serde_json::Value> =
        alerts.iter().filter(|a| a["type"] == "gesloten").collect();
    assert_eq!(
        closes.len(),
        2,
        "closed, reopened, closed again: {alerts:?}"
    );
    assert_eq!(
        closes[1]["resultaat"],
        "Vervolghulp en/of verwijzing financieel"
    );
    assert_eq!(summary["stats"]["duplicates"], 1, "{summary}");
    assert_eq!(summary["stats"]["feedback"], 5, "{summary}");
    // The record: the correction, the note, the corrected outcome.
    let dump = vroeg(&["state", "dump", "--state", state.to_str().unwrap()]);
    let record: serde_json::Value = String::from_utf8_lossy(&dump.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|l| l["case"] == zaak.as_str())
        .unwrap()["record"]
        .clone();
    assert_eq!(record["status"], "gesloten");
    assert_eq!(
        record["resultaat"],
        "Vervolghulp en/of verwijzing financieel"
    );
    assert_eq!(
        record["correcties"][0]["vorig_resultaat"],
        "(Budget)advies en/of quick fix"
    );
    assert_eq!(
        record["notities"][0]["tekst"],
        "Doorverwezen naar schuldhulp."
    );
    let out = tmp.path().join("ddas.json");
    let o = vroeg(&[
        "export",
        "ddas",
        "--state",
        state.to_str().unwrap(),
        "--gemeentecode",
        "0363",
        "--from",
        "2026-01-01",
        "--to",
        "2026-02-28",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("Vervolghulp en/of verwijzing financieel"));
    assert!(!text.contains("Doorverwezen"), "notes stay out of DDAS");
    assert!(
        !text.contains("Verkeerd resultaat"),
        "so do correction reasons"
    );
}

/// Every problem of a rule test file is reported at once, each with its
/// location printed once, with suggestions for misspelt names; a decimal
/// comma in an amount is accepted.
#[test]
fn rule_test_file_problems_are_all_reported_once_with_suggestions() {
    let out = vroeg(&["rules", "test", "tests/fixtures/rule-tests/fouten.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let expected =
        std::fs::read_to_string(root().join("tests/fixtures/rule-tests/fouten.expected")).unwrap();
    assert!(expected.lines().count() >= 5);
    for line in expected.lines() {
        assert!(text.contains(line), "missing\n  {line}\nin\n{text}");
        assert_eq!(text.matches(line).count(), 1, "once: {line}");
    }
    assert!(
        !text.contains("at line"),
        "the location once, in front:\n{text}"
    );
    let out = vroeg(&[
        "rules",
        "test",
        "tests/fixtures/rule-tests/decimale-komma.yaml",
    ]);
    assert!(out.status.success(), "{}", stdout(&out));
}

#[test]
fn the_shipped_rule_tests_notice_every_mutation_and_cover_every_rule() {
    let out = vroeg(&["rules", "test", "--coverage", "--mutate", "rules/tests"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(" 0 survived, "), "{text}");
    assert!(text.contains("never fired: none"), "{text}");
    assert!(text.contains("fired but never decided: none"), "{text}");

    // Without the test at the minimum amount's edge, raising the minimum
    // from 75 to 150 goes unnoticed, and --mutate says so (exit 1).
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tests")).unwrap();
    std::fs::copy(
        root().join("rules/regels.yaml"),
        dir.path().join("regels.yaml"),
    )
    .unwrap();
    let tests = std::fs::read_to_string(root().join("rules/tests/enkelvoudig.yaml")).unwrap();
    let cut = tests
        .find("  # The minimum amount's edge")
        .expect("the edge test");
    std::fs::write(dir.path().join("tests/enkelvoudig.yaml"), &tests[..cut]).unwrap();
    let out = vroeg(&[
        "rules",
        "test",
        "--mutate",
        dir.path().join("tests").to_str().unwrap(),
    ]);
    let text = stdout(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("regels.yaml:12:24: survived: `minimum_amount_euro` doubled: 75 to 150"),
        "{text}"
    );
}
