//! Drives the PCP/NAT-PMP client with an arbitrary script of gateway datagrams and clock steps.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| holepunch_fuzz::portmap_checks::check_client(data));
