//! Agent configuration: nomination mode, pacing, retransmission, capacities, punching.

#[allow(unused_imports)]
use super::*;

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
    /// The keepalive this side proposes to the peer: consent checks on the selected pair this
    /// far apart instead of every [`consent_interval`](Self::consent_interval), so an idle path
    /// costs fewer datagrams. It takes effect only once the peer proposed one too
    /// ([`Agent::set_remote_keepalive`], the offer's `a=x-holepunch-keepalive` line): a standard
    /// RFC 7675 peer gets consent at its own cadence. Both sides then use the shorter of the
    /// two proposals, never under [`MIN_KEEPALIVE`]; values below it are raised to it.
    /// [`Agent::set_mapping_lifetime`] replaces it with one sized to the NAT's measured
    /// mapping lifetime. `None` (the default): propose nothing, RFC 7675 throughout.
    pub keepalive_interval: Option<Duration>,
    /// How soon failed pairs that beat the selected one are tried again after connecting.
    /// While the selected path is relayed, server-reflexive candidates are also gathered again
    /// (new ones are trickled), so a network that starts passing UDP is noticed. Both waits
    /// back off, see [`upgrade_backoff_max`](Self::upgrade_backoff_max).
    pub upgrade_interval: Duration,
    /// The probe budget once connected: the longest wait between two re-probes of a pair that
    /// beats the selected one (on a relay or on a direct path), and between two re-gatherings
    /// from the STUN servers while the selected path is relayed. Each wait starts at [`upgrade_interval`](Self::upgrade_interval) and doubles
    /// after every failed re-probe up to this cap (default 5 minutes). It goes back to
    /// `upgrade_interval` when a local or remote candidate with a new address appears, when
    /// [`Agent::network_changed`] is called, and when the selected pair loses consent.
    ///
    /// The budget in packets: a re-probe is one check, up to
    /// [`check_max_sends`](Self::check_max_sends) datagrams over the T it takes to fail. A
    /// direct pair gets at most 8 re-probes in its first 10 minutes on a relay, and at the cap
    /// `3600 s / (T + cap) × check_max_sends` datagrams an hour: 247 with
    /// [`AgentConfig::aggressive`] (22 sends, T = 19.5 s) and 74 with [`AgentConfig::rfc`]
    /// (7 sends, T = 39.5 s). Re-gathering costs one STUN request per host candidate and
    /// server each wait (12 an hour at the cap). Measured in the simulation
    /// (`tests/tests/sim_probe_budget.rs`, aggressive, symmetric × symmetric peers on a
    /// relay, three direct pairs each): 616 direct datagrams and 20 STUN requests per side in
    /// the first 10 minutes (1,848 and 600 with the fixed 2 s wait this replaced), then
    /// under 850 direct datagrams an hour; the test holds it to four pairs' worth, 704 and
    /// 990. Hard-NAT punching is bounded separately, once per session
    /// ([`PunchConfig::max_probes`]).
    pub upgrade_backoff_max: Duration,
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
    /// When neither side's candidates show how its NAT maps (each has one server-reflexive
    /// observation: a single STUN server without RFC 5780), ordinary checks get this long
    /// after they started; then this side punches blind, playing the easy half and, unless its
    /// own mapping was seen to stay the same towards two servers, the hard half too. It costs
    /// one plan's sockets and probes more than a decided punch. `None` disables it.
    pub blind_delay: Option<Duration>,
    /// The most punch probes the agent sends in its life, both halves of a blind punch
    /// together: once they are spent, punching stops (an ICE restart does not punch again).
    /// Each plan has its own cap as well ([`HardSideConfig::max_sends_per_socket`] × sockets,
    /// [`EasySideConfig::max_probes`]); the default, 2,816, is the two defaults' sum (768 +
    /// 2,048), sent within the plans' 30 s, so a punch costs at most that once per session.
    pub max_probes: u32,
}

impl Default for PunchConfig {
    fn default() -> Self {
        PunchConfig {
            delay: Duration::from_secs(1),
            hard: HardSideConfig::default(),
            easy: EasySideConfig::default(),
            predicted_ports: 64,
            blind_delay: Some(Duration::from_secs(2)),
            max_probes: 2816,
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
            keepalive_interval: None,
            // Most direct paths, punched ones included (median ~2 s), work by then; the rest
            // start on the relay and move to the direct path when punching finds it.
            relay_hold: Duration::from_secs(3),
            upgrade_interval: Duration::from_secs(5),
            upgrade_backoff_max: Duration::from_secs(300),
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
