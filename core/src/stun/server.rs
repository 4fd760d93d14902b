//! STUN Binding server (placeholder while the codec lands).
