//! Decodes arbitrary attribute values (input: big-endian type, then value), encodes what decodes,
//! and checks it decodes back equal and re-encodes byte-identically.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| holepunch_fuzz::checks::check_attribute_input(data));
