//! The NAT-pair matrix in the simulation: expected outcomes over 20 seeds per cell,
//! determinism, and speed.
#![allow(clippy::unwrap_used)] // a panic is the right failure in a test

use std::time::Instant as WallClock;

use holepunch_tests::sim::matrix::{expected, fmt_ms, render_grid, run_matrix};
use holepunch_tests::sim::pair::{PairConfig, PathKind, run_pair};
use holepunch_tests::sim::profile::Profile;

const SEEDS: u64 = 20;

#[test]
fn every_pair_reaches_its_expected_path_over_twenty_seeds() {
    let wall = WallClock::now();
    let cells = run_matrix(1, SEEDS);
    let took = wall.elapsed();
    println!("{}", render_grid(&cells));
    println!(
        "{:22} {:22} {:7} {:>8} {:>8} {:>8}",
        "A", "B", "expect", "success", "median", "p95"
    );
    for c in &cells {
        let ms = |q| c.quantile(q).map_or("-".into(), fmt_ms);
        println!(
            "{:22} {:22} {:7} {:>7.0}% {:>8} {:>8}",
            c.a.name(),
            c.b.name(),
            c.expected.name(),
            c.success_rate() * 100.0,
            ms(0.5),
            ms(0.95)
        );
    }
    println!(
        "matrix of {} runs took {took:?} of wall time",
        cells.len() as u64 * SEEDS
    );
    for c in &cells {
        assert_eq!(c.false_directs(), 0, "{} / {} claimed direct", c.a, c.b);
        assert_eq!(
            c.success_rate(),
            1.0,
            "{} / {} reached {:?} in only {} of {} runs: {:?}",
            c.a,
            c.b,
            c.expected,
            c.successes(),
            c.outcomes.len(),
            c.outcomes
        );
    }
    // The whole matrix must stay cheap enough for every CI run.
    assert!(took.as_secs() < 30, "matrix took {took:?}");
}

#[test]
fn hard_nat_cells_are_punched_not_lucky() {
    // Against a port-restricted peer, a symmetric-random side only gets through by birthday
    // probing and a symmetric-sequential one by prediction; both take longer than the easy
    // pairs, which is what proves the punching ran.
    let easy = run_pair(&PairConfig::new(
        Profile::PortRestrictedCone,
        Profile::PortRestrictedCone,
        3,
    ));
    let random = run_pair(&PairConfig::new(
        Profile::SymmetricRandom,
        Profile::PortRestrictedCone,
        3,
    ));
    let seq = run_pair(&PairConfig::new(
        Profile::PortRestrictedCone,
        Profile::SymmetricSequential,
        3,
    ));
    for o in [&easy, &random, &seq] {
        assert_eq!(o.path, PathKind::Direct);
    }
    assert!(random.elapsed.unwrap() > easy.elapsed.unwrap());
    assert!(seq.elapsed.unwrap() > easy.elapsed.unwrap());
}

#[test]
fn udp_blocked_never_claims_direct_even_with_loss_and_jitter() {
    for seed in 0..5 {
        for other in Profile::ALL {
            let mut config = PairConfig::new(Profile::UdpBlocked, other, seed);
            config.loss_per_mille = 100;
            let o = run_pair(&config);
            assert_eq!(o.path, PathKind::None, "udp-blocked / {other}");
            assert_eq!(expected(Profile::UdpBlocked, other), PathKind::None);
        }
    }
}

#[test]
fn same_seed_gives_byte_identical_event_logs() {
    for (a, b) in [
        (Profile::SymmetricRandom, Profile::Cgnat),
        (Profile::FullCone, Profile::PortRestrictedCone),
        (Profile::SymmetricSequential, Profile::Firewall),
    ] {
        let mut config = PairConfig::new(a, b, 42);
        config.loss_per_mille = 50;
        let first = run_pair(&config);
        let second = run_pair(&config);
        assert_eq!(first.log.join("\n"), second.log.join("\n"), "{a} / {b}");
        config.seed = 43;
        let other = run_pair(&config);
        assert_ne!(
            first.log, other.log,
            "a different seed should change something"
        );
    }
}

#[test]
fn ten_percent_loss_still_connects_easy_pairs() {
    let mut ok = 0;
    for seed in 0..20 {
        let mut config = PairConfig::new(Profile::PortRestrictedCone, Profile::Cgnat, seed);
        config.loss_per_mille = 100;
        if run_pair(&config).path == PathKind::Direct {
            ok += 1;
        }
    }
    assert_eq!(ok, 20, "retransmissions should ride out 10% loss");
}

#[test]
fn rfc_profile_reaches_the_same_outcomes() {
    // Ta 50 ms, RTO 500 ms, regular nomination: slower, but every pair must end the same way,
    // and the stall detector in run_pair proves no timer spins in this profile either.
    for a in Profile::ALL {
        for b in Profile::ALL {
            for seed in 1..=3 {
                let mut config = PairConfig::new(a, b, seed);
                config.agent = holepunch_core::ice::agent::AgentConfig::rfc;
                config.time_limit = holepunch_core::time::Duration::from_secs(60);
                let o = run_pair(&config);
                assert_eq!(
                    o.path,
                    expected(a, b),
                    "{a} / {b} seed {seed}: {:?}",
                    o.elapsed
                );
            }
        }
    }
}
