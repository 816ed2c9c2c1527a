//! The bare sled limit for Vroeg's write pattern, to compare `vroeg replay`
//! against: for each of N records, read one household key and write it back
//! with a value of the typical encoded size, in batches applied with one
//! `apply_batch` and one flush each, as the engine does.
//!
//! `cargo run --release -p vroeg-store --example sled_bare -- 1000000 400 5000 [READ] [CACHE_MB] [FLUSH]`
//! (records, value bytes, batch size; READ 1 reads each key first, CACHE_MB
//! the page cache, default 256; FLUSH 1 flushes every batch).

use std::time::Instant;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers"))
        .collect();
    let n = *args.first().unwrap_or(&1_000_000);
    let value_len = *args.get(1).unwrap_or(&400);
    let batch_size = *args.get(2).unwrap_or(&5000);
    let read = *args.get(3).unwrap_or(&1) == 1;
    let cache_mb = *args.get(4).unwrap_or(&256) as u64;
    let flush = *args.get(5).unwrap_or(&1) == 1;
    let dir = tempfile::tempdir().expect("temp dir");
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(cache_mb * 1024 * 1024)
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
            if read {
                let _ = tree.get(key.as_bytes()).expect("get");
            }
            batch.insert(key.as_bytes(), value.clone());
        }
        tree.apply_batch(batch).expect("apply");
        if flush {
            db.flush().expect("flush");
        }
        i += batch_size;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "sled bare: {n} {} of {value_len} bytes, batches of {batch_size}, cache {cache_mb} MB, flush {flush}: {secs:.2}s, {:.0}/s",
        if read { "read+write pairs" } else { "writes" },
        n as f64 / secs
    );
}
