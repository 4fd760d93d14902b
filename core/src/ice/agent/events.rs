//! What the agent reports: events, the selected path, errors and drop counters.

#[allow(unused_imports)]
use super::*;

/// Misuse of the agent's API (never caused by network input).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IceError {
    /// A candidate table or the check list is full.
    #[error("too many candidates (raise the agent's capacity)")]
    TooManyCandidates,
    /// Host candidates must be concrete addresses.
    #[error("candidate address {0} is unspecified")]
    Unspecified(SocketAddr),
}

/// Counters of work the agent had to drop because a queue was full (see
/// [`AgentConfig::max_pending_responses`] and [`AgentConfig::max_events`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AgentStats {
    /// Answers to the peer's checks dropped (the peer's retransmission asks again).
    pub responses_dropped: u64,
    /// Events dropped, oldest first, because nobody polled them.
    pub events_dropped: u64,
}

/// The selected path, as reported in events and by [`Agent::selected_path`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathInfo {
    /// The local socket (base) to send from.
    pub local: SocketAddr,
    /// The peer's address to send to.
    pub remote: SocketAddr,
    /// Kind of the local candidate.
    pub local_kind: CandidateKind,
    /// Kind of the remote candidate.
    pub remote_kind: CandidateKind,
    /// Whether the path goes through a relay.
    pub relayed: bool,
    /// Round-trip time measured by the last check on this pair.
    pub rtt: Duration,
}

/// What the agent tells the application.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IceEvent {
    /// A local candidate to signal to the peer (trickle).
    LocalCandidate(Candidate),
    /// No more local candidates will come: signal end-of-candidates.
    GatheringComplete,
    /// Connectivity checks started.
    Checking,
    /// The first path was selected.
    Connected(PathInfo),
    /// The selected path changed (upgrade, nomination change, or failover).
    PathChanged(PathInfo),
    /// The selected path lost consent and no other valid path was left.
    ConsentLost(PathInfo),
    /// Every pair failed after the peer's end-of-candidates: no path.
    Failed,
    /// Neither side's candidates showed how its NAT maps (one STUN server without RFC 5780 on
    /// each side) and ordinary checks had not connected after [`PunchConfig::blind_delay`]:
    /// hard-NAT punching started blind, with the halves this side cannot rule out.
    BlindPunching {
        /// Whether this side plays the hard half (many sockets towards the peer).
        hard: bool,
        /// Whether this side plays the easy half (probes over the peer's ports).
        easy: bool,
    },
    /// The interval of consent checks on the selected pair changed: both sides proposed a
    /// keepalive and this is the agreed one ([`AgentConfig::keepalive_interval`],
    /// [`Agent::set_remote_keepalive`]), or a proposal was withdrawn and this is
    /// [`AgentConfig::consent_interval`] again. Consent is lost after
    /// max([`AgentConfig::consent_timeout`], 3 × the interval) without an answer.
    KeepaliveInterval(Duration),
    /// A role conflict (487) switched our role.
    RoleChanged {
        /// Whether we are now controlling.
        controlling: bool,
    },
}
