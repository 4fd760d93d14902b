//! The sans-IO verbs with the datagram's parts as arguments, for tests written before every
//! machine took a [`Datagram`]: each helper is one `handle_datagram` call (and, for the STUN
//! server, the `poll_transmit` that follows it), so what the tests assert is unchanged.
#![allow(dead_code)]

use std::net::SocketAddr;

use holepunch_core::Instant;
use holepunch_core::io::{Datagram, Received, Transmit};

/// The local socket tests that pump a one-socket machine pretend it is bound to.
pub const LOCAL: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 200)),
    50_000,
);

/// A STUN client fed a datagram: whether it was a response to one of its transactions.
pub trait FeedStunClient {
    /// `handle_datagram` from `from` on [`LOCAL`]; `true` when consumed.
    fn feed(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) -> bool;
}

impl FeedStunClient for holepunch_core::stun::client::Client {
    fn feed(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) -> bool {
        self.handle_datagram(now, Datagram::new(LOCAL, from, bytes)) == Received::Consumed
    }
}

/// What the STUN server did with one datagram answered at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Send this response (its bytes are at the start of the caller's buffer).
    Respond(Transmit),
    /// Not STUN: the datagram belongs to someone else, or is noise.
    NotStun,
    /// STUN, but nothing to answer.
    Dropped,
}

/// A STUN server fed one datagram and drained at once.
pub trait Answer {
    /// `handle_datagram` then `poll_transmit`, both at `now`.
    fn answer(
        &mut self,
        now: Instant,
        local: SocketAddr,
        from: SocketAddr,
        payload: &[u8],
        out: &mut [u8],
    ) -> Outcome;
}

impl Answer for holepunch_core::stun::server::Server {
    fn answer(
        &mut self,
        now: Instant,
        local: SocketAddr,
        from: SocketAddr,
        payload: &[u8],
        out: &mut [u8],
    ) -> Outcome {
        match self.handle_datagram(now, Datagram::new(local, from, payload)) {
            Received::AppData { .. } => Outcome::NotStun,
            Received::Consumed => match self.poll_transmit(now, out) {
                Some(t) => Outcome::Respond(t),
                None => Outcome::Dropped,
            },
            _ => Outcome::Dropped,
        }
    }
}

/// Netcheck (or the lifetime probe) fed a datagram on one of its sockets.
pub trait FeedProber {
    /// `handle_datagram` on `local` from `from`; `true` when it was the prober's.
    fn feed(&mut self, now: Instant, local: SocketAddr, from: SocketAddr, bytes: &[u8]) -> bool;
}

impl FeedProber for holepunch_core::netcheck::Netcheck {
    fn feed(&mut self, now: Instant, local: SocketAddr, from: SocketAddr, bytes: &[u8]) -> bool {
        self.handle_datagram(now, Datagram::new(local, from, bytes)) == Received::Consumed
    }
}

impl FeedProber for holepunch_core::netcheck::LifetimeProbe {
    fn feed(&mut self, now: Instant, local: SocketAddr, from: SocketAddr, bytes: &[u8]) -> bool {
        self.handle_datagram(now, Datagram::new(local, from, bytes)) == Received::Consumed
    }
}

/// The port-mapping client fed a datagram.
pub trait FeedPortmap {
    /// `handle_datagram` from `from` on [`LOCAL`].
    fn feed(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), holepunch_core::portmap::client::PortmapError>;
}

impl FeedPortmap for holepunch_core::portmap::client::Client {
    fn feed(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), holepunch_core::portmap::client::PortmapError> {
        self.handle_datagram(now, Datagram::new(LOCAL, from, bytes))
    }
}

/// The TURN client fed bytes from its server.
pub trait FeedTurn {
    /// `handle_datagram` from `from` on [`LOCAL`].
    fn feed<'a>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &'a [u8],
    ) -> holepunch_core::turn::Received<'a>;
}

impl FeedTurn for holepunch_core::turn::Client {
    fn feed<'a>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &'a [u8],
    ) -> holepunch_core::turn::Received<'a> {
        self.handle_datagram(now, Datagram::new(LOCAL, from, bytes))
    }
}
