//! An IPv6-only agent behind a NAT64 (RFC 6052 addresses, RFC 6146 translation): which IPv4
//! addresses it reaches through the translator's prefix, and a whole session with an IPv4-only
//! peer through a modelled stateful NAT64 (endpoint-independent mapping, address-dependent
//! filtering, as RFC 6146 §3.5 allows) and a real STUN server, in virtual time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use holepunch_core::ice::agent::{Agent, AgentConfig, IceEvent, PathInfo};
use holepunch_core::ice::candidate::{Candidate, CandidateKind};
use holepunch_core::io::{Datagram, Received};
use holepunch_core::nat64::Nat64Prefix;
use holepunch_core::stun::server::{Server, ServerConfig};
use holepunch_core::time::{Duration, Instant};

/// The IPv6-only host (side A).
const HOST_V6: &str = "[2001:db8:a::2]:5000";
/// The IPv4-only peer's public host address (side B).
const HOST_V4: &str = "203.0.113.20:6000";
/// The STUN server, IPv4 only.
const STUN: &str = "203.0.113.3:3478";
/// The NAT64's IPv4 pool address.
const POOL: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 64);

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A network-specific prefix: TEST-NET addresses are not global, so the well-known one would
/// not do (RFC 6052 §3.1).
fn nsp() -> Nat64Prefix {
    "2001:db8:64::/96".parse().unwrap()
}

fn wkp() -> Nat64Prefix {
    "64:ff9b::/96".parse().unwrap()
}

fn twin(prefix: Nat64Prefix, v4: &str) -> SocketAddr {
    prefix.synthesize_socket(addr(v4)).unwrap()
}

fn v6_only(prefix: Option<Nat64Prefix>, controlling: bool) -> Agent {
    let mut config = AgentConfig::rfc(controlling);
    config.stun_servers = vec![addr(STUN)];
    let mut agent = Agent::new(config, 7);
    let now = Instant::from_millis(1);
    agent.add_host_candidate(now, addr(HOST_V6)).unwrap();
    agent.set_nat64_prefix(now, prefix);
    agent
}

fn remote_addresses(agent: &Agent) -> Vec<SocketAddr> {
    agent
        .remote_candidates()
        .iter()
        .map(|c| c.address)
        .collect()
}

fn first_transmit(agent: &mut Agent, now: Instant) -> Option<SocketAddr> {
    let mut buf = [0u8; 1500];
    agent.poll_transmit(now, &mut buf).map(|t| t.to)
}

#[test]
fn an_ipv6_only_agent_asks_an_ipv4_stun_server_at_its_synthesised_address() {
    let now = Instant::from_millis(1);
    let mut agent = v6_only(Some(nsp()), true);
    agent.gather(now);
    assert_eq!(first_transmit(&mut agent, now), Some(twin(nsp(), STUN)));
    assert_eq!(twin(nsp(), STUN), addr("[2001:db8:64::cb00:7103]:3478"));

    // Without a prefix there is no way to the server: nothing is sent, gathering ends.
    let mut alone = v6_only(None, true);
    alone.gather(now);
    assert_eq!(first_transmit(&mut alone, now), None);
    let events: Vec<IceEvent> = std::iter::from_fn(|| alone.poll_event()).collect();
    assert!(events.contains(&IceEvent::GatheringComplete), "{events:?}");
}

#[test]
fn peer_candidates_the_nat64_can_reach_get_ipv6_twins() {
    let now = Instant::from_millis(1);
    let base = addr(HOST_V4);
    let server = addr(STUN).ip();
    let candidates = [
        // Global host, server-reflexive and relayed addresses: twins.
        Candidate::host(base, 65535),
        Candidate::server_reflexive(addr("198.51.100.9:7000"), base, server),
        Candidate::relayed(addr("203.0.113.7:49152"), addr("198.51.100.9:7001"), server),
        // A host on the peer's LAN, loopback and link-local: none.
        Candidate::host(addr("192.168.1.3:6000"), 65534),
        Candidate::host(addr("100.64.0.2:6000"), 65533),
        Candidate::host(addr("127.0.0.1:6000"), 65532),
        Candidate::server_reflexive(addr("169.254.1.1:7000"), base, server),
    ];
    let mut agent = v6_only(Some(nsp()), true);
    for c in candidates {
        agent.add_remote_candidate(now, c).unwrap();
    }
    let remotes = remote_addresses(&agent);
    for reached in [HOST_V4, "198.51.100.9:7000", "203.0.113.7:49152"] {
        assert!(
            remotes.contains(&twin(nsp(), reached)),
            "{reached} has a twin"
        );
    }
    for unreached in [
        "192.168.1.3:6000",
        "100.64.0.2:6000",
        "127.0.0.1:6000",
        "169.254.1.1:7000",
    ] {
        assert!(!remotes.contains(&twin(nsp(), unreached)), "{unreached}");
    }
    assert_eq!(remotes.len(), candidates.len() + 3);
    // A twin is the same candidate at another address: kind, priority and foundation kept.
    let find = |a: SocketAddr| {
        let remotes = agent.remote_candidates().iter();
        remotes.copied().find(|c| c.address == a).unwrap()
    };
    let original = find(addr("203.0.113.7:49152"));
    let copy = find(twin(nsp(), "203.0.113.7:49152"));
    assert_eq!(
        (copy.kind, copy.priority, copy.foundation),
        (
            CandidateKind::Relayed,
            original.priority,
            original.foundation
        )
    );
    // Only the twins pair with the IPv6 host (one family per pair, RFC 8445 §6.1.2.2).
    assert_eq!(agent.checklist().pairs().len(), 3);
}

#[test]
fn the_well_known_prefix_is_never_used_for_private_addresses() {
    let now = Instant::from_millis(1);
    let private_srflx =
        Candidate::server_reflexive(addr("10.1.2.3:7000"), addr(HOST_V4), addr(STUN).ip());
    let mut agent = v6_only(Some(wkp()), true);
    agent.add_remote_candidate(now, private_srflx).unwrap();
    assert_eq!(remote_addresses(&agent).len(), 1, "RFC 6052 §3.1");
    // A network-specific prefix may reach the operator's private space.
    let mut agent = v6_only(Some(nsp()), true);
    agent.add_remote_candidate(now, private_srflx).unwrap();
    assert!(remote_addresses(&agent).contains(&twin(nsp(), "10.1.2.3:7000")));
}

#[test]
fn a_prefix_learnt_late_gives_the_candidates_already_signalled_their_twins() {
    let now = Instant::from_millis(1);
    let mut agent = v6_only(None, true);
    agent
        .add_remote_candidate(now, Candidate::host(addr(HOST_V4), 65535))
        .unwrap();
    assert_eq!(agent.checklist().pairs().len(), 0, "no family in common");
    agent.set_nat64_prefix(now, Some(nsp()));
    assert_eq!(agent.nat64_prefix(), Some(nsp()));
    assert!(remote_addresses(&agent).contains(&twin(nsp(), HOST_V4)));
    assert_eq!(agent.checklist().pairs().len(), 1);
}

#[test]
fn a_loopback_ipv4_socket_does_not_make_an_agent_dual_stack() {
    let now = Instant::from_millis(1);
    let mut agent = v6_only(Some(nsp()), true);
    agent
        .add_host_candidate(now, addr("127.0.0.1:5000"))
        .unwrap();
    agent
        .add_remote_candidate(now, Candidate::host(addr(HOST_V4), 65535))
        .unwrap();
    assert!(remote_addresses(&agent).contains(&twin(nsp(), HOST_V4)));
}

#[test]
fn a_dual_stack_agent_reaches_ipv4_natively_and_synthesises_nothing() {
    let now = Instant::from_millis(1);
    let mut agent = v6_only(Some(nsp()), true);
    agent
        .add_host_candidate(now, addr("192.0.2.10:5000"))
        .unwrap();
    agent
        .add_remote_candidate(now, Candidate::host(addr(HOST_V4), 65535))
        .unwrap();
    assert_eq!(remote_addresses(&agent), vec![addr(HOST_V4)]);
    agent.gather(now);
    let mut buf = [0u8; 1500];
    let mut to = Vec::new();
    while let Some(t) = agent.poll_transmit(now, &mut buf) {
        to.push(t.to);
    }
    // The server is asked once, natively; the pair's check goes to the IPv4 host.
    assert_eq!(to.iter().filter(|a| **a == addr(STUN)).count(), 1, "{to:?}");
    assert!(to.iter().all(|a| a.is_ipv4()), "{to:?}");
}

/// A stateful NAT64: endpoint-independent mapping from the pool, address-dependent filtering.
struct Nat64 {
    prefix: Nat64Prefix,
    /// (IPv6 source, pool port, IPv4 addresses it sent to).
    mappings: Vec<(SocketAddr, u16, Vec<Ipv4Addr>)>,
    dropped: u32,
}

impl Nat64 {
    /// IPv6 `from` sending to an address under the prefix: the IPv4 source and destination.
    fn outbound(&mut self, from: SocketAddr, to: SocketAddr) -> Option<(SocketAddr, SocketAddr)> {
        let IpAddr::V6(v6) = to.ip() else {
            return None;
        };
        let dst = self.prefix.extract(v6).ok()?;
        let port = match self.mappings.iter().position(|m| m.0 == from) {
            Some(i) => i,
            None => {
                let port = 40_000 + self.mappings.len() as u16;
                self.mappings.push((from, port, Vec::new()));
                self.mappings.len() - 1
            }
        };
        let m = &mut self.mappings[port];
        if !m.2.contains(&dst) {
            m.2.push(dst);
        }
        Some((
            SocketAddr::new(IpAddr::V4(POOL), m.1),
            SocketAddr::new(IpAddr::V4(dst), to.port()),
        ))
    }

    /// IPv4 `from` sending to the pool address `to`: the IPv6 source and destination.
    fn inbound(&mut self, from: SocketAddr, to: SocketAddr) -> Option<(SocketAddr, SocketAddr)> {
        let IpAddr::V4(src) = from.ip() else {
            return None;
        };
        let Some(m) = self
            .mappings
            .iter()
            .find(|m| m.1 == to.port() && m.2.contains(&src))
        else {
            self.dropped += 1;
            return None;
        };
        let synthesised = self.prefix.synthesize_socket(from)?;
        Some((synthesised, m.0))
    }
}

/// A (IPv6-only, behind the NAT64) and B (IPv4-only, public) run until both are connected or
/// ten virtual seconds pass; candidates and credentials are exchanged once gathering ended.
/// Returns each side's path.
fn session(prefix_known: bool) -> (Option<PathInfo>, Option<PathInfo>, Nat64) {
    let mut now = Instant::from_millis(1);
    let mut a = v6_only(prefix_known.then(nsp), true);
    let mut b_config = AgentConfig::rfc(false);
    b_config.stun_servers = vec![addr(STUN)];
    let mut b = Agent::new(b_config, 8);
    b.add_host_candidate(now, addr(HOST_V4)).unwrap();
    let mut stun = Server::new(ServerConfig::new(addr(STUN))).unwrap();
    let mut nat64 = Nat64 {
        prefix: nsp(),
        mappings: Vec::new(),
        dropped: 0,
    };
    a.gather(now);
    b.gather(now);
    let (mut a_done, mut b_done, mut signalled) = (false, false, false);
    let (mut a_path, mut b_path) = (None, None);
    let mut wire: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)> = VecDeque::new();
    let mut buf = [0u8; 1500];
    for _ in 0..100_000 {
        for (agent, from_v6) in [(&mut a, true), (&mut b, false)] {
            while let Some(t) = agent.poll_transmit(now, &mut buf) {
                let from = t.from.unwrap_or(if from_v6 {
                    addr(HOST_V6)
                } else {
                    addr(HOST_V4)
                });
                wire.push_back((from, t.to, buf[..t.len].to_vec()));
            }
        }
        while let Some(e) = a.poll_event() {
            match e {
                IceEvent::GatheringComplete => a_done = true,
                IceEvent::Connected(p) | IceEvent::PathChanged(p) => a_path = Some(p),
                _ => {}
            }
        }
        while let Some(e) = b.poll_event() {
            match e {
                IceEvent::GatheringComplete => b_done = true,
                IceEvent::Connected(p) | IceEvent::PathChanged(p) => b_path = Some(p),
                _ => {}
            }
        }
        if a_done && b_done && !signalled {
            signalled = true;
            a.set_remote_credentials(b.local_credentials());
            b.set_remote_credentials(a.local_credentials());
            for c in b.local_candidates().to_vec() {
                a.add_remote_candidate(now, c).unwrap();
            }
            for c in a.local_candidates().to_vec() {
                b.add_remote_candidate(now, c).unwrap();
            }
            a.end_of_remote_candidates();
            b.end_of_remote_candidates();
            continue;
        }
        if a_path.is_some() && b_path.is_some() {
            break;
        }
        if let Some((from, to, bytes)) = wire.pop_front() {
            // Through the NAT64 where a family changes; both ends are otherwise public.
            let (from, to) = if from.is_ipv6() {
                match nat64.outbound(from, to) {
                    Some(translated) => translated,
                    None => continue,
                }
            } else if to.ip() == IpAddr::V4(POOL) {
                match nat64.inbound(from, to) {
                    Some(translated) => translated,
                    None => continue,
                }
            } else {
                (from, to)
            };
            if to == addr(STUN) {
                if stun.handle_datagram(now, Datagram::new(to, from, &bytes)) == Received::Consumed
                {
                    if let Some(t) = stun.poll_transmit(now, &mut buf) {
                        wire.push_back((to, t.to, buf[..t.len].to_vec()));
                    }
                }
            } else if to == addr(HOST_V6) {
                let _ = a.handle_datagram(now, Datagram::new(to, from, &bytes));
            } else if to == addr(HOST_V4) {
                let _ = b.handle_datagram(now, Datagram::new(to, from, &bytes));
            }
            continue;
        }
        let next = [a.poll_timeout(), b.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(Instant::FAR_FUTURE);
        now = next.max(now + Duration::from_millis(1));
        if now > Instant::from_millis(10_000) {
            break;
        }
        a.handle_timeout(now);
        b.handle_timeout(now);
    }
    (a_path, b_path, nat64)
}

#[test]
fn an_ipv6_only_host_and_an_ipv4_peer_connect_through_the_nat64() {
    let (a, b, nat64) = session(true);
    let (a, b) = (a.expect("A connected"), b.expect("B connected"));
    // A sends to B's synthesised address; B sees A at the NAT64's pool address.
    assert_eq!(
        (a.local, a.remote, a.relayed),
        (addr(HOST_V6), twin(nsp(), HOST_V4), false)
    );
    assert_eq!(b.local, addr(HOST_V4));
    assert_eq!(b.remote.ip(), IpAddr::V4(POOL));
    assert_eq!(nat64.mappings.len(), 1, "one socket, one mapping");
    assert_eq!(b.remote.port(), nat64.mappings[0].1);
}

#[test]
fn without_the_prefix_an_ipv6_only_host_has_no_way_to_an_ipv4_peer() {
    let (a, b, nat64) = session(false);
    assert_eq!((a, b), (None, None));
    assert!(nat64.mappings.is_empty());
}

#[test]
fn a_server_reflexive_candidate_learnt_through_the_nat64_is_signalled_whole() {
    // IPv4 address, IPv6 base: RFC 8839's raddr may be of another family than the address.
    let c =
        Candidate::server_reflexive(addr("198.51.100.64:40000"), addr(HOST_V6), addr(STUN).ip());
    let line = c.to_string();
    assert!(
        line.contains("198.51.100.64 40000 typ srflx raddr 2001:db8:a::2 rport 5000"),
        "{line}"
    );
    let back = Candidate::parse(&line).unwrap();
    assert_eq!(
        (
            back.address,
            back.kind,
            back.priority,
            back.foundation,
            back.related
        ),
        (c.address, c.kind, c.priority, c.foundation, c.related)
    );
}

#[test]
fn ipv4_mapped_addresses_become_ipv4_in_candidates_and_datagrams() {
    // Signalled: a peer (or a dual-stack stack) writing `::ffff:a.b.c.d` means IPv4.
    let c = Candidate::parse(
        "candidate:1 1 udp 2130706431 ::ffff:203.0.113.20 6000 typ srflx raddr ::ffff:192.168.1.3 rport 6000",
    )
    .unwrap();
    assert_eq!(c.address, addr(HOST_V4));
    assert_eq!(c.related, Some(addr("192.168.1.3:6000")));
    assert!(!c.to_string().contains("ffff"), "{c}");
    // Received on a dual-stack socket: the application sees the IPv4 sender.
    let mut agent = Agent::new(AgentConfig::rfc(true), 9);
    let now = Instant::from_millis(1);
    let local = addr("[::]:5000");
    let mapped = addr("[::ffff:203.0.113.20]:6000");
    match agent.handle_datagram(now, Datagram::new(local, mapped, b"hello")) {
        holepunch_core::demux::Received::AppData { from, .. } => assert_eq!(from, addr(HOST_V4)),
        other => panic!("{other:?}"),
    }
}
