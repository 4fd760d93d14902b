//! holepunch-tokio with `EndpointConfig::turn` against our own relay on loopback: both sides
//! allocate (over UDP and over TCP), signal a relayed candidate, still connect directly (the
//! relay is the fallback), and release their allocations when the connections are dropped.

use std::net::SocketAddr;
use std::time::Duration;

use holepunch_core::ice::candidate::CandidateKind;
use holepunch_core::turn::{ClientConfig, PeerPolicy, ServerConfig, Transport};
use holepunch_tokio::ice::{Connection, ConnectionEvent, Endpoint, EndpointConfig};
use holepunch_tokio::relay::{RelayConfig, RelayHandle, serve_relay};
use holepunch_tokio::signalling::ChannelSignalling;
use tokio::time::timeout;

/// Bounds every wait, so a hang fails instead of stalling the run.
const LIMIT: Duration = Duration::from_secs(10);

async fn relay() -> RelayHandle {
    let mut server = ServerConfig::new("test");
    server.users = vec![("u".into(), "p".into())];
    server.policy = PeerPolicy {
        allow: vec!["127.0.0.0/8".parse().expect("cidr")],
        ..PeerPolicy::default()
    };
    let listen: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    serve_relay(RelayConfig::new(listen, listen.ip(), server))
        .await
        .expect("relay starts")
}

async fn endpoint(relay: SocketAddr, transport: Transport) -> Endpoint {
    let turn = ClientConfig::new(relay, transport, "u", "p");
    let config = EndpointConfig::aggressive().with_turn_servers(vec![turn]);
    Endpoint::bind(&["127.0.0.1:0".parse().expect("addr")], config)
        .await
        .expect("bind")
}

/// Starts both sides and waits until each connected and signalled a relayed candidate.
async fn connect(ea: Endpoint, eb: Endpoint) -> (Connection, Connection) {
    let (sa, sb) = ChannelSignalling::pair();
    let (a, b) = (ea.start(sa, true), eb.start(sb, false));
    for c in [&a, &b] {
        let (mut relayed, mut connected) = (false, false);
        while !(relayed && connected) {
            match timeout(LIMIT, c.next_event())
                .await
                .expect("an event in time")
            {
                Some(ConnectionEvent::LocalCandidate(cand)) => {
                    relayed |= cand.kind == CandidateKind::Relayed;
                }
                Some(ConnectionEvent::Connected(p)) => {
                    assert!(
                        !p.relayed,
                        "loopback goes direct, not through the relay: {p:?}"
                    );
                    connected = true;
                }
                Some(ConnectionEvent::Failed(e)) => panic!("failed: {e}"),
                Some(ConnectionEvent::RelayUnreachable { server, error }) => {
                    panic!("relay {server} unreachable: {error}")
                }
                Some(_) => {}
                None => panic!("the session ended"),
            }
        }
    }
    (a, b)
}

/// Waits (bounded) until the relay holds `n` allocations.
async fn allocations_become(relay: &RelayHandle, n: usize) {
    for _ in 0..100 {
        if relay.stats().allocations == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "the relay holds {} allocations, not {n}",
        relay.stats().allocations
    );
}

#[tokio::test]
async fn allocations_over_udp_are_released_when_the_connections_drop() {
    let relay = relay().await;
    let addr = relay.local_addr();
    let ea = endpoint(addr, Transport::Udp).await;
    let eb = endpoint(addr, Transport::Udp).await;
    let (a, b) = connect(ea, eb).await;
    allocations_become(&relay, 2).await;
    drop(a);
    drop(b);
    // Refresh with LIFETIME 0 from each task before it ends (not the 10-minute expiry).
    allocations_become(&relay, 0).await;
}

#[tokio::test]
async fn allocations_over_tcp_are_released_when_the_connections_drop() {
    let relay = relay().await;
    let addr = relay.local_addr();
    let ea = endpoint(addr, Transport::Tcp).await;
    let eb = endpoint(addr, Transport::Tcp).await;
    let (a, b) = connect(ea, eb).await;
    allocations_become(&relay, 2).await;
    drop(a);
    drop(b);
    allocations_become(&relay, 0).await;
}
