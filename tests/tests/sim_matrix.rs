//! The NAT-pair matrix in the simulation: expected outcomes over 20 seeds per cell,
//! determinism, and speed.
#![allow(clippy::unwrap_used)] // a panic is the right failure in a test

use std::time::Instant as WallClock;

use holepunch_tests::sim::matrix::{
    Cell, expected, fmt_ms, render_grid, run_matrix, run_matrix_with,
};
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
    assert_every_cell_as_expected(&cells, "two servers");
    // The whole matrix must stay cheap enough for every CI run.
    assert!(took.as_secs() < 30, "matrix took {took:?}");
}

#[test]
fn one_rfc5780_stun_server_is_enough_for_every_cell() {
    // A user who passes one --stun: the agents learn whether their NAT maps per destination
    // from the server's OTHER-ADDRESS, so hard-NAT cells still punch (issue 15).
    let cells = run_matrix_with(1, SEEDS, |c| c.single_stun_server = true);
    println!("{}", render_grid(&cells));
    assert_every_cell_as_expected(&cells, "one server");
}

/// Every cell reached its expected path in every run, and none claimed a direct path it cannot
/// have.
fn assert_every_cell_as_expected(cells: &[Cell], what: &str) {
    for c in cells {
        assert_eq!(
            c.false_directs(),
            0,
            "{what}: {} / {} claimed direct",
            c.a,
            c.b
        );
        assert_eq!(
            c.success_rate(),
            1.0,
            "{what}: {} / {} reached {:?} in only {} of {} runs: {:?}",
            c.a,
            c.b,
            c.expected,
            c.successes(),
            c.outcomes.len(),
            c.outcomes
        );
    }
}

/// The agent as it is with a single STUN server that lacks RFC 5780 (no OTHER-ADDRESS to ask):
/// one server-reflexive observation per side.
fn agent_with_one_plain_server(controlling: bool) -> holepunch_core::ice::agent::AgentConfig {
    let mut c = holepunch_core::ice::agent::AgentConfig::aggressive(controlling);
    c.probe_other_address = false;
    c
}

#[test]
fn one_plain_stun_server_is_enough_for_every_cell() {
    // A user who passes one --stun that is not an RFC 5780 server (most public ones): neither
    // side can tell how its NAT maps, so after ordinary checks fail both punch blind (issue
    // 15). Every cell still reaches its expected path, hard-NAT cells included.
    let cells = run_matrix_with(1, SEEDS, |c| {
        c.single_stun_server = true;
        c.agent = agent_with_one_plain_server;
    });
    println!("{}", render_grid(&cells));
    assert_every_cell_as_expected(&cells, "one plain server");
}

#[test]
fn blind_punching_is_what_connects_hard_nat_cells_with_one_plain_server() {
    // symmetric-random x port-restricted, one plain server, no relay. With the blind fallback
    // the pair goes direct, and the agents said they punched blind: the hard side both halves,
    // the easy side both as well (it cannot rule out being hard). Without it, there is no path.
    for seed in 1..=5 {
        let mut config =
            PairConfig::new(Profile::SymmetricRandom, Profile::PortRestrictedCone, seed);
        config.single_stun_server = true;
        config.relay = false;
        config.agent = agent_with_one_plain_server;
        let o = run_pair(&config);
        assert_eq!(o.path, PathKind::Direct, "seed {seed}: {o:?}");
        let blind = |side: &str| {
            o.log
                .iter()
                .filter(|l| {
                    l.contains(&format!(
                        " {side} BlindPunching {{ hard: true, easy: true }}"
                    ))
                })
                .count()
        };
        assert_eq!(
            (blind("A"), blind("B")),
            (1, 1),
            "seed {seed}: {:#?}",
            o.log
        );
        // Not before the configured wait: ordinary checks get their chance first.
        let elapsed = o.elapsed.expect("connected");
        assert!(
            elapsed > holepunch_core::time::Duration::from_secs(2),
            "seed {seed}: connected after {elapsed:?}"
        );
    }
    let mut config = PairConfig::new(Profile::SymmetricRandom, Profile::PortRestrictedCone, 1);
    config.single_stun_server = true;
    config.relay = false;
    config.agent = |controlling| {
        let mut c = agent_with_one_plain_server(controlling);
        if let Some(p) = c.punch.as_mut() {
            p.blind_delay = None;
        }
        c
    };
    let o = run_pair(&config);
    assert_eq!(o.path, PathKind::None, "without the fallback: {o:?}");
    assert!(!o.log.iter().any(|l| l.contains("BlindPunching")));
}

#[test]
fn easy_pairs_never_punch_blind() {
    // Ordinary checks connect long before the blind wait: no sockets or probes are spent.
    for (a, b) in [
        (Profile::PortRestrictedCone, Profile::PortRestrictedCone),
        (Profile::FullCone, Profile::SymmetricRandom),
        (Profile::Cgnat, Profile::PortRestrictedCone),
    ] {
        let mut config = PairConfig::new(a, b, 2);
        config.single_stun_server = true;
        config.agent = agent_with_one_plain_server;
        let o = run_pair(&config);
        assert_eq!(o.path, PathKind::Direct, "{a:?} x {b:?}: {o:?}");
        assert!(
            !o.log.iter().any(|l| l.contains("BlindPunching")),
            "{a:?} x {b:?}"
        );
    }
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
            // Only the relay, reached over TCP, carries a UDP-blocked side's traffic.
            assert_ne!(o.path, PathKind::Direct, "udp-blocked / {other}");
            assert_eq!(o.path, PathKind::Relay, "udp-blocked / {other}");
            assert_eq!(expected(Profile::UdpBlocked, other), PathKind::Relay);
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
fn twenty_percent_loss_at_each_nat_still_connects_easy_pairs() {
    // 20 % at each NAT, both ways: a check's round trip crosses four lossy hops and fails 59 %
    // of the time. The aggressive profile's 22 sends make a working pair fail by chance once in
    // ~100,000 tries, and its 7 gathering sends miss a STUN server once in ~1,300.
    for (a, b) in [
        (Profile::PortRestrictedCone, Profile::PortRestrictedCone),
        (Profile::PortRestrictedCone, Profile::Cgnat),
        (Profile::FullCone, Profile::SymmetricSequential),
    ] {
        let mut ok = 0;
        for seed in 0..50 {
            let mut config = PairConfig::new(a, b, seed);
            config.loss_per_mille = 200;
            if run_pair(&config).path == PathKind::Direct {
                ok += 1;
            }
        }
        assert_eq!(
            ok, 50,
            "{a} / {b}: retransmissions should ride out 20% loss"
        );
    }
}

#[test]
fn birthday_punching_survives_twenty_percent_loss() {
    // Each probe that hits an open mapping gets through both NATs and back only 41 % of the
    // time, so the expected hits of the 2048-probe search drop from 8 to about 3: ~95 % success
    // in theory. Measured: 100 of 100 seeds (98, then 99, in earlier versions; the misses were
    // true birthday misses, or a STUN answer lost during gathering so the hard side looked
    // easy: the 7 gathering sends and, since, the blind fallback cover that case).
    let (mut ok, mut blind) = (0, 0);
    for seed in 0..100 {
        let mut config =
            PairConfig::new(Profile::SymmetricRandom, Profile::PortRestrictedCone, seed);
        config.loss_per_mille = 200;
        // Punching alone: with the relay, a miss would end on the relay instead (counted below).
        config.relay = false;
        let o = run_pair(&config);
        if o.path == PathKind::Direct {
            ok += 1;
            if o.log.iter().any(|l| l.contains("BlindPunching")) {
                blind += 1;
            }
        }
    }
    println!("birthday under 20% loss: {ok} of 100 direct, {blind} of them by blind punching");
    // The simulation is deterministic: the README quotes these figures, so they are pinned
    // exactly (a change in either direction is a behaviour change to look at and re-quote).
    assert_eq!((ok, blind), (100, 1), "birthday punching under 20% loss");
}

#[test]
fn late_signalling_on_one_side_still_connects() {
    // B learns A's candidates at once and starts checking; A hears of B's only 15 s later (a
    // signalling connection stalled on loss). B's checks must still be running when A's arrive.
    for (a, b) in [
        (Profile::PortRestrictedCone, Profile::PortRestrictedCone),
        (Profile::Cgnat, Profile::RestrictedCone),
    ] {
        for seed in 0..5 {
            let mut config = PairConfig::new(a, b, seed);
            config.signal_stall_to_a = holepunch_core::time::Duration::from_secs(15);
            let o = run_pair(&config);
            assert_eq!(
                o.path,
                PathKind::Direct,
                "{a} / {b} seed {seed}: {:?}",
                o.log.last()
            );
        }
    }
}

/// The aggressive profile with checks that give up after three sends (0.7 s).
fn impatient_checks(controlling: bool) -> holepunch_core::ice::agent::AgentConfig {
    let mut config = holepunch_core::ice::agent::AgentConfig::aggressive(controlling);
    config.check_max_sends = 3;
    config
}

#[test]
fn failure_waits_for_punching_to_finish() {
    // Ordinary checks against a symmetric-random NAT fail long before a birthday search ends;
    // `Failed` must wait for the search, or the hard cells would lose most of their runs.
    for seed in 0..20 {
        let mut config =
            PairConfig::new(Profile::SymmetricRandom, Profile::PortRestrictedCone, seed);
        config.agent = impatient_checks;
        let o = run_pair(&config);
        assert_eq!(o.path, PathKind::Direct, "seed {seed}: {:?}", o.log.last());
    }
    // Where no punching applies, failure is still prompt: both sides symmetric, no relay.
    let mut config = PairConfig::new(Profile::SymmetricRandom, Profile::SymmetricRandom, 1);
    config.agent = impatient_checks;
    config.relay = false;
    let o = run_pair(&config);
    assert_eq!(o.path, PathKind::None);
    let failed_at = o
        .log
        .iter()
        .find(|l| l.contains("Failed"))
        .and_then(|l| l.split('s').next())
        .and_then(|t| t.parse::<f64>().ok())
        .expect("a Failed event with its time");
    assert!(failed_at < 5.0, "failed only at {failed_at} s");
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

#[test]
fn a_relay_carries_the_data_until_punching_finds_the_direct_path() {
    // With the relay hold shortened to 0.5 s, port-restricted x symmetric-random pairs whose
    // birthday search takes longer start on the relay; punching goes on there, and every run
    // must end direct (the relay is the fallback, not where a pair stays: tailscale#3624).
    let mut upgraded = 0;
    for seed in 1..=20 {
        let mut config =
            PairConfig::new(Profile::PortRestrictedCone, Profile::SymmetricRandom, seed);
        config.agent = |controlling| {
            let mut c = holepunch_core::ice::agent::AgentConfig::aggressive(controlling);
            c.relay_hold = holepunch_core::time::Duration::from_millis(500);
            c
        };
        let o = run_pair(&config);
        assert_eq!(o.path, PathKind::Direct, "seed {seed}: {:?}", o.log.last());
        let on_relay = o
            .log
            .iter()
            .any(|l| l.contains("Connected") && l.contains("relayed: true"));
        let moved = o
            .log
            .iter()
            .any(|l| l.contains("PathChanged") && l.contains("relayed: false"));
        if on_relay && moved {
            upgraded += 1;
        }
    }
    println!("{upgraded} of 20 runs started on the relay and moved to the direct path");
    assert!(upgraded > 0, "no run exercised the relay-to-direct upgrade");
}

#[test]
fn without_a_relay_symmetric_pairs_have_no_path() {
    // The control for the matrix's relay cells: the same pair with no relay fails.
    let mut config = PairConfig::new(Profile::SymmetricRandom, Profile::SymmetricSequential, 1);
    config.relay = false;
    assert_eq!(run_pair(&config).path, PathKind::None);
    config.relay = true;
    assert_eq!(run_pair(&config).path, PathKind::Relay);
}

#[test]
fn a_gateway_that_maps_makes_every_symmetric_cell_direct() {
    // Issue 11: with a port-mapping gateway on one side (a port-mapped candidate backed by an
    // endpoint-independent mapping), every seed of each symmetric x symmetric cell goes direct;
    // without it, the same runs need the relay.
    let hard = [Profile::SymmetricRandom, Profile::SymmetricSequential];
    for a in hard {
        for b in hard {
            for seed in 1..=SEEDS {
                for mapped in [[true, false], [false, true]] {
                    let mut config = PairConfig::new(a, b, seed);
                    config.port_mapped = mapped;
                    let o = run_pair(&config);
                    assert_eq!(o.path, PathKind::Direct, "{a} / {b} seed {seed} {mapped:?}");
                }
                let o = run_pair(&PairConfig::new(a, b, seed));
                assert_eq!(o.path, PathKind::Relay, "{a} / {b} seed {seed} unmapped");
            }
        }
    }
}
