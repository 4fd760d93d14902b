//! holepunch-mio: drives `holepunch-core` from the caller's `mio` event loop.
//!
//! Nothing here owns a [`Poll`] except the [`run_stun`] convenience. The caller registers our
//! sockets with its own [`Registry`], choosing the [`Token`]s (a base token; a server with four
//! sockets takes four consecutive ones), and calls us back:
//!
//! - `handle_event(token)` for every readiness event (we ignore tokens that are not ours),
//! - `handle_timeout()` when the poll returned because [`StunClient::next_timeout`] elapsed
//!   (calling it early is harmless),
//! - `next_timeout()` to bound the next `Poll::poll`.
//!
//! Sockets are non-blocking and registered for readability only: a datagram that cannot be sent
//! right now (`WouldBlock`) is dropped, as UDP may drop it anyway, and the core's retransmission
//! recovers. Shared types ([`StunOptions`], [`StunReport`], [`DriverError`], [`Clock`]) come from
//! `holepunch-std`.
//!
//! ```no_run
//! use holepunch_mio::{StunClient, StunOptions};
//! use mio::{Events, Poll, Token};
//!
//! let mut poll = Poll::new()?;
//! let mut events = Events::with_capacity(64);
//! let server = "192.0.2.1:3478".parse()?;
//! let mut stun = StunClient::start(poll.registry(), Token(7), server, &StunOptions::default())?;
//! let result = loop {
//!     if let Some(result) = stun.take_result() {
//!         break result;
//!     }
//!     poll.poll(&mut events, stun.next_timeout())?;
//!     for event in &events {
//!         // Your own sockets' tokens go to your own handlers; ours are ignored by them.
//!         stun.handle_event(event.token());
//!     }
//!     stun.handle_timeout();
//! };
//! println!("mapped {}", result?.mapped);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod ice;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use holepunch_core::io::Datagram;
use holepunch_core::stun::TransactionId;
use holepunch_core::stun::client::Client;
use holepunch_core::stun::server::{Server, ServerConfig};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Registry, Token};

pub use holepunch_std::{Clock, DriverError, StunOptions, StunReport, os_seed};
use holepunch_std::{
    RECV_BUFFER_LEN, RESPONSE_BUFFER_LEN, event_id, is_transient, report_or_error,
};

/// One Binding transaction on a socket registered with the caller's `Poll`.
#[derive(Debug)]
pub struct StunClient {
    socket: UdpSocket,
    token: Token,
    local: SocketAddr,
    clock: Clock,
    client: Client,
    id: TransactionId,
    out: Vec<u8>,
    buf: Vec<u8>,
    result: Option<Result<StunReport, DriverError>>,
    finished: bool,
}

impl StunClient {
    /// Binds a socket (see [`StunOptions::local`]), registers it under `token` and sends the
    /// request.
    pub fn start(
        registry: &Registry,
        token: Token,
        server: SocketAddr,
        options: &StunOptions,
    ) -> Result<Self, DriverError> {
        let socket = UdpSocket::bind(options.local_for(server))?;
        StunClient::start_on(registry, token, socket, server, options)
    }

    /// Like [`start`](Self::start) on a socket the caller bound (`options.local` is ignored).
    pub fn start_on(
        registry: &Registry,
        token: Token,
        mut socket: UdpSocket,
        server: SocketAddr,
        options: &StunOptions,
    ) -> Result<Self, DriverError> {
        registry.register(&mut socket, token, Interest::READABLE)?;
        let clock = Clock::new();
        let mut client = Client::new(options.client.clone(), options.seed_or_os());
        let id = client.binding(clock.now(), server, options.binding)?;
        let mut this = StunClient {
            local: socket.local_addr()?,
            socket,
            token,
            clock,
            client,
            id,
            out: vec![0; options.client.max_request_len],
            buf: vec![0; RECV_BUFFER_LEN],
            result: None,
            finished: false,
        };
        tracing::debug!(%server, local = %this.local, ?token, "stun request started");
        this.pump();
        Ok(this)
    }

    /// The token the socket is registered under.
    pub fn token(&self) -> Token {
        self.token
    }

    /// The socket's bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Handles a readiness event: reads every waiting datagram. Returns whether `token` was ours.
    pub fn handle_event(&mut self, token: Token) -> bool {
        if token != self.token {
            return false;
        }
        while !self.finished {
            match self.socket.recv_from(&mut self.buf) {
                Ok((n, from)) => {
                    let d = Datagram::new(self.local, from, &self.buf[..n]);
                    self.client.handle_datagram(self.clock.now(), d);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if is_transient(&e) => {}
                Err(e) => {
                    self.finish(Err(e.into()));
                    return true;
                }
            }
        }
        self.pump();
        true
    }

    /// Lets the core retransmit or give up; call when [`next_timeout`](Self::next_timeout)
    /// has elapsed (early calls are harmless).
    pub fn handle_timeout(&mut self) {
        self.pump();
    }

    /// How long the caller's `Poll::poll` may block before [`handle_timeout`](Self::handle_timeout)
    /// is due; `None` once the transaction has finished.
    pub fn next_timeout(&self) -> Option<Duration> {
        if self.finished {
            return None;
        }
        self.client.poll_timeout().map(|t| self.clock.until(t))
    }

    /// Whether the transaction has finished (its result may already have been taken).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The result, once, after the transaction finished.
    pub fn take_result(&mut self) -> Option<Result<StunReport, DriverError>> {
        self.result.take()
    }

    /// Removes the socket from the caller's registry.
    pub fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        registry.deregister(&mut self.socket)
    }

    /// Sends what is due, then collects the event if there is one.
    fn pump(&mut self) {
        if self.finished {
            return;
        }
        let now = self.clock.now();
        self.client.handle_timeout(now);
        while let Some(t) = self.client.poll_transmit(now, &mut self.out) {
            match self.socket.send_to(&self.out[..t.len], t.to) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return self.finish(Err(e.into())),
            }
        }
        while let Some(event) = self.client.poll_event() {
            if event_id(&event) == self.id {
                let result = report_or_error(&event, self.local);
                return self.finish(result);
            }
        }
    }

    fn finish(&mut self, result: Result<StunReport, DriverError>) {
        match &result {
            Ok(r) => {
                tracing::debug!(local = %self.local, mapped = %r.mapped, rtt = ?r.rtt, "server answered")
            }
            Err(e) => tracing::debug!(local = %self.local, error = %e, "no answer"),
        }
        self.result = Some(result);
        self.finished = true;
    }
}

/// A STUN server whose sockets are registered with the caller's `Poll`.
#[derive(Debug)]
pub struct StunServer {
    server: Server,
    sockets: Vec<UdpSocket>,
    base: usize,
    buf: Vec<u8>,
    out: Vec<u8>,
    clock: holepunch_std::Clock,
}

impl StunServer {
    /// Binds every socket of `config` (port 0 allowed, see
    /// [`holepunch_std::bind_server_sockets`]) and registers socket `i` under token `base + i`,
    /// in `Server::local_addresses` order.
    pub fn bind(
        registry: &Registry,
        base: Token,
        config: ServerConfig,
    ) -> Result<Self, DriverError> {
        let (server, std_sockets) = holepunch_std::bind_server_sockets(config)?;
        let mut sockets = Vec::with_capacity(std_sockets.len());
        for (i, socket) in std_sockets.into_iter().enumerate() {
            socket.set_nonblocking(true)?;
            let mut socket = UdpSocket::from_std(socket);
            let token = base.0.checked_add(i).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "token range overflows")
            })?;
            registry.register(&mut socket, Token(token), Interest::READABLE)?;
            sockets.push(socket);
        }
        Ok(StunServer {
            server,
            sockets,
            base: base.0,
            buf: vec![0; RECV_BUFFER_LEN],
            out: vec![0; RESPONSE_BUFFER_LEN],
            clock: holepunch_std::Clock::new(),
        })
    }

    /// The bound addresses, primary first; socket `i` is registered under `base + i`.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.server.local_addresses().collect()
    }

    /// The configuration actually served (port 0 replaced by the bound ports).
    pub fn config(&self) -> &ServerConfig {
        self.server.config()
    }

    /// The tokens this server's sockets are registered under.
    pub fn tokens(&self) -> impl Iterator<Item = Token> + '_ {
        (0..self.sockets.len()).map(|i| Token(self.base + i))
    }

    /// Handles a readiness event: answers every waiting datagram. Returns whether `token` was
    /// ours; an error is a failure to receive (failures to send one answer are ignored).
    pub fn handle_event(&mut self, token: Token) -> io::Result<bool> {
        let Some(index) = token
            .0
            .checked_sub(self.base)
            .filter(|i| *i < self.sockets.len())
        else {
            return Ok(false);
        };
        let Some(local) = self.server.local_addresses().nth(index) else {
            return Ok(false);
        };
        loop {
            let (n, from) = match self.sockets[index].recv_from(&mut self.buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if is_transient(&e) => continue,
                Err(e) => return Err(e),
            };
            let now = self.clock.now();
            let d = Datagram::new(local, from, &self.buf[..n]);
            self.server.handle_datagram(now, d);
            while let Some(t) = self.server.poll_transmit(now, &mut self.out) {
                // The core names the socket to answer from (CHANGE-REQUEST moves it).
                let sender = t
                    .from
                    .and_then(|a| self.server.local_addresses().position(|l| l == a))
                    .unwrap_or(index);
                if let Err(e) = self.sockets[sender].send_to(&self.out[..t.len], t.to) {
                    tracing::debug!(to = %t.to, error = %e, "response not sent");
                }
            }
        }
    }

    /// Removes every socket from the caller's registry.
    pub fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        for socket in &mut self.sockets {
            registry.deregister(socket)?;
        }
        Ok(())
    }
}

/// Runs one Binding transaction on a `Poll` of its own: the whole event loop in a dozen lines,
/// for tests and as an example of driving [`StunClient`].
pub fn run_stun(server: SocketAddr, options: &StunOptions) -> Result<StunReport, DriverError> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(16);
    let mut client = StunClient::start(poll.registry(), Token(0), server, options)?;
    loop {
        if let Some(result) = client.take_result() {
            return result;
        }
        match poll.poll(&mut events, client.next_timeout()) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        for event in &events {
            client.handle_event(event.token());
        }
        client.handle_timeout();
    }
}
