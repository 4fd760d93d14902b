//! Feeds arbitrary bytes to `holepunch_fuzz::turn_checks::check_channel`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| holepunch_fuzz::turn_checks::check_channel(data));
