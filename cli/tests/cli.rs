//! End to end: the `holepunch` binary's `stun-server`, `stun` and `demo`, as scripts use them.
mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use holepunch_core::stun::client::BindingOptions;
use holepunch_std::StunOptions;
use support::{Proc, addr, free_port, holepunch, json_raw, json_str, listening_addr, run_bounded};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Bound on starting up, stopping, and any one command.
const LIMIT: Duration = Duration::from_secs(15);

/// Starts `holepunch stun-server` with `args` and waits until it logs `sockets` listening lines.
fn start_server(args: &[&str], sockets: usize) -> (Proc, Vec<SocketAddr>) {
    let mut server = Proc::spawn("stun-server", holepunch().arg("stun-server").args(args));
    let lines = server.wait_for_lines("listening on udp", sockets, LIMIT);
    let addrs = lines.iter().map(|l| listening_addr(l)).collect();
    server.wait_for_lines("stop with SIGINT or SIGTERM", 1, LIMIT);
    (server, addrs)
}

/// Stops the server with `signal` and checks the clean exit.
fn stop_server(mut server: Proc, signal: &str) {
    server.signal(signal);
    let status = server.wait_exit(LIMIT);
    let stderr = server.stderr_so_far();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "stun-server should exit 0 on SIG{signal}; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains(&format!("SIG{signal}, stopping")),
        "stderr:\n{stderr}"
    );
}

#[test]
fn stun_json_against_stun_server() {
    let port = free_port(LOCALHOST);
    let listen = format!("127.0.0.1:{port}");
    let (server, addrs) = start_server(&["--listen", &listen], 1);
    assert_eq!(addrs, vec![addr(&listen)]);

    let out = run_bounded(
        "stun --json",
        holepunch().args(["stun", &listen, "--json", "--timeout", "5"]),
        LIMIT,
    );
    assert_eq!(out.code(), 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON line: {out:?}");
    let line = lines[0];
    assert_eq!(json_str(line, "event").as_deref(), Some("mapped"), "{line}");
    let mapped = addr(&json_str(line, "address").expect("address field"));
    assert_eq!(mapped.ip(), LOCALHOST, "{line}");
    assert_ne!(mapped.port(), 0, "{line}");
    // The client bound 0.0.0.0:P; the server saw 127.0.0.1:P.
    let local = addr(&json_str(line, "local").expect("local field"));
    assert_eq!(local.port(), mapped.port(), "{line}");
    let rtt: u64 = json_raw(line, "rtt_ms")
        .expect("rtt_ms field")
        .parse()
        .expect("rtt_ms is an integer");
    assert!(rtt < 5000, "{line}");
    assert_eq!(json_str(line, "from"), Some(listen.clone()), "{line}");

    let human = run_bounded("stun", holepunch().args(["stun", &listen]), LIMIT);
    assert_eq!(human.code(), 0, "{human:?}");
    assert!(
        human.stdout.starts_with("mapped 127.0.0.1:") && human.stdout.contains("(rtt "),
        "{human:?}"
    );
    stop_server(server, "TERM");
}

#[test]
fn verbose_prints_tracing_on_stderr_and_the_default_prints_nothing_new() {
    let port = free_port(LOCALHOST);
    let listen = format!("127.0.0.1:{port}");
    let (server, _) = start_server(&["--listen", &listen], 1);
    // The driver's event when the server answers, with its target (the module path).
    let traced = |stderr: &str| {
        stderr
            .lines()
            .any(|l| l.contains("holepunch_std") && l.contains("server answered"))
    };

    let quiet = run_bounded("stun", holepunch().args(["stun", &listen]), LIMIT);
    assert_eq!(quiet.code(), 0, "{quiet:?}");
    assert!(quiet.stdout.starts_with("mapped 127.0.0.1:"), "{quiet:?}");
    assert_eq!(quiet.stderr, "", "no -v, no RUST_LOG: stderr as before");

    for flags in [&["-v", "stun", &listen][..], &["stun", &listen, "-vv"][..]] {
        let verbose = run_bounded("stun -v", holepunch().args(flags), LIMIT);
        assert_eq!(verbose.code(), 0, "{verbose:?}");
        assert!(
            verbose.stdout.starts_with("mapped 127.0.0.1:"),
            "{verbose:?}"
        );
        assert!(traced(&verbose.stderr), "{flags:?}: {verbose:?}");
    }

    let from_env = run_bounded(
        "stun RUST_LOG",
        holepunch()
            .args(["stun", &listen, "--json"])
            .env("RUST_LOG", "holepunch_std=debug"),
        LIMIT,
    );
    assert_eq!(from_env.code(), 0, "{from_env:?}");
    assert!(traced(&from_env.stderr), "{from_env:?}");
    // --json output stays on stdout, one line, untouched by diagnostics.
    assert_eq!(from_env.stdout.lines().count(), 1, "{from_env:?}");
    assert_eq!(
        json_str(from_env.stdout.trim_end(), "event").as_deref(),
        Some("mapped"),
        "{from_env:?}"
    );
    stop_server(server, "TERM");
}

#[test]
fn rfc5780_stun_server_answers_change_requests() {
    if !support::second_loopback() {
        return;
    }
    let (server, addrs) = start_server(
        &["--listen", "127.0.0.1:0", "--alternate", "127.0.0.2:0"],
        4,
    );
    let (primary, alternate) = (addrs[0], addrs[3]);
    assert_eq!(primary.ip(), LOCALHOST);
    assert_eq!(alternate.ip(), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    assert!(primary.port() != 0 && alternate.port() != 0 && primary.port() != alternate.port());

    // A library client asks the binary's server to answer from its other IP and port.
    let options = StunOptions::rfc5780()
        .with_local("127.0.0.1:0".parse().expect("addr"))
        .with_timeout(Duration::from_secs(5))
        .with_binding(BindingOptions {
            change_ip: true,
            change_port: true,
            response_port: None,
        });
    let report = holepunch_std::stun(primary, &options).expect("binding");
    assert_eq!(report.mapped, report.local);
    assert_eq!(report.from, alternate, "{report:?}");
    assert_eq!(report.response_origin, Some(alternate), "{report:?}");
    assert_eq!(report.other_address, Some(alternate), "{report:?}");
    stop_server(server, "INT");
}

#[test]
fn stun_times_out_with_a_failed_event() {
    // A socket that never answers, held open so nobody else takes the port meanwhile.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let target = silent.local_addr().expect("addr").to_string();
    let started = std::time::Instant::now();
    let out = run_bounded(
        "stun --json (timeout)",
        holepunch().args(["stun", &target, "--json", "--timeout", "1"]),
        LIMIT,
    );
    assert_eq!(out.code(), 1, "{out:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let line = out.stdout.trim();
    assert_eq!(
        json_str(line, "event").as_deref(),
        Some("failed"),
        "{out:?}"
    );
    let reason = json_str(line, "reason").expect("reason field");
    assert!(reason.contains("timeout"), "{reason}");

    let human = run_bounded(
        "stun (timeout)",
        holepunch().args(["stun", &target, "--timeout", "0.5"]),
        LIMIT,
    );
    assert_eq!(human.code(), 1, "{human:?}");
    assert!(human.stdout.is_empty(), "{human:?}");
    assert!(human.stderr.contains("timeout"), "{human:?}");
}

#[test]
fn demo_json_exits_zero_and_ends_with_a_summary() {
    let out = run_bounded(
        "demo --json",
        holepunch().args(["demo", "--json", "--seed", "42"]),
        LIMIT,
    );
    assert_eq!(out.code(), 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines.len() >= 3, "{out:?}");
    for line in &lines {
        assert!(
            line.starts_with("{\"event\":\"") && line.ends_with('}'),
            "not a JSON event line: {line}"
        );
    }
    let summary = lines.last().copied().unwrap_or_default();
    assert_eq!(
        json_str(summary, "event").as_deref(),
        Some("summary"),
        "{summary}"
    );
    assert_eq!(
        json_raw(summary, "ok").as_deref(),
        Some("true"),
        "{summary}"
    );
    assert_eq!(
        json_raw(summary, "seed").as_deref(),
        Some("42"),
        "{summary}"
    );
    let pairs: Vec<&&str> = lines
        .iter()
        .filter(|l| json_str(l, "event").as_deref() == Some("pair"))
        .collect();
    assert_eq!(
        pairs.len(),
        110,
        "every ordered pair of the 9 profiles and symmetric-random+pcp, and the ipv6-only+nat64 row: {out:?}"
    );
    let direct = |a: &str, b: &str| {
        pairs.iter().any(|l| {
            json_str(l, "a").as_deref() == Some(a)
                && json_str(l, "b").as_deref() == Some(b)
                && json_str(l, "path").as_deref() == Some("direct")
        })
    };
    assert!(
        direct("symmetric-random", "port-restricted-cone"),
        "birthday punching"
    );
    assert!(
        direct("ipv6-only+nat64", "symmetric-random"),
        "an IPv6-only host through the NAT64"
    );
    assert!(
        !direct("ipv6-only+nat64", "udp-blocked"),
        "through the relay"
    );
    assert!(
        direct("port-restricted-cone", "symmetric-sequential"),
        "port prediction"
    );
    assert!(
        direct("symmetric-random+pcp", "symmetric-random"),
        "a mapping gateway makes symmetric x symmetric direct"
    );
    assert!(
        !direct("symmetric-random", "symmetric-random"),
        "without one it is relayed"
    );
    assert!(
        !direct("udp-blocked", "open"),
        "udp-blocked never goes direct"
    );
}

#[test]
fn demo_human_exits_zero() {
    let out = run_bounded("demo", holepunch().arg("demo"), LIMIT);
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(out.stdout.contains("summary: 110 pairs"), "{out:?}");
    assert!(out.stdout.contains("every pair as expected"), "{out:?}");
    assert!(!out.stdout.contains("FAILED"), "{out:?}");
}

#[test]
fn bad_usage_exits_two() {
    let port = free_port(LOCALHOST).to_string();
    let cases: [&[&str]; 8] = [
        &[],
        &["no-such-command"],
        &["stun"],
        &["stun", "127.0.0.1:3478", "--timeout", "0"],
        &["stun", "127.0.0.1:3478", "--no-such-flag"],
        &["stun-server"],
        &["stun-server", "--listen", "not-an-address"],
        // Same IP for primary and alternate: RFC 5780 cannot be served.
        &[
            "stun-server",
            "--listen",
            "127.0.0.1:0",
            "--alternate",
            &*format!("127.0.0.1:{port}"),
        ],
    ];
    for args in cases {
        let out = run_bounded("bad usage", holepunch().args(args), LIMIT);
        assert_eq!(out.code(), 2, "holepunch {args:?}: {out:?}");
    }
}

#[test]
fn stun_server_on_a_taken_port_exits_one() {
    let taken = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let listen = taken.local_addr().expect("addr").to_string();
    let out = run_bounded(
        "stun-server (port taken)",
        holepunch().args(["stun-server", "--listen", &listen]),
        LIMIT,
    );
    assert_eq!(out.code(), 1, "{out:?}");
    assert!(out.stderr.contains("cannot listen"), "{out:?}");
}
