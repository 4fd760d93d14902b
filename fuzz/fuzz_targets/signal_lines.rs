//! Cuts an arbitrary byte stream into signal-protocol lines and parses each as a request and as
//! a server notice; bounded lines and buffers, and every line writes and reads back the same.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| holepunch_fuzz::signal_checks::check_signal(data));
