//! Parses arbitrary datagrams as NAT-PMP responses and requests; whatever parses re-encodes to
//! the same value.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| holepunch_fuzz::portmap_checks::check_natpmp(data));
