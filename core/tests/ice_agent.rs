//! Two ICE agents wired back to back in memory, in virtual time.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use holepunch_core::demux::Received;
use holepunch_core::ice::agent::{Agent, AgentConfig, IceEvent, PathInfo};
use holepunch_core::ice::candidate::CandidateKind;
use holepunch_core::io::{Datagram, Transmit};
use holepunch_core::stun::{Attribute, Class, IntegrityKey, MessageBuilder, Method, TransactionId};
use holepunch_core::time::{Duration, Instant};

#[path = "support/pump.rs"]
mod pump;

use pump::{Flight, Pumped, Wire};

const A: &str = "192.0.2.1:1000";
const B: &str = "198.51.100.1:2000";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

struct Pair {
    a: Agent,
    b: Agent,
    now: Instant,
    one_way: Duration,
    wire: Wire,
    events_a: Vec<IceEvent>,
    events_b: Vec<IceEvent>,
    /// Drop everything B sends (the peer "dies").
    b_silent: bool,
}

impl Pair {
    fn new(config_a: AgentConfig, config_b: AgentConfig, rtt: Duration) -> Self {
        let mut a = Agent::new(config_a, 1);
        let mut b = Agent::new(config_b, 2);
        let now = Instant::from_millis(1);
        a.add_host_candidate(now, addr(A)).unwrap();
        b.add_host_candidate(now, addr(B)).unwrap();
        a.gather(now);
        b.gather(now);
        Pair {
            a,
            b,
            now,
            one_way: rtt / 2,
            wire: Wire::default(),
            events_a: Vec::new(),
            events_b: Vec::new(),
            b_silent: false,
        }
    }

    /// Exchanges credentials and candidates (what signalling would do).
    fn signal(&mut self) {
        let (ca, cb) = (*self.a.local_credentials(), *self.b.local_credentials());
        self.a.set_remote_credentials(&cb);
        self.b.set_remote_credentials(&ca);
        for c in self.b.local_candidates().to_vec() {
            self.a.add_remote_candidate(self.now, c).unwrap();
        }
        for c in self.a.local_candidates().to_vec() {
            self.b.add_remote_candidate(self.now, c).unwrap();
        }
    }

    /// Runs until `until`, bounded in steps.
    fn run_until(&mut self, until: Instant) {
        pump::run_until(self, until);
    }

    fn connected(events: &[IceEvent]) -> Option<PathInfo> {
        events.iter().find_map(|e| match e {
            IceEvent::Connected(p) => Some(*p),
            _ => None,
        })
    }
}

impl Pumped for Pair {
    fn agent(&mut self, side: usize) -> &mut Agent {
        if side == 0 { &mut self.a } else { &mut self.b }
    }

    fn clock_and_wire(&mut self) -> (&mut Instant, &mut Wire) {
        (&mut self.now, &mut self.wire)
    }

    fn on_transmit(&mut self, side: usize, t: Transmit, bytes: &[u8]) {
        if side == 1 && self.b_silent {
            return;
        }
        let at = self.now + self.one_way;
        self.wire
            .send(at, 1 - side, t.from.unwrap(), t.to, bytes.to_vec());
    }

    fn on_event(&mut self, side: usize, e: IceEvent) {
        if side == 0 {
            self.events_a.push(e);
        } else {
            self.events_b.push(e);
        }
    }

    fn deliver(&mut self, f: Flight) {
        let now = self.now;
        let agent = self.agent(f.to_side);
        let r = agent.handle_datagram(now, Datagram::new(f.to, f.from, &f.bytes));
        assert_eq!(r, Received::Consumed, "every datagram here is ICE traffic");
    }
}

#[test]
fn two_agents_connect_directly_with_regular_nomination() {
    let mut p = Pair::new(
        AgentConfig::rfc(true),
        AgentConfig::rfc(false),
        Duration::from_millis(50),
    );
    p.signal();
    p.run_until(Instant::from_millis(2000));
    let a = Pair::connected(&p.events_a).expect("A connected");
    let b = Pair::connected(&p.events_b).expect("B connected");
    assert_eq!((a.local, a.remote), (addr(A), addr(B)));
    assert_eq!((b.local, b.remote), (addr(B), addr(A)));
    assert_eq!(a.local_kind, CandidateKind::Host);
    assert!(!a.relayed);
    assert!(p.events_a.contains(&IceEvent::Checking));
}

#[test]
fn aggressive_profile_connects_within_two_rtt() {
    let rtt = Duration::from_millis(50);
    let mut p = Pair::new(
        AgentConfig::aggressive(true),
        AgentConfig::aggressive(false),
        rtt,
    );
    p.signal();
    let start = p.now;
    p.run_until(start + rtt * 2);
    assert!(
        Pair::connected(&p.events_a).is_some(),
        "A connected within 2 RTT: {:?}",
        p.events_a
    );
    assert!(
        Pair::connected(&p.events_b).is_some(),
        "B connected within 2 RTT: {:?}",
        p.events_b
    );
}

#[test]
fn consent_expires_after_thirty_seconds_of_silence() {
    let mut p = Pair::new(
        AgentConfig::rfc(true),
        AgentConfig::rfc(false),
        Duration::from_millis(50),
    );
    p.signal();
    p.run_until(Instant::from_millis(2000));
    assert!(Pair::connected(&p.events_a).is_some());
    // The peer goes silent: A's consent must lapse 30 s after the last answer, not before.
    p.b_silent = true;
    let silent_from = p.now;
    p.run_until(silent_from + Duration::from_secs(24));
    assert!(
        !p.events_a
            .iter()
            .any(|e| matches!(e, IceEvent::ConsentLost(_)))
    );
    p.run_until(silent_from + Duration::from_secs(36));
    assert!(
        p.events_a
            .iter()
            .any(|e| matches!(e, IceEvent::ConsentLost(_))),
        "consent lost: {:?}",
        p.events_a
    );
    assert!(p.a.selected_path().is_none());
}

#[test]
fn forged_checks_change_nothing() {
    let mut p = Pair::new(
        AgentConfig::rfc(true),
        AgentConfig::rfc(false),
        Duration::from_millis(50),
    );
    p.signal();
    p.run_until(Instant::from_millis(2000));
    let before = p.b.selected_path().expect("connected");
    let attacker = addr("203.0.113.66:6666");
    let ufrags = format!(
        "{}:{}",
        p.b.local_credentials().ufrag(),
        p.a.local_credentials().ufrag()
    );
    // Right username, wrong key; and a request with no integrity at all.
    for key in [
        Some(IntegrityKey::short_term(b"not-the-password-at-all")),
        None,
    ] {
        let mut buf = [0u8; 512];
        let mut m = MessageBuilder::new(
            &mut buf,
            Class::Request,
            Method::BINDING,
            TransactionId([9; 12]),
        )
        .unwrap();
        m.add(&Attribute::Username(&ufrags)).unwrap();
        m.add(&Attribute::Priority(0x7e00_00ff)).unwrap();
        m.add(&Attribute::IceControlling(u64::MAX)).unwrap();
        m.add(&Attribute::UseCandidate).unwrap();
        if let Some(k) = &key {
            m.add_message_integrity(k).unwrap();
        }
        m.add_fingerprint().unwrap();
        let len = m.finish();
        let now = p.now;
        let r =
            p.b.handle_datagram(now, Datagram::new(addr(B), attacker, &buf[..len]));
        assert_eq!(r, Received::Consumed);
        let mut out = [0u8; 1500];
        while let Some(t) = p.b.poll_transmit(now, &mut out) {
            assert_ne!(t.to, attacker, "no answer to a forged check");
        }
    }
    p.run_until(p.now + Duration::from_secs(10));
    assert_eq!(p.b.selected_path().map(|s| s.remote), Some(before.remote));
    assert!(
        !p.events_b
            .iter()
            .any(|e| matches!(e, IceEvent::PathChanged(_)))
    );
}

#[test]
fn application_data_is_demultiplexed() {
    let mut a = Agent::new(AgentConfig::rfc(true), 3);
    let now = Instant::ZERO;
    a.add_host_candidate(now, addr(A)).unwrap();
    let payload = [0x17u8, 1, 2, 3];
    assert_eq!(
        a.handle_datagram(now, Datagram::new(addr(A), addr(B), &payload)),
        Received::AppData {
            from: addr(B),
            payload: &payload
        }
    );
}

#[path = "support/ice_net.rs"]
mod ice_net;

/// Issue 3's target: with 4 host + 2 srflx candidates a side at 50 ms RTT, the aggressive
/// profile connects within 2 RTT of the second side learning the first side's candidates.
#[test]
fn aggressive_connects_within_two_rtt_of_the_second_side_learning_candidates() {
    let rtt = Duration::from_millis(50);
    let mut net = ice_net::Net::new(AgentConfig::aggressive, 4, 2, rtt);
    // A learns B's candidates first and starts checking (its checks die at B's NAT) ...
    net.signal(1, 0);
    net.run_until(Instant::from_millis(300));
    assert!(
        net.sides[0].connected_at.is_none(),
        "B has not sent anything yet"
    );
    // ... then B learns A's: from here both must be connected within 2 RTT.
    let learned = net.now;
    net.signal(0, 1);
    net.run_until(learned + rtt * 4);
    let done = net
        .sides
        .iter()
        .map(|s| s.connected_at.expect("connected"))
        .max()
        .unwrap();
    let took = done - learned;
    println!("connected {took:?} after the second side learned the candidates (RTT {rtt:?})");
    assert!(took < rtt * 2, "took {took:?}");
}

/// RFC 8445 §6.1.2: pairs form only between candidates of one family and component, local
/// server-reflexive candidates are pruned in favour of their base, priorities follow the
/// formula with G = the controlling side's candidate, and one pair per foundation pair is
/// Waiting while its siblings are Frozen.
#[test]
fn pairing_pruning_priorities_and_freezing_follow_rfc_8445() {
    use holepunch_core::ice::candidate::{Candidate, CandidateKind};
    use holepunch_core::ice::checklist::{PairState, pair_priority};
    use std::net::IpAddr;
    let now = Instant::ZERO;
    let mut a = Agent::new(AgentConfig::rfc(true), 5);
    let host4 = addr("192.0.2.1:1000");
    let host6 = addr("[2001:db8::1]:1000");
    a.add_host_candidate(now, host4).unwrap();
    a.add_host_candidate(now, host6).unwrap();
    let server: IpAddr = "203.0.113.3".parse().unwrap();
    a.add_local_candidate(
        now,
        Candidate::server_reflexive(addr("198.51.100.9:4000"), host4, server),
    )
    .unwrap();
    // The peer: two host candidates with one foundation (same base IP), one srflx, one IPv6.
    let r1 = Candidate::host(addr("198.51.100.1:2000"), 65535);
    let r2 = Candidate::host(addr("198.51.100.1:2001"), 65534);
    let r3 = Candidate::server_reflexive(addr("203.0.113.7:3000"), addr("10.0.0.2:3000"), server);
    let r4 = Candidate::host(addr("[2001:db8::2]:2000"), 65535);
    for r in [r1, r2, r3, r4] {
        a.add_remote_candidate(now, r).unwrap();
    }
    let locals = a.local_candidates();
    let remotes = a.remote_candidates();
    let pairs = a.checklist().pairs();
    // 3 IPv4 remotes with the IPv4 host, 1 IPv6 remote with the IPv6 host; no srflx-local pairs.
    assert_eq!(pairs.len(), 4, "{pairs:?}");
    for p in pairs {
        let (l, r) = (&locals[p.local], &remotes[p.remote]);
        assert_eq!(
            l.kind,
            CandidateKind::Host,
            "srflx locals are pruned to their base"
        );
        assert_eq!(
            l.address.is_ipv4(),
            r.address.is_ipv4(),
            "families never mix"
        );
        assert_eq!(
            p.priority,
            pair_priority(l.priority, r.priority),
            "G is ours: we control"
        );
    }
    // r1 and r2 share a foundation with the same local: one Waiting, the other Frozen.
    let state_of = |remote: Candidate| {
        pairs
            .iter()
            .find(|p| remotes[p.remote] == remote)
            .map(|p| p.state)
            .unwrap()
    };
    assert_eq!(state_of(r1), PairState::Waiting);
    assert_eq!(state_of(r2), PairState::Frozen);
    assert_eq!(state_of(r3), PairState::Waiting, "another foundation");
}

/// Both sides think they control (RFC 8445 §7.3.1.1): the tie-breakers settle it through 487
/// or a silent switch, exactly one ends up controlling, and they connect.
#[test]
fn role_conflict_is_resolved_and_the_pair_connects() {
    let mut p = Pair::new(
        AgentConfig::rfc(true),
        AgentConfig::rfc(true),
        Duration::from_millis(50),
    );
    p.signal();
    p.run_until(Instant::from_millis(3000));
    assert_ne!(
        p.a.is_controlling(),
        p.b.is_controlling(),
        "exactly one controls"
    );
    assert!(Pair::connected(&p.events_a).is_some());
    assert!(Pair::connected(&p.events_b).is_some());
    let switched = p
        .events_a
        .iter()
        .chain(&p.events_b)
        .filter(|e| matches!(e, IceEvent::RoleChanged { .. }))
        .count();
    assert_eq!(switched, 1, "one side switched role");
}

/// ICE restart: new credentials on one side, re-signalled; the old path keeps carrying data
/// until the new checks select one, and the pair is connected again.
#[test]
fn restart_reconnects_with_new_credentials() {
    let mut p = Pair::new(
        AgentConfig::aggressive(true),
        AgentConfig::aggressive(false),
        Duration::from_millis(50),
    );
    p.signal();
    p.run_until(Instant::from_millis(1000));
    let old = *p.a.local_credentials();
    let now = p.now;
    p.a.restart(now);
    assert_ne!(p.a.local_credentials().ufrag(), old.ufrag());
    assert!(
        p.a.selected_path().is_some(),
        "the old path stays usable during the restart"
    );
    p.b.restart(now);
    p.events_a.clear();
    p.events_b.clear();
    p.signal();
    p.run_until(now + Duration::from_secs(2));
    let reconnected = |events: &[IceEvent]| {
        events
            .iter()
            .any(|e| matches!(e, IceEvent::Connected(_) | IceEvent::PathChanged(_)))
    };
    assert!(reconnected(&p.events_a), "{:?}", p.events_a);
    assert!(reconnected(&p.events_b), "{:?}", p.events_b);
}

#[test]
fn punch_sockets_are_asked_for_on_the_base_behind_the_hard_nat() {
    // A multi-homed host: a VPN-ish address that reaches nothing, and the LAN address behind a
    // symmetric NAT (two servers saw two different ports). The punch sockets must be bound on
    // the LAN address, whatever order the host candidates came in.
    use holepunch_core::ice::agent::Action;
    use holepunch_core::ice::candidate::Candidate;
    use std::net::IpAddr;

    let now = Instant::ZERO;
    let mut hard = Agent::new(AgentConfig::aggressive(true), 7);
    let (vpn, lan) = (addr("10.8.0.2:5000"), addr("192.168.1.2:5000"));
    hard.add_host_candidate(now, vpn).unwrap();
    hard.add_host_candidate(now, lan).unwrap();
    let servers: [IpAddr; 2] = [
        "203.0.113.3".parse().unwrap(),
        "203.0.113.4".parse().unwrap(),
    ];
    for (port, server) in [(40_001, servers[0]), (51_234, servers[1])] {
        let mapped = SocketAddr::new("198.51.100.10".parse().unwrap(), port);
        hard.add_local_candidate(now, Candidate::server_reflexive(mapped, lan, server))
            .unwrap();
    }
    hard.gather(now);
    let easy = Agent::new(AgentConfig::aggressive(false), 8);
    hard.set_remote_credentials(easy.local_credentials());
    for server in servers {
        let mapped = addr("198.51.100.20:6000");
        let c = Candidate::server_reflexive(mapped, addr("192.168.2.2:6000"), server);
        hard.add_remote_candidate(now, c).unwrap();
    }
    hard.end_of_remote_candidates();

    // Nothing answers; run until the punch decision (0.5 s after checks start).
    let mut buf = [0u8; 1500];
    let mut t = now;
    let mut action = None;
    for _ in 0..10_000 {
        while hard.poll_transmit(t, &mut buf).is_some() {}
        if let Some(a) = hard.poll_action() {
            action = Some(a);
            break;
        }
        let next = hard.poll_timeout().unwrap_or(t + Duration::from_millis(10));
        t = next.max(t + Duration::from_millis(1));
        if t > now + Duration::from_secs(5) {
            break;
        }
        hard.handle_timeout(t);
    }
    match action {
        Some(Action::BindSockets { count, ip, .. }) => {
            assert_eq!(ip, lan.ip(), "the base whose mappings vary");
            assert!(count > 0);
        }
        other => panic!("expected BindSockets within 5 s, got {other:?}"),
    }
}

/// RFC 8421 §4: host candidates get local preferences per family, IPv6 above IPv4, and within a
/// family the earlier one first. An IPv6 host added after two IPv4 hosts is still the first of
/// its family.
#[test]
fn host_local_preferences_count_within_each_family() {
    use holepunch_core::ice::candidate::Candidate;
    let now = Instant::ZERO;
    let mut a = Agent::new(AgentConfig::rfc(true), 5);
    let hosts = [
        addr("192.0.2.1:1000"),
        addr("192.0.2.2:1000"),
        addr("[2001:db8::1]:1000"),
        addr("[2001:db8::2]:1000"),
    ];
    for h in hosts {
        a.add_host_candidate(now, h).unwrap();
    }
    let expected = [65535 - 1024, 65535 - 1025, 65535, 65534];
    for (h, pref) in hosts.into_iter().zip(expected) {
        let c = a
            .local_candidates()
            .iter()
            .find(|c| c.address == h)
            .unwrap();
        assert_eq!(c.priority, Candidate::host(h, pref).priority, "{h}");
    }
}
