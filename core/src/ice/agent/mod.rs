//! The ICE agent (RFC 8445 with trickle, RFC 8838, and consent freshness, RFC 7675).
//!
//! One [`Agent`] runs one ICE session with one peer over a set of local sockets the driver owns.
//! It is pumped like every holepunch state machine:
//!
//! - inputs: [`handle_datagram`](Agent::handle_datagram), [`handle_timeout`](Agent::handle_timeout),
//!   and the signalling calls (`add_remote_candidate`, `set_remote_credentials`, …);
//! - outputs: [`poll_transmit`](Agent::poll_transmit), [`poll_event`](Agent::poll_event),
//!   [`poll_timeout`](Agent::poll_timeout); drain all of them after any input.
//!
//! Every connectivity check is a STUN Binding request with short-term credentials and
//! MESSAGE-INTEGRITY; a datagram that fails integrity changes nothing. After connecting, the agent
//! keeps checking pairs better than the selected one (a relayed path is upgraded to a direct one
//! when that starts to work), refreshes consent on the selected pair every ~5 s (or at a longer
//! keepalive interval both sides proposed), and fails over to the next valid pair when consent
//! is lost. Tables are sized at construction; the steady state (application data, consent,
//! keepalives) allocates nothing.
//!
//! The code is split by the state each part owns: `candidates` (gathering and the candidate
//! tables), `pairs` (the check list), `inbound` (checks received, answers to ours),
//! `transactions` (STUN requests in flight and what is written on the wire), `nomination`
//! (selection and the relay hold), `consent` (RFC 7675), `keepalive` (the consent cadence both
//! sides agreed), `punch` (hard-NAT plans), `session` (credentials, role, restart), `synthesis`
//! (NAT64), `timers` (the deadline), and `config` and `events` for the public types. This file
//! holds the agent's state and the pump verbs.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::net::{IpAddr, SocketAddr};

use crate::demux::{self, Received};
use crate::ice::candidate::{Candidate, CandidateKind, priority};
use crate::ice::checklist::{CheckList, PairState, compatible, is_relayed, pair_priority};
use crate::ice::credentials::IceCredentials;
use crate::io::{Datagram, Deadline, IoToken, TimerReason, Transmit};
use crate::netcheck::Behaviour;
use crate::punch::{
    EasySideConfig, EasySidePlan, HardSideConfig, HardSidePlan, PortAllocation, PortPredictor,
    PunchAction,
};
use crate::rng::Rng;
use crate::stun::attr::types;
use crate::stun::transaction::{Attached, Entry, LastWait, Schedule, Store};
use crate::stun::{
    Attribute, Class, ErrorCode, IntegrityKey, Message, MessageBuilder, Method, TransactionId,
};
use crate::time::{Duration, Instant};

mod backoff;
mod candidates;
mod config;
mod consent;
mod events;
mod inbound;
mod keepalive;
mod nomination;
mod pairs;
mod punch;
mod session;
mod synthesis;
mod timers;
mod transactions;

pub use config::{AgentConfig, Nomination, PunchConfig};
pub use events::{AgentStats, IceError, IceEvent, PathInfo};
pub use keepalive::{MIN_KEEPALIVE, keepalive_for_lifetime};

use keepalive::{Keepalive, decode_keepalive_attribute};

use pairs::ranked_priority;

pub use crate::io::{Action, IoResult};

/// Largest USERNAME we build: two 256-character ufrags and a colon.
const MAX_USERNAME: usize = 513;
/// Responses queued before the first grows the table (up to `max_pending_responses`).
const INITIAL_PENDING_RESPONSES: usize = 16;
/// Transaction slots punch probes leave free for checks and consent.
const PROBE_RESERVE: usize = 16;
/// Priority of a peer-reflexive candidate learned without a PRIORITY to go by.
const PRFLX_PRIORITY: u32 = priority(CandidateKind::PeerReflexive, 65535, 1);
/// Server-reflexive answers remembered for the blind punch fallback.
const MAX_SRFLX_OBSERVATIONS: usize = 16;
/// Initial retransmission timeout of a punch probe (sent once; it only waits this long).
const PROBE_RTO: Duration = Duration::from_millis(500);

/// An ICE agent for one stream with one component.
#[derive(Debug)]
pub struct Agent {
    config: AgentConfig,
    rng: Rng,
    controlling: bool,
    tie_breaker: u64,
    local_credentials: IceCredentials,
    local_key: IntegrityKey,
    remote: Option<RemoteAuth>,
    locals: Vec<Candidate>,
    remotes: Vec<Candidate>,
    checklist: CheckList,
    transactions: Store<Tx>,
    responses: Vec<PendingResponse>,
    events: VecDeque<IceEvent>,
    next_check_at: Instant,
    selected: Option<usize>,
    path: Option<PathInfo>,
    consent_at: Instant,
    gathering: Gathering,
    remote_complete: bool,
    checking: bool,
    failed: bool,
    checking_since: Option<Instant>,
    /// Regular nomination's wait for better pairs after the first one succeeds.
    nomination_wait: NominationWait,
    punch: Punch,
    /// The latest `now` an input gave: the deadline while output is pending.
    now: Instant,
    /// The token of the next action.
    next_token: u32,
    stats: AgentStats,
    /// (mapped address, server) of the server-reflexive answers gathered, at most
    /// [`MAX_SRFLX_OBSERVATIONS`]: whether a mapping was seen to stay the same across servers.
    srflx_observations: Vec<(SocketAddr, SocketAddr)>,
    /// (base, OTHER-ADDRESS) pairs already asked for a mapping while gathering.
    other_addresses_asked: Vec<(SocketAddr, SocketAddr)>,
    /// Candidates gathered outside the agent (TURN allocations) still awaited.
    external_gathering: u32,
    /// This host's NAT mapping as netcheck measured it ([`Agent::set_local_mapping`]).
    local_mapping: Behaviour,
    /// While on a relay: when server-reflexive candidates are gathered again.
    regather_at: Instant,
    /// Re-gatherings on the relay since the backoff was last reset (the next wait doubles).
    regather_steps: u32,
    /// The network's NAT64 prefix, if the driver found one (see `synthesis`).
    nat64: Option<crate::nat64::Nat64Prefix>,
    /// The keepalive each side proposed.
    keepalive: Keepalive,
    /// The consent interval last reported (or configured): a change is an event.
    reported_consent_interval: Duration,
}

/// Hard-NAT punching state: at most one plan runs, decided once per session.
#[derive(Debug, Default)]
struct Punch {
    decided: bool,
    /// The decision time has passed once; later inputs re-evaluate, timers need not.
    delay_elapsed: bool,
    hard: Option<HardSidePlan>,
    easy: Option<EasySidePlan>,
    /// The local socket the easy side probes from.
    easy_from: Option<SocketAddr>,
    /// Extra sockets the driver opened for the hard side, by index.
    sockets: Vec<SocketAddr>,
    action: Option<Action>,
    /// The token of the socket request the driver has yet to answer.
    token: Option<IoToken>,
    /// When the blind fallback runs, if armed (see [`PunchConfig::blind_delay`]).
    blind_at: Option<Instant>,
    /// Probes sent so far, against [`PunchConfig::max_probes`].
    probes_sent: u32,
}

#[derive(Debug)]
struct RemoteAuth {
    key: IntegrityKey,
    username: [u8; MAX_USERNAME],
    username_len: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gathering {
    NotStarted,
    InProgress,
    Complete,
}

/// Regular nomination's wait, armed when the first pair succeeds while not connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NominationWait {
    /// Not armed.
    Idle,
    /// Better pairs get until then; `handle_timeout` takes the deadline once (so it is never a
    /// repeating wake-up) and moves on to `Elapsed`.
    Until(Instant),
    /// The wait is over: nominate the best valid pair.
    Elapsed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    Free,
    Gather {
        server: SocketAddr,
    },
    Check {
        pair: usize,
        use_candidate: bool,
    },
    Consent {
        pair: usize,
    },
    /// A punch probe: a single-shot check to an address that is not (yet) a candidate.
    Probe,
}

/// What the agent attaches to each of its STUN transactions (the id, addresses and timing
/// are the shared [`Store`]'s). Its requests are written afresh on every send from this (the
/// role and the keepalive proposal may change between retransmissions), and answers to checks
/// verify with the session's remote key, so the store keeps neither bytes nor keys for it.
#[derive(Clone, Copy, Debug)]
struct Tx {
    purpose: Purpose,
    /// Our role when the request was last sent: a 487 only switches a role still held.
    sent_controlling: bool,
}

impl Attached for Tx {
    fn is_free(&self) -> bool {
        self.purpose == Purpose::Free
    }

    fn in_flight(&self) -> bool {
        self.purpose != Purpose::Free
    }
}

type Transaction = Entry<Tx>;

#[derive(Clone, Copy, Debug)]
struct PendingResponse {
    id: TransactionId,
    local: SocketAddr,
    to: SocketAddr,
    role_conflict: bool,
}

/// `addr` with an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) turned into the IPv4 one.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

impl Agent {
    /// A new agent; `seed` drives credentials, tie-breaker and transaction ids.
    pub fn new(config: AgentConfig, seed: u64) -> Self {
        let mut rng = Rng::from_seed(seed);
        let local_credentials = IceCredentials::random(&mut rng);
        let local_key = IntegrityKey::short_term(local_credentials.pwd().as_bytes());
        let tie_breaker = rng.next_u64();
        let free = Tx {
            purpose: Purpose::Free,
            sent_controlling: config.controlling,
        };
        Agent {
            controlling: config.controlling,
            tie_breaker,
            local_credentials,
            local_key,
            remote: None,
            locals: Vec::with_capacity(config.max_local_candidates),
            remotes: Vec::with_capacity(config.max_remote_candidates),
            checklist: CheckList::with_capacity(config.max_pairs),
            transactions: Store::new(
                config.max_transactions,
                free,
                Schedule::rfc8489(config.check_rto),
                0,
            ),
            responses: Vec::with_capacity(
                INITIAL_PENDING_RESPONSES.min(config.max_pending_responses),
            ),
            events: VecDeque::with_capacity(config.max_events),
            next_check_at: Instant::ZERO,
            selected: None,
            path: None,
            consent_at: Instant::FAR_FUTURE,
            gathering: Gathering::NotStarted,
            remote_complete: false,
            checking: false,
            failed: false,
            checking_since: None,
            nomination_wait: NominationWait::Idle,
            punch: Punch::default(),
            now: Instant::ZERO,
            next_token: 0,
            stats: AgentStats::default(),
            srflx_observations: Vec::new(),
            other_addresses_asked: Vec::new(),
            external_gathering: 0,
            local_mapping: Behaviour::Unknown,
            regather_at: Instant::ZERO,
            regather_steps: 0,
            nat64: None,
            keepalive: Keepalive {
                local: config.keepalive_interval.map(|i| i.max(MIN_KEEPALIVE)),
                remote: None,
            },
            reported_consent_interval: config.consent_interval,
            rng,
            config,
        }
    }

    /// Our ufrag and password, to signal to the peer.
    pub fn local_credentials(&self) -> &IceCredentials {
        &self.local_credentials
    }

    /// Whether we are the controlling agent now (a role conflict can change it).
    pub fn is_controlling(&self) -> bool {
        self.controlling
    }

    /// The path application data should take, if one is selected.
    pub fn selected_path(&self) -> Option<PathInfo> {
        self.path
    }

    /// The check list: every pair, its state and priority (for diagnostics and tests).
    pub fn checklist(&self) -> &CheckList {
        &self.checklist
    }

    /// The peer's candidates, signalled or learnt from checks (peer-reflexive).
    pub fn remote_candidates(&self) -> &[Candidate] {
        &self.remotes
    }

    /// The local candidates gathered so far.
    pub fn local_candidates(&self) -> &[Candidate] {
        &self.locals
    }

    /// Whether `from` may be trusted as the peer: the remote of a pair on which an
    /// authenticated check succeeded, ours or the peer's (its valid check triggered ours).
    pub fn is_authenticated_remote(&self, from: SocketAddr) -> bool {
        self.checklist.pairs().iter().any(|p| {
            (p.state == PairState::Succeeded || p.triggered)
                && self
                    .remotes
                    .get(p.remote)
                    .is_some_and(|r| r.address == from)
        })
    }

    /// Feeds a datagram that arrived on one of the driver's sockets.
    ///
    /// Returns [`Received::AppData`] for the application's own datagrams (anything that is not
    /// STUN, RFC 7983), [`Received::Consumed`] for ICE traffic, and [`Received::Unrecognized`]
    /// for STUN that is not ours.
    #[inline]
    pub fn handle_datagram<'a>(&mut self, now: Instant, d: Datagram<'a>) -> Received<'a> {
        // The application's datagrams take one branch and no call: inlined into the driver.
        // A dual-stack socket reports IPv4 peers as `::ffff:a.b.c.d`: always the IPv4 form,
        // worked out only where it is used.
        if demux::classify(d.payload) != demux::Kind::Stun {
            return Received::AppData {
                from: canonical(d.from),
                payload: d.payload,
            };
        }
        self.handle_stun(now, canonical(d.local), canonical(d.from), d.payload)
    }

    /// [`handle_datagram`](Self::handle_datagram) with the datagram's parts as arguments.
    #[inline]
    pub fn handle_packet<'a>(
        &mut self,
        now: Instant,
        local: SocketAddr,
        from: SocketAddr,
        payload: &'a [u8],
    ) -> Received<'a> {
        self.handle_datagram(now, Datagram::new(local, from, payload))
    }

    #[inline(never)]
    fn handle_stun(
        &mut self,
        now: Instant,
        local: SocketAddr,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Received<'static> {
        self.observe(now);
        let Ok(msg) = Message::parse(datagram) else {
            return Received::Unrecognized;
        };
        if msg.method() != Method::BINDING
            || (msg.has_fingerprint() && msg.verify_fingerprint().is_err())
        {
            return Received::Unrecognized;
        }
        match msg.class() {
            Class::Request => self.handle_request(now, local, from, &msg),
            Class::Indication => Received::Consumed,
            Class::SuccessResponse | Class::ErrorResponse => {
                self.handle_response(now, local, from, &msg)
            }
        }
    }

    /// Advances timers: failed transactions, consent expiry, upgrade retries. Early calls are
    /// harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.observe(now);
        for ti in 0..self.transactions.len() {
            if !self.transactions.is_expired(ti, now) {
                continue;
            }
            let t = self.transactions[ti];
            self.transactions[ti].data.purpose = Purpose::Free;
            match t.data.purpose {
                Purpose::Check { pair, .. } => self.pair_failed(now, pair),
                Purpose::Gather { .. } => self.check_gathering_complete(),
                Purpose::Consent { .. } | Purpose::Probe | Purpose::Free => {}
            }
        }
        self.check_consent(now);
        if matches!(self.nomination_wait, NominationWait::Until(d) if now >= d) {
            self.nomination_wait = NominationWait::Elapsed;
            if self.controlling && self.path.is_none() {
                self.maybe_nominate_regular(now);
            }
        }
        self.maybe_start_punch(now);
        if let Some(plan) = self.punch.hard.as_mut() {
            plan.handle_timeout(now);
        }
        if let Some(plan) = self.punch.easy.as_mut() {
            plan.handle_timeout(now);
        }
        if let Some(sel) = self.selected {
            // Keep trying pairs better than the selected one (relay → direct upgrades).
            let sel_priority = self.checklist.get(sel).map_or(0, |p| p.priority);
            for p in self.checklist.pairs_mut() {
                if p.state == PairState::Failed && p.priority > sel_priority && p.retry_at <= now {
                    p.state = PairState::Waiting;
                }
            }
        }
        if self.controlling && self.path.is_none() {
            self.release_relay(now);
        }
        self.maybe_regather(now);
        self.check_failed();
    }

    /// The next datagram to send, written into `out` (1280 bytes suffice).
    pub fn poll_transmit(&mut self, now: Instant, out: &mut [u8]) -> Option<Transmit> {
        if let Some(r) = self.responses.pop() {
            return self.write_response(&r, out);
        }
        // Retransmissions and first sends of started transactions.
        if let Some(ti) = self.transactions.due(now) {
            return self.send_transaction(now, ti, out);
        }
        if let Some(t) = self.start_paced_check(now) {
            return self.send_transaction(now, t, out);
        }
        if let Some(t) = self.start_probe(now) {
            return self.send_transaction(now, t, out);
        }
        if let Some(t) = self.start_consent_check(now) {
            return self.send_transaction(now, t, out);
        }
        None
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<IceEvent> {
        self.events.pop_front()
    }

    /// The next thing only the driver can do (open sockets for hard-NAT punching); answer it
    /// with [`handle_io`](Self::handle_io) and the action's token.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.punch.action.take()
    }

    /// The driver's answer to an [`Action`]; an answer to an action the agent no longer
    /// waits for (after a restart, or with a stale token) changes nothing.
    pub fn handle_io(&mut self, now: Instant, token: IoToken, result: IoResult<'_>) {
        self.observe(now);
        match result {
            IoResult::SocketsBound(addrs) => {
                if self.punch.token != Some(token) {
                    return;
                }
                self.punch.token = None;
                let Some(plan) = self.punch.hard.as_mut() else {
                    return;
                };
                let n = addrs.len().min(usize::from(plan.sockets_needed()));
                self.punch.sockets.clear();
                self.punch.sockets.extend_from_slice(&addrs[..n]);
                for i in 0..n {
                    let _ = plan.handle_socket_opened(now, i as u16);
                }
            }
        }
    }

    /// Counters of work dropped because a queue was full.
    pub fn stats(&self) -> AgentStats {
        self.stats
    }

    fn push_event(&mut self, e: IceEvent) {
        if self.events.len() >= self.config.max_events.max(1) {
            self.events.pop_front();
            self.stats.events_dropped += 1;
        }
        self.events.push_back(e);
    }

    /// Every input with a time passes through here: it is the deadline while output is
    /// pending, and checks started without one (`set_remote_credentials`) start the
    /// punch and relay-hold clocks at the first input after them.
    fn observe(&mut self, now: Instant) {
        self.now = self.now.max(now);
        if self.checking && self.checking_since.is_none() {
            self.checking_since = Some(now);
        }
    }
}
