//! STUN client state machine: RFC 8489 retransmission schedule, response matching, transaction
//! table, the long-term credential flow (RFC 8489 §9.2), ALTERNATE-SERVER (§10) and request
//! padding. Everything runs in virtual time; servers are simulated with `MessageBuilder` or with
//! core's own `Server`.
#![allow(clippy::unwrap_used)] // tests: a panic is the right failure

#[path = "support/verbs.rs"]
mod verbs;
use std::net::SocketAddr;
use verbs::{Answer, FeedStunClient, Outcome};

use holepunch_core::stun::attr::types;
use holepunch_core::stun::client::{
    BindingOptions, Client, ClientConfig, ClientError, ClientEvent, LongTermCredentials,
    TransactionError,
};
use holepunch_core::stun::server::{Server, ServerConfig};
use holepunch_core::stun::{
    Attribute, Class, EncodeError, ErrorCode, IntegrityKey, Message, MessageBuilder, Method,
    PasswordAlgorithm, PasswordAlgorithmKind, PasswordAlgorithms, TransactionId,
};
use holepunch_core::{Duration, Instant};
use proptest::prelude::*;

const BUF: usize = 2048;
const USER: &str = "alice";
const PASS: &str = "s3cret";
const REALM: &str = "example.org";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("valid socket address")
}

fn server() -> SocketAddr {
    addr("198.51.100.1:3478")
}

fn mapped() -> SocketAddr {
    addr("203.0.113.7:61000")
}

fn ms(t: u64) -> Instant {
    Instant::from_millis(t)
}

/// One datagram the client asked to send.
#[derive(Debug)]
struct Sent {
    to: SocketAddr,
    bytes: Vec<u8>,
}

impl Sent {
    fn msg(&self) -> Message<'_> {
        Message::parse(&self.bytes).expect("client sends well-formed STUN")
    }

    fn tid(&self) -> TransactionId {
        self.msg().transaction_id()
    }
}

fn transmits(c: &mut Client, now: Instant) -> Vec<Sent> {
    let mut out = Vec::new();
    let mut buf = [0u8; BUF];
    while let Some(t) = c.poll_transmit(now, &mut buf) {
        assert_eq!(t.from, None, "the client has a single socket");
        out.push(Sent {
            to: t.to,
            bytes: buf[..t.len].to_vec(),
        });
        assert!(out.len() < 1000, "poll_transmit never runs dry");
    }
    out
}

fn one_transmit(c: &mut Client, now: Instant) -> Sent {
    let mut sent = transmits(c, now);
    assert_eq!(sent.len(), 1, "expected exactly one datagram at {now:?}");
    sent.pop().expect("one datagram")
}

fn events(c: &mut Client) -> Vec<ClientEvent> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

fn creds() -> LongTermCredentials {
    LongTermCredentials {
        username: USER.into(),
        password: PASS.into(),
    }
}

fn auth_client() -> Client {
    Client::new(
        ClientConfig {
            credentials: Some(creds()),
            ..ClientConfig::default()
        },
        7,
    )
}

fn md5_key() -> IntegrityKey {
    IntegrityKey::long_term(PasswordAlgorithmKind::Md5, USER, REALM, PASS)
}

fn sha256_key() -> IntegrityKey {
    IntegrityKey::long_term(PasswordAlgorithmKind::Sha256, USER, REALM, PASS)
}

/// A message answering `req` (same transaction id and method), with attributes from `body`.
fn answer(
    req: &[u8],
    class: Class,
    body: impl FnOnce(&mut MessageBuilder<'_>) -> Result<(), EncodeError>,
) -> Vec<u8> {
    let msg = Message::parse(req).expect("request parses");
    let mut buf = vec![0u8; BUF];
    let mut b = MessageBuilder::new(&mut buf, class, msg.method(), msg.transaction_id())
        .expect("buffer fits a header");
    body(&mut b).expect("attributes fit");
    let len = b.finish();
    buf.truncate(len);
    buf
}

/// A Binding success response to `req` with XOR-MAPPED-ADDRESS and FINGERPRINT.
fn success(req: &[u8], reflexive: SocketAddr) -> Vec<u8> {
    answer(req, Class::SuccessResponse, |b| {
        b.add(&Attribute::XorMappedAddress(reflexive))?;
        b.add_fingerprint()
    })
}

/// A success response protected with classic MESSAGE-INTEGRITY under `key`.
fn signed_success(req: &[u8], key: &IntegrityKey) -> Vec<u8> {
    answer(req, Class::SuccessResponse, |b| {
        b.add(&Attribute::XorMappedAddress(mapped()))?;
        b.add_message_integrity(key)?;
        b.add_fingerprint()
    })
}

/// A success response protected with MESSAGE-INTEGRITY-SHA256 under `key`.
fn signed_success_sha256(req: &[u8], key: &IntegrityKey) -> Vec<u8> {
    answer(req, Class::SuccessResponse, |b| {
        b.add(&Attribute::XorMappedAddress(mapped()))?;
        b.add_message_integrity_sha256(key)?;
        b.add_fingerprint()
    })
}

fn error_response(req: &[u8], code: u16) -> Vec<u8> {
    answer(req, Class::ErrorResponse, |b| {
        b.add(&Attribute::ErrorCode(ErrorCode { code, reason: "" }))?;
        b.add_fingerprint()
    })
}

/// A 401/438 challenge with optional REALM, NONCE and PASSWORD-ALGORITHMS.
fn challenge(
    req: &[u8],
    code: u16,
    realm: Option<&str>,
    nonce: Option<&str>,
    algorithms: Option<&[PasswordAlgorithm<'_>]>,
) -> Vec<u8> {
    answer(req, Class::ErrorResponse, |b| {
        b.add(&Attribute::ErrorCode(ErrorCode { code, reason: "" }))?;
        if let Some(r) = realm {
            b.add(&Attribute::Realm(r))?;
        }
        if let Some(n) = nonce {
            b.add(&Attribute::Nonce(n))?;
        }
        if let Some(list) = algorithms {
            b.add(&Attribute::PasswordAlgorithms(PasswordAlgorithms::Native(
                list,
            )))?;
        }
        b.add_fingerprint()
    })
}

fn text<'a>(msg: &Message<'a>, attr: u16) -> Option<&'a str> {
    msg.text(attr).map(|r| r.expect("text attribute decodes"))
}

fn assert_unauthenticated(req: &Sent) {
    let m = req.msg();
    for t in [
        types::USERNAME,
        types::REALM,
        types::NONCE,
        types::MESSAGE_INTEGRITY,
        types::MESSAGE_INTEGRITY_SHA256,
        types::PASSWORD_ALGORITHM,
        types::PASSWORD_ALGORITHMS,
    ] {
        assert!(m.find(t).is_none(), "request carries attribute {t:#06x}");
    }
}

/// Checks a classic (RFC 5389 style) long-term request: USERNAME, REALM, NONCE, MD5 key,
/// MESSAGE-INTEGRITY only, FINGERPRINT valid.
fn assert_md5_authenticated(req: &Sent, nonce: &str) {
    let m = req.msg();
    assert_eq!(m.class(), Class::Request);
    assert_eq!(text(&m, types::USERNAME), Some(USER));
    assert_eq!(text(&m, types::REALM), Some(REALM));
    assert_eq!(text(&m, types::NONCE), Some(nonce));
    assert!(m.find(types::MESSAGE_INTEGRITY).is_some());
    assert!(m.find(types::MESSAGE_INTEGRITY_SHA256).is_none());
    assert!(m.find(types::PASSWORD_ALGORITHM).is_none());
    assert!(m.find(types::PASSWORD_ALGORITHMS).is_none());
    m.verify_integrity(&md5_key())
        .expect("MESSAGE-INTEGRITY verifies");
    assert!(
        m.verify_integrity(&IntegrityKey::long_term(
            PasswordAlgorithmKind::Md5,
            USER,
            REALM,
            "wrong"
        ))
        .is_err(),
        "integrity must depend on the password"
    );
    m.verify_fingerprint().expect("FINGERPRINT verifies");
}

/// The send times (in ms) and the final event time of one transaction driven purely by
/// `poll_timeout`, checking on the way that nothing happens a microsecond early.
fn schedule(config: ClientConfig) -> (Vec<u64>, u64, ClientEvent) {
    let mut c = Client::new(config, 1);
    let id = c
        .binding(Instant::ZERO, server(), BindingOptions::default())
        .expect("slot free");
    let mut sends = Vec::new();
    let mut now = Instant::ZERO;
    let mut first = true;
    loop {
        let next = c
            .poll_timeout()
            .expect("an open transaction has a deadline");
        if first {
            assert_eq!(next, Instant::ZERO, "the first send is due immediately");
            first = false;
        } else {
            assert!(
                next > now,
                "after servicing, the next deadline is in the future"
            );
            // One microsecond early: handle_timeout and poll_transmit do nothing.
            let early = Instant::from_micros(next.as_micros() - 1);
            c.handle_timeout(early);
            assert!(transmits(&mut c, early).is_empty(), "sent before {next:?}");
            assert!(c.poll_event().is_none(), "finished before {next:?}");
            assert_eq!(c.poll_timeout(), Some(next), "early calls change nothing");
        }
        now = next;
        c.handle_timeout(now);
        for s in transmits(&mut c, now) {
            assert_eq!(s.to, server());
            sends.push(now.as_micros() / 1000);
        }
        if let Some(ev) = c.poll_event() {
            assert_eq!(
                ev,
                ClientEvent::Failed {
                    id,
                    server: server(),
                    error: TransactionError::TimedOut
                }
            );
            assert!(c.poll_event().is_none(), "exactly one event");
            assert_eq!(c.poll_timeout(), None, "idle after the timeout");
            assert!(c.is_idle());
            return (sends, now.as_micros() / 1000, ev);
        }
        assert!(now < ms(10_000_000), "transaction never ends");
    }
}

fn expected_schedule(rto: u64, rc: u32, rm: u64) -> (Vec<u64>, u64) {
    // RFC 8489 §6.2.1: sends at 0, RTO, 3 RTO, 7 RTO, ...; timeout Rm*RTO after the last send.
    let sends: Vec<u64> = (0..rc).map(|k| rto * ((1u64 << k) - 1)).collect();
    let last = *sends.last().expect("at least one send");
    (sends, last + rm * rto)
}

#[test]
fn default_schedule_is_rfc8489_6_2_1() {
    let (sends, timeout, _) = schedule(ClientConfig::default());
    assert_eq!(sends, [0, 500, 1500, 3500, 7500, 15500, 31500]);
    assert_eq!(timeout, 39_500);
}

#[test]
fn default_schedule_millisecond_by_millisecond() {
    // A driver that wakes every millisecond regardless of poll_timeout: the same schedule,
    // poll_timeout always names the next send or the timeout, never a past instant.
    let mut c = Client::new(ClientConfig::default(), 3);
    c.binding(Instant::ZERO, server(), BindingOptions::default())
        .expect("slot free");
    let expected_next = [500, 1500, 3500, 7500, 15500, 31500, 39500];
    let mut sends = Vec::new();
    let mut finished = None;
    for t in 0..=45_000u64 {
        let now = ms(t);
        c.handle_timeout(now);
        for _ in transmits(&mut c, now) {
            sends.push(t);
        }
        if let Some(ev) = c.poll_event() {
            assert!(finished.is_none(), "a second event");
            assert!(matches!(
                ev,
                ClientEvent::Failed {
                    error: TransactionError::TimedOut,
                    ..
                }
            ));
            finished = Some(t);
        }
        match c.poll_timeout() {
            Some(next) => {
                assert!(next > now, "poll_timeout {next:?} not after {now:?}");
                let want = expected_next
                    .iter()
                    .find(|&&d| d > t)
                    .expect("deadline left");
                assert_eq!(next, ms(*want), "at {t} ms");
            }
            None => assert!(finished.is_some(), "idle only once finished"),
        }
    }
    assert_eq!(sends, [0, 500, 1500, 3500, 7500, 15500, 31500]);
    assert_eq!(finished, Some(39_500));
}

#[test]
fn configurable_rto_rc_rm_change_the_schedule() {
    for (rto, rc, rm) in [
        (100, 3, 4),
        (250, 1, 2),
        (50, 9, 16),
        (500, 7, 16),
        (1000, 2, 1),
    ] {
        let config = ClientConfig {
            initial_rto: Duration::from_millis(rto),
            max_sends: rc,
            last_wait_factor: rm,
            ..ClientConfig::default()
        };
        let (sends, timeout, _) = schedule(config);
        let (want_sends, want_timeout) = expected_schedule(rto, rc, u64::from(rm));
        assert_eq!(sends, want_sends, "rto {rto} rc {rc} rm {rm}");
        assert_eq!(timeout, want_timeout, "rto {rto} rc {rc} rm {rm}");
    }
    // Spot-check one by hand: RTO 100, Rc 3, Rm 4.
    let (sends, timeout, _) = schedule(ClientConfig {
        initial_rto: Duration::from_millis(100),
        max_sends: 3,
        last_wait_factor: 4,
        ..ClientConfig::default()
    });
    assert_eq!((sends, timeout), (vec![0, 100, 300], 700));
}

#[test]
fn zero_max_sends_still_sends_once_and_times_out() {
    // Rc = 0 is meaningless; it must not leave a transaction that never sends and never ends.
    let (sends, timeout, _) = schedule(ClientConfig {
        initial_rto: Duration::from_millis(100),
        max_sends: 0,
        last_wait_factor: 4,
        ..ClientConfig::default()
    });
    assert_eq!(sends, [0]);
    assert_eq!(timeout, 400);
}

#[test]
fn early_calls_are_no_ops_and_retransmissions_are_identical() {
    let mut c = Client::new(ClientConfig::default(), 9);
    c.binding(ms(1000), server(), BindingOptions::default())
        .expect("slot free");
    // Before the start time nothing is due (a driver clock may lag slightly).
    assert!(transmits(&mut c, ms(999)).is_empty());
    let first = one_transmit(&mut c, ms(1000));
    assert!(transmits(&mut c, ms(1000)).is_empty(), "no burst");
    for t in [1000, 1001, 1250, 1499] {
        c.handle_timeout(ms(t));
        assert!(transmits(&mut c, ms(t)).is_empty(), "sent early at {t}");
        assert!(c.poll_event().is_none());
        assert_eq!(c.poll_timeout(), Some(ms(1500)));
    }
    let second = one_transmit(&mut c, ms(1500));
    assert_eq!(
        first.bytes, second.bytes,
        "a retransmission is byte-identical"
    );
    assert_eq!(c.poll_timeout(), Some(ms(2500)));
}

#[test]
fn a_late_driver_gets_one_send_and_the_next_rto_from_then() {
    let mut c = Client::new(ClientConfig::default(), 9);
    c.binding(Instant::ZERO, server(), BindingOptions::default())
        .expect("slot free");
    one_transmit(&mut c, Instant::ZERO);
    // The driver oversleeps the 500 ms retransmission until 2000 ms: one send, not a burst.
    c.handle_timeout(ms(2000));
    one_transmit(&mut c, ms(2000));
    assert_eq!(
        c.poll_timeout(),
        Some(ms(3000)),
        "RTO doubled, counted from the send"
    );
}

#[test]
fn success_is_matched_by_transaction_id_and_reported_once() {
    let mut c = Client::new(ClientConfig::default(), 11);
    let id = c
        .binding(Instant::ZERO, server(), BindingOptions::default())
        .expect("slot free");
    let req = one_transmit(&mut c, Instant::ZERO);
    assert_eq!(req.to, server());
    let m = req.msg();
    assert_eq!(m.class(), Class::Request);
    assert_eq!(m.method(), Method::BINDING);
    assert_eq!(
        m.transaction_id(),
        id,
        "the first wire id is the caller's id"
    );
    m.verify_fingerprint()
        .expect("requests carry a valid FINGERPRINT");
    assert_unauthenticated(&req);

    let resp = success(&req.bytes, mapped());
    assert!(c.feed(ms(120), server(), &resp));
    assert_eq!(
        events(&mut c),
        [ClientEvent::Succeeded {
            id,
            server: server(),
            from: server(),
            mapped: Some(mapped()),
            other_address: None,
            response_origin: None,
            rtt: Duration::from_millis(120),
        }]
    );
    assert!(c.is_idle());
    assert_eq!(c.poll_timeout(), None);
    // A duplicate (the answer to a retransmission) is not a new event.
    assert!(!c.feed(ms(130), server(), &resp));
    assert!(c.poll_event().is_none());
    assert!(
        transmits(&mut c, ms(10_000)).is_empty(),
        "no retransmission after success"
    );
}

#[test]
fn rtt_is_measured_from_the_last_send() {
    let mut c = Client::new(ClientConfig::default(), 12);
    c.binding(Instant::ZERO, server(), BindingOptions::default())
        .expect("slot free");
    let req = one_transmit(&mut c, Instant::ZERO);
    one_transmit(&mut c, ms(500));
    assert!(c.feed(ms(530), server(), &success(&req.bytes, mapped())));
    match c.poll_event() {
        Some(ClientEvent::Succeeded { rtt, .. }) => assert_eq!(rtt, Duration::from_millis(30)),
        other => panic!("expected success, got {other:?}"),
    }
}

#[test]
fn responses_that_do_not_match_are_ignored() {
    let mut c = Client::new(ClientConfig::default(), 13);
    let id = c
        .binding(Instant::ZERO, server(), BindingOptions::default())
        .expect("slot free");
    let req = one_transmit(&mut c, Instant::ZERO);
    let tid = req.tid();

    // Wrong transaction id.
    let mut other = tid;
    other.0[0] ^= 0xff;
    let mut buf = [0u8; 128];
    let mut b = MessageBuilder::new(&mut buf, Class::SuccessResponse, Method::BINDING, other)
        .expect("header");
    b.add(&Attribute::XorMappedAddress(mapped())).expect("fits");
    let len = b.finish();
    assert!(!c.feed(ms(1), server(), &buf[..len]), "wrong tid");

    // Wrong method (Allocate) with the right id.
    let mut b = MessageBuilder::new(&mut buf, Class::SuccessResponse, Method::new(0x003), tid)
        .expect("header");
    b.add(&Attribute::XorMappedAddress(mapped())).expect("fits");
    let len = b.finish();
    assert!(!c.feed(ms(2), server(), &buf[..len]), "wrong method");

    // Bad FINGERPRINT.
    let mut bad = success(&req.bytes, mapped());
    let n = bad.len();
    bad[n - 1] ^= 0x01;
    assert!(!c.feed(ms(3), server(), &bad), "bad FINGERPRINT");

    // A Request or an Indication with our id is not an answer.
    for class in [Class::Request, Class::Indication] {
        let msg = answer(&req.bytes, class, |b| {
            b.add(&Attribute::XorMappedAddress(mapped()))
        });
        assert!(!c.feed(ms(4), server(), &msg), "{class:?}");
    }
    // Not STUN at all.
    assert!(!c.feed(ms(5), server(), b"hello, world"));
    assert!(!c.feed(ms(5), server(), &[]));
    // Truncated response.
    let good = success(&req.bytes, mapped());
    assert!(!c.feed(ms(5), server(), &good[..good.len() - 4]));

    assert!(
        c.poll_event().is_none(),
        "nothing above ends the transaction"
    );
    assert!(!c.is_idle());
    assert_eq!(c.poll_timeout(), Some(ms(500)));

    // A response without FINGERPRINT is fine (it is optional), from any source address.
    let plain = answer(&req.bytes, Class::SuccessResponse, |b| {
        b.add(&Attribute::XorMappedAddress(mapped()))
    });
    let elsewhere = addr("198.51.100.2:3479");
    assert!(c.feed(ms(6), elsewhere, &plain));
    match c.poll_event() {
        Some(ClientEvent::Succeeded {
            id: got,
            server: s,
            from,
            mapped: m,
            ..
        }) => {
            assert_eq!((got, s, from, m), (id, server(), elsewhere, Some(mapped())));
        }
        other => panic!("expected success, got {other:?}"),
    }
}

#[test]
fn binding_success_without_an_address_is_malformed_and_mapped_address_is_accepted() {
    let mut c = Client::new(ClientConfig::default(), 14);
    let a = c
        .binding(Instant::ZERO, server(), BindingOptions::default())
        .expect("slot");
    let b = c
        .binding(Instant::ZERO, server(), BindingOptions::default())
        .expect("slot");
    let sent = transmits(&mut c, Instant::ZERO);
    assert_eq!(sent.len(), 2);
    let (ra, rb) = if sent[0].tid() == a {
        (&sent[0], &sent[1])
    } else {
        (&sent[1], &sent[0])
    };
    assert_eq!(rb.tid(), b);
    let empty = answer(&ra.bytes, Class::SuccessResponse, |b| b.add_fingerprint());
    assert!(c.feed(ms(10), server(), &empty));
    let classic = answer(&rb.bytes, Class::SuccessResponse, |b| {
        b.add(&Attribute::MappedAddress(mapped()))
    });
    assert!(c.feed(ms(20), server(), &classic));
    let evs = events(&mut c);
    assert_eq!(evs.len(), 2);
    assert_eq!(
        evs[0],
        ClientEvent::Failed {
            id: a,
            server: server(),
            error: TransactionError::MalformedResponse
        }
    );
    assert!(
        matches!(evs[1], ClientEvent::Succeeded { id, mapped: Some(m), .. } if id == b && m == mapped())
    );
}

#[test]
fn error_responses_fail_the_transaction() {
    for (code, want) in [(400, 400), (420, 420), (500, 500), (487, 487)] {
        let mut c = Client::new(ClientConfig::default(), 15);
        let id = c
            .binding(Instant::ZERO, server(), BindingOptions::default())
            .expect("slot");
        let req = one_transmit(&mut c, Instant::ZERO);
        assert!(c.feed(ms(40), server(), &error_response(&req.bytes, code)));
        assert_eq!(
            events(&mut c),
            [ClientEvent::Failed {
                id,
                server: server(),
                error: TransactionError::Rejected { code: want }
            }]
        );
        assert!(c.is_idle());
        assert!(transmits(&mut c, ms(600)).is_empty());
    }
    // An error response without ERROR-CODE is rejected with code 0.
    let mut c = Client::new(ClientConfig::default(), 16);
    let id = c
        .binding(Instant::ZERO, server(), BindingOptions::default())
        .expect("slot");
    let req = one_transmit(&mut c, Instant::ZERO);
    let bare = answer(&req.bytes, Class::ErrorResponse, |_| Ok(()));
    assert!(c.feed(ms(40), server(), &bare));
    assert_eq!(
        c.poll_event(),
        Some(ClientEvent::Failed {
            id,
            server: server(),
            error: TransactionError::Rejected { code: 0 }
        })
    );
    // 401 without credentials configured.
    let id = c
        .binding(ms(50), server(), BindingOptions::default())
        .expect("slot");
    let req = one_transmit(&mut c, ms(50));
    let ch = challenge(&req.bytes, 401, Some(REALM), Some("n"), None);
    assert!(c.feed(ms(60), server(), &ch));
    assert_eq!(
        c.poll_event(),
        Some(ClientEvent::Failed {
            id,
            server: server(),
            error: TransactionError::Unauthorized
        })
    );
    assert!(
        transmits(&mut c, ms(60)).is_empty(),
        "no retry without credentials"
    );
}

#[test]
fn transaction_table_limits_order_and_cancel() {
    let config = ClientConfig {
        max_transactions: 4,
        ..ClientConfig::default()
    };
    let mut c = Client::new(config, 17);
    let ids: Vec<TransactionId> = (0..4)
        .map(|_| {
            c.binding(Instant::ZERO, server(), BindingOptions::default())
                .expect("slot free")
        })
        .collect();
    let mut unique = ids.clone();
    unique.sort_by_key(|t| t.0);
    unique.dedup();
    assert_eq!(unique.len(), 4, "transaction ids are distinct");
    assert_eq!(
        c.binding(Instant::ZERO, server(), BindingOptions::default()),
        Err(ClientError::TooManyTransactions)
    );
    let sent = transmits(&mut c, Instant::ZERO);
    assert_eq!(sent.len(), 4);
    let req_of = |id: TransactionId| {
        sent.iter()
            .find(|s| s.tid() == id)
            .expect("every transaction was sent")
    };

    // Finish them out of order: 3, 1, 0 (2 stays open).
    for (k, &i) in [3usize, 1, 0].iter().enumerate() {
        let resp = success(&req_of(ids[i]).bytes, mapped());
        assert!(c.feed(ms(10 + k as u64), server(), &resp));
    }
    // Finished-but-unpolled transactions still hold their slots.
    assert_eq!(
        c.binding(ms(20), server(), BindingOptions::default()),
        Err(ClientError::TooManyTransactions)
    );
    let first = c.poll_event().expect("an event");
    assert!(matches!(first, ClientEvent::Succeeded { id, .. } if id == ids[3]));
    // One slot free again.
    let fresh = c
        .binding(ms(21), server(), BindingOptions::default())
        .expect("a slot freed by poll_event");
    assert_eq!(
        c.binding(ms(21), server(), BindingOptions::default()),
        Err(ClientError::TooManyTransactions)
    );
    // Oldest first.
    let rest: Vec<TransactionId> = events(&mut c)
        .into_iter()
        .map(|e| match e {
            ClientEvent::Succeeded { id, .. } => id,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(rest, [ids[1], ids[0]]);

    // cancel() of an open transaction: no event ever, and no more sends.
    c.cancel(ids[2]);
    assert!(!c.feed(ms(30), server(), &success(&req_of(ids[2]).bytes, mapped())));
    // cancel() of a finished one suppresses its pending event.
    let fresh_req = transmits(&mut c, ms(30))
        .into_iter()
        .find(|s| s.tid() == fresh)
        .expect("fresh transaction sent");
    assert!(c.feed(ms(31), server(), &success(&fresh_req.bytes, mapped())));
    c.cancel(fresh);
    assert!(c.poll_event().is_none());
    assert!(c.is_idle());
    assert_eq!(c.poll_timeout(), None);
    for t in (0..50_000).step_by(250) {
        c.handle_timeout(ms(t));
        assert!(transmits(&mut c, ms(t)).is_empty());
    }
    assert!(
        c.poll_event().is_none(),
        "cancelled transactions never report"
    );
    // All four slots are usable again.
    for _ in 0..4 {
        c.binding(ms(60_000), server(), BindingOptions::default())
            .expect("slot free after cancel");
    }
}

#[test]
fn timeouts_of_many_transactions_come_out_oldest_first() {
    let config = ClientConfig {
        initial_rto: Duration::from_millis(100),
        max_sends: 2,
        last_wait_factor: 2,
        max_transactions: 8,
        ..ClientConfig::default()
    };
    let mut c = Client::new(config, 19);
    // Started 10 ms apart: each times out 100 + 200 = 300 ms after its start.
    let ids: Vec<TransactionId> = (0..8u64)
        .rev()
        .map(|k| {
            c.binding(ms(k * 10), server(), BindingOptions::default())
                .expect("slot")
        })
        .collect();
    // ids[0] started at 70 ms, ids[7] at 0 ms. Events are taken as they come: while one
    // waits unpolled the deadline is `now`, not the next timer.
    let mut now = Instant::ZERO;
    let mut finished = Vec::new();
    for _ in 0..1000 {
        let Some(t) = c.poll_timeout() else { break };
        now = t;
        c.handle_timeout(now);
        transmits(&mut c, now);
        finished.extend(events(&mut c));
        if now > ms(1000) {
            break;
        }
    }
    let order: Vec<TransactionId> = finished
        .into_iter()
        .map(|e| match e {
            ClientEvent::Failed {
                id,
                error: TransactionError::TimedOut,
                ..
            } => id,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    let mut want = ids.clone();
    want.reverse();
    assert_eq!(order, want);
    assert_eq!(now, ms(370));
}

#[test]
fn long_term_401_retry_md5() {
    let mut c = auth_client();
    let id = c
        .binding(Instant::ZERO, server(), BindingOptions::default())
        .expect("slot");
    let r0 = one_transmit(&mut c, Instant::ZERO);
    assert_unauthenticated(&r0); // RFC 8489 §9.2.3.1: the first request has no credentials.

    let ch = challenge(&r0.bytes, 401, Some(REALM), Some("nonce-1"), None);
    assert!(c.feed(ms(50), server(), &ch));
    assert!(c.poll_event().is_none(), "a 401 is not the end");
    let r1 = one_transmit(&mut c, ms(50));
    assert_eq!(r1.to, server());
    assert_ne!(r1.tid(), r0.tid(), "a retry is a new transaction (§9.2.5)");
    assert_md5_authenticated(&r1, "nonce-1");
    // The retry restarts the retransmission schedule.
    assert_eq!(c.poll_timeout(), Some(ms(550)));
    // A late answer to the first wire id belongs to nobody now.
    assert!(!c.feed(ms(60), server(), &success(&r0.bytes, mapped())));

    assert!(c.feed(ms(80), server(), &signed_success(&r1.bytes, &md5_key())));
    assert_eq!(
        events(&mut c),
        [ClientEvent::Succeeded {
            id,
            server: server(),
            from: server(),
            mapped: Some(mapped()),
            other_address: None,
            response_origin: None,
            rtt: Duration::from_millis(30),
        }]
    );

    // Subsequent requests to the same server carry the cached credentials (§9.2.3.2).
    c.binding(ms(100), server(), BindingOptions::default())
        .expect("slot");
    let r2 = one_transmit(&mut c, ms(100));
    assert_md5_authenticated(&r2, "nonce-1");
}

#[test]
fn responses_to_authenticated_requests_must_carry_valid_integrity() {
    for bad in ["none", "wrong key", "sha256 with wrong key", "400 unsigned"] {
        let mut c = auth_client();
        let id = c
            .binding(Instant::ZERO, server(), BindingOptions::default())
            .expect("slot");
        let r0 = one_transmit(&mut c, Instant::ZERO);
        let ch = challenge(&r0.bytes, 401, Some(REALM), Some("nonce-1"), None);
        assert!(c.feed(ms(10), server(), &ch));
        let r1 = one_transmit(&mut c, ms(10));
        let wrong = IntegrityKey::long_term(PasswordAlgorithmKind::Md5, USER, REALM, "guess");
        let forged = match bad {
            "none" => success(&r1.bytes, mapped()),
            "wrong key" => signed_success(&r1.bytes, &wrong),
            "sha256 with wrong key" => signed_success_sha256(&r1.bytes, &wrong),
            _ => error_response(&r1.bytes, 400), // §9.2.5: discarded as never received
        };
        // Consumed (it answers our transaction) but discarded.
        assert!(c.feed(ms(20), server(), &forged), "{bad}");
        assert!(
            c.poll_event().is_none(),
            "{bad}: forged response ended the transaction"
        );
        assert!(!c.is_idle(), "{bad}");
        // Retransmissions continue and the transaction eventually times out.
        let mut last = None;
        let mut now = ms(20);
        while let Some(t) = c.poll_timeout() {
            now = t;
            c.handle_timeout(now);
            for s in transmits(&mut c, now) {
                assert_eq!(s.tid(), r1.tid(), "retransmissions reuse the retry's id");
            }
            if let Some(ev) = c.poll_event() {
                last = Some(ev);
                break;
            }
        }
        assert_eq!(
            last,
            Some(ClientEvent::Failed {
                id,
                server: server(),
                error: TransactionError::TimedOut
            }),
            "{bad}"
        );
        assert_eq!(now, ms(10 + 39_500), "{bad}");
    }

    // An integrity-protected error is believed.
    let mut c = auth_client();
    let id = c
        .binding(Instant::ZERO, server(), BindingOptions::default())
        .expect("slot");
    let r0 = one_transmit(&mut c, Instant::ZERO);
    let ch = challenge(&r0.bytes, 401, Some(REALM), Some("nonce-1"), None);
    assert!(c.feed(ms(10), server(), &ch));
    let r1 = one_transmit(&mut c, ms(10));
    let signed_400 = answer(&r1.bytes, Class::ErrorResponse, |b| {
        b.add(&Attribute::ErrorCode(ErrorCode::BAD_REQUEST))?;
        b.add_message_integrity(&md5_key())?;
        b.add_fingerprint()
    });
    assert!(c.feed(ms(20), server(), &signed_400));
    assert_eq!(
        c.poll_event(),
        Some(ClientEvent::Failed {
            id,
            server: server(),
            error: TransactionError::Rejected { code: 400 }
        })
    );
}

#[test]
fn stale_nonce_438_retries_with_the_new_nonce() {
    let mut c = auth_client();
    let id = c
        .binding(Instant::ZERO, server(), BindingOptions::default())
        .expect("slot");
    let r0 = one_transmit(&mut c, Instant::ZERO);
    let ch = challenge(&r0.bytes, 401, Some(REALM), Some("nonce-1"), None);
    assert!(c.feed(ms(10), server(), &ch));
    let r1 = one_transmit(&mut c, ms(10));
    assert_md5_authenticated(&r1, "nonce-1");
    // 438 with REALM and a fresh nonce.
    let stale = challenge(&r1.bytes, 438, Some(REALM), Some("nonce-2"), None);
    assert!(c.feed(ms(20), server(), &stale));
    assert!(c.poll_event().is_none());
    let r2 = one_transmit(&mut c, ms(20));
    assert_ne!(r2.tid(), r1.tid());
    assert_md5_authenticated(&r2, "nonce-2");
    assert!(c.feed(ms(30), server(), &signed_success(&r2.bytes, &md5_key())));
    assert!(matches!(c.poll_event(), Some(ClientEvent::Succeeded { id: got, .. }) if got == id));

    // A 438 may omit REALM: the cached one is kept.
    let id = c
        .binding(ms(100), server(), BindingOptions::default())
        .expect("slot");
    let r3 = one_transmit(&mut c, ms(100));
    assert_md5_authenticated(&r3, "nonce-2");
    let stale = challenge(&r3.bytes, 438, None, Some("nonce-3"), None);
    assert!(c.feed(ms(110), server(), &stale));
    let r4 = one_transmit(&mut c, ms(110));
    assert_md5_authenticated(&r4, "nonce-3");
    assert!(c.feed(ms(120), server(), &signed_success(&r4.bytes, &md5_key())));
    assert!(matches!(c.poll_event(), Some(ClientEvent::Succeeded { id: got, .. }) if got == id));
}

/// The long-term key is derived from username, realm and password under the password
/// algorithm (RFC 8489 §9.2.2): a 438 that names another realm, or that moves the session to
/// SHA-256, makes the retry use a key derived anew, not the one cached for the old realm or
/// algorithm.
#[test]
fn a_438_changing_realm_or_algorithm_derives_a_new_key() {
    // A new realm, same algorithm (MD5).
    let other = "other.example.org";
    let mut c = auth_client();
    c.binding(Instant::ZERO, server(), BindingOptions::default())
        .expect("slot");
    let r0 = one_transmit(&mut c, Instant::ZERO);
    let ch = challenge(&r0.bytes, 401, Some(REALM), Some("nonce-1"), None);
    assert!(c.feed(ms(10), server(), &ch));
    let r1 = one_transmit(&mut c, ms(10));
    assert_md5_authenticated(&r1, "nonce-1");
    let stale = challenge(&r1.bytes, 438, Some(other), Some("nonce-2"), None);
    assert!(c.feed(ms(20), server(), &stale));
    let r2 = one_transmit(&mut c, ms(20));
    let m = r2.msg();
    assert_eq!(text(&m, types::REALM), Some(other));
    let new_key = IntegrityKey::long_term(PasswordAlgorithmKind::Md5, USER, other, PASS);
    m.verify_integrity(&new_key)
        .expect("integrity under the new realm's key");
    assert!(m.verify_integrity(&md5_key()).is_err());

    // Same realm, MD5 first and then SHA-256 offered with a nonce cookie.
    let mut c = auth_client();
    c.binding(Instant::ZERO, server(), BindingOptions::default())
        .expect("slot");
    let r0 = one_transmit(&mut c, Instant::ZERO);
    let ch = challenge(&r0.bytes, 401, Some(REALM), Some("nonce-1"), None);
    assert!(c.feed(ms(10), server(), &ch));
    let r1 = one_transmit(&mut c, ms(10));
    assert_md5_authenticated(&r1, "nonce-1");
    let nonce = format!("{COOKIE_PA}f00dcafe");
    let sha256 = [PasswordAlgorithm {
        algorithm: PasswordAlgorithmKind::Sha256.number(),
        params: &[],
    }];
    let stale = challenge(&r1.bytes, 438, Some(REALM), Some(&nonce), Some(&sha256));
    assert!(c.feed(ms(20), server(), &stale));
    let r2 = one_transmit(&mut c, ms(20));
    let m = r2.msg();
    assert!(m.find(types::MESSAGE_INTEGRITY_SHA256).is_some());
    m.verify_integrity(&sha256_key())
        .expect("integrity under the SHA-256 key");
}

#[test]
fn repeated_challenges_are_bounded() {
    // §9.2.5: no retry that does not change username, realm or password. A 401 to a request
    // that already carried our credentials for that realm means they were rejected.
    let mut c = auth_client();
    let id = c
        .binding(Instant::ZERO, server(), BindingOptions::default())
        .expect("slot");
    let r0 = one_transmit(&mut c, Instant::ZERO);
    let ch = challenge(&r0.bytes, 401, Some(REALM), Some("n1"), None);
    assert!(c.feed(ms(10), server(), &ch));
    let r1 = one_transmit(&mut c, ms(10));
    assert_md5_authenticated(&r1, "n1");
    let ch = challenge(&r1.bytes, 401, Some(REALM), Some("n2"), None);
    assert!(c.feed(ms(20), server(), &ch));
    assert_eq!(
        events(&mut c),
        [ClientEvent::Failed {
            id,
            server: server(),
            error: TransactionError::Unauthorized
        }]
    );
    assert!(
        transmits(&mut c, ms(20)).is_empty(),
        "no retry with the same credentials"
    );

    // A server answering every request with 438 and a fresh nonce cannot loop us.
    let mut c = auth_client();
    let id = c
        .binding(Instant::ZERO, server(), BindingOptions::default())
        .expect("slot");
    let mut req = one_transmit(&mut c, Instant::ZERO);
    let mut requests = 1;
    let mut result = None;
    for k in 0..20u64 {
        let code = if k == 0 { 401 } else { 438 };
        let nonce = format!("nonce-{k}");
        let ch = challenge(&req.bytes, code, Some(REALM), Some(&nonce), None);
        assert!(c.feed(ms(10 * (k + 1)), server(), &ch));
        if let Some(ev) = c.poll_event() {
            result = Some(ev);
            break;
        }
        req = one_transmit(&mut c, ms(10 * (k + 1)));
        assert_md5_authenticated(&req, &nonce);
        requests += 1;
    }
    assert_eq!(
        result,
        Some(ClientEvent::Failed {
            id,
            server: server(),
            error: TransactionError::TooManyRetries
        })
    );
    assert!(requests <= 4, "{requests} requests for one transaction");
}

#[test]
fn challenges_without_realm_or_nonce_fail() {
    for (realm, nonce) in [(None, Some("n")), (Some(REALM), None), (None, None)] {
        let mut c = auth_client();
        let id = c
            .binding(Instant::ZERO, server(), BindingOptions::default())
            .expect("slot");
        let r0 = one_transmit(&mut c, Instant::ZERO);
        let ch = challenge(&r0.bytes, 401, realm, nonce, None);
        assert!(c.feed(ms(10), server(), &ch));
        assert_eq!(
            c.poll_event(),
            Some(ClientEvent::Failed {
                id,
                server: server(),
                error: TransactionError::Unauthorized
            }),
            "realm {realm:?} nonce {nonce:?}"
        );
        assert!(transmits(&mut c, ms(10)).is_empty());
    }
}

/// A nonce cookie announcing the "Password algorithms" security feature (bit 0 set: the 24 bits
/// 0x800000 are base64 "gAAA").
const COOKIE_PA: &str = "obMatJos2gAAA";

#[test]
fn rfc8489_password_algorithms_sha256() {
    let nonce = format!("{COOKIE_PA}f00dcafe");
    // An unknown algorithm with parameters first, then SHA-256, then MD5: the client picks the
    // first one it supports and echoes the list byte for byte (bid-down protection, §9.2.1).
    let offered = [
        PasswordAlgorithm {
            algorithm: 0x0077,
            params: &[1, 2, 3],
        },
        PasswordAlgorithm {
            algorithm: PasswordAlgorithmKind::Sha256.number(),
            params: &[],
        },
        PasswordAlgorithm {
            algorithm: PasswordAlgorithmKind::Md5.number(),
            params: &[],
        },
    ];
    let mut c = auth_client();
    let id = c
        .binding(Instant::ZERO, server(), BindingOptions::default())
        .expect("slot");
    let r0 = one_transmit(&mut c, Instant::ZERO);
    let ch = challenge(&r0.bytes, 401, Some(REALM), Some(&nonce), Some(&offered));
    assert!(c.feed(ms(10), server(), &ch));
    let r1 = one_transmit(&mut c, ms(10));
    assert_ne!(r1.tid(), r0.tid());
    let m = r1.msg();
    assert_eq!(text(&m, types::USERNAME), Some(USER));
    assert_eq!(text(&m, types::REALM), Some(REALM));
    assert_eq!(text(&m, types::NONCE), Some(nonce.as_str()));
    let sent_list = m
        .find(types::PASSWORD_ALGORITHMS)
        .expect("PASSWORD-ALGORITHMS echoed")
        .value;
    let got_list = Message::parse(&ch)
        .expect("challenge parses")
        .find(types::PASSWORD_ALGORITHMS)
        .expect("challenge has the list")
        .value;
    assert_eq!(sent_list, got_list, "echoed verbatim");
    assert_eq!(
        m.decode(types::PASSWORD_ALGORITHM),
        Some(Ok(Attribute::PasswordAlgorithm(PasswordAlgorithm {
            algorithm: 0x0002,
            params: &[]
        })))
    );
    assert!(m.find(types::MESSAGE_INTEGRITY).is_none(), "SHA-256 only");
    assert!(m.find(types::MESSAGE_INTEGRITY_SHA256).is_some());
    m.verify_integrity(&sha256_key())
        .expect("MESSAGE-INTEGRITY-SHA256 with the SHA-256 long-term key");
    assert!(m.verify_integrity(&md5_key()).is_err(), "not the MD5 key");
    m.verify_fingerprint().expect("fingerprint");

    // The success must be signed with the SHA-256 key.
    assert!(c.feed(
        ms(20),
        server(),
        &signed_success_sha256(&r1.bytes, &md5_key())
    ));
    assert!(c.poll_event().is_none(), "wrong key ignored");
    assert!(c.feed(
        ms(30),
        server(),
        &signed_success_sha256(&r1.bytes, &sha256_key())
    ));
    assert!(matches!(c.poll_event(), Some(ClientEvent::Succeeded { id: got, .. }) if got == id));
}

#[test]
fn rfc8489_first_supported_algorithm_wins() {
    let nonce = format!("{COOKIE_PA}abc");
    let offered = [
        PasswordAlgorithm {
            algorithm: PasswordAlgorithmKind::Md5.number(),
            params: &[],
        },
        PasswordAlgorithm {
            algorithm: PasswordAlgorithmKind::Sha256.number(),
            params: &[],
        },
    ];
    let mut c = auth_client();
    c.binding(Instant::ZERO, server(), BindingOptions::default())
        .expect("slot");
    let r0 = one_transmit(&mut c, Instant::ZERO);
    let ch = challenge(&r0.bytes, 401, Some(REALM), Some(&nonce), Some(&offered));
    assert!(c.feed(ms(10), server(), &ch));
    let r1 = one_transmit(&mut c, ms(10));
    let m = r1.msg();
    assert_eq!(
        m.decode(types::PASSWORD_ALGORITHM),
        Some(Ok(Attribute::PasswordAlgorithm(PasswordAlgorithm {
            algorithm: 0x0001,
            params: &[]
        })))
    );
    assert!(m.find(types::PASSWORD_ALGORITHMS).is_some());
    // §9.2.5: once PASSWORD-ALGORITHMS was offered, MESSAGE-INTEGRITY-SHA256 only.
    assert!(m.find(types::MESSAGE_INTEGRITY).is_none());
    m.verify_integrity(&md5_key())
        .expect("MESSAGE-INTEGRITY-SHA256 keyed with the MD5 long-term key");
}

#[test]
fn rfc8489_no_supported_algorithm_or_stripped_list_does_not_retry() {
    let nonce = format!("{COOKIE_PA}abc");
    let unsupported = [PasswordAlgorithm {
        algorithm: 0x0099,
        params: &[],
    }];
    for list in [Some(&unsupported[..]), None] {
        // None: the cookie says the server offers algorithms but the list is missing, so an
        // attacker stripped it; §9.2.5 forbids retrying (no silent downgrade to MD5).
        let mut c = auth_client();
        let id = c
            .binding(Instant::ZERO, server(), BindingOptions::default())
            .expect("slot");
        let r0 = one_transmit(&mut c, Instant::ZERO);
        let ch = challenge(&r0.bytes, 401, Some(REALM), Some(&nonce), list);
        assert!(c.feed(ms(10), server(), &ch));
        assert_eq!(
            c.poll_event(),
            Some(ClientEvent::Failed {
                id,
                server: server(),
                error: TransactionError::Unauthorized
            }),
            "list {list:?}"
        );
        assert!(
            transmits(&mut c, ms(10)).is_empty(),
            "list {list:?}: retried"
        );
    }

    // A cookie without the feature bit ("AAAA") and no list: classic MD5 is fine.
    let mut c = auth_client();
    c.binding(Instant::ZERO, server(), BindingOptions::default())
        .expect("slot");
    let r0 = one_transmit(&mut c, Instant::ZERO);
    let ch = challenge(&r0.bytes, 401, Some(REALM), Some("obMatJos2AAAAxyz"), None);
    assert!(c.feed(ms(10), server(), &ch));
    assert_md5_authenticated(&one_transmit(&mut c, ms(10)), "obMatJos2AAAAxyz");
}

#[test]
fn credentials_are_per_server() {
    // RFC 8489 §9.2.3: credentials learnt from one server go to that server only; the first
    // request to any other server carries none (§9.2.3.1), and a plain server's unsigned answer
    // to it is accepted.
    let other = addr("192.0.2.1:3478");
    let mut plain = Server::new(ServerConfig::new(other)).expect("valid config");
    let mut c = auth_client();
    c.binding(Instant::ZERO, server(), BindingOptions::default())
        .expect("slot");
    let r0 = one_transmit(&mut c, Instant::ZERO);
    let ch = challenge(&r0.bytes, 401, Some(REALM), Some("n1"), None);
    assert!(c.feed(ms(10), server(), &ch));
    let r1 = one_transmit(&mut c, ms(10));
    assert!(c.feed(ms(20), server(), &signed_success(&r1.bytes, &md5_key())));
    assert!(matches!(
        c.poll_event(),
        Some(ClientEvent::Succeeded { .. })
    ));

    let id = c
        .binding(ms(30), other, BindingOptions::default())
        .expect("slot");
    let req = one_transmit(&mut c, ms(30));
    assert_eq!(req.to, other);
    assert_unauthenticated(&req);
    let mut out = [0u8; 1280];
    let Outcome::Respond(t) = plain.answer(ms(30), other, mapped(), &req.bytes, &mut out) else {
        panic!("the server answers a Binding request");
    };
    assert!(c.feed(ms(40), other, &out[..t.len]));
    assert!(
        matches!(c.poll_event(), Some(ClientEvent::Succeeded { id: got, server: s, mapped: Some(m), .. })
            if got == id && s == other && m == mapped())
    );

    // And the first server still gets the cached credentials.
    c.binding(ms(50), server(), BindingOptions::default())
        .expect("slot");
    assert_md5_authenticated(&one_transmit(&mut c, ms(50)), "n1");
}

#[test]
fn credentials_rejected_for_a_cached_realm_are_forgotten() {
    let mut c = auth_client();
    c.binding(Instant::ZERO, server(), BindingOptions::default())
        .expect("slot");
    let r0 = one_transmit(&mut c, Instant::ZERO);
    let ch = challenge(&r0.bytes, 401, Some(REALM), Some("n1"), None);
    assert!(c.feed(ms(10), server(), &ch));
    let r1 = one_transmit(&mut c, ms(10));
    assert!(c.feed(ms(20), server(), &signed_success(&r1.bytes, &md5_key())));
    c.poll_event().expect("success");
    // Next transaction uses the cache and is refused with 401: it fails...
    let id = c
        .binding(ms(30), server(), BindingOptions::default())
        .expect("slot");
    let r2 = one_transmit(&mut c, ms(30));
    assert_md5_authenticated(&r2, "n1");
    let ch = challenge(&r2.bytes, 401, Some(REALM), Some("n2"), None);
    assert!(c.feed(ms(40), server(), &ch));
    assert_eq!(
        c.poll_event(),
        Some(ClientEvent::Failed {
            id,
            server: server(),
            error: TransactionError::Unauthorized
        })
    );
    // ...and the next one starts afresh, without the rejected credentials.
    c.binding(ms(50), server(), BindingOptions::default())
        .expect("slot");
    assert_unauthenticated(&one_transmit(&mut c, ms(50)));
}

fn redirect(req: &[u8], to: SocketAddr) -> Vec<u8> {
    answer(req, Class::ErrorResponse, |b| {
        b.add(&Attribute::ErrorCode(ErrorCode::TRY_ALTERNATE))?;
        b.add(&Attribute::AlternateServer(to))?;
        b.add_fingerprint()
    })
}

#[test]
fn alternate_server_redirects() {
    let alt = addr("198.51.100.9:3478");
    let mut c = Client::new(ClientConfig::default(), 21);
    let id = c
        .binding(Instant::ZERO, server(), BindingOptions::default())
        .expect("slot");
    let r0 = one_transmit(&mut c, Instant::ZERO);
    assert!(c.feed(ms(10), server(), &redirect(&r0.bytes, alt)));
    assert!(c.poll_event().is_none());
    let r1 = one_transmit(&mut c, ms(10));
    assert_eq!(r1.to, alt, "the retry goes to the alternate");
    assert_ne!(r1.tid(), r0.tid());
    // Retransmissions too.
    let r1b = one_transmit(&mut c, ms(510));
    assert_eq!(r1b.to, alt);
    assert_eq!(r1b.bytes, r1.bytes);
    assert!(c.feed(ms(520), alt, &success(&r1.bytes, mapped())));
    assert_eq!(
        c.poll_event(),
        Some(ClientEvent::Succeeded {
            id,
            server: alt,
            from: alt,
            mapped: Some(mapped()),
            other_address: None,
            response_origin: None,
            rtt: Duration::from_millis(10),
        })
    );
}

#[test]
fn redirects_are_bounded_and_never_loop() {
    // A chain of distinct alternates ends after a few hops.
    let mut c = Client::new(ClientConfig::default(), 22);
    let id = c
        .binding(Instant::ZERO, server(), BindingOptions::default())
        .expect("slot");
    let mut req = one_transmit(&mut c, Instant::ZERO);
    let mut hops = 0;
    let mut result = None;
    for k in 1..20u8 {
        let next = SocketAddr::from(([198, 51, 100, 100 + k], 3478));
        assert!(c.feed(ms(u64::from(k)), req.to, &redirect(&req.bytes, next)));
        if let Some(ev) = c.poll_event() {
            result = Some(ev);
            break;
        }
        req = one_transmit(&mut c, ms(u64::from(k)));
        assert_eq!(req.to, next);
        hops += 1;
    }
    assert!(
        matches!(result, Some(ClientEvent::Failed { id: got, error: TransactionError::TooManyRetries, .. }) if got == id)
    );
    assert!((1..=3).contains(&hops), "{hops} redirects followed");

    // §10: a redirect back to a server already tried fails the transaction.
    let alt = addr("198.51.100.9:3478");
    for back_to in [server(), alt] {
        let mut c = Client::new(ClientConfig::default(), 23);
        let id = c
            .binding(Instant::ZERO, server(), BindingOptions::default())
            .expect("slot");
        let r0 = one_transmit(&mut c, Instant::ZERO);
        assert!(c.feed(ms(1), server(), &redirect(&r0.bytes, alt)));
        let r1 = one_transmit(&mut c, ms(1));
        assert!(c.feed(ms(2), alt, &redirect(&r1.bytes, back_to)));
        assert!(
            matches!(c.poll_event(), Some(ClientEvent::Failed { id: got, error: TransactionError::TooManyRetries, .. }) if got == id),
            "redirect to {back_to}"
        );
        assert!(transmits(&mut c, ms(2)).is_empty());
    }

    // 300 without ALTERNATE-SERVER, or one of the other address family, is a plain rejection.
    for alternate in [None, Some(addr("[2001:db8::9]:3478"))] {
        let mut c = Client::new(ClientConfig::default(), 24);
        let id = c
            .binding(Instant::ZERO, server(), BindingOptions::default())
            .expect("slot");
        let r0 = one_transmit(&mut c, Instant::ZERO);
        let resp = answer(&r0.bytes, Class::ErrorResponse, |b| {
            b.add(&Attribute::ErrorCode(ErrorCode::TRY_ALTERNATE))?;
            if let Some(a) = alternate {
                b.add(&Attribute::AlternateServer(a))?;
            }
            Ok(())
        });
        assert!(c.feed(ms(1), server(), &resp));
        assert_eq!(
            c.poll_event(),
            Some(ClientEvent::Failed {
                id,
                server: server(),
                error: TransactionError::Rejected { code: 300 }
            }),
            "alternate {alternate:?}"
        );
    }
}

#[test]
fn unsigned_redirects_of_authenticated_requests_are_ignored() {
    let mut c = auth_client();
    c.binding(Instant::ZERO, server(), BindingOptions::default())
        .expect("slot");
    let r0 = one_transmit(&mut c, Instant::ZERO);
    let ch = challenge(&r0.bytes, 401, Some(REALM), Some("n1"), None);
    assert!(c.feed(ms(10), server(), &ch));
    let r1 = one_transmit(&mut c, ms(10));
    let evil = addr("203.0.113.66:3478");
    assert!(c.feed(ms(20), server(), &redirect(&r1.bytes, evil)));
    assert!(c.poll_event().is_none());
    assert!(transmits(&mut c, ms(20)).is_empty(), "no redirect");
    let r1b = one_transmit(&mut c, ms(510));
    assert_eq!(r1b.to, server());
    assert_eq!(r1b.bytes, r1.bytes);
}

#[test]
fn pad_requests_to_makes_requests_at_least_that_long() {
    for software in [None, Some("holepunch-test")] {
        for options in [
            BindingOptions::default(),
            BindingOptions {
                change_ip: true,
                change_port: true,
                response_port: None,
            },
            BindingOptions {
                change_ip: false,
                change_port: true,
                response_port: Some(40_000),
            },
        ] {
            // The natural size, unpadded.
            let mut c = Client::new(
                ClientConfig {
                    software,
                    ..ClientConfig::default()
                },
                25,
            );
            c.binding(Instant::ZERO, server(), options).expect("slot");
            let natural = one_transmit(&mut c, Instant::ZERO).bytes.len();

            for pad in 0..=300usize {
                let config = ClientConfig {
                    software,
                    pad_requests_to: pad,
                    ..ClientConfig::default()
                };
                let mut c = Client::new(config, 25);
                c.binding(Instant::ZERO, server(), options).expect("slot");
                let req = one_transmit(&mut c, Instant::ZERO);
                let len = req.bytes.len();
                let ctx = format!("pad {pad} software {software:?} {options:?}: len {len}");
                assert!(len >= pad, "{ctx}");
                assert_eq!(len % 4, 0, "{ctx}");
                let m = req.msg();
                m.verify_fingerprint().expect("fingerprint");
                let padded = m.find(types::PADDING).is_some();
                if pad <= natural {
                    assert_eq!(len, natural, "{ctx}: padded needlessly");
                    assert!(!padded, "{ctx}");
                } else {
                    assert!(padded, "{ctx}");
                    // Not more than one PADDING header's worth of slack.
                    assert!(len < pad + 8, "{ctx}");
                }
                // The options survive padding.
                if options.change_port {
                    assert_eq!(
                        m.decode(types::CHANGE_REQUEST),
                        Some(Ok(Attribute::ChangeRequest {
                            change_ip: options.change_ip,
                            change_port: true
                        })),
                        "{ctx}"
                    );
                }
                if let Some(p) = options.response_port {
                    assert_eq!(
                        m.decode(types::RESPONSE_PORT),
                        Some(Ok(Attribute::ResponsePort(p))),
                        "{ctx}"
                    );
                }
                if let Some(s) = software {
                    assert_eq!(text(&m, types::SOFTWARE), Some(s), "{ctx}");
                }
            }
        }
    }
    // Padding beyond the slot size is an encode error, not a truncated request.
    let mut c = Client::new(
        ClientConfig {
            pad_requests_to: 2000,
            max_request_len: 1280,
            ..ClientConfig::default()
        },
        26,
    );
    assert!(matches!(
        c.binding(Instant::ZERO, server(), BindingOptions::default()),
        Err(ClientError::Encode(_))
    ));
    assert!(c.is_idle(), "a failed start leaves no transaction behind");
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn rfc5780_discovery_against_core_server() {
    // Against core's own RFC 5780 server: a padded request gets OTHER-ADDRESS and
    // RESPONSE-ORIGIN; CHANGE-REQUEST makes the answer come from the other socket.
    let primary = addr("192.0.2.1:3478");
    let alternate = addr("192.0.2.2:3479");
    let mut srv = Server::new(ServerConfig {
        alternate: Some(alternate),
        ..ServerConfig::new(primary)
    })
    .expect("valid config");
    let me = addr("203.0.113.7:50000");
    let mut c = Client::new(
        ClientConfig {
            pad_requests_to: 128,
            ..ClientConfig::default()
        },
        27,
    );
    for (change_ip, change_port, want_from) in [
        (false, false, primary),
        (false, true, addr("192.0.2.1:3479")),
        (true, false, addr("192.0.2.2:3478")),
        (true, true, alternate),
    ] {
        let options = BindingOptions {
            change_ip,
            change_port,
            response_port: None,
        };
        let id = c.binding(Instant::ZERO, primary, options).expect("slot");
        let req = one_transmit(&mut c, Instant::ZERO);
        assert!(req.bytes.len() >= 128);
        let mut out = [0u8; 1280];
        let Outcome::Respond(t) = srv.answer(ms(4), primary, me, &req.bytes, &mut out) else {
            panic!("server answers");
        };
        assert_eq!(t.from, Some(want_from));
        assert_eq!(t.to, me);
        assert!(c.feed(ms(5), want_from, &out[..t.len]));
        assert_eq!(
            c.poll_event(),
            Some(ClientEvent::Succeeded {
                id,
                server: primary,
                from: want_from,
                mapped: Some(me),
                other_address: Some(alternate),
                response_origin: Some(want_from),
                rtt: Duration::from_millis(5),
            })
        );
    }
}

#[test]
fn small_transmit_buffer_is_not_written() {
    let mut c = Client::new(ClientConfig::default(), 28);
    c.binding(Instant::ZERO, server(), BindingOptions::default())
        .expect("slot");
    let mut tiny = [0u8; 8];
    assert!(c.poll_transmit(Instant::ZERO, &mut tiny).is_none());
    assert_eq!(tiny, [0u8; 8]);
    // Nothing was counted as sent: the full buffer still gets the first send now.
    one_transmit(&mut c, Instant::ZERO);
    assert_eq!(c.poll_timeout(), Some(ms(500)));
}

fn raw_attr(out: &mut Vec<u8>, t: u16, value: &[u8]) {
    out.extend_from_slice(&t.to_be_bytes());
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

/// A response to `tid` with the given class and raw attributes.
fn raw_response(tid: TransactionId, class_bits: u16, attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (t, v) in attrs {
        raw_attr(&mut body, *t, v);
    }
    let ty: u16 = 0x0001 | ((class_bits & 1) << 4) | ((class_bits & 2) << 7);
    let mut m = Vec::with_capacity(20 + body.len());
    m.extend_from_slice(&ty.to_be_bytes());
    m.extend_from_slice(&(body.len() as u16).to_be_bytes());
    m.extend_from_slice(&0x2112_A442u32.to_be_bytes());
    m.extend_from_slice(&tid.0);
    m.extend_from_slice(&body);
    m
}

fn attr_strategy() -> impl Strategy<Value = (u16, Vec<u8>)> {
    let interesting = prop::sample::select(vec![
        types::XOR_MAPPED_ADDRESS,
        types::MAPPED_ADDRESS,
        types::ERROR_CODE,
        types::REALM,
        types::NONCE,
        types::PASSWORD_ALGORITHMS,
        types::ALTERNATE_SERVER,
        types::OTHER_ADDRESS,
        types::RESPONSE_ORIGIN,
        types::MESSAGE_INTEGRITY,
        types::MESSAGE_INTEGRITY_SHA256,
        types::FINGERPRINT,
        types::UNKNOWN_ATTRIBUTES,
        types::SOFTWARE,
    ]);
    let ty = prop_oneof![interesting, any::<u16>()];
    let value = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..48),
        // Plausible ERROR-CODE values (classes 3..6) to reach the 300/401/438 paths.
        (3u8..7, 0u8..100).prop_map(|(c, n)| vec![0, 0, c, n]),
        Just(b"obMatJos2gAAAnonce".to_vec()),
        // A well-formed IPv4 address value, so success and redirect paths are reached.
        prop::array::uniform6(any::<u8>()).prop_map(|a| {
            let mut v = vec![0, 1];
            v.extend_from_slice(&a);
            v
        }),
    ];
    (ty, value)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn client_survives_arbitrary_datagrams(data in prop::collection::vec(any::<u8>(), 0..600)) {
        let mut c = auth_client();
        c.binding(Instant::ZERO, server(), BindingOptions::default()).expect("slot");
        let _ = transmits(&mut c, Instant::ZERO);
        c.feed(ms(1), server(), &data);
        c.handle_timeout(ms(2));
        let _ = transmits(&mut c, ms(2));
        let _ = events(&mut c);
        let _ = c.poll_timeout();
    }

    #[test]
    fn client_survives_arbitrary_responses_to_its_transaction(
        class_bits in 2u16..4,
        attrs in prop::collection::vec(attr_strategy(), 0..8),
        second in prop::collection::vec(attr_strategy(), 0..8),
    ) {
        // Matching transaction id and method, arbitrary (well-framed) attributes, twice: the
        // second answers whatever the first caused (a retry, a redirect) or nothing.
        let mut c = auth_client();
        let id = c.binding(Instant::ZERO, server(), BindingOptions::default()).expect("slot");
        let req = one_transmit(&mut c, Instant::ZERO);
        c.feed(ms(1), server(), &raw_response(req.tid(), class_bits, &attrs));
        let mut evs = events(&mut c);
        for s in transmits(&mut c, ms(1)) {
            c.feed(ms(2), s.to, &raw_response(s.tid(), class_bits, &second));
        }
        evs.extend(events(&mut c));
        // Drive to the end: exactly one event for the one transaction.
        let mut guard = 0;
        while let Some(t) = c.poll_timeout() {
            c.handle_timeout(t);
            let _ = transmits(&mut c, t);
            evs.extend(events(&mut c));
            guard += 1;
            prop_assert!(guard < 100);
        }
        prop_assert_eq!(evs.len(), 1);
        let got = match evs[0] {
            ClientEvent::Succeeded { id, .. } | ClientEvent::Failed { id, .. } => id,
            _ => unreachable!("non_exhaustive"),
        };
        prop_assert_eq!(got, id);
    }
}

/// A server without RFC 5780 answers a padded request with 420 listing PADDING (a
/// comprehension-required type it does not know): the client retries once without it.
#[test]
fn padding_rejected_by_a_plain_server_is_dropped_and_retried() {
    use holepunch_core::stun::client::{Client, ClientConfig, ClientEvent};
    use holepunch_core::stun::{Attribute, Class, ErrorCode, Message, MessageBuilder, Method};
    let server: std::net::SocketAddr = "192.0.2.1:3478".parse().unwrap();
    let me: std::net::SocketAddr = "198.51.100.7:5000".parse().unwrap();
    let config = ClientConfig {
        pad_requests_to: 120,
        ..Default::default()
    };
    let mut client = Client::new(config, 1);
    let now = holepunch_core::time::Instant::ZERO;
    client.binding(now, server, Default::default()).unwrap();
    let mut out = [0u8; 1500];
    let mut resp = [0u8; 1500];
    let mut sizes = Vec::new();
    for _ in 0..4 {
        let Some(t) = client.poll_transmit(now, &mut out) else {
            break;
        };
        sizes.push(t.len);
        let req = Message::parse(&out[..t.len]).unwrap();
        let padded = req
            .attributes()
            .any(|a| a.attr == holepunch_core::stun::attr::types::PADDING);
        let len = if padded {
            let mut b = MessageBuilder::new(
                &mut resp,
                Class::ErrorResponse,
                Method::BINDING,
                req.transaction_id(),
            )
            .unwrap();
            b.add(&Attribute::ErrorCode(ErrorCode::UNKNOWN_ATTRIBUTE))
                .unwrap();
            b.add_unknown_attributes(&[holepunch_core::stun::attr::types::PADDING])
                .unwrap();
            b.finish()
        } else {
            let mut b = MessageBuilder::new(
                &mut resp,
                Class::SuccessResponse,
                Method::BINDING,
                req.transaction_id(),
            )
            .unwrap();
            b.add(&Attribute::XorMappedAddress(me)).unwrap();
            b.finish()
        };
        assert!(client.feed(now, server, &resp[..len]));
    }
    assert_eq!(sizes.len(), 2, "one padded try, one plain retry: {sizes:?}");
    assert!(sizes[0] >= 120 && sizes[1] < 120, "{sizes:?}");
    match client.poll_event() {
        Some(ClientEvent::Succeeded { mapped, .. }) => assert_eq!(mapped, Some(me)),
        other => panic!("expected success, got {other:?}"),
    }
}
