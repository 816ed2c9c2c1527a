//! Fill a changelog topic with `HOUSEHOLDS` households for the restore
//! benchmark (BENCHMARKS.md), as the state role would have written them.
//!
//! The households are real: every household and case record of a state
//! directory made by `vroeg replay`, copied under new household keys (same
//! length, so the encoded values keep their shape) until there are
//! `HOUSEHOLDS`. Each copy goes to the changelog partition of its new key.
//!
//! `cargo run --release -p vroeg-kafka --example fill_changelog -- BROKERS TOPIC PARTITIONS HOUSEHOLDS STATE_DIR`

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use vroeg_core::HouseholdKey;
use vroeg_store::{encode_case, encode_state, stored_body, stored_value, Store};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [brokers, topic, partitions, households, state] = &args[..] else {
        eprintln!("usage: fill_changelog BROKERS TOPIC PARTITIONS HOUSEHOLDS STATE_DIR");
        std::process::exit(2);
    };
    let partitions: u32 = partitions.parse().expect("PARTITIONS is a number");
    let households: u64 = households.parse().expect("HOUSEHOLDS is a number");
    let store = Store::open(std::path::Path::new(state), false)
        .expect("the state directory opens")
        .spanning();
    // Every household with its case records, encoded (the bodies, before
    // compression: the keys in them are swapped below).
    let mut cases: std::collections::HashMap<String, Vec<(String, Vec<u8>)>> = Default::default();
    for record in store.cases() {
        let record = record.expect("a case record");
        let value = stored_body(&encode_case(&record).expect("a case encodes")).expect("a body");
        cases
            .entry(record.huishouden.clone())
            .or_default()
            .push((record.id.clone(), value));
    }
    let mut samples = Vec::new();
    for item in store.households() {
        let (key, state) = item.expect("a household");
        let own = cases.remove(key.as_str()).unwrap_or_default();
        let body = stored_body(&encode_state(&state).expect("a state encodes")).expect("a body");
        samples.push((key, body, own));
    }
    assert!(!samples.is_empty(), "{state} holds no households");
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "500000")
        .set("compression.type", "lz4")
        .create()
        .expect("a producer");
    let started = Instant::now();
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut send = |partition: i32, key: Vec<u8>, value: Vec<u8>| {
        records += 1;
        bytes += (key.len() + value.len()) as u64;
        let mut record = BaseRecord::<[u8], [u8]>::to(topic)
            .partition(partition)
            .key(key.as_slice())
            .payload(value.as_slice());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(20));
                }
            }
        }
    };
    for i in 0..households {
        let (old, value, own) = &samples[(i as usize) % samples.len()];
        // A new key of the same length: the value keeps its encoding.
        let new = HouseholdKey(
            format!("{:016x}{:016x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15), i).into(),
        );
        let swap = |bytes: &[u8]| -> Vec<u8> {
            let (from, to) = (old.0.as_bytes(), new.0.as_bytes());
            let mut out = bytes.to_vec();
            let mut at = 0;
            while let Some(pos) = out[at..].windows(from.len()).position(|w| w == from) {
                out[at + pos..at + pos + from.len()].copy_from_slice(to);
                at += pos + from.len();
            }
            out
        };
        let partition = new.partition(partitions) as i32;
        let mut key = vec![b'h'];
        key.extend_from_slice(new.0.as_bytes());
        send(partition, key, stored_value(&swap(value)));
        for (id, case) in own {
            let mut key = vec![b'c'];
            key.extend_from_slice(&swap(id.as_bytes()));
            send(partition, key, stored_value(&swap(case)));
        }
    }
    producer.flush(Duration::from_secs(300)).expect("delivered");
    println!(
        "changelog {topic}: {households} households ({} distinct samples), {records} records, {} MB, written in {:.1} s",
        samples.len(),
        bytes / 1_000_000,
        started.elapsed().as_secs_f64()
    );
}
