//! The composing [`Agent`]: one object per socket set that drivers and users pump.
//!
//! It owns the sub-machines of one connection and hides how they talk to each other:
//!
//! - the ICE session ([`crate::ice::agent::Agent`]): candidates, the check list, nomination,
//!   role, consent and keepalives, hard-NAT punching, NAT64 synthesis;
//! - the relays ([`crate::ice::relay::Relays`]): one TURN client per server, the choice of the
//!   nearest, and the wrapping of everything sent from the relayed candidate;
//! - netcheck ([`Agent::start_netcheck`]): a run on the agent's sockets, whose report goes to
//!   the punch planner (which then uses the measured mapping instead of guessing from
//!   server-reflexive ports) and to the application as [`Event::NatReport`]. A report from a
//!   run the driver did itself can be handed in with [`Agent::set_nat_report`].
//!
//! Port mapping and NAT64 prefix discovery need I/O the core does not do (a gateway's HTTP,
//! DNS): the driver runs them and hands their results in ([`Agent::add_port_mapping`],
//! [`Agent::set_nat64_prefix`]).
//!
//! The verbs are design.md §4's, with the same meaning as on every machine of the core:
//! inputs (`handle_datagram`, `handle_timeout`, `handle_io`, and the signalling calls) are
//! safe in any order, and after any of them the caller drains `poll_transmit`, `poll_action`
//! and `poll_event`, then sleeps until `poll_timeout`. A datagram is demultiplexed once: an
//! answer to a netcheck request (by transaction id) goes to netcheck; from a TURN server it
//! goes to the relays (RFC 7983: ChannelData only from a relay), and relayed data comes out of
//! [`handle_datagram`](Agent::handle_datagram) exactly as if it had arrived on the relayed
//! candidate; everything else goes to the ICE session.
//!
//! The steady state (application data both ways, consent, keepalives, relayed or direct)
//! allocates nothing: the only buffer of its own, for wrapping a check sent through a relay,
//! is allocated at construction.

use alloc::vec;
use alloc::vec::Vec;
use core::net::SocketAddr;

use crate::demux::{self, Received};
use crate::ice::agent::{Agent as IceAgent, AgentConfig};
use crate::ice::relay::Relays;
use crate::io::{Action, Datagram, Deadline, IoResult, IoToken, TimerReason, Transmit};
use crate::netcheck::{NetcheckConfig, NetcheckError};
use crate::rng::Rng;
use crate::time::Instant;

mod events;
mod netchecking;
mod relaying;
mod session;

use netchecking::Netchecking;

pub use events::{AgentStats, Event, SendError};

/// The largest datagram the agent wraps for a relay (a check, or application data).
pub const MAX_DATAGRAM: usize = 1500;

/// One connection's state machines, composed (see the [module docs](self)).
#[derive(Debug)]
pub struct Agent {
    ice: IceAgent,
    relays: Relays,
    netcheck: Netchecking,
    rng: Rng,
    /// A stream of its own for netcheck runs, so that starting one changes no other ids.
    netcheck_rng: Rng,
    /// A transmit of the ICE session that must be wrapped for a relay is copied here first.
    scratch: Vec<u8>,
    /// The latest `now` an input gave (relay timers are read against it).
    now: Instant,
    stats: AgentStats,
}

impl Agent {
    /// An agent for one connection with `config`'s ICE settings; `seed` makes every random
    /// choice (credentials, transaction ids, tie-breaker) reproducible.
    pub fn new(config: AgentConfig, seed: u64) -> Self {
        Agent {
            ice: IceAgent::new(config, seed),
            // A different stream for the TURN clients' transaction ids than the ICE session's.
            rng: Rng::from_seed(seed ^ 0x7475_726e_5f72_6e67),
            netcheck_rng: Rng::from_seed(seed ^ 0x6e65_7463_6865_636b),
            relays: Relays::new(),
            netcheck: Netchecking::default(),
            scratch: vec![0; MAX_DATAGRAM],
            now: Instant::ZERO,
            stats: AgentStats::default(),
        }
    }

    /// Feeds a datagram that arrived on one of the driver's sockets (or a frame from a TURN
    /// server's TCP connection, with that connection's local address as `local`).
    ///
    /// Returns [`Received::AppData`] for the application's own datagrams, also those the peer
    /// sent through our relay (`from` is then the peer's address as the relay saw it),
    /// [`Received::Consumed`] for ICE and TURN traffic, and [`Received::Unrecognized`] for
    /// STUN that is not ours.
    #[inline]
    pub fn handle_datagram<'a>(&mut self, now: Instant, d: Datagram<'a>) -> Received<'a> {
        // The application's datagrams go straight to the ICE session's fast path: a TURN
        // server sends only STUN and ChannelData, whose first bytes are not `Other`, and no
        // other sub-machine keeps state about them.
        if demux::classify(d.payload) == demux::Kind::Other {
            return self.ice.handle_datagram(now, d);
        }
        self.observe(now);
        self.handle_demuxed(now, d)
    }

    /// Advances every sub-machine's timers. Early and repeated calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.observe(now);
        // Netcheck first: a report it completes now reaches the planner before ICE runs.
        self.netcheck.handle_timeout(now);
        self.settle_netcheck();
        self.relays.handle_timeout(now, &mut self.ice);
        self.ice.handle_timeout(now);
    }

    /// Starts a netcheck run at `now` on `config.locals` (sockets the driver binds and pumps
    /// through this agent; the first may be an ICE host socket), replacing one in progress.
    /// Its requests come out of [`poll_transmit`](Self::poll_transmit) from the socket they
    /// name, its answers are taken out of [`handle_datagram`](Self::handle_datagram), and when
    /// it finishes the punch planner gets the measured mapping (as
    /// [`set_nat_report`](Self::set_nat_report) would give it) and [`Event::NatReport`]
    /// carries the report.
    pub fn start_netcheck(
        &mut self,
        now: Instant,
        config: NetcheckConfig,
    ) -> Result<(), NetcheckError> {
        self.observe(now);
        let seed = self.netcheck_rng.next_u64();
        self.netcheck.start(now, config, seed)
    }

    /// The driver's answer to an [`Action`], by its token; a stale token changes nothing.
    pub fn handle_io(&mut self, now: Instant, token: IoToken, result: IoResult<'_>) {
        self.observe(now);
        self.ice.handle_io(now, token, result);
    }

    /// The next datagram to send, written into `out` (1500 bytes suffice), with the local
    /// socket (or TURN TCP connection) to send it from.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut [u8]) -> Option<Transmit> {
        while let Some(t) = self.ice.poll_transmit(now, out) {
            let Some(relayed) = t.from.filter(|f| self.relays.is_relayed(*f)) else {
                return Some(t);
            };
            // Sent from the relayed candidate: it leaves through the TURN server.
            match self.wrap_from_relay(now, relayed, t.to, t.len, out) {
                Some(wrapped) => return Some(wrapped),
                // A check the relay cannot carry is lost, as on a lossy path: ICE retries.
                None => self.stats.relay_wraps_failed += 1,
            }
        }
        if let Some(t) = self.relays.poll_transmit(now, out) {
            return Some(t);
        }
        self.netcheck.poll_transmit(now, out)
    }

    /// The next thing only the driver can do (open sockets for hard-NAT punching); answer it
    /// with [`handle_io`](Self::handle_io).
    pub fn poll_action(&mut self) -> Option<Action> {
        self.ice.poll_action()
    }

    /// The next event for the application: relay events, then netcheck's report, then ICE
    /// events.
    pub fn poll_event(&mut self) -> Option<Event> {
        if let Some(e) = self.relays.poll_event() {
            return Some(Event::Relay(e));
        }
        if let Some(report) = self.netcheck.poll_report() {
            return Some(Event::NatReport(report));
        }
        self.ice.poll_event().map(Event::Ice)
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next needed, and why: the latest
    /// input's `now` while any output waits to be polled. Polling outputs never moves it.
    pub fn poll_timeout(&self) -> Option<Deadline> {
        let relays = self
            .relays
            .poll_timeout(self.now)
            .map(|at| Deadline::new(at, TimerReason::Relay));
        let ice_or_relays = Deadline::earliest(self.ice.poll_deadline(), relays);
        Deadline::earliest(ice_or_relays, self.netcheck.poll_deadline(self.now))
    }

    /// Writes application data for the selected path into `out` and says where it goes: the
    /// payload itself on a direct path, ChannelData (or a Send indication) for the TURN server
    /// on a relayed one. Drivers that send direct datagrams themselves can skip the copy:
    /// [`selected_path`](Self::selected_path) says where to, and only relayed paths need this.
    pub fn send(
        &mut self,
        now: Instant,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<Transmit, SendError> {
        self.observe(now);
        // The peer would take it for STUN and drop it (RFC 7983).
        if demux::classify(payload) == demux::Kind::Stun {
            return Err(SendError::LooksLikeStun);
        }
        let path = self.ice.selected_path().ok_or(SendError::NotConnected)?;
        if self.relays.is_relayed(path.local) {
            return self
                .relays
                .wrap(now, path.local, path.remote, payload, out)
                .map_err(SendError::Relay);
        }
        let room = out
            .get_mut(..payload.len())
            .ok_or(SendError::BufferTooSmall)?;
        room.copy_from_slice(payload);
        Ok(Transmit::new(Some(path.local), path.remote, payload.len()))
    }

    /// Whether `from` may be trusted as the peer: the remote of a pair on which an
    /// authenticated check succeeded, ours or the peer's (its valid check triggered ours).
    /// Application data from anyone else is not the peer's, whatever it claims.
    pub fn is_authenticated_remote(&self, from: SocketAddr) -> bool {
        self.ice.is_authenticated_remote(from)
    }

    /// The ICE session, for inspection (candidates, the check list, credentials).
    pub fn ice(&self) -> &IceAgent {
        &self.ice
    }

    /// Counters of work dropped or lost, across the sub-machines.
    pub fn stats(&self) -> AgentStats {
        let ice = self.ice.stats();
        AgentStats {
            responses_dropped: ice.responses_dropped,
            events_dropped: ice.events_dropped,
            netcheck_reports_dropped: self.netcheck.reports_dropped,
            ..self.stats
        }
    }

    /// STUN, ChannelData, or anything from a TURN server: netcheck's own answers first, then
    /// the relays, then ICE.
    #[inline(never)]
    fn handle_demuxed<'a>(&mut self, now: Instant, d: Datagram<'a>) -> Received<'a> {
        if self.netcheck.handle_datagram(now, d) {
            self.settle_netcheck();
            return Received::Consumed;
        }
        match self
            .relays
            .handle_datagram(now, &mut self.ice, d.local, d.from, d.payload)
        {
            crate::ice::relay::RelayReceived::Consumed => Received::Consumed,
            crate::ice::relay::RelayReceived::Data {
                relayed,
                peer,
                payload,
            } => self
                .ice
                .handle_datagram(now, Datagram::new(relayed, peer, payload)),
            crate::ice::relay::RelayReceived::NotRelayed => self.ice.handle_datagram(now, d),
        }
    }

    /// Hands a finished netcheck run's mapping to the punch planner (once per run).
    fn settle_netcheck(&mut self) {
        if let Some(mapping) = self.netcheck.settle() {
            self.ice.set_local_mapping(mapping);
        }
    }

    /// Every input with a time passes through here: relay deadlines are judged against it.
    fn observe(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }
}
