//! What a state machine asks its driver to send.

use core::net::SocketAddr;

/// A datagram the core wants sent: its bytes are `out[..len]` of the buffer passed to the
/// `poll_transmit`-style call that returned it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The local socket to send from, when the state machine owns several (an RFC 5780 server
    /// answers from its alternate address); `None` means the one socket it is pumped with.
    pub from: Option<SocketAddr>,
    /// Destination.
    pub to: SocketAddr,
    /// Length of the datagram at the start of the caller's buffer.
    pub len: usize,
}
