//! Parses arbitrary text as RFC 8839 candidate lines and offer lines; whatever parses must
//! format and parse back to the same value.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| holepunch_fuzz::checks::check_ice_candidate(data));
