//! ICE (RFC 8445): candidates, credentials and the offer line format, with the agent built on them.

pub mod agent;
pub mod candidate;
pub mod checklist;
pub mod credentials;
pub mod key;
pub mod offer;
pub mod relay;
