//! What the composed agent reports: its events, its send errors and its counters.

use alloc::boxed::Box;

use crate::ice::agent::IceEvent;
use crate::ice::relay::RelayEvent;
use crate::netcheck::Report;
use crate::turn::ClientError;

/// Something the application may act on or report.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The ICE session's news: candidates to signal, checking, the path, consent, keepalives.
    Ice(IceEvent),
    /// A TURN allocation was chosen, released for a nearer one, or failed.
    Relay(RelayEvent),
    /// A netcheck run ([`Agent::start_netcheck`](super::Agent::start_netcheck)) finished: what
    /// it found about this host's NAT. The punch planner already uses its mapping behaviour.
    NatReport(Box<Report>),
}

/// Why [`Agent::send`](super::Agent::send) wrote nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// No path is selected (yet, or consent was lost).
    #[error("no path to the peer")]
    NotConnected,
    /// The payload's first byte is 0–3: the peer would take it for STUN (RFC 7983).
    #[error("a datagram starting with a byte 0-3 would be taken for STUN (RFC 7983)")]
    LooksLikeStun,
    /// `out` is shorter than the datagram.
    #[error("the output buffer is too small")]
    BufferTooSmall,
    /// The relay could not wrap it (too large, or the allocation is gone).
    #[error("the relay cannot carry it: {0}")]
    Relay(ClientError),
}

/// Counters of work dropped or lost, so that nothing is lost silently.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AgentStats {
    /// Answers to the peer's checks dropped (the peer's retransmission asks again).
    pub responses_dropped: u64,
    /// Events dropped, oldest first, because nobody polled them.
    pub events_dropped: u64,
    /// Datagrams of the ICE session from the relayed candidate that the relay could not wrap.
    pub relay_wraps_failed: u64,
    /// Netcheck reports replaced by a newer run's before they were polled.
    pub netcheck_reports_dropped: u64,
}
