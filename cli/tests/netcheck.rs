//! End to end: `holepunch netcheck` against `holepunch stun-server` on loopback, where there is
//! no NAT, and against a port nobody answers on.
mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use support::{Proc, addr, holepunch, json_raw, json_str, listening_addr, run_bounded};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Bound on starting up, stopping, and any one command.
const LIMIT: Duration = Duration::from_secs(15);
/// Every field `cli.md` promises in the `netcheck --json` report.
const REPORT_FIELDS: [&str; 10] = [
    "event",
    "udp",
    "public_v4",
    "public_v6",
    "mapping",
    "filtering",
    "hairpinning",
    "portmap",
    "nat64_prefix",
    // Not in the contract's list, but always there: the servers and their round-trip times.
    "servers",
];

/// Starts `holepunch stun-server` with `args`; returns it and its listening addresses.
fn start_server(args: &[&str], sockets: usize) -> (Proc, Vec<SocketAddr>) {
    let mut server = Proc::spawn("stun-server", holepunch().arg("stun-server").args(args));
    let lines = server.wait_for_lines("listening on udp", sockets, LIMIT);
    let addrs = lines.iter().map(|l| listening_addr(l)).collect();
    server.wait_for_lines("stop with SIGINT or SIGTERM", 1, LIMIT);
    (server, addrs)
}

/// Runs `holepunch netcheck --json` with `args` and returns its one output line.
fn netcheck_json(args: &[&str]) -> String {
    let out = run_bounded(
        "netcheck --json",
        holepunch().arg("netcheck").args(args).arg("--json"),
        LIMIT,
    );
    assert_eq!(out.code(), 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one JSON line: {out:?}");
    let line = lines[0].to_string();
    assert!(
        line.starts_with("{\"event\":\"report\",") && line.ends_with('}'),
        "{line}"
    );
    for field in REPORT_FIELDS {
        assert!(
            line.contains(&format!("\"{field}\":")),
            "no {field}: {line}"
        );
    }
    line
}

#[test]
fn rfc5780_server_on_loopback_sees_no_nat() {
    if !support::second_loopback() {
        return;
    }
    let (_server, addrs) = start_server(
        &["--listen", "127.0.0.1:0", "--alternate", "127.0.0.2:0"],
        4,
    );
    let primary = addrs[0].to_string();

    let line = netcheck_json(&["--stun", &primary, "--timeout", "5"]);
    assert_eq!(json_raw(&line, "udp").as_deref(), Some("true"), "{line}");
    let public = addr(&json_str(&line, "public_v4").expect("public_v4 is an address"));
    assert_eq!(public.ip(), LOCALHOST, "{line}");
    // No NAT: the public address is the mapping socket itself, the first local.
    assert!(
        line.contains(&format!("\"locals\":[\"{public}\",")),
        "{line}"
    );
    assert_eq!(
        json_raw(&line, "public_v6").as_deref(),
        Some("null"),
        "{line}"
    );
    assert_eq!(
        json_str(&line, "mapping").as_deref(),
        Some("endpoint-independent"),
        "{line}"
    );
    assert_eq!(
        json_str(&line, "filtering").as_deref(),
        Some("endpoint-independent"),
        "{line}"
    );
    assert_eq!(
        json_raw(&line, "hairpinning").as_deref(),
        Some("true"),
        "{line}"
    );
    assert!(
        // Not probed yet: unknown, not "no".
        line.contains(r#""portmap":{"upnp":null,"natpmp":null,"pcp":null}"#),
        "{line}"
    );
    assert_eq!(
        json_raw(&line, "nat64_prefix").as_deref(),
        Some("null"),
        "{line}"
    );
    assert!(
        line.contains(&format!(
            "\"servers\":[{{\"server\":\"{primary}\",\"rtt_ms\":"
        )),
        "{line}"
    );

    let human = run_bounded(
        "netcheck",
        holepunch().args(["netcheck", "--stun", &primary]),
        LIMIT,
    );
    assert_eq!(human.code(), 0, "{human:?}");
    for expected in [
        "UDP:           yes",
        "public IPv4:   127.0.0.1:",
        "public IPv6:   none",
        "mapping:       endpoint-independent",
        "filtering:     endpoint-independent",
        "hairpinning:   yes",
        "port mapping:  not probed",
        "NAT64 prefix:  not probed",
    ] {
        assert!(
            human.stdout.contains(expected),
            "no {expected:?}: {human:?}"
        );
    }
    assert!(human.stderr.contains("netcheck: probing"), "{human:?}");
}

#[test]
fn plain_server_gives_mapping_but_not_filtering() {
    // Without RFC 5780 the filtering tests cannot run; "mapped = own address" still proves no
    // NAT. Needs only 127.0.0.1.
    let (_server, addrs) = start_server(&["--listen", "127.0.0.1:0"], 1);
    let line = netcheck_json(&["--stun", &addrs[0].to_string()]);
    assert_eq!(json_raw(&line, "udp").as_deref(), Some("true"), "{line}");
    assert_eq!(
        json_str(&line, "mapping").as_deref(),
        Some("endpoint-independent"),
        "{line}"
    );
    assert_eq!(
        json_str(&line, "filtering").as_deref(),
        Some("unknown"),
        "{line}"
    );
}

#[test]
fn no_server_reports_udp_false_and_exits_one() {
    // A socket that never answers, held open so nobody else takes the port meanwhile.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let target = silent.local_addr().expect("addr").to_string();
    let started = Instant::now();
    let out = run_bounded(
        "netcheck --json (no server)",
        holepunch().args(["netcheck", "--stun", &target, "--json"]),
        LIMIT,
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    // Nothing measured is a failed job: the report (what is known), then `failed`.
    assert_eq!(out.code(), 1, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{out:?}");
    let line = lines[0];
    assert_eq!(json_str(line, "event").as_deref(), Some("report"), "{line}");
    assert_eq!(
        json_str(lines[1], "event").as_deref(),
        Some("failed"),
        "{out:?}"
    );
    assert_eq!(json_raw(line, "udp").as_deref(), Some("false"), "{line}");
    assert_eq!(
        json_raw(line, "public_v4").as_deref(),
        Some("null"),
        "{line}"
    );
    assert_eq!(
        json_str(line, "mapping").as_deref(),
        Some("unknown"),
        "{line}"
    );
    assert_eq!(
        json_str(line, "filtering").as_deref(),
        Some("unknown"),
        "{line}"
    );
    assert_eq!(
        json_raw(line, "hairpinning").as_deref(),
        Some("null"),
        "{line}"
    );

    // The overall cap holds too: --timeout 1 ends the run before the 2.2 s request profile.
    let started = Instant::now();
    let human = run_bounded(
        "netcheck (no server)",
        holepunch().args(["netcheck", "--stun", &target, "--timeout", "1"]),
        LIMIT,
    );
    assert_eq!(human.code(), 1, "{human:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert!(human.stdout.contains("UDP:           no"), "{human:?}");
    assert!(
        human.stderr.contains("no STUN server answered"),
        "{human:?}"
    );
}

#[test]
fn bad_usage_exits_two() {
    let cases: [&[&str]; 4] = [
        &["netcheck"],
        &["netcheck", "--stun"],
        &["netcheck", "--stun", "127.0.0.1:3478", "--timeout", "0"],
        &["netcheck", "--stun", "127.0.0.1:3478", "--no-such-flag"],
    ];
    for args in cases {
        let out = run_bounded("bad usage", holepunch().args(args), LIMIT);
        assert_eq!(out.code(), 2, "holepunch {args:?}: {out:?}");
    }
}
