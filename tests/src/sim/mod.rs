//! The simulated internet: NAT models, a routed network in virtual time, and scenarios that run
//! core state machines in it exactly as a driver would.

pub mod matrix;
pub mod nat;
pub mod netcheck;
pub mod network;
pub mod pair;
pub mod population;
pub mod profile;
pub mod relay;
