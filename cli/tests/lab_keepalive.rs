//! Keepalives sized to the NAT, at real routers (issue 14): two `holepunch connect` peers behind
//! port-restricted NATs whose conntrack forgets idle UDP flows after 20 s (or 120 s). With
//! `--keepalive auto` (the default) each side measures its NAT's mapping lifetime after
//! connecting and both agree on a consent cadence just under it; the session then idles for
//! five minutes while each router counts the datagrams it forwards towards the peer. The path
//! must never break (no `consent_lost`, `path_changed` or `failed`), the count must fit one
//! check and one answer per agreed interval, and a line must still cross both ways at the end.
//!
//! The idle window is 300 s, or `HOLEPUNCH_KEEPALIVE_IDLE_SECS`. Needs root and the lab (skips
//! with a reason otherwise; fails under `CI=true`). Figures are printed: `cargo test --release
//! -p holepunch-cli --test lab_keepalive -- --nocapture`.
mod lab_common;

use std::time::{Duration, Instant};

use holepunch_tests::lab::{self, LabProcess, Profile, Stream};

/// The idle window.
fn idle() -> Duration {
    let secs = std::env::var("HOLEPUNCH_KEEPALIVE_IDLE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    Duration::from_secs(secs)
}

/// The `interval_s` of `p`'s first `keepalive` event, waiting up to `limit`.
fn agreed_interval(p: &mut LabProcess, limit: Duration) -> u64 {
    let line = p.expect_line(Stream::Stderr, limit, |l| {
        l.contains("\"event\":\"keepalive\"") || l.contains("\"event\":\"failed\"")
    });
    let event = lab::parse_json(&line).expect("JSON");
    event
        .get("interval_s")
        .and_then(lab::Json::as_f64)
        .unwrap_or_else(|| panic!("{line}")) as u64
}

/// Whether `p` reported the path breaking.
fn broke(p: &LabProcess) -> Option<String> {
    p.lines(Stream::Stderr).into_iter().find(|l| {
        ["consent_lost", "path_changed", "failed", "restart"]
            .iter()
            .any(|e| l.contains(&format!("\"event\":\"{e}\"")))
    })
}

/// One run with conntrack timeouts `timeout`; the agreed interval must lie in `expected`.
fn idle_session(timeout: Duration, expected: std::ops::RangeInclusive<u64>) {
    let Some(lab) = lab_common::require_with(&["nft"]) else {
        return;
    };
    let (_srv, _stun, _signal) = lab_common::servers(&lab);
    let site_a = lab.nat_site(Profile::PortRestrictedCone, false);
    let site_b = lab.nat_site(Profile::PortRestrictedCone, false);
    for site in [&site_a, &site_b] {
        lab.set_conntrack_timeouts(&site.router, timeout, timeout);
    }
    let started = Instant::now();
    // The session must outlive the idle window: no --timeout cut (it only bounds connecting).
    let mut a = lab_common::connect(&lab, site_a.host(), "a", "b");
    let mut b = lab_common::connect(&lab, site_b.host(), "b", "a");
    let limit = Duration::from_secs(lab_common::CONNECT_TIMEOUT_S + 10);
    for p in [&mut a, &mut b] {
        let line = p.expect_line(Stream::Stderr, limit, |l| {
            l.contains("\"event\":\"connected\"") || l.contains("\"event\":\"failed\"")
        });
        assert!(line.contains("\"path\":\"direct\""), "{}", p.describe());
    }
    // The lifetime search runs after connecting: up to ~2 minutes.
    let search = Duration::from_secs(180);
    let (ia, ib) = (
        agreed_interval(&mut a, search),
        agreed_interval(&mut b, search),
    );
    let measured = started.elapsed();
    assert_eq!(ia, ib, "both sides use the shorter proposal");
    assert!(
        expected.contains(&ia),
        "agreed {ia} s behind {timeout:?} conntrack timeouts"
    );
    lab_common::count_towards(&lab, &site_a.router, site_b.public_ip);
    lab_common::count_towards(&lab, &site_b.router, site_a.public_ip);
    let window = idle();
    let idle_started = Instant::now();
    while idle_started.elapsed() < window {
        for p in [&a, &b] {
            if let Some(line) = broke(p) {
                panic!(
                    "the path broke while idle: {line}\n{}",
                    lab_common_describe(p)
                );
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let (sent_a, sent_b) = (
        lab_common::counted(&lab, &site_a.router),
        lab_common::counted(&lab, &site_b.router),
    );
    let secs = window.as_secs_f64();
    // One check and one answer to the peer's check per interval, each side; the checks are
    // jittered down by up to a tenth, and a window edge may hold one more of each.
    let most = 2 * ((secs / (ia as f64 * 0.9)).ceil() as u64 + 1);
    let per_hour = |n: u64| n as f64 * 3600.0 / secs;
    println!(
        "keepalive behind {timeout:?} conntrack: agreed {ia} s ({:.0} s after start); idle {secs:.0} s: \
         A sent {sent_a}, B sent {sent_b} datagrams towards the peer ({:.0} and {:.0} an hour; a fixed \
         25 s keepalive with answers is 288 an hour, RFC 7675's 5 s consent 1440); limit {most}",
        measured.as_secs_f64(),
        per_hour(sent_a),
        per_hour(sent_b),
    );
    assert!(
        sent_a <= most && sent_b <= most,
        "A {sent_a}, B {sent_b}, limit {most}"
    );
    assert!(
        sent_a >= (secs / ia as f64) as u64 && sent_b >= (secs / ia as f64) as u64,
        "too quiet to be keeping the mapping: A {sent_a}, B {sent_b}"
    );
    // The mappings are still there: a line crosses both ways, then both exit 0.
    lab_common::lines_both_ways_then_eof(&mut a, &mut b);
}

fn lab_common_describe(p: &LabProcess) -> String {
    p.lines(Stream::Stderr).join("\n")
}

#[test]
fn behind_20_s_conntrack_timeouts_keepalives_every_16_s_hold_the_path() {
    // The search sees 18 s survive and 20 s expire: 18 s less its 2 s margin (18 s should a
    // mapping outlive its 20 s timeout by a hair).
    idle_session(Duration::from_secs(20), 16..=18);
}

#[test]
fn behind_120_s_conntrack_timeouts_keepalives_every_99_s_hold_the_path() {
    // Every idle time tried (up to 110 s) survives: 110 s less a tenth.
    idle_session(Duration::from_secs(120), 99..=99);
}
