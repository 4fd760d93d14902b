//! `holepunch connect` under network faults in the netns lab: packet loss, a NAT that forgets
//! its mappings (`conntrack -F`), a new public address, and a peer that dies.
//!
//! Each test builds its own lab: a server host with `holepunch stun-server` (203.0.113.3:3478,
//! alternate 203.0.113.4:3479) and `holepunch signal` (203.0.113.3:7000), and two sites. Needs
//! root and `conntrack` (skips with a reason otherwise; fails under `CI=true`).
mod lab_common;

use std::time::{Duration, Instant};

use holepunch_tests::lab::{self, Lab, LabProcess, Profile, Site, Stream};
use lab_common::{CONNECT_TIMEOUT_S, connect};

/// How long the data may stop after a fault.
const RECOVERY: Duration = Duration::from_secs(10);
/// Loss on each router in the loss test (36 % of the packets between the peers end to end).
const LOSS_PER_ROUTER: u8 = 20;
/// How often each side sends a line while streaming.
const TICK: Duration = Duration::from_millis(200);

/// A connected pair in its own lab. Field order: processes are dropped (killed) before the lab.
struct Pair {
    a: LabProcess,
    b: LabProcess,
    _signal: LabProcess,
    _stun: LabProcess,
    site_a: Site,
    site_b: Site,
    /// The next sequence number each side sends.
    next_a: u64,
    next_b: u64,
    lab: Lab,
}

/// Servers and two sites; `before` runs on the lab and sites before the peers start. Returns
/// once both printed `connected` (panics otherwise), and the time that took.
fn pair(
    pa: Profile,
    pb: Profile,
    before: impl FnOnce(&Lab, &Site, &Site),
) -> Option<(Pair, Duration)> {
    let lab = lab_common::require_with(&["conntrack"])?;
    let (_srv, stun, signal) = lab_common::servers(&lab);
    let site_a = lab.nat_site(pa, false);
    let site_b = lab.nat_site(pb, false);
    before(&lab, &site_a, &site_b);
    let started = Instant::now();
    let mut a = connect(&lab, site_a.host(), "a", "b");
    let mut b = connect(&lab, site_b.host(), "b", "a");
    let limit = Duration::from_secs(CONNECT_TIMEOUT_S + 10);
    for p in [&mut a, &mut b] {
        let line = p.expect_line(Stream::Stderr, limit, |l| {
            l.contains("\"event\":\"connected\"") || l.contains("\"event\":\"failed\"")
        });
        assert!(
            line.contains("\"event\":\"connected\"") && line.contains("\"path\":\"direct\""),
            "did not connect directly: {}",
            p.describe()
        );
    }
    let took = started.elapsed();
    Some((
        Pair {
            a,
            b,
            _signal: signal,
            _stun: stun,
            site_a,
            site_b,
            next_a: 0,
            next_b: 0,
            lab,
        },
        took,
    ))
}

/// The highest sequence number among the lines `<from> N` that `p` printed on stdout.
fn max_seq(p: &LabProcess, from: &str) -> Option<u64> {
    p.lines(Stream::Stdout)
        .iter()
        .filter_map(|l| l.strip_prefix(from)?.strip_prefix(' ')?.trim().parse().ok())
        .max()
}

impl Pair {
    /// One line from each side: `a N` and `b N`.
    fn tick(&mut self) {
        let line = format!("a {}\n", self.next_a);
        self.a
            .write_stdin(line.as_bytes())
            .unwrap_or_else(|e| panic!("{e}: {}", self.a.describe()));
        self.next_a += 1;
        let line = format!("b {}\n", self.next_b);
        self.b
            .write_stdin(line.as_bytes())
            .unwrap_or_else(|e| panic!("{e}: {}", self.b.describe()));
        self.next_b += 1;
    }

    /// Streams (a line from each side every [`TICK`]) until `b` printed a line of `a` numbered
    /// at least `from_a` and `a` one of `b` numbered at least `from_b`; the time that took, or
    /// `None` after `limit`.
    fn stream_until(&mut self, from_a: u64, from_b: u64, limit: Duration) -> Option<Duration> {
        let started = Instant::now();
        loop {
            let b_ok = max_seq(&self.b, "a").is_some_and(|n| n >= from_a);
            let a_ok = max_seq(&self.a, "b").is_some_and(|n| n >= from_b);
            if a_ok && b_ok {
                return Some(started.elapsed());
            }
            if started.elapsed() >= limit {
                return None;
            }
            self.tick();
            std::thread::sleep(TICK);
        }
    }

    /// The events (`"event":"..."` names) `p` printed on stderr after its first `connected`.
    fn events_after_connected(p: &LabProcess) -> Vec<String> {
        p.lines(Stream::Stderr)
            .iter()
            .filter_map(|l| lab::parse_json(l).ok())
            .filter_map(|j| j.str_field("event").map(str::to_string))
            .skip_while(|e| e != "connected")
            .skip(1)
            .collect()
    }

    /// Streams until data flows both ways (within 5 s), applies `fault`, then asserts that data
    /// sent after the fault arrives on both sides within [`RECOVERY`], with no `failed` event
    /// and both still running. Returns the recovery time.
    fn survive(&mut self, what: &str, fault: impl FnOnce(&mut Pair)) -> Duration {
        let baseline = self.stream_until(0, 0, Duration::from_secs(5));
        assert!(
            baseline.is_some(),
            "{what}: no data before the fault:\n{}\n{}",
            self.a.describe(),
            self.b.describe()
        );
        fault(self);
        // Every line numbered from here on is written after the fault.
        let (from_a, from_b) = (self.next_a, self.next_b);
        let recovered = self.stream_until(from_a, from_b, RECOVERY);
        let (ea, eb) = (
            Self::events_after_connected(&self.a),
            Self::events_after_connected(&self.b),
        );
        println!("{what}: events after connected: a {ea:?}, b {eb:?}");
        let Some(took) = recovered else {
            panic!(
                "{what}: data sent after the fault did not arrive within {RECOVERY:?} (b's last \
                 from a: {:?}, a's last from b: {:?}, fault at a {from_a}, b {from_b}):\n{}\n{}",
                max_seq(&self.b, "a"),
                max_seq(&self.a, "b"),
                self.a.describe(),
                self.b.describe()
            )
        };
        for p in [&mut self.a, &mut self.b] {
            assert!(
                !p.stderr().contains("\"event\":\"failed\"") && p.is_running(),
                "{what}: failed: {}",
                p.describe()
            );
        }
        took
    }

    /// Ends both sides with EOF; both must exit 0.
    fn finish(mut self) {
        self.a.close_stdin();
        self.b.close_stdin();
        for p in [&mut self.a, &mut self.b] {
            let status = p.wait_exit(Duration::from_secs(10));
            assert!(
                status.is_some_and(|s| s.success()),
                "did not exit 0 after EOF: {}",
                p.describe()
            );
        }
    }
}

/// 20 % loss on both routers, on every packet they forward, TCP signalling included: 36 % of
/// the packets between the peers and 59 % of the request/response pairs are lost. The pair still
/// connects and lines get through.
///
/// Two things made this pass every time rather than 27 runs in 30: the aggressive agent's
/// checks keep going for 20 s (22 sends, backoff capped at 1 s), and the signal client overlaps
/// connection attempts, because a connection whose SYN or SYN-ACK was resent starts with a 3 s
/// retransmission timeout and once left a peer's candidates 9 s late.
///
/// One run by default. The README's "100 runs of 100" is this test looped, each run in a fresh
/// lab, every run required to connect (as root):
/// `CI=true HOLEPUNCH_LOSS_RUNS=100 cargo test --release -p holepunch-cli --test lab_faults
/// loss_20_percent_still_connects -- --nocapture`.
#[test]
fn loss_20_percent_still_connects() {
    let runs: usize = std::env::var("HOLEPUNCH_LOSS_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .clamp(1, 1000);
    let mut times = Vec::with_capacity(runs);
    for run in 1..=runs {
        let Some(took) = loss_20_percent_run() else {
            return;
        };
        println!("run {run} of {runs}: connected in {took:?}");
        times.push(took);
    }
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    println!(
        "{LOSS_PER_ROUTER} % loss per router: {runs} runs of {runs} connected; from start to \
         connected: median {:?}, p90 {:?}, worst {:?}",
        at(0.5),
        at(0.9),
        at(1.0)
    );
}

/// One run of [`loss_20_percent_still_connects`]: the time to `connected` (`None`: skipped).
fn loss_20_percent_run() -> Option<Duration> {
    let (mut p, took) = pair(
        Profile::PortRestrictedCone,
        Profile::PortRestrictedCone,
        |lab, a, b| {
            lab.set_loss(&a.router, LOSS_PER_ROUTER);
            lab.set_loss(&b.router, LOSS_PER_ROUTER);
        },
    )?;
    let data = p.stream_until(0, 0, Duration::from_secs(10));
    assert!(
        data.is_some(),
        "no data under loss:\n{}\n{}",
        p.a.describe(),
        p.b.describe()
    );
    println!(
        "{LOSS_PER_ROUTER} % loss per router (36 % per packet end to end): connected in \
         {took:?}; first lines through in {:?}",
        data.unwrap_or_default()
    );
    p.lab.set_loss(&p.site_a.router, 0);
    p.lab.set_loss(&p.site_b.router, 0);
    p.finish();
    Some(took)
}

/// `conntrack -F` on the symmetric router mid-session: its mapping changes, and data flows
/// again within 10 s without `failed`.
#[test]
fn conntrack_flush_on_symmetric_router_recovers() {
    let Some((mut p, _)) = pair(Profile::SymmetricRandom, Profile::FullCone, |_, _, _| {}) else {
        return;
    };
    let took = p.survive("conntrack -F on symmetric-random", |p| {
        p.lab.flush_conntrack(&p.site_a.router);
    });
    println!("conntrack -F on symmetric-random (peer full-cone): data again after {took:?}");
    p.finish();
}

/// A new public address on a port-restricted router mid-session: data flows again within
/// 10 s without `failed`.
#[test]
fn public_ip_change_recovers() {
    let Some((mut p, _)) = pair(Profile::PortRestrictedCone, Profile::FullCone, |_, _, _| {})
    else {
        return;
    };
    let took = p.survive("new public IP on port-restricted-cone", |p| {
        let new_ip = p.site_a.spare_ip();
        p.lab.change_public_ip(&mut p.site_a, new_ip);
    });
    println!("new public IP on port-restricted-cone (peer full-cone): data again after {took:?}");
    p.finish();
}

/// The peer is killed (no EOF, no goodbye): the survivor reports `consent_lost` when consent
/// expires, 30 s after the last answer. Consent checks go out every 4 to 6 s, so the last answer
/// came 0 to 6 s before the kill: the event is due 24 to 30 s after it (a second of slack each
/// way for process and lab timing). Not earlier, not `failed` instead.
#[test]
fn killed_peer_is_noticed() {
    let Some((mut p, _)) = pair(
        Profile::PortRestrictedCone,
        Profile::PortRestrictedCone,
        |_, _, _| {},
    ) else {
        return;
    };
    assert!(
        p.stream_until(0, 0, Duration::from_secs(5)).is_some(),
        "no data before the kill:\n{}\n{}",
        p.a.describe(),
        p.b.describe()
    );
    p.b.kill();
    let killed = Instant::now();
    let line =
        p.a.expect_line(Stream::Stderr, Duration::from_secs(40), |l| {
            l.contains("\"event\":\"consent_lost\"") || l.contains("\"event\":\"failed\"")
        });
    let after = killed.elapsed();
    println!(
        "killed peer: survivor noticed after {:.1} s: {line}",
        after.as_secs_f64()
    );
    assert!(
        line.contains("\"event\":\"consent_lost\""),
        "consent_lost first: {line}"
    );
    assert!(
        (Duration::from_secs(23)..=Duration::from_secs(31)).contains(&after),
        "consent lost {after:?} after the kill, expected 24-30 s"
    );
}

/// The address `"key":"IP:PORT"` in a JSON event line.
fn json_addr(line: &str, key: &str) -> Option<std::net::SocketAddr> {
    let start = line.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let end = start + line[start..].find('"')?;
    line[start..end].parse().ok()
}

/// Two peers on one LAN behind one port-restricted NAT that does not hairpin: their
/// server-reflexive candidates cannot reach each other (the router drops packets to its own
/// public address from inside), so they must connect directly over their host candidates.
#[test]
fn same_lan_without_hairpin_connects_over_host_candidates() {
    let Some(lab) = lab_common::require_with(&["conntrack"]) else {
        return;
    };
    let (_srv, _stun, _signal) = lab_common::servers(&lab);
    let site = lab.nat_site_with_hosts(Profile::PortRestrictedCone, false, 2);
    let mut a = connect(&lab, &site.hosts[0], "a", "b");
    let mut b = connect(&lab, &site.hosts[1], "b", "a");
    let limit = Duration::from_secs(CONNECT_TIMEOUT_S + 10);
    for (p, own, peer) in [
        (&mut a, site.lan_ips[0], site.lan_ips[1]),
        (&mut b, site.lan_ips[1], site.lan_ips[0]),
    ] {
        let line = p.expect_line(Stream::Stderr, limit, |l| {
            l.contains("\"event\":\"connected\"") || l.contains("\"event\":\"failed\"")
        });
        assert!(
            line.contains("\"event\":\"connected\"") && line.contains("\"path\":\"direct\""),
            "did not connect directly: {}",
            p.describe()
        );
        let (local, remote) = (json_addr(&line, "local"), json_addr(&line, "remote"));
        assert_eq!(local.map(|a| a.ip()), Some(own.into()), "{line}");
        assert_eq!(
            remote.map(|a| a.ip()),
            Some(peer.into()),
            "host to host: {line}"
        );
        println!("same LAN, no hairpin: {line}");
    }
}

/// Two peers under different home NATs behind one carrier NAT (`Lab::carrier_pair`).
/// With hairpinning on the carrier, each side's server-reflexive candidate (the carrier's public
/// address) reaches the other through the carrier: a direct path. Without it nothing direct can
/// work (host candidates are on different LANs, the homes' carrier-side addresses are no
/// candidates), and with no relay given the session fails (lab_relay.rs shows the same pair
/// connecting through a relay).
fn carrier_pair(hairpin: bool) -> Option<(LabProcess, LabProcess, Lab)> {
    let lab = lab_common::require_with(&["conntrack"])?;
    let (_srv, _stun, _signal) = lab_common::servers(&lab);
    let (site_a, site_b) = lab.carrier_pair(hairpin);
    let mut a = connect(&lab, site_a.host(), "a", "b");
    let mut b = connect(&lab, site_b.host(), "b", "a");
    let limit = Duration::from_secs(CONNECT_TIMEOUT_S + 10);
    for p in [&mut a, &mut b] {
        let line = p.expect_line(Stream::Stderr, limit, |l| {
            l.contains("\"event\":\"connected\"") || l.contains("\"event\":\"failed\"")
        });
        println!("carrier NAT, hairpin {hairpin}: {line}");
        if hairpin {
            assert!(
                line.contains("\"event\":\"connected\"") && line.contains("\"path\":\"direct\""),
                "did not connect directly through the hairpinning carrier: {}",
                p.describe()
            );
            let remote = json_addr(&line, "remote").map(|a| a.ip());
            assert_eq!(
                remote,
                Some(site_a.public_ip.into()),
                "via the carrier: {line}"
            );
        } else {
            assert!(
                line.contains("\"event\":\"failed\""),
                "no direct path exists without hairpinning: {line}"
            );
        }
    }
    Some((a, b, lab))
}

#[test]
fn same_carrier_nat_with_hairpinning_connects_directly() {
    let _ = carrier_pair(true);
}

#[test]
fn same_carrier_nat_without_hairpinning_has_no_direct_path() {
    let _ = carrier_pair(false);
}
