//! Parses arbitrary text as offer key lines and fingerprints; whatever parses must format and
//! parse back to the same value.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| holepunch_fuzz::key_checks::check_key_line(data));
