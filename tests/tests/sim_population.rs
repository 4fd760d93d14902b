//! The population mode of the simulator (issue 16): what the mix decides, checked against
//! the NAT-pair matrix's expectations.

use holepunch_tests::sim::matrix::expected;
use holepunch_tests::sim::pair::PathKind;
use holepunch_tests::sim::population::{
    Mix, PopulationConfig, PopulationReport, Techniques, index, run_population,
};
use holepunch_tests::sim::profile::Profile;

fn run(peers: usize, connections: usize, mix: Mix, seed: u64) -> PopulationReport {
    let config = PopulationConfig {
        peers,
        connections,
        relays: 3,
        seed,
        mix,
        threads: 0,
        techniques: Techniques::default(),
    };
    run_population(&config, &|_, _| {}).expect("a valid population")
}

#[test]
fn without_symmetric_or_blocked_peers_every_connection_is_direct() {
    let easy = [
        Profile::Open,
        Profile::FullCone,
        Profile::RestrictedCone,
        Profile::PortRestrictedCone,
        Profile::Cgnat,
        Profile::Firewall,
    ];
    let shares: Vec<_> = easy.iter().map(|&p| (p, 1.0 / 6.0)).collect();
    // Port mapping and IPv6 on some peers must not change that.
    let mix = Mix::new(&shares, 0.5, 0.3).expect("valid");
    let report = run(200, 3, mix, 1);
    assert_eq!(report.connections, 600);
    assert_eq!(report.direct, 600, "{report:?}");
    assert_eq!(report.shares(), [1.0, 0.0, 0.0]);
    assert!(report.peers_mapped > 0 && report.peers_ipv6 > 0);
}

#[test]
fn only_symmetric_random_without_mapping_is_all_relayed() {
    let report = run(60, 2, Mix::only(Profile::SymmetricRandom), 2);
    assert_eq!(report.relayed, 120, "{report:?}");
    let relayed: u64 = report.relays.iter().map(|r| r.relayed_connections).sum();
    // Each relayed connection crossed its controlling peer's relay, its controlled peer's, or
    // both (peers near different relays).
    assert!((120..=240).contains(&relayed), "{relayed}");
    assert!(report.relayed_bytes() > 0);
    assert!(report.relayed_bytes() < report.delivered_bytes);
    // Every peer allocated once per connection it took part in, on its own relay.
    let allocations: u64 = report.relays.iter().map(|r| r.allocations).sum();
    assert_eq!(allocations, 240);
}

#[test]
fn port_mapping_lets_symmetric_peers_go_direct() {
    let mix = Mix::new(&[(Profile::SymmetricRandom, 1.0)], 0.5, 0.0).expect("valid");
    let report = run(60, 2, mix, 3);
    assert!(report.peers_mapped > 0 && report.peers_mapped < 60);
    // One mapped side is enough; both unmapped goes through a relay.
    assert!(report.direct > 0 && report.relayed > 0, "{report:?}");
    assert_eq!(report.unexpected, 0, "{report:?}");
}

#[test]
fn the_population_agrees_with_the_matrix_cell_by_cell() {
    let report = run(400, 3, Mix::uniform(), 4);
    assert_eq!(report.unexpected, 0);
    for &a in &Profile::ALL {
        for &b in &Profile::ALL {
            let cell = report.by_profiles[index(a)][index(b)];
            let want = match expected(a, b) {
                PathKind::Direct => 0,
                PathKind::Relay => 1,
                PathKind::None => 2,
            };
            let total: u64 = cell.iter().sum();
            assert!(total > 0, "{a} / {b} never drawn: raise N");
            assert_eq!(cell[want], total, "{a} / {b}: {cell:?}");
        }
    }
}

#[test]
fn same_seed_same_report_and_shares_sum_to_one() {
    let mix = Mix::new(
        &[
            (Profile::PortRestrictedCone, 0.5),
            (Profile::SymmetricRandom, 0.3),
            (Profile::UdpBlocked, 0.2),
        ],
        0.3,
        0.3,
    )
    .expect("valid");
    let a = run(100, 3, mix.clone(), 5);
    assert_eq!(a, run(100, 3, mix.clone(), 5));
    assert_ne!(a, run(100, 3, mix, 6));
    let shares = a.shares();
    assert!((shares.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    assert!(shares.iter().all(|s| (0.0..=1.0).contains(s)));
    assert!(a.relayed > 0 && a.direct > 0);
    // UDP-blocked peers reach their relay over TCP.
    assert_eq!(a.failed, 0);
    assert_eq!(a.unexpected, 0);
}

#[test]
fn without_punching_symmetric_peers_need_the_relay_against_port_restricted_ones_and_plain_stun_punches_blind()
 {
    let mix = Mix::new(
        &[
            (Profile::SymmetricRandom, 0.5),
            (Profile::PortRestrictedCone, 0.5),
        ],
        0.0,
        0.0,
    )
    .expect("valid");
    let with = |techniques| {
        let config = PopulationConfig {
            peers: 40,
            connections: 2,
            relays: 2,
            seed: 8,
            mix: mix.clone(),
            threads: 0,
            techniques,
        };
        run_population(&config, &|_, _| {}).expect("runs")
    };
    let all = with(Techniques::default());
    assert_eq!(
        all.relayed, all.by_profiles[5][5][1],
        "only sym x sym relayed"
    );
    let (sym, portr) = (
        index(Profile::SymmetricRandom),
        index(Profile::PortRestrictedCone),
    );
    let less = with(Techniques {
        punching: false,
        mapping_detection: true,
    });
    let mixed = [less.by_profiles[sym][portr], less.by_profiles[portr][sym]];
    assert!(
        mixed.iter().all(|c| c[0] == 0 && c[1] > 0),
        "no punching: {mixed:?}"
    );
    assert!(less.relayed > all.relayed);
    // One plain STUN address: nobody can tell the symmetric side is hard, so the agents punch
    // blind once checks have failed, and those cells still go direct.
    let plain = with(Techniques {
        punching: true,
        mapping_detection: false,
    });
    let mixed = [plain.by_profiles[sym][portr], plain.by_profiles[portr][sym]];
    assert!(
        mixed.iter().all(|c| c[0] > 0)
            && mixed.iter().map(|c| c[0]).sum::<u64>() > mixed.iter().map(|c| c[1]).sum::<u64>(),
        "plain STUN, blind punching: {mixed:?}"
    );
}
