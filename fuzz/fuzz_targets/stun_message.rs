//! Parses arbitrary datagrams as STUN, then walks, decodes, verifies and re-encodes them.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| holepunch_fuzz::checks::check_message(data));
