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
//! Inside, the agent is pumped through its public API only, by the same
//! [`IcePump`] as [`holepunch_std::ice::IceSocket`]: datagrams go to `handle_datagram` with the
//! address of the socket they arrived on, then actions (`poll_action` → bind and register
//! sockets → `handle_io`) and transmits (`poll_transmit`, sent from the socket `Transmit::from`
//! names) are drained. Sockets are non-blocking: a transmit that would block is dropped, as UDP may
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
//!
//! [`Action::BindSockets`]: holepunch_core::ice::agent::Action::BindSockets

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use holepunch_core::Agent;
use holepunch_core::ice::agent::{AgentConfig, IceEvent};
use holepunch_std::pump::{IcePump, SocketSet};
use holepunch_std::{Clock, RECV_BUFFER_LEN, is_transient, os_seed};
use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};

pub use holepunch_std::ice::AppDatagram;

/// How many application datagrams [`IceSockets`] holds for [`IceSockets::recv_app`]; newer
/// ones are dropped while the queue is full.
pub const MAX_QUEUED_APP: usize = 1024;

/// An ICE agent with its sockets, registered with the caller's `mio` registry.
///
/// The calls it shares with every ICE driver (credentials, candidates, [`send_app`],
/// [`perform_action`], ...) are [`IcePump`]'s, forwarded; the readiness calls are its own.
/// See the [module documentation](self) for the loop and the token layout.
///
/// [`send_app`]: Self::send_app
/// [`perform_action`]: Self::perform_action
#[derive(Debug)]
pub struct IceSockets {
    pump: IcePump<RegisteredSockets>,
    app: VecDeque<AppDatagram>,
    buf: Vec<u8>,
}

/// The mio driver's [`SocketSet`]: non-blocking sockets registered with the caller's registry
/// under consecutive tokens.
#[derive(Debug)]
pub struct RegisteredSockets {
    registry: Registry,
    base: usize,
    /// How many sockets (so tokens) this may own: the host socket plus the extra ones.
    span: usize,
    /// Index `i` is registered under `base + i`; index 0 is the host socket.
    sockets: Vec<UdpSocket>,
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
        agent: Agent,
        clock: Clock,
    ) -> io::Result<Self> {
        if span == 0 || base.0.checked_add(span - 1).is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the token range is empty or overflows",
            ));
        }
        let sockets = RegisteredSockets {
            registry: registry.try_clone()?,
            base: base.0,
            span,
            sockets: Vec::with_capacity(1),
        };
        Ok(IceSockets {
            pump: IcePump::new(sockets, socket, agent, clock)?,
            app: VecDeque::new(),
            buf: vec![0; RECV_BUFFER_LEN],
        })
    }

    holepunch_std::ice_pump_methods!(pump);

    /// How many tokens, from the base token, this may register.
    pub fn token_span(&self) -> usize {
        self.pump.sockets().span
    }

    /// The tokens registered now, host socket first.
    pub fn tokens(&self) -> impl Iterator<Item = Token> + '_ {
        let set = self.pump.sockets();
        (0..set.sockets.len()).map(|i| Token(set.base + i))
    }

    /// Handles a readiness event: reads every waiting datagram on the socket, queues the
    /// application's, and sends what the agent wants sent. Returns whether `token` was ours;
    /// an error is a failure to receive.
    pub fn handle_event(&mut self, token: Token) -> io::Result<bool> {
        let set = self.pump.sockets();
        let Some(index) = token
            .0
            .checked_sub(set.base)
            .filter(|i| *i < set.sockets.len())
        else {
            return Ok(false);
        };
        loop {
            let (n, from) = match self.pump.sockets().sockets[index].recv_from(&mut self.buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if is_transient(&e) => continue,
                Err(e) => {
                    self.pump.pump(self.pump.clock().now());
                    let local = self.pump.local_addrs()[index];
                    return Err(io::Error::new(
                        e.kind(),
                        format!("receiving on {local}: {e}"),
                    ));
                }
            };
            if self.pump.handle_datagram(index, from, &self.buf[..n]) {
                if self.app.len() < MAX_QUEUED_APP {
                    self.app.push_back(AppDatagram {
                        local: self.pump.local_addrs()[index],
                        from,
                        payload: self.buf[..n].to_vec(),
                    });
                } else {
                    tracing::debug!(%from, len = n, "application datagram dropped: queue full");
                }
            } else {
                // Answer checks as they come: the agent holds only a few responses at a time.
                self.pump.pump(self.pump.clock().now());
            }
        }
        self.pump.pump(self.pump.clock().now());
        Ok(true)
    }

    /// Advances the agent's timers and sends what is due; call when
    /// [`next_timeout`](Self::next_timeout) has elapsed (early calls are harmless).
    pub fn handle_timeout(&mut self) {
        let now = self.pump.clock().now();
        self.pump.agent_mut().handle_timeout(now);
        self.pump.pump(now);
    }

    /// How long the caller's `Poll::poll` may block before
    /// [`handle_timeout`](Self::handle_timeout) is due; `None` when nothing is scheduled.
    pub fn next_timeout(&self) -> Option<Duration> {
        let clock = self.pump.clock();
        self.pump.poll_timeout().map(|at| clock.until(at))
    }

    /// The next event from the agent (candidates to signal, connection state changes).
    pub fn poll_event(&mut self) -> Option<IceEvent> {
        let event = self.pump.poll_event();
        if let Some(event) = &event {
            tracing::debug!(?event, "ICE event");
        }
        event
    }

    /// The next application datagram received, oldest first.
    pub fn recv_app(&mut self) -> Option<AppDatagram> {
        self.app.pop_front()
    }

    /// Removes every socket from the registry now (dropping does it too).
    pub fn deregister(&mut self) -> io::Result<()> {
        self.pump.sockets_mut().deregister()
    }
}

impl RegisteredSockets {
    /// Removes every socket from the registry.
    fn deregister(&mut self) -> io::Result<()> {
        for socket in &mut self.sockets {
            self.registry.deregister(socket)?;
        }
        Ok(())
    }
}

impl SocketSet for RegisteredSockets {
    /// Makes the socket non-blocking and registers it under the next token.
    fn add(&mut self, socket: std::net::UdpSocket) -> io::Result<SocketAddr> {
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
        Ok(addr)
    }

    fn send_to(&self, index: usize, payload: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.sockets[index].send_to(payload, to)
    }

    /// The tokens left in the range.
    fn room(&self) -> usize {
        self.span.saturating_sub(self.sockets.len())
    }
}

impl Drop for RegisteredSockets {
    /// Deregisters the sockets before they close.
    fn drop(&mut self) {
        let _ = self.deregister();
    }
}
