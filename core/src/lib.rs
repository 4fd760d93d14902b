//! holepunch-core: the sans-IO heart of holepunch.
//!
//! Two machines behind NATs want to talk over UDP. Each asks STUN servers what its NAT made of
//! its sockets (server-reflexive candidates), may allocate a relay on a TURN server (a relayed
//! candidate) or a mapping from its gateway (port-mapped), and tells the other side, over any
//! channel the application already has ("signalling"), its candidates and its ICE credentials.
//! Then both send authenticated STUN checks at each other's candidates at once: the outgoing
//! checks open each NAT for the other's, and the first pair to answer both ways is the path
//! (RFC 8445). When both NATs map per destination, the hard-NAT punch planner
//! ([`punch`]) probes many ports; when nothing direct works, the relay carries the data. Once
//! connected, consent checks (RFC 7675) keep the path alive and prove the peer still wants it.
//!
//! This crate holds all of that as state machines that never touch the world: packets and
//! timestamps go in; transmits, timers and events come out. Nothing here opens a socket, reads
//! a clock, spawns a thread or allocates per packet. Drivers (`holepunch-std`, `holepunch-mio`,
//! `holepunch-tokio`) own the sockets and the clock and pump the state machines through the
//! same public API any user would call.
//!
//! # Where to start
//!
//! [`Agent`] is the one object a connection needs: it composes the ICE session
//! ([`ice::agent`]), the TURN relays ([`ice::relay`], [`turn`]) and a [`netcheck`] run whose
//! report feeds the punch planner ([`Agent::start_netcheck`]). Every machine here speaks the same verbs ([`io`]): inputs
//! (`handle_datagram`, `handle_timeout`, `handle_io`) are safe in any order; after any input,
//! drain the outputs (`poll_transmit`, `poll_action`, `poll_event`), then sleep until
//! `poll_timeout`, which is the latest input's time while output waits. Time is [`Instant`],
//! microseconds from an epoch the driver picks.
//!
//! The whole loop, for one UDP socket (signalling left out: send the `LocalCandidate` events
//! and [`Agent::local_credentials`] to the peer, and feed theirs to
//! [`Agent::add_remote_candidate`] and [`Agent::set_remote_credentials`]):
//!
//! ```no_run
//! use std::net::UdpSocket;
//! use holepunch_core::ice::agent::{AgentConfig, IceEvent};
//! use holepunch_core::{Agent, Datagram, Event, Instant, Received};
//!
//! let socket = UdpSocket::bind("0.0.0.0:4000").unwrap();
//! let local = socket.local_addr().unwrap();
//! let start = std::time::Instant::now();
//! let clock = || Instant::from_micros(start.elapsed().as_micros() as u64);
//! let mut agent = Agent::new(AgentConfig::rfc(true), 42);
//! agent.add_host_candidate(clock(), local).unwrap();
//! agent.gather(clock());
//! let (mut buf, mut out) = ([0u8; 2048], [0u8; 1500]);
//! loop {
//!     while let Some(t) = agent.poll_transmit(clock(), &mut out) {
//!         let _ = socket.send_to(&out[..t.len], t.to); // lost is fine: the agent retries
//!     }
//!     while let Some(event) = agent.poll_event() {
//!         if let Event::Ice(IceEvent::Connected(path)) = event {
//!             let t = agent.send(clock(), b"hello", &mut out).unwrap();
//!             let _ = socket.send_to(&out[..t.len], t.to);
//!             println!("connected over {path:?}");
//!         } // Event::Ice(IceEvent::LocalCandidate(c)): signal `c` to the peer
//!     }
//!     let wait = agent.poll_timeout().map(|d| d.at.as_micros().saturating_sub(clock().as_micros()));
//!     let wait = std::time::Duration::from_micros(wait.unwrap_or(1_000_000).max(1));
//!     socket.set_read_timeout(Some(wait)).unwrap();
//!     if let Ok((n, from)) = socket.recv_from(&mut buf) {
//!         let d = Datagram::new(local, from, &buf[..n]);
//!         if let Received::AppData { from, payload } = agent.handle_datagram(clock(), d) {
//!             println!("{} bytes from {from}", payload.len()); // check is_authenticated_remote
//!         }
//!     }
//!     agent.handle_timeout(clock());
//! }
//! ```
//!
//! `core/examples/custom_loop.rs` is the same loop, runnable, for two agents on loopback.
//!
//! # The other machines
//!
//! - [`stun`]: messages (zero-copy view, builder into the caller's buffer), a client with RFC
//!   8489 retransmission, and the server behind `holepunch stun-server` (RFC 5780 included).
//! - [`netcheck`]: the prober that classifies the NAT's mapping and filtering (RFC 4787/5780),
//!   and measures how long it keeps an idle mapping.
//! - [`turn`]: the TURN client (RFC 8656) the agent allocates with, and the relay server.
//! - [`portmap`]: NAT-PMP, PCP and UPnP IGD clients; the driver runs them and hands the mapped
//!   address to [`Agent::add_port_mapping`].
//! - [`nat64`] and [`dns`]: RFC 6052 synthesis and RFC 7050 prefix discovery.
//! - [`demux`]: the RFC 7983 first-byte rules that let all of this share one socket.
//! - [`signal`]: the line protocol of `holepunch signal`.
//!
//! # Panics and errors
//!
//! Nothing in this crate panics on network input: a datagram that does not parse is
//! `Unrecognized` or a typed error, and changes no state. Tables are sized by configuration;
//! work that does not fit is counted (`stats()`), never silently lost.
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
