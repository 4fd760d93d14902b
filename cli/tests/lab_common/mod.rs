//! What the netns lab tests (`lab_*.rs`) share: the fixed addresses of the lab's servers,
//! checking for the programs a test needs, starting `holepunch stun-server`, `holepunch signal`,
//! the UDP reflector and coturn inside a lab, and running `holepunch connect`.
#![allow(dead_code, reason = "each lab test file uses a different subset")]

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use holepunch_tests::lab::{self, Json, Lab, LabProcess, Ns, ProbeLine, Site, Stream, parse_json};

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

/// `holepunch connect` as `id`, talking to `peer`, with stdin a pipe, given both of our STUN
/// server's addresses as two `--stun` servers.
pub fn connect(lab: &Lab, ns: &Ns, id: &str, peer: &str) -> LabProcess {
    connect_with_stun(lab, ns, id, peer, &[STUN_PRIMARY, STUN_ALTERNATE])
}

/// [`connect`] with the given `--stun` servers (one, as most users pass, or several).
pub fn connect_with_stun(
    lab: &Lab,
    ns: &Ns,
    id: &str,
    peer: &str,
    stun: &[SocketAddrV4],
) -> LabProcess {
    connect_with(lab, ns, id, peer, stun, &[])
}

/// [`connect_with_stun`] with more arguments (`--turn ...`, say).
pub fn connect_with(
    lab: &Lab,
    ns: &Ns,
    id: &str,
    peer: &str,
    stun: &[SocketAddrV4],
    extra: &[&str],
) -> LabProcess {
    let timeout = CONNECT_TIMEOUT_S.to_string();
    // Datagram mode: the lab tests exchange lines and check datagram semantics (loss counts).
    let mut args: Vec<String> = [
        "connect",
        "--datagram",
        "--signal",
        SIGNAL,
        "--id",
        id,
        "--peer",
        peer,
    ]
    .map(String::from)
    .to_vec();
    for server in stun {
        args.push("--stun".into());
        args.push(server.to_string());
    }
    args.extend(
        [
            "--json",
            "--timeout",
            &timeout,
            // The lab tests repeat each line until the peer printed it (and some run on lossy
            // links): lost repeats are expected, not a failed job.
            "--max-loss",
            "100",
        ]
        .map(String::from),
    );
    args.extend(extra.iter().map(|a| (*a).to_string()));
    lab.spawn_with_stdin(ns, &format!("connect-{id}"), holepunch(), args)
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

/// miniupnpd's chains; it does not create them itself (lab.md §3).
const UPNP_NFT: &str = "table inet hp_upnp {
  chain forward { type filter hook forward priority -1; policy accept; jump miniupnpd; }
  chain miniupnpd { }
  chain prerouting { type nat hook prerouting priority dstnat - 5; policy accept; jump prerouting_miniupnpd; }
  chain postrouting { type nat hook postrouting priority srcnat - 5; policy accept; jump postrouting_miniupnpd; }
  chain prerouting_miniupnpd { }
  chain postrouting_miniupnpd { }
}
";

/// Starts miniupnpd (PCP, NAT-PMP, UPnP IGD; nftables backend, lab.md §3) in the site's
/// router, which needs [`coturn`] running for its STUN check, with the chains, the input exception for coturn's
/// RFC 5780 replies, and a configuration for this site; returns once it serves port 5351.
pub fn miniupnpd(lab: &Lab, site: &Site, run: u32) -> LabProcess {
    miniupnpd_with(lab, site, run, true)
}

/// [`miniupnpd`] with NAT-PMP and PCP on or off (`enable_natpmp`: miniupnpd opens port 5351
/// for both or for neither, so `false` leaves UPnP IGD alone). Its files live in a directory
/// of the site's own, so two routers can each run one.
#[allow(dead_code)]
pub fn miniupnpd_with(lab: &Lab, site: &Site, run: u32, natpmp: bool) -> LabProcess {
    let dir = lab.dir().join(format!("miniupnpd-{}", site.public_ip));
    std::fs::create_dir_all(&dir).expect("create miniupnpd dir");
    let router = &site.router;
    if run == 0 {
        let nft = dir.join("chains.nft");
        std::fs::write(&nft, UPNP_NFT).expect("write chains");
        let out = lab.run(
            router,
            "nft-upnp",
            "nft",
            ["-f".as_ref(), nft.as_os_str()],
            START_LIMIT,
        );
        assert!(out.success(), "loading miniupnpd's chains: {out:?}");
        let rule = format!(
            "insert rule ip hp_nat input iifname \"wan0\" ip saddr {{ {}, {} }} accept",
            COTURN_PRIMARY.ip(),
            COTURN_ALTERNATE.ip()
        );
        let out = lab.run(router, "nft-input", "nft", [rule.as_str()], START_LIMIT);
        assert!(out.success(), "accepting coturn's replies: {out:?}");
        // A real router does not NAT its own traffic; the lab's masquerade would, with random
        // ports, and miniupnpd's STUN check would then call its own address symmetric.
        let rule = format!(
            "insert rule ip hp_nat post oifname \"wan0\" ip saddr {} accept",
            site.router_ip
        );
        let out = lab.run(router, "nft-own", "nft", [rule.as_str()], START_LIMIT);
        assert!(out.success(), "exempting the router's own traffic: {out:?}");
    }
    let lan = site.lan_ips[0].octets();
    // No lease file and no system uptime: a restart is a new epoch with no mappings.
    let conf = format!(
        "ext_ifname=wan0\nlistening_ip=br-lan\nhttp_port=5000\nenable_upnp=yes\nenable_natpmp={natpmp}\n\
         secure_mode=yes\nsystem_uptime=no\nmin_lifetime=10\nuuid=3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b\n\
         upnp_table_name=hp_upnp\nupnp_nat_table_name=hp_upnp\nupnp_forward_chain=miniupnpd\n\
         upnp_nat_chain=prerouting_miniupnpd\nupnp_nat_postrouting_chain=postrouting_miniupnpd\n\
         ext_perform_stun=yes\next_stun_host={stun}\next_stun_port={port}\n\
         allow 1024-65535 {a}.{b}.{c}.0/24 1024-65535\ndeny 0-65535 0.0.0.0/0 0-65535\n",
        natpmp = if natpmp { "yes" } else { "no" },
        stun = COTURN_PRIMARY.ip(),
        port = COTURN_PRIMARY.port(),
        a = lan[0],
        b = lan[1],
        c = lan[2],
    );
    let path = dir.join(format!("miniupnpd.{run}.conf"));
    std::fs::write(&path, conf).expect("write miniupnpd.conf");
    let pid = dir.join(format!("miniupnpd.{run}.pid"));
    let mut p = lab.spawn(
        router,
        &format!("miniupnpd-{run}"),
        "miniupnpd",
        [
            "-f".as_ref(),
            path.as_os_str(),
            "-d".as_ref(),
            "-P".as_ref(),
            pid.as_os_str(),
        ],
    );
    p.expect_line(Stream::Stderr, Duration::from_secs(20), |l| {
        l.contains("Port forwarding is now enabled")
    });
    p
}

/// Where the relay listens (and binds its relayed sockets).
pub const RELAY: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 7), 3478);
/// The relay's static user.
pub const RELAY_USER: &str = "lab:lab-secret";

/// `holepunch relay` on its own host, relaying between the lab's public addresses.
pub fn relay(lab: &Lab) -> (Ns, LabProcess) {
    relay_with(lab, "relay", &[], "listening")
}

/// [`relay`] with `extra` flags (TLS, say), ready once stderr shows `ready`.
pub fn relay_with(lab: &Lab, name: &str, extra: &[&str], ready: &str) -> (Ns, LabProcess) {
    let ns = lab.server_host(&[*RELAY.ip()]);
    let (listen, relay_ip) = (RELAY.to_string(), RELAY.ip().to_string());
    let mut args = vec![
        "relay",
        "--listen",
        &listen,
        "--relay-ip",
        &relay_ip,
        "--user",
        RELAY_USER,
        // The lab's internet is TEST-NET-3, which the default policy refuses.
        "--allow-peer",
        "203.0.113.0/24",
    ];
    args.extend_from_slice(extra);
    let mut p = lab.spawn(&ns, name, holepunch(), args);
    p.expect_line(Stream::Stderr, START_LIMIT, |l| l.contains(ready));
    (ns, p)
}

/// Two connected `connect` peers exchange a line each way (repeated while lost, for at most
/// 15 s), then close their input: both must exit 0.
pub fn lines_both_ways_then_eof(a: &mut LabProcess, b: &mut LabProcess) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let a_got = a.stdout().contains("from b");
        let b_got = b.stdout().contains("from a");
        if a_got && b_got {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no data through the path:\n{}\n{}",
            a.describe(),
            b.describe()
        );
        if !b_got {
            let _ = a.write_stdin(b"from a\n");
        }
        if !a_got {
            let _ = b.write_stdin(b"from b\n");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    a.close_stdin();
    b.close_stdin();
    for p in [a, b] {
        let status = p.wait_exit(Duration::from_secs(10));
        assert!(status.is_some_and(|s| s.success()), "{}", p.describe());
    }
}

/// Runs a shell script inside `ns`; it must succeed.
pub fn sh(lab: &Lab, ns: &Ns, script: &str) {
    let out = lab.run(ns, "sh", "/bin/sh", ["-c", script], Duration::from_secs(10));
    assert!(out.success(), "`{script}` failed: {}", out.stderr);
}

/// Counts, on `router`, the UDP datagrams it sends to `peer_ip` on the internet side (after
/// NAT), except to STUN's port: checks, punch probes, answers and data towards the peer.
pub fn count_towards(lab: &Lab, router: &Ns, peer_ip: Ipv4Addr) {
    sh(
        lab,
        router,
        &format!(
            "nft add table ip hp_count && \
             nft 'add chain ip hp_count post {{ type filter hook postrouting priority 300; }}' && \
             nft add rule ip hp_count post ip daddr {peer_ip} udp dport != 3478 counter"
        ),
    );
}

/// The packets [`count_towards`]'s counter on `router` has seen so far.
pub fn counted(lab: &Lab, router: &Ns) -> u64 {
    let out = lab.run(
        router,
        "read-count",
        "nft",
        ["list", "chain", "ip", "hp_count", "post"],
        Duration::from_secs(10),
    );
    assert!(out.success(), "nft list: {}", out.stderr);
    out.stdout
        .split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no counter in {}", out.stdout))
}

/// `holepunch connect` as `id` in `ns`, stdin a pipe, signalling through offer files in the
/// lab's directory (`id`.offer written, `peer`.offer read): for hosts that cannot reach the
/// signal server, or whose address changes under it. `env` (`NAME=value`) goes into the
/// environment; `args` follow `ROLE --json --timeout` [`CONNECT_TIMEOUT_S`].
pub fn connect_via_files(
    lab: &Lab,
    ns: &Ns,
    (id, peer, role): (&str, &str, &str),
    env: &[String],
    args: &[&str],
) -> LabProcess {
    let file = |name: &str| {
        lab.dir()
            .join(format!("{name}.offer"))
            .display()
            .to_string()
    };
    let (local, remote) = (file(id), file(peer));
    let timeout = CONNECT_TIMEOUT_S.to_string();
    let command = [
        holepunch(),
        "connect",
        "--local-file",
        &local,
        "--remote-file",
        &remote,
        role,
        "--json",
        "--timeout",
        &timeout,
    ];
    let all = env
        .iter()
        .map(String::as_str)
        .chain(command)
        .chain(args.iter().copied());
    lab.spawn_with_stdin(ns, &format!("connect-{id}"), "/usr/bin/env", all)
}
