//! The ICE rules a mutation audit found unpinned (issue 17): role conflicts settled by the
//! tie-breaker with an authenticated 487, consent lost at exactly its deadline, trickle's
//! end-of-candidates, and restarts (one-sided, and with a peer that dies midway).
//!
//! Two agents on a simulated wire in virtual time, through the public API only. Every datagram
//! delivered is logged, so the tests can check what went over the wire, not just the outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use holepunch_core::demux::Received;
use holepunch_core::ice::agent::{Agent, AgentConfig, IceEvent};
use holepunch_core::ice::candidate::Candidate;
use holepunch_core::ice::checklist::PairState;
use holepunch_core::io::{Datagram, Transmit};
use holepunch_core::stun::attr::types;
use holepunch_core::stun::{
    Attribute, Class, ErrorCode, IntegrityKey, Message, MessageBuilder, Method, TransactionId,
};
use holepunch_core::time::{Duration, Instant};

#[path = "support/pump.rs"]
mod pump;

use pump::{Flight, Pumped, Wire};

const A: usize = 0;
const B: usize = 1;
const ADDRS: [&str; 2] = ["192.0.2.1:1000", "198.51.100.1:2000"];
/// A candidate nobody answers on: datagrams to it are dropped.
const NOWHERE: &str = "203.0.113.9:9";
const RTT: Duration = Duration::from_millis(50);

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A datagram handed to an agent.
struct Delivered {
    at: Instant,
    to_side: usize,
    bytes: Vec<u8>,
}

struct Net {
    agents: [Agent; 2],
    now: Instant,
    wire: Wire,
    events: [Vec<(Instant, IceEvent)>; 2],
    /// A side whose datagrams are all lost (the peer died).
    silent: [bool; 2],
    delivered: Vec<Delivered>,
    /// Further host addresses, with the side that owns each.
    extra_hosts: Vec<(SocketAddr, usize)>,
}

impl Net {
    fn new(configs: [AgentConfig; 2], seeds: [u64; 2]) -> Net {
        let now = Instant::from_millis(1);
        let [ca, cb] = configs;
        let mut agents = [Agent::new(ca, seeds[0]), Agent::new(cb, seeds[1])];
        for (side, agent) in agents.iter_mut().enumerate() {
            agent.add_host_candidate(now, addr(ADDRS[side])).unwrap();
            agent.gather(now);
        }
        Net {
            agents,
            now,
            wire: Wire::default(),
            events: [Vec::new(), Vec::new()],
            silent: [false; 2],
            delivered: Vec::new(),
            extra_hosts: Vec::new(),
        }
    }

    /// Signalling from `from` to `to`: credentials and every local candidate.
    fn signal(&mut self, from: usize, to: usize) {
        let creds = *self.agents[from].local_credentials();
        let candidates = self.agents[from].local_candidates().to_vec();
        let now = self.now;
        self.agents[to].set_remote_credentials(&creds);
        for c in candidates {
            self.agents[to].add_remote_candidate(now, c).unwrap();
        }
    }

    fn signal_both(&mut self) {
        self.signal(A, B);
        self.signal(B, A);
    }

    fn drain(&mut self) {
        pump::drain(self);
    }

    /// Runs until `until`, bounded in steps.
    fn run_until(&mut self, until: Instant) {
        pump::run_until(self, until);
    }

    fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// When `side` first reported an event matching `pred` at or after `since`.
    fn event_at(
        &self,
        side: usize,
        since: Instant,
        pred: impl Fn(&IceEvent) -> bool,
    ) -> Option<Instant> {
        self.events[side]
            .iter()
            .find(|(at, e)| *at >= since && pred(e))
            .map(|(at, _)| *at)
    }

    /// When `side` last received a Binding success response before `before`.
    fn last_success_response(&self, side: usize, before: Instant) -> Option<Instant> {
        self.delivered
            .iter()
            .rev()
            .filter(|d| d.to_side == side && d.at < before)
            .find(|d| Message::parse(&d.bytes).unwrap().class() == Class::SuccessResponse)
            .map(|d| d.at)
    }
}

impl Pumped for Net {
    fn agent(&mut self, side: usize) -> &mut Agent {
        &mut self.agents[side]
    }

    fn clock_and_wire(&mut self) -> (&mut Instant, &mut Wire) {
        (&mut self.now, &mut self.wire)
    }

    fn on_transmit(&mut self, side: usize, t: Transmit, bytes: &[u8]) {
        if self.silent[side] {
            return;
        }
        // Who receives it (if anyone) is decided on arrival, by `deliver`.
        self.wire.send(
            self.now + RTT / 2,
            1 - side,
            t.from.unwrap(),
            t.to,
            bytes.to_vec(),
        );
    }

    fn on_event(&mut self, side: usize, e: IceEvent) {
        self.events[side].push((self.now, e));
    }

    fn deliver(&mut self, f: Flight) {
        // Only the two hosts exist; anything else is lost in the network.
        let Some(side) = [A, B]
            .into_iter()
            .find(|&s| addr(ADDRS[s]) == f.to)
            .or_else(|| self.extra_hosts.iter().find(|h| h.0 == f.to).map(|h| h.1))
        else {
            return;
        };
        let r = self.agents[side].handle_datagram(self.now, Datagram::new(f.to, f.from, &f.bytes));
        assert_eq!(r, Received::Consumed, "every datagram here is ICE traffic");
        self.delivered.push(Delivered {
            at: self.now,
            to_side: side,
            bytes: f.bytes,
        });
    }
}

fn is_connected(e: &IceEvent) -> bool {
    matches!(e, IceEvent::Connected(_) | IceEvent::PathChanged(_))
}

fn is_consent_lost(e: &IceEvent) -> bool {
    matches!(e, IceEvent::ConsentLost(_))
}

fn is_failed(e: &IceEvent) -> bool {
    matches!(e, IceEvent::Failed)
}

// ----- role conflict (RFC 8445 §7.3.1.1) -----

/// The tie-breaker an agent made from `seed`, read from the role attribute of its first check.
fn tie_breaker(seed: u64) -> u64 {
    let now = Instant::ZERO;
    let mut agent = Agent::new(AgentConfig::rfc(true), seed);
    agent.add_host_candidate(now, addr(ADDRS[A])).unwrap();
    let peer = Agent::new(AgentConfig::rfc(false), u64::MAX);
    agent.set_remote_credentials(peer.local_credentials());
    agent
        .add_remote_candidate(now, Candidate::host(addr(ADDRS[B]), 65535))
        .unwrap();
    let mut buf = [0u8; 1500];
    for _ in 0..100 {
        let Some(t) = agent.poll_transmit(now, &mut buf) else {
            break;
        };
        let msg = Message::parse(&buf[..t.len]).unwrap();
        if let Some(Ok(Attribute::IceControlling(tie))) = msg.decode(types::ICE_CONTROLLING) {
            return tie;
        }
    }
    panic!("no check with ICE-CONTROLLING from seed {seed}");
}

/// Seeds for A and B such that A's tie-breaker is the larger one exactly when `a_larger`.
fn seeds(a_larger: bool) -> [u64; 2] {
    let (s1, s2) = (11, 12);
    let (t1, t2) = (tie_breaker(s1), tie_breaker(s2));
    assert_ne!(t1, t2);
    if (t1 > t2) == a_larger {
        [s1, s2]
    } else {
        [s2, s1]
    }
}

/// Both agents start in the role `controlling`. RFC 8445 §7.3.1.1: the larger tie-breaker ends
/// up controlling and the smaller controlled, in either starting role; the side that keeps its
/// role answers the other's check with a 487 (Role Conflict) that carries valid
/// MESSAGE-INTEGRITY, the other switches, and the pair connects.
fn role_conflict(controlling: bool, a_larger: bool) {
    let seeds = seeds(a_larger);
    let (larger, smaller) = if a_larger { (A, B) } else { (B, A) };
    let mut net = Net::new(
        [AgentConfig::rfc(controlling), AgentConfig::rfc(controlling)],
        seeds,
    );
    net.signal_both();
    net.run_for(Duration::from_secs(3));

    assert!(
        net.agents[larger].is_controlling(),
        "the larger tie-breaker controls"
    );
    assert!(
        !net.agents[smaller].is_controlling(),
        "the smaller tie-breaker is controlled"
    );
    // Who had to switch: from controlling, the smaller; from controlled, the larger.
    let (switcher, keeper) = if controlling {
        (smaller, larger)
    } else {
        (larger, smaller)
    };
    let keeper_key =
        IntegrityKey::short_term(net.agents[keeper].local_credentials().pwd().as_bytes());
    let conflicts: Vec<&Delivered> = net
        .delivered
        .iter()
        .filter(|d| {
            let msg = Message::parse(&d.bytes).unwrap();
            msg.class() == Class::ErrorResponse
                && matches!(msg.error_code(), Some(Ok(e)) if e.code == ErrorCode::ROLE_CONFLICT.code)
        })
        .collect();
    assert!(!conflicts.is_empty(), "a 487 went over the wire");
    for d in &conflicts {
        assert_eq!(
            d.to_side, switcher,
            "only the side that must switch gets a 487"
        );
        let msg = Message::parse(&d.bytes).unwrap();
        assert!(
            msg.verify_integrity(&keeper_key).is_ok(),
            "the 487 carries MESSAGE-INTEGRITY with the sender's password"
        );
        assert!(msg.verify_fingerprint().is_ok());
    }
    let switches = |side: usize| {
        net.events[side]
            .iter()
            .filter(|(_, e)| matches!(e, IceEvent::RoleChanged { .. }))
            .count()
    };
    assert_eq!(switches(switcher), 1, "{:?}", net.events[switcher]);
    assert_eq!(switches(keeper), 0, "{:?}", net.events[keeper]);
    for side in [A, B] {
        assert!(
            net.event_at(side, Instant::ZERO, is_connected).is_some(),
            "side {side} connected: {:?}",
            net.events[side]
        );
    }
}

#[test]
fn both_controlling_the_larger_tie_breaker_on_a_keeps_control() {
    role_conflict(true, true);
}

#[test]
fn both_controlling_the_larger_tie_breaker_on_b_keeps_control() {
    role_conflict(true, false);
}

#[test]
fn both_controlled_the_larger_tie_breaker_on_a_takes_control() {
    role_conflict(false, true);
}

#[test]
fn both_controlled_the_larger_tie_breaker_on_b_takes_control() {
    role_conflict(false, false);
}

// ----- consent freshness (RFC 7675) -----

/// Consent is lost at exactly the last consent response + 30 s: not a tick earlier or later,
/// in virtual time where the timing is exact.
#[test]
fn consent_is_lost_exactly_thirty_seconds_after_the_last_response() {
    let mut net = Net::new([AgentConfig::rfc(true), AgentConfig::rfc(false)], [1, 2]);
    net.signal_both();
    // Long enough for several jittered consent checks to have been answered.
    net.run_for(Duration::from_secs(17));
    assert!(net.agents[A].selected_path().is_some());
    net.silent[B] = true;
    let silent_from = net.now;
    net.run_for(Duration::from_secs(60));
    let last = net
        .last_success_response(A, silent_from + RTT)
        .expect("A heard B before the silence");
    assert!(
        last > Instant::from_millis(10_000),
        "consent responses, not just checks"
    );
    let lost = net
        .event_at(A, silent_from, is_consent_lost)
        .expect("consent lost");
    assert_eq!(
        lost,
        last + Duration::from_secs(30),
        "events: {:?}",
        net.events[A]
    );
    assert!(net.agents[A].selected_path().is_none());
}

// ----- trickle: end-of-candidates (RFC 8838 §8) -----

/// A has B's credentials but only a candidate that goes nowhere; B knows nothing of A yet.
/// With `punch`, A also waits for end-of-candidates to decide on hard-NAT punching; without,
/// only the end-of-candidates rule stands between failed pairs and `Failed`.
fn trickle_with_a_dead_candidate(punch: bool) -> Net {
    let config = |controlling| {
        let mut c = AgentConfig::aggressive(controlling);
        if !punch {
            c.punch = None;
        }
        c
    };
    let mut net = Net::new([config(true), config(false)], [3, 4]);
    let creds = *net.agents[B].local_credentials();
    let now = net.now;
    net.agents[A].set_remote_credentials(&creds);
    net.agents[A]
        .add_remote_candidate(now, Candidate::host(addr(NOWHERE), 65535))
        .unwrap();
    // Longer than any check's retransmissions and punching's decision.
    net.run_for(Duration::from_secs(60));
    let pairs = net.agents[A].checklist().pairs();
    assert!(!pairs.is_empty());
    assert!(
        pairs.iter().all(|p| p.state == PairState::Failed),
        "every pair failed: {pairs:?}"
    );
    net
}

/// Every pair failed, but the peer has not said it is done: no `Failed`, and a candidate
/// trickled in late still connects.
#[test]
fn without_end_of_candidates_failed_pairs_are_not_failure_and_a_late_candidate_connects() {
    for punch in [false, true] {
        late_candidate_connects(punch);
    }
}

fn late_candidate_connects(punch: bool) {
    let mut net = trickle_with_a_dead_candidate(punch);
    assert!(
        net.event_at(A, Instant::ZERO, is_failed).is_none(),
        "no Failed before end-of-candidates (punch {punch}): {:?}",
        net.events[A]
    );
    let late = net.now;
    net.signal(A, B);
    net.signal(B, A);
    net.run_for(Duration::from_secs(2));
    for side in [A, B] {
        assert!(
            net.event_at(side, late, is_connected).is_some(),
            "side {side} connected: {:?}",
            net.events[side]
        );
    }
    assert!(net.event_at(A, Instant::ZERO, is_failed).is_none());
}

/// Every pair failed and then the peer signals end-of-candidates: `Failed` follows.
#[test]
fn failed_follows_end_of_candidates_once_every_pair_failed() {
    for punch in [false, true] {
        failed_follows_end_of_candidates(punch);
    }
}

fn failed_follows_end_of_candidates(punch: bool) {
    let mut net = trickle_with_a_dead_candidate(punch);
    let eoc = net.now;
    net.agents[A].end_of_remote_candidates();
    net.run_for(Duration::from_secs(1));
    let failed = net.event_at(A, Instant::ZERO, is_failed);
    assert!(
        failed.is_some_and(|at| at >= eoc),
        "Failed after end-of-candidates (punch {punch}): {:?}",
        net.events[A]
    );
}

/// Signalling may deliver the peer's candidates before its credentials, or the credentials
/// first. Either way checking starts (`Checking`) once both a pair and the credentials exist,
/// not before, and `Failed` still follows end-of-candidates when every pair failed.
#[test]
fn checking_starts_once_credentials_and_a_pair_exist_in_either_order() {
    let config = |controlling| AgentConfig {
        punch: None,
        ..AgentConfig::aggressive(controlling)
    };
    let is_checking = |e: &IceEvent| matches!(e, IceEvent::Checking);
    for candidates_first in [true, false] {
        let mut net = Net::new([config(true), config(false)], [3, 4]);
        let creds = *net.agents[B].local_credentials();
        let dead = Candidate::host(addr(NOWHERE), 65535);
        let start = net.now;
        if candidates_first {
            net.agents[A].add_remote_candidate(start, dead).unwrap();
            net.run_for(Duration::from_secs(1));
            net.agents[A].set_remote_credentials(&creds);
        } else {
            net.agents[A].set_remote_credentials(&creds);
            net.run_for(Duration::from_secs(1));
            net.agents[A].add_remote_candidate(net.now, dead).unwrap();
        }
        let both = net.now;
        net.agents[A].end_of_remote_candidates();
        net.run_for(Duration::from_secs(60));
        let checking: Vec<Instant> = net.events[A]
            .iter()
            .filter(|(_, e)| is_checking(e))
            .map(|(at, _)| *at)
            .collect();
        assert_eq!(
            checking,
            [both],
            "candidates first {candidates_first}: {:?}",
            net.events[A]
        );
        assert!(
            net.event_at(A, both, is_failed).is_some(),
            "candidates first {candidates_first}: {:?}",
            net.events[A]
        );
    }
}

// ----- ICE restart (RFC 8445 §9) -----

fn connected_pair() -> Net {
    connected_pair_with(AgentConfig::aggressive)
}

fn connected_pair_with(config: fn(bool) -> AgentConfig) -> Net {
    let mut net = Net::new([config(true), config(false)], [5, 6]);
    net.signal_both();
    net.run_for(Duration::from_secs(12));
    for side in [A, B] {
        assert!(
            net.agents[side].selected_path().is_some(),
            "side {side} connected"
        );
    }
    net
}

/// A restarts and B dies before answering: the old path must not stay selected forever;
/// consent runs on during the restart, so A notices within 30 s.
#[test]
fn a_peer_that_dies_mid_restart_is_noticed_within_thirty_seconds() {
    let mut net = connected_pair();
    let restart = net.now;
    net.agents[A].restart(restart);
    assert!(
        net.agents[A].selected_path().is_some(),
        "the old path stays usable during the restart"
    );
    net.silent[B] = true;
    net.run_for(Duration::from_secs(120));
    let lost = net
        .event_at(A, restart, is_consent_lost)
        .unwrap_or_else(|| panic!("consent lost: {:?}", net.events[A]));
    let last = net.last_success_response(A, restart + RTT).unwrap();
    // The consent rule, unchanged by the restart: exactly 30 s after the last answer, which
    // is within 30 s of the restart.
    assert_eq!(
        lost,
        last + Duration::from_secs(30),
        "restart at {restart:?}, events {:?}",
        net.events[A]
    );
    assert!(lost <= restart + Duration::from_secs(30));
    assert!(net.agents[A].selected_path().is_none());
}

/// Only A restarts: B sees a new ufrag and password for A and keeps its own. Both reconnect
/// on the new credentials and keep consent afterwards.
#[test]
fn a_one_sided_restart_reconnects() {
    let mut net = connected_pair();
    let old = *net.agents[A].local_credentials();
    let restart = net.now;
    net.agents[A].restart(restart);
    assert_ne!(net.agents[A].local_credentials().ufrag(), old.ufrag());
    net.signal(A, B);
    net.signal(B, A);
    net.run_for(Duration::from_secs(2));
    assert!(
        net.event_at(A, restart, is_connected).is_some(),
        "A selected a path on the new credentials: {:?}",
        net.events[A]
    );
    // Well past the consent timeout: both sides' consent checks use A's new password.
    net.run_for(Duration::from_secs(90));
    for side in [A, B] {
        assert!(
            net.event_at(side, restart, is_consent_lost).is_none(),
            "side {side} kept consent: {:?}",
            net.events[side]
        );
        let path = net.agents[side].selected_path().expect("a path");
        assert_eq!(path.remote, addr(ADDRS[1 - side]));
    }
    let key = IntegrityKey::short_term(net.agents[A].local_credentials().pwd().as_bytes());
    let late_answers_from_a = net
        .delivered
        .iter()
        .filter(|d| d.to_side == B && d.at > restart + Duration::from_secs(60))
        .filter(|d| Message::parse(&d.bytes).unwrap().class() == Class::SuccessResponse)
        .inspect(|d| {
            let msg = Message::parse(&d.bytes).unwrap();
            assert!(
                msg.verify_integrity(&key).is_ok(),
                "A answers with its new password"
            );
        })
        .count();
    assert!(late_answers_from_a > 0, "B's consent checks are answered");
}

/// A restarts; B answers with new credentials and only a candidate that goes nowhere, then
/// dies. While the old path is kept, failed new pairs are not `Failed`; once its consent is
/// lost, `Failed` follows only if B signalled end-of-candidates in the restarted session (the
/// first session's end-of-candidates does not carry over). Without hard-NAT punching, whose
/// pending decision would also hold `Failed` back.
fn restart_answered_with_dead_candidates(eoc: bool) {
    let mut net = connected_pair_with(|controlling| AgentConfig {
        punch: None,
        ..AgentConfig::aggressive(controlling)
    });
    for side in [A, B] {
        net.agents[side].end_of_remote_candidates();
    }
    let restart = net.now;
    net.agents[A].restart(restart);
    net.agents[B].restart(restart);
    let creds = *net.agents[B].local_credentials();
    net.agents[A].set_remote_credentials(&creds);
    net.agents[A]
        .add_remote_candidate(restart, Candidate::host(addr(NOWHERE), 65535))
        .unwrap();
    if eoc {
        net.agents[A].end_of_remote_candidates();
    }
    net.silent[B] = true;
    net.run_for(Duration::from_secs(120));
    let lost = net
        .event_at(A, restart, is_consent_lost)
        .unwrap_or_else(|| panic!("the old path's consent is lost: {:?}", net.events[A]));
    let failed = net.event_at(A, restart, is_failed);
    if eoc {
        let failed = failed.unwrap_or_else(|| panic!("Failed: {:?}", net.events[A]));
        assert!(
            failed >= lost,
            "no Failed while the old path is kept: failed {failed:?}, lost {lost:?}"
        );
    } else {
        assert_eq!(
            failed, None,
            "no Failed without the restarted session's end-of-candidates: {:?}",
            net.events[A]
        );
    }
}

#[test]
fn a_restart_answered_with_dead_candidates_fails_only_after_the_old_path_goes() {
    restart_answered_with_dead_candidates(true);
}

#[test]
fn a_restart_without_new_end_of_candidates_never_fails() {
    restart_answered_with_dead_candidates(false);
}

// ----- consent pacing (RFC 7675 §5.1) -----

/// Consent checks go out every 5 s randomised uniformly within ±20%: every gap between A's
/// checks on the selected pair lies in [4 s, 6 s], and the jitter really spreads them (some
/// below 5 s, some above).
#[test]
fn consent_checks_are_spaced_four_to_six_seconds_apart() {
    let mut net = Net::new([AgentConfig::rfc(true), AgentConfig::rfc(false)], [3, 4]);
    net.signal_both();
    net.run_for(Duration::from_secs(10));
    assert!(net.agents[A].selected_path().is_some());
    let settled = net.now;
    net.run_for(Duration::from_secs(120));
    let checks: Vec<Instant> = net
        .delivered
        .iter()
        .filter(|d| d.to_side == B && d.at >= settled)
        .filter(|d| Message::parse(&d.bytes).unwrap().class() == Class::Request)
        .map(|d| d.at)
        .collect();
    let gaps: Vec<Duration> = checks.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.len() >= 18, "{} consent checks in 120 s", checks.len());
    for g in &gaps {
        assert!(
            (Duration::from_secs(4)..=Duration::from_secs(6)).contains(g),
            "gap {g:?} in {gaps:?}"
        );
    }
    let five = Duration::from_secs(5);
    assert!(gaps.iter().any(|g| *g < five) && gaps.iter().any(|g| *g > five));
}

/// A restart re-announces everything a driver signals: every local candidate and, when
/// gathering had completed, end-of-candidates (`GatheringComplete`), so the peer can fail the
/// new session properly.
#[test]
fn a_restart_announces_candidates_and_end_of_candidates_again() {
    let mut net = connected_pair();
    let restart = net.now;
    net.agents[A].restart(restart);
    net.run_for(Duration::from_millis(1));
    let since_restart = |pred: fn(&IceEvent) -> bool| {
        net.events[A]
            .iter()
            .filter(|(at, e)| *at >= restart && pred(e))
            .count()
    };
    assert_eq!(
        since_restart(|e| matches!(e, IceEvent::LocalCandidate(_))),
        net.agents[A].local_candidates().len()
    );
    assert_eq!(
        since_restart(|e| matches!(e, IceEvent::GatheringComplete)),
        1,
        "{:?}",
        net.events[A]
    );
}

// ----- nomination by the controlling peer (RFC 8445 §8.1.1, §7.3.1.5) -----

/// Only B knows the other side: B (controlled) checks A and A answers, so B's pair has
/// succeeded; A never checks. Returns the net and when B's check was answered.
fn b_proved_the_pair() -> (Net, Instant) {
    let mut net = Net::new([AgentConfig::rfc(true), AgentConfig::rfc(false)], [7, 8]);
    net.signal(A, B);
    net.run_for(Duration::from_secs(1));
    let proven = net
        .last_success_response(B, net.now)
        .expect("A answered B's check");
    let pairs = net.agents[B].checklist().pairs();
    assert_eq!(pairs.len(), 1);
    assert_eq!(pairs[0].state, PairState::Succeeded);
    assert!(
        net.agents[B].selected_path().is_none(),
        "controlled: waits for nomination"
    );
    (net, proven)
}

/// A Binding request from A to B with USE-CANDIDATE (A nominates), built by hand with A's
/// real credentials, delivered to B at `at`. Whether B selected the pair at once; B's answer to
/// it is taken off the wire (A never sent the request, so it would not know the answer).
fn nominate_at(net: &mut Net, at: Instant) -> bool {
    net.run_until(at);
    let username = format!(
        "{}:{}",
        net.agents[B].local_credentials().ufrag(),
        net.agents[A].local_credentials().ufrag()
    );
    let key = IntegrityKey::short_term(net.agents[B].local_credentials().pwd().as_bytes());
    let mut buf = [0u8; 512];
    let tid = TransactionId([7; 12]);
    let mut m = MessageBuilder::new(&mut buf, Class::Request, Method::BINDING, tid).unwrap();
    m.add(&Attribute::Username(&username)).unwrap();
    m.add(&Attribute::Priority(0x6e00_00ff)).unwrap();
    m.add(&Attribute::IceControlling(1)).unwrap();
    m.add(&Attribute::UseCandidate).unwrap();
    m.add_message_integrity(&key).unwrap();
    m.add_fingerprint().unwrap();
    let len = m.finish();
    let r = net.agents[B].handle_datagram(
        at,
        Datagram::new(addr(ADDRS[B]), addr(ADDRS[A]), &buf[..len]),
    );
    assert_eq!(r, Received::Consumed);
    let selected = net.agents[B].selected_path().is_some();
    let mut out = [0u8; 1500];
    let answer = net.agents[B]
        .poll_transmit(at, &mut out)
        .expect("an answer");
    let answer = Message::parse(&out[..answer.len]).unwrap();
    assert_eq!(answer.transaction_id(), tid);
    assert_eq!(answer.class(), Class::SuccessResponse);
    selected
}

/// A nomination of a pair whose last answer is within the consent timeout (30 s) selects it
/// on receipt: the controlling side already treats it as nominated, and a re-check would
/// delay the path a round trip for nothing.
#[test]
fn a_nominated_pair_proven_within_thirty_seconds_is_selected_at_once() {
    for after in [Duration::from_secs(1), Duration::from_micros(29_999_999)] {
        let (mut net, proven) = b_proved_the_pair();
        assert!(
            nominate_at(&mut net, proven + after),
            "selected on receipt, {after:?} after the pair was proven"
        );
    }
}

/// A pair last proven 30 s or more ago (a relay nominated long after its check) is checked
/// again first, and selected once that check is answered.
#[test]
fn a_nominated_pair_proven_thirty_seconds_ago_is_checked_again_first() {
    let (mut net, proven) = b_proved_the_pair();
    let at = proven + Duration::from_secs(30);
    assert!(!nominate_at(&mut net, at), "not selected on a stale proof");
    net.run_for(Duration::from_secs(1));
    let connected = net
        .event_at(B, at, is_connected)
        .expect("selected after the check");
    let recheck = net
        .delivered
        .iter()
        .find(|d| d.to_side == A && d.at >= at)
        .expect("B checked the pair again");
    assert!(
        connected >= recheck.at + RTT / 2,
        "selected on the new answer"
    );
}

/// A second host address of A's, which A's checks use before B is told of it.
const A_SECOND: &str = "192.0.2.2:1000";

/// A's best host candidate reaches B first as the source of A's checks, unsignalled: B ranks
/// it peer-reflexive, below A's other (signalled) host candidate, and keeps that one selected
/// although A nominated both (aggressive). Once the candidate is signalled, B ranks its pair
/// as A does, above the selected one, and selects it at once: otherwise the two sides would
/// keep different selected pairs.
#[test]
fn a_nominated_pair_that_outranks_the_selected_one_once_signalled_is_selected() {
    let config = |controlling| AgentConfig {
        punch: None,
        ..AgentConfig::aggressive(controlling)
    };
    let mut net = Net::new([config(true), config(false)], [11, 12]);
    let now = net.now;
    net.agents[A]
        .add_host_candidate(now, addr(A_SECOND))
        .unwrap();
    net.extra_hosts.push((addr(A_SECOND), A));
    let mut hosts = net.agents[A].local_candidates().to_vec();
    hosts.sort_by_key(|c| c.priority);
    let (worse, best) = (hosts[0], hosts[1]);
    assert!(best.priority > worse.priority);
    let creds = *net.agents[A].local_credentials();
    net.agents[B].set_remote_credentials(&creds);
    net.agents[B].add_remote_candidate(now, worse).unwrap();
    net.signal(B, A);
    net.run_for(Duration::from_secs(2));

    assert_eq!(net.agents[A].selected_path().unwrap().local, best.address);
    assert_eq!(net.agents[B].selected_path().unwrap().remote, worse.address);
    let best_pair_valid = |agent: &Agent| {
        agent.checklist().pairs().iter().any(|p| {
            agent.remote_candidates()[p.remote].address == best.address
                && p.nominated
                && p.state == PairState::Succeeded
        })
    };
    assert!(
        best_pair_valid(&net.agents[B]),
        "B holds the peer-reflexive pair, nominated and valid"
    );

    let at = net.now;
    net.agents[B].add_remote_candidate(at, best).unwrap();
    assert_eq!(
        net.agents[B].selected_path().unwrap().remote,
        best.address,
        "selected on the signalled candidate's arrival"
    );
    net.drain();
    assert!(
        net.event_at(B, at, |e| matches!(e, IceEvent::PathChanged(_)))
            .is_some()
    );
}
