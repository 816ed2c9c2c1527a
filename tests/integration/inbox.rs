//! The wijkteam inbox in a real headless Chromium, against `vroeg run` on
//! a real broker: `tests/browser/inbox.mjs` (Playwright driving Debian's
//! `chromium`, axe-core in every page) signs in, works cases with and
//! without JavaScript, and saves screenshots under `target/inbox/`. Then
//! the monitor's CSV is compared with `vroeg report --service` for each of
//! its months.
//!
//! Needs Node.js and Chromium (`VROEG_CHROMIUM`, default
//! `/usr/bin/chromium`); the test installs the two npm packages
//! (`npm ci` in `tests/browser`) when they are missing. `.ci/run`
//! installs Node.js and Chromium where a machine lacks them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use vroeg_core::time::Day;
use vroeg_kafka::ContentMode;

use crate::kafka::{arrears_at, create_topics, lines, root, send, token_entry, Extra, Service};

const CENTRUM: &str = "inbox-centrum-token";
const NOORD: &str = "inbox-noord-token";
const ADMIN: &str = "inbox-admin-token";

fn get(service: &Service, path: &str) -> Value {
    let (status, body) = service
        .request("GET", path, Some(ADMIN), None)
        .unwrap_or_else(|| panic!("{path}: no answer"));
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// The browser-test project, with its npm packages installed.
pub(crate) fn browser_project() -> PathBuf {
    let dir = root().join("tests/browser");
    if !dir.join("node_modules/playwright-core").is_dir()
        || !dir.join("node_modules/axe-core").is_dir()
    {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect(
                "npm runs: the browser tests need Node.js and npm (apt-get install nodejs npm)",
            );
        assert!(status.success(), "npm ci in tests/browser failed");
    }
    dir
}

pub(crate) fn chromium() -> String {
    let path = std::env::var("VROEG_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&path).is_file(),
        "the browser tests need Chromium at {path} (Debian: apt-get install chromium; or set VROEG_CHROMIUM)"
    );
    path
}

/// The month key (`2026-11`) of a day.
fn month(day: Day) -> String {
    day.to_string()[..7].to_owned()
}

#[test]
fn the_inbox_works_in_a_real_browser() {
    let project = browser_project();
    let chromium = chromium();
    let topics = create_topics("inbox", 2);
    let dir = tempfile::tempdir().unwrap();
    let extra = Extra {
        // Event time: a case opens when its signal was sent, so the older
        // ones are past their contact deadline and show as overdue.
        engine: format!(
            "clock = \"event\"\nrouting = {:?}",
            root().join("config/wijkteams.yaml").to_str().unwrap()
        ),
        api: format!(
            "{}{}{}",
            token_entry("coordinator-centrum", CENTRUM, "team = \"centrum\""),
            token_entry("coordinator-noord", NOORD, "team = \"noord\""),
            token_entry("beheer", ADMIN, "admin = true"),
        ),
        ..Extra::default()
    };
    let service = Service::start_configured(&topics, dir.path(), "inbox", &extra);
    service.wait_ready();

    // Centrum (1000-1099): a crisis, households with two partners, and
    // single ones, some past their deadline; noord (1100-1199): two.
    let mut signals = Vec::new();
    let partners = ["Huur", "Zorg", "Energie", "Water"];
    for i in 0..14u32 {
        let postcode = format!("10{:02} AB", 10 + i);
        let days_ago = i64::from(i * 3 % 40);
        signals.push(arrears_at(
            &postcode,
            &format!("inbox-{i}-a"),
            partners[i as usize % 4],
            1 + i,
            days_ago,
            150 + u64::from(i) * 37,
            "open",
            i == 3,
        ));
        if i % 3 == 0 {
            signals.push(arrears_at(
                &postcode,
                &format!("inbox-{i}-b"),
                partners[(i as usize + 1) % 4],
                1 + i,
                days_ago,
                400 + u64::from(i),
                "open",
                false,
            ));
        }
    }
    for i in 0..2u32 {
        signals.push(arrears_at(
            "1150 CD",
            &format!("inbox-noord-{i}"),
            "Huur",
            20 + i,
            2,
            900,
            "open",
            false,
        ));
    }
    send(&topics.signals, &lines(&signals), ContentMode::Structured);

    // Wait until the read model holds all 16 cases.
    let deadline = Instant::now() + Duration::from_secs(90);
    let cases = loop {
        let page = get(&service, "/api/v1/cases?status=alle&aantal=100");
        let cases = page["zaken"].as_array().unwrap().clone();
        if cases.len() == 16 && get(&service, "/api/v1/leesmodel")["achterstand"] == 0 {
            break cases;
        }
        assert!(
            Instant::now() < deadline,
            "the read model holds {} of 16 cases",
            cases.len()
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let other = cases
        .iter()
        .find(|c| c["wijkteam"] == "noord")
        .expect("a case of noord")["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let today = Day::local_of(vroeg_kafka::wall_now());
    let (van, tot) = (month(today.minus_months(1)), month(today));
    let out = root().join("target/inbox");
    let run = Command::new("node")
        .arg(project.join("inbox.mjs"))
        .current_dir(&project)
        .env("VROEG_URL", service.url())
        .env("VROEG_TEAM_TOKEN", CENTRUM)
        .env("VROEG_ADMIN_TOKEN", ADMIN)
        .env("VROEG_OTHER_CASE", &other)
        .env("VROEG_OUT", &out)
        .env("VROEG_MONITOR_VAN", &van)
        .env("VROEG_MONITOR_TOT", &tot)
        .env("VROEG_CHROMIUM", &chromium)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    println!("{stdout}");
    assert!(
        run.status.success() && stdout.lines().last() == Some("inbox: ok"),
        "the browser test failed:\n{stdout}\n{}\nservice log:\n{}",
        String::from_utf8_lossy(&run.stderr),
        std::fs::read_to_string(&service.log)
            .unwrap_or_default()
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    for shot in ["werkbakken.png", "zaak.png", "monitor.png"] {
        let size = std::fs::metadata(out.join(shot))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(size > 10_000, "{shot}: {size} bytes");
    }

    // The monitor's figures equal `vroeg report` for each month.
    let csv = std::fs::read_to_string(out.join("monitor.csv")).unwrap();
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, ADMIN).unwrap();
    let mut compared = 0;
    for m in [&van, &tot] {
        let first = Day::parse(&format!("{m}-01")).unwrap();
        let last = first.plus_months(1).plus_days(-1);
        let report = Command::new(env!("CARGO_BIN_EXE_vroeg"))
            .args([
                "report",
                "--json",
                "--service",
                &service.url(),
                "--token-file",
            ])
            .arg(&token_file)
            .args(["--from", &first.to_string(), "--to", &last.to_string()])
            .output()
            .unwrap();
        assert!(
            report.status.success(),
            "{}",
            String::from_utf8_lossy(&report.stderr)
        );
        let report: Value = serde_json::from_slice(&report.stdout).unwrap();
        // Figures as numbers: the CSV writes a decimal comma.
        let number = |text: &str| text.replace(',', ".").parse::<f64>().ok();
        let mut expected: BTreeMap<String, Option<f64>> = BTreeMap::new();
        for (name, value) in report.as_object().unwrap() {
            match value {
                Value::Object(per_key) => {
                    for (k, v) in per_key {
                        expected.insert(format!("{name};{k}"), v.as_f64());
                    }
                }
                Value::Number(n) => {
                    expected.insert(format!("{name};"), n.as_f64());
                }
                Value::Null => {
                    expected.insert(format!("{name};"), None);
                }
                _ => {} // van, tot_en_met
            }
        }
        let shown: BTreeMap<String, Option<f64>> = csv
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{m};")))
            .map(|l| {
                let (key, value) = l.rsplit_once(';').unwrap();
                (key.to_owned(), number(value))
            })
            .collect();
        assert_eq!(shown, expected, "month {m}");
        compared += shown.len();
    }
    assert!(csv.contains("signalen_per_bron;Huur;"), "{csv}");
    assert!(compared > 20, "{compared} figures compared");
    service.terminate();
}

/// `curl -k` against the service over TLS: status line and headers.
fn curl_tls(port: u16, path: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["-sk", "-D", "-", "-o", "/dev/null", "--max-time", "5"])
        .arg(format!("https://localhost:{port}{path}"))
        .output()
        .expect("curl runs");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn the_inbox_is_served_over_tls_with_a_secure_cookie() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let topics = create_topics("inbox-tls", 1);
    let extra = Extra {
        api: format!(
            "tls_cert = {:?}\ntls_key = {:?}\n{}",
            cert.to_str().unwrap(),
            key.to_str().unwrap(),
            token_entry("beheer", ADMIN, "admin = true")
        ),
        ..Extra::default()
    };
    let service = Service::start_configured(&topics, dir.path(), "inbox-tls", &extra);
    let deadline = Instant::now() + Duration::from_secs(60);
    let headers = loop {
        if let Some(h) = curl_tls(service.port(), "/inbox/aanmelden") {
            break h;
        }
        assert!(
            Instant::now() < deadline,
            "no TLS answer; log:\n{}",
            std::fs::read_to_string(&service.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(headers.starts_with("HTTP/"), "{headers}");
    assert!(
        headers.lines().next().unwrap().contains(" 200"),
        "{headers}"
    );
    let cookie = headers
        .lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with("set-cookie: vroeg_aanmelden=")
        })
        .unwrap_or_else(|| panic!("no sign-in cookie: {headers}"));
    for part in ["Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    // Plain HTTP gets no answer on the TLS port.
    assert!(service.http("/healthz").is_none_or(|(s, _)| s != 200));
    service.terminate();
}
