//! What municipal IT sees of the running service: `/metrics` parsed with
//! Prometheus's own parser against the documented families, content
//! negotiation, and the new families counting real events.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use vroeg_kafka::ContentMode;

use crate::faults::counter;
use crate::kafka::{
    arrears, create_topics, lines, read, root, send, unique, Extra, Reader, Service,
};

const TEAM: &str = "token-operations-team";
const ADMIN: &str = "token-operations-admin";

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[test]
fn metrics_parse_with_prometheus_parser_and_count_what_happened() {
    let topics = create_topics("ops", 1);
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    copy_dir(&root().join("rules"), &rules);
    let routing = dir.path().join("wijkteams.yaml");
    std::fs::write(
        &routing,
        "standaard: centrum\nteams:\n  - id: centrum\n    postcodes: [\"1000-8999\"]\n  - id: oost\n    postcodes: [\"9000-9999\"]\n",
    )
    .unwrap();
    let token = crate::kafka::token_entry;
    let extra = Extra {
        engine: format!("routing = {:?}", routing.to_str().unwrap()),
        api: [
            token("coordinator-oost", TEAM, "team = \"oost\""),
            token("beheer", ADMIN, "admin = true"),
        ]
        .concat(),
        rules: Some(rules.clone()),
        ..Extra::default()
    };
    let service = Service::start_configured(&topics, dir.path(), &unique("g"), &extra);
    service.wait_ready();

    // A case for team oost (postcode 9999 ZZ), a zorg signal with a broken
    // postcode, and feedback that is not JSON.
    let mut broken = arrears("ops-bad", "Zorg", 2, 3, 900, "open", false);
    broken["data"]["client"]["postcode"] = Value::from("ZZ 9999");
    send(
        &topics.signals,
        &lines(&[arrears("ops-1", "Huur", 1, 3, 2400, "open", true), broken]),
        ContentMode::Structured,
    );
    // Feedback that is not JSON (refused by intake), and a contact attempt
    // for a case that does not exist (refused by the state role).
    let today = vroeg_core::time::Day::of_millis(crate::kafka::now_ms()).to_string();
    let no_case = serde_json::json!({"id": "ops-fb", "zaak_id": format!("{}-1", "0".repeat(32)),
        "type": "contactpoging", "contactsoort": "Telefoon", "bereikt": true, "datum": today});
    send(
        &topics.feedback,
        &["{not json".to_owned(), no_case.to_string()],
        ContentMode::Structured,
    );
    Reader::new(&topics.alerts).until(1, Duration::ZERO, Duration::from_secs(60));
    let dead = read(
        &topics.dlq,
        3,
        Duration::from_secs(1),
        Duration::from_secs(30),
    );
    assert_eq!(dead.len(), 3);

    // The API in use, and a reload that must fail.
    let wait_listed = std::time::Instant::now();
    loop {
        let (status, body) = service
            .request("GET", "/api/v1/cases", Some(TEAM), None)
            .unwrap();
        assert_eq!(status, 200, "{body}");
        if body.contains("\"wijkteam\":\"oost\"") {
            break;
        }
        assert!(wait_listed.elapsed() < Duration::from_secs(30), "{body}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        service
            .request("GET", "/api/v1/cases", None, None)
            .unwrap()
            .0,
        401
    );
    std::fs::write(rules.join("kapot.yaml"), "regels:\n  - naam: [\n").unwrap();
    let (status, body) = service
        .request("POST", "/admin/reload", Some(ADMIN), None)
        .unwrap();
    assert_ne!(status, 200, "a broken rule file is refused: {body}");

    // Consumer lag comes with the Kafka client's statistics (every 2 s).
    let waited = std::time::Instant::now();
    while !service
        .http("/metrics")
        .is_some_and(|(_, m)| m.contains("vroeg_consumer_lag_messages{"))
    {
        assert!(
            waited.elapsed() < Duration::from_secs(30),
            "no consumer lag reported"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Both expositions, parsed by Prometheus's own parser against the docs.
    let (status, text_type, text) = service
        .get_accepting("/metrics", "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
        .unwrap();
    assert_eq!(status, 200);
    assert!(
        text_type.starts_with("text/plain; version=0.0.4"),
        "{text_type}"
    );
    let (status, om_type, om) = service
        .get_accepting(
            "/metrics",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .unwrap();
    assert_eq!(status, 200);
    assert!(
        om_type.starts_with("application/openmetrics-text; version=1.0.0"),
        "{om_type}"
    );
    let (prom_file, om_file) = (
        dir.path().join("metrics.txt"),
        dir.path().join("metrics.om"),
    );
    std::fs::write(&prom_file, &text).unwrap();
    std::fs::write(&om_file, &om).unwrap();
    let checked = Command::new("python3")
        .arg(root().join("tests/tooling/check_metrics.py"))
        .arg(root().join("docs/operations.md"))
        .args([&prom_file, &om_file])
        .output()
        .expect("python3 runs");
    assert!(
        checked.status.success(),
        "{}{}\n{text}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // The families count what happened.
    for (series, expected) in [
        (
            "vroeg_signals_rejected_messages_total{code=\"invalid_postcode\",partner_type=\"zorg\"}",
            1.0,
        ),
        (
            "vroeg_feedback_rejected_messages_total{code=\"invalid_json\"}",
            1.0,
        ),
        (
            "vroeg_feedback_rejected_messages_total{code=\"unknown_case\"}",
            1.0,
        ),
        ("vroeg_rules_reload_failures_total", 1.0),
        ("vroeg_open_cases{team=\"oost\"}", 1.0),
        // A team from the routing table with no cases reads 0.
        ("vroeg_open_cases{team=\"centrum\"}", 0.0),
        ("vroeg_overdue_cases{team=\"oost\"}", 0.0),
        (
            "vroeg_api_requests_total{route=\"/api/v1/cases\",method=\"GET\",status=\"401\"}",
            1.0,
        ),
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(series)),
            "{series} is not served\n{text}"
        );
        assert_eq!(counter(&text, series), expected, "{series}\n{text}");
    }
    assert!(
        counter(
            &text,
            "vroeg_api_requests_total{route=\"/api/v1/cases\",method=\"GET\",status=\"200\"}"
        ) >= 1.0
    );
    assert!(text.contains("vroeg_build_info{version="), "{text}");
    assert!(text.contains("vroeg_rules_info{version="), "{text}");
    assert!(crate::privacy::personal_data(&text).is_empty());
    assert_eq!(service.terminate(), 0);
}

/// `vroeg validate --topic`: what a partner's topic holds, checked with the
/// engine's decoder, each problem by partition and offset.
#[test]
fn validate_checks_every_message_on_a_topic() {
    let topics = create_topics("validate", 2);
    let mut broken = arrears("val-bad", "Zorg", 2, 3, 900, "open", false);
    broken["data"]["client"]["bsn"] = Value::from("123456789");
    let good: Vec<Value> = (0..20)
        .map(|i| arrears(&format!("val-{i}"), "Huur", i + 1, 3, 900, "open", false))
        .collect();
    let mut all = good.clone();
    all.push(broken);
    send(&topics.signals, &lines(&all), ContentMode::Structured);
    send(&topics.signals, &lines(&good[..2]), ContentMode::Binary);
    let out = Command::new(env!("CARGO_BIN_EXE_vroeg"))
        .args([
            "validate",
            "--topic",
            &topics.signals,
            "--brokers",
            crate::kafka::broker(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("22 valid, 1 with problems (invalid_bsn 1)"),
        "{text}"
    );
    let problem = text.lines().next().unwrap();
    assert!(
        problem.starts_with(&format!("{}/", topics.signals))
            && problem.contains("invalid_bsn at `data.client.bsn`"),
        "{text}"
    );
    assert!(crate::privacy::personal_data(&text).is_empty(), "{text}");
}

/// `vroeg send` fails when the broker refuses a message, and says how many:
/// a message over the topic's size limit was once counted as sent.
#[test]
fn send_fails_when_the_broker_refuses_a_message() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let topic = crate::kafka::unique("refused");
    // A topic that takes messages of at most 10 kB.
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", crate::kafka::broker())
        .create()
        .unwrap();
    let created = futures::executor::block_on(admin.create_topics(
        &[NewTopic::new(&topic, 1, TopicReplication::Fixed(1)).set("max.message.bytes", "10000")],
        &AdminOptions::new(),
    ))
    .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("signalen.jsonl");
    let small = arrears("send-1", "Zorg", 1, 3, 900, "open", false).to_string();
    let huge = format!("{{\"padding\":\"{}\"}}", "x".repeat(20_000));
    std::fs::write(&file, format!("{small}\n{huge}\n{small}\n")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vroeg"))
        .args([
            "send",
            "--brokers",
            crate::kafka::broker(),
            "--topic",
            &topic,
        ])
        .arg("--signals")
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // The refused message's batch goes with it: librdkafka sends the small
    // ones in the same request, which the broker refuses whole.
    assert!(
        stderr.contains("the broker refused") && stderr.contains(" of 3 messages"),
        "{stderr}"
    );
    assert!(stderr.contains("MessageSizeTooLarge"), "{stderr}");
}
