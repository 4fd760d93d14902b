//! `holepunch portmap` against real miniupnpd (nftables backend) in a netns NAT router, for PCP,
//! NAT-PMP and UPnP IGD: the mapping is created, a datagram from the internet reaches the LAN host
//! through it, renewal keeps it past the first lifetime, SIGINT deletes it (gone from the
//! router's ruleset), and after miniupnpd restarts (a new epoch, no mappings) the mapping is
//! re-created. And `holepunch connect` maps its port by default: with miniupnpd on one router,
//! a symmetric-random pair, which has no direct path otherwise, connects directly.
//!
//! miniupnpd refuses TEST-NET external addresses unless STUN says they are public, so coturn
//! runs on the lab internet and miniupnpd uses `ext_perform_stun` (lab.md §3). Needs root,
//! miniupnpd and coturn (skips with a reason otherwise; fails under `CI=true`).
mod lab_common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use holepunch_tests::lab::{self, Lab, LabProcess, Ns, Profile, Site, Stream};
use lab_common::{
    CONNECT_TIMEOUT_S, START_LIMIT, STUN_PRIMARY, connect_with, holepunch, miniupnpd, servers,
};

/// The LAN port mapped.
const PORT: u16 = 40000;
/// A short lifetime so renewal (at half) and expiry fit in a test.
const LIFETIME_S: u64 = 20;

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
    ruleset_has(lab, site, PORT)
}

/// The router's nftables ruleset mentions `port` as a destination port.
fn ruleset_has(lab: &Lab, site: &Site, port: u16) -> bool {
    let out = lab.run(
        &site.router,
        "nft-list",
        "nft",
        ["list", "ruleset"],
        START_LIMIT,
    );
    assert!(out.success(), "nft list ruleset: {out:?}");
    out.stdout.contains(&format!("dport {port}"))
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

#[test]
fn a_gateway_that_maps_makes_symmetric_pairs_direct() {
    // Both symmetric-random: no direct path by STUN and punching (the lab matrix's `failed`
    // cell). With miniupnpd on A's router, connect's port mapping (on by default) gives A a
    // candidate that B reaches directly. No relay is given: the path must be direct.
    symmetric_pair_goes_direct(true, false);
}

#[test]
fn a_upnp_only_gateway_makes_symmetric_pairs_direct_and_the_mapping_goes_at_exit() {
    // miniupnpd with NAT-PMP (and so PCP) off: only UPnP IGD answers connect's probe.
    symmetric_pair_goes_direct(false, false);
}

#[test]
fn mapping_gateways_on_both_sides_make_symmetric_pairs_direct() {
    symmetric_pair_goes_direct(true, true);
}

/// Two symmetric-random sites, miniupnpd on A's router (NAT-PMP/PCP on or off) and, with
/// `both`, on B's too; `connect` must go direct through A's mapping, and A's mapping must be
/// gone from its router's ruleset once A exited.
fn symmetric_pair_goes_direct(natpmp: bool, both: bool) {
    let Some(lab) = lab_common::require_with(&["miniupnpd", "turnserver"]) else {
        return;
    };
    let (_srv, _stun, _signal) = servers(&lab);
    // miniupnpd checks its external address is public with STUN, against coturn (lab.md §3).
    let (_coturn_ns, _coturn) = lab_common::coturn(&lab);
    let site_a = lab.nat_site(Profile::SymmetricRandom, false);
    let _upnpd = lab_common::miniupnpd_with(&lab, &site_a, 0, natpmp);
    let site_b = lab.nat_site(Profile::SymmetricRandom, false);
    let _upnpd_b = both.then(|| lab_common::miniupnpd_with(&lab, &site_b, 0, true));
    let mut a = connect_with(&lab, site_a.host(), "a", "b", &[STUN_PRIMARY], &[]);
    let mut b = connect_with(&lab, site_b.host(), "b", "a", &[STUN_PRIMARY], &[]);
    let limit = Duration::from_secs(CONNECT_TIMEOUT_S + 10);
    let mut connected = Vec::new();
    for p in [&mut a, &mut b] {
        let line = p.expect_line(Stream::Stderr, limit, |l| {
            l.contains("\"event\":\"connected\"") || l.contains("\"event\":\"failed\"")
        });
        println!("{line}");
        assert!(line.contains("\"path\":\"direct\""), "{}", p.describe());
        connected.push(lab::parse_json(&line).expect("connected is JSON"));
    }
    // A's public IP and A's own port: the mapping miniupnpd made (this router's fully-random
    // masquerade never keeps a port).
    let a_port = connected[0]
        .str_field("local")
        .and_then(|l| l.rsplit_once(':'))
        .and_then(|(_, port)| port.parse::<u16>().ok())
        .expect("a's local address");
    let mapped = format!("{}:{a_port}", site_a.public_ip);
    // A told the user where the candidate came from. With a mapping on both sides the path
    // may go through B's before A's mapping is made, so the event may follow `connected`.
    let address = format!("\"address\":\"{mapped}\"");
    let told = a.wait_for_line(Stream::Stderr, Duration::from_secs(10), |l| {
        l.contains("\"type\":\"portmapped\"") && l.contains(&address)
    });
    assert!(
        told.is_ok(),
        "no portmapped candidate event for {mapped}: {}",
        a.describe()
    );
    if !both {
        // With a mapping on both sides either may carry the path; with one, B reaches A's.
        assert_eq!(
            connected[1].str_field("remote"),
            Some(mapped.as_str()),
            "{}",
            b.describe()
        );
    }
    assert!(
        ruleset_has(&lab, &site_a, a_port),
        "the mapping is in A's router"
    );
    // End both sessions (EOF on stdin); A deletes its mapping before it exits.
    for p in [&mut a, &mut b] {
        p.close_stdin();
    }
    for p in [&mut a, &mut b] {
        assert!(
            p.wait_exit(Duration::from_secs(15)).is_some(),
            "{}",
            p.describe()
        );
    }
    assert!(
        !ruleset_has(&lab, &site_a, a_port),
        "A's mapping is gone from its router after A exited"
    );
}

#[test]
fn netcheck_reports_which_protocols_the_gateway_answered() {
    let Some(lab) = lab_common::require_with(&["miniupnpd", "turnserver"]) else {
        return;
    };
    let (_srv, _stun, _signal) = servers(&lab);
    let (_coturn_ns, _coturn) = lab_common::coturn(&lab);
    let full = lab.nat_site(Profile::PortRestrictedCone, false);
    let _full_d = lab_common::miniupnpd_with(&lab, &full, 0, true);
    let upnp_only = lab.nat_site(Profile::PortRestrictedCone, false);
    let _upnp_d = lab_common::miniupnpd_with(&lab, &upnp_only, 0, false);
    let bare = lab.nat_site(Profile::PortRestrictedCone, false);
    let stun = STUN_PRIMARY.to_string();
    for (site, want) in [
        (&full, [true, true, true]),
        (&upnp_only, [true, false, false]),
        (&bare, [false, false, false]),
    ] {
        let started = Instant::now();
        let out = lab.run(
            site.host(),
            "netcheck",
            holepunch(),
            ["netcheck", "--stun", stun.as_str(), "--json"],
            Duration::from_secs(20),
        );
        let took = started.elapsed();
        assert!(out.success(), "{out:?}");
        let report = lab::parse_json(out.stdout.trim()).expect("one JSON report");
        let portmap = report.get("portmap").expect("portmap field");
        let got = ["upnp", "natpmp", "pcp"].map(|k| portmap.get(k).and_then(|v| v.as_bool()));
        println!("{}: portmap {got:?} in {took:?}", site.public_ip);
        assert_eq!(got, want.map(Some), "{}", out.stdout);
        let human = lab.run(
            site.host(),
            "netcheck-human",
            holepunch(),
            ["netcheck", "--stun", stun.as_str()],
            Duration::from_secs(20),
        );
        let line = human
            .stdout
            .lines()
            .find(|l| l.contains("port mapping:"))
            .unwrap_or_default()
            .to_string();
        let expected = match want {
            [true, true, true] => "PCP, NAT-PMP, UPnP IGD",
            [true, false, false] => "UPnP IGD (gateway",
            _ => "none answered",
        };
        assert!(line.contains(expected), "{line:?}");
    }
}
