//! RFC 7050 prefix discovery against real unbound DNS64 (lab.md §4): the core's `ipv4only.arpa`
//! AAAA query goes to unbound inside a lab namespace, and the core's parser reads the prefix out
//! of unbound's synthesised answer, for the well-known prefix, the lab's /96 and a /64.
//!
//! The last test adds the translator (tayga, lab.md §4): `holepunch connect` on an IPv6-only host
//! discovers the prefix from its resolver and reaches an IPv4 peer behind a NAT directly through
//! the NAT64.
//! Needs root, unbound and tayga (skips with a reason otherwise; fails under `CI=true`).
mod lab_common;

use std::time::Duration;

use holepunch_core::nat64::Nat64Prefix;
use holepunch_core::nat64::discovery::{DnsQuery, prefixes_from_response};
use holepunch_tests::lab::{self, Lab, LabProcess, Ns};

/// The zone of lab.md §4: only A records, so every AAAA answer is synthesised.
const ZONE: &str = "$ORIGIN ipv4only.arpa.\n$TTL 3600\n\
    @ IN SOA ns.ipv4only.arpa. hostmaster.ipv4only.arpa. 1 3600 600 86400 3600\n\
    @ IN NS ns.ipv4only.arpa.\n@ IN A 192.0.0.170\n@ IN A 192.0.0.171\nns IN A 192.0.0.170\n";

/// Sends the hex query given as argv[1] to 127.0.0.1:53 until an answer comes (at most 20
/// tries, 0.5 s apart) and prints the answer as hex.
const ASK: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.5)
q = bytes.fromhex(sys.argv[1])
for _ in range(20):
    try:
        s.sendto(q, ("127.0.0.1", 53))
        print(s.recvfrom(4096)[0].hex())
        sys.exit(0)
    except OSError:
        pass
sys.exit(1)
"#;

/// Starts unbound with DNS64 `prefix` on 127.0.0.1:53 in `ns`.
fn start_unbound(lab: &Lab, ns: &Ns, prefix: &str, n: usize) -> LabProcess {
    start_unbound_on(lab, ns, "127.0.0.1", prefix, n)
}

/// Starts unbound with DNS64 `prefix` on `interface`, port 53, in `ns`.
fn start_unbound_on(lab: &Lab, ns: &Ns, interface: &str, prefix: &str, n: usize) -> LabProcess {
    let dir = lab.dir().join(format!("unbound{n}"));
    std::fs::create_dir_all(&dir).expect("create unbound dir");
    let zone = dir.join("ipv4only.arpa.zone");
    std::fs::write(&zone, ZONE).expect("write zone");
    let conf = format!(
        "server:\n  interface: {interface}\n  port: 53\n  access-control: 0.0.0.0/0 allow\n\
         \x20 access-control: ::/0 allow\n\
         \x20 do-daemonize: no\n  username: \"\"\n  chroot: \"\"\n  directory: \"{dir}\"\n\
         \x20 pidfile: \"{dir}/unbound.pid\"\n  logfile: \"\"\n  use-syslog: no\n\
         \x20 module-config: \"dns64 iterator\"\n  dns64-prefix: {prefix}\n\
         auth-zone:\n  name: \"ipv4only.arpa.\"\n  zonefile: \"{zone}\"\n\
         \x20 for-downstream: no\n  for-upstream: yes\n  fallback-enabled: no\n",
        dir = dir.display(),
        zone = zone.display(),
    );
    let path = dir.join("unbound.conf");
    std::fs::write(&path, conf).expect("write unbound.conf");
    lab.spawn(
        ns,
        &format!("unbound{n}"),
        "unbound",
        ["-c".as_ref(), path.as_os_str()],
    )
}

/// Runs unbound with DNS64 `prefix` in `ns`, asks the core's query, returns the answer bytes.
fn ask_unbound(lab: &Lab, ns: &Ns, prefix: &str, n: usize, query: &DnsQuery) -> Vec<u8> {
    let mut server = start_unbound(lab, ns, prefix, n);
    let answer = ask(lab, ns, n, query);
    server.stop(Duration::from_secs(5));
    answer.unwrap_or_else(|| panic!("no answer from unbound ({prefix}):\n{}", server.describe()))
}

/// Sends `query` to 127.0.0.1:53 in `ns` (retrying for up to 10 s) and returns the answer.
fn ask(lab: &Lab, ns: &Ns, n: usize, query: &DnsQuery) -> Option<Vec<u8>> {
    let hex: String = query
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let out = lab.run(
        ns,
        &format!("ask{n}"),
        lab::python3(),
        ["-c", ASK, &hex],
        Duration::from_secs(15),
    );
    if !out.success() {
        return None;
    }
    let text = out.stdout.trim();
    Some(
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex from the script"))
            .collect(),
    )
}

#[test]
fn discovers_the_prefix_unbound_synthesises_with() {
    let Some(lab) = lab_common::require_with(&["unbound"]) else {
        return;
    };
    let ns = lab.add_ns("dns64");
    for (n, prefix) in [
        "64:ff9b::/96",
        "2001:db8:64:ff9b::/96",
        "2001:db8:122:344::/64",
    ]
    .into_iter()
    .enumerate()
    {
        let query = DnsQuery::new(0x4a00 + n as u16);
        let answer = ask_unbound(&lab, &ns, prefix, n, &query);
        let found = prefixes_from_response(&answer, query.id())
            .unwrap_or_else(|e| panic!("{prefix}: unbound's answer rejected: {e}"))
            .unwrap_or_else(|| panic!("{prefix}: unbound's answer holds no prefix"));
        let expected: Nat64Prefix = prefix.parse().expect("prefix");
        assert_eq!(found.as_slice(), [expected], "{prefix}");
    }
}

#[test]
fn netcheck_reports_the_prefix_its_resolver_synthesises_with() {
    let Some(lab) = lab_common::require_with(&["unbound"]) else {
        return;
    };
    let ns = lab.add_ns("v6only");
    let mut unbound = start_unbound(&lab, &ns, "2001:db8:64::/96", 9);
    assert!(
        ask(&lab, &ns, 9, &DnsQuery::new(0x4a09)).is_some(),
        "unbound never came up:\n{}",
        unbound.describe()
    );
    let mut stun = lab.spawn(
        &ns,
        "stun",
        lab_common::holepunch(),
        ["stun-server", "--listen", "127.0.0.1:3478"],
    );
    let resolv = lab.dir().join("resolv.conf");
    std::fs::write(&resolv, "nameserver 127.0.0.1\n").expect("write resolv.conf");
    let env = format!("HOLEPUNCH_RESOLV_CONF={}", resolv.display());
    let mut found = None;
    // The STUN server may still be starting: a run it missed exits 1; try a few times.
    for attempt in 0..5 {
        let out = lab.run(
            &ns,
            &format!("netcheck{attempt}"),
            "env",
            [
                env.as_str(),
                lab_common::holepunch(),
                "netcheck",
                "--json",
                "--stun",
                "127.0.0.1:3478",
            ],
            Duration::from_secs(20),
        );
        if out.success() {
            found = Some(out.stdout);
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    stun.stop(Duration::from_secs(5));
    unbound.stop(Duration::from_secs(5));
    let report = found.unwrap_or_else(|| panic!("netcheck never succeeded:\n{}", stun.describe()));
    assert!(
        report.contains("\"nat64_prefix\":\"2001:db8:64::/96\""),
        "{report}"
    );

    // The same host once its resolver is gone: unknown, and said plainly.
    let out = lab.run(
        &ns,
        "netcheck-no-dns64",
        "env",
        [
            env.as_str(),
            lab_common::holepunch(),
            "netcheck",
            "--stun",
            "127.0.0.1:9",
        ],
        Duration::from_secs(20),
    );
    assert!(
        out.stdout
            .contains("NAT64 prefix:  unknown (resolver 127.0.0.1"),
        "{out:?}"
    );
}

/// The NAT64 router's IPv6 address on the IPv6-only LAN (also its DNS64 resolver's).
const ROUTER_V6: &str = "2001:db8:64::1";
/// The translator's prefix: network-specific, as TEST-NET addresses need (lab.md §4 pitfalls).
const LAB_PREFIX: &str = "2001:db8:64:ff9b::/96";

/// `holepunch connect --datagram` as `id` in `ns`, signalling through offer files (the
/// IPv6-only host cannot reach an IPv4 signal server), resolver file `resolv`.
fn connect(
    lab: &Lab,
    ns: &Ns,
    id: &str,
    peer: &str,
    role: &str,
    resolv: &str,
    extra: &[&str],
) -> LabProcess {
    let stun = lab_common::STUN_PRIMARY.to_string();
    let env = format!("HOLEPUNCH_RESOLV_CONF={resolv}");
    let mut args = vec!["--datagram", "--stun", &stun, "--max-loss", "100"];
    args.extend_from_slice(extra);
    lab_common::connect_via_files(lab, ns, (id, peer, role), &[env], &args)
}

/// An IPv6-only host behind a NAT64 router (lab.md §4).
struct Nat64Site {
    /// The IPv6-only host.
    host: Ns,
    /// The resolver file its `connect` reads (the router's DNS64).
    resolv: String,
    tayga: LabProcess,
    unbound: LabProcess,
}

impl Nat64Site {
    /// Stops the translator and the resolver.
    fn stop(&mut self) {
        self.tayga.stop(Duration::from_secs(5));
        self.unbound.stop(Duration::from_secs(5));
    }
}

/// Builds [`Nat64Site`]: the router at 203.0.113.40 with tayga and unbound, the host behind it;
/// returns once the resolver answers and tayga runs.
fn nat64_site(lab: &Lab) -> Nat64Site {
    // The NAT64 router: 203.0.113.40 on the internet, 2001:db8:64::1/64 towards the IPv6-only
    // host, tayga translating 2001:db8:64:ff9b::/96 into its pool, masqueraded out of wan0.
    // Unsolicited inbound is dropped before conntrack confirms it (lab.md §1, P1): otherwise a
    // peer's check that arrives first leaves an entry that makes masquerade pick another port
    // for our first packet to that peer, and the pair never meets.
    let router = lab.server_host(&["203.0.113.40".parse().expect("address")]);
    let host = lab.add_ns("v6host");
    lab_common::sh(
        lab,
        &router,
        &format!(
            "ip link add lan0 type veth peer name eth0 netns {host} && ip link set lan0 up && \
             ip -6 addr add {ROUTER_V6}/64 dev lan0 nodad && \
             sysctl -qw net.ipv6.conf.all.forwarding=1 net.ipv4.ip_forward=1"
        ),
    );
    lab_common::sh(
        lab,
        &host,
        &format!(
            "ip link set eth0 up && ip -6 addr add 2001:db8:64::2/64 dev eth0 nodad && \
             ip -6 route add default via {ROUTER_V6}"
        ),
    );
    let tayga_dir = lab.dir().join("tayga");
    std::fs::create_dir_all(&tayga_dir).expect("tayga dir");
    let conf = tayga_dir.join("tayga.conf");
    std::fs::write(
        &conf,
        format!(
            "tun-device nat64\nipv4-addr 192.168.255.1\nprefix {LAB_PREFIX}\n\
             dynamic-pool 192.168.255.0/24\nipv6-addr 2001:db8:64:ffff::64\ndata-dir {}\n",
            tayga_dir.display()
        ),
    )
    .expect("write tayga.conf");
    let conf = conf.display().to_string();
    lab_common::sh(
        lab,
        &router,
        &format!(
            "tayga -c {conf} --mktun && ip link set nat64 up && \
             ip addr add 192.168.255.254 dev nat64 && ip addr add 2001:db8:64:ffff::1 dev nat64 && \
             ip route add 192.168.255.0/24 dev nat64 && \
             ip route add 2001:db8:64:ff9b::/96 dev nat64 && \
             ip route add 2001:db8:64:ffff::64/128 dev nat64 && \
             nft add table ip hp_nat64 && \
             nft 'add chain ip hp_nat64 post {{ type nat hook postrouting priority srcnat; }}' && \
             nft add rule ip hp_nat64 post oifname wan0 masquerade && \
             nft 'add chain ip hp_nat64 input {{ type filter hook input priority filter; }}' && \
             nft add rule ip hp_nat64 input iifname wan0 ct state new drop"
        ),
    );
    let mut tayga = lab.spawn(
        &router,
        "tayga",
        "tayga",
        ["-c", conf.as_str(), "--nodetach"],
    );
    let mut unbound = start_unbound_on(lab, &router, ROUTER_V6, LAB_PREFIX, 20);
    let resolv = lab.dir().join("resolv-v6.conf");
    std::fs::write(&resolv, format!("nameserver {ROUTER_V6}\n")).expect("write resolv.conf");
    let resolv = resolv.display().to_string();
    // Both resolver and translator must be up before connect asks (bounded, 10 s).
    let up = (0..50).any(|_| {
        let out = lab.run(
            &host,
            "dig",
            "dig",
            [
                "+short",
                "+time=1",
                "+tries=1",
                &format!("@{ROUTER_V6}"),
                "AAAA",
                "ipv4only.arpa",
            ],
            Duration::from_secs(5),
        );
        let ready = out.stdout.contains("2001:db8:64:ff9b::c000:aa");
        if !ready {
            std::thread::sleep(Duration::from_millis(200));
        }
        ready
    });
    assert!(up, "unbound never answered:\n{}", unbound.describe());
    assert!(tayga.is_running(), "tayga:\n{}", tayga.describe());
    Nat64Site {
        host,
        resolv,
        tayga,
        unbound,
    }
}

#[test]
fn an_ipv6_only_host_connects_directly_to_an_ipv4_peer_through_tayga() {
    let Some(lab) = lab_common::require_with(&["unbound", "tayga"]) else {
        return;
    };
    let (_stun_ns, _stun) = lab_common::stun_server(&lab);
    let site_b = lab.nat_site(lab::Profile::PortRestrictedCone, false);
    let mut site = nat64_site(&lab);
    let (host, resolv) = (site.host.clone(), site.resolv.clone());
    let mut a = connect(&lab, &host, "a", "b", "--controlling", &resolv, &[]);
    let mut b = connect(
        &lab,
        site_b.host(),
        "b",
        "a",
        "--controlled",
        "/dev/null",
        &[],
    );
    let limit = Duration::from_secs(lab_common::CONNECT_TIMEOUT_S + 10);
    let nat64 = a.expect_line(lab::Stream::Stderr, limit, |l| {
        l.contains("\"event\":\"nat64\"") || l.contains("\"event\":\"failed\"")
    });
    assert!(
        nat64.contains(&format!("\"prefix\":\"{LAB_PREFIX}\"")),
        "{nat64}\n{}",
        a.describe()
    );
    let mut paths = Vec::new();
    for p in [&mut a, &mut b] {
        let line = p.expect_line(lab::Stream::Stderr, limit, |l| {
            l.contains("\"event\":\"connected\"") || l.contains("\"event\":\"failed\"")
        });
        let event = lab::parse_json(&line).expect("connected is JSON");
        let direct = event.str_field("path") == Some("direct");
        paths.push(direct.then(|| event.str_field("remote").unwrap_or_default().to_string()));
    }
    assert!(
        paths.iter().all(Option::is_some),
        "not both direct:\n{}\n{}\n{}",
        a.describe(),
        b.describe(),
        site.tayga.describe()
    );
    let paths: Vec<String> = paths.into_iter().flatten().collect();
    // A sends to the peer's address synthesised under the prefix; the peer sees A at the
    // router's public address (tayga's pool, masqueraded).
    assert!(paths[0].starts_with("[2001:db8:64:ff9b::"), "{paths:?}");
    assert!(paths[1].starts_with("203.0.113.40:"), "{paths:?}");
    lab_common::lines_both_ways_then_eof(&mut a, &mut b);
    site.stop();
}

/// `holepunch netcheck --json` against a STUN server on loopback in `ns` (started here): the
/// report line.
fn netcheck_json(lab: &Lab, ns: &Ns, name: &str) -> String {
    let mut stun = lab.spawn(
        ns,
        &format!("stun-{name}"),
        lab_common::holepunch(),
        ["stun-server", "--listen", "127.0.0.1:3478"],
    );
    stun.expect_line(lab::Stream::Stderr, lab_common::START_LIMIT, |l| {
        l.contains("stun-server: serving")
    });
    let out = lab.run(
        ns,
        name,
        "env",
        [
            "HOLEPUNCH_RESOLV_CONF=/dev/null",
            lab_common::holepunch(),
            "netcheck",
            "--json",
            "--stun",
            "127.0.0.1:3478",
        ],
        Duration::from_secs(20),
    );
    stun.stop(Duration::from_secs(5));
    assert!(out.success(), "netcheck failed: {out:?}");
    out.stdout
}

/// Shell commands making interface `name` in the current namespace: one end of a veth pair
/// whose other end stays in the namespace too, both up (so the link has carrier).
fn link(name: &str) -> String {
    format!(
        "ip link add {name} type veth peer name {name}p && ip link set {name} up && ip link set {name}p up"
    )
}

#[test]
fn netcheck_reports_a_clat_carrying_the_ipv4_default_route() {
    let Some(lab) = lab_common::require_with(&[]) else {
        return;
    };
    // A 464XLAT host: IPv6 on eth0, IPv4 only on the CLAT's interface with its RFC 7335
    // address, the IPv4 default route through it.
    let host = lab.add_ns("clat");
    lab_common::sh(
        &lab,
        &host,
        &format!(
            "{} && {} && ip -6 addr add 2001:db8:64::2/64 dev eth0 nodad && \
             ip addr add 192.0.0.2/29 dev clat4 && ip route add default dev clat4",
            link("eth0"),
            link("clat4")
        ),
    );
    let report = netcheck_json(&lab, &host, "netcheck-clat");
    assert!(
        report.contains("\"clat\":{\"interface\":\"clat4\",\"address\":\"192.0.0.2\"}"),
        "{report}"
    );
    // Native IPv4 on the default route: no CLAT, even with the CLAT-like address present.
    let native = lab.add_ns("native");
    lab_common::sh(
        &lab,
        &native,
        &format!(
            "{} && {} && ip addr add 198.51.100.2/24 dev eth0 && ip route add default dev eth0 && \
             ip addr add 192.0.0.2/29 dev clat4",
            link("eth0"),
            link("clat4")
        ),
    );
    let report = netcheck_json(&lab, &native, "netcheck-native");
    assert!(report.contains("\"clat\":null"), "{report}");
}

#[test]
fn an_ipv6_only_host_allocates_on_an_ipv4_relay_through_tayga_and_reaches_a_symmetric_peer() {
    relay_through_tayga("");
}

#[test]
fn an_ipv6_only_host_reaches_an_ipv4_relay_over_tcp_through_tayga() {
    relay_through_tayga("?transport=tcp");
}

/// A (IPv6-only, behind tayga) and B (symmetric-random) with `--turn` to the lab's IPv4 relay,
/// A's over `transport` (a `?transport=` suffix, or empty for UDP).
fn relay_through_tayga(transport: &str) {
    let Some(lab) = lab_common::require_with(&["unbound", "tayga"]) else {
        return;
    };
    let (_stun_ns, _stun) = lab_common::stun_server(&lab);
    let (_relay_ns, _relay) = lab_common::relay(&lab);
    let site_b = lab.nat_site(lab::Profile::SymmetricRandom, false);
    let mut site = nat64_site(&lab);
    let (host, resolv) = (site.host.clone(), site.resolv.clone());
    let turn = format!("{}@{}", lab_common::RELAY_USER, lab_common::RELAY);
    let turn_a = format!("{turn}{transport}");
    let mut a = connect(
        &lab,
        &host,
        "a",
        "b",
        "--controlling",
        &resolv,
        &["--turn", &turn_a],
    );
    let extra = ["--turn", turn.as_str()];
    let mut b = connect(
        &lab,
        site_b.host(),
        "b",
        "a",
        "--controlled",
        "/dev/null",
        &extra,
    );
    let limit = Duration::from_secs(lab_common::CONNECT_TIMEOUT_S + 10);
    // A's allocation went to the relay's synthesised address through tayga: its relayed
    // candidate is the relay's IPv4 address.
    let relayed = a.expect_line(lab::Stream::Stderr, limit, |l| {
        (l.contains("\"event\":\"candidate\"") && l.contains("\"type\":\"relay\""))
            || l.contains("\"event\":\"failed\"")
    });
    assert!(
        relayed.contains("\"address\":\"203.0.113.7:"),
        "{relayed}\n{}",
        a.describe()
    );
    for p in [&mut a, &mut b] {
        let line = p.expect_line(lab::Stream::Stderr, limit, |l| {
            l.contains("\"event\":\"connected\"") || l.contains("\"event\":\"failed\"")
        });
        assert!(line.contains("\"event\":\"connected\""), "{}", p.describe());
    }
    lab_common::lines_both_ways_then_eof(&mut a, &mut b);
    site.stop();
}
