//! holepunch-mio: client and server registered with one caller-owned `mio::Poll`, plain and
//! RFC 5780.
mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{
    StopOnDrop, TRANSACTION_TIMEOUT, assert_plain, assert_rfc5780, assert_rfc5780_addrs,
    plain_options, rfc5780_options,
};
use holepunch_core::stun::server::ServerConfig;
use holepunch_mio::{DriverError, StunClient, StunOptions, StunReport, StunServer, run_stun};
use holepunch_tests::{CHANGE_REQUESTS, plain_loopback_config, rfc5780_loopback_config};
use mio::{Events, Poll, Token};

const CLIENT: Token = Token(0);
const SERVER_BASE: Token = Token(10);

/// The caller's event loop: one `Poll` for a server and a client, until the client finishes.
fn exchange(
    poll: &mut Poll,
    server: &mut StunServer,
    target: SocketAddr,
    options: &StunOptions,
) -> Result<StunReport, DriverError> {
    let mut client = StunClient::start(poll.registry(), CLIENT, target, options)?;
    let mut events = Events::with_capacity(16);
    let give_up = Instant::now() + 2 * TRANSACTION_TIMEOUT;
    let result = loop {
        if let Some(result) = client.take_result() {
            break result;
        }
        assert!(Instant::now() < give_up, "event loop did not finish");
        poll.poll(&mut events, client.next_timeout()).expect("poll");
        for event in &events {
            let ours = client.handle_event(event.token());
            let served = server.handle_event(event.token()).expect("server receive");
            assert!(
                ours ^ served,
                "token {:?} claimed by exactly one",
                event.token()
            );
        }
        client.handle_timeout();
    };
    client.deregister(poll.registry()).expect("deregister");
    result
}

#[test]
fn plain_binding_in_one_event_loop() {
    let mut poll = Poll::new().expect("poll");
    let mut server =
        StunServer::bind(poll.registry(), SERVER_BASE, plain_loopback_config()).expect("bind");
    let addrs = server.local_addrs();
    assert_eq!(server.tokens().collect::<Vec<_>>(), vec![SERVER_BASE]);
    let report = exchange(&mut poll, &mut server, addrs[0], &plain_options()).expect("binding");
    assert_plain(&report, report.local, addrs[0]);
    assert_eq!(report.local.ip(), addrs[0].ip());
}

#[test]
fn rfc5780_change_requests_in_one_event_loop() {
    let Some(config) = rfc5780_loopback_config() else {
        return;
    };
    let mut poll = Poll::new().expect("poll");
    let mut server = StunServer::bind(poll.registry(), SERVER_BASE, config).expect("bind");
    let addrs = server.local_addrs();
    assert_rfc5780_addrs(&addrs);
    assert_eq!(
        server.tokens().collect::<Vec<_>>(),
        (10..14).map(Token).collect::<Vec<_>>()
    );
    for asked in &addrs {
        for change in CHANGE_REQUESTS {
            let options = rfc5780_options(change.0, change.1);
            let report = exchange(&mut poll, &mut server, *asked, &options).expect("binding");
            assert_rfc5780(&report, report.local, &addrs, *asked, change);
        }
    }
    server.deregister(poll.registry()).expect("deregister");
}

#[test]
fn run_stun_against_a_server_thread() {
    // The server's own event loop on a thread; the client through the `run_stun` convenience.
    let stop = AtomicBool::new(false);
    let mut poll = Poll::new().expect("poll");
    let mut server =
        StunServer::bind(poll.registry(), SERVER_BASE, plain_loopback_config()).expect("bind");
    let target = server.local_addrs()[0];
    std::thread::scope(|s| {
        let stop = &stop;
        s.spawn(move || {
            let mut events = Events::with_capacity(16);
            while !stop.load(Ordering::Relaxed) {
                poll.poll(&mut events, Some(Duration::from_millis(20)))
                    .expect("poll");
                for event in &events {
                    server.handle_event(event.token()).expect("serve");
                }
            }
        });
        let _stop = StopOnDrop(stop);
        let report = run_stun(target, &plain_options()).expect("binding");
        assert_plain(&report, report.local, target);
    });
}

#[test]
fn run_stun_times_out() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let target = silent.local_addr().expect("addr");
    let options = plain_options().with_timeout(Duration::from_millis(600));
    let started = Instant::now();
    let err = run_stun(target, &options).expect_err("nobody answers");
    assert!(err.is_timeout(), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn server_ignores_foreign_tokens() {
    let poll = Poll::new().expect("poll");
    let config = ServerConfig::new("127.0.0.1:0".parse().expect("addr"));
    let mut server = StunServer::bind(poll.registry(), SERVER_BASE, config).expect("bind");
    assert!(!server.handle_event(Token(9)).expect("no io"));
    assert!(!server.handle_event(Token(11)).expect("no io"));
    // Ours, but nothing to read: handled without blocking.
    assert!(server.handle_event(SERVER_BASE).expect("no io"));
}
