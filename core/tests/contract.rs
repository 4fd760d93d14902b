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
    let _ = nc.handle_datagram(t0, locals[0], server, &d);
    assert_eq!(
        nc.poll_timeout(),
        Some(t0),
        "the run's first sends are due now"
    );
    let mut out = [0u8; 1280];
    assert!(nc.poll_transmit(t0, &mut out).is_some());
}
