//! holepunch-tokio with `EndpointConfig::turn` against our own relay on loopback: both sides
//! allocate (over UDP, TCP and TLS), signal a relayed candidate, still connect directly (the
//! relay is the fallback), and release their allocations when the connections are dropped.
//! Over TLS, a relay whose certificate does not chain to a trusted CA, or is not valid for the
//! name asked, is refused.

use std::net::SocketAddr;
use std::time::Duration;

use holepunch_core::ice::candidate::CandidateKind;
use holepunch_core::turn::{ClientConfig, PeerPolicy, ServerConfig, Transport};
use holepunch_tokio::ice::{Connection, ConnectionEvent, Endpoint, EndpointConfig};
use holepunch_tokio::relay::{RelayConfig, RelayHandle, RelayTls, serve_relay};
use holepunch_tokio::signalling::ChannelSignalling;
use holepunch_tokio::turn_tls::{self, TurnTrust};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::time::timeout;

/// Bounds every wait, so a hang fails instead of stalling the run.
const LIMIT: Duration = Duration::from_secs(10);

/// A test-only CA and a relay certificate it signed for `localhost` and 127.0.0.1.
struct Pki {
    ca: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

fn make_pki(ca_name: &str) -> Pki {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, ca_name);
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let key = KeyPair::generate().expect("relay key");
    let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("relay params");
    let cert = params.signed_by(&key, &ca, &ca_key).expect("relay cert");
    Pki {
        ca: ca.der().clone(),
        chain: vec![cert.der().clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    }
}

async fn relay() -> RelayHandle {
    relay_with(None).await
}

async fn relay_with(tls: Option<&Pki>) -> RelayHandle {
    let mut server = ServerConfig::new("test");
    server.users = vec![("u".into(), "p".into())];
    server.policy = PeerPolicy {
        allow: vec!["127.0.0.0/8".parse().expect("cidr")],
        ..PeerPolicy::default()
    };
    let listen: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let mut config = RelayConfig::new(listen, listen.ip(), server);
    config.tls = tls.map(|pki| RelayTls {
        listen,
        config: turn_tls::server_config(pki.chain.clone(), pki.key.clone_key()).expect("TLS"),
    });
    serve_relay(config).await.expect("relay starts")
}

async fn endpoint(relay: SocketAddr, transport: Transport) -> Endpoint {
    endpoint_trusting(
        ClientConfig::new(relay, transport, "u", "p"),
        TurnTrust::system(),
    )
    .await
}

async fn endpoint_trusting(turn: ClientConfig, trust: TurnTrust) -> Endpoint {
    let mut config = EndpointConfig::aggressive().with_turn_servers(vec![turn]);
    config.turn_trust = trust;
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

/// Two endpoints allocate over `transport`, connect, and release both allocations on drop.
async fn released_on_drop(transport: Transport) {
    let relay = relay().await;
    let addr = relay.local_addr();
    let ea = endpoint(addr, transport).await;
    let eb = endpoint(addr, transport).await;
    let (a, b) = connect(ea, eb).await;
    allocations_become(&relay, 2).await;
    drop(a);
    drop(b);
    // UDP: Refresh with LIFETIME 0 from each task before it ends (not the 10-minute expiry);
    // TCP: that, or the closed connection.
    allocations_become(&relay, 0).await;
}

#[tokio::test]
async fn allocations_over_udp_are_released_when_the_connections_drop() {
    released_on_drop(Transport::Udp).await;
}

#[tokio::test]
async fn allocations_over_tcp_are_released_when_the_connections_drop() {
    released_on_drop(Transport::Tcp).await;
}

/// Trusts only `ca` (not the system's roots, so a test cannot pass through them).
fn trusting(ca: &CertificateDer<'static>) -> TurnTrust {
    TurnTrust {
        system_roots: false,
        extra_cas: vec![ca.clone()],
    }
}

#[tokio::test]
async fn allocations_over_tls_are_made_and_released_when_the_connections_drop() {
    let pki = make_pki("holepunch test CA");
    let relay = relay_with(Some(&pki)).await;
    let tls = relay.tls_addr().expect("TLS listener");
    // One side checks the name, the other the IP literal (the certificate's IP SAN).
    let mut by_name = ClientConfig::new(tls, Transport::Tls, "u", "p");
    by_name.tls_name = Some("localhost".into());
    let by_ip = ClientConfig::new(tls, Transport::Tls, "u", "p");
    let ea = endpoint_trusting(by_name, trusting(&pki.ca)).await;
    let eb = endpoint_trusting(by_ip, trusting(&pki.ca)).await;
    let (a, b) = connect(ea, eb).await;
    allocations_become(&relay, 2).await;
    drop(a);
    drop(b);
    allocations_become(&relay, 0).await;
}

/// Starts one side against `turn` and returns the error its relay was refused with.
async fn refused(turn: ClientConfig, trust: TurnTrust) -> String {
    let (sa, _sb) = ChannelSignalling::pair();
    let a = endpoint_trusting(turn, trust).await.start(sa, true);
    loop {
        match timeout(LIMIT, a.next_event())
            .await
            .expect("an event in time")
        {
            Some(ConnectionEvent::RelayUnreachable { error, .. }) => return error.to_string(),
            Some(ConnectionEvent::LocalCandidate(c)) => {
                assert_ne!(c.kind, CandidateKind::Relayed, "allocated through {c:?}");
            }
            Some(_) => {}
            None => panic!("the session ended before the relay was refused"),
        }
    }
}

#[tokio::test]
async fn a_relay_certificate_from_another_ca_or_for_another_name_is_refused() {
    let pki = make_pki("holepunch test CA");
    let relay = relay_with(Some(&pki)).await;
    let tls = relay.tls_addr().expect("TLS listener");
    let other = make_pki("another test CA");
    let error = refused(
        ClientConfig::new(tls, Transport::Tls, "u", "p"),
        trusting(&other.ca),
    )
    .await;
    assert!(
        error.contains("TLS handshake failed: invalid peer certificate: UnknownIssuer"),
        "{error}"
    );
    let mut wrong_name = ClientConfig::new(tls, Transport::Tls, "u", "p");
    wrong_name.tls_name = Some("relay.example".into());
    let error = refused(wrong_name, trusting(&pki.ca)).await;
    assert!(
        error.contains("certificate not valid for name \"relay.example\""),
        "{error}"
    );
    assert_eq!(relay.stats().allocations, 0);
    // The refused handshakes left the relay serving.
    let ea = endpoint_trusting(
        ClientConfig::new(tls, Transport::Tls, "u", "p"),
        trusting(&pki.ca),
    )
    .await;
    let eb = endpoint(relay.local_addr(), Transport::Tcp).await;
    let _connected = connect(ea, eb).await;
    allocations_become(&relay, 2).await;
}
