//! The netns lab's NAT profiles, proven with the real `holepunch` binary and a UDP prober
//! (re-verifying the table of the shared lab.md §1 from Rust).
//!
//! Each test builds its own lab (namespaces named with a per-lab prefix, so the tests run in
//! parallel) with `holepunch stun-server` on 203.0.113.3:3478 (alternate 203.0.113.4:3479) and
//! a reflector on 203.0.113.50/.51 ports 4000/4001, and tears it down at the end, also when it
//! fails. Needs root (skips with a reason otherwise; fails under `CI=true`).
mod lab_common;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use holepunch_tests::lab::{self, Filtering, Lab, Mapping, Profile, Site, Stream};
use lab_common::{REFLECTORS, STUN_ALTERNATE, STUN_PRIMARY, probe_run, with_word};

/// The third host of lab.md §1c: our STUN server's host, which the LAN host never sent to.
const THIRD_HOST: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 3);
const LIMIT: Duration = Duration::from_secs(20);

/// A lab with the STUN server, the reflector and one site; `None` when the lab cannot run here.
struct World {
    // Processes first: they are dropped (killed) before the lab tears the namespaces down.
    _stun: lab::LabProcess,
    reflector: lab::LabProcess,
    srv: lab::Ns,
    sites: Vec<Site>,
    lab: Lab,
}

fn world(sites: &[(Profile, bool, usize)]) -> Option<World> {
    let lab = lab_common::require_with(&["python3", "conntrack"])?;
    let (srv, stun) = lab_common::stun_server(&lab);
    let (_, reflector) = lab_common::reflector(&lab);
    let sites = sites
        .iter()
        .map(|&(p, hairpin, hosts)| lab.nat_site_with_hosts(p, hairpin, hosts))
        .collect();
    Some(World {
        _stun: stun,
        reflector,
        srv,
        sites,
        lab,
    })
}

/// Proves one profile from its LAN host: `holepunch stun` to both STUN addresses, the mapping
/// toward four reflector endpoints, which reflector endpoints get back in, and whether a third
/// host that was never contacted reaches the mapping.
fn check_profile(profile: Profile) {
    let started = Instant::now();
    let Some(w) = world(&[(profile, false, 1)]) else {
        return;
    };
    let site = &w.sites[0];
    let host = site.host();
    let built = started.elapsed();

    // 1. holepunch stun to the primary and the alternate address.
    let primary = lab_common::stun(&w.lab, host, STUN_PRIMARY, 1.0);
    let alternate = lab_common::stun(&w.lab, host, STUN_ALTERNATE, 1.0);
    if profile.udp() {
        for (server, result) in [(STUN_PRIMARY, &primary), (STUN_ALTERNATE, &alternate)] {
            let r = result
                .as_ref()
                .unwrap_or_else(|e| panic!("{profile}: stun {server} failed: {e}"));
            assert_eq!(
                *r.mapped.ip(),
                site.public_ip,
                "{profile}: mapped IP via {server}"
            );
            if profile.preserves_port() {
                assert_eq!(
                    r.mapped.port(),
                    r.local.port(),
                    "{profile}: the port is kept"
                );
            } else {
                assert_ne!(
                    r.mapped.port(),
                    r.local.port(),
                    "{profile}: fully-random ports"
                );
            }
        }
    } else {
        assert!(
            primary.is_err() && alternate.is_err(),
            "{profile}: STUN must fail"
        );
    }

    // 2. Mapping: one socket toward four reflector endpoints, then the first one again.
    // Answers take well under a millisecond here; one try is enough where nothing gets through.
    let tries = if profile.udp() { "2" } else { "1" };
    let mut args = vec!["map", "--wait", "0.5", "--tries", tries]
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>();
    args.extend(REFLECTORS.iter().map(ToString::to_string));
    args.push(REFLECTORS[0].to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let lines = probe_run(&w.lab, host, "map", &args, LIMIT);
    let mapped: Vec<SocketAddrV4> = with_word(&lines, "MAPPED")
        .iter()
        .map(|l| l.addr("addr"))
        .collect();
    match profile.mapping() {
        None => assert!(
            mapped.is_empty(),
            "{profile}: nothing gets through: {lines:?}"
        ),
        Some(m) => {
            assert_eq!(mapped.len(), 5, "{profile}: every MAP answered: {lines:?}");
            assert!(mapped.iter().all(|a| *a.ip() == site.public_ip));
            assert_eq!(
                mapped[4], mapped[0],
                "{profile}: same destination, same mapping"
            );
            let distinct: BTreeSet<u16> = mapped[..4].iter().map(|a| a.port()).collect();
            match m {
                Mapping::EndpointIndependent => {
                    assert_eq!(distinct.len(), 1, "{profile}: one mapping: {mapped:?}")
                }
                Mapping::AddressDependent => {
                    unreachable!("{profile}: the lab builds no address-dependent mapping")
                }
                Mapping::AddressAndPortDependent => {
                    assert_eq!(
                        distinct.len(),
                        4,
                        "{profile}: a mapping per destination: {mapped:?}"
                    )
                }
            }
        }
    }

    // 3. Filtering: FILTER to the first reflector socket; every socket answers.
    let lines = probe_run(
        &w.lab,
        host,
        "filter",
        &["filter", &REFLECTORS[0].to_string(), "--wait", "0.8"],
        LIMIT,
    );
    let got: BTreeSet<String> = with_word(&lines, "FILTER")
        .first()
        .and_then(|l| l.get("from"))
        .filter(|f| *f != "none")
        .map(|f| f.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    let expected: BTreeSet<String> = match profile.filtering() {
        None => BTreeSet::new(),
        Some(Filtering::EndpointIndependent) => REFLECTORS.iter().map(|r| r.to_string()).collect(),
        Some(Filtering::AddressDependent) => {
            REFLECTORS[..2].iter().map(|r| r.to_string()).collect()
        }
        Some(Filtering::AddressAndPortDependent) => [REFLECTORS[0].to_string()].into(),
    };
    assert_eq!(got, expected, "{profile}: which reflector answers got in");

    // 4. A third host the LAN host never contacted sends to the mapping (lab.md §1c).
    let mut listener = w.lab.probe(
        host,
        "open",
        [
            "open",
            &REFLECTORS[0].to_string(),
            "4",
            "--echo",
            "--wait",
            "0.5",
            "--tries",
            tries,
        ],
    );
    let first = listener.expect_line(Stream::Stdout, LIMIT, |l| {
        l.starts_with("MAPPED") || l.starts_with("TIMEOUT")
    });
    let first = lab::ProbeLine::parse(&first);
    if profile.udp() {
        assert_eq!(first.word, "MAPPED", "{profile}: {first:?}");
        let mapping = first.addr("addr");
        let sent = probe_run(
            &w.lab,
            &w.srv,
            "third",
            &["send", &mapping.to_string(), "HELLO", "--wait", "0.5"],
            LIMIT,
        );
        let replies = with_word(&sent, "SENT")[0]
            .get("replies")
            .map(str::to_string);
        let expect_in = profile.filtering() == Some(Filtering::EndpointIndependent);
        assert_eq!(
            replies.as_deref(),
            Some(if expect_in { "1" } else { "0" }),
            "{profile}: third host's packet {} get in and be answered from the mapping: {sent:?}",
            if expect_in { "must" } else { "must not" }
        );
        if expect_in {
            let reply = with_word(&sent, "REPLY")[0].addr("from");
            assert_eq!(reply, mapping, "{profile}: answered from the same mapping");
            let recv = listener.expect_line(Stream::Stdout, LIMIT, |l| l.starts_with("RECV"));
            let from = lab::ProbeLine::parse(&recv).addr("from");
            assert_eq!(*from.ip(), THIRD_HOST, "{profile}: {recv}");
        }
    } else {
        assert_eq!(first.word, "TIMEOUT", "{profile}: {first:?}");
    }
    println!(
        "{profile}: lab built in {built:?}, proven in {:?}",
        started.elapsed()
    );
}

#[test]
fn profile_open() {
    check_profile(Profile::Open);
}

#[test]
fn profile_full_cone() {
    check_profile(Profile::FullCone);
}

#[test]
fn profile_restricted_cone() {
    check_profile(Profile::RestrictedCone);
}

#[test]
fn profile_port_restricted_cone() {
    check_profile(Profile::PortRestrictedCone);
}

#[test]
fn profile_symmetric_random() {
    check_profile(Profile::SymmetricRandom);
}

#[test]
fn profile_cgnat() {
    check_profile(Profile::Cgnat);
}

#[test]
fn profile_firewall() {
    check_profile(Profile::Firewall);
}

#[test]
fn profile_udp_blocked() {
    check_profile(Profile::UdpBlocked);
}

/// lab.md §1e: host 2 opens a mapping, host 1 sends to it through the router's public address.
/// With hairpinning the packet arrives showing host 1's external address, and the answer comes
/// back from host 2's mapping; without, nothing arrives.
#[test]
fn hairpinning_on_and_off() {
    let cases = [
        (Profile::FullCone, true),
        (Profile::FullCone, false),
        (Profile::RestrictedCone, true),
        (Profile::PortRestrictedCone, true),
    ];
    let sites: Vec<_> = cases.iter().map(|&(p, h)| (p, h, 2)).collect();
    let Some(w) = world(&sites) else {
        return;
    };
    std::thread::scope(|s| {
        for site in &w.sites {
            let lab = &w.lab;
            s.spawn(move || {
                let what = format!("{} hairpin={}", site.profile, site.hairpin);
                let mut owner = lab.probe(
                    &site.hosts[1],
                    "owner",
                    ["open", &REFLECTORS[0].to_string(), "3", "--echo"],
                );
                let line = owner.expect_line(Stream::Stdout, LIMIT, |l| l.starts_with("MAPPED"));
                let mapping = lab::ProbeLine::parse(&line).addr("addr");
                let sent = probe_run(
                    lab,
                    &site.hosts[0],
                    "sender",
                    &["send", &mapping.to_string(), "HELLO", "--wait", "0.7"],
                    LIMIT,
                );
                let summary = with_word(&sent, "SENT")[0];
                let local_port = summary.get("local").and_then(|l| l.rsplit(':').next());
                if site.hairpin {
                    assert_eq!(summary.get("replies"), Some("1"), "{what}: {sent:?}");
                    assert_eq!(
                        with_word(&sent, "REPLY")[0].addr("from"),
                        mapping,
                        "{what}: the answer comes from the public mapping"
                    );
                    let recv = owner.expect_line(Stream::Stdout, LIMIT, |l| l.starts_with("RECV"));
                    let from = lab::ProbeLine::parse(&recv).addr("from");
                    assert_eq!(
                        *from.ip(),
                        site.public_ip,
                        "{what}: external source: {recv}"
                    );
                    assert_eq!(
                        Some(from.port().to_string().as_str()),
                        local_port,
                        "{what}: {recv}"
                    );
                } else {
                    assert_eq!(summary.get("replies"), Some("0"), "{what}: {sent:?}");
                    let done = owner.expect_line(Stream::Stdout, LIMIT, |l| l.starts_with("DONE"));
                    assert_eq!(done, "DONE count=0", "{what}: nothing arrives");
                }
            });
        }
    });
}

/// lab.md §1g: conntrack timeouts are per namespace, and mappings die when they expire. With
/// 3 s / 5 s a port-restricted mapping lets its peer in after 0.5 s but not after 7 s idle (with
/// the default timeouts it still does); a symmetric NAT hands out a new port after 7 s idle but
/// not after 1 s; a full-cone mapping stops letting strangers in too.
#[test]
fn conntrack_timeouts_expire_mappings() {
    let Some(w) = world(&[
        (Profile::PortRestrictedCone, false, 1),
        (Profile::PortRestrictedCone, false, 1),
        (Profile::SymmetricRandom, false, 1),
        (Profile::FullCone, false, 1),
    ]) else {
        return;
    };
    let short = (Duration::from_secs(3), Duration::from_secs(5));
    for i in [0, 2, 3] {
        w.lab
            .set_conntrack_timeouts(&w.sites[i].router, short.0, short.1);
    }
    let r0 = REFLECTORS[0].to_string();
    let same = format!("0.5@{r0}");
    let same_late = format!("7.5@{r0}");
    let other = format!("0.5@{}", REFLECTORS[3]);
    let other_late = format!("7.5@{}", REFLECTORS[3]);
    let poked = |site: &Site, name: &str, first: &str, late: &str| {
        w.lab.probe(
            site.host(),
            name,
            ["open", &r0, "8.5", "--poke", first, "--poke", late],
        )
    };
    let mut short_apdf = poked(&w.sites[0], "apdf-short", &same, &same_late);
    let mut default_apdf = poked(&w.sites[1], "apdf-default", &same, &same_late);
    let mut short_eif = poked(&w.sites[3], "eif-short", &other, &other_late);
    let sym = probe_run(
        &w.lab,
        w.sites[2].host(),
        "sym",
        &["map", &r0, "--at", "0,1,8"],
        LIMIT,
    );
    let received = |p: &mut lab::LabProcess| -> Vec<String> {
        p.expect_line(Stream::Stdout, LIMIT, |l| l.starts_with("DONE"));
        p.lines(Stream::Stdout)
            .iter()
            .map(|l| lab::ProbeLine::parse(l))
            .filter(|l| l.word == "RECV")
            .filter_map(|l| l.get("data").map(str::to_string))
            .collect()
    };
    assert_eq!(
        received(&mut short_apdf),
        ["POKE-0"],
        "port-restricted, 3/5 s: in after 0.5 s, expired after 7 s idle"
    );
    assert_eq!(
        received(&mut default_apdf),
        ["POKE-0", "POKE-1"],
        "port-restricted, default timeouts: still open after 7 s"
    );
    assert_eq!(
        received(&mut short_eif),
        ["POKE-0"],
        "full-cone, 3/5 s: a stranger gets in at 0.5 s, not after the mapping expired"
    );
    let ports: Vec<u16> = with_word(&sym, "MAPPED")
        .iter()
        .map(|l| l.addr("addr").port())
        .collect();
    assert_eq!(ports.len(), 3, "{sym:?}");
    assert_eq!(ports[0], ports[1], "symmetric: kept after 1 s idle");
    assert_ne!(ports[1], ports[2], "symmetric: rebound after 7 s idle");
}

/// lab.md §1g: `conntrack -F` on a symmetric NAT changes the mapping mid-session, on a
/// port-restricted one (plain masquerade keeps the port) it does not; a new public address
/// (`rebind_ip.sh`) keeps the port and changes the address; a full-cone router's rules follow
/// the new address.
#[test]
fn flush_and_new_public_address() {
    let Some(mut w) = world(&[
        (Profile::SymmetricRandom, false, 1),
        (Profile::PortRestrictedCone, false, 1),
        (Profile::PortRestrictedCone, false, 1),
        (Profile::FullCone, false, 1),
    ]) else {
        return;
    };
    let r0 = REFLECTORS[0].to_string();
    let mapper = |site: &Site, name: &str| {
        w.lab
            .probe(site.host(), name, ["map", &r0, "--at", "0,1,3"])
    };
    let mut sym = mapper(&w.sites[0], "sym-flush");
    let mut apdf = mapper(&w.sites[1], "apdf-flush");
    let mut moved = mapper(&w.sites[2], "apdf-newip");
    for p in [&mut sym, &mut apdf, &mut moved] {
        p.wait_for_lines(Stream::Stdout, 2, LIMIT, |l| l.starts_with("MAPPED"))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let old_ip = w.sites[2].public_ip;
    let flush_started = Instant::now();
    w.lab.flush_conntrack(&w.sites[0].router);
    w.lab.flush_conntrack(&w.sites[1].router);
    let mut site2 = w.sites[2].clone();
    let new_ip = site2.spare_ip();
    w.lab.change_public_ip(&mut site2, new_ip);
    let mut site3 = w.sites[3].clone();
    let new_ip3 = site3.spare_ip();
    w.lab.change_public_ip(&mut site3, new_ip3);
    let acted = flush_started.elapsed();
    assert!(
        acted < Duration::from_millis(1500),
        "the changes must land before the third request ({acted:?})"
    );
    w.sites[2] = site2;
    w.sites[3] = site3;

    let mapped = |p: &mut lab::LabProcess| -> Vec<SocketAddrV4> {
        p.wait_for_lines(Stream::Stdout, 3, LIMIT, |l| l.starts_with("MAPPED"))
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .map(|l| lab::ProbeLine::parse(l).addr("addr"))
            .collect()
    };
    let sym = mapped(&mut sym);
    assert_eq!(sym[0], sym[1]);
    assert_ne!(sym[1].port(), sym[2].port(), "symmetric: flushed, new port");
    let apdf = mapped(&mut apdf);
    assert_eq!(apdf[1], apdf[2], "port-restricted: flushed, port kept");
    let moved = mapped(&mut moved);
    assert_eq!(*moved[1].ip(), old_ip);
    assert_eq!(
        moved[2],
        SocketAddrV4::new(new_ip, moved[1].port()),
        "new public address, same port"
    );

    // The full-cone router's rules now name the new address: a stranger reaches the mapping.
    let site = &w.sites[3];
    let mut listener = w.lab.probe(site.host(), "open", ["open", &r0, "3"]);
    let line = listener.expect_line(Stream::Stdout, LIMIT, |l| l.starts_with("MAPPED"));
    let mapping = lab::ProbeLine::parse(&line).addr("addr");
    assert_eq!(*mapping.ip(), new_ip3);
    probe_run(
        &w.lab,
        &w.srv,
        "third",
        &["send", &mapping.to_string(), "HELLO", "--wait", "0.2"],
        LIMIT,
    );
    let recv = listener.expect_line(Stream::Stdout, LIMIT, |l| l.starts_with("RECV"));
    assert_eq!(*lab::ProbeLine::parse(&recv).addr("from").ip(), THIRD_HOST);
}

/// lab.md §1h: 30 % loss on the router (each way) loses about half of 200 request/response
/// pairs; removing it loses none.
#[test]
fn loss_on_a_router() {
    let Some(w) = world(&[(Profile::PortRestrictedCone, false, 1)]) else {
        return;
    };
    let site = &w.sites[0];
    let send = |name: &str| -> u32 {
        let lines = probe_run(
            &w.lab,
            site.host(),
            name,
            &[
                "send",
                &REFLECTORS[0].to_string(),
                "MAP",
                "--count",
                "200",
                "--interval",
                "0.004",
                "--wait",
                "0.5",
            ],
            LIMIT,
        );
        with_word(&lines, "SENT")[0]
            .get("replies")
            .and_then(|r| r.parse().ok())
            .expect("a count of replies")
    };
    w.lab.set_loss(&site.router, 30);
    let lossy = send("lossy");
    // 200 × 0.49 = 98 expected; 60 and 140 are more than 5 standard deviations (7.1) away.
    assert!(
        (60..=140).contains(&lossy),
        "30 % each way: {lossy} of 200 answered"
    );
    w.lab.set_loss(&site.router, 0);
    let clean = send("clean");
    assert_eq!(clean, 200, "no loss configured: every request answered");
}

/// lab.md P1: a peer whose packet reaches a port-restricted NAT before the host has sent to it
/// leaves an unreplied conntrack entry; the host's first packet to that peer then clashes and
/// plain Linux masquerade gives it another port (endpoint-dependent toward peers that knocked
/// first). The profile's `input … ct state new drop` rule drops the knock before conntrack
/// confirms it, so the port is kept; without the rule the port changes.
#[test]
fn early_knock_keeps_the_mapping_only_with_the_input_rule() {
    let Some(mut w) = world(&[
        (Profile::PortRestrictedCone, false, 1),
        (Profile::PortRestrictedCone, false, 1),
    ]) else {
        return;
    };
    // The second site is real-world Linux: no input rule.
    let router = &w.sites[1].router;
    let out = w.lab.run(
        router,
        "nft",
        "nft",
        ["flush", "chain", "ip", lab::NAT_TABLE, "input"],
        LIMIT,
    );
    assert!(out.success(), "{out:?}");
    const LOCAL_PORT: u16 = 40001;
    let peer = REFLECTORS[1];
    let mut ports = Vec::new();
    for site in &w.sites {
        // The peer knocks on public:40001 first (asked by the STUN host, which is not the peer).
        let target = SocketAddrV4::new(site.public_ip, LOCAL_PORT);
        probe_run(
            &w.lab,
            &w.srv,
            "ask-knock",
            &[
                "send",
                &peer.to_string(),
                &format!("KNOCK {target}"),
                "--wait",
                "0.2",
            ],
            LIMIT,
        );
        let knocked = format!("to={target}");
        w.reflector.expect_line(Stream::Stdout, LIMIT, |l| {
            l.starts_with("KNOCKED") && l.contains(&knocked)
        });
        // The knock has crossed the internet bridge to the router by now or never will.
        std::thread::sleep(Duration::from_millis(50));
        let lines = probe_run(
            &w.lab,
            site.host(),
            "map",
            &["map", &peer.to_string(), "--lport", &LOCAL_PORT.to_string()],
            LIMIT,
        );
        ports.push(with_word(&lines, "MAPPED")[0].addr("addr").port());
    }
    println!(
        "local port {LOCAL_PORT} after an early knock: with the input rule {}, without {}",
        ports[0], ports[1]
    );
    assert_eq!(ports[0], LOCAL_PORT, "with the input rule the port is kept");
    assert_ne!(
        ports[1], LOCAL_PORT,
        "without it Linux masquerade picks another port (lab.md P1)"
    );
}
