//! A TURN relay on the simulated internet: the core's sans-IO [`turn::Server`] on a public
//! host, its relayed sockets on the same IP, pumped like the STUN server. Clients reach it over
//! UDP, or over TCP ([`Network::send_stream`]) from sites that block UDP.

use std::net::SocketAddr;

use holepunch_core::time::{Duration, Instant};
use holepunch_core::turn::{
    self, Cidr, PeerPolicy, ServerAction, ServerConfig, ServerTransmit, Transport, Via,
};

use super::network::{Delivery, Network};

/// The relay's listening address on the simulated internet.
pub const RELAY: &str = "203.0.113.9:3478";
/// The username every simulated peer uses.
pub const RELAY_USER: &str = "sim";
/// Its password.
pub const RELAY_PASSWORD: &str = "sim-secret";
/// The realm.
pub const RELAY_REALM: &str = "holepunch.sim";

/// The first relayed port handed out.
const FIRST_RELAYED_PORT: u16 = 49152;

/// What one relay did in a run (for the population's relay-load figures).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Relayed sockets it bound (one per allocation).
    pub allocations: u64,
    /// Datagrams that crossed a relayed socket, either way: each relayed datagram is counted
    /// once, when it arrives from a peer or when it leaves for one.
    pub relayed_packets: u64,
    /// The bytes of those datagrams (the payloads as the peers see them, without the TURN
    /// framing between client and relay).
    pub relayed_bytes: u64,
    /// Every byte that reached the relay, on its listener or its relayed sockets (TURN
    /// control and framed data included).
    pub bytes_in: u64,
}

/// A TURN server on the simulated internet.
#[derive(Debug)]
pub struct SimRelay {
    server: turn::Server,
    listen: SocketAddr,
    relayed: Vec<SocketAddr>,
    next_port: u16,
    stats: RelayStats,
}

impl SimRelay {
    /// A relay listening on [`RELAY`], added to `net` as a public host; it relays between
    /// the simulated internet's public ranges (which its default policy would refuse: they
    /// are documentation ranges).
    pub fn new(net: &mut Network, seed: u64) -> Self {
        let listen: SocketAddr = RELAY.parse().expect("constant");
        Self::at(net, listen, Duration::from_millis(5), seed)
    }

    /// A relay like [`new`](Self::new)'s listening on `listen` (a public address in
    /// 203.0.113.0/24), `latency` one way from the internet core.
    pub fn at(net: &mut Network, listen: SocketAddr, latency: Duration, seed: u64) -> Self {
        net.add_public_host(listen.ip(), latency);
        let mut config = ServerConfig::new(RELAY_REALM);
        config.users = vec![(RELAY_USER.into(), RELAY_PASSWORD.into())];
        config.policy = PeerPolicy {
            allow: ["198.51.100.0/24", "203.0.113.0/24"]
                .iter()
                .map(|c| c.parse::<Cidr>().expect("constant"))
                .collect(),
            ..PeerPolicy::default()
        };
        SimRelay {
            server: turn::Server::new(config, seed),
            listen,
            relayed: Vec::new(),
            next_port: FIRST_RELAYED_PORT,
            stats: RelayStats::default(),
        }
    }

    /// What it did so far.
    pub fn stats(&self) -> RelayStats {
        self.stats
    }

    /// The address clients allocate on.
    pub fn address(&self) -> SocketAddr {
        self.listen
    }

    /// Whether a datagram to `to` is for this relay (its listener or a relayed socket).
    pub fn owns(&self, to: SocketAddr) -> bool {
        to == self.listen || self.relayed.contains(&to)
    }

    /// Feeds a datagram (or, with `stream`, a TCP frame) that arrived at `to` from `from`,
    /// then sends what the server answers.
    pub fn handle(&mut self, now: Instant, net: &mut Network, delivery: &Delivery, buf: &mut [u8]) {
        let (to, from, bytes) = (delivery.to, delivery.from, &delivery.bytes);
        self.stats.bytes_in += bytes.len() as u64;
        let via = if to == self.listen {
            Via::Client(if delivery.stream {
                Transport::Tcp
            } else {
                Transport::Udp
            })
        } else {
            self.stats.relayed_packets += 1;
            self.stats.relayed_bytes += bytes.len() as u64;
            Via::Relay(to)
        };
        self.server.handle_datagram(now, via, from, bytes);
        self.pump(now, net, buf);
    }

    /// Runs the server's timers (allocation expiry).
    pub fn handle_timeout(&mut self, now: Instant, net: &mut Network, buf: &mut [u8]) {
        self.server.handle_timeout(now);
        self.pump(now, net, buf);
    }

    /// When the server next needs [`handle_timeout`](Self::handle_timeout).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.server.poll_timeout()
    }

    /// Binds relayed sockets the server asks for and sends its transmits.
    fn pump(&mut self, now: Instant, net: &mut Network, buf: &mut [u8]) {
        loop {
            while let Some(action) = self.server.poll_action() {
                match action {
                    ServerAction::BindRelay {
                        id, ipv6: false, ..
                    } => {
                        let bound = SocketAddr::new(self.listen.ip(), self.next_port);
                        self.next_port = self.next_port.wrapping_add(2).max(FIRST_RELAYED_PORT);
                        self.relayed.push(bound);
                        self.stats.allocations += 1;
                        self.server.handle_relay_bound(now, id, Some(bound));
                    }
                    ServerAction::BindRelay { id, .. } => {
                        self.server.handle_relay_bound(now, id, None);
                    }
                    ServerAction::CloseRelay { relayed } => self.relayed.retain(|r| *r != relayed),
                    _ => {}
                }
            }
            let Some(ServerTransmit { via, to, len }) = self.server.poll_transmit(buf) else {
                break;
            };
            match via {
                Via::Client(Transport::Udp) => net.send(now, self.listen, to, &buf[..len]),
                Via::Client(_) => net.send_stream(now, self.listen, to, &buf[..len]),
                Via::Relay(relayed) => {
                    self.stats.relayed_packets += 1;
                    self.stats.relayed_bytes += len as u64;
                    net.send(now, relayed, to, &buf[..len]);
                }
            }
        }
    }
}
