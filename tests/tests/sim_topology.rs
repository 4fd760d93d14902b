//! Simulation: the two coverage gaps of issue 17 that the lab also runs (`lab_faults`), with
//! sites as trees. Two peers on one LAN behind a NAT that does not hairpin go direct over their
//! host candidates; two homes under one carrier NAT go direct through its hairpin when it has
//! one, and through the relay when it has not.

use std::net::IpAddr;

use holepunch_tests::sim::pair::{
    CARRIER_PUBLIC, PairConfig, PairOutcome, PathKind, Topology, run_pair,
};
use holepunch_tests::sim::profile::Profile;

const SEEDS: u64 = 5;

fn run(a: Profile, b: Profile, seed: u64, topology: Topology, relay: bool) -> PairOutcome {
    let mut config = PairConfig::new(a, b, seed);
    config.topology = topology;
    config.relay = relay;
    run_pair(&config)
}

/// The peer address A's selected path sends to.
fn a_remote_ip(o: &PairOutcome) -> IpAddr {
    o.selected[0].expect("a path").remote.ip()
}

#[test]
fn same_lan_without_hairpin_connects_over_host_candidates() {
    // Even behind a symmetric NAT: the path never leaves the LAN.
    for profile in [
        Profile::PortRestrictedCone,
        Profile::SymmetricRandom,
        Profile::Cgnat,
    ] {
        for seed in 0..SEEDS {
            let o = run(profile, profile, seed, Topology::SameLan, false);
            assert_eq!(o.path, PathKind::Direct, "{profile} seed {seed}: {o:?}");
            assert_eq!(
                a_remote_ip(&o),
                "192.168.1.3".parse::<IpAddr>().expect("ip"),
                "{profile} seed {seed}: not over the LAN"
            );
        }
    }
}

#[test]
fn same_carrier_nat_with_hairpinning_connects_directly() {
    for seed in 0..SEEDS {
        let o = run(
            Profile::PortRestrictedCone,
            Profile::PortRestrictedCone,
            seed,
            Topology::SameCarrier { hairpin: true },
            false,
        );
        assert_eq!(o.path, PathKind::Direct, "seed {seed}: {o:?}");
        // Through the carrier's public address, turned around by its hairpin.
        assert_eq!(a_remote_ip(&o), IpAddr::V4(CARRIER_PUBLIC), "seed {seed}");
    }
}

#[test]
fn same_carrier_nat_without_hairpinning_goes_through_the_relay() {
    for seed in 0..SEEDS {
        let topology = Topology::SameCarrier { hairpin: false };
        let (a, b) = (Profile::PortRestrictedCone, Profile::PortRestrictedCone);
        let o = run(a, b, seed, topology, true);
        assert_eq!(o.path, PathKind::Relay, "seed {seed}: {o:?}");
        // The control: without the relay there is no path at all.
        let o = run(a, b, seed, topology, false);
        assert_eq!(o.path, PathKind::None, "seed {seed}: {o:?}");
    }
}
