//! `vroeg run` against a real Apache Kafka broker. Each test has its own
//! topics, consumer group and state directory.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{json, Value};
use vroeg_core::time::{format_rfc3339, Day, DAY_MS};
use vroeg_kafka::ContentMode;

pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The broker: `VROEG_TEST_BROKERS`, or one started for this test run.
pub(crate) fn broker() -> &'static str {
    static BROKER: OnceLock<String> = OnceLock::new();
    BROKER.get_or_init(|| {
        if let Ok(b) = std::env::var("VROEG_TEST_BROKERS") {
            if !b.is_empty() {
                return b;
            }
        }
        let dir = root().join("target/test-kafka");
        let out = Command::new(root().join("scripts/kafka.sh"))
            .args([
                "start",
                "--dir",
                dir.to_str().unwrap(),
                "--owner-pid",
                &std::process::id().to_string(),
            ])
            .stderr(Stdio::inherit())
            .output()
            .expect("scripts/kafka.sh runs");
        assert!(
            out.status.success(),
            "could not start a Kafka broker with scripts/kafka.sh (needs Java 17 and Maven); \
             or start one and set VROEG_TEST_BROKERS=host:port"
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .last()
            .unwrap()
            .trim()
            .to_owned()
    })
}

pub(crate) fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    // Ten digits: a nine-digit run could pass the elfproef, and the privacy
    // scan would take a topic or group name in a log for a BSN.
    format!(
        "t-{name}-{}-{:010}",
        std::process::id(),
        nanos % 10_000_000_000
    )
}

pub(crate) struct Topics {
    pub signals: String,
    pub alerts: String,
    pub dlq: String,
    pub feedback: String,
    pub partner: String,
    /// The internal topics of the partitioned service, which creates them.
    pub household: String,
    pub changelog: String,
    pub cases: String,
}

pub(crate) fn create_topics(name: &str, partitions: i32) -> Topics {
    create_topics_on(broker(), name, partitions)
}

pub(crate) fn create_topics_on(brokers: &str, name: &str, partitions: i32) -> Topics {
    let base = unique(name);
    let t = Topics {
        signals: format!("{base}.signalen"),
        alerts: format!("{base}.meldingen"),
        dlq: format!("{base}.dlq"),
        feedback: format!("{base}.terugkoppeling"),
        partner: format!("{base}.partner"),
        household: format!("{base}.huishoudens"),
        changelog: format!("{base}.huishoudens.changelog"),
        cases: format!("{base}.zaken"),
    };
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let topics = [
        // Room for the corpus's oversized messages: the engine, not the
        // broker, must be the one to refuse them.
        NewTopic::new(&t.signals, partitions, TopicReplication::Fixed(1))
            .set("max.message.bytes", "4194304"),
        NewTopic::new(&t.alerts, 3, TopicReplication::Fixed(1)),
        NewTopic::new(&t.dlq, 1, TopicReplication::Fixed(1)),
        NewTopic::new(&t.feedback, 1, TopicReplication::Fixed(1)),
        NewTopic::new(&t.partner, 1, TopicReplication::Fixed(1)),
    ];
    let results = futures::executor::block_on(admin.create_topics(&topics, &AdminOptions::new()))
        .expect("create topics");
    for r in results {
        r.expect("topic created");
    }
    t
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Extra configuration for [`Service::start_extra`].
#[derive(Default)]
pub(crate) struct Extra {
    /// Lines for the `[engine]` section.
    pub engine: String,
    /// Lines for the `[api]` section (e.g. `[[api.tokens]]` tables).
    pub api: String,
    /// Rule files to use instead of the shipped `rules/`.
    pub rules: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    /// Lines for the `[kafka.client]` section (librdkafka settings).
    pub client: String,
    /// Whole sections appended to the config (e.g. `[retention]`).
    pub sections: String,
}

/// A `[[api.tokens]]` entry for `Extra::api`: the token's holder, the token
/// (configured by its SHA-256), and its role line (`team = "noord"` or
/// `admin = true`).
pub(crate) fn token_entry(name: &str, token: &str, role: &str) -> String {
    use sha2::Digest as _;
    format!(
        "[[api.tokens]]\nname = {name:?}\nsha256 = \"{}\"\n{role}\n",
        hex::encode(sha2::Sha256::digest(token.as_bytes()))
    )
}

/// A `vroeg run` process with its config and state.
pub(crate) struct Service {
    child: Child,
    port: u16,
    pub log: PathBuf,
}

impl Service {
    pub(crate) fn start(t: &Topics, dir: &Path, group: &str, alerts_mode: &str) -> Service {
        Self::start_with(t, dir, group, alerts_mode, 50)
    }

    fn start_with(
        t: &Topics,
        dir: &Path,
        group: &str,
        alerts_mode: &str,
        batch_size: usize,
    ) -> Service {
        Self::start_on(broker(), t, dir, group, alerts_mode, batch_size)
    }

    fn start_on(
        brokers: &str,
        t: &Topics,
        dir: &Path,
        group: &str,
        alerts_mode: &str,
        batch_size: usize,
    ) -> Service {
        Self::start_extra(
            brokers,
            t,
            dir,
            group,
            alerts_mode,
            batch_size,
            &Extra::default(),
        )
    }

    /// [`Service::start_extra`] on the test broker, structured alerts,
    /// batches of 50.
    pub(crate) fn start_configured(t: &Topics, dir: &Path, group: &str, extra: &Extra) -> Service {
        Self::start_extra(broker(), t, dir, group, "structured", 50, extra)
    }

    /// Start with extra config (engine and api sections) and environment.
    pub(crate) fn start_extra(
        brokers: &str,
        t: &Topics,
        dir: &Path,
        group: &str,
        alerts_mode: &str,
        batch_size: usize,
        extra: &Extra,
    ) -> Service {
        let port = free_port();
        let config = dir.join("vroeg.toml");
        let toml = format!(
            r#"
[engine]
state_dir = {state:?}
rules = [{rules:?}]
shutdown_deadline_secs = 20
{engine_extra}

[kafka]
brokers = {brokers:?}
group_id = {group:?}
signal_topics = [{signals:?}]
alerts_topic = {alerts:?}
dlq_topic = {dlq:?}
feedback_topic = {feedback:?}
partner_feedback_topic = {partner:?}
household_topic = {household:?}
changelog_topic = {changelog:?}
cases_topic = {cases:?}
alerts_content_mode = {alerts_mode:?}
batch_size = {batch_size}
batch_time_ms = 20
event_source = "urn:vroeg:test"

[kafka.client]
"session.timeout.ms" = "10000"
{client_extra}

[api]
listen = "127.0.0.1:{port}"
read_model_dir = {read_model:?}
{api_extra}

{sections}
"#,
            engine_extra = extra.engine,
            api_extra = extra.api,
            client_extra = extra.client,
            sections = extra.sections,
            state = dir.join("state").to_str().unwrap(),
            read_model = dir.join("leesmodel").to_str().unwrap(),
            rules = extra
                .rules
                .clone()
                .unwrap_or_else(|| root().join("rules"))
                .to_str()
                .unwrap()
                .to_owned(),
            signals = t.signals,
            alerts = t.alerts,
            dlq = t.dlq,
            feedback = t.feedback,
            partner = t.partner,
            household = t.household,
            changelog = t.changelog,
            cases = t.cases,
        );
        std::fs::write(&config, toml).unwrap();
        let log = dir.join(format!("run-{}.log", free_port()));
        let child = Command::new(env!("CARGO_BIN_EXE_vroeg"))
            .args(["run", "--config", config.to_str().unwrap()])
            .env("VROEG_HOUSEHOLD_SECRET", "integration-test-secret")
            .env("VROEG_LOG", "info")
            .env("VROEG_LOG_JSON", "1")
            .envs(extra.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("vroeg run starts");
        Service { child, port, log }
    }

    /// A `vroeg serve` beside the service started in `dir`: the same
    /// config, with its own port and its own read model in `dir/<name>`.
    pub(crate) fn serve_beside(dir: &Path, name: &str) -> Service {
        let text = std::fs::read_to_string(dir.join("vroeg.toml")).unwrap();
        let port = free_port();
        let read_model = dir.join(name);
        let text: String = text
            .lines()
            .map(|l| {
                if l.starts_with("listen = ") {
                    format!("listen = \"127.0.0.1:{port}\"")
                } else if l.starts_with("read_model_dir = ") {
                    format!("read_model_dir = {:?}", read_model.to_str().unwrap())
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(&config, text).unwrap();
        let log = dir.join(format!("{name}-{}.log", free_port()));
        let child = Command::new(env!("CARGO_BIN_EXE_vroeg"))
            .args(["serve", "--config", config.to_str().unwrap()])
            .env("VROEG_HOUSEHOLD_SECRET", "integration-test-secret")
            .env("VROEG_LOG", "info")
            .env("VROEG_LOG_JSON", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("vroeg serve starts");
        Service { child, port, log }
    }

    /// The API's base address, e.g. `http://127.0.0.1:41234`.
    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn http(&self, path: &str) -> Option<(u16, String)> {
        self.request("GET", path, None, None)
    }

    /// An HTTP/1.1 request; `token` goes in a bearer header.
    pub(crate) fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Option<(u16, String)> {
        self.request_with(method, path, token, body, &[])
            .map(|(status, _, body)| (status, body))
    }

    /// A GET with an `Accept` header: the status, the content type and the
    /// body.
    pub(crate) fn get_accepting(&self, path: &str, accept: &str) -> Option<(u16, String, String)> {
        self.request_with("GET", path, None, None, &[("Accept", accept)])
    }

    fn request_with(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Option<(u16, String, String)> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        for (name, value) in headers {
            auth.push_str(&format!("{name}: {value}\r\n"));
        }
        let body = body.unwrap_or("");
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        let status = buf.split_whitespace().nth(1)?.parse().ok()?;
        let (head, body) = buf.split_once("\r\n\r\n").unwrap_or((&buf, ""));
        let content_type = head
            .lines()
            .find_map(|l| {
                l.split_once(':')
                    .filter(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_default();
        Some((status, content_type, body.to_owned()))
    }

    pub(crate) fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if matches!(self.http("/readyz"), Some((200, _))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "vroeg run did not become ready; log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// SIGTERM, then wait; returns the exit code.
    pub(crate) fn terminate(mut self) -> i32 {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let code = status.code().unwrap_or(-1);
                if code != 0 {
                    // Shown with a failing test: why it did not stop cleanly.
                    let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(40).collect();
                    eprintln!(
                        "vroeg run exited {code} after SIGTERM; its log ends:\n{}",
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    );
                }
                return code;
            }
            assert!(
                Instant::now() < deadline,
                "vroeg run did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn kill(mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // No personal data in any log of any test run.
        if !std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let found: Vec<String> = log
                .lines()
                .flat_map(|line| {
                    crate::privacy::personal_data(line)
                        .into_iter()
                        .map(move |what| format!("{what} in: {line}"))
                })
                .collect();
            assert!(
                found.is_empty(),
                "personal data in the log {}: {found:#?}",
                self.log.display()
            );
        }
    }
}

/// Produce each payload as one message, bytes as they are.
fn send_raw(topic: &str, payloads: &[Vec<u8>]) {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", broker())
        .set("message.max.bytes", "4194304")
        .create()
        .unwrap();
    for p in payloads {
        producer
            .send(BaseRecord::<(), [u8]>::to(topic).payload(p.as_slice()))
            .map_err(|(e, _)| e)
            .expect("queued");
    }
    producer.flush(Duration::from_secs(30)).expect("delivered");
}

pub(crate) fn send(topic: &str, lines: &[String], mode: ContentMode) {
    send_on(broker(), topic, lines, mode)
}

pub(crate) fn send_on(brokers: &str, topic: &str, lines: &[String], mode: ContentMode) {
    let text = lines.join("\n");
    let n = vroeg_kafka::send::send_lines(
        brokers,
        &BTreeMap::new(),
        topic,
        mode,
        Cursor::new(text.into_bytes()),
    )
    .expect("signals sent");
    assert_eq!(n as usize, lines.len());
}

pub(crate) struct Msg {
    headers: BTreeMap<String, Vec<u8>>,
    pub payload: Vec<u8>,
}

impl Msg {
    pub(crate) fn header(&self, k: &str) -> Option<String> {
        self.headers
            .get(k)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
    /// The alert inside a structured CloudEvent, or the body in binary mode.
    pub(crate) fn alert(&self) -> Value {
        let v: Value = serde_json::from_slice(&self.payload).unwrap();
        if self.headers.contains_key("ce_id") {
            v
        } else {
            v["data"].clone()
        }
    }
}

/// Reads a topic from its start, keeping what it has read.
pub(crate) struct Reader {
    consumer: BaseConsumer,
    topic: String,
    pub msgs: Vec<Msg>,
}

impl Reader {
    pub(crate) fn new(topic: &str) -> Reader {
        Self::on(broker(), topic)
    }

    pub(crate) fn on(brokers: &str, topic: &str) -> Reader {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", unique("reader"))
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        // Assigned, not subscribed: a group rebalance (after a broker
        // outage, say) would restart a consumer without committed offsets
        // from the beginning, and it would read everything twice.
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(30))
            .expect("topic metadata");
        let mut tpl = TopicPartitionList::new();
        for p in metadata.topics()[0].partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .unwrap();
        }
        assert!(tpl.count() > 0, "topic {topic} has partitions");
        consumer.assign(&tpl).unwrap();
        Reader {
            consumer,
            topic: topic.to_owned(),
            msgs: Vec::new(),
        }
    }

    /// Read until at least `min` messages in all arrived and nothing new
    /// came for `quiet`, or until `timeout`.
    pub(crate) fn until(&mut self, min: usize, quiet: Duration, timeout: Duration) -> &[Msg] {
        let started = Instant::now();
        let mut last = Instant::now();
        while started.elapsed() < timeout {
            match self.consumer.poll(Duration::from_millis(50)) {
                Some(Ok(m)) => {
                    let headers = m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                                .collect()
                        })
                        .unwrap_or_default();
                    self.msgs.push(Msg {
                        headers,
                        payload: m.payload().unwrap_or_default().to_vec(),
                    });
                    last = Instant::now();
                    if quiet.is_zero() && self.msgs.len() >= min {
                        break;
                    }
                }
                // A broker outage (the outage test) is not the reader's fault.
                Some(Err(e))
                    if matches!(
                        e.rdkafka_error_code(),
                        Some(
                            rdkafka::error::RDKafkaErrorCode::AllBrokersDown
                                | rdkafka::error::RDKafkaErrorCode::BrokerTransportFailure
                        )
                    ) => {}
                Some(Err(e)) => panic!("reading {}: {e}", self.topic),
                None => {
                    if self.msgs.len() >= min && last.elapsed() >= quiet {
                        break;
                    }
                }
            }
        }
        &self.msgs
    }
}

/// Read `topic` from the start until at least `min` messages arrived and
/// nothing new came for `quiet`, or until `timeout`.
pub(crate) fn read(topic: &str, min: usize, quiet: Duration, timeout: Duration) -> Vec<Msg> {
    read_on(broker(), topic, min, quiet, timeout)
}

pub(crate) fn read_on(
    brokers: &str,
    topic: &str,
    min: usize,
    quiet: Duration,
    timeout: Duration,
) -> Vec<Msg> {
    let mut reader = Reader::on(brokers, topic);
    reader.until(min, quiet, timeout);
    reader.msgs
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A payment-arrears signal dated `days_ago` for house number `house`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn arrears(
    id: &str,
    partner: &str,
    house: u32,
    days_ago: i64,
    euro: u64,
    status: &str,
    crisis: bool,
) -> Value {
    arrears_at(
        "9999 ZZ", id, partner, house, days_ago, euro, status, crisis,
    )
}

/// [`arrears`] at another postcode.
#[allow(clippy::too_many_arguments)]
pub(crate) fn arrears_at(
    postcode: &str,
    id: &str,
    partner: &str,
    house: u32,
    days_ago: i64,
    euro: u64,
    status: &str,
    crisis: bool,
) -> Value {
    let time = now_ms() - days_ago * DAY_MS - 60_000;
    let day = Day::of_millis(time);
    json!({
        "specversion": "1.0", "id": id, "source": format!("urn:test:{}", partner.to_lowercase()),
        "type": "nl.vroeg.signaal.betalingsachterstand.v1", "time": format_rfc3339(time),
        "datacontenttype": "application/json",
        "data": {
            "signaalpartner": partner, "referentie": format!("R-{house}"), "status": status,
            "bedrag_cent": euro * 100, "ontstaansdatum": day.plus_days(-45).to_string(),
            "signaaldatum": day.to_string(), "crisissignaal": crisis,
            "client": { "voorletters": "Q.", "achternaam": "Zwartkop", "geboortedatum": "1979-03-04",
                "straatnaam": "Integratiestraat", "postcode": postcode, "huisnummer": house,
                "plaatsnaam": "Testdorp", "bsn": crate::privacy::HAND_WRITTEN_BSN }
        }
    })
}

pub(crate) fn lines(v: &[Value]) -> Vec<String> {
    v.iter().map(Value::to_string).collect()
}

/// (type, categorie, reden) of each alert, sorted.
fn summary(msgs: &[Msg]) -> Vec<(String, String, String)> {
    let mut s: Vec<_> = msgs
        .iter()
        .map(|m| {
            let a = m.alert();
            (
                a["type"].as_str().unwrap_or("").to_owned(),
                a["categorie"].as_str().unwrap_or("").to_owned(),
                a["reden"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    s.sort();
    s
}

fn t(kind: &str, cat: &str, reden: &str) -> (String, String, String) {
    (kind.into(), cat.into(), reden.into())
}

#[test]
fn end_to_end_scenario_gives_exactly_the_expected_case_events() {
    // One partition, so the signals of a household arrive in order.
    let topics = create_topics("e2e", 1);
    let dir = tempfile::tempdir().unwrap();
    let signals = vec![
        // Multiple: two partners within 30 days.
        arrears("a1", "Zorg", 1, 20, 300, "open", false),
        arrears("a2", "Energie", 1, 10, 600, "open", false),
        // Crisis.
        arrears("b1", "Huur", 2, 3, 2400, "open", true),
        // Paid, then a repeat from the same partner without a rise: suppressed.
        arrears("c1", "Zorg", 3, 40, 500, "open", false),
        arrears("c2", "Zorg", 3, 30, 500, "betaald", false),
        arrears("c3", "Zorg", 3, 5, 500, "open", false),
        // Consecutive: an earlier, closed signal within six months.
        arrears("d1", "Energie", 4, 90, 400, "open", false),
        arrears("d2", "Energie", 4, 80, 400, "betalingsregeling", false),
        arrears("d3", "Huur", 4, 5, 700, "open", false),
        // Below the minimum amount: nothing.
        arrears("e1", "Water", 5, 5, 40, "open", false),
    ];
    send(&topics.signals, &lines(&signals), ContentMode::Structured);
    let service = Service::start(&topics, dir.path(), &unique("g"), "structured");
    let alerts = read(
        &topics.alerts,
        8,
        Duration::from_secs(3),
        Duration::from_secs(90),
    );
    let expected = {
        let mut e = vec![
            t("geopend", "enkelvoudig", ""),
            t("bijgewerkt", "meervoudig", ""),
            t("geopend", "crisis", ""),
            t("geopend", "enkelvoudig", ""),
            t("gesloten", "enkelvoudig", "betaald"),
            t("geopend", "enkelvoudig", ""),
            t("gesloten", "enkelvoudig", "betalingsregeling"),
            t("geopend", "opeenvolgend", ""),
        ];
        e.sort();
        e
    };
    assert_eq!(summary(&alerts), expected);
    // Structured CloudEvents with the alert id as event id.
    for m in &alerts {
        let v: Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["id"], v["data"]["id"]);
        assert!(v["type"].as_str().unwrap().starts_with("nl.vroeg.zaak."));
    }
    assert!(read(
        &topics.dlq,
        0,
        Duration::from_secs(1),
        Duration::from_secs(3)
    )
    .is_empty());
    // The metrics saw it all; no personal data in metrics or logs.
    let (status, metrics) = service.http("/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(
        metrics.contains("vroeg_signals_consumed_messages_total 10"),
        "{metrics}"
    );
    assert_eq!(service.terminate(), 0);
    let log = std::fs::read_to_string(
        dir.path()
            .read_dir()
            .unwrap()
            .filter_map(|e| e.ok())
            .find(|e| e.file_name().to_string_lossy().starts_with("run-"))
            .unwrap()
            .path(),
    )
    .unwrap();
    for secret in [
        "Zwartkop",
        "9999",
        "111222333",
        "1979-03-04",
        "Integratiestraat",
    ] {
        assert!(
            !log.contains(secret) && !metrics.contains(secret),
            "{secret} leaked"
        );
    }
}

#[test]
fn a_single_node_state_directory_keeps_its_model_and_is_not_mixed() {
    let topics = create_topics("single", 1);
    let dir = tempfile::tempdir().unwrap();
    let group = unique("g");
    let start = |role: Option<&str>| {
        let extra = Extra {
            env: role
                .map(|r| ("VROEG_ROLE".to_owned(), r.to_owned()))
                .into_iter()
                .collect(),
            ..Extra::default()
        };
        Service::start_configured(&topics, dir.path(), &group, &extra)
    };
    let mut alerts = Reader::new(&topics.alerts);
    let service = start(Some("single"));
    send(
        &topics.signals,
        &lines(&[arrears("single-1", "Zorg", 21, 2, 800, "open", false)]),
        ContentMode::Structured,
    );
    alerts.until(1, Duration::ZERO, Duration::from_secs(60));
    assert_eq!(service.terminate(), 0);

    // Started without a role, the directory keeps the single-node model.
    let service = start(None);
    service.wait_ready();
    send(
        &topics.signals,
        &lines(&[arrears("single-2", "Huur", 22, 2, 900, "open", false)]),
        ContentMode::Structured,
    );
    let got = alerts.until(2, Duration::from_secs(2), Duration::from_secs(60));
    assert_eq!(got.len(), 2, "one case each, nothing twice");
    let log = std::fs::read_to_string(&service.log).unwrap();
    assert_eq!(service.terminate(), 0);
    assert!(log.contains("running as --role single"), "{log}");
    assert!(
        !log.contains("created topic"),
        "the single-node model makes no household topic"
    );

    // The partitioned model refuses it, saying why.
    let out = Command::new(env!("CARGO_BIN_EXE_vroeg"))
        .args(["run", "--role", "all", "--config"])
        .arg(dir.path().join("vroeg.toml"))
        .env("VROEG_HOUSEHOLD_SECRET", "integration-test-secret")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("holds the state of `--role single`"),
        "{stderr}"
    );
}

#[test]
fn a_resent_signal_has_one_effect() {
    let topics = create_topics("resend", 3);
    let dir = tempfile::tempdir().unwrap();
    let s = arrears("dup-1", "Zorg", 11, 2, 800, "open", false);
    send(
        &topics.signals,
        &lines(&[s.clone(), s.clone()]),
        ContentMode::Structured,
    );
    let service = Service::start(&topics, dir.path(), &unique("g"), "structured");
    service.wait_ready();
    // The resend arrives again later, after a restart would have cleared any cache.
    send(&topics.signals, &lines(&[s]), ContentMode::Structured);
    let alerts = read(
        &topics.alerts,
        1,
        Duration::from_secs(4),
        Duration::from_secs(60),
    );
    assert_eq!(summary(&alerts), vec![t("geopend", "enkelvoudig", "")]);
    let (_, metrics) = service.http("/metrics").unwrap();
    assert!(
        metrics.contains("vroeg_signals_duplicate_messages_total 2"),
        "{metrics}"
    );
    assert_eq!(service.terminate(), 0);
}

#[test]
fn malformed_messages_land_on_the_dlq_with_their_error_code() {
    // The whole malformed-signal corpus (tests/corpus), as raw messages.
    let topics = create_topics("dlq", 1);
    let dir = tempfile::tempdir().unwrap();
    let valid = arrears("ok-1", "Zorg", 21, 2, 800, "open", false);
    let corpus_dir = root().join("tests/corpus");
    let cases: Vec<(Vec<u8>, String)> = std::fs::read_to_string(corpus_dir.join("expected.tsv"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (file, code) = l.split_once('\t').unwrap();
            (
                std::fs::read(corpus_dir.join(file)).unwrap(),
                code.to_owned(),
            )
        })
        .collect();
    assert!(cases.len() >= 50);
    let mut payloads: Vec<Vec<u8>> = cases.iter().map(|(p, _)| p.clone()).collect();
    payloads.push(valid.to_string().into_bytes());
    send_raw(&topics.signals, &payloads);
    let service = Service::start(&topics, dir.path(), &unique("g"), "structured");
    let dead = read(
        &topics.dlq,
        cases.len(),
        Duration::from_secs(2),
        Duration::from_secs(60),
    );
    assert_eq!(dead.len(), cases.len());
    for (m, (payload, code)) in dead.iter().zip(&cases) {
        assert_eq!(
            m.header("vroeg_error_code").as_deref(),
            Some(code.as_str()),
            "{}",
            String::from_utf8_lossy(&payload[..payload.len().min(80)])
        );
        let kept = &payload[..payload.len().min(vroeg_engine::MAX_DEAD_LETTER_BYTES)];
        assert_eq!(
            m.payload, kept,
            "the original bytes are kept (up to the cap)"
        );
        if payload.len() > kept.len() {
            assert_eq!(
                m.header("vroeg_original_bytes"),
                Some(payload.len().to_string())
            );
        }
        assert_eq!(
            m.header("vroeg_source_topic").as_deref(),
            Some(topics.signals.as_str())
        );
        assert!(
            m.header("vroeg_source_offset").is_some() && m.header("vroeg_error_detail").is_some()
        );
    }
    // The engine kept running: the valid signal after them opened a case.
    let alerts = read(
        &topics.alerts,
        1,
        Duration::from_secs(2),
        Duration::from_secs(30),
    );
    assert_eq!(summary(&alerts), vec![t("geopend", "enkelvoudig", "")]);
    assert_eq!(service.terminate(), 0);
}

#[test]
fn binary_and_structured_signals_are_both_accepted() {
    let topics = create_topics("modes", 1);
    let dir = tempfile::tempdir().unwrap();
    send(
        &topics.signals,
        &lines(&[arrears("s-1", "Zorg", 31, 2, 800, "open", false)]),
        ContentMode::Structured,
    );
    send(
        &topics.signals,
        &lines(&[arrears("b-1", "Huur", 32, 2, 900, "open", true)]),
        ContentMode::Binary,
    );
    // Alerts in binary mode too.
    let service = Service::start(&topics, dir.path(), &unique("g"), "binary");
    let alerts = read(
        &topics.alerts,
        2,
        Duration::from_secs(2),
        Duration::from_secs(60),
    );
    assert_eq!(
        summary(&alerts),
        vec![t("geopend", "crisis", ""), t("geopend", "enkelvoudig", "")]
    );
    for m in &alerts {
        assert_eq!(m.header("ce_specversion").as_deref(), Some("1.0"));
        assert_eq!(
            m.header("ce_id"),
            m.alert()["id"].as_str().map(str::to_owned)
        );
    }
    assert_eq!(service.terminate(), 0);
}

/// Generated signals dated inside the lookback window, as JSON lines.
/// Generated signals (`vroeg gen`, four months up to about now).
pub(crate) fn generated(households: u64, seed: u64) -> Vec<String> {
    let start = Day::of_millis(now_ms()).plus_days(-150);
    let out = Command::new(env!("CARGO_BIN_EXE_vroeg"))
        .args([
            "gen",
            "--households",
            &households.to_string(),
            "--months",
            "4",
            "--seed",
            &seed.to_string(),
            "--start",
            &start.to_string(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    crate::privacy::remember_names(&lines);
    lines
}

/// Distinct alert ids, and how many messages repeated one.
fn ids(msgs: &[Msg]) -> (BTreeSet<String>, usize) {
    let set: BTreeSet<String> = msgs
        .iter()
        .map(|m| m.alert()["id"].as_str().unwrap().to_owned())
        .collect();
    let dups = msgs.len() - set.len();
    (set, dups)
}

/// Distinct dead-letter positions (offsets in the signal topic).
fn dead_offsets(msgs: &[Msg]) -> BTreeSet<String> {
    msgs.iter()
        .filter_map(|m| m.header("vroeg_source_offset"))
        .collect()
}

/// The distinct alert ids and dead-letter offsets of an uninterrupted run.
fn reference(name: &str, lines: &[String]) -> (BTreeSet<String>, BTreeSet<String>) {
    let topics = create_topics(name, 1);
    let dir = tempfile::tempdir().unwrap();
    send(&topics.signals, lines, ContentMode::Structured);
    let service = Service::start_with(&topics, dir.path(), &unique("g"), "structured", BATCH);
    let alerts = read(
        &topics.alerts,
        1,
        Duration::from_secs(6),
        Duration::from_secs(180),
    );
    assert_eq!(service.terminate(), 0);
    let (set, dups) = ids(&alerts);
    assert_eq!(dups, 0);
    assert!(
        set.len() > 20,
        "the reference run produced {} alerts",
        set.len()
    );
    let dead = dead_offsets(&read(
        &topics.dlq,
        1,
        Duration::from_secs(1),
        Duration::from_secs(10),
    ));
    assert!(!dead.is_empty());
    (set, dead)
}

/// Small batches, each flushed to disk, so that an interruption falls
/// mid-stream.
const BATCH: usize = 5;

/// Interrupt a run three times while alerts flow (at about a fifth, a half
/// and four fifths of them), restart it each time, and compare what reached
/// the alerts and dead-letter topics with an uninterrupted reference.
fn interrupted(name: &str, crash: bool) {
    let input = generated(6000, 9);
    let (expected, expected_dead) = reference(&format!("{name}-ref"), &input);
    let topics = create_topics(name, 1);
    let dir = tempfile::tempdir().unwrap();
    send(&topics.signals, &input, ContentMode::Structured);
    let group = unique("g");
    for target in [
        expected.len() / 5,
        expected.len() / 2,
        expected.len() * 4 / 5,
    ] {
        let service = Service::start_with(&topics, dir.path(), &group, "structured", BATCH);
        let seen = read(
            &topics.alerts,
            target,
            Duration::ZERO,
            Duration::from_secs(120),
        )
        .len();
        assert!(seen >= target, "alerts flowed ({seen} of {target})");
        if crash {
            service.kill();
        } else {
            assert_eq!(service.terminate(), 0, "graceful shutdown exits 0");
        }
    }
    let partial = read(
        &topics.alerts,
        0,
        Duration::from_secs(1),
        Duration::from_secs(5),
    )
    .len();
    assert!(
        partial < expected.len(),
        "the last interruption happened mid-stream ({partial} of {})",
        expected.len()
    );
    let last = Service::start_with(&topics, dir.path(), &group, "structured", BATCH);
    let alerts = read(
        &topics.alerts,
        expected.len(),
        Duration::from_secs(6),
        Duration::from_secs(180),
    );
    assert_eq!(last.terminate(), 0);
    let (got, dups) = ids(&alerts);
    let missing: Vec<_> = expected.difference(&got).take(5).collect();
    let extra: Vec<_> = got.difference(&expected).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, unexpected {extra:?}"
    );
    let dead = read(
        &topics.dlq,
        expected_dead.len(),
        Duration::from_secs(1),
        Duration::from_secs(30),
    );
    assert_eq!(
        dead_offsets(&dead),
        expected_dead,
        "every bad record reached the dead-letter topic"
    );
    // Read committed, nothing is seen twice, after a crash as after a
    // graceful restart.
    assert_eq!(dups, 0, "a case event was seen twice");
    assert_eq!(
        dead.len(),
        expected_dead.len(),
        "a dead letter was seen twice"
    );
}

#[test]
fn graceful_restart_loses_and_doubles_nothing() {
    interrupted("graceful", false);
}

#[test]
fn crash_and_restart_loses_and_doubles_nothing() {
    interrupted("crash", true);
}

#[test]
fn an_unreachable_broker_means_not_ready_but_alive() {
    // Nothing listens on this port.
    let closed = format!("127.0.0.1:{}", free_port());
    let topics = Topics {
        signals: "s".into(),
        alerts: "a".into(),
        dlq: "d".into(),
        feedback: "f".into(),
        partner: "p".into(),
        household: "h".into(),
        changelog: "c".into(),
        cases: "z".into(),
    };
    let dir = tempfile::tempdir().unwrap();
    let mut service = Service::start_on(&closed, &topics, dir.path(), "g", "structured", 10);
    let deadline = Instant::now() + Duration::from_secs(30);
    while service.http("/healthz").is_none() {
        assert!(Instant::now() < deadline, "the API came up");
        std::thread::sleep(Duration::from_millis(100));
    }
    // For several seconds: alive, not ready, still running.
    for _ in 0..10 {
        assert_eq!(service.http("/healthz").map(|r| r.0), Some(200));
        assert_eq!(service.http("/readyz").map(|r| r.0), Some(503));
        assert!(
            service.child.try_wait().unwrap().is_none(),
            "vroeg run must not exit"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(service.terminate(), 0, "a clean stop even without a broker");
}

#[test]
fn feedback_is_applied_once_closes_the_case_and_tells_partners_only_a_status() {
    let topics = create_topics("feedback", 1);
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start(&topics, dir.path(), &unique("g"), "structured");
    send(
        &topics.signals,
        &lines(&[arrears("fb-s1", "Zorg", 41, 3, 900, "open", false)]),
        ContentMode::Structured,
    );
    let mut alerts = Reader::new(&topics.alerts);
    let opened = alerts.until(1, Duration::ZERO, Duration::from_secs(60))[0].alert();
    assert_eq!(opened["type"], "geopend");
    let zaak = opened["zaak_id"].as_str().unwrap().to_owned();
    let today = Day::local_of(now_ms()).to_string(); // the Dutch day, as the case counts it
    let feedback = vec![
        json!({"id": "t-1", "zaak_id": zaak, "type": "contactpoging", "contactsoort": "Telefoon",
               "bereikt": true, "datum": today, "dagdeel": "Middag"}),
        // A re-send of the same message: no effect.
        json!({"id": "t-1", "zaak_id": zaak, "type": "contactpoging", "contactsoort": "Telefoon",
               "bereikt": true, "datum": today, "dagdeel": "Middag"}),
        json!({"id": "t-2", "zaak_id": zaak, "type": "resultaat",
               "resultaat": "Vervolghulp en/of verwijzing financieel", "datum": today}),
        // Too late: the case is closed.
        json!({"id": "t-3", "zaak_id": zaak, "type": "contactpoging", "contactsoort": "Brief",
               "bereikt": false, "datum": today}),
    ];
    let mut payloads = lines(&feedback);
    payloads.push("{not json".into());
    send(&topics.feedback, &payloads, ContentMode::Structured);
    let all = alerts.until(2, Duration::from_secs(2), Duration::from_secs(60));
    assert_eq!(all.len(), 2, "geopend and gesloten, nothing else");
    let closed = all[1].alert();
    assert_eq!(closed["type"], "gesloten");
    assert_eq!(closed["reden"], "resultaat");
    assert_eq!(
        closed["resultaat"],
        "Vervolghulp en/of verwijzing financieel"
    );
    // Partners hear the status of their signal, and nothing more.
    let partner = read(
        &topics.partner,
        1,
        Duration::from_secs(1),
        Duration::from_secs(30),
    );
    assert_eq!(partner.len(), 1);
    let v: Value = serde_json::from_slice(&partner[0].payload).unwrap();
    assert_eq!(
        v,
        json!({"source": "urn:test:zorg", "id": "fb-s1", "status": "wil_hulp"})
    );
    // Feedback that cannot apply goes to the dead-letter topic, with its reason.
    let dead = read(
        &topics.dlq,
        2,
        Duration::from_secs(1),
        Duration::from_secs(30),
    );
    let codes: BTreeSet<String> = dead
        .iter()
        .filter_map(|m| m.header("vroeg_error_code"))
        .collect();
    assert_eq!(
        codes,
        BTreeSet::from(["unknown_case".to_string(), "invalid_json".to_string()])
    );
    assert_eq!(service.terminate(), 0);
}

/// Wait until the partitioned service of `group` has caught up with its
/// input, and that stays so for a while: intake has committed every record
/// of the partner and feedback topics, and the state role every record of
/// the household topic. (Intake announces idle sources a few seconds after
/// it caught up, and on the event clock those announcements release the
/// last signals.) Panics with the end of its log if one of `services`
/// stops answering.
///
/// Transactions leave control records (commit and abort markers) that no
/// consumer receives, so a committed offset can stay short of the log end:
/// "caught up" means that a `read_committed` read from the committed offset
/// reaches the end without a record.
pub(crate) fn settle(t: &Topics, group: &str, services: &[&Service]) {
    settle_on(broker(), t, group, services)
}

/// [`settle`] on the broker at `brokers`.
pub(crate) fn settle_on(brokers: &str, t: &Topics, group: &str, services: &[&Service]) {
    let client = |group: String, eof: bool| -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", if eof { "true" } else { "false" })
            .create()
            .unwrap()
    };
    let probe = client(unique("probe"), true);
    // The partition count of a topic; `None` while it does not exist (the
    // service creates the household topic).
    let partitions = |topic: &str| -> Option<i32> {
        let metadata = probe
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .ok()?;
        let n = metadata.topics().first()?.partitions().len() as i32;
        (n > 0).then_some(n)
    };
    let groups = [
        (format!("{group}-intake"), &t.signals),
        (format!("{group}-intake"), &t.feedback),
        (format!("{group}-state"), &t.household),
    ];
    // Per partition: the committed offset, if nothing can be read after it;
    // `None` while anything can.
    let caught_up = || -> Option<Vec<i64>> {
        let mut out = Vec::new();
        for (group, topic) in &groups {
            let partitions = &partitions(topic)?;
            let mut tpl = TopicPartitionList::new();
            for p in 0..*partitions {
                tpl.add_partition(topic, p);
            }
            let committed = client(group.clone(), false)
                .committed_offsets(tpl, Duration::from_secs(10))
                .ok()?;
            let mut from = TopicPartitionList::new();
            for p in 0..*partitions {
                let at = match committed.find_partition(topic, p)?.offset() {
                    Offset::Offset(o) => o,
                    _ => 0,
                };
                from.add_partition_offset(topic, p, Offset::Offset(at))
                    .ok()?;
                out.push(at);
            }
            probe.assign(&from).ok()?;
            let mut open: std::collections::BTreeSet<i32> = (0..*partitions).collect();
            while !open.is_empty() {
                match probe.poll(Duration::from_secs(10)) {
                    Some(Err(KafkaError::PartitionEOF(p))) => {
                        open.remove(&p);
                    }
                    Some(Ok(_)) | None => return None,
                    Some(Err(_)) => {}
                }
            }
        }
        Some(out)
    };
    let deadline = Instant::now() + Duration::from_secs(1800);
    let mut answered = Instant::now();
    let mut last: Option<Vec<i64>> = None;
    loop {
        assert!(Instant::now() < deadline, "the run did not settle");
        if services.iter().all(|s| s.http("/healthz").is_some()) {
            answered = Instant::now();
        } else if answered.elapsed() > Duration::from_secs(60) {
            let logs: Vec<String> = services
                .iter()
                .map(|s| {
                    let log = std::fs::read_to_string(&s.log).unwrap_or_default();
                    log[log.len().saturating_sub(2000)..].to_owned()
                })
                .collect();
            panic!("a service stopped answering; the ends of the logs:\n{logs:#?}");
        }
        let now = caught_up();
        if now.is_some() && now == last {
            return;
        }
        last = now;
        std::thread::sleep(Duration::from_secs(4));
    }
}
