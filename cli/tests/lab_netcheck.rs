//! `holepunch netcheck` in the netns lab: from behind every profile, against our own
//! `holepunch stun-server` and against coturn, the report must equal the profile, and agree with
//! coturn's `turnutils_natdiscovery` run from the same host.
//!
//! Needs root and coturn (skips with a reason otherwise; fails under `CI=true`).
mod lab_common;

use std::net::{SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use holepunch_tests::lab::{Json, Lab, Profile, Site};
use lab_common::{COTURN_PRIMARY, NatDiscovery, STUN_PRIMARY, holepunch};

/// How long one netcheck may take.
const NETCHECK_LIMIT: Duration = Duration::from_secs(60);

/// Runs `holepunch netcheck --stun SERVER --json` on the site's host; the `report` event, or a
/// description of what went wrong.
fn netcheck(lab: &Lab, site: &Site, server: SocketAddrV4) -> Result<Json, String> {
    let out = lab.run(
        site.host(),
        "netcheck",
        holepunch(),
        ["netcheck", "--stun", &server.to_string(), "--json"],
        NETCHECK_LIMIT,
    );
    // A host without UDP may well call that a failed job (exit 1); it must still report.
    let ok_status = matches!(out.code(), Some(0)) || (!site.profile.udp() && out.code() == Some(1));
    match lab_common::json_event(&out.stdout, "report") {
        Some(report) if ok_status => Ok(report),
        _ => Err(format!(
            "netcheck --stun {server} ({}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
            out.status_text(),
            out.stdout.trim_end(),
            out.stderr.trim_end()
        )),
    }
}

/// What is wrong with `report` for `site`, one line per field; empty when it matches.
fn mismatches(site: &Site, report: &Json) -> Vec<String> {
    let p = site.profile;
    let mut wrong = Vec::new();
    let mut expect = |field: &str, ok: bool, want: String| {
        if !ok {
            wrong.push(format!(
                "{field}: expected {want}, got {:?}",
                report.get(field)
            ));
        }
    };
    expect(
        "udp",
        report.get("udp").and_then(Json::as_bool) == Some(p.udp()),
        p.udp().to_string(),
    );
    let public = report
        .str_field("public_v4")
        .and_then(|a| a.parse::<SocketAddr>().ok());
    if p.udp() {
        expect(
            "public_v4",
            public.is_some_and(|a| a.ip() == site.public_ip),
            format!("{}:<port>", site.public_ip),
        );
    } else {
        expect(
            "public_v4",
            report.get("public_v4").is_some_and(Json::is_null),
            "null".into(),
        );
    }
    let mapping = p.mapping_behaviour().as_str();
    expect(
        "mapping",
        report.str_field("mapping") == Some(mapping),
        mapping.into(),
    );
    let filtering = p.filtering_behaviour().as_str();
    expect(
        "filtering",
        report.str_field("filtering") == Some(filtering),
        filtering.into(),
    );
    // One host per site, built without hairpinning: behind a NAT, reaching one's own public
    // address fails (and self-hairpinning never works in the lab anyway, lab.md P2). An open or
    // firewalled host's public address is its own, so reaching it always works.
    let hairpin = report.get("hairpinning");
    if p.translates() {
        expect(
            "hairpinning",
            hairpin.is_some_and(|h| h.is_null() || h.as_bool() == Some(false)),
            "false or null".into(),
        );
    } else {
        expect(
            "hairpinning",
            hairpin.is_some_and(|h| h.is_null() || h.as_bool() == Some(true)),
            "true or null (the public address is the host's own)".into(),
        );
    }
    // No router here runs a port-mapping daemon: nothing answered (false), or no gateway was
    // on the path (null); never true.
    let portmap_off = report.get("portmap").is_some_and(|m| {
        ["upnp", "natpmp", "pcp"].iter().all(|k| {
            m.get(k)
                .is_some_and(|v| v.is_null() || v.as_bool() == Some(false))
        })
    });
    expect(
        "portmap",
        portmap_off,
        "false or null (no gateway here maps ports)".into(),
    );
    expect(
        "public_v6",
        report.get("public_v6").is_some_and(Json::is_null),
        "null (the lab is IPv4 only)".into(),
    );
    expect(
        "nat64_prefix",
        report.get("nat64_prefix").is_some_and(Json::is_null),
        "null".into(),
    );
    wrong
}

/// netcheck from behind every profile at once, against our server and coturn, plus
/// natdiscovery from the same hosts: each report equals the profile and natdiscovery's verdict.
#[test]
fn netcheck_matches_every_profile_and_natdiscovery() {
    let Some(lab) = lab_common::require_with(&["turnserver", "turnutils_natdiscovery"]) else {
        return;
    };
    let started = Instant::now();
    let (_stun_ns, _stun) = lab_common::stun_server(&lab);
    // natdiscovery sends bare requests; our default RFC 5780 server answers them in full
    // within each source's rate budget, no flag needed.
    let (_coturn_ns, _coturn) = lab_common::coturn(&lab);
    let sites: Vec<Site> = Profile::LAB
        .iter()
        .map(|&p| lab.nat_site(p, false))
        .collect();
    type Outcome = (
        Result<Json, String>,
        Result<Json, String>,
        NatDiscovery,
        NatDiscovery,
    );
    let outcomes: Vec<Outcome> = std::thread::scope(|s| {
        let handles: Vec<_> = sites
            .iter()
            .map(|site| {
                let lab = &lab;
                s.spawn(move || {
                    let ours = netcheck(lab, site, STUN_PRIMARY);
                    let coturn = netcheck(lab, site, COTURN_PRIMARY);
                    let disc = lab_common::natdiscovery(lab, site.host(), COTURN_PRIMARY);
                    let disc_ours = lab_common::natdiscovery(lab, site.host(), STUN_PRIMARY);
                    (ours, coturn, disc, disc_ours)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("netcheck thread"))
            .collect()
    });
    let mut wrong = Vec::new();
    for (site, (ours, coturn, disc, disc_ours)) in sites.iter().zip(&outcomes) {
        let p = site.profile;
        // coturn's natdiscovery against our server agrees with it against coturn.
        if (disc_ours.mapping, disc_ours.filtering) != (disc.mapping, disc.filtering) {
            wrong.push(format!(
                "{p}: natdiscovery against holepunch stun-server said {:?}/{:?}, against coturn {:?}/{:?}",
                disc_ours.mapping, disc_ours.filtering, disc.mapping, disc.filtering
            ));
        }
        for (server, result) in [("holepunch stun-server", ours), ("coturn", coturn)] {
            match result {
                Err(e) => wrong.push(format!("{p}, against {server}: no report: {e}")),
                Ok(report) => {
                    for m in mismatches(site, report) {
                        wrong.push(format!("{p}, against {server}: {m}"));
                    }
                    let said = (report.str_field("mapping"), report.str_field("filtering"));
                    let disc_said = (
                        Some(disc.mapping.unwrap_or("unknown")),
                        Some(disc.filtering.unwrap_or("unknown")),
                    );
                    if said != disc_said {
                        wrong.push(format!(
                            "{p}, against {server}: netcheck said {said:?}, natdiscovery {disc_said:?}"
                        ));
                    }
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} mismatches:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    println!(
        "netcheck matrix: 8 profiles × 2 servers + natdiscovery in {:?}",
        started.elapsed()
    );
}
