//! holepunch-tokio: `Connection::restart` on loopback. One side restarts; the other sees the new
//! ufrag and restarts too; both select a path again and datagrams flow both ways.

use std::time::Duration;

use holepunch_tokio::Signalling;
use holepunch_tokio::ice::{Connection, ConnectionEvent, Endpoint, EndpointConfig, RestartReason};
use holepunch_tokio::signalling::ChannelSignalling;
use tokio::time::timeout;

/// Bounds every wait, so a hang fails instead of stalling the run.
const LIMIT: Duration = Duration::from_secs(10);

/// A (controlling) and B connected on loopback over the given signalling, each on an endpoint
/// of its own with `config`; a first datagram has gone from A to B.
async fn connected_pair(
    sa: ChannelSignalling,
    sb: ChannelSignalling,
    config: EndpointConfig,
) -> (Connection, Connection) {
    let bind = |config: EndpointConfig| async move {
        Endpoint::bind(&["127.0.0.1:0".parse().expect("addr")], config)
            .await
            .expect("bind")
    };
    let (ea, eb) = (bind(config.clone()).await, bind(config).await);
    let (a, b) = timeout(LIMIT, async {
        tokio::join!(ea.connect(sa, true), eb.connect(sb, false))
    })
    .await
    .expect("connected in time");
    let (a, b) = (a.expect("a connects"), b.expect("b connects"));
    get_through(&a, &b, b"before").await;
    (a, b)
}

/// Waits for a `PathChanged` or `Connected` event (a path selected on the new credentials),
/// counting the local candidates signalled meanwhile and noting why ICE restarted.
async fn path_selected_again(c: &Connection) -> (usize, Vec<RestartReason>) {
    let mut candidates = 0;
    let mut restarts = Vec::new();
    loop {
        match timeout(LIMIT, c.next_event())
            .await
            .expect("an event in time")
        {
            Some(ConnectionEvent::PathChanged(_) | ConnectionEvent::Connected(_)) => {
                return (candidates, restarts);
            }
            Some(ConnectionEvent::LocalCandidate(_)) => candidates += 1,
            Some(ConnectionEvent::Restarted(why)) => restarts.push(why),
            Some(ConnectionEvent::Failed(e)) => panic!("failed: {e}"),
            Some(_) => {}
            None => panic!("the session ended"),
        }
    }
}

/// Sends `payload` from `from` until `to` receives it (datagrams may be lost), bounded.
async fn get_through(from: &Connection, to: &Connection, payload: &[u8]) {
    let mut buf = [0u8; 64];
    for _ in 0..50 {
        from.send(payload).await.expect("send");
        if let Ok(Ok(n)) = timeout(Duration::from_millis(100), to.recv(&mut buf)).await {
            if &buf[..n] == payload {
                return;
            }
        }
    }
    panic!("{payload:?} did not get through");
}

#[tokio::test]
async fn a_restart_on_one_side_reconnects_both() {
    let (sa, sb) = ChannelSignalling::pair();
    let (a, b) = connected_pair(sa, sb, EndpointConfig::aggressive()).await;

    a.restart().await.expect("restart signalled");
    // The old path carries data while the new checks run.
    assert!(a.path().is_some(), "the old path stays during the restart");
    let (a_candidates, a_why) = path_selected_again(&a).await;
    let (b_candidates, b_why) = path_selected_again(&b).await;
    assert_eq!(a_why, [RestartReason::Requested]);
    assert_eq!(b_why, [RestartReason::PeerRestarted]);
    assert!(a_candidates > 0, "A signalled its candidates again");
    assert!(
        b_candidates > 0,
        "B restarted too and signalled its candidates"
    );
    get_through(&a, &b, b"after a").await;
    get_through(&b, &a, b"after b").await;
}

/// A signalling pair whose B side goes through a forwarder that keeps A's end open after B is
/// gone, as a signal server does for a peer that dropped off the network. The forwarder
/// returns A's far end when B's side closes; holding it keeps A's signalling up.
fn signalling_outliving_b() -> (
    ChannelSignalling,
    ChannelSignalling,
    tokio::task::JoinHandle<ChannelSignalling>,
) {
    let (sa, mut a_peer_end) = ChannelSignalling::pair();
    let (mut b_far_end, sb) = ChannelSignalling::pair();
    let forwarder = tokio::spawn(async move {
        loop {
            tokio::select! {
                line = b_far_end.recv() => match line {
                    Ok(Some(l)) => { let _ = a_peer_end.send(&l).await; }
                    _ => break,
                },
                line = a_peer_end.recv() => match line {
                    Ok(Some(l)) => { let _ = b_far_end.send(&l).await; }
                    _ => break,
                },
            }
        }
        a_peer_end
    });
    (sa, sb, forwarder)
}

/// A and B connected over [`signalling_outliving_b`] with a 2 s consent timeout, then B gone:
/// A's path loses consent while A's signalling stays open. Returns A and A's far end.
async fn a_loses_b(restart_on_consent_loss: bool) -> (Connection, ChannelSignalling) {
    let (sa, sb, forwarder) = signalling_outliving_b();
    let mut config = EndpointConfig::aggressive();
    config.agent.consent_timeout = Duration::from_secs(2);
    config.restart_on_consent_loss = restart_on_consent_loss;
    let (a, b) = connected_pair(sa, sb, config).await;
    drop(b);
    let a_end = timeout(LIMIT, forwarder)
        .await
        .expect("forwarder ends")
        .expect("joins");
    (a, a_end)
}

/// A's events up to and including `ConsentLost` and then for `after`, as names.
async fn events_around_consent_loss(a: &Connection, after: Duration) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        match timeout(LIMIT, a.next_event())
            .await
            .expect("an event in time")
        {
            Some(ConnectionEvent::ConsentLost(_)) => break,
            Some(ConnectionEvent::Restarted(why)) => seen.push(format!("restarted {why:?}")),
            Some(ConnectionEvent::Failed(e)) => panic!("failed: {e} ({seen:?})"),
            Some(_) => {}
            None => panic!("the session ended ({seen:?})"),
        }
    }
    seen.push("consent_lost".into());
    let until = tokio::time::Instant::now() + after;
    while let Ok(Some(e)) = tokio::time::timeout_at(until, a.next_event()).await {
        if let ConnectionEvent::Restarted(why) = e {
            seen.push(format!("restarted {why:?}"));
        }
    }
    seen
}

#[tokio::test]
async fn a_path_that_loses_consent_restarts_ice_while_signalling_is_open() {
    let (a, _a_end) = a_loses_b(true).await;
    let seen = events_around_consent_loss(&a, Duration::from_millis(500)).await;
    assert_eq!(seen, ["consent_lost", "restarted ConsentLost"]);
}

#[tokio::test]
async fn without_the_option_consent_loss_does_not_restart() {
    let (a, _a_end) = a_loses_b(false).await;
    let seen = events_around_consent_loss(&a, Duration::from_millis(500)).await;
    assert_eq!(seen, ["consent_lost"]);
}
