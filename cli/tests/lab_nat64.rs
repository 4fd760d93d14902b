//! RFC 7050 prefix discovery against real unbound DNS64 (lab.md §4): the core's `ipv4only.arpa`
//! AAAA query goes to unbound inside a lab namespace, and the core's parser reads the prefix out
//! of unbound's synthesised answer, for the well-known prefix, the lab's /96 and a /64.
//!
//! Only the DNS side of NAT64 is exercised here (no tayga): discovery needs just the resolver.
//! Needs root and unbound (skips with a reason otherwise; fails under `CI=true`).
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
    let dir = lab.dir().join(format!("unbound{n}"));
    std::fs::create_dir_all(&dir).expect("create unbound dir");
    let zone = dir.join("ipv4only.arpa.zone");
    std::fs::write(&zone, ZONE).expect("write zone");
    let conf = format!(
        "server:\n  interface: 127.0.0.1\n  port: 53\n  access-control: 127.0.0.0/8 allow\n\
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
