//! A LAN host's address changes mid-session (issue 14): two `holepunch connect` peers in stream
//! mode behind port-restricted-cone NATs carry a line stream each way; one host's address is
//! flushed and, a second later, a new one in the same subnet is added with the default route.
//! The driver's network watcher (netlink) sees it, binds the new address, and restarts ICE as
//! the path's local address is gone: the path must move to the new address within 5 s of it,
//! and no line may be lost (QUIC carries the stream across the change).
//!
//! Signalling goes through offer files (`--local-file`/`--remote-file`), which the change cannot
//! cut. Through `holepunch signal` the session does not recover: its TCP connection is bound to
//! the old address, so the restart's new credentials never reach the peer, and the server keeps
//! the dead connection's name (`name-taken`) until its idle timeout, so a reconnect would be
//! refused. Signalling that survives an address change is left to a later change.
//!
//! Needs root and the lab (skips with a reason otherwise; fails under `CI=true`). The recovery
//! time is printed: `cargo test --release -p holepunch-cli --test lab_network_change --
//! --nocapture`.
mod lab_common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use holepunch_tests::lab::{Lab, LabProcess, Ns, Profile, Stream};
use lab_common::{CONNECT_TIMEOUT_S, STUN_ALTERNATE, STUN_PRIMARY};

/// The longest the path may take to move after the new address appears.
const RECOVERY: Duration = Duration::from_secs(5);

/// `holepunch connect` in stream mode (the default) as `id`, signalling through offer files:
/// a side channel the address change cannot cut (a TCP connection to `holepunch signal` from
/// the old address dies with it; see the module docs).
fn connect(lab: &Lab, ns: &Ns, id: &str, peer: &str, role: &str) -> LabProcess {
    let (stun1, stun2) = (STUN_PRIMARY.to_string(), STUN_ALTERNATE.to_string());
    let config = format!(
        "XDG_CONFIG_HOME={}",
        lab.dir().join(format!("{id}.config")).display()
    );
    let args = ["--stun", &stun1, "--stun", &stun2];
    lab_common::connect_via_files(lab, ns, (id, peer, role), &[config], &args)
}

/// The numbers `n` of the lines `<from> n` that `p` printed on stdout, in order.
fn received(p: &LabProcess, from: &str) -> Vec<u64> {
    p.lines(Stream::Stdout)
        .iter()
        .filter_map(|l| l.strip_prefix(from)?.strip_prefix(' ')?.trim().parse().ok())
        .collect()
}

/// Whether `p` reported a `path_changed` whose local address is on `ip`.
fn moved_to(p: &LabProcess, ip: Ipv4Addr) -> bool {
    let local = format!("\"local\":\"{ip}:");
    p.lines(Stream::Stderr)
        .iter()
        .any(|l| l.contains("\"event\":\"path_changed\"") && l.contains(&local))
}

#[test]
fn a_new_lan_address_mid_stream_moves_the_path_within_5_s_and_loses_nothing() {
    let Some(lab) = lab_common::require_with(&[]) else {
        return;
    };
    let (_srv, _stun, _signal) = lab_common::servers(&lab);
    let site_a = lab.nat_site(Profile::PortRestrictedCone, false);
    let site_b = lab.nat_site(Profile::PortRestrictedCone, false);
    let mut a = connect(&lab, site_a.host(), "a", "b", "--controlling");
    let mut b = connect(&lab, site_b.host(), "b", "a", "--controlled");
    let limit = Duration::from_secs(CONNECT_TIMEOUT_S + 10);
    for p in [&mut a, &mut b] {
        let line = p.expect_line(Stream::Stderr, limit, |l| {
            l.contains("\"event\":\"connected\"") || l.contains("\"event\":\"failed\"")
        });
        assert!(line.contains("\"path\":\"direct\""), "{}", p.describe());
    }
    // A line each way every 100 ms throughout.
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
    let [o1, o2, o3, _] = site_a.lan_ips[0].octets();
    let gateway = Ipv4Addr::new(o1, o2, o3, 1);
    let new_ip = Ipv4Addr::new(o1, o2, o3, 20);
    // The address goes (its default route with it) while the stream runs...
    lab_common::sh(&lab, site_a.host(), "ip addr flush dev eth0");
    for _ in 0..10 {
        tick(&mut a, &mut b, &mut sent);
    }
    // ...and a second later a new one comes, with the default route.
    lab_common::sh(
        &lab,
        site_a.host(),
        &format!("ip addr add {new_ip}/24 dev eth0 && ip route add default via {gateway}"),
    );
    let added = Instant::now();
    while !moved_to(&a, new_ip) {
        assert!(
            added.elapsed() < RECOVERY + Duration::from_secs(10),
            "the path did not move to {new_ip}:\n{}\n{}",
            a.describe(),
            b.describe()
        );
        tick(&mut a, &mut b, &mut sent);
    }
    let took = added.elapsed();
    for _ in 0..10 {
        tick(&mut a, &mut b, &mut sent);
    }
    // Every line arrives, in order: wait (bounded) for the last ones, then compare.
    let all: Vec<u64> = (0..sent).collect();
    let settle = Instant::now();
    while !(received(&b, "a") == all && received(&a, "b") == all)
        && settle.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("path moved to {new_ip} {took:?} after the new address; {sent} lines each way");
    assert_eq!(
        received(&b, "a"),
        all,
        "b lost lines of a:\n{}",
        b.describe()
    );
    assert_eq!(
        received(&a, "b"),
        all,
        "a lost lines of b:\n{}",
        a.describe()
    );
    assert!(
        a.lines(Stream::Stderr)
            .iter()
            .any(|l| l.contains("\"reason\":\"network_changed\"")),
        "no restart for the network change:\n{}",
        a.describe()
    );
    assert!(took < RECOVERY, "the path took {took:?} to move");
    a.close_stdin();
    b.close_stdin();
    for p in [&mut a, &mut b] {
        let status = p.wait_exit(Duration::from_secs(15));
        assert!(status.is_some_and(|s| s.success()), "{}", p.describe());
    }
}
