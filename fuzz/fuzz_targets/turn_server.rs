//! Feeds arbitrary bytes to `holepunch_fuzz::turn_checks::check_server`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| holepunch_fuzz::turn_checks::check_server(data));
