//! The wijkteam case lifecycle on the real service and broker: routing,
//! the case API with per-team tokens, feedback through the API and through
//! Kafka, closing, a new episode, and escalation under a shifted clock.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vroeg_core::time::{Day, DAY_MS};
use vroeg_kafka::ContentMode;

use crate::kafka::{
    arrears_at, create_topics, lines, now_ms, read, send, unique, Extra, Reader, Service,
};

const NOORD: &str = "token-noord-lifecycle";
const ZUID: &str = "token-zuid-lifecycle";
const ADMIN: &str = "token-admin-lifecycle";

fn extra(dir: &std::path::Path, offset_days: i64) -> Extra {
    let routing = dir.join("wijkteams.yaml");
    std::fs::write(
        &routing,
        "standaard: centrum\nteams:\n  - id: centrum\n    postcodes: [\"1000-1099\"]\n  - id: noord\n    postcodes: [\"1100-1199\", \"1000 AA\"]\n  - id: zuid\n    postcodes: [\"1200-1299\"]\n",
    )
    .unwrap();
    let token = crate::kafka::token_entry;
    Extra {
        engine: format!("routing = {:?}", routing.to_str().unwrap()),
        api: [
            token("coordinator-noord", NOORD, "team = \"noord\""),
            token("coordinator-zuid", ZUID, "team = \"zuid\""),
            token("beheer", ADMIN, "admin = true"),
        ]
        .concat(),
        rules: None,
        env: vec![(
            "VROEG_CLOCK_OFFSET_SECS".into(),
            (offset_days * DAY_MS / 1000).to_string(),
        )],
        ..Extra::default()
    }
}

fn json_of(answer: Option<(u16, String)>) -> (u16, Value) {
    let (status, body) = answer.expect("the API answers");
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

/// Poll `GET path` until `check` holds for the body.
fn wait_for(service: &Service, path: &str, token: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = json_of(service.request("GET", path, Some(token), None));
        if status == 200 && check(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path}: condition never held; last {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn cases_are_routed_worked_through_the_api_escalated_closed_and_reopened() {
    let topics = create_topics("lifecycle", 1);
    let dir = tempfile::tempdir().unwrap();
    let group = unique("g");
    let start = |offset_days| {
        let s =
            Service::start_configured(&topics, dir.path(), &group, &extra(dir.path(), offset_days));
        s.wait_ready();
        s
    };
    let service = start(0);

    // Routing: an area, a range, a 6-digit exception, and an unmatched postcode.
    let signals = vec![
        arrears_at("1105 AB", "n1", "Zorg", 1, 3, 900, "open", false),
        arrears_at("1210 CD", "z1", "Energie", 2, 3, 600, "open", false),
        arrears_at("1050 EF", "c1", "Huur", 3, 10, 700, "open", false),
        arrears_at("1000 AA", "x1", "Water", 4, 3, 300, "open", false),
        arrears_at("9999 ZZ", "o1", "Zorg", 5, 3, 400, "open", false),
    ];
    send(&topics.signals, &lines(&signals), ContentMode::Structured);
    let mut alerts = Reader::new(&topics.alerts);
    let opened: Vec<Value> = alerts
        .until(5, Duration::ZERO, Duration::from_secs(60))
        .iter()
        .map(|m| m.alert())
        .collect();
    // The case of each signal, and its team.
    let case_of = |id: &str, alerts: &[Value]| -> (String, String) {
        let a = alerts
            .iter()
            .find(|a| {
                a["signalen"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s["id"] == id)
            })
            .unwrap_or_else(|| panic!("no case for {id}"));
        (
            a["zaak_id"].as_str().unwrap().to_owned(),
            a["wijkteam"].as_str().unwrap().to_owned(),
        )
    };
    let teams: BTreeMap<&str, String> = ["n1", "z1", "c1", "x1", "o1"]
        .into_iter()
        .map(|id| (id, case_of(id, &opened).1))
        .collect();
    assert_eq!(
        teams,
        BTreeMap::from([
            ("n1", "noord".into()),
            ("z1", "zuid".into()),
            ("c1", "centrum".into()),
            ("x1", "noord".into()),
            ("o1", "centrum".into()),
        ])
    );
    let case = |id: &str| case_of(id, &opened).0;

    // The API: each team lists its own cases; another team's case is not found.
    let noord_list = wait_for(&service, "/api/v1/cases", NOORD, |v| {
        v["zaken"].as_array().unwrap().len() == 2
    });
    let listed: BTreeSet<&str> = noord_list["zaken"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| z["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        BTreeSet::from([case("n1").as_str(), case("x1").as_str()])
    );
    let (status, _) = json_of(service.request(
        "GET",
        &format!("/api/v1/cases/{}", case("n1")),
        Some(ZUID),
        None,
    ));
    assert_eq!(status, 404);
    let (status, _) = json_of(service.request("GET", "/api/v1/cases", None, None));
    assert_eq!(status, 401);
    let (status, detail) = json_of(service.request(
        "GET",
        &format!("/api/v1/cases/{}", case("n1")),
        Some(NOORD),
        None,
    ));
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["signalen"][0]["id"], "n1");
    assert_eq!(detail["uitleg"]["regels"][0]["id"], "enkelvoudig");
    assert!(
        detail["uitleg"]["variabelen"]
            .as_object()
            .is_some_and(|v| !v.is_empty()),
        "{detail}"
    );
    assert_eq!(detail["tijdlijn"][0]["gebeurtenis"], "geopend");

    // Feedback through the API (noord) and through Kafka (zuid).
    let today = Day::local_of(now_ms()).to_string(); // the Dutch day, as the case counts it
    let attempt =
        json!({"contactsoort": "Telefoon", "bereikt": true, "datum": today, "dagdeel": "Ochtend"})
            .to_string();
    let (status, accepted) = json_of(service.request(
        "POST",
        &format!("/api/v1/cases/{}/contactpogingen", case("n1")),
        Some(NOORD),
        Some(&attempt),
    ));
    assert_eq!(status, 202, "{accepted}");
    let (status, _) = json_of(service.request(
        "POST",
        &format!("/api/v1/cases/{}/contactpogingen", case("z1")),
        Some(NOORD),
        Some(&attempt),
    ));
    assert_eq!(status, 404, "noord may not record on zuid's case");
    send(
        &topics.feedback,
        &lines(&[
            json!({"id": "kafka-1", "zaak_id": case("z1"), "type": "contactpoging",
            "contactsoort": "Brief", "bereikt": false, "datum": today}),
        ]),
        ContentMode::Structured,
    );
    for (id, token) in [("n1", NOORD), ("z1", ZUID)] {
        let v = wait_for(
            &service,
            &format!("/api/v1/cases/{}", case(id)),
            token,
            |v| {
                v["contactpogingen"]
                    .as_array()
                    .is_some_and(|a| a.len() == 1)
            },
        );
        assert_eq!(
            v["tijdlijn"].as_array().unwrap().last().unwrap()["gebeurtenis"],
            "contactpoging"
        );
    }

    // Closing by the partner's own update, then a new episode.
    send(
        &topics.signals,
        &lines(&[arrears_at(
            "1050 EF", "c2", "Huur", 3, 2, 700, "betaald", false,
        )]),
        ContentMode::Structured,
    );
    let closed = alerts.until(6, Duration::ZERO, Duration::from_secs(60))[5].alert();
    assert_eq!(
        (closed["type"].as_str(), closed["reden"].as_str()),
        (Some("gesloten"), Some("betaald"))
    );
    assert_eq!(closed["zaak_id"].as_str().unwrap(), case("c1"));
    send(
        &topics.signals,
        &lines(&[arrears_at(
            "1050 EF", "c3", "Energie", 3, 1, 500, "open", false,
        )]),
        ContentMode::Structured,
    );
    let reopened = alerts.until(7, Duration::ZERO, Duration::from_secs(60))[6].alert();
    assert_eq!(reopened["type"], "geopend");
    assert_eq!(reopened["episode"], 2);
    assert_ne!(reopened["zaak_id"], closed["zaak_id"]);
    assert_eq!(reopened["huishouden"], closed["huishouden"]);
    let c3_case = reopened["zaak_id"].as_str().unwrap().to_owned();
    assert_eq!(service.terminate(), 0);

    // Fifteen days later: the 14-day contact deadline has passed for every
    // case without a recorded attempt, and only for those.
    let service = start(15);
    let escalated: BTreeSet<String> =
        alerts.until(10, Duration::from_secs(3), Duration::from_secs(60))[7..]
            .iter()
            .map(|m| m.alert())
            .inspect(|a| assert_eq!(a["type"], "escalatie", "{a}"))
            .map(|a| a["zaak_id"].as_str().unwrap().to_owned())
            .collect();
    assert_eq!(escalated, BTreeSet::from([case("x1"), case("o1"), c3_case]));
    let x1 = wait_for(
        &service,
        &format!("/api/v1/cases/{}", case("x1")),
        NOORD,
        |v| v["escalaties"] == 1,
    );
    assert_eq!(
        x1["tijdlijn"].as_array().unwrap().last().unwrap()["gebeurtenis"],
        "escalatie"
    );

    // The outcome through the API closes the case; the partner hears a status only.
    let outcome =
        json!({"resultaat": "(Budget)advies en/of quick fix", "datum": today}).to_string();
    let (status, _) = json_of(service.request(
        "POST",
        &format!("/api/v1/cases/{}/resultaat", case("n1")),
        Some(NOORD),
        Some(&outcome),
    ));
    assert_eq!(status, 202);
    let last = alerts.until(11, Duration::ZERO, Duration::from_secs(60))[10].alert();
    assert_eq!(
        (last["type"].as_str(), last["reden"].as_str()),
        (Some("gesloten"), Some("resultaat"))
    );
    assert_eq!(last["resultaat"], "(Budget)advies en/of quick fix");
    let partner = read(
        &topics.partner,
        1,
        Duration::from_secs(1),
        Duration::from_secs(30),
    );
    let statuses: Vec<Value> = partner
        .iter()
        .map(|m| serde_json::from_slice(&m.payload).unwrap())
        .collect();
    assert_eq!(
        statuses,
        vec![json!({"source": "urn:test:zorg", "id": "n1", "status": "wil_hulp"})]
    );
    // The read model follows the case topic: wait until it has the close.
    let closed_list = wait_for(&service, "/api/v1/cases?status=gesloten", NOORD, |v| {
        !v["zaken"].as_array().unwrap().is_empty()
    });
    assert_eq!(
        closed_list["zaken"][0]["id"].as_str(),
        Some(case("n1").as_str()),
        "{closed_list}"
    );

    // Every read above is in the audit log, with who and which case.
    let (status, audit) = service
        .request("GET", "/api/v1/audit", Some(ADMIN), None)
        .unwrap();
    assert_eq!(status, 200);
    let entries: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(entries.iter().any(|e| e["wie"] == "coordinator-zuid"
        && e["zaak_id"] == case("n1").as_str()
        && e["status"] == 404));
    assert!(entries.iter().any(|e| e["wie"] == "coordinator-noord"
        && e["actie"] == "contactpoging"
        && e["status"] == 202));
    assert!(!audit.contains(NOORD), "tokens never reach the audit log");
    assert_eq!(service.terminate(), 0);
}

/// Copy the shipped rule files into `dir`.
fn copy_rules(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    for entry in std::fs::read_dir(crate::kafka::root().join("rules")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
}

#[test]
fn rules_and_tokens_reload_on_sighup_and_post_and_a_bad_set_keeps_the_old_one() {
    let token = crate::kafka::token_entry;
    let topics = create_topics("reload", 1);
    let dir = tempfile::tempdir().unwrap();
    let rules_dir = dir.path().join("rules");
    copy_rules(&rules_dir);
    let mut options = extra(dir.path(), 0);
    options.rules = Some(rules_dir.clone());
    let service = Service::start_configured(&topics, dir.path(), &unique("g"), &options);
    service.wait_ready();
    let mut alerts = Reader::new(&topics.alerts);
    let mut signal_and_version = |id: &str, house: u32, n: usize| -> String {
        send(
            &topics.signals,
            &lines(&[arrears_at(
                "1105 AB", id, "Zorg", house, 2, 900, "open", false,
            )]),
            ContentMode::Structured,
        );
        let a = alerts.until(n, Duration::ZERO, Duration::from_secs(60))[n - 1].alert();
        assert_eq!(a["signalen"][0]["id"], id);
        a["regelset"].as_str().unwrap().to_owned()
    };
    let v1 = signal_and_version("r1", 1, 1);

    // A changed rule set, through the API.
    let file = rules_dir.join("regels.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let revised = text.replacen(
        "boven het minimumbedrag.",
        "boven het minimumbedrag (herzien).",
        1,
    );
    assert_ne!(revised, text);
    std::fs::write(&file, revised).unwrap();
    // ... and a revoked token: zuid's entry leaves the configuration.
    assert_eq!(
        json_of(service.request("GET", "/api/v1/cases", Some(ZUID), None)).0,
        200
    );
    let config_file = dir.path().join("vroeg.toml");
    let config = std::fs::read_to_string(&config_file).unwrap();
    let zuid_entry = token("coordinator-zuid", ZUID, "team = \"zuid\"");
    assert!(config.contains(&zuid_entry));
    std::fs::write(&config_file, config.replace(&zuid_entry, "")).unwrap();
    let (status, body) = json_of(service.request("POST", "/admin/reload", Some(ADMIN), None));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tokens"], 2, "{body}");
    assert_eq!(
        json_of(service.request("GET", "/api/v1/cases", Some(ZUID), None)).0,
        401,
        "a revoked token stops working at the reload"
    );
    let v2 = body["regelset"].as_str().unwrap().to_owned();
    assert_ne!(v1, v2);
    assert_eq!(
        signal_and_version("r2", 2, 2),
        v2,
        "events fire under the reloaded set"
    );

    // A broken rule set, through SIGHUP: refused, every error logged, the
    // previous set stays in force.
    let broken = text.replacen("when:", "wen:", 2);
    std::fs::write(&file, broken).unwrap();
    std::process::Command::new("kill")
        .args(["-HUP", &service.pid().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let refused = loop {
        let log = std::fs::read_to_string(&service.log).unwrap();
        let refused: Vec<String> = log
            .lines()
            .filter(|l| l.contains("rule set refused"))
            .map(str::to_owned)
            .collect();
        if refused.len() >= 2 || Instant::now() > deadline {
            break refused;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(refused.len() >= 2, "every error is logged: {refused:?}");
    assert!(
        refused.iter().all(|l| l.contains("regels.yaml:")),
        "with file:line:col: {refused:?}"
    );
    assert_eq!(service.http("/readyz").unwrap().0, 200, "still running");
    let (status, body) = json_of(service.request("POST", "/admin/reload", Some(ADMIN), None));
    assert_eq!(status, 422, "{body}");
    assert!(
        body["fouten"].as_array().is_some_and(|e| e.len() >= 2),
        "{body}"
    );
    assert_eq!(
        signal_and_version("r3", 3, 3),
        v2,
        "the previous set is still in force"
    );
    // Only the admin may reload.
    let (status, _) = json_of(service.request("POST", "/admin/reload", Some(NOORD), None));
    assert_eq!(status, 403);

    // A token for a team the routing does not know is a configuration
    // error: the reload is refused and the tokens in force stay.
    std::fs::write(&file, &text).unwrap();
    let config = std::fs::read_to_string(&config_file).unwrap();
    std::fs::write(
        &config_file,
        format!(
            "{config}\n{}",
            token("coordinator-west", "west-token", "team = \"west\"")
        ),
    )
    .unwrap();
    let (status, body) = json_of(service.request("POST", "/admin/reload", Some(ADMIN), None));
    assert_eq!(status, 422, "{body}");
    assert!(
        body["fouten"].as_array().unwrap().iter().any(|e| e
            .as_str()
            .unwrap()
            .contains("\"west\" is not a team of the routing")),
        "{body}"
    );
    assert_eq!(
        json_of(service.request("GET", "/api/v1/cases", Some(NOORD), None)).0,
        200
    );
    assert_eq!(service.terminate(), 0);
}
