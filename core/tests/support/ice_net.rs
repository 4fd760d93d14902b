//! A tiny in-memory network for two ICE agents, shared by tests and benches.
//!
//! Each side has `hosts` host candidates (one socket each) and the first `srflx` of them sit
//! behind a port-restricted NAT with a known public address (signalled as server-reflexive).
//! Only public addresses route; a public address accepts a datagram only from endpoints its
//! host has sent to (APDF), which is exactly what makes both sides' checks necessary.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use holepunch_core::ice::agent::{Agent, AgentConfig, IceEvent};
use holepunch_core::ice::candidate::Candidate;
use holepunch_core::io::{Datagram, Transmit};
use holepunch_core::time::{Duration, Instant};

use crate::pump::{self, Flight, Pumped, Wire};

/// One side: its agent, sockets and the public addresses of the NATed ones.
pub struct Side {
    pub agent: Agent,
    pub hosts: Vec<SocketAddr>,
    pub publics: Vec<SocketAddr>,
    /// (host socket, remote public endpoint) pairs the NAT has seen outbound.
    pub permissions: HashSet<(SocketAddr, SocketAddr)>,
    pub connected_at: Option<Instant>,
}

/// Two agents and the wire between them.
pub struct Net {
    pub sides: [Side; 2],
    pub now: Instant,
    pub one_way: Duration,
    wire: Wire,
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
            wire: Wire::default(),
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

    /// Runs until both sides are connected or `until`; bounded in steps.
    pub fn run_until(&mut self, until: Instant) {
        pump::run_until(self, until);
    }
}

impl Pumped for Net {
    fn agent(&mut self, side: usize) -> &mut Agent {
        &mut self.sides[side].agent
    }

    fn clock_and_wire(&mut self) -> (&mut Instant, &mut Wire) {
        (&mut self.now, &mut self.wire)
    }

    fn on_transmit(&mut self, side: usize, t: Transmit, bytes: &[u8]) {
        let host = t.from.unwrap();
        // Outbound: only NATed sockets reach the internet, from their public address.
        let Some(public) = self.public_of(side, host) else {
            return;
        };
        self.sides[side].permissions.insert((host, t.to));
        let at = self.now + self.one_way;
        self.wire.send(at, 1 - side, public, t.to, bytes.to_vec());
    }

    fn on_event(&mut self, side: usize, e: IceEvent) {
        if matches!(e, IceEvent::Connected(_)) && self.sides[side].connected_at.is_none() {
            self.sides[side].connected_at = Some(self.now);
        }
    }

    fn deliver(&mut self, f: Flight) {
        let to = f.to_side;
        // Inbound: the public address maps to its host, if the host let this sender in.
        let Some(idx) = self.sides[to].publics.iter().position(|p| *p == f.to) else {
            return;
        };
        let host = self.sides[to].hosts[idx];
        if !self.sides[to].permissions.contains(&(host, f.from)) {
            return;
        }
        let now = self.now;
        let _ = self.sides[to]
            .agent
            .handle_datagram(now, Datagram::new(host, f.from, &f.bytes));
    }

    fn done(&self) -> bool {
        self.sides.iter().all(|s| s.connected_at.is_some())
    }
}
