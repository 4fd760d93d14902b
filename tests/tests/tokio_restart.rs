//! holepunch-tokio: `Connection::restart` on loopback. One side restarts; the other sees the new
//! ufrag and restarts too; both select a path again and datagrams flow both ways.

use std::time::Duration;

use holepunch_tokio::ice::{Connection, ConnectionEvent, Endpoint, EndpointConfig};
use holepunch_tokio::signalling::ChannelSignalling;
use tokio::time::timeout;

/// Bounds every wait, so a hang fails instead of stalling the run.
const LIMIT: Duration = Duration::from_secs(10);

async fn endpoint() -> Endpoint {
    Endpoint::bind(
        &["127.0.0.1:0".parse().expect("addr")],
        EndpointConfig::aggressive(),
    )
    .await
    .expect("bind")
}

/// Waits for a `PathChanged` or `Connected` event (a path selected on the new credentials),
/// counting the local candidates signalled meanwhile.
async fn path_selected_again(c: &Connection) -> usize {
    let mut candidates = 0;
    loop {
        match timeout(LIMIT, c.next_event())
            .await
            .expect("an event in time")
        {
            Some(ConnectionEvent::PathChanged(_) | ConnectionEvent::Connected(_)) => {
                return candidates;
            }
            Some(ConnectionEvent::LocalCandidate(_)) => candidates += 1,
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
    let (ea, eb) = (endpoint().await, endpoint().await);
    let (a, b) = timeout(LIMIT, async {
        tokio::join!(ea.connect(sa, true), eb.connect(sb, false))
    })
    .await
    .expect("connected in time");
    let (a, b) = (a.expect("a connects"), b.expect("b connects"));
    get_through(&a, &b, b"before").await;

    a.restart().await.expect("restart signalled");
    // The old path carries data while the new checks run.
    assert!(a.path().is_some(), "the old path stays during the restart");
    let a_candidates = path_selected_again(&a).await;
    let b_candidates = path_selected_again(&b).await;
    assert!(a_candidates > 0, "A signalled its candidates again");
    assert!(
        b_candidates > 0,
        "B restarted too and signalled its candidates"
    );
    get_through(&a, &b, b"after a").await;
    get_through(&b, &a, b"after b").await;
}
