//! The NAT-pair matrix: every profile against every profile, over many seeds.
//!
//! [`Situation`] adds two situations to the profiles: a `symmetric-random` NAT whose gateway grants a
//! port mapping (PCP, NAT-PMP or UPnP IGD), shown by `holepunch demo` as `symmetric-random+pcp`,
//! and an IPv6-only host behind a NAT64 (`ipv6-only+nat64`, a row only: the pair runner makes
//! only side A IPv6-only).

use std::fmt;

use holepunch_core::time::Duration;

use holepunch_core::nat64::Nat64Prefix;

use super::pair::{PairConfig, PairOutcome, PathKind, run_pair};
use super::profile::Profile;

/// One side of a matrix cell: a profile, and whether its gateway grants a port mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Situation {
    /// The NAT profile.
    pub profile: Profile,
    /// Whether the gateway maps a port for the host ([`PairConfig::port_mapped`]).
    pub port_mapped: bool,
    /// An IPv6-only host behind a NAT64 ([`PairConfig::nat64_a`], with [`NAT64_PREFIX`]);
    /// the profile is then unused. Only A can be.
    pub nat64: bool,
}

/// The NAT64 prefix of [`Situation::IPV6_ONLY`]: network-specific, since the simulation's
/// TEST-NET addresses are not global (RFC 6052 §3.1 keeps the well-known prefix for those).
pub const NAT64_PREFIX: &str = "2001:db8:64::/96";

impl Situation {
    /// A profile whose gateway maps nothing.
    pub const fn plain(profile: Profile) -> Self {
        Situation {
            profile,
            port_mapped: false,
            nat64: false,
        }
    }

    /// `symmetric-random` behind a gateway that grants a port mapping.
    pub const SYMMETRIC_MAPPED: Situation = Situation {
        profile: Profile::SymmetricRandom,
        port_mapped: true,
        nat64: false,
    };

    /// An IPv6-only host whose network reaches IPv4 through a stateful NAT64.
    pub const IPV6_ONLY: Situation = Situation {
        profile: Profile::Open,
        port_mapped: false,
        nat64: true,
    };

    /// The demo's rows and columns: every profile, then [`Situation::SYMMETRIC_MAPPED`].
    pub const DEMO: [Situation; 10] = [
        Situation::plain(Profile::Open),
        Situation::plain(Profile::FullCone),
        Situation::plain(Profile::RestrictedCone),
        Situation::plain(Profile::PortRestrictedCone),
        Situation::plain(Profile::SymmetricSequential),
        Situation::plain(Profile::SymmetricRandom),
        Situation::plain(Profile::Cgnat),
        Situation::plain(Profile::Firewall),
        Situation::plain(Profile::UdpBlocked),
        Situation::SYMMETRIC_MAPPED,
    ];

    /// The demo's rows: [`DEMO`](Self::DEMO), then [`Situation::IPV6_ONLY`].
    pub fn demo_rows() -> Vec<Situation> {
        Self::DEMO.into_iter().chain([Self::IPV6_ONLY]).collect()
    }

    /// The name `demo` prints: the profile's, with `+pcp` when the gateway maps;
    /// `ipv6-only+nat64` for [`Situation::IPV6_ONLY`].
    pub fn name(self) -> String {
        if self.nat64 {
            "ipv6-only+nat64".to_string()
        } else if self.port_mapped {
            format!("{}+pcp", self.profile.name())
        } else {
            self.profile.name().to_string()
        }
    }

    /// A short column heading.
    pub fn short(self) -> &'static str {
        if self.nat64 {
            return "v6+nat64";
        }
        if self.port_mapped {
            return "sym+pcp";
        }
        match self.profile {
            Profile::Open => "open",
            Profile::FullCone => "full",
            Profile::RestrictedCone => "restr",
            Profile::PortRestrictedCone => "portr",
            Profile::SymmetricSequential => "sym-seq",
            Profile::SymmetricRandom => "sym-rnd",
            Profile::Cgnat => "cgnat",
            Profile::Firewall => "firewall",
            Profile::UdpBlocked => "blocked",
        }
    }
}

impl fmt::Display for Situation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// [`expected`] for sites: a side whose gateway maps a port is never hard (its port-mapped
/// candidate is endpoint-independent and unfiltered), so only UDP blocking needs the relay.
///
/// An IPv6-only host behind the NAT64 is never hard either: the translator maps
/// endpoint-independently and filters by address (RFC 6146 §3.5), so once the host has sent to
/// the peer's address every port of it gets in, symmetric peers included.
pub fn expected_situations(a: Situation, b: Situation) -> PathKind {
    let blocked = |s: Situation| !s.nat64 && s.profile == Profile::UdpBlocked;
    if a.port_mapped || b.port_mapped || a.nat64 || b.nat64 {
        if blocked(a) || blocked(b) {
            PathKind::Relay
        } else {
            PathKind::Direct
        }
    } else {
        expected(a.profile, b.profile)
    }
}

/// What a pair of profiles should achieve with the simulation's TURN relay (UDP only).
///
/// Direct works unless UDP is blocked on either side, or both sides' mappings are
/// endpoint-dependent (neither can learn the port the other's NAT will use): those pairs go
/// through the relay, which a UDP-blocked side reaches over TCP.
pub fn expected(a: Profile, b: Profile) -> PathKind {
    let blocked = |p| p == Profile::UdpBlocked;
    let hard = |p| matches!(p, Profile::SymmetricRandom | Profile::SymmetricSequential);
    if blocked(a) || blocked(b) || (hard(a) && hard(b)) {
        PathKind::Relay
    } else {
        PathKind::Direct
    }
}

/// The results of one cell over all seeds.
#[derive(Clone, Debug)]
pub struct Cell {
    /// Side A's profile (the controlling agent).
    pub a: Profile,
    /// Side B's profile.
    pub b: Profile,
    /// Whether A's and B's gateways grant a port mapping.
    pub port_mapped: [bool; 2],
    /// Whether A is IPv6-only behind a NAT64 ([`Situation::nat64`]).
    pub nat64_a: bool,
    /// What the cell should achieve.
    pub expected: PathKind,
    /// One outcome per seed, in seed order.
    pub outcomes: Vec<(PathKind, Option<Duration>)>,
}

impl Cell {
    /// Side A as a [`Situation`].
    pub fn situation_a(&self) -> Situation {
        Situation {
            profile: self.a,
            port_mapped: self.port_mapped[0],
            nat64: self.nat64_a,
        }
    }

    /// Side B as a [`Situation`].
    pub fn situation_b(&self) -> Situation {
        Situation {
            profile: self.b,
            port_mapped: self.port_mapped[1],
            nat64: false,
        }
    }

    /// Runs that achieved the expected path.
    pub fn successes(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|(p, _)| *p == self.expected)
            .count()
    }

    /// Runs that claimed a direct path where none should exist (never acceptable).
    pub fn false_directs(&self) -> usize {
        if self.expected == PathKind::Direct {
            return 0;
        }
        self.outcomes
            .iter()
            .filter(|(p, _)| *p == PathKind::Direct)
            .count()
    }

    /// Fraction of runs with the expected path.
    pub fn success_rate(&self) -> f64 {
        self.successes() as f64 / self.outcomes.len().max(1) as f64
    }

    /// The `q` quantile (0..=1) of time to connected among connected runs (nearest rank).
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let mut times: Vec<Duration> = self.outcomes.iter().filter_map(|(_, t)| *t).collect();
        if times.is_empty() {
            return None;
        }
        times.sort();
        let rank = ((q * times.len() as f64).ceil() as usize).clamp(1, times.len());
        Some(times[rank - 1])
    }

    /// The path most runs took.
    pub fn typical_path(&self) -> PathKind {
        let count = |k| self.outcomes.iter().filter(|(p, _)| *p == k).count();
        [PathKind::Direct, PathKind::Relay, PathKind::None]
            .into_iter()
            .max_by_key(|k| count(*k))
            .unwrap_or(PathKind::None)
    }
}

/// Runs every ordered profile pair with seeds `first_seed..first_seed + seeds`.
pub fn run_matrix(first_seed: u64, seeds: u64) -> Vec<Cell> {
    run_cells(&Profile::ALL, &Profile::ALL, first_seed, seeds, |_| {})
}

/// The whole matrix with one change to every run's configuration (for example, one STUN
/// server instead of two).
pub fn run_matrix_with(first_seed: u64, seeds: u64, adjust: fn(&mut PairConfig)) -> Vec<Cell> {
    run_cells_with(
        &Profile::ALL,
        &Profile::ALL,
        first_seed,
        seeds,
        adjust,
        |_| {},
    )
}

/// Runs the given rows × columns; `on_run` sees each outcome as it completes (for logs).
pub fn run_cells(
    rows: &[Profile],
    cols: &[Profile],
    first_seed: u64,
    seeds: u64,
    on_run: impl FnMut(&PairOutcome),
) -> Vec<Cell> {
    run_cells_with(rows, cols, first_seed, seeds, |_| {}, on_run)
}

/// [`run_cells`] with `adjust` applied to every run's configuration.
pub fn run_cells_with(
    rows: &[Profile],
    cols: &[Profile],
    first_seed: u64,
    seeds: u64,
    adjust: fn(&mut PairConfig),
    on_run: impl FnMut(&PairOutcome),
) -> Vec<Cell> {
    let rows: Vec<Situation> = rows.iter().map(|&p| Situation::plain(p)).collect();
    let cols: Vec<Situation> = cols.iter().map(|&p| Situation::plain(p)).collect();
    run_situations_with(&rows, &cols, first_seed, seeds, adjust, on_run)
}

/// [`run_cells`] over [`Situation`]s: a mapping site's gateway grants its host a port mapping.
pub fn run_situations(
    rows: &[Situation],
    cols: &[Situation],
    first_seed: u64,
    seeds: u64,
    on_run: impl FnMut(&PairOutcome),
) -> Vec<Cell> {
    run_situations_with(rows, cols, first_seed, seeds, |_| {}, on_run)
}

/// [`run_situations`] with `adjust` applied to every run's configuration.
pub fn run_situations_with(
    rows: &[Situation],
    cols: &[Situation],
    first_seed: u64,
    seeds: u64,
    adjust: fn(&mut PairConfig),
    mut on_run: impl FnMut(&PairOutcome),
) -> Vec<Cell> {
    assert!(
        cols.iter().all(|b| !b.nat64),
        "only side A can be IPv6-only behind a NAT64"
    );
    let prefix: Nat64Prefix = NAT64_PREFIX.parse().expect("constant");
    let mut cells = Vec::new();
    for &a in rows {
        for &b in cols {
            let mut outcomes = Vec::with_capacity(seeds as usize);
            // Wrapping: any u64 may start the run (`first_seed + seeds` overflows at the top).
            for seed in (0..seeds).map(|k| first_seed.wrapping_add(k)) {
                let mut config = PairConfig::new(a.profile, b.profile, seed);
                config.port_mapped = [a.port_mapped, b.port_mapped];
                config.nat64_a = a.nat64.then_some(prefix);
                adjust(&mut config);
                let o = run_pair(&config);
                on_run(&o);
                outcomes.push((o.path, o.elapsed));
            }
            cells.push(Cell {
                a: a.profile,
                b: b.profile,
                port_mapped: [a.port_mapped, b.port_mapped],
                nat64_a: a.nat64,
                expected: expected_situations(a, b),
                outcomes,
            });
        }
    }
    cells
}

/// A readable grid: rows are A's profile, columns B's; each cell the typical path and median
/// time to connected ("D 110" = direct in 110 ms, "-" = no path).
pub fn render_grid(cells: &[Cell]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let mut cols: Vec<Situation> = Vec::new();
    for c in cells {
        if !cols.contains(&c.situation_b()) {
            cols.push(c.situation_b());
        }
    }
    let _ = write!(out, "{:22}", "A \\ B");
    for b in &cols {
        let _ = write!(out, "{:>9}", b.short());
    }
    out.push('\n');
    let mut row = None;
    for c in cells {
        if row != Some(c.situation_a()) {
            if row.is_some() {
                out.push('\n');
            }
            let _ = write!(out, "{:22}", c.situation_a().name());
            row = Some(c.situation_a());
        }
        let text = match (c.typical_path(), c.quantile(0.5)) {
            (PathKind::None, _) | (_, None) => "-".to_string(),
            (p, Some(t)) => {
                let tag = if p == PathKind::Relay { "R" } else { "D" };
                format!("{tag} {}", fmt_ms(t))
            }
        };
        let _ = write!(out, "{text:>9}");
    }
    out.push('\n');
    out
}

/// Milliseconds for tables: whole numbers, seconds above 10 s.
pub fn fmt_ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 10_000.0 {
        format!("{:.0}s", ms / 1000.0)
    } else {
        format!("{ms:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mapping_gateway_needs_the_relay_only_against_blocked_udp() {
        let mapped = Situation::SYMMETRIC_MAPPED;
        assert_eq!(mapped.name(), "symmetric-random+pcp");
        for other in Situation::DEMO {
            let want = if other.profile == Profile::UdpBlocked {
                PathKind::Relay
            } else {
                PathKind::Direct
            };
            assert_eq!(expected_situations(mapped, other), want, "{other}");
            assert_eq!(expected_situations(other, mapped), want, "{other}");
        }
        let plain = Situation::plain(Profile::SymmetricRandom);
        assert_eq!(expected_situations(plain, plain), PathKind::Relay);
    }

    #[test]
    fn an_ipv6_only_host_needs_the_relay_only_against_blocked_udp() {
        let v6 = Situation::IPV6_ONLY;
        assert_eq!(v6.name(), "ipv6-only+nat64");
        for other in Situation::DEMO {
            let want = if other.profile == Profile::UdpBlocked {
                PathKind::Relay
            } else {
                PathKind::Direct
            };
            assert_eq!(expected_situations(v6, other), want, "{other}");
        }
    }
}
