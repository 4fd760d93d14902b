//! Netcheck inside the simulation reports exactly what each NAT profile is configured to do.
//!
//! Table-driven: for every [`Profile`], with hairpinning off and on, over several seeds and two
//! jitter settings, the core prober's report must give the profile's mapping, filtering,
//! hairpinning and public address. The table is checked against the profile's router chain too,
//! so it cannot drift from `profile.rs`.

use std::net::{IpAddr, SocketAddr};

use holepunch_core::netcheck::{Behaviour, PortmapAvailability};
use holepunch_core::time::Duration;
use holepunch_tests::sim::nat::{Filtering, Kind, Mapping};
use holepunch_tests::sim::netcheck::{MAPPING_PORT, NetcheckScenario, SITE_PUBLIC, run_netcheck};
use holepunch_tests::sim::profile::Profile;

use Behaviour::{AddressAndPortDependent as Apd, EndpointIndependent as Ei, Unknown};

const SEEDS: [u64; 6] = [1, 2, 3, 7, 42, 0x00de_cafb_ad00];
const JITTERS_MS: [u64; 2] = [2, 40];

/// What netcheck must find behind a profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Expected {
    udp: bool,
    mapping: Behaviour,
    filtering: Behaviour,
    /// The host sits on its public address, so the report's public address is its socket.
    public_host: bool,
    /// Whether the prober's hairpin probe can see the router's hairpinning knob (see
    /// [`hairpin_visible`]).
    hairpin_visible: bool,
}

/// The table: `cli.md`'s profile definitions.
fn expected(profile: Profile) -> Expected {
    let row = |udp, mapping, filtering, public_host| Expected {
        udp,
        mapping,
        filtering,
        public_host,
        hairpin_visible: hairpin_visible(profile),
    };
    match profile {
        Profile::Open => row(true, Ei, Ei, true),
        Profile::FullCone => row(true, Ei, Ei, false),
        Profile::RestrictedCone => row(true, Ei, Behaviour::AddressDependent, false),
        Profile::PortRestrictedCone => row(true, Ei, Apd, false),
        Profile::SymmetricSequential | Profile::SymmetricRandom => row(true, Apd, Apd, false),
        Profile::Cgnat => row(true, Ei, Apd, false),
        Profile::Firewall => row(true, Ei, Apd, true),
        Profile::UdpBlocked => row(false, Unknown, Unknown, true),
    }
}

/// Whether a router's hairpinning shows in the report.
///
/// netcheck probes hairpinning both ways (each socket sends to the other's public address), so
/// behind an endpoint-independent mapping the knob shows whatever the filtering. A symmetric NAT
/// gives each probe a fresh mapping that the other side never contacted, so when it filters
/// hairpinned datagrams no single host can see the knob. A host on its own public address
/// (open, firewall) reaches itself without any router: always hairpinning.
fn hairpin_visible(profile: Profile) -> bool {
    !matches!(
        profile,
        Profile::SymmetricSequential | Profile::SymmetricRandom
    )
}

/// How far a behaviour is from endpoint-independent (the harder router of a chain wins).
fn rank(b: Behaviour) -> u8 {
    match b {
        Ei => 0,
        Behaviour::AddressDependent => 1,
        Apd => 2,
        _ => 3,
    }
}

#[test]
fn table_matches_the_profiles_configuration() {
    for profile in Profile::ALL {
        let chain = profile.chain(SITE_PUBLIC, 1);
        let mut udp = true;
        let (mut mapping, mut filtering) = (Ei, Ei);
        for nat in &chain {
            let (m, f) = match nat.config.kind {
                Kind::Open => (Ei, Ei),
                Kind::Firewall => (Ei, Apd),
                Kind::Nat {
                    mapping, filtering, ..
                } => (Mapping::behaviour(mapping), Filtering::behaviour(filtering)),
                Kind::UdpBlocked => {
                    udp = false;
                    (Unknown, Unknown)
                }
            };
            mapping = if rank(m) > rank(mapping) { m } else { mapping };
            filtering = if rank(f) > rank(filtering) {
                f
            } else {
                filtering
            };
            assert!(
                !nat.config.hairpin,
                "{profile}: hairpinning is off unless asked"
            );
        }
        let e = expected(profile);
        assert_eq!(
            (e.udp, e.mapping, e.filtering, e.public_host),
            (udp, mapping, filtering, profile.has_public_host()),
            "{profile}: the table disagrees with profile.rs"
        );
    }
}

#[test]
fn every_profile_reports_its_configured_behaviour() {
    let mut runs = 0;
    for profile in Profile::ALL {
        let e = expected(profile);
        for hairpin in [false, true] {
            for seed in SEEDS {
                for jitter in JITTERS_MS {
                    let mut scenario = NetcheckScenario::new(profile, seed).with_hairpin(hairpin);
                    scenario.jitter = Duration::from_millis(jitter);
                    let case = format!("{profile} hairpin={hairpin} seed={seed} jitter={jitter}ms");
                    let outcome = run_netcheck(&scenario);
                    let r = &outcome.report;
                    assert!(
                        outcome.done,
                        "{case}: still running at the limit: {outcome:?}"
                    );
                    assert_eq!(r.udp, e.udp, "{case}: {r:?}");
                    assert_eq!(r.mapping, e.mapping, "{case}: {r:?}");
                    assert_eq!(r.filtering, e.filtering, "{case}: {r:?}");
                    let seen = if e.public_host {
                        true
                    } else {
                        hairpin && e.hairpin_visible
                    };
                    let hairpinning = e.udp.then_some(seen);
                    assert_eq!(r.hairpinning, hairpinning, "{case}: {r:?}");
                    match (e.udp, e.public_host) {
                        (false, _) => assert_eq!(r.public_v4, None, "{case}"),
                        (true, true) => assert_eq!(
                            r.public_v4,
                            Some(SocketAddr::new(outcome.host, MAPPING_PORT)),
                            "{case}"
                        ),
                        (true, false) => assert_eq!(
                            r.public_v4.map(|a| a.ip()),
                            Some(IpAddr::V4(SITE_PUBLIC)),
                            "{case}"
                        ),
                    }
                    assert_eq!(r.public_v6, None, "{case}");
                    assert_eq!(r.portmap, PortmapAvailability::default(), "{case}");
                    assert_eq!(r.nat64_prefix, None, "{case}");
                    assert_eq!(r.server_rtts.len(), 1, "{case}: {r:?}");
                    assert_eq!(r.server_rtts[0].rtt.is_some(), e.udp, "{case}: {r:?}");
                    // One round trip plus the 2.2 s retransmission profile, never the 5 s cap.
                    assert!(
                        outcome.elapsed <= Duration::from_millis(2_500),
                        "{case}: took {:?}",
                        outcome.elapsed
                    );
                    runs += 1;
                }
            }
        }
    }
    assert_eq!(
        runs,
        Profile::ALL.len() * 2 * SEEDS.len() * JITTERS_MS.len()
    );
}

#[test]
fn symmetric_sequential_ports_are_observed_in_order() {
    for seed in SEEDS {
        let outcome = run_netcheck(&NetcheckScenario::new(Profile::SymmetricSequential, seed));
        let ports = &outcome.report.observed_ports;
        // Mapping socket to A, filtering socket to A, mapping socket to B:a and B:b.
        assert_eq!(ports.len(), 4, "seed {seed}: {ports:?}");
        assert!(
            ports.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
            "seed {seed}: a sequential allocator's mappings, in creation order: {ports:?}"
        );
    }
}

#[test]
fn same_seed_same_outcome() {
    for profile in Profile::ALL {
        for hairpin in [false, true] {
            let scenario = NetcheckScenario::new(profile, 99).with_hairpin(hairpin);
            assert_eq!(
                run_netcheck(&scenario),
                run_netcheck(&scenario),
                "{profile} hairpin={hairpin}"
            );
        }
    }
}
