//! Shared checking logic for the holepunch fuzz targets; `core/tests/fuzz_corpus.rs` includes
//! `checks.rs` directly so a plain `cargo test` replays the corpus through the same code.

pub mod checks;
pub mod turn_checks;
