//! Simulation: the probe budget of issue 14. Two symmetric NATs can never go direct, so the
//! pair lives on the relay; what it costs is the direct checks each side keeps sending (and
//! the STUN re-gathering) in case a direct path appears. That traffic must stay under the
//! budget `AgentConfig::upgrade_backoff_max` documents.
//!
//! Before the backoff (a fixed 2 s wait between re-probes), each side sent 1,848 direct
//! datagrams and 600 STUN requests in these 10 minutes.

use holepunch_core::ice::agent::AgentConfig;
use holepunch_core::time::Duration;
use holepunch_tests::sim::pair::{PairConfig, PairOutcome, PathKind, run_pair};
use holepunch_tests::sim::profile::Profile;

/// The session length the 10-minute budget is measured over.
const TEN_MINUTES: Duration = Duration::from_secs(600);

/// Direct datagrams one side may send in its first 10 minutes on the relay: four direct
/// pairs' worth at the aggressive profile's 22 sends per check and 8 checks per pair (waits
/// of 2, 2, 4, … 128 s after each 20.5 s check). The symmetric pair has three (host and two
/// server-reflexive) plus the re-checks of mappings the peer's NAT replaced.
const TEN_MINUTE_BUDGET: u64 = 4 * 8 * 22;

/// Direct datagrams one side may send per hour once the waits reach the 5-minute cap: four
/// pairs checked once every 320.5 s (the cap plus the check's 20.5 s), 22 sends a check.
const HOURLY_BUDGET: u64 = 4 * 22 * 3600 / 320;

/// STUN requests one side may send in 10 minutes: gathering, then re-gathering on the relay
/// with the same backoff (two servers, one host candidate).
const STUN_BUDGET: u64 = 30;

fn on_the_relay(seed: u64, session: Duration) -> PairOutcome {
    let mut config = PairConfig::new(Profile::SymmetricRandom, Profile::SymmetricRandom, seed);
    config.time_limit = session;
    config.relay_settle = session;
    run_pair(&config)
}

#[test]
fn symmetric_pair_on_a_relay_keeps_direct_probing_under_budget() {
    let runs: Vec<(u64, PairOutcome)> = (1..=3)
        .map(|seed| (seed, on_the_relay(seed, TEN_MINUTES)))
        .collect();
    // Every figure first, so a failing run still shows them all.
    for (seed, o) in &runs {
        println!(
            "seed {seed}: in {TEN_MINUTES:?} on the relay, direct datagrams A {} B {} (total {}), \
             STUN requests A {} B {}",
            o.direct_sends[0],
            o.direct_sends[1],
            o.direct_sends[0] + o.direct_sends[1],
            o.stun_sends[0],
            o.stun_sends[1]
        );
    }
    for (seed, o) in &runs {
        assert_eq!(o.path, PathKind::Relay, "seed {seed}: {o:?}");
        for side in 0..2 {
            assert!(
                o.direct_sends[side] <= TEN_MINUTE_BUDGET,
                "seed {seed} side {side}: {} direct datagrams in {TEN_MINUTES:?}",
                o.direct_sends[side]
            );
            assert!(
                o.stun_sends[side] <= STUN_BUDGET,
                "seed {seed} side {side}: {} STUN requests in {TEN_MINUTES:?}",
                o.stun_sends[side]
            );
        }
    }
}

#[test]
fn symmetric_pair_on_a_relay_stays_under_the_hourly_budget_at_the_cap() {
    // Runs are deterministic: the first 10 minutes of a longer run are the 10-minute run, so
    // the difference is what the next 110 minutes cost.
    let short = on_the_relay(1, TEN_MINUTES);
    let long = on_the_relay(1, Duration::from_secs(7200));
    assert_eq!(long.path, PathKind::Relay, "{long:?}");
    for side in 0..2 {
        let later = long.direct_sends[side] - short.direct_sends[side];
        let per_hour = later * 60 / 110;
        println!(
            "side {side}: {} direct datagrams in 2 h, {later} after the first 10 minutes \
             ({per_hour} an hour)",
            long.direct_sends[side]
        );
        assert!(
            per_hour <= HOURLY_BUDGET,
            "side {side}: {per_hour} direct datagrams an hour"
        );
    }
}

/// The agent as with one plain STUN server (no RFC 5780): neither side can tell how its NAT
/// maps, so both punch blind, each playing both halves: the most a punch can cost.
fn blind(controlling: bool) -> AgentConfig {
    let mut c = AgentConfig::aggressive(controlling);
    c.probe_other_address = false;
    c
}

/// Symmetric × symmetric without a relay, one plain STUN server, over 10 minutes.
fn without_relay(agent: fn(bool) -> AgentConfig) -> PairOutcome {
    let mut config = PairConfig::new(Profile::SymmetricRandom, Profile::SymmetricRandom, 1);
    config.single_stun_server = true;
    config.relay = false;
    config.agent = agent;
    config.time_limit = TEN_MINUTES;
    run_pair(&config)
}

#[test]
fn a_blind_punch_between_symmetric_nats_stays_under_the_agent_cap() {
    let checks_only = without_relay(|c| AgentConfig {
        punch: None,
        ..blind(c)
    });
    let full = without_relay(blind);
    let capped = without_relay(|c| {
        let mut a = blind(c);
        if let Some(p) = a.punch.as_mut() {
            p.max_probes = 300;
        }
        a
    });
    for o in [&checks_only, &full, &capped] {
        assert_eq!(o.path, PathKind::None, "{o:?}");
    }
    let default_cap = u64::from(
        AgentConfig::aggressive(true)
            .punch
            .expect("punching is on by default")
            .max_probes,
    );
    for side in 0..2 {
        let punched = full.direct_sends[side] - checks_only.direct_sends[side];
        let punched_capped = capped.direct_sends[side] - checks_only.direct_sends[side];
        println!(
            "side {side}: {} direct datagrams without punching, {} with a blind punch \
             ({punched} probes), {} with max_probes = 300 ({punched_capped} probes)",
            checks_only.direct_sends[side], full.direct_sends[side], capped.direct_sends[side]
        );
        assert!(punched <= default_cap, "side {side}: {punched} probes");
        assert!(
            punched > 300,
            "side {side}: the plans alone send more than 300"
        );
        assert!(
            punched_capped <= 300,
            "side {side}: {punched_capped} probes"
        );
    }
}
