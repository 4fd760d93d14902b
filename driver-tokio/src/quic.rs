//! QUIC (quinn) over the path ICE selected: reliable, encrypted streams between two peers
//! that found each other through NATs.
//!
//! [`IceSocket`] implements quinn's [`AsyncUdpSocket`] over an ICE [`Connection`], so a
//! `quinn::Endpoint` runs on the same sockets as ICE's own STUN checks and consent:
//!
//! - outgoing QUIC datagrams go out through the selected path's socket to the selected remote
//!   (whatever destination quinn names);
//! - incoming datagrams are demultiplexed as RFC 9443 (RFC 7983) says, by the driver's task:
//!   a first byte 0–3 is STUN and stays with the agent; 64–79 from a TURN server's address
//!   is ChannelData, which the agent unwraps (relayed QUIC comes out as from the peer); every
//!   other datagram from the peer's paths is QUIC and handed to quinn.
//! - the QUIC bit is never greased ([`endpoint_config`]), so every QUIC packet starts with a
//!   byte of 64 or more and is never mistaken for STUN;
//! - quinn sees one constant peer address (the first path's remote). When ICE switches path
//!   (failover, a better pair, relay to direct), the packets simply take the new path: ICE
//!   owns path selection and consent, so quinn's streams carry on untouched, as they would
//!   across a migration. (A quinn client drops packets from an address other than the one it
//!   dialled, so reporting the real address would break the client side on a switch.)
//!
//! Adopting it takes a few lines (see `examples/quic_over_ice.rs`):
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use holepunch_tokio::ice::Connection;
//! # use holepunch_tokio::quic_identity::{Fingerprint, Identity};
//! # async fn example(ice: Arc<Connection>, controlling: bool, me: Identity, peer: Fingerprint)
//! # -> Result<(), Box<dyn std::error::Error>> {
//! let (_endpoint, connection) =
//!     holepunch_tokio::quic::connect(ice, controlling, &me, peer).await?;
//! let (mut send, _recv) = connection.open_bi().await?;
//! send.write_all(b"hello").await?;
//! # Ok(()) }
//! ```
//!
//! Costs: each received datagram is copied once out of the driver's queue (one allocation in
//! the driver, as for [`Connection::recv`]); sends go straight to the socket. No GSO/GRO: one
//! datagram per system call.

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};

use crate::ice::Connection;
use crate::quic_identity::{Fingerprint, Identity, IdentityError, SERVER_NAME, transport_config};

/// quinn's view of an ICE [`Connection`]: a UDP socket that talks to exactly one peer.
pub struct IceSocket {
    conn: Arc<Connection>,
    local: SocketAddr,
    peer: SocketAddr,
}

impl fmt::Debug for IceSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IceSocket")
            .field("local", &self.local)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl IceSocket {
    /// Wraps a connection that has a path (`NotConnected` otherwise).
    pub fn new(conn: Arc<Connection>) -> io::Result<IceSocket> {
        let path = conn
            .path()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "ICE has no path (yet)"))?;
        Ok(IceSocket {
            conn,
            local: path.local,
            peer: path.remote,
        })
    }

    /// The address quinn knows the peer by (the first path's remote): dial this one.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }
}

impl AsyncUdpSocket for IceSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(Writable {
            conn: Arc::clone(&self.conn),
        })
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        // One datagram per transmit (`max_transmit_segments` is 1); the destination is the
        // peer, wherever ICE's path leads now.
        match self.conn.try_send(transmit.contents) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(e),
            // Anything else (no path for a moment, an ICMP error reported late, a datagram too
            // big for the path) is a lost packet, which QUIC recovers; quinn's own UDP socket
            // treats send errors the same way. Returning it would close the connection.
            Err(e) => {
                tracing::trace!(error = %e, len = transmit.contents.len(), "QUIC datagram lost on send");
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        // As many queued datagrams as quinn has buffers for: one call per batch, not per packet.
        let mut filled = 0;
        for (buf, m) in bufs.iter_mut().zip(meta.iter_mut()) {
            match self.conn.poll_recv_datagram(cx, buf) {
                Poll::Ready(Ok(len)) => {
                    *m = RecvMeta {
                        addr: self.peer,
                        len,
                        stride: len,
                        ecn: None,
                        dst_ip: None,
                    };
                    filled += 1;
                }
                Poll::Ready(Err(e)) if filled == 0 => return Poll::Ready(Err(e)),
                Poll::Ready(Err(_)) | Poll::Pending => break,
            }
        }
        if filled == 0 {
            Poll::Pending
        } else {
            Poll::Ready(Ok(filled))
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    fn may_fragment(&self) -> bool {
        // Let quinn probe the path MTU (DPLPMTUD) rather than stay at 1200 bytes.
        false
    }
}

/// Waits for the path's socket to be writable.
struct Writable {
    conn: Arc<Connection>,
}

impl fmt::Debug for Writable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Writable")
    }
}

impl UdpPoller for Writable {
    fn poll_writable(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.conn.poll_send_ready(cx)
    }
}

/// Why [`connect`] found no QUIC session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuicError {
    /// The ICE connection has no path, or the endpoint could not start.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// Our identity could not be turned into a TLS configuration.
    #[error("{0}")]
    Identity(#[from] IdentityError),
    /// quinn refused to start the handshake.
    #[error("{0}")]
    Connect(#[from] quinn::ConnectError),
    /// The handshake failed (a wrong key shows here) or the connection closed.
    #[error("{0}")]
    Connection(#[from] quinn::ConnectionError),
    /// The endpoint closed before the peer's handshake arrived.
    #[error("the QUIC endpoint closed before the peer connected")]
    NoIncoming,
}

/// quinn's endpoint settings for a socket shared with STUN: the fixed bit is not greased
/// (RFC 9287 lets peers clear it; RFC 9443 §5 forbids that where QUIC is multiplexed, since a
/// first byte 0–63 would be taken for STUN or DTLS and dropped).
pub fn endpoint_config() -> quinn::EndpointConfig {
    let mut config = quinn::EndpointConfig::default();
    config.grease_quic_bit(false);
    config
}

/// A quinn endpoint on `ice`'s path, with `server` to accept connections (or `None`).
pub fn endpoint(
    ice: Arc<Connection>,
    server: Option<quinn::ServerConfig>,
) -> io::Result<(quinn::Endpoint, SocketAddr)> {
    let socket = Arc::new(IceSocket::new(ice)?);
    let peer = socket.peer_addr();
    let endpoint = quinn::Endpoint::new_with_abstract_socket(
        endpoint_config(),
        server,
        socket,
        Arc::new(quinn::TokioRuntime),
    )?;
    Ok((endpoint, peer))
}

/// How long one client handshake attempt may take before a fresh one starts. ICE's two sides
/// find the path at different moments (hundreds of milliseconds apart under loss), and a
/// client that started early has backed its retransmissions off to seconds by the time the
/// server listens; a new attempt starts again from the path's RTT.
const ATTEMPT: std::time::Duration = std::time::Duration::from_secs(2);

/// One mutually authenticated QUIC connection over `ice`: the controlling agent dials (QUIC
/// client), the controlled one accepts (server), so both agree without another round trip.
/// Each side presents `identity` and accepts only a peer whose key has fingerprint `peer`
/// (from the peer's offer). The path's RTT from ICE seeds QUIC's RTT estimate. The client
/// starts a fresh attempt every 2 s until one completes (the server takes the first
/// handshake to finish); a refused key fails at once. It waits for ever otherwise: bound it
/// with a timeout. Keep the returned endpoint alive as long as the connection.
pub async fn connect(
    ice: Arc<Connection>,
    controlling: bool,
    identity: &Identity,
    peer: Fingerprint,
) -> Result<(quinn::Endpoint, quinn::Connection), QuicError> {
    let transport = transport_config(ice.path().map(|p| p.rtt));
    tracing::debug!(controlling, path = ?ice.path(), "QUIC handshake starting");
    if controlling {
        let (endpoint, addr) = endpoint(ice, None)?;
        let mut config = identity.client_config(peer)?;
        config.transport_config(transport);
        loop {
            let connecting = endpoint.connect_with(config.clone(), addr, SERVER_NAME)?;
            match tokio::time::timeout(ATTEMPT, connecting).await {
                Ok(connection) => {
                    let connection = connection?;
                    tracing::debug!(remote = %connection.remote_address(), "QUIC handshake done");
                    return Ok((endpoint, connection));
                }
                // Dropping the attempt abandons it; the next starts from scratch.
                Err(_) => {
                    tracing::debug!(timeout = ?ATTEMPT, "QUIC handshake attempt timed out, retrying");
                    continue;
                }
            }
        }
    } else {
        let mut config = identity.server_config(peer)?;
        config.transport_config(transport);
        let (endpoint, _) = endpoint(ice, Some(config))?;
        // Handshakes in progress: abandoned attempts never finish, so take the first that does.
        let mut handshakes = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                incoming = endpoint.accept() => {
                    let incoming = incoming.ok_or(QuicError::NoIncoming)?;
                    handshakes.spawn(async move { incoming.await });
                }
                Some(done) = handshakes.join_next() => match done {
                    Ok(result) => {
                        let connection = result?;
                        tracing::debug!(remote = %connection.remote_address(), "QUIC handshake accepted");
                        return Ok((endpoint, connection));
                    }
                    // A panicked handshake task: wait for another attempt.
                    Err(e) => {
                        tracing::debug!(error = %e, "QUIC handshake task failed");
                        continue;
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::ice::{Endpoint, EndpointConfig};
    use crate::signalling::ChannelSignalling;

    const LIMIT: Duration = Duration::from_secs(15);

    async fn ice_pair() -> (Arc<Connection>, Arc<Connection>) {
        let mut config = EndpointConfig::aggressive();
        config.connect_timeout = Some(Duration::from_secs(8));
        let local: [SocketAddr; 1] = ["127.0.0.1:0".parse().expect("addr")];
        let a = Endpoint::bind(&local, config.clone()).await.expect("bind");
        let b = Endpoint::bind(&local, config).await.expect("bind");
        let (sa, sb) = ChannelSignalling::pair();
        let (a, b) = tokio::join!(a.connect(sa, true), b.connect(sb, false));
        (Arc::new(a.expect("a")), Arc::new(b.expect("b")))
    }

    #[tokio::test]
    async fn a_stream_crosses_the_ice_path_both_ways() {
        let (a, b) = tokio::time::timeout(LIMIT, ice_pair()).await.expect("ice");
        let (ia, ib) = (
            Identity::generate().expect("id"),
            Identity::generate().expect("id"),
        );
        let (fa, fb) = (ia.fingerprint(), ib.fingerprint());
        let run = async {
            let (ra, rb) = tokio::join!(connect(a, true, &ia, fb), connect(b, false, &ib, fa));
            let ((_ea, ca), (_eb, cb)) = (ra.expect("client"), rb.expect("server"));
            let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
            let client = async {
                let (mut send, mut recv) = ca.open_bi().await.expect("open");
                send.write_all(&payload).await.expect("write");
                send.finish().expect("finish");
                recv.read_to_end(usize::MAX).await.expect("read")
            };
            let server = async {
                let (mut send, mut recv) = cb.accept_bi().await.expect("accept");
                let got = recv.read_to_end(usize::MAX).await.expect("read");
                send.write_all(&got).await.expect("echo");
                send.finish().expect("finish");
                let _ = send.stopped().await;
                got
            };
            let (echoed, got) = tokio::join!(client, server);
            assert!(got == payload, "server got the bytes in order");
            assert!(echoed == payload, "client got them back");
        };
        tokio::time::timeout(LIMIT, run).await.expect("in time");
    }

    #[tokio::test]
    async fn a_key_other_than_the_offered_one_fails_the_handshake() {
        let (a, b) = tokio::time::timeout(LIMIT, ice_pair()).await.expect("ice");
        let (ia, ib) = (
            Identity::generate().expect("id"),
            Identity::generate().expect("id"),
        );
        let mallory = Identity::generate().expect("id").fingerprint();
        let run = async {
            // The client was told a different server key (a swapped offer line).
            tokio::join!(
                connect(a, true, &ia, mallory),
                connect(b, false, &ib, ia.fingerprint())
            )
        };
        let (ra, rb) = tokio::time::timeout(LIMIT, run).await.expect("in time");
        assert!(ra.is_err(), "the client refuses the server's key");
        assert!(rb.is_err(), "the server gets no session either");
    }
}
