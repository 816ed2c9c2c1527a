//! Signal-to-alert latency of a running `vroeg run`: publishes `count`
//! signals at `rate` per second, each for a new household (so each opens
//! exactly one case), and matches every `geopend` alert to its signal.
//! Latency is the alert's Kafka timestamp minus the signal's (both set by
//! their producers on this machine).
//!
//! `cargo run --release -p vroeg-kafka --example latency_probe -- BROKERS SIGNALS ALERTS RATE COUNT`
//!
//! With ALERTS equal to SIGNALS it measures the broker alone, as a
//! baseline: the time from producing each signal to consuming it back.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::{json, Value};
use vroeg_core::time::{format_rfc3339, Day};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (brokers, signals, alerts) = (&args[0], &args[1], &args[2]);
    let raw = signals == alerts;
    let rate: u64 = args[3].parse().unwrap();
    let count: u64 = args[4].parse().unwrap();
    let run = std::process::id();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("latency-{run}"))
        .set("auto.offset.reset", "latest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[alerts.as_str()]).unwrap();
    // Join the group before producing, so that no alert is missed.
    let join = Instant::now();
    while consumer.assignment().map(|a| a.count()).unwrap_or(0) == 0
        && join.elapsed() < Duration::from_secs(30)
    {
        consumer.poll(Duration::from_millis(100));
    }
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "0")
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let mut sent: HashMap<String, i64> = HashMap::new();
    let mut latencies = Vec::new();
    let started = Instant::now();
    let mut i = 0u64;
    let drain = |consumer: &BaseConsumer,
                 sent: &HashMap<String, i64>,
                 latencies: &mut Vec<i64>,
                 wait: Duration| {
        while let Some(Ok(m)) = consumer.poll(wait) {
            let ts = m.timestamp().to_millis().unwrap_or(0);
            let Ok(v) = serde_json::from_slice::<Value>(m.payload().unwrap_or_default()) else {
                continue;
            };
            if raw {
                // Baseline: the signal itself, consumed back.
                if let Some(t0) = v["id"].as_str().and_then(|id| sent.get(id)) {
                    latencies.push(now_ms() - t0);
                }
                continue;
            }
            let data = if v.get("data").is_some() {
                &v["data"]
            } else {
                &v
            };
            if data["type"] != "geopend" {
                continue;
            }
            if let Some(id) = data["signalen"][0]["id"].as_str() {
                if let Some(t0) = sent.get(id) {
                    latencies.push(ts - t0);
                }
            }
        }
    };
    while i < count {
        let due = started + Duration::from_micros(i * 1_000_000 / rate);
        while Instant::now() < due {
            producer.poll(Duration::ZERO);
            drain(&consumer, &sent, &mut latencies, Duration::ZERO);
            std::thread::sleep(Duration::from_micros(200));
        }
        let id = format!("lat-{run}-{i}");
        let t = now_ms();
        let day = Day::of_millis(t).to_string();
        let event = json!({
            "specversion": "1.0", "id": id, "source": "urn:bench:latency", "type": "nl.vroeg.signaal.betalingsachterstand.v1",
            "time": format_rfc3339(t), "data": {
                "signaalpartner": "Zorg", "referentie": id, "status": "open", "bedrag_cent": 50_000,
                "ontstaansdatum": day.clone(), "signaaldatum": day, "crisissignaal": false,
                "client": { "voorletters": "B.", "achternaam": "Bench", "geboortedatum": "1980-01-01",
                    "straatnaam": "Meetlaan", "postcode": format!("{}AB", 1000 + (i / 20_000) % 9000),
                    "huisnummer": 1 + (i % 20_000) as u32, "huisnummertoevoeging": format!("L{run}"), "plaatsnaam": "Meetstad" }
            }
        });
        let payload = event.to_string();
        let record: BaseRecord<'_, str, str> = BaseRecord::to(signals)
            .payload(payload.as_str())
            .key("urn:bench:latency")
            .timestamp(t);
        if producer.send(record).is_ok() {
            sent.insert(id, t);
            i += 1;
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while (latencies.len() as u64) < count && Instant::now() < deadline {
        drain(&consumer, &sent, &mut latencies, Duration::from_millis(100));
    }
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(-1)
    };
    println!(
        "{} at {rate}/s: {} of {count} matched; p50 {} ms, p99 {} ms, max {} ms",
        if raw {
            "kafka round trip (baseline)"
        } else {
            "signal-to-alert latency"
        },
        latencies.len(),
        pct(0.50),
        pct(0.99),
        latencies.last().copied().unwrap_or(-1)
    );
}
