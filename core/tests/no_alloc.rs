//! The STUN hot paths allocate nothing (design §4: "no allocation per packet"): decoding,
//! verifying and encoding the RFC 5769 vectors is measured with a counting global allocator.
//!
//! Only allocations made by the test's own thread while a measurement is running are counted, so
//! the harness's other threads (and other tests running in parallel) cannot pollute the count.

use std::hint::black_box;
use std::net::SocketAddr;

use holepunch_core::stun::attr::{self, types};
use holepunch_core::stun::{
    Attribute, Class, IntegrityKey, Message, MessageBuilder, Method, PasswordAlgorithmKind,
    TransactionId,
};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::allocations;

fn assert_no_allocations<R>(what: &str, f: impl FnOnce() -> R) -> R {
    let (n, r) = allocations(f);
    assert_eq!(n, 0, "{what} allocated {n} times");
    r
}

const PASSWORD: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";

/// RFC 5769 §2.1: Binding request with short-term credentials.
const REQUEST: [u8; 108] = [
    0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74, 0x65, 0x73,
    0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x01, 0xff,
    0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36, 0x00, 0x06, 0x00, 0x09,
    0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76, 0x59, 0x20, 0x20, 0x20, 0x00, 0x08, 0x00, 0x14,
    0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e, 0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49,
    0xc1, 0xb5, 0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5, 0x7a, 0x3b, 0xcf,
];

/// RFC 5769 §2.2: Binding response, IPv4 XOR-MAPPED-ADDRESS 192.0.2.1:32853.
const RESPONSE_V4: [u8; 80] = [
    0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63,
    0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43,
    0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3, 0x8c, 0x74, 0x89, 0xf9,
    0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b, 0xe7, 0xd7, 0x80, 0x28, 0x00, 0x04, 0xc0, 0x7d, 0x4c, 0x96,
];

/// RFC 5769 §2.3: Binding response, IPv6 XOR-MAPPED-ADDRESS
/// [2001:db8:1234:5678:11:2233:4455:6677]:32853.
const RESPONSE_V6: [u8; 92] = [
    0x01, 0x01, 0x00, 0x48, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63,
    0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0xa1, 0x47, 0x01, 0x13, 0xa9, 0xfa,
    0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25, 0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9, 0x00, 0x08, 0x00, 0x14,
    0xa3, 0x82, 0x95, 0x4e, 0x4b, 0xe6, 0x7b, 0xf1, 0x17, 0x84, 0xc9, 0x7c, 0x82, 0x92, 0xc2, 0x75,
    0xbf, 0xe3, 0xed, 0x41, 0x80, 0x28, 0x00, 0x04, 0xc8, 0xfb, 0x0b, 0x4c,
];

/// RFC 5769 §2.4: request with long-term credentials (MD5 key, no FINGERPRINT).
const LONG_TERM: [u8; 116] = [
    0x00, 0x01, 0x00, 0x60, 0x21, 0x12, 0xa4, 0x42, 0x78, 0xad, 0x34, 0x33, 0xc6, 0xad, 0x72, 0xc0,
    0x29, 0xda, 0x41, 0x2e, 0x00, 0x06, 0x00, 0x12, 0xe3, 0x83, 0x9e, 0xe3, 0x83, 0x88, 0xe3, 0x83,
    0xaa, 0xe3, 0x83, 0x83, 0xe3, 0x82, 0xaf, 0xe3, 0x82, 0xb9, 0x00, 0x00, 0x00, 0x15, 0x00, 0x1c,
    0x66, 0x2f, 0x2f, 0x34, 0x39, 0x39, 0x6b, 0x39, 0x35, 0x34, 0x64, 0x36, 0x4f, 0x4c, 0x33, 0x34,
    0x6f, 0x4c, 0x39, 0x46, 0x53, 0x54, 0x76, 0x79, 0x36, 0x34, 0x73, 0x41, 0x00, 0x14, 0x00, 0x0b,
    0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x2e, 0x6f, 0x72, 0x67, 0x00, 0x00, 0x08, 0x00, 0x14,
    0xf6, 0x70, 0x24, 0x65, 0x6d, 0xd6, 0x4a, 0x3e, 0x02, 0xb8, 0xe0, 0x71, 0x2e, 0x85, 0xc9, 0xa2,
    0x8c, 0xa8, 0x96, 0x66,
];

const LONG_TERM_USERNAME: &str = "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}";

#[test]
fn the_counter_sees_allocations() {
    let (n, v) = allocations(|| black_box(Vec::<u8>::with_capacity(64)));
    assert!(
        n >= 1,
        "a Vec allocated inside the measured region was not counted"
    );
    drop(v);
    let (n, ()) = allocations(|| {});
    assert_eq!(n, 0, "an empty region counted allocations");
}

#[test]
fn short_term_request_decodes_and_verifies_without_allocating() {
    let key = IntegrityKey::short_term(PASSWORD);
    let wire = black_box(REQUEST);
    let (software, username, priority, controlled, count) =
        assert_no_allocations("decoding and verifying the §2.1 request", || {
            let msg = Message::parse(&wire).expect("parses");
            msg.verify_integrity(&key).expect("integrity");
            msg.verify_fingerprint().expect("fingerprint");
            let tid = msg.transaction_id();
            let mut count = 0;
            for a in msg.attributes() {
                black_box(Attribute::decode(a.attr, a.value, &tid).expect("decodes"));
                count += 1;
            }
            let unknown = msg.unknown_comprehension_required(attr::is_known).count();
            assert_eq!(unknown, 0);
            (
                msg.text(types::SOFTWARE),
                msg.text(types::USERNAME),
                msg.decode(types::PRIORITY),
                msg.decode(types::ICE_CONTROLLED),
                count,
            )
        });
    assert_eq!(software, Some(Ok("STUN test client")));
    assert_eq!(username, Some(Ok("evtj:h6vY")));
    assert_eq!(priority, Some(Ok(Attribute::Priority(0x6e00_01ff))));
    assert_eq!(
        controlled,
        Some(Ok(Attribute::IceControlled(0x932f_f9b1_5126_3b36)))
    );
    assert_eq!(count, 6);
}

#[test]
fn responses_decode_the_mapped_address_without_allocating() {
    let key = IntegrityKey::short_term(PASSWORD);
    let cases: [(&[u8], &str); 2] = [
        (&RESPONSE_V4, "192.0.2.1:32853"),
        (&RESPONSE_V6, "[2001:db8:1234:5678:11:2233:4455:6677]:32853"),
    ];
    for (wire, expected) in cases {
        let expected: SocketAddr = expected.parse().expect("literal address");
        let wire = black_box(wire);
        let mapped = assert_no_allocations("decoding and verifying a response", || {
            let msg = Message::parse(wire).expect("parses");
            assert_eq!(msg.class(), Class::SuccessResponse);
            msg.verify_integrity(&key).expect("integrity");
            msg.verify_fingerprint().expect("fingerprint");
            msg.xor_mapped_address()
        });
        assert_eq!(mapped, Some(Ok(expected)));
    }
}

#[test]
fn long_term_request_verifies_without_allocating() {
    let key = IntegrityKey::long_term(
        PasswordAlgorithmKind::Md5,
        LONG_TERM_USERNAME,
        "example.org",
        "TheMatrIX",
    );
    let wire = black_box(LONG_TERM);
    let (username, realm) = assert_no_allocations("verifying the §2.4 request", || {
        let msg = Message::parse(&wire).expect("parses");
        msg.verify_integrity(&key).expect("integrity");
        (msg.text(types::USERNAME), msg.text(types::REALM))
    });
    assert_eq!(username, Some(Ok(LONG_TERM_USERNAME)));
    assert_eq!(realm, Some(Ok("example.org")));
}

/// Not required by the hot path (keys are built once per credential), but cheap to keep true.
#[test]
fn deriving_keys_does_not_allocate() {
    assert_no_allocations("deriving keys", || {
        let a = IntegrityKey::short_term(black_box(PASSWORD));
        let b = IntegrityKey::long_term(
            PasswordAlgorithmKind::Sha256,
            black_box(LONG_TERM_USERNAME),
            "example.org",
            "TheMatrIX",
        );
        (a, b)
    });
}

#[test]
fn binding_request_encodes_without_allocating() {
    let key = IntegrityKey::short_term(PASSWORD);
    let tid = TransactionId(black_box([
        0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    ]));
    let mut buf = [0u8; 256];
    let len = assert_no_allocations("encoding a Binding request", || {
        let mut b = MessageBuilder::new(&mut buf, Class::Request, Method::BINDING, tid)
            .expect("header fits");
        b.add(&Attribute::Username("evtj:h6vY")).expect("USERNAME");
        b.add(&Attribute::Priority(0x6e00_01ff)).expect("PRIORITY");
        b.add(&Attribute::IceControlling(0x932f_f9b1_5126_3b36))
            .expect("ICE-CONTROLLING");
        b.add_message_integrity(&key).expect("MESSAGE-INTEGRITY");
        b.add_fingerprint().expect("FINGERPRINT");
        b.finish()
    });
    // Outside the measured region: the result is a valid, verifiable request.
    let msg = Message::parse(&buf[..len]).expect("parses");
    msg.verify_integrity(&key).expect("integrity");
    msg.verify_fingerprint().expect("fingerprint");
    assert_eq!(msg.text(types::USERNAME), Some(Ok("evtj:h6vY")));
}
