//! The ICE agent in the caller's `mio` event loop: [`IceSockets`].
//!
//! [`IceSockets`] owns an ICE [`Agent`], its host socket (bound to a concrete address, which is
//! the host candidate) and any extra sockets the agent asks for with [`Action::BindSockets`]. The
//! sockets are registered with the caller's [`Registry`] under consecutive tokens: the host
//! socket under the base token, extra socket `i` under `base + 1 + i`, never more than
//! [`token_span`](IceSockets::token_span) tokens in all, so the caller can keep that range free
//! ([`IceSockets::tokens_needed`] gives it before binding). The caller's loop calls:
//!
//! - [`handle_event`](IceSockets::handle_event) for every readiness event (tokens that are not
//!   ours are ignored and reported as such);
//! - [`handle_timeout`](IceSockets::handle_timeout) when the poll returned, or at least when
//!   [`next_timeout`](IceSockets::next_timeout) has elapsed (early calls are harmless);
//! - [`poll_event`](IceSockets::poll_event) and [`recv_app`](IceSockets::recv_app) until they
//!   return `None`, and [`send_app`](IceSockets::send_app) to send on the selected path.
//!
//! Inside, the agent is pumped through its public API only, exactly as
//! [`holepunch_std::ice::IceSocket`] does: datagrams go to `handle_datagram` with the address
//! of the socket they arrived on, then actions (`poll_action` → bind and register sockets →
//! `handle_io`) and transmits (`poll_transmit`, sent from the socket `Transmit::from` names)
//! are drained. Sockets are non-blocking: a transmit that would block is dropped, as UDP may
//! drop it anyway, and the agent retransmits.
//!
//! Application datagrams are read as soon as their socket is readable (ICE traffic on the same
//! socket must not wait behind them) and queued, at most [`MAX_QUEUED_APP`]; beyond that,
//! new ones are dropped until the caller catches up with `recv_app`.
//!
//! ```no_run
//! use holepunch_core::ice::agent::{AgentConfig, IceEvent};
//! use holepunch_mio::ice::IceSockets;
//! use mio::{Events, Poll, Token};
//!
//! let mut poll = Poll::new()?;
//! let mut events = Events::with_capacity(64);
//! let config = AgentConfig::rfc(true);
//! // Tokens 100 .. 100 + IceSockets::tokens_needed(&config) are ours.
//! let mut ice = IceSockets::bind(poll.registry(), Token(100), "192.0.2.10:0".parse()?, config)?;
//! ice.gather();
//! loop {
//!     poll.poll(&mut events, ice.next_timeout())?;
//!     for event in &events {
//!         ice.handle_event(event.token())?;
//!     }
//!     ice.handle_timeout();
//!     while let Some(event) = ice.poll_event() {
//!         if let IceEvent::LocalCandidate(_c) = event { /* signal it to the peer */ }
//!     }
//!     while let Some(d) = ice.recv_app() {
//!         println!("{} bytes from {}", d.payload.len(), d.from);
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use holepunch_core::demux::Received;
use holepunch_core::ice::agent::{
    Action, Agent, AgentConfig, IceError, IceEvent, IoResult, PathInfo,
};
use holepunch_core::ice::candidate::Candidate;
use holepunch_core::ice::credentials::IceCredentials;
use holepunch_core::io::Datagram;
use holepunch_std::ice::{TRANSMIT_BUFFER_LEN, bind_extra_sockets};
use holepunch_std::{Clock, RECV_BUFFER_LEN, is_transient, os_seed};
use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};

pub use holepunch_std::ice::AppDatagram;

/// How many application datagrams [`IceSockets`] holds for [`IceSockets::recv_app`]; newer
/// ones are dropped while the queue is full.
pub const MAX_QUEUED_APP: usize = 1024;

/// An ICE agent with its sockets, registered with the caller's `mio` registry.
///
/// See the [module documentation](self) for the loop and the token layout.
#[derive(Debug)]
pub struct IceSockets {
    agent: Agent,
    clock: Clock,
    registry: Registry,
    base: usize,
    /// How many sockets (so tokens) this may own: the host socket plus the extra ones.
    span: usize,
    /// Index 0 is the host socket, registered under `base`; socket `i` under `base + i`.
    sockets: Vec<UdpSocket>,
    /// `sockets[i]`'s bound address.
    addrs: Vec<SocketAddr>,
    app: VecDeque<AppDatagram>,
    buf: Vec<u8>,
    out: Vec<u8>,
}

impl IceSockets {
    /// How many consecutive tokens, from the base token, an [`IceSockets`] built with `config`
    /// may register: one for the host socket and one per extra socket hard-NAT punching may ask
    /// for.
    pub fn tokens_needed(config: &AgentConfig) -> usize {
        1 + config.punch.map_or(0, |p| usize::from(p.hard.sockets))
    }

    /// Binds the host socket to `local` (a concrete IP; port 0 picks a free port), registers it
    /// under `base`, and creates an agent with `config` and a seed from [`os_seed`]. Extra
    /// sockets are limited to what `config` may ask for (see [`tokens_needed`](Self::tokens_needed)).
    pub fn bind(
        registry: &Registry,
        base: Token,
        local: SocketAddr,
        config: AgentConfig,
    ) -> io::Result<Self> {
        let socket = std::net::UdpSocket::bind(local)?;
        let span = IceSockets::tokens_needed(&config);
        let agent = Agent::new(config, os_seed());
        IceSockets::new(registry, base, span, socket, agent, Clock::new())
    }

    /// Wraps a socket the caller bound and an agent the caller built, on the caller's `clock`,
    /// registering the socket under `base`; at most `span` sockets (the host socket included)
    /// will ever be registered, under `base .. base + span`.
    ///
    /// The socket's address is added as a host candidate (a no-op if the agent has it already),
    /// so it must be bound to a concrete IP, not the unspecified address.
    pub fn new(
        registry: &Registry,
        base: Token,
        span: usize,
        socket: std::net::UdpSocket,
        mut agent: Agent,
        clock: Clock,
    ) -> io::Result<Self> {
        let local = socket.local_addr()?;
        if span == 0 || base.0.checked_add(span - 1).is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the token range is empty or overflows",
            ));
        }
        agent
            .add_host_candidate(clock.now(), local)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut this = IceSockets {
            agent,
            clock,
            registry: registry.try_clone()?,
            base: base.0,
            span,
            sockets: Vec::with_capacity(1),
            addrs: Vec::with_capacity(1),
            app: VecDeque::new(),
            buf: vec![0; RECV_BUFFER_LEN],
            out: vec![0; TRANSMIT_BUFFER_LEN],
        };
        this.add_socket(socket)?;
        Ok(this)
    }

    /// How many tokens, from the base token, this may register.
    pub fn token_span(&self) -> usize {
        self.span
    }

    /// The tokens registered now, host socket first.
    pub fn tokens(&self) -> impl Iterator<Item = Token> + '_ {
        (0..self.sockets.len()).map(|i| Token(self.base + i))
    }

    /// The host socket's address (the host candidate).
    pub fn local_addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Every socket's address, in token order (host socket first).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The agent, for reading its state.
    pub fn agent(&self) -> &Agent {
        &self.agent
    }

    /// The agent, for calls this type does not wrap. Give it times from
    /// [`clock`](Self::clock), then call [`handle_timeout`](Self::handle_timeout) so its output
    /// is sent.
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

    /// Handles a readiness event: reads every waiting datagram on the socket, queues the
    /// application's, and sends what the agent wants sent. Returns whether `token` was ours;
    /// an error is a failure to receive.
    pub fn handle_event(&mut self, token: Token) -> io::Result<bool> {
        let Some(index) = token
            .0
            .checked_sub(self.base)
            .filter(|i| *i < self.sockets.len())
        else {
            return Ok(false);
        };
        let local = self.addrs[index];
        loop {
            let (n, from) = match self.sockets[index].recv_from(&mut self.buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if is_transient(&e) => continue,
                Err(e) => {
                    self.pump(self.clock.now());
                    return Err(io::Error::new(
                        e.kind(),
                        format!("receiving on {local}: {e}"),
                    ));
                }
            };
            let now = self.clock.now();
            let received = self
                .agent
                .handle_datagram(now, Datagram::new(local, from, &self.buf[..n]));
            if let Received::AppData { payload, .. } = received {
                if self.app.len() < MAX_QUEUED_APP {
                    self.app.push_back(AppDatagram {
                        local,
                        from,
                        payload: payload.to_vec(),
                    });
                }
            } else {
                // Answer checks as they come: the agent holds only a few responses at a time.
                self.pump(now);
            }
        }
        self.pump(self.clock.now());
        Ok(true)
    }

    /// Advances the agent's timers and sends what is due; call when
    /// [`next_timeout`](Self::next_timeout) has elapsed (early calls are harmless).
    pub fn handle_timeout(&mut self) {
        let now = self.clock.now();
        self.agent.handle_timeout(now);
        self.pump(now);
    }

    /// How long the caller's `Poll::poll` may block before
    /// [`handle_timeout`](Self::handle_timeout) is due; `None` when nothing is scheduled.
    pub fn next_timeout(&self) -> Option<Duration> {
        self.agent.poll_deadline().map(|d| self.clock.until(d.at))
    }

    /// The next event from the agent (candidates to signal, connection state changes).
    pub fn poll_event(&mut self) -> Option<IceEvent> {
        self.agent.poll_event()
    }

    /// The next application datagram received, oldest first.
    pub fn recv_app(&mut self) -> Option<AppDatagram> {
        self.app.pop_front()
    }

    /// Sends one application datagram on the selected path: from the path's local socket to
    /// its remote address.
    ///
    /// Fails with [`io::ErrorKind::NotConnected`] when no path is selected, with
    /// [`io::ErrorKind::AddrNotAvailable`] when the path's local address is not one of these
    /// sockets (a relayed path, which needs a TURN client this driver does not run), and with
    /// [`io::ErrorKind::WouldBlock`] when the socket's send buffer is full.
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
                    "the selected path's local address is not one of these sockets",
                )
            })?;
        self.sockets[index].send_to(payload, path.remote)?;
        Ok(())
    }

    /// Does what an [`Action`] asks and answers the agent with [`Agent::handle_io`]; returns the
    /// addresses it reported. The pump calls this for every action the agent emits; it is
    /// public for callers that drive actions themselves and for tests.
    ///
    /// [`Action::BindSockets`] binds up to `count` sockets on the IP it names (port 0),
    /// within the [`token_span`](Self::token_span), registers them under the next tokens and
    /// reports the ones that work (fewer is fine, the agent only loses odds); it fails only
    /// when none could be opened, after answering the agent with no sockets. Actions this
    /// driver does not know fail with [`io::ErrorKind::Unsupported`].
    pub fn perform_action(&mut self, action: Action) -> io::Result<Vec<SocketAddr>> {
        match action {
            Action::BindSockets { token, count, ip } => {
                let room = self.span.saturating_sub(self.sockets.len());
                let count = count.min(u16::try_from(room).unwrap_or(u16::MAX));
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

    /// Removes every socket from the registry now (dropping does it too).
    pub fn deregister(&mut self) -> io::Result<()> {
        for socket in &mut self.sockets {
            self.registry.deregister(socket)?;
        }
        Ok(())
    }

    /// Performs pending actions and sends every due transmit.
    fn pump(&mut self, now: holepunch_core::Instant) {
        while let Some(action) = self.agent.poll_action() {
            // The agent was answered either way; without the sockets it carries on with fewer
            // chances, which is all a failure here could change.
            let _ = self.perform_action(action);
        }
        while let Some(t) = self.agent.poll_transmit(now, &mut self.out) {
            let index = t
                .from
                .and_then(|from| self.addrs.iter().position(|a| *a == from))
                .unwrap_or(0);
            // UDP may lose any datagram (WouldBlock included); the agent's retransmissions and
            // timeouts cover a failed send, and one unreachable candidate must not stop the rest.
            let _ = self.sockets[index].send_to(&self.out[..t.len], t.to);
        }
    }

    /// Registers a bound socket under the next token; returns its address.
    fn add_socket(&mut self, socket: std::net::UdpSocket) -> io::Result<SocketAddr> {
        let addr = socket.local_addr()?;
        socket.set_nonblocking(true)?;
        let mut socket = UdpSocket::from_std(socket);
        let index = self.sockets.len();
        if index >= self.span {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no token left in the range",
            ));
        }
        self.registry
            .register(&mut socket, Token(self.base + index), Interest::READABLE)?;
        self.sockets.push(socket);
        self.addrs.push(addr);
        Ok(addr)
    }
}

impl Drop for IceSockets {
    /// Deregisters the sockets before they close.
    fn drop(&mut self) {
        let _ = self.deregister();
    }
}
