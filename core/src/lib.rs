//! holepunch-core: the sans-IO heart of holepunch.
//!
//! Packets and timestamps go in; transmits, timers and events come out. Nothing here opens a
//! socket, reads a clock, spawns a thread or allocates per packet. Drivers (`holepunch-std`,
//! `holepunch-mio`, `holepunch-tokio`) own the sockets and the clock and pump these state machines
//! through the same public API any user would call.
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod agent;
pub mod demux;
pub mod dns;
pub mod ice;
pub mod io;
pub mod nat64;
pub mod netcheck;
pub mod portmap;
pub mod punch;
pub mod rng;
pub mod signal;
pub mod stun;
pub mod time;
pub mod transmit;
pub mod turn;

pub use agent::{Agent, Event};
pub use io::{Action, Datagram, Deadline, IoResult, IoToken, Received, TimerReason, Transmit};
pub use time::{Duration, Instant};
