//! Drives an ICE agent with a script of offer lines, datagrams, clock steps and signed or
//! forged checks and answers; no panic, and no path selected before an authenticated datagram.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| holepunch_fuzz::agent_checks::check_agent(data));
