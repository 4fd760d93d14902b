//! coturn in the netns lab: `holepunch stun` against coturn's `turnserver` from behind NATs, a
//! TURN relay through the lab, and coturn's `turnutils_natdiscovery` (RFC 5780) agreeing with
//! every lab profile.
//!
//! coturn runs with two addresses (203.0.113.5 and .6, ports 3478 and 3479), which switches its
//! RFC 5780 support on (lab.md §2). Needs root and coturn (skips with a reason otherwise; fails
//! under `CI=true`).
mod lab_common;

use std::time::{Duration, Instant};

use holepunch_tests::lab::Profile;
use lab_common::{COTURN_ALTERNATE, COTURN_PRIMARY};

/// `holepunch stun` against coturn, to its primary and its alternate address, from behind a
/// port-keeping NAT, a symmetric NAT, a double NAT and from an open host: the mapped address is
/// the site's public one, and coturn's RFC 5780 attributes reach our client.
#[test]
fn holepunch_stun_against_coturn() {
    let Some(lab) = lab_common::require_with(&["turnserver"]) else {
        return;
    };
    let (_ns, _coturn) = lab_common::coturn(&lab);
    let profiles = [
        Profile::Open,
        Profile::PortRestrictedCone,
        Profile::SymmetricRandom,
        Profile::Cgnat,
    ];
    let sites: Vec<_> = profiles.iter().map(|&p| lab.nat_site(p, false)).collect();
    for site in &sites {
        let profile = site.profile;
        for server in [COTURN_PRIMARY, COTURN_ALTERNATE] {
            let r = lab_common::stun(&lab, site.host(), server, 2.0)
                .unwrap_or_else(|e| panic!("{profile}: stun {server} failed: {e}"));
            assert_eq!(*r.mapped.ip(), site.public_ip, "{profile} via {server}");
            assert_eq!(
                r.mapped.port() == r.local.port(),
                profile.preserves_port(),
                "{profile} via {server}: {r:?}"
            );
            assert_eq!(
                r.response_origin.map(|a| a.to_string()),
                Some(server.to_string()),
                "{profile}: coturn's RESPONSE-ORIGIN"
            );
            assert!(
                r.other_address.is_some(),
                "{profile}: coturn's OTHER-ADDRESS: {r:?}"
            );
        }
        let r = lab_common::stun(&lab, site.host(), COTURN_PRIMARY, 2.0).expect("checked");
        assert_eq!(
            r.other_address.map(|a| a.to_string()),
            Some(COTURN_ALTERNATE.to_string())
        );
    }
}

/// lab.md §2: a TURN allocation from behind a symmetric NAT relays UDP to a public peer and back
/// (`turnutils_uclient` to `turnutils_peer`), so the lab can host relayed paths.
#[test]
fn coturn_relays_from_behind_a_symmetric_nat() {
    let Some(lab) =
        lab_common::require_with(&["turnserver", "turnutils_uclient", "turnutils_peer"])
    else {
        return;
    };
    let (_ns, _coturn) = lab_common::coturn(&lab);
    let peer_ip = "203.0.113.50";
    let peer_ns = lab.server_host(&[peer_ip.parse().expect("ip")]);
    let _peer = lab.spawn(
        &peer_ns,
        "turnutils_peer",
        "turnutils_peer",
        ["-L", peer_ip, "-p", "3480"],
    );
    let site = lab.nat_site(Profile::SymmetricRandom, false);
    let out = lab.run(
        site.host(),
        "uclient",
        "turnutils_uclient",
        [
            "-u",
            "alice",
            "-w",
            "alicepass",
            "-e",
            peer_ip,
            "-r",
            "3480",
            "-n",
            "20",
            "-m",
            "1",
            "-l",
            "200",
            "-c",
            "-X",
            &COTURN_PRIMARY.ip().to_string(),
        ],
        Duration::from_secs(30),
    );
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains("tot_send_msgs=20") && text.contains("tot_recv_msgs=20"),
        "20 messages relayed there and back: {out:?}"
    );
}

/// `turnutils_natdiscovery -m -f` from behind every profile at once agrees with the profile
/// (lab.md §2's table). An open host is reported as "NAT with EIM/EIF": natdiscovery does not
/// say "no NAT" when its local address is unbound.
#[test]
fn natdiscovery_agrees_with_every_profile() {
    let Some(lab) = lab_common::require_with(&["turnserver", "turnutils_natdiscovery"]) else {
        return;
    };
    let started = Instant::now();
    let (_ns, _coturn) = lab_common::coturn(&lab);
    let sites: Vec<_> = Profile::LAB
        .iter()
        .map(|&p| lab.nat_site(p, false))
        .collect();
    let built = started.elapsed();
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = sites
            .iter()
            .map(|site| {
                let lab = &lab;
                s.spawn(move || lab_common::natdiscovery(lab, site.host(), COTURN_PRIMARY))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("natdiscovery thread"))
            .collect()
    });
    let mut wrong = Vec::new();
    for (site, d) in sites.iter().zip(&results) {
        let p = site.profile;
        let expected = (
            p.mapping().map(|m| m.name()),
            p.filtering().map(|f| f.name()),
        );
        if (d.mapping, d.filtering) != expected {
            wrong.push(format!(
                "{p}: expected {expected:?}, natdiscovery said ({:?}, {:?}):\n{}",
                d.mapping, d.filtering, d.output
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
    println!(
        "8 profiles: lab built in {built:?}, natdiscovery done in {:?}",
        started.elapsed()
    );
}
