//! The NAT vocabulary the simulation and the lab share: the profiles of `../shared/cli.md` and
//! their RFC 4787 mapping and filtering behaviours, in terms of core's
//! [`Behaviour`], which is what `netcheck` reports.
//!
//! How a profile is built is each world's own business: the simulation turns it into router
//! models (`sim::profile`), the lab into nftables tables (`lab::nat`), and the lab cannot build
//! every profile (see `Profile::LAB`).

use std::fmt;
use std::str::FromStr;

use holepunch_core::netcheck::Behaviour;

/// Which outbound flows share one external address and port (RFC 4787 §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mapping {
    /// One mapping per internal endpoint, whatever the destination ("cone").
    EndpointIndependent,
    /// One mapping per internal endpoint and destination IP.
    AddressDependent,
    /// One mapping per internal endpoint and destination IP and port ("symmetric").
    AddressAndPortDependent,
}

/// Which remote endpoints may send in through a mapping (RFC 4787 §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Filtering {
    /// Anyone ("full cone").
    EndpointIndependent,
    /// IPs the internal endpoint has sent to ("restricted cone").
    AddressDependent,
    /// IP and port pairs the internal endpoint has sent to ("port-restricted").
    AddressAndPortDependent,
}

impl Mapping {
    /// The behaviour netcheck reports for this mapping.
    pub fn behaviour(self) -> Behaviour {
        match self {
            Mapping::EndpointIndependent => Behaviour::EndpointIndependent,
            Mapping::AddressDependent => Behaviour::AddressDependent,
            Mapping::AddressAndPortDependent => Behaviour::AddressAndPortDependent,
        }
    }

    /// The name `holepunch netcheck --json` uses.
    pub fn name(self) -> &'static str {
        self.behaviour().as_str()
    }
}

impl Filtering {
    /// The behaviour netcheck reports for this filtering.
    pub fn behaviour(self) -> Behaviour {
        match self {
            Filtering::EndpointIndependent => Behaviour::EndpointIndependent,
            Filtering::AddressDependent => Behaviour::AddressDependent,
            Filtering::AddressAndPortDependent => Behaviour::AddressAndPortDependent,
        }
    }

    /// The name `holepunch netcheck --json` uses.
    pub fn name(self) -> &'static str {
        self.behaviour().as_str()
    }
}

/// A named NAT situation a host can be in (`cli.md`'s profiles).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Profile {
    /// A public address, no NAT, no firewall.
    Open,
    /// EIM/EIF.
    FullCone,
    /// EIM/ADF.
    RestrictedCone,
    /// EIM/APDF.
    PortRestrictedCone,
    /// APDM/APDF with sequential ports.
    SymmetricSequential,
    /// APDM/APDF with random ports.
    SymmetricRandom,
    /// A port-restricted home NAT behind an EIM/APDF carrier NAT (100.64.0.0/10 between).
    Cgnat,
    /// No NAT, stateful firewall (APDF).
    Firewall,
    /// All UDP dropped.
    UdpBlocked,
}

impl Profile {
    /// Every profile, in the order of `cli.md`.
    pub const ALL: [Profile; 9] = [
        Profile::Open,
        Profile::FullCone,
        Profile::RestrictedCone,
        Profile::PortRestrictedCone,
        Profile::SymmetricSequential,
        Profile::SymmetricRandom,
        Profile::Cgnat,
        Profile::Firewall,
        Profile::UdpBlocked,
    ];

    /// The name `cli.md`, `demo` and the tests use.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Open => "open",
            Profile::FullCone => "full-cone",
            Profile::RestrictedCone => "restricted-cone",
            Profile::PortRestrictedCone => "port-restricted-cone",
            Profile::SymmetricSequential => "symmetric-sequential",
            Profile::SymmetricRandom => "symmetric-random",
            Profile::Cgnat => "cgnat",
            Profile::Firewall => "firewall",
            Profile::UdpBlocked => "udp-blocked",
        }
    }

    /// Whether UDP gets through at all.
    pub fn udp(self) -> bool {
        self != Profile::UdpBlocked
    }

    /// The mapping behaviour as seen from the host (for `cgnat` the chain's), `None` when no
    /// UDP gets through to observe one.
    pub fn mapping(self) -> Option<Mapping> {
        match self {
            Profile::UdpBlocked => None,
            Profile::SymmetricSequential | Profile::SymmetricRandom => {
                Some(Mapping::AddressAndPortDependent)
            }
            _ => Some(Mapping::EndpointIndependent),
        }
    }

    /// The filtering behaviour as seen from the host (for `cgnat` the chain's), `None` when no
    /// UDP gets through to observe one.
    pub fn filtering(self) -> Option<Filtering> {
        match self {
            Profile::UdpBlocked => None,
            Profile::Open | Profile::FullCone => Some(Filtering::EndpointIndependent),
            Profile::RestrictedCone => Some(Filtering::AddressDependent),
            _ => Some(Filtering::AddressAndPortDependent),
        }
    }

    /// What netcheck must report for this profile's mapping: [`Behaviour::Unknown`] when no
    /// UDP gets through.
    pub fn mapping_behaviour(self) -> Behaviour {
        self.mapping()
            .map_or(Behaviour::Unknown, Mapping::behaviour)
    }

    /// What netcheck must report for this profile's filtering: [`Behaviour::Unknown`] when no
    /// UDP gets through.
    pub fn filtering_behaviour(self) -> Behaviour {
        self.filtering()
            .map_or(Behaviour::Unknown, Filtering::behaviour)
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A profile name that is not one of `cli.md`'s.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown NAT profile {0:?}")]
pub struct UnknownProfile(pub String);

impl FromStr for Profile {
    type Err = UnknownProfile;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Profile::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| UnknownProfile(s.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_netcheck() {
        for p in Profile::ALL {
            assert_eq!(p.name().parse::<Profile>(), Ok(p));
        }
        assert_eq!(
            "symmetric".parse::<Profile>(),
            Err(UnknownProfile("symmetric".into()))
        );
        assert_eq!(
            Profile::SymmetricRandom.mapping_behaviour().as_str(),
            "address-and-port-dependent"
        );
        assert_eq!(
            Profile::RestrictedCone.filtering_behaviour(),
            Behaviour::AddressDependent
        );
        assert_eq!(Profile::UdpBlocked.mapping_behaviour(), Behaviour::Unknown);
    }
}
