//! One ICE agent against a scripted network, in virtual time: STUN servers that answer
//! gathering with a chosen mapping (and RFC 5780 OTHER-ADDRESS), and a scripted peer that
//! answers Binding requests on chosen ports with its real credentials. Everything the agent
//! sends is logged, so the tests check what went over the wire: which servers were asked and
//! when, and whether a nomination was signalled before a path was used.
//!
//! The rules pinned here were found unpinned by a mutation audit (issue 17): the OTHER-ADDRESS
//! probe, re-gathering only on a relayed path (at the profile's interval), the blind punch's
//! use of a mapping two servers saw unchanged, the nomination of a punched pair under regular
//! nomination, and `Failed` waiting for the hard side's punch plan.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;

use holepunch_core::ice::agent::{Action, Agent, AgentConfig, IceEvent};
use holepunch_core::ice::candidate::Candidate;
use holepunch_core::io::{IoResult, Transmit};
use holepunch_core::netcheck::Behaviour;
use holepunch_core::stun::attr::types;
use holepunch_core::stun::{Attribute, Class, IntegrityKey, Message, MessageBuilder, Method};
use holepunch_core::time::{Duration, Instant};

#[path = "support/pump.rs"]
mod pump;

use pump::{Pumped, Wire};

const RTT: Duration = Duration::from_millis(40);
/// The agent's only host socket.
const HOST: &str = "192.0.2.1:1000";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A STUN server's script: the mapping it reports, and its RFC 5780 OTHER-ADDRESS if any.
#[derive(Clone, Copy)]
struct Server {
    mapped: SocketAddr,
    other: Option<SocketAddr>,
}

/// The scripted peer: answers Binding requests sent to `answers_on` with integrity under the
/// password of `credentials` (its real agent's), as a live peer would.
struct Peer {
    key: IntegrityKey,
    answers_on: Vec<SocketAddr>,
    /// Also answer the first request to this IP on a port not signalled (a hard NAT's mapping
    /// towards us, found by a punch probe), and that port from then on.
    opens_one_port_on: Option<std::net::IpAddr>,
    /// The signalled candidates' addresses.
    signalled: Vec<SocketAddr>,
}

/// A datagram the agent sent.
struct Sent {
    at: Instant,
    to: SocketAddr,
    bytes: Vec<u8>,
}

impl Sent {
    fn msg(&self) -> Message<'_> {
        Message::parse(&self.bytes).unwrap()
    }
}

struct Solo {
    agent: Agent,
    now: Instant,
    servers: HashMap<SocketAddr, Server>,
    peer: Option<Peer>,
    /// Answer the punch socket request with this many sockets.
    bind_sockets: bool,
    /// Socket requests seen (hard-NAT punching asks for its sockets with one).
    socket_requests: usize,
    /// Steps in a row woken at one instant with nothing to do.
    idle_wakeups: usize,
    wire: Wire,
    sent: Vec<Sent>,
    events: Vec<(Instant, IceEvent)>,
}

impl Solo {
    fn new(config: AgentConfig, servers: &[(&str, Server)]) -> Solo {
        let now = Instant::from_millis(1);
        let mut agent = Agent::new(config, 21);
        agent.add_host_candidate(now, addr(HOST)).unwrap();
        Solo {
            agent,
            now,
            servers: servers.iter().map(|(a, s)| (addr(a), *s)).collect(),
            peer: None,
            bind_sockets: false,
            socket_requests: 0,
            idle_wakeups: 0,
            wire: Wire::default(),
            sent: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Gives the agent the credentials of a real (but absent) peer agent, `remotes` as its
    /// candidates and end-of-candidates; the scripted peer answers with those credentials.
    fn peer(&mut self, remotes: &[Candidate], answers_on: &[&str]) -> &mut Peer {
        let remote_agent = Agent::new(AgentConfig::rfc(false), 22);
        let creds = *remote_agent.local_credentials();
        let now = self.now;
        self.agent.set_remote_credentials(&creds);
        for c in remotes {
            self.agent.add_remote_candidate(now, *c).unwrap();
        }
        self.agent.end_of_remote_candidates();
        self.peer.insert(Peer {
            key: IntegrityKey::short_term(creds.pwd().as_bytes()),
            answers_on: answers_on.iter().map(|a| addr(a)).collect(),
            opens_one_port_on: None,
            signalled: remotes.iter().map(|c| c.address).collect(),
        })
    }

    /// The answer the network gives to a datagram the agent sent, if any.
    fn answer(&mut self, to: SocketAddr, from: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
        let msg = Message::parse(bytes).ok()?;
        if msg.class() != Class::Request {
            return None;
        }
        let mut buf = [0u8; 512];
        let mut b = MessageBuilder::new(
            &mut buf,
            Class::SuccessResponse,
            Method::BINDING,
            msg.transaction_id(),
        )
        .unwrap();
        if let Some(server) = self.servers.get(&to) {
            b.add(&Attribute::XorMappedAddress(server.mapped)).unwrap();
            if let Some(other) = server.other {
                b.add(&Attribute::OtherAddress(other)).unwrap();
            }
        } else {
            let peer = self.peer.as_mut()?;
            if !peer.answers_on.contains(&to) {
                if peer.opens_one_port_on != Some(to.ip()) || peer.signalled.contains(&to) {
                    return None;
                }
                peer.opens_one_port_on = None;
                peer.answers_on.push(to);
            }
            b.add(&Attribute::XorMappedAddress(from)).unwrap();
            b.add_message_integrity(&peer.key).unwrap();
        }
        b.add_fingerprint().unwrap();
        let len = b.finish();
        Some(buf[..len].to_vec())
    }

    /// Runs until `until`, bounded in steps. A driver that trusts `poll_timeout` must not be
    /// woken again and again at one instant with nothing to do: that is a busy loop.
    fn run_until(&mut self, until: Instant) {
        self.idle_wakeups = 0;
        pump::run_until(self, until);
    }

    fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// Distinct Binding requests (by transaction id) sent to `to`, with their first send time.
    fn requests_to(&self, to: SocketAddr) -> Vec<Instant> {
        let mut seen = Vec::new();
        let mut times = Vec::new();
        for s in self.sent.iter().filter(|s| s.to == to) {
            let msg = s.msg();
            if msg.class() == Class::Request && !seen.contains(&msg.transaction_id()) {
                seen.push(msg.transaction_id());
                times.push(s.at);
            }
        }
        times
    }

    fn event_at(&self, pred: impl Fn(&IceEvent) -> bool) -> Option<Instant> {
        self.events.iter().find(|(_, e)| pred(e)).map(|(at, _)| *at)
    }
}

impl Pumped for Solo {
    fn sides(&self) -> usize {
        1
    }

    fn agent(&mut self, _side: usize) -> &mut Agent {
        &mut self.agent
    }

    fn clock_and_wire(&mut self) -> (&mut Instant, &mut Wire) {
        (&mut self.now, &mut self.wire)
    }

    fn on_transmit(&mut self, _side: usize, t: Transmit, bytes: &[u8]) {
        let from = t.from.unwrap();
        if let Some(reply) = self.answer(t.to, from, bytes) {
            self.wire.send(self.now + RTT, 0, t.to, from, reply);
        }
        self.sent.push(Sent {
            at: self.now,
            to: t.to,
            bytes: bytes.to_vec(),
        });
    }

    fn on_event(&mut self, _side: usize, e: IceEvent) {
        self.events.push((self.now, e));
    }

    fn after_drain(&mut self, _side: usize) {
        while let Some(a) = self.agent.poll_action() {
            self.socket_requests += usize::from(matches!(a, Action::BindSockets { .. }));
            if let (Action::BindSockets { token, count, ip }, true) = (a, self.bind_sockets) {
                let sockets: Vec<SocketAddr> = (0..count)
                    .map(|i| SocketAddr::new(ip, 20_000 + i))
                    .collect();
                self.agent
                    .handle_io(self.now, token, IoResult::SocketsBound(&sockets));
            }
        }
    }

    fn on_step(&mut self, next: Instant, next_packet: Instant, progress: bool) {
        if next == self.now && next_packet > self.now && !progress {
            self.idle_wakeups += 1;
            assert!(
                self.idle_wakeups < 100,
                "busy loop at {:?}: {:?} is due, nothing to do",
                self.now,
                self.agent.poll_deadline()
            );
        } else {
            self.idle_wakeups = 0;
        }
    }
}

fn server(mapped: &str, other: Option<&str>) -> Server {
    Server {
        mapped: addr(mapped),
        other: other.map(addr),
    }
}

fn rfc_with_servers(servers: &[&str]) -> AgentConfig {
    AgentConfig {
        stun_servers: servers.iter().map(|s| addr(s)).collect(),
        ..AgentConfig::rfc(true)
    }
}

fn srflx_addresses(agent: &Agent) -> Vec<SocketAddr> {
    agent
        .local_candidates()
        .iter()
        .filter(|c| c.kind == holepunch_core::ice::candidate::CandidateKind::ServerReflexive)
        .map(|c| c.address)
        .collect()
}

// ----- gathering from an RFC 5780 server's OTHER-ADDRESS -----

const S1: &str = "203.0.113.3:3478";
const S2: &str = "203.0.113.4:3478";
/// S1's alternate address (RFC 5780 OTHER-ADDRESS).
const S1_OTHER: &str = "203.0.113.5:3479";
/// An address only S1_OTHER names: answers are not followed in chains.
const S1_OTHER_OTHER: &str = "203.0.113.6:3480";

/// A configured server answers with an OTHER-ADDRESS: the agent asks that address too, once,
/// from the same socket, and both mappings become candidates (an endpoint-dependent NAT shows
/// two ports). The alternate's own OTHER-ADDRESS is not followed. A new `gather` asks both
/// again.
#[test]
fn a_configured_servers_other_address_is_asked_once_per_gathering() {
    let mut solo = Solo::new(
        rfc_with_servers(&[S1]),
        &[
            (S1, server("198.51.100.7:40001", Some(S1_OTHER))),
            (S1_OTHER, server("198.51.100.7:40002", Some(S1_OTHER_OTHER))),
            (S1_OTHER_OTHER, server("198.51.100.7:40003", None)),
        ],
    );
    solo.agent.gather(solo.now);
    solo.run_for(Duration::from_secs(10));
    assert_eq!(solo.requests_to(addr(S1)).len(), 1);
    assert_eq!(
        solo.requests_to(addr(S1_OTHER)).len(),
        1,
        "OTHER-ADDRESS asked"
    );
    assert_eq!(solo.requests_to(addr(S1_OTHER_OTHER)).len(), 0, "no chains");
    assert!(
        solo.sent
            .iter()
            .filter(|s| s.to == addr(S1_OTHER))
            .all(|s| s.msg().class() == Class::Request)
    );
    assert_eq!(
        srflx_addresses(&solo.agent),
        [addr("198.51.100.7:40001"), addr("198.51.100.7:40002")]
    );
    let complete = solo
        .event_at(|e| matches!(e, IceEvent::GatheringComplete))
        .expect("gathering completes");
    assert!(
        complete >= solo.requests_to(addr(S1_OTHER))[0] + RTT,
        "gathering waits for the other address's answer"
    );

    solo.agent.gather(solo.now);
    solo.run_for(Duration::from_secs(10));
    assert_eq!(solo.requests_to(addr(S1)).len(), 2);
    assert_eq!(solo.requests_to(addr(S1_OTHER)).len(), 2);
}

/// With `probe_other_address` off, only the configured server is asked; and an OTHER-ADDRESS
/// that is itself configured is asked by gathering only, not a second time.
#[test]
fn other_address_is_not_asked_when_disabled_or_already_configured() {
    let servers = [
        (S1, server("198.51.100.7:40001", Some(S1_OTHER))),
        (S1_OTHER, server("198.51.100.7:40002", None)),
    ];
    let mut off = Solo::new(
        AgentConfig {
            probe_other_address: false,
            ..rfc_with_servers(&[S1])
        },
        &servers,
    );
    off.agent.gather(off.now);
    off.run_for(Duration::from_secs(10));
    assert_eq!(off.requests_to(addr(S1)).len(), 1);
    assert_eq!(off.requests_to(addr(S1_OTHER)).len(), 0);
    assert_eq!(srflx_addresses(&off.agent), [addr("198.51.100.7:40001")]);

    let mut both = Solo::new(rfc_with_servers(&[S1, S1_OTHER]), &servers);
    both.agent.gather(both.now);
    both.run_for(Duration::from_secs(10));
    assert_eq!(both.requests_to(addr(S1)).len(), 1);
    assert_eq!(both.requests_to(addr(S1_OTHER)).len(), 1);
}

// ----- gathering again while on a relay -----

/// The peer's address that the scripted peer answers on.
const PEER: &str = "198.51.100.20:6000";

/// An aggressive-profile agent with one STUN server, connected to the scripted peer through
/// `remote` (a host candidate: direct; a relayed one: through the peer's TURN server). Without
/// hard-NAT punching, whose pending decision would hold the relay back.
fn connected_through(remote: Candidate) -> Solo {
    let mut solo = Solo::new(
        AgentConfig {
            stun_servers: vec![addr(S1)],
            punch: None,
            ..AgentConfig::aggressive(true)
        },
        &[(S1, server("198.51.100.7:40001", None))],
    );
    solo.agent.gather(solo.now);
    solo.run_for(Duration::from_millis(200));
    solo.peer(&[remote], &[PEER]);
    solo.run_for(Duration::from_secs(1));
    let path = solo.agent.selected_path().expect("connected");
    assert_eq!(path.remote, addr(PEER));
    solo
}

/// On a direct path the STUN servers are not asked again: after gathering, no server
/// traffic at all, however long the path lives.
#[test]
fn no_stun_server_traffic_on_a_direct_path() {
    let mut solo = connected_through(Candidate::host(addr(PEER), 65535));
    assert!(!solo.agent.selected_path().unwrap().relayed);
    let connected = solo.now;
    solo.run_for(Duration::from_secs(60));
    assert!(solo.agent.selected_path().is_some(), "consent kept");
    assert_eq!(solo.requests_to(addr(S1)).len(), 1, "gathering only");
    assert!(solo.requests_to(addr(S1))[0] < connected);
}

/// On a relayed path the STUN servers are asked again, first `upgrade_interval` after the
/// last ask (the aggressive profile's 2 s, "upgrade probes every 2 s"), then backing off by
/// doubling (the probe budget): 2, 4, 8 s apart, not back to back as answers come in.
#[test]
fn on_a_relayed_path_stun_servers_are_asked_again_two_then_four_then_eight_seconds_apart() {
    let server_ip = "203.0.113.9".parse().unwrap();
    let relayed = Candidate::relayed(addr(PEER), addr("198.51.100.21:7000"), server_ip);
    let mut solo = connected_through(relayed);
    assert!(solo.agent.selected_path().unwrap().relayed);
    let connected = solo.now;
    solo.run_for(Duration::from_secs(20));
    assert!(solo.agent.selected_path().is_some(), "consent kept");
    let asks: Vec<Instant> = solo
        .requests_to(addr(S1))
        .into_iter()
        .filter(|at| *at >= connected)
        .collect();
    assert!(asks.len() >= 3, "{asks:?}");
    let gaps: Vec<Duration> = asks.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(
        gaps[..2],
        [Duration::from_secs(4), Duration::from_secs(8)],
        "{asks:?}"
    );
}

// ----- the blind punch fallback -----

/// A's first server-reflexive mapping, and the one the blind punch asks about.
const MAPPED: &str = "198.51.100.7:40001";

/// A with `servers` that all report the same mapping; the peer signals one server-reflexive
/// candidate that never answers. Neither side's candidates show how its NAT maps, so after
/// `blind_delay` A punches blind: which halves?
fn blind_punch_halves(servers: &[&str]) -> (bool, bool) {
    let answers: Vec<(SocketAddr, SocketAddr)> =
        servers.iter().map(|s| (addr(s), addr(MAPPED))).collect();
    blind_punch_halves_with(&answers)
}

/// As [`blind_punch_halves`], with the servers (in the order they answer) and the mapping
/// each reports.
fn blind_punch_halves_with(answers: &[(SocketAddr, SocketAddr)]) -> (bool, bool) {
    let config = AgentConfig {
        stun_servers: answers.iter().map(|(s, _)| *s).collect(),
        ..AgentConfig::rfc(true)
    };
    let mut solo = Solo::new(config, &[]);
    for (s, mapped) in answers {
        solo.servers.insert(
            *s,
            Server {
                mapped: *mapped,
                other: None,
            },
        );
    }
    solo.agent.gather(solo.now);
    solo.run_for(Duration::from_millis(200));
    assert_eq!(srflx_addresses(&solo.agent)[0], addr(MAPPED));
    let halves = peer_behind_one_server_then_blind_halves(&mut solo);
    assert_eq!(halves.len(), 1, "{:?}", solo.events);
    halves[0]
}

/// One server saw A's mapping: A cannot rule out a hard NAT and plays both halves. Two
/// different servers saw the same mapping: A's NAT maps independently of the destination, so
/// A plays only the easy half.
#[test]
fn a_mapping_two_servers_saw_unchanged_rules_out_the_hard_half_of_a_blind_punch() {
    assert_eq!(blind_punch_halves(&[S1]), (true, true));
    assert_eq!(blind_punch_halves(&[S1, S2]), (false, true));
}

/// What A starts when netcheck measured its NAT's `mapping` and one server answered (so its
/// candidates alone cannot show it): the blind halves it plays, and whether it asked for the
/// hard side's sockets.
fn punching_with_measured_mapping(mapping: Behaviour) -> (Vec<(bool, bool)>, usize) {
    let config = rfc_with_servers(&[S1]);
    let mut solo = Solo::new(config, &[(S1, server(MAPPED, None))]);
    solo.agent.set_local_mapping(mapping);
    solo.agent.gather(solo.now);
    solo.run_for(Duration::from_millis(200));
    let halves = peer_behind_one_server_then_blind_halves(&mut solo);
    (halves, solo.socket_requests)
}

/// The peer signals one server-reflexive candidate that never answers; after 4 s, the halves
/// of every blind punch A started.
fn peer_behind_one_server_then_blind_halves(solo: &mut Solo) -> Vec<(bool, bool)> {
    let server_ip = "203.0.113.3".parse().unwrap();
    let theirs = Candidate::server_reflexive(addr(PEER), addr("10.1.0.2:5000"), server_ip);
    solo.peer(&[theirs], &[]);
    solo.run_for(Duration::from_secs(4));
    solo.events
        .iter()
        .filter_map(|(_, e)| match e {
            IceEvent::BlindPunching { hard, easy } => Some((*hard, *easy)),
            _ => None,
        })
        .collect()
}

/// Netcheck's report stands in for what one server cannot show: a NAT measured
/// endpoint-independent plays only the easy half of the blind punch, one measured
/// address-and-port-dependent is the hard side at once (no blind guess), and without a
/// measure both halves are played, as before.
#[test]
fn a_measured_mapping_decides_the_punching_side_without_guessing() {
    assert_eq!(
        punching_with_measured_mapping(Behaviour::Unknown),
        (vec![(true, true)], 1)
    );
    assert_eq!(
        punching_with_measured_mapping(Behaviour::EndpointIndependent),
        (vec![(false, true)], 0)
    );
    assert_eq!(
        punching_with_measured_mapping(Behaviour::AddressAndPortDependent),
        (vec![], 1)
    );
}

// ----- a punched pair under regular nomination -----

/// A (controlling, regular nomination, no NAT) and a peer whose two server-reflexive
/// candidates show different ports: its NAT is hard, A plays the easy side and probes the
/// peer's IP. The peer's NAT lets one probe through. Under regular nomination the pair that
/// probe found is nominated like any other: a check with USE-CANDIDATE, answered, and only
/// then selected. Selecting it on the probe's answer would leave the controlled peer, which
/// selects only on USE-CANDIDATE, without the path.
#[test]
fn a_punched_pair_is_nominated_with_use_candidate_under_regular_nomination() {
    let mut solo = Solo::new(AgentConfig::rfc(true), &[]);
    solo.agent.gather(solo.now);
    let peer_ip = addr(PEER).ip();
    let base = addr("10.1.0.2:5000");
    let theirs = [
        Candidate::server_reflexive(addr("198.51.100.20:40001"), base, addr(S1).ip()),
        Candidate::server_reflexive(addr("198.51.100.20:40007"), base, addr(S2).ip()),
    ];
    solo.peer(&theirs, &[]).opens_one_port_on = Some(peer_ip);
    solo.run_for(Duration::from_secs(5));
    let connected = solo
        .event_at(|e| matches!(e, IceEvent::Connected(_)))
        .unwrap_or_else(|| panic!("connected: {:?}", solo.events));
    let path = solo.agent.selected_path().unwrap();
    assert_eq!(path.remote.ip(), peer_ip);
    assert!(
        !theirs.iter().any(|c| c.address == path.remote),
        "a punched port"
    );
    let to_path: Vec<&Sent> = solo.sent.iter().filter(|s| s.to == path.remote).collect();
    let probe = to_path.first().expect("the probe");
    assert!(probe.msg().find(types::USE_CANDIDATE).is_none());
    let nomination = to_path
        .iter()
        .find(|s| s.msg().find(types::USE_CANDIDATE).is_some())
        .expect("a check with USE-CANDIDATE");
    assert!(nomination.at > probe.at);
    assert!(
        connected >= nomination.at + RTT,
        "selected on the nomination's answer: probe {:?}, nomination {:?}, connected {connected:?}",
        probe.at,
        nomination.at
    );
}

// ----- Failed waits for the hard side's punching -----

/// A is behind a hard NAT (two servers saw two ports), the peer behind an easy one that never
/// answers. After end-of-candidates and every ordinary check failed (about 20.5 s in the
/// aggressive profile), A's hard-side plan still runs until its `max_duration` (30 s after
/// the decision at 0.5 s): `Failed` comes when the plan ends, not before and not never.
#[test]
fn failed_waits_for_the_hard_sides_punching_to_end() {
    let mut solo = Solo::new(AgentConfig::aggressive(true), &[]);
    solo.bind_sockets = true;
    let now = solo.now;
    for (port, server) in [(40_001, S1), (51_234, S2)] {
        let mapped = std::net::SocketAddr::new("198.51.100.7".parse().unwrap(), port);
        let c = Candidate::server_reflexive(mapped, addr(HOST), addr(server).ip());
        solo.agent.add_local_candidate(now, c).unwrap();
    }
    solo.agent.gather(now);
    let theirs = Candidate::server_reflexive(addr(PEER), addr("10.1.0.2:5000"), addr(S1).ip());
    solo.peer(&[theirs], &[]);
    let start = solo.now;
    solo.run_for(Duration::from_secs(60));
    let checks_failed = solo
        .agent
        .checklist()
        .pairs()
        .iter()
        .all(|p| p.state == holepunch_core::ice::checklist::PairState::Failed);
    assert!(checks_failed);
    let punch_sockets = solo
        .sent
        .iter()
        .filter(|s| s.to == addr(PEER) && s.at > start + Duration::from_secs(10))
        .count();
    assert!(
        punch_sockets > 100,
        "the hard side's refresh rounds went out"
    );
    let failed = solo
        .event_at(|e| matches!(e, IceEvent::Failed))
        .unwrap_or_else(|| panic!("Failed: {:?}", solo.events));
    let plan_end = start + Duration::from_millis(500) + Duration::from_secs(30);
    assert!(
        (plan_end..=plan_end + Duration::from_secs(1)).contains(&failed),
        "failed at {failed:?}, plan ends {plan_end:?}"
    );
}

/// The easy side's counterpart: A probes a hard peer that never lets a probe through. At 50
/// probes/s the plan's 2048 probes would take 41 s, so it ends at its `max_duration` (30 s
/// after the decision at 0.5 s), well after every ordinary check failed: `Failed` comes then.
#[test]
fn failed_waits_for_the_easy_sides_punching_to_end() {
    let mut config = AgentConfig::aggressive(true);
    if let Some(p) = config.punch.as_mut() {
        p.easy.rate = 50;
    }
    let mut solo = Solo::new(config, &[]);
    solo.agent.gather(solo.now);
    let base = addr("10.1.0.2:5000");
    let theirs = [
        Candidate::server_reflexive(addr("198.51.100.20:40001"), base, addr(S1).ip()),
        Candidate::server_reflexive(addr("198.51.100.20:51234"), base, addr(S2).ip()),
    ];
    solo.peer(&theirs, &[]);
    let start = solo.now;
    solo.run_for(Duration::from_secs(60));
    let probes = solo
        .sent
        .iter()
        .filter(|s| !theirs.iter().any(|c| c.address == s.to))
        .count();
    assert!(probes > 1000, "{probes} probes");
    let failed = solo
        .event_at(|e| matches!(e, IceEvent::Failed))
        .unwrap_or_else(|| panic!("Failed: {:?}", solo.events));
    let plan_end = start + Duration::from_millis(500) + Duration::from_secs(30);
    assert!(
        (plan_end..=plan_end + Duration::from_secs(1)).contains(&failed),
        "failed at {failed:?}, plan ends {plan_end:?}"
    );
}

/// Ordinary checks that give up quickly (two sends) fail long before the blind fallback's
/// time (2 s after checks start): `Failed` must wait for it, since the blind punch may still
/// connect, and comes only after the punch it started.
#[test]
fn failed_waits_for_an_armed_blind_punch() {
    let mut config = rfc_with_servers(&[S1]);
    config.check_max_sends = 2;
    config.check_rto = Duration::from_millis(100);
    let mut solo = Solo::new(config, &[(S1, server("198.51.100.7:40001", None))]);
    solo.agent.gather(solo.now);
    solo.run_for(Duration::from_millis(200));
    let theirs = Candidate::server_reflexive(addr(PEER), addr("10.1.0.2:5000"), addr(S1).ip());
    solo.peer(&[theirs], &[]);
    solo.run_for(Duration::from_secs(60));
    let blind = solo
        .event_at(|e| matches!(e, IceEvent::BlindPunching { .. }))
        .unwrap_or_else(|| panic!("a blind punch: {:?}", solo.events));
    let failed = solo
        .event_at(|e| matches!(e, IceEvent::Failed))
        .unwrap_or_else(|| panic!("Failed: {:?}", solo.events));
    assert!(failed > blind, "blind at {blind:?}, failed at {failed:?}");
}

// ----- the deadline names only what can be done -----

/// Six remote candidates that never answer and room for two transactions: checks wait for a
/// slot. While the table is full the agent names the next retransmission or timeout, not the
/// due pacing slot it cannot use (the harness fails on a busy loop), and every pair is still
/// checked as slots free up.
#[test]
fn a_full_transaction_table_is_not_a_busy_loop() {
    let config = AgentConfig {
        max_transactions: 2,
        check_max_sends: 2,
        check_rto: Duration::from_millis(100),
        punch: None,
        ..AgentConfig::rfc(true)
    };
    let mut solo = Solo::new(config, &[]);
    solo.agent.gather(solo.now);
    let dead: Vec<Candidate> = (1..=6)
        .map(|i| Candidate::host(SocketAddr::new(addr(PEER).ip(), 6000 + i), 65535 - i))
        .collect();
    solo.peer(&dead, &[]);
    solo.run_for(Duration::from_secs(5));
    for c in &dead {
        assert_eq!(
            solo.requests_to(c.address).len(),
            1,
            "{:?} checked",
            c.address
        );
    }
    // A check is sent twice, 100 ms apart, and fails 200 ms after its last send: a third
    // check starts only when the first of the two before it has ended.
    let mut starts: Vec<Instant> = dead
        .iter()
        .map(|c| solo.requests_to(c.address)[0])
        .collect();
    starts.sort();
    for w in starts.windows(3) {
        assert!(w[2] - w[0] >= Duration::from_millis(300), "{starts:?}");
    }
}

/// Punch probes never take the last 16 transaction slots (checks and consent must find
/// room): with 18 slots and two checks in flight, the easy side sends no probe and, unable
/// to, does not name the probe's time as its deadline (the harness fails on a busy loop).
#[test]
fn probes_leave_sixteen_slots_and_wait_without_a_busy_loop() {
    let config = AgentConfig {
        max_transactions: 18,
        ..AgentConfig::aggressive(true)
    };
    let mut solo = Solo::new(config, &[]);
    solo.agent.gather(solo.now);
    let base = addr("10.1.0.2:5000");
    let theirs = [
        Candidate::server_reflexive(addr("198.51.100.20:40001"), base, addr(S1).ip()),
        Candidate::server_reflexive(addr("198.51.100.20:51234"), base, addr(S2).ip()),
    ];
    solo.peer(&theirs, &[]);
    // The punch decision is due at 0.5 s; the checks stay in flight for 20 s.
    solo.run_for(Duration::from_secs(5));
    let probes = solo
        .sent
        .iter()
        .filter(|s| !theirs.iter().any(|c| c.address == s.to))
        .count();
    assert_eq!(probes, 0, "no probe while only 16 slots are free");
}

/// The agent remembers the first 16 server answers (a bounded table), not more. A NAT with a
/// pool of public IPs answers 16 servers from A's first mapping and 15 other IPs (a single
/// port on each IP, so the blind fallback still arms); a 17th server then sees the first
/// mapping again. That answer is past the table and proves nothing: both halves. The same
/// answer second in line is remembered: the easy half only.
#[test]
fn only_the_first_sixteen_server_answers_are_remembered() {
    let server = |i: u8| SocketAddr::new(std::net::IpAddr::from([203, 0, 113, 10 + i]), 3478);
    let pool = |i: u8| SocketAddr::new(std::net::IpAddr::from([198, 51, 100, 100 + i]), 40001);
    let mut answers = vec![(server(0), addr(MAPPED))];
    answers.extend((1..16).map(|i| (server(i), pool(i))));
    answers.push((server(16), addr(MAPPED)));
    assert_eq!(blind_punch_halves_with(&answers), (true, true));
    let late = answers.pop().unwrap();
    answers.insert(1, late);
    assert_eq!(blind_punch_halves_with(&answers), (false, true));
}

// ----- nomination and selection among working pairs -----

/// A peer with two host candidates on distinct IPs (distinct foundations): `GOOD` the better,
/// `WORSE` ranked below it.
const GOOD: &str = "198.51.100.30:6000";
const WORSE: &str = "198.51.100.31:6000";

fn two_hosts() -> [Candidate; 2] {
    [
        Candidate::host(addr(GOOD), 65535),
        Candidate::host(addr(WORSE), 100),
    ]
}

/// When each (distinct, by transaction id) Binding request carrying USE-CANDIDATE went to `to`.
fn nominations_to(solo: &Solo, to: SocketAddr) -> Vec<Instant> {
    solo.sent
        .iter()
        .filter(|s| s.to == to && s.msg().find(types::USE_CANDIDATE).is_some())
        .map(|s| s.at)
        .collect()
}

/// Regular nomination waits `nomination_delay` only for a *better* pair still being checked.
/// Here the best pair works first and only a worse one is left waiting or in progress (its
/// peer never answers): the best pair is nominated at once, not `nomination_delay` (500 ms)
/// after it worked.
#[test]
fn regular_nomination_does_not_wait_for_a_worse_pair_still_being_checked() {
    let mut config = AgentConfig::rfc(true);
    config.punch = None;
    let mut solo = Solo::new(config, &[]);
    solo.peer(&two_hosts(), &[GOOD]);
    solo.run_for(Duration::from_secs(2));
    let first_check = *solo.requests_to(addr(GOOD)).first().expect("GOOD checked");
    let worked = first_check + RTT;
    let worse = solo
        .agent
        .checklist()
        .pairs()
        .iter()
        .find(|p| solo.agent.remote_candidates()[p.remote].address == addr(WORSE));
    assert!(
        worse.is_some_and(|p| p.state != holepunch_core::ice::checklist::PairState::Failed),
        "the worse pair is still being checked"
    );
    let nominated = *nominations_to(&solo, addr(GOOD))
        .first()
        .expect("GOOD nominated");
    assert!(
        nominated < worked + Duration::from_millis(100),
        "nominated at {nominated:?}, GOOD worked at {worked:?}"
    );
    let path = solo.agent.selected_path().expect("connected");
    assert_eq!(path.remote, addr(GOOD));
}

/// Aggressive nomination: every check carries USE-CANDIDATE, so a worse pair that answers
/// just after the best one is nominated too. The best pair, proven a moment ago, stays
/// selected: no `PathChanged` to the worse pair.
#[test]
fn a_worse_nomination_does_not_replace_a_freshly_proven_selected_pair() {
    let mut config = AgentConfig::aggressive(true);
    config.punch = None;
    let mut solo = Solo::new(config, &[]);
    solo.peer(&two_hosts(), &[GOOD, WORSE]);
    solo.run_for(Duration::from_secs(3));
    assert!(
        !nominations_to(&solo, addr(WORSE)).is_empty(),
        "the worse pair was nominated too"
    );
    let worse_worked = solo.agent.checklist().pairs().iter().any(|p| {
        solo.agent.remote_candidates()[p.remote].address == addr(WORSE)
            && p.state == holepunch_core::ice::checklist::PairState::Succeeded
    });
    assert!(worse_worked, "the worse pair's nomination was answered");
    assert_eq!(solo.agent.selected_path().unwrap().remote, addr(GOOD));
    assert!(
        solo.event_at(|e| matches!(e, IceEvent::PathChanged(_)))
            .is_none(),
        "{:?}",
        solo.events
    );
}

/// The aggressive profile gives ordinary checks 0.5 s before punching (the default is 1 s):
/// against a hard peer that never answers, the easy side's first probe to a port the peer did
/// not signal goes out half a second after checks started.
#[test]
fn the_aggressive_profile_starts_punching_half_a_second_after_checks_start() {
    let mut solo = Solo::new(AgentConfig::aggressive(true), &[]);
    solo.agent.gather(solo.now);
    let base = addr("10.1.0.2:5000");
    let theirs = [
        Candidate::server_reflexive(addr("198.51.100.20:40001"), base, addr(S1).ip()),
        Candidate::server_reflexive(addr("198.51.100.20:51234"), base, addr(S2).ip()),
    ];
    solo.peer(&theirs, &[]);
    let start = solo.now;
    solo.run_for(Duration::from_secs(3));
    let first_probe = solo
        .sent
        .iter()
        .find(|s| !theirs.iter().any(|c| c.address == s.to))
        .map(|s| s.at)
        .expect("a punch probe");
    let decision = start + Duration::from_millis(500);
    assert!(
        (decision..=decision + Duration::from_millis(50)).contains(&first_probe),
        "first probe at {first_probe:?}, checks started at {start:?}"
    );
}
