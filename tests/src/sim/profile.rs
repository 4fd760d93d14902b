//! The NAT profiles of `../shared/cli.md`, as presets of the model's knobs, and the IPv6
//! policies ([`V6Policy`]) a dual-stack site can have next to its profile.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use holepunch_core::time::Duration;

use super::nat::{Allocation, Filtering, Kind, Mapping, Nat, NatConfig};
use super::network::Site;

pub use crate::profile::{Profile, UnknownProfile};

impl Profile {
    /// The routers of this profile, innermost first, with their public addresses.
    ///
    /// `public` is the address facing the internet; a CGNAT's home router gets 100.64.0.2.
    pub fn chain(self, public: Ipv4Addr, seed: u64) -> Vec<Nat> {
        use Allocation::*;
        use Filtering as F;
        use Mapping as M;
        let nat = |c: NatConfig, ip: Ipv4Addr, s: u64| Nat::new(c, ip, seed ^ s);
        match self {
            Profile::Open => vec![nat(NatConfig::of_kind(Kind::Open), public, 1)],
            Profile::FullCone => vec![nat(
                NatConfig::nat(M::EndpointIndependent, F::EndpointIndependent, Preserving),
                public,
                1,
            )],
            Profile::RestrictedCone => vec![nat(
                NatConfig::nat(M::EndpointIndependent, F::AddressDependent, Preserving),
                public,
                1,
            )],
            Profile::PortRestrictedCone => vec![nat(
                NatConfig::nat(
                    M::EndpointIndependent,
                    F::AddressAndPortDependent,
                    Preserving,
                ),
                public,
                1,
            )],
            Profile::SymmetricSequential => vec![nat(
                NatConfig::nat(
                    M::AddressAndPortDependent,
                    F::AddressAndPortDependent,
                    Sequential,
                ),
                public,
                1,
            )],
            Profile::SymmetricRandom => vec![nat(
                NatConfig::nat(
                    M::AddressAndPortDependent,
                    F::AddressAndPortDependent,
                    Random,
                ),
                public,
                1,
            )],
            Profile::Cgnat => vec![
                nat(
                    NatConfig::nat(
                        M::EndpointIndependent,
                        F::AddressAndPortDependent,
                        Preserving,
                    ),
                    Ipv4Addr::new(100, 64, 0, 2),
                    1,
                ),
                nat(
                    NatConfig::nat(M::EndpointIndependent, F::AddressAndPortDependent, Random),
                    public,
                    2,
                ),
            ],
            Profile::Firewall => vec![nat(NatConfig::of_kind(Kind::Firewall), public, 1)],
            Profile::UdpBlocked => vec![nat(NatConfig::of_kind(Kind::UdpBlocked), public, 1)],
        }
    }

    /// Whether the host sits directly on its public address.
    pub fn has_public_host(self) -> bool {
        matches!(
            self,
            Profile::Open | Profile::Firewall | Profile::UdpBlocked
        )
    }

    /// A site for one host in this profile. Hosts behind a NAT get `lan_host`; others take the
    /// public address. Returns the site and the host's address.
    pub fn site(
        self,
        public: Ipv4Addr,
        lan_host: Ipv4Addr,
        latency: Duration,
        seed: u64,
    ) -> (Site, IpAddr) {
        let host = if self.has_public_host() {
            public
        } else {
            lan_host
        };
        let site = Site {
            hosts: vec![IpAddr::V4(host)],
            chain: self.chain(public, seed),
            v6_router: None,
            latency,
            loss_per_mille: 0,
            behind: None,
            nat64: None,
        };
        (site, IpAddr::V4(host))
    }
}

/// What a site's IPv6 uplink does, independently of its IPv4 [`Profile`].
///
/// IPv6 needs no NAT: a dual-stack host's IPv6 address is global, and the only middlebox
/// between it and the internet is the site's IPv6 router ([`Site::v6_router`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum V6Policy {
    /// No filtering: anyone can reach the host.
    Open,
    /// A stateful firewall (address- and port-dependent filtering, RFC 6092's recommended
    /// default): inbound only from endpoints the host has sent to.
    Firewall,
    /// All IPv6 UDP dropped, both ways.
    Blocked,
}

impl V6Policy {
    /// Every policy.
    pub const ALL: [V6Policy; 3] = [V6Policy::Open, V6Policy::Firewall, V6Policy::Blocked];

    /// The policy's name.
    pub fn name(self) -> &'static str {
        match self {
            V6Policy::Open => "open",
            V6Policy::Firewall => "firewall",
            V6Policy::Blocked => "blocked",
        }
    }

    /// The router that enforces this policy (120 s pinhole timeout, like the NAT profiles).
    pub fn router(self, seed: u64) -> Nat {
        let kind = match self {
            V6Policy::Open => Kind::Open,
            V6Policy::Firewall => Kind::Firewall,
            V6Policy::Blocked => Kind::UdpBlocked,
        };
        // No translation happens, so the router's (IPv4) public address is never used.
        Nat::new(NatConfig::of_kind(kind), Ipv4Addr::UNSPECIFIED, seed)
    }

    /// Makes `site` dual-stack: adds `host` to its hosts and puts it behind this policy's
    /// router. Returns the host's address.
    pub fn attach(self, site: &mut Site, host: Ipv6Addr, seed: u64) -> IpAddr {
        let ip = IpAddr::V6(host);
        if !site.hosts.contains(&ip) {
            site.hosts.push(ip);
        }
        site.v6_router = Some(self.router(seed));
        ip
    }
}

impl fmt::Display for V6Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An IPv6 policy name that is not one of [`V6Policy::ALL`]'s.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown IPv6 policy {0:?}")]
pub struct UnknownV6Policy(pub String);

impl FromStr for V6Policy {
    type Err = UnknownV6Policy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        V6Policy::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| UnknownV6Policy(s.into()))
    }
}
