//! NAT and firewall models (RFC 4787 vocabulary), deterministic per seed.
//!
//! A [`Nat`] translates outbound datagrams (creating or refreshing a mapping) and filters and
//! translates inbound ones. Mapping behaviour decides which outbound flows share an external
//! port; filtering decides which remote endpoints may use it; allocation decides which port a new
//! mapping gets. Mappings expire after `timeout` without traffic and are capped in number.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use holepunch_core::rng::Rng;
use holepunch_core::time::{Duration, Instant};

pub use crate::profile::{Filtering, Mapping};

/// How a new mapping's external port is chosen (RFC 4787 §4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Allocation {
    /// The internal port when free, else the next free one.
    Preserving,
    /// A counter: each new mapping takes the next port.
    Sequential,
    /// Uniformly random free port.
    Random,
}

/// What kind of middlebox a router is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// No translation, no filtering.
    Open,
    /// Address and port translation with the given behaviours.
    Nat {
        /// Mapping behaviour.
        mapping: Mapping,
        /// Filtering behaviour.
        filtering: Filtering,
        /// Port allocation.
        allocation: Allocation,
    },
    /// No translation; inbound only from endpoints the inside host contacted (APDF).
    Firewall,
    /// All UDP dropped, both ways.
    UdpBlocked,
}

/// A router's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatConfig {
    /// The middlebox kind.
    pub kind: Kind,
    /// Whether inside hosts can reach each other through the public address.
    pub hairpin: bool,
    /// Idle time after which a mapping (or firewall pinhole) is forgotten.
    pub timeout: Duration,
    /// At most this many live mappings; new flows are dropped beyond it.
    pub max_mappings: usize,
}

impl NatConfig {
    /// A NAT with the given behaviours, hairpinning off, a 120 s timeout and 4096 mappings.
    pub fn nat(mapping: Mapping, filtering: Filtering, allocation: Allocation) -> Self {
        NatConfig {
            kind: Kind::Nat {
                mapping,
                filtering,
                allocation,
            },
            hairpin: false,
            timeout: Duration::from_secs(120),
            max_mappings: 4096,
        }
    }

    /// A router of another kind with the defaults above.
    pub fn of_kind(kind: Kind) -> Self {
        NatConfig {
            kind,
            hairpin: false,
            timeout: Duration::from_secs(120),
            max_mappings: 4096,
        }
    }
}

/// One translation entry.
#[derive(Clone, Debug)]
struct Entry {
    internal: SocketAddr,
    /// The destination part of the mapping key (None for endpoint-independent).
    key: Option<SocketAddr>,
    external_port: u16,
    /// Remote endpoints the inside sent to through this entry (for filtering).
    contacted: Vec<SocketAddr>,
    last_used: Instant,
}

/// The state of one router.
#[derive(Debug)]
pub struct Nat {
    /// Its configuration.
    pub config: NatConfig,
    /// Its public address.
    pub public_ip: Ipv4Addr,
    entries: Vec<Entry>,
    /// Static mappings a gateway granted (UPnP IGD, NAT-PMP, PCP): internal endpoint and
    /// external port; see [`Nat::add_static_mapping`].
    statics: Vec<(SocketAddr, u16)>,
    next_port: u16,
    rng: Rng,
}

impl Nat {
    /// A router with public address `public_ip`, seeded for port allocation.
    pub fn new(config: NatConfig, public_ip: Ipv4Addr, seed: u64) -> Self {
        let mut rng = Rng::from_seed(seed);
        let next_port = 20_000 + rng.below(20_000) as u16;
        Nat {
            config,
            public_ip,
            entries: Vec::new(),
            statics: Vec::new(),
            next_port,
            rng,
        }
    }

    /// Grants a port mapping, as a gateway does for UPnP IGD, NAT-PMP or PCP: `internal`'s
    /// traffic leaves from `external_port` whatever its destination (endpoint-independent
    /// mapping) and anyone may send in to it (endpoint-independent filtering), for as long as
    /// the router lives (the lease is never allowed to lapse). Only a translating router maps;
    /// on other kinds this does nothing.
    ///
    /// This is the model of RFC 6887 §11 (a PCP MAP mapping is also used for the host's
    /// outbound traffic from that port) and of the port forwarding UPnP IGD sets up.
    pub fn add_static_mapping(&mut self, internal: SocketAddr, external_port: u16) {
        if matches!(self.config.kind, Kind::Nat { .. }) {
            self.statics
                .retain(|(i, p)| *i != internal && *p != external_port);
            self.statics.push((internal, external_port));
        }
    }

    /// Translates an outbound datagram from `src` to `dst`: the new source, or `None` to drop.
    pub fn outbound(
        &mut self,
        now: Instant,
        src: SocketAddr,
        dst: SocketAddr,
    ) -> Option<SocketAddr> {
        self.expire(now);
        match self.config.kind {
            Kind::Open => Some(src),
            Kind::UdpBlocked => None,
            Kind::Firewall => {
                self.entry_for(now, src, Some(dst), src.port())?
                    .contacted_push(dst);
                Some(src)
            }
            Kind::Nat {
                mapping,
                allocation,
                ..
            } => {
                if let Some((_, port)) = self.statics.iter().find(|(i, _)| *i == src) {
                    return Some(SocketAddr::new(IpAddr::V4(self.public_ip), *port));
                }
                let key = match mapping {
                    Mapping::EndpointIndependent => None,
                    Mapping::AddressDependent => Some(SocketAddr::new(dst.ip(), 0)),
                    Mapping::AddressAndPortDependent => Some(dst),
                };
                let port = match self
                    .entries
                    .iter()
                    .position(|e| e.internal == src && e.key == key)
                {
                    Some(i) => self.entries[i].external_port,
                    None => self.allocate(src.port(), allocation)?,
                };
                let e = self.entry_for(now, src, key, port)?;
                e.contacted_push(dst);
                Some(SocketAddr::new(IpAddr::V4(self.public_ip), port))
            }
        }
    }

    /// Filters and translates an inbound datagram from `src` to `dst` (a public address of
    /// this router): the internal destination, or `None` to drop.
    pub fn inbound(
        &mut self,
        now: Instant,
        src: SocketAddr,
        dst: SocketAddr,
    ) -> Option<SocketAddr> {
        self.expire(now);
        let filtering = match self.config.kind {
            Kind::Open => return Some(dst),
            Kind::UdpBlocked => return None,
            Kind::Firewall => Filtering::AddressAndPortDependent,
            Kind::Nat { filtering, .. } => filtering,
        };
        let translating = matches!(self.config.kind, Kind::Nat { .. });
        if let Some((internal, _)) = self.statics.iter().find(|(_, p)| *p == dst.port()) {
            return Some(*internal);
        }
        let allowed = |e: &Entry| match filtering {
            Filtering::EndpointIndependent => true,
            Filtering::AddressDependent => e.contacted.iter().any(|c| c.ip() == src.ip()),
            Filtering::AddressAndPortDependent => e.contacted.contains(&src),
        };
        let i = self.entries.iter().position(|e| {
            let matches_dst = if translating {
                e.external_port == dst.port()
            } else {
                e.internal == dst
            };
            matches_dst && allowed(e)
        })?;
        let e = &mut self.entries[i];
        e.last_used = now;
        Some(e.internal)
    }

    fn expire(&mut self, now: Instant) {
        let timeout = self.config.timeout;
        self.entries.retain(|e| now < e.last_used + timeout);
    }

    fn entry_for(
        &mut self,
        now: Instant,
        internal: SocketAddr,
        key: Option<SocketAddr>,
        external_port: u16,
    ) -> Option<&mut Entry> {
        if let Some(i) = self
            .entries
            .iter()
            .position(|e| e.internal == internal && e.key == key)
        {
            self.entries[i].last_used = now;
            return Some(&mut self.entries[i]);
        }
        if self.entries.len() >= self.config.max_mappings {
            return None;
        }
        self.entries.push(Entry {
            internal,
            key,
            external_port,
            contacted: Vec::new(),
            last_used: now,
        });
        self.entries.last_mut()
    }

    fn port_in_use(&self, port: u16) -> bool {
        self.entries.iter().any(|e| e.external_port == port)
            || self.statics.iter().any(|(_, p)| *p == port)
    }

    fn allocate(&mut self, wanted: u16, allocation: Allocation) -> Option<u16> {
        let mut candidate = match allocation {
            Allocation::Preserving => wanted.max(1024),
            Allocation::Sequential => {
                self.next_port = self.next_port.checked_add(1).unwrap_or(1024);
                self.next_port
            }
            Allocation::Random => 1024 + self.rng.below(64512) as u16,
        };
        for _ in 0..64512 {
            if !self.port_in_use(candidate) {
                return Some(candidate);
            }
            candidate = match allocation {
                Allocation::Random => 1024 + self.rng.below(64512) as u16,
                _ => candidate.checked_add(1).unwrap_or(1024),
            };
            if allocation == Allocation::Sequential {
                self.next_port = candidate;
            }
        }
        None
    }
}

trait ContactedPush {
    fn contacted_push(&mut self, dst: SocketAddr);
}

impl ContactedPush for Entry {
    fn contacted_push(&mut self, dst: SocketAddr) {
        if !self.contacted.contains(&dst) {
            self.contacted.push(dst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    #[test]
    fn eim_apdf_shares_the_port_but_filters_strangers() {
        let mut nat = Nat::new(
            NatConfig::nat(
                Mapping::EndpointIndependent,
                Filtering::AddressAndPortDependent,
                Allocation::Preserving,
            ),
            Ipv4Addr::new(198, 51, 100, 10),
            1,
        );
        let now = Instant::ZERO;
        let inside = a("192.168.1.2:5000");
        let x1 = nat
            .outbound(now, inside, a("203.0.113.3:3478"))
            .expect("mapped");
        let x2 = nat
            .outbound(now, inside, a("203.0.113.4:3479"))
            .expect("mapped");
        assert_eq!(x1, x2);
        assert_eq!(x1, a("198.51.100.10:5000"));
        assert_eq!(nat.inbound(now, a("203.0.113.3:3478"), x1), Some(inside));
        assert_eq!(nat.inbound(now, a("203.0.113.3:3479"), x1), None);
        assert_eq!(
            nat.inbound(now + Duration::from_secs(121), a("203.0.113.3:3478"), x1),
            None
        );
    }

    #[test]
    fn symmetric_nat_gives_each_destination_its_own_port() {
        let mut nat = Nat::new(
            NatConfig::nat(
                Mapping::AddressAndPortDependent,
                Filtering::AddressAndPortDependent,
                Allocation::Sequential,
            ),
            Ipv4Addr::new(198, 51, 100, 10),
            1,
        );
        let now = Instant::ZERO;
        let inside = a("192.168.1.2:5000");
        let x1 = nat
            .outbound(now, inside, a("203.0.113.3:3478"))
            .expect("mapped");
        let x2 = nat
            .outbound(now, inside, a("203.0.113.3:3479"))
            .expect("mapped");
        assert_eq!(x2.port(), x1.port() + 1);
        assert_eq!(nat.outbound(now, inside, a("203.0.113.3:3478")), Some(x1));
    }

    #[test]
    fn a_static_mapping_makes_a_symmetric_nat_easy_for_that_port_only() {
        let mut nat = Nat::new(
            NatConfig::nat(
                Mapping::AddressAndPortDependent,
                Filtering::AddressAndPortDependent,
                Allocation::Random,
            ),
            Ipv4Addr::new(198, 51, 100, 10),
            1,
        );
        let now = Instant::ZERO;
        let (mapped, other) = (a("192.168.1.2:5000"), a("192.168.1.2:5001"));
        nat.add_static_mapping(mapped, 7000);
        let public = a("198.51.100.10:7000");
        // Endpoint-independent mapping: every destination sees the granted port.
        for dst in ["203.0.113.3:3478", "203.0.113.4:3479"] {
            assert_eq!(nat.outbound(now, mapped, a(dst)), Some(public));
        }
        // Endpoint-independent filtering: a stranger gets in, with no traffic out first, and
        // long after any dynamic mapping would have expired.
        let later = now + Duration::from_secs(3600);
        assert_eq!(
            nat.inbound(later, a("203.0.113.99:9"), public),
            Some(mapped)
        );
        // Another internal port is still symmetric, and never gets the granted port.
        let x = nat
            .outbound(now, other, a("203.0.113.3:3478"))
            .expect("mapped");
        assert_ne!(x.port(), 7000);
        assert_eq!(nat.inbound(now, a("203.0.113.3:3479"), x), None);
    }
}
