//! holepunch-tokio: `stun` against `serve_stun` on loopback, plain and RFC 5780.
mod common;

use std::time::{Duration, Instant};

use common::{
    TRANSACTION_TIMEOUT, assert_plain, assert_rfc5780, assert_rfc5780_addrs, plain_options,
    rfc5780_options,
};
use holepunch_tests::{
    CHANGE_REQUESTS, loopback_any_port, plain_loopback_config, rfc5780_loopback_config,
};
use holepunch_tokio::{serve_stun, stun, stun_on};
use tokio::net::UdpSocket;
use tokio::time::timeout;

/// Bounds every test body, so a hang fails instead of stalling the run.
const TEST_LIMIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn plain_binding_reports_the_client_address() {
    timeout(TEST_LIMIT, async {
        let server = serve_stun(plain_loopback_config()).await.expect("serve");
        let target = server.local_addrs()[0];
        assert_ne!(target.port(), 0);
        let report = stun(target, &plain_options()).await.expect("binding");
        assert_plain(&report, report.local, target);
        server.shutdown().await.expect("clean shutdown");
    })
    .await
    .expect("test took too long");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc5780_change_requests_come_from_the_right_socket() {
    let Some(config) = rfc5780_loopback_config() else {
        return;
    };
    timeout(TEST_LIMIT, async {
        let server = serve_stun(config).await.expect("serve");
        let addrs = server.local_addrs().to_vec();
        assert_rfc5780_addrs(&addrs);
        let socket = UdpSocket::bind(loopback_any_port()).await.expect("bind");
        let local = socket.local_addr().expect("addr");
        for asked in &addrs {
            for change in CHANGE_REQUESTS {
                let options = rfc5780_options(change.0, change.1);
                let report = stun_on(&socket, *asked, &options).await.expect("binding");
                assert_rfc5780(&report, local, &addrs, *asked, change);
            }
        }
        server.shutdown().await.expect("clean shutdown");
    })
    .await
    .expect("test took too long");
}

#[tokio::test]
async fn concurrent_clients_share_one_server() {
    timeout(TEST_LIMIT, async {
        let server = serve_stun(plain_loopback_config()).await.expect("serve");
        let target = server.local_addrs()[0];
        let mut clients = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let options = plain_options();
            clients.spawn(async move { stun(target, &options).await });
        }
        let mut answered = 0;
        while let Some(result) = clients.join_next().await {
            let report = result.expect("client task").expect("binding");
            assert_eq!(report.mapped, report.local);
            answered += 1;
        }
        assert_eq!(answered, 8);
        server.shutdown().await.expect("clean shutdown");
    })
    .await
    .expect("test took too long");
}

#[tokio::test]
async fn client_gives_up_within_its_timeout() {
    timeout(TEST_LIMIT, async {
        let silent = UdpSocket::bind(loopback_any_port()).await.expect("bind");
        let target = silent.local_addr().expect("addr");
        let options = plain_options().with_timeout(Duration::from_millis(600));
        let started = Instant::now();
        let err = stun(target, &options).await.expect_err("nobody answers");
        assert!(err.is_timeout(), "{err}");
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(500) && elapsed < Duration::from_secs(3),
            "{elapsed:?}"
        );
    })
    .await
    .expect("test took too long");
}

#[tokio::test]
async fn dropping_the_handle_stops_the_server() {
    timeout(TEST_LIMIT, async {
        let server = serve_stun(plain_loopback_config()).await.expect("serve");
        let target = server.local_addrs()[0];
        drop(server);
        // The tasks see the handle gone and close their sockets; the port becomes free again.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if std::net::UdpSocket::bind(target).is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "{target} still bound");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let err = stun(
            target,
            &plain_options().with_timeout(Duration::from_millis(300)),
        )
        .await
        .expect_err("nobody serves");
        assert!(err.is_timeout(), "{err}");
    })
    .await
    .expect("test took too long");
}

#[tokio::test]
async fn shutdown_is_prompt() {
    timeout(TEST_LIMIT, async {
        let Some(config) = rfc5780_loopback_config() else {
            return;
        };
        let server = serve_stun(config).await.expect("serve");
        assert!(!server.is_finished());
        let started = Instant::now();
        server.shutdown().await.expect("clean shutdown");
        assert!(started.elapsed() < TRANSACTION_TIMEOUT);
    })
    .await
    .expect("test took too long");
}
