//! The TURN client's public vocabulary: its configuration, errors, events, what a datagram
//! from the server was, the allocation's lifecycle and the drop counters.

use alloc::string::String;
use core::net::{IpAddr, SocketAddr};

use crate::stun::EncodeError;
use crate::stun::client::TransactionError;
use crate::time::Duration;
use crate::turn::channel::ChannelNumber;
use crate::turn::{DEFAULT_LIFETIME_SECS, Transport};

/// How the client reaches its server and who it is.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The TURN server's address.
    pub server: SocketAddr,
    /// The transport to the server; the driver owns the socket or stream.
    pub transport: Transport,
    /// Long-term credential username (for REST credentials, `EXPIRY:USER`).
    pub username: String,
    /// Long-term credential password.
    pub password: String,
    /// LIFETIME to ask for, in seconds (the server may grant less).
    pub lifetime_secs: u32,
    /// How many peers (permission + channel each) the allocation can hold.
    pub max_peers: usize,
    /// SOFTWARE sent in every request. It also makes the first Allocate large enough that a
    /// server bounding unauthenticated answers by the request's size can send its 401.
    pub software: Option<&'static str>,
    /// Over TLS, the name the server's certificate must be valid for: the host of the TURN URL
    /// (a DNS name, or an IP literal matched against an IP SAN). `None`: the server's IP
    /// address. Unused by this state machine; the driver that owns the stream verifies it.
    pub tls_name: Option<String>,
    /// Longest silence towards the server, over UDP, before a Binding indication keeps the NAT
    /// mapping (and so the allocation) alive; `None`: no keepalives. Anything sent counts:
    /// requests, ChannelData, Send indications. Over TCP and TLS the connection carries the
    /// allocation and NATs keep idle TCP for hours (RFC 5382: at least 2 h 4 min), so none
    /// are sent.
    pub keepalive: Option<Duration>,
    /// Events held for the application; when full, the oldest is dropped and counted
    /// ([`ClientStats::events_dropped`]).
    pub max_events: usize,
}

impl ClientConfig {
    /// A configuration with RFC 8656 defaults for `server` and the given credentials.
    pub fn new(server: SocketAddr, transport: Transport, username: &str, password: &str) -> Self {
        ClientConfig {
            server,
            transport,
            username: username.into(),
            password: password.into(),
            lifetime_secs: DEFAULT_LIFETIME_SECS,
            max_peers: 16,
            software: Some(SOFTWARE),
            tls_name: None,
            keepalive: Some(KEEPALIVE),
            max_events: MAX_QUEUED_EVENTS,
        }
    }
}

/// Why a call on the client could not be carried out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// There is no allocation (yet, or any more).
    #[error("no allocation")]
    NotAllocated,
    /// `allocate` was called twice.
    #[error("already allocating or allocated")]
    AlreadyStarted,
    /// The peer table is full (`max_peers`).
    #[error("peer table full")]
    TooManyPeers,
    /// `send_to` to a peer that was never added.
    #[error("no permission for that peer")]
    NoPermission,
    /// Too many requests in flight.
    #[error("too many transactions in flight")]
    Busy,
    /// The output buffer is too small or the payload too large.
    #[error("message does not fit: {0}")]
    Encode(#[from] EncodeError),
    /// ChannelData could not be written.
    #[error(transparent)]
    Channel(#[from] crate::turn::channel::ChannelError),
}

/// Why an allocation, permission or channel failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TurnError {
    /// No response after all retransmissions.
    #[error("timed out")]
    TimedOut,
    /// Credentials missing or refused.
    #[error("unauthorized")]
    Unauthorized,
    /// The server answered with this error code (e.g. 403, 437, 486, 508).
    #[error("rejected with error {code}")]
    Rejected {
        /// The ERROR-CODE.
        code: u16,
    },
    /// Too many 401/438 retries or redirects.
    #[error("too many authentication retries")]
    TooManyRetries,
    /// A success response without what its method requires (XOR-RELAYED-ADDRESS).
    #[error("malformed response")]
    MalformedResponse,
    /// The allocation's lifetime ran out before a Refresh succeeded.
    #[error("allocation expired")]
    Expired,
}

impl From<TransactionError> for TurnError {
    fn from(e: TransactionError) -> Self {
        match e {
            TransactionError::TimedOut => TurnError::TimedOut,
            TransactionError::Rejected { code } => TurnError::Rejected { code },
            TransactionError::Unauthorized => TurnError::Unauthorized,
            TransactionError::TooManyRetries => TurnError::TooManyRetries,
            _ => TurnError::MalformedResponse,
        }
    }
}

/// What happened, for the application (no heap data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The allocation exists: peers reach us at `relayed`.
    Allocated {
        /// The relayed transport address (XOR-RELAYED-ADDRESS).
        relayed: SocketAddr,
        /// Our address as the server sees it (XOR-MAPPED-ADDRESS), if sent.
        mapped: Option<SocketAddr>,
        /// The lifetime the server granted.
        lifetime: Duration,
        /// Round-trip time of the final Allocate exchange (for choosing the nearest server).
        rtt: Duration,
    },
    /// A Refresh extended the allocation.
    Refreshed {
        /// The lifetime the server granted.
        lifetime: Duration,
    },
    /// A permission for `peer` is installed (or refreshed).
    PermissionCreated {
        /// The peer's IP address.
        peer: IpAddr,
    },
    /// A channel to `peer` is bound (or refreshed): data now travels as ChannelData.
    ChannelBound {
        /// The peer.
        peer: SocketAddr,
        /// Its channel.
        channel: ChannelNumber,
    },
    /// A permission or channel request for `peer` failed; data to it falls back to Send
    /// indications (channel) or is dropped by the server (permission).
    PeerFailed {
        /// The peer.
        peer: SocketAddr,
        /// Why.
        error: TurnError,
    },
    /// The allocation could not be made, or was lost; the client is finished.
    Failed {
        /// Why.
        error: TurnError,
    },
    /// `close` finished: the allocation is released (or was never made).
    Deallocated,
}

/// What a datagram from the server was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received<'a> {
    /// A TURN response or something the client handled or dropped.
    Consumed,
    /// Application data a peer sent through the relay (ChannelData or a Data indication).
    Data {
        /// The peer that sent it.
        peer: SocketAddr,
        /// The data, borrowed from the datagram.
        payload: &'a [u8],
    },
    /// Not TURN, or not from our server: for the caller to handle.
    Unrecognized,
}

/// The allocation's lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// `allocate` not called yet.
    Idle,
    /// Allocate in flight.
    Allocating,
    /// Relayed address in use.
    Allocated,
    /// Deallocation in flight.
    Closing,
    /// Finished: deallocated or failed.
    Closed,
}

/// SOFTWARE our requests carry. Its length is deliberate: servers that never answer an
/// unauthenticated request with more bytes than it had (ours) need room for REALM and NONCE
/// in the 401, and SOFTWARE is the one attribute every server accepts (PADDING is
/// comprehension-required). 48 bytes leave room for a 24-byte realm and a 24-byte nonce.
pub const SOFTWARE: &str = "holepunch TURN client (RFC 8656 relay fallback)";

/// The default [`ClientConfig::keepalive`]: RFC 8445 §11's floor for ICE keepalives, well
/// inside the shortest UDP mapping timeouts seen in the wild (about 30 s).
pub const KEEPALIVE: Duration = Duration::from_secs(15);

/// The default [`ClientConfig::max_events`].
pub const MAX_QUEUED_EVENTS: usize = 256;

/// Counters of work the client dropped rather than queue without bound.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStats {
    /// Events dropped, oldest first, because [`ClientConfig::max_events`] were unpolled.
    pub events_dropped: u64,
}
