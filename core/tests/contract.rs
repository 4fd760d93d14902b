//! The sans-IO contract every state machine keeps (design.md §4), as tests that fail on a
//! machine that breaks it: calls in any order, a datagram before the first timeout, no work
//! lost to a hidden cap, and a deadline of `now` while output waits to be polled.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::net::SocketAddr;

use holepunch_core::ice::agent::{Agent, AgentConfig};
use holepunch_core::ice::credentials::IceCredentials;
use holepunch_core::io::{Datagram, Received, TimerReason};
use holepunch_core::netcheck::{Netcheck, NetcheckConfig};
use holepunch_core::stun::{
    Attribute, Class, IntegrityKey, Message, MessageBuilder, Method, TransactionId,
};
use holepunch_core::time::{Duration, Instant};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const B_HOST: &str = "10.0.0.2:5000";

/// Agent B (controlled) with a host candidate and the peer's credentials, and the peer's.
fn controlled_agent(now: Instant) -> (Agent, IceCredentials) {
    let mut b = Agent::new(AgentConfig::rfc(false), 2);
    b.add_host_candidate(now, addr(B_HOST)).unwrap();
    let peer = IceCredentials::new("peerufrag", "peerpassword1234567890abcd").unwrap();
    b.set_remote_credentials(&peer);
    (b, peer)
}

/// A connectivity check to `b` as its peer would send it.
fn check(b: &Agent, peer: &IceCredentials, id: u32, out: &mut [u8]) -> usize {
    let username = format!("{}:{}", b.local_credentials().ufrag(), peer.ufrag());
    let key = IntegrityKey::short_term(b.local_credentials().pwd().as_bytes());
    let mut tid = [0u8; 12];
    tid[..4].copy_from_slice(&id.to_be_bytes());
    let mut m =
        MessageBuilder::new(out, Class::Request, Method::BINDING, TransactionId(tid)).unwrap();
    m.add(&Attribute::Username(&username)).unwrap();
    m.add(&Attribute::Priority(0x6e00_01ff)).unwrap();
    m.add(&Attribute::IceControlling(7)).unwrap();
    m.add_message_integrity(&key).unwrap();
    m.add_fingerprint().unwrap();
    m.finish()
}

#[test]
fn a_thousand_queued_responses_without_pumping_are_all_sent() {
    let now = Instant::from_millis(1000);
    let (mut b, peer) = controlled_agent(now);
    let mut buf = [0u8; 512];
    for i in 0..1000u32 {
        let len = check(&b, &peer, i, &mut buf);
        let from = SocketAddr::from(([198, 51, 100, 7], 10_000 + i as u16));
        let d = Datagram::new(addr(B_HOST), from, &buf[..len]);
        assert_eq!(b.handle_datagram(now, d), Received::Consumed);
    }
    let mut answered = HashSet::new();
    let mut out = [0u8; 1500];
    while let Some(t) = b.poll_transmit(now, &mut out) {
        let msg = Message::parse(&out[..t.len]).unwrap();
        if msg.class() == Class::SuccessResponse {
            answered.insert(msg.transaction_id());
        }
    }
    assert_eq!(answered.len(), 1000, "every check answered, none dropped");
    assert_eq!(b.stats().responses_dropped, 0);
}

#[test]
fn a_full_response_queue_counts_what_it_drops() {
    let now = Instant::from_millis(1000);
    let mut config = AgentConfig::rfc(false);
    config.max_pending_responses = 4;
    let mut b = Agent::new(config, 2);
    b.add_host_candidate(now, addr(B_HOST)).unwrap();
    let peer = IceCredentials::new("peerufrag", "peerpassword1234567890abcd").unwrap();
    b.set_remote_credentials(&peer);
    let mut buf = [0u8; 512];
    for i in 0..10u32 {
        let len = check(&b, &peer, i, &mut buf);
        let d = Datagram::new(addr(B_HOST), addr("198.51.100.7:9"), &buf[..len]);
        b.handle_datagram(now, d);
    }
    assert_eq!(b.stats().responses_dropped, 6);
}

#[test]
fn poll_timeout_is_now_while_output_is_pending() {
    let t0 = Instant::from_millis(2500);
    let mut a = Agent::new(AgentConfig::rfc(true), 1);
    // The host candidate's event waits to be polled: the deadline is now, not later.
    a.add_host_candidate(t0, addr("10.0.0.1:5000")).unwrap();
    assert_eq!(a.poll_timeout(), Some(t0));
    assert_eq!(
        a.poll_deadline().map(|d| d.reason),
        Some(TimerReason::OutputPending)
    );
    while a.poll_event().is_some() {}
    assert_eq!(a.poll_timeout(), None, "nothing scheduled, nothing pending");

    // A response waits to be sent.
    let t1 = t0 + Duration::from_millis(300);
    let (mut b, peer) = controlled_agent(t0);
    while b.poll_event().is_some() {}
    let mut buf = [0u8; 512];
    let len = check(&b, &peer, 1, &mut buf);
    let d = Datagram::new(addr(B_HOST), addr("198.51.100.7:9"), &buf[..len]);
    b.handle_datagram(t1, d);
    while b.poll_event().is_some() {}
    assert_eq!(b.poll_timeout(), Some(t1));
    // Reading the deadline changes nothing; polling the output is what clears it.
    assert_eq!(b.poll_timeout(), Some(t1));
}

#[test]
fn agent_calls_are_safe_in_any_order() {
    // Outputs before any input, inputs before credentials, timeouts before candidates.
    let t0 = Instant::from_millis(10);
    let mut out = [0u8; 1500];
    let mut a = Agent::new(AgentConfig::rfc(true), 1);
    assert_eq!(a.poll_transmit(t0, &mut out), None);
    assert_eq!(a.poll_event(), None);
    assert_eq!(a.poll_action(), None);
    assert_eq!(a.poll_timeout(), None);
    a.handle_timeout(t0);
    a.gather(t0);
    let d = Datagram::new(addr("10.0.0.1:5000"), addr("198.51.100.7:9"), &[0, 1, 0, 0]);
    assert_eq!(a.handle_datagram(t0, d), Received::Unrecognized);
    a.add_host_candidate(t0, addr("10.0.0.1:5000")).unwrap();
    a.end_of_remote_candidates();
    // Whatever came first, the agent's deadline never lies in the past of what it was told.
    while a.poll_event().is_some() {}
    while a.poll_transmit(t0, &mut out).is_some() {}
    assert!(a.poll_timeout().is_none_or(|t| t >= t0));
}

#[test]
fn netcheck_takes_a_datagram_before_its_first_timeout() {
    let locals = vec![addr("192.168.1.2:5000"), addr("192.168.1.2:5001")];
    let server = addr("203.0.113.3:3478");
    let mut nc = Netcheck::new(NetcheckConfig::new(vec![server], locals.clone()), 1).unwrap();
    let t0 = Instant::from_millis(1000);
    // A stray datagram is the first input: it starts the run, at its time.
    let d = [0u8; 20];
    let _ = nc.handle_datagram(t0, Datagram::new(locals[0], server, &d));
    assert_eq!(
        nc.poll_timeout(),
        Some(t0),
        "the run's first sends are due now"
    );
    let mut out = [0u8; 1280];
    assert!(nc.poll_transmit(t0, &mut out).is_some());
}

// The other machines: the STUN client and server, netcheck's lifetime probe, the TURN client
// and the port-mapping client speak the same verbs and keep the same promises.

use holepunch_core::netcheck::{LifetimeConfig, LifetimeProbe};
use holepunch_core::portmap::client::{Client as PortmapClient, ClientConfig as PortmapConfig};
use holepunch_core::portmap::client::{PortmapEvent, Protocols};
use holepunch_core::portmap::{Protocol, RetryPolicy};
use holepunch_core::rng::Rng;
use holepunch_core::stun::client::{BindingOptions, Client as StunClient, ClientConfig};
use holepunch_core::stun::server::{Server, ServerConfig};
use holepunch_core::turn::{Client as TurnClient, ClientConfig as TurnConfig, Transport};

const SERVER: &str = "203.0.113.3:3478";
const ME: &str = "192.168.1.2:5000";

/// A Binding success answering `request`, mapping to `mapped`.
fn binding_success(request: &[u8], mapped: SocketAddr, out: &mut [u8]) -> usize {
    let req = Message::parse(request).unwrap();
    let mut m = MessageBuilder::new(
        out,
        Class::SuccessResponse,
        Method::BINDING,
        req.transaction_id(),
    )
    .unwrap();
    m.add(&Attribute::XorMappedAddress(mapped)).unwrap();
    m.add_fingerprint().unwrap();
    m.finish()
}

#[test]
fn stun_client_deadline_is_now_while_its_event_waits() {
    let t0 = Instant::from_millis(100);
    let mut c = StunClient::new(ClientConfig::default(), 3);
    c.binding(t0, addr(SERVER), BindingOptions::default())
        .unwrap();
    let mut out = [0u8; 1280];
    let t = c.poll_transmit(t0, &mut out).unwrap();
    let mut resp = [0u8; 256];
    let len = binding_success(&out[..t.len], addr("198.51.100.1:40000"), &mut resp);
    let t1 = t0 + Duration::from_millis(40);
    let d = Datagram::new(addr(ME), addr(SERVER), &resp[..len]);
    assert_eq!(c.handle_datagram(t1, d), Received::Consumed);
    // The transaction is over but its event is unpolled: a loop that sleeps until the
    // deadline must not sleep on it.
    let deadline = c.poll_deadline().expect("output pending");
    assert_eq!(
        (deadline.at, deadline.reason),
        (t1, TimerReason::OutputPending)
    );
    assert_eq!(c.poll_timeout(), Some(t1), "reading it changes nothing");
    assert!(c.poll_event().is_some());
    assert_eq!(c.poll_timeout(), None, "idle once the event is taken");
}

#[test]
fn stun_client_calls_are_safe_in_any_order() {
    let t0 = Instant::from_millis(7);
    let mut c = StunClient::new(ClientConfig::default(), 3);
    let mut out = [0u8; 1280];
    // Outputs first, then a datagram before any timeout, then a timeout.
    assert_eq!(c.poll_transmit(t0, &mut out), None);
    assert_eq!(c.poll_event(), None);
    assert_eq!(c.poll_deadline(), None);
    let stray = [0u8, 1, 0, 0];
    let d = Datagram::new(addr(ME), addr(SERVER), &stray);
    assert_eq!(c.handle_datagram(t0, d), Received::Unrecognized);
    let app = Datagram::new(addr(ME), addr(SERVER), b"hello");
    assert_eq!(
        c.handle_datagram(t0, app),
        Received::AppData {
            from: addr(SERVER),
            payload: b"hello"
        }
    );
    c.handle_timeout(t0);
    assert_eq!(c.poll_deadline(), None);
    // A request started after all that goes out at once.
    c.binding(t0, addr(SERVER), BindingOptions::default())
        .unwrap();
    assert_eq!(c.poll_timeout(), Some(t0));
    assert!(c.poll_transmit(t0, &mut out).is_some());
}

/// A Binding request from a client, with transaction id `id`.
fn binding_request(id: u32, out: &mut [u8]) -> usize {
    let mut tid = [0u8; 12];
    tid[..4].copy_from_slice(&id.to_be_bytes());
    let mut m =
        MessageBuilder::new(out, Class::Request, Method::BINDING, TransactionId(tid)).unwrap();
    m.add_fingerprint().unwrap();
    m.finish()
}

#[test]
fn stun_server_answers_a_thousand_queued_requests_without_pumping() {
    let primary = addr(SERVER);
    let mut srv = Server::new(ServerConfig::new(primary)).unwrap();
    let t0 = Instant::from_millis(50);
    let mut buf = [0u8; 64];
    for i in 0..1000u32 {
        let len = binding_request(i, &mut buf);
        let from = SocketAddr::from(([198, 51, 100, 7], 10_000 + i as u16));
        let d = Datagram::new(primary, from, &buf[..len]);
        assert_eq!(srv.handle_datagram(t0, d), Received::Consumed);
    }
    let deadline = srv.poll_deadline().expect("answers wait");
    assert_eq!(
        (deadline.at, deadline.reason),
        (t0, TimerReason::OutputPending)
    );
    let mut answered = HashSet::new();
    let mut out = [0u8; 1280];
    while let Some(t) = srv.poll_transmit(t0, &mut out) {
        let msg = Message::parse(&out[..t.len]).unwrap();
        assert_eq!(msg.class(), Class::SuccessResponse);
        assert_eq!(msg.reflexive_address().unwrap().unwrap(), t.to);
        answered.insert(msg.transaction_id());
    }
    assert_eq!(answered.len(), 1000, "every request answered, none dropped");
    assert_eq!(srv.stats().queue_full, 0);
    assert_eq!(srv.poll_timeout(), None, "nothing left");
}

#[test]
fn stun_server_counts_requests_a_full_queue_drops() {
    let primary = addr(SERVER);
    let config = ServerConfig {
        max_pending: 4,
        ..ServerConfig::new(primary)
    };
    let mut srv = Server::new(config).unwrap();
    let mut buf = [0u8; 64];
    for i in 0..10u32 {
        let len = binding_request(i, &mut buf);
        let d = Datagram::new(primary, addr("198.51.100.7:9"), &buf[..len]);
        srv.handle_datagram(Instant::ZERO, d);
    }
    assert_eq!(srv.stats().queue_full, 6);
    let mut out = [0u8; 1280];
    let mut sent = 0;
    while srv.poll_transmit(Instant::ZERO, &mut out).is_some() {
        sent += 1;
    }
    assert_eq!(sent, 4, "the first four, answered");
}

#[test]
fn stun_server_calls_are_safe_in_any_order() {
    let primary = addr(SERVER);
    let mut srv = Server::new(ServerConfig::new(primary)).unwrap();
    let mut out = [0u8; 1280];
    assert_eq!(srv.poll_transmit(Instant::ZERO, &mut out), None);
    assert_eq!(srv.poll_deadline(), None);
    srv.handle_timeout(Instant::from_millis(3));
    let mut buf = [0u8; 64];
    let len = binding_request(1, &mut buf);
    let d = Datagram::new(primary, addr("198.51.100.7:9"), &buf[..len]);
    // Time may even step back between inputs: the answer still goes out.
    assert_eq!(srv.handle_datagram(Instant::ZERO, d), Received::Consumed);
    assert_eq!(srv.poll_timeout(), Some(Instant::from_millis(3)));
    assert!(srv.poll_transmit(Instant::ZERO, &mut out).is_some());
}

#[test]
fn lifetime_probe_takes_a_datagram_before_its_first_timeout() {
    let server = addr(SERVER);
    let prober = addr("192.168.1.2:6000");
    let mapping: Vec<SocketAddr> = (0..16)
        .map(|i| SocketAddr::from(([192, 168, 1, 2], 6001 + i)))
        .collect();
    let mut probe = LifetimeProbe::new(LifetimeConfig::new(server, prober, mapping), 1).unwrap();
    let t0 = Instant::from_millis(900);
    let stray = [0u8; 20];
    let d = Datagram::new(prober, server, &stray);
    assert_eq!(probe.handle_datagram(t0, d), Received::Unrecognized);
    assert_eq!(
        probe.poll_timeout(),
        Some(t0),
        "the run's first sends are due now"
    );
    let mut out = [0u8; 256];
    assert!(probe.poll_transmit(t0, &mut out).is_some());
}

#[test]
fn turn_client_deadline_is_now_while_its_event_waits() {
    let t0 = Instant::from_millis(30);
    let config = TurnConfig::new(addr(SERVER), Transport::Udp, "alice", "secret");
    let mut c = TurnClient::new(config, 5);
    let mut out = [0u8; 1280];
    // Outputs and a datagram before anything started: harmless.
    assert_eq!(c.poll_transmit(t0, &mut out), None);
    assert_eq!(c.poll_deadline(), None);
    let stray = [0u8, 1, 0, 0];
    let _ = c.handle_datagram(t0, Datagram::new(addr(ME), addr(SERVER), &stray));
    // Closing an allocation never made reports Deallocated: the deadline is now until polled.
    c.close(t0);
    let deadline = c.poll_deadline().expect("the event waits");
    assert_eq!(
        (deadline.at, deadline.reason),
        (t0, TimerReason::OutputPending)
    );
    assert!(c.poll_event().is_some());
    assert_eq!(c.poll_deadline(), None);
}

fn portmap_config(protocols: Protocols) -> PortmapConfig {
    PortmapConfig {
        gateway: std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 168, 1, 1)),
        client_ip: std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 168, 1, 2)),
        protocol: Protocol::Udp,
        internal_port: 48000,
        suggested_external_port: 48000,
        lifetime: Duration::from_secs(600),
        protocols,
        retry: RetryPolicy::default(),
    }
}

#[test]
fn portmap_client_deadline_is_now_while_output_waits() {
    let t0 = Instant::from_millis(20);
    let mut rng = Rng::from_seed(1);
    // Its first requests wait to be sent.
    let mut c = PortmapClient::new(t0, &mut rng, portmap_config(Protocols::ALL));
    assert_eq!(c.poll_timeout(), Some(t0));
    let mut out = [0u8; 1280];
    while c.poll_transmit(t0, &mut out).is_some() {}
    assert!(
        c.poll_timeout().is_some_and(|t| t > t0),
        "then the retransmission"
    );
    // A client with nothing to try fails at once: its event waits.
    let none = Protocols {
        pcp: false,
        natpmp: false,
    };
    let c = PortmapClient::new(t0, &mut rng, portmap_config(none));
    assert_eq!(
        c.poll_deadline().map(|d| (d.at, d.reason)),
        Some((t0, TimerReason::OutputPending))
    );
    let mut c = c;
    assert!(matches!(c.poll_event(), Some(PortmapEvent::Failed(_))));
    assert_eq!(c.poll_timeout(), None);
}

/// When netcheck and the lifetime probe send is set by their inputs alone: polling outputs
/// before the first input (as a driver that drains first does) starts nothing, so a driver
/// that polls at 0 ms and first feeds a timeout at 300 ms sees the same sends, at the same
/// times, as one that only feeds the timeout.
#[test]
fn polling_before_the_first_input_changes_no_send_time() {
    /// The (time, from, to) of every send in the first second of a run whose first input is
    /// a timeout at 300 ms, with or without polling at 0 ms first.
    fn sends(
        mut poll: impl FnMut(Instant, &mut [u8]) -> Option<holepunch_core::io::Transmit>,
        mut timeout: impl FnMut(Instant),
        early_polls: bool,
    ) -> Vec<(Instant, SocketAddr)> {
        let mut out = [0u8; 1280];
        let mut log = Vec::new();
        if early_polls {
            while let Some(t) = poll(Instant::ZERO, &mut out) {
                log.push((Instant::ZERO, t.to));
            }
        }
        for ms in (300..1300).step_by(100) {
            let now = Instant::from_millis(ms);
            timeout(now);
            while let Some(t) = poll(now, &mut out) {
                log.push((now, t.to));
            }
        }
        log
    }
    let locals = vec![addr("192.168.1.2:5000"), addr("192.168.1.2:5001")];
    let config = || NetcheckConfig::new(vec![addr(SERVER)], locals.clone());
    let netcheck = |early| {
        let nc = std::cell::RefCell::new(Netcheck::new(config(), 1).unwrap());
        sends(
            |now, out| nc.borrow_mut().poll_transmit(now, out),
            |now| nc.borrow_mut().handle_timeout(now),
            early,
        )
    };
    let quiet = netcheck(false);
    assert_eq!(quiet.first().map(|s| s.0), Some(Instant::from_millis(300)));
    assert_eq!(netcheck(true), quiet, "netcheck");
    let mapping: Vec<SocketAddr> = (0..16)
        .map(|i| SocketAddr::from(([192, 168, 1, 2], 6001 + i)))
        .collect();
    let prober = addr("192.168.1.2:6000");
    let lifetime = |early| {
        let config = LifetimeConfig::new(addr(SERVER), prober, mapping.clone());
        let probe = std::cell::RefCell::new(LifetimeProbe::new(config, 1).unwrap());
        sends(
            |now, out| probe.borrow_mut().poll_transmit(now, out),
            |now| probe.borrow_mut().handle_timeout(now),
            early,
        )
    };
    let quiet = lifetime(false);
    assert_eq!(quiet.first().map(|s| s.0), Some(Instant::from_millis(300)));
    assert_eq!(lifetime(true), quiet, "lifetime probe");
}
