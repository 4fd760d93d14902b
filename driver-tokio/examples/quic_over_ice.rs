//! A quinn user adopting holepunch: ICE finds the path, then an ordinary `quinn::Connection`
//! runs over it. Both peers live in this process on loopback, with an in-process signalling
//! channel; in a real program each side runs one half, with the `holepunch signal` rendezvous
//! ([`holepunch_tokio::signal::SignalClient`]) or any channel of its own, and sends its key's
//! fingerprint to the peer with its offer (`quic_identity::key_line`).
//!
//! `cargo run -p holepunch-tokio --example quic_over_ice`

use std::net::SocketAddr;
use std::sync::Arc;

use holepunch_tokio::ice::{Endpoint, EndpointConfig};
use holepunch_tokio::quic;
use holepunch_tokio::quic_identity::{Fingerprint, Identity};
use holepunch_tokio::signalling::ChannelSignalling;

/// One peer: ICE over `signalling`, then QUIC, pinned to the peer's key.
async fn peer(
    signalling: ChannelSignalling,
    controlling: bool,
    me: Identity,
    them: Fingerprint,
) -> Result<(quinn::Endpoint, quinn::Connection), Box<dyn std::error::Error>> {
    let local: [SocketAddr; 1] = ["127.0.0.1:0".parse()?];
    let ice = Endpoint::bind(&local, EndpointConfig::default()).await?;
    let ice = Arc::new(ice.connect(signalling, controlling).await?);
    // The few lines a quinn user needs: an endpoint on the ICE path, one connection.
    Ok(quic::connect(ice, controlling, &me, them).await?)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (alice, bob) = (Identity::generate()?, Identity::generate()?);
    let (fa, fb) = (alice.fingerprint(), bob.fingerprint());
    let (sa, sb) = ChannelSignalling::pair();
    let (a, b) = tokio::join!(peer(sa, true, alice, fb), peer(sb, false, bob, fa));
    let ((_ea, a), (_eb, b)) = (a?, b?);
    let client = async {
        let (mut send, mut recv) = a.open_bi().await?;
        send.write_all(b"hello over the punched path").await?;
        send.finish()?;
        let reply = recv.read_to_end(1024).await?;
        Ok::<_, Box<dyn std::error::Error>>(reply)
    };
    let server = async {
        let (mut send, mut recv) = b.accept_bi().await?;
        let got = recv.read_to_end(1024).await?;
        println!("bob got: {}", String::from_utf8_lossy(&got));
        send.write_all(b"hello back").await?;
        send.finish()?;
        let _ = send.stopped().await;
        Ok::<_, Box<dyn std::error::Error>>(())
    };
    let (reply, served) = tokio::join!(client, server);
    served?;
    println!("alice got: {}", String::from_utf8_lossy(&reply?));
    Ok(())
}
