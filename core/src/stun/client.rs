//! STUN client transactions (placeholder while the codec lands).
