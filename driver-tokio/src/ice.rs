//! An ICE session on tokio: [`Endpoint`] binds the sockets, [`Connection`] is the result.
//!
//! ```no_run
//! use holepunch_tokio::ice::{Endpoint, EndpointConfig};
//! use holepunch_tokio::signal::SignalClient;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let config = EndpointConfig::aggressive().with_stun_servers(vec!["192.0.2.1:3478".parse()?]);
//! let endpoint = Endpoint::bind(&["0.0.0.0:0".parse()?, "[::]:0".parse()?], config).await?;
//! let signalling = SignalClient::connect("192.0.2.7:7000".parse()?, "alice", "bob").await?;
//! let connection = endpoint.connect(signalling, true).await?;
//! connection.send(b"hello").await?;
//! let mut buf = [0u8; 1500];
//! let n = connection.recv(&mut buf).await?;
//! println!("{:?} over {:?}", &buf[..n], connection.path());
//! # Ok(())
//! # }
//! ```
//!
//! # Sockets and host candidates
//!
//! Every host candidate gets a socket bound to its own IP, so a datagram's arrival socket names
//! the local address exactly (the agent needs it; a wildcard socket cannot tell without
//! `IP_PKTINFO`, which std does not offer). [`Endpoint::bind`] takes the addresses to bind:
//!
//! - a specified IP is bound as given (failure is an error);
//! - an unspecified IP (`0.0.0.0:P`, `[::]:P`) stands for this host's addresses of that family,
//!   found without any new dependency: the source address the kernel picks for a route to a
//!   public anchor (`8.8.8.8`, `2001:4860:4860::8888`) and to each configured STUN server
//!   (connecting a throwaway UDP socket and reading its local address; no packet is sent).
//!   That is the default-route interface plus whatever interface reaches the STUN servers
//!   (loopback for a local one). When IPv4 has no route at all, `127.0.0.1` is used. For IPv6,
//!   every global and unique-local address of every interface is added ([`gatherable_v6`]:
//!   RFC 8445 §5.1.1.1; no link-local ones). Other IPv4 interfaces are not enumerated: bind
//!   their IPs explicitly.
//!
//! When the agent asks for extra sockets (hard-NAT punching, `Action::BindSockets`) they are
//! bound on the first IPv4 host address, port 0.
//!
//! # The task
//!
//! [`Endpoint::start`] spawns one task that owns the agent, the sockets and the signalling. It
//! writes our offer (credentials, trickled candidates, `a=end-of-candidates`), applies the
//! peer's lines as they come (checks start with the first candidate; the first credentials
//! received are kept), feeds every socket's datagrams to the agent, sends what the agent
//! transmits, and reports [`ConnectionEvent`]s. The task ends when the [`Connection`] is
//! dropped, when ICE fails, or when no path is found within
//! [`EndpointConfig::connect_timeout`] (also after consent is lost).
//!
//! # Application data
//!
//! Datagrams are sent on the selected path; received ones are delivered when they come from the
//! selected remote, any remote selected before, or any remote a check on its pair authenticated
//! (so nothing is lost while the peer switches
//! paths). Datagrams that arrive before this side selected a path (the peer may connect a round
//! trip earlier) wait in a small buffer and are delivered if their sender becomes the path.
//! Each received datagram costs one allocation on its way to [`Connection::recv`]. Delivery is
//! not guaranteed: this is UDP.
//!
//! # Relays
//!
//! With [`EndpointConfig::turn`], the session allocates on each TURN server before gathering
//! ends (over UDP from the first host socket of the server's family, or over a TCP or TLS
//! connection for a server configured with that transport, for networks that block UDP; TLS
//! verifies the server against [`EndpointConfig::turn_trust`]), and signals the
//! relayed addresses as candidates (the composed [`holepunch_core::Agent`] does the protocol). A relayed
//! pair is used only when no direct one works within the agent's `relay_hold`, and a direct path
//! that starts working later replaces it. On a relayed path, [`Connection::send`] hands the
//! datagram to the session's task, which wraps it for the relay (one allocation per datagram).
//!
//! # Port mapping
//!
//! With [`EndpointConfig::portmap`], a thread probes the default gateway with PCP, NAT-PMP and
//! UPnP IGD at once and asks the best that answered (PCP > NAT-PMP > UPnP:
//! `holepunch_std::portmap_probe::run_auto`) to map the first IPv4 host socket's port, keeps the
//! mapping renewed, and deletes it when the session ends. The mapped address is signalled as a
//! candidate: a peer reaches it even behind an endpoint-dependent NAT on our side. It is
//! trickled when the gateway answers (milliseconds on a LAN), without holding back
//! end-of-candidates: networks without a mapping gateway are the common case, and their
//! gateway's silence must not slow every session down. A program that exits right after
//! dropping its connections calls `holepunch_std::portmap_probe::finish_all` first, so the
//! deletes reach the gateway.

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use holepunch_core::agent::{Agent, Event};
use holepunch_core::demux::Received;
use holepunch_core::ice::agent::{Action, AgentConfig, IceEvent, IoResult, PathInfo};
use holepunch_core::ice::candidate::{Candidate, CandidateKind};
use holepunch_core::ice::credentials::IceCredentials;
use holepunch_core::ice::offer::{self, OfferLine};
use holepunch_core::ice::relay::RelayEvent;
use holepunch_core::io::{Datagram, IoToken};
use holepunch_core::nat64::Nat64Prefix;
use holepunch_core::portmap::client::{PortmapEvent, Protocols};
use holepunch_core::turn::{ClientConfig as TurnConfig, Transport as TurnTransport};
use holepunch_std::ice::{TRANSMIT_BUFFER_LEN, bind_extra_sockets};
use holepunch_std::netcheck::local_ip_towards;
use holepunch_std::portmap::{PortmapOptions, default_gateway};
use holepunch_std::portmap_probe::spawn_auto;
use holepunch_std::{RECV_BUFFER_LEN, is_transient};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::frames::FrameReader;
use crate::signalling::{EOF_LINE, Signalling};
use crate::turn_tls::{self, TurnTrust};
use crate::{Clock, os_seed};

/// Datagrams from not-yet-selected remotes held until a path is selected.
const EARLY_DATAGRAMS: usize = 256;
/// How long a port mapping is asked for (renewed at half).
const PORTMAP_LIFETIME: Duration = Duration::from_secs(120);
/// How long a dropped connection's task gets to release its relay allocations.
const DROP_GRACE: Duration = Duration::from_millis(200);
/// How long a TCP connection to a TURN server may take before the server is given up.
const TURN_TCP_CONNECT: Duration = Duration::from_secs(3);
/// Frames waiting to be written to one TURN server's TCP connection.
const TURN_TCP_QUEUE: usize = 256;
/// Datagrams for a relayed path waiting for the task to wrap them.
const RELAYED_SENDS: usize = 256;
/// The most a TURN wrapper adds (a Send indication's header and attributes).
const RELAY_OVERHEAD: usize = 64;
/// Remotes remembered as the peer's (the current path's and earlier ones).
const PEER_ADDRESSES: usize = 8;
/// Where IPv4 routes are looked up to find the default interface (no packet is sent).
const ANCHOR_V4: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8)), 53);
/// Where IPv6 routes are looked up (no packet is sent).
const ANCHOR_V6: SocketAddr = SocketAddr::new(
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x4860, 0x4860, 0, 0, 0, 0, 0x8888)),
    53,
);

/// How an [`Endpoint`] runs ICE.
#[derive(Clone, Debug)]
pub struct EndpointConfig {
    /// The agent's configuration, STUN servers included; its `controlling` is replaced by the
    /// role given to [`Endpoint::start`].
    pub agent: AgentConfig,
    /// Give up ([`ConnectError::TimedOut`]) when no path is selected this long after the start,
    /// or after consent on the path was lost; `None` waits for ever.
    pub connect_timeout: Option<Duration>,
    /// The agent's seed; `None` draws one from the OS. Fixed seeds are for tests only.
    pub seed: Option<u64>,
    /// Received datagrams waiting for [`Connection::recv`]; more are dropped.
    pub recv_queue: usize,
    /// TURN servers to allocate relayed candidates on, over UDP, TCP or TLS (their
    /// `transport`; over TLS their certificate is verified for their `tls_name`).
    pub turn: Vec<TurnConfig>,
    /// The CAs TURN servers reached over TLS are verified against (default: the system's).
    pub turn_trust: TurnTrust,
    /// Ask the default gateway for a port mapping (PCP, NAT-PMP) and signal it as a candidate.
    pub portmap: bool,
    /// When the path loses consent while signalling is still open, restart ICE (RFC 8445 §9):
    /// gather again and send new credentials and candidates, so a peer whose addresses all
    /// changed (both sides moved networks) is found again. The peer restarts when it sees them.
    pub restart_on_consent_loss: bool,
    /// The network's NAT64 prefix, when the host has no IPv4 of its own (found by RFC 7050
    /// discovery: `holepunch_std::nat64::discover_nat64`). The agent then reaches IPv4 STUN
    /// servers and IPv4 peers at their RFC 6052 synthesised addresses, and so are IPv4 TURN
    /// servers over UDP. `None` (the default): no NAT64.
    pub nat64_prefix: Option<Nat64Prefix>,
    /// Watch the OS for network changes ([`crate::netwatch`]: netlink on Linux, an interface
    /// diff every 5 s elsewhere). On a change the session binds a socket on each new address
    /// its unspecified binds stand for (a host candidate, trickled to the peer), tells the
    /// agent (`Agent::network_changed`: prompt re-probing, STUN asked again), and restarts ICE
    /// when the selected direct path's local address is gone (the peer restarts too).
    pub watch_network: bool,
}

impl EndpointConfig {
    /// The aggressive agent profile (Ta 2 ms, aggressive nomination), a 30 s connect timeout.
    pub fn aggressive() -> Self {
        EndpointConfig {
            agent: AgentConfig::aggressive(true),
            connect_timeout: Some(Duration::from_secs(30)),
            seed: None,
            recv_queue: 1024,
            turn: Vec::new(),
            turn_trust: TurnTrust::system(),
            portmap: false,
            restart_on_consent_loss: true,
            nat64_prefix: None,
            watch_network: true,
        }
    }

    /// The RFC 8445 agent profile (Ta 50 ms, regular nomination), a 30 s connect timeout.
    pub fn rfc() -> Self {
        EndpointConfig {
            agent: AgentConfig::rfc(true),
            ..Self::aggressive()
        }
    }

    /// The same configuration allocating relayed candidates on `servers` (TURN).
    #[must_use]
    pub fn with_turn_servers(mut self, servers: Vec<TurnConfig>) -> Self {
        self.turn = servers;
        self
    }

    /// The same configuration gathering server-reflexive candidates from `servers`.
    #[must_use]
    pub fn with_stun_servers(mut self, servers: Vec<SocketAddr>) -> Self {
        self.agent.stun_servers = servers;
        self
    }
}

impl Default for EndpointConfig {
    /// [`EndpointConfig::aggressive`].
    fn default() -> Self {
        Self::aggressive()
    }
}

/// Why a connection attempt ended without a path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// ICE failed: every candidate pair failed after the peer's end-of-candidates.
    #[error("no path: every candidate pair failed")]
    NoPath,
    /// No path was selected within the configured time.
    #[error("no path within {} s", .0.as_secs_f64())]
    TimedOut(Duration),
    /// Signalling failed before a path was found.
    #[error("signalling failed: {0}")]
    Signalling(#[source] io::Error),
    /// The connection's task is gone (it panicked or was dropped).
    #[error("the connection task ended")]
    Closed,
}

/// Why ICE restarted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RestartReason {
    /// [`Connection::restart`] was called.
    Requested,
    /// The peer restarted (it signalled a new ufrag).
    PeerRestarted,
    /// The path lost consent (see [`EndpointConfig::restart_on_consent_loss`]).
    ConsentLost,
    /// The selected path's local address left this host (see
    /// [`EndpointConfig::watch_network`]).
    NetworkChanged,
}

/// What a [`Connection`] reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// A local candidate, signalled to the peer.
    LocalCandidate(Candidate),
    /// Local gathering finished: `candidates` were signalled, then `a=end-of-candidates`.
    GatheringComplete {
        /// How many local candidates were signalled.
        candidates: usize,
    },
    /// A candidate the peer signalled.
    RemoteCandidate(Candidate),
    /// Connectivity checks started (the peer's credentials and a first pair are known).
    Checking,
    /// The first path was selected; [`Connection::send`] works from now on.
    Connected(PathInfo),
    /// The path changed: an upgrade, a renomination, or a new path after consent was lost.
    PathChanged(PathInfo),
    /// The path stopped answering consent checks and no other was valid; the agent looks for
    /// a new one (until the connect timeout) and sends fail with `NotConnected` meanwhile.
    ConsentLost(PathInfo),
    /// A TURN allocation succeeded (its relayed address is a candidate) or failed.
    Relay(RelayEvent),
    /// A TURN server could not be reached over TCP or TLS (a refused certificate included),
    /// or its connection closed.
    RelayUnreachable {
        /// The TURN server.
        server: SocketAddr,
        /// Why.
        error: io::Error,
    },
    /// Neither side's candidates showed how its NAT maps (one STUN server without RFC 5780)
    /// and checks had not connected: hard-NAT punching started blind (see
    /// `holepunch_core::ice::agent::PunchConfig::blind_delay`).
    BlindPunching {
        /// Whether this side plays the hard half (extra sockets towards the peer).
        hard: bool,
        /// Whether this side plays the easy half (probes over the peer's ports).
        easy: bool,
    },
    /// ICE restarted (RFC 8445 §9): new credentials and candidates went to the peer, and
    /// checks start over; the old path carries data until a new one is selected.
    Restarted(RestartReason),
    /// The OS reported a network change (see [`EndpointConfig::watch_network`]); the agent
    /// was told, and `added` are the sockets bound on new host addresses (their candidates go
    /// to the peer).
    NetworkChanged {
        /// The new host sockets' addresses.
        added: Vec<SocketAddr>,
    },
    /// A role conflict switched our role.
    RoleChanged {
        /// Whether we are controlling now.
        controlling: bool,
    },
    /// The peer signalled that it sends no more datagrams ([`Connection::finish`] there).
    PeerFinished,
    /// The signalling channel closed (or failed) after the start; the session goes on without
    /// it.
    SignallingClosed(Option<io::Error>),
    /// The session ended without a path; no more events follow.
    Failed(ConnectError),
    /// The interval consent checks (the path's keepalives) run at changed: both sides
    /// proposed keepalives ([`Connection::set_mapping_lifetime`], `AgentConfig::
    /// keepalive_interval`) and this is the shorter proposal, or one was withdrawn and this is
    /// RFC 7675's cadence again.
    KeepaliveInterval(Duration),
}

/// UDP sockets on this host's addresses, ready to run one ICE session.
#[derive(Debug)]
pub struct Endpoint {
    sockets: Vec<Arc<UdpSocket>>,
    hosts: Vec<SocketAddr>,
    /// The unspecified addresses asked for: after a network change, what they stand for now.
    watched: Vec<SocketAddr>,
    config: EndpointConfig,
}

impl Endpoint {
    /// Binds one socket per host address (see the [module docs](self) for what an
    /// unspecified address expands to). Fails when nothing could be bound, or when an
    /// explicitly given address cannot be.
    pub async fn bind(local: &[SocketAddr], config: EndpointConfig) -> io::Result<Endpoint> {
        let mut wanted: Vec<(SocketAddr, bool)> = Vec::new();
        let watched = local
            .iter()
            .copied()
            .filter(|a| a.ip().is_unspecified())
            .collect();
        let mut want =
            |addr: SocketAddr, explicit: bool| match wanted.iter_mut().find(|(a, _)| *a == addr) {
                Some(w) => w.1 |= explicit,
                None => wanted.push((addr, explicit)),
            };
        for &addr in local {
            if addr.ip().is_unspecified() {
                for ip in host_ips(addr.is_ipv4(), &config.agent.stun_servers) {
                    want(SocketAddr::new(ip, addr.port()), false);
                }
            } else {
                want(addr, true);
            }
        }
        let mut sockets = Vec::new();
        let mut hosts = Vec::new();
        let mut first_error = None;
        for (addr, explicit) in wanted {
            match UdpSocket::bind(addr).await {
                Ok(socket) => {
                    hosts.push(socket.local_addr()?);
                    sockets.push(Arc::new(socket));
                }
                Err(e) if explicit => return Err(e),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if sockets.is_empty() {
            return Err(first_error.unwrap_or_else(|| {
                io::Error::new(io::ErrorKind::AddrNotAvailable, "no local address to bind")
            }));
        }
        Ok(Endpoint {
            sockets,
            hosts,
            watched,
            config,
        })
    }

    /// The bound host addresses, in candidate priority order.
    pub fn host_addrs(&self) -> &[SocketAddr] {
        &self.hosts
    }

    /// Starts the session at once and returns the [`Connection`] it will carry; progress comes
    /// as [`ConnectionEvent`]s. `controlling` is our initial ICE role (the peer must normally
    /// take the other; a conflict is repaired by RFC 8445's tie-breaker).
    pub fn start<S: Signalling>(self, signalling: S, controlling: bool) -> Connection {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (data_tx, data_rx) = mpsc::channel(self.config.recv_queue.max(1));
        let (route_tx, route_rx) = watch::channel(None);
        let (commands_tx, commands_rx) = mpsc::channel(8);
        let (relay_tx, relay_rx) = mpsc::channel(RELAYED_SENDS);
        let (turn_frames_tx, turn_frames) = mpsc::channel(TURN_TCP_QUEUE);
        let mut agent_config = self.config.agent.clone();
        agent_config.controlling = controlling;
        let agent = Agent::new(agent_config, self.config.seed.unwrap_or_else(os_seed));
        let by_local = self
            .hosts
            .iter()
            .enumerate()
            .map(|(i, a)| (*a, i))
            .collect();
        let driver = Driver {
            agent,
            clock: Clock::new(),
            sockets: self.sockets,
            locals: self.hosts.clone(),
            by_local,
            signalling,
            signalling_open: true,
            signalling_failed: false,
            events: events_tx,
            data: data_tx,
            route: route_tx,
            commands: commands_rx,
            remote_ufrag: None,
            remote_pwd: None,
            remote_credentials_set: false,
            peer_restarted: None,
            peer_finished: false,
            signalled: 0,
            path: None,
            peers: VecDeque::new(),
            early: VecDeque::new(),
            connect_timeout: self.config.connect_timeout,
            give_up_at: None,
            // Room for a full datagram wrapped for a relay.
            out: vec![0u8; TRANSMIT_BUFFER_LEN + RELAY_OVERHEAD],
            buf: vec![0u8; RECV_BUFFER_LEN],
            rotate: 0,
            turn: self.config.turn.clone(),
            turn_trust: self.config.turn_trust.clone(),
            turn_tls: None,
            relay_sends: relay_rx,
            turn_streams: Vec::new(),
            turn_frames_tx,
            turn_frames,
            portmap: self.config.portmap,
            portmapper: None,
            restart_on_consent_loss: self.config.restart_on_consent_loss,
            nat64_prefix: self.config.nat64_prefix,
            watch_network: self.config.watch_network,
            netwatch: None,
            network_seen: network_snapshot(&self.watched, &self.config.agent.stun_servers),
            watched: self.watched,
            stun_servers: self.config.agent.stun_servers.clone(),
        };
        Connection {
            route: route_rx,
            data: Mutex::new(data_rx),
            events: Mutex::new(events_rx),
            commands: commands_tx,
            relay_sends: relay_tx,
            task: tokio::spawn(driver.run()),
            hosts: self.hosts,
        }
    }

    /// [`start`](Self::start), then waits for the first path. Progress events are consumed;
    /// later ones ([`ConnectionEvent::PathChanged`], …) come from
    /// [`Connection::next_event`].
    pub async fn connect<S: Signalling>(
        self,
        signalling: S,
        controlling: bool,
    ) -> Result<Connection, ConnectError> {
        let connection = self.start(signalling, controlling);
        loop {
            match connection.next_event().await {
                Some(ConnectionEvent::Connected(_)) => return Ok(connection),
                Some(ConnectionEvent::Failed(e)) => return Err(e),
                Some(_) => {}
                None => return Err(ConnectError::Closed),
            }
        }
    }
}

/// A running ICE session: datagrams to and from the peer over the selected path.
///
/// Every method takes `&self`, so one task can wait in [`recv`](Self::recv) while another
/// sends or reads events (share it in an `Arc`). Dropping it stops the session.
#[derive(Debug)]
pub struct Connection {
    route: watch::Receiver<Option<Route>>,
    data: Mutex<mpsc::Receiver<Vec<u8>>>,
    events: Mutex<mpsc::UnboundedReceiver<ConnectionEvent>>,
    commands: mpsc::Sender<Command>,
    /// Datagrams for a relayed path, wrapped by the task.
    relay_sends: mpsc::Sender<Vec<u8>>,
    task: JoinHandle<()>,
    hosts: Vec<SocketAddr>,
}

impl Connection {
    /// The selected path, if there is one now.
    pub fn path(&self) -> Option<PathInfo> {
        self.route.borrow().as_ref().map(|r| r.path)
    }

    /// The host addresses the session's sockets are bound to.
    pub fn host_addrs(&self) -> &[SocketAddr] {
        &self.hosts
    }

    /// Sends one datagram to the peer over the selected path.
    ///
    /// Fails with `NotConnected` while there is no path, and with `InvalidInput` for a datagram
    /// whose first byte is 0–3: the peer would take it for STUN (RFC 7983) and drop it.
    pub async fn send(&self, datagram: &[u8]) -> io::Result<()> {
        let route = self.route_for(datagram)?;
        if route.path.local_kind == CandidateKind::Relayed {
            // The TURN client's channels live in the task: it wraps and sends.
            return self
                .relay_sends
                .send(datagram.to_vec())
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::NotConnected, "the session ended"));
        }
        route.socket.send_to(datagram, route.path.remote).await?;
        Ok(())
    }

    /// The selected path for sending `datagram`: `InvalidInput` for a first byte 0–3 (the peer
    /// would take it for STUN, RFC 7983), `NotConnected` while there is no path.
    fn route_for(&self, datagram: &[u8]) -> io::Result<Route> {
        if datagram.first().is_some_and(|b| *b <= 3) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a datagram starting with a byte 0-3 would be taken for STUN (RFC 7983)",
            ));
        }
        let route = self.route.borrow().clone();
        route
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "no path to the peer (yet)"))
    }

    /// Waits for the next datagram from the peer and copies it into `buf` (truncated if `buf`
    /// is shorter), returning its length. Fails with `NotConnected` once the session ended and
    /// every received datagram was read. Cancel-safe.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut data = self.data.lock().await;
        match data.recv().await {
            Some(d) => {
                let n = d.len().min(buf.len());
                buf[..n].copy_from_slice(&d[..n]);
                Ok(n)
            }
            None => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the session ended",
            )),
        }
    }

    /// Sends one datagram on the selected path without waiting: `WouldBlock` when the socket
    /// is not writable now (wait with [`poll_send_ready`](Self::poll_send_ready)). Otherwise as
    /// [`send`](Self::send). For adapters such as [`crate::quic`] that poll rather than await.
    pub fn try_send(&self, datagram: &[u8]) -> io::Result<()> {
        let route = self.route_for(datagram)?;
        if route.path.local_kind == CandidateKind::Relayed {
            // The session task wraps it for the relay. A full queue drops the datagram, as a
            // full socket buffer would (QUIC retransmits), rather than have the caller spin.
            return match self.relay_sends.try_send(datagram.to_vec()) {
                Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => Ok(()),
                Err(mpsc::error::TrySendError::Closed(_)) => Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "the session ended",
                )),
            };
        }
        route.socket.try_send_to(datagram, route.path.remote)?;
        Ok(())
    }

    /// Ready when the selected path's socket can take a datagram (also when there is no path:
    /// [`try_send`](Self::try_send) then fails at once with `NotConnected`).
    pub fn poll_send_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let route = self.route.borrow().clone();
        match route {
            Some(route) => route.socket.poll_send_ready(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    /// [`recv`](Self::recv) as a poll: the next datagram from the peer into `buf` (truncated
    /// if shorter), `Ready(Err(NotConnected))` once the session ended. Use either this or
    /// `recv`, not both at once (a `recv` in progress makes this wake again and return
    /// `Pending`).
    pub fn poll_recv_datagram(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let Ok(mut data) = self.data.try_lock() else {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        };
        match data.poll_recv(cx) {
            Poll::Ready(Some(d)) => {
                let n = d.len().min(buf.len());
                buf[..n].copy_from_slice(&d[..n]);
                Poll::Ready(Ok(n))
            }
            Poll::Ready(None) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the session ended",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// The next event; `None` once the session ended and every event was read. Cancel-safe.
    pub async fn next_event(&self) -> Option<ConnectionEvent> {
        self.events.lock().await.recv().await
    }

    /// Tells the peer, over signalling, that we will send no more datagrams (it sees
    /// [`ConnectionEvent::PeerFinished`]); returns once the line was handed to the signalling.
    /// Sending still works afterwards; the peer just was told otherwise.
    pub async fn finish(&self) -> io::Result<()> {
        let gone = || io::Error::new(io::ErrorKind::NotConnected, "the session ended");
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Finish(tx))
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// ICE restart (RFC 8445 §9): new credentials and our candidates go to the peer over
    /// signalling, and checks start over; returns once they were handed to the signalling. A
    /// holepunch peer restarts too when it sees our new ufrag. The current path keeps carrying
    /// data until a new one is selected ([`ConnectionEvent::PathChanged`]) or its consent
    /// expires ([`ConnectionEvent::ConsentLost`]).
    pub async fn restart(&self) -> io::Result<()> {
        let gone = || io::Error::new(io::ErrorKind::NotConnected, "the session ended");
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Restart(tx))
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Tells the agent this host's NAT keeps idle UDP mappings for `lifetime` (measured with
    /// `holepunch_std::netcheck::lifetime_on`, typically in the background after connecting):
    /// it proposes keepalives just under it to the peer, in its next check. Returns the
    /// proposal (`None`: too short a lifetime to beat RFC 7675's cadence, nothing proposed).
    /// The interval both sides agree on is reported in [`ConnectionEvent::KeepaliveInterval`].
    pub async fn set_mapping_lifetime(&self, lifetime: Duration) -> io::Result<Option<Duration>> {
        let gone = || io::Error::new(io::ErrorKind::NotConnected, "the session ended");
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::MappingLifetime(lifetime, tx))
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }

    /// Whether the session's task has ended (failed, or timed out).
    pub fn is_closed(&self) -> bool {
        self.task.is_finished()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // The task sees the closed command channel, releases its relay allocations and ends;
        // it is aborted if that takes longer than a moment (or at once outside a runtime).
        let task = self.task.abort_handle();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    tokio::time::sleep(DROP_GRACE).await;
                    task.abort();
                });
            }
            Err(_) => task.abort(),
        }
    }
}

/// This host's addresses of one family (see the module docs), best first.
pub fn host_ips(ipv4: bool, stun_servers: &[SocketAddr]) -> Vec<IpAddr> {
    let mut ips = route_ips(ipv4, stun_servers);
    if ips.is_empty() && ipv4 {
        ips.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    ips
}

/// The source addresses the kernel picks towards the public anchor and the STUN servers of one
/// family, best first, and for IPv6 every interface's gatherable address; empty when it has
/// none (no loopback fallback: after a network change that means no address yet).
fn route_ips(ipv4: bool, stun_servers: &[SocketAddr]) -> Vec<IpAddr> {
    let anchor = if ipv4 { ANCHOR_V4 } else { ANCHOR_V6 };
    let mut ips = Vec::new();
    let targets =
        std::iter::once(anchor).chain(stun_servers.iter().copied().filter(|s| s.is_ipv4() == ipv4));
    for to in targets {
        if let Ok(ip) = local_ip_towards(to) {
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
    }
    if !ipv4 {
        for ip in ipv6_interface_addresses() {
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
    }
    ips
}

/// This host's IPv6 addresses worth a host candidate, from every interface (`getifaddrs`): see
/// [`gatherable_v6`].
fn ipv6_interface_addresses() -> Vec<IpAddr> {
    let Ok(interfaces) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    interfaces
        .filter_map(|i| Some(i.address?.as_sockaddr_in6()?.ip()))
        .filter(|ip| gatherable_v6(*ip))
        .map(IpAddr::V6)
        .collect()
}

/// Whether an IPv6 address may be a host candidate (RFC 8445 §5.1.1.1): global and unique-local
/// (fc00::/7) ones may; loopback, unspecified, multicast, IPv4-mapped and -compatible, and the
/// deprecated site-local (fec0::/10) ones must not. Link-local ones (fe80::/10) are left out
/// too: they only work on the same link, need the interface's scope, and RFC 8445 forbids them
/// alongside privacy addresses; peers on one link share a global or unique-local prefix.
pub fn gatherable_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    let v4_compatible = ip.octets()[..12].iter().all(|b| *b == 0);
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.to_ipv4_mapped().is_some()
        || v4_compatible
        || first & 0xffc0 == 0xfe80
        || first & 0xffc0 == 0xfec0)
}

#[derive(Clone, Debug)]
struct Route {
    path: PathInfo,
    socket: Arc<UdpSocket>,
}

#[derive(Debug)]
enum Command {
    Finish(oneshot::Sender<io::Result<()>>),
    Restart(oneshot::Sender<io::Result<()>>),
    MappingLifetime(Duration, oneshot::Sender<Option<Duration>>),
}

/// What woke the task up.
enum Wake {
    Timer,
    Datagram(usize, SocketAddr, usize),
    Line(io::Result<Option<String>>),
    Command(Option<Command>),
    RelaySend(Vec<u8>),
    /// A frame from a TURN server's TCP connection (`None`: it closed).
    RelayFrame(TurnFrame),
    /// What the port-mapping thread reported.
    Portmap(PortmapEvent),
    /// The OS reported a network change (debounced).
    NetworkChanged,
}

/// The port-mapping thread of a session: stopped (and its mapping deleted) on drop.
#[derive(Debug)]
struct Portmapper {
    events: mpsc::Receiver<PortmapEvent>,
    stop: Arc<AtomicBool>,
    /// The host socket whose port is mapped.
    base: SocketAddr,
    gateway: IpAddr,
}

impl Drop for Portmapper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A frame read from the TCP connection to a TURN server.
#[derive(Debug)]
struct TurnFrame {
    /// The connection's local address (the allocation's base).
    local: SocketAddr,
    server: SocketAddr,
    /// The frame, or `None` when the connection ended.
    frame: Option<Vec<u8>>,
}

/// The write side of a TCP or TLS connection to a TURN server.
#[derive(Debug)]
struct TurnStream {
    local: SocketAddr,
    frames: mpsc::Sender<Vec<u8>>,
}

struct Driver<S> {
    agent: Agent,
    clock: Clock,
    /// Host sockets first, then the extra (punching) sockets.
    sockets: Vec<Arc<UdpSocket>>,
    locals: Vec<SocketAddr>,
    by_local: HashMap<SocketAddr, usize>,
    signalling: S,
    signalling_open: bool,
    signalling_failed: bool,
    events: mpsc::UnboundedSender<ConnectionEvent>,
    data: mpsc::Sender<Vec<u8>>,
    route: watch::Sender<Option<Route>>,
    commands: mpsc::Receiver<Command>,
    remote_ufrag: Option<String>,
    remote_pwd: Option<String>,
    remote_credentials_set: bool,
    /// The peer signalled a new ufrag (it restarted): we restart too, expecting this one.
    peer_restarted: Option<String>,
    peer_finished: bool,
    /// Local candidates signalled so far.
    signalled: usize,
    path: Option<PathInfo>,
    /// Remote addresses of every path selected so far, newest first.
    peers: VecDeque<SocketAddr>,
    early: VecDeque<(SocketAddr, Vec<u8>)>,
    connect_timeout: Option<Duration>,
    give_up_at: Option<tokio::time::Instant>,
    out: Vec<u8>,
    buf: Vec<u8>,
    /// Which socket to poll first next time (fairness across sockets).
    rotate: usize,
    /// The TURN servers to allocate on at the start.
    turn: Vec<TurnConfig>,
    /// Who TURN servers over TLS are verified against, and the configuration made from it
    /// for the first of them.
    turn_trust: TurnTrust,
    turn_tls: Option<Arc<rustls::ClientConfig>>,
    relay_sends: mpsc::Receiver<Vec<u8>>,
    turn_streams: Vec<TurnStream>,
    turn_frames_tx: mpsc::Sender<TurnFrame>,
    turn_frames: mpsc::Receiver<TurnFrame>,
    /// Whether to start port mapping.
    portmap: bool,
    /// See [`EndpointConfig::nat64_prefix`].
    nat64_prefix: Option<Nat64Prefix>,
    /// [`EndpointConfig::restart_on_consent_loss`].
    restart_on_consent_loss: bool,
    portmapper: Option<Portmapper>,
    /// [`EndpointConfig::watch_network`].
    watch_network: bool,
    /// The network watcher's reports, once started.
    netwatch: Option<mpsc::Receiver<()>>,
    /// The unspecified addresses the endpoint was bound with.
    watched: Vec<SocketAddr>,
    /// The STUN servers (their routes pick host addresses, as at the start).
    stun_servers: Vec<SocketAddr>,
    /// What the last network change left ([`network_snapshot`]): a report that changes none of
    /// it (another interface's link-local address, a veth coming up) is not a change for us.
    network_seen: Vec<IpAddr>,
}

/// The addresses a network change is judged by: the route sources of the watched families
/// and every interface address that could be a candidate (no loopback, no link-local).
fn network_snapshot(watched: &[SocketAddr], stun_servers: &[SocketAddr]) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = crate::netwatch::interface_ips()
        .into_iter()
        .filter(|ip| match ip {
            IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local(),
            IpAddr::V6(v6) => gatherable_v6(*v6),
        })
        .collect();
    for w in watched {
        ips.extend(route_ips(w.is_ipv4(), stun_servers));
    }
    ips.sort_unstable();
    ips.dedup();
    ips
}

impl<S: Signalling> Driver<S> {
    async fn run(mut self) {
        use tracing::Instrument;
        // A span per session, entered only while its task runs (not held across awaits).
        let span = tracing::debug_span!("ice_session", hosts = ?self.locals);
        let turn = self.turn.len();
        tracing::debug!(parent: &span, turn, portmap = self.portmap, "session starts");
        if let Err(e) = self.session().instrument(span.clone()).await {
            tracing::debug!(parent: &span, error = %e, "session ended without a path");
            self.emit(ConnectionEvent::Failed(e));
        }
    }

    /// The whole session; `Ok` when the connection was dropped.
    async fn session(&mut self) -> Result<(), ConnectError> {
        let credentials = *self.agent.local_credentials();
        let mut lines = String::new();
        let _ = offer::write_ufrag(&mut lines, credentials.ufrag());
        let _ = offer::write_pwd(&mut lines, credentials.pwd());
        for line in lines.lines() {
            self.signal(line).await?;
        }
        let now = self.clock.now();
        // Only host sockets are bound yet (extra ones come with `Action::BindSockets`).
        for &local in &self.locals {
            // Only a full candidate table fails here; the first sixteen addresses are plenty.
            let _ = self.agent.add_host_candidate(now, local);
        }
        self.agent.set_nat64_prefix(now, self.nat64_prefix);
        for mut turn in std::mem::take(&mut self.turn) {
            let server = turn.server;
            // The first host socket of the server's family reaches it; without one, an IPv4
            // server is reached through the NAT64, at its synthesised address.
            let native = self
                .locals
                .iter()
                // A loopback socket reaches only a loopback server, and only it does.
                .find(|l| {
                    l.is_ipv4() == server.is_ipv4()
                        && l.ip().is_loopback() == server.ip().is_loopback()
                })
                .copied();
            let translated = self.through_nat64(server);
            if let (None, Some((_, synthesised))) = (native, translated) {
                if turn.transport == TurnTransport::Tls && turn.tls_name.is_none() {
                    // The certificate names the server's own address, not the translator's.
                    turn.tls_name = Some(server.ip().to_string());
                }
                turn.server = synthesised;
            }
            let base = if turn.transport == TurnTransport::Udp {
                match (native, translated) {
                    (Some(base), _) | (None, Some((base, _))) => base,
                    (None, None) => continue,
                }
            } else {
                match self.open_turn_stream(&turn).await {
                    Ok(local) => local,
                    Err(error) => {
                        self.emit(ConnectionEvent::RelayUnreachable { server, error });
                        continue;
                    }
                }
            };
            let now = self.clock.now();
            // Fails only past MAX_RELAYS servers (the CLI refuses more); those are skipped.
            let _ = self.agent.add_turn_server(now, base, turn);
        }
        if self.portmap {
            self.start_portmap();
        }
        if self.watch_network {
            self.netwatch = Some(crate::netwatch::spawn());
        }
        self.agent.gather(now);
        self.give_up_at = self.deadline_from_now();
        let mut idle_timer_wakes = 0u32;
        loop {
            let progressed = self.drain().await?;
            let mut wake_at = self.agent.poll_timeout().map(|d| self.clock.deadline(d.at));
            // A deadline in the past that produced nothing must not spin the CPU.
            if !progressed && idle_timer_wakes > 2 {
                let floor = std::time::Instant::now() + Duration::from_millis(1);
                wake_at = wake_at.map(|w| w.max(floor));
            }
            let mut wake_at = wake_at.map(tokio::time::Instant::from_std);
            if let Some(g) = self.give_up_at {
                wake_at = Some(wake_at.map_or(g, |w| w.min(g)));
            }
            let far = tokio::time::Instant::now() + Duration::from_secs(3600);
            let sleep = tokio::time::sleep_until(wake_at.unwrap_or(far));
            let wake = {
                let sockets = &self.sockets;
                let buf = &mut self.buf;
                let rotate = &mut self.rotate;
                let signalling = &mut self.signalling;
                let relay_sends = &mut self.relay_sends;
                let turn_frames = &mut self.turn_frames;
                let portmap = self.portmapper.as_mut().map(|p| &mut p.events);
                let netwatch = self.netwatch.as_mut();
                tokio::select! {
                    Some(e) = recv_some(portmap) => Wake::Portmap(e),
                    Some(()) = recv_some(netwatch) => Wake::NetworkChanged,
                    command = self.commands.recv() => Wake::Command(command),
                    Some(d) = relay_sends.recv() => Wake::RelaySend(d),
                    Some(f) = turn_frames.recv() => Wake::RelayFrame(f),
                    (i, from, n) = recv_any(sockets, buf, rotate) => Wake::Datagram(i, from, n),
                    line = signalling.recv(), if self.signalling_open => Wake::Line(line),
                    () = sleep => Wake::Timer,
                }
            };
            idle_timer_wakes = match wake {
                Wake::Timer if !progressed => idle_timer_wakes + 1,
                _ => 0,
            };
            let now_core = self.clock.now();
            match wake {
                Wake::Timer => {}
                Wake::Datagram(i, from, n) => self.datagram(now_core, i, from, n),
                Wake::Line(Ok(Some(line))) => self.remote_line(now_core, &line),
                Wake::Line(Ok(None)) => self.signalling_closed(None),
                Wake::Line(Err(e)) => self.signalling_closed(Some(e)),
                Wake::Command(Some(Command::Finish(ack))) => {
                    let result = self.send_line(EOF_LINE).await;
                    let _ = ack.send(result);
                }
                Wake::Command(Some(Command::Restart(ack))) => {
                    let result = self.restart(now_core, RestartReason::Requested).await;
                    let _ = ack.send(result);
                }
                Wake::Command(Some(Command::MappingLifetime(lifetime, ack))) => {
                    let _ = ack.send(self.agent.set_mapping_lifetime(lifetime));
                }
                // The connection was dropped: release the relay allocation (RFC 8656 §7.3)
                // rather than leave it to expire, then end.
                Wake::Command(None) => {
                    self.agent.close(now_core);
                    while let Some(t) = self.agent.poll_transmit(now_core, &mut self.out) {
                        self.transmit(t).await;
                    }
                    return Ok(());
                }
                Wake::RelaySend(d) => self.send_relayed(now_core, &d).await,
                Wake::RelayFrame(TurnFrame {
                    local,
                    server,
                    frame: Some(frame),
                }) => self.deliver(now_core, local, server, &frame),
                Wake::Portmap(event) => self.portmap_event(now_core, event),
                Wake::NetworkChanged => self.network_changed(now_core).await,
                Wake::RelayFrame(TurnFrame { server, local, .. }) => {
                    self.turn_streams.retain(|s| s.local != local);
                    let error = io::Error::new(io::ErrorKind::ConnectionAborted, "closed");
                    self.emit(ConnectionEvent::RelayUnreachable { server, error });
                }
            }
            if let Some(ufrag) = self.peer_restarted.take() {
                // Lost lines are not fatal here: the old path goes on until consent says no.
                let _ = self.restart(now_core, RestartReason::PeerRestarted).await;
                self.remote_ufrag = Some(ufrag);
            }
            self.agent.handle_timeout(now_core);
            if self.path.is_none()
                && self
                    .give_up_at
                    .is_some_and(|g| tokio::time::Instant::now() >= g)
            {
                let limit = self.connect_timeout.unwrap_or_default();
                return Err(ConnectError::TimedOut(limit));
            }
        }
    }

    /// Drains the agent's actions, transmits and events; whether there was any.
    async fn drain(&mut self) -> Result<bool, ConnectError> {
        let mut any = false;
        loop {
            let now = self.clock.now();
            let mut progressed = false;
            while let Some(action) = self.agent.poll_action() {
                progressed = true;
                if let Action::BindSockets { token, count, ip } = action {
                    self.bind_extra(token, count, ip);
                }
            }
            while let Some(t) = self.agent.poll_transmit(now, &mut self.out) {
                progressed = true;
                self.transmit(t).await;
            }
            while let Some(event) = self.agent.poll_event() {
                progressed = true;
                match event {
                    Event::Ice(e) => self.ice_event(e).await?,
                    Event::Relay(e) => self.emit(ConnectionEvent::Relay(e)),
                    _ => {}
                }
            }
            if !progressed {
                return Ok(any);
            }
            any = true;
        }
    }

    async fn ice_event(&mut self, event: IceEvent) -> Result<(), ConnectError> {
        match event {
            IceEvent::LocalCandidate(c) => {
                let mut line = String::new();
                let _ = offer::write_candidate(&mut line, &c);
                self.signal(line.trim_end()).await?;
                self.signalled += 1;
                self.emit(ConnectionEvent::LocalCandidate(c));
            }
            IceEvent::GatheringComplete => {
                let mut line = String::new();
                let _ = offer::write_end(&mut line);
                self.signal(line.trim_end()).await?;
                self.emit(ConnectionEvent::GatheringComplete {
                    candidates: self.signalled,
                });
            }
            IceEvent::Checking => self.emit(ConnectionEvent::Checking),
            IceEvent::Connected(p) | IceEvent::PathChanged(p) => {
                let first = !self.had_path();
                self.select(p);
                self.emit(if first {
                    ConnectionEvent::Connected(p)
                } else {
                    ConnectionEvent::PathChanged(p)
                });
            }
            IceEvent::ConsentLost(p) => {
                self.path = None;
                self.route.send_replace(None);
                self.give_up_at = self.deadline_from_now();
                self.emit(ConnectionEvent::ConsentLost(p));
                if self.restart_on_consent_loss && self.signalling_open {
                    // Lost lines are not fatal: the search goes on until the timeout.
                    let now = self.clock.now();
                    let _ = self.restart(now, RestartReason::ConsentLost).await;
                }
            }
            IceEvent::Failed if self.path.is_none() => return Err(ConnectError::NoPath),
            IceEvent::RoleChanged { controlling } => {
                self.emit(ConnectionEvent::RoleChanged { controlling });
            }
            IceEvent::BlindPunching { hard, easy } => {
                self.emit(ConnectionEvent::BlindPunching { hard, easy });
            }
            IceEvent::KeepaliveInterval(interval) => {
                self.emit(ConnectionEvent::KeepaliveInterval(interval));
            }
            _ => {}
        }
        Ok(())
    }

    /// A new selected path: route sends over it, deliver what its remote sent early.
    fn select(&mut self, p: PathInfo) {
        self.path = Some(p);
        self.give_up_at = None;
        // A relayed path's local address is the relay's: its datagrams leave through the
        // socket the allocation was made on, wrapped by the task.
        let socket = self
            .by_local
            .get(&p.local)
            .copied()
            .or_else(|| (p.local_kind == CandidateKind::Relayed).then_some(0));
        if let Some(i) = socket {
            self.route.send_replace(Some(Route {
                path: p,
                socket: Arc::clone(&self.sockets[i]),
            }));
        }
        self.peers.retain(|a| *a != p.remote);
        self.peers.push_front(p.remote);
        self.peers.truncate(PEER_ADDRESSES);
        for (from, d) in std::mem::take(&mut self.early) {
            if self.peers.contains(&from) {
                let _ = self.data.try_send(d);
            }
        }
    }

    /// Sends what the agent wrote into `out`: from a host socket (the one `from` names, or the
    /// first of the destination's family), or as a frame on the TCP or TLS connection to a
    /// TURN server whose local end `from` is.
    async fn transmit(&mut self, t: holepunch_core::Transmit) {
        if let Some(stream) = t
            .from
            .and_then(|f| self.turn_streams.iter().find(|s| s.local == f))
        {
            // A full queue drops the frame rather than stall the session.
            if stream.frames.try_send(self.out[..t.len].to_vec()).is_err() {
                tracing::debug!(to = %t.to, "TURN stream queue full: frame dropped");
            }
            return;
        }
        let socket = t
            .from
            .and_then(|a| self.by_local.get(&a).copied())
            .or_else(|| {
                self.locals
                    .iter()
                    .position(|l| l.is_ipv4() == t.to.is_ipv4())
            });
        if let Some(i) = socket {
            // Not `try_send_to`: it trusts tokio's readiness cache, which a new socket
            // fills only after the reactor's first poll, so the first datagrams would
            // be dropped as `WouldBlock`. On a writable socket this completes at once.
            // An error (unreachable address) is a lost datagram: ICE retries.
            if let Err(e) = self.sockets[i].send_to(&self.out[..t.len], t.to).await {
                tracing::trace!(to = %t.to, error = %e, "transmit lost on send");
            }
        }
    }

    /// Starts the port-mapping thread for the first IPv4 host socket. No gateway (no default
    /// route): nothing starts.
    fn start_portmap(&mut self) {
        let Some(&base) = self
            .locals
            .iter()
            .find(|l| l.is_ipv4() && !l.ip().is_loopback())
        else {
            return;
        };
        let Ok(gateway) = default_gateway() else {
            return;
        };
        let gateway = IpAddr::V4(gateway);
        let options = PortmapOptions {
            gateway: Some(gateway),
            port: base.port(),
            lifetime: PORTMAP_LIFETIME,
            protocols: Protocols::ALL,
        };
        let (tx, events) = mpsc::channel(16);
        let Ok(stop) = spawn_auto(options, move |e| {
            let _ = tx.blocking_send(*e);
        }) else {
            return;
        };
        self.portmapper = Some(Portmapper {
            events,
            stop,
            base,
            gateway,
        });
    }

    /// A port-mapping event: a (new) mapped address becomes a candidate.
    fn portmap_event(&mut self, now: holepunch_core::Instant, event: PortmapEvent) {
        let Some(p) = self.portmapper.as_ref() else {
            return;
        };
        let (base, gateway) = (p.base, p.gateway);
        match event {
            PortmapEvent::Mapped { external, .. }
            | PortmapEvent::ExternalAddressChanged { external } => {
                let _ = self.agent.add_port_mapping(now, external, base, gateway);
            }
            // No gateway that maps (the common case), or it stopped: nothing to signal.
            _ => {}
        }
    }

    /// Connects to a TURN server over TCP (and TLS, verifying its certificate) and starts its
    /// reader and writer tasks; returns the connection's local address (the allocation's base).
    async fn open_turn_stream(&mut self, turn: &TurnConfig) -> io::Result<SocketAddr> {
        let server = turn.server;
        let stream = tokio::time::timeout(TURN_TCP_CONNECT, TcpStream::connect(server))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TCP connect timed out"))??;
        // Small frames (checks, consent) must not wait for Nagle.
        stream.set_nodelay(true)?;
        let local = stream.local_addr()?;
        match turn.transport {
            TurnTransport::Tcp => self.spawn_turn_stream(stream, local, server),
            TurnTransport::Tls => {
                let config = match &self.turn_tls {
                    Some(c) => Arc::clone(c),
                    None => {
                        let c = self.turn_trust.client_config()?;
                        self.turn_tls = Some(Arc::clone(&c));
                        c
                    }
                };
                let name = turn.tls_name.as_deref();
                let tls = turn_tls::connect(config, stream, server, name).await?;
                self.spawn_turn_stream(tls, local, server);
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not a stream transport",
                ));
            }
        }
        Ok(local)
    }

    /// Starts the reader and writer tasks of a connection to a TURN server.
    fn spawn_turn_stream<T: AsyncRead + AsyncWrite + Send + 'static>(
        &mut self,
        stream: T,
        local: SocketAddr,
        server: SocketAddr,
    ) {
        let (reader, mut writer) = tokio::io::split(stream);
        let frames_out = self.turn_frames_tx.clone();
        tokio::spawn(async move {
            let mut frames = FrameReader::new(reader);
            while let Ok(Some(frame)) = frames.next().await {
                let f = TurnFrame {
                    local,
                    server,
                    frame: Some(frame),
                };
                if frames_out.send(f).await.is_err() {
                    return;
                }
            }
            let closed = TurnFrame {
                local,
                server,
                frame: None,
            };
            let _ = frames_out.send(closed).await;
        });
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(TURN_TCP_QUEUE);
        tokio::spawn(async move {
            while let Some(frame) = rx.recv().await {
                if writer.write_all(&frame).await.is_err() {
                    return;
                }
                // TLS holds records until flushed (TCP's flush is free); a burst shares one.
                if rx.is_empty() && writer.flush().await.is_err() {
                    return;
                }
            }
        });
        self.turn_streams.push(TurnStream { local, frames: tx });
    }

    /// Application data for the selected path, which is relayed: the agent wraps it for the
    /// TURN server.
    async fn send_relayed(&mut self, now: holepunch_core::Instant, datagram: &[u8]) {
        // Lost when it cannot be wrapped, as a datagram the relay dropped would be.
        if let Ok(t) = self.agent.send(now, datagram, &mut self.out) {
            self.transmit(t).await;
        }
    }

    fn datagram(&mut self, now: holepunch_core::Instant, i: usize, from: SocketAddr, n: usize) {
        // Moved out and back (no copy): `deliver` needs `&mut self` beside the bytes.
        let buf = std::mem::take(&mut self.buf);
        self.deliver(now, self.locals[i], from, &buf[..n]);
        self.buf = buf;
    }

    /// Feeds bytes that arrived on `local` from `from` (a host socket's datagram, or a frame
    /// from a TURN server's TCP connection) to the relays, then the agent; delivers
    /// application data.
    fn deliver(
        &mut self,
        now: holepunch_core::Instant,
        local: SocketAddr,
        from: SocketAddr,
        bytes: &[u8],
    ) {
        let Received::AppData { from, payload } = self
            .agent
            .handle_datagram(now, Datagram::new(local, from, bytes))
        else {
            return;
        };
        let known = self.peers.contains(&from);
        if known || (self.path.is_some() && self.agent.is_authenticated_remote(from)) {
            if !known {
                // The peer moved to a pair we have not selected yet (it nominated first): its
                // data is as authentic as the checks that proved the pair.
                self.peers.push_back(from);
            }
            // A full queue drops the datagram, as a full socket buffer would.
            let _ = self.data.try_send(payload.to_vec());
        } else if self.path.is_none() && self.early.len() < EARLY_DATAGRAMS {
            self.early.push_back((from, payload.to_vec()));
        }
    }

    fn remote_line(&mut self, now: holepunch_core::Instant, line: &str) {
        let line = line.trim();
        if line == EOF_LINE {
            if !std::mem::replace(&mut self.peer_finished, true) {
                self.emit(ConnectionEvent::PeerFinished);
            }
            return;
        }
        match OfferLine::parse(line) {
            Ok(OfferLine::Ufrag(u)) if self.remote_ufrag.is_none() => {
                self.remote_ufrag = Some(u.to_owned());
            }
            // A new ufrag once the session runs: the peer restarted (RFC 8445 §9.1.1.1).
            Ok(OfferLine::Ufrag(u))
                if self.remote_credentials_set && self.remote_ufrag.as_deref() != Some(u) =>
            {
                self.peer_restarted = Some(u.to_owned());
            }
            Ok(OfferLine::Pwd(p)) if self.remote_pwd.is_none() => {
                self.remote_pwd = Some(p.to_owned());
            }
            Ok(OfferLine::Candidate(c)) => self.remote_candidate(now, c),
            Ok(OfferLine::EndOfCandidates) => self.agent.end_of_remote_candidates(),
            // Unknown attributes, TCP candidates, malformed lines, a second set of
            // credentials: not ours to act on.
            _ => {}
        }
        if !self.remote_credentials_set {
            if let (Some(u), Some(p)) = (&self.remote_ufrag, &self.remote_pwd) {
                if let Ok(credentials) = IceCredentials::new(u, p) {
                    self.agent.set_remote_credentials(&credentials);
                    self.remote_credentials_set = true;
                }
            }
        }
    }

    fn remote_candidate(&mut self, now: holepunch_core::Instant, c: Candidate) {
        // A full table (a peer signalling dozens of candidates) drops the extras.
        if self.agent.add_remote_candidate(now, c).is_ok() {
            self.emit(ConnectionEvent::RemoteCandidate(c));
        }
    }

    /// Restarts the agent, forgets the peer's credentials and signals our new ones (our
    /// candidates follow as the agent re-reports them).
    async fn restart(
        &mut self,
        now: holepunch_core::Instant,
        reason: RestartReason,
    ) -> io::Result<()> {
        self.agent.restart(now);
        self.emit(ConnectionEvent::Restarted(reason));
        self.remote_ufrag = None;
        self.remote_pwd = None;
        self.remote_credentials_set = false;
        self.signalled = 0;
        let credentials = *self.agent.local_credentials();
        let mut lines = String::new();
        let _ = offer::write_ufrag(&mut lines, credentials.ufrag());
        let _ = offer::write_pwd(&mut lines, credentials.pwd());
        for line in lines.lines() {
            self.send_line(line).await?;
        }
        Ok(())
    }

    /// The OS reported a network change: binds sockets on new host addresses (host candidates),
    /// tells the agent, and restarts ICE when the selected direct path's local address left.
    async fn network_changed(&mut self, now: holepunch_core::Instant) {
        // Unrelated churn must not reset the probe budget (`Agent::network_changed`).
        let snapshot = network_snapshot(&self.watched, &self.stun_servers);
        if snapshot == self.network_seen {
            return;
        }
        self.network_seen = snapshot;
        let mut current: Vec<SocketAddr> = Vec::new();
        for w in &self.watched {
            for ip in route_ips(w.is_ipv4(), &self.stun_servers) {
                if !current.iter().any(|c| c.ip() == ip) {
                    current.push(SocketAddr::new(ip, w.port()));
                }
            }
        }
        let mut added = Vec::new();
        for want in &current {
            if self.locals.iter().any(|l| l.ip() == want.ip()) {
                continue;
            }
            // The port asked for, if it is free on the new address; any port otherwise.
            let socket = match UdpSocket::bind(*want).await {
                Ok(s) => s,
                Err(_) if want.port() != 0 => {
                    match UdpSocket::bind(SocketAddr::new(want.ip(), 0)).await {
                        Ok(s) => s,
                        Err(_) => continue,
                    }
                }
                Err(_) => continue,
            };
            let Ok(addr) = socket.local_addr() else {
                continue;
            };
            self.by_local.insert(addr, self.sockets.len());
            self.sockets.push(Arc::new(socket));
            self.locals.push(addr);
            // Only a full candidate table fails: the address is then not offered.
            let _ = self.agent.add_host_candidate(now, addr);
            added.push(addr);
        }
        self.agent.network_changed(now);
        self.emit(ConnectionEvent::NetworkChanged { added });
        // The path's socket is bound to an address this host no longer has: nothing it sends
        // arrives, and the peer learns that our new address's pairs are better only through a
        // restart. With no address at all yet, wait for the next change (or consent).
        let path_gone = self.path.is_some_and(|p| {
            let routed = current.iter().any(|c| c.is_ipv4() == p.local.is_ipv4());
            !p.relayed && routed && !crate::netwatch::interface_ips().contains(&p.local.ip())
        });
        if path_gone && self.signalling_open {
            // Lost lines are not fatal: the old path goes on until consent says no.
            let _ = self.restart(now, RestartReason::NetworkChanged).await;
        }
    }

    /// Opens `count` sockets on `ip` (the agent names its host base) for hard-NAT punching.
    fn bind_extra(&mut self, token: IoToken, count: u16, ip: IpAddr) {
        let mut bound = Vec::with_capacity(usize::from(count));
        for socket in bind_extra_sockets(ip, count).unwrap_or_default() {
            let socket = socket
                .set_nonblocking(true)
                .and_then(|()| UdpSocket::from_std(socket));
            let Ok(socket) = socket else { break };
            let Ok(addr) = socket.local_addr() else { break };
            self.by_local.insert(addr, self.sockets.len());
            self.sockets.push(Arc::new(socket));
            self.locals.push(addr);
            bound.push(addr);
        }
        // Fewer than asked is fine: it only lowers the odds.
        self.agent
            .handle_io(self.clock.now(), token, IoResult::SocketsBound(&bound));
    }

    /// The IPv6 host socket and synthesised address an IPv4 `server` is reached at through the
    /// NAT64, when there is a prefix ([`EndpointConfig::nat64_prefix`]).
    fn through_nat64(&self, server: SocketAddr) -> Option<(SocketAddr, SocketAddr)> {
        let synthesised = self.nat64_prefix?.synthesize_socket(server)?;
        let base = self
            .locals
            .iter()
            .find(|l| l.is_ipv6() && !l.ip().is_loopback())?;
        Some((*base, synthesised))
    }

    /// Sends a line; before the first path a failure ends the session.
    async fn signal(&mut self, line: &str) -> Result<(), ConnectError> {
        match self.send_line(line).await {
            Err(e) if !self.had_path() => Err(ConnectError::Signalling(e)),
            _ => Ok(()),
        }
    }

    async fn send_line(&mut self, line: &str) -> io::Result<()> {
        if self.signalling_failed {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "signalling is closed",
            ));
        }
        let result = self.signalling.send(line).await;
        if let Err(e) = &result {
            self.signalling_failed = true;
            if self.had_path() {
                let copy = io::Error::new(e.kind(), e.to_string());
                self.signalling_closed(Some(copy));
            }
        }
        result
    }

    fn signalling_closed(&mut self, error: Option<io::Error>) {
        if self.signalling_open {
            self.signalling_open = false;
            self.emit(ConnectionEvent::SignallingClosed(error));
        }
    }

    /// Whether a path was ever selected (`select` records every path's remote in `peers`).
    fn had_path(&self) -> bool {
        !self.peers.is_empty()
    }

    fn deadline_from_now(&self) -> Option<tokio::time::Instant> {
        self.connect_timeout
            .map(|d| tokio::time::Instant::now() + d)
    }

    fn emit(&self, event: ConnectionEvent) {
        tracing::debug!(?event, "connection event");
        // Nobody listening (the connection is being dropped) is fine.
        let _ = self.events.send(event);
    }
}

/// The next datagram on any socket: `(socket index, sender, length)`, into `buf`. Sockets are
/// polled round-robin from `rotate` so a busy one cannot starve the others.
/// The next item of `rx`, or never when there is none (a disabled `select!` branch).
async fn recv_some<T>(rx: Option<&mut mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn recv_any(
    sockets: &[Arc<UdpSocket>],
    buf: &mut [u8],
    rotate: &mut usize,
) -> (usize, SocketAddr, usize) {
    poll_fn(|cx| {
        let n = sockets.len();
        for k in 0..n {
            let i = (*rotate + k) % n;
            loop {
                let mut read = ReadBuf::new(buf);
                match sockets[i].poll_recv_from(cx, &mut read) {
                    Poll::Ready(Ok(from)) => {
                        *rotate = i + 1;
                        return Poll::Ready((i, from, read.filled().len()));
                    }
                    // An ICMP report consumed: look again.
                    Poll::Ready(Err(e)) if is_transient(&e) => continue,
                    // A broken socket: skip it (it registered no wake-up, so it cannot spin).
                    Poll::Ready(Err(_)) | Poll::Pending => break,
                }
            }
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod gather_tests {
    use super::*;

    #[test]
    fn only_global_and_unique_local_ipv6_addresses_are_gathered() {
        let ok = |s: &str| gatherable_v6(s.parse().expect("address"));
        assert!(ok("2001:db8:64::2"));
        assert!(ok("fd12:3456::1"));
        for bad in [
            "::1",
            "::",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "::ffff:1.2.3.4",
            "::1.2.3.4",
        ] {
            assert!(!ok(bad), "{bad}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signalling::ChannelSignalling;

    const LIMIT: Duration = Duration::from_secs(10);

    fn loopback_config() -> EndpointConfig {
        let mut config = EndpointConfig::aggressive();
        config.connect_timeout = Some(Duration::from_secs(8));
        config
    }

    async fn endpoint() -> Endpoint {
        Endpoint::bind(&["127.0.0.1:0".parse().expect("addr")], loopback_config())
            .await
            .expect("bind")
    }

    #[tokio::test]
    async fn two_endpoints_connect_and_exchange_datagrams() {
        let (sa, sb) = ChannelSignalling::pair();
        let (a, b) = (endpoint().await, endpoint().await);
        let (a, b) = tokio::time::timeout(LIMIT, async {
            tokio::join!(a.connect(sa, true), b.connect(sb, false))
        })
        .await
        .expect("connect within the limit");
        let (a, b) = (a.expect("a connects"), b.expect("b connects"));
        let (pa, pb) = (a.path().expect("a path"), b.path().expect("b path"));
        assert!(!pa.relayed && !pb.relayed);
        assert_eq!(pa.local, pb.remote);
        a.send(b"hello").await.expect("send");
        b.send(b"world").await.expect("send");
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(LIMIT, b.recv(&mut buf))
            .await
            .expect("in time")
            .expect("recv");
        assert_eq!(&buf[..n], b"hello");
        let n = tokio::time::timeout(LIMIT, a.recv(&mut buf))
            .await
            .expect("in time")
            .expect("recv");
        assert_eq!(&buf[..n], b"world");
        assert_eq!(
            a.send(&[0x01, 2]).await.expect_err("STUN range").kind(),
            io::ErrorKind::InvalidInput
        );
        a.finish().await.expect("finish");
        let finished = tokio::time::timeout(LIMIT, async {
            while let Some(e) = b.next_event().await {
                if matches!(e, ConnectionEvent::PeerFinished) {
                    return true;
                }
            }
            false
        })
        .await
        .expect("in time");
        assert!(finished, "b hears that a finished");
    }

    #[tokio::test]
    async fn no_peer_times_out() {
        let (sa, _sb) = ChannelSignalling::pair();
        let mut config = loopback_config();
        config.connect_timeout = Some(Duration::from_millis(300));
        let a = Endpoint::bind(&["127.0.0.1:0".parse().expect("addr")], config)
            .await
            .expect("bind");
        let started = std::time::Instant::now();
        let err = tokio::time::timeout(LIMIT, a.connect(sa, true))
            .await
            .expect("in time")
            .expect_err("nobody answers");
        assert!(matches!(err, ConnectError::TimedOut(_)), "{err}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn unspecified_binds_expand_to_host_addresses() {
        let e = Endpoint::bind(&["0.0.0.0:0".parse().expect("addr")], loopback_config())
            .await
            .expect("bind");
        assert!(!e.host_addrs().is_empty());
        assert!(
            e.host_addrs()
                .iter()
                .all(|a| a.is_ipv4() && !a.ip().is_unspecified())
        );
        let twice: SocketAddr = "0.0.0.0:0".parse().expect("addr");
        let e2 = Endpoint::bind(&[twice, twice], loopback_config())
            .await
            .expect("bind");
        assert_eq!(
            e2.host_addrs().len(),
            e.host_addrs().len(),
            "no duplicate sockets"
        );
        let with_local_stun = host_ips(true, &["127.0.0.1:3478".parse().expect("addr")]);
        assert!(with_local_stun.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)));
    }
}
