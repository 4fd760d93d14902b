//! An IPv6-only host behind a stateful NAT64 (RFC 6146) and IPv4-only peers, in the
//! simulation: the agent is told the translator's prefix (as a driver does after RFC 7050
//! discovery), reaches the IPv4 STUN servers and the relay at their synthesised addresses,
//! and pairs its IPv6 host candidate with the IPv6 twins of the peer's IPv4 candidates.
#![allow(clippy::unwrap_used)] // a panic is the right failure in a test

use std::net::{IpAddr, SocketAddr};

use holepunch_core::ice::candidate::CandidateKind;
use holepunch_core::nat64::Nat64Prefix;
use holepunch_tests::sim::nat::Filtering;
use holepunch_tests::sim::pair::{
    NAT64_POOL, PairConfig, PairOutcome, PathKind, host_v6, run_pair,
};
use holepunch_tests::sim::profile::Profile;

const SEEDS: std::ops::Range<u64> = 1..6;

/// A network-specific prefix (TEST-NET addresses are not global, so not the well-known one).
fn prefix() -> Nat64Prefix {
    "2001:db8:64::/96".parse().unwrap()
}

fn behind_nat64(b: Profile, seed: u64) -> PairConfig {
    let mut config = PairConfig::new(Profile::Open, b, seed);
    config.nat64_a = Some(prefix());
    config
}

fn paths(o: &PairOutcome) -> [holepunch_core::ice::agent::PathInfo; 2] {
    o.selected.map(|p| p.expect("both sides selected a path"))
}

#[test]
fn an_ipv6_only_host_connects_directly_to_ipv4_peers_through_the_nat64() {
    for b in [
        Profile::Open,
        Profile::FullCone,
        Profile::RestrictedCone,
        Profile::PortRestrictedCone,
        Profile::Cgnat,
        // The translator filters by address only (RFC 6146 allows it), so even a peer whose
        // every destination gets a new port is let in once A has sent to its address.
        Profile::SymmetricRandom,
    ] {
        for seed in SEEDS {
            let o = run_pair(&behind_nat64(b, seed).without_relay());
            assert_eq!(
                o.path,
                PathKind::Direct,
                "{b} seed {seed}: {:?}",
                o.log.last()
            );
            let [pa, pb] = paths(&o);
            // A sends from its IPv6 host to the peer's address synthesised under the prefix;
            // the peer sees it at the translator's pool address.
            assert_eq!(pa.local, SocketAddr::new(host_v6(false).into(), 5000));
            let IpAddr::V6(to) = pa.remote.ip() else {
                panic!("{b} seed {seed}: A sends to {}", pa.remote)
            };
            assert!(prefix().contains(to), "{b} seed {seed}: {to}");
            assert_eq!(pb.remote.ip(), IpAddr::V4(NAT64_POOL), "{b} seed {seed}");
            assert_eq!(
                pb.remote_kind,
                CandidateKind::ServerReflexive,
                "{b} seed {seed}"
            );
        }
    }
}

#[test]
fn the_nat64_pool_address_is_signalled_as_a_server_reflexive_candidate() {
    let o = run_pair(&behind_nat64(Profile::PortRestrictedCone, 1).without_relay());
    let srflx = o
        .log
        .iter()
        .find(|l| l.contains(" A LocalCandidate") && l.contains("ServerReflexive"))
        .expect("A learnt its pool address from the IPv4 STUN server");
    assert!(srflx.contains("198.51.100.64"), "{srflx}");
}

#[test]
fn a_udp_blocked_peer_is_reached_through_the_relay_via_the_nat64() {
    for seed in SEEDS {
        let o = run_pair(&behind_nat64(Profile::UdpBlocked, seed));
        assert_eq!(o.path, PathKind::Relay, "seed {seed}: {:?}", o.log.last());
        // A allocated at the relay's synthesised address, through the translator.
        let a_relayed = o
            .log
            .iter()
            .find(|l| l.contains(" A LocalCandidate") && l.contains("Relayed"))
            .unwrap_or_else(|| panic!("seed {seed}: A has no relayed candidate"));
        assert!(
            a_relayed.contains("related: Some(198.51.100.64:"),
            "{a_relayed}"
        );
        let alone = run_pair(&behind_nat64(Profile::UdpBlocked, seed).without_relay());
        assert_eq!(alone.path, PathKind::None, "seed {seed}");
    }
}

#[test]
fn behind_a_port_dependent_nat64_the_ipv6_host_punches_a_symmetric_peer_through_it() {
    // A translator that filters by address and port (Linux conntrack) lets a symmetric peer's
    // checks in only on the ports A sent to: A must run the easy half of the birthday search,
    // its probes going to the peer's NAT at synthesised addresses.
    let mut direct = 0;
    for seed in 1..11 {
        let mut config = behind_nat64(Profile::SymmetricRandom, seed).without_relay();
        config.nat64_filtering = Filtering::AddressAndPortDependent;
        config.time_limit = holepunch_core::time::Duration::from_secs(60);
        let o = run_pair(&config);
        if o.path == PathKind::Direct {
            direct += 1;
            let [pa, _] = paths(&o);
            assert_eq!(pa.remote_kind, CandidateKind::PeerReflexive, "seed {seed}");
            let IpAddr::V6(to) = pa.remote.ip() else {
                panic!("seed {seed}: {}", pa.remote)
            };
            assert!(prefix().contains(to), "seed {seed}: {to}");
        }
    }
    assert!(direct >= 9, "{direct} of 10 seeds punched through");
    // The same translator against a port-restricted peer needs no punching.
    let mut config = behind_nat64(Profile::PortRestrictedCone, 1).without_relay();
    config.nat64_filtering = Filtering::AddressAndPortDependent;
    assert_eq!(run_pair(&config).path, PathKind::Direct);
}
