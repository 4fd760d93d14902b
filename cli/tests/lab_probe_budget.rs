//! The probe budget at a real router (issue 14): two `holepunch connect` peers behind
//! symmetric-random NATs with no relay can have no direct path. Every datagram either side's
//! router forwards towards the other's public address (checks and punch probes; STUN goes to
//! other addresses) is counted with an nftables counter on the router, for the whole session,
//! which ends when ICE gives up. The count must stay within the stated budget: every check of
//! a pair is sent at most `check_max_sends` (22) times and punching at most
//! `PunchConfig::max_probes` (2,816) times, so a session without a path cannot go on probing.
//!
//! Both get `--timeout` 40 s, or `HOLEPUNCH_BUDGET_SECS` (600 for the ten minutes): the
//! session ends earlier, when ICE fails, and nothing is sent after it.
//!
//! Needs root and the lab (skips with a reason otherwise; fails under `CI=true`). The counts
//! are printed: `HOLEPUNCH_BUDGET_SECS=600 cargo test --release -p holepunch-cli --test
//! lab_probe_budget -- --nocapture`.
mod lab_common;

use std::time::{Duration, Instant};

use holepunch_tests::lab::{Lab, LabProcess, Ns, Profile, Stream};

/// The most datagrams one side may send towards the peer in a session with no path: the
/// punch cap, plus 22 sends for each of a handful of pairs (two host sockets' worth of
/// server-reflexive and peer-reflexive pairs, generously).
const BUDGET: u64 = 2_816 + 22 * 16;

/// The window: `HOLEPUNCH_BUDGET_SECS`, else 40 s.
fn window() -> u64 {
    std::env::var("HOLEPUNCH_BUDGET_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40)
}

/// `holepunch connect --datagram` as `id` through the lab's signal server with `--timeout`
/// `secs` and both STUN addresses.
fn connect(lab: &Lab, ns: &Ns, id: &str, peer: &str, secs: u64) -> LabProcess {
    let (stun1, stun2) = (
        lab_common::STUN_PRIMARY.to_string(),
        lab_common::STUN_ALTERNATE.to_string(),
    );
    let secs = secs.to_string();
    let args = [
        "connect",
        "--datagram",
        "--signal",
        lab_common::SIGNAL,
        "--id",
        id,
        "--peer",
        peer,
        "--stun",
        &stun1,
        "--stun",
        &stun2,
        "--json",
        "--timeout",
        &secs,
    ];
    lab.spawn_with_stdin(ns, &format!("connect-{id}"), lab_common::holepunch(), args)
}

#[test]
fn a_session_without_a_path_stays_within_the_probe_budget() {
    let Some(lab) = lab_common::require_with(&["nft"]) else {
        return;
    };
    let (_srv, _stun, _signal) = lab_common::servers(&lab);
    let site_a = lab.nat_site(Profile::SymmetricRandom, false);
    let site_b = lab.nat_site(Profile::SymmetricRandom, false);
    lab_common::count_towards(&lab, &site_a.router, site_b.public_ip);
    lab_common::count_towards(&lab, &site_b.router, site_a.public_ip);
    let started = Instant::now();
    let secs = window();
    let mut a = connect(&lab, site_a.host(), "a", "b", secs);
    let mut b = connect(&lab, site_b.host(), "b", "a", secs);
    // No path can exist: each gives up (ICE failed, or --timeout) and says so.
    let limit = Duration::from_secs(secs + 30);
    for p in [&mut a, &mut b] {
        let line = p.expect_line(Stream::Stderr, limit, |l| {
            l.contains("\"event\":\"connected\"") || l.contains("\"event\":\"failed\"")
        });
        assert!(
            line.contains("\"event\":\"failed\""),
            "{line}\n{}",
            p.describe()
        );
        println!("{line}");
        let status = p.wait_exit(Duration::from_secs(10));
        assert!(
            status.is_some_and(|s| s.code() == Some(1)),
            "{}",
            p.describe()
        );
    }
    let session = started.elapsed();
    // Nothing is left to send once both have exited; the counts are the session's.
    let (sent_a, sent_b) = (
        lab_common::counted(&lab, &site_a.router),
        lab_common::counted(&lab, &site_b.router),
    );
    println!(
        "probe budget: A sent {sent_a}, B sent {sent_b} datagrams towards the peer in a {:.1} s \
         session without a path (budget {BUDGET} each)",
        session.as_secs_f64()
    );
    assert!(
        sent_a > 0 && sent_b > 0,
        "the counters saw no checks at all"
    );
    assert!(
        sent_a <= BUDGET && sent_b <= BUDGET,
        "A {sent_a}, B {sent_b}"
    );
}
