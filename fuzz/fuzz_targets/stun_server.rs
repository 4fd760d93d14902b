//! Feeds arbitrary datagrams (RFC 8489, RFC 3489 or noise) to the STUN Binding server.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| holepunch_fuzz::server_checks::check_server(data));
