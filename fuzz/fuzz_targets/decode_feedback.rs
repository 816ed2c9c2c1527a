//! The feedback decoder on arbitrary bytes: a value or a `DecodeError`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vroeg_core::feedback::decode_feedback;
use vroeg_core::signal::DecodeContext;

fuzz_target!(|data: &[u8]| {
    let _ = decode_feedback(data, &DecodeContext::at(1_790_000_000_000));
});
