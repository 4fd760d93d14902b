//! Keepalives sized to the NAT (issue 14): consent checks run at a longer interval only when
//! both sides proposed one, at the shorter proposal, never under 10 s; the consent timeout
//! grows with the interval; without proposals nothing changes (RFC 7675's ~5 s).
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use holepunch_core::ice::agent::{
    Agent, AgentConfig, IceEvent, MIN_KEEPALIVE, keepalive_for_lifetime,
};
use holepunch_core::io::Transmit;
use holepunch_core::stun::attr::types;
use holepunch_core::stun::integrity::IntegrityKey;
use holepunch_core::stun::{Attribute, Class, Message, MessageBuilder};
use holepunch_core::time::{Duration, Instant};

#[path = "support/pump.rs"]
mod pump;

use pump::{Pumped, Wire};

const A: &str = "192.0.2.1:1000";
const B: &str = "198.51.100.1:2000";
const RFC_7675: Duration = Duration::from_secs(5);

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Two agents back to back (25 ms each way), recording when each sent a STUN request.
struct Pair {
    agents: [Agent; 2],
    now: Instant,
    wire: Wire,
    events: [Vec<IceEvent>; 2],
    /// When each side (A, B) sent a STUN request.
    requests: [Vec<Instant>; 2],
    /// Drop everything B sends.
    b_silent: bool,
    /// Re-sign B's requests without X-HOLEPUNCH-KEEPALIVE, as a stack that does not know it
    /// would send them.
    b_foreign: bool,
}

impl Pair {
    /// Agents proposing these keepalives (`AgentConfig::keepalive_interval`), with each
    /// proposal signalled to the other side as the offer line would carry it.
    fn new(a: Option<Duration>, b: Option<Duration>) -> Self {
        let mut pair = Self::unsignalled(a, b);
        pair.exchange_keepalives();
        pair
    }

    /// Agents proposing these keepalives, with nothing signalled out of band: whatever the
    /// peer learns comes in the checks.
    fn unsignalled(a: Option<Duration>, b: Option<Duration>) -> Self {
        let config = |controlling, keepalive| AgentConfig {
            keepalive_interval: keepalive,
            ..AgentConfig::rfc(controlling)
        };
        let mut agents = [
            Agent::new(config(true, a), 1),
            Agent::new(config(false, b), 2),
        ];
        let now = Instant::from_millis(1);
        agents[0].add_host_candidate(now, addr(A)).unwrap();
        agents[1].add_host_candidate(now, addr(B)).unwrap();
        let (ca, cb) = (
            *agents[0].local_credentials(),
            *agents[1].local_credentials(),
        );
        agents[0].set_remote_credentials(&cb);
        agents[1].set_remote_credentials(&ca);
        for c in agents[1].local_candidates().to_vec() {
            agents[0].add_remote_candidate(now, c).unwrap();
        }
        for c in agents[0].local_candidates().to_vec() {
            agents[1].add_remote_candidate(now, c).unwrap();
        }
        Pair {
            agents,
            now,
            wire: Wire::default(),
            events: [Vec::new(), Vec::new()],
            requests: [Vec::new(), Vec::new()],
            b_silent: false,
            b_foreign: false,
        }
    }

    /// Each side learns the other's current proposal (what a new offer line would carry).
    fn exchange_keepalives(&mut self) {
        let [a, b] = &mut self.agents;
        a.set_remote_keepalive(b.local_keepalive());
        b.set_remote_keepalive(a.local_keepalive());
    }

    /// B's request `bytes` re-signed for A without X-HOLEPUNCH-KEEPALIVE (anything else as is).
    fn without_keepalive(&self, bytes: &[u8]) -> Vec<u8> {
        let Ok(msg) = Message::parse(bytes) else {
            return bytes.to_vec();
        };
        if msg.class() != Class::Request {
            return bytes.to_vec();
        }
        let mut out = vec![0u8; 1500];
        let key = IntegrityKey::short_term(self.agents[0].local_credentials().pwd().as_bytes());
        let mut b =
            MessageBuilder::new(&mut out, Class::Request, msg.method(), msg.transaction_id())
                .unwrap();
        let mut stripped = false;
        for raw in msg.attributes() {
            match raw.attr {
                types::X_HOLEPUNCH_KEEPALIVE => stripped = true,
                types::MESSAGE_INTEGRITY | types::FINGERPRINT => {}
                attr => b
                    .add(&Attribute::Other {
                        attr,
                        value: raw.value,
                    })
                    .unwrap(),
            }
        }
        assert!(stripped, "B's checks carry the attribute");
        b.add_message_integrity(&key).unwrap();
        b.add_fingerprint().unwrap();
        let len = b.finish();
        out.truncate(len);
        out
    }

    fn run_until(&mut self, until: Instant) {
        pump::run_until(self, until);
    }

    /// Connects, then runs `idle` longer; returns when both sides connected.
    fn connect_and_idle(&mut self, idle: Duration) -> Instant {
        self.run_until(Instant::from_millis(2000));
        for (i, events) in self.events.iter().enumerate() {
            assert!(
                events.iter().any(|e| matches!(e, IceEvent::Connected(_))),
                "side {i} connected: {events:?}"
            );
        }
        let connected = self.now;
        self.run_until(connected + idle);
        connected
    }

    /// The gaps between side `i`'s requests sent after `since` (consent checks, once
    /// connected: nothing else is checked on a single working pair).
    fn gaps(&self, i: usize, since: Instant) -> Vec<Duration> {
        let after: Vec<Instant> = self.requests[i]
            .iter()
            .copied()
            .filter(|t| *t >= since)
            .collect();
        after.windows(2).map(|w| w[1] - w[0]).collect()
    }

    fn keepalive_events(&self, i: usize) -> Vec<Duration> {
        self.events[i]
            .iter()
            .filter_map(|e| match e {
                IceEvent::KeepaliveInterval(d) => Some(*d),
                _ => None,
            })
            .collect()
    }

    fn consent_lost(&self, i: usize) -> bool {
        self.events[i]
            .iter()
            .any(|e| matches!(e, IceEvent::ConsentLost(_)))
    }
}

impl Pumped for Pair {
    fn agent(&mut self, side: usize) -> &mut Agent {
        &mut self.agents[side]
    }

    fn clock_and_wire(&mut self) -> (&mut Instant, &mut Wire) {
        (&mut self.now, &mut self.wire)
    }

    fn on_transmit(&mut self, i: usize, _t: Transmit, bytes: &[u8]) {
        if Message::parse(bytes).is_ok_and(|m| m.class() == Class::Request) {
            self.requests[i].push(self.now);
        }
        if i == 1 && self.b_silent {
            return;
        }
        let bytes = if i == 1 && self.b_foreign {
            self.without_keepalive(bytes)
        } else {
            bytes.to_vec()
        };
        // Back to back: whatever one side sends reaches the other's one address.
        let (from, to) = if i == 0 { (A, B) } else { (B, A) };
        let at = self.now + Duration::from_millis(25);
        self.wire.send(at, 1 - i, addr(from), addr(to), bytes);
    }

    fn on_event(&mut self, i: usize, e: IceEvent) {
        self.events[i].push(e);
    }
}

/// Every gap lies within `[low, high]` and there are at least `min_count` of them.
fn assert_gaps(gaps: &[Duration], low: Duration, high: Duration, min_count: usize, what: &str) {
    assert!(
        gaps.len() >= min_count,
        "{what}: {} gaps, want {min_count}: {gaps:?}",
        gaps.len()
    );
    for g in gaps {
        assert!(
            *g >= low && *g <= high,
            "{what}: gap {g:?} outside {low:?}..={high:?}: {gaps:?}"
        );
    }
}

#[test]
fn without_proposals_consent_runs_every_five_seconds_as_before() {
    let mut p = Pair::new(None, None);
    let since = p.connect_and_idle(secs(120));
    for i in 0..2 {
        assert_eq!(p.agents[i].consent_interval(), RFC_7675);
        assert_eq!(p.agents[i].local_keepalive(), None);
        // RFC 7675 §5.1: 5 s ± 20 %.
        assert_gaps(&p.gaps(i, since), secs(4), secs(6), 20, "no proposals");
        assert!(p.keepalive_events(i).is_empty(), "{:?}", p.events[i]);
    }
}

#[test]
fn both_proposing_seventeen_seconds_checks_about_seventeen_seconds_apart() {
    let k = secs(17);
    let mut p = Pair::new(Some(k), Some(k));
    let since = p.connect_and_idle(secs(300));
    for i in 0..2 {
        assert_eq!(p.agents[i].consent_interval(), k);
        // Randomised downwards only, by up to a tenth: never a longer silence than agreed.
        let gaps = p.gaps(i, since);
        assert_gaps(&gaps, k - k / 10, k, 16, "both propose 17 s");
        assert_eq!(
            p.keepalive_events(i),
            [k],
            "side {i} reports the interval once"
        );
        assert!(!p.consent_lost(i));
    }
}

#[test]
fn the_shorter_proposal_wins_on_both_sides() {
    let mut p = Pair::new(Some(secs(60)), Some(secs(17)));
    let since = p.connect_and_idle(secs(300));
    for i in 0..2 {
        assert_eq!(p.agents[i].consent_interval(), secs(17));
        assert_eq!(p.keepalive_events(i), [secs(17)]);
        assert_gaps(&p.gaps(i, since), secs(15), secs(17), 16, "60 s vs 17 s");
    }
}

#[test]
fn a_peer_that_proposes_nothing_keeps_rfc_7675_cadence() {
    // A proposes, B is a standard RFC 7675 peer (no line), and the other way round.
    for (a, b) in [(Some(secs(17)), None), (None, Some(secs(17)))] {
        let mut p = Pair::new(a, b);
        let since = p.connect_and_idle(secs(120));
        for i in 0..2 {
            assert_eq!(p.agents[i].consent_interval(), RFC_7675);
            assert_gaps(
                &p.gaps(i, since),
                secs(4),
                secs(6),
                20,
                "one-sided proposal",
            );
            assert!(p.keepalive_events(i).is_empty(), "{:?}", p.events[i]);
        }
    }
}

#[test]
fn keepalives_are_never_under_ten_seconds() {
    assert_eq!(MIN_KEEPALIVE, secs(10));
    // A configured proposal under the floor is raised to it.
    let mut p = Pair::new(Some(secs(3)), Some(secs(4)));
    assert_eq!(p.agents[0].local_keepalive(), Some(secs(10)));
    let since = p.connect_and_idle(secs(120));
    for i in 0..2 {
        assert_eq!(p.agents[i].consent_interval(), secs(10));
        assert_gaps(&p.gaps(i, since), secs(9), secs(10), 10, "floor");
    }
    // A peer's proposal under the floor (an older or foreign writer) is raised to it too.
    let mut agent = Agent::new(
        AgentConfig {
            keepalive_interval: Some(secs(30)),
            ..AgentConfig::rfc(true)
        },
        3,
    );
    agent.set_remote_keepalive(Some(secs(1)));
    assert_eq!(agent.consent_interval(), secs(10));
}

#[test]
fn keepalives_are_sized_just_under_the_mapping_lifetime() {
    // A tenth under, at least 2 s under, whole seconds.
    assert_eq!(keepalive_for_lifetime(secs(120)), Some(secs(108)));
    assert_eq!(keepalive_for_lifetime(secs(30)), Some(secs(27)));
    assert_eq!(keepalive_for_lifetime(secs(20)), Some(secs(18)));
    assert_eq!(keepalive_for_lifetime(secs(12)), Some(secs(10)));
    // Under 20 s the 2 s margin is the larger one.
    assert_eq!(
        keepalive_for_lifetime(Duration::from_millis(12_500)),
        Some(secs(10))
    );
    assert_eq!(
        keepalive_for_lifetime(Duration::from_millis(25_500)),
        Some(secs(22))
    );
    // Too short for the floor: propose nothing, RFC 7675's 5 s keeps such a NAT open.
    assert_eq!(keepalive_for_lifetime(secs(11)), None);
    assert_eq!(keepalive_for_lifetime(secs(5)), None);
    assert_eq!(keepalive_for_lifetime(Duration::ZERO), None);
    assert_eq!(
        keepalive_for_lifetime(Duration::MAX).map(|d| d > secs(1)),
        Some(true)
    );

    let mut agent = Agent::new(AgentConfig::rfc(true), 4);
    assert_eq!(agent.set_mapping_lifetime(secs(20)), Some(secs(18)));
    assert_eq!(agent.local_keepalive(), Some(secs(18)));
    assert_eq!(agent.set_mapping_lifetime(secs(8)), None);
    assert_eq!(
        agent.local_keepalive(),
        None,
        "a short lifetime withdraws the proposal"
    );
}

#[test]
fn a_lifetime_measured_after_connecting_reaches_the_peer_in_band_and_the_shorter_wins() {
    // Nothing signalled out of band: the offers were exchanged long before the measurement.
    let mut p = Pair::unsignalled(None, None);
    let connected = p.connect_and_idle(secs(30));
    assert!(p.keepalive_events(0).is_empty());
    // Both sides measure their NAT (20 s and 120 s) in the background.
    assert_eq!(p.agents[0].set_mapping_lifetime(secs(20)), Some(secs(18)));
    assert_eq!(p.agents[1].set_mapping_lifetime(secs(120)), Some(secs(108)));
    assert!(
        p.keepalive_events(0).is_empty() && p.keepalive_events(1).is_empty(),
        "not agreed before the peer's proposal arrived"
    );
    let measured = p.now;
    p.run_until(measured + secs(300));
    for i in 0..2 {
        assert_eq!(p.keepalive_events(i), [secs(18)], "side {i}");
        assert_eq!(p.agents[i].consent_interval(), secs(18));
        // Each side learns the other's proposal from its next check (within ~6 s), then any
        // check still scheduled at the old cadence goes (within another ~6 s).
        let gaps = p.gaps(i, measured + secs(13));
        assert_gaps(&gaps, secs(16), secs(18), 14, "measured");
        assert!(p.gaps(i, connected).iter().any(|g| *g <= secs(6)));
        assert!(!p.consent_lost(i));
    }
    // B's NAT turns out shorter-lived (a new measurement): 30 s → 27 s; 18 s still wins.
    p.agents[1].set_mapping_lifetime(secs(30));
    p.run_until(p.now + secs(60));
    assert_eq!(p.keepalive_events(0), [secs(18)]);
    // A withdraws its proposal: B hears it with A's next check (pulled forward to within
    // 5 s) and both go back to RFC 7675's cadence, reported.
    p.agents[0].set_local_keepalive(None);
    let withdrawn = p.now;
    p.run_until(withdrawn + secs(60));
    for i in 0..2 {
        assert_eq!(p.keepalive_events(i), [secs(18), RFC_7675], "side {i}");
        assert_eq!(p.agents[i].consent_interval(), RFC_7675);
        assert_gaps(
            &p.gaps(i, withdrawn + secs(12)),
            secs(4),
            secs(6),
            7,
            "withdrawn",
        );
    }
    assert!(
        p.requests[0]
            .iter()
            .any(|t| *t > withdrawn && *t <= withdrawn + RFC_7675 + RFC_7675 / 5)
    );
}

#[test]
fn a_peer_whose_checks_lack_the_attribute_keeps_rfc_7675_cadence() {
    // B is a foreign stack: its checks never carry X-HOLEPUNCH-KEEPALIVE (and no offer line).
    let mut p = Pair::unsignalled(None, None);
    p.b_foreign = true;
    p.connect_and_idle(secs(20));
    assert_eq!(p.agents[0].set_mapping_lifetime(secs(120)), Some(secs(108)));
    let measured = p.now;
    p.run_until(measured + secs(120));
    assert_eq!(p.agents[0].consent_interval(), RFC_7675);
    assert!(p.keepalive_events(0).is_empty(), "{:?}", p.events[0]);
    assert_gaps(&p.gaps(0, measured), secs(4), secs(6), 20, "foreign peer");
    assert!(!p.consent_lost(0));
}

#[test]
fn an_in_band_proposal_overrides_the_offer_line() {
    // Both proposed 60 s in their offers; later A's NAT is measured at 20 s.
    let mut p = Pair::new(Some(secs(60)), Some(secs(60)));
    p.connect_and_idle(secs(30));
    assert_eq!(p.keepalive_events(1), [secs(60)]);
    p.agents[0].set_mapping_lifetime(secs(20));
    let measured = p.now;
    p.run_until(measured + secs(120));
    assert_eq!(p.keepalive_events(1), [secs(60), secs(18)]);
    assert_gaps(
        &p.gaps(1, measured + secs(20)),
        secs(16),
        secs(18),
        4,
        "B follows A",
    );
}

#[test]
fn the_consent_timeout_spans_three_agreed_intervals() {
    // At 17 s agreed, consent lasts max(30 s, 3 × 17 s) = 51 s after the last answer; without
    // an agreement the RFC's 30 s holds.
    for (b, timeout) in [(Some(secs(17)), secs(51)), (None, secs(30))] {
        let mut p = Pair::new(Some(secs(17)), b);
        p.connect_and_idle(secs(60));
        // B falls silent just after answering A's latest check (25 ms each way).
        let last_request = *p.requests[0].last().unwrap();
        p.run_until(p.now.max(last_request + Duration::from_millis(60)));
        assert_eq!(p.requests[0].last(), Some(&last_request));
        p.b_silent = true;
        let last_answer = last_request + Duration::from_millis(50);
        p.run_until(last_answer + (timeout - Duration::from_millis(10)));
        assert!(
            !p.consent_lost(0),
            "{b:?}: lost before {timeout:?}: {:?}",
            p.events[0]
        );
        p.run_until(last_answer + timeout + Duration::from_millis(10));
        assert!(
            p.consent_lost(0),
            "{b:?}: kept after {timeout:?}: {:?}",
            p.events[0]
        );
    }
}
