//! A population of peers on the simulated internet: N peers drawn from a NAT mix, each
//! connecting to K random others through the real core agents, with R relays.
//!
//! # The model, and what it leaves out
//!
//! - Every connection is an independent [`run_pair`]: the two peers' sites (their NAT
//!   profiles, port mapping, IPv6) are built afresh for it, with one STUN server and each
//!   peer's relay. A peer's NAT state is therefore not shared between its K connections: a
//!   NAT that runs out of ports, or mappings one connection leaves behind for the next, are
//!   not modelled. What this buys: memory and time grow linearly with N × K, with no
//!   per-pair state, and each connection is deterministic for its own seed
//!   ([`connection_seed`]).
//! - Peer `i` connects to K peers drawn uniformly from the others, as the controlling side.
//!   Each connection starts at virtual time zero; the relay-load figures assume all N × K
//!   connections are live at the same time (the worst case for the relays).
//! - Geography is a toy: peers and relays sit on a ring ("the world") whose half
//!   circumference is 100 ms one way. Relay `r` of R sits at `r / R`; a peer's one-way
//!   latency to a relay is 5 ms plus 200 ms × their ring distance, and each peer picks the
//!   relay with the lowest RTT (the nearest; ties to the lower index), as a client measuring
//!   its relays does. In the pair run, the chosen relay sits that far from the core.
//! - Port mapping ([`Mix::port_mapping`]) applies to peers behind exactly one translating
//!   router (full-cone to symmetric-random): their gateway grants an endpoint-independent
//!   mapping and the agent gets a port-mapped candidate. A CGNAT peer's home gateway could
//!   map too, but behind the carrier's NAT that mapping is useless, so it gets none.
//! - IPv6 ([`Mix::ipv6`]) gives a peer a global address behind a stateful firewall (RFC
//!   6092's default); two IPv6 peers punch through their firewalls directly. UDP-blocked
//!   peers get no IPv6 (their network blocks UDP); they reach their relay over TCP. NAT64
//!   is not modelled.
//! - No application data flows: the bytes counted are STUN, ICE, TURN and the punching
//!   traffic. A relayed run goes on after connecting (as [`run_pair`] does, for a direct
//!   path to take over), so relayed connections carry checks, punching and keepalives on
//!   the relay while direct ones stop when connected.

use std::sync::atomic::{AtomicUsize, Ordering};

use holepunch_core::ice::agent::AgentConfig;
use holepunch_core::time::{Duration, duration_micros};

use super::matrix::expected;
use super::pair::{DualStack, PairConfig, PathKind, RelaySpot, run_pair};
use super::profile::{Profile, V6Policy};

/// At most this many relays (their addresses are 203.0.113.16 onwards).
pub const MAX_RELAYS: u32 = 200;

/// How far the shares may be from summing to 1.
const SUM_TOLERANCE: f64 = 1e-6;

/// Connections a worker runs before it takes the next batch (and reports progress).
const CHUNK: usize = 64;

/// The NAT situations peers are drawn from.
#[derive(Clone, Debug, PartialEq)]
pub struct Mix {
    /// The share of each profile, in [`Profile::ALL`] order; they sum to 1.
    shares: [f64; 9],
    /// The share of peers behind one translating router whose gateway grants a port mapping.
    pub port_mapping: f64,
    /// The share of peers (other than UDP-blocked ones) with IPv6 behind a firewall.
    pub ipv6: f64,
}

/// A mix that does not describe a population.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MixError {
    /// A share is not a number in 0..=1.
    #[error("the share of {what} is {value}, not a fraction between 0 and 1")]
    NotAFraction {
        /// Which share.
        what: String,
        /// Its value.
        value: f64,
    },
    /// The profile shares do not add up to 1.
    #[error("the profile shares sum to {0}, not 1")]
    SumNotOne(f64),
    /// A profile was given twice.
    #[error("the profile {0} is listed twice")]
    Duplicate(Profile),
}

impl Mix {
    /// A mix from profile shares (profiles left out have share 0), the port-mapping share
    /// and the IPv6 share.
    pub fn new(profiles: &[(Profile, f64)], port_mapping: f64, ipv6: f64) -> Result<Mix, MixError> {
        let fraction = |what: &str, value: f64| {
            if (0.0..=1.0).contains(&value) {
                Ok(value)
            } else {
                Err(MixError::NotAFraction {
                    what: what.into(),
                    value,
                })
            }
        };
        let mut shares = [0.0; 9];
        let mut seen = [false; 9];
        for &(p, share) in profiles {
            let i = index(p);
            if seen[i] {
                return Err(MixError::Duplicate(p));
            }
            seen[i] = true;
            shares[i] = fraction(p.name(), share)?;
        }
        let sum: f64 = shares.iter().sum();
        if (sum - 1.0).abs() > SUM_TOLERANCE {
            return Err(MixError::SumNotOne(sum));
        }
        Ok(Mix {
            shares,
            port_mapping: fraction("port_mapping", port_mapping)?,
            ipv6: fraction("ipv6", ipv6)?,
        })
    }

    /// Every profile equally likely, no port mapping, no IPv6: the 9×9 matrix's cells.
    pub fn uniform() -> Mix {
        let all: Vec<(Profile, f64)> = Profile::ALL.iter().map(|&p| (p, 1.0 / 9.0)).collect();
        Mix::new(&all, 0.0, 0.0).expect("nine ninths")
    }

    /// One profile only, no port mapping, no IPv6.
    pub fn only(p: Profile) -> Mix {
        Mix::new(&[(p, 1.0)], 0.0, 0.0).expect("one whole")
    }

    /// The share of `p`.
    pub fn share(&self, p: Profile) -> f64 {
        self.shares[index(p)]
    }

    /// The profile at cumulative position `u` (0..1).
    fn profile_at(&self, u: f64) -> Profile {
        let mut acc = 0.0;
        let mut last = Profile::Open;
        for (i, &p) in Profile::ALL.iter().enumerate() {
            if self.shares[i] > 0.0 {
                last = p;
                acc += self.shares[i];
                if u < acc {
                    return p;
                }
            }
        }
        // Rounding left `u` just above the total: the last profile with a share.
        last
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct PopulationConfig {
    /// Peers (N, at least 2).
    pub peers: usize,
    /// Connections each peer starts (K).
    pub connections: usize,
    /// Relays (R, 1..=[`MAX_RELAYS`]).
    pub relays: u32,
    /// Seed of the whole population.
    pub seed: u64,
    /// The mix peers are drawn from.
    pub mix: Mix,
    /// Worker threads; 0: one per core.
    pub threads: usize,
    /// Which traversal techniques the agents use (all by default).
    pub techniques: Techniques,
}

/// Traversal techniques that can be switched off, to see what each one is worth.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Techniques {
    /// Hard-NAT punching: birthday probing against random allocators, port prediction
    /// against sequential ones (the agent's [`PunchConfig`](holepunch_core::ice::agent::PunchConfig)).
    pub punching: bool,
    /// Telling a hard NAT from an easy one: the agents get both addresses of the RFC 5780
    /// server and ask its OTHER-ADDRESS. Off: one plain server address only, as with a
    /// classic one-address STUN server; a side then cannot see that its NAT maps per
    /// destination, and never starts hard-NAT punching.
    pub mapping_detection: bool,
}

impl Default for Techniques {
    fn default() -> Self {
        Techniques {
            punching: true,
            mapping_detection: true,
        }
    }
}

/// One peer's situation, drawn from the mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Its NAT profile.
    pub profile: Profile,
    /// Whether its gateway granted a port mapping.
    pub port_mapped: bool,
    /// Whether it has IPv6 (behind a firewall).
    pub ipv6: bool,
    /// Its nearest relay.
    pub relay: u32,
    /// Its one-way latency to that relay.
    pub relay_latency: Duration,
}

impl Peer {
    /// The path a connection from `a` to `b` should get: the 9×9 matrix's [`expected`],
    /// where a port-mapped peer counts as a full cone, and two IPv6 peers go direct.
    pub fn expected(a: &Peer, b: &Peer) -> PathKind {
        let effective = |p: &Peer| {
            if p.port_mapped {
                Profile::FullCone
            } else {
                p.profile
            }
        };
        if a.ipv6 && b.ipv6 {
            PathKind::Direct
        } else {
            expected(effective(a), effective(b))
        }
    }
}

/// One relay's load over the whole population.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayLoad {
    /// Allocations made on it (every peer that picked it allocates once per connection).
    pub allocations: u64,
    /// Relayed connections whose datagrams crossed it (one between peers that picked
    /// different relays may cross both).
    pub relayed_connections: u64,
    /// Datagrams it relayed (each counted once at its relayed socket).
    pub relayed_packets: u64,
    /// The bytes of those datagrams.
    pub relayed_bytes: u64,
}

/// The totals of a population run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PopulationReport {
    /// Connections run (N × K).
    pub connections: u64,
    /// Connections by final path: direct, relay, none.
    pub direct: u64,
    /// Relayed connections.
    pub relayed: u64,
    /// Connections with no path.
    pub failed: u64,
    /// Connections whose path differs from [`Peer::expected`].
    pub unexpected: u64,
    /// The first few of those (by connection index), to look into.
    pub unexpected_examples: Vec<Unexpected>,
    /// Per ordered profile pair (A's index in [`Profile::ALL`], B's) and final path (direct,
    /// relay, none): connection counts.
    pub by_profiles: Vec<[[u64; 3]; 9]>,
    /// Peers drawn per profile, in [`Profile::ALL`] order.
    pub peers_by_profile: [u64; 9],
    /// Peers with a port mapping.
    pub peers_mapped: u64,
    /// Peers with IPv6.
    pub peers_ipv6: u64,
    /// Virtual time to connected of every connected connection, microseconds, sorted.
    pub times_us: Vec<u64>,
    /// Bytes of every datagram delivered in all runs.
    pub delivered_bytes: u64,
    /// Per relay, in index order.
    pub relays: Vec<RelayLoad>,
    /// The longest virtual time a run may take (the window relay rates are taken over).
    pub window: Duration,
}

impl PopulationReport {
    /// Fractions of direct, relayed and failed connections (they sum to 1).
    pub fn shares(&self) -> [f64; 3] {
        let n = self.connections.max(1) as f64;
        // Each from its own count, so a share with no connections is exactly 0 (a remainder
        // printed 4e-17 failed); the three add up to 1 within a rounding error.
        [self.direct, self.relayed, self.failed].map(|k| k as f64 / n)
    }

    /// The `q` quantile (0..=1) of time to connected (nearest rank), if any connected.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.times_us.is_empty() {
            return None;
        }
        let len = self.times_us.len();
        let rank = ((q * len as f64).ceil() as usize).clamp(1, len);
        Some(Duration::from_micros(self.times_us[rank - 1]))
    }

    /// Bytes relayed, all relays together.
    pub fn relayed_bytes(&self) -> u64 {
        self.relays.iter().map(|r| r.relayed_bytes).sum()
    }

    /// Relayed packets per second of virtual time on relay `r`, all connections live at once.
    pub fn packets_per_second(&self, r: &RelayLoad) -> f64 {
        r.relayed_packets as f64 / self.window.as_secs_f64().max(1e-9)
    }

    fn merge(&mut self, other: PopulationReport) {
        self.connections += other.connections;
        self.direct += other.direct;
        self.relayed += other.relayed;
        self.failed += other.failed;
        self.unexpected += other.unexpected;
        let room = EXAMPLES.saturating_sub(self.unexpected_examples.len());
        self.unexpected_examples
            .extend(other.unexpected_examples.into_iter().take(room));
        for (mine, theirs) in self.by_profiles.iter_mut().zip(&other.by_profiles) {
            for (m, t) in mine.iter_mut().zip(theirs) {
                for (a, b) in m.iter_mut().zip(t) {
                    *a += b;
                }
            }
        }
        self.times_us.extend(other.times_us);
        self.delivered_bytes += other.delivered_bytes;
        for (mine, theirs) in self.relays.iter_mut().zip(&other.relays) {
            mine.allocations += theirs.allocations;
            mine.relayed_connections += theirs.relayed_connections;
            mine.relayed_packets += theirs.relayed_packets;
            mine.relayed_bytes += theirs.relayed_bytes;
        }
    }
}

/// A connection whose path is not the one [`Peer::expected`] predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unexpected {
    /// Its index in the N × K list (its seed is [`connection_seed`] of it).
    pub connection: u64,
    /// The controlling peer.
    pub a: Peer,
    /// The controlled peer.
    pub b: Peer,
    /// The path it got.
    pub path: PathKind,
    /// The path predicted.
    pub expected: PathKind,
}

/// How many [`Unexpected`] examples a report keeps.
const EXAMPLES: usize = 10;

/// A population that cannot be run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PopulationError {
    /// Fewer than two peers: nobody to connect to.
    #[error("a population needs at least 2 peers, not {0}")]
    TooFewPeers(usize),
    /// No connections per peer.
    #[error("each peer needs at least 1 connection")]
    NoConnections,
    /// Relays out of range.
    #[error("relays must be between 1 and {MAX_RELAYS}, not {0}")]
    Relays(u32),
}

/// The seed of connection `c` of a population seeded `seed`.
pub fn connection_seed(seed: u64, c: u64) -> u64 {
    splitmix(seed ^ splitmix(c ^ 0xc0_11ec7))
}

/// Peer `i` of the population (a pure function of the configuration and `i`: no peer table).
pub fn peer(config: &PopulationConfig, i: usize) -> Peer {
    let mut h = splitmix(config.seed ^ splitmix(i as u64 ^ 0x9ee7));
    let mut draw = || {
        h = splitmix(h);
        (h >> 11) as f64 / (1u64 << 53) as f64
    };
    let profile = config.mix.profile_at(draw());
    let mappable = profile_is_mappable(profile);
    let port_mapped = draw() < config.mix.port_mapping && mappable;
    let ipv6 = draw() < config.mix.ipv6 && profile != Profile::UdpBlocked;
    let position = draw();
    let relays = config.relays.max(1);
    let (relay, distance) = (0..relays)
        .map(|r| (r, ring_distance(position, f64::from(r) / f64::from(relays))))
        .min_by(|x, y| x.1.total_cmp(&y.1).then(x.0.cmp(&y.0)))
        .unwrap_or((0, 0.0));
    Peer {
        profile,
        port_mapped,
        ipv6,
        relay,
        relay_latency: Duration::from_micros(5_000 + (distance * 200_000.0) as u64),
    }
}

/// Whether a gateway's port mapping helps a peer in `p` (exactly one translating router).
pub fn profile_is_mappable(p: Profile) -> bool {
    matches!(
        p,
        Profile::FullCone
            | Profile::RestrictedCone
            | Profile::PortRestrictedCone
            | Profile::SymmetricSequential
            | Profile::SymmetricRandom
    )
}

/// The peer connection `c` goes to (never the peer itself).
pub fn partner(config: &PopulationConfig, c: u64) -> usize {
    let from = c as usize / config.connections.max(1);
    let others = config.peers.max(2) as u64 - 1;
    let step = splitmix(config.seed ^ splitmix(c ^ 0x9a47)) % others;
    (from + 1 + step as usize) % config.peers.max(2)
}

/// The pair run for connection `c` between peers `a` and `b`.
pub fn connection_config(config: &PopulationConfig, c: u64, a: &Peer, b: &Peer) -> PairConfig {
    let mut pair = PairConfig::new(a.profile, b.profile, connection_seed(config.seed, c));
    pair.port_mapped = [a.port_mapped, b.port_mapped];
    if a.ipv6 || b.ipv6 {
        let policy = |p: &Peer| p.ipv6.then_some(V6Policy::Firewall);
        pair = pair.with_ipv6(DualStack {
            a: policy(a),
            b: policy(b),
        });
    }
    pair.relay_spots = Some([relay_spot(a), relay_spot(b)]);
    let t = config.techniques;
    if !t.mapping_detection {
        pair.single_stun_server = true;
    }
    pair.agent = match (t.punching, t.mapping_detection) {
        (true, true) => AgentConfig::aggressive,
        (false, true) => agent_without_punching,
        (true, false) => agent_without_other_address,
        (false, false) => agent_with_neither,
    };
    pair
}

fn agent_without_punching(controlling: bool) -> AgentConfig {
    AgentConfig {
        punch: None,
        ..AgentConfig::aggressive(controlling)
    }
}

fn agent_without_other_address(controlling: bool) -> AgentConfig {
    AgentConfig {
        probe_other_address: false,
        ..AgentConfig::aggressive(controlling)
    }
}

fn agent_with_neither(controlling: bool) -> AgentConfig {
    AgentConfig {
        punch: None,
        probe_other_address: false,
        ..AgentConfig::aggressive(controlling)
    }
}

/// Where relay `r` listens.
pub fn relay_address(r: u32) -> std::net::SocketAddr {
    let host = u8::try_from(16 + r.min(MAX_RELAYS - 1)).unwrap_or(u8::MAX);
    std::net::SocketAddr::from(([203, 0, 113, host], 3478))
}

fn relay_spot(p: &Peer) -> RelaySpot {
    RelaySpot {
        address: relay_address(p.relay),
        latency: p.relay_latency,
    }
}

/// Runs the population; `progress(done, total)` is called from the workers as connections
/// finish (in no particular order). The report is the same for the same configuration,
/// whatever the number of threads.
pub fn run_population(
    config: &PopulationConfig,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<PopulationReport, PopulationError> {
    if config.peers < 2 {
        return Err(PopulationError::TooFewPeers(config.peers));
    }
    if config.connections == 0 {
        return Err(PopulationError::NoConnections);
    }
    if config.relays == 0 || config.relays > MAX_RELAYS {
        return Err(PopulationError::Relays(config.relays));
    }
    let total = config.peers * config.connections;
    let chunks = total.div_ceil(CHUNK);
    let threads = match config.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        t => t,
    }
    .min(chunks)
    .max(1);
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let mut parts: Vec<(usize, PopulationReport)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        if k >= chunks {
                            break mine;
                        }
                        let range = k * CHUNK..((k + 1) * CHUNK).min(total);
                        let n = range.len();
                        mine.push((k, run_range(config, range)));
                        let finished = done.fetch_add(n, Ordering::Relaxed) + n;
                        progress(finished as u64, total as u64);
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    parts.sort_by_key(|(k, _)| *k);
    let mut report = empty_report(config);
    for (_, part) in parts {
        report.merge(part);
    }
    report.times_us.sort_unstable();
    for i in 0..config.peers {
        let p = peer(config, i);
        report.peers_by_profile[index(p.profile)] += 1;
        report.peers_mapped += u64::from(p.port_mapped);
        report.peers_ipv6 += u64::from(p.ipv6);
    }
    Ok(report)
}

fn empty_report(config: &PopulationConfig) -> PopulationReport {
    PopulationReport {
        by_profiles: vec![[[0; 3]; 9]; 9],
        relays: vec![RelayLoad::default(); config.relays as usize],
        window: PairConfig::new(Profile::Open, Profile::Open, 0).time_limit,
        ..PopulationReport::default()
    }
}

/// Runs connections `range` (indices into the N × K list) and totals them.
fn run_range(config: &PopulationConfig, range: std::ops::Range<usize>) -> PopulationReport {
    let mut report = empty_report(config);
    for c in range {
        let i = c / config.connections;
        let j = partner(config, c as u64);
        let (a, b) = (peer(config, i), peer(config, j));
        let pair = connection_config(config, c as u64, &a, &b);
        let outcome = run_pair(&pair);
        report.connections += 1;
        let slot = match outcome.path {
            PathKind::Direct => {
                report.direct += 1;
                0
            }
            PathKind::Relay => {
                report.relayed += 1;
                1
            }
            PathKind::None => {
                report.failed += 1;
                2
            }
        };
        report.by_profiles[index(a.profile)][index(b.profile)][slot] += 1;
        let expected = Peer::expected(&a, &b);
        if outcome.path != expected {
            report.unexpected += 1;
            if report.unexpected_examples.len() < EXAMPLES {
                report.unexpected_examples.push(Unexpected {
                    connection: c as u64,
                    a,
                    b,
                    path: outcome.path,
                    expected,
                });
            }
        }
        if let Some(t) = outcome.elapsed {
            report.times_us.push(duration_micros(t));
        }
        report.delivered_bytes += outcome.delivered_bytes;
        for (address, stats) in &outcome.relays {
            let Some(r) = (0..config.relays).find(|&r| relay_address(r) == *address) else {
                continue;
            };
            let load = &mut report.relays[r as usize];
            load.allocations += stats.allocations;
            load.relayed_packets += stats.relayed_packets;
            load.relayed_bytes += stats.relayed_bytes;
            if outcome.path == PathKind::Relay && stats.relayed_packets > 0 {
                load.relayed_connections += 1;
            }
        }
    }
    report
}

/// The index of `p` in [`Profile::ALL`].
pub fn index(p: Profile) -> usize {
    Profile::ALL.iter().position(|&q| q == p).unwrap_or(0)
}

/// Distance between two points of the unit ring.
fn ring_distance(x: f64, y: f64) -> f64 {
    let d = (x - y).abs();
    d.min(1.0 - d)
}

/// SplitMix64's finaliser: a well-mixed 64-bit value from any input.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(peers: usize, mix: Mix) -> PopulationConfig {
        PopulationConfig {
            peers,
            connections: 2,
            relays: 3,
            seed: 7,
            mix,
            threads: 2,
            techniques: Techniques::default(),
        }
    }

    #[test]
    fn mixes_are_checked() {
        assert!(matches!(
            Mix::new(&[(Profile::Open, 0.5)], 0.0, 0.0),
            Err(MixError::SumNotOne(_))
        ));
        assert!(matches!(
            Mix::new(&[(Profile::Open, 1.5), (Profile::Cgnat, -0.5)], 0.0, 0.0),
            Err(MixError::NotAFraction { .. })
        ));
        assert!(matches!(
            Mix::new(&[(Profile::Open, 0.5), (Profile::Open, 0.5)], 0.0, 0.0),
            Err(MixError::Duplicate(Profile::Open))
        ));
        assert!(matches!(
            Mix::new(&[(Profile::Open, 1.0)], 1.1, 0.0),
            Err(MixError::NotAFraction { .. })
        ));
        assert!(Mix::new(&[(Profile::Open, 1.0)], 0.0, f64::NAN).is_err());
    }

    #[test]
    fn partners_are_others_and_peers_pick_their_nearest_relay() {
        let c = config(5, Mix::uniform());
        for conn in 0..10u64 {
            assert_ne!(partner(&c, conn), conn as usize / 2);
            assert!(partner(&c, conn) < 5);
        }
        for i in 0..50 {
            let p = peer(&c, i);
            assert!(p.relay < 3);
            // Nearest of three relays on the ring: at most a sixth of the ring away.
            assert!(p.relay_latency <= Duration::from_micros(5_000 + 200_000 / 6 + 1));
        }
    }

    #[test]
    fn reports_do_not_depend_on_the_thread_count() {
        let mut c = config(40, Mix::uniform());
        let one = {
            c.threads = 1;
            run_population(&c, &|_, _| {}).expect("runs")
        };
        c.threads = 3;
        let three = run_population(&c, &|_, _| {}).expect("runs");
        assert_eq!(one, three);
        assert_eq!(one.connections, 80);
        assert_eq!(one.unexpected, 0);
    }
}
