//! How fast the read model applies case records, without Kafka: the case
//! records of a `vroeg state dump`, in batches of 2000 as the follower
//! applies them, first as new cases and then once more as updates.
//!
//! `cargo run --release -p vroeg-readmodel --example apply_rate -- DUMP DIR`

use std::time::Instant;

use vroeg_readmodel::{Incoming, ReadModel};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dump = std::fs::read_to_string(&args[0]).expect("read the dump");
    let model = ReadModel::open(std::path::Path::new(&args[1])).expect("open");
    let records: Vec<Incoming> = dump
        .lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            let id = v["case"].as_str()?.to_owned();
            Some((id, serde_json::to_vec(&v["record"]).unwrap()))
        })
        .enumerate()
        .map(|(i, (id, value))| Incoming {
            partition: 0,
            offset: i as i64,
            key: id.into_bytes(),
            value: Some(value),
        })
        .collect();
    let bytes: usize = records
        .iter()
        .map(|r| r.value.as_ref().unwrap().len())
        .sum();
    for pass in ["new", "update"] {
        let started = Instant::now();
        for chunk in records.chunks(2000) {
            model.apply(chunk).expect("apply");
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{pass}: {} records ({} bytes each on average) in {secs:.2}s: {:.0} records/s",
            records.len(),
            bytes / records.len().max(1),
            records.len() as f64 / secs
        );
    }
}
