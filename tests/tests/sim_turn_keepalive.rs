//! Simulation: a TURN allocation outlives a long session behind a NAT that forgets idle
//! mappings (issue 10).
//!
//! Behind a symmetric NAT with the simulation's 120 s mapping timeout, once the direct path
//! wins nothing else goes to the TURN server. Without keepalives its mapping expires, the
//! Refresh near the end of the allocation's 600 s leaves from a new port, and the server
//! answers 437 (allocation mismatch): the relay a later fallback needs is gone.

use holepunch_core::time::Duration;
use holepunch_tests::sim::pair::{PairConfig, PathKind, run_pair};
use holepunch_tests::sim::profile::Profile;

/// Twenty minutes: two allocation lifetimes, so at least two Refreshes.
const HOLD: Duration = Duration::from_secs(20 * 60);

#[test]
fn the_relay_allocation_survives_twenty_idle_minutes_behind_a_symmetric_nat() {
    for (a, b) in [
        (Profile::SymmetricRandom, Profile::Open),
        (Profile::PortRestrictedCone, Profile::SymmetricRandom),
    ] {
        let mut config = PairConfig::new(a, b, 7);
        config.hold = HOLD;
        config.time_limit = HOLD + Duration::from_secs(60);
        let o = run_pair(&config);
        assert_eq!(o.path, PathKind::Direct, "{a} × {b}: {:?}", o.log.last());
        let lost: Vec<&String> = o
            .log
            .iter()
            .filter(|l| l.contains("Failed { server"))
            .collect();
        assert!(lost.is_empty(), "{a} × {b}: the relay was lost: {lost:?}");
        let (_, stats) = o.relays[0];
        assert_eq!(
            stats.allocations, 2,
            "{a} × {b}: one allocation per side, none remade"
        );
    }
}
