//! What netcheck found: the report types, and how the probes' outcomes are read into them.

#[allow(unused_imports)]
use super::*;

/// A NAT's mapping or filtering behaviour (RFC 4787).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Behaviour {
    /// Depends on nothing about the remote endpoint (EIM / EIF; "easy").
    EndpointIndependent,
    /// Depends on the remote IP address (ADM / ADF).
    AddressDependent,
    /// Depends on the remote IP address and port (APDM / APDF; "symmetric", "hard").
    AddressAndPortDependent,
    /// The tests could not tell.
    #[default]
    Unknown,
}

impl Behaviour {
    /// The name the command line's `netcheck --json` report uses.
    pub const fn as_str(self) -> &'static str {
        match self {
            Behaviour::EndpointIndependent => "endpoint-independent",
            Behaviour::AddressDependent => "address-dependent",
            Behaviour::AddressAndPortDependent => "address-and-port-dependent",
            Behaviour::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Behaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which port-mapping protocols the gateway answered (not probed yet: always `false`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PortmapAvailability {
    /// UPnP IGD.
    pub upnp: bool,
    /// NAT-PMP (RFC 6886).
    pub natpmp: bool,
    /// PCP (RFC 6887).
    pub pcp: bool,
}

/// An IPv6 prefix, such as a NAT64 prefix (`64:ff9b::/96`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv6Prefix {
    /// The prefix's address (bits past `len` zero).
    pub address: Ipv6Addr,
    /// Prefix length in bits.
    pub len: u8,
}

impl fmt::Display for Ipv6Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.len)
    }
}

impl From<crate::nat64::Nat64Prefix> for Ipv6Prefix {
    fn from(p: crate::nat64::Nat64Prefix) -> Self {
        Ipv6Prefix {
            address: p.addr(),
            len: p.len().bits(),
        }
    }
}

/// One server's Test I round-trip time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ServerRtt {
    /// The server.
    pub server: SocketAddr,
    /// Time from the last send to the answer; `None` if it never answered.
    pub rtt: Option<Duration>,
}

/// What netcheck found. Fields not yet determined read as unknown / `None`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// Whether any STUN server answered over UDP.
    pub udp: bool,
    /// The public IPv4 address: the mapping from the first IPv4 server that answered.
    pub public_v4: Option<SocketAddr>,
    /// The public IPv6 address, likewise.
    pub public_v6: Option<SocketAddr>,
    /// Mapping behaviour of the pair's family (see the module docs for the rules).
    pub mapping: Behaviour,
    /// Filtering behaviour of the pair's family.
    pub filtering: Behaviour,
    /// Whether a packet to our own public address comes back in; `None` if not tested.
    pub hairpinning: Option<bool>,
    /// Port-mapping services seen on the gateway.
    pub portmap: PortmapAvailability,
    /// The NAT64 prefix, when one was discovered. The prober itself asks no resolver: the
    /// driver runs RFC 7050 discovery ([`crate::nat64::discovery`]) beside it and fills this in.
    pub nat64_prefix: Option<Ipv6Prefix>,
    /// External ports of the distinct mappings seen on the pair's sockets, oldest mapping
    /// first: input for [`crate::punch::PortPredictor::new`].
    pub observed_ports: Vec<u16>,
    /// Test I round-trip time of every server probed, in configuration order.
    pub server_rtts: Vec<ServerRtt>,
}

impl Netcheck {
    /// What has been found so far; final once [`is_done`](Self::is_done).
    pub fn report(&self) -> Report {
        let pair_public = self.public(self.mapping_socket);
        let other_public = self.other_socket.and_then(|s| self.public(s));
        let (public_v4, public_v6) = if self.pair_v4 {
            (pair_public, other_public)
        } else {
            (other_public, pair_public)
        };
        Report {
            udp: self
                .probes
                .iter()
                .any(|p| matches!(p.outcome, Outcome::Answered { .. })),
            public_v4,
            public_v6,
            mapping: self.mapping(),
            filtering: self.filtering(),
            hairpinning: self.hairpinning(),
            portmap: PortmapAvailability::default(),
            nat64_prefix: None,
            observed_ports: self.observed_ports(),
            server_rtts: self.server_rtts(),
        }
    }

    /// The settled outcome of Test I to the primary server on `socket`, if settled.
    pub(super) fn primary_outcome(&self, socket: usize) -> Option<Outcome> {
        self.probes
            .iter()
            .find(|p| p.socket == socket && p.test == Test::Binding && p.to == self.primary)
            .map(|p| p.outcome)
            .filter(|o| *o != Outcome::Pending)
    }

    /// The first mapping Test I found on `socket`, in server configuration order.
    pub(super) fn public(&self, socket: usize) -> Option<SocketAddr> {
        self.probes
            .iter()
            .filter(|p| p.socket == socket && p.test == Test::Binding)
            .find_map(|p| mapped(p.outcome))
    }

    pub(super) fn mapping(&self) -> Behaviour {
        let local = self.locals[self.mapping_socket];
        let observations = || {
            self.probes
                .iter()
                .filter(|p| {
                    p.socket == self.mapping_socket
                        && matches!(p.test, Test::Binding | Test::MappingII | Test::MappingIII)
                })
                .filter_map(|p| mapped(p.outcome).map(|m| (p.to, m)))
        };
        if observations().any(|(_, m)| m == local) {
            return Behaviour::EndpointIndependent;
        }
        let (mut independent, mut address, mut port) = (false, false, false);
        for (i, (to1, m1)) in observations().enumerate() {
            for (to2, m2) in observations().skip(i + 1) {
                let same_ip = to1.ip() == to2.ip();
                match (m1 == m2, same_ip) {
                    (false, true) => port = true,
                    (false, false) => address = true,
                    (true, false) => independent = true,
                    (true, true) => {}
                }
            }
        }
        if port {
            Behaviour::AddressAndPortDependent
        } else if address {
            Behaviour::AddressDependent
        } else if independent {
            Behaviour::EndpointIndependent
        } else {
            Behaviour::Unknown
        }
    }

    pub(super) fn filtering(&self) -> Behaviour {
        let a = self.primary;
        let result = |test: Test, expected: fn(SocketAddr, SocketAddr) -> bool| {
            let p = self
                .probes
                .iter()
                .find(|p| p.socket == self.filtering_socket && p.test == test)?;
            match p.outcome {
                Outcome::Answered { from, .. } if expected(a, from) => Some(Some(true)),
                Outcome::NoAnswer => Some(Some(false)),
                Outcome::Pending => None,
                // Rejected, or answered from the wrong address: the server did not honour
                // CHANGE-REQUEST, so the test says nothing about the NAT.
                _ => Some(None),
            }
        };
        let changed_both = result(Test::FilteringII, |a, from| {
            from.ip() != a.ip() && from.port() != a.port()
        });
        let changed_port = result(Test::FilteringIII, |a, from| {
            from.ip() == a.ip() && from.port() != a.port()
        });
        match (changed_both, changed_port) {
            (Some(Some(true)), _) => Behaviour::EndpointIndependent,
            (Some(Some(false)), Some(Some(true))) => Behaviour::AddressDependent,
            (Some(Some(false)), Some(Some(false))) => Behaviour::AddressAndPortDependent,
            _ => Behaviour::Unknown,
        }
    }

    pub(super) fn hairpinning(&self) -> Option<bool> {
        let outcomes = || {
            self.probes
                .iter()
                .filter(|p| matches!(p.test, Test::Hairpin | Test::HairpinReturn))
                .map(|p| p.outcome)
        };
        if outcomes().any(|o| o == Outcome::Seen) {
            Some(true)
        } else if outcomes().next().is_none() || outcomes().any(|o| o == Outcome::Pending) {
            None
        } else {
            Some(false)
        }
    }

    pub(super) fn observed_ports(&self) -> Vec<u16> {
        let mut seen: Vec<(u32, usize, SocketAddr)> = self
            .probes
            .iter()
            .filter(|p| {
                (p.socket == self.mapping_socket || p.socket == self.filtering_socket)
                    && matches!(p.test, Test::Binding | Test::MappingII | Test::MappingIII)
            })
            .filter_map(|p| Some((p.order?, p.socket, mapped(p.outcome)?)))
            .collect();
        seen.sort_unstable_by_key(|(order, _, _)| *order);
        let mut ports = Vec::with_capacity(seen.len());
        for (i, (_, socket, m)) in seen.iter().enumerate() {
            if !seen[..i].iter().any(|(_, s, n)| s == socket && n == m) {
                ports.push(m.port());
            }
        }
        ports
    }

    pub(super) fn server_rtts(&self) -> Vec<ServerRtt> {
        self.servers
            .iter()
            .filter_map(|&server| {
                let socket = self.socket_for(server)?;
                let p = self
                    .probes
                    .iter()
                    .find(|p| p.socket == socket && p.test == Test::Binding && p.to == server)?;
                let rtt = match p.outcome {
                    Outcome::Answered { rtt, .. } => Some(rtt),
                    _ => None,
                };
                Some(ServerRtt { server, rtt })
            })
            .collect()
    }
}

/// The mapped address of an answered request.
pub(super) fn mapped(outcome: Outcome) -> Option<SocketAddr> {
    match outcome {
        Outcome::Answered { mapped, .. } => mapped,
        _ => None,
    }
}

/// OTHER-ADDRESS, if usable for RFC 5780 tests against `a`: same family, different IP and port.
pub(super) fn valid_other(a: SocketAddr, other: Option<SocketAddr>) -> Option<SocketAddr> {
    other.filter(|b| {
        b.is_ipv4() == a.is_ipv4()
            && !b.ip().is_unspecified()
            && b.ip() != a.ip()
            && b.port() != a.port()
            && b.port() != 0
    })
}
