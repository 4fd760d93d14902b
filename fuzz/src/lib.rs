//! Shared checking logic for the holepunch fuzz targets; `core/tests/fuzz_corpus.rs` includes
//! `checks.rs` directly so a plain `cargo test` replays the corpus through the same code.

pub mod agent_checks;
pub mod checks;
pub mod key_checks;
pub mod nat64_checks;
pub mod portmap_checks;
pub mod server_checks;
pub mod signal_checks;
pub mod turn_checks;
pub mod upnp_checks;
