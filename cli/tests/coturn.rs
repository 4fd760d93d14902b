//! Interop with coturn: our client against `turnserver`, and coturn's `turnutils_stunclient`
//! against our `holepunch stun-server`, all on loopback.
//!
//! Needs coturn (`turnserver`, `turnutils_stunclient`) on PATH. Without it each test prints why
//! it skipped, or fails under `CI=true`.
mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use holepunch_core::stun::client::BindingOptions;
use holepunch_std::StunOptions;
use support::{Proc, TempDir, addr, free_port, holepunch, json_str, listening_addr, run_bounded};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const SECOND: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const LIMIT: Duration = Duration::from_secs(15);

/// Whether coturn's tools are installed; skips (prints why) or, under CI, fails when not.
fn coturn_installed() -> bool {
    let missing: Vec<&str> = ["turnserver", "turnutils_stunclient"]
        .into_iter()
        .filter(|p| !support::on_path(p))
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        !support::is_ci(),
        "CI=true: coturn is required but {missing:?} not on PATH (scripts/test.sh installs it as root)"
    );
    println!("skipped: coturn not installed (run scripts/test.sh as root)");
    false
}

/// A `turnserver` in STUN-only mode on loopback, killed when dropped, with its pid file, log
/// and database in a temporary directory.
struct Coturn {
    port: u16,
    // Field order: the process dies before its directory is removed.
    _proc: Proc,
    dir: TempDir,
}

impl Coturn {
    /// Starts coturn on `ips` (two IPs switch on its RFC 5780 support) and waits until it answers.
    fn start(ips: &[IpAddr]) -> Coturn {
        let dir = TempDir::new("holepunch-coturn");
        let port = free_port(LOCALHOST);
        let alt_port = free_port(LOCALHOST);
        let mut cmd = std::process::Command::new("turnserver");
        cmd.arg("-n") // no configuration file
            .arg(format!("--listening-port={port}"))
            .arg(format!("--alt-listening-port={alt_port}"))
            .args([
                "--stun-only",
                "--no-tls",
                "--no-dtls",
                "--no-cli",
                "--simple-log",
            ])
            .arg("--no-stdout-log")
            .arg(format!(
                "--log-file={}",
                dir.path().join("turnserver.log").display()
            ))
            .arg(format!(
                "--pidfile={}",
                dir.path().join("turnserver.pid").display()
            ))
            .arg(format!(
                "--userdb={}",
                dir.path().join("turndb.sqlite").display()
            ));
        for ip in ips {
            cmd.arg(format!("--listening-ip={ip}"));
        }
        let proc = Proc::spawn("turnserver", &mut cmd);
        let coturn = Coturn {
            port,
            _proc: proc,
            dir,
        };
        coturn.wait_ready(ips[0]);
        coturn
    }

    /// Polls with short Binding requests until coturn answers, bounded.
    fn wait_ready(&self, ip: IpAddr) {
        let target = SocketAddr::new(ip, self.port);
        let options = StunOptions::default().with_timeout(Duration::from_millis(300));
        let deadline = Instant::now() + LIMIT;
        while Instant::now() < deadline {
            if holepunch_std::stun(target, &options).is_ok() {
                return;
            }
        }
        panic!(
            "turnserver did not answer on {target} within {LIMIT:?}; its log:\n{}",
            self.log()
        );
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("turnserver.log"))
            .unwrap_or_else(|e| format!("(no log: {e})"))
    }
}

#[test]
fn our_stun_cli_against_coturn() {
    if !coturn_installed() {
        return;
    }
    let coturn = Coturn::start(&[LOCALHOST]);
    let target = format!("127.0.0.1:{}", coturn.port);
    let out = run_bounded(
        "holepunch stun --json",
        holepunch().args(["stun", &target, "--json", "--timeout", "5"]),
        LIMIT,
    );
    assert_eq!(out.code(), 0, "{out:?}\ncoturn log:\n{}", coturn.log());
    let line = out.stdout.trim();
    assert_eq!(json_str(line, "event").as_deref(), Some("mapped"), "{line}");
    let mapped = addr(&json_str(line, "address").expect("address field"));
    assert_eq!(mapped.ip(), LOCALHOST, "{line}");
    assert_ne!(mapped.port(), 0, "{line}");
}

#[test]
fn our_rfc5780_client_against_coturn() {
    if !coturn_installed() {
        return;
    }
    if !support::second_loopback() {
        return;
    }
    let coturn = Coturn::start(&[LOCALHOST, SECOND]);
    let primary = SocketAddr::new(LOCALHOST, coturn.port);
    let socket = UdpSocket::bind((LOCALHOST, 0)).expect("bind");
    let local = socket.local_addr().expect("addr");
    // Padded requests (PADDING is RFC 5780's own attribute): coturn must accept them.
    let ask = |change_ip, change_port| {
        let options = StunOptions::rfc5780()
            .with_timeout(Duration::from_secs(5))
            .with_binding(BindingOptions {
                change_ip,
                change_port,
                response_port: None,
            });
        holepunch_std::stun_on(&socket, primary, &options).unwrap_or_else(|e| {
            panic!(
                "binding ({change_ip}, {change_port}): {e}\n{}",
                coturn.log()
            )
        })
    };
    let plain = ask(false, false);
    assert_eq!(plain.mapped, local, "{plain:?}");
    assert_eq!(plain.from, primary, "{plain:?}");
    assert_eq!(plain.response_origin, Some(primary), "{plain:?}");
    let other = plain
        .other_address
        .expect("coturn with two IPs sends OTHER-ADDRESS");
    assert_eq!(other.ip(), SECOND, "{plain:?}");
    assert_ne!(other.port(), primary.port(), "{plain:?}");
    for (change_ip, change_port) in [(true, true), (false, true), (true, false)] {
        let r = ask(change_ip, change_port);
        let expected = SocketAddr::new(
            if change_ip { other.ip() } else { primary.ip() },
            if change_port {
                other.port()
            } else {
                primary.port()
            },
        );
        assert_eq!(r.mapped, local, "{r:?}");
        assert_eq!(
            r.from, expected,
            "change ({change_ip}, {change_port}): {r:?}"
        );
        assert_eq!(r.response_origin, Some(expected), "{r:?}");
    }
}

/// Starts `holepunch stun-server` and returns it with its addresses once they are logged.
fn start_our_server(args: &[&str], sockets: usize) -> (Proc, Vec<SocketAddr>) {
    let mut server = Proc::spawn("stun-server", holepunch().arg("stun-server").args(args));
    let lines = server.wait_for_lines("listening on udp", sockets, LIMIT);
    server.wait_for_lines("stop with SIGINT or SIGTERM", 1, LIMIT);
    (server, lines.iter().map(|l| listening_addr(l)).collect())
}

#[test]
fn coturn_stunclient_against_our_server() {
    if !coturn_installed() {
        return;
    }
    let (_server, addrs) = start_our_server(&["--listen", "127.0.0.1:0"], 1);
    let port = addrs[0].port().to_string();
    let out = run_bounded(
        "turnutils_stunclient",
        std::process::Command::new("turnutils_stunclient").args(["-p", &port, "127.0.0.1"]),
        LIMIT,
    );
    assert_eq!(out.code(), 0, "{out:?}");
    let reflexive: Vec<SocketAddr> = out
        .stdout
        .lines()
        .filter_map(|l| l.split("UDP reflexive addr: ").nth(1))
        .map(|a| addr(a.trim()))
        .collect();
    assert!(
        !reflexive.is_empty(),
        "no reflexive address reported: {out:?}"
    );
    assert!(
        reflexive
            .iter()
            .all(|a| a.ip() == LOCALHOST && a.port() != 0),
        "{out:?}"
    );
}

#[test]
fn coturn_stunclient_rfc5780_against_our_server() {
    if !coturn_installed() {
        return;
    }
    if !support::second_loopback() {
        return;
    }
    let (_server, addrs) = start_our_server(
        &["--listen", "127.0.0.1:0", "--alternate", "127.0.0.2:0"],
        4,
    );
    let alternate = addrs[3];
    // -f forces its RFC 5780 steps: CHANGE-REQUEST with RESPONSE-PORT, then a 1500-byte PADDING
    // probe. Each must be answered, or it waits forever (hence the bound).
    let out = run_bounded(
        "turnutils_stunclient -f",
        std::process::Command::new("turnutils_stunclient").args([
            "-f",
            "-p",
            &addrs[0].port().to_string(),
            "127.0.0.1",
        ]),
        LIMIT,
    );
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(
        out.stdout.contains("UDP reflexive addr: 127.0.0.1:"),
        "{out:?}"
    );
    assert!(
        out.stdout
            .contains(&format!("Response origin: : {alternate}")),
        "the change-IP-and-port answer must name the alternate: {out:?}"
    );
    assert!(
        out.stdout.contains(&format!("Other addr: : {alternate}")),
        "{out:?}"
    );
}

#[test]
fn coturn_stunclient_without_flags_gets_all_three_rfc5780_responses_from_our_server() {
    if !coturn_installed() {
        return;
    }
    if !support::second_loopback() {
        return;
    }
    // No flag on either side: turnutils_stunclient sends bare requests, which our RFC 5780
    // server's default rate-limited policy answers in full.
    let (_server, addrs) = start_our_server(
        &["--listen", "127.0.0.1:0", "--alternate", "127.0.0.2:0"],
        4,
    );
    let alternate = addrs[3];
    let out = run_bounded(
        "turnutils_stunclient",
        std::process::Command::new("turnutils_stunclient").args([
            "-p",
            &addrs[0].port().to_string(),
            "127.0.0.1",
        ]),
        LIMIT,
    );
    assert_eq!(out.code(), 0, "{out:?}");
    for n in 1..=3 {
        assert!(
            out.stdout.contains(&format!("RFC 5780 response {n}")),
            "response {n} missing: {out:?}"
        );
    }
    assert!(
        out.stdout.contains(&format!("Other addr: : {alternate}")),
        "{out:?}"
    );
    assert!(
        out.stdout
            .contains(&format!("Response origin: : {alternate}")),
        "the change-IP-and-port answer comes from the alternate: {out:?}"
    );
}

#[test]
fn our_stun_cli_gets_other_address_from_our_rfc5780_server() {
    if !support::second_loopback() {
        return;
    }
    let (_server, addrs) = start_our_server(
        &["--listen", "127.0.0.1:0", "--alternate", "127.0.0.2:0"],
        4,
    );
    let out = run_bounded(
        "holepunch stun --json",
        holepunch().args(["stun", &addrs[0].to_string(), "--json", "--timeout", "5"]),
        LIMIT,
    );
    assert_eq!(out.code(), 0, "{out:?}");
    let line = out.stdout.trim();
    assert_eq!(
        json_str(line, "other_address").map(|a| addr(&a)),
        Some(addrs[3]),
        "{line}"
    );
}

/// Bytes and datagrams that came back to one socket after it sent `count` bare 20-byte Binding
/// requests to `target` as fast as it could (received by a second thread while sending, then
/// for a quiet 500 ms), and the seconds from the first request to the last answer counted.
fn flood(target: SocketAddr, count: usize) -> (usize, usize, f64) {
    let socket = UdpSocket::bind((LOCALHOST, 0)).expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let started = Instant::now();
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut buf = [0u8; 2048];
            let (mut bytes, mut datagrams) = (0, 0);
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                match socket.recv(&mut buf) {
                    Ok(n) => {
                        bytes += n;
                        datagrams += 1;
                    }
                    Err(_) => break, // 500 ms of silence: the flood's answers are all in.
                }
            }
            (bytes, datagrams)
        });
        let mut req = [0u8; 20];
        req[1] = 1; // Binding request, length 0
        req[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
        for i in 0..count {
            req[8..16].copy_from_slice(&(i as u64).to_be_bytes());
            let _ = socket.send_to(&req, target);
            if i % 500 == 499 {
                // Let the reader keep up, so its socket buffer does not overflow.
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let (bytes, datagrams) = reader.join().expect("reader");
        let elapsed = started.elapsed().saturating_sub(Duration::from_millis(500));
        (bytes, datagrams, elapsed.as_secs_f64())
    })
}

#[test]
fn a_flood_of_bare_requests_stays_within_our_budget_and_coturn_is_reported_beside() {
    if !coturn_installed() {
        return;
    }
    if !support::second_loopback() {
        return;
    }
    const COUNT: usize = 20_000;
    let (rate, burst) = (10.0, 30.0);
    let (_server, addrs) = start_our_server(
        &[
            "--listen",
            "127.0.0.1:0",
            "--alternate",
            "127.0.0.2:0",
            "--rate-limit",
            "10/s",
            "--burst",
            "30",
        ],
        4,
    );
    let (ours, ours_n, secs) = flood(addrs[0], COUNT);
    // A full IPv4 answer: header, XOR-MAPPED-ADDRESS, OTHER-ADDRESS, RESPONSE-ORIGIN (12 each),
    // SOFTWARE "holepunch x.y.z" (4 + 16) and FINGERPRINT (8).
    let max_answer = 20 + 3 * 12 + 20 + 8;
    let budget = ((burst + rate * secs.max(0.0)).floor() as usize + 1) * max_answer;
    let coturn = Coturn::start(&[LOCALHOST, SECOND]);
    let (theirs, theirs_n, _) = flood(SocketAddr::new(LOCALHOST, coturn.port), COUNT);
    println!(
        "flood of {COUNT} bare 20-byte requests ({} bytes in): holepunch stun-server --alternate \
         sent {ours} bytes in {ours_n} answers over {secs:.2} s (budget {budget}); coturn with two \
         IPs sent {theirs} bytes in {theirs_n} answers",
        COUNT * 20
    );
    assert!(ours > 0, "the burst is answered");
    assert!(
        ours <= budget,
        "{ours} bytes out > budget {budget} ({ours_n} answers)"
    );
}
