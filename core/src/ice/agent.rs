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
//! when that starts to work), refreshes consent on the selected pair every ~5 s, and fails over to
//! the next valid pair when consent is lost. Tables are sized at construction; the steady state
//! (application data, consent, keepalives) allocates nothing.

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use core::net::{IpAddr, SocketAddr};

use super::candidate::{Candidate, CandidateKind, priority};
use super::checklist::{CheckList, PairState, compatible, is_relayed, pair_priority};
use super::credentials::IceCredentials;
use crate::demux::{self, Received};
use crate::io::{Datagram, Deadline, IoToken, TimerReason, Transmit};
use crate::punch::{
    EasySideConfig, EasySidePlan, HardSideConfig, HardSidePlan, PortAllocation, PortPredictor,
    PunchAction,
};
use crate::rng::Rng;
use crate::stun::attr::types;
use crate::stun::{
    Attribute, Class, ErrorCode, IntegrityKey, Message, MessageBuilder, Method, TransactionId,
};
use crate::time::{Duration, Instant};

/// How the controlling agent nominates (RFC 8445 §8.1.1; aggressive is RFC 5245's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nomination {
    /// Check first, then repeat the best valid pair's check with USE-CANDIDATE.
    Regular,
    /// Every check carries USE-CANDIDATE: the first pair to work is used at once, and better
    /// ones replace it as they succeed. Fastest; what apps wanting Tailscale-like speed choose.
    Aggressive,
}

/// Agent configuration. [`AgentConfig::rfc`] and [`AgentConfig::aggressive`] are the profiles.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Start as the controlling agent (the offerer, by convention).
    pub controlling: bool,
    /// Ta: the pacing interval between new checks (RFC 8445 §14.2, default 50 ms).
    pub ta: Duration,
    /// Initial retransmission timeout of a check (doubles per retransmission).
    pub check_rto: Duration,
    /// Ceiling of the doubling retransmission timeout (checks and gathering alike).
    pub check_rto_max: Duration,
    /// How many times a check is sent before the pair fails.
    pub check_max_sends: u32,
    /// How many times a gathering request is sent to a STUN server before it is given up.
    pub gather_max_sends: u32,
    /// Nomination mode.
    pub nomination: Nomination,
    /// STUN servers to learn server-reflexive candidates from.
    pub stun_servers: Vec<SocketAddr>,
    /// Also ask an RFC 5780 server's OTHER-ADDRESS for a mapping. Two answers from one server
    /// then show whether this side's NAT maps per destination (a "hard" NAT), so one
    /// configured server is enough for hard-NAT punching to start.
    pub probe_other_address: bool,
    /// Capacity of the local candidate table.
    pub max_local_candidates: usize,
    /// Capacity of the remote candidate table.
    pub max_remote_candidates: usize,
    /// Capacity of the check list.
    pub max_pairs: usize,
    /// How many STUN transactions (gathering, checks, consent) may be in flight.
    pub max_transactions: usize,
    /// How many answers to the peer's checks may wait for `poll_transmit`; one more is
    /// dropped and counted in [`AgentStats::responses_dropped`] (the peer retransmits).
    pub max_pending_responses: usize,
    /// How many events may wait for `poll_event`; one more drops the oldest and is counted
    /// in [`AgentStats::events_dropped`].
    pub max_events: usize,
    /// Mean interval of consent checks on the selected pair (RFC 7675: 5 s, randomised ±20%).
    pub consent_interval: Duration,
    /// Consent is lost when nothing answered for this long (RFC 7675: 30 s).
    pub consent_timeout: Duration,
    /// How often failed pairs that beat the selected one are tried again after connecting.
    /// While the selected path is relayed, server-reflexive candidates are also gathered again
    /// this often (new ones are trickled), so a network that starts passing UDP is noticed.
    pub upgrade_interval: Duration,
    /// Regular nomination: how long the controlling agent waits, after the first pair works,
    /// for better pairs still being checked before nominating the best valid one.
    pub nomination_delay: Duration,
    /// Hard-NAT punching, tried when ordinary checks have not connected after `delay`;
    /// `None` disables it.
    pub punch: Option<PunchConfig>,
    /// A relayed pair that works is nominated once no direct path can work any more, or this
    /// long after checks started, whichever comes first. Direct checks and punching go on
    /// while the relay carries the data, and a direct path that starts working replaces it.
    pub relay_hold: Duration,
}

/// When and how to punch through an endpoint-dependent ("hard") NAT.
#[derive(Clone, Copy, Debug)]
pub struct PunchConfig {
    /// How long ordinary checks get before punching starts (it costs sockets and packets).
    pub delay: Duration,
    /// The hard side's plan (extra sockets, refresh).
    pub hard: HardSideConfig,
    /// The easy side's plan (probe rate and budget).
    pub easy: EasySideConfig,
    /// How many predicted ports the easy side tries first against a sequential allocator.
    pub predicted_ports: u16,
}

impl Default for PunchConfig {
    fn default() -> Self {
        PunchConfig {
            delay: Duration::from_secs(1),
            hard: HardSideConfig::default(),
            easy: EasySideConfig::default(),
            predicted_ports: 64,
        }
    }
}

impl AgentConfig {
    /// RFC 8445 defaults: Ta 50 ms, RTO 500 ms, regular nomination.
    pub fn rfc(controlling: bool) -> Self {
        AgentConfig {
            controlling,
            ta: Duration::from_millis(50),
            check_rto: Duration::from_millis(500),
            // RFC 8489 §6.2.1: no ceiling; Rc = 7 sends over 31.5 s (39.5 s with the last wait).
            check_rto_max: Duration::MAX,
            check_max_sends: 7,
            // Gathering must end for the peer's end-of-candidates and for punching to decide:
            // four sends over 7.5 s.
            gather_max_sends: 4,
            nomination: Nomination::Regular,
            stun_servers: Vec::new(),
            probe_other_address: true,
            max_local_candidates: 16,
            max_remote_candidates: 32,
            max_pairs: 128,
            // Room for the easy side's punch probes in flight (100/s for 0.5 s each).
            max_transactions: 128,
            // A burst of checks from a peer that was not pumped for a while: none lost.
            max_pending_responses: 1024,
            max_events: 64,
            consent_interval: Duration::from_secs(5),
            consent_timeout: Duration::from_secs(30),
            // Most direct paths, punched ones included (median ~2 s), work by then; the rest
            // start on the relay and move to the direct path when punching finds it.
            relay_hold: Duration::from_secs(3),
            upgrade_interval: Duration::from_secs(5),
            nomination_delay: Duration::from_millis(500),
            punch: Some(PunchConfig::default()),
        }
    }

    /// For applications that want to connect as fast as the network allows: Ta 2 ms, RTO
    /// 100 ms doubling up to 1 s, aggressive nomination, upgrade probes every 2 s.
    ///
    /// A check is sent 22 times over 19.5 s and a pair fails 20.5 s after its first send: a
    /// peer whose signalling is late still finds us checking. (TCP signalling through a lossy
    /// link can deliver candidates 10 s late: a lost segment on a connection whose handshake
    /// was retransmitted waits 3 s, then 6 s.) With 20 % loss at each NAT, a check's round trip
    /// crosses a NAT four times and fails 59 % of the time; 22 sends make a working pair fail by
    /// chance once in 100,000 tries. A gathering request is sent 7 times over 3.5 s: a STUN
    /// server's round trip crosses one NAT twice (36 % loss) and is missed once in 1,300.
    pub fn aggressive(controlling: bool) -> Self {
        AgentConfig {
            ta: Duration::from_millis(2),
            check_rto: Duration::from_millis(100),
            check_rto_max: Duration::from_secs(1),
            check_max_sends: 22,
            gather_max_sends: 7,
            nomination: Nomination::Aggressive,
            upgrade_interval: Duration::from_secs(2),
            punch: Some(PunchConfig {
                delay: Duration::from_millis(500),
                ..PunchConfig::default()
            }),
            ..Self::rfc(controlling)
        }
    }
}

/// Misuse of the agent's API (never caused by network input).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IceError {
    /// A candidate table or the check list is full.
    #[error("too many candidates (raise the agent's capacity)")]
    TooManyCandidates,
    /// Host candidates must be concrete addresses.
    #[error("candidate address {0} is unspecified")]
    Unspecified(SocketAddr),
}

/// Counters of work the agent had to drop because a queue was full (see
/// [`AgentConfig::max_pending_responses`] and [`AgentConfig::max_events`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AgentStats {
    /// Answers to the peer's checks dropped (the peer's retransmission asks again).
    pub responses_dropped: u64,
    /// Events dropped, oldest first, because nobody polled them.
    pub events_dropped: u64,
}

/// The selected path, as reported in events and by [`Agent::selected_path`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathInfo {
    /// The local socket (base) to send from.
    pub local: SocketAddr,
    /// The peer's address to send to.
    pub remote: SocketAddr,
    /// Kind of the local candidate.
    pub local_kind: CandidateKind,
    /// Kind of the remote candidate.
    pub remote_kind: CandidateKind,
    /// Whether the path goes through a relay.
    pub relayed: bool,
    /// Round-trip time measured by the last check on this pair.
    pub rtt: Duration,
}

/// What the agent tells the application.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IceEvent {
    /// A local candidate to signal to the peer (trickle).
    LocalCandidate(Candidate),
    /// No more local candidates will come: signal end-of-candidates.
    GatheringComplete,
    /// Connectivity checks started.
    Checking,
    /// The first path was selected.
    Connected(PathInfo),
    /// The selected path changed (upgrade, nomination change, or failover).
    PathChanged(PathInfo),
    /// The selected path lost consent and no other valid path was left.
    ConsentLost(PathInfo),
    /// Every pair failed after the peer's end-of-candidates: no path.
    Failed,
    /// A role conflict (487) switched our role.
    RoleChanged {
        /// Whether we are now controlling.
        controlling: bool,
    },
}

pub use crate::io::{Action, IoResult};

/// Largest USERNAME we build: two 256-character ufrags and a colon.
const MAX_USERNAME: usize = 513;
/// Responses queued before the first grows the table (up to `max_pending_responses`).
const INITIAL_PENDING_RESPONSES: usize = 16;
/// Transaction slots punch probes leave free for checks and consent.
const PROBE_RESERVE: usize = 16;
/// Priority of a peer-reflexive candidate learned without a PRIORITY to go by.
const PRFLX_PRIORITY: u32 = priority(CandidateKind::PeerReflexive, 65535, 1);
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
    transactions: Vec<Transaction>,
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
    /// (base, OTHER-ADDRESS) pairs already asked for a mapping while gathering.
    other_addresses_asked: Vec<(SocketAddr, SocketAddr)>,
    /// Candidates gathered outside the agent (TURN allocations) still awaited.
    external_gathering: u32,
    /// While on a relay: when server-reflexive candidates are gathered again.
    regather_at: Instant,
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

#[derive(Clone, Copy, Debug)]
struct Transaction {
    purpose: Purpose,
    id: TransactionId,
    local: SocketAddr,
    to: SocketAddr,
    sends: u32,
    rto: Duration,
    next_send: Instant,
    last_sent: Instant,
    /// When the transaction fails if nothing answered (after its last send).
    deadline: Instant,
    max_sends: u32,
    /// Our role when the request was last sent: a 487 only switches a role still held.
    sent_controlling: bool,
}

#[derive(Clone, Copy, Debug)]
struct PendingResponse {
    id: TransactionId,
    local: SocketAddr,
    to: SocketAddr,
    role_conflict: bool,
}

impl Agent {
    /// A new agent; `seed` drives credentials, tie-breaker and transaction ids.
    pub fn new(config: AgentConfig, seed: u64) -> Self {
        let mut rng = Rng::from_seed(seed);
        let local_credentials = IceCredentials::random(&mut rng);
        let local_key = IntegrityKey::short_term(local_credentials.pwd().as_bytes());
        let tie_breaker = rng.next_u64();
        let free = Transaction {
            purpose: Purpose::Free,
            id: TransactionId::default(),
            local: SocketAddr::from(([0, 0, 0, 0], 0)),
            to: SocketAddr::from(([0, 0, 0, 0], 0)),
            sends: 0,
            rto: config.check_rto,
            next_send: Instant::FAR_FUTURE,
            last_sent: Instant::ZERO,
            deadline: Instant::FAR_FUTURE,
            max_sends: 0,
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
            transactions: vec![free; config.max_transactions.max(1)],
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
            other_addresses_asked: Vec::new(),
            external_gathering: 0,
            regather_at: Instant::ZERO,
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

    /// The peer's ufrag and password, from signalling. Checks start once these and a remote
    /// candidate are known.
    pub fn set_remote_credentials(&mut self, credentials: &IceCredentials) {
        let mut username = [0u8; MAX_USERNAME];
        let (r, l) = (
            credentials.ufrag().as_bytes(),
            self.local_credentials.ufrag().as_bytes(),
        );
        // Both ufrags are at most 256 bytes (IceCredentials enforces it), so this fits.
        username[..r.len()].copy_from_slice(r);
        username[r.len()] = b':';
        username[r.len() + 1..r.len() + 1 + l.len()].copy_from_slice(l);
        self.remote = Some(RemoteAuth {
            key: IntegrityKey::short_term(credentials.pwd().as_bytes()),
            username,
            username_len: r.len() + 1 + l.len(),
        });
        self.start_checking(None);
    }

    /// Adds a host candidate: a local socket's address on one interface. The driver binds the
    /// socket; `Transmit::from` names this address when the agent wants to send from it.
    pub fn add_host_candidate(&mut self, now: Instant, base: SocketAddr) -> Result<(), IceError> {
        if base.ip().is_unspecified() {
            return Err(IceError::Unspecified(base));
        }
        // RFC 8421: prefer IPv6 over IPv4 host candidates; within a family, earlier first.
        let same_family = self
            .locals
            .iter()
            .filter(|c| c.kind == CandidateKind::Host && c.address.is_ipv4() == base.is_ipv4())
            .count() as u16;
        let family_base: u16 = if base.is_ipv6() { 65535 } else { 65535 - 1024 };
        let local_preference = family_base.saturating_sub(same_family);
        self.add_local_candidate(now, Candidate::host(base, local_preference))
    }

    /// Adds a local candidate obtained elsewhere (relayed from a TURN allocation, port-mapped
    /// from the gateway); it is signalled and paired like the others.
    pub fn add_local_candidate(&mut self, now: Instant, c: Candidate) -> Result<(), IceError> {
        self.observe(now);
        if self
            .locals
            .iter()
            .any(|l| l.address == c.address && l.base == c.base)
        {
            return Ok(());
        }
        if self.locals.len() >= self.config.max_local_candidates {
            return Err(IceError::TooManyCandidates);
        }
        self.locals.push(c);
        self.push_event(IceEvent::LocalCandidate(c));
        // Server-reflexive and port-mapped candidates share their base's pairs (RFC 8445
        // §6.1.2.4 pruning): only host and relayed candidates are paired.
        if matches!(c.kind, CandidateKind::Host | CandidateKind::Relayed) {
            let local = self.locals.len() - 1;
            for remote in 0..self.remotes.len() {
                self.form_pair(now, local, remote)?;
            }
        }
        Ok(())
    }

    /// Starts learning server-reflexive candidates from the configured STUN servers for every
    /// host candidate added so far. [`IceEvent::GatheringComplete`] follows when all answered
    /// or timed out (at once when there are no servers).
    pub fn gather(&mut self, now: Instant) {
        self.observe(now);
        self.gathering = Gathering::InProgress;
        // Every configured server is asked again below, so their other addresses may be too.
        self.other_addresses_asked.clear();
        for li in 0..self.locals.len() {
            let base = self.locals[li];
            if base.kind != CandidateKind::Host {
                continue;
            }
            for si in 0..self.config.stun_servers.len() {
                let server = self.config.stun_servers[si];
                if server.is_ipv4() == base.address.is_ipv4() {
                    let purpose = Purpose::Gather { server };
                    let sends = self.config.gather_max_sends;
                    let rto = self.config.check_rto;
                    let _ = self.start_transaction(now, purpose, base.base, server, sends, rto);
                }
            }
        }
        self.check_gathering_complete();
    }

    /// Announces a candidate gathered outside the agent (a TURN allocation, see
    /// [`super::relay::Relays`]): [`IceEvent::GatheringComplete`] waits for the matching
    /// [`end_external_gathering`](Self::end_external_gathering).
    pub fn begin_external_gathering(&mut self) {
        self.external_gathering = self.external_gathering.saturating_add(1);
    }

    /// An external gathering announced with
    /// [`begin_external_gathering`](Self::begin_external_gathering) ended (its candidate, if
    /// any, was added with [`add_local_candidate`](Self::add_local_candidate)).
    pub fn end_external_gathering(&mut self) {
        self.external_gathering = self.external_gathering.saturating_sub(1);
        self.check_gathering_complete();
    }

    /// Adds a candidate the peer signalled (trickled); checks on its pairs start at once.
    pub fn add_remote_candidate(&mut self, now: Instant, c: Candidate) -> Result<(), IceError> {
        self.observe(now);
        if let Some(existing) = self.remotes.iter().position(|r| r.address == c.address) {
            // A peer-reflexive guess that is now signalled properly takes the signalled kind,
            // and its pairs the signalled priority (they were ranked with the check's).
            if self.remotes[existing].kind == CandidateKind::PeerReflexive {
                self.remotes[existing] = c;
                self.rerank_remote(now, existing);
            }
            return Ok(());
        }
        if self.remotes.len() >= self.config.max_remote_candidates {
            return Err(IceError::TooManyCandidates);
        }
        self.remotes.push(c);
        let remote = self.remotes.len() - 1;
        for local in 0..self.locals.len() {
            self.form_pair(now, local, remote)?;
        }
        Ok(())
    }

    /// The peer signalled end-of-candidates: once every pair has failed, the agent reports
    /// [`IceEvent::Failed`] instead of waiting for more.
    pub fn end_of_remote_candidates(&mut self) {
        self.remote_complete = true;
        // Every pair may have failed already, with no timer left to notice: decide now.
        self.check_failed();
    }

    /// ICE restart (RFC 8445 §9): new local credentials, remote state forgotten. The selected
    /// path stays usable for sending until a new one is selected, or until its consent expires
    /// (its last answer + `consent_timeout`): a peer that dies mid-restart is still noticed.
    pub fn restart(&mut self, now: Instant) {
        self.observe(now);
        let old_answer = self
            .selected
            .and_then(|s| self.checklist.get(s)?.last_response);
        self.local_credentials = IceCredentials::random(&mut self.rng);
        self.local_key = IntegrityKey::short_term(self.local_credentials.pwd().as_bytes());
        self.remote = None;
        self.remotes.clear();
        self.checklist.clear();
        self.responses.clear();
        for t in &mut self.transactions {
            if !matches!(t.purpose, Purpose::Gather { .. }) {
                t.purpose = Purpose::Free;
            }
        }
        self.locals
            .retain(|c| c.kind != CandidateKind::PeerReflexive);
        self.selected = None;
        self.remote_complete = false;
        self.nomination_wait = NominationWait::Idle;
        self.checking = false;
        self.failed = false;
        // Mid-restart (no pair selected, old path kept) `consent_at` is the old path's deadline.
        self.consent_at = old_answer.unwrap_or(now) + self.config.consent_timeout;
        self.next_check_at = now;
        for c in self.locals.clone().iter() {
            self.push_event(IceEvent::LocalCandidate(*c));
        }
        if self.gathering == Gathering::Complete {
            self.push_event(IceEvent::GatheringComplete);
        }
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

    /// Feeds a datagram that arrived on one of the driver's sockets.
    ///
    /// Returns [`Received::AppData`] for the application's own datagrams (anything that is not
    /// STUN, RFC 7983), [`Received::Consumed`] for ICE traffic, and [`Received::Unrecognized`]
    /// for STUN that is not ours.
    #[inline]
    pub fn handle_datagram<'a>(&mut self, now: Instant, d: Datagram<'a>) -> Received<'a> {
        // The application's datagrams take one branch and no call: inlined into the driver.
        if demux::classify(d.payload) != demux::Kind::Stun {
            return Received::AppData {
                from: d.from,
                payload: d.payload,
            };
        }
        self.handle_stun(now, d.local, d.from, d.payload)
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
            let t = self.transactions[ti];
            if t.purpose == Purpose::Free || t.sends < t.max_sends || now < t.deadline {
                continue;
            }
            self.transactions[ti].purpose = Purpose::Free;
            match t.purpose {
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

    /// On a relayed path, asks the STUN servers again every `upgrade_interval`: where UDP was
    /// blocked or the NAT changed, the new server-reflexive candidates are trickled and the
    /// direct pairs they make are checked (a path that works replaces the relay).
    fn maybe_regather(&mut self, now: Instant) {
        let relayed = self.path.is_some_and(|p| p.relayed);
        if !relayed || self.gathering != Gathering::Complete || now < self.regather_at {
            return;
        }
        self.regather_at = now + self.config.upgrade_interval;
        for li in 0..self.locals.len() {
            let base = self.locals[li];
            if base.kind != CandidateKind::Host {
                continue;
            }
            for si in 0..self.config.stun_servers.len() {
                let server = self.config.stun_servers[si];
                let asking = self
                    .transactions
                    .iter()
                    .any(|t| t.local == base.base && t.purpose == Purpose::Gather { server });
                if server.is_ipv4() == base.address.is_ipv4() && !asking {
                    let purpose = Purpose::Gather { server };
                    let sends = self.config.gather_max_sends;
                    let rto = self.config.check_rto;
                    let _ = self.start_transaction(now, purpose, base.base, server, sends, rto);
                }
            }
        }
    }

    /// The next datagram to send, written into `out` (1280 bytes suffice).
    pub fn poll_transmit(&mut self, now: Instant, out: &mut [u8]) -> Option<Transmit> {
        if let Some(r) = self.responses.pop() {
            return self.write_response(&r, out);
        }
        // Retransmissions and first sends of started transactions.
        if let Some(ti) = self
            .transactions
            .iter()
            .position(|t| t.purpose != Purpose::Free && t.sends < t.max_sends && t.next_send <= now)
        {
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

    /// When the agent next needs `handle_timeout`, and why: the latest `now` it was given
    /// while output (a response, an event or an action) waits to be polled or a send is due;
    /// `None` when nothing is scheduled. Polling outputs never moves it.
    pub fn poll_deadline(&self) -> Option<Deadline> {
        if !self.responses.is_empty() || !self.events.is_empty() || self.punch.action.is_some() {
            return Some(Deadline::new(self.now, TimerReason::OutputPending));
        }
        let mut best = Deadline::new(Instant::FAR_FUTURE, TimerReason::OutputPending);
        let mut consider = |at: Instant, reason: TimerReason| {
            if at < best.at {
                best = Deadline::new(at, reason);
            }
        };
        for t in &self.transactions {
            if t.purpose != Purpose::Free {
                if t.sends < t.max_sends {
                    consider(t.next_send, TimerReason::Retransmit);
                } else {
                    consider(t.deadline, TimerReason::TransactionTimeout);
                }
            }
        }
        // A full transaction table wakes us when an entry ends (its deadline, above), not
        // before: naming a due check we cannot start would have the caller spin.
        if let NominationWait::Until(due) = self.nomination_wait {
            consider(due, TimerReason::Nomination);
        }
        if self.path.is_some_and(|p| p.relayed) && self.gathering == Gathering::Complete {
            consider(self.regather_at, TimerReason::Upgrade);
        }
        // The relay hold ends: a working relayed pair is nominated then (release_relay).
        if let (true, None, Some(since)) = (self.controlling, self.path, self.checking_since) {
            let relayed = |p: &&super::checklist::Pair| {
                is_relayed(&self.locals[p.local], &self.remotes[p.remote])
            };
            let pairs = self.checklist.pairs();
            let works = pairs
                .iter()
                .filter(relayed)
                .any(|p| p.state == PairState::Succeeded);
            let nominated = pairs.iter().filter(relayed).any(|p| p.nominated);
            if works && !nominated {
                consider(since + self.config.relay_hold, TimerReason::RelayHold);
            }
        }
        let free = self.free_transactions();
        if free > 0 && self.can_check() && self.has_checkable_pair() {
            consider(self.next_check_at, TimerReason::Pacing);
        }
        if !self.has_direct_path() && free > PROBE_RESERVE {
            if let Some(t) = self
                .punch
                .hard
                .as_ref()
                .and_then(HardSidePlan::poll_timeout)
            {
                consider(t, TimerReason::Punch);
            }
            if let Some(t) = self
                .punch
                .easy
                .as_ref()
                .and_then(EasySidePlan::poll_timeout)
            {
                consider(t, TimerReason::Punch);
            }
            // The decision is due after the delay, or at once when end-of-candidates arrived
            // after it (it waited for them): in both cases `handle_timeout` decides.
            let decision_due = !self.punch.delay_elapsed
                || (!self.punch.decided
                    && self.remote_complete
                    && self.gathering == Gathering::Complete);
            if let (Some(cfg), Some(since), true) =
                (self.config.punch, self.checking_since, decision_due)
            {
                consider(since + cfg.delay, TimerReason::Punch);
            }
        }
        if self.selected.is_none() && self.path.is_some() {
            consider(self.consent_at, TimerReason::Consent); // mid-restart: the old path's consent deadline
        }
        if let Some(sel) = self.selected.and_then(|s| self.checklist.get(s)) {
            consider(self.consent_at, TimerReason::Consent);
            if let Some(last) = sel.last_response {
                consider(last + self.config.consent_timeout, TimerReason::Consent);
            }
            for p in self.checklist.pairs() {
                if p.state == PairState::Failed && p.priority > sel.priority {
                    consider(p.retry_at, TimerReason::Upgrade);
                }
            }
        }
        (best.at != Instant::FAR_FUTURE).then_some(best)
    }

    /// [`poll_deadline`](Self::poll_deadline)'s instant alone.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.poll_deadline().map(|d| d.at)
    }

    // ----- inputs -----

    fn handle_request(
        &mut self,
        now: Instant,
        local: SocketAddr,
        from: SocketAddr,
        msg: &Message<'_>,
    ) -> Received<'static> {
        // USERNAME must be "<our ufrag>:<theirs>" and the message must verify with our
        // password; anything else is dropped without a trace (no state, no answer).
        let ours = self.local_credentials.ufrag().as_bytes();
        let username_ok = matches!(
            msg.find(types::USERNAME),
            Some(u) if u.value.len() > ours.len() && u.value.starts_with(ours) && u.value[ours.len()] == b':'
        );
        if !username_ok || msg.verify_integrity(&self.local_key).is_err() {
            return Received::Consumed;
        }
        let mut peer_priority = None;
        let mut use_candidate = false;
        let mut peer_role = None;
        let tid = msg.transaction_id();
        for raw in msg.attributes() {
            match Attribute::decode(raw.attr, raw.value, &tid) {
                Ok(Attribute::Priority(p)) => peer_priority = Some(p),
                Ok(Attribute::UseCandidate) => use_candidate = true,
                Ok(Attribute::IceControlling(t)) => peer_role = Some((true, t)),
                Ok(Attribute::IceControlled(t)) => peer_role = Some((false, t)),
                _ => {}
            }
        }
        // Role conflict (RFC 8445 §7.3.1.1).
        if let Some((peer_controlling, peer_tie)) = peer_role {
            if peer_controlling == self.controlling {
                let we_win = self.tie_breaker >= peer_tie;
                if we_win == self.controlling {
                    // We keep our role; the peer must switch.
                    self.queue_response(PendingResponse {
                        id: tid,
                        local,
                        to: from,
                        role_conflict: true,
                    });
                    return Received::Consumed;
                }
                self.switch_role();
            }
        }
        self.queue_response(PendingResponse {
            id: tid,
            local,
            to: from,
            role_conflict: false,
        });

        let Some(li) = self.local_or_punch_socket(local) else {
            return Received::Consumed;
        };
        let Some(ri) = self.remote_or_peer_reflexive(from, peer_priority.unwrap_or(PRFLX_PRIORITY))
        else {
            return Received::Consumed;
        };
        let Ok(Some(pi)) = self.form_pair(now, li, ri) else {
            return Received::Consumed;
        };
        if use_candidate && !self.controlling {
            let consent_timeout = self.config.consent_timeout;
            match self.checklist.get_mut(pi) {
                // Proven recently: selected now. A pair whose last answer is too old for consent
                // (a relay nominated long after its check) is checked again first.
                Some(p)
                    if p.state == PairState::Succeeded
                        && p.last_response.is_some_and(|t| now < t + consent_timeout) =>
                {
                    self.nominate(now, pi)
                }
                Some(p) if p.state == PairState::Succeeded => {
                    p.nominate_on_success = true;
                    p.triggered = true;
                }
                Some(p) => p.nominate_on_success = true,
                None => {}
            }
        }
        // Triggered check (RFC 8445 §7.3.1.4), unless the pair is already known to work.
        let pair = self.checklist.get_mut(pi);
        if let Some(pair) = pair {
            match pair.state {
                PairState::Succeeded => {}
                PairState::InProgress => pair.triggered = true,
                _ => {
                    pair.state = PairState::Waiting;
                    pair.triggered = true;
                }
            }
        }
        self.start_checking(Some(now));
        Received::Consumed
    }

    fn handle_response(
        &mut self,
        now: Instant,
        local: SocketAddr,
        from: SocketAddr,
        msg: &Message<'_>,
    ) -> Received<'static> {
        let id = msg.transaction_id();
        let Some(ti) = self
            .transactions
            .iter()
            .position(|t| t.purpose != Purpose::Free && t.id == id)
        else {
            return Received::Unrecognized;
        };
        let t = self.transactions[ti];
        if let Purpose::Gather { server } = t.purpose {
            // A STUN server's answer carries no integrity (no credentials): accept it as RFC
            // 8489 does; an error answer just ends gathering from that server.
            self.transactions[ti].purpose = Purpose::Free;
            if msg.class() == Class::SuccessResponse {
                if let Some(Ok(mapped)) = msg.reflexive_address() {
                    self.add_server_reflexive(now, mapped, t.local, server);
                }
                if let Some(Ok(other)) = msg.address(types::OTHER_ADDRESS) {
                    self.gather_from_other_address(now, t.local, server, other);
                }
            }
            self.check_gathering_complete();
            return Received::Consumed;
        }
        // Checks and consent: the answer must carry the peer's integrity, or it never happened.
        let verified = self
            .remote
            .as_ref()
            .is_some_and(|r| msg.verify_integrity(&r.key).is_ok());
        if !verified {
            return Received::Consumed;
        }
        self.transactions[ti].purpose = Purpose::Free;
        let rtt = now - t.last_sent;
        match t.purpose {
            Purpose::Check {
                pair,
                use_candidate,
            } => {
                if msg.class() == Class::ErrorResponse {
                    let code = msg.error_code().and_then(Result::ok).map_or(0, |e| e.code);
                    if code == ErrorCode::ROLE_CONFLICT.code {
                        // RFC 8445 §7.2.5.1: switch only if we still hold the role the request
                        // claimed (a check from the peer may have switched us meanwhile).
                        if t.sent_controlling == self.controlling {
                            self.switch_role();
                        }
                        if let Some(p) = self.checklist.get_mut(pair) {
                            p.state = PairState::Waiting;
                            p.triggered = true;
                        }
                    } else {
                        self.pair_failed(now, pair);
                    }
                } else if from != t.to || local != t.local {
                    // Non-symmetric addresses (RFC 8445 §7.2.5.2.1): the pair fails.
                    self.pair_failed(now, pair);
                } else {
                    if let Some(Ok(mapped)) = msg.xor_mapped_address() {
                        self.learn_local_peer_reflexive(mapped, t.local);
                    }
                    self.pair_succeeded(now, pair, use_candidate, rtt);
                }
            }
            Purpose::Consent { pair } => {
                if msg.class() == Class::SuccessResponse {
                    if let Some(p) = self.checklist.get_mut(pair) {
                        p.last_response = Some(now);
                        p.rtt_micros = crate::time::duration_micros(rtt);
                    }
                    self.refresh_path_rtt(pair);
                }
            }
            Purpose::Probe => {
                // A punch probe got through: the address it went to is a working remote.
                if msg.class() == Class::SuccessResponse && from == t.to {
                    self.probe_succeeded(now, t.local, from, rtt);
                }
            }
            Purpose::Gather { .. } | Purpose::Free => {}
        }
        Received::Consumed
    }

    // ----- pair logic -----

    fn form_pair(
        &mut self,
        now: Instant,
        local: usize,
        remote: usize,
    ) -> Result<Option<usize>, IceError> {
        let (l, r) = (self.locals[local], self.remotes[remote]);
        if !matches!(l.kind, CandidateKind::Host | CandidateKind::Relayed) || !compatible(&l, &r) {
            return Ok(None);
        }
        // Every check received lands here: a known pair needs no sibling scan.
        if let Some(index) = self.checklist.find(local, remote) {
            self.start_checking(Some(now));
            return Ok(Some(index));
        }
        let prio = self.pair_priority_of(&l, &r);
        // One pair per foundation pair checks first; the rest wait frozen (RFC 8445 §6.1.2.6).
        let sibling_active = self.checklist.pairs().iter().any(|p| {
            let (pl, pr) = (&self.locals[p.local], &self.remotes[p.remote]);
            pl.foundation == l.foundation
                && pr.foundation == r.foundation
                && matches!(p.state, PairState::Waiting | PairState::InProgress)
        });
        let state = if sibling_active {
            PairState::Frozen
        } else {
            PairState::Waiting
        };
        let index = self
            .checklist
            .add(local, remote, prio, state, now)
            .ok_or(IceError::TooManyCandidates)?;
        self.start_checking(Some(now));
        Ok(Some(index))
    }

    /// Recomputes the priorities of remote `remote`'s pairs after its candidate changed. A
    /// nominated valid pair that now outranks the selected one is selected by the usual rule;
    /// otherwise the two sides could keep different selected pairs (the controlled side ranks
    /// a pair first checked from an unsignalled address lower than the controlling side does).
    fn rerank_remote(&mut self, now: Instant, remote: usize) {
        let mut best_nominated: Option<(usize, u64)> = None;
        let (controlling, selected) = (self.controlling, self.selected);
        for (i, p) in self.checklist.pairs_mut().iter_mut().enumerate() {
            if p.remote != remote {
                continue;
            }
            let prio = ranked_priority(controlling, &self.locals[p.local], &self.remotes[remote]);
            p.priority = prio;
            let valid = p.nominated && p.state == PairState::Succeeded;
            if valid && selected != Some(i) && best_nominated.is_none_or(|(_, b)| prio > b) {
                best_nominated = Some((i, prio));
            }
        }
        if let Some(sel) = self.selected {
            if self.checklist.get(sel).is_some_and(|p| p.remote == remote) {
                self.path = self.path_info(sel).or(self.path);
            }
        }
        if let Some((i, _)) = best_nominated {
            self.nominate(now, i);
        }
    }

    fn pair_priority_of(&self, l: &Candidate, r: &Candidate) -> u64 {
        ranked_priority(self.controlling, l, r)
    }

    fn pair_succeeded(&mut self, now: Instant, pi: usize, use_candidate: bool, rtt: Duration) {
        let controlling = self.controlling;
        let Some(p) = self.checklist.get_mut(pi) else {
            return;
        };
        p.state = PairState::Succeeded;
        p.last_response = Some(now);
        p.rtt_micros = crate::time::duration_micros(rtt);
        let nominate = (controlling && use_candidate) || (!controlling && p.nominate_on_success);
        p.nominate_on_success = false;
        let held = self.pair_is_relayed(pi) && self.relay_held(now);
        let Some(p) = self.checklist.get_mut(pi) else {
            return;
        };
        // Unfreeze the pairs that share this pair's foundations (RFC 8445 §7.2.5.3.3).
        let (lf, rf) = (
            self.locals[p.local].foundation,
            self.remotes[p.remote].foundation,
        );
        for q in self.checklist.pairs_mut() {
            let same =
                self.locals[q.local].foundation == lf && self.remotes[q.remote].foundation == rf;
            if same && q.state == PairState::Frozen {
                q.state = PairState::Waiting;
            }
        }
        if nominate && !(held && controlling) {
            self.nominate(now, pi);
        } else if held {
            // Valid, kept for when direct paths run out (release_relay).
        } else if controlling && self.pair_is_relayed(pi) && self.path.is_none() {
            self.release_relay(now);
        } else if controlling && self.config.nomination == Nomination::Regular {
            if self.nomination_wait == NominationWait::Idle && self.path.is_none() {
                self.nomination_wait = NominationWait::Until(now + self.config.nomination_delay);
            }
            self.maybe_nominate_regular(now);
        }
        if self.selected == Some(pi) {
            self.refresh_path_rtt(pi);
        }
    }

    /// Regular nomination: once no better pair is still being checked, repeat the best valid
    /// pair's check with USE-CANDIDATE (RFC 8445 §8.1.1). Also upgrades a selected path when a
    /// better pair starts working.
    fn maybe_nominate_regular(&mut self, now: Instant) {
        let Some(best) = self
            .checklist
            .best_where(|p| p.state == PairState::Succeeded)
        else {
            return;
        };
        if self.selected == Some(best) || (self.pair_is_relayed(best) && self.relay_held(now)) {
            return;
        }
        let best_priority = self.checklist.get(best).map_or(0, |p| p.priority);
        let better_pending = self.checklist.pairs().iter().any(|p| {
            p.priority > best_priority
                && matches!(p.state, PairState::Waiting | PairState::InProgress)
        });
        // While connected, upgrade without waiting; while connecting, give better pairs their
        // chance first, but only for `nomination_delay` after the first pair worked: a better
        // pair that never answers would otherwise hold nomination for its whole retransmission
        // schedule (~40 s at RFC defaults).
        let waited = match self.nomination_wait {
            NominationWait::Idle => false,
            NominationWait::Until(due) => now >= due,
            NominationWait::Elapsed => true,
        };
        if better_pending && self.selected.is_none() && !waited {
            return;
        }
        let nominating = self.transactions.iter().any(
            |t| matches!(t.purpose, Purpose::Check { pair, use_candidate: true } if pair == best),
        );
        if !nominating {
            if let Some(p) = self.checklist.get_mut(best) {
                p.triggered = true;
                p.nominated = true; // the next check on it carries USE-CANDIDATE
            }
        }
    }

    /// Records a nomination and selects the pair, unless the selected pair is better and
    /// recently proven alive. A worse pair still takes over from a stale one: after a NAT
    /// rebinding the old pair goes quiet while the peer keeps nominating the new one.
    fn nominate(&mut self, now: Instant, pi: usize) {
        let Some(p) = self.checklist.get_mut(pi) else {
            return;
        };
        p.nominated = true;
        let candidate_priority = p.priority;
        if let Some(sel) = self.selected.and_then(|s| self.checklist.get(s)) {
            let fresh = sel
                .last_response
                .is_some_and(|t| now < t + self.config.consent_interval);
            if sel.priority > candidate_priority && fresh {
                return;
            }
        }
        self.select(pi);
    }

    fn select(&mut self, pi: usize) {
        if self.selected == Some(pi) {
            return;
        }
        let Some(info) = self.path_info(pi) else {
            return;
        };
        let first = self.path.is_none();
        self.selected = Some(pi);
        self.path = Some(info);
        self.failed = false;
        // Consent starts fresh on the new pair.
        let interval = self.jittered_consent_interval();
        let last = self
            .checklist
            .get(pi)
            .and_then(|p| p.last_response)
            .unwrap_or(Instant::ZERO);
        self.consent_at = last + interval;
        self.push_event(if first {
            IceEvent::Connected(info)
        } else {
            IceEvent::PathChanged(info)
        });
    }

    fn path_info(&self, pi: usize) -> Option<PathInfo> {
        let p = self.checklist.get(pi)?;
        let (l, r) = (self.locals.get(p.local)?, self.remotes.get(p.remote)?);
        Some(PathInfo {
            local: l.base,
            remote: r.address,
            local_kind: l.kind,
            remote_kind: r.kind,
            relayed: is_relayed(l, r),
            rtt: Duration::from_micros(p.rtt_micros),
        })
    }

    fn refresh_path_rtt(&mut self, pi: usize) {
        if self.selected == Some(pi) {
            if let (Some(path), Some(p)) = (self.path.as_mut(), self.checklist.get(pi)) {
                path.rtt = Duration::from_micros(p.rtt_micros);
            }
        }
    }

    fn pair_failed(&mut self, now: Instant, pi: usize) {
        let retry = now + self.config.upgrade_interval;
        if let Some(p) = self.checklist.get_mut(pi) {
            // A pair that worked stays valid until consent says otherwise.
            if p.state != PairState::Succeeded {
                p.state = PairState::Failed;
            }
            p.triggered = false;
            p.retry_at = retry;
        }
        // Nothing left to check: let a frozen pair go next so the list never stalls.
        if self.checklist.best_waiting().is_none() {
            if let Some(f) = self.checklist.best_where(|p| p.state == PairState::Frozen) {
                if let Some(p) = self.checklist.get_mut(f) {
                    p.state = PairState::Waiting;
                }
            }
        }
    }

    fn check_consent(&mut self, now: Instant) {
        let Some(sel) = self.selected else {
            // Mid-restart: the old path goes when its consent deadline passes.
            if let Some(info) = self.path.filter(|_| now >= self.consent_at) {
                self.path = None;
                self.push_event(IceEvent::ConsentLost(info));
            }
            return;
        };
        let Some(p) = self.checklist.get(sel) else {
            return;
        };
        let fresh = p
            .last_response
            .is_some_and(|t| now < t + self.config.consent_timeout);
        if fresh {
            return;
        }
        let lost = self.path;
        if let Some(p) = self.checklist.get_mut(sel) {
            p.state = PairState::Failed;
            p.nominated = false;
            p.retry_at = now + self.config.upgrade_interval;
        }
        self.selected = None;
        // Fail over to the best pair that still has consent.
        let timeout = self.config.consent_timeout;
        let next = self.checklist.best_where(|p| {
            p.state == PairState::Succeeded && p.last_response.is_some_and(|t| now < t + timeout)
        });
        match next {
            Some(n) => self.select(n),
            None => {
                if let Some(info) = lost {
                    self.push_event(IceEvent::ConsentLost(info));
                }
                self.path = None;
                self.nomination_wait = NominationWait::Idle;
                // Start over on every pair, as after a restart, so a new path can be found.
                for q in self.checklist.pairs_mut() {
                    if q.state != PairState::InProgress {
                        q.state = PairState::Waiting;
                    }
                }
            }
        }
    }

    /// Whether the selected path is direct (punching stops; on a relay it goes on).
    fn has_direct_path(&self) -> bool {
        self.path.is_some_and(|p| !p.relayed)
    }

    /// Whether pair `pi` crosses a relay (either candidate relayed).
    fn pair_is_relayed(&self, pi: usize) -> bool {
        self.checklist
            .get(pi)
            .is_some_and(|p| is_relayed(&self.locals[p.local], &self.remotes[p.remote]))
    }

    /// Whether a direct path may still work, so relayed pairs wait: candidates still coming,
    /// direct pairs still being checked, or hard-NAT punching still possible. The relay is
    /// the last resort ("direct when possible"), and an ICE relay costs the operator money.
    fn relay_held(&self, now: Instant) -> bool {
        let held_since = self.checking_since.unwrap_or(now);
        if now >= held_since + self.config.relay_hold {
            return false;
        }
        if self.gathering != Gathering::Complete || !self.remote_complete {
            return true;
        }
        let direct_pending = self.checklist.pairs().iter().any(|p| {
            !is_relayed(&self.locals[p.local], &self.remotes[p.remote])
                && matches!(
                    p.state,
                    PairState::Frozen | PairState::Waiting | PairState::InProgress
                )
        });
        direct_pending || self.punch_may_connect()
    }

    /// Controlling side, not connected, direct paths exhausted: nominate the best relayed pair
    /// that works (its next check carries USE-CANDIDATE).
    fn release_relay(&mut self, now: Instant) {
        if self.relay_held(now) {
            return;
        }
        let (locals, remotes) = (&self.locals, &self.remotes);
        let best = self.checklist.best_where(|p| {
            p.state == PairState::Succeeded && is_relayed(&locals[p.local], &remotes[p.remote])
        });
        let Some(best) = best else { return };
        let nominating = self.transactions.iter().any(
            |t| matches!(t.purpose, Purpose::Check { pair, use_candidate: true } if pair == best),
        );
        if let Some(p) = self.checklist.get_mut(best).filter(|_| !nominating) {
            if !p.nominated {
                p.nominated = true;
                p.triggered = true;
            }
        }
    }

    fn check_failed(&mut self) {
        if self.failed || !self.remote_complete || self.path.is_some() || !self.checking {
            return;
        }
        let all_failed = !self.checklist.pairs().is_empty()
            && self
                .checklist
                .pairs()
                .iter()
                .all(|p| p.state == PairState::Failed);
        if all_failed && self.gathering != Gathering::InProgress && !self.punch_may_connect() {
            self.failed = true;
            self.push_event(IceEvent::Failed);
        }
    }

    /// Whether hard-NAT punching may still find a path: about to be decided, running, or with
    /// probes awaiting answers. Ordinary checks give up long before a birthday search does.
    fn punch_may_connect(&self) -> bool {
        let undecided = self.config.punch.is_some()
            && !self.punch.decided
            && self.gathering == Gathering::Complete;
        undecided
            || self.punch.hard.as_ref().is_some_and(|p| !p.is_finished())
            || self.punch.easy.as_ref().is_some_and(|p| !p.is_finished())
            || self
                .transactions
                .iter()
                .any(|t| t.purpose == Purpose::Probe)
    }

    fn switch_role(&mut self) {
        self.controlling = !self.controlling;
        let controlling = self.controlling;
        for p in self.checklist.pairs_mut() {
            p.priority =
                ranked_priority(controlling, &self.locals[p.local], &self.remotes[p.remote]);
        }
        self.push_event(IceEvent::RoleChanged {
            controlling: self.controlling,
        });
    }

    /// Starts checking once credentials and a pair exist; `now` is `None` from a call that
    /// has no time, and the next input's time starts the clocks then (see `observe`).
    fn start_checking(&mut self, now: Option<Instant>) {
        if !self.checking && self.remote.is_some() && !self.checklist.pairs().is_empty() {
            self.checking = true;
            if self.checking_since.is_none() {
                self.checking_since = now;
            }
            self.push_event(IceEvent::Checking);
        }
    }

    fn can_check(&self) -> bool {
        self.remote.is_some()
    }

    fn has_checkable_pair(&self) -> bool {
        self.checklist
            .pairs()
            .iter()
            .any(|p| p.triggered || matches!(p.state, PairState::Waiting | PairState::Frozen))
    }

    // ----- candidates -----

    fn local_for_socket(&self, local: SocketAddr) -> Option<usize> {
        let host = |c: &Candidate| matches!(c.kind, CandidateKind::Host | CandidateKind::Relayed);
        self.locals
            .iter()
            .position(|c| host(c) && c.base == local)
            .or_else(|| {
                // A wildcard-bound socket reports 0.0.0.0:port: match the port and family.
                self.locals.iter().position(|c| {
                    host(c)
                        && local.ip().is_unspecified()
                        && c.base.port() == local.port()
                        && c.base.is_ipv4() == local.is_ipv4()
                })
            })
    }

    fn add_server_reflexive(
        &mut self,
        now: Instant,
        mapped: SocketAddr,
        base: SocketAddr,
        server: SocketAddr,
    ) {
        // Equal to a host candidate means no NAT: redundant (RFC 8445 §5.1.3).
        if self.locals.iter().any(|c| c.address == mapped) {
            return;
        }
        let c = Candidate::server_reflexive(mapped, base, server.ip());
        let _ = self.add_local_candidate(now, c);
    }

    /// Asks a configured RFC 5780 server's other address (RFC 5780 §7.3 OTHER-ADDRESS) for
    /// this base's mapping too, once: a different mapped port than the primary answer's marks
    /// an endpoint-dependent NAT for the punch decision, as two configured servers would.
    fn gather_from_other_address(
        &mut self,
        now: Instant,
        base: SocketAddr,
        server: SocketAddr,
        other: SocketAddr,
    ) {
        let configured = &self.config.stun_servers;
        // Only the configured servers' answers lead on (no chains through alternates), and a
        // server the user configured anyway is asked by `gather` already.
        if !self.config.probe_other_address
            || !configured.contains(&server)
            || configured.contains(&other)
            || other == server
            || other.is_ipv4() != base.is_ipv4()
            || other.ip().is_unspecified()
            || other.port() == 0
        {
            return;
        }
        if self.other_addresses_asked.contains(&(base, other)) {
            return;
        }
        self.other_addresses_asked.push((base, other));
        let (sends, rto) = (self.config.gather_max_sends, self.config.check_rto);
        let purpose = Purpose::Gather { server: other };
        let _ = self.start_transaction(now, purpose, base, other, sends, rto);
    }

    fn learn_local_peer_reflexive(&mut self, mapped: SocketAddr, base: SocketAddr) {
        if self.locals.iter().any(|c| c.address == mapped) {
            return;
        }
        if self.locals.len() < self.config.max_local_candidates {
            // Not signalled: peer-reflexive local candidates only matter to the valid list.
            self.locals
                .push(Candidate::peer_reflexive(mapped, base, PRFLX_PRIORITY));
        }
    }

    fn check_gathering_complete(&mut self) {
        let pending = self
            .transactions
            .iter()
            .any(|t| matches!(t.purpose, Purpose::Gather { .. }));
        if self.gathering == Gathering::InProgress && !pending && self.external_gathering == 0 {
            self.gathering = Gathering::Complete;
            self.push_event(IceEvent::GatheringComplete);
        }
    }

    // ----- hard-NAT punching -----

    /// Decides, once, whether this side should punch as the hard or the easy side: when checks
    /// have not connected after the configured delay, both sides know all candidates, and
    /// exactly one side's server-reflexive candidates show an endpoint-dependent mapping
    /// (different ports towards different servers).
    fn maybe_start_punch(&mut self, now: Instant) {
        let Some(cfg) = self.config.punch else { return };
        let Some(since) = self.checking_since else {
            return;
        };
        if self.punch.decided || self.has_direct_path() || now < since + cfg.delay {
            return;
        }
        self.punch.delay_elapsed = true;
        if self.gathering != Gathering::Complete || !self.remote_complete {
            return;
        }
        self.punch.decided = true;
        let srflx_ports = |cands: &[Candidate], ip: Option<IpAddr>| -> Vec<u16> {
            let mut ports: Vec<u16> = cands
                .iter()
                .filter(|c| c.kind == CandidateKind::ServerReflexive)
                .filter(|c| ip.is_none_or(|ip| c.address.ip() == ip))
                .map(|c| c.address.port())
                .collect();
            // Answers (and so candidates) can arrive out of order; a sequential allocator
            // handed the ports out in ascending order, which is what prediction needs.
            ports.sort_unstable();
            ports
        };
        let first_srflx = |cands: &[Candidate]| {
            cands
                .iter()
                .find(|c| c.kind == CandidateKind::ServerReflexive)
                .map(|c| c.address)
        };
        // A peer without server-reflexive candidates sits on its host address (no NAT).
        // Punch sockets are IPv4 (the family NATs are about): the fallback host must be too.
        let first_public = |cands: &[Candidate]| {
            first_srflx(cands).or_else(|| {
                cands
                    .iter()
                    .find(|c| c.kind == CandidateKind::Host && c.address.is_ipv4())
                    .map(|c| c.address)
            })
        };
        let hard = |ports: &[u16]| ports.windows(2).any(|w| w[0] != w[1]);
        let (mine, theirs) = (first_srflx(&self.locals), first_srflx(&self.remotes));
        let my_ports = srflx_ports(&self.locals, mine.map(|a| a.ip()));
        let their_ports = srflx_ports(&self.remotes, theirs.map(|a| a.ip()));
        let (self_hard, remote_hard) = (hard(&my_ports), hard(&their_ports));
        if self_hard && !remote_hard {
            let Some(easy) = first_public(&self.remotes) else {
                return;
            };
            // A sequential allocator is found by the peer's prediction; no sockets needed.
            let sequential = PortPredictor::new(&my_ports)
                .is_ok_and(|p| matches!(p.allocation(), PortAllocation::Sequential { .. }));
            if sequential {
                return;
            }
            // The sockets go where the varying mappings came from: the srflx candidate's base.
            let Some(ip) = self
                .locals
                .iter()
                .find(|c| c.kind == CandidateKind::ServerReflexive && Some(c.address) == mine)
                .map(|c| c.base.ip())
            else {
                return;
            };
            if let Ok(mut plan) = HardSidePlan::new(cfg.hard, easy, now) {
                if let Some(PunchAction::BindUdp { count }) = plan.poll_action() {
                    let token = IoToken(self.next_token);
                    self.next_token = self.next_token.wrapping_add(1);
                    self.punch.action = Some(Action::BindSockets { token, count, ip });
                    self.punch.token = Some(token);
                }
                self.punch
                    .sockets
                    .reserve(usize::from(plan.sockets_needed()));
                self.punch.hard = Some(plan);
            }
        } else if !self_hard && remote_hard {
            let Some(target) = theirs else { return };
            let from = self
                .locals
                .iter()
                .find(|c| c.kind == CandidateKind::Host && c.address.is_ipv4() == target.is_ipv4());
            let Some(from) = from.map(|c| c.base) else {
                return;
            };
            let predicted: Vec<u16> = match PortPredictor::new(&their_ports) {
                Ok(p) if matches!(p.allocation(), PortAllocation::Sequential { .. }) => {
                    // The peer's first checks to us go out while it still gathers, so the
                    // mapping towards us may sit in a gap between its observed ports (one
                    // server asked twice, via OTHER-ADDRESS, leaves such a gap): those first.
                    gap_ports(&their_ports)
                        .chain(p.predicted(cfg.predicted_ports))
                        .collect()
                }
                _ => Vec::new(),
            };
            let seed = self.rng.next_u64();
            if let Ok(plan) = EasySidePlan::new(cfg.easy, target.ip(), predicted, seed, now) {
                self.punch.easy = Some(plan);
                self.punch.easy_from = Some(from);
            }
        }
    }

    /// The next punch probe due, started as a single-shot transaction.
    fn start_probe(&mut self, now: Instant) -> Option<usize> {
        // Probes never take the last slots: checks and consent must always find room.
        if self.has_direct_path()
            || self.remote.is_none()
            || self.free_transactions() <= PROBE_RESERVE
        {
            return None;
        }
        let (local, to) = if let Some(plan) = self.punch.hard.as_mut() {
            let probe = plan.poll_probe(now)?;
            (
                *self.punch.sockets.get(usize::from(probe.socket_index))?,
                probe.to,
            )
        } else {
            let to = self.punch.easy.as_mut()?.poll_probe(now)?;
            (self.punch.easy_from?, to)
        };
        // Probes are not retransmitted; they only wait a short while for an answer.
        self.start_transaction(now, Purpose::Probe, local, to, 1, PROBE_RTO)
    }

    fn probe_succeeded(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        rtt: Duration,
    ) {
        let Some(li) = self.local_or_punch_socket(local) else {
            return;
        };
        let Some(ri) = self.remote_or_peer_reflexive(remote, PRFLX_PRIORITY) else {
            return;
        };
        if let Ok(Some(pi)) = self.form_pair(now, li, ri) {
            let use_candidate =
                self.controlling && self.config.nomination == Nomination::Aggressive;
            self.pair_succeeded(now, pi, use_candidate, rtt);
        }
    }

    /// The local candidate whose socket is `local`, adopting a punch socket as one if need be.
    fn local_or_punch_socket(&mut self, local: SocketAddr) -> Option<usize> {
        self.local_for_socket(local)
            .or_else(|| self.adopt_punch_socket(local))
    }

    /// The remote candidate at `address`; a new one is learned as peer-reflexive (RFC 8445
    /// §7.3.1.3) with `priority` while the table has room.
    fn remote_or_peer_reflexive(&mut self, address: SocketAddr, priority: u32) -> Option<usize> {
        if let Some(ri) = self.remotes.iter().position(|r| r.address == address) {
            return Some(ri);
        }
        if self.remotes.len() >= self.config.max_remote_candidates {
            return None;
        }
        self.remotes
            .push(Candidate::peer_reflexive(address, address, priority));
        Some(self.remotes.len() - 1)
    }

    /// A check arrived on one of the extra punch sockets: it becomes a local candidate (never
    /// signalled) so the pair through it can be checked and used.
    fn adopt_punch_socket(&mut self, local: SocketAddr) -> Option<usize> {
        if !self.punch.sockets.contains(&local)
            || self.locals.len() >= self.config.max_local_candidates + 16
        {
            return None;
        }
        self.locals.push(Candidate::host(local, 1));
        Some(self.locals.len() - 1)
    }

    // ----- outputs -----

    fn start_paced_check(&mut self, now: Instant) -> Option<usize> {
        if !self.can_check() || now < self.next_check_at {
            return None;
        }
        let pi = self
            .checklist
            .best_where(|p| p.triggered)
            .or_else(|| self.checklist.best_waiting())
            // Nothing waiting: unfreeze the best frozen pair (trickle may never unfreeze it).
            .or_else(|| self.checklist.best_where(|p| p.state == PairState::Frozen))?;
        let (local, remote, nominated) = {
            let p = self.checklist.get(pi)?;
            (
                self.locals[p.local].base,
                self.remotes[p.remote].address,
                p.nominated,
            )
        };
        // A relayed pair is nominated only once no direct path can still work (relay_held).
        let aggressive = self.config.nomination == Nomination::Aggressive
            && !(self.pair_is_relayed(pi) && self.relay_held(now));
        let use_candidate = self.controlling && (aggressive || nominated);
        let purpose = Purpose::Check {
            pair: pi,
            use_candidate,
        };
        let max_sends = self.config.check_max_sends;
        let rto = self.config.check_rto;
        let ti = self.start_transaction(now, purpose, local, remote, max_sends, rto)?;
        if let Some(p) = self.checklist.get_mut(pi) {
            p.triggered = false;
            if p.state != PairState::Succeeded {
                p.state = PairState::InProgress;
            }
        }
        self.next_check_at = now + self.config.ta;
        Some(ti)
    }

    fn start_consent_check(&mut self, now: Instant) -> Option<usize> {
        let sel = self.selected?;
        if now < self.consent_at {
            return None;
        }
        let in_flight = self
            .transactions
            .iter()
            .any(|t| t.purpose == Purpose::Consent { pair: sel });
        self.consent_at = now + self.jittered_consent_interval();
        if in_flight {
            return None;
        }
        let p = self.checklist.get(sel)?;
        let (local, remote) = (self.locals[p.local].base, self.remotes[p.remote].address);
        // Consent checks are single-shot: the 30 s window, not retransmission, gives the slack.
        let rto = self.config.check_rto;
        self.start_transaction(now, Purpose::Consent { pair: sel }, local, remote, 1, rto)
    }

    fn free_transactions(&self) -> usize {
        self.transactions
            .iter()
            .filter(|t| t.purpose == Purpose::Free)
            .count()
    }

    fn start_transaction(
        &mut self,
        now: Instant,
        purpose: Purpose,
        local: SocketAddr,
        to: SocketAddr,
        max_sends: u32,
        rto: Duration,
    ) -> Option<usize> {
        let ti = self
            .transactions
            .iter()
            .position(|t| t.purpose == Purpose::Free)?;
        let id = TransactionId::random(&mut self.rng);
        self.transactions[ti] = Transaction {
            purpose,
            id,
            local,
            to,
            sends: 0,
            rto,
            next_send: now,
            last_sent: now,
            deadline: Instant::FAR_FUTURE,
            max_sends: max_sends.max(1),
            sent_controlling: self.controlling,
        };
        Some(ti)
    }

    fn send_transaction(&mut self, now: Instant, ti: usize, out: &mut [u8]) -> Option<Transmit> {
        let t = self.transactions[ti];
        let len = match t.purpose {
            Purpose::Gather { .. } => {
                let b = MessageBuilder::new(out, Class::Request, Method::BINDING, t.id).ok()?;
                finish_with_fingerprint(b)?
            }
            Purpose::Check {
                pair,
                use_candidate,
            } => self.write_check(out, &t, pair, use_candidate)?,
            Purpose::Consent { pair } => {
                let renominate = self.controlling;
                self.write_check(out, &t, pair, renominate)?
            }
            Purpose::Probe => {
                let use_candidate = self.config.nomination == Nomination::Aggressive;
                let prio = priority(CandidateKind::PeerReflexive, 1, 1);
                self.write_request(out, t.id, prio, use_candidate)?
            }
            Purpose::Free => return None,
        };
        let controlling = self.controlling;
        let t = &mut self.transactions[ti];
        t.sends += 1;
        t.sent_controlling = controlling;
        t.last_sent = now;
        if t.sends < t.max_sends {
            t.next_send = now + t.rto;
            t.rto = t.rto.saturating_mul(2).min(self.config.check_rto_max);
        } else {
            t.next_send = Instant::FAR_FUTURE;
            t.deadline = now + t.rto;
        }
        Some(Transmit {
            from: Some(t.local),
            to: t.to,
            len,
        })
    }

    fn write_check(
        &self,
        out: &mut [u8],
        t: &Transaction,
        pi: usize,
        use_candidate: bool,
    ) -> Option<usize> {
        let p = self.checklist.get(pi)?;
        let local = self.locals.get(p.local)?;
        let local_preference = ((local.priority >> 8) & 0xffff) as u16;
        let prflx_priority = priority(
            CandidateKind::PeerReflexive,
            local_preference,
            local.component,
        );
        self.write_request(out, t.id, prflx_priority, use_candidate)
    }

    /// A connectivity check: USERNAME, PRIORITY, our role, USE-CANDIDATE when nominating,
    /// MESSAGE-INTEGRITY with the peer's password, FINGERPRINT.
    fn write_request(
        &self,
        out: &mut [u8],
        id: TransactionId,
        prflx_priority: u32,
        use_candidate: bool,
    ) -> Option<usize> {
        let remote = self.remote.as_ref()?;
        let username = core::str::from_utf8(&remote.username[..remote.username_len]).ok()?;
        let mut b = MessageBuilder::new(out, Class::Request, Method::BINDING, id).ok()?;
        b.add(&Attribute::Username(username)).ok()?;
        b.add(&Attribute::Priority(prflx_priority)).ok()?;
        let role = if self.controlling {
            Attribute::IceControlling(self.tie_breaker)
        } else {
            Attribute::IceControlled(self.tie_breaker)
        };
        b.add(&role).ok()?;
        if use_candidate && self.controlling {
            b.add(&Attribute::UseCandidate).ok()?;
        }
        b.add_message_integrity(&remote.key).ok()?;
        finish_with_fingerprint(b)
    }

    fn write_response(&self, r: &PendingResponse, out: &mut [u8]) -> Option<Transmit> {
        let class = if r.role_conflict {
            Class::ErrorResponse
        } else {
            Class::SuccessResponse
        };
        let mut b = MessageBuilder::new(out, class, Method::BINDING, r.id).ok()?;
        if r.role_conflict {
            b.add(&Attribute::ErrorCode(ErrorCode::ROLE_CONFLICT))
                .ok()?;
        } else {
            b.add(&Attribute::XorMappedAddress(r.to)).ok()?;
        }
        b.add_message_integrity(&self.local_key).ok()?;
        let len = finish_with_fingerprint(b)?;
        Some(Transmit {
            from: Some(r.local),
            to: r.to,
            len,
        })
    }

    fn queue_response(&mut self, r: PendingResponse) {
        if self.responses.len() < self.config.max_pending_responses {
            self.responses.push(r);
        } else {
            self.stats.responses_dropped += 1;
        }
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

    fn jittered_consent_interval(&mut self) -> Duration {
        // RFC 7675 §5.1: uniformly within ±20% of the interval.
        let base = crate::time::duration_micros(self.config.consent_interval);
        let jitter = self.rng.below(base / 5 * 2 + 1);
        Duration::from_micros(base - base / 5 + jitter)
    }
}

/// A pair's priority (RFC 8445 §6.1.2.3) from our role and its local and remote candidates.
fn ranked_priority(controlling: bool, local: &Candidate, remote: &Candidate) -> u64 {
    if controlling {
        pair_priority(local.priority, remote.priority)
    } else {
        pair_priority(remote.priority, local.priority)
    }
}

fn finish_with_fingerprint(mut b: MessageBuilder<'_>) -> Option<usize> {
    b.add_fingerprint().ok()?;
    Some(b.finish())
}

/// Ports strictly between successive sorted observations that were not observed themselves, at
/// most [`MAX_GAP_PORTS`] of them: where a sequential allocator put mappings made between them.
fn gap_ports(sorted: &[u16]) -> impl Iterator<Item = u16> + '_ {
    sorted
        .windows(2)
        .flat_map(|w| (w[0].saturating_add(1)..w[1]).take(MAX_GAP_PORTS))
        .take(MAX_GAP_PORTS)
}

/// Gaps wider than this are not a sequential allocator's few intervening mappings.
const MAX_GAP_PORTS: usize = 8;
