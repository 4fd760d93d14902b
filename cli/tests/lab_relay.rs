//! `holepunch connect --turn` across the netns lab's real nftables NATs, through our own
//! `holepunch relay` (TURN over UDP).
//!
//! A server host runs `holepunch stun-server` and `holepunch signal` (lab_common::servers); a
//! second one runs `holepunch relay` on 203.0.113.7:3478 (or coturn's `turnserver`, lab.md §2,
//! for interop). Both symmetric-random: no direct path exists, so the pair must connect through
//! the relay and carry data both ways; two port-restricted cones given the same relay must still
//! go direct (the relay is the fallback). Needs root (skips with a reason otherwise; fails under
//! `CI=true`).
mod lab_common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use holepunch_tests::lab::{self, LabProcess, Profile, Stream};
use lab_common::{
    CONNECT_TIMEOUT_S, COTURN_PRIMARY, RELAY, RELAY_USER as USER, STUN_PRIMARY, connect_with,
    relay, servers,
};

/// Which TURN server the pair is given.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Server {
    Ours,
    Coturn,
}

/// Runs a pair behind `pa` and `pb`, both given the relay (a UDP-blocked side over TCP);
/// returns both `connected` lines, after a line went each way.
fn run(pa: Profile, pb: Profile, server: Server) -> Option<(String, String)> {
    let lab = match server {
        Server::Ours => lab::require()?,
        Server::Coturn => lab_common::require_with(&["turnserver"])?,
    };
    let (_srv, _stun, _signal) = servers(&lab);
    let (_relay_ns, _relay) = match server {
        Server::Ours => relay(&lab),
        Server::Coturn => lab_common::coturn(&lab),
    };
    let site_a = lab.nat_site(pa, false);
    let site_b = lab.nat_site(pb, false);
    let turn = match server {
        Server::Ours => format!("{USER}@{RELAY}"),
        Server::Coturn => format!("alice:alicepass@{COTURN_PRIMARY}"),
    };
    let turn_tcp = format!("{turn}?transport=tcp");
    let extra = |p: Profile| {
        let turn = if p == Profile::UdpBlocked {
            turn_tcp.as_str()
        } else {
            turn.as_str()
        };
        ["--turn", turn]
    };
    let mut a = connect_with(&lab, site_a.host(), "a", "b", &[STUN_PRIMARY], &extra(pa));
    let mut b = connect_with(&lab, site_b.host(), "b", "a", &[STUN_PRIMARY], &extra(pb));
    let limit = Duration::from_secs(CONNECT_TIMEOUT_S + 10);
    let mut connected = Vec::new();
    for p in [&mut a, &mut b] {
        let line = p.expect_line(Stream::Stderr, limit, |l| {
            l.contains("\"event\":\"connected\"") || l.contains("\"event\":\"failed\"")
        });
        assert!(line.contains("\"event\":\"connected\""), "{}", p.describe());
        connected.push(line);
    }
    // A line each way (repeated while lost), then EOF: both exit 0.
    lab_common::lines_both_ways_then_eof(&mut a, &mut b);
    Some((connected.remove(0), connected.remove(0)))
}

/// Both symmetric: the pair must go through `server`, whose address one side's path shows.
fn symmetric_pair_through(server: Server, relay_ip: Ipv4Addr) {
    let Some((a, b)) = run(Profile::SymmetricRandom, Profile::SymmetricRandom, server) else {
        return;
    };
    println!("a: {a}\nb: {b}");
    for line in [&a, &b] {
        assert!(line.contains("\"path\":\"relay\""), "{line}");
    }
    let relay = relay_ip.to_string();
    assert!(a.contains(&relay) || b.contains(&relay), "{a}\n{b}");
}

#[test]
fn symmetric_pair_connects_through_our_relay() {
    symmetric_pair_through(Server::Ours, *RELAY.ip());
}

#[test]
fn symmetric_pair_connects_through_coturn() {
    symmetric_pair_through(Server::Coturn, *COTURN_PRIMARY.ip());
}

/// A UDP-blocked side (TURN over TCP) and a port-restricted one: through `server`.
fn udp_blocked_pair_through(server: Server) {
    let Some((a, b)) = run(Profile::UdpBlocked, Profile::PortRestrictedCone, server) else {
        return;
    };
    println!("a: {a}\nb: {b}");
    for line in [&a, &b] {
        assert!(line.contains("\"path\":\"relay\""), "{line}");
    }
}

#[test]
fn a_udp_blocked_side_connects_through_our_relay_over_tcp() {
    udp_blocked_pair_through(Server::Ours);
}

#[test]
fn a_udp_blocked_side_connects_through_coturn_over_tcp() {
    udp_blocked_pair_through(Server::Coturn);
}

#[test]
fn a_direct_path_is_preferred_over_the_relay() {
    let Some((a, b)) = run(
        Profile::PortRestrictedCone,
        Profile::PortRestrictedCone,
        Server::Ours,
    ) else {
        return;
    };
    println!("a: {a}\nb: {b}");
    for line in [&a, &b] {
        assert!(line.contains("\"path\":\"direct\""), "{line}");
    }
}

/// The numbers `n` of the lines `<from> n` that `p` printed on stdout.
fn received(p: &LabProcess, from: &str) -> Vec<u64> {
    p.lines(Stream::Stdout)
        .iter()
        .filter_map(|l| l.strip_prefix(from)?.strip_prefix(' ')?.trim().parse().ok())
        .collect()
}

#[test]
fn lifting_the_udp_block_moves_the_path_to_direct_and_loses_nothing() {
    let Some(lab) = lab::require() else { return };
    let (_srv, _stun, _signal) = servers(&lab);
    let (_relay_ns, _relay) = relay(&lab);
    let mut site_a = lab.nat_site(Profile::UdpBlocked, false);
    let site_b = lab.nat_site(Profile::PortRestrictedCone, false);
    let turn = format!("{USER}@{RELAY}");
    let turn_tcp = format!("{turn}?transport=tcp");
    let mut a = connect_with(
        &lab,
        site_a.host(),
        "a",
        "b",
        &[STUN_PRIMARY],
        &["--turn", &turn_tcp],
    );
    let mut b = connect_with(
        &lab,
        site_b.host(),
        "b",
        "a",
        &[STUN_PRIMARY],
        &["--turn", &turn],
    );
    let limit = Duration::from_secs(CONNECT_TIMEOUT_S + 10);
    for p in [&mut a, &mut b] {
        let line = p.expect_line(Stream::Stderr, limit, |l| {
            l.contains("\"event\":\"connected\"")
        });
        assert!(line.contains("\"path\":\"relay\""), "{}", p.describe());
    }
    // A line each way every 100 ms throughout; the block is lifted after a second of it.
    let mut sent = 0u64;
    let tick = |a: &mut LabProcess, b: &mut LabProcess, sent: &mut u64| {
        let _ = a.write_stdin(format!("a {sent}\n").as_bytes());
        let _ = b.write_stdin(format!("b {sent}\n").as_bytes());
        *sent += 1;
        std::thread::sleep(Duration::from_millis(100));
    };
    for _ in 0..10 {
        tick(&mut a, &mut b, &mut sent);
    }
    lab.unblock_udp(&mut site_a);
    let lifted = Instant::now();
    let direct = |p: &LabProcess| {
        p.lines(Stream::Stderr)
            .iter()
            .any(|l| l.contains("\"event\":\"path_changed\"") && l.contains("\"path\":\"direct\""))
    };
    while !(direct(&a) && direct(&b)) {
        assert!(
            lifted.elapsed() < Duration::from_secs(15),
            "no path_changed to direct after the block was lifted:\n{}\n{}",
            a.describe(),
            b.describe()
        );
        tick(&mut a, &mut b, &mut sent);
    }
    let took = lifted.elapsed();
    for _ in 0..10 {
        tick(&mut a, &mut b, &mut sent);
    }
    // Every line arrived: wait (bounded) for the last ones, then compare.
    let complete = |p: &LabProcess, from: &str| {
        let mut got = received(p, from);
        got.sort_unstable();
        got.dedup();
        got == (0..sent).collect::<Vec<_>>()
    };
    let settle = Instant::now();
    while !(complete(&b, "a") && complete(&a, "b")) && settle.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("relay -> direct {took:?} after the block was lifted; {sent} lines each way");
    assert!(
        complete(&b, "a"),
        "b lost lines of a: {:?}",
        received(&b, "a")
    );
    assert!(
        complete(&a, "b"),
        "a lost lines of b: {:?}",
        received(&a, "b")
    );
    assert!(
        took < Duration::from_secs(5),
        "relay -> direct took {took:?}"
    );
    a.close_stdin();
    b.close_stdin();
    for p in [&mut a, &mut b] {
        let status = p.wait_exit(Duration::from_secs(10));
        assert!(status.is_some_and(|s| s.success()), "{}", p.describe());
    }
}

#[test]
fn same_carrier_nat_without_hairpinning_connects_through_the_relay() {
    // Two homes behind one carrier NAT that does not hairpin: nothing direct works
    // (lab_faults' same_carrier_nat_without_hairpinning_has_no_direct_path); with a relay the
    // pair connects through it.
    let Some(lab) = lab::require() else { return };
    let (_srv, _stun, _signal) = servers(&lab);
    let (_relay_ns, _relay) = relay(&lab);
    let (site_a, site_b) = lab.carrier_pair(false);
    let turn = format!("{USER}@{RELAY}");
    let extra = ["--turn", turn.as_str()];
    let mut a = connect_with(&lab, site_a.host(), "a", "b", &[STUN_PRIMARY], &extra);
    let mut b = connect_with(&lab, site_b.host(), "b", "a", &[STUN_PRIMARY], &extra);
    let limit = Duration::from_secs(CONNECT_TIMEOUT_S + 10);
    for p in [&mut a, &mut b] {
        let line = p.expect_line(Stream::Stderr, limit, |l| {
            l.contains("\"event\":\"connected\"") || l.contains("\"event\":\"failed\"")
        });
        println!("carrier NAT, no hairpin, with a relay: {line}");
        assert!(line.contains("\"path\":\"relay\""), "{}", p.describe());
    }
}
