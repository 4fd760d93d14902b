//! The stateless STUN Binding server: plain RFC 8489 answers, RFC 5780 behaviour discovery
//! (four sockets, CHANGE-REQUEST, RESPONSE-PORT, OTHER-ADDRESS, RESPONSE-ORIGIN, PADDING), error
//! responses, configuration checks, and — above all — the amplification bound.

#[path = "support/verbs.rs"]
mod verbs;
use holepunch_core::io::{Datagram, Received};
use std::net::SocketAddr;
use verbs::{Answer, Outcome};

use holepunch_core::{Instant, Transmit};

/// The time the tests answer at (the default size-bounded policy ignores time).
const T0: Instant = Instant::ZERO;
use holepunch_core::stun::attr::types;
use holepunch_core::stun::server::{
    AmplificationPolicy, ConfigError, DEFAULT_MAX_PENDING, RateLimit, Server, ServerConfig,
};
use holepunch_core::stun::{
    Attribute, Class, ErrorCode, Message, MessageBuilder, Method, TransactionId,
};
use proptest::prelude::*;

const OUT: usize = 1280;
const SOFTWARE: &str = "holepunch test server 0.1";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("valid socket address")
}

fn p4() -> SocketAddr {
    addr("192.0.2.1:3478")
}
fn a4() -> SocketAddr {
    addr("192.0.2.2:3479")
}
fn p6() -> SocketAddr {
    addr("[2001:db8::1]:3478")
}
fn a6() -> SocketAddr {
    addr("[2001:db8::2]:3479")
}
fn c4() -> SocketAddr {
    addr("203.0.113.7:50000")
}
fn c6() -> SocketAddr {
    addr("[2001:db8:ffff::7]:50000")
}

const TID: TransactionId = TransactionId([0xa5, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0x5a]);

fn plain(primary: SocketAddr) -> Server {
    Server::new(ServerConfig::new(primary)).expect("valid config")
}

fn rfc5780(primary: SocketAddr, alternate: SocketAddr) -> Server {
    Server::new(ServerConfig {
        alternate: Some(alternate),
        ..ServerConfig::new(primary)
    })
    .expect("valid config")
}

/// A request of `method` carrying `attrs` (raw type and value), optionally FINGERPRINT.
fn request(method: Method, attrs: &[(u16, Vec<u8>)], fingerprint: bool) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let mut b = MessageBuilder::new(&mut buf, Class::Request, method, TID).expect("header");
    for (t, v) in attrs {
        b.add(&Attribute::Other { attr: *t, value: v })
            .expect("attribute fits");
    }
    if fingerprint {
        b.add_fingerprint().expect("fingerprint fits");
    }
    let len = b.finish();
    buf.truncate(len);
    buf
}

fn binding(attrs: &[(u16, Vec<u8>)], fingerprint: bool) -> Vec<u8> {
    request(Method::BINDING, attrs, fingerprint)
}

fn change(ip: bool, port: bool) -> (u16, Vec<u8>) {
    let flags = (u32::from(ip) << 2) | (u32::from(port) << 1);
    (types::CHANGE_REQUEST, flags.to_be_bytes().to_vec())
}

fn response_port(port: u16) -> (u16, Vec<u8>) {
    let p = port.to_be_bytes();
    (types::RESPONSE_PORT, vec![p[0], p[1], 0, 0])
}

fn padding(len: usize) -> (u16, Vec<u8>) {
    (types::PADDING, vec![0xee; len])
}

/// The server's answer, or the outcome when it does not answer.
fn handle(
    srv: &Server,
    local: SocketAddr,
    from: SocketAddr,
    req: &[u8],
) -> Result<(Transmit, Vec<u8>), Outcome> {
    let mut out = [0u8; OUT];
    // A fresh copy per request: these policies keep no state between requests anyway.
    match srv.clone().answer(T0, local, from, req, &mut out) {
        Outcome::Respond(t) => {
            assert!(t.len <= OUT);
            Ok((t, out[..t.len].to_vec()))
        }
        other => Err(other),
    }
}

fn answer(srv: &Server, local: SocketAddr, from: SocketAddr, req: &[u8]) -> (Transmit, Vec<u8>) {
    match handle(srv, local, from, req) {
        Ok(r) => r,
        Err(o) => panic!("no answer: {o:?}"),
    }
}

/// Checks what every response must satisfy and returns it parsed.
fn check_response<'a>(req: &[u8], resp: &'a [u8]) -> Message<'a> {
    let q = Message::parse(req).expect("request parses");
    let m = Message::parse(resp).expect("response parses");
    assert!(matches!(
        m.class(),
        Class::SuccessResponse | Class::ErrorResponse
    ));
    assert_eq!(m.method(), q.method(), "response echoes the method");
    assert_eq!(m.transaction_id(), q.transaction_id());
    assert_eq!(
        m.has_fingerprint(),
        q.has_fingerprint(),
        "FINGERPRINT mirrored iff the request had one"
    );
    if m.has_fingerprint() {
        m.verify_fingerprint()
            .expect("response FINGERPRINT verifies");
    }
    m
}

fn error_code(m: &Message<'_>) -> u16 {
    m.error_code()
        .expect("ERROR-CODE present")
        .expect("ERROR-CODE decodes")
        .code
}

fn unknown_list(m: &Message<'_>) -> Vec<u16> {
    match m.decode(types::UNKNOWN_ATTRIBUTES) {
        Some(Ok(Attribute::UnknownAttributes(list))) => list.iter().collect(),
        other => panic!("no UNKNOWN-ATTRIBUTES: {other:?}"),
    }
}

fn addr_attr(m: &Message<'_>, t: u16) -> Option<SocketAddr> {
    match m.decode(t)? {
        Ok(Attribute::OtherAddress(a) | Attribute::ResponseOrigin(a)) => Some(a),
        other => panic!("bad address attribute: {other:?}"),
    }
}

#[test]
fn plain_binding_reflects_the_sender_v4_and_v6() {
    for (primary, client, addr_len) in [(p4(), c4(), 12), (p6(), c6(), 24)] {
        let srv = plain(primary);
        assert_eq!(srv.local_addresses().collect::<Vec<_>>(), [primary]);
        for fingerprint in [false, true] {
            let req = binding(&[], fingerprint);
            let (t, resp) = answer(&srv, primary, client, &req);
            assert_eq!(t.from, Some(primary));
            assert_eq!(t.to, client);
            let fp = if fingerprint { 8 } else { 0 };
            assert_eq!(t.len, 20 + addr_len + fp, "minimal answer");
            let m = check_response(&req, &resp);
            assert_eq!(m.class(), Class::SuccessResponse);
            assert_eq!(
                m.xor_mapped_address().expect("present").expect("decodes"),
                client
            );
            // It really is XORed (with the cookie and, for IPv6, the transaction id).
            let raw = m.find(types::XOR_MAPPED_ADDRESS).expect("present").value;
            assert_ne!(&raw[2..4], &client.port().to_be_bytes());
            assert!(m.find(types::OTHER_ADDRESS).is_none());
            assert!(m.find(types::RESPONSE_ORIGIN).is_none());
            assert!(m.find(types::SOFTWARE).is_none());
            assert!(!m.has_integrity());
        }
    }
    // A v4-mapped or cross-family sender is reflected as it arrived.
    let (_, resp) = answer(&plain(p6()), p6(), c4(), &binding(&[], true));
    let m = Message::parse(&resp).expect("parses");
    assert_eq!(m.xor_mapped_address(), Some(Ok(c4())));
}

#[test]
fn software_is_added_only_when_the_request_pays_for_it() {
    let srv = Server::new(ServerConfig {
        software: Some(SOFTWARE),
        ..ServerConfig::new(p4())
    })
    .expect("valid config");
    let (_, resp) = answer(&srv, p4(), c4(), &binding(&[], true));
    assert!(
        Message::parse(&resp)
            .expect("parses")
            .find(types::SOFTWARE)
            .is_none()
    );
    let need = 4 + SOFTWARE.len().next_multiple_of(4);
    // A request exactly as long as the response with SOFTWARE would be.
    let req = binding(&[padding(need + 8)], true);
    assert_eq!(req.len(), 20 + 12 + 8 + need);
    let (t, resp) = answer(&srv, p4(), c4(), &req);
    let m = check_response(&req, &resp);
    assert_eq!(m.text(types::SOFTWARE), Some(Ok(SOFTWARE)));
    assert_eq!(t.len, req.len());
    // Four bytes fewer: no SOFTWARE.
    let req = binding(&[padding(need + 4)], true);
    let (_, resp) = answer(&srv, p4(), c4(), &req);
    assert!(check_response(&req, &resp).find(types::SOFTWARE).is_none());
}

#[test]
fn non_stun_and_non_requests() {
    let mut srv = plain(p4());
    let mut out = [0u8; OUT];
    let mut h = |d: &[u8]| srv.answer(T0, p4(), c4(), d, &mut out);
    // Not STUN: empty, text, RTP (first byte 0x80), DTLS (22), no magic cookie, too short,
    // unaligned.
    let good = binding(&[], true);
    // Without the cookie a Binding *request* is an RFC 3489 one (answered, see below); any
    // other type is not STUN.
    let mut no_cookie = good.clone();
    no_cookie[4] ^= 0xff;
    no_cookie[1] = 0x11;
    let mut rtp = good.clone();
    rtp[0] = 0x80;
    let mut dtls = good.clone();
    dtls[0] = 22;
    let mut unaligned = good.clone();
    unaligned.push(0);
    for (what, d) in [
        ("empty", &[][..]),
        ("text", &b"GET / HTTP/1.1\r\n\r\n"[..]),
        ("rtp", &rtp[..]),
        ("dtls", &dtls[..]),
        ("no cookie, not a request", &no_cookie[..]),
        ("short", &good[..19]),
        ("unaligned", &unaligned[..]),
    ] {
        assert_eq!(h(d), Outcome::NotStun, "{what}");
    }

    // STUN but nothing to answer.
    let msg = |class: Class| {
        let mut buf = vec![0u8; 64];
        let mut b = MessageBuilder::new(&mut buf, class, Method::BINDING, TID).expect("header");
        b.add(&Attribute::XorMappedAddress(c4())).expect("fits");
        b.add_fingerprint().expect("fits");
        let len = b.finish();
        buf.truncate(len);
        buf
    };
    let mut bad_fp = good.clone();
    let n = bad_fp.len();
    bad_fp[n - 1] ^= 0x80;
    let mut bad_len = good.clone();
    bad_len[3] = 0x40; // declared length disagrees with the datagram
    let mut truncated_attr = binding(&[padding(8)], false);
    truncated_attr[23] = 0x40; // PADDING claims 64 bytes
    for (what, d) in [
        ("success", msg(Class::SuccessResponse)),
        ("error", msg(Class::ErrorResponse)),
        ("indication", msg(Class::Indication)),
        ("bad fingerprint", bad_fp),
        ("length mismatch", bad_len),
        ("truncated attribute", truncated_attr),
    ] {
        assert_eq!(h(&d), Outcome::Dropped, "{what}");
    }
    // A request on a socket this server does not serve.
    assert_eq!(
        srv.answer(T0, addr("192.0.2.1:9999"), c4(), &good, &mut out),
        Outcome::Dropped
    );
    assert_eq!(
        srv.answer(T0, a4(), c4(), &good, &mut out),
        Outcome::Dropped
    );
}

#[test]
fn rfc5780_local_addresses() {
    let srv = rfc5780(p4(), a4());
    let mut got: Vec<SocketAddr> = srv.local_addresses().collect();
    assert_eq!(got.len(), 4);
    assert_eq!(got[0], p4(), "primary first");
    got.sort();
    let mut want = vec![p4(), addr("192.0.2.1:3479"), addr("192.0.2.2:3478"), a4()];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(srv.config().alternate, Some(a4()));
}

#[test]
fn rfc5780_change_request_from_every_socket() {
    let srv = rfc5780(p4(), a4());
    let (ip1, ip2) = (p4().ip(), a4().ip());
    let (port1, port2) = (p4().port(), a4().port());
    let other_ip = |ip| if ip == ip1 { ip2 } else { ip1 };
    let other_port = |p| if p == port1 { port2 } else { port1 };
    let locals: Vec<SocketAddr> = srv.local_addresses().collect();
    for &local in &locals {
        for (ci, cp) in [(false, false), (false, true), (true, false), (true, true)] {
            let want = SocketAddr::new(
                if ci { other_ip(local.ip()) } else { local.ip() },
                if cp {
                    other_port(local.port())
                } else {
                    local.port()
                },
            );
            assert!(locals.contains(&want));
            for fingerprint in [false, true] {
                // Padded so OTHER-ADDRESS and RESPONSE-ORIGIN fit.
                let req = binding(&[change(ci, cp), padding(64)], fingerprint);
                let (t, resp) = answer(&srv, local, c4(), &req);
                let ctx = format!("local {local} change ip {ci} port {cp}");
                assert_eq!(t.from, Some(want), "{ctx}");
                assert_eq!(t.to, c4(), "{ctx}");
                let m = check_response(&req, &resp);
                assert_eq!(m.class(), Class::SuccessResponse, "{ctx}");
                assert_eq!(m.xor_mapped_address(), Some(Ok(c4())), "{ctx}");
                // RFC 5780 §7.4: where a change-IP-and-port answer to this socket comes from.
                let other = SocketAddr::new(other_ip(local.ip()), other_port(local.port()));
                assert_eq!(addr_attr(&m, types::OTHER_ADDRESS), Some(other), "{ctx}");
                assert_eq!(
                    addr_attr(&m, types::RESPONSE_ORIGIN),
                    Some(want),
                    "{ctx}: RESPONSE-ORIGIN names the answering socket"
                );
                assert!(t.len <= req.len(), "{ctx}");
            }
        }
    }
    // The same for IPv6.
    let srv = rfc5780(p6(), a6());
    let req = binding(&[change(true, true), padding(100)], true);
    let (t, resp) = answer(&srv, p6(), c6(), &req);
    assert_eq!(t.from, Some(a6()));
    let m = check_response(&req, &resp);
    assert_eq!(m.xor_mapped_address(), Some(Ok(c6())));
    assert_eq!(addr_attr(&m, types::OTHER_ADDRESS), Some(a6()));
    assert_eq!(addr_attr(&m, types::RESPONSE_ORIGIN), Some(a6()));
}

#[test]
fn rfc5780_other_address_iff_the_request_is_big_enough() {
    // OTHER-ADDRESS and RESPONSE-ORIGIN (two address attributes) are optional: they go out
    // exactly when the answer with them is no larger than the request.
    for (primary, alternate, client) in [(p4(), a4(), c4()), (p6(), a6(), c6())] {
        let srv = rfc5780(primary, alternate);
        let addr_len = if client.is_ipv4() { 12 } else { 24 };
        let both = 2 * if alternate.is_ipv4() { 12 } else { 24 };
        for fingerprint in [false, true] {
            let fp = if fingerprint { 8 } else { 0 };
            let needed = 20 + addr_len + both + fp;
            for pad in (0..120).step_by(4) {
                let req = binding(&[padding(pad)], fingerprint);
                let (t, resp) = answer(&srv, primary, client, &req);
                let m = check_response(&req, &resp);
                let has_other = m.find(types::OTHER_ADDRESS).is_some();
                let has_origin = m.find(types::RESPONSE_ORIGIN).is_some();
                assert_eq!(has_other, has_origin, "they travel together");
                assert_eq!(
                    has_other,
                    req.len() >= needed,
                    "client {client} fp {fingerprint} request {} needs {needed}",
                    req.len()
                );
                assert!(t.len <= req.len().max(20 + addr_len + fp));
            }
        }
    }
}

#[test]
fn rfc5780_response_port_and_padding() {
    let srv = rfc5780(p4(), a4());
    // RESPONSE-PORT: to the client's IP at that port, and no PADDING mirrored.
    let req = binding(&[response_port(40_001), padding(200)], true);
    let (t, resp) = answer(&srv, p4(), c4(), &req);
    assert_eq!(t.to, SocketAddr::new(c4().ip(), 40_001));
    assert_eq!(t.from, Some(p4()));
    let m = check_response(&req, &resp);
    assert!(m.find(types::PADDING).is_none());
    assert_eq!(
        m.xor_mapped_address(),
        Some(Ok(c4())),
        "still the real source"
    );
    // With CHANGE-REQUEST too.
    let req = binding(&[change(true, false), response_port(9)], false);
    let (t, _) = answer(&srv, p4(), c4(), &req);
    assert_eq!(t.to, SocketAddr::new(c4().ip(), 9));
    assert_eq!(t.from, Some(addr("192.0.2.2:3478")));

    // PADDING is mirrored, sized so the answer matches the request, and never beyond it.
    for pad in [40usize, 100, 500, 1000] {
        let req = binding(&[padding(pad)], true);
        let (t, resp) = answer(&srv, p4(), c4(), &req);
        let m = check_response(&req, &resp);
        assert!(m.find(types::PADDING).is_some(), "pad {pad}");
        assert!(t.len <= req.len(), "pad {pad}");
        assert!(
            req.len() - t.len < 8,
            "pad {pad}: mirrored to within a word"
        );
    }
}

#[test]
fn padding_beyond_the_output_buffer_is_capped_not_dropped() {
    // RFC 5780 §7.6: PADDING exists to test fragmentation, so requests may exceed the MTU. The
    // module promises 1280 bytes of output are always enough: the mirror must shrink to fit.
    let mut srv = rfc5780(p4(), a4());
    let req = binding(&[padding(1600)], true);
    let (t, resp) = answer(&srv, p4(), c4(), &req);
    assert!(t.len <= OUT);
    let m = check_response(&req, &resp);
    assert_eq!(m.xor_mapped_address(), Some(Ok(c4())));
    // A large buffer gets the full mirror.
    let mut big = vec![0u8; 4096];
    let Outcome::Respond(t) = srv.answer(T0, p4(), c4(), &req, &mut big) else {
        panic!("answered");
    };
    assert!(t.len <= req.len() && req.len() - t.len < 8);
}

#[test]
fn without_alternate_change_request_and_response_port_are_unknown() {
    let srv = plain(p4());
    for (attr, code_point) in [
        (change(true, false), 0x0003),
        (change(false, false), 0x0003),
        (response_port(4000), 0x0027),
    ] {
        for fingerprint in [false, true] {
            let req = binding(std::slice::from_ref(&attr), fingerprint);
            let (t, resp) = answer(&srv, p4(), c4(), &req);
            assert_eq!((t.from, t.to), (Some(p4()), c4()));
            let m = check_response(&req, &resp);
            assert_eq!(m.class(), Class::ErrorResponse);
            assert_eq!(error_code(&m), 420);
            assert_eq!(unknown_list(&m), [code_point]);
        }
    }
    // Both, in a request with room for the whole list.
    let req = binding(
        &[change(true, true), response_port(4000), padding(40)],
        true,
    );
    let (_, resp) = answer(&srv, p4(), c4(), &req);
    let m = check_response(&req, &resp);
    assert_eq!(unknown_list(&m), [0x0003, 0x0027]);
    let reason = m.error_code().expect("present").expect("decodes").reason;
    assert_eq!(
        reason, "Unknown Attribute",
        "room for the reason phrase too"
    );
}

/// A 420's UNKNOWN-ATTRIBUTES list is cut to the request's size (the default policy never
/// answers bigger than the request or the documented floor), and within that it lists as many
/// types as fit, give or take the one a 4-byte word of padding can hide: the first always,
/// then the others in order.
#[test]
fn a_420_lists_as_many_unknown_types_as_the_request_size_allows() {
    let srv = rfc5780(p4(), a4());
    for fingerprint in [false, true] {
        let fp = if fingerprint { 8 } else { 0 };
        for k in 1..=16u16 {
            for pad in [0, 4, 12] {
                let types_sent: Vec<u16> = (0..k).map(|i| 0x0040 + i).collect();
                let mut attrs: Vec<(u16, Vec<u8>)> =
                    types_sent.iter().map(|t| (*t, Vec::new())).collect();
                if pad > 0 {
                    attrs.push(padding(pad));
                }
                let req = binding(&attrs, fingerprint);
                let (_, resp) = answer(&srv, p4(), c4(), &req);
                let m = check_response(&req, &resp);
                assert_eq!(error_code(&m), 420);
                let listed = unknown_list(&m);
                let ctx = format!("{k} types, padding {pad}, fingerprint {fingerprint}");
                let bound = req.len().max(20 + 8 + 8 + fp);
                assert!(resp.len() <= bound, "{ctx}: {} > {bound}", resp.len());
                assert_eq!(listed, types_sent[..listed.len()], "{ctx}");
                // The most that fit: header, ERROR-CODE, the list's header and its words.
                let fits = |n: usize| 20 + 8 + 4 + (2 * n).div_ceil(4) * 4 + fp <= bound;
                let most = (1..=usize::from(k)).rev().find(|&n| fits(n)).unwrap_or(1);
                assert!(
                    !listed.is_empty() && listed.len() + 1 >= most,
                    "{ctx}: {} listed, {most} fit",
                    listed.len()
                );
            }
        }
    }
}

#[test]
fn unknown_and_malformed_attributes() {
    let srv = rfc5780(p4(), a4());
    // Unknown comprehension-required: 420 listing it.
    let req = binding(&[(0x0031, vec![1, 2, 3, 4])], true);
    let (t, resp) = answer(&srv, p4(), c4(), &req);
    assert_eq!((t.from, t.to), (Some(p4()), c4()));
    let m = check_response(&req, &resp);
    assert_eq!(error_code(&m), 420);
    assert_eq!(unknown_list(&m), [0x0031]);
    // Several, with duplicates, and room to list them: each once, in order.
    let req = binding(
        &[
            (0x0031, vec![]),
            (0x7fff, vec![]),
            (0x0031, vec![]),
            (0x0002, vec![]),
            padding(64),
        ],
        false,
    );
    let (_, resp) = answer(&srv, p4(), c4(), &req);
    assert_eq!(
        unknown_list(&check_response(&req, &resp)),
        [0x0031, 0x7fff, 0x0002]
    );
    // Unknown comprehension-optional: ignored.
    for t in [0x8000u16, 0x8099, 0xffff] {
        let req = binding(&[(t, vec![9; 7])], true);
        let (_, resp) = answer(&srv, p4(), c4(), &req);
        let m = check_response(&req, &resp);
        assert_eq!(m.class(), Class::SuccessResponse, "{t:#06x}");
    }
    // Attributes after MESSAGE-INTEGRITY are ignored (RFC 8489 §9), unknown ones included.
    let req = framed_request(
        0x001,
        &[(types::MESSAGE_INTEGRITY, vec![0; 20]), (0x0031, vec![])],
        false,
    );
    let (_, resp) = answer(&srv, p4(), c4(), &req);
    assert_eq!(check_response(&req, &resp).class(), Class::SuccessResponse);

    // Malformed comprehension-required attributes the server uses: 400.
    for (what, attr) in [
        (
            "short CHANGE-REQUEST",
            (types::CHANGE_REQUEST, vec![0, 0, 4]),
        ),
        ("long CHANGE-REQUEST", (types::CHANGE_REQUEST, vec![0; 8])),
        ("empty CHANGE-REQUEST", (types::CHANGE_REQUEST, vec![])),
        ("short RESPONSE-PORT", (types::RESPONSE_PORT, vec![0, 80])),
        (
            "bad XOR-MAPPED-ADDRESS",
            (types::XOR_MAPPED_ADDRESS, vec![0, 7, 0, 0]),
        ),
        ("non-UTF-8 USERNAME", (types::USERNAME, vec![0xff, 0xfe])),
    ] {
        for fingerprint in [false, true] {
            let req = binding(std::slice::from_ref(&attr), fingerprint);
            let (t, resp) = answer(&srv, p4(), c4(), &req);
            assert_eq!(
                t.from,
                Some(p4()),
                "{what}: errors come from the receiving socket"
            );
            let m = check_response(&req, &resp);
            assert_eq!(m.class(), Class::ErrorResponse, "{what}");
            assert_eq!(error_code(&m), 400, "{what}");
        }
    }
    // Malformed optional ones are ignored.
    let req = binding(&[(types::SOFTWARE, vec![0xff, 0xfe])], true);
    let (_, resp) = answer(&srv, p4(), c4(), &req);
    assert_eq!(check_response(&req, &resp).class(), Class::SuccessResponse);
}

#[test]
fn non_binding_requests_get_400() {
    for srv in [plain(p4()), rfc5780(p4(), a4())] {
        // RFC 8489 §18.2 / RFC 7983: methods are 0x000-0x0FF (higher ones are not STUN).
        for method in [Method::new(0x003), Method::new(0x00a), Method::new(0x0ff)] {
            for fingerprint in [false, true] {
                let req = request(method, &[padding(40)], fingerprint);
                let (t, resp) = answer(&srv, p4(), c4(), &req);
                assert_eq!(t.to, c4());
                let m = check_response(&req, &resp);
                assert_eq!(m.class(), Class::ErrorResponse);
                assert_eq!(m.method(), method);
                assert_eq!(error_code(&m), 400);
                assert_eq!(
                    m.error_code().expect("present").expect("decodes").reason,
                    ErrorCode::BAD_REQUEST.reason
                );
            }
        }
    }
}

/// The documented minimal answer ("floor") for a response of this kind.
fn floor(resp: &Message<'_>, client: SocketAddr, fingerprint: bool) -> usize {
    let fp = if fingerprint { 8 } else { 0 };
    match resp.class() {
        // Header + XOR-MAPPED-ADDRESS.
        Class::SuccessResponse => 20 + if client.is_ipv4() { 12 } else { 24 } + fp,
        // Header + ERROR-CODE without reason + UNKNOWN-ATTRIBUTES with one type.
        _ if error_code(resp) == 420 => 20 + 8 + 8 + fp,
        // Header + ERROR-CODE without reason.
        _ => 20 + 8 + fp,
    }
}

struct Case {
    server: Server,
    local: SocketAddr,
    client: SocketAddr,
    request: Vec<u8>,
    fingerprint: bool,
    padded: bool,
    /// The same request without PADDING.
    unpadded: Vec<u8>,
    response_port: bool,
}

/// Every combination of: v4/v6 client, plain/RFC 5780 server, SOFTWARE or not, every receiving
/// socket, FINGERPRINT or not, CHANGE-REQUEST variants, RESPONSE-PORT or not, PADDING of many
/// sizes, unknown attributes, Binding or another method.
fn cases(policy: AmplificationPolicy) -> Vec<Case> {
    let mut out = Vec::new();
    let unknowns: Vec<Vec<(u16, Vec<u8>)>> = vec![
        vec![],
        vec![(0x0031, vec![])],
        vec![(0x0031, vec![]), (0x0032, vec![]), (0x0033, vec![])],
        (0x0040..0x0055).map(|t| (t, vec![])).collect(),
        vec![(0x8099, vec![7; 8])],
        vec![(0x0031, vec![1; 13]), (0x8099, vec![7; 3])],
    ];
    for (primary, alternate, client) in [(p4(), a4(), c4()), (p6(), a6(), c6())] {
        for alt in [None, Some(alternate)] {
            for software in [None, Some(SOFTWARE)] {
                let server = Server::new(ServerConfig {
                    primary,
                    alternate: alt,
                    software,
                    amplification: policy,
                    max_pending: DEFAULT_MAX_PENDING,
                })
                .expect("valid config");
                let locals: Vec<SocketAddr> = server.local_addresses().collect();
                for local in locals {
                    for fingerprint in [false, true] {
                        for ch in [
                            None,
                            Some((false, false)),
                            Some((true, false)),
                            Some((true, true)),
                        ] {
                            for rp in [None, Some(40_000u16)] {
                                for unknown in &unknowns {
                                    for method in [Method::BINDING, Method::new(0x003)] {
                                        let mut base: Vec<(u16, Vec<u8>)> = Vec::new();
                                        if let Some((i, p)) = ch {
                                            base.push(change(i, p));
                                        }
                                        if let Some(p) = rp {
                                            base.push(response_port(p));
                                        }
                                        base.extend(unknown.iter().cloned());
                                        let unpadded = request(method, &base, fingerprint);
                                        for pad in [
                                            None,
                                            Some(0),
                                            Some(1),
                                            Some(3),
                                            Some(4),
                                            Some(7),
                                            Some(8),
                                            Some(16),
                                            Some(40),
                                            Some(100),
                                            Some(200),
                                            Some(500),
                                        ] {
                                            let mut attrs = base.clone();
                                            if let Some(n) = pad {
                                                attrs.push(padding(n));
                                            }
                                            out.push(Case {
                                                server: server.clone(),
                                                local,
                                                client,
                                                request: request(method, &attrs, fingerprint),
                                                fingerprint,
                                                padded: pad.is_some(),
                                                unpadded: unpadded.clone(),
                                                response_port: rp.is_some(),
                                            });
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

#[test]
fn amplification_is_bounded_by_request_or_floor_and_worst_case_is_2_2() {
    let cases = cases(AmplificationPolicy::Bounded);
    assert!(cases.len() > 10_000, "{} cases", cases.len());
    // Worst factor as a fraction (response, request).
    let mut worst = (0usize, 1usize);
    let mut worst_extra = 0usize;
    let mut answered = 0;
    for case in &cases {
        let req = &case.request;
        let (t, resp) = match handle(&case.server, case.local, case.client, req) {
            Ok(r) => r,
            Err(o) => panic!("bounded policy answers every valid request: {o:?}"),
        };
        answered += 1;
        let m = check_response(req, &resp);
        let fl = floor(&m, case.client, case.fingerprint);
        assert!(
            t.len <= req.len().max(fl),
            "response {} > max(request {}, floor {fl}) for {:?} {:?}",
            t.len,
            req.len(),
            m.class(),
            m.error_code()
        );
        if t.len * worst.1 > worst.0 * req.len() {
            worst = (t.len, req.len());
        }
        worst_extra = worst_extra.max(t.len.saturating_sub(req.len()));

        // PADDING never inflates a response: when mirrored it stays within the request, and a
        // padded request never gets more than the larger of its own size and what the same
        // request without PADDING got.
        if m.find(types::PADDING).is_some() {
            assert!(case.padded);
            assert!(!case.response_port, "no PADDING towards RESPONSE-PORT");
            assert!(t.len <= req.len());
        }
        if case.padded {
            let (base, _) =
                handle(&case.server, case.local, case.client, &case.unpadded).expect("answered");
            assert!(t.len <= req.len().max(base.len));
        }
    }
    println!(
        "worst-case amplification over {answered} requests: {} / {} = {:.3} (+{worst_extra} bytes)",
        worst.0,
        worst.1,
        worst.0 as f64 / worst.1 as f64
    );
    // The documented worst case: a bare 20-byte request from an IPv6 client, answered with
    // 20 + 24 bytes.
    assert_eq!(worst.0 * 20, 44 * worst.1, "worst factor is 44/20 = 2.2");
    assert_eq!(worst, (44, 20));
    assert_eq!(worst_extra, 24, "at most 24 extra bytes");
}

#[test]
fn strict_policy_never_amplifies() {
    let mut dropped = 0;
    let mut answered = 0;
    for case in cases(AmplificationPolicy::Strict) {
        let req = &case.request;
        match handle(&case.server, case.local, case.client, req) {
            Ok((t, resp)) => {
                answered += 1;
                let m = check_response(req, &resp);
                assert!(t.len <= req.len(), "{} > {}", t.len, req.len());
                assert!(floor(&m, case.client, case.fingerprint) <= req.len());
            }
            Err(Outcome::Dropped) => {
                dropped += 1;
                // Only because the minimal answer does not fit: the bounded server's answer
                // to the same request is bigger than the request.
                let bounded = Server::new(ServerConfig {
                    amplification: AmplificationPolicy::Bounded,
                    ..case.server.config().clone()
                })
                .expect("valid");
                let (t, _) = handle(&bounded, case.local, case.client, req).expect("answered");
                assert!(t.len > req.len(), "dropped a request its answer fits");
            }
            Err(o) => panic!("unexpected {o:?}"),
        }
    }
    assert!(
        dropped > 0 && answered > 0,
        "dropped {dropped} answered {answered}"
    );
    // The bare requests are exactly the ones dropped.
    let mut srv = Server::new(ServerConfig {
        amplification: AmplificationPolicy::Strict,
        ..ServerConfig::new(p4())
    })
    .expect("valid");
    let mut out = [0u8; OUT];
    assert_eq!(
        srv.answer(T0, p4(), c4(), &binding(&[], true), &mut out),
        Outcome::Dropped
    );
    let req = binding(&[padding(4)], true); // 20 + 8 + 8 = 36 < 40
    assert_eq!(srv.answer(T0, p4(), c4(), &req, &mut out), Outcome::Dropped);
    let req = binding(&[padding(8)], true); // 40 = 20 + 12 + 8
    let Outcome::Respond(t) = srv.answer(T0, p4(), c4(), &req, &mut out) else {
        panic!("a request as big as its answer is answered");
    };
    assert_eq!(t.len, 40);
}

#[test]
fn config_validation() {
    let err = |alternate: &str, primary: SocketAddr| {
        Server::new(ServerConfig {
            alternate: Some(addr(alternate)),
            ..ServerConfig::new(primary)
        })
        .expect_err("invalid config")
    };
    assert_eq!(
        err("192.0.2.1:3479", p4()),
        ConfigError::AlternateNotDistinct {
            primary: p4(),
            alternate: addr("192.0.2.1:3479")
        },
        "same IP"
    );
    assert_eq!(
        err("192.0.2.2:3478", p4()),
        ConfigError::AlternateNotDistinct {
            primary: p4(),
            alternate: addr("192.0.2.2:3478")
        },
        "same port"
    );
    assert_eq!(
        err("192.0.2.1:3478", p4()),
        ConfigError::AlternateNotDistinct {
            primary: p4(),
            alternate: p4()
        }
    );
    assert_eq!(err("[2001:db8::2]:3479", p4()), ConfigError::MixedFamilies);
    assert_eq!(err("192.0.2.2:3479", p6()), ConfigError::MixedFamilies);
    assert_eq!(
        err("0.0.0.0:3479", p4()),
        ConfigError::Unspecified(addr("0.0.0.0:3479"))
    );
    assert_eq!(
        err("192.0.2.2:3479", addr("0.0.0.0:3478")),
        ConfigError::Unspecified(addr("0.0.0.0:3478"))
    );
    assert_eq!(
        err("[2001:db8::2]:3479", addr("[::]:3478")),
        ConfigError::Unspecified(addr("[::]:3478"))
    );
    for e in [
        err("192.0.2.1:3479", p4()),
        err("[2001:db8::2]:3479", p4()),
        err("0.0.0.0:3479", p4()),
    ] {
        assert!(!e.to_string().is_empty());
    }

    // A wildcard primary without alternate is fine: it serves that port on any address and
    // answers from the socket the request arrived on.
    let mut srv = plain(addr("0.0.0.0:3478"));
    let local = addr("192.0.2.77:3478");
    let req = binding(&[], true);
    let (t, _) = answer(&srv, local, c4(), &req);
    assert_eq!(t.from, Some(local));
    let mut out = [0u8; OUT];
    assert_eq!(
        srv.answer(T0, addr("192.0.2.77:3479"), c4(), &req, &mut out),
        Outcome::Dropped
    );
}

#[test]
fn small_output_buffers_drop_instead_of_panicking() {
    let mut srv = rfc5780(p4(), a4());
    let req = binding(&[padding(100)], true);
    for n in 0..200 {
        let mut out = vec![0u8; n];
        match srv.answer(T0, p4(), c4(), &req, &mut out) {
            Outcome::Respond(t) => {
                assert!(t.len <= n);
                check_response(&req, &out[..t.len]);
            }
            Outcome::Dropped => assert!(n < 40, "{n} bytes fit the minimal answer"),
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn tlv_strategy() -> impl Strategy<Value = (u16, Vec<u8>)> {
    let ty = prop_oneof![
        prop::sample::select(vec![
            types::CHANGE_REQUEST,
            types::RESPONSE_PORT,
            types::PADDING,
            types::USERNAME,
            types::XOR_MAPPED_ADDRESS,
            types::MESSAGE_INTEGRITY,
            types::MESSAGE_INTEGRITY_SHA256,
            types::FINGERPRINT,
            types::SOFTWARE,
            types::PRIORITY,
            0x0031,
            0x8099,
        ]),
        any::<u16>(),
    ];
    (ty, prop::collection::vec(any::<u8>(), 0..64))
}

/// A request with a valid header around arbitrary (well-framed) attributes, plus FINGERPRINT
/// when asked and the attributes allow one.
fn framed_request(method: u16, attrs: &[(u16, Vec<u8>)], fingerprint: bool) -> Vec<u8> {
    let mut body = Vec::new();
    for (t, v) in attrs {
        body.extend_from_slice(&t.to_be_bytes());
        body.extend_from_slice(&(v.len() as u16).to_be_bytes());
        body.extend_from_slice(v);
        while body.len() % 4 != 0 {
            body.push(0);
        }
    }
    let mut buf = vec![0u8; 20 + body.len() + 8];
    let mut b =
        MessageBuilder::new(&mut buf, Class::Request, Method::new(method), TID).expect("header");
    if b.add_raw_attributes(&body).is_ok() {
        if fingerprint {
            b.add_fingerprint().expect("room for FINGERPRINT");
        }
        let len = b.finish();
        buf.truncate(len);
        return buf;
    }
    // Integrity or fingerprint types among them: frame by hand, no FINGERPRINT.
    let mut m = buf[..20].to_vec();
    m[2..4].copy_from_slice(&(body.len() as u16).to_be_bytes());
    m.extend_from_slice(&body);
    m
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn server_survives_arbitrary_bytes(
        data in prop::collection::vec(any::<u8>(), 0..700),
        local_index in 0usize..5,
        v6 in any::<bool>(),
    ) {
        let mut srv = rfc5780(p4(), a4());
        let locals: Vec<SocketAddr> = srv.local_addresses().chain([addr("10.0.0.1:1")]).collect();
        let from = if v6 { c6() } else { c4() };
        let mut out = [0u8; OUT];
        if let Outcome::Respond(t) = srv.answer(T0, locals[local_index], from, &data, &mut out) {
            prop_assert!(t.len <= OUT);
            prop_assert!(Message::parse(&out[..t.len]).is_ok());
        }
        // The same bytes with a STUN request header forced on.
        let mut forced = data.clone();
        forced.truncate(forced.len() / 4 * 4);
        if forced.len() >= 20 {
            forced[0] &= 0x3e; // request class, first two bits zero
            forced[1] &= 0xef;
            let body_len = (forced.len() - 20) as u16;
            forced[2..4].copy_from_slice(&body_len.to_be_bytes());
            forced[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
            if let Outcome::Respond(t) = srv.answer(T0, locals[local_index], from, &forced, &mut out) {
                prop_assert!(t.len <= forced.len().max(52));
            }
        }
    }

    #[test]
    fn requests_never_get_more_than_max_of_request_and_52(
        method in prop_oneof![Just(0x001u16), 0u16..0x100],
        attrs in prop::collection::vec(tlv_strategy(), 0..10),
        fingerprint in any::<bool>(),
        v6 in any::<bool>(),
        rfc5780_server in any::<bool>(),
        software in any::<bool>(),
        local_index in 0usize..4,
    ) {
        let req = framed_request(method, &attrs, fingerprint);
        let (primary, alternate, client) = if v6 { (p6(), a6(), c6()) } else { (p4(), a4(), c4()) };
        for policy in [AmplificationPolicy::Bounded, AmplificationPolicy::Strict] {
            let mut srv = Server::new(ServerConfig {
                primary,
                alternate: rfc5780_server.then_some(alternate),
                software: software.then_some(SOFTWARE),
                amplification: policy,
                max_pending: DEFAULT_MAX_PENDING,
            }).expect("valid config");
            let locals: Vec<SocketAddr> = srv.local_addresses().collect();
            let local = locals[local_index % locals.len()];
            let mut out = [0u8; OUT];
            match srv.answer(T0, local, client, &req, &mut out) {
                Outcome::Respond(t) => {
                    // 44 + 8: the largest floor (IPv6 XOR-MAPPED-ADDRESS plus FINGERPRINT).
                    prop_assert!(t.len <= req.len().max(44 + 8), "{} > {}", t.len, req.len());
                    if policy == AmplificationPolicy::Strict {
                        prop_assert!(t.len <= req.len());
                    }
                    let m = Message::parse(&out[..t.len]).expect("response parses");
                    prop_assert_eq!(m.transaction_id(), TID);
                    if m.has_fingerprint() {
                        prop_assert!(m.verify_fingerprint().is_ok());
                    }
                }
                Outcome::Dropped => {}
                Outcome::NotStun => prop_assert!(false, "a framed request is STUN"),
            }
        }
    }
}

/// The opt-in `Unbounded` policy answers a bare 20-byte request in full (what coturn's
/// `turnutils_natdiscovery` needs); its documented worst case is 92 bytes for 20 (IPv6).
#[test]
fn unbounded_policy_answers_bare_requests_in_full() {
    use crate::verbs::Outcome;
    use holepunch_core::stun::server::{AmplificationPolicy, Server, ServerConfig};
    let primary: SocketAddr = "[2001:db8::1]:3478".parse().expect("address");
    let alternate: SocketAddr = "[2001:db8::2]:3479".parse().expect("address");
    let client: SocketAddr = "[2001:db8::9]:5000".parse().expect("address");
    let mut config = ServerConfig::new(primary);
    config.alternate = Some(alternate);
    config.amplification = AmplificationPolicy::Unbounded;
    let mut server = Server::new(config).expect("valid");
    let mut req = [0u8; 20];
    let b = holepunch_core::stun::MessageBuilder::new(
        &mut req,
        Class::Request,
        holepunch_core::stun::Method::BINDING,
        holepunch_core::stun::TransactionId([3; 12]),
    )
    .expect("fits");
    let len = b.len();
    let _ = b.finish();
    let mut out = [0u8; 1280];
    let Outcome::Respond(t) = server.answer(T0, primary, client, &req[..len], &mut out) else {
        panic!("a bare request is answered");
    };
    let m = holepunch_core::stun::Message::parse(&out[..t.len]).expect("parses");
    assert_eq!(m.xor_mapped_address(), Some(Ok(client)));
    assert!(m.find(types::OTHER_ADDRESS).is_some() && m.find(types::RESPONSE_ORIGIN).is_some());
    assert_eq!(t.len, 92, "20 + 3 IPv6 address attributes of 24 bytes");
}

/// An RFC 3489 Binding request: no magic cookie, a 128-bit transaction ID, optional attributes.
fn classic_request(id: [u8; 16], attrs: &[(u16, [u8; 4])]) -> Vec<u8> {
    let mut d = vec![0, 1, 0, (attrs.len() * 8) as u8];
    d.extend_from_slice(&id);
    for (t, v) in attrs {
        d.extend_from_slice(&t.to_be_bytes());
        d.extend_from_slice(&[0, 4]);
        d.extend_from_slice(v);
    }
    d
}

/// The attributes of a response that has no magic cookie (so `Message::parse` refuses it).
fn classic_attributes(resp: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut attrs = Vec::new();
    let mut rest = &resp[20..];
    while rest.len() >= 4 {
        let t = u16::from_be_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        attrs.push((t, rest[4..4 + len].to_vec()));
        rest = &rest[4 + len.div_ceil(4) * 4..];
    }
    assert!(rest.is_empty(), "attributes fill the message exactly");
    attrs
}

fn plain_address(v: &[u8]) -> SocketAddr {
    let port = u16::from_be_bytes([v[2], v[3]]);
    match v[1] {
        1 => SocketAddr::from(([v[4], v[5], v[6], v[7]], port)),
        _ => {
            let ip: [u8; 16] = v[4..20].try_into().expect("16 bytes");
            SocketAddr::from((ip, port))
        }
    }
}

const CLASSIC_ID: [u8; 16] = [
    0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
];

#[test]
fn rfc3489_requests_get_mapped_address_and_their_whole_id_back() {
    // RFC 8489 §12, plain server: MAPPED-ADDRESS only (the client knows no XOR-MAPPED-ADDRESS),
    // the 16-byte ID in bytes 4..20, within the 2.2x size bound of the default policy.
    for (client, local, srv) in [(c4(), p4(), plain(p4())), (c6(), p6(), plain(p6()))] {
        let req = classic_request(CLASSIC_ID, &[]);
        let (t, resp) = answer(&srv, local, client, &req);
        assert_eq!(resp[..2], [0x01, 0x01], "Binding success");
        assert_eq!(
            resp[4..20],
            CLASSIC_ID,
            "the RFC 3489 transaction ID, all of it"
        );
        assert_eq!(
            usize::from(u16::from_be_bytes([resp[2], resp[3]])),
            resp.len() - 20
        );
        let attrs = classic_attributes(&resp);
        assert_eq!(attrs.len(), 1, "{attrs:?}");
        assert_eq!(attrs[0].0, types::MAPPED_ADDRESS);
        assert_eq!(plain_address(&attrs[0].1), client);
        assert_eq!((t.to, t.from), (client, Some(local)));
        assert!(resp.len() <= 20 + 24);
    }
}

/// An RFC 3489 request whose declared length disagrees with the datagram, or is not a whole
/// number of words, is not a request: no answer (a classic server would read past or short of
/// the datagram).
#[test]
fn rfc3489_requests_whose_length_disagrees_with_the_datagram_are_not_answered() {
    let srv = plain(p4());
    let good = classic_request(CLASSIC_ID, &[(types::CHANGE_REQUEST, [0; 4])]);
    assert!(
        handle(&srv, p4(), c4(), &good).is_ok(),
        "the well-formed one is answered"
    );
    let mut declared_short = good.clone();
    declared_short[3] = 0; // declares no attributes, carries one
    let mut declared_long = classic_request(CLASSIC_ID, &[]);
    declared_long[3] = 8; // declares an attribute, carries none
    let mut odd = classic_request(CLASSIC_ID, &[]);
    odd.extend_from_slice(&[0, 0]);
    odd[3] = 2; // matches the datagram, but half a word
    for (what, d) in [
        ("declared short", declared_short),
        ("declared long", declared_long),
        ("not whole words", odd),
    ] {
        assert!(handle(&srv, p4(), c4(), &d).is_err(), "{what}");
    }
}

#[test]
fn rfc3489_requests_in_rfc5780_mode_get_source_and_changed_address_and_change_request() {
    let mut srv = Server::new(ServerConfig {
        software: Some(SOFTWARE),
        ..ServerConfig::rfc5780(p4(), a4())
    })
    .expect("valid config");
    let mut out = [0u8; OUT];
    let flags = |ip: bool, port: bool| (u32::from(ip) << 2 | u32::from(port) << 1).to_be_bytes();
    let other = addr("192.0.2.2:3479");
    for ((ip, port), from) in [
        ((false, false), p4()),
        ((false, true), addr("192.0.2.1:3479")),
        ((true, false), addr("192.0.2.2:3478")),
        ((true, true), a4()),
    ] {
        let req = classic_request(CLASSIC_ID, &[(types::CHANGE_REQUEST, flags(ip, port))]);
        let Outcome::Respond(t) = srv.answer(T0, p4(), c4(), &req, &mut out) else {
            panic!("answered");
        };
        let resp = &out[..t.len];
        assert_eq!(resp[4..20], CLASSIC_ID);
        assert_eq!((t.from, t.to), (Some(from), c4()));
        let attrs = classic_attributes(resp);
        let find = |ty| {
            attrs
                .iter()
                .find(|(t, _)| *t == ty)
                .map(|(_, v)| plain_address(v))
        };
        assert_eq!(find(types::MAPPED_ADDRESS), Some(c4()));
        assert_eq!(
            find(types::SOURCE_ADDRESS),
            Some(from),
            "RESPONSE-ORIGIN's RFC 3489 name"
        );
        assert_eq!(
            find(types::CHANGED_ADDRESS),
            Some(other),
            "OTHER-ADDRESS's RFC 3489 name"
        );
        assert!(attrs.iter().all(|(t, _)| *t != types::XOR_MAPPED_ADDRESS));
        assert!(attrs.iter().any(|(t, _)| *t == types::SOFTWARE));
    }
}

/// Whether a Binding success carries OTHER-ADDRESS (the full RFC 5780 answer).
fn has_other_address(resp: &[u8]) -> bool {
    Message::parse(resp)
        .expect("valid response")
        .find(types::OTHER_ADDRESS)
        .is_some()
}

#[test]
fn rate_limited_rfc5780_answers_bare_requests_in_full_within_the_budget() {
    let limit = RateLimit {
        per_second: 2,
        burst: 3,
    };
    let mut srv = Server::new(ServerConfig {
        amplification: AmplificationPolicy::RateLimited(limit),
        ..ServerConfig::rfc5780(p4(), a4())
    })
    .expect("valid config");
    let mut out = [0u8; OUT];
    let bare = binding(&[], false);
    let t0 = Instant::from_millis(1_000);
    let mut ask = |srv: &mut Server, at: Instant, from: SocketAddr, req: &[u8]| match srv.answer(
        at,
        p4(),
        from,
        req,
        &mut out,
    ) {
        Outcome::Respond(t) => Some(has_other_address(&out[..t.len])),
        _ => None,
    };
    for _ in 0..3 {
        assert_eq!(
            ask(&mut srv, t0, c4(), &bare),
            Some(true),
            "the burst: full answers"
        );
    }
    // Out of tokens: the strict form, and a bare request is smaller than any answer.
    assert_eq!(ask(&mut srv, t0, c4(), &bare), None);
    // A padded request (what our client sends) is answered in full for free.
    let padded = binding(&[padding(80)], false);
    assert_eq!(ask(&mut srv, t0, c4(), &padded), Some(true));
    // Another source has its own bucket; the first one earns a token every 500 ms.
    assert_eq!(
        ask(&mut srv, t0, addr("198.51.100.9:4000"), &bare),
        Some(true)
    );
    let half = t0 + core::time::Duration::from_millis(500);
    assert_eq!(ask(&mut srv, half, c4(), &bare), Some(true));
    assert_eq!(ask(&mut srv, half, c4(), &bare), None);
    // Another port of the same address shares the bucket.
    let c4_other_port = addr("203.0.113.7:50001");
    assert_eq!(ask(&mut srv, half, c4_other_port, &bare), None);
}

#[test]
fn rfc5780_default_is_rate_limited_and_plain_default_stays_size_bounded() {
    assert_eq!(
        ServerConfig::rfc5780(p4(), a4()).amplification,
        AmplificationPolicy::RFC5780_DEFAULT
    );
    assert_eq!(
        ServerConfig::new(p4()).amplification,
        AmplificationPolicy::Bounded
    );
}

#[test]
fn a_spoofed_flood_from_one_source_stays_within_the_token_budget() {
    // 20,000 bare requests over 2 s of (caller-supplied) time, from one source.
    let limit = RateLimit::DEFAULT;
    let mut srv = Server::new(ServerConfig {
        software: Some(SOFTWARE),
        ..ServerConfig::rfc5780(p6(), a6())
    })
    .expect("valid config");
    let mut out = [0u8; OUT];
    let bare = binding(&[], false);
    let (mut answers, mut bytes) = (0u64, 0usize);
    for i in 0..20_000u64 {
        let now = Instant::from_micros(i * 100);
        if let Outcome::Respond(t) = srv.answer(now, p6(), c6(), &bare, &mut out) {
            answers += 1;
            bytes += t.len;
            assert!(t.len <= srv.config().max_full_answer_len());
        }
    }
    let budget = u64::from(limit.burst) + 2 * u64::from(limit.per_second);
    assert!(answers <= budget, "{answers} answers > {budget}");
    assert!(answers >= budget - 1, "the budget is used: {answers}");
    let max = srv.config().max_full_answer_len();
    assert_eq!(
        max,
        20 + 3 * 24 + 4 + 28 + 8,
        "IPv6, this test's 25-byte SOFTWARE"
    );
    assert!(bytes <= budget as usize * max, "{bytes} bytes");
}

#[test]
fn sans_io_verbs_queue_one_answer() {
    let mut srv = plain(p4());
    let mut out = [0u8; OUT];
    let req = binding(&[], true);
    assert_eq!(srv.poll_transmit(T0, &mut out), None, "nothing yet");
    assert_eq!(
        srv.handle_datagram(T0, Datagram::new(p4(), c4(), &req)),
        Received::Consumed
    );
    let t = srv.poll_transmit(T0, &mut out).expect("the answer");
    assert_eq!(t.to, c4());
    assert_eq!(
        srv.poll_transmit(T0, &mut out),
        None,
        "one answer per request"
    );
    assert_eq!(
        srv.handle_datagram(T0, Datagram::new(p4(), c4(), b"hello")),
        Received::AppData {
            from: c4(),
            payload: b"hello"
        }
    );
    assert_eq!(srv.poll_transmit(T0, &mut out), None);
}

/// The rate-limit table hashes sources evenly over its 1,024 buckets: 64 sources that each
/// spend a one-answer budget collide about twice on average (64·63/2/1024), so at most a
/// handful is refused. A hash whose output bits are skewed (it maps many sources to a few
/// buckets) makes innocent sources share budgets and is refused far more often.
#[test]
fn distinct_sources_rarely_share_a_rate_limit_bucket() {
    let limit = RateLimit {
        per_second: 0,
        burst: 1,
    };
    for seed in [1u64, 0x5eed, u64::MAX / 3] {
        let mut srv = Server::with_seed(
            ServerConfig {
                amplification: AmplificationPolicy::RateLimited(limit),
                ..ServerConfig::rfc5780(p4(), a4())
            },
            seed,
        )
        .expect("valid config");
        let mut out = [0u8; OUT];
        let bare = binding(&[], false);
        let refused = (0..64u8)
            .filter(|i| {
                let from = SocketAddr::from(([198, 51, 100, *i], 4000));
                !matches!(
                    srv.answer(T0, p4(), from, &bare, &mut out),
                    Outcome::Respond(_)
                )
            })
            .count();
        assert!(refused <= 8, "seed {seed}: {refused} of 64 sources refused");
    }
}
