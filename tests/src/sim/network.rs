//! The simulated internet: sites behind chains of NATs, public hosts, latency, jitter and loss.
//!
//! A datagram is translated by the sender's NATs (inner to outer) when it is sent, crosses the
//! internet, and is filtered and translated by the receiver's NATs (outer to inner) when it
//! arrives, so NAT state is consulted at the right virtual time: simultaneous-open races come out
//! as they would on a real network. Everything is deterministic for a seed.
//!
//! # Trees of sites
//!
//! A site's outermost router may sit on another site's LAN instead of the internet
//! ([`Site::behind`]): two homes under one carrier NAT are two sites behind a third whose hosts
//! are the home routers' public (100.64/10) addresses. A datagram leaving a nested site goes on
//! through its parent's routers; one arriving at a nested site's router address goes on in
//! through that site's routers, after that site's latency. Hosts of one LAN (or a LAN and the
//! routers of the sites nested on it) reach each other directly, in [`LAN_LATENCY`], with no
//! router involved.
//!
//! # IPv6
//!
//! A site may be dual-stack: its [`Site::hosts`] may hold IPv6 addresses next to the IPv4 ones.
//! IPv6 needs no NAT, so those addresses are global: the internet routes them straight to the
//! site, where they cross the site's [`Site::v6_router`] (a stateful firewall, say) instead of
//! the IPv4 chain. [`Network::send`] and the delivery side pick the path by address family; a
//! datagram whose source and destination families differ is unroutable and dropped. Public
//! hosts may have IPv6 addresses too. A network without IPv6 addresses behaves exactly as
//! before: the IPv4 path, its checks and its random draws are untouched.
//!
//! # NAT64
//!
//! An IPv6-only site may have a stateful NAT64 ([`Site::nat64`], RFC 6146): IPv6 datagrams to
//! an address under its prefix leave as IPv4 from its pool address, to the embedded IPv4
//! address (RFC 6052), through an ordinary [`Nat`] (which holds the mappings, the filtering
//! and their timeouts); IPv4 datagrams to the pool address come back in, their source
//! synthesised under the prefix. This is the only place where a datagram changes family.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, SocketAddr};

use holepunch_core::nat64::Nat64Prefix;
use holepunch_core::rng::Rng;
use holepunch_core::time::{Duration, Instant};

use super::nat::Nat;

/// A private network with hosts behind a chain of routers (innermost first), and optionally
/// IPv6 hosts behind their own router.
#[derive(Debug)]
pub struct Site {
    /// The hosts' addresses: IPv4 ones on the innermost LAN, and IPv6 ones (global, see the
    /// module documentation). One host with several interfaces or addresses lists each.
    pub hosts: Vec<IpAddr>,
    /// IPv4 routers from the LAN outwards; the last one's public IP faces the internet.
    pub chain: Vec<Nat>,
    /// The router IPv6 traffic of this site's IPv6 hosts crosses, in both directions: a
    /// non-translating kind ([`Kind::Firewall`](super::nat::Kind::Firewall) for a stateful
    /// APDF firewall, [`Kind::UdpBlocked`](super::nat::Kind::UdpBlocked),
    /// [`Kind::Open`](super::nat::Kind::Open)); its `public_ip` and hairpin setting are unused.
    /// `None`: no filtering at all (the same as `Kind::Open`). NAT66/NPTv6 is not modelled: a
    /// translating router here drops what it would translate.
    pub v6_router: Option<Nat>,
    /// One-way latency between this site's hosts and the internet core.
    pub latency: Duration,
    /// Probability (0..=1000 per mille) that a datagram entering or leaving is lost.
    pub loss_per_mille: u32,
    /// The site on whose LAN this site's outermost router sits (its public IP is one of that
    /// site's hosts); `None`: it faces the internet.
    pub behind: Option<usize>,
    /// The NAT64 this site's IPv6 hosts reach IPv4 through; `None`: IPv6 reaches only IPv6.
    pub nat64: Option<Nat64Gateway>,
}

/// A stateful NAT64 (RFC 6146) at a site's edge.
#[derive(Debug)]
pub struct Nat64Gateway {
    /// The prefix IPv4 addresses are embedded under (RFC 6052).
    pub prefix: Nat64Prefix,
    /// The IPv4 side: its `public_ip` is the pool address; its mapping and filtering
    /// behaviour are the translator's (RFC 6146 §3.5 requires endpoint-independent mapping).
    pub nat: Nat,
}

/// One-way latency between two hosts of one LAN.
pub const LAN_LATENCY: Duration = Duration::from_millis(1);

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
    /// Carried by a stream (a TCP connection to a relay, see [`Network::send_stream`]), not
    /// as a UDP datagram.
    pub stream: bool,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    at: Instant,
    seq: u64,
    /// Source after the sender's NATs.
    src: SocketAddr,
    /// Destination as addressed (a public address, or a site-local one for hairpins).
    dst: SocketAddr,
    /// Where it enters a site on arrival: the site and the chain depth it goes in through (-1:
    /// on the site's LAN, no router), for hairpinned, LAN and nested-site datagrams; `None`
    /// for datagrams crossing the internet.
    enter: Option<(usize, isize)>,
    bytes: Vec<u8>,
    /// A stream frame (see [`Network::send_stream`]).
    stream: bool,
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
                enter: None,
                bytes: bytes.to_vec(),
                stream: false,
            };
            self.queue.push(Reverse(local));
            return;
        }
        if src.is_ipv4() != dst.is_ipv4() {
            // No NAT64 or other translation between families: unroutable.
            return self.drop_one();
        }
        if src.is_ipv6() {
            return self.send_v6(now, src, dst, bytes);
        }
        let mut src = src;
        let mut latency = Duration::ZERO;
        let mut enter = None;
        let mut site = self.site_of_host(src.ip());
        if site.is_none() {
            match self.public_latency(src.ip()) {
                Some(l) => latency += l,
                None => return self.drop_one(),
            }
        }
        // Out through the sender's site and, for a nested site, the sites around it.
        'out: while let Some(si) = site {
            if self.on_lan(si, dst.ip()) {
                latency += LAN_LATENCY;
                enter = Some((si, -1));
                break;
            }
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
                    enter = Some((si, depth as isize));
                    break 'out;
                }
            }
            site = self.sites[si].behind;
        }
        if enter.is_none() {
            match self.ipv4_latency(dst.ip()) {
                Some(l) => latency += l,
                None => return self.drop_one(), // unroutable (a private address, say)
            }
        }
        self.launch(now, latency, src, dst, enter, bytes);
    }

    /// Whether `ip` is on site `si`'s innermost LAN: one of its hosts, or the router address of
    /// a site nested on it.
    fn on_lan(&self, si: usize, ip: IpAddr) -> bool {
        ip.is_ipv4() && (self.sites[si].hosts.contains(&ip) || self.nested_at(si, ip).is_some())
    }

    /// The site nested on site `si`'s LAN whose outermost router has address `ip`.
    fn nested_at(&self, si: usize, ip: IpAddr) -> Option<usize> {
        self.sites.iter().position(|s| {
            s.behind == Some(si)
                && s.chain
                    .last()
                    .is_some_and(|n| IpAddr::V4(n.public_ip) == ip)
        })
    }

    /// Sends one frame over a stream (TCP) between a site's host and a public host, either way.
    ///
    /// The model of a TCP connection a host opened to a server: outbound TCP crosses every NAT
    /// and firewall profile here (UDP-blocked ones included), the connection's own
    /// retransmissions hide loss, and both ends see each other's addresses unchanged (NAT on
    /// the connection does not matter to the protocols carried). Frames arrive in order.
    pub fn send_stream(&mut self, now: Instant, src: SocketAddr, dst: SocketAddr, bytes: &[u8]) {
        let latency = |ip: IpAddr| {
            self.site_of_host(ip)
                .map(|s| self.sites[s].latency)
                .or_else(|| self.public_latency(ip))
        };
        let (Some(out), Some(back)) = (latency(src.ip()), latency(dst.ip())) else {
            return self.drop_one();
        };
        // In order: never before the stream's previous frame (no jitter on streams).
        self.seq += 1;
        let flight = InFlight {
            at: now + out + back,
            seq: self.seq,
            src,
            dst,
            enter: None,
            bytes: bytes.to_vec(),
            stream: true,
        };
        self.queue.push(Reverse(flight));
    }

    /// Adds jitter to `latency` and puts the datagram in flight.
    fn launch(
        &mut self,
        now: Instant,
        mut latency: Duration,
        src: SocketAddr,
        dst: SocketAddr,
        enter: Option<(usize, isize)>,
        bytes: &[u8],
    ) {
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
            enter,
            bytes: bytes.to_vec(),
            stream: false,
        };
        self.queue.push(Reverse(flight));
    }

    /// The IPv6 half of [`send`](Self::send): the sending site's IPv6 router instead of its
    /// NAT chain, and no translation, so the source stays the host's own address.
    ///
    /// Two IPv6 hosts of one site reach each other the same way, out through the router and
    /// back in (as if the router were the LAN's only path), which keeps the model to one rule.
    fn send_v6(&mut self, now: Instant, src: SocketAddr, dst: SocketAddr, bytes: &[u8]) {
        let mut latency = Duration::ZERO;
        if let Some(si) = self.site_of_host(src.ip()) {
            latency += self.sites[si].latency;
            if self.lost(si) {
                return self.drop_one();
            }
            if let Some(gw) = self.sites[si].nat64.as_mut() {
                if let IpAddr::V6(v6) = dst.ip() {
                    if let Ok(v4) = gw.prefix.extract(v6) {
                        let dst = SocketAddr::new(IpAddr::V4(v4), dst.port());
                        let Some(src) = gw.nat.outbound(now, src, dst) else {
                            return self.drop_one();
                        };
                        let Some(l) = self.ipv4_latency(dst.ip()) else {
                            return self.drop_one();
                        };
                        return self.launch(now, latency + l, src, dst, None, bytes);
                    }
                }
            }
            if let Some(router) = self.sites[si].v6_router.as_mut() {
                if router.outbound(now, src, dst) != Some(src) {
                    // Filtered, or a translating router (NAT66 is not modelled).
                    return self.drop_one();
                }
            }
        } else if let Some(l) = self.public_latency(src.ip()) {
            latency += l;
        } else {
            return self.drop_one();
        }
        match self.site_of_host(dst.ip()).map(|s| self.sites[s].latency) {
            Some(l) => latency += l,
            None => match self.public_latency(dst.ip()) {
                Some(l) => latency += l,
                None => return self.drop_one(),
            },
        }
        self.launch(now, latency, src, dst, None, bytes);
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

    fn arrive(&mut self, f: InFlight) -> Option<Delivery> {
        let at = f.at;
        if f.stream || (f.enter.is_none() && f.src.ip() == f.dst.ip()) {
            // Sent by a host to itself (see `send`): no router involved.
            return Some(Delivery {
                at,
                to: f.dst,
                from: f.src,
                bytes: f.bytes,
                stream: f.stream,
            });
        }
        if f.dst.is_ipv6() {
            return self.arrive_v6(f);
        }
        let (si, start) = match f.enter {
            Some(entry) => entry,
            None => {
                if self.public_latency(f.dst.ip()).is_some() {
                    return Some(Delivery {
                        at,
                        to: f.dst,
                        from: f.src,
                        bytes: f.bytes,
                        stream: false,
                    });
                }
                if let Some(si) = self.site_of_nat64(f.dst.ip()) {
                    return self.arrive_nat64(si, f);
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
        if let Some(child) = self.nested_at(si, dst.ip()) {
            // At a nested site's router: in through that site, after its latency.
            self.seq += 1;
            let inner = InFlight {
                at: at + self.sites[child].latency,
                seq: self.seq,
                src: f.src,
                dst,
                enter: Some((child, self.sites[child].chain.len() as isize - 1)),
                bytes: f.bytes,
                stream: false,
            };
            self.queue.push(Reverse(inner));
            return None;
        }
        Some(Delivery {
            at,
            to: dst,
            from: f.src,
            bytes: f.bytes,
            stream: false,
        })
    }

    /// The IPv6 half of [`arrive`](Self::arrive): a public host, or a site's IPv6 host through
    /// that site's IPv6 router.
    fn arrive_v6(&mut self, f: InFlight) -> Option<Delivery> {
        let delivery = |f: InFlight| Delivery {
            at: f.at,
            to: f.dst,
            from: f.src,
            bytes: f.bytes,
            stream: false,
        };
        if self.public_latency(f.dst.ip()).is_some() {
            return Some(delivery(f));
        }
        let Some(si) = self.site_of_host(f.dst.ip()) else {
            self.drop_one();
            return None;
        };
        if self.lost(si) {
            self.drop_one();
            return None;
        }
        if let Some(router) = self.sites[si].v6_router.as_mut() {
            if router.inbound(f.at, f.src, f.dst) != Some(f.dst) {
                self.drop_one();
                return None;
            }
        }
        Some(delivery(f))
    }

    /// An IPv4 datagram at site `si`'s NAT64 pool address: filtered and translated back to
    /// the IPv6 host, its source synthesised under the prefix.
    fn arrive_nat64(&mut self, si: usize, f: InFlight) -> Option<Delivery> {
        if self.lost(si) {
            self.drop_one();
            return None;
        }
        let gw = self.sites[si].nat64.as_mut()?;
        let (Some(from), Some(to)) = (
            gw.prefix.synthesize_socket(f.src),
            gw.nat.inbound(f.at, f.src, f.dst),
        ) else {
            self.drop_one();
            return None;
        };
        Some(Delivery {
            at: f.at,
            to,
            from,
            bytes: f.bytes,
            stream: false,
        })
    }

    /// The one-way latency from the internet core to IPv4 address `ip`: a site's public
    /// router, a site's NAT64 pool address, or a public host.
    fn ipv4_latency(&self, ip: IpAddr) -> Option<Duration> {
        self.site_of_public(ip)
            .or_else(|| self.site_of_nat64(ip))
            .map(|s| self.sites[s].latency)
            .or_else(|| self.public_latency(ip))
    }

    /// The site whose NAT64 has pool address `ip`.
    fn site_of_nat64(&self, ip: IpAddr) -> Option<usize> {
        self.sites.iter().position(|s| {
            s.nat64
                .as_ref()
                .is_some_and(|g| IpAddr::V4(g.nat.public_ip) == ip)
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

    /// The site facing the internet at `ip` (nested sites' router addresses are not on the
    /// internet).
    fn site_of_public(&self, ip: IpAddr) -> Option<usize> {
        self.sites.iter().position(|s| {
            s.behind.is_none()
                && s.chain
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::nat::{Kind, NatConfig};
    use std::net::Ipv4Addr;

    fn a(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    /// A dual-stack site (IPv4 behind an open router, IPv6 behind `v6`) and an IPv6 server.
    fn net(v6: Kind) -> Network {
        let mut net = Network::new(1);
        net.add_site(Site {
            hosts: vec![
                IpAddr::V4(Ipv4Addr::new(198, 51, 100, 10)),
                a("[2001:db8:a::2]:0").ip(),
            ],
            chain: vec![Nat::new(
                NatConfig::of_kind(Kind::Open),
                Ipv4Addr::new(198, 51, 100, 10),
                1,
            )],
            v6_router: Some(Nat::new(NatConfig::of_kind(v6), Ipv4Addr::UNSPECIFIED, 2)),
            latency: Duration::from_millis(10),
            loss_per_mille: 0,
            behind: None,
            nat64: None,
        });
        net.add_public_host(a("[2001:db8:5::3]:0").ip(), Duration::from_millis(5));
        net
    }

    fn deliver(net: &mut Network) -> Option<Delivery> {
        let at = net.next_arrival()?;
        net.poll_delivery(at)
    }

    #[test]
    fn ipv6_firewall_admits_only_answers() {
        let mut net = net(Kind::Firewall);
        let (host, server) = (a("[2001:db8:a::2]:5000"), a("[2001:db8:5::3]:3478"));
        // Unsolicited: filtered.
        net.send(Instant::ZERO, server, host, b"x");
        assert_eq!(deliver(&mut net), None);
        assert_eq!(net.dropped, 1);
        // Out, untranslated, then the answer comes in through the pinhole.
        net.send(Instant::ZERO, host, server, b"q");
        let out = deliver(&mut net).expect("reaches the server");
        assert_eq!((out.from, out.to), (host, server));
        assert_eq!(out.at, Instant::ZERO + Duration::from_millis(15));
        net.send(out.at, server, host, b"r");
        let back = deliver(&mut net).expect("answer admitted");
        assert_eq!((back.from, back.to), (server, host));
        // Another port on the server is a stranger (APDF).
        net.send(back.at, a("[2001:db8:5::3]:3479"), host, b"x");
        assert_eq!(deliver(&mut net), None);
    }

    #[test]
    fn a_nat64_translates_both_ways_and_filters_by_address() {
        use crate::sim::nat::{Allocation, Filtering, Mapping};
        let prefix: Nat64Prefix = "2001:db8:64::/96".parse().expect("prefix");
        let pool = Ipv4Addr::new(198, 51, 100, 64);
        let mut net = Network::new(1);
        net.add_site(Site {
            hosts: vec![a("[2001:db8:a::2]:0").ip()],
            chain: Vec::new(),
            v6_router: None,
            latency: Duration::from_millis(10),
            loss_per_mille: 0,
            behind: None,
            nat64: Some(Nat64Gateway {
                prefix,
                nat: Nat::new(
                    NatConfig::nat(
                        Mapping::EndpointIndependent,
                        Filtering::AddressDependent,
                        Allocation::Random,
                    ),
                    pool,
                    3,
                ),
            }),
        });
        net.add_public_host(a("203.0.113.3:0").ip(), Duration::from_millis(5));
        let host = a("[2001:db8:a::2]:5000");
        let server = a("203.0.113.3:3478");
        let server_v6 = a("[2001:db8:64::cb00:7103]:3478");
        // Out: the IPv4 server sees the pool address.
        net.send(Instant::ZERO, host, server_v6, b"q");
        let out = deliver(&mut net).expect("reaches the IPv4 server");
        assert_eq!(out.to, server);
        assert_eq!(out.from.ip(), IpAddr::V4(pool));
        assert_eq!(out.at, Instant::ZERO + Duration::from_millis(15));
        // Back: the host sees the server at its synthesised address.
        net.send(out.at, server, out.from, b"r");
        let back = deliver(&mut net).expect("answer admitted");
        assert_eq!((back.from, back.to), (server_v6, host));
        // Another port of the same address gets in (address-dependent filtering)...
        net.send(back.at, a("203.0.113.3:9"), out.from, b"x");
        assert_eq!(
            deliver(&mut net).map(|d| d.from),
            Some(a("[2001:db8:64::cb00:7103]:9"))
        );
        // ...another address does not, and nor does a destination outside the prefix.
        net.add_public_host(a("203.0.113.4:0").ip(), Duration::from_millis(5));
        net.send(back.at, a("203.0.113.4:3478"), out.from, b"x");
        assert_eq!(deliver(&mut net), None);
        net.send(back.at, host, a("[2001:db8:5::3]:3478"), b"q");
        assert_eq!(deliver(&mut net), None);
        assert_eq!(net.dropped, 2);
    }

    #[test]
    fn ipv6_blocked_and_mixed_families_are_dropped() {
        let mut net = net(Kind::UdpBlocked);
        net.send(
            Instant::ZERO,
            a("[2001:db8:a::2]:5000"),
            a("[2001:db8:5::3]:3478"),
            b"q",
        );
        net.send(
            Instant::ZERO,
            a("198.51.100.10:5000"),
            a("[2001:db8:5::3]:3478"),
            b"q",
        );
        assert_eq!(net.next_arrival(), None);
        assert_eq!(net.dropped, 2);
    }
}
