//! The TURN data path allocates nothing (design §4): once a channel is bound, the client's
//! `send_to` and `handle_datagram`, and the server's ChannelData, Send indication and peer
//! datagram handling with `poll_transmit`, are measured with a counting global allocator.

#[path = "support/verbs.rs"]
mod verbs;
use std::net::SocketAddr;
use verbs::FeedTurn;

use holepunch_core::turn::{
    Client, ClientConfig, ClientEvent, Received, Server, ServerAction, ServerConfig, Transport,
    Via, client,
};
use holepunch_core::{Duration, Instant};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::allocations;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

/// Moves everything between one client and the server until quiet (bounded).
fn pump(client: &mut Client, server: &mut Server, now: Instant, from: SocketAddr) {
    let mut buf = vec![0u8; 70_000];
    for _ in 0..100 {
        let mut moved = false;
        while let Some(t) = client.poll_transmit(now, &mut buf) {
            server.handle_datagram(now, Via::Client(client.transport()), from, &buf[..t.len]);
            moved = true;
        }
        while let Some(a) = server.poll_action() {
            moved = true;
            if let ServerAction::BindRelay { id, .. } = a {
                server.handle_relay_bound(now, id, Some(addr("203.0.113.3:50000")));
            }
        }
        while let Some(t) = server.poll_transmit(&mut buf) {
            moved = true;
            if let Via::Client(_) = t.via {
                let data = buf[..t.len].to_vec();
                client.feed(now, client.server(), &data);
            }
        }
        if !moved {
            return;
        }
    }
}

#[test]
fn steady_state_data_path_allocates_nothing() {
    for transport in [Transport::Udp, Transport::Tcp] {
        let mut config = ServerConfig::new("lab.test");
        config.users.push(("alice".into(), "alicepass".into()));
        config.bandwidth_bytes_per_sec = 10_000_000;
        let mut server = Server::new(config, 3);
        let from = addr("198.51.100.7:40000");
        let peer = addr("203.0.113.50:4000");
        let relayed = addr("203.0.113.3:50000");
        let mut client = Client::new(
            ClientConfig::new(addr("203.0.113.3:3478"), transport, "alice", "alicepass"),
            5,
        );
        let mut now = Instant::from_millis(1);
        client.allocate(now).expect("allocate");
        pump(&mut client, &mut server, now, from);
        client.add_peer(now, peer).expect("peer");
        pump(&mut client, &mut server, now, from);
        let mut events = Vec::new();
        while let Some(e) = client.poll_event() {
            events.push(e);
        }
        assert!(
            events
                .iter()
                .any(|e| matches!(e, ClientEvent::ChannelBound { .. })),
            "{events:?}"
        );

        let mut wire = vec![0u8; 2_000];
        let mut out = vec![0u8; 70_000];
        let payload = [0x5au8; 1_000];
        // Warm up once (first use of any lazily sized state), then measure many packets.
        for round in 0..2 {
            now += Duration::from_millis(1);
            let (n, ()) = allocations(|| {
                for _ in 0..100 {
                    // Client → relay → peer over the channel.
                    let t = client
                        .send_to(now, peer, &payload, &mut wire)
                        .expect("send");
                    server.handle_datagram(now, Via::Client(transport), from, &wire[..t.len]);
                    let t = server.poll_transmit(&mut out).expect("relayed");
                    assert_eq!(
                        (t.via, t.to, t.len),
                        (Via::Relay(relayed), peer, payload.len())
                    );
                    // Peer → relay → client as ChannelData.
                    server.handle_datagram(now, Via::Relay(relayed), peer, &payload);
                    let t = server.poll_transmit(&mut out).expect("to client");
                    let got = client.feed(now, client.server(), &out[..t.len]);
                    assert!(
                        matches!(got, Received::Data { payload: p, .. } if p.len() == payload.len())
                    );
                    // A peer port without a channel: Data indication.
                    let other = addr("203.0.113.50:4001");
                    server.handle_datagram(now, Via::Relay(relayed), other, &payload);
                    let t = server.poll_transmit(&mut out).expect("to client");
                    let got = client.feed(now, client.server(), &out[..t.len]);
                    assert!(matches!(got, Received::Data { peer: p, .. } if p == other));
                    let _ = client.poll_timeout();
                    let _ = server.poll_timeout();
                }
                // An idle spell: over UDP a keepalive goes out, and the server takes it.
                now += client::KEEPALIVE;
                client.handle_timeout(now);
                while let Some(t) = client.poll_transmit(now, &mut wire) {
                    server.handle_datagram(now, Via::Client(transport), from, &wire[..t.len]);
                }
                assert!(
                    server.poll_transmit(&mut out).is_none(),
                    "keepalives get no answer"
                );
            });
            if round == 1 {
                assert_eq!(
                    n, 0,
                    "{transport:?}: the data path allocated {n} times in 100 rounds"
                );
            }
        }
    }
}
