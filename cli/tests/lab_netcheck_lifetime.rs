//! `holepunch netcheck --lifetime` in the netns lab: with the routers' conntrack UDP timeouts
//! set short (lab.md §1g), the measured mapping lifetime brackets the configured timeout, and
//! the run stops soon after the first expiry.
//!
//! Needs root (skips with a reason otherwise; fails under `CI=true`).
mod lab_common;

use std::time::{Duration, Instant};

use holepunch_tests::lab::{Json, Lab, Profile, Site};
use lab_common::{STUN_PRIMARY, holepunch};

/// How long one `netcheck --lifetime` may take here (the 8 s timeout ends it at ~12 s).
const LIMIT: Duration = Duration::from_secs(60);

/// The conntrack timeout set on every router: both the unreplied and the stream one, so the
/// figure does not depend on which one a mapping with one exchange gets.
const TIMEOUT: Duration = Duration::from_secs(8);

fn lifetime_report(lab: &Lab, site: &Site) -> Result<Json, String> {
    let out = lab.run(
        site.host(),
        "netcheck-lifetime",
        holepunch(),
        [
            "netcheck",
            "--stun",
            &STUN_PRIMARY.to_string(),
            "--json",
            "--lifetime",
        ],
        LIMIT,
    );
    match lab_common::json_event(&out.stdout, "report") {
        Some(report) if out.code() == Some(0) => Ok(report),
        _ => Err(format!(
            "netcheck --lifetime ({}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
            out.status_text(),
            out.stdout.trim_end(),
            out.stderr.trim_end()
        )),
    }
}

#[test]
fn netcheck_lifetime_brackets_the_conntrack_timeout() {
    let Some(lab) = lab_common::require_with(&[]) else {
        return;
    };
    let (_stun_ns, _stun) = lab_common::stun_server(&lab);
    let sites: Vec<Site> = [Profile::PortRestrictedCone, Profile::SymmetricRandom]
        .iter()
        .map(|&p| lab.nat_site(p, false))
        .collect();
    for site in &sites {
        lab.set_conntrack_timeouts(&site.router, TIMEOUT, TIMEOUT);
    }
    let started = Instant::now();
    let reports: Vec<Result<Json, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = sites
            .iter()
            .map(|site| {
                let lab = &lab;
                s.spawn(move || lifetime_report(lab, site))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("netcheck thread"))
            .collect()
    });
    let took = started.elapsed();
    let mut wrong = Vec::new();
    for (site, report) in sites.iter().zip(&reports) {
        let p = site.profile;
        match report {
            Err(e) => wrong.push(format!("{p}: {e}")),
            Ok(r) => {
                let secs = |f: &str| r.get(f).and_then(Json::as_f64);
                let (lo, hi) = (
                    secs("mapping_lifetime_s"),
                    secs("mapping_lifetime_expired_s"),
                );
                println!("{p}: mapping lifetime survived {lo:?} s, expired by {hi:?} s");
                let t = TIMEOUT.as_secs_f64();
                if !matches!((lo, hi), (Some(lo), Some(hi)) if lo < t && t <= hi) {
                    wrong.push(format!(
                        "{p}: bracket [{lo:?}, {hi:?}] does not hold the {t} s timeout"
                    ));
                }
            }
        }
    }
    println!("both runs took {took:?}");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // The search ends soon after the first expiry, not at its two-minute bound.
    assert!(took < Duration::from_secs(30), "took {took:?}");
}
