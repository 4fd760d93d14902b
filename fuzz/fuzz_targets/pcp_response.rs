//! Parses arbitrary datagrams as PCP responses and MAP requests; whatever parses re-encodes to
//! the same value.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| holepunch_fuzz::portmap_checks::check_pcp(data));
