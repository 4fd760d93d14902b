//! The probe budget on a relay (issue 14): a direct pair that keeps failing while the relay
//! carries the data is re-probed after waits that double from `upgrade_interval` up to
//! `upgrade_backoff_max`; a new candidate address, `network_changed` and consent loss bring
//! the waits back to `upgrade_interval`; a server-reflexive address the peer replaced is not
//! re-probed at all.
//!
//! Two agents on a simulated wire in virtual time, each with a host and a relayed candidate:
//! only datagrams to or from a relayed address get through, so the host pair fails and the
//! relayed pairs work. Every datagram A sends is logged with its time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, SocketAddr};

use holepunch_core::ice::agent::{Agent, AgentConfig, IceEvent};
use holepunch_core::ice::candidate::{Candidate, CandidateKind};
use holepunch_core::io::{Datagram, Transmit};
use holepunch_core::time::{Duration, Instant};

#[path = "support/pump.rs"]
mod pump;

use pump::{Flight, Pumped, Wire};

const A: usize = 0;
const B: usize = 1;
const HOSTS: [&str; 2] = ["192.0.2.1:1000", "198.51.100.1:2000"];
const RELAYED: [&str; 2] = ["203.0.113.50:50000", "203.0.113.50:50002"];
const TURN_SERVER: &str = "203.0.113.50";
/// The STUN server A asks (nothing answers there).
const STUN: &str = "203.0.113.3:3478";
const RTT: Duration = Duration::from_millis(50);
/// The aggressive profile's check: 22 sends (100 ms doubling to 1 s apart), failing 1 s after
/// the last.
const CHECK_FAILS_AFTER: Duration = Duration::from_millis(19_500);
const CAP: Duration = Duration::from_secs(60);

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn config(controlling: bool) -> AgentConfig {
    let mut c = AgentConfig::aggressive(controlling);
    c.upgrade_backoff_max = CAP;
    c.punch = None;
    c
}

struct Net {
    agents: [Agent; 2],
    now: Instant,
    wire: Wire,
    events: [Vec<(Instant, IceEvent)>; 2],
    /// (time, from, to) of every datagram A sent.
    sent_by_a: Vec<(Instant, SocketAddr, SocketAddr)>,
    /// The relay drops everything.
    relay_down: bool,
}

impl Net {
    /// Both agents connected over the relay, their host pair failing.
    fn on_the_relay() -> Net {
        let now = Instant::from_millis(1);
        let mut agents = [Agent::new(config(true), 11), Agent::new(config(false), 12)];
        for (side, agent) in agents.iter_mut().enumerate() {
            agent.add_host_candidate(now, addr(HOSTS[side])).unwrap();
            let turn: IpAddr = TURN_SERVER.parse().unwrap();
            let relayed = Candidate::relayed(addr(RELAYED[side]), addr(HOSTS[side]), turn);
            agent.add_local_candidate(now, relayed).unwrap();
            agent.gather(now);
        }
        let mut net = Net {
            agents,
            now,
            wire: Wire::default(),
            events: [Vec::new(), Vec::new()],
            sent_by_a: Vec::new(),
            relay_down: false,
        };
        net.signal(A, B);
        net.signal(B, A);
        net.run_for(Duration::from_secs(10));
        for side in [A, B] {
            let path = net.agents[side].selected_path().expect("connected");
            assert!(path.relayed, "side {side}: {path:?}");
        }
        net
    }

    fn signal(&mut self, from: usize, to: usize) {
        let creds = *self.agents[from].local_credentials();
        let candidates = self.agents[from].local_candidates().to_vec();
        self.agents[to].set_remote_credentials(&creds);
        for c in candidates {
            self.agents[to].add_remote_candidate(self.now, c).unwrap();
        }
        self.agents[to].end_of_remote_candidates();
    }

    fn owner(to: SocketAddr) -> Option<usize> {
        [A, B]
            .into_iter()
            .find(|&s| addr(HOSTS[s]) == to || addr(RELAYED[s]) == to)
    }

    fn through_relay(&self, from: SocketAddr, to: SocketAddr) -> bool {
        !self.relay_down && RELAYED.iter().any(|r| addr(r) == from || addr(r) == to)
    }

    fn run_until(&mut self, until: Instant) {
        pump::run_until(self, until);
    }

    fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// When A started a check from its host candidate towards `to` (a send more than 1.5 s
    /// after the previous one: the aggressive profile retransmits at most 1 s apart), from
    /// `since` on.
    fn probe_starts(&self, to: SocketAddr, since: Instant) -> Vec<Instant> {
        let mut starts = Vec::new();
        let mut last: Option<Instant> = None;
        for &(at, from, dest) in &self.sent_by_a {
            if dest != to || from != addr(HOSTS[A]) {
                continue;
            }
            if last.is_none_or(|l| at - l > Duration::from_millis(1500)) && at >= since {
                starts.push(at);
            }
            last = Some(at);
        }
        starts
    }

    /// The waits between a failed check towards `to` and the next one, from `since` on.
    fn waits(&self, to: SocketAddr, since: Instant) -> Vec<Duration> {
        self.probe_starts(to, since)
            .windows(2)
            .map(|w| w[1] - w[0] - CHECK_FAILS_AFTER)
            .collect()
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
        let from = t.from.unwrap();
        if side == A {
            self.sent_by_a.push((self.now, from, t.to));
        }
        // Who receives it (if anyone) is decided on arrival, by `deliver`.
        self.wire
            .send(self.now + RTT / 2, 1 - side, from, t.to, bytes.to_vec());
    }

    fn on_event(&mut self, side: usize, e: IceEvent) {
        self.events[side].push((self.now, e));
    }

    fn deliver(&mut self, f: Flight) {
        let Some(side) = Self::owner(f.to).filter(|_| self.through_relay(f.from, f.to)) else {
            return;
        };
        let _ = self.agents[side].handle_datagram(self.now, Datagram::new(f.to, f.from, &f.bytes));
    }
}

/// Whether `d` is `secs` seconds, give or take the pacing and the wire's jitter-free RTT.
fn about(d: Duration, secs: u64) -> bool {
    let want = Duration::from_secs(secs);
    let slack = Duration::from_millis(200);
    d + slack >= want && d <= want + slack
}

fn assert_waits(waits: &[Duration], want: &[u64], what: &str) {
    assert!(waits.len() >= want.len(), "{what}: waits {waits:?}");
    for (i, (w, s)) in waits.iter().zip(want).enumerate() {
        assert!(
            about(*w, *s),
            "{what}: wait {i} is {w:?}, not {s} s ({waits:?})"
        );
    }
}

#[test]
fn direct_reprobes_on_a_relay_double_up_to_the_cap() {
    let mut net = Net::on_the_relay();
    net.run_for(Duration::from_secs(600));
    let waits = net.waits(addr(HOSTS[B]), Instant::ZERO);
    // upgrade_interval (2 s) doubling, then the 60 s cap for good.
    assert_waits(&waits, &[2, 4, 8, 16, 32, 60, 60, 60], "backoff");
    assert!(
        waits.iter().all(|w| *w <= CAP + Duration::from_millis(200)),
        "{waits:?}"
    );
    // The relayed path carried on all along.
    assert!(net.agents[A].selected_path().is_some_and(|p| p.relayed));
}

/// Runs A into the cap, applies `trigger` at a quiet moment (just after a re-probe failed,
/// when the next one is a full cap away), and returns the waits after it.
fn waits_after(trigger: impl FnOnce(&mut Net)) -> (Net, Instant, Vec<Duration>) {
    let mut net = Net::on_the_relay();
    net.run_for(Duration::from_secs(400));
    // At the cap by now; move to just after a re-probe failed.
    let last = *net
        .probe_starts(addr(HOSTS[B]), Instant::ZERO)
        .last()
        .unwrap();
    net.run_until(last + CHECK_FAILS_AFTER + Duration::from_secs(1));
    let at = net.now;
    trigger(&mut net);
    net.run_for(Duration::from_secs(200));
    let waits = net.waits(addr(HOSTS[B]), at);
    (net, at, waits)
}

/// The host pair was re-probed within `upgrade_interval` (2 s) of `at`, not a cap later.
fn assert_prompt(net: &Net, at: Instant) {
    let starts = net.probe_starts(addr(HOSTS[B]), at);
    assert!(
        starts
            .first()
            .is_some_and(|s| *s - at <= Duration::from_millis(2200)),
        "the host pair is re-probed within upgrade_interval of the reset at {at:?}: {starts:?}"
    );
}

#[test]
fn a_new_remote_candidate_resets_the_backoff() {
    let (net, at, waits) = waits_after(|net| {
        let now = net.now;
        let c = Candidate::host(addr("198.51.100.7:2000"), 1);
        net.agents[A].add_remote_candidate(now, c).unwrap();
    });
    assert_prompt(&net, at);
    assert_waits(&waits, &[2, 4, 8], "after a new remote candidate");
}

#[test]
fn a_new_local_candidate_resets_the_backoff() {
    let (net, at, waits) = waits_after(|net| {
        let now = net.now;
        net.agents[A]
            .add_host_candidate(now, addr("192.0.2.77:1000"))
            .unwrap();
    });
    assert_prompt(&net, at);
    assert_waits(&waits, &[2, 4, 8], "after a new local candidate");
}

#[test]
fn network_changed_resets_the_backoff() {
    let (net, at, waits) = waits_after(|net| {
        let now = net.now;
        net.agents[A].network_changed(now);
    });
    assert_prompt(&net, at);
    assert_waits(&waits, &[2, 4, 8], "after network_changed");
}

/// A new network may make a failed direct pair work: `network_changed` re-probes failed pairs
/// at once, not `upgrade_interval` (2 s) later as the other backoff resets do.
#[test]
fn network_changed_reprobes_failed_pairs_at_once() {
    let (net, at, _) = waits_after(|net| {
        let now = net.now;
        net.agents[A].network_changed(now);
    });
    let starts = net.probe_starts(addr(HOSTS[B]), at);
    assert!(
        starts
            .first()
            .is_some_and(|s| *s - at <= Duration::from_millis(100)),
        "the failed host pair is re-probed at once after network_changed at {at:?}: {starts:?}"
    );
}

#[test]
fn network_changed_asks_the_stun_servers_at_once() {
    let now = Instant::from_millis(1);
    let mut c = config(true);
    c.stun_servers = vec![addr(STUN)];
    let mut agent = Agent::new(c, 5);
    agent.add_host_candidate(now, addr(HOSTS[A])).unwrap();
    agent.gather(now);
    let mut buf = [0u8; 1500];
    let to_stun = |agent: &mut Agent, at: Instant, buf: &mut [u8]| {
        let mut n = 0;
        while let Some(t) = agent.poll_transmit(at, buf) {
            n += usize::from(t.to == addr(STUN));
        }
        n
    };
    assert_eq!(
        to_stun(&mut agent, now, &mut buf),
        1,
        "gathering asks the server"
    );
    // Nothing answers: gathering gives up (7 sends over 3.5 s, then the last wait).
    for k in 1..=100 {
        let at = now + Duration::from_millis(500) * k;
        agent.handle_timeout(at);
        to_stun(&mut agent, at, &mut buf);
    }
    assert!(
        agent.poll_event().is_some(),
        "events: the local candidate, gathering complete"
    );
    let later = now + Duration::from_secs(100);
    agent.handle_timeout(later);
    assert_eq!(
        to_stun(&mut agent, later, &mut buf),
        0,
        "not connected: no re-gathering"
    );
    agent.network_changed(later);
    assert_eq!(
        to_stun(&mut agent, later, &mut buf),
        1,
        "asked again at once"
    );
}

#[test]
fn consent_loss_resets_the_backoff() {
    let (net, at, _) = waits_after(|net| {
        // The relay goes away for longer than consent lasts (30 s), then comes back.
        net.relay_down = true;
        net.run_for(Duration::from_secs(40));
        net.relay_down = false;
    });
    let lost = net.events[A]
        .iter()
        .find(|(t, e)| *t >= at && matches!(e, IceEvent::ConsentLost(_)))
        .map(|(t, _)| *t)
        .expect("A lost consent");
    assert!(lost < at + Duration::from_secs(40), "{lost:?}");
    // The path comes back over the relay, and the host pair is re-probed promptly again.
    assert!(net.agents[A].selected_path().is_some_and(|p| p.relayed));
    let after = net.waits(addr(HOSTS[B]), lost);
    assert_waits(&after, &[2, 4], "after consent loss");
}

#[test]
fn a_replaced_server_reflexive_address_is_not_reprobed() {
    let mut net = Net::on_the_relay();
    let turn: IpAddr = "203.0.113.3".parse().unwrap();
    let old = addr("198.51.100.20:40000");
    let new = addr("198.51.100.20:40002");
    let srflx = |mapped| Candidate::server_reflexive(mapped, addr(HOSTS[B]), turn);
    let now = net.now;
    net.agents[A].add_remote_candidate(now, srflx(old)).unwrap();
    net.run_for(Duration::from_secs(300));
    assert!(
        net.probe_starts(old, Instant::ZERO).len() >= 4,
        "re-probed while current"
    );
    // The peer's mapping changed (it re-gathered after the old one expired): the same
    // foundation and base, another port.
    let at = net.now;
    let cap_wait_before = net.waits(addr(HOSTS[B]), Instant::ZERO).last().copied();
    net.agents[A].add_remote_candidate(at, srflx(new)).unwrap();
    assert_eq!(
        net.agents[A].remote_candidates().last().map(|c| c.kind),
        Some(CandidateKind::ServerReflexive)
    );
    net.run_for(Duration::from_secs(600));
    // A check in progress at `at` may finish; no new one starts afterwards.
    let late = net.probe_starts(old, at + Duration::from_secs(1));
    assert!(
        late.is_empty(),
        "the replaced address was re-probed at {late:?}"
    );
    assert!(
        !net.probe_starts(new, at).is_empty(),
        "the new address is checked"
    );
    // A port change is no new network: the host pair's backoff went on at the cap.
    let waits = net.waits(addr(HOSTS[B]), at);
    assert!(
        cap_wait_before.is_some_and(|w| about(w, 60)),
        "{cap_wait_before:?}"
    );
    assert_waits(&waits, &[60, 60], "after a port change");
}
