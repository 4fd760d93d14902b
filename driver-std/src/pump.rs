//! What every ICE driver does the same way, whatever it waits with: [`IcePump`].
//!
//! An ICE driver owns a composed [`Agent`] (the one every holepunch driver pumps), the clock it runs on, and a set of UDP sockets: the host
//! socket plus any the agent asks for with [`Action::BindSockets`]. Drivers differ only in how
//! they hold a socket and wait for it (this crate's [`IceSocket`](crate::ice::IceSocket) runs a
//! reader thread per socket; `holepunch-mio`'s `IceSockets` registers each with the caller's
//! `mio::Poll`). That difference is a [`SocketSet`]; the rest is [`IcePump`]:
//!
//! - the calls the application makes between steps (credentials, remote candidates, the
//!   selected path, sending its own datagrams on that path), each followed by a pump;
//! - [`perform_action`](IcePump::perform_action): binding the sockets an action asks for and
//!   answering the agent with [`Agent::handle_io`];
//! - [`pump`](IcePump::pump): draining `poll_action` and `poll_transmit`, sending each transmit
//!   from the socket its `Transmit::from` names;
//! - [`handle_datagram`](IcePump::handle_datagram): feeding a datagram with the address of the
//!   socket it arrived on.
//!
//! A driver type holds an [`IcePump`] in a field and gets its public methods, with their docs,
//! from [`ice_pump_methods!`](crate::ice_pump_methods) (inherent methods, not `Deref`, so that
//! calls like `ice.perform_action(.. ice.local_addr() ..)` borrow as they would on any type).

use std::io;
use std::net::{SocketAddr, UdpSocket};

use holepunch_core::demux::Received;
use holepunch_core::ice::agent::{Action, IceError, IceEvent, IoResult, PathInfo};
use holepunch_core::ice::candidate::Candidate;
use holepunch_core::ice::credentials::IceCredentials;
use holepunch_core::io::Datagram;
use holepunch_core::{Agent, Event};

use crate::Clock;
use crate::ice::{TRANSMIT_BUFFER_LEN, bind_extra_sockets};

/// How a driver holds its sockets: the one part of an ICE driver [`IcePump`] leaves to it.
pub trait SocketSet {
    /// Takes a bound socket into the set (starting its reader, registering it for readiness)
    /// as the next index; returns its address. On error the socket is dropped and the set is
    /// unchanged.
    fn add(&mut self, socket: UdpSocket) -> io::Result<SocketAddr>;

    /// Sends `payload` to `to` from the socket at `index` (the order [`add`](Self::add) took
    /// them in).
    fn send_to(&self, index: usize, payload: &[u8], to: SocketAddr) -> io::Result<usize>;

    /// How many more sockets [`add`](Self::add) can take: `usize::MAX` when only the system
    /// limits them.
    fn room(&self) -> usize {
        usize::MAX
    }
}

/// An ICE [`Agent`] with its clock and its sockets, pumped through the agent's public API only.
///
/// See the [module documentation](self).
#[derive(Debug)]
pub struct IcePump<S> {
    agent: Agent,
    clock: Clock,
    sockets: S,
    /// The address of each socket in `sockets`, by index; index 0 is the host socket.
    addrs: Vec<SocketAddr>,
    out: Vec<u8>,
}

impl<S: SocketSet> IcePump<S> {
    /// Takes `host` (bound to a concrete IP, not the unspecified address) into `sockets` as
    /// index 0 and adds its address to `agent` as a host candidate (a no-op if the agent has it
    /// already). `clock` is the one the agent has been given times from, if any.
    pub fn new(sockets: S, host: UdpSocket, mut agent: Agent, clock: Clock) -> io::Result<Self> {
        let local = host.local_addr()?;
        agent
            .add_host_candidate(clock.now(), local)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut this = IcePump {
            agent,
            clock,
            sockets,
            addrs: Vec::with_capacity(1),
            out: vec![0; TRANSMIT_BUFFER_LEN],
        };
        this.add_socket(host)?;
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
    /// times from [`clock`](Self::clock); the driver sends its output at its next step (the
    /// std driver's `step`, the mio driver's `handle_timeout`).
    pub fn agent_mut(&mut self) -> &mut Agent {
        &mut self.agent
    }

    /// The clock the agent runs on.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The socket set, for the driver's own waiting.
    pub fn sockets(&self) -> &S {
        &self.sockets
    }

    /// The socket set, for the driver's own waiting and teardown.
    pub fn sockets_mut(&mut self) -> &mut S {
        &mut self.sockets
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
        tracing::debug!(%candidate, "remote candidate");
        let result = self.agent.add_remote_candidate(now, candidate);
        if let Err(e) = &result {
            tracing::debug!(error = %e, "remote candidate refused");
        }
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
    /// Fails with [`io::ErrorKind::NotConnected`] when no path is selected, with
    /// [`io::ErrorKind::AddrNotAvailable`] when the path's local address is not one of this
    /// driver's sockets (a relayed path, which needs a TURN client these drivers do not run),
    /// and with the socket's own error otherwise ([`io::ErrorKind::WouldBlock`] when a
    /// non-blocking socket's send buffer is full).
    pub fn send_app(&self, payload: &[u8]) -> io::Result<()> {
        let path = self
            .agent
            .selected_path()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "no ICE path selected"))?;
        let index = self.index_of(path.local).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                "the selected path's local address is not one of this driver's sockets",
            )
        })?;
        self.sockets.send_to(index, payload, path.remote)?;
        Ok(())
    }

    /// Does what an [`Action`] asks and answers the agent with [`Agent::handle_io`]; returns the
    /// addresses it reported. [`pump`](Self::pump) calls this for every action the agent emits;
    /// it is public for callers that drive actions themselves and for tests.
    ///
    /// [`Action::BindSockets`] binds up to `count` sockets on the IP it names (port 0), no more
    /// than the socket set has [`room`](SocketSet::room) for, adds them to the set and reports
    /// the ones that work (fewer is fine, the agent only loses odds); it fails only when none
    /// could be opened, after answering the agent with no sockets. Actions this driver does not
    /// know fail with [`io::ErrorKind::Unsupported`].
    pub fn perform_action(&mut self, action: Action) -> io::Result<Vec<SocketAddr>> {
        match action {
            Action::BindSockets { token, count, ip } => {
                let count = count.min(u16::try_from(self.sockets.room()).unwrap_or(u16::MAX));
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
                tracing::debug!(%ip, asked = count, bound = bound.len(), "extra sockets bound");
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

    /// The agent's next ICE event. These drivers allocate no relay, so the agent reports
    /// relay events only to a caller that added a TURN server through
    /// [`agent_mut`](Self::agent_mut) (whose transmits these drivers cannot carry over TCP
    /// either); such events are logged and passed over.
    pub fn poll_event(&mut self) -> Option<IceEvent> {
        loop {
            match self.agent.poll_event()? {
                Event::Ice(e) => return Some(e),
                other => tracing::debug!(event = ?other, "event this driver does not report"),
            }
        }
    }

    /// When the agent next needs `handle_timeout` (now while output waits).
    pub fn poll_timeout(&self) -> Option<holepunch_core::Instant> {
        self.agent.poll_timeout().map(|d| d.at)
    }

    /// Performs pending actions and sends every due transmit; returns how many were sent.
    pub fn pump(&mut self, now: holepunch_core::Instant) -> usize {
        while let Some(action) = self.agent.poll_action() {
            // The agent was answered either way; without the sockets it carries on with fewer
            // chances, which is all a failure here could change.
            if let Err(e) = self.perform_action(action) {
                tracing::debug!(error = %e, "agent action failed");
            }
        }
        let mut sent = 0;
        while let Some(t) = self.agent.poll_transmit(now, &mut self.out) {
            let index = t.from.and_then(|from| self.index_of(from)).unwrap_or(0);
            // UDP may lose any datagram (WouldBlock included); the agent's retransmissions and
            // timeouts cover a failed send, and one unreachable candidate must not stop the rest.
            if let Err(e) = self.sockets.send_to(index, &self.out[..t.len], t.to) {
                tracing::trace!(to = %t.to, error = %e, "transmit lost on send");
            }
            sent += 1;
        }
        sent
    }

    /// Feeds a datagram that arrived on socket `index` from `from` to the agent; returns
    /// whether it is the application's (otherwise it was ICE traffic, or STUN that is not
    /// ours, which nobody else shares these sockets to want).
    pub fn handle_datagram(&mut self, index: usize, from: SocketAddr, payload: &[u8]) -> bool {
        let local = self.addrs[index];
        let received = self
            .agent
            .handle_datagram(self.clock.now(), Datagram::new(local, from, payload));
        matches!(received, Received::AppData { .. })
    }

    /// Takes a bound socket into the set; returns its address.
    fn add_socket(&mut self, socket: UdpSocket) -> io::Result<SocketAddr> {
        let addr = self.sockets.add(socket)?;
        tracing::debug!(%addr, index = self.addrs.len(), "socket bound");
        self.addrs.push(addr);
        Ok(addr)
    }

    /// The index of the socket bound to `addr`.
    fn index_of(&self, addr: SocketAddr) -> Option<usize> {
        self.addrs.iter().position(|a| *a == addr)
    }
}

/// Defines the [`IcePump`] calls as inherent methods of a driver type whose field `$pump` is
/// its [`IcePump`]: `local_addr`, `local_addrs`, `agent`, `agent_mut`, `clock`,
/// `local_credentials`, `gather`, `set_remote_credentials`, `add_remote_candidate`,
/// `end_of_remote_candidates`, `selected_path`, `send_app` and `perform_action`, each
/// forwarding to the pump's method of the same name. Use it inside an `impl` block.
#[macro_export]
macro_rules! ice_pump_methods {
    ($pump:ident) => {
        /// The host socket's address (the host candidate).
        pub fn local_addr(&self) -> ::std::net::SocketAddr {
            self.$pump.local_addr()
        }

        /// Every socket's address: the host socket first, then the extra sockets in opening
        /// order.
        pub fn local_addrs(&self) -> &[::std::net::SocketAddr] {
            self.$pump.local_addrs()
        }

        /// The agent, for reading its state.
        pub fn agent(&self) -> &$crate::__private::Agent {
            self.$pump.agent()
        }

        /// The agent, for calls this type does not wrap (restart, extra local candidates).
        /// Give it times from [`clock`](Self::clock); the driver sends its output at its next
        /// step (the std driver's `step`, the mio driver's `handle_timeout`).
        pub fn agent_mut(&mut self) -> &mut $crate::__private::Agent {
            self.$pump.agent_mut()
        }

        /// The clock the agent runs on.
        pub fn clock(&self) -> &$crate::Clock {
            self.$pump.clock()
        }

        /// Our ufrag and password, to signal to the peer.
        pub fn local_credentials(&self) -> $crate::__private::IceCredentials {
            self.$pump.local_credentials()
        }

        /// Starts gathering server-reflexive candidates from the configured STUN servers
        /// (`IceEvent::GatheringComplete` follows; at once without servers).
        pub fn gather(&mut self) {
            self.$pump.gather()
        }

        /// The peer's ufrag and password, from signalling.
        pub fn set_remote_credentials(&mut self, credentials: &$crate::__private::IceCredentials) {
            self.$pump.set_remote_credentials(credentials)
        }

        /// A candidate the peer signalled.
        pub fn add_remote_candidate(
            &mut self,
            candidate: $crate::__private::Candidate,
        ) -> ::core::result::Result<(), $crate::__private::IceError> {
            self.$pump.add_remote_candidate(candidate)
        }

        /// The peer signalled end-of-candidates.
        pub fn end_of_remote_candidates(&mut self) {
            self.$pump.end_of_remote_candidates()
        }

        /// The selected path, if any.
        pub fn selected_path(&self) -> ::core::option::Option<$crate::__private::PathInfo> {
            self.$pump.selected_path()
        }

        /// Sends one application datagram on the selected path: from the path's local socket
        /// to its remote address.
        ///
        /// Fails with `io::ErrorKind::NotConnected` when no path is selected, with
        /// `io::ErrorKind::AddrNotAvailable` when the path's local address is not one of this
        /// driver's sockets (a relayed path, which needs a TURN client these drivers do not
        /// run), and with the socket's own error otherwise (`io::ErrorKind::WouldBlock` when a
        /// non-blocking socket's send buffer is full).
        pub fn send_app(&self, payload: &[u8]) -> ::std::io::Result<()> {
            self.$pump.send_app(payload)
        }

        /// Does what an `Action` asks and answers the agent with `Agent::handle_io`; returns
        /// the addresses it reported. The driver's pump calls this for every action the agent
        /// emits; it is public for callers that drive actions themselves and for tests.
        ///
        /// `Action::BindSockets` binds up to `count` sockets on the IP it names (port 0), no
        /// more than the driver has room for, takes them into its socket set and reports the
        /// ones that work (fewer is fine, the agent only loses odds); it fails only when none
        /// could be opened, after answering the agent with no sockets. Actions this driver does
        /// not know fail with `io::ErrorKind::Unsupported`.
        pub fn perform_action(
            &mut self,
            action: $crate::__private::Action,
        ) -> ::std::io::Result<::std::vec::Vec<::std::net::SocketAddr>> {
            self.$pump.perform_action(action)
        }
    };
}
