//! Invariants of the TURN codec and relay on untrusted input, shared by the `turn_*` fuzz
//! targets and the corpus replay test (`core/tests/fuzz_corpus.rs`), which includes this file
//! with `#[path]`.

use std::net::SocketAddr;

use holepunch_core::Instant;
use holepunch_core::stun::Message;
use holepunch_core::turn::attr::{self, types};
use holepunch_core::turn::channel::{ChannelData, MAX_FRAME_LEN, frame_len};
use holepunch_core::turn::{Server, ServerAction, ServerConfig, Transport, Via};

/// Input of `turn_channel`: bytes as a ChannelData message and as the head of a TURN stream.
///
/// Parsing never panics; what parses re-encodes (padded and unpadded) to bytes that parse back
/// equal; the stream framer's length is bounded and agrees with both parsers.
pub fn check_channel(data: &[u8]) {
    if let Ok(cd) = ChannelData::parse(data) {
        let mut out = vec![0u8; cd.data.len() + 8];
        for pad in [false, true] {
            let len = cd
                .encode(&mut out, pad)
                .expect("a parsed message re-encodes");
            assert_eq!(ChannelData::parse(&out[..len]), Ok(cd));
            assert!(!pad || len % 4 == 0);
        }
    }
    if let Ok(Some(frame)) = frame_len(data) {
        assert!(frame.len() <= MAX_FRAME_LEN);
        if data.len() >= frame.len() {
            let whole = &data[..frame.len()];
            match frame {
                holepunch_core::turn::Frame::Stun(_) => {
                    // The framer only promises the length; parsing may still reject it.
                    let _ = Message::parse(whole);
                }
                holepunch_core::turn::Frame::ChannelData(_) => {
                    assert!(ChannelData::parse(whole).is_ok(), "a complete frame parses");
                }
            }
        }
    }
}

/// Input of `turn_message`: one datagram as STUN, read with every TURN attribute accessor.
pub fn check_message(data: &[u8]) {
    let Ok(msg) = Message::parse(data) else {
        return;
    };
    let _ = attr::lifetime(&msg);
    let _ = attr::requested_transport(&msg);
    let _ = attr::requested_address_family(&msg);
    let _ = attr::channel_number(&msg);
    let _ = attr::data(&msg);
    let _ = attr::xor_address_attr(&msg, types::XOR_RELAYED_ADDRESS);
    for peer in attr::xor_peer_addresses(&msg).take(100) {
        let _ = peer;
    }
    let _ = msg.unknown_comprehension_required(attr::is_known).count();
}

/// Input of `turn_server`: a script of datagrams for a relay with one user and loopback peers
/// allowed. Each record is `[kind, len_hi, len_lo, bytes...]`: kind selects the source (UDP
/// client, TCP client, a peer at a relayed address) and whether the clock moves.
///
/// The server never panics, answers fit the promised bound, and its tables stay bounded.
pub fn check_server(script: &[u8]) {
    let mut config = ServerConfig::new("fuzz");
    config.users.push(("alice".into(), "alicepass".into()));
    config
        .policy
        .allow
        .push("127.0.0.0/8".parse().expect("cidr"));
    config.max_allocations = 8;
    config.max_allocations_per_user = 4;
    config.max_peers_per_allocation = 4;
    let mut server = Server::new(config, 1);
    let mut now = Instant::from_millis(1);
    let mut relays: Vec<SocketAddr> = Vec::new();
    let mut out = vec![0u8; MAX_FRAME_LEN + 128];
    let clients: [SocketAddr; 2] = [
        "192.0.2.1:1000".parse().expect("a"),
        "192.0.2.2:2000".parse().expect("a"),
    ];
    let peer: SocketAddr = "127.0.0.1:4000".parse().expect("a");
    let mut rest = script;
    let mut steps = 0;
    while rest.len() >= 3 && steps < 1_000 {
        steps += 1;
        let kind = rest[0];
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        let datagram = &rest[3..3 + len];
        rest = &rest[3 + len..];
        if kind & 0x80 != 0 {
            now += holepunch_core::Duration::from_secs(u64::from(kind & 0x7f) * 10);
            server.handle_timeout(now);
        }
        let client = clients[usize::from(kind & 1)];
        match (kind >> 1) & 3 {
            0 => server.handle_datagram(now, Via::Client(Transport::Udp), client, datagram),
            1 => server.handle_datagram(now, Via::Client(Transport::Tcp), client, datagram),
            2 => {
                if let Some(&relayed) = relays.first() {
                    server.handle_datagram(now, Via::Relay(relayed), peer, datagram);
                }
            }
            _ => server.handle_connection_closed(now, client),
        }
        while let Some(action) = server.poll_action() {
            match action {
                ServerAction::BindRelay { id, .. } => {
                    let relayed: SocketAddr =
                        SocketAddr::new([127, 0, 0, 1].into(), 50_000 + relays.len() as u16);
                    relays.push(relayed);
                    server.handle_relay_bound(now, id, Some(relayed));
                }
                ServerAction::CloseRelay { relayed } => relays.retain(|r| *r != relayed),
                _ => {}
            }
        }
        while let Some(t) = server.poll_transmit(&mut out) {
            assert!(t.len <= out.len());
        }
        assert!(server.stats().allocations <= 8);
        assert!(relays.len() <= 8 + 1);
    }
}
