//! What the netns lab tests (`lab_*.rs`) share: the fixed addresses of the lab's servers,
//! checking for the programs a test needs, starting `holepunch stun-server`, `holepunch signal`,
//! the UDP reflector and coturn inside a lab, and running `holepunch connect`.
#![allow(dead_code, reason = "each lab test file uses a different subset")]

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use holepunch_tests::lab::{self, Json, Lab, LabProcess, Ns, ProbeLine, Stream, parse_json};

/// Our STUN server's primary address (`holepunch stun-server --listen`).
pub const STUN_PRIMARY: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 3), 3478);
/// Our STUN server's RFC 5780 alternate address (other IP, other port).
pub const STUN_ALTERNATE: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 4), 3479);
/// coturn's primary address.
pub const COTURN_PRIMARY: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 5), 3478);
/// coturn's alternate address (it listens on both IPs and both ports).
pub const COTURN_ALTERNATE: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 6), 3479);
/// The reflector's four sockets: two IPs × two ports (lab.md §1).
pub const REFLECTORS: [SocketAddrV4; 4] = [
    SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 50), 4000),
    SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 50), 4001),
    SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 51), 4000),
    SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 51), 4001),
];
/// How long a server may take to come up.
pub const START_LIMIT: Duration = Duration::from_secs(10);
/// Where `holepunch signal` listens.
pub const SIGNAL: &str = "203.0.113.3:7000";
/// `connect --timeout`.
pub const CONNECT_TIMEOUT_S: u64 = 20;

/// The `holepunch` binary cargo built for these tests.
pub fn holepunch() -> &'static str {
    env!("CARGO_BIN_EXE_holepunch")
}

/// A lab, or `None` (after printing why) when the lab or one of `programs` is missing.
pub fn require_with(programs: &[&str]) -> Option<Lab> {
    let lab = lab::require()?;
    lab::require_programs(programs).then_some(lab)
}

/// Whether python3 can import aioice; when not, fails under CI and otherwise prints why.
pub fn require_aioice() -> bool {
    let mut cmd = std::process::Command::new(lab::python3());
    cmd.args(["-c", "import aioice"]);
    let ok = lab::run_bounded(&mut cmd, Duration::from_secs(20)).is_ok_and(|o| o.success());
    if !ok {
        assert!(
            !holepunch_tests::is_ci(),
            "CI=true: python3 cannot import aioice (pip install aioice)"
        );
        println!("skipped: python3 cannot import aioice (pip install aioice)");
    }
    ok
}

/// A server host with 203.0.113.3 and .4 running `holepunch stun-server` on
/// [`STUN_PRIMARY`] with alternate [`STUN_ALTERNATE`], ready to answer.
pub fn stun_server(lab: &Lab) -> (Ns, LabProcess) {
    let ns = lab.server_host(&[*STUN_PRIMARY.ip(), *STUN_ALTERNATE.ip()]);
    let mut p = lab.spawn(
        &ns,
        "stun-server",
        holepunch(),
        [
            "stun-server",
            "--listen",
            &STUN_PRIMARY.to_string(),
            "--alternate",
            &STUN_ALTERNATE.to_string(),
        ],
    );
    p.expect_line(Stream::Stderr, START_LIMIT, |l| {
        l.contains("stun-server: serving")
    });
    (ns, p)
}

/// The signal server's host with the STUN server (as [`stun_server`]) and `holepunch signal` on
/// [`SIGNAL`] running.
pub fn servers(lab: &Lab) -> (Ns, LabProcess, LabProcess) {
    let (srv, stun) = stun_server(lab);
    let mut signal = lab.spawn(&srv, "signal", holepunch(), ["signal", "--listen", SIGNAL]);
    signal.expect_line(Stream::Stderr, START_LIMIT, |l| {
        l.contains("signal: listening")
    });
    (srv, stun, signal)
}

/// `holepunch connect` as `id`, talking to `peer`, with stdin a pipe.
pub fn connect(lab: &Lab, ns: &Ns, id: &str, peer: &str) -> LabProcess {
    let timeout = CONNECT_TIMEOUT_S.to_string();
    let stun1 = STUN_PRIMARY.to_string();
    let stun2 = STUN_ALTERNATE.to_string();
    lab.spawn_with_stdin(
        ns,
        &format!("connect-{id}"),
        holepunch(),
        [
            "connect",
            "--datagram",
            "--signal",
            SIGNAL,
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
            &timeout,
            // The lab tests repeat each line until the peer printed it (and some run on lossy
            // links): lost repeats are expected, not a failed job.
            "--max-loss",
            "100",
        ],
    )
}

/// A host with 203.0.113.50 and .51 running the prober's reflector on [`REFLECTORS`].
pub fn reflector(lab: &Lab) -> (Ns, LabProcess) {
    let ns = lab.server_host(&[*REFLECTORS[0].ip(), *REFLECTORS[2].ip()]);
    let addrs: Vec<String> = REFLECTORS.iter().map(ToString::to_string).collect();
    let mut args = vec!["reflect".to_string()];
    args.extend(addrs);
    let mut p = lab.probe(&ns, "reflector", args);
    p.expect_line(Stream::Stdout, START_LIMIT, |l| l.starts_with("READY"));
    (ns, p)
}

/// A server host with 203.0.113.5 and .6 running coturn's `turnserver` with the configuration
/// of lab.md §2 (two IPs: RFC 5780 on; user alice:alicepass, realm lab.test), its files in the
/// lab's directory; returns once it answers STUN on [`COTURN_PRIMARY`].
pub fn coturn(lab: &Lab) -> (Ns, LabProcess) {
    let ns = lab.server_host(&[*COTURN_PRIMARY.ip(), *COTURN_ALTERNATE.ip()]);
    let dir = lab.dir().join("coturn");
    std::fs::create_dir_all(&dir).expect("create coturn dir");
    let conf = format!(
        "listening-ip={p}\nlistening-ip={a}\nrelay-ip={p}\nlistening-port={pp}\n\
         alt-listening-port={ap}\nmin-port=49152\nmax-port=49999\nlt-cred-mech\n\
         user=alice:alicepass\nrealm=lab.test\nfingerprint\nno-tls\nno-dtls\nno-cli\n\
         no-multicast-peers\nlog-file=stdout\nsimple-log\nverbose\npidfile={dir}/turnserver.pid\n\
         userdb={dir}/turndb.sqlite\n",
        p = COTURN_PRIMARY.ip(),
        a = COTURN_ALTERNATE.ip(),
        pp = COTURN_PRIMARY.port(),
        ap = COTURN_ALTERNATE.port(),
        dir = dir.display(),
    );
    let path = dir.join("turnserver.conf");
    std::fs::write(&path, conf).expect("write turnserver.conf");
    let mut p = lab.spawn(
        &ns,
        "turnserver",
        "turnserver",
        ["-c".as_ref(), path.as_os_str()],
    );
    // Ready when it answers: a Binding from its own host.
    let deadline = Instant::now() + START_LIMIT;
    loop {
        let out = lab.run(
            &ns,
            "coturn-ready",
            holepunch(),
            ["stun", &COTURN_PRIMARY.to_string(), "--timeout", "0.3"],
            Duration::from_secs(5),
        );
        if out.success() {
            break;
        }
        assert!(
            p.is_running() && Instant::now() < deadline,
            "coturn did not come up: {}",
            p.describe()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (ns, p)
}

/// The result of `holepunch stun SERVER --json`.
#[derive(Debug)]
pub struct StunResult {
    /// The mapped address.
    pub mapped: SocketAddrV4,
    /// The local socket, as bound.
    pub local: SocketAddr,
    /// OTHER-ADDRESS, when the server offered one.
    pub other_address: Option<SocketAddr>,
    /// RESPONSE-ORIGIN, when the server sent one.
    pub response_origin: Option<SocketAddr>,
}

/// Runs `holepunch stun SERVER --json --timeout SECS` inside `ns`: `Ok` with the mapped event,
/// `Err` with the failure (the output) when it exited 1 with a `failed` event.
///
/// # Panics
/// On anything else: another exit status, no JSON, or a hang.
pub fn stun(lab: &Lab, ns: &Ns, server: SocketAddrV4, secs: f64) -> Result<StunResult, String> {
    let out = lab.run(
        ns,
        "stun",
        holepunch(),
        [
            "stun",
            &server.to_string(),
            "--json",
            "--timeout",
            &secs.to_string(),
        ],
        Duration::from_secs_f64(secs + 10.0),
    );
    let event = out
        .stdout
        .lines()
        .find_map(|l| parse_json(l).ok())
        .unwrap_or_else(|| panic!("holepunch stun printed no JSON: {out:?}"));
    match (out.code(), event.str_field("event")) {
        (Some(0), Some("mapped")) => {
            let addr = |k: &str| {
                event
                    .str_field(k)
                    .map(|v| v.parse().unwrap_or_else(|e| panic!("{k}: {v}: {e}")))
            };
            let mapped: SocketAddr = addr("address").expect("mapped event has an address");
            let SocketAddr::V4(mapped) = mapped else {
                panic!("an IPv4 lab mapped to {mapped}")
            };
            Ok(StunResult {
                mapped,
                local: addr("local").expect("mapped event has local"),
                other_address: addr("other_address"),
                response_origin: addr("response_origin"),
            })
        }
        (Some(1), Some("failed")) => Err(out.stdout),
        _ => panic!("holepunch stun: unexpected result {out:?}"),
    }
}

/// Runs the prober with `args` inside `ns` to completion (bounded by `limit`) and returns its
/// lines.
pub fn probe_run(lab: &Lab, ns: &Ns, name: &str, args: &[&str], limit: Duration) -> Vec<ProbeLine> {
    let mut p = lab.probe(ns, name, args);
    let status = p.wait_exit(limit);
    assert!(
        status.is_some_and(|s| s.success()),
        "prober {name} failed or hung: {}",
        p.describe()
    );
    p.lines(Stream::Stdout)
        .iter()
        .map(|l| ProbeLine::parse(l))
        .collect()
}

/// The lines of `lines` whose word is `word`.
pub fn with_word<'a>(lines: &'a [ProbeLine], word: &str) -> Vec<&'a ProbeLine> {
    lines.iter().filter(|l| l.word == word).collect()
}

/// The JSON object on the first line of `text` that has `"event": event`.
pub fn json_event(text: &str, event: &str) -> Option<Json> {
    text.lines()
        .filter_map(|l| parse_json(l).ok())
        .find(|j| j.str_field("event") == Some(event))
}

/// What `turnutils_natdiscovery -m -f SERVER` reported, in `holepunch netcheck`'s words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatDiscovery {
    /// `endpoint-independent`, `address-dependent` or `address-and-port-dependent`; `None` when
    /// it reported no mapping behaviour.
    pub mapping: Option<&'static str>,
    /// As `mapping`, for filtering.
    pub filtering: Option<&'static str>,
    /// Everything it printed.
    pub output: String,
}

/// Runs coturn's `turnutils_natdiscovery -m -f` against `server` inside `ns` (bounded by 40 s;
/// it takes 6–10 s behind a NAT, lab.md §2).
pub fn natdiscovery(lab: &Lab, ns: &Ns, server: SocketAddrV4) -> NatDiscovery {
    let out = lab.run(
        ns,
        "natdiscovery",
        "turnutils_natdiscovery",
        [
            "-m",
            "-f",
            "-p",
            &server.port().to_string(),
            &server.ip().to_string(),
        ],
        Duration::from_secs(40),
    );
    let output = format!("{}{}", out.stdout, out.stderr);
    let behaviour = |kind: &str| {
        let phrases = [
            ("Address and Port Dependent", "address-and-port-dependent"),
            ("Address Dependent", "address-dependent"),
            ("Endpoint Independent", "endpoint-independent"),
        ];
        output.lines().find_map(|line| {
            phrases
                .iter()
                .find(|(phrase, _)| line.contains(&format!("{phrase} {kind}")))
                .map(|(_, name)| *name)
        })
    };
    NatDiscovery {
        mapping: behaviour("Mapping"),
        filtering: behaviour("Filtering"),
        output,
    }
}
