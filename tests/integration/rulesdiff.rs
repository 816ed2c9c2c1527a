//! `vroeg rules diff` against two separate replays of the same signals,
//! and its HTML report in headless Chromium.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use vroeg_core::time::{parse_rfc3339, Day};

use crate::inbox::{browser_project, chromium};
use crate::kafka::root;

fn vroeg(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vroeg"))
        .args(args)
        .current_dir(root())
        .env("VROEG_HOUSEHOLD_SECRET", "rules-diff-test")
        .output()
        .expect("vroeg runs")
}

/// Cases opened per (month, category) in a replay's alerts file.
fn opened(alerts: &Path) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    for line in std::fs::read_to_string(alerts).unwrap().lines() {
        let a: Value = serde_json::from_str(line).unwrap();
        if a["type"] != "geopend" {
            continue;
        }
        let day = Day::local_of(parse_rfc3339(a["tijd"].as_str().unwrap()).unwrap());
        let month = day.to_string()[..7].to_owned();
        *out.entry((month, a["categorie"].as_str().unwrap().to_owned()))
            .or_default() += 1;
    }
    out
}

/// The policy officer's change, in `dir/kandidaat`: the shipped rules with
/// the minimum amount from 75 to 150.
fn candidate(dir: &Path) {
    std::fs::create_dir_all(dir.join("kandidaat")).unwrap();
    let rules = std::fs::read_to_string(root().join("rules/regels.yaml")).unwrap();
    assert!(rules.contains("minimum_amount_euro: 75\n"));
    std::fs::write(
        dir.join("kandidaat/regels.yaml"),
        rules.replace("minimum_amount_euro: 75\n", "minimum_amount_euro: 150\n"),
    )
    .unwrap();
}

#[test]
fn rules_diff_counts_equal_two_separate_replays_and_its_report_opens_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    candidate(dir.path());
    let gen = vroeg(&[
        "gen",
        "--households",
        "20000",
        "--months",
        "3",
        "--seed",
        "9",
        "--start",
        "2026-06-01",
        "--out",
        &d("signalen.jsonl"),
    ]);
    assert!(
        gen.status.success(),
        "{}",
        String::from_utf8_lossy(&gen.stderr)
    );
    let now = "2026-12-01T00:00:00Z";

    let diff = vroeg(&[
        "rules",
        "diff",
        "--base",
        "rules",
        "--candidate",
        &d("kandidaat"),
        "--signals",
        &d("signalen.jsonl"),
        "--now",
        now,
        "--json",
        &d("diff.json"),
        "--html",
        &d("diff.html"),
    ]);
    let table = String::from_utf8_lossy(&diff.stdout).into_owned();
    assert!(
        diff.status.success(),
        "{table}\n{}",
        String::from_utf8_lossy(&diff.stderr)
    );
    assert!(
        table.contains("huishoudens die hun zaak verliezen: "),
        "{table}"
    );

    // Two separate replays, as a policy officer would have run them.
    let mut replays = Vec::new();
    for (name, rules) in [("basis", "rules".to_owned()), ("kandidaat", d("kandidaat"))] {
        let out = vroeg(&[
            "replay",
            "--rules",
            &rules,
            "--signals",
            &d("signalen.jsonl"),
            "--out",
            &d(&format!("{name}.alerts.jsonl")),
            "--rejects",
            &d(&format!("{name}.rejects.jsonl")),
            "--no-escalation",
            "--no-fsync",
            "--quiet",
            "--now",
            now,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        replays.push(opened(&dir.path().join(format!("{name}.alerts.jsonl"))));
    }
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(d("diff.json")).unwrap()).unwrap();
    let mut from_diff = [BTreeMap::new(), BTreeMap::new()];
    for m in report["maanden"].as_array().unwrap() {
        for (cat, c) in m["per_categorie"].as_object().unwrap() {
            let month = m["maand"].as_str().unwrap().to_owned();
            for (i, side) in ["basis", "kandidaat"].iter().enumerate() {
                let n = c[side].as_u64().unwrap();
                if n > 0 {
                    from_diff[i].insert((month.clone(), cat.clone()), n);
                }
            }
        }
    }
    assert_eq!(from_diff[0], replays[0], "base");
    assert_eq!(from_diff[1], replays[1], "candidate");
    let lost = report["huishoudens"]["verliezen_zaak"]["aantal"]
        .as_u64()
        .unwrap();
    assert!(lost > 0, "raising the minimum loses cases");
    // Without --with-personal-data, no name or address.
    assert!(!std::fs::read_to_string(d("diff.json"))
        .unwrap()
        .contains("\"contact\""));

    // The HTML report opens offline in headless Chromium.
    let project = browser_project();
    let shot = root().join("target/rules-diff.png");
    let page = Command::new("node")
        .arg(project.join("page.mjs"))
        .arg(d("diff.html"))
        .arg(&shot)
        .current_dir(&project)
        .env("VROEG_CHROMIUM", chromium())
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&page.stdout);
    assert!(
        page.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&page.stderr)
    );
    let seen: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(seen["title"], "Vroeg: regelwijziging vergeleken");
    assert!(seen["charts"].as_u64().unwrap() >= 2, "{seen}");
    assert!(seen["tables"].as_u64().unwrap() >= 3, "{seen}");
    assert_eq!(seen["external"], serde_json::json!([]), "{seen}");
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);
}

/// The same history read from a topic (three partitions, some records in
/// binary mode) gives the same comparison as the file it was sent from;
/// `--since` after the last message finds nothing and says so.
#[test]
fn rules_diff_reads_its_history_from_the_signal_topic() {
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    candidate(dir.path());
    let gen = vroeg(&[
        "gen",
        "--households",
        "3000",
        "--months",
        "3",
        "--seed",
        "5",
        "--start",
        "2026-01-01",
        "--now",
        "2026-04-01",
        "--out",
        &d("s.jsonl"),
    ]);
    assert!(
        gen.status.success(),
        "{}",
        String::from_utf8_lossy(&gen.stderr)
    );
    let topics = crate::kafka::create_topics("rulesdiff", 3);
    // Most lines structured, the last quarter in binary mode.
    let text = std::fs::read_to_string(d("s.jsonl")).unwrap();
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let split = lines.len() * 3 / 4;
    crate::kafka::send(
        &topics.signals,
        &lines[..split],
        vroeg_kafka::ContentMode::Structured,
    );
    crate::kafka::send(
        &topics.signals,
        &lines[split..],
        vroeg_kafka::ContentMode::Binary,
    );
    let candidate = d("kandidaat");
    let diff = |source: &[&str], out: &str| {
        let mut args = vec![
            "rules",
            "diff",
            "--base",
            "rules",
            "--candidate",
            &candidate,
            "--now",
            "2026-04-02T00:00:00Z",
            "--brokers",
            crate::kafka::broker(),
            "--json",
            out,
        ];
        args.extend_from_slice(source);
        vroeg(&args)
    };
    let from_file = diff(&["--signals", &d("s.jsonl")], &d("file.json"));
    assert!(
        from_file.status.success(),
        "{}",
        String::from_utf8_lossy(&from_file.stderr)
    );
    let from_topic = diff(&["--topic", &topics.signals], &d("topic.json"));
    assert!(
        from_topic.status.success(),
        "{}",
        String::from_utf8_lossy(&from_topic.stderr)
    );
    let file: Value =
        serde_json::from_str(&std::fs::read_to_string(d("file.json")).unwrap()).unwrap();
    let topic: Value =
        serde_json::from_str(&std::fs::read_to_string(d("topic.json")).unwrap()).unwrap();
    assert!(file["maanden"].as_array().unwrap().len() >= 3, "{file}");
    assert_eq!(file, topic, "the topic's history compares as the file's");
    // Nothing was sent after this moment: no history, and an error, not an
    // empty comparison.
    let later = diff(
        &["--topic", &topics.signals, "--since", "2099-01-01"],
        &d("none.json"),
    );
    assert!(!later.status.success());
    assert!(
        String::from_utf8_lossy(&later.stderr).contains("holds no signals"),
        "{}",
        String::from_utf8_lossy(&later.stderr)
    );
}
