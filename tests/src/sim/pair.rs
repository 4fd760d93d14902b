//! One NAT pair: two ICE agents behind modelled NATs, a STUN server, signalling, virtual time.
//!
//! The agents are pumped exactly as a driver pumps them: drain transmits, actions and events
//! after every input, sleep until the earliest of `poll_timeout`, the next datagram and the next
//! signalling line. Candidates travel as offer lines (`cli.md`'s format) through the same parser
//! the CLI uses.
//!
//! With [`PairConfig::ipv6`] set, the sites are dual-stack: each host also has a global IPv6
//! address ([`host_v6`]) behind its side's [`V6Policy`], the agent gets a second host candidate
//! on it (port 5000 for A, 6000 for B, as on IPv4) and the STUN server list gains
//! [`STUN_V6`]. Without it (the default) everything is IPv4 only, exactly as before.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use holepunch_core::ice::agent::{Action, AgentConfig, IceEvent, IoResult, PathInfo};
use holepunch_core::ice::credentials::IceCredentials;
use holepunch_core::ice::offer::{self, OfferLine};
use holepunch_core::io::Datagram;
use holepunch_core::nat64::Nat64Prefix;
use holepunch_core::stun::server::{Server, ServerConfig};
use holepunch_core::time::{Duration, Instant};
use holepunch_core::turn::{ClientConfig as TurnConfig, Transport};
use holepunch_core::{Agent, Event};

use super::nat::{Allocation, Filtering, Kind, Mapping, Nat, NatConfig};
use super::network::{LAN_LATENCY, Nat64Gateway, Network, Site};
use super::profile::{Profile, V6Policy};
use super::relay::{RELAY_PASSWORD, RELAY_USER, RelayStats, SimRelay};

/// Where the STUN server lives in every scenario (RFC 5780: two IPs, two ports).
pub const STUN_PRIMARY: &str = "203.0.113.3:3478";
/// [`PairConfig::relay_settle`]'s default.
const RELAY_SETTLE: Duration = Duration::from_secs(15);
/// The port of a UDP-blocked side's TCP connection to the relay.
const RELAY_STREAM_PORT: u16 = 7000;
/// The STUN server's alternate address.
pub const STUN_ALTERNATE: &str = "203.0.113.4:3479";
/// The STUN server's IPv6 address in dual-stack scenarios (a plain server: one address).
pub const STUN_V6: &str = "[2001:db8:5::3]:3478";

/// Which sides of a pair are dual-stack, and behind what IPv6 policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DualStack {
    /// Side A's IPv6 policy; `None`: A has no IPv6 address.
    pub a: Option<V6Policy>,
    /// Side B's IPv6 policy; `None`: B has no IPv6 address.
    pub b: Option<V6Policy>,
}

impl DualStack {
    /// Both sides dual-stack behind the same policy.
    pub fn both(policy: V6Policy) -> Self {
        DualStack {
            a: Some(policy),
            b: Some(policy),
        }
    }

    /// Each side behind its own policy.
    pub fn sides(a: V6Policy, b: V6Policy) -> Self {
        DualStack {
            a: Some(a),
            b: Some(b),
        }
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct PairConfig {
    /// Side A's situation (A is the controlling agent).
    pub a: Profile,
    /// Side B's situation.
    pub b: Profile,
    /// Seed for NAT port choices, latency jitter, loss and the agents.
    pub seed: u64,
    /// One-way latency of each site to the internet core (RTT between A and B is 4×).
    pub site_latency: Duration,
    /// Random extra latency per datagram.
    pub jitter: Duration,
    /// Loss per mille on each site's access link.
    pub loss_per_mille: u32,
    /// How long signalling takes to carry a line.
    pub signal_latency: Duration,
    /// Extra delay of every line to A, as when A's signalling connection stalls on loss.
    pub signal_stall_to_a: Duration,
    /// Give up after this much virtual time.
    pub time_limit: Duration,
    /// Agent configuration for a side (`true` = controlling).
    pub agent: fn(bool) -> AgentConfig,
    /// Dual-stack sites; `None` (the default): IPv4 only.
    pub ipv6: Option<DualStack>,
    /// Give the agents only the RFC 5780 server's primary address, as a user who passes one
    /// `--stun` does; `false` (the default) gives them its alternate address too.
    pub single_stun_server: bool,
    /// Give both sides the TURN relay (the default): pairs with no direct path then connect
    /// through it. `false`: no relay, as before TURN.
    pub relay: bool,
    /// Where each side's relay is (A's, B's), when [`relay`](Self::relay) is on; `None` (the
    /// default): one relay at [`RELAY`](super::relay::RELAY), 5 ms from the core, for both.
    /// Sides naming the same address share one relay.
    pub relay_spots: Option<[RelaySpot; 2]>,
    /// Whether each side's gateway (A's, B's) grants a port mapping (UPnP IGD, NAT-PMP,
    /// PCP): the side's only router then maps its socket endpoint-independently
    /// ([`Nat::add_static_mapping`](super::nat::Nat::add_static_mapping)) and the agent gets a
    /// port-mapped candidate for it. Ignored for profiles without exactly one translating
    /// router (a CGNAT home gateway's mapping would sit behind the carrier's NAT). Default
    /// `[false, false]`.
    pub port_mapped: [bool; 2],
    /// How the two sites relate; [`Topology::Separate`] by default.
    pub topology: Topology,
    /// Keep running this long after both sides connected on any path, for tests of what a
    /// long idle session costs or loses; zero (the default): stop then (or after
    /// [`relay_settle`](Self::relay_settle) on a relay). The run still ends at
    /// [`time_limit`](Self::time_limit).
    pub hold: Duration,
    /// Make A IPv6-only ([`host_v6`]) behind a stateful NAT64 with this prefix, pool address
    /// [`NAT64_POOL`], endpoint-independent mapping and address-dependent filtering (RFC 6146
    /// §3.5); A's [`Profile`] is then unused and its agent is told the prefix, as the driver
    /// tells it after RFC 7050 discovery. `None` (the default): A is an IPv4 host.
    pub nat64_a: Option<Nat64Prefix>,
    /// How A's NAT64 filters inbound IPv4 ([`nat64_a`](Self::nat64_a)): address-dependent by
    /// default; address- and port-dependent is what a Linux NAT64 with conntrack does.
    pub nat64_filtering: Filtering,
    /// How long a run goes on after connecting through a relay, for a direct path to take
    /// over: 15 s by default, longer than the slowest birthday search the matrix sees (~13 s).
    /// Set it to `time_limit` to watch what a relayed pair costs over a long session.
    pub relay_settle: Duration,
    /// Every IPv4 router's idle mapping timeout on both sites; `None` (the default): the
    /// profiles' own (120 s).
    pub nat_timeout: Option<Duration>,
    /// Tell each side's agent its NAT's idle mapping lifetime ([`Agent::set_mapping_lifetime`])
    /// this long after it connected, as a driver does when its background measurement ends:
    /// `(delay, lifetime)`. `None` (the default): never.
    pub mapping_lifetime: Option<(Duration, Duration)>,
}

/// How the two peers' networks relate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Topology {
    /// Each behind its own routers, on the internet (the matrix).
    #[default]
    Separate,
    /// Both hosts on one LAN behind A's profile (B's is unused); the routers do not hairpin.
    SameLan,
    /// Two homes (A's and B's profile, their routers on 100.64.0.2 and .3) under one carrier
    /// NAT (endpoint-independent mapping, address- and port-dependent filtering, random ports,
    /// public 198.51.100.30) that hairpins or not.
    SameCarrier {
        /// Whether the carrier NAT hairpins.
        hairpin: bool,
    },
}

/// A relay on the simulated internet: its listening address and one-way latency to the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RelaySpot {
    /// Where it listens (a public address in 203.0.113.0/24, not the STUN server's).
    pub address: SocketAddr,
    /// One-way latency between it and the internet core.
    pub latency: Duration,
}

/// A's home router's address on the carrier's network ([`Topology::SameCarrier`]).
pub const CARRIER_HOME_A: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 2);
/// B's home router's address on the carrier's network.
pub const CARRIER_HOME_B: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 3);
/// The carrier NAT's public address.
pub const CARRIER_PUBLIC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 30);

/// The external port a granted port mapping gets on the gateway.
pub const PORT_MAPPED_PORT: u16 = 7100;

/// The IPv4 pool address of A's NAT64 ([`PairConfig::nat64_a`]).
pub const NAT64_POOL: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 64);

impl PairConfig {
    /// The defaults the demo and the matrix use: 12.5 ms per site (50 ms RTT), 2 ms jitter, no
    /// loss, 20 ms signalling, 30 s limit, the aggressive agent profile.
    pub fn new(a: Profile, b: Profile, seed: u64) -> Self {
        PairConfig {
            a,
            b,
            seed,
            site_latency: Duration::from_micros(12_500),
            jitter: Duration::from_millis(2),
            loss_per_mille: 0,
            signal_latency: Duration::from_millis(20),
            signal_stall_to_a: Duration::ZERO,
            time_limit: Duration::from_secs(30),
            agent: AgentConfig::aggressive,
            ipv6: None,
            single_stun_server: false,
            relay: true,
            relay_spots: None,
            port_mapped: [false, false],
            topology: Topology::Separate,
            hold: Duration::ZERO,
            relay_settle: RELAY_SETTLE,
            nat64_a: None,
            nat64_filtering: Filtering::AddressDependent,
            nat_timeout: None,
            mapping_lifetime: None,
        }
    }

    /// The same run with no TURN relay (for tests about direct paths alone).
    pub fn without_relay(mut self) -> Self {
        self.relay = false;
        self
    }

    /// The same pair with dual-stack sites.
    pub fn with_ipv6(mut self, ipv6: DualStack) -> Self {
        self.ipv6 = Some(ipv6);
        self
    }
}

/// How the pair ended up talking.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PathKind {
    /// A direct UDP path (no relay).
    Direct,
    /// Through a relay.
    Relay,
    /// No path within the time limit.
    None,
}

impl PathKind {
    /// The name used in `cli.md`'s JSON.
    pub fn name(self) -> &'static str {
        match self {
            PathKind::Direct => "direct",
            PathKind::Relay => "relay",
            PathKind::None => "none",
        }
    }
}

/// The result of one run.
#[derive(Clone, Debug)]
pub struct PairOutcome {
    /// The path both sides selected (None unless both did).
    pub path: PathKind,
    /// Virtual time from start until both sides were connected.
    pub elapsed: Option<Duration>,
    /// Every event and signalling line, with its virtual time (for determinism checks).
    pub log: Vec<String>,
    /// Datagrams the network dropped (NAT filtering, loss, unroutable).
    pub dropped: u64,
    /// The path each side (A, B) selected last, if any.
    pub selected: [Option<PathInfo>; 2],
    /// Each relay of the run, by listening address, with what it did.
    pub relays: Vec<(SocketAddr, RelayStats)>,
    /// Bytes of every datagram the network delivered (to the agents, the STUN servers and
    /// the relays).
    pub delivered_bytes: u64,
    /// Datagrams each side's agent (A, B) sent straight towards the peer, neither through
    /// the relay nor to a STUN server or relay address: connectivity checks on direct pairs,
    /// consent on a direct path, and punch probes.
    pub direct_sends: [u64; 2],
    /// Datagrams each side's agent sent to the STUN servers (gathering, and re-gathering on
    /// a relay).
    pub stun_sends: [u64; 2],
    /// Each side's [`direct_sends`](Self::direct_sends) one by one: when, the STUN message
    /// type (0x0001 a Binding request, 0x0101 a success response; 0 for a datagram too short
    /// to be STUN), and where to.
    pub direct_log: [Vec<(Instant, u16, SocketAddr)>; 2],
}

struct Side {
    agent: Agent,
    socket: SocketAddr,
    /// The IPv6 host socket of a dual-stack side.
    socket_v6: Option<SocketAddr>,
    extra_sockets: Vec<SocketAddr>,
    /// The local end of the TCP connection to the relay, for a side that blocks UDP.
    relay_stream: Option<SocketAddr>,
    connected: Option<PathInfo>,
    connected_at: Option<Instant>,
    /// Whether the agent was told [`PairConfig::mapping_lifetime`].
    lifetime_told: bool,
    failed: bool,
    /// The peer's ufrag, held until its password line arrives.
    pending_ufrag: Option<String>,
}

impl Side {
    /// Sends from local address `from` (the host socket when `None`): over the TCP connection
    /// to the relay when that is where it comes from, else as a UDP datagram.
    fn send(
        &self,
        net: &mut Network,
        now: Instant,
        from: Option<SocketAddr>,
        to: SocketAddr,
        bytes: &[u8],
    ) {
        let from = from.unwrap_or(self.socket);
        if Some(from) == self.relay_stream {
            net.send_stream(now, from, to, bytes);
        } else {
            net.send(now, from, to, bytes);
        }
    }
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Signal {
    at: Instant,
    seq: u64,
    to_b: bool,
    line: String,
}

/// How long a line from side `from` (0 = A) takes to reach the other side.
fn signal_delay(config: &PairConfig, from: usize) -> Duration {
    if from == 1 {
        config.signal_latency + config.signal_stall_to_a
    } else {
        config.signal_latency
    }
}

/// Runs one pair to completion (both connected, either failed, or the time limit).
pub fn run_pair(config: &PairConfig) -> PairOutcome {
    let mut net = Network::new(config.seed);
    net.jitter = config.jitter;
    let (public_a, public_b) = match config.topology {
        Topology::SameCarrier { .. } => (CARRIER_HOME_A, CARRIER_HOME_B),
        _ => (
            Ipv4Addr::new(198, 51, 100, 10),
            Ipv4Addr::new(198, 51, 100, 20),
        ),
    };
    let (mut site_a, host_a) = config.a.site(
        public_a,
        Ipv4Addr::new(192, 168, 1, 2),
        config.site_latency,
        config.seed ^ 0xa,
    );
    let (mut site_b, host_b) = config.b.site(
        public_b,
        Ipv4Addr::new(192, 168, 2, 2),
        config.site_latency,
        config.seed ^ 0xb,
    );
    if let Some(timeout) = config.nat_timeout {
        for nat in site_a.chain.iter_mut().chain(site_b.chain.iter_mut()) {
            nat.config.timeout = timeout;
        }
    }
    let host_a = match config.nat64_a {
        None => host_a,
        Some(prefix) => {
            assert!(
                config.ipv6.is_none_or(|d| d.a.is_none()) && config.topology == Topology::Separate,
                "an IPv6-only A is neither dual-stack nor sharing a network"
            );
            let host = IpAddr::V6(host_v6(false));
            let translator = NatConfig::nat(
                Mapping::EndpointIndependent,
                config.nat64_filtering,
                Allocation::Random,
            );
            site_a.hosts = vec![host];
            site_a.chain.clear();
            site_a.nat64 = Some(Nat64Gateway {
                prefix,
                nat: Nat::new(translator, NAT64_POOL, config.seed ^ 0x64),
            });
            host
        }
    };
    // Only one latency per side to the core: a nested home gets a LAN hop's worth.
    let host_b = match config.topology {
        Topology::Separate => host_b,
        Topology::SameLan => {
            let second = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 3));
            site_a.hosts.push(second);
            second
        }
        Topology::SameCarrier { .. } => {
            site_a.latency = LAN_LATENCY;
            site_b.latency = LAN_LATENCY;
            // Sites 0 and 1 are the homes, 2 the carrier (added below).
            site_a.behind = Some(2);
            site_b.behind = Some(2);
            host_b
        }
    };
    site_a.loss_per_mille = config.loss_per_mille;
    site_b.loss_per_mille = config.loss_per_mille;
    let mapped = [
        grant_port_mapping(config.port_mapped[0], &mut site_a, host_a, 5000),
        grant_port_mapping(config.port_mapped[1], &mut site_b, host_b, 6000),
    ];
    let v6 = config.ipv6.unwrap_or(DualStack { a: None, b: None });
    let host_v6_a =
        v6.a.map(|p| p.attach(&mut site_a, host_v6(false), config.seed ^ 0x6a));
    let host_v6_b =
        v6.b.map(|p| p.attach(&mut site_b, host_v6(true), config.seed ^ 0x6b));
    net.add_site(site_a);
    match config.topology {
        Topology::Separate => {
            net.add_site(site_b);
        }
        // B's host is on A's LAN; its own site stays empty so indices are as usual.
        Topology::SameLan => {
            site_b.hosts.clear();
            net.add_site(site_b);
        }
        Topology::SameCarrier { hairpin } => {
            net.add_site(site_b);
            let mut config_nat = NatConfig::nat(
                Mapping::EndpointIndependent,
                Filtering::AddressAndPortDependent,
                Allocation::Random,
            );
            config_nat.hairpin = hairpin;
            net.add_site(Site {
                hosts: vec![IpAddr::V4(CARRIER_HOME_A), IpAddr::V4(CARRIER_HOME_B)],
                chain: vec![Nat::new(config_nat, CARRIER_PUBLIC, config.seed ^ 0xc)],
                v6_router: None,
                latency: config.site_latency,
                loss_per_mille: config.loss_per_mille,
                behind: None,
                nat64: None,
            });
        }
    }
    let primary: SocketAddr = STUN_PRIMARY.parse().expect("constant");
    let alternate: SocketAddr = STUN_ALTERNATE.parse().expect("constant");
    net.add_public_host(primary.ip(), Duration::from_millis(5));
    net.add_public_host(alternate.ip(), Duration::from_millis(5));
    // As `holepunch stun-server --alternate` runs by default: rate-limited, so bare requests
    // get OTHER-ADDRESS.
    let server_config = ServerConfig::rfc5780(primary, alternate);
    let mut server = Server::new(server_config).expect("valid server configuration");
    let stun_v6: SocketAddr = STUN_V6.parse().expect("constant");
    let mut server_v6 = (host_v6_a.is_some() || host_v6_b.is_some()).then(|| {
        net.add_public_host(stun_v6.ip(), Duration::from_millis(5));
        Server::new(ServerConfig::new(stun_v6)).expect("valid server configuration")
    });

    let mut sim_relays: Vec<SimRelay> = Vec::new();
    let mut relay_of_side = [None; 2];
    if config.relay {
        match config.relay_spots {
            None => sim_relays.push(SimRelay::new(&mut net, config.seed ^ 0x7e)),
            Some(spots) => {
                for (i, spot) in spots.iter().enumerate() {
                    if !sim_relays.iter().any(|r| r.address() == spot.address) {
                        let seed = config.seed ^ 0x7e ^ ((i as u64) << 8);
                        sim_relays.push(SimRelay::at(&mut net, spot.address, spot.latency, seed));
                    }
                    relay_of_side[i] = Some(spot.address);
                }
            }
        }
    }

    let mut now = Instant::ZERO;
    let mut sides = [
        (
            host_a,
            host_v6_a,
            true,
            0xa11ceu64,
            mapped[0],
            relay_of_side[0],
        ),
        (host_b, host_v6_b, false, 0xb0b, mapped[1], relay_of_side[1]),
    ]
    .map(|(host, host_v6, controlling, salt, mapped, relay_at)| {
        let mut agent_config = (config.agent)(controlling);
        agent_config.stun_servers = if config.single_stun_server {
            vec![primary]
        } else {
            vec![primary, alternate]
        };
        if host_v6.is_some() {
            agent_config.stun_servers.push(stun_v6);
        }
        let mut agent = Agent::new(agent_config, config.seed ^ salt);
        let nat64 = config.nat64_a.filter(|_| controlling);
        agent.set_nat64_prefix(now, nat64);
        let port = if controlling { 5000 } else { 6000 };
        let socket = SocketAddr::new(host, port);
        agent
            .add_host_candidate(now, socket)
            .expect("one host candidate fits");
        if let Some((external, gateway)) = mapped {
            agent
                .add_port_mapping(now, external, socket, gateway)
                .expect("a port-mapped candidate fits");
        }
        // IPv4 first: the agent ranks host candidates by the order they are added, so this
        // gives IPv4 the higher local preference (RFC 8421 would rather prefer IPv6). It also
        // keeps the IPv4 host candidate first in the peer's list, which the agent's hard-NAT
        // punching reads without looking at the family. Across NATs only the IPv6 host pair
        // can work anyway, and it outranks every server-reflexive pair by type preference.
        let socket_v6 = host_v6.map(|ip| SocketAddr::new(ip, port));
        if let Some(s) = socket_v6 {
            agent
                .add_host_candidate(now, s)
                .expect("two host candidates fit");
        }
        let mut relay_stream = None;
        if let Some(relay) = sim_relays.first() {
            let mut server = relay_at.unwrap_or(relay.address());
            // Behind a NAT64, the IPv4 relay is reached at its synthesised address, as a
            // driver configures it once the prefix is known.
            if let Some(synthesised) = nat64.and_then(|p| p.synthesize_socket(server)) {
                server = synthesised;
            }
            // A site that blocks UDP reaches the relay over TCP, as its user would configure
            // (`--turn ...?transport=tcp`); the others over UDP.
            let blocked = if controlling { config.a } else { config.b } == Profile::UdpBlocked;
            let (transport, base) = if blocked {
                let stream = SocketAddr::new(host, RELAY_STREAM_PORT);
                relay_stream = Some(stream);
                (Transport::Tcp, stream)
            } else {
                (Transport::Udp, socket)
            };
            let turn = TurnConfig::new(server, transport, RELAY_USER, RELAY_PASSWORD);
            agent
                .add_turn_server(now, base, turn)
                .expect("the first allocation starts");
        }
        agent.gather(now);
        Side {
            agent,
            socket,
            socket_v6,
            extra_sockets: Vec::new(),
            relay_stream,
            connected: None,
            connected_at: None,
            lifetime_told: false,
            failed: false,
            pending_ufrag: None,
        }
    });

    let mut log = Vec::new();
    let mut signals = BinaryHeap::new();
    let mut seq = 0u64;
    for (i, side) in sides.iter().enumerate() {
        let creds = side.agent.local_credentials();
        for line in [
            format!("ice-ufrag:{}", creds.ufrag()),
            format!("ice-pwd:{}", creds.pwd()),
        ] {
            seq += 1;
            signals.push(Reverse(Signal {
                at: now + signal_delay(config, i),
                seq,
                to_b: i == 0,
                line,
            }));
        }
    }

    let deadline = Instant::ZERO + config.time_limit;
    let mut buf = vec![0u8; 1500];
    // A state machine whose poll_timeout keeps naming a past instant without producing
    // anything would spin here: catch that as the bug it is.
    let mut stalled = (Instant::ZERO, 0u32);
    let mut delivered_bytes = 0u64;
    let (mut direct_sends, mut stun_sends) = ([0u64; 2], [0u64; 2]);
    let mut direct_log: [Vec<(Instant, u16, SocketAddr)>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..5_000_000u32 {
        // Outputs of both agents.
        for (i, side) in sides.iter_mut().enumerate() {
            while let Some(action) = side.agent.poll_action() {
                match action {
                    Action::BindSockets { token, count, ip } => {
                        assert_eq!(ip, side.socket.ip(), "punch sockets belong on the host IP");
                        let base = 40_000 + side.extra_sockets.len() as u16;
                        side.extra_sockets =
                            (0..count).map(|k| SocketAddr::new(ip, base + k)).collect();
                        side.agent.handle_io(
                            now,
                            token,
                            IoResult::SocketsBound(&side.extra_sockets),
                        );
                    }
                    other => log.push(format!("{now:?} unsupported action {other:?}")),
                }
            }
            // The agent wraps what leaves from its relayed candidate: those, and its TURN
            // requests, go to a relay (over the stream for a side that blocks UDP).
            while let Some(t) = side.agent.poll_transmit(now, &mut buf) {
                let from = t.from.unwrap_or(side.socket);
                if std::iter::once(&server)
                    .chain(server_v6.as_ref())
                    .any(|s| s.local_addresses().any(|a| a == t.to))
                {
                    stun_sends[i] += 1;
                } else if !sim_relays.iter().any(|r| r.owns(t.to)) {
                    direct_sends[i] += 1;
                    let kind = match buf[..t.len] {
                        [a, b, ..] if t.len >= 20 => u16::from_be_bytes([a, b]),
                        _ => 0,
                    };
                    direct_log[i].push((now, kind, t.to));
                }
                side.send(&mut net, now, Some(from), t.to, &buf[..t.len]);
            }
            while let Some(event) = side.agent.poll_event() {
                let name = if i == 0 { "A" } else { "B" };
                let event = match event {
                    Event::Relay(e) => {
                        log.push(format!("{now:?} {name} {e:?}"));
                        continue;
                    }
                    Event::Ice(e) => e,
                    other => {
                        log.push(format!("{now:?} {name} {other:?}"));
                        continue;
                    }
                };
                log.push(format!("{:?} {name} {event:?}", now));
                let line = match event {
                    IceEvent::LocalCandidate(c) => {
                        let mut s = String::new();
                        let _ = offer::write_candidate(&mut s, &c);
                        Some(s)
                    }
                    IceEvent::GatheringComplete => {
                        let mut s = String::new();
                        let _ = offer::write_end(&mut s);
                        Some(s)
                    }
                    IceEvent::Connected(p) | IceEvent::PathChanged(p) => {
                        side.connected = Some(p);
                        side.connected_at.get_or_insert(now);
                        None
                    }
                    IceEvent::ConsentLost(_) => {
                        side.connected = None;
                        None
                    }
                    IceEvent::Failed => {
                        side.failed = true;
                        None
                    }
                    _ => None,
                };
                if let Some(line) = line {
                    seq += 1;
                    signals.push(Reverse(Signal {
                        at: now + signal_delay(config, i),
                        seq,
                        to_b: i == 0,
                        line,
                    }));
                }
            }
        }
        let both = sides[0].connected.is_some() && sides[1].connected.is_some();
        // On a relay, punching and direct checks go on: run on for the upgrade, as long as a
        // birthday search can take (relay_settle).
        let relayed = sides.iter().any(|s| s.connected.is_some_and(|p| p.relayed));
        let settle = if relayed {
            config.relay_settle.max(config.hold)
        } else {
            config.hold
        };
        let settled = sides
            .iter()
            .filter_map(|s| s.connected_at)
            .max()
            .is_some_and(|t| now >= t + settle);
        if (both && settled) || sides.iter().any(|s| s.failed) || now >= deadline {
            break;
        }
        // Sleep until the next thing happens.
        let next = [
            sides[0].agent.poll_timeout().map(|d| d.at),
            sides[1].agent.poll_timeout().map(|d| d.at),
            sim_relays.iter().filter_map(SimRelay::poll_timeout).min(),
            lifetime_due(config, &sides[0]),
            lifetime_due(config, &sides[1]),
            net.next_arrival(),
            signals.peek().map(|s| s.0.at),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(deadline)
        .clamp(now, deadline);
        if next == stalled.0 {
            stalled.1 += 1;
            assert!(
                stalled.1 < 10_000,
                "no progress at {next:?}: a poll_timeout repeats a past deadline"
            );
        } else {
            stalled = (next, 0);
        }
        now = next;
        // Inputs.
        while let Some(d) = net.poll_delivery(now) {
            delivered_bytes += d.bytes.len() as u64;
            // The RFC 5780 server's four sockets (primary and alternate among them), then the
            // IPv6 server's one when there is one.
            if let Some(server) = std::iter::once(&mut server)
                .chain(server_v6.as_mut())
                .find(|s| s.local_addresses().any(|a| a == d.to))
            {
                server.handle_datagram(now, Datagram::new(d.to, d.from, &d.bytes));
                while let Some(t) = server.poll_transmit(now, &mut buf) {
                    net.send(now, t.from.unwrap_or(d.to), t.to, &buf[..t.len]);
                }
                continue;
            }
            if let Some(relay) = sim_relays.iter_mut().find(|r| r.owns(d.to)) {
                relay.handle(now, &mut net, &d, &mut buf);
                continue;
            }
            if let Some(side) = sides.iter_mut().find(|s| {
                s.socket == d.to
                    || s.socket_v6 == Some(d.to)
                    || s.extra_sockets.contains(&d.to)
                    || s.relay_stream == Some(d.to)
            }) {
                let _ = side
                    .agent
                    .handle_datagram(now, Datagram::new(d.to, d.from, &d.bytes));
            }
        }
        while signals.peek().is_some_and(|s| s.0.at <= now) {
            let Some(Reverse(signal)) = signals.pop() else {
                break;
            };
            let side = &mut sides[usize::from(signal.to_b)];
            apply_offer_line(now, side, &signal.line, &mut log);
        }
        for side in &mut sides {
            if let (Some(due), Some((_, lifetime))) =
                (lifetime_due(config, side), config.mapping_lifetime)
            {
                if now >= due {
                    side.agent.set_mapping_lifetime(lifetime);
                    side.lifetime_told = true;
                }
            }
            side.agent.handle_timeout(now);
        }
        for relay in &mut sim_relays {
            relay.handle_timeout(now, &mut net, &mut buf);
        }
    }

    let path = match (sides[0].connected, sides[1].connected) {
        (Some(a), Some(b)) if a.relayed || b.relayed => PathKind::Relay,
        (Some(_), Some(_)) => PathKind::Direct,
        _ => PathKind::None,
    };
    let elapsed = match (sides[0].connected_at, sides[1].connected_at, path) {
        (Some(a), Some(b), PathKind::Direct | PathKind::Relay) => Some(a.max(b) - Instant::ZERO),
        _ => None,
    };
    let mut summary = String::new();
    let _ = write!(summary, "{:?} result {} {:?}", now, path.name(), elapsed);
    log.push(summary);
    PairOutcome {
        path,
        elapsed,
        log,
        dropped: net.dropped,
        selected: [sides[0].connected, sides[1].connected],
        relays: sim_relays
            .iter()
            .map(|r| (r.address(), r.stats()))
            .collect(),
        delivered_bytes,
        direct_sends,
        stun_sends,
        direct_log,
    }
}

/// When `side`'s agent is due to be told [`PairConfig::mapping_lifetime`], if it still is.
fn lifetime_due(config: &PairConfig, side: &Side) -> Option<Instant> {
    let (delay, _) = config.mapping_lifetime?;
    let connected = side.connected_at?;
    (!side.lifetime_told).then_some(connected + delay)
}

/// Grants the port mapping [`PairConfig::port_mapped`] describes on `site`'s only router for
/// the host's socket `host:port`: the external address and the gateway (the router's LAN
/// address, `.1` of the host's /24), or `None` when not wanted or not possible.
fn grant_port_mapping(
    wanted: bool,
    site: &mut Site,
    host: IpAddr,
    port: u16,
) -> Option<(SocketAddr, IpAddr)> {
    let [nat] = site.chain.as_mut_slice() else {
        return None;
    };
    let IpAddr::V4(lan) = host else {
        return None;
    };
    if !wanted || !matches!(nat.config.kind, Kind::Nat { .. }) {
        return None;
    }
    nat.add_static_mapping(SocketAddr::new(host, port), PORT_MAPPED_PORT);
    let [a, b, c, _] = lan.octets();
    let external = SocketAddr::new(IpAddr::V4(nat.public_ip), PORT_MAPPED_PORT);
    Some((external, IpAddr::V4(Ipv4Addr::new(a, b, c, 1))))
}

/// Feeds one signalled line to an agent, as the CLI does with the peer's offer.
fn apply_offer_line(now: Instant, side: &mut Side, line: &str, log: &mut Vec<String>) {
    match OfferLine::parse(line) {
        Ok(OfferLine::Ufrag(u)) => side.pending_ufrag = Some(u.to_string()),
        Ok(OfferLine::Pwd(p)) => {
            let ufrag = side.pending_ufrag.take();
            if let Some(creds) = ufrag.and_then(|u| IceCredentials::new(&u, p).ok()) {
                side.agent.set_remote_credentials(&creds);
            }
        }
        Ok(OfferLine::Candidate(c)) => {
            let _ = side.agent.add_remote_candidate(now, c);
        }
        Ok(OfferLine::EndOfCandidates) => side.agent.end_of_remote_candidates(),
        Ok(_) => {}
        Err(e) => log.push(format!("{now:?} bad offer line {line:?}: {e}")),
    }
}

/// A dual-stack host's IPv6 address: 2001:db8:a::2 for A, 2001:db8:b::2 for B (the
/// documentation prefix, RFC 3849).
pub fn host_v6(b_side: bool) -> Ipv6Addr {
    if b_side {
        Ipv6Addr::new(0x2001, 0xdb8, 0xb, 0, 0, 0, 0, 2)
    } else {
        Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, 2)
    }
}

/// The address a host behind `profile` uses on its LAN (for tests that need it).
pub fn lan_host(b_side: bool) -> IpAddr {
    IpAddr::V4(if b_side {
        Ipv4Addr::new(192, 168, 2, 2)
    } else {
        Ipv4Addr::new(192, 168, 1, 2)
    })
}
