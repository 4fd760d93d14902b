//! A tiny in-memory network for two ICE agents, shared by tests and benches.
//!
//! Each side has `hosts` host candidates (one socket each) and the first `srflx` of them sit
//! behind a port-restricted NAT with a known public address (signalled as server-reflexive).
//! Only public addresses route; a public address accepts a datagram only from endpoints its
//! host has sent to (APDF), which is exactly what makes both sides' checks necessary.
#![allow(dead_code, clippy::unwrap_used)]

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use holepunch_core::ice::agent::{Agent, AgentConfig, IceEvent};
use holepunch_core::ice::candidate::Candidate;
use holepunch_core::io::Datagram;
use holepunch_core::time::{Duration, Instant};

/// One side: its agent, sockets and the public addresses of the NATed ones.
pub struct Side {
    pub agent: Agent,
    pub hosts: Vec<SocketAddr>,
    pub publics: Vec<SocketAddr>,
    /// (host socket, remote public endpoint) pairs the NAT has seen outbound.
    pub permissions: HashSet<(SocketAddr, SocketAddr)>,
    pub connected_at: Option<Instant>,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Flight {
    at: Instant,
    seq: u64,
    to_b: bool,
    from: SocketAddr,
    to: SocketAddr,
    bytes: Vec<u8>,
}

/// Two agents and the wire between them.
pub struct Net {
    pub sides: [Side; 2],
    pub now: Instant,
    pub one_way: Duration,
    wire: BinaryHeap<Reverse<Flight>>,
    seq: u64,
}

impl Net {
    /// Sides with `hosts` host candidates each, the first `srflx` of them NATed.
    pub fn new(config: fn(bool) -> AgentConfig, hosts: u8, srflx: u8, rtt: Duration) -> Self {
        let now = Instant::ZERO;
        let side = |i: u8| {
            let controlling = i == 0;
            let mut agent = Agent::new(config(controlling), 100 + u64::from(i));
            let hosts_v: Vec<SocketAddr> = (0..hosts)
                .map(|h| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, i, h, 2)), 5000))
                .collect();
            let publics: Vec<SocketAddr> = (0..srflx)
                .map(|h| {
                    SocketAddr::new(
                        IpAddr::V4(Ipv4Addr::new(198, 51, 100, 10 * (i + 1) + h)),
                        40000,
                    )
                })
                .collect();
            for h in &hosts_v {
                agent.add_host_candidate(now, *h).unwrap();
            }
            for (p, h) in publics.iter().zip(&hosts_v) {
                let server = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 3));
                agent
                    .add_local_candidate(now, Candidate::server_reflexive(*p, *h, server))
                    .unwrap();
            }
            agent.gather(now);
            Side {
                agent,
                hosts: hosts_v,
                publics,
                permissions: HashSet::new(),
                connected_at: None,
            }
        };
        Net {
            sides: [side(0), side(1)],
            now,
            one_way: rtt / 2,
            wire: BinaryHeap::new(),
            seq: 0,
        }
    }

    /// Tells side `to` everything about side `from` (credentials and candidates).
    pub fn signal(&mut self, from: usize, to: usize) {
        let creds = *self.sides[from].agent.local_credentials();
        let cands = self.sides[from].agent.local_candidates().to_vec();
        let now = self.now;
        let agent = &mut self.sides[to].agent;
        agent.set_remote_credentials(&creds);
        for c in cands {
            agent.add_remote_candidate(now, c).unwrap();
        }
        agent.end_of_remote_candidates();
    }

    fn public_of(&self, side: usize, host: SocketAddr) -> Option<SocketAddr> {
        let s = &self.sides[side];
        s.hosts
            .iter()
            .position(|h| *h == host)
            .and_then(|i| s.publics.get(i).copied())
    }

    fn drain(&mut self) {
        let mut buf = [0u8; 1500];
        for i in 0..2 {
            while let Some(t) = self.sides[i].agent.poll_transmit(self.now, &mut buf) {
                let host = t.from.unwrap();
                // Outbound: only NATed sockets reach the internet, from their public address.
                let Some(public) = self.public_of(i, host) else {
                    continue;
                };
                self.sides[i].permissions.insert((host, t.to));
                self.seq += 1;
                let f = Flight {
                    at: self.now + self.one_way,
                    seq: self.seq,
                    to_b: i == 0,
                    from: public,
                    to: t.to,
                    bytes: buf[..t.len].to_vec(),
                };
                self.wire.push(Reverse(f));
            }
            while let Some(e) = self.sides[i].agent.poll_event() {
                if matches!(e, IceEvent::Connected(_)) && self.sides[i].connected_at.is_none() {
                    self.sides[i].connected_at = Some(self.now);
                }
            }
        }
    }

    /// Runs until both sides are connected or `until`; bounded in steps.
    pub fn run_until(&mut self, until: Instant) {
        for _ in 0..1_000_000 {
            self.drain();
            if self.sides.iter().all(|s| s.connected_at.is_some()) {
                return;
            }
            let next = [
                self.sides[0].agent.poll_timeout(),
                self.sides[1].agent.poll_timeout(),
                self.wire.peek().map(|f| f.0.at),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(until)
            .max(self.now);
            if next > until {
                self.now = until;
                return;
            }
            self.now = next;
            while self.wire.peek().is_some_and(|f| f.0.at <= self.now) {
                let Reverse(f) = self.wire.pop().unwrap();
                let to = usize::from(f.to_b);
                // Inbound: the public address maps to its host, if the host let this sender in.
                let Some(idx) = self.sides[to].publics.iter().position(|p| *p == f.to) else {
                    continue;
                };
                let host = self.sides[to].hosts[idx];
                if !self.sides[to].permissions.contains(&(host, f.from)) {
                    continue;
                }
                let now = self.now;
                let _ = self.sides[to]
                    .agent
                    .handle_datagram(now, Datagram::new(host, f.from, &f.bytes));
            }
            for s in &mut self.sides {
                s.agent.handle_timeout(self.now);
            }
        }
        panic!("no convergence");
    }
}
