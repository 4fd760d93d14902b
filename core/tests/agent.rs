//! The composed `holepunch_core::Agent` in virtual time: a direct path, a path through a TURN
//! relay when the direct one is blocked, application data both ways through `send` and
//! `handle_datagram`, the trust rule for application data, the contract of its verbs, and a
//! steady state (direct or relayed) that allocates nothing.
#![allow(clippy::unwrap_used)] // a panic is the right failure in a test

use std::net::SocketAddr;

use holepunch_core::agent::{Agent, Event, SendError};
use holepunch_core::ice::agent::{AgentConfig, IceEvent, PathInfo};
use holepunch_core::ice::relay::RelayEvent;
use holepunch_core::io::{Datagram, Received, TimerReason};
use holepunch_core::time::{Duration, Instant};
use holepunch_core::turn::{ClientConfig, Server, ServerAction, ServerConfig, Transport, Via};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::allocations;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const A_HOST: &str = "192.0.2.10:5000";
const B_HOST: &str = "198.51.100.20:6000";
const TURN: &str = "203.0.113.5:3478";
/// Where nothing listens: application data from here is not the peer's.
const STRANGER: &str = "203.0.113.66:9999";

/// Two agents, a TURN server both can reach, and whether host-to-host datagrams get through.
struct World {
    a: Agent,
    b: Agent,
    turn: Server,
    turn_addr: SocketAddr,
    next_relay_port: u16,
    direct: bool,
    /// Events seen, while `recording` (outside the measured windows).
    events_a: Vec<Event>,
    events_b: Vec<Event>,
    recording: bool,
    /// Application datagrams delivered to each side, and the last one's sender.
    app_a: usize,
    app_b: usize,
    last_from_a: Option<SocketAddr>,
    last_from_b: Option<SocketAddr>,
}

#[derive(Clone, Copy, PartialEq)]
enum Side {
    A,
    B,
}

impl World {
    /// Agent A controls; with `turn_on_a` it allocates on the TURN server before gathering.
    fn new(now: Instant, direct: bool, turn_on_a: bool) -> World {
        let mut a = Agent::new(AgentConfig::aggressive(true), 1);
        let mut b = Agent::new(AgentConfig::aggressive(false), 2);
        a.add_host_candidate(now, addr(A_HOST)).unwrap();
        b.add_host_candidate(now, addr(B_HOST)).unwrap();
        let turn_addr = addr(TURN);
        if turn_on_a {
            let config = ClientConfig::new(turn_addr, Transport::Udp, "u", "p");
            a.add_turn_server(now, addr(A_HOST), config).unwrap();
        }
        let mut config = ServerConfig::new("test");
        config.users = vec![("u".into(), "p".into())];
        // The test's addresses are documentation ranges the default deny list refuses.
        config.policy.no_default_deny = true;
        World {
            a,
            b,
            turn: Server::new(config, 7),
            turn_addr,
            next_relay_port: 50_000,
            direct,
            events_a: Vec::new(),
            events_b: Vec::new(),
            recording: true,
            app_a: 0,
            app_b: 0,
            last_from_a: None,
            last_from_b: None,
        }
    }

    fn agent(&mut self, side: Side) -> &mut Agent {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    /// Gathers on both sides and exchanges credentials and candidates as signalling would.
    fn signal(&mut self, now: Instant) {
        self.a.gather(now);
        self.b.gather(now);
        let (ca, cb) = (*self.a.local_credentials(), *self.b.local_credentials());
        self.a.set_remote_credentials(&cb);
        self.b.set_remote_credentials(&ca);
    }

    /// Hands a datagram sent by `side` from `from` to `to` to whoever is there.
    fn route(&mut self, now: Instant, side: Side, from: SocketAddr, to: SocketAddr, d: &[u8]) {
        let is_relayed_addr = to.ip() == self.turn_addr.ip() && to.port() >= 50_000;
        if to == self.turn_addr {
            self.turn
                .handle_datagram(now, Via::Client(Transport::Udp), from, d);
        } else if is_relayed_addr {
            self.turn.handle_datagram(now, Via::Relay(to), from, d);
        } else if self.direct {
            let other = if side == Side::A { Side::B } else { Side::A };
            self.deliver(now, other, to, from, d);
        }
    }

    /// Feeds `d` to `side`'s agent as arriving on `local` from `from`.
    fn deliver(&mut self, now: Instant, side: Side, local: SocketAddr, from: SocketAddr, d: &[u8]) {
        if let Received::AppData { from, .. } = self
            .agent(side)
            .handle_datagram(now, Datagram::new(local, from, d))
        {
            match side {
                Side::A => {
                    self.app_a += 1;
                    self.last_from_a = Some(from);
                }
                Side::B => {
                    self.app_b += 1;
                    self.last_from_b = Some(from);
                }
            }
        }
    }

    /// Moves every datagram until nobody has anything to send (zero latency).
    fn pump(&mut self, now: Instant) {
        let mut buf = [0u8; 1500];
        for _ in 0..256 {
            let mut moved = false;
            for side in [Side::A, Side::B] {
                while let Some(t) = self.agent(side).poll_transmit(now, &mut buf) {
                    moved = true;
                    let from = t.from.unwrap();
                    self.route(now, side, from, t.to, &buf[..t.len]);
                }
                while let Some(e) = self.agent(side).poll_event() {
                    if self.recording {
                        match side {
                            Side::A => self.events_a.push(e),
                            Side::B => self.events_b.push(e),
                        }
                    }
                }
            }
            while let Some(action) = self.turn.poll_action() {
                if let ServerAction::BindRelay { id, .. } = action {
                    let bound = SocketAddr::new(self.turn_addr.ip(), self.next_relay_port);
                    self.next_relay_port += 2;
                    self.turn.handle_relay_bound(now, id, Some(bound));
                }
            }
            while let Some(t) = self.turn.poll_transmit(&mut buf) {
                moved = true;
                let from = match t.via {
                    Via::Client(_) => self.turn_addr,
                    Via::Relay(relayed) => relayed,
                };
                let side = if t.to == addr(A_HOST) {
                    Side::A
                } else {
                    Side::B
                };
                self.deliver(now, side, t.to, from, &buf[..t.len]);
            }
            if !moved {
                break;
            }
        }
    }

    /// Runs until `done` or `until`, firing timers as they fall due.
    fn run(&mut self, now: &mut Instant, until: Instant, done: impl Fn(&World) -> bool) {
        for _ in 0..100_000 {
            self.pump(*now);
            if done(self) {
                return;
            }
            let next = [
                self.a.poll_timeout().map(|d| d.at),
                self.b.poll_timeout().map(|d| d.at),
                self.turn.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next.filter(|n| *n <= until) else {
                return;
            };
            *now = next.max(*now);
            self.a.handle_timeout(*now);
            self.b.handle_timeout(*now);
            self.turn.handle_timeout(*now);
        }
    }

    fn connected(&self) -> bool {
        self.a.selected_path().is_some() && self.b.selected_path().is_some()
    }

    /// `side` sends `payload` with `send`; the transmit goes on the wire.
    fn send(&mut self, now: Instant, side: Side, payload: &[u8]) -> Result<(), SendError> {
        let mut out = [0u8; 1500];
        let t = self.agent(side).send(now, payload, &mut out)?;
        self.route(now, side, t.from.unwrap(), t.to, &out[..t.len]);
        self.pump(now);
        Ok(())
    }
}

fn connected_world(direct: bool, turn_on_a: bool) -> (World, Instant) {
    let mut now = Instant::ZERO;
    let mut w = World::new(now, direct, turn_on_a);
    w.signal(now);
    // Trickle: each side's candidates reach the other once gathered.
    w.pump(now);
    exchange_candidates(&mut w, now);
    w.run(&mut now, Instant::ZERO + Duration::from_secs(30), |w| {
        w.connected()
    });
    assert!(w.connected(), "A {:?}\nB {:?}", w.events_a, w.events_b);
    (w, now)
}

/// Signals every local candidate and end-of-candidates from each side to the other.
fn exchange_candidates(w: &mut World, now: Instant) {
    let mut now = now;
    w.run(&mut now, Instant::ZERO + Duration::from_secs(5), |w| {
        gathered(&w.events_a) && gathered(&w.events_b)
    });
    for (from, to) in [(Side::A, Side::B), (Side::B, Side::A)] {
        let events = match from {
            Side::A => w.events_a.clone(),
            Side::B => w.events_b.clone(),
        };
        for e in events {
            if let Event::Ice(IceEvent::LocalCandidate(c)) = e {
                w.agent(to).add_remote_candidate(now, c).unwrap();
            }
        }
        w.agent(to).end_of_remote_candidates();
    }
}

fn gathered(events: &[Event]) -> bool {
    events
        .iter()
        .any(|e| matches!(e, Event::Ice(IceEvent::GatheringComplete)))
}

fn path(w: &World, side: Side) -> PathInfo {
    match side {
        Side::A => w.a.selected_path().unwrap(),
        Side::B => w.b.selected_path().unwrap(),
    }
}

#[test]
fn a_direct_path_carries_application_data_both_ways() {
    let (mut w, now) = connected_world(true, false);
    assert!(!path(&w, Side::A).relayed);
    w.send(now, Side::A, b"hello").unwrap();
    w.send(now, Side::B, b"world").unwrap();
    assert_eq!((w.app_a, w.app_b), (1, 1));
    assert_eq!(w.last_from_b, Some(addr(A_HOST)));
    assert_eq!(w.last_from_a, Some(addr(B_HOST)));
    assert!(w.b.is_authenticated_remote(addr(A_HOST)));
    assert!(!w.b.is_authenticated_remote(addr(STRANGER)));
}

#[test]
fn with_the_direct_path_blocked_the_relay_carries_data_both_ways() {
    let (mut w, now) = connected_world(false, true);
    let allocated = w
        .events_a
        .iter()
        .find_map(|e| match e {
            Event::Relay(RelayEvent::Allocated { relayed, .. }) => Some(*relayed),
            _ => None,
        })
        .expect("A's relay was allocated");
    assert!(path(&w, Side::A).relayed, "{:?}", path(&w, Side::A));
    assert_eq!(path(&w, Side::A).local, allocated);
    // B sees A at the relayed address: that is where it answers.
    assert_eq!(path(&w, Side::B).remote, allocated);
    w.send(now, Side::A, b"through the relay").unwrap();
    w.send(now, Side::B, b"and back").unwrap();
    assert_eq!((w.app_a, w.app_b), (1, 1), "A {:?}", w.events_a);
    assert_eq!(w.last_from_b, Some(allocated));
    // Data through our own relay comes out as from the peer, as if it arrived on the relayed
    // candidate: the driver needs no TURN knowledge.
    assert_eq!(w.last_from_a, Some(addr(B_HOST)));
    assert!(w.a.is_authenticated_remote(addr(B_HOST)));
}

#[test]
fn send_refuses_before_a_path_and_what_the_peer_would_take_for_stun() {
    let now = Instant::ZERO;
    let mut w = World::new(now, true, false);
    let mut out = [0u8; 1500];
    assert_eq!(
        w.a.send(now, b"early", &mut out),
        Err(SendError::NotConnected)
    );
    let (mut w, now) = connected_world(true, false);
    assert_eq!(
        w.a.send(now, &[1, 2, 3], &mut out),
        Err(SendError::LooksLikeStun)
    );
    let mut small = [0u8; 4];
    assert_eq!(
        w.a.send(now, b"too long", &mut small),
        Err(SendError::BufferTooSmall)
    );
}

#[test]
fn application_data_from_a_stranger_is_delivered_but_not_authenticated() {
    let (mut w, now) = connected_world(true, false);
    let r =
        w.b.handle_datagram(now, Datagram::new(addr(B_HOST), addr(STRANGER), b"spoofed"));
    assert!(matches!(r, Received::AppData { .. }));
    assert!(!w.b.is_authenticated_remote(addr(STRANGER)));
}

#[test]
fn poll_timeout_is_now_while_output_waits_and_names_the_relay_while_allocating() {
    let now = Instant::ZERO + Duration::from_secs(3);
    let mut w = World::new(now, true, true);
    // The Allocate request waits to be sent: due now, whoever's it is.
    let due = w.a.poll_timeout().unwrap();
    assert!(due.at <= now, "{due:?}");
    let mut buf = [0u8; 1500];
    while w.a.poll_transmit(now, &mut buf).is_some() {}
    while w.a.poll_event().is_some() {}
    // Sent and unanswered: its retransmission is the next thing the agent needs.
    let due = w.a.poll_timeout().unwrap();
    assert_eq!(due.reason, TimerReason::Relay, "{due:?}");
    assert!(due.at > now);
    // A peer's check arrives: its answer waits, so the deadline is `now` until it is polled.
    let later = now + Duration::from_millis(10);
    let (mut w, _) = (World::new(later, true, false), ());
    w.signal(later);
    exchange_candidates(&mut w, later);
    let check = loop {
        let t = w.a.poll_transmit(later, &mut buf).expect("A checks B");
        if t.to == addr(B_HOST) {
            break t;
        }
    };
    let r = w.b.handle_datagram(
        later,
        Datagram::new(addr(B_HOST), addr(A_HOST), &buf[..check.len]),
    );
    assert_eq!(r, Received::Consumed);
    let due = w.b.poll_timeout().unwrap();
    assert_eq!((due.at, due.reason), (later, TimerReason::OutputPending));
    // Polling outputs never moves it past what is left; once drained it is later.
    while w.b.poll_event().is_some() {}
    let answer = w.b.poll_transmit(later, &mut buf).expect("the answer");
    assert_eq!(answer.to, addr(A_HOST));
}

#[test]
fn any_call_order_is_safe() {
    let now = Instant::ZERO;
    let mut a = Agent::new(AgentConfig::aggressive(true), 3);
    let mut buf = [0u8; 1500];
    // Outputs and timers before any input, a datagram before gathering, inputs twice.
    assert!(a.poll_transmit(now, &mut buf).is_none());
    assert!(a.poll_event().is_none());
    assert!(a.poll_action().is_none());
    a.handle_timeout(now);
    let r = a.handle_datagram(now, Datagram::new(addr(A_HOST), addr(B_HOST), b"x"));
    assert!(matches!(r, Received::AppData { .. }));
    let r = a.handle_datagram(
        now,
        Datagram::new(addr(A_HOST), addr(TURN), &[0x40, 0, 0, 0]),
    );
    assert!(
        matches!(r, Received::AppData { .. }),
        "not our relay: the app's"
    );
    a.end_of_remote_candidates();
    a.gather(now);
    a.gather(now);
    a.handle_timeout(now);
    a.close(now);
    a.restart(now);
    assert!(a.selected_path().is_none());
}

/// Two minutes of application data both ways every 20 ms, with consent checks and their
/// answers, after connecting (`direct`, or through A's relay): nothing allocated.
fn steady_state_allocates_nothing(direct: bool) {
    let (mut w, mut now) = connected_world(direct, !direct);
    assert_eq!(path(&w, Side::A).relayed, !direct);
    // Let the path settle (nomination, the first consent round) before measuring.
    let settle = now + Duration::from_secs(10);
    w.run(&mut now, settle, |_| false);
    now = settle;
    w.recording = false;
    let (before_a, before_b) = (w.app_a, w.app_b);
    let end = now + Duration::from_secs(120);
    let (count, ()) = allocations(|| {
        while now < end {
            w.send(now, Side::A, b"ping from a").unwrap();
            w.send(now, Side::B, b"pong from b").unwrap();
            let step = now + Duration::from_millis(20);
            w.run(&mut now, step, |_| false);
            now = step;
            w.a.handle_timeout(now);
            w.b.handle_timeout(now);
            w.turn.handle_timeout(now);
        }
    });
    assert_eq!(w.app_a - before_a, 6000);
    assert_eq!(w.app_b - before_b, 6000);
    assert!(w.connected(), "consent held");
    assert_eq!(count, 0, "allocations in the steady state");
}

#[test]
fn the_direct_steady_state_allocates_nothing() {
    steady_state_allocates_nothing(true);
}

#[test]
fn the_relayed_steady_state_allocates_nothing() {
    steady_state_allocates_nothing(false);
}

/// A thousand checks from a thousand addresses arrive before anything is polled: every one is
/// answered, and `poll_timeout` says `now` until the last answer went out.
#[test]
fn a_thousand_queued_answers_without_pumping_are_all_sent() {
    use holepunch_core::ice::credentials::IceCredentials;
    use holepunch_core::stun::{
        Attribute, Class, IntegrityKey, Message, MessageBuilder, Method, TransactionId,
    };
    let now = Instant::from_millis(1000);
    let mut b = Agent::new(AgentConfig::rfc(false), 2);
    b.add_host_candidate(now, addr(B_HOST)).unwrap();
    let peer = IceCredentials::new("peerufrag", "peerpassword1234567890abcd").unwrap();
    b.set_remote_credentials(&peer);
    let username = format!("{}:{}", b.local_credentials().ufrag(), peer.ufrag());
    let key = IntegrityKey::short_term(b.local_credentials().pwd().as_bytes());
    let mut buf = [0u8; 512];
    for i in 0..1000u32 {
        let mut tid = [0u8; 12];
        tid[..4].copy_from_slice(&i.to_be_bytes());
        let mut m = MessageBuilder::new(
            &mut buf,
            Class::Request,
            Method::BINDING,
            TransactionId(tid),
        )
        .unwrap();
        m.add(&Attribute::Username(&username)).unwrap();
        m.add(&Attribute::Priority(0x6e00_01ff)).unwrap();
        m.add(&Attribute::IceControlling(7)).unwrap();
        m.add_message_integrity(&key).unwrap();
        m.add_fingerprint().unwrap();
        let len = m.finish();
        let from = SocketAddr::from(([198, 51, 100, 7], 10_000 + i as u16));
        let d = Datagram::new(addr(B_HOST), from, &buf[..len]);
        assert_eq!(b.handle_datagram(now, d), Received::Consumed);
    }
    let mut answered = std::collections::HashSet::new();
    let mut out = [0u8; 1500];
    while let Some(t) = b.poll_transmit(now, &mut out) {
        let msg = Message::parse(&out[..t.len]).unwrap();
        if msg.class() == Class::SuccessResponse {
            answered.insert(msg.transaction_id());
            if answered.len() < 1000 {
                assert_eq!(
                    b.poll_timeout().map(|d| d.at),
                    Some(now),
                    "answers still wait"
                );
            }
        }
    }
    assert_eq!(answered.len(), 1000, "every check answered, none dropped");
    assert_eq!(b.stats().responses_dropped, 0);
}

// ----- netcheck inside the agent -----

use std::collections::HashMap;

use holepunch_core::netcheck::{Behaviour, NetcheckConfig, Report};
use holepunch_core::stun::server::{Server as StunServer, ServerConfig as StunServerConfig};

#[path = "support/pump.rs"]
mod pump;

/// Netcheck's second (filtering) socket, beside A's ICE host socket (its mapping socket).
const A_SECOND: &str = "192.0.2.10:5001";
/// Core's own RFC 5780 STUN server: primary and alternate address.
const STUN_PRIMARY: &str = "203.0.113.3:3478";
const STUN_ALTERNATE: &str = "203.0.113.4:3479";
/// The public IP of the NAT in front of A.
const NAT_IP: [u8; 4] = [198, 51, 100, 99];
const NC_ONE_WAY: Duration = Duration::from_millis(10);

/// Agent A behind an address-and-port-dependent mapping NAT (a new public port for every local
/// socket and destination) that filters nothing and does not hairpin, with core's RFC 5780
/// STUN server on the public side.
struct Measured {
    agent: Agent,
    server: StunServer,
    /// (local socket, destination) → public address.
    mappings: HashMap<(SocketAddr, SocketAddr), SocketAddr>,
    wire: pump::Wire,
    now: Instant,
    /// Every datagram A sent: (time, from, to).
    sent: Vec<(Instant, SocketAddr, SocketAddr)>,
    reports: Vec<Report>,
}

impl Measured {
    /// A with one host candidate and a netcheck run started at `start` on it and a second
    /// socket.
    fn new(start: Instant) -> Measured {
        let mut agent = Agent::new(AgentConfig::aggressive(true), 5);
        agent.add_host_candidate(start, addr(A_HOST)).unwrap();
        let locals = vec![addr(A_HOST), addr(A_SECOND)];
        agent
            .start_netcheck(start, NetcheckConfig::new(vec![addr(STUN_PRIMARY)], locals))
            .unwrap();
        let config = StunServerConfig::rfc5780(addr(STUN_PRIMARY), addr(STUN_ALTERNATE));
        Measured {
            agent,
            server: StunServer::new(config).unwrap(),
            mappings: HashMap::new(),
            wire: pump::Wire::default(),
            now: start,
            sent: Vec::new(),
            reports: Vec::new(),
        }
    }

    /// Runs until `until`; with `extra_polls`, every output is polled again and again after
    /// each drain, as an impatient driver would.
    fn run_until(&mut self, until: Instant, extra_polls: bool) {
        let mut buf = [0u8; 1500];
        for _ in 0..100_000 {
            while let Some(t) = self.agent.poll_transmit(self.now, &mut buf) {
                let from = t.from.unwrap();
                self.sent.push((self.now, from, t.to));
                let next_port = 40_000 + self.mappings.len() as u16;
                let public = *self
                    .mappings
                    .entry((from, t.to))
                    .or_insert_with(|| SocketAddr::from((NAT_IP, next_port)));
                // No hairpinning: a datagram to the NAT's own address is lost.
                if t.to.ip() != public.ip() {
                    let bytes = buf[..t.len].to_vec();
                    self.wire
                        .send(self.now + NC_ONE_WAY, 1, public, t.to, bytes);
                }
            }
            while let Some(e) = self.agent.poll_event() {
                if let Event::NatReport(r) = e {
                    self.reports.push(*r);
                }
            }
            if extra_polls {
                for _ in 0..3 {
                    assert!(self.agent.poll_transmit(self.now, &mut buf).is_none());
                    assert!(self.agent.poll_event().is_none());
                    let _ = self.agent.poll_timeout();
                }
            }
            let next = [self.agent.poll_timeout().map(|d| d.at), self.wire.next_at()]
                .into_iter()
                .flatten()
                .min();
            let Some(next) = next.filter(|n| *n <= until) else {
                return;
            };
            self.now = next.max(self.now);
            while let Some(f) = self.wire.pop_due(self.now) {
                self.deliver(f);
            }
            self.agent.handle_timeout(self.now);
        }
        panic!("the run did not settle");
    }

    fn deliver(&mut self, f: pump::Flight) {
        let now = self.now;
        if f.to_side == 1 {
            let d = Datagram::new(f.to, f.from, &f.bytes);
            self.server.handle_datagram(now, d);
            let mut out = [0u8; 1500];
            while let Some(t) = self.server.poll_transmit(now, &mut out) {
                let bytes = out[..t.len].to_vec();
                let from = t.from.unwrap_or(f.to);
                self.wire.send(now + NC_ONE_WAY, 0, from, t.to, bytes);
            }
            return;
        }
        // Endpoint-independent filtering: any sender reaches a mapping's local socket.
        let Some(&(local, _)) = self.mappings.iter().find(|(_, p)| **p == f.to).map(|m| m.0) else {
            return;
        };
        let r = self
            .agent
            .handle_datagram(now, Datagram::new(local, f.from, &f.bytes));
        assert_eq!(r, Received::Consumed, "netcheck's answers are netcheck's");
    }
}

/// Issue 9: netcheck is a sub-machine of the composed agent. A run started with
/// `start_netcheck` on the agent's sockets measures the NAT against core's own STUN server,
/// its report comes out as an event, and the punch planner uses the measured mapping without
/// the caller handing it in.
#[test]
fn a_netcheck_run_inside_the_agent_feeds_the_punch_planner() {
    let start = Instant::from_millis(500);
    let mut m = Measured::new(start);
    assert_eq!(m.agent.ice().local_mapping(), Behaviour::Unknown);
    m.run_until(start + Duration::from_secs(10), false);
    assert_eq!(m.reports.len(), 1, "one report: {:?}", m.reports);
    let report = &m.reports[0];
    assert!(report.udp);
    assert_eq!(report.mapping, Behaviour::AddressAndPortDependent);
    assert_eq!(report.filtering, Behaviour::EndpointIndependent);
    assert_eq!(
        report.public_v4.map(|p| p.ip()),
        Some(SocketAddr::from((NAT_IP, 0)).ip())
    );
    assert_eq!(
        m.agent.ice().local_mapping(),
        Behaviour::AddressAndPortDependent,
        "the planner has the measured mapping"
    );
    // The run's requests left from the sockets it was given, the first at its start.
    assert_eq!(m.sent.first().map(|s| s.0), Some(start));
    assert!(
        m.sent
            .iter()
            .all(|s| [addr(A_HOST), addr(A_SECOND)].contains(&s.1))
    );
    assert_eq!(m.agent.stats().netcheck_reports_dropped, 0);
    // Done: nothing more to do for netcheck.
    assert!(
        m.agent
            .poll_timeout()
            .is_none_or(|d| d.reason != TimerReason::Netcheck)
    );
}

/// Issue 9: no output call changes timing. A driver that polls `poll_transmit`,
/// `poll_event` and `poll_timeout` again and again sees netcheck send exactly when one that
/// polls once does.
#[test]
fn extra_polls_do_not_move_netcheck_sends() {
    let start = Instant::from_millis(500);
    let mut once = Measured::new(start);
    once.run_until(start + Duration::from_secs(10), false);
    let mut eager = Measured::new(start);
    // Polled before the first step, and after every step.
    let _ = eager.agent.poll_timeout();
    let _ = eager.agent.poll_event();
    eager.run_until(start + Duration::from_secs(10), true);
    assert!(!once.sent.is_empty());
    assert_eq!(once.sent, eager.sent, "same sends at the same times");
    assert_eq!(once.reports, eager.reports);
}
