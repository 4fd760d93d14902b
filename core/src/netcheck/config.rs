//! What netcheck is asked to do, and the configurations it refuses.

#[allow(unused_imports)]
use super::*;

/// What to probe and how hard to try.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NetcheckConfig {
    /// STUN servers, in order of preference. The first of the pair's family is "A", the one
    /// the RFC 5780 tests run against (give an RFC 5780 server first); every server of a
    /// family with a local socket is sent Test I. Duplicates are ignored.
    pub servers: Vec<SocketAddr>,
    /// The local sockets the driver binds: two of one family (mapping socket first, then
    /// filtering socket) and at most one of the other family, in any order. Concrete
    /// addresses: "no NAT" is detected by comparing them with the mapped addresses.
    pub locals: Vec<SocketAddr>,
    /// Initial retransmission timeout of every request (200 ms).
    pub initial_rto: Duration,
    /// Rc: the most times a request is sent (4).
    pub max_sends: u32,
    /// Rm: after the last send, wait this many initial RTOs before giving up (4).
    pub last_wait_factor: u32,
    /// Pad requests to at least this many bytes (120) so amplification-bounded servers include
    /// OTHER-ADDRESS and RESPONSE-ORIGIN; at most [`Netcheck::MAX_PADDING`].
    pub pad_requests_to: usize,
    /// Hard cap on the whole run (5 s): requests still open then count as unanswered.
    pub timeout: Duration,
}

impl NetcheckConfig {
    /// The default profile for `servers` and `locals`.
    pub fn new(servers: Vec<SocketAddr>, locals: Vec<SocketAddr>) -> Self {
        NetcheckConfig {
            servers,
            locals,
            initial_rto: Duration::from_millis(200),
            max_sends: 4,
            last_wait_factor: 4,
            pad_requests_to: 120,
            timeout: Duration::from_secs(5),
        }
    }
}

/// A configuration netcheck cannot run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetcheckError {
    /// No STUN server of the pair's address family.
    #[error("no STUN server of the local sockets' address family")]
    NoServers,
    /// Netcheck needs two or three local sockets.
    #[error("{count} local sockets given; netcheck needs 2 (one family) or 3 (plus the other)")]
    LocalCount {
        /// How many were given.
        count: usize,
    },
    /// The locals are not two of one family plus at most one of the other.
    #[error("local sockets must be two of one address family plus at most one of the other")]
    MixedFamilies,
    /// The same local address was given twice.
    #[error("local socket {0} given twice")]
    DuplicateLocal(SocketAddr),
    /// `max_sends` or `initial_rto` is zero.
    #[error("max_sends and initial_rto must be non-zero")]
    InvalidRetransmission,
    /// `pad_requests_to` exceeds [`Netcheck::MAX_PADDING`].
    #[error("pad_requests_to {0} exceeds the maximum")]
    PaddingTooLarge(usize),
}
