//! The ICE agent on blocking `std::net` sockets: [`IceSocket`].
//!
//! An [`IceSocket`] is a UDP socket with an ICE [`Agent`] inside: the application signals
//! credentials and candidates, then sends and receives its own datagrams on it like on a socket,
//! while the agent finds, selects and keeps the path. It owns the host socket (bound to a
//! concrete address, which is the host candidate) plus any sockets the agent asks for with
//! [`Action::BindSockets`], and pumps the agent through exactly its public API:
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

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;
use std::time::Duration;

use holepunch_core::demux::Received;
use holepunch_core::ice::agent::{
    Action, Agent, AgentConfig, IceError, IceEvent, IoResult, PathInfo,
};
use holepunch_core::ice::candidate::Candidate;
use holepunch_core::ice::credentials::IceCredentials;
use holepunch_core::io::Datagram;

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
/// See the [module documentation](self) for the loop and the threading design.
#[derive(Debug)]
pub struct IceSocket {
    agent: Agent,
    clock: Clock,
    /// Index 0 is the host socket; extra sockets follow in the order they were opened.
    sockets: Vec<Arc<UdpSocket>>,
    /// `sockets[i]`'s bound address.
    addrs: Vec<SocketAddr>,
    tx: SyncSender<Inbound>,
    rx: Receiver<Inbound>,
    stop: Arc<AtomicBool>,
    readers: Vec<JoinHandle<()>>,
    out: Vec<u8>,
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
    pub fn new(socket: UdpSocket, mut agent: Agent, clock: Clock) -> io::Result<Self> {
        let local = socket.local_addr()?;
        agent
            .add_host_candidate(clock.now(), local)
            .map_err(invalid_input)?;
        let (tx, rx) = mpsc::sync_channel(READER_QUEUE);
        let mut this = IceSocket {
            agent,
            clock,
            sockets: Vec::new(),
            addrs: Vec::new(),
            tx,
            rx,
            stop: Arc::new(AtomicBool::new(false)),
            readers: Vec::new(),
            out: vec![0; TRANSMIT_BUFFER_LEN],
        };
        this.add_socket(socket)?;
        Ok(this)
    }

    /// The host socket's address (the host candidate).
    pub fn local_addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Every socket's address: the host socket first, then the extra sockets in opening order.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The agent, for reading its state.
    pub fn agent(&self) -> &Agent {
        &self.agent
    }

    /// The agent, for calls this type does not wrap (restart, extra local candidates). Give it
    /// times from [`clock`](Self::clock); its output is sent by the next [`step`](Self::step).
    pub fn agent_mut(&mut self) -> &mut Agent {
        &mut self.agent
    }

    /// The clock the agent runs on.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Our ufrag and password, to signal to the peer.
    pub fn local_credentials(&self) -> IceCredentials {
        *self.agent.local_credentials()
    }

    /// Starts gathering server-reflexive candidates from the configured STUN servers
    /// ([`IceEvent::GatheringComplete`] follows; at once without servers).
    pub fn gather(&mut self) {
        let now = self.clock.now();
        self.agent.gather(now);
        self.pump(now);
    }

    /// The peer's ufrag and password, from signalling.
    pub fn set_remote_credentials(&mut self, credentials: &IceCredentials) {
        self.agent.set_remote_credentials(credentials);
        self.pump(self.clock.now());
    }

    /// A candidate the peer signalled.
    pub fn add_remote_candidate(&mut self, candidate: Candidate) -> Result<(), IceError> {
        let now = self.clock.now();
        let result = self.agent.add_remote_candidate(now, candidate);
        self.pump(now);
        result
    }

    /// The peer signalled end-of-candidates.
    pub fn end_of_remote_candidates(&mut self) {
        self.agent.end_of_remote_candidates();
    }

    /// The selected path, if any.
    pub fn selected_path(&self) -> Option<PathInfo> {
        self.agent.selected_path()
    }

    /// Sends one application datagram on the selected path: from the path's local socket to
    /// its remote address.
    ///
    /// Fails with [`io::ErrorKind::NotConnected`] when no path is selected, and with
    /// [`io::ErrorKind::AddrNotAvailable`] when the path's local address is not one of this
    /// driver's sockets (a relayed path, which needs a TURN client this driver does not run).
    pub fn send_app(&self, payload: &[u8]) -> io::Result<()> {
        let path = self
            .agent
            .selected_path()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "no ICE path selected"))?;
        let index = self
            .addrs
            .iter()
            .position(|a| *a == path.local)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::AddrNotAvailable,
                    "the selected path's local address is not one of this driver's sockets",
                )
            })?;
        self.sockets[index].send_to(payload, path.remote)?;
        Ok(())
    }

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
            let now = self.clock.now();
            self.agent.handle_timeout(now);
            let sent = self.pump(now);
            if let Some(event) = self.agent.poll_event() {
                return Ok(Some(Output::Event(event)));
            }
            let wall = wall_now();
            let budget = until.map_or(Duration::MAX, |u| u.saturating_duration_since(wall));
            let wait = self.agent_wait(wall, sent).min(budget);
            let inbound = if wait.is_zero() {
                self.rx.try_recv().ok()
            } else {
                // Disconnected cannot happen: `self.tx` keeps the channel open.
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
                    let local = self.addrs[index];
                    return Err(io::Error::new(
                        error.kind(),
                        format!("receiving on {local}: {error}"),
                    ));
                }
                None if until.is_some_and(|u| wall_now() >= u) => {
                    // Send what fell due while waiting before handing control back.
                    let now = self.clock.now();
                    self.agent.handle_timeout(now);
                    self.pump(now);
                    return Ok(self.agent.poll_event().map(Output::Event));
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

    /// Does what an [`Action`] asks and answers the agent with [`Agent::handle_io`]; returns the
    /// addresses it reported. [`step`](Self::step) calls this for every action the agent
    /// emits; it is public for callers that drive actions themselves and for tests.
    ///
    /// [`Action::BindSockets`] binds up to `count` sockets on the IP it names (port 0),
    /// starts their readers, and reports the ones that work (fewer is fine, the agent only
    /// loses odds); it fails only when none could be opened, after answering the agent with no
    /// sockets. Actions this driver does not know fail with [`io::ErrorKind::Unsupported`].
    pub fn perform_action(&mut self, action: Action) -> io::Result<Vec<SocketAddr>> {
        match action {
            Action::BindSockets { token, count, ip } => {
                let mut bound = Vec::with_capacity(usize::from(count));
                let mut error = None;
                match bind_extra_sockets(ip, count) {
                    Ok(sockets) => {
                        for socket in sockets {
                            match self.add_socket(socket) {
                                Ok(addr) => bound.push(addr),
                                Err(e) => {
                                    error.get_or_insert(e);
                                }
                            }
                        }
                    }
                    Err(e) => error = Some(e),
                }
                self.agent
                    .handle_io(self.clock.now(), token, IoResult::SocketsBound(&bound));
                match error {
                    Some(e) if bound.is_empty() && count > 0 => Err(e),
                    _ => Ok(bound),
                }
            }
            _ => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this driver cannot perform the agent's action",
            )),
        }
    }

    /// Performs pending actions and sends every due transmit; returns how many were sent.
    fn pump(&mut self, now: holepunch_core::Instant) -> usize {
        while let Some(action) = self.agent.poll_action() {
            // The agent was answered either way; without the sockets it carries on with fewer
            // chances, which is all a failure here could change.
            let _ = self.perform_action(action);
        }
        let mut sent = 0;
        while let Some(t) = self.agent.poll_transmit(now, &mut self.out) {
            let index = t
                .from
                .and_then(|from| self.addrs.iter().position(|a| *a == from))
                .unwrap_or(0);
            // UDP may lose any datagram; the agent's retransmissions and timeouts cover a
            // failed send, and one unreachable candidate must not stop the others.
            let _ = self.sockets[index].send_to(&self.out[..t.len], t.to);
            sent += 1;
        }
        sent
    }

    /// How long the agent lets us wait from `wall`.
    fn agent_wait(&self, wall: std::time::Instant, sent: usize) -> Duration {
        let Some(deadline) = self.agent.poll_deadline().map(|d| d.at) else {
            return Duration::MAX;
        };
        let wait = self
            .clock
            .deadline(deadline)
            .saturating_duration_since(wall);
        if wait.is_zero() && sent == 0 {
            STALLED_DEADLINE_WAIT
        } else {
            wait
        }
    }

    /// Feeds a datagram to the agent; returns it when it is the application's.
    fn receive(&mut self, index: usize, from: SocketAddr, payload: Vec<u8>) -> Option<AppDatagram> {
        let local = self.addrs[index];
        let received = self
            .agent
            .handle_datagram(self.clock.now(), Datagram::new(local, from, &payload));
        // Unrecognized STUN (not ours) is dropped: nobody else shares these sockets.
        matches!(received, Received::AppData { .. }).then_some(AppDatagram {
            local,
            from,
            payload,
        })
    }

    /// Takes ownership of a bound socket and starts its reader; returns its address.
    fn add_socket(&mut self, socket: UdpSocket) -> io::Result<SocketAddr> {
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
        self.addrs.push(addr);
        self.readers.push(reader);
        Ok(addr)
    }
}

impl Drop for IceSocket {
    /// Stops the readers and waits for them, so every socket is closed when this returns.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the receiver wakes readers waiting on a full queue; the others notice the
        // flag within READER_POLL_INTERVAL.
        self.rx = mpsc::sync_channel(0).1;
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

/// Binds up to `count` UDP sockets on `ip`, port 0, stopping at the first failure (file
/// descriptors or ports running out): the sockets [`Action::BindSockets`] asks for, in order.
/// Fails only when `count > 0` and not even one could be bound.
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

fn invalid_input(e: IceError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e)
}

fn wall_now() -> std::time::Instant {
    std::time::Instant::now()
}
