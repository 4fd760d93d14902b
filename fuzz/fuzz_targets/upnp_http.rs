//! Feeds arbitrary bytes to the UPnP IGD http parser; see `holepunch_fuzz::upnp_checks::check_http`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| holepunch_fuzz::upnp_checks::check_http(data));
