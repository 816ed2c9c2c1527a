//! The signal decoder on arbitrary bytes, in structured and binary mode:
//! it must return a value or a `DecodeError`, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vroeg_core::signal::{decode_binary, decode_structured, DecodeContext};

fuzz_target!(|data: &[u8]| {
    let ctx = DecodeContext::at(1_790_000_000_000);
    let _ = decode_structured(data, &ctx);
    // Binary mode: the first bytes become a few ce_* headers, the rest the body.
    let split = data.first().map_or(0, |&b| (b as usize).min(data.len()));
    let (head, body) = data.split_at(split);
    let mut parts = head.split(|&b| b == b'\n');
    let headers: Vec<(&str, &[u8])> = ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time"]
        .into_iter()
        .zip(parts.by_ref())
        .collect();
    let _ = decode_binary(&headers, body, &ctx);
});
