//! `holepunch relay` batches its sends: a drained burst of datagrams from one socket to one
//! destination goes out in one `sendmsg` with UDP segmentation offload. The wire must carry
//! exactly the datagrams one call each would have: bursts of mixed sizes, both ways through a
//! channel on loopback, arrive complete, in order and with their boundaries.
mod relay_common;
mod support;

use std::time::Duration;

use holepunch_core::turn::Transport;
use relay_common::{Relay, TurnPump, channel_to_local_peer};

/// Datagrams per burst (well within loopback socket buffers: none may be dropped).
const BURST: usize = 96;

/// The `i`th datagram of a burst: runs of equal sizes (what segmentation offload groups), a
/// shorter one closing some runs, a lone large one, and its index in the first two bytes.
fn datagram(i: usize) -> Vec<u8> {
    let len = match i {
        _ if i % 17 == 16 => 1_400,
        _ if i % 7 == 6 => 37,
        _ if i < BURST / 2 => 100,
        _ => 260,
    };
    let mut d = vec![(i % 251) as u8; len];
    d[..2].copy_from_slice(&(i as u16).to_be_bytes());
    d
}

#[test]
fn bursts_of_mixed_sizes_cross_the_relay_with_their_boundaries_both_ways() {
    let relay = Relay::start(&["--allow-peer", "127.0.0.0/8"]);
    let mut turn = TurnPump::new(relay.addr, Transport::Udp, "alicepass");
    let (peer, peer_addr, relayed) = channel_to_local_peer(&mut turn);

    // Peer to client: sent back to back, so they wait together at the relayed socket.
    for i in 0..BURST {
        peer.send_to(&datagram(i), relayed).expect("peer sends");
    }
    turn.run_until("the whole burst", |t| t.data.len() >= BURST);
    let got: Vec<&[u8]> = turn.data.iter().map(|(_, d)| d.as_slice()).collect();
    for (i, d) in got.iter().enumerate() {
        assert_eq!(*d, datagram(i).as_slice(), "peer-to-client datagram {i}");
    }
    assert!(turn.data.iter().all(|(from, _)| *from == peer_addr));
    assert_eq!(turn.data.len(), BURST, "no datagram split or duplicated");

    // Client to peer: the client's channel data waits together at the relay's listener.
    for i in 0..BURST {
        turn.send(peer_addr, &datagram(i));
    }
    let mut buf = vec![0u8; 2_000];
    for i in 0..BURST {
        let (n, from) = peer
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("client-to-peer datagram {i} never came: {e}"));
        assert_eq!(from, relayed);
        assert_eq!(
            &buf[..n],
            datagram(i).as_slice(),
            "client-to-peer datagram {i}"
        );
    }
    peer.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    assert!(
        peer.recv_from(&mut buf).is_err(),
        "no datagram split or duplicated"
    );
}
