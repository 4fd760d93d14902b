//! End to end: `holepunch signal` and `holepunch connect` as scripts use them, on loopback.
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::{Proc, TempDir, addr, holepunch, json_raw, json_str, listening_addr, run_bounded};

/// Bound on any one process or wait.
const LIMIT: Duration = Duration::from_secs(20);
/// Lines each side sends.
const LINES: usize = 50;

/// Starts `holepunch stun-server` on a free loopback port.
fn stun_server() -> (Proc, SocketAddr) {
    let mut p = Proc::spawn(
        "stun-server",
        holepunch().args(["stun-server", "--listen", "127.0.0.1:0"]),
    );
    let line = p.wait_for_lines("listening on udp", 1, LIMIT).remove(0);
    p.wait_for_lines("stop with SIGINT or SIGTERM", 1, LIMIT);
    (p, listening_addr(&line))
}

/// Starts `holepunch signal` on a free loopback port.
fn signal_server() -> (Proc, SocketAddr) {
    let mut p = Proc::spawn(
        "signal",
        holepunch().args(["signal", "--listen", "127.0.0.1:0"]),
    );
    let line = p.wait_for_lines("listening on tcp", 1, LIMIT).remove(0);
    p.wait_for_lines("stop with SIGINT or SIGTERM", 1, LIMIT);
    let text = line.rsplit(' ').next().unwrap_or_default();
    (p, addr(text))
}

/// A `holepunch connect` process fed `input` on stdin (closed afterwards), killed on drop.
struct Connect {
    name: String,
    child: Child,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<String>>,
}

/// What a finished `connect` left behind.
#[derive(Debug)]
struct Finished {
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Finished {
    /// The `--json` lines with this event name.
    fn events(&self, name: &str) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| json_str(l, "event").as_deref() == Some(name))
            .collect()
    }

    fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }
}

impl Connect {
    fn spawn<S: AsRef<std::ffi::OsStr>>(name: &str, args: &[S], input: Vec<u8>) -> Connect {
        let mut child = holepunch()
            .args(["connect", "--datagram"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let mut stdin = child.stdin.take().expect("piped stdin");
        std::thread::spawn(move || {
            // Dropping stdin afterwards is the EOF the process waits for.
            let _ = stdin.write_all(&input);
        });
        let mut out = child.stdout.take().expect("piped stdout");
        let stdout = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = out.read_to_end(&mut v);
            v
        });
        let mut err = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        Connect {
            name: name.into(),
            child,
            stdout: Some(stdout),
            stderr: Some(stderr),
        }
    }

    /// Waits up to `limit` for the exit (killing the process after that) and collects output.
    fn finish(mut self, started: Instant, limit: Duration) -> Finished {
        let deadline = started + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let elapsed = started.elapsed();
        let stdout = self.stdout.take().map(|h| h.join().unwrap_or_default());
        let stderr = self.stderr.take().map(|h| h.join().unwrap_or_default());
        let finished = Finished {
            status,
            stdout: String::from_utf8_lossy(&stdout.unwrap_or_default()).into_owned(),
            stderr: stderr.unwrap_or_default(),
            elapsed,
        };
        assert!(
            finished.status.is_some(),
            "{} still running after {limit:?}: {finished:?}",
            self.name
        );
        finished
    }
}

impl Drop for Connect {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// `LINES` numbered lines tagged with `who`.
fn payload(who: &str) -> String {
    (0..LINES)
        .map(|i| format!("{who} line {i:02}: the quick brown fox jumps over the lazy dog\n"))
        .collect()
}

/// Checks a `connected` (or `path_changed`) line's contract fields; returns the path kind.
fn check_path_event(line: &str) -> String {
    let path = json_str(line, "path").expect("path field");
    addr(&json_str(line, "local").expect("local field"));
    addr(&json_str(line, "remote").expect("remote field"));
    for key in ["rtt_ms", "elapsed_ms"] {
        let n: u64 = json_raw(line, key)
            .unwrap_or_else(|| panic!("{key} in {line}"))
            .parse()
            .unwrap_or_else(|e| panic!("{key} is an integer in {line}: {e}"));
        assert!(n < 60_000, "{line}");
    }
    path
}

/// Both sides of a session: connected directly, every line delivered, clean exit.
fn check_exchange(a: &Finished, b: &Finished, a_json: bool, b_json: bool) {
    for (side, out, json, peer) in [("a", a, a_json, "b"), ("b", b, b_json, "a")] {
        assert_eq!(out.code(), Some(0), "{side} exits 0: {out:?}");
        // stdout carries exactly the peer's data: all of it, in order (loopback keeps both).
        assert_eq!(
            out.stdout,
            payload(peer),
            "{side} receives every line: {out:?}"
        );
        if json {
            let connected = out.events("connected");
            assert_eq!(connected.len(), 1, "{side}: one connected event: {out:?}");
            assert_eq!(check_path_event(connected[0]), "direct", "{out:?}");
            for changed in out.events("path_changed") {
                assert_eq!(check_path_event(changed), "direct", "{out:?}");
            }
            let gathered = out.events("gathered");
            assert_eq!(gathered.len(), 1, "{out:?}");
            let n: u32 = json_raw(gathered[0], "candidates")
                .and_then(|v| v.parse().ok())
                .expect("candidates is a number");
            assert!(n >= 1, "{out:?}");
            assert_eq!(out.events("checking").len(), 1, "{out:?}");
            assert!(out.events("failed").is_empty(), "{out:?}");
            let closed = out.events("closed");
            assert_eq!(closed.len(), 1, "{out:?}");
            assert_eq!(
                json_raw(closed[0], "received_bytes"),
                Some(payload(peer).len().to_string()),
                "{out:?}"
            );
            // Every stderr line is a JSON object.
            assert!(
                out.stderr.lines().all(|l| l.starts_with("{\"event\":")),
                "{out:?}"
            );
        } else {
            assert!(
                out.stderr.contains("connect: connected: direct "),
                "{side}: {out:?}"
            );
        }
    }
}

#[test]
fn two_peers_connect_through_the_signal_server() {
    let (stun, stun_addr) = stun_server();
    let (signal, signal_addr) = signal_server();
    let (stun_s, signal_s) = (stun_addr.to_string(), signal_addr.to_string());
    let common = |id: &'static str, peer: &'static str| {
        vec![
            "--signal",
            &signal_s,
            "--id",
            id,
            "--peer",
            peer,
            "--stun",
            &stun_s,
            "--json",
            "--timeout",
            "15",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>()
    };
    let started = Instant::now();
    let a_args = common("alice", "bob");
    let b_args = common("bob", "alice");
    let a = Connect::spawn("alice", &a_args, payload("a").into_bytes());
    // The second peer registers a little later: its offer waits queued at the server.
    std::thread::sleep(Duration::from_millis(200));
    let b = Connect::spawn("bob", &b_args, payload("b").into_bytes());
    let a = a.finish(started, LIMIT);
    let b = b.finish(started, LIMIT);
    check_exchange(&a, &b, true, true);
    eprintln!(
        "signal session: alice {:?}, bob {:?} (from alice's start)",
        a.elapsed, b.elapsed
    );
    drop((stun, signal));
}

#[test]
fn sigusr1_restarts_ice_and_the_session_goes_on() {
    // A network manager hook (or a user) sends SIGUSR1 after a network change: the side restarts
    // ICE, the peer follows, both select a path again, and lines sent before and after arrive.
    let (stun, stun_addr) = stun_server();
    let (signal, signal_addr) = signal_server();
    let (stun_s, signal_s) = (stun_addr.to_string(), signal_addr.to_string());
    let spawn = |id: &str, peer: &str| {
        Proc::spawn_with_stdin(
            id,
            holepunch().args([
                "connect",
                "--datagram",
                "--signal",
                &signal_s,
                "--id",
                id,
                "--peer",
                peer,
                "--stun",
                &stun_s,
                "--json",
                "--timeout",
                "15",
            ]),
        )
    };
    let (mut a, mut a_in) = spawn("alice", "bob");
    let (mut b, mut b_in) = spawn("bob", "alice");
    a.wait_for_lines("\"event\":\"connected\"", 1, LIMIT);
    b.wait_for_lines("\"event\":\"connected\"", 1, LIMIT);
    a_in.write_all(b"before the restart\n").expect("write");
    a.signal("USR1");
    let a_restart = a
        .wait_for_lines("\"event\":\"restart\"", 1, LIMIT)
        .remove(0);
    let b_restart = b
        .wait_for_lines("\"event\":\"restart\"", 1, LIMIT)
        .remove(0);
    assert_eq!(
        json_str(&a_restart, "reason").as_deref(),
        Some("signal"),
        "{a_restart}"
    );
    assert_eq!(
        json_str(&b_restart, "reason").as_deref(),
        Some("peer"),
        "{b_restart}"
    );
    // A path on the new credentials, on both sides.
    a.wait_for_lines("\"event\":\"path_changed\"", 1, LIMIT);
    b.wait_for_lines("\"event\":\"path_changed\"", 1, LIMIT);
    a_in.write_all(b"after the restart\n").expect("write");
    b_in.write_all(b"hello from bob\n").expect("write");
    drop((a_in, b_in));
    for p in [&mut a, &mut b] {
        let status = p.wait_exit(LIMIT);
        assert!(
            status.is_some_and(|s| s.success()),
            "did not exit 0: {status:?}\n{}",
            p.stderr_so_far()
        );
    }
    let (a_out, b_out) = (a.stdout(), b.stdout());
    assert_eq!(b_out, "before the restart\nafter the restart\n");
    assert_eq!(a_out, "hello from bob\n");
    drop((stun, signal));
}

#[test]
fn two_peers_connect_through_offer_files() {
    let dir = TempDir::new("holepunch-connect-files");
    let a_file = dir.path().join("a.offer");
    let b_file = dir.path().join("b.offer");
    let (a_s, b_s) = (
        a_file.to_string_lossy().into_owned(),
        b_file.to_string_lossy().into_owned(),
    );
    let started = Instant::now();
    let a = Connect::spawn(
        "a",
        &[
            "--local-file",
            &a_s,
            "--remote-file",
            &b_s,
            "--controlling",
            "--json",
            "--timeout",
            "15",
        ],
        payload("a").into_bytes(),
    );
    let b = Connect::spawn(
        "b",
        &[
            "--local-file",
            &b_s,
            "--remote-file",
            &a_s,
            "--controlled",
            "--timeout",
            "15",
        ],
        payload("b").into_bytes(),
    );
    let a = a.finish(started, LIMIT);
    let b = b.finish(started, LIMIT);
    check_exchange(&a, &b, true, false);
    // The offer is in the documented format, whole lines only.
    let offer = std::fs::read_to_string(&a_file).expect("a's offer file");
    let lines: Vec<&str> = offer.lines().collect();
    assert!(lines[0].starts_with("ice-ufrag:"), "{offer}");
    assert!(lines[1].starts_with("ice-pwd:"), "{offer}");
    assert!(
        lines.iter().any(|l| l.starts_with("a=candidate:")),
        "{offer}"
    );
    assert!(lines.contains(&"a=end-of-candidates"), "{offer}");
    assert!(offer.ends_with('\n'), "{offer}");
    eprintln!("file session: a {:?}, b {:?}", a.elapsed, b.elapsed);
}

/// Two peers over offer files, A with `--keepalive a_keepalive` and B with `b_keepalive`:
/// the `keepalive` events of each.
fn keepalive_events(a_keepalive: &str, b_keepalive: &str) -> [Vec<String>; 2] {
    let dir = TempDir::new("holepunch-connect-keepalive");
    let files = [dir.path().join("a.offer"), dir.path().join("b.offer")];
    let [a_s, b_s] = files.map(|f| f.to_string_lossy().into_owned());
    let started = Instant::now();
    let spawn = |name: &str, local: &str, remote: &str, role: &str, keepalive: &str| {
        Connect::spawn(
            name,
            &[
                "--local-file",
                local,
                "--remote-file",
                remote,
                role,
                "--keepalive",
                keepalive,
                "--json",
                "--timeout",
                "15",
            ],
            payload(name).into_bytes(),
        )
    };
    let a = spawn("a", &a_s, &b_s, "--controlling", a_keepalive);
    let b = spawn("b", &b_s, &a_s, "--controlled", b_keepalive);
    let (a, b) = (a.finish(started, LIMIT), b.finish(started, LIMIT));
    check_exchange(&a, &b, true, true);
    [a, b].map(|f| {
        f.events("keepalive")
            .iter()
            .map(|l| json_raw(l, "interval_s").unwrap_or_default())
            .collect()
    })
}

#[test]
fn both_proposing_keepalives_agree_on_the_shorter_and_say_so() {
    // The proposals travel in the checks: both report the shorter, 20 s.
    let [a, b] = keepalive_events("20", "30");
    assert_eq!(a, ["20"], "a's keepalive events");
    assert_eq!(b, ["20"], "b's keepalive events");
    // A peer that proposes nothing keeps RFC 7675's cadence: no event on either side.
    let [a, b] = keepalive_events("20", "off");
    assert!(a.is_empty() && b.is_empty(), "{a:?} {b:?}");
}

#[test]
fn a_peer_that_never_comes_fails_within_the_timeout() {
    let (signal, signal_addr) = signal_server();
    let s = signal_addr.to_string();
    let started = Instant::now();
    let lonely = Connect::spawn(
        "lonely",
        &[
            "--signal",
            &s,
            "--id",
            "lonely",
            "--peer",
            "nobody",
            "--timeout",
            "2",
            "--json",
        ],
        Vec::new(),
    );
    let out = lonely.finish(started, LIMIT);
    assert_eq!(out.code(), Some(1), "{out:?}");
    let failed = out.events("failed");
    assert_eq!(failed.len(), 1, "{out:?}");
    assert_eq!(
        json_str(failed[0], "reason").as_deref(),
        Some("no path within 2 s"),
        "{out:?}"
    );
    assert!(out.events("connected").is_empty(), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(
        out.elapsed >= Duration::from_secs(2) && out.elapsed < Duration::from_secs(6),
        "fails at the timeout, not much later: {:?}",
        out.elapsed
    );
    drop(signal);
}

#[test]
fn an_unreachable_offer_fails_and_foreign_lines_are_tolerated() {
    let dir = TempDir::new("holepunch-connect-dead");
    let remote = dir.path().join("remote.offer");
    // What another stack might write: upper-case transport, extensions, a TCP candidate,
    // an unknown attribute, CRLF endings. Port 9 (discard) on loopback answers nothing.
    std::fs::write(
        &remote,
        "ice-ufrag:Zk92\r\nice-pwd:IAhGN5DIlTb5ikNFYhjJLL\r\na=ice-options:trickle\r\n\
         a=candidate:1 1 UDP 2130706431 127.0.0.1 9 typ host generation 0 network-id 1\r\n\
         a=candidate:2 1 TCP 2105524479 127.0.0.1 9 typ host tcptype active\r\n\
         a=end-of-candidates\r\n",
    )
    .expect("write the remote offer");
    let local = dir.path().join("local.offer");
    let (l, r) = (
        local.to_string_lossy().into_owned(),
        remote.to_string_lossy().into_owned(),
    );
    let started = Instant::now();
    let c = Connect::spawn(
        "dead-end",
        &[
            "--local-file",
            &l,
            "--remote-file",
            &r,
            "--timeout",
            "1.5",
            "--json",
            "--turn",
            "user:pass@127.0.0.1:3478?transport=tcp",
        ],
        Vec::new(),
    );
    let out = c.finish(started, LIMIT);
    assert_eq!(out.code(), Some(1), "{out:?}");
    let warnings = out.events("warning");
    assert_eq!(
        warnings.len(),
        1,
        "--turn is accepted with a warning: {out:?}"
    );
    // Nothing listens on 127.0.0.1:3478 over TCP: the warning says the relay is not used.
    assert!(
        json_str(warnings[0], "reason").is_some_and(|r| r.contains("the relay is not used")),
        "{out:?}"
    );
    assert_eq!(
        out.events("checking").len(),
        1,
        "checks start on the foreign offer: {out:?}"
    );
    assert_eq!(out.events("failed").len(), 1, "{out:?}");
    assert!(out.elapsed < Duration::from_secs(6), "{out:?}");
}

#[test]
fn bad_usage_exits_2() {
    let dir = TempDir::new("holepunch-connect-usage");
    let f = dir.path().join("x").to_string_lossy().into_owned();
    let g = dir.path().join("y").to_string_lossy().into_owned();
    let cases: Vec<Vec<&str>> = vec![
        vec!["connect"],
        vec!["connect", "--signal", "127.0.0.1:1", "--id", "a"],
        vec![
            "connect",
            "--signal",
            "127.0.0.1:1",
            "--id",
            "a",
            "--peer",
            "a",
        ],
        vec![
            "connect",
            "--signal",
            "127.0.0.1:1",
            "--id",
            "a b",
            "--peer",
            "c",
        ],
        vec![
            "connect",
            "--signal",
            "127.0.0.1:1",
            "--id",
            "a",
            "--peer",
            "b",
            "--controlled",
        ],
        vec![
            "connect",
            "--signal",
            "127.0.0.1:1",
            "--id",
            "a",
            "--peer",
            "b",
            "--local-file",
            &f,
            "--remote-file",
            &g,
        ],
        vec!["connect", "--local-file", &f],
        vec![
            "connect",
            "--local-file",
            &f,
            "--remote-file",
            &g,
            "--controlling",
            "--controlled",
        ],
        vec![
            "connect",
            "--local-file",
            &f,
            "--remote-file",
            &g,
            "--id",
            "a",
        ],
        vec![
            "connect",
            "--local-file",
            &f,
            "--remote-file",
            &g,
            "--turn",
            "relay:3478",
        ],
        vec![
            "connect",
            "--local-file",
            &f,
            "--remote-file",
            &g,
            "--timeout",
            "0",
        ],
        vec!["signal"],
        vec!["signal", "--listen", "not-an-address"],
    ];
    for args in cases {
        let out = run_bounded("usage", holepunch().args(&args), LIMIT);
        assert_eq!(out.code(), 2, "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
    }
    assert!(
        !dir.path().join("x").exists(),
        "no file is created on bad usage"
    );
}

#[test]
fn help_says_delivery_is_not_guaranteed() {
    let out = run_bounded("help", holepunch().args(["connect", "--help"]), LIMIT);
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(out.stdout.contains("Delivery is not guaranteed"), "{out:?}");
    // Stream mode landed: the help names the datagram mode that keeps the old semantics.
    assert!(out.stdout.contains("--datagram"), "{out:?}");
    for flag in [
        "--signal",
        "--id",
        "--peer",
        "--local-file",
        "--remote-file",
        "--controlling",
        "--controlled",
        "--stun",
        "--turn",
        "--timeout",
        "--json",
    ] {
        assert!(out.stdout.contains(flag), "{flag}: {out:?}");
    }
}

/// A raw protocol client of the signal server.
struct Line {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Line {
    fn connect(addr: SocketAddr) -> Line {
        let stream = TcpStream::connect(addr).expect("connect to signal");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        Line {
            reader: BufReader::new(stream.try_clone().expect("clone")),
            writer: stream,
        }
    }

    fn send(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .expect("write");
    }

    /// The next line; `None` at EOF or reset. A read timeout (5 s) panics.
    fn recv(&mut self) -> Option<String> {
        let mut s = String::new();
        match self.reader.read_line(&mut s) {
            Ok(0) => None,
            Ok(_) => Some(s.trim_end().to_owned()),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::ConnectionReset) => None,
            Err(e) => panic!("no line from the signal server: {e}"),
        }
    }
}

#[test]
fn signal_server_protocol() {
    let (mut server, addr) = signal_server();
    let mut alice = Line::connect(addr);
    alice.send("register alice");
    assert_eq!(alice.recv().as_deref(), Some("ok"));
    // bob is not there yet: queued.
    alice.send("to bob ice-ufrag:abcd");
    alice.send("to bob a=end-of-candidates");
    alice.send("ping");
    assert_eq!(alice.recv().as_deref(), Some("pong"));
    let mut bob = Line::connect(addr);
    bob.send("register bob");
    assert_eq!(bob.recv().as_deref(), Some("ok"));
    assert_eq!(bob.recv().as_deref(), Some("from alice ice-ufrag:abcd"));
    assert_eq!(
        bob.recv().as_deref(),
        Some("from alice a=end-of-candidates")
    );
    bob.send("to alice hello there");
    assert_eq!(alice.recv().as_deref(), Some("from bob hello there"));
    // A live name cannot be taken.
    let mut twin = Line::connect(addr);
    twin.send("register alice");
    assert_eq!(twin.recv().as_deref(), Some("error name-taken alice"));
    assert_eq!(twin.recv(), None);
    // Over-long lines close the connection.
    let mut long = Line::connect(addr);
    long.send("register long");
    assert_eq!(long.recv().as_deref(), Some("ok"));
    long.send(&format!("to bob {}", "x".repeat(5000)));
    assert_eq!(long.recv().as_deref(), Some("error line-too-long"));
    assert_eq!(long.recv(), None);
    // Nothing before register.
    let mut rude = Line::connect(addr);
    rude.send("to bob hi");
    assert_eq!(rude.recv().as_deref(), Some("error not-registered"));
    // Clean stop.
    server.signal("TERM");
    let status = server.wait_exit(LIMIT);
    let stderr = server.stderr_so_far();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{stderr}");
    assert!(stderr.contains("SIGTERM, stopping"), "{stderr}");
    assert_eq!(alice.recv(), None, "connections are closed on stop");
}
