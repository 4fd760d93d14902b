//! Feeds arbitrary bytes to the UPnP IGD ssdp parser; see `holepunch_fuzz::upnp_checks::check_ssdp`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| holepunch_fuzz::upnp_checks::check_ssdp(data));
