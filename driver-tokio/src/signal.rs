//! The `holepunch signal` rendezvous: a TCP line protocol that forwards offer lines between
//! named peers, with its server ([`serve_signal`]) and its client ([`SignalClient`], a
//! [`Signalling`]).
//!
//! # Protocol
//!
//! A connection carries lines of UTF-8 text ending in `\n` (a `\r` before it is dropped), at most
//! [`MAX_LINE`] bytes each without the ending. Client to server:
//!
//! | line | meaning |
//! | --- | --- |
//! | `register NAME [PROOF]` | must come first; the server answers `ok`, then every line queued for NAME |
//! | `to PEER TEXT` | forward TEXT to PEER, who receives `from NAME TEXT` |
//! | `ping` | the server answers `pong` (a keepalive for NATs that drop idle TCP) |
//!
//! Server to client: `ok`, `from NAME TEXT`, `pong`, `challenge NONCE`, and
//! `error REASON [DETAIL]`.
//!
//! # Claiming a name
//!
//! A server started with a secret ([`SignalServerConfig::secret`]) sends `challenge NONCE` as
//! soon as a connection is accepted, and `register` must carry PROOF: [`register_proof`], the
//! lowercase hex HMAC-SHA256 of the nonce and the name under the secret. A missing or wrong
//! proof gets `error bad-proof` and the connection is closed; the HMAC is checked in constant
//! time, and a nonce is never reused, so a proof seen on the wire cannot be replayed. Only a
//! proven owner of a name receives the lines queued for it. Without a secret anyone may take a
//! free name.
//!
//! # Limits
//!
//! A connection must register within [`SignalServerConfig::register_timeout`] (30 s) and is
//! closed after [`SignalServerConfig::idle_timeout`] (120 s) without a line from it
//! ([`SignalClient`] sends `ping` every [`KEEPALIVE`]); at most
//! [`SignalServerConfig::max_per_ip`] connections (64) come from one IPv4 address or IPv6 /64,
//! and [`SignalServerConfig::max_clients`] (1024) in all. A client that stops reading is
//! disconnected once [`OUTBOX`] lines or [`OUTBOX_BYTES`] bytes wait for it.
//!
//! - Names are 1 to [`MAX_NAME`] printable ASCII characters without spaces
//!   ([`is_valid_name`]), unique among connected clients.
//! - A line for a PEER that is not connected is queued until PEER registers: at most
//!   [`SignalServerConfig::queue_lines`] lines (256) and [`SignalServerConfig::queue_bytes`]
//!   (64 KiB) per recipient; beyond that the sender gets `error queue-full PEER` and the line is
//!   dropped. Queued lines are dropped when their sender disconnects: a peer that left has a
//!   stale offer.
//! - Lines reach each recipient in the order they were sent (queued ones first).
//! - Fatal errors close the connection after the error line: `error name-taken NAME` (a live
//!   client has it), `error bad-name`, `error already-registered`, `error not-registered`
//!   (anything but `register` or `ping` first), `error line-too-long`, `error bad-proof`,
//!   `error register-timeout`, `error idle-timeout`. Non-fatal:
//!   `error queue-full PEER`, `error bad-name PEER` (in `to`), `error unknown-command CMD`,
//!   `error bad-utf8`.
//!
//! ```text
//! alice> register alice          bob> register bob
//! alice< ok                      bob< ok
//! alice> to bob ice-ufrag:92zk   bob< from alice ice-ufrag:92zk
//! ```
//!
//! The server keeps no state beyond connected names and the bounded queues; it does not parse
//! TEXT, so any line protocol can ride on it.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hmac::{Hmac, Mac};
use holepunch_core::rng::Rng;
use holepunch_core::signal::{Line, LineSplitter, Notice, Request};
use sha2::Sha256;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::signalling::Signalling;
use tracing::Instrument;

pub use holepunch_core::signal::{MAX_LINE, MAX_NAME, is_valid_name};
/// Lines waiting to be written to one client before it counts as stuck and is disconnected.
pub const OUTBOX: usize = 1024;
/// Bytes waiting to be written to one client before it counts as stuck and is disconnected
/// (twice a full queue, which registering may flush at once).
pub const OUTBOX_BYTES: usize = 128 * 1024;
/// How often an idle [`SignalClient`] sends `ping`, well inside the server's idle timeout.
pub const KEEPALIVE: Duration = Duration::from_secs(30);
/// How long a closing connection is given to read its last error line (and to drain its
/// unread input, so the close does not turn into a reset that loses that line).
const LINGER: Duration = Duration::from_secs(1);

/// The PROOF of `register NAME PROOF` on a server with `secret`: lowercase hex of
/// HMAC-SHA256(secret, "holepunch-signal register\n" NONCE "\n" NAME), NONCE from the server's
/// `challenge` line.
pub fn register_proof(secret: &[u8], nonce: &str, name: &str) -> String {
    let mac = proof_mac(secret, nonce, name).finalize().into_bytes();
    mac.iter().map(|b| format!("{b:02x}")).collect()
}

fn proof_mac(secret: &[u8], nonce: &str, name: &str) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(b"holepunch-signal register\n");
    mac.update(nonce.as_bytes());
    mac.update(b"\n");
    mac.update(name.as_bytes());
    mac
}

/// Whether `proof` (hex) is [`register_proof`] for this secret, nonce and name; compared in
/// constant time.
fn proof_is_valid(secret: &[u8], nonce: &str, name: &str, proof: &str) -> bool {
    let Some(bytes) = decode_hex(proof) else {
        return false;
    };
    proof_mac(secret, nonce, name).verify_slice(&bytes).is_ok()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || s.len() > 128 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Limits of a [`serve_signal`] server.
#[derive(Clone, Debug)]
pub struct SignalServerConfig {
    /// The TCP address to listen on (port 0 picks a free one).
    pub listen: SocketAddr,
    /// Lines queued per absent recipient.
    pub queue_lines: usize,
    /// Bytes queued per absent recipient.
    pub queue_bytes: usize,
    /// Recipients with a queue at once.
    pub max_queues: usize,
    /// Connections at once; more are closed right after `accept`.
    pub max_clients: usize,
    /// Connections at once from one IPv4 address or one IPv6 /64; more are closed right after
    /// `accept`, so one source cannot take every slot.
    pub max_per_ip: usize,
    /// How long a new connection has to register before it is closed.
    pub register_timeout: Duration,
    /// How long a registered connection may stay silent (no line, not even `ping`).
    pub idle_timeout: Duration,
    /// When set, `register` must prove knowledge of this secret (see the module docs).
    pub secret: Option<Vec<u8>>,
}

impl SignalServerConfig {
    /// Defaults: 256 lines and 64 KiB per queue, 1024 queues, 1024 clients, 64 per source,
    /// 30 s to register (a lossy link can take 10 s to deliver one line), 120 s idle, no secret.
    pub fn new(listen: SocketAddr) -> Self {
        SignalServerConfig {
            listen,
            queue_lines: 256,
            queue_bytes: 64 * 1024,
            max_queues: 1024,
            max_clients: 1024,
            max_per_ip: 64,
            register_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            secret: None,
        }
    }
}

/// Binds `config.listen` and serves the protocol on a spawned task until
/// [`SignalServerHandle::shutdown`] (or until the handle is dropped). Must be called within a
/// tokio runtime.
pub async fn serve_signal(config: SignalServerConfig) -> io::Result<SignalServerHandle> {
    let listener = TcpListener::bind(config.listen).await?;
    let local_addr = listener.local_addr()?;
    let (stop, stopped) = watch::channel(false);
    let state = Arc::new(State {
        config,
        registry: Mutex::new(Registry::default()),
        sources: Mutex::new(HashMap::new()),
        nonces: Mutex::new(Rng::from_seed(holepunch_std::os_seed())),
    });
    tracing::debug!(%local_addr, "signal server listening");
    let task = tokio::spawn(accept_loop(listener, state, stopped));
    Ok(SignalServerHandle {
        local_addr,
        stop,
        task,
    })
}

/// A running [`serve_signal`] server. Dropping it stops the server without waiting.
#[derive(Debug)]
pub struct SignalServerHandle {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl SignalServerHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, closes every connection and waits for them (about a second at most).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// A [`Signalling`] over the rendezvous: registered as one name, talking to one peer. Lines
/// from other senders are ignored; an `error` line from the server is an error.
#[derive(Debug)]
pub struct SignalClient {
    stream: TcpStream,
    peer: String,
    reader: LineReader,
    /// When we last wrote a line: [`KEEPALIVE`] after it, `recv` sends `ping`.
    last_sent: tokio::time::Instant,
}

impl SignalClient {
    /// Connects to the server at `server`, registers as `id` and waits for `ok`; lines are then
    /// sent to and received from `peer`. The caller bounds the wait (e.g. with
    /// `tokio::time::timeout`). Fails against a server that requires a secret.
    pub async fn connect(server: SocketAddr, id: &str, peer: &str) -> io::Result<SignalClient> {
        Self::connect_with_secret(server, id, peer, None).await
    }

    /// [`connect`](Self::connect), proving knowledge of `secret` when it is given (see the
    /// module docs). With a secret, a server that checks none is an error: names there are
    /// first come, first served, which the caller asked not to rely on.
    pub async fn connect_with_secret(
        server: SocketAddr,
        id: &str,
        peer: &str,
        secret: Option<&[u8]>,
    ) -> io::Result<SignalClient> {
        for name in [id, peer] {
            if !is_valid_name(name) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "invalid name {name:?}: 1 to {MAX_NAME} printable ASCII characters without spaces"
                    ),
                ));
            }
        }
        let stream = connect_staggered(server).await?;
        tracing::debug!(%server, local = ?stream.local_addr(), id, peer, "signal server connected");
        stream.set_nodelay(true)?;
        let mut client = SignalClient {
            stream,
            peer: peer.to_owned(),
            // Forwarded lines carry a `from NAME ` prefix beyond MAX_LINE.
            reader: LineReader::new(MAX_LINE + MAX_NAME + 8),
            last_sent: tokio::time::Instant::now(),
        };
        let register = match secret {
            None => format!("register {id}\n"),
            Some(secret) => {
                // A server with a secret sends its challenge at once; one without answers the
                // ping with `pong`.
                client.stream.write_all(b"ping\n").await?;
                let first = client.first_line().await?;
                let nonce = match Notice::parse(&first) {
                    Notice::Challenge(nonce) => nonce,
                    Notice::Pong => {
                        return Err(io::Error::other(
                            "the signal server checks no secret: anyone can take a name there",
                        ));
                    }
                    other => return Err(server_error(other)),
                };
                format!("register {id} {}\n", register_proof(secret, nonce, id))
            }
        };
        client.stream.write_all(register.as_bytes()).await?;
        loop {
            let line = client.first_line().await?;
            match Notice::parse(&line) {
                Notice::Ok => {
                    tracing::debug!(id, "registered with the signal server");
                    return Ok(client);
                }
                Notice::Pong => {}
                Notice::Challenge(_) => {
                    return Err(io::Error::other(
                        "the signal server requires a secret (holepunch connect --signal-secret)",
                    ));
                }
                other => return Err(server_error(other)),
            }
        }
    }

    /// A line while registering: EOF or an over-long line is an error.
    async fn first_line(&mut self) -> io::Result<String> {
        match self.reader.read_line(&mut self.stream).await? {
            Some(line) => lossy(line).ok_or_else(too_long),
            None => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "signal server closed the connection",
            )),
        }
    }

    /// The peer this client talks to.
    pub fn peer(&self) -> &str {
        &self.peer
    }
}

impl Signalling for SignalClient {
    async fn send(&mut self, line: &str) -> io::Result<()> {
        let line = line.trim_end_matches(['\n', '\r']);
        if line.contains('\n') || line.len() + self.peer.len() + 4 > MAX_LINE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "signal line too long or multi-line",
            ));
        }
        let framed = format!("to {} {line}\n", self.peer);
        self.stream.write_all(framed.as_bytes()).await?;
        self.last_sent = tokio::time::Instant::now();
        Ok(())
    }

    async fn recv(&mut self) -> io::Result<Option<String>> {
        loop {
            // The deadline is kept in `last_sent`, not in a timer of this call, because callers
            // cancel `recv` whenever something else wakes them.
            let keepalive = tokio::time::sleep_until(self.last_sent + KEEPALIVE);
            let read = tokio::select! {
                read = self.reader.read_line(&mut self.stream) => read?,
                () = keepalive => {
                    // Five bytes into a socket with room: done in the first poll, so a
                    // cancelled `recv` does not leave half a line.
                    self.stream.write_all(b"ping\n").await?;
                    self.last_sent = tokio::time::Instant::now();
                    continue;
                }
            };
            let Some(line) = read else {
                return Ok(None);
            };
            let Some(line) = lossy(line) else {
                return Err(too_long());
            };
            match Notice::parse(&line) {
                Notice::From { name, text } if name == self.peer => {
                    return Ok(Some(text.to_owned()));
                }
                error @ Notice::Error(_) => return Err(server_error(error)),
                // `pong`, lines from anyone else, and lines of a newer server: not for us.
                _ => {}
            }
        }
    }
}

/// A fresh connection attempt starts this often while none has completed.
const CONNECT_STAGGER: Duration = Duration::from_millis(500);
/// The most connection attempts in flight at once.
const CONNECT_ATTEMPTS: usize = 6;

/// Opens a TCP connection to `server`, starting a new attempt every [`CONNECT_STAGGER`] while
/// none has completed (up to [`CONNECT_ATTEMPTS`]); the first to complete wins and the rest
/// are dropped.
///
/// On a lossy path the kernel resends a lost SYN 1 s, 3 s and 7 s after the first, and a
/// connection whose SYN was retransmitted starts with a 3 s retransmission timeout (RFC 6298
/// §5.7): two lost SYNs cost a single attempt seconds, long enough to sink an ICE session waiting
/// for the peer's candidates. Overlapping attempts ride out a lost SYN in half a second, and the
/// winner, whose first SYN got through, keeps the short timeout.
async fn connect_staggered(server: SocketAddr) -> io::Result<TcpStream> {
    let mut attempts = JoinSet::new();
    attempts.spawn(TcpStream::connect(server));
    let mut started = 1;
    let mut last_error = None;
    loop {
        let more = started < CONNECT_ATTEMPTS;
        tokio::select! {
            done = attempts.join_next(), if !attempts.is_empty() => match done {
                Some(Ok(Ok(stream))) => return Ok(stream),
                Some(Ok(Err(e))) => {
                    tracing::debug!(%server, error = %e, "signal connection attempt failed");
                    last_error = Some(e);
                }
                Some(Err(e)) => last_error = Some(io::Error::other(e)),
                None => {}
            },
            () = tokio::time::sleep(CONNECT_STAGGER), if more => {
                tracing::debug!(%server, started, "signal connection slow: another attempt");
                attempts.spawn(TcpStream::connect(server));
                started += 1;
                continue;
            },
        }
        // An attempt failed outright (refused, unreachable): no point in waiting for the
        // stagger unless others are still under way.
        if attempts.is_empty() {
            return Err(last_error.unwrap_or_else(|| io::Error::other("no connection attempt")));
        }
    }
}

fn too_long() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "signal server sent an over-long line",
    )
}

/// A line the client did not expect, as an error: an `error` line's reason, else the line.
fn server_error(notice: Notice<'_>) -> io::Error {
    match notice {
        Notice::Error(reason) => io::Error::other(format!("signal server: {reason}")),
        other => io::Error::other(format!("signal server: {other}")),
    }
}

/// The text of a [`Line`], with replacement characters for bytes that are not UTF-8; `None`
/// for an over-long line.
fn lossy(line: Line) -> Option<String> {
    match line {
        Line::Text(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        Line::TooLong => None,
    }
}

/// Reads bounded lines from a stream: [`LineSplitter`] fed from a socket; cancel-safe (partial
/// input stays in the splitter).
#[derive(Debug)]
struct LineReader {
    splitter: LineSplitter,
}

impl LineReader {
    fn new(max: usize) -> Self {
        LineReader {
            splitter: LineSplitter::new(max),
        }
    }

    /// The next line, or `None` at the end of the stream (a final line without `\n` is
    /// dropped).
    async fn read_line<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> io::Result<Option<Line>> {
        loop {
            if let Some(line) = self.splitter.poll_line() {
                return Ok(Some(line));
            }
            let mut chunk = [0u8; 4096];
            let n = r.read(&mut chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            self.splitter.feed(&chunk[..n]);
        }
    }
}

// ----- server -----

#[derive(Debug)]
struct State {
    config: SignalServerConfig,
    registry: Mutex<Registry>,
    /// Open connections per source (IPv4 address, IPv6 /64).
    sources: Mutex<HashMap<IpAddr, usize>>,
    /// Challenge nonces (seeded from the OS; a 128-bit nonce never repeats in practice).
    nonces: Mutex<Rng>,
}

/// One connection's share of its source's [`SignalServerConfig::max_per_ip`]; given back on
/// drop.
struct SourceSlot {
    state: Arc<State>,
    source: IpAddr,
}

impl SourceSlot {
    fn take(state: &Arc<State>, peer: IpAddr) -> Option<SourceSlot> {
        let source = match peer.to_canonical() {
            IpAddr::V6(v6) => {
                let mut o = v6.octets();
                o[8..].fill(0);
                IpAddr::from(o)
            }
            v4 => v4,
        };
        let mut sources = state.sources.lock().unwrap_or_else(PoisonError::into_inner);
        let open = sources.entry(source).or_insert(0);
        if *open >= state.config.max_per_ip {
            return None;
        }
        *open += 1;
        Some(SourceSlot {
            state: Arc::clone(state),
            source,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut sources = self
            .state
            .sources
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(open) = sources.get_mut(&self.source) {
            *open -= 1;
            if *open == 0 {
                sources.remove(&self.source);
            }
        }
    }
}

#[derive(Debug, Default)]
struct Registry {
    next_session: u64,
    clients: HashMap<String, Client>,
    queues: HashMap<String, Queue>,
}

#[derive(Debug)]
struct Client {
    session: u64,
    outbox: mpsc::Sender<String>,
    /// Bytes in `outbox` not yet written (the writer subtracts what it wrote).
    pending: Arc<AtomicUsize>,
    kick: Arc<Notify>,
}

impl Client {
    /// Puts `line` into the outbox; a client with [`OUTBOX`] lines or [`OUTBOX_BYTES`] bytes
    /// unwritten is not reading and is kicked instead of buffered for without bound.
    fn push(&self, line: String) -> Result<(), mpsc::error::TrySendError<String>> {
        let len = line.len();
        if self.pending.fetch_add(len, Ordering::Relaxed) + len > OUTBOX_BYTES {
            self.pending.fetch_sub(len, Ordering::Relaxed);
            self.kick.notify_one();
            return Ok(());
        }
        self.outbox.try_send(line).inspect_err(|e| {
            self.pending.fetch_sub(len, Ordering::Relaxed);
            if matches!(e, mpsc::error::TrySendError::Full(_)) {
                self.kick.notify_one();
            }
        })
    }
}

#[derive(Debug, Default)]
struct Queue {
    lines: VecDeque<(u64, String)>,
    bytes: usize,
}

/// What a client's line asks of the session.
enum Reply {
    /// Keep going (any answer is already in the outbox).
    Continue,
    /// Send this error line, then close.
    Fatal(String),
}

impl State {
    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn new_session(&self) -> u64 {
        let mut r = self.registry();
        r.next_session += 1;
        r.next_session
    }

    /// Registers `name` and, under the same lock (so no forwarded line can overtake them),
    /// puts `ok` and the queued lines into the client's outbox.
    fn register(&self, name: &str, client: Client) -> Result<(), ()> {
        let mut r = self.registry();
        if r.clients.get(name).is_some_and(|c| !c.outbox.is_closed()) {
            return Err(());
        }
        let _ = client.push("ok\n".to_owned());
        if let Some(queue) = r.queues.remove(name) {
            for (_, line) in queue.lines {
                // The outbox holds more than a full queue (lines and bytes): this never drops.
                let _ = client.push(line);
            }
        }
        r.clients.insert(name.to_owned(), client);
        Ok(())
    }

    /// Forwards `text` from `from` to `to`, or queues it; `Err` when the queue is full.
    fn forward(&self, from: &str, session: u64, to: &str, text: &str) -> Result<(), ()> {
        let line = format!("from {from} {text}\n");
        let mut r = self.registry();
        if let Some(c) = r.clients.get(to) {
            match c.push(line) {
                // Full: not reading, so it was kicked rather than buffered for without bound.
                Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => return Ok(()),
                Err(mpsc::error::TrySendError::Closed(line)) => {
                    r.clients.remove(to);
                    return self.enqueue(&mut r, session, to, line);
                }
            }
        }
        self.enqueue(&mut r, session, to, line)
    }

    fn enqueue(&self, r: &mut Registry, session: u64, to: &str, line: String) -> Result<(), ()> {
        let cfg = &self.config;
        let count = r.queues.len();
        let queue = match r.queues.get_mut(to) {
            Some(q) => q,
            None if count < cfg.max_queues => r.queues.entry(to.to_owned()).or_default(),
            None => return Err(()),
        };
        if queue.lines.len() >= cfg.queue_lines || queue.bytes + line.len() > cfg.queue_bytes {
            return Err(());
        }
        queue.bytes += line.len();
        queue.lines.push_back((session, line));
        Ok(())
    }

    /// Forgets a session: its name, and the lines it queued for absent peers.
    fn leave(&self, session: u64, name: Option<&str>) {
        let mut r = self.registry();
        if let Some(name) = name {
            if r.clients.get(name).is_some_and(|c| c.session == session) {
                r.clients.remove(name);
            }
        }
        r.queues.retain(|_, q| {
            q.lines.retain(|(s, _)| *s != session);
            q.bytes = q.lines.iter().map(|(_, l)| l.len()).sum();
            !q.lines.is_empty()
        });
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>, mut stop: watch::Receiver<bool>) {
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) if sessions.len() < state.config.max_clients => {
                    // Over its source's limit: dropping the stream closes it.
                    if let Some(slot) = SourceSlot::take(&state, peer.ip()) {
                        let span = tracing::debug_span!("signal session", %peer);
                        sessions.spawn(session(stream, slot, stop.clone()).instrument(span));
                    } else {
                        tracing::debug!(%peer, "refused: over the per-source limit");
                    }
                }
                // Over the limit: dropping the stream closes it.
                Ok((_, peer)) => tracing::debug!(%peer, "refused: over the client limit"),
                // Out of descriptors and the like: back off instead of spinning.
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    while sessions.join_next().await.is_some() {}
}

/// One client connection: reads its lines, runs a writer task for its outbox.
async fn session(stream: TcpStream, slot: SourceSlot, mut stop: watch::Receiver<bool>) {
    let state = Arc::clone(&slot.state);
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<String>(OUTBOX.max(state.config.queue_lines + 2));
    let pending = Arc::new(AtomicUsize::new(0));
    let written = Arc::clone(&pending);
    let writer = tokio::spawn(async move {
        while let Some(line) = rx.recv().await {
            if wr.write_all(line.as_bytes()).await.is_err() {
                return;
            }
            // Lines the server itself answers (pong, errors) were never counted: saturate.
            let _ = written.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                Some(p.saturating_sub(line.len()))
            });
        }
        let _ = wr.shutdown().await;
    });
    let id = state.new_session();
    let kick = Arc::new(Notify::new());
    let mut name: Option<String> = None;
    let nonce = state.config.secret.as_ref().map(|_| {
        let mut rng = state.nonces.lock().unwrap_or_else(PoisonError::into_inner);
        format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64())
    });
    if let Some(nonce) = &nonce {
        let _ = tx.try_send(format!("challenge {nonce}\n"));
    }
    let mut reader = LineReader::new(MAX_LINE);
    let mut linger = false;
    let mut deadline = tokio::time::Instant::now() + state.config.register_timeout;
    loop {
        let read = tokio::select! {
            _ = stop.changed() => break,
            () = kick.notified() => break,
            () = tokio::time::sleep_until(deadline) => {
                let reason = if name.is_some() { "idle-timeout" } else { "register-timeout" };
                tracing::debug!(reason, "closing");
                let _ = tx.try_send(format!("error {reason}\n"));
                linger = true;
                break;
            }
            read = reader.read_line(&mut rd) => read,
        };
        let reply = match read {
            Ok(Some(Line::Text(bytes))) => match String::from_utf8(bytes) {
                Ok(line) => {
                    let ctx = Session {
                        id,
                        tx: &tx,
                        pending: &pending,
                        kick: &kick,
                        nonce: nonce.as_deref(),
                    };
                    let reply = handle_line(&state, &ctx, &mut name, &line);
                    if name.is_some() {
                        deadline = tokio::time::Instant::now() + state.config.idle_timeout;
                    }
                    reply
                }
                Err(_) => {
                    let _ = tx.try_send("error bad-utf8\n".to_owned());
                    Reply::Continue
                }
            },
            Ok(Some(Line::TooLong)) => Reply::Fatal("error line-too-long\n".to_owned()),
            Ok(None) | Err(_) => break,
        };
        if let Reply::Fatal(line) = reply {
            tracing::debug!(reason = line.trim_end(), "closing");
            let _ = tx.try_send(line);
            linger = true;
            break;
        }
    }
    tracing::debug!(name = ?name, "session ended");
    state.leave(id, name.as_deref());
    drop(tx);
    if linger {
        // Read (and drop) what the client still sends, so closing with unread input does not
        // reset the connection before the error line arrives.
        let _ = tokio::time::timeout(LINGER, async {
            let mut sink = [0u8; 4096];
            while matches!(rd.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
    }
    let abort = writer.abort_handle();
    if tokio::time::timeout(LINGER, writer).await.is_err() {
        abort.abort();
    }
    drop(slot);
}

/// What `handle_line` needs of its connection.
struct Session<'a> {
    id: u64,
    tx: &'a mpsc::Sender<String>,
    pending: &'a Arc<AtomicUsize>,
    kick: &'a Arc<Notify>,
    /// The challenge sent, when the server has a secret.
    nonce: Option<&'a str>,
}

fn handle_line(state: &State, ctx: &Session<'_>, name: &mut Option<String>, line: &str) -> Reply {
    let (session, tx) = (ctx.id, ctx.tx);
    match (Request::parse(line), name.as_deref()) {
        (Request::Ping, _) => {
            let _ = tx.try_send("pong\n".to_owned());
            Reply::Continue
        }
        (Request::Empty, _) => Reply::Continue,
        (Request::Register { .. }, Some(_)) => {
            Reply::Fatal("error already-registered\n".to_owned())
        }
        (
            Request::Register {
                name: wanted,
                proof,
            },
            None,
        ) => {
            // With a secret: `register NAME PROOF`; without, a second word makes the name
            // invalid (the whole rest is the name there, and names have no spaces).
            let proof = match (&state.config.secret, ctx.nonce) {
                (Some(secret), Some(nonce)) => Some((secret, nonce, proof.unwrap_or(""))),
                _ if proof.is_some() => return Reply::Fatal("error bad-name\n".to_owned()),
                _ => None,
            };
            if !is_valid_name(wanted) {
                return Reply::Fatal("error bad-name\n".to_owned());
            }
            if let Some((secret, nonce, proof)) = proof {
                if !proof_is_valid(secret, nonce, wanted, proof) {
                    return Reply::Fatal("error bad-proof\n".to_owned());
                }
            }
            let client = Client {
                session,
                outbox: tx.clone(),
                pending: Arc::clone(ctx.pending),
                kick: Arc::clone(ctx.kick),
            };
            match state.register(wanted, client) {
                Ok(()) => {
                    *name = Some(wanted.to_owned());
                    Reply::Continue
                }
                Err(()) => Reply::Fatal(format!("error name-taken {wanted}\n")),
            }
        }
        (_, None) => Reply::Fatal("error not-registered\n".to_owned()),
        (Request::To { peer, text }, Some(from)) => {
            if !is_valid_name(peer) {
                let _ = tx.try_send(format!("error bad-name {peer}\n"));
            } else if state.forward(from, session, peer, text).is_err() {
                let _ = tx.try_send(format!("error queue-full {peer}\n"));
            }
            Reply::Continue
        }
        (Request::Unknown(other), Some(_)) => {
            let shown: String = other.chars().take(MAX_NAME).collect();
            let _ = tx.try_send(format!("error unknown-command {shown}\n"));
            Reply::Continue
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

    const LIMIT: Duration = Duration::from_secs(5);

    struct Raw {
        rd: BufReader<OwnedReadHalf>,
        wr: OwnedWriteHalf,
    }

    impl Raw {
        async fn connect(addr: SocketAddr) -> Raw {
            let stream = TcpStream::connect(addr).await.expect("connect");
            Raw::from(stream)
        }

        fn from(stream: TcpStream) -> Raw {
            let (rd, wr) = stream.into_split();
            Raw {
                rd: BufReader::new(rd),
                wr,
            }
        }

        /// Connects from `source` (another loopback address: another "client IP").
        async fn connect_from(addr: SocketAddr, source: IpAddr, recv_buffer: Option<u32>) -> Raw {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            if let Some(size) = recv_buffer {
                socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
            }
            socket
                .bind(SocketAddr::new(source, 0))
                .expect("bind source");
            Raw::from(socket.connect(addr).await.expect("connect"))
        }

        async fn send(&mut self, line: &str) {
            self.wr
                .write_all(format!("{line}\n").as_bytes())
                .await
                .expect("write");
        }

        /// The next line, `None` at EOF (or a reset); panics after 5 s.
        async fn line(&mut self) -> Option<String> {
            let mut s = String::new();
            let n = tokio::time::timeout(LIMIT, self.rd.read_line(&mut s))
                .await
                .expect("a line within 5 s")
                .unwrap_or(0);
            (n > 0).then(|| s.trim_end().to_owned())
        }
    }

    async fn server() -> SignalServerHandle {
        let mut config = SignalServerConfig::new("127.0.0.1:0".parse().expect("addr"));
        config.queue_lines = 4;
        config.queue_bytes = 200;
        serve_signal(config).await.expect("serve")
    }

    #[tokio::test]
    async fn forwards_and_queues_until_the_peer_registers() {
        let server = server().await;
        let mut a = Raw::connect(server.local_addr()).await;
        a.send("register alice").await;
        assert_eq!(a.line().await.as_deref(), Some("ok"));
        a.send("to bob one").await;
        a.send("to bob two words").await;
        a.send("ping").await;
        assert_eq!(
            a.line().await.as_deref(),
            Some("pong"),
            "no error for queued lines"
        );
        let mut b = Raw::connect(server.local_addr()).await;
        b.send("register bob").await;
        assert_eq!(b.line().await.as_deref(), Some("ok"));
        assert_eq!(b.line().await.as_deref(), Some("from alice one"));
        assert_eq!(b.line().await.as_deref(), Some("from alice two words"));
        b.send("to alice hi").await;
        assert_eq!(a.line().await.as_deref(), Some("from bob hi"));
        a.send("to bob live").await;
        assert_eq!(b.line().await.as_deref(), Some("from alice live"));
        server.shutdown().await;
        assert_eq!(a.line().await, None, "shutdown closes connections");
    }

    #[tokio::test]
    async fn a_refused_connection_fails_without_waiting_for_the_stagger() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let started = std::time::Instant::now();
        let result = connect_staggered(addr).await;
        assert!(result.is_err(), "nothing listens there");
        assert!(
            started.elapsed() < CONNECT_STAGGER,
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_dropped_syn_is_overtaken_by_a_fresh_attempt() {
        // A listener whose accept queue is full drops new SYNs, as a lossy link would; the
        // kernel resends one only after 1 s, while the next attempt starts after 500 ms.
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.1:0".parse().expect("constant"))
            .expect("bind");
        let listener = socket.listen(0).expect("listen");
        let addr = listener.local_addr().expect("addr");
        let filler = TcpStream::connect(addr).await.expect("fills the queue");
        let started = std::time::Instant::now();
        let drain = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            // Free the queue: from now on a new SYN is answered.
            let accepted = listener.accept().await.expect("accept");
            (accepted, listener)
        };
        let (result, _kept) = tokio::join!(connect_staggered(addr), drain);
        let took = started.elapsed();
        assert!(result.is_ok(), "{result:?}");
        assert!(
            took >= CONNECT_STAGGER && took < Duration::from_millis(950),
            "the second attempt should win at about 500 ms, took {took:?}"
        );
        drop(filler);
    }

    #[tokio::test]
    async fn queues_are_bounded_and_dropped_with_their_sender() {
        let server = server().await;
        let mut a = Raw::connect(server.local_addr()).await;
        a.send("register a").await;
        assert_eq!(a.line().await.as_deref(), Some("ok"));
        for i in 0..5 {
            a.send(&format!("to b {i}")).await;
        }
        assert_eq!(a.line().await.as_deref(), Some("error queue-full b"));
        a.send(&format!("to c {}", "x".repeat(300))).await;
        assert_eq!(
            a.line().await.as_deref(),
            Some("error queue-full c"),
            "bytes bound"
        );
        drop(a);
        // The sender left: its queued lines went with it.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut b = Raw::connect(server.local_addr()).await;
        b.send("register b").await;
        assert_eq!(b.line().await.as_deref(), Some("ok"));
        b.send("ping").await;
        assert_eq!(b.line().await.as_deref(), Some("pong"));
        server.shutdown().await;
    }

    #[tokio::test]
    async fn names_are_unique_and_validated() {
        let server = server().await;
        let mut a = Raw::connect(server.local_addr()).await;
        a.send("register dup").await;
        assert_eq!(a.line().await.as_deref(), Some("ok"));
        let mut twin = Raw::connect(server.local_addr()).await;
        twin.send("register dup").await;
        twin.send("to someone hello").await; // unread input must not lose the error line
        assert_eq!(twin.line().await.as_deref(), Some("error name-taken dup"));
        assert_eq!(twin.line().await, None, "closed after a fatal error");
        a.send("register again").await;
        assert_eq!(a.line().await.as_deref(), Some("error already-registered"));
        assert_eq!(a.line().await, None);
        // The name is free once its holder left.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut c = Raw::connect(server.local_addr()).await;
        c.send("register dup").await;
        assert_eq!(c.line().await.as_deref(), Some("ok"));
        c.send("to has space x").await;
        c.send("to  x").await;
        assert_eq!(c.line().await.as_deref(), Some("error bad-name"));
        c.wr.write_all(b"to x \xff\xfe\n").await.expect("write");
        assert_eq!(c.line().await.as_deref(), Some("error bad-utf8"));
        c.send("frobnicate").await;
        assert_eq!(
            c.line().await.as_deref(),
            Some("error unknown-command frobnicate")
        );
        let mut d = Raw::connect(server.local_addr()).await;
        d.send("register with space").await;
        assert_eq!(d.line().await.as_deref(), Some("error bad-name"));
        let mut e = Raw::connect(server.local_addr()).await;
        e.send("to a b").await;
        assert_eq!(e.line().await.as_deref(), Some("error not-registered"));
        server.shutdown().await;
    }

    #[tokio::test]
    async fn long_lines_close_the_connection() {
        let server = server().await;
        let mut a = Raw::connect(server.local_addr()).await;
        a.send("register long").await;
        assert_eq!(a.line().await.as_deref(), Some("ok"));
        a.send(&format!("to x {}", "y".repeat(MAX_LINE))).await;
        assert_eq!(a.line().await.as_deref(), Some("error line-too-long"));
        assert_eq!(a.line().await, None);
        // Exactly at the limit is fine.
        let mut b = Raw::connect(server.local_addr()).await;
        b.send("register fine").await;
        assert_eq!(b.line().await.as_deref(), Some("ok"));
        b.send(&format!("to fine {}", "z".repeat(MAX_LINE - 8)))
            .await;
        assert_eq!(
            b.line().await.map(|l| l.len()),
            Some(MAX_LINE - 8 + "from fine ".len())
        );
        server.shutdown().await;
    }

    #[tokio::test]
    async fn client_talks_to_one_peer() {
        let server = server().await;
        let mut a = SignalClient::connect(server.local_addr(), "a", "b")
            .await
            .expect("a");
        a.send("ice-ufrag:abcd").await.expect("send");
        let mut b = SignalClient::connect(server.local_addr(), "b", "a")
            .await
            .expect("b");
        let got = tokio::time::timeout(LIMIT, b.recv())
            .await
            .expect("in time");
        assert_eq!(got.expect("recv").as_deref(), Some("ice-ufrag:abcd"));
        let err = SignalClient::connect(server.local_addr(), "a", "c")
            .await
            .expect_err("name taken");
        assert!(err.to_string().contains("name-taken"), "{err}");
        assert!(
            SignalClient::connect(server.local_addr(), "x y", "c")
                .await
                .is_err()
        );
        server.shutdown().await;
        let end = tokio::time::timeout(LIMIT, b.recv())
            .await
            .expect("in time");
        assert_eq!(end.expect("clean close"), None);
    }

    fn is_ci() -> bool {
        matches!(std::env::var("CI").as_deref(), Ok("true" | "1"))
    }

    /// 127.0.0.2 as a second client address: Linux routes all of 127/8 to loopback. Elsewhere
    /// the test skips, except under CI.
    fn second_source() -> Option<IpAddr> {
        let ip = IpAddr::from([127, 0, 0, 2]);
        if std::net::UdpSocket::bind((ip, 0)).is_ok() {
            return Some(ip);
        }
        assert!(!is_ci(), "CI=true: cannot bind 127.0.0.2");
        println!("skipped: cannot bind 127.0.0.2");
        None
    }

    #[tokio::test]
    async fn two_thousand_idle_connections_from_one_source_do_not_lock_out_a_pair() {
        let Some(other) = second_source() else {
            return;
        };
        let server = serve_signal(SignalServerConfig::new(
            "127.0.0.1:0".parse().expect("addr"),
        ))
        .await
        .expect("serve");
        let addr = server.local_addr();
        // More than max_clients (1024): without a per-source cap they would fill every slot
        // until the registration timeout.
        let mut idle = Vec::with_capacity(2000);
        for _ in 0..2000 {
            idle.push(TcpStream::connect(addr).await.expect("connect"));
        }
        let started = std::time::Instant::now();
        let mut alice = Raw::connect_from(addr, other, None).await;
        alice.send("register alice").await;
        assert_eq!(alice.line().await.as_deref(), Some("ok"));
        let mut bob = Raw::connect_from(addr, other, None).await;
        bob.send("register bob").await;
        assert_eq!(bob.line().await.as_deref(), Some("ok"));
        alice.send("to bob offer").await;
        assert_eq!(bob.line().await.as_deref(), Some("from alice offer"));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        // The source's connections beyond its 64 were closed at once.
        let mut closed = 0;
        for stream in &mut idle {
            let mut byte = [0u8; 1];
            if let Ok(Ok(0) | Err(_)) =
                tokio::time::timeout(Duration::from_millis(1), stream.read(&mut byte)).await
            {
                closed += 1;
            }
        }
        assert!(closed >= 2000 - 64, "closed {closed} of 2000");
        drop(idle);
        server.shutdown().await;
    }

    #[tokio::test]
    async fn silent_connections_are_closed_before_and_after_registering() {
        let mut config = SignalServerConfig::new("127.0.0.1:0".parse().expect("addr"));
        config.register_timeout = Duration::from_millis(200);
        config.idle_timeout = Duration::from_millis(400);
        let server = serve_signal(config).await.expect("serve");
        let started = std::time::Instant::now();
        let mut never = Raw::connect(server.local_addr()).await;
        assert_eq!(
            never.line().await.as_deref(),
            Some("error register-timeout")
        );
        assert_eq!(never.line().await, None);
        assert!(started.elapsed() >= Duration::from_millis(200));
        let mut quiet = Raw::connect(server.local_addr()).await;
        quiet.send("register quiet").await;
        assert_eq!(quiet.line().await.as_deref(), Some("ok"));
        // Lines keep it open past the idle timeout...
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            quiet.send("ping").await;
            assert_eq!(quiet.line().await.as_deref(), Some("pong"));
        }
        // ... silence closes it.
        assert_eq!(quiet.line().await.as_deref(), Some("error idle-timeout"));
        assert_eq!(quiet.line().await, None);
        server.shutdown().await;
    }

    #[tokio::test]
    async fn a_squatter_without_the_secret_cannot_take_a_name_or_read_its_queue() {
        let secret = b"correct horse".as_slice();
        let mut config = SignalServerConfig::new("127.0.0.1:0".parse().expect("addr"));
        config.secret = Some(secret.to_vec());
        let server = serve_signal(config).await.expect("serve");
        let addr = server.local_addr();
        let mut alice = SignalClient::connect_with_secret(addr, "alice", "bob", Some(secret))
            .await
            .expect("alice proves the secret");
        alice.send("offer for bob only").await.expect("queued");
        // No proof, a proof under another secret, a proof replayed from another challenge.
        for attempt in 0..3 {
            let mut squatter = Raw::connect(addr).await;
            let challenge = squatter.line().await.expect("a challenge");
            let nonce = challenge
                .strip_prefix("challenge ")
                .expect("challenge NONCE");
            let line = match attempt {
                0 => "register bob".to_owned(),
                1 => format!("register bob {}", register_proof(b"guess", nonce, "bob")),
                _ => format!(
                    "register bob {}",
                    register_proof(secret, "0123456789abcdef", "bob")
                ),
            };
            squatter.send(&line).await;
            assert_eq!(
                squatter.line().await.as_deref(),
                Some("error bad-proof"),
                "{line}"
            );
            assert_eq!(squatter.line().await, None, "closed, queue unread");
        }
        let err = SignalClient::connect(addr, "bob", "alice")
            .await
            .expect_err("no secret");
        assert!(err.to_string().contains("requires a secret"), "{err}");
        let mut bob = SignalClient::connect_with_secret(addr, "bob", "alice", Some(secret))
            .await
            .expect("bob proves the secret");
        let got = tokio::time::timeout(LIMIT, bob.recv())
            .await
            .expect("in time");
        assert_eq!(got.expect("recv").as_deref(), Some("offer for bob only"));
        server.shutdown().await;
        // A client with a secret refuses a server that checks none.
        let open = server_default().await;
        let err = SignalClient::connect_with_secret(open.local_addr(), "a", "b", Some(secret))
            .await
            .expect_err("no secret checked");
        assert!(err.to_string().contains("checks no secret"), "{err}");
        open.shutdown().await;
    }

    async fn server_default() -> SignalServerHandle {
        serve_signal(SignalServerConfig::new(
            "127.0.0.1:0".parse().expect("addr"),
        ))
        .await
        .expect("serve")
    }

    #[test]
    fn proofs_are_bound_to_secret_nonce_and_name() {
        let p = register_proof(b"s", "n", "bob");
        assert_eq!(p.len(), 64);
        assert!(proof_is_valid(b"s", "n", "bob", &p));
        assert!(!proof_is_valid(b"t", "n", "bob", &p));
        assert!(!proof_is_valid(b"s", "m", "bob", &p));
        assert!(!proof_is_valid(b"s", "n", "bot", &p));
        assert!(!proof_is_valid(b"s", "n", "bob", &p[..62]));
        assert!(!proof_is_valid(b"s", "n", "bob", "zz"));
        assert!(!proof_is_valid(b"s", "n", "bob", "é"));
    }

    #[test]
    fn an_outbox_never_holds_more_than_its_byte_bound() {
        let (tx, _rx) = mpsc::channel(OUTBOX);
        let client = Client {
            session: 1,
            outbox: tx,
            pending: Arc::new(AtomicUsize::new(0)),
            kick: Arc::new(Notify::new()),
        };
        let line = "x".repeat(MAX_LINE);
        for _ in 0..OUTBOX {
            let _ = client.push(line.clone());
            assert!(client.pending.load(Ordering::Relaxed) <= OUTBOX_BYTES);
        }
        let kicked = client.kick.notified();
        tokio::pin!(kicked);
        assert!(
            futures_ready(kicked.as_mut()),
            "the client was kicked once the bound was reached"
        );
    }

    /// Whether `fut` is ready on its first poll.
    fn futures_ready<F: std::future::Future>(fut: std::pin::Pin<&mut F>) -> bool {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        fut.poll(&mut cx).is_ready()
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_is_disconnected() {
        let server = server_default().await;
        let addr = server.local_addr();
        // A small receive buffer: the kernel holds little for it, the server's bound does the rest.
        let mut stuck = Raw::connect_from(addr, IpAddr::from([127, 0, 0, 1]), Some(4096)).await;
        stuck.send("register stuck").await;
        assert_eq!(stuck.line().await.as_deref(), Some("ok"));
        let mut flood = Raw::connect(addr).await;
        flood.send("register flood").await;
        assert_eq!(flood.line().await.as_deref(), Some("ok"));
        let line = format!("to stuck {}", "x".repeat(4000));
        let mut sent = 0usize;
        let gone = loop {
            for _ in 0..50 {
                flood.send(&line).await;
            }
            sent += 50 * line.len();
            // Once `stuck` is gone, lines for it are queued: 256 lines or 64 KiB, then
            // `queue-full`; while it is connected, nothing comes back but `pong`.
            flood.send("ping").await;
            match flood.line().await.as_deref() {
                Some("pong") => {}
                Some("error queue-full stuck") => break true,
                other => panic!("unexpected {other:?}"),
            }
            if sent > 32 * 1024 * 1024 {
                break false;
            }
        };
        assert!(gone, "still connected after {sent} bytes were sent to it");
        println!("disconnected after {} KiB were sent to it", sent / 1024);
        drop(stuck);
        server.shutdown().await;
    }
}
