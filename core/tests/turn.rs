//! TURN client and server driven against each other in memory, on a virtual clock: every
//! message, the credential flows, refresh timing, and the relay's security rules.

#[path = "support/verbs.rs"]
mod verbs;
use std::net::SocketAddr;
use verbs::FeedTurn;

use holepunch_core::stun::{Class, IntegrityKey, Message, MessageBuilder, Method, TransactionId};
use holepunch_core::turn::attr::{self, types as tt};
use holepunch_core::turn::client::State;
use holepunch_core::turn::{
    ALLOCATE, ChannelData, Client, ClientConfig, ClientEvent, Received, RestCredentials, Server,
    ServerAction, ServerConfig, Transport, TurnError, Via, channel::frame_len,
};
use holepunch_core::{Duration, Instant};

const CLIENT: &str = "198.51.100.7:40000";
const SERVER: &str = "203.0.113.3:3478";
const PEER: &str = "203.0.113.50:4000";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

/// One server, any number of clients, and a record of what left the relay towards peers.
struct Net {
    server: Server,
    clients: Vec<(SocketAddr, Client)>,
    now: Instant,
    next_port: u16,
    /// (relayed address, peer, payload) sent out of relayed sockets.
    to_peers: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    /// (client index, peer, payload) delivered to clients.
    to_clients: Vec<(usize, SocketAddr, Vec<u8>)>,
    events: Vec<(usize, ClientEvent)>,
    closed_relays: Vec<SocketAddr>,
    /// Every datagram a client sent, and every answer the server sent back to it.
    client_sent: Vec<Vec<u8>>,
    server_sent: Vec<Vec<u8>>,
}

impl Net {
    fn new(config: ServerConfig) -> Self {
        Net {
            server: Server::new(config, 7),
            clients: Vec::new(),
            now: Instant::from_millis(1_000),
            next_port: 50_000,
            to_peers: Vec::new(),
            to_clients: Vec::new(),
            events: Vec::new(),
            closed_relays: Vec::new(),
            client_sent: Vec::new(),
            server_sent: Vec::new(),
        }
    }

    fn add_client(&mut self, from: &str, transport: Transport, user: &str, pass: &str) -> usize {
        let config = ClientConfig::new(addr(SERVER), transport, user, pass);
        self.add_client_with(from, config)
    }

    fn add_client_with(&mut self, from: &str, config: ClientConfig) -> usize {
        let mut client = Client::new(config, 11 + self.clients.len() as u64);
        client.allocate(self.now).expect("allocate starts");
        self.clients.push((addr(from), client));
        self.pump();
        self.clients.len() - 1
    }

    /// Moves every pending output to its destination until nothing moves (bounded).
    fn pump(&mut self) {
        let mut buf = vec![0u8; 70_000];
        for _ in 0..1_000 {
            let mut moved = false;
            for i in 0..self.clients.len() {
                let (from, client) = &mut self.clients[i];
                let transport = client.transport();
                while let Some(t) = client.poll_transmit(self.now, &mut buf) {
                    assert_eq!(t.to, addr(SERVER));
                    self.client_sent.push(buf[..t.len].to_vec());
                    self.server.handle_datagram(
                        self.now,
                        Via::Client(transport),
                        *from,
                        &buf[..t.len],
                    );
                    moved = true;
                }
                while let Some(e) = client.poll_event() {
                    self.events.push((i, e));
                }
            }
            while let Some(action) = self.server.poll_action() {
                moved = true;
                match action {
                    ServerAction::BindRelay { id, .. } => {
                        self.next_port += 1;
                        let relayed = SocketAddr::new(addr(SERVER).ip(), self.next_port);
                        self.server.handle_relay_bound(self.now, id, Some(relayed));
                    }
                    ServerAction::CloseRelay { relayed } => self.closed_relays.push(relayed),
                    _ => {}
                }
            }
            while let Some(t) = self.server.poll_transmit(&mut buf) {
                moved = true;
                match t.via {
                    Via::Relay(relayed) => {
                        self.to_peers.push((relayed, t.to, buf[..t.len].to_vec()))
                    }
                    Via::Client(_) => {
                        self.server_sent.push(buf[..t.len].to_vec());
                        let i = self
                            .clients
                            .iter()
                            .position(|(a, _)| *a == t.to)
                            .expect("known client");
                        let data = buf[..t.len].to_vec();
                        if let Received::Data { peer, payload } =
                            self.clients[i].1.feed(self.now, addr(SERVER), &data)
                        {
                            self.to_clients.push((i, peer, payload.to_vec()));
                        }
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the network never settled");
    }

    /// Advances the virtual clock to `until`, running every timer on the way.
    fn run_until(&mut self, until: Instant) {
        for _ in 0..10_000 {
            let next = self
                .clients
                .iter()
                .filter_map(|(_, c)| c.poll_timeout())
                .chain(self.server.poll_timeout())
                .min()
                .unwrap_or(Instant::FAR_FUTURE);
            if next > until {
                self.now = until;
                self.pump();
                return;
            }
            self.now = next.max(self.now);
            for (_, c) in &mut self.clients {
                c.handle_timeout(self.now);
            }
            self.server.handle_timeout(self.now);
            self.pump();
        }
        panic!("timers never settled");
    }

    fn client(&mut self, i: usize) -> &mut Client {
        &mut self.clients[i].1
    }

    fn send(&mut self, i: usize, peer: SocketAddr, payload: &[u8]) {
        let mut buf = vec![0u8; 2_000];
        let now = self.now;
        let transport = self.clients[i].1.transport();
        let from = self.clients[i].0;
        let t = self.clients[i]
            .1
            .send_to(now, peer, payload, &mut buf)
            .expect("send_to");
        self.server
            .handle_datagram(self.now, Via::Client(transport), from, &buf[..t.len]);
        self.pump();
    }

    fn peer_sends(&mut self, relayed: SocketAddr, peer: SocketAddr, payload: &[u8]) {
        self.server
            .handle_datagram(self.now, Via::Relay(relayed), peer, payload);
        self.pump();
    }

    fn events_of(&self, i: usize) -> Vec<ClientEvent> {
        self.events
            .iter()
            .filter(|(c, _)| *c == i)
            .map(|(_, e)| *e)
            .collect()
    }
}

fn config() -> ServerConfig {
    let mut c = ServerConfig::new("lab.test");
    c.users.push(("alice".into(), "alicepass".into()));
    c.users.push(("bob".into(), "bobpass".into()));
    c
}

fn allocated(net: &Net, i: usize) -> SocketAddr {
    net.events_of(i)
        .iter()
        .find_map(|e| match e {
            ClientEvent::Allocated { relayed, .. } => Some(*relayed),
            _ => None,
        })
        .unwrap_or_else(|| panic!("client {i} not allocated: {:?}", net.events_of(i)))
}

#[test]
fn allocate_bind_and_exchange_data_over_udp() {
    let mut net = Net::new(config());
    let c = net.add_client(CLIENT, Transport::Udp, "alice", "alicepass");
    let relayed = allocated(&net, c);
    assert_eq!(net.client(c).state(), State::Allocated);
    assert_eq!(net.client(c).relayed_address(), Some(relayed));
    assert_eq!(net.client(c).mapped_address(), Some(addr(CLIENT)));

    // Before the channel is bound the client falls back to a Send indication.
    let now = net.now;
    net.client(c).add_peer(now, addr(PEER)).expect("peer added");
    let mut buf = [0u8; 200];
    let t = net
        .client(c)
        .send_to(now, addr(PEER), b"early", &mut buf)
        .expect("send");
    let msg = Message::parse(&buf[..t.len]).expect("a Send indication");
    assert_eq!(msg.class(), Class::Indication);
    net.pump();
    let events = net.events_of(c);
    assert!(events.contains(&ClientEvent::PermissionCreated {
        peer: addr(PEER).ip()
    }));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ClientEvent::ChannelBound { peer, .. } if *peer == addr(PEER)))
    );
    let channel = net.client(c).channel(addr(PEER)).expect("bound");

    // Over the channel: ChannelData out, unpadded on UDP.
    let t = net
        .client(c)
        .send_to(now, addr(PEER), b"hello", &mut buf)
        .expect("send");
    assert_eq!(
        &buf[..t.len],
        &[&channel.get().to_be_bytes()[..], &[0, 5], b"hello"].concat()[..]
    );
    net.send(c, addr(PEER), b"hello");
    assert_eq!(
        net.to_peers.last(),
        Some(&(relayed, addr(PEER), b"hello".to_vec()))
    );

    // And back: the peer's datagram arrives as ChannelData on its channel.
    net.peer_sends(relayed, addr(PEER), b"world");
    assert_eq!(
        net.to_clients.last(),
        Some(&(c, addr(PEER), b"world".to_vec()))
    );
    let last = net.server_sent.last().expect("server sent");
    assert_eq!(ChannelData::parse(last).map(|d| d.channel), Ok(channel));

    // A peer port without a channel (same IP, so permitted) arrives as a Data indication.
    let other_port = addr("203.0.113.50:4001");
    net.peer_sends(relayed, other_port, b"via data");
    assert_eq!(
        net.to_clients.last(),
        Some(&(c, other_port, b"via data".to_vec()))
    );
}

#[test]
fn tcp_pads_channel_data_and_frames_every_message() {
    let mut net = Net::new(config());
    let c = net.add_client(CLIENT, Transport::Tcp, "alice", "alicepass");
    let relayed = allocated(&net, c);
    let now = net.now;
    net.client(c).add_peer(now, addr(PEER)).expect("peer");
    net.pump();
    net.send(c, addr(PEER), b"hello");
    assert_eq!(
        net.to_peers.last(),
        Some(&(relayed, addr(PEER), b"hello".to_vec()))
    );
    net.peer_sends(relayed, addr(PEER), b"abcde");
    let last = net.server_sent.last().expect("sent").clone();
    assert_eq!(last.len(), 12, "4 + 5 padded to 12 on a stream");
    assert_eq!(
        net.to_clients.last(),
        Some(&(c, addr(PEER), b"abcde".to_vec()))
    );
    // Every frame either side wrote is self-delimiting on the stream.
    for frame in net.client_sent.iter().chain(net.server_sent.iter()) {
        let f = frame_len(frame).expect("frames").expect("complete header");
        assert_eq!(f.len(), frame.len());
    }
    // No retransmission over a stream: each request went out exactly once.
    let requests = net
        .client_sent
        .iter()
        .filter(|d| Message::parse(d).is_ok_and(|m| m.class() == Class::Request))
        .count();
    // Allocate (401, retry), CreatePermission, ChannelBind.
    assert_eq!(requests, 4);
}

#[test]
fn wrong_or_missing_credentials_are_refused() {
    let mut net = Net::new(config());
    let c = net.add_client(CLIENT, Transport::Udp, "alice", "wrong");
    assert_eq!(
        net.events_of(c),
        vec![ClientEvent::Failed {
            error: TurnError::Unauthorized
        }]
    );
    let c = net.add_client("198.51.100.8:1", Transport::Udp, "mallory", "x");
    assert_eq!(
        net.events_of(c),
        vec![ClientEvent::Failed {
            error: TurnError::Unauthorized
        }]
    );
    assert_eq!(net.server.stats().allocations, 0);
    assert!(net.server.stats().auth_failures >= 2);
}

/// Builds an authenticated request by hand, so tests can send what our client never would.
fn signed_request(
    method: Method,
    nonce: &str,
    user: &str,
    pass: &str,
    body: impl FnOnce(&mut MessageBuilder<'_>),
) -> Vec<u8> {
    use holepunch_core::stun::{Attribute, PasswordAlgorithmKind};
    let mut buf = vec![0u8; 512];
    let key = IntegrityKey::long_term(PasswordAlgorithmKind::Md5, user, "lab.test", pass);
    let mut b = MessageBuilder::new(&mut buf, Class::Request, method, TransactionId([3; 12]))
        .expect("fits");
    body(&mut b);
    b.add(&Attribute::Username(user)).expect("fits");
    b.add(&Attribute::Realm("lab.test")).expect("fits");
    b.add(&Attribute::Nonce(nonce)).expect("fits");
    b.add_message_integrity(&key).expect("fits");
    let len = b.finish();
    buf.truncate(len);
    buf
}

fn error_code_of(datagram: &[u8]) -> Option<u16> {
    Message::parse(datagram)
        .ok()?
        .error_code()?
        .ok()
        .map(|e| e.code)
}

fn nonce_of(datagram: &[u8]) -> String {
    let msg = Message::parse(datagram).expect("parses");
    msg.text(holepunch_core::stun::attr::types::NONCE)
        .expect("nonce")
        .expect("text")
        .to_string()
}

#[test]
fn stale_and_forged_nonces_are_refused_and_the_client_recovers() {
    let mut net = Net::new(config());
    let c = net.add_client(CLIENT, Transport::Udp, "alice", "alicepass");
    allocated(&net, c);
    let first_401 = net
        .server_sent
        .iter()
        .find(|d| error_code_of(d) == Some(401))
        .expect("401")
        .clone();
    let old_nonce = nonce_of(&first_401);

    // A request with a forged nonce gets 438, not service.
    let forged = signed_request(ALLOCATE, "AAAAAAAA", "bob", "bobpass", |b| {
        attr::add_requested_transport(b, 17).expect("fits")
    });
    net.server.handle_datagram(
        net.now,
        Via::Client(Transport::Udp),
        addr("198.51.100.9:9"),
        &forged,
    );
    let mut out = vec![0u8; 70_000];
    let t = net.server.poll_transmit(&mut out).expect("answered");
    assert_eq!(error_code_of(&out[..t.len]), Some(438));

    // After the nonce lifetime (600 s; the clock moves 1,300 s) the old nonce is stale: 438 with a fresh one.
    net.run_until(net.now + Duration::from_secs(1_300));
    let stale = signed_request(ALLOCATE, &old_nonce, "bob", "bobpass", |b| {
        attr::add_requested_transport(b, 17).expect("fits")
    });
    net.server.handle_datagram(
        net.now,
        Via::Client(Transport::Udp),
        addr("198.51.100.9:9"),
        &stale,
    );
    let t = net.server.poll_transmit(&mut out).expect("answered");
    assert_eq!(error_code_of(&out[..t.len]), Some(438));
    assert_ne!(nonce_of(&out[..t.len]), old_nonce);

    // The nonce from another client's address is no good either (it is bound to the address).
    let c2 = net.add_client("198.51.100.10:10", Transport::Udp, "bob", "bobpass");
    allocated(&net, c2);

    // Our client's refreshes went through 438 → retry on their own; the allocation lives on.
    assert!(
        net.server_sent
            .iter()
            .any(|d| error_code_of(d) == Some(438))
    );
    assert_eq!(net.client(c).state(), State::Allocated);
    assert!(
        net.events_of(c)
            .iter()
            .any(|e| matches!(e, ClientEvent::Refreshed { .. }))
    );
}

#[test]
fn refreshes_keep_allocation_permission_and_channel_alive_for_an_hour() {
    let mut net = Net::new(config());
    let c = net.add_client(CLIENT, Transport::Udp, "alice", "alicepass");
    let relayed = allocated(&net, c);
    let now = net.now;
    net.client(c).add_peer(now, addr(PEER)).expect("peer");
    net.pump();
    let start = net.now;
    net.run_until(start + Duration::from_secs(3_600));
    let events = net.events_of(c);
    let refreshed = events
        .iter()
        .filter(|e| matches!(e, ClientEvent::Refreshed { .. }))
        .count();
    let permissions = events
        .iter()
        .filter(|e| matches!(e, ClientEvent::PermissionCreated { .. }))
        .count();
    let channels = events
        .iter()
        .filter(|e| matches!(e, ClientEvent::ChannelBound { .. }))
        .count();
    // Allocation every 540 s, permission every 240 s, channel every 540 s.
    assert!(refreshed >= 6, "{refreshed} refreshes");
    assert!(permissions >= 15, "{permissions} permissions");
    assert!(channels >= 6, "{channels} channel binds");
    assert!(!events.iter().any(|e| matches!(
        e,
        ClientEvent::Failed { .. } | ClientEvent::PeerFailed { .. }
    )));
    net.peer_sends(relayed, addr(PEER), b"still here");
    assert_eq!(
        net.to_clients.last(),
        Some(&(c, addr(PEER), b"still here".to_vec()))
    );
}

#[test]
fn an_allocation_without_refresh_expires_and_its_socket_closes() {
    let mut net = Net::new(config());
    let c = net.add_client(CLIENT, Transport::Udp, "alice", "alicepass");
    let relayed = allocated(&net, c);
    // Take the client away so nobody refreshes.
    net.clients.clear();
    net.run_until(net.now + Duration::from_secs(601));
    assert_eq!(net.closed_relays, vec![relayed]);
    assert_eq!(net.server.stats().allocations, 0);
}

#[test]
fn close_deallocates() {
    let mut net = Net::new(config());
    let c = net.add_client(CLIENT, Transport::Udp, "alice", "alicepass");
    let relayed = allocated(&net, c);
    let now = net.now;
    net.client(c).close(now);
    net.pump();
    assert_eq!(net.events_of(c).last(), Some(&ClientEvent::Deallocated));
    assert_eq!(net.client(c).state(), State::Closed);
    assert_eq!(net.closed_relays, vec![relayed]);
    assert_eq!(net.server.stats().allocations, 0);
}

#[test]
fn forbidden_peers_are_refused_by_default() {
    let mut net = Net::new(config());
    let c = net.add_client(CLIENT, Transport::Udp, "alice", "alicepass");
    allocated(&net, c);
    for peer in [
        "127.0.0.1:5000",
        "10.1.2.3:5000",
        "169.254.169.254:80",
        "192.168.1.2:5",
        "100.64.0.1:5",
        "203.0.113.3:3478",
    ] {
        let now = net.now;
        net.client(c).add_peer(now, addr(peer)).expect("peer added");
        net.pump();
        let refused = net.events_of(c).iter().filter(|e| {
            matches!(e, ClientEvent::PeerFailed { peer: p, error: TurnError::Rejected { code: 403 } } if *p == addr(peer))
        }).count();
        assert_eq!(refused, 2, "permission and channel to {peer} refused");
    }
    assert!(net.to_peers.is_empty());
}

#[test]
fn allow_list_opens_loopback_for_tests() {
    let mut config = config();
    config
        .policy
        .allow
        .push("127.0.0.0/8".parse().expect("cidr"));
    let mut net = Net::new(config);
    let c = net.add_client(CLIENT, Transport::Udp, "alice", "alicepass");
    let relayed = allocated(&net, c);
    let now = net.now;
    net.client(c)
        .add_peer(now, addr("127.0.0.1:5000"))
        .expect("peer");
    net.pump();
    net.send(c, addr("127.0.0.1:5000"), b"x");
    assert_eq!(
        net.to_peers.last(),
        Some(&(relayed, addr("127.0.0.1:5000"), b"x".to_vec()))
    );
}

#[test]
fn data_from_a_peer_without_permission_is_dropped() {
    let mut net = Net::new(config());
    let c = net.add_client(CLIENT, Transport::Udp, "alice", "alicepass");
    let relayed = allocated(&net, c);
    let before = net.server.stats().dropped;
    net.peer_sends(relayed, addr("203.0.113.66:1234"), b"unsolicited");
    assert!(net.to_clients.is_empty());
    assert_eq!(net.server.stats().dropped, before + 1);
    // And permissions lapse after 300 s without refresh.
    let now = net.now;
    net.client(c).add_peer(now, addr(PEER)).expect("peer");
    net.pump();
    net.peer_sends(relayed, addr(PEER), b"ok");
    assert_eq!(net.to_clients.len(), 1);
}

#[test]
fn a_user_over_quota_is_refused() {
    let mut config = config();
    config.max_allocations_per_user = 2;
    let mut net = Net::new(config);
    let a = net.add_client("198.51.100.1:1", Transport::Udp, "alice", "alicepass");
    let b = net.add_client("198.51.100.2:1", Transport::Udp, "alice", "alicepass");
    let c = net.add_client("198.51.100.3:1", Transport::Udp, "alice", "alicepass");
    let d = net.add_client("198.51.100.4:1", Transport::Udp, "bob", "bobpass");
    allocated(&net, a);
    allocated(&net, b);
    allocated(&net, d);
    assert_eq!(
        net.events_of(c),
        vec![ClientEvent::Failed {
            error: TurnError::Rejected { code: 486 }
        }]
    );
}

#[test]
fn rest_credentials_work_until_they_expire() {
    let mut config = config();
    config.shared_secret = Some(b"north".to_vec());
    config.unix_secs_at_zero = 1_700_000_000;
    let mut net = Net::new(config);
    let good = RestCredentials::new(b"north", "carol", 1_700_010_000);
    let c = net.add_client(
        "198.51.100.1:1",
        Transport::Udp,
        &good.username,
        &good.password,
    );
    allocated(&net, c);
    let expired = RestCredentials::new(b"north", "carol", 1_699_999_999);
    let c = net.add_client(
        "198.51.100.2:1",
        Transport::Udp,
        &expired.username,
        &expired.password,
    );
    assert_eq!(
        net.events_of(c),
        vec![ClientEvent::Failed {
            error: TurnError::Unauthorized
        }]
    );
    let forged = RestCredentials::new(b"south", "carol", 1_700_010_000);
    let c = net.add_client(
        "198.51.100.3:1",
        Transport::Udp,
        &forged.username,
        &forged.password,
    );
    assert_eq!(
        net.events_of(c),
        vec![ClientEvent::Failed {
            error: TurnError::Unauthorized
        }]
    );
}

#[test]
fn bandwidth_cap_drops_the_excess() {
    let mut config = config();
    config.bandwidth_bytes_per_sec = 100_000;
    let mut net = Net::new(config);
    let c = net.add_client(CLIENT, Transport::Udp, "alice", "alicepass");
    allocated(&net, c);
    let now = net.now;
    net.client(c).add_peer(now, addr(PEER)).expect("peer");
    net.pump();
    let payload = [7u8; 1_000];
    // The bucket holds one second of traffic (100 KB) and refills at 100 KB/s; with the clock
    // stopped, 200 KB cannot all pass.
    for _ in 0..200 {
        net.send(c, addr(PEER), &payload);
    }
    let passed = net.to_peers.len();
    assert!((95..=101).contains(&passed), "{passed} of 200 passed");
    net.now += Duration::from_secs(1);
    net.send(c, addr(PEER), &payload);
    assert_eq!(net.to_peers.len(), passed + 1);
}

#[test]
fn unauthenticated_answers_are_never_larger_than_the_request() {
    let mut net = Net::new(config());
    let mut out = vec![0u8; 70_000];
    for extra in 0..64usize {
        for method in [
            Method::BINDING,
            ALLOCATE,
            Method::new(0x004),
            Method::new(0x0ff),
        ] {
            let mut buf = vec![0u8; 256];
            let mut b = MessageBuilder::new(
                &mut buf,
                Class::Request,
                method,
                TransactionId([extra as u8; 12]),
            )
            .expect("fits");
            if method == ALLOCATE {
                attr::add_requested_transport(&mut b, 17).expect("fits");
            }
            if extra >= 4 {
                b.add(&holepunch_core::stun::Attribute::Software(
                    &"x".repeat(extra - 4),
                ))
                .expect("fits");
            }
            let len = b.finish();
            net.server.handle_datagram(
                net.now,
                Via::Client(Transport::Udp),
                addr(CLIENT),
                &buf[..len],
            );
            while let Some(t) = net.server.poll_transmit(&mut out) {
                assert!(
                    t.len <= len,
                    "{} byte answer to a {len} byte request",
                    t.len
                );
            }
        }
    }
    // Our own client's first Allocate is large enough to get its 401.
    let c = net.add_client(CLIENT, Transport::Udp, "alice", "alicepass");
    allocated(&net, c);
}

#[test]
fn channel_bind_rules() {
    let mut net = Net::new(config());
    let c = net.add_client(CLIENT, Transport::Udp, "alice", "alicepass");
    allocated(&net, c);
    let first_401 = net
        .server_sent
        .iter()
        .find(|d| error_code_of(d) == Some(401))
        .expect("401")
        .clone();
    let nonce = nonce_of(&first_401);
    let bind = |channel: u16, peer: &str| {
        let peer = addr(peer);
        signed_request(Method::new(0x009), &nonce, "alice", "alicepass", move |b| {
            b.add(&holepunch_core::stun::Attribute::Other {
                attr: tt::CHANNEL_NUMBER,
                value: &[(channel >> 8) as u8, channel as u8, 0, 0],
            })
            .expect("fits");
            attr::add_xor_address(b, tt::XOR_PEER_ADDRESS, peer).expect("fits");
        })
    };
    let mut out = vec![0u8; 70_000];
    let mut ask = |net: &mut Net, req: Vec<u8>| {
        net.server
            .handle_datagram(net.now, Via::Client(Transport::Udp), addr(CLIENT), &req);
        let t = net.server.poll_transmit(&mut out).expect("answer");
        let msg = Message::parse(&out[..t.len]).expect("parses");
        (msg.class(), error_code_of(&out[..t.len]))
    };
    assert_eq!(
        ask(&mut net, bind(0x4000, PEER)),
        (Class::SuccessResponse, None)
    );
    assert_eq!(
        ask(&mut net, bind(0x4000, PEER)),
        (Class::SuccessResponse, None),
        "refresh"
    );
    assert_eq!(
        ask(&mut net, bind(0x4001, PEER)).1,
        Some(400),
        "peer already on 0x4000"
    );
    assert_eq!(
        ask(&mut net, bind(0x4000, "203.0.113.51:1")).1,
        Some(400),
        "channel taken"
    );
    assert_eq!(
        ask(&mut net, bind(0x3fff, "203.0.113.51:1")).1,
        Some(400),
        "out of range"
    );
    assert_eq!(ask(&mut net, bind(0x4002, "10.0.0.1:1")).1, Some(403));
}

/// Whether a client datagram is a keepalive: a Binding indication with a valid FINGERPRINT.
fn is_keepalive(datagram: &[u8]) -> bool {
    Message::parse(datagram).is_ok_and(|m| {
        m.class() == Class::Indication
            && m.method() == Method::BINDING
            && m.has_fingerprint()
            && m.verify_fingerprint().is_ok()
    })
}

/// Runs `net` second by second for `span`, calling `each_second` first, and returns when each
/// client datagram left (its virtual time) and whether it was a keepalive.
fn sent_over(
    net: &mut Net,
    span: Duration,
    mut each_second: impl FnMut(&mut Net, u64),
) -> Vec<(Instant, bool)> {
    let mut seen = net.client_sent.len();
    let mut out = Vec::new();
    let start = net.now;
    for second in 1..=span.as_secs() {
        each_second(net, second);
        net.run_until(start + Duration::from_secs(second));
        for d in &net.client_sent[seen..] {
            out.push((net.now, is_keepalive(d)));
        }
        seen = net.client_sent.len();
    }
    out
}

#[test]
fn an_idle_udp_allocation_keeps_its_nat_mapping_alive_with_binding_indications() {
    // Nothing else goes to the server between Refreshes once a direct path wins; a NAT that
    // forgets a mapping after 30 s of silence would cost the allocation (437 on the Refresh).
    let mut net = Net::new(config());
    let c = net.add_client(CLIENT, Transport::Udp, "alice", "alicepass");
    allocated(&net, c);
    let start = net.now;
    let sent = sent_over(&mut net, Duration::from_secs(20 * 60), |_, _| {});
    let keepalives = sent.iter().filter(|(_, k)| *k).count();
    let mut last = start;
    for (at, _) in &sent {
        assert!(
            *at - last <= turn_keepalive(),
            "{:?} of silence towards the server before {at:?}",
            *at - last
        );
        last = *at;
    }
    assert!(net.now - last <= turn_keepalive(), "silent at the end");
    // One per 15 s of silence, not more: 80 in 20 minutes, less the two Refreshes' slots.
    assert!(
        (76..=80).contains(&keepalives),
        "{keepalives} keepalives in 20 minutes"
    );
    assert_eq!(net.server.stats().dropped, 0, "keepalives are not errors");
    assert!(
        !net.events_of(c)
            .iter()
            .any(|e| matches!(e, ClientEvent::Failed { .. })),
        "the allocation lives: {:?}",
        net.events_of(c)
    );
}

#[test]
fn no_keepalive_while_data_flows() {
    let mut net = Net::new(config());
    let c = net.add_client(CLIENT, Transport::Udp, "alice", "alicepass");
    allocated(&net, c);
    let now = net.now;
    net.client(c).add_peer(now, addr(PEER)).expect("peer added");
    net.pump();
    // Data every 10 s for 3 minutes: each one postpones the keepalive.
    let sent = sent_over(&mut net, Duration::from_secs(180), |net, second| {
        if second % 10 == 0 {
            net.send(c, addr(PEER), b"data");
        }
    });
    assert!(
        sent.iter().all(|(_, k)| !k),
        "a keepalive went out while data flowed: {sent:?}"
    );
    assert_eq!(net.to_peers.len(), 18, "the data itself was relayed");
}

#[test]
fn no_keepalives_over_tcp_or_when_turned_off() {
    let mut net = Net::new(config());
    let tcp = net.add_client(CLIENT, Transport::Tcp, "alice", "alicepass");
    let mut quiet = ClientConfig::new(addr(SERVER), Transport::Udp, "bob", "bobpass");
    quiet.keepalive = None;
    let udp = net.add_client_with("198.51.100.8:40000", quiet);
    allocated(&net, tcp);
    allocated(&net, udp);
    let sent = sent_over(&mut net, Duration::from_secs(5 * 60), |_, _| {});
    assert!(
        sent.iter().all(|(_, k)| !k),
        "keepalives were sent: {sent:?}"
    );
}

fn turn_keepalive() -> Duration {
    holepunch_core::turn::client::KEEPALIVE
}
