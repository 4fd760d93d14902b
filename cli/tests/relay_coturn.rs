//! TURN interop and relay security on loopback: our core client through coturn's `turnserver`
//! and through `holepunch relay`, coturn's `turnutils_uclient` through `holepunch relay`, the
//! default peer deny list, a flood of malformed input (UDP, TCP, and TLS before and after the
//! handshake), and SIGINT.
//!
//! Needs coturn (`turnserver`, `turnutils_uclient`, `turnutils_peer`) on PATH; without it the
//! coturn tests print why they skip, or fail under `CI=true`.
mod relay_common;
mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use holepunch_core::turn::{ClientEvent, Transport, TurnError};
use relay_common::{
    Coturn, LIMIT, LOCALHOST, Pki, Relay, TurnPump, channel_to_local_peer, coturn_installed,
    exchange, exchange_through, tls_junk, tls_to,
};
use support::{Proc, free_port, run_bounded};

#[test]
fn our_client_allocates_binds_and_exchanges_through_coturn_over_udp_and_tcp() {
    if !coturn_installed() {
        return;
    }
    let coturn = Coturn::start();
    exchange_through(coturn.addr, Transport::Udp);
    exchange_through(coturn.addr, Transport::Tcp);
    let mut wrong = TurnPump::new(coturn.addr, Transport::Udp, "wrong");
    wrong.run_until("refusal", |t| !t.events.is_empty());
    assert_eq!(
        wrong.events,
        vec![ClientEvent::Failed {
            error: TurnError::Unauthorized
        }]
    );
}

#[test]
fn our_client_allocates_binds_and_exchanges_through_holepunch_relay() {
    let relay = Relay::start(&["--allow-peer", "127.0.0.0/8"]);
    exchange_through(relay.addr, Transport::Udp);
    exchange_through(relay.addr, Transport::Tcp);
    let mut wrong = TurnPump::new(relay.addr, Transport::Tcp, "wrong");
    wrong.run_until("refusal", |t| !t.events.is_empty());
    assert_eq!(
        wrong.events,
        vec![ClientEvent::Failed {
            error: TurnError::Unauthorized
        }]
    );
}

/// Keepalives every 200 ms over 2 s of silence: the server must take them without a word
/// (indications get no answer, RFC 8489 §6.3.2) and keep serving the allocation.
fn keepalives_are_accepted_silently_by(server: std::net::SocketAddr) {
    let mut turn = TurnPump::with_config(server, Transport::Udp, "alicepass", |c| {
        c.keepalive = Some(holepunch_core::Duration::from_millis(200));
    });
    let (peer, peer_addr, relayed) = channel_to_local_peer(&mut turn);
    let (sent, answers) = (turn.keepalives, turn.control_received);
    let quiet_until = std::time::Instant::now() + Duration::from_secs(2);
    turn.run_until("two seconds of silence", |_| {
        std::time::Instant::now() >= quiet_until
    });
    let keepalives = turn.keepalives - sent;
    assert!(
        (5..=11).contains(&keepalives),
        "{keepalives} keepalives in 2 s at 200 ms"
    );
    assert_eq!(
        turn.control_received, answers,
        "the server answered a keepalive"
    );
    turn.send(peer_addr, b"still here");
    let mut buf = [0u8; 100];
    let (n, from) = peer
        .recv_from(&mut buf)
        .expect("relayed after the keepalives");
    assert_eq!((from, &buf[..n]), (relayed, &b"still here"[..]));
    assert!(
        !turn
            .events
            .iter()
            .any(|e| matches!(e, ClientEvent::Failed { .. })),
        "{:?}",
        turn.events
    );
}

#[test]
fn coturn_and_holepunch_relay_take_keepalives_silently() {
    let relay = Relay::start(&["--allow-peer", "127.0.0.0/8"]);
    keepalives_are_accepted_silently_by(relay.addr);
    if !coturn_installed() {
        return;
    }
    let coturn = Coturn::start();
    keepalives_are_accepted_silently_by(coturn.addr);
}

fn uclient(relay: SocketAddr, peer_port: u16, tcp: bool, pass: &str) -> support::Output {
    let mut cmd = std::process::Command::new("turnutils_uclient");
    if tcp {
        cmd.arg("-t");
    }
    cmd.args([
        "-u",
        "alice",
        "-w",
        pass,
        "-e",
        "127.0.0.1",
        "-r",
        &peer_port.to_string(),
    ])
    .args(["-n", "20", "-m", "1", "-l", "200", "-c", "-X"])
    .args(["-p", &relay.port().to_string(), "127.0.0.1"]);
    run_bounded("turnutils_uclient", &mut cmd, Duration::from_secs(30))
}

#[test]
fn coturn_uclient_allocates_and_echoes_through_holepunch_relay_over_udp_and_tcp() {
    if !coturn_installed() {
        return;
    }
    let relay = Relay::start(&["--allow-peer", "127.0.0.0/8"]);
    let peer_port = free_port(LOCALHOST);
    let mut peer_cmd = std::process::Command::new("turnutils_peer");
    peer_cmd.args(["-L", "127.0.0.1", "-p", &peer_port.to_string()]);
    let _peer = Proc::spawn("turnutils_peer", &mut peer_cmd);
    std::thread::sleep(Duration::from_millis(200));
    for tcp in [false, true] {
        let out = uclient(relay.addr, peer_port, tcp, "alicepass");
        let all = format!("{}\n{}", out.stdout, out.stderr);
        assert_eq!(out.code(), 0, "uclient (tcp: {tcp}) failed: {all}");
        assert!(
            all.contains("tot_send_msgs=20, tot_recv_msgs=20"),
            "tcp {tcp}: {all}"
        );
        assert!(all.contains("Total lost packets 0"), "tcp {tcp}: {all}");
    }
    let out = uclient(relay.addr, peer_port, false, "wrong");
    let all = format!("{}\n{}", out.stdout, out.stderr);
    assert_ne!(out.code(), 0, "{all}");
    assert!(all.contains("Cannot complete Allocation"), "{all}");
}

#[test]
fn default_deny_list_refuses_loopback_private_and_link_local_peers() {
    let relay = Relay::start(&[]);
    let mut turn = TurnPump::new(relay.addr, Transport::Udp, "alicepass");
    turn.run_until("allocation", |t| t.relayed().is_some());
    let denied: Vec<SocketAddr> = ["127.0.0.1:9", "10.1.2.3:9", "169.254.169.254:80"]
        .iter()
        .map(|s| s.parse().expect("addr"))
        .collect();
    for &peer in &denied {
        let now = turn.now();
        turn.client.add_peer(now, peer).expect("peer");
    }
    turn.run_until("refusals", |t| {
        t.events
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    ClientEvent::PeerFailed {
                        error: TurnError::Rejected { code: 403 },
                        ..
                    }
                )
            })
            .count()
            == 2 * denied.len()
    });
}

#[test]
fn malformed_floods_leave_the_relay_serving_with_bounded_memory() {
    let pki = Pki::new("holepunch test CA");
    let (relay, tls) = Relay::start_tls(&pki, &["--allow-peer", "127.0.0.0/8"]);
    let before = relay.rss_kib();
    let flood = UdpSocket::bind((LOCALHOST, 0)).expect("bind");
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let allocate_header = [0x00u8, 0x03, 0xff, 0xfc, 0x21, 0x12, 0xa4, 0x42];
    for i in 0..20_000u32 {
        let len = (next() % 200) as usize + 1;
        let mut d: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        match i % 4 {
            // A STUN header claiming 64 KiB.
            0 if d.len() >= 8 => d[..8].copy_from_slice(&allocate_header),
            // ChannelData claiming more than follows.
            1 if d.len() >= 4 => d[..4].copy_from_slice(&[0x40, 0x00, 0xff, 0xff]),
            // A truncated STUN header.
            2 => d.truncate(19.min(d.len())),
            _ => {}
        }
        let _ = flood.send_to(&d, relay.addr);
    }
    for i in 0..200u32 {
        let Ok(mut s) = TcpStream::connect(relay.addr) else {
            continue;
        };
        let junk: Vec<u8> = match i % 3 {
            0 => [0x00, 0x03, 0xff, 0xfc, 0x21, 0x12, 0xa4, 0x42].repeat(4), // 64 KiB claim, then silence
            1 => vec![0x40, 0x00, 0xff, 0xff, 1, 2, 3], // truncated ChannelData
            _ => (0..300).map(|_| next() as u8).collect(),
        };
        let _ = s.write_all(&junk);
        // Dropped: the relay must clean up after a half-written frame.
    }
    tls_junk(tls, &pki);
    // Still serving, end to end, over each transport.
    exchange_through(relay.addr, Transport::Udp);
    exchange_through(relay.addr, Transport::Tcp);
    let session = tls_to(tls, "localhost", &pki.ca).expect("TLS still served");
    exchange(TurnPump::new_tls(tls, session, "alicepass"));
    let after = relay.rss_kib();
    assert!(
        after < before + 64 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    println!(
        "relay RSS {before} KiB before, {after} KiB after 20,000 datagrams, 200 TCP streams and 360 TLS connections"
    );
}

#[test]
fn sigint_stops_the_relay_cleanly() {
    let mut relay = Relay::start(&[]);
    relay.proc.signal("INT");
    let status = relay.proc.wait_exit(LIMIT).expect("relay exits on SIGINT");
    assert_eq!(status.code(), Some(0), "{}", relay.proc.stderr_so_far());
    assert!(relay.proc.stderr_so_far().contains("SIGINT, stopping"));
}
