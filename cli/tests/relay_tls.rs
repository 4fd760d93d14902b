//! TURN over TLS on loopback, with a CA and certificate made by the test: our core client
//! allocates, binds a channel and exchanges data through coturn's `turnserver` and through
//! `holepunch relay` over TLS; coturn's `turnutils_uclient -S` does the same through
//! `holepunch relay`; wrong passwords and certificates from another CA are refused. (Garbage
//! before and after the handshake is in `relay_coturn.rs`'s malformed-input test.)
//!
//! Needs coturn (`turnserver`, `turnutils_uclient`, `turnutils_peer`) on PATH for the interop
//! tests; without it they print why they skip, or fail under `CI=true`.
mod relay_common;
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use holepunch_core::turn::{ClientEvent, TurnError};
use relay_common::{Coturn, LOCALHOST, Pki, Relay, TurnPump, coturn_installed, exchange, tls_to};
use support::{Proc, free_port, run_bounded};

/// Our core client over TLS to `server`, verified for `name` against `pki`'s CA.
fn pump(server: SocketAddr, name: &str, pki: &Pki, pass: &str) -> TurnPump {
    let tls = tls_to(server, name, &pki.ca).expect("TLS handshake with the test CA");
    TurnPump::new_tls(server, tls, pass)
}

/// Allocation with a wrong password over TLS ends in 401.
fn wrong_password_refused(server: SocketAddr, pki: &Pki) {
    let mut wrong = pump(server, "localhost", pki, "wrong");
    wrong.run_until("refusal", |t| !t.events.is_empty());
    assert_eq!(
        wrong.events,
        vec![ClientEvent::Failed {
            error: TurnError::Unauthorized
        }]
    );
}

/// A client trusting another CA refuses `server`'s certificate.
fn other_ca_refused(server: SocketAddr) {
    let other = Pki::new("another test CA");
    let Err(error) = tls_to(server, "localhost", &other.ca) else {
        panic!("a client trusting another CA accepted the relay");
    };
    assert!(
        error.to_string().contains("UnknownIssuer"),
        "another CA's client should refuse with UnknownIssuer, not: {error}"
    );
}

#[test]
fn our_client_allocates_binds_and_exchanges_through_coturn_over_tls() {
    if !coturn_installed() {
        return;
    }
    let pki = Pki::new("holepunch test CA");
    let coturn = Coturn::start_with(Some(&pki));
    let tls = coturn.tls_addr.expect("TLS port");
    exchange(pump(tls, "localhost", &pki, "alicepass"));
    exchange(pump(tls, "127.0.0.1", &pki, "alicepass"));
    wrong_password_refused(tls, &pki);
    other_ca_refused(tls);
}

#[test]
fn our_client_allocates_binds_and_exchanges_through_holepunch_relay_over_tls() {
    let pki = Pki::new("holepunch test CA");
    let (_relay, tls) = Relay::start_tls(&pki, &["--allow-peer", "127.0.0.0/8"]);
    exchange(pump(tls, "localhost", &pki, "alicepass"));
    exchange(pump(tls, "127.0.0.1", &pki, "alicepass"));
    wrong_password_refused(tls, &pki);
    other_ca_refused(tls);
}

fn uclient_tls(relay: SocketAddr, peer_port: u16, pass: &str) -> support::Output {
    let mut cmd = std::process::Command::new("turnutils_uclient");
    cmd.args(["-t", "-S", "-u", "alice", "-w", pass, "-e", "127.0.0.1"])
        .args(["-r", &peer_port.to_string()])
        .args(["-n", "20", "-m", "1", "-l", "200", "-c", "-X"])
        .args(["-p", &relay.port().to_string(), "127.0.0.1"]);
    run_bounded("turnutils_uclient", &mut cmd, Duration::from_secs(30))
}

#[test]
fn coturn_uclient_allocates_and_echoes_through_holepunch_relay_over_tls() {
    if !coturn_installed() {
        return;
    }
    let pki = Pki::new("holepunch test CA");
    let (_relay, tls) = Relay::start_tls(&pki, &["--allow-peer", "127.0.0.0/8"]);
    let peer_port = free_port(LOCALHOST);
    let mut peer_cmd = std::process::Command::new("turnutils_peer");
    peer_cmd.args(["-L", "127.0.0.1", "-p", &peer_port.to_string()]);
    let _peer = Proc::spawn("turnutils_peer", &mut peer_cmd);
    relay_common::wait_udp_echo(SocketAddr::new(LOCALHOST, peer_port));
    let out = uclient_tls(tls, peer_port, "alicepass");
    let all = format!("{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.code(), 0, "uclient over TLS failed: {all}");
    assert!(all.contains("tot_send_msgs=20, tot_recv_msgs=20"), "{all}");
    assert!(all.contains("Total lost packets 0"), "{all}");
    let out = uclient_tls(tls, peer_port, "wrong");
    let all = format!("{}\n{}", out.stdout, out.stderr);
    assert_ne!(out.code(), 0, "{all}");
    assert!(all.contains("Cannot complete Allocation"), "{all}");
}
