//! Reads arbitrary text as an offer file; every accepted line writes and reads back equal.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| holepunch_fuzz::agent_checks::check_offer(data));
