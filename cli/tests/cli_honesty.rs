//! The command line tells the truth (issue 18): loss is reported and paced away, reruns over
//! old offer files connect, usage errors exit 2, netcheck without answers fails, progress is
//! reported while waiting, and the demo takes every seed.
mod support;

use std::fs::File;
use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use holepunch_tests::lab::{Json, parse_json};
use support::{Proc, TempDir, addr, holepunch, listening_addr, run_bounded};

/// Bound on any one process.
const LIMIT: Duration = Duration::from_secs(30);

/// Starts `holepunch signal` on a free loopback port.
fn signal_server() -> (Proc, String) {
    let mut p = Proc::spawn(
        "signal",
        holepunch().args(["signal", "--listen", "127.0.0.1:0"]),
    );
    let line = p.wait_for_lines("listening on tcp", 1, LIMIT).remove(0);
    p.wait_for_lines("stop with SIGINT or SIGTERM", 1, LIMIT);
    let text = line.rsplit(' ').next().unwrap_or_default();
    (p, addr(text).to_string())
}

/// A `connect` with stdin, stdout and stderr on files in `dir`, killed on drop.
struct Side {
    child: Child,
    name: &'static str,
}

impl Side {
    fn spawn(dir: &Path, name: &'static str, input: Option<&Path>, args: &[&str]) -> Side {
        let stdin = match input {
            Some(p) => Stdio::from(File::open(p).expect("input")),
            None => Stdio::null(),
        };
        let out = File::create(dir.join(format!("{name}.out"))).expect("stdout file");
        let err = File::create(dir.join(format!("{name}.err"))).expect("stderr file");
        let child = holepunch()
            .args(["connect", "--datagram"])
            .args(args)
            .stdin(stdin)
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn connect");
        Side { child, name }
    }

    /// The exit code, within `limit` (a panic otherwise).
    fn wait(&mut self, dir: &Path, limit: Duration) -> i32 {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code().expect("exit code");
            }
            assert!(
                Instant::now() < deadline,
                "{} still running after {limit:?}; stderr:\n{}",
                self.name,
                read(dir, &format!("{}.err", self.name))
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Side {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

/// The `--json` events named `name` among `stderr`'s lines.
fn events(stderr: &str, name: &str) -> Vec<Json> {
    stderr
        .lines()
        .filter_map(|l| parse_json(l).ok())
        .filter(|e| e.str_field("event") == Some(name))
        .collect()
}

fn number(e: &Json, key: &str) -> f64 {
    e.get(key)
        .and_then(Json::as_f64)
        .unwrap_or_else(|| panic!("{key} is a number in {e:?}"))
}

/// 5 MiB of text (no byte 0-3 may start a datagram), pseudo-random so loss cannot hide.
fn five_mib(path: &Path) {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let text: Vec<u8> = (0..5 * 1024 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            b"abcdefghijklmnopqrstuvwxyz0123456789 \n"[(state % 38) as usize]
        })
        .collect();
    std::fs::write(path, text).expect("write input");
}

#[test]
fn five_mib_on_loopback_arrives_and_the_loss_is_reported() {
    let dir = TempDir::new("holepunch-5mib");
    let d = dir.path();
    let input = d.join("input");
    five_mib(&input);
    let (_signal, server) = signal_server();
    let common = |id, peer| vec!["--signal", &*server, "--id", id, "--peer", peer, "--json"];
    let started = Instant::now();
    let mut a = Side::spawn(d, "a", Some(&input), &common("a", "b"));
    let mut b = Side::spawn(d, "b", None, &common("b", "a"));
    let (code_b, code_a) = (b.wait(d, LIMIT), a.wait(d, LIMIT));
    let (a_err, b_err) = (read(d, "a.err"), read(d, "b.err"));
    let closed = events(&b_err, "closed");
    assert_eq!(closed.len(), 1, "b's stderr:\n{b_err}");
    let c = &closed[0];
    let (sent, received) = (
        number(c, "peer_sent_datagrams"),
        number(c, "received_datagrams"),
    );
    let lost = number(c, "lost_datagrams");
    let pct = number(c, "lost_percent");
    let got = std::fs::metadata(d.join("b.out")).map_or(0, |m| m.len());
    eprintln!(
        "5 MiB on loopback: received {received} of {sent} datagrams ({pct}% lost), {got} bytes, \
         in {:?}",
        started.elapsed()
    );
    assert_eq!(
        sent,
        number(&events(&a_err, "closed")[0], "sent_datagrams"),
        "{a_err}"
    );
    assert_eq!(lost, sent - received, "{c:?}");
    assert_eq!(number(c, "received_bytes") as u64, got, "{c:?}");
    assert!(received >= sent * 0.99, "paced: at least 99% arrive: {c:?}");
    // The exit status follows the loss: 0 only when nothing was lost.
    assert_eq!(code_b, i32::from(lost > 0.0), "{b_err}");
    assert_eq!(code_a, 0, "{a_err}");
}

#[test]
fn a_rerun_over_stale_offer_files_connects() {
    let dir = TempDir::new("holepunch-rerun");
    let d = dir.path();
    let (fa, fb) = (d.join("a.offer"), d.join("b.offer"));
    let (fa, fb) = (fa.to_str().expect("utf-8"), fb.to_str().expect("utf-8"));
    let a_args = [
        "--local-file",
        fa,
        "--remote-file",
        fb,
        "--json",
        "--timeout",
        "15",
    ];
    let b_args = [
        "--local-file",
        fb,
        "--remote-file",
        fa,
        "--controlled",
        "--json",
        "--timeout",
        "15",
    ];
    let hello = d.join("hello");
    std::fs::write(&hello, "hello\n").expect("input");
    for run in 0..2 {
        let mut a = Side::spawn(d, "a", Some(&hello), &a_args);
        // The first side reads the other's stale offer (from the run before) for a while.
        std::thread::sleep(Duration::from_millis(700));
        let mut b = Side::spawn(d, "b", Some(&hello), &b_args);
        let (ca, cb) = (a.wait(d, LIMIT), b.wait(d, LIMIT));
        let (a_err, b_err) = (read(d, "a.err"), read(d, "b.err"));
        let both = format!("run {run}:\n{a_err}\n---\n{b_err}");
        assert_eq!(events(&b_err, "connected").len(), 1, "{both}");
        // Datagram mode: the one datagram may be lost (the two agents may select different
        // pairs for a moment); then the receiver must say so and exit 1.
        let lost = |err: &str| {
            events(err, "closed")
                .first()
                .map(|c| number(c, "lost_datagrams"))
                .unwrap_or_else(|| panic!("a closed event: {both}"))
        };
        assert_eq!(ca, i32::from(lost(&a_err) > 0.0), "{both}");
        assert_eq!(cb, i32::from(lost(&b_err) > 0.0), "{both}");
        if lost(&b_err) == 0.0 {
            assert_eq!(read(d, "b.out"), "hello\n", "{both}");
        }
        assert_eq!(events(&a_err, "connected").len(), 1, "run {run}: {a_err}");
    }
}

#[test]
fn malformed_addresses_and_the_same_file_twice_are_bad_usage() {
    let cases: [&[&str]; 9] = [
        &["stun", "999.1.1.1:1"],
        &["stun", "127.0.0.1:70000"],
        &["netcheck", "--stun", "999.1.1.1:1"],
        &["netcheck", "--stun", "127.0.0.1:70000"],
        &["connect", "--signal", "[::1]", "--id", "a", "--peer", "b"],
        &[
            "connect",
            "--signal",
            "999.1.1.1:1",
            "--id",
            "a",
            "--peer",
            "b",
        ],
        &[
            "connect",
            "--signal",
            "127.0.0.1:9",
            "--id",
            "a",
            "--peer",
            "b",
            "--stun",
            "127.0.0.1:70000",
        ],
        &[
            "connect",
            "--local-file",
            "x.offer",
            "--remote-file",
            "x.offer",
        ],
        &[
            "connect",
            "--local-file",
            "x.offer",
            "--remote-file",
            "./x.offer",
        ],
    ];
    for args in cases {
        let started = Instant::now();
        let out = run_bounded("bad usage", holepunch().args(args), LIMIT);
        assert_eq!(out.code(), 2, "holepunch {args:?}: {out:?}");
        assert!(!out.stderr.trim().is_empty(), "a reason: {args:?}");
        assert!(!out.stderr.contains("resolve"), "no DNS lookup: {out:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "{args:?}");
    }
    let taken = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let listen = taken.local_addr().expect("addr").to_string();
    let out = run_bounded(
        "stun-server (port taken)",
        holepunch().args(["stun-server", "--listen", &listen]),
        LIMIT,
    );
    assert_eq!(out.code(), 1, "{out:?}");
    assert!(out.stderr.contains(&listen), "names the address: {out:?}");
}

#[test]
fn a_lonely_peer_hears_progress_and_fails_when_the_signal_server_goes() {
    let (signal, server) = signal_server();
    // A STUN server that never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let stun = silent.local_addr().expect("addr").to_string();
    let mut lonely = Proc::spawn(
        "lonely",
        holepunch().args([
            "connect",
            "--datagram",
            "--signal",
            &server,
            "--id",
            "lonely",
            "--peer",
            "nobody",
            "--stun",
            &stun,
            "--json",
            "--timeout",
            "60",
        ]),
    );
    let started = Instant::now();
    lonely.wait_for_lines("\"event\":\"gathered\"", 1, LIMIT);
    let warning = lonely.wait_for_lines("\"event\":\"warning\"", 1, Duration::from_secs(5));
    assert!(
        warning[0].contains(&stun),
        "names the silent server: {warning:?}"
    );
    let waiting = lonely.wait_for_lines("\"event\":\"waiting\"", 1, Duration::from_secs(8));
    assert!(waiting[0].contains("nobody"), "{waiting:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(4),
        "about every 5 s: {waited:?}"
    );
    signal.signal("TERM");
    let gone = Instant::now();
    let status = lonely.wait_exit(Duration::from_secs(5));
    let stderr = lonely.stderr_so_far();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(1),
        "fails at once:\n{stderr}"
    );
    assert!(gone.elapsed() < Duration::from_secs(5), "{stderr}");
    let failed = events(&stderr, "failed");
    assert!(
        failed
            .first()
            .and_then(|f| f.str_field("reason"))
            .is_some_and(|r| r.contains("signal")),
        "says why:\n{stderr}"
    );
    // `gathered` (host candidates) comes first of all.
    let first = stderr.lines().next().unwrap_or_default();
    assert!(first.contains("\"event\":\"gathered\""), "{stderr}");
}

#[test]
fn netcheck_reports_only_what_it_measured() {
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let target = silent.local_addr().expect("addr").to_string();
    let out = run_bounded(
        "netcheck (dead server)",
        holepunch().args(["netcheck", "--stun", &target, "--json", "--timeout", "2"]),
        LIMIT,
    );
    assert_eq!(out.code(), 1, "no answer is a failed job: {out:?}");
    let lines: Vec<Json> = out
        .stdout
        .lines()
        .filter_map(|l| parse_json(l).ok())
        .collect();
    assert_eq!(lines.len(), 2, "{out:?}");
    assert_eq!(lines[0].str_field("event"), Some("report"));
    assert_eq!(lines[1].str_field("event"), Some("failed"));
    assert!(
        lines[1]
            .str_field("reason")
            .is_some_and(|r| r.contains("no STUN server answered")),
        "{out:?}"
    );
    let human = run_bounded(
        "netcheck (dead server, human)",
        holepunch().args(["netcheck", "--stun", &target, "--timeout", "1"]),
        LIMIT,
    );
    assert_eq!(human.code(), 1, "{human:?}");
    assert!(
        human.stderr.contains("no STUN server answered"),
        "{human:?}"
    );

    let mut server = Proc::spawn(
        "stun-server",
        holepunch().args(["stun-server", "--listen", "127.0.0.1:0"]),
    );
    let line = server
        .wait_for_lines("listening on udp", 1, LIMIT)
        .remove(0);
    let primary = listening_addr(&line).to_string();
    let out = run_bounded(
        "netcheck",
        holepunch().args(["netcheck", "--stun", &primary, "--json"]),
        LIMIT,
    );
    assert_eq!(out.code(), 0, "{out:?}");
    let report = parse_json(out.stdout.trim()).expect("one JSON line");
    let portmap = report.get("portmap").expect("portmap");
    for key in ["upnp", "natpmp", "pcp"] {
        assert!(
            portmap.get(key).is_some_and(Json::is_null),
            "not probed: {out:?}"
        );
    }
    assert!(
        report.get("nat64_prefix").is_some_and(Json::is_null),
        "{out:?}"
    );
    let human = run_bounded(
        "netcheck (human)",
        holepunch().args(["netcheck", "--stun", &primary]),
        LIMIT,
    );
    assert!(
        human.stdout.contains("port mapping:  not probed"),
        "{human:?}"
    );
    assert!(
        human.stdout.contains("NAT64 prefix:  not probed"),
        "{human:?}"
    );
}

#[test]
fn demo_takes_the_largest_seed_and_tells_elapsed_only_with_a_path() {
    let out = run_bounded(
        "demo --seed max",
        holepunch().args(["demo", "--json", "--seed", "18446744073709551615"]),
        Duration::from_secs(120),
    );
    assert_eq!(out.code(), 0, "{out:?}");
    let lines: Vec<Json> = out
        .stdout
        .lines()
        .map(|l| parse_json(l).expect("JSON"))
        .collect();
    let summary = lines.last().expect("summary");
    assert_eq!(summary.str_field("event"), Some("summary"));
    assert_eq!(
        summary.get("ok").and_then(Json::as_bool),
        Some(true),
        "{summary:?}"
    );
    assert_eq!(
        summary.get("seed").and_then(Json::as_f64),
        Some(u64::MAX as f64)
    );
    let pairs: Vec<&Json> = lines
        .iter()
        .filter(|l| l.str_field("event") == Some("pair"))
        .collect();
    assert_eq!(
        pairs.len(),
        110,
        "10 x 10 situations and the ipv6-only+nat64 row"
    );
    for p in pairs {
        assert_eq!(
            p.get("as_expected"),
            p.get("runs"),
            "every cell as expected: {p:?}"
        );
        match p.str_field("path") {
            Some("none") => assert!(p.get("elapsed_ms").is_none(), "{p:?}"),
            _ => assert!(
                p.get("elapsed_ms").and_then(Json::as_f64).is_some(),
                "{p:?}"
            ),
        }
    }
    let help = run_bounded("help", holepunch().arg("--help"), LIMIT);
    let demo_line = help
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("demo"))
        .unwrap_or_default()
        .to_string();
    assert!(demo_line.contains("simulated"), "{help:?}");
    assert!(!help.stdout.contains("today a STUN server"), "{help:?}");
}
