//! The I/O vocabulary every holepunch state machine speaks (design.md §4).
//!
//! A state machine is pumped with the same verbs everywhere:
//!
//! - inputs, safe in any order: `handle_datagram(now, Datagram) -> Received`,
//!   `handle_timeout(now)`, and `handle_io(now, IoToken, IoResult)` for the answer to an
//!   [`Action`];
//! - outputs, drained after any input: `poll_transmit(now, out) -> Option<Transmit>`,
//!   `poll_action() -> Option<Action>`, `poll_event()`, and last `poll_deadline() ->
//!   Option<Deadline>` (with `poll_timeout() -> Option<Instant>`, its bare instant).
//!
//! The types here are plain values: no heap data, no lifetimes beyond the caller's buffers.
//! Output calls never change when a machine next needs the clock; while any output is
//! pending, its deadline is the latest `now` it was given ([`TimerReason::OutputPending`]),
//! so a loop that sleeps until the deadline never sleeps on queued work.

use core::net::{IpAddr, SocketAddr};

use crate::time::Instant;

/// A datagram that arrived on one of the driver's sockets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Datagram<'a> {
    /// The local socket it arrived on (its bound address).
    pub local: SocketAddr,
    /// The sender.
    pub from: SocketAddr,
    /// Its bytes.
    pub payload: &'a [u8],
}

impl<'a> Datagram<'a> {
    /// A datagram that arrived on `local` from `from`.
    pub fn new(local: SocketAddr, from: SocketAddr, payload: &'a [u8]) -> Self {
        Datagram {
            local,
            from,
            payload,
        }
    }
}

/// What a state machine did with one datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received<'a> {
    /// Protocol traffic the state machine handled (or dropped after checking it).
    Consumed,
    /// Application data: deliver `payload`, which came from `from`.
    AppData {
        /// The sender.
        from: SocketAddr,
        /// The datagram's bytes, unchanged.
        payload: &'a [u8],
    },
    /// STUN that belongs to no transaction or agent here: leave it to the caller.
    Unrecognized,
}

impl<'a> Received<'a> {
    /// What a state machine answers for a datagram that is not its own: application data when
    /// it is not STUN by its first byte (RFC 7983), else STUN left to the caller.
    #[inline]
    pub fn unclaimed(d: Datagram<'a>) -> Self {
        if crate::demux::classify(d.payload) == crate::demux::Kind::Stun {
            Received::Unrecognized
        } else {
            Received::AppData {
                from: d.from,
                payload: d.payload,
            }
        }
    }
}

/// A datagram the core wants sent: its bytes are `out[..len]` of the buffer passed to the
/// `poll_transmit` call that returned it.
///
/// Non-exhaustive so that a relay hop (TURN's Send indication or ChannelData, named by the
/// relay's address) can join without breaking drivers that read the fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Transmit {
    /// The local socket to send from, when the state machine owns several (an RFC 5780 server
    /// answers from its alternate address); `None` means the one socket it is pumped with.
    pub from: Option<SocketAddr>,
    /// Destination.
    pub to: SocketAddr,
    /// Length of the datagram at the start of the caller's buffer.
    pub len: usize,
}

impl Transmit {
    /// `out[..len]`, to be sent from `from` (or the one socket) to `to`.
    pub fn new(from: Option<SocketAddr>, to: SocketAddr, len: usize) -> Self {
        Transmit { from, to, len }
    }
}

/// Names one [`Action`] so its answer can be matched to it: the driver hands it back with
/// the [`IoResult`], and a machine ignores an answer whose token it no longer expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IoToken(pub u32);

/// Something only the driver can do for a state machine (the core never opens sockets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Open `count` extra UDP sockets on local address `ip` (ports chosen by the system) and
    /// report them with [`IoResult::SocketsBound`]; fewer is fine (it lowers the odds).
    BindSockets {
        /// Hand back with the answer.
        token: IoToken,
        /// How many.
        count: u16,
        /// The IP to bind on: the base of the host candidate whose mappings the NAT varies, so
        /// the new sockets leave through the same NAT (on a multi-homed host, the same
        /// interface).
        ip: IpAddr,
    },
}

impl Action {
    /// The token the answer must carry.
    pub fn token(&self) -> IoToken {
        match self {
            Action::BindSockets { token, .. } => *token,
        }
    }
}

/// The driver's answer to an [`Action`], passed to `handle_io` with the action's token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IoResult<'a> {
    /// The sockets opened for [`Action::BindSockets`], by local address, in order.
    SocketsBound(&'a [SocketAddr]),
}

/// When a state machine next needs `handle_timeout` (or its outputs drained), and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline {
    /// The instant; at or before the latest `now` given when something is due already.
    pub at: Instant,
    /// What is due then.
    pub reason: TimerReason,
}

impl Deadline {
    /// A deadline at `at` for `reason`.
    pub fn new(at: Instant, reason: TimerReason) -> Self {
        Deadline { at, reason }
    }

    /// The earlier of two optional deadlines (the first on a tie).
    pub fn earliest(a: Option<Deadline>, b: Option<Deadline>) -> Option<Deadline> {
        match (a, b) {
            (Some(a), Some(b)) => Some(if b.at < a.at { b } else { a }),
            (a, None) => a,
            (None, b) => b,
        }
    }
}

/// Why a [`Deadline`] is due (for logs and tests; drivers treat them alike).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimerReason {
    /// Output (a transmit, event or action) waits to be polled.
    OutputPending,
    /// The run has not started: the first `handle_timeout` starts it.
    Start,
    /// A request's first send or retransmission.
    Retransmit,
    /// A transaction with no sends left gives up.
    TransactionTimeout,
    /// Pacing (Ta) lets the next connectivity check go.
    Pacing,
    /// Regular nomination's wait for better pairs ends.
    Nomination,
    /// The wait before a working relayed pair is used ends.
    RelayHold,
    /// Hard-NAT punching: its decision or its next probe.
    Punch,
    /// A consent check is due, or consent expires.
    Consent,
    /// A failed pair better than the selected one is tried again.
    Upgrade,
    /// The whole run's time limit.
    RunLimit,
    /// A TURN allocation's request, refresh or keepalive is due, or the choice of the nearest
    /// relay closes.
    Relay,
    /// A measured idle wait ends (a mapping-lifetime trial probes its mapping).
    IdleProbe,
    /// Nothing went to a server for a while: a keepalive holds the NAT mapping.
    Keepalive,
    /// A netcheck run inside the composed agent: a probe's (re)send or timeout, or the run's
    /// time limit.
    Netcheck,
    /// An allocation, permission, channel or port mapping is refreshed before it expires.
    Refresh,
}
