//! The bare sled limit for Vroeg's write pattern, to compare `vroeg replay`
//! against: for each of N records, read one household key and write it back
//! with a value of the typical encoded size, in batches applied with one
//! `apply_batch` and one flush each, as the engine does.
//!
//! `cargo run --release -p vroeg-store --example sled_bare -- 1000000 400 5000`
//! (records, value bytes, batch size).

use std::time::Instant;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers"))
        .collect();
    let n = *args.first().unwrap_or(&1_000_000);
    let value_len = *args.get(1).unwrap_or(&400);
    let batch_size = *args.get(2).unwrap_or(&5000);
    let dir = tempfile::tempdir().expect("temp dir");
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(256 * 1024 * 1024)
        .mode(sled::Mode::HighThroughput)
        .open()
        .expect("sled opens");
    let tree = db.open_tree("bare").expect("tree");
    let value = vec![7u8; value_len];
    let started = Instant::now();
    let mut i = 0usize;
    while i < n {
        let mut batch = sled::Batch::default();
        for j in i..(i + batch_size).min(n) {
            // Spread keys like household pseudonyms (a multiplicative hash).
            let key = format!(
                "h{:032x}",
                (j as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
            );
            let _ = tree.get(key.as_bytes()).expect("get");
            batch.insert(key.as_bytes(), value.clone());
        }
        tree.apply_batch(batch).expect("apply");
        db.flush().expect("flush");
        i += batch_size;
    }
    let secs = started.elapsed().as_secs_f64();
    println!("sled bare: {n} read+write pairs of {value_len} bytes in batches of {batch_size}: {secs:.2}s, {:.0}/s", n as f64 / secs);
}
