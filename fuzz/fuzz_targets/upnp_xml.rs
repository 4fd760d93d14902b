//! Feeds arbitrary bytes to the UPnP IGD xml parser; see `holepunch_fuzz::upnp_checks::check_xml`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| holepunch_fuzz::upnp_checks::check_xml(data));
