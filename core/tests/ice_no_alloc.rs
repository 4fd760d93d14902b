//! The agent's steady state (application data both ways, consent checks and their answers)
//! allocates nothing. Connection setup may allocate; the measured window starts after it.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use holepunch_core::demux::Received;
use holepunch_core::ice::agent::{Agent, AgentConfig};
use holepunch_core::io::Datagram;
use holepunch_core::time::{Duration, Instant};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::allocations;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Delivers everything each agent wants to send to the other at once (zero latency).
fn pump(a: &mut Agent, b: &mut Agent, now: Instant, la: SocketAddr, lb: SocketAddr) {
    let mut buf = [0u8; 1500];
    for _ in 0..64 {
        let mut moved = false;
        while let Some(t) = a.poll_transmit(now, &mut buf) {
            let _ = b.handle_datagram(now, Datagram::new(lb, la, &buf[..t.len]));
            moved = true;
        }
        while let Some(t) = b.poll_transmit(now, &mut buf) {
            let _ = a.handle_datagram(now, Datagram::new(la, lb, &buf[..t.len]));
            moved = true;
        }
        while a.poll_event().is_some() {}
        while b.poll_event().is_some() {}
        if !moved {
            break;
        }
    }
}

#[test]
fn steady_state_allocates_nothing() {
    steady_state(None);
}

/// With a keepalive agreed (consent every ~10 s) the steady state allocates nothing either.
#[test]
fn steady_state_at_an_agreed_keepalive_allocates_nothing() {
    steady_state(Some(Duration::from_secs(10)));
}

/// Connects two agents (each proposing `keepalive`), then counts allocations over two
/// minutes of application data, consent checks and their answers.
fn steady_state(keepalive: Option<Duration>) {
    let (la, lb) = (addr("192.0.2.1:1000"), addr("198.51.100.1:2000"));
    let config = |controlling| AgentConfig {
        keepalive_interval: keepalive,
        ..AgentConfig::rfc(controlling)
    };
    let mut a = Agent::new(config(true), 11);
    let mut b = Agent::new(config(false), 12);
    a.set_remote_keepalive(b.local_keepalive());
    b.set_remote_keepalive(a.local_keepalive());
    assert_eq!(
        a.consent_interval(),
        keepalive.unwrap_or(Duration::from_secs(5))
    );
    let mut now = Instant::from_millis(1);
    a.add_host_candidate(now, la).unwrap();
    b.add_host_candidate(now, lb).unwrap();
    let (ca, cb) = (*a.local_credentials(), *b.local_credentials());
    a.set_remote_credentials(&cb);
    b.set_remote_credentials(&ca);
    for c in b.local_candidates().to_vec() {
        a.add_remote_candidate(now, c).unwrap();
    }
    for c in a.local_candidates().to_vec() {
        b.add_remote_candidate(now, c).unwrap();
    }
    // Connect (allocation allowed here).
    for _ in 0..400 {
        pump(&mut a, &mut b, now, la, lb);
        a.handle_timeout(now);
        b.handle_timeout(now);
        now += Duration::from_millis(10);
    }
    assert!(a.selected_path().is_some() && b.selected_path().is_some());

    let payload = [0x42u8; 1200];
    let mut delivered = 0usize;
    let (n, ()) = allocations(|| {
        // Two minutes of traffic: ~24 consent rounds each way (~12 at a 10 s keepalive) and
        // 12 000 app datagrams.
        for _ in 0..12_000 {
            pump(&mut a, &mut b, now, la, lb);
            if let Received::AppData { payload: p, .. } =
                a.handle_datagram(now, Datagram::new(la, lb, &payload))
            {
                delivered += p.len();
            }
            if let Received::AppData { payload: p, .. } =
                b.handle_datagram(now, Datagram::new(lb, la, &payload))
            {
                delivered += p.len();
            }
            a.handle_timeout(now);
            b.handle_timeout(now);
            now += Duration::from_millis(10);
        }
    });
    assert_eq!(delivered, 2 * 12_000 * 1200);
    assert!(a.selected_path().is_some(), "consent kept the path alive");
    assert_eq!(n, 0, "steady state allocated {n} times");
}

#[test]
fn the_counter_counts() {
    let (n, ()) = allocations(|| {
        let v: Vec<u8> = Vec::with_capacity(16);
        std::hint::black_box(v);
    });
    assert_eq!(n, 1);
}
