//! The simulated internet: sites behind chains of NATs, public hosts, latency, jitter and loss.
//!
//! A datagram is translated by the sender's NATs (inner to outer) when it is sent, crosses the
//! internet, and is filtered and translated by the receiver's NATs (outer to inner) when it
//! arrives, so NAT state is consulted at the right virtual time: simultaneous-open races come out
//! as they would on a real network. Everything is deterministic for a seed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, SocketAddr};

use holepunch_core::rng::Rng;
use holepunch_core::time::{Duration, Instant};

use super::nat::Nat;

/// A private network with hosts behind a chain of routers (innermost first).
#[derive(Debug)]
pub struct Site {
    /// The hosts' addresses on the innermost LAN.
    pub hosts: Vec<IpAddr>,
    /// Routers from the LAN outwards; the last one's public IP faces the internet.
    pub chain: Vec<Nat>,
    /// One-way latency between this site's hosts and the internet core.
    pub latency: Duration,
    /// Probability (0..=1000 per mille) that a datagram entering or leaving is lost.
    pub loss_per_mille: u32,
}

/// A datagram handed to a host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// When it arrived.
    pub at: Instant,
    /// The receiving socket.
    pub to: SocketAddr,
    /// The source as the receiver sees it (after the NATs on the way).
    pub from: SocketAddr,
    /// Payload.
    pub bytes: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    at: Instant,
    seq: u64,
    /// Source after the sender's NATs.
    src: SocketAddr,
    /// Destination as addressed (a public address, or a site-local one for hairpins).
    dst: SocketAddr,
    /// For a hairpinned datagram: the site and chain depth it re-enters at.
    hairpin: Option<(usize, usize)>,
    bytes: Vec<u8>,
}

/// The network: sites, public hosts, and datagrams in flight.
#[derive(Debug)]
pub struct Network {
    /// The sites.
    pub sites: Vec<Site>,
    /// Hosts with public addresses on the internet (servers), and their one-way latency.
    pub public_hosts: Vec<(IpAddr, Duration)>,
    /// Random variation added to every one-way latency, uniformly in `0..=jitter`.
    pub jitter: Duration,
    rng: Rng,
    queue: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    /// Datagrams dropped by NATs, firewalls, loss or routing (for diagnostics).
    pub dropped: u64,
}

impl Network {
    /// An empty network with its own seed for jitter and loss.
    pub fn new(seed: u64) -> Self {
        Network {
            sites: Vec::new(),
            public_hosts: Vec::new(),
            jitter: Duration::ZERO,
            rng: Rng::from_seed(seed),
            queue: BinaryHeap::new(),
            seq: 0,
            dropped: 0,
        }
    }

    /// Adds a site; returns its index.
    pub fn add_site(&mut self, site: Site) -> usize {
        self.sites.push(site);
        self.sites.len() - 1
    }

    /// Adds a public host (a server) reachable at `ip` with one-way latency `latency`.
    pub fn add_public_host(&mut self, ip: IpAddr, latency: Duration) {
        self.public_hosts.push((ip, latency));
    }

    /// Sends a datagram from socket `src` (a host's own address) to `dst`.
    pub fn send(&mut self, now: Instant, src: SocketAddr, dst: SocketAddr, bytes: &[u8]) {
        if src.ip() == dst.ip() {
            // A host talking to itself never leaves it (loopback through its own stack).
            self.seq += 1;
            let local = InFlight {
                at: now,
                seq: self.seq,
                src,
                dst,
                hairpin: None,
                bytes: bytes.to_vec(),
            };
            self.queue.push(Reverse(local));
            return;
        }
        let mut src = src;
        let mut latency = Duration::ZERO;
        let mut hairpin = None;
        if let Some(si) = self.site_of_host(src.ip()) {
            latency += self.sites[si].latency;
            if self.lost(si) {
                return self.drop_one();
            }
            for depth in 0..self.sites[si].chain.len() {
                let nat = &mut self.sites[si].chain[depth];
                let Some(translated) = nat.outbound(now, src, dst) else {
                    return self.drop_one();
                };
                src = translated;
                if dst.ip() == IpAddr::V4(nat.public_ip) {
                    // Addressed to this router's own public address: hairpin back inside.
                    if !nat.config.hairpin {
                        return self.drop_one();
                    }
                    hairpin = Some((si, depth));
                    break;
                }
            }
        } else if let Some(l) = self.public_latency(src.ip()) {
            latency += l;
        } else {
            return self.drop_one();
        }
        if hairpin.is_none() {
            match self.site_of_public(dst.ip()).map(|s| self.sites[s].latency) {
                Some(l) => latency += l,
                None => match self.public_latency(dst.ip()) {
                    Some(l) => latency += l,
                    None => return self.drop_one(), // unroutable (a private address, say)
                },
            }
        }
        if !self.jitter.is_zero() {
            let j = self
                .rng
                .below(holepunch_core::time::duration_micros(self.jitter) + 1);
            latency += Duration::from_micros(j);
        }
        self.seq += 1;
        let flight = InFlight {
            at: now + latency,
            seq: self.seq,
            src,
            dst,
            hairpin,
            bytes: bytes.to_vec(),
        };
        self.queue.push(Reverse(flight));
    }

    /// When the next datagram arrives anywhere.
    pub fn next_arrival(&self) -> Option<Instant> {
        self.queue.peek().map(|f| f.0.at)
    }

    /// The next datagram due by `now` that survives the receiver's NATs, if any. Datagrams
    /// dropped on the way in are consumed silently.
    pub fn poll_delivery(&mut self, now: Instant) -> Option<Delivery> {
        while self.queue.peek().is_some_and(|f| f.0.at <= now) {
            let Reverse(f) = self.queue.pop()?;
            if let Some(d) = self.arrive(f) {
                return Some(d);
            }
        }
        None
    }

    /// Forgets every mapping on one router (`conntrack -F`).
    pub fn flush(&mut self, site: usize, depth: usize) {
        if let Some(n) = self
            .sites
            .get_mut(site)
            .and_then(|s| s.chain.get_mut(depth))
        {
            n.flush();
        }
    }

    fn arrive(&mut self, f: InFlight) -> Option<Delivery> {
        let at = f.at;
        if f.hairpin.is_none() && f.src.ip() == f.dst.ip() {
            // Sent by a host to itself (see `send`): no router involved.
            return Some(Delivery {
                at,
                to: f.dst,
                from: f.src,
                bytes: f.bytes,
            });
        }
        let (si, start) = match f.hairpin {
            Some((si, depth)) => (si, depth as isize),
            None => {
                if self.public_latency(f.dst.ip()).is_some() {
                    return Some(Delivery {
                        at,
                        to: f.dst,
                        from: f.src,
                        bytes: f.bytes,
                    });
                }
                let Some(si) = self.site_of_public(f.dst.ip()) else {
                    self.drop_one();
                    return None;
                };
                (si, self.sites[si].chain.len() as isize - 1)
            }
        };
        if self.lost(si) {
            self.drop_one();
            return None;
        }
        let mut dst = f.dst;
        let mut depth = start;
        while depth >= 0 {
            let nat = &mut self.sites[si].chain[depth as usize];
            match nat.inbound(at, f.src, dst) {
                Some(inner) => dst = inner,
                None => {
                    self.drop_one();
                    return None;
                }
            }
            depth -= 1;
        }
        Some(Delivery {
            at,
            to: dst,
            from: f.src,
            bytes: f.bytes,
        })
    }

    fn lost(&mut self, site: usize) -> bool {
        let p = self.sites[site].loss_per_mille;
        p > 0 && self.rng.below(1000) < u64::from(p)
    }

    fn drop_one(&mut self) {
        self.dropped += 1;
    }

    fn site_of_host(&self, ip: IpAddr) -> Option<usize> {
        self.sites.iter().position(|s| s.hosts.contains(&ip))
    }

    fn site_of_public(&self, ip: IpAddr) -> Option<usize> {
        self.sites.iter().position(|s| {
            s.chain
                .last()
                .is_some_and(|n| IpAddr::V4(n.public_ip) == ip)
        })
    }

    fn public_latency(&self, ip: IpAddr) -> Option<Duration> {
        self.public_hosts
            .iter()
            .find(|(h, _)| *h == ip)
            .map(|(_, l)| *l)
    }
}
