//! The TURN relay's I/O: pumps [`holepunch_core::turn::Server`] with a UDP listener, a TCP
//! listener on the same port, an optional TLS listener (TCP framing inside a rustls session),
//! and one UDP socket per allocation on the relay IP.
//!
//! Two threads share the server behind one lock, each feeding it what it reads and sending
//! what that produced itself, so no packet is handed from one task or thread to another:
//! - the relay task reads the client-facing UDP socket (client to peer), takes TCP and TLS
//!   frames from the connection tasks, and runs the timers;
//! - a peer thread with its own runtime reads the relayed sockets (peer to client).
//!
//! Each drains its sockets until they would block (at most 64 datagrams per turn) before
//! waiting again, and sends what a turn produced together: consecutive datagrams from one
//! socket to one destination go out in one call with UDP segmentation offload. Limits:
//! `max_connections` TCP clients, frames no longer than [`MAX_FRAME_LEN`], a TCP write queue
//! of [`TCP_QUEUE`] frames per connection (a client that does not read loses data, as over
//! UDP), and TLS handshakes within [`turn_tls::TLS_HANDSHAKE`] (a connection that does not
//! finish one is closed).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use holepunch_core::turn::channel::MAX_FRAME_LEN;
use holepunch_core::turn::{Server, ServerAction, ServerConfig, ServerStats, Transport, Via};
use holepunch_std::Clock;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::frames::FrameReader;
use crate::turn_tls;

mod send;

use send::Outbox;

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
pub struct RelayHandle {
    local_addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    shared: Arc<Mutex<Shared>>,
    task: JoinHandle<io::Result<()>>,
}

impl std::fmt::Debug for RelayHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayHandle")
            .field("local_addr", &self.local_addr)
            .field("tls_addr", &self.tls_addr)
            .finish_non_exhaustive()
    }
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

    /// The server's counters, as of now.
    pub fn stats(&self) -> ServerStats {
        lock(&self.shared).server.stats()
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
    tracing::debug!(
        udp_tcp = %local_addr,
        tls = ?tls_addr,
        relay_ip = %config.relay_ip,
        "relay listening"
    );
    let peers = PeerThread::start()?;
    let udp = Arc::new(udp);
    let shared = Arc::new_cyclic(|me| {
        Mutex::new(Shared {
            server,
            clock: Clock::new(),
            udp: Arc::clone(&udp),
            relay_ip: config.relay_ip,
            peers: peers.handle.clone(),
            relays: HashMap::new(),
            connections: HashMap::new(),
            me: me.clone(),
        })
    });
    let (stop, stopped) = watch::channel(false);
    let relay = Relay {
        shared: Arc::clone(&shared),
        udp,
        max_connections: config.max_connections,
        peers,
    };
    let task = tokio::spawn(relay.run(tcp, tls, stopped));
    Ok(RelayHandle {
        local_addr,
        tls_addr,
        stop,
        shared,
        task,
    })
}

/// What the connection tasks hand the relay task.
enum Inbound {
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

/// What both threads touch: the allocation table and the sockets its outputs go to. The lock
/// is held while the server takes one input and its outputs are copied out, never across a
/// system call on the data path.
struct Shared {
    server: Server,
    clock: Clock,
    /// The client-facing UDP socket (the relay task reads it; both threads send on it).
    udp: Arc<UdpSocket>,
    relay_ip: IpAddr,
    /// The peer thread's runtime, where relayed sockets are registered and read.
    peers: Handle,
    relays: HashMap<SocketAddr, RelaySocket>,
    connections: HashMap<SocketAddr, Connection>,
    /// This value's own `Arc`, for the readers of the relayed sockets it binds.
    me: Weak<Mutex<Shared>>,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A panic while the lock was held leaves a consistent table: the server has no invariant
    // that spans two of its calls.
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Carries out one socket action of the server's.
    fn act(&mut self, action: ServerAction) {
        match action {
            ServerAction::BindRelay {
                id,
                ipv6,
                even_port,
            } => {
                let bound = self.bind_relay(ipv6, even_port);
                match bound {
                    Some(relayed) => tracing::debug!(%relayed, "allocation: relayed socket bound"),
                    None => tracing::debug!(ipv6, even_port, "allocation: no relayed socket"),
                }
                let now = self.clock.now();
                self.server.handle_relay_bound(now, id, bound);
            }
            ServerAction::CloseRelay { relayed } => {
                if let Some(r) = self.relays.remove(&relayed) {
                    tracing::debug!(%relayed, "allocation closed");
                    r.reader.abort();
                }
            }
            _ => {}
        }
    }

    /// Binds a relayed socket on the relay IP and starts its reader on the peer thread.
    fn bind_relay(&mut self, ipv6: bool, even_port: bool) -> Option<SocketAddr> {
        if ipv6 != self.relay_ip.is_ipv6() {
            return None;
        }
        // The OS picks ports at random: about half are even, so a few tries suffice.
        let mut bound = None;
        for _ in 0..16 {
            let socket = std::net::UdpSocket::bind(SocketAddr::new(self.relay_ip, 0)).ok()?;
            let addr = socket.local_addr().ok()?;
            if !even_port || addr.port() % 2 == 0 {
                bound = Some((socket, addr));
                break;
            }
        }
        let (socket, relayed) = bound?;
        socket.set_nonblocking(true).ok()?;
        let shared = self.me.upgrade()?;
        // Registered with the peer thread's reactor: its readiness wakes that thread only.
        let socket = {
            let _peers = self.peers.enter();
            Arc::new(UdpSocket::from_std(socket).ok()?)
        };
        let reader = self
            .peers
            .spawn(read_relayed(Arc::clone(&socket), relayed, shared));
        self.relays.insert(relayed, RelaySocket { socket, reader });
        Some(relayed)
    }
}

/// One thread's buffers for the data path, reused for every datagram (no allocation per
/// packet): the receive buffer and the outputs waiting to be sent.
struct Work {
    recv: Vec<u8>,
    outbox: Outbox,
}

thread_local! {
    /// One set of buffers per thread: every relayed socket's reader on the peer thread shares
    /// it (a receive buffer each would cost 64 KiB per allocation).
    static WORK: std::cell::RefCell<Work> = std::cell::RefCell::new(Work {
        recv: vec![0u8; MAX_FRAME_LEN + 64],
        outbox: Outbox::new(),
    });
}

/// Datagrams handled per wake-up before other work gets a turn.
const BATCH: usize = 64;

/// What a reader does after draining a socket.
enum Drained {
    /// The socket has nothing more now: wait for readiness.
    Empty,
    /// The batch ran out first: let others run, then continue.
    More,
    /// The socket failed: stop reading it.
    Failed(io::Error),
}

/// Reads up to [`BATCH`] datagrams from `socket` (arriving `via`) and relays them.
fn drain(socket: &UdpSocket, shared: &Mutex<Shared>, via: Via) -> Drained {
    WORK.with_borrow_mut(|w| {
        let Work { recv, outbox } = w;
        let mut drained = Drained::More;
        for _ in 0..BATCH {
            match socket.try_recv_from(recv) {
                Ok((n, from)) => {
                    outbox.take(shared, via, from, &recv[..n]);
                    if outbox.is_full() {
                        outbox.flush();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    drained = Drained::Empty;
                    break;
                }
                // ICMP errors surface as failed receives on some systems: not fatal.
                Err(e) if is_transient(&e) => {}
                Err(e) => {
                    drained = Drained::Failed(e);
                    break;
                }
            }
        }
        // What the batch produced goes out before the thread waits again.
        outbox.flush();
        drained
    })
}

/// The thread that reads the relayed sockets: the peer-to-client half of every round trip runs
/// there, the client-to-peer half on the relay task, so the relay uses two cores without
/// handing packets from one thread to the other (each thread feeds the shared server itself).
struct PeerThread {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    done: Option<oneshot::Receiver<()>>,
}

impl PeerThread {
    fn start() -> io::Result<PeerThread> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let (finished, done) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("relay-peers".into())
            .spawn(move || {
                // Ends when told to, or when the relay task is dropped with its runtime.
                runtime.block_on(async {
                    let _ = stopped.await;
                });
                // Dropping the runtime drops the readers and closes the relayed sockets.
                drop(runtime);
                let _ = finished.send(());
            })?;
        Ok(PeerThread {
            handle,
            stop: Some(stop),
            done: Some(done),
        })
    }

    /// Stops the thread and waits until its sockets are closed.
    async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            let _ = done.await;
        }
    }
}

struct Relay {
    shared: Arc<Mutex<Shared>>,
    udp: Arc<UdpSocket>,
    max_connections: usize,
    peers: PeerThread,
}

impl Relay {
    async fn run(
        mut self,
        tcp: TcpListener,
        tls: Option<(TcpListener, TlsAcceptor)>,
        mut stopped: watch::Receiver<bool>,
    ) -> io::Result<()> {
        let (inbox_tx, mut inbox) = mpsc::channel::<Inbound>(INBOX);
        let never = || tokio::time::Instant::now() + Duration::from_secs(365 * 86_400);
        let sleep = tokio::time::sleep_until(never());
        tokio::pin!(sleep);
        let mut armed = None;
        let result = loop {
            let deadline = lock(&self.shared).server.poll_timeout();
            if deadline != armed {
                armed = deadline;
                let at = match deadline {
                    Some(t) => {
                        let clock = lock(&self.shared).clock;
                        (clock.epoch() + t.since_epoch()).into()
                    }
                    None => never(),
                };
                sleep.as_mut().reset(at);
            }
            // Unbiased: a UDP flood does not starve TCP clients, nor the other way round.
            tokio::select! {
                _ = stopped.changed() => break Ok(()),
                r = self.udp.readable() => {
                    if let Err(e) = r {
                        break Err(e);
                    }
                    let via = Via::Client(Transport::Udp);
                    match drain(&self.udp, &self.shared, via) {
                        Drained::Empty | Drained::More => {}
                        Drained::Failed(e) => break Err(e),
                    }
                }
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
                () = &mut sleep => {
                    // Re-armed on the next turn, whatever the next deadline is.
                    armed = None;
                    WORK.with_borrow_mut(|w| {
                        let mut s = lock(&self.shared);
                        let now = s.clock.now();
                        s.server.handle_timeout(now);
                        w.outbox.collect(&mut s);
                        drop(s);
                        w.outbox.flush();
                    });
                }
            }
        };
        {
            let mut s = lock(&self.shared);
            for (_, c) in s.connections.drain() {
                c.task.abort();
            }
            for (_, r) in s.relays.drain() {
                r.reader.abort();
            }
        }
        self.peers.stop().await;
        result
    }

    fn handle_inbound(&mut self, msg: Inbound) {
        match msg {
            Inbound::Frame {
                from,
                transport,
                data,
            } => WORK.with_borrow_mut(|w| {
                w.outbox
                    .feed(&self.shared, Via::Client(transport), from, &data);
            }),
            Inbound::Closed { from } => WORK.with_borrow_mut(|w| {
                let mut s = lock(&self.shared);
                if let Some(c) = s.connections.remove(&from) {
                    c.task.abort();
                }
                let now = s.clock.now();
                s.server.handle_connection_closed(now, from);
                w.outbox.collect(&mut s);
                drop(s);
                w.outbox.flush();
            }),
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
        let mut s = lock(&self.shared);
        // Over the limit, or a second connection from one address (a TCP and a TLS one from the
        // same port): dropping the stream closes it.
        if s.connections.len() >= self.max_connections || s.connections.contains_key(&from) {
            tracing::debug!(%from, "stream connection refused: over the limit or a duplicate");
            return;
        }
        let _ = stream.set_nodelay(true);
        let (tx, rx) = mpsc::channel(TCP_QUEUE);
        let inbox = inbox.clone();
        let task = tokio::spawn(async move {
            match tls {
                None => serve_stream(stream, from, Transport::Tcp, &inbox, rx).await,
                Some(acceptor) => {
                    // The handshake runs here, not in the relay task: a slow or hostile client
                    // delays no one else.
                    match turn_tls::accept(&acceptor, stream).await {
                        Ok(stream) => {
                            serve_stream(stream, from, Transport::Tls, &inbox, rx).await;
                        }
                        Err(e) => tracing::debug!(%from, error = %e, "TLS handshake failed"),
                    }
                }
            }
            let _ = inbox.send(Inbound::Closed { from }).await;
        });
        s.connections.insert(from, Connection { writer: tx, task });
    }
}

/// Reads one relayed socket on the peer thread until it fails or its allocation goes (the
/// task is aborted then).
async fn read_relayed(socket: Arc<UdpSocket>, relayed: SocketAddr, shared: Arc<Mutex<Shared>>) {
    loop {
        if socket.readable().await.is_err() {
            return;
        }
        match drain(&socket, &shared, Via::Relay(relayed)) {
            Drained::Empty => {}
            Drained::More => tokio::task::yield_now().await,
            Drained::Failed(e) => {
                tracing::debug!(%relayed, error = %e, "relayed socket failed");
                return;
            }
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
