//! The limit for `vroeg run`: plain rdkafka consumption of a topic, no
//! processing. Reads `count` messages from the start and reports the rate.
//!
//! `cargo run --release -p vroeg-kafka --example bare_consume -- BROKERS TOPIC COUNT [read_committed]`
//!
//! With `read_committed`, only committed transactions are read, as Vroeg's
//! own consumers read (the default reads everything).

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (brokers, topic, count): (&str, &str, u64) = (
        &args[0],
        &args[1],
        args[2].parse().expect("COUNT is a number"),
    );
    let group = format!("bare-consume-{}", std::process::id());
    let isolation = args.get(3).map_or("read_uncommitted", String::as_str);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("isolation.level", isolation)
        .set("bootstrap.servers", brokers)
        .set("group.id", &group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut n = 0u64;
    let mut bytes = 0usize;
    let mut started = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    while n < count && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            started.get_or_insert_with(Instant::now);
            bytes += m.payload().map(|p| p.len()).unwrap_or(0);
            n += 1;
        }
    }
    let secs = started.map(|s| s.elapsed().as_secs_f64()).unwrap_or(0.0);
    println!(
        "bare consume ({isolation}): {n} messages ({:.0} MB) in {secs:.2}s: {:.0} messages/s",
        bytes as f64 / 1e6,
        n as f64 / secs
    );
}
