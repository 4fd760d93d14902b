//! Dual-stack sites in the simulation: IPv6 host candidates next to the IPv4 ones, IPv6 behind
//! a stateful firewall (no NAT), and the IPv4-only defaults left exactly as they were.
#![allow(clippy::unwrap_used)] // a panic is the right failure in a test

use std::net::SocketAddr;
use std::time::Instant as WallClock;

use holepunch_core::ice::candidate::CandidateKind;
use holepunch_tests::sim::matrix::expected;
use holepunch_tests::sim::netcheck::{NetcheckScenario, run_netcheck};
use holepunch_tests::sim::pair::{
    DualStack, PairConfig, PairOutcome, PathKind, host_v6, lan_host, run_pair,
};
use holepunch_tests::sim::profile::{Profile, V6Policy};

const SEEDS: std::ops::Range<u64> = 1..11;

fn both_selected(o: &PairOutcome) -> [holepunch_core::ice::agent::PathInfo; 2] {
    o.selected.map(|p| p.expect("both sides selected a path"))
}

/// Runs `config` and checks it stayed well within the per-test wall-clock budget.
fn run(config: &PairConfig) -> PairOutcome {
    let wall = WallClock::now();
    let o = run_pair(config);
    assert!(
        wall.elapsed().as_millis() < 200,
        "one run took {:?}",
        wall.elapsed()
    );
    o
}

#[test]
fn symmetric_pair_without_an_ipv4_path_connects_over_ipv6_firewalls() {
    let (a, b) = (Profile::SymmetricRandom, Profile::SymmetricRandom);
    // Over IPv4 alone there is no direct path (both mappings endpoint-dependent: the matrix
    // sends it through the relay, which these runs leave out)...
    assert_eq!(expected(a, b), PathKind::Relay);
    let no_relay = |seed| PairConfig::new(a, b, seed).without_relay();
    assert_eq!(run(&no_relay(1)).path, PathKind::None);
    // ...but with IPv6 behind a stateful firewall on each side, each side's checks open its
    // own pinhole for the other's, and the retransmitted checks then get through.
    for seed in SEEDS {
        let config = no_relay(seed).with_ipv6(DualStack::both(V6Policy::Firewall));
        let o = run(&config);
        assert_eq!(o.path, PathKind::Direct, "seed {seed}: {:?}", o.log.last());
        let [pa, pb] = both_selected(&o);
        assert!(pa.local.is_ipv6() && pb.local.is_ipv6(), "seed {seed}");
        assert_eq!(pa.local, SocketAddr::new(host_v6(false).into(), 5000));
        assert_eq!(pa.remote, SocketAddr::new(host_v6(true).into(), 6000));
        assert_eq!((pb.local, pb.remote), (pa.remote, pa.local));
    }
    // The RFC agent profile (regular nomination, slower pacing) gets there too.
    let mut config = no_relay(1).with_ipv6(DualStack::both(V6Policy::Firewall));
    config.agent = holepunch_core::ice::agent::AgentConfig::rfc;
    let o = run(&config);
    assert_eq!(o.path, PathKind::Direct);
    assert!(both_selected(&o).iter().all(|p| p.local.is_ipv6()));
}

#[test]
fn ipv6_blocked_on_one_side_leaves_no_path() {
    for (va, vb) in [
        (V6Policy::Firewall, V6Policy::Blocked),
        (V6Policy::Blocked, V6Policy::Firewall),
        (V6Policy::Blocked, V6Policy::Blocked),
    ] {
        for seed in SEEDS {
            let config = PairConfig::new(Profile::SymmetricRandom, Profile::SymmetricRandom, seed)
                .without_relay()
                .with_ipv6(DualStack::sides(va, vb));
            let o = run(&config);
            assert_eq!(o.path, PathKind::None, "{va} / {vb} seed {seed}");
            assert_eq!(o.selected, [None, None], "{va} / {vb} seed {seed}");
        }
    }
    // A side without any IPv6 address is the same as a blocked one.
    let config = PairConfig::new(Profile::SymmetricRandom, Profile::SymmetricRandom, 1)
        .without_relay()
        .with_ipv6(DualStack {
            a: Some(V6Policy::Open),
            b: None,
        });
    assert_eq!(run(&config).path, PathKind::None);
}

#[test]
fn dual_stack_cones_pick_the_ipv6_host_pair() {
    let (a, b) = (Profile::PortRestrictedCone, Profile::PortRestrictedCone);
    let srflx_v4 = |seed| {
        let o = run(&PairConfig::new(a, b, seed));
        assert_eq!(o.path, PathKind::Direct);
        both_selected(&o)
    };
    for seed in SEEDS {
        let o = run(&PairConfig::new(a, b, seed).with_ipv6(DualStack::both(V6Policy::Firewall)));
        assert_eq!(o.path, PathKind::Direct, "seed {seed}");
        for (i, p) in both_selected(&o).into_iter().enumerate() {
            // Either candidate path would do: the IPv6 host pair or IPv4 through the NATs...
            let v6_host = p.local.is_ipv6()
                && p.local_kind == CandidateKind::Host
                && p.remote_kind == CandidateKind::Host;
            let v4_reflexive = p.local.is_ipv4()
                && p.local.ip() == lan_host(i == 1)
                && matches!(
                    p.remote_kind,
                    CandidateKind::ServerReflexive | CandidateKind::PeerReflexive
                );
            assert!(v6_host || v4_reflexive, "seed {seed} side {i}: {p:?}");
            // ...but a host pair outranks any pair with a server-reflexive candidate (type
            // preference 126 against 100), and it is checked first too.
            assert!(v6_host, "seed {seed} side {i}: {p:?}");
        }
        // The IPv4-only run of the same seed took the reflexive path, for comparison.
        let [pa, _] = srflx_v4(seed);
        assert!(pa.local.is_ipv4() && pa.remote_kind != CandidateKind::Host);
    }
}

#[test]
fn ipv6_firewalls_connect_every_profile_pair() {
    // IPv6 does not go through the IPv4 NAT chain at all, so even udp-blocked (which blocks
    // the IPv4 uplink) and symmetric pairs connect when both sides have an IPv6 firewall.
    let wall = WallClock::now();
    for a in Profile::ALL {
        for b in Profile::ALL {
            let config = PairConfig::new(a, b, 5).with_ipv6(DualStack::both(V6Policy::Firewall));
            let o = run_pair(&config);
            assert_eq!(o.path, PathKind::Direct, "{a} / {b}");
            if expected(a, b) == PathKind::None {
                let [pa, pb] = both_selected(&o);
                assert!(pa.local.is_ipv6() && pb.local.is_ipv6(), "{a} / {b}");
            }
        }
    }
    assert!(wall.elapsed().as_secs() < 2, "took {:?}", wall.elapsed());
}

#[test]
fn same_seed_gives_byte_identical_logs_with_ipv6() {
    for (a, b, v6) in [
        (
            Profile::SymmetricRandom,
            Profile::SymmetricRandom,
            DualStack::both(V6Policy::Firewall),
        ),
        (
            Profile::PortRestrictedCone,
            Profile::Cgnat,
            DualStack::sides(V6Policy::Open, V6Policy::Firewall),
        ),
        (
            Profile::SymmetricSequential,
            Profile::Firewall,
            DualStack::sides(V6Policy::Blocked, V6Policy::Firewall),
        ),
    ] {
        let mut config = PairConfig::new(a, b, 42).with_ipv6(v6);
        config.loss_per_mille = 50;
        let first = run(&config);
        let second = run(&config);
        assert_eq!(first.log.join("\n"), second.log.join("\n"), "{a} / {b}");
        assert_eq!(first.dropped, second.dropped);
        assert!(
            first.log.iter().any(|l| l.contains("2001:db8:")),
            "{a} / {b}: no IPv6 candidate in the log"
        );
        config.seed = 43;
        assert_ne!(first.log, run(&config).log, "{a} / {b}: seed ignored");
    }
}

#[test]
fn ipv6_off_is_the_ipv4_only_run() {
    // `ipv6: None` is the default, and a dual-stack config on neither side changes nothing.
    for (a, b) in [
        (Profile::SymmetricRandom, Profile::Cgnat),
        (Profile::FullCone, Profile::PortRestrictedCone),
    ] {
        let plain = PairConfig::new(a, b, 9);
        assert!(plain.ipv6.is_none());
        let none = plain.clone().with_ipv6(DualStack { a: None, b: None });
        let (x, y) = (run(&plain), run(&none));
        assert_eq!(x.log, y.log, "{a} / {b}");
        assert!(!x.log.iter().any(|l| l.contains("2001:db8:")));
    }
}

#[test]
fn netcheck_is_unaffected_by_a_dual_stack_site() {
    for profile in Profile::ALL {
        for hairpin in [false, true] {
            for seed in [1, 42] {
                let v4 = NetcheckScenario::new(profile, seed).with_hairpin(hairpin);
                let baseline = run_netcheck(&v4);
                for policy in V6Policy::ALL {
                    let dual = run_netcheck(&v4.clone().with_ipv6(policy));
                    assert_eq!(dual, baseline, "{profile} hairpin {hairpin} ipv6 {policy}");
                }
            }
        }
    }
}

#[test]
fn policy_names_round_trip() {
    for p in V6Policy::ALL {
        assert_eq!(p.name().parse::<V6Policy>(), Ok(p));
        assert_eq!(p.to_string(), p.name());
    }
    assert!("nat66".parse::<V6Policy>().is_err());
}
