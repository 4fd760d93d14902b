//! The TURN relay's I/O: pumps [`holepunch_core::turn::Server`] with a UDP listener, a TCP
//! listener on the same port, an optional TLS listener (TCP framing inside a rustls session),
//! and one UDP socket per allocation on the relay IP.
//!
//! One task owns the server and every socket's sending side; readers (the TCP connections and
//! the relayed sockets) hand it what they receive through one bounded channel, so a flood
//! back-pressures the readers instead of growing memory. Limits: `max_connections` TCP clients,
//! frames no longer than [`MAX_FRAME_LEN`], a TCP write queue of [`TCP_QUEUE`] frames per
//! connection (a client that does not read loses data, as over UDP), and TLS handshakes within
//! [`turn_tls::TLS_HANDSHAKE`] (a connection that does not finish one is closed).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use holepunch_core::turn::channel::MAX_FRAME_LEN;
use holepunch_core::turn::{Server, ServerAction, ServerConfig, ServerStats, Transport, Via};
use holepunch_std::Clock;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_rustls::TlsAcceptor;

use crate::frames::FrameReader;
use crate::turn_tls;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Frames queued for one TCP client before further ones are dropped.
pub const TCP_QUEUE: usize = 256;
/// Datagrams and frames waiting for the server task before readers wait.
const INBOX: usize = 4096;

/// What `holepunch relay` serves.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// UDP and TCP listening address.
    pub listen: SocketAddr,
    /// The IP relayed sockets are bound to (and advertised in XOR-RELAYED-ADDRESS).
    pub relay_ip: IpAddr,
    /// The allocation table's policy and limits.
    pub server: ServerConfig,
    /// Most TCP and TLS clients at once; further connections are closed at once.
    pub max_connections: usize,
    /// A TLS listener besides UDP and TCP (`None`: no TLS).
    pub tls: Option<RelayTls>,
}

/// The relay's TLS listener: where, and with which certificate.
#[derive(Clone, Debug)]
pub struct RelayTls {
    /// The TCP address TLS clients connect to (5349 is the standard port; port 0 picks one).
    pub listen: SocketAddr,
    /// The certificate chain and key (see [`turn_tls::server_config`]).
    pub config: Arc<rustls::ServerConfig>,
}

impl RelayConfig {
    /// A relay on `listen` relaying from `relay_ip` with `server`'s policy.
    pub fn new(listen: SocketAddr, relay_ip: IpAddr, server: ServerConfig) -> Self {
        RelayConfig {
            listen,
            relay_ip,
            server,
            max_connections: 1024,
            tls: None,
        }
    }
}

/// A running relay.
#[derive(Debug)]
pub struct RelayHandle {
    local_addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    stats: watch::Receiver<ServerStats>,
    task: JoinHandle<io::Result<()>>,
}

impl RelayHandle {
    /// The bound UDP and TCP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The bound TLS address, when the relay has a TLS listener.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// The server's counters, as of its last input.
    pub fn stats(&self) -> ServerStats {
        *self.stats.borrow()
    }

    /// Whether the relay stopped on its own (a listener failed).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops the relay, closing every socket, and returns the error it stopped with, if any.
    pub async fn shutdown(self) -> io::Result<()> {
        let _ = self.stop.send(true);
        self.task.await.map_err(io::Error::other)?
    }
}

/// Binds the listeners and starts relaying.
pub async fn serve_relay(config: RelayConfig) -> io::Result<RelayHandle> {
    let udp = UdpSocket::bind(config.listen).await?;
    let local_addr = udp.local_addr()?;
    let tcp = TcpListener::bind(local_addr).await?;
    let tls = match &config.tls {
        Some(t) => {
            let listener = TcpListener::bind(t.listen).await?;
            Some((listener, TlsAcceptor::from(Arc::clone(&t.config))))
        }
        None => None,
    };
    let tls_addr = match &tls {
        Some((l, _)) => Some(l.local_addr()?),
        None => None,
    };
    let mut server_config = config.server.clone();
    let unix_now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    server_config.unix_secs_at_zero = unix_now;
    server_config.policy.own.push(local_addr.ip());
    server_config.policy.own.push(config.relay_ip);
    if let Some(addr) = tls_addr {
        server_config.policy.own.push(addr.ip());
    }
    let server = Server::new(server_config, holepunch_std::os_seed());
    let (stop, stopped) = watch::channel(false);
    let (stats_tx, stats) = watch::channel(ServerStats::default());
    let relay = Relay {
        server,
        clock: Clock::new(),
        udp: Arc::new(udp),
        relay_ip: config.relay_ip,
        max_connections: config.max_connections,
        connections: HashMap::new(),
        relays: HashMap::new(),
        stats: stats_tx,
    };
    let task = tokio::spawn(relay.run(tcp, tls, stopped));
    Ok(RelayHandle {
        local_addr,
        tls_addr,
        stop,
        stats,
        task,
    })
}

/// What readers hand the server task.
enum Inbound {
    /// A datagram that reached a relayed socket.
    Peer {
        relayed: SocketAddr,
        from: SocketAddr,
        data: Vec<u8>,
    },
    /// A complete frame from a TCP or TLS client.
    Frame {
        from: SocketAddr,
        transport: Transport,
        data: Vec<u8>,
    },
    /// A TCP or TLS client went away (or never finished its TLS handshake).
    Closed { from: SocketAddr },
}

struct Connection {
    writer: mpsc::Sender<Vec<u8>>,
    task: JoinHandle<()>,
}

struct RelaySocket {
    socket: Arc<UdpSocket>,
    reader: JoinHandle<()>,
}

struct Relay {
    server: Server,
    clock: Clock,
    udp: Arc<UdpSocket>,
    relay_ip: IpAddr,
    max_connections: usize,
    connections: HashMap<SocketAddr, Connection>,
    relays: HashMap<SocketAddr, RelaySocket>,
    stats: watch::Sender<ServerStats>,
}

impl Relay {
    async fn run(
        mut self,
        tcp: TcpListener,
        tls: Option<(TcpListener, TlsAcceptor)>,
        mut stopped: watch::Receiver<bool>,
    ) -> io::Result<()> {
        let (inbox_tx, mut inbox) = mpsc::channel::<Inbound>(INBOX);
        let mut buf = vec![0u8; MAX_FRAME_LEN + 64];
        let mut out = vec![0u8; MAX_FRAME_LEN + 128];
        let udp = Arc::clone(&self.udp);
        let result = loop {
            let deadline = self
                .server
                .poll_timeout()
                .map(|t| self.clock.epoch() + t.since_epoch());
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = stopped.changed() => break Ok(()),
                r = udp.recv_from(&mut buf) => match r {
                    Ok((n, from)) => {
                        let now = self.clock.now();
                        self.server.handle_datagram(now, Via::Client(Transport::Udp), from, &buf[..n]);
                    }
                    // ICMP errors surface as failed receives on some systems: not fatal.
                    Err(e) if is_transient(&e) => continue,
                    Err(e) => break Err(e),
                },
                Some(msg) = inbox.recv() => self.handle_inbound(msg),
                r = tcp.accept() => match r {
                    Ok((stream, from)) => self.accept(stream, from, None, &inbox_tx),
                    Err(e) if is_transient(&e) => continue,
                    Err(e) => break Err(e),
                },
                r = accept_on(tls.as_ref().map(|(l, _)| l)) => match r {
                    Ok((stream, from)) => {
                        let acceptor = tls.as_ref().map(|(_, a)| a.clone());
                        self.accept(stream, from, acceptor, &inbox_tx);
                    }
                    Err(e) if is_transient(&e) => continue,
                    Err(e) => break Err(e),
                },
                () = sleep => {
                    let now = self.clock.now();
                    self.server.handle_timeout(now);
                }
            }
            self.drain(&inbox_tx, &mut out).await;
            self.stats.send_replace(self.server.stats());
        };
        for (_, c) in self.connections.drain() {
            c.task.abort();
        }
        for (_, r) in self.relays.drain() {
            r.reader.abort();
        }
        result
    }

    fn handle_inbound(&mut self, msg: Inbound) {
        let now = self.clock.now();
        match msg {
            Inbound::Peer {
                relayed,
                from,
                data,
            } => {
                self.server
                    .handle_datagram(now, Via::Relay(relayed), from, &data);
            }
            Inbound::Frame {
                from,
                transport,
                data,
            } => {
                self.server
                    .handle_datagram(now, Via::Client(transport), from, &data);
            }
            Inbound::Closed { from } => {
                if let Some(c) = self.connections.remove(&from) {
                    c.task.abort();
                }
                self.server.handle_connection_closed(now, from);
            }
        }
    }

    /// Starts serving an accepted TCP connection, after a TLS handshake when `tls` is given.
    fn accept(
        &mut self,
        stream: TcpStream,
        from: SocketAddr,
        tls: Option<TlsAcceptor>,
        inbox: &mpsc::Sender<Inbound>,
    ) {
        // Over the limit, or a second connection from one address (a TCP and a TLS one from the
        // same port): dropping the stream closes it.
        if self.connections.len() >= self.max_connections || self.connections.contains_key(&from) {
            return;
        }
        let _ = stream.set_nodelay(true);
        let (tx, rx) = mpsc::channel(TCP_QUEUE);
        let inbox = inbox.clone();
        let task = tokio::spawn(async move {
            match tls {
                None => serve_stream(stream, from, Transport::Tcp, &inbox, rx).await,
                Some(acceptor) => {
                    // The handshake runs here, not in the server task: a slow or hostile client
                    // delays no one else.
                    if let Ok(stream) = turn_tls::accept(&acceptor, stream).await {
                        serve_stream(stream, from, Transport::Tls, &inbox, rx).await;
                    }
                }
            }
            let _ = inbox.send(Inbound::Closed { from }).await;
        });
        self.connections
            .insert(from, Connection { writer: tx, task });
    }

    /// Carries out everything the server asked for, then sends what it queued.
    async fn drain(&mut self, inbox: &mpsc::Sender<Inbound>, out: &mut [u8]) {
        for _ in 0..64 {
            let mut progressed = false;
            while let Some(action) = self.server.poll_action() {
                progressed = true;
                match action {
                    ServerAction::BindRelay {
                        id,
                        ipv6,
                        even_port,
                    } => {
                        let bound = self.bind_relay(ipv6, even_port, inbox).await;
                        let now = self.clock.now();
                        self.server.handle_relay_bound(now, id, bound);
                    }
                    ServerAction::CloseRelay { relayed } => {
                        if let Some(r) = self.relays.remove(&relayed) {
                            r.reader.abort();
                        }
                    }
                    _ => {}
                }
            }
            while let Some(t) = self.server.poll_transmit(out) {
                progressed = true;
                let bytes = &out[..t.len];
                match t.via {
                    Via::Client(Transport::Udp) => {
                        let _ = self.udp.send_to(bytes, t.to).await;
                    }
                    Via::Client(_) => {
                        if let Some(c) = self.connections.get(&t.to) {
                            // A client that does not read loses frames rather than our memory.
                            let _ = c.writer.try_send(bytes.to_vec());
                        }
                    }
                    Via::Relay(relayed) => {
                        if let Some(r) = self.relays.get(&relayed) {
                            let _ = r.socket.send_to(bytes, t.to).await;
                        }
                    }
                }
            }
            if !progressed {
                return;
            }
        }
    }

    async fn bind_relay(
        &mut self,
        ipv6: bool,
        even_port: bool,
        inbox: &mpsc::Sender<Inbound>,
    ) -> Option<SocketAddr> {
        if ipv6 != self.relay_ip.is_ipv6() {
            return None;
        }
        // The OS picks ports at random: about half are even, so a few tries suffice.
        let mut bound = None;
        for _ in 0..16 {
            let socket = UdpSocket::bind(SocketAddr::new(self.relay_ip, 0))
                .await
                .ok()?;
            let addr = socket.local_addr().ok()?;
            if !even_port || addr.port() % 2 == 0 {
                bound = Some((socket, addr));
                break;
            }
        }
        let (socket, relayed) = bound?;
        let socket = Arc::new(socket);
        let reader = tokio::spawn(read_relayed(Arc::clone(&socket), relayed, inbox.clone()));
        self.relays.insert(relayed, RelaySocket { socket, reader });
        Some(relayed)
    }
}

thread_local! {
    /// One receive buffer per thread for every relayed socket's reader: a buffer each would
    /// cost 64 KiB per allocation (most of the relay's memory per allocation).
    static RELAYED_BUF: std::cell::RefCell<Vec<u8>> =
        std::cell::RefCell::new(vec![0u8; MAX_FRAME_LEN]);
}

async fn read_relayed(socket: Arc<UdpSocket>, relayed: SocketAddr, inbox: mpsc::Sender<Inbound>) {
    loop {
        if socket.readable().await.is_err() {
            return;
        }
        // No await while the shared buffer is borrowed.
        let got = RELAYED_BUF.with_borrow_mut(|buf| {
            socket
                .try_recv_from(buf)
                .map(|(n, from)| (from, buf[..n].to_vec()))
        });
        match got {
            Ok((from, data)) => {
                let msg = Inbound::Peer {
                    relayed,
                    from,
                    data,
                };
                if inbox.send(msg).await.is_err() {
                    return;
                }
            }
            Err(e) if is_transient(&e) => continue,
            Err(_) => return,
        }
    }
}

/// Serves one TCP or TLS client until either direction ends: splits what it sends into TURN
/// frames for the server task (anything that is not TURN ends it) and writes it what the server
/// queued.
async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    from: SocketAddr,
    transport: Transport,
    inbox: &mpsc::Sender<Inbound>,
    rx: mpsc::Receiver<Vec<u8>>,
) {
    let (reader, writer) = tokio::io::split(stream);
    tokio::select! {
        () = read_frames(reader, from, transport, inbox) => {}
        () = write_frames(writer, rx) => {}
    }
}

async fn read_frames<R: AsyncRead + Unpin>(
    reader: R,
    from: SocketAddr,
    transport: Transport,
    inbox: &mpsc::Sender<Inbound>,
) {
    let mut frames = FrameReader::new(reader);
    while let Ok(Some(data)) = frames.next().await {
        let frame = Inbound::Frame {
            from,
            transport,
            data,
        };
        if inbox.send(frame).await.is_err() {
            return;
        }
    }
}

async fn write_frames<W: AsyncWrite + Unpin>(mut writer: W, mut rx: mpsc::Receiver<Vec<u8>>) {
    while let Some(frame) = rx.recv().await {
        if writer.write_all(&frame).await.is_err() {
            return;
        }
        // TLS holds records until flushed; TCP's flush is free. Several queued frames go out
        // in one flush.
        if rx.is_empty() && writer.flush().await.is_err() {
            return;
        }
    }
}

/// The next connection on `listener`; never, when there is none.
async fn accept_on(listener: Option<&TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    ) || e.raw_os_error() == Some(24) // EMFILE: keep serving the sockets we have
}

/// How long the CLI waits between health checks of a running relay.
pub const HEALTH_INTERVAL: Duration = Duration::from_millis(500);
