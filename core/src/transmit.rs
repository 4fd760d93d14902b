//! What a state machine asks its driver to send: [`Transmit`], kept at this path for
//! existing users; it lives in [`crate::io`] with the rest of the vocabulary.

pub use crate::io::Transmit;
