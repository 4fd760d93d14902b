//! The STUN client's public vocabulary: its configuration, the options of a Binding request,
//! and how a transaction ends (its event, or why it could not start or failed).

use alloc::string::String;
use core::net::SocketAddr;

use crate::stun::TransactionId;
use crate::stun::message::EncodeError;
use crate::time::Duration;

/// Client configuration; the defaults are RFC 8489's.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Initial retransmission timeout (RFC 8489: 500 ms; ICE's pacing may pick less).
    pub initial_rto: Duration,
    /// Rc: the most times a request is sent (7; 0 counts as 1).
    pub max_sends: u32,
    /// Rm: after the last send, wait this many RTOs before declaring a timeout (16).
    pub last_wait_factor: u32,
    /// How many transactions may be open (or finished but not yet polled) at once.
    pub max_transactions: usize,
    /// Largest request, in bytes; sizes each slot's buffer at construction.
    pub max_request_len: usize,
    /// SOFTWARE to send in every request, if any.
    pub software: Option<&'static str>,
    /// Long-term credentials to answer a 401 with; without them a 401 fails the transaction.
    pub credentials: Option<LongTermCredentials>,
    /// Pad Binding requests to at least this many bytes, so servers that bound their answers
    /// by the request's size (ours) can include OTHER-ADDRESS and RESPONSE-ORIGIN. 0 = off.
    pub pad_requests_to: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            initial_rto: Duration::from_millis(500),
            max_sends: 7,
            last_wait_factor: 16,
            max_transactions: 16,
            max_request_len: 1280,
            software: None,
            credentials: None,
            pad_requests_to: 0,
        }
    }
}

/// A username and password for the long-term credential mechanism (already prepared per RFC
/// 8265 OpaqueString; ASCII needs nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LongTermCredentials {
    /// The username.
    pub username: String,
    /// The password.
    pub password: String,
}

/// Options of a Binding request, for RFC 5780 behaviour discovery.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BindingOptions {
    /// Ask the server to answer from its alternate IP.
    pub change_ip: bool,
    /// Ask the server to answer from its alternate port.
    pub change_port: bool,
    /// Ask the server to answer to this port of ours instead.
    pub response_port: Option<u16>,
}

/// Why a request could not be started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// All transaction slots are busy or hold an event not yet polled.
    #[error("too many open transactions")]
    TooManyTransactions,
    /// The request does not fit the configured `max_request_len`.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// How a transaction failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransactionError {
    /// No (valid) response after all retransmissions.
    #[error("timed out: no valid response")]
    TimedOut,
    /// The server answered with an error we cannot recover from.
    #[error("rejected with error {code}")]
    Rejected {
        /// The ERROR-CODE (0 if the error response carried none).
        code: u16,
    },
    /// The server asked for credentials we do not have, rejected the ones we sent, or sent a
    /// challenge we must not answer (no supported password algorithm, or a stripped list).
    #[error("unauthorized")]
    Unauthorized,
    /// Too many 300 redirections, 401/438 retries, or a redirect we must not follow.
    #[error("too many redirects or authentication retries")]
    TooManyRetries,
    /// A success response that lacked what its method requires (XOR-MAPPED-ADDRESS for Binding).
    #[error("malformed success response")]
    MalformedResponse,
}

/// The outcome of one transaction: exactly one per started request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// A success response arrived.
    Succeeded {
        /// The transaction, as returned when it was started.
        id: TransactionId,
        /// The server that answered last (differs from the first after a 300 redirect).
        server: SocketAddr,
        /// The address the response came from (differs from `server` after CHANGE-REQUEST).
        from: SocketAddr,
        /// The reflexive transport address (XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS).
        mapped: Option<SocketAddr>,
        /// RFC 5780 OTHER-ADDRESS, when the server offers behaviour discovery.
        other_address: Option<SocketAddr>,
        /// RFC 5780 RESPONSE-ORIGIN.
        response_origin: Option<SocketAddr>,
        /// Time from the last send to the response: exact without retransmissions, else a lower
        /// bound (STUN cannot tell which copy was answered).
        rtt: Duration,
    },
    /// The transaction failed.
    Failed {
        /// The transaction, as returned when it was started.
        id: TransactionId,
        /// The server it was last sent to.
        server: SocketAddr,
        /// Why.
        error: TransactionError,
    },
}
