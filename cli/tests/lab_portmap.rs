//! `holepunch portmap` against real miniupnpd (nftables backend) in a netns NAT router, for PCP,
//! NAT-PMP and UPnP IGD: the mapping is created, a datagram from the internet reaches the LAN host
//! through it, renewal keeps it past the first lifetime, SIGINT deletes it (gone from the
//! router's ruleset), and after miniupnpd restarts (a new epoch, no mappings) the mapping is
//! re-created.
//!
//! miniupnpd refuses TEST-NET external addresses unless STUN says they are public, so coturn
//! runs on the lab internet and miniupnpd uses `ext_perform_stun` (lab.md §3). Needs root,
//! miniupnpd and coturn (skips with a reason otherwise; fails under `CI=true`).
mod lab_common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use holepunch_tests::lab::{Lab, LabProcess, Ns, Profile, Site, Stream};
use lab_common::{COTURN_ALTERNATE, COTURN_PRIMARY, START_LIMIT, holepunch};

/// The LAN port mapped.
const PORT: u16 = 40000;
/// A short lifetime so renewal (at half) and expiry fit in a test.
const LIFETIME_S: u64 = 20;

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

/// Starts miniupnpd in the site's router, with the chains, the input exception for coturn's
/// RFC 5780 replies, and a configuration for this site; returns once it serves port 5351.
fn miniupnpd(lab: &Lab, site: &Site, run: u32) -> LabProcess {
    let dir = lab.dir().join("miniupnpd");
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
        "ext_ifname=wan0\nlistening_ip=br-lan\nhttp_port=5000\nenable_upnp=yes\nenable_natpmp=yes\n\
         secure_mode=yes\nsystem_uptime=no\nmin_lifetime=10\nuuid=3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b\n\
         upnp_table_name=hp_upnp\nupnp_nat_table_name=hp_upnp\nupnp_forward_chain=miniupnpd\n\
         upnp_nat_chain=prerouting_miniupnpd\nupnp_nat_postrouting_chain=postrouting_miniupnpd\n\
         ext_perform_stun=yes\next_stun_host={stun}\next_stun_port={port}\n\
         allow 1024-65535 {a}.{b}.{c}.0/24 1024-65535\ndeny 0-65535 0.0.0.0/0 0-65535\n",
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

/// Starts `holepunch portmap --protocol PROTO` on the site's host and waits for "mapped".
fn portmap(lab: &Lab, site: &Site, proto: &str) -> (LabProcess, String) {
    let gateway = {
        let o = site.lan_ips[0].octets();
        Ipv4Addr::new(o[0], o[1], o[2], 1).to_string()
    };
    let mut p = lab.spawn(
        site.host(),
        &format!("portmap-{proto}"),
        holepunch(),
        [
            "portmap",
            "--protocol",
            proto,
            "--port",
            &PORT.to_string(),
            "--lifetime",
            &LIFETIME_S.to_string(),
            "--gateway",
            &gateway,
            "--json",
        ],
    );
    let line = p.expect_line(Stream::Stdout, Duration::from_secs(20), |l| {
        l.contains("\"event\":\"mapped\"")
    });
    (p, line)
}

/// Whether a datagram sent from the internet to the site's public address, port [`PORT`],
/// reaches the LAN host's port [`PORT`].
fn inbound_arrives(lab: &Lab, site: &Site, sender: &Ns, tag: &str) -> bool {
    let mut listener = lab.probe(
        site.host(),
        &format!("listen-{tag}"),
        // `open` needs somewhere to send its MAP: the lab's black hole, which never answers.
        [
            "open",
            "203.0.113.1:9",
            "4",
            "--lport",
            &PORT.to_string(),
            "--tries",
            "1",
            "--wait",
            "0.2",
        ],
    );
    listener.expect_line(Stream::Stdout, START_LIMIT, |l| l.starts_with("LOCAL"));
    let dest = format!("{}:{PORT}", site.public_ip);
    let mut send = lab.probe(
        sender,
        &format!("send-{tag}"),
        [
            "send",
            dest.as_str(),
            tag,
            "--count",
            "3",
            "--interval",
            "0.3",
        ],
    );
    send.wait_exit(Duration::from_secs(10));
    listener.wait_exit(Duration::from_secs(10));
    listener
        .lines(Stream::Stdout)
        .iter()
        .any(|l| l.starts_with("RECV") && l.contains(&format!("data={tag}-")))
}

/// The router's nftables ruleset mentions the mapped port.
fn ruleset_has_port(lab: &Lab, site: &Site) -> bool {
    let out = lab.run(
        &site.router,
        "nft-list",
        "nft",
        ["list", "ruleset"],
        START_LIMIT,
    );
    assert!(out.success(), "nft list ruleset: {out:?}");
    out.stdout.contains(&format!("dport {PORT}"))
}

/// One full life of a mapping with `proto` against a fresh lab.
fn mapping_lives_renews_and_is_deleted(proto: &str) {
    let Some(lab) = lab_common::require_with(&["turnserver", "miniupnpd"]) else {
        return;
    };
    let (_coturn_ns, _coturn) = lab_common::coturn(&lab);
    let site = lab.nat_site(Profile::SymmetricRandom, false);
    let sender = lab.server_host(&["203.0.113.50".parse().expect("ip")]);
    let mut daemon = miniupnpd(&lab, &site, 0);

    let started = Instant::now();
    let (mut pm, line) = portmap(&lab, &site, proto);
    let external = format!("\"external\":\"{}:{PORT}\"", site.public_ip);
    assert!(
        line.contains(&format!("\"protocol\":\"{proto}\"")) && line.contains(&external),
        "{line}"
    );
    assert!(ruleset_has_port(&lab, &site), "miniupnpd added a rule");
    assert!(
        inbound_arrives(&lab, &site, &sender, "FIRST"),
        "{proto}: inbound datagram through the new mapping"
    );

    // Renewal at half the lifetime keeps it alive past the first lifetime.
    pm.expect_line(Stream::Stdout, Duration::from_secs(LIFETIME_S), |l| {
        l.contains("\"event\":\"renewed\"")
    });
    let past = Duration::from_secs(LIFETIME_S + 2);
    if let Some(left) = past.checked_sub(started.elapsed()) {
        std::thread::sleep(left);
    }
    assert!(
        inbound_arrives(&lab, &site, &sender, "RENEWED"),
        "{proto}: still mapped after the first lifetime"
    );

    // A restarted miniupnpd has a new epoch and no mappings: noticed, re-mapped.
    let remapped = |l: &str| {
        l.contains("\"event\":\"renewed\"") || l.contains("\"event\":\"external_changed\"")
    };
    let before = pm
        .lines(Stream::Stdout)
        .iter()
        .filter(|l| remapped(l))
        .count();
    daemon.stop(Duration::from_secs(5));
    let _daemon2 = miniupnpd(&lab, &site, 1);
    // PCP and NAT-PMP notice the new epoch; UPnP has none and simply re-adds at renewal.
    if proto != "upnp" {
        pm.expect_line(Stream::Stdout, Duration::from_secs(LIFETIME_S), |l| {
            l.contains("\"event\":\"gateway_restarted\"")
        });
    }
    if let Err(e) = pm.wait_for_lines(
        Stream::Stdout,
        before + 1,
        Duration::from_secs(LIFETIME_S),
        remapped,
    ) {
        panic!("{proto}: no mapping event after the restart: {e}");
    }
    assert!(
        inbound_arrives(&lab, &site, &sender, "REMAPPED"),
        "{proto}: mapped again after the restart"
    );

    // SIGINT deletes it and exits 0.
    pm.signal("INT");
    let status = pm.wait_exit(Duration::from_secs(10));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exit 0 after SIGINT: {}",
        pm.describe()
    );
    assert!(
        pm.stdout().contains("\"event\":\"deleted\""),
        "{}",
        pm.stdout()
    );
    assert!(
        !ruleset_has_port(&lab, &site),
        "the rule is gone from nftables"
    );
}

#[test]
fn pcp_mapping_against_miniupnpd() {
    mapping_lives_renews_and_is_deleted("pcp");
}

#[test]
fn upnp_mapping_against_miniupnpd() {
    mapping_lives_renews_and_is_deleted("upnp");
}

#[test]
fn natpmp_mapping_against_miniupnpd() {
    mapping_lives_renews_and_is_deleted("natpmp");
}
