//! The ICE agent on blocking `std::net` sockets: [`IceSocket`].
//!
//! An [`IceSocket`] is a UDP socket with an ICE [`Agent`] inside: the application signals
//! credentials and candidates, then sends and receives its own datagrams on it like on a socket,
//! while the agent finds, selects and keeps the path. It owns the host socket (bound to a
//! concrete address, which is the host candidate) plus any sockets the agent asks for with
//! [`Action::BindSockets`], and pumps the agent through exactly its public API (the parts every
//! ICE driver shares are [`IcePump`]'s):
//!
//! 1. `handle_timeout`, then drain `poll_action` (open sockets, answer with `handle_io`) and
//!    `poll_transmit` (send from the socket named by `Transmit::from`);
//! 2. hand `poll_event` results to the caller;
//! 3. wait for a datagram until `poll_timeout` (or the caller's timeout), feed it to
//!    `handle_datagram` with the address of the socket it arrived on, and hand
//!    [`Received::AppData`] to the caller as an [`AppDatagram`].
//!
//! # Why one reader thread per socket
//!
//! `std` cannot wait on several sockets at once (there is no portable `poll(2)` without `libc`
//! and `unsafe`, both of which this crate avoids). The alternatives are polling non-blocking
//! sockets on a short interval, which adds up to that interval of latency to every datagram and
//! burns CPU while idle, or one blocking reader thread per socket feeding a channel. The second
//! is what this module does: the agent and all sending stay on the caller's thread (readers
//! only call `recv_from`), the caller's thread waits on a single channel with a timeout that is
//! exactly the agent's next deadline, and every datagram is handled the moment it arrives. The
//! costs are a thread per socket (one normally; hard-NAT punching asks for up to a few hundred,
//! for seconds, with small stacks), one allocation per received datagram, and shutdown latency:
//! readers wake every [`READER_POLL_INTERVAL`] to notice that the [`IceSocket`] was dropped,
//! and `drop` waits for them so that every port is closed when it returns. The channel is
//! bounded ([`READER_QUEUE`] datagrams): a caller that stops stepping makes the readers wait and
//! the kernel drop datagrams, as UDP would anyway.
//!
//! ```no_run
//! use holepunch_core::ice::agent::{AgentConfig, IceEvent};
//! use holepunch_std::ice::{IceSocket, Output};
//! use std::time::Duration;
//!
//! let mut ice = IceSocket::bind("192.0.2.10:0".parse()?, AgentConfig::rfc(true))?;
//! ice.gather();
//! // ... signal ice.local_credentials() and every LocalCandidate to the peer, and apply
//! // theirs with set_remote_credentials / add_remote_candidate ...
//! loop {
//!     match ice.step(Duration::from_millis(100))? {
//!         Some(Output::Event(IceEvent::Connected(path))) => {
//!             println!("connected via {} -> {}", path.local, path.remote);
//!             ice.send_app(b"hello")?;
//!         }
//!         Some(Output::Event(IceEvent::LocalCandidate(_c))) => { /* signal it */ }
//!         Some(Output::AppData(d)) => println!("{} bytes from {}", d.payload.len(), d.from),
//!         _ => {}
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`Action::BindSockets`]: holepunch_core::ice::agent::Action::BindSockets
//! [`Received::AppData`]: holepunch_core::io::Received::AppData

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;
use std::time::Duration;

use holepunch_core::Agent;
use holepunch_core::ice::agent::{AgentConfig, IceEvent};

use crate::pump::{IcePump, SocketSet};
use crate::{Clock, RECV_BUFFER_LEN, is_transient, os_seed};

/// How often an idle reader thread wakes to see whether its [`IceSocket`] was dropped; dropping
/// an [`IceSocket`] takes at most about this long.
pub const READER_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How many received datagrams may wait for the caller before readers stop reading.
pub const READER_QUEUE: usize = 1024;
/// Size of the buffer the agent writes transmits into (the agent needs at most 1280 bytes).
pub const TRANSMIT_BUFFER_LEN: usize = 2048;
/// The longest wait when the agent's deadline has passed and pumping sent nothing: a guard that
/// turns a deadline stuck in the past (a core bug) into slow polling instead of a busy loop.
pub const STALLED_DEADLINE_WAIT: Duration = Duration::from_millis(1);

/// Stack size of a reader thread: it only runs `recv_from` into a heap buffer.
const READER_STACK: usize = 256 * 1024;

/// A datagram of the application's own protocol (not STUN) that arrived on one of the sockets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppDatagram {
    /// The local socket it arrived on.
    pub local: SocketAddr,
    /// The sender.
    pub from: SocketAddr,
    /// The datagram's bytes, unchanged.
    pub payload: Vec<u8>,
}

/// What [`IceSocket::step`] hands to the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// An event from the agent: candidates to signal, connection state changes.
    Event(IceEvent),
    /// Application data from the peer (or from anyone: filtering by sender is the caller's call).
    AppData(AppDatagram),
}

/// A UDP socket with an ICE agent: the host socket, the agent's extra sockets, and their pump.
///
/// The calls it shares with every ICE driver (credentials, candidates, [`send_app`],
/// [`perform_action`], ...) are [`IcePump`]'s, forwarded; [`step`](Self::step) and
/// [`run_until`](Self::run_until) are its own. See the [module documentation](self) for the
/// loop and the threading design.
///
/// [`send_app`]: Self::send_app
/// [`perform_action`]: Self::perform_action
#[derive(Debug)]
pub struct IceSocket {
    /// Declared first so that it is dropped first: that wakes readers blocked on a full queue
    /// before the socket set joins them.
    rx: Receiver<Inbound>,
    pump: IcePump<ReaderSockets>,
}

/// The std driver's [`SocketSet`]: each socket with a blocking reader thread that passes what
/// it receives to the [`IceSocket`]'s channel.
#[derive(Debug)]
pub struct ReaderSockets {
    /// In the order they were added; index 0 is the host socket.
    sockets: Vec<Arc<UdpSocket>>,
    tx: SyncSender<Inbound>,
    stop: Arc<AtomicBool>,
    readers: Vec<JoinHandle<()>>,
}

impl IceSocket {
    /// Binds the host socket to `local` (a concrete IP; port 0 picks a free port) and creates
    /// an agent for it with `config` and a seed from [`os_seed`]. The host candidate is the
    /// bound address; its [`IceEvent::LocalCandidate`] is the first output of
    /// [`step`](Self::step).
    pub fn bind(local: SocketAddr, config: AgentConfig) -> io::Result<Self> {
        let socket = UdpSocket::bind(local)?;
        IceSocket::new(socket, Agent::new(config, os_seed()), Clock::new())
    }

    /// Wraps a socket the caller bound and an agent the caller built, on the caller's `clock`
    /// (the one the agent has been given times from, if any).
    ///
    /// The socket's address is added as a host candidate (a no-op if the agent has it already),
    /// so it must be bound to a concrete IP, not the unspecified address.
    pub fn new(socket: UdpSocket, agent: Agent, clock: Clock) -> io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel(READER_QUEUE);
        let sockets = ReaderSockets {
            sockets: Vec::new(),
            tx,
            stop: Arc::new(AtomicBool::new(false)),
            readers: Vec::new(),
        };
        let pump = IcePump::new(sockets, socket, agent, clock)?;
        Ok(IceSocket { rx, pump })
    }

    crate::ice_pump_methods!(pump);

    /// Runs the agent until it has something for the application or `timeout` has elapsed.
    ///
    /// Sends everything due, returns the next event, else waits for a datagram until the
    /// agent's next deadline (bounded by `timeout`) and handles it, returning application data
    /// and looping on ICE traffic. `Ok(None)` means `timeout` elapsed with nothing to report;
    /// a zero `timeout` handles what has already arrived without blocking. Errors are failures
    /// to receive on a socket; failures to send are left to the agent's retransmissions, since
    /// UDP may lose any datagram and one unreachable candidate must not stop the others.
    pub fn step(&mut self, timeout: Duration) -> io::Result<Option<Output>> {
        let until = wall_now().checked_add(timeout);
        loop {
            let sent = self.advance();
            if let Some(event) = self.pump.poll_event() {
                tracing::debug!(?event, "ICE event");
                return Ok(Some(Output::Event(event)));
            }
            let wall = wall_now();
            let budget = until.map_or(Duration::MAX, |u| u.saturating_duration_since(wall));
            let wait = self.agent_wait(wall, sent).min(budget);
            let inbound = if wait.is_zero() {
                self.rx.try_recv().ok()
            } else {
                // Disconnected cannot happen: the socket set's sender keeps the channel open.
                self.rx.recv_timeout(wait).ok()
            };
            match inbound {
                Some(Inbound::Datagram {
                    index,
                    from,
                    payload,
                }) => {
                    if let Some(datagram) = self.receive(index, from, payload) {
                        return Ok(Some(Output::AppData(datagram)));
                    }
                }
                Some(Inbound::Failed { index, error }) => {
                    let local = self.pump.local_addrs()[index];
                    return Err(io::Error::new(
                        error.kind(),
                        format!("receiving on {local}: {error}"),
                    ));
                }
                None if until.is_some_and(|u| wall_now() >= u) => {
                    // Send what fell due while waiting before handing control back.
                    self.advance();
                    return Ok(self.pump.poll_event().map(Output::Event));
                }
                None => {}
            }
        }
    }

    /// Calls [`step`](Self::step) until `deadline`, handing every output to `on_output`;
    /// returns `Ok(Some(value))` as soon as it breaks with `value`, `Ok(None)` at the deadline.
    pub fn run_until<T>(
        &mut self,
        deadline: std::time::Instant,
        mut on_output: impl FnMut(Output) -> ControlFlow<T>,
    ) -> io::Result<Option<T>> {
        loop {
            let remaining = deadline.saturating_duration_since(wall_now());
            match self.step(remaining)? {
                Some(output) => {
                    if let ControlFlow::Break(value) = on_output(output) {
                        return Ok(Some(value));
                    }
                }
                None if remaining.is_zero() || wall_now() >= deadline => return Ok(None),
                None => {}
            }
        }
    }

    /// Feeds a datagram to the agent; returns it when it is the application's.
    fn receive(&mut self, index: usize, from: SocketAddr, payload: Vec<u8>) -> Option<AppDatagram> {
        let local = self.pump.local_addrs()[index];
        self.pump
            .handle_datagram(index, from, &payload)
            .then_some(AppDatagram {
                local,
                from,
                payload,
            })
    }

    /// Advances the agent's timers and sends what is due; returns how many were sent.
    fn advance(&mut self) -> usize {
        let now = self.pump.clock().now();
        self.pump.agent_mut().handle_timeout(now);
        self.pump.pump(now)
    }

    /// How long the agent lets us wait from `wall`.
    fn agent_wait(&self, wall: std::time::Instant, sent: usize) -> Duration {
        let Some(deadline) = self.pump.poll_timeout() else {
            return Duration::MAX;
        };
        let wait = self
            .pump
            .clock()
            .deadline(deadline)
            .saturating_duration_since(wall);
        if wait.is_zero() && sent == 0 {
            STALLED_DEADLINE_WAIT
        } else {
            wait
        }
    }
}

impl SocketSet for ReaderSockets {
    /// Starts the socket's reader thread.
    fn add(&mut self, socket: UdpSocket) -> io::Result<SocketAddr> {
        let addr = socket.local_addr()?;
        socket.set_read_timeout(Some(READER_POLL_INTERVAL))?;
        let socket = Arc::new(socket);
        let index = self.sockets.len();
        let reader = {
            let (socket, tx, stop) = (Arc::clone(&socket), self.tx.clone(), Arc::clone(&self.stop));
            std::thread::Builder::new()
                .name(format!("holepunch-ice-{index}"))
                .stack_size(READER_STACK)
                .spawn(move || read_loop(index, &socket, &tx, &stop))?
        };
        self.sockets.push(socket);
        self.readers.push(reader);
        Ok(addr)
    }

    fn send_to(&self, index: usize, payload: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.sockets[index].send_to(payload, to)
    }
}

impl Drop for ReaderSockets {
    /// Stops the readers and waits for them, so every socket is closed when this returns.
    /// Readers blocked on a full queue wake when the [`IceSocket`]'s receiver is dropped, which
    /// happens first; the others notice the flag within [`READER_POLL_INTERVAL`].
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

/// Binds up to `count` UDP sockets on `ip`, port 0, stopping at the first failure (file
/// descriptors or ports running out): the sockets [`Action::BindSockets`] asks for, in order.
/// Fails only when `count > 0` and not even one could be bound.
///
/// [`Action::BindSockets`]: holepunch_core::ice::agent::Action::BindSockets
pub fn bind_extra_sockets(ip: IpAddr, count: u16) -> io::Result<Vec<UdpSocket>> {
    let mut sockets = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        match UdpSocket::bind(SocketAddr::new(ip, 0)) {
            Ok(socket) => sockets.push(socket),
            Err(e) if sockets.is_empty() => return Err(e),
            Err(_) => break,
        }
    }
    Ok(sockets)
}

/// What a reader thread passes to the pump.
#[derive(Debug)]
enum Inbound {
    Datagram {
        index: usize,
        from: SocketAddr,
        payload: Vec<u8>,
    },
    Failed {
        index: usize,
        error: io::Error,
    },
}

/// A reader thread: receives into one buffer and passes copies on until stopped, the receiver
/// is gone, or the socket fails.
fn read_loop(index: usize, socket: &UdpSocket, tx: &SyncSender<Inbound>, stop: &AtomicBool) {
    let mut buf = vec![0u8; RECV_BUFFER_LEN];
    while !stop.load(Ordering::Relaxed) {
        let (inbound, last) = match socket.recv_from(&mut buf) {
            Ok((n, from)) => (
                Inbound::Datagram {
                    index,
                    from,
                    payload: buf[..n].to_vec(),
                },
                false,
            ),
            Err(e) if is_transient(&e) => continue,
            Err(error) => (Inbound::Failed { index, error }, true),
        };
        if tx.send(inbound).is_err() || last {
            return;
        }
    }
}

fn wall_now() -> std::time::Instant {
    std::time::Instant::now()
}
