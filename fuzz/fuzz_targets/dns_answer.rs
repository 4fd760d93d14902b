//! Parses arbitrary datagrams as the resolver's answer to the RFC 7050 `ipv4only.arpa` query and
//! extracts NAT64 prefixes from them.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| holepunch_fuzz::nat64_checks::check_dns_answer(data));
