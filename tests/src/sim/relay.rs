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

/// A TURN server on the simulated internet.
#[derive(Debug)]
pub struct SimRelay {
    server: turn::Server,
    listen: SocketAddr,
    relayed: Vec<SocketAddr>,
    next_port: u16,
}

impl SimRelay {
    /// A relay listening on [`RELAY`], added to `net` as a public host; it relays between
    /// the simulated internet's public ranges (which its default policy would refuse: they
    /// are documentation ranges).
    pub fn new(net: &mut Network, seed: u64) -> Self {
        let listen: SocketAddr = RELAY.parse().expect("constant");
        net.add_public_host(listen.ip(), Duration::from_millis(5));
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
        }
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
        let via = if to == self.listen {
            Via::Client(if delivery.stream {
                Transport::Tcp
            } else {
                Transport::Udp
            })
        } else {
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
                Via::Relay(relayed) => net.send(now, relayed, to, &buf[..len]),
            }
        }
    }
}
