//! RFC 5769 test vectors: each decodes, verifies and re-encodes byte-identically.
#![allow(clippy::unwrap_used)] // test vectors: a panic is the right failure

use std::net::SocketAddr;

use holepunch_core::stun::attr::types;
use holepunch_core::stun::{
    Attribute, Class, IntegrityError, IntegrityKey, Message, MessageBuilder, Method,
    PasswordAlgorithmKind, TransactionId,
};

const PASSWORD: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";

/// RFC 5769 §2.1: Binding request with short-term credentials.
const REQUEST: &str = "000100582112a442b7e7a701bc34d686fa87dfae\
    802200105354554e207465737420636c69656e74\
    002400046e0001ff\
    80290008932ff9b151263b36\
    000600096576746a3a68367659202020\
    000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2\
    80280004e57a3bcf";

/// RFC 5769 §2.2: Binding response, IPv4 XOR-MAPPED-ADDRESS.
const RESPONSE_V4: &str = "0101003c2112a442b7e7a701bc34d686fa87dfae\
    8022000b7465737420766563746f7220\
    002000080001a147e112a643\
    000800142b91f599fd9e90c38c7489f92af9ba53f06be7d7\
    80280004c07d4c96";

/// RFC 5769 §2.3: Binding response, IPv6 XOR-MAPPED-ADDRESS.
const RESPONSE_V6: &str = "010100482112a442b7e7a701bc34d686fa87dfae\
    8022000b7465737420766563746f7220\
    002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d9\
    00080014a382954e4be67bf11784c97c8292c275bfe3ed41\
    80280004c8fb0b4c";

/// RFC 5769 §2.4: request with long-term credentials (no FINGERPRINT).
const LONG_TERM: &str = "000100602112a44278ad3433c6ad72c029da412e\
    00060012e3839ee38388e383aae38383e382afe382b90000\
    0015001c662f2f3439396b39353464364f4c33346f4c39465354767936347341\
    0014000b6578616d706c652e6f726700\
    00080014f67024656dd64a3e02b8e0712e85c9a28ca89666";

fn bytes(hex_str: &str) -> Vec<u8> {
    let clean: String = hex_str.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(clean).expect("test vector is valid hex")
}

fn tid(msg: &Message<'_>) -> TransactionId {
    msg.transaction_id()
}

#[test]
fn request_decodes_verifies_and_reencodes() {
    let wire = bytes(REQUEST);
    let key = IntegrityKey::short_term(PASSWORD);
    let msg = Message::parse(&wire).expect("parses");
    assert_eq!(msg.class(), Class::Request);
    assert_eq!(msg.method(), Method::BINDING);
    msg.verify_integrity(&key).expect("integrity");
    msg.verify_fingerprint().expect("fingerprint");
    assert_eq!(msg.text(types::SOFTWARE), Some(Ok("STUN test client")));
    assert_eq!(msg.text(types::USERNAME), Some(Ok("evtj:h6vY")));
    assert_eq!(
        msg.decode(types::PRIORITY),
        Some(Ok(Attribute::Priority(0x6e0001ff)))
    );
    assert_eq!(
        msg.decode(types::ICE_CONTROLLED),
        Some(Ok(Attribute::IceControlled(0x932ff9b151263b36)))
    );
    assert_eq!(
        msg.verify_integrity(&IntegrityKey::short_term(b"wrong")),
        Err(IntegrityError::Mismatch)
    );

    let mut out = [0u8; 256];
    let mut b = MessageBuilder::new(&mut out, Class::Request, Method::BINDING, tid(&msg)).unwrap();
    b.padding_byte(0x20);
    b.add(&Attribute::Software("STUN test client")).unwrap();
    b.add(&Attribute::Priority(0x6e0001ff)).unwrap();
    b.add(&Attribute::IceControlled(0x932ff9b151263b36))
        .unwrap();
    b.add(&Attribute::Username("evtj:h6vY")).unwrap();
    b.add_message_integrity(&key).unwrap();
    b.add_fingerprint().unwrap();
    let len = b.finish();
    assert_eq!(hex::encode(&out[..len]), hex::encode(&wire));
}

fn check_response(hex_str: &str, expected: &str) {
    let wire = bytes(hex_str);
    let key = IntegrityKey::short_term(PASSWORD);
    let msg = Message::parse(&wire).expect("parses");
    assert_eq!(msg.class(), Class::SuccessResponse);
    msg.verify_integrity(&key).expect("integrity");
    msg.verify_fingerprint().expect("fingerprint");
    let mapped: SocketAddr = expected.parse().unwrap();
    assert_eq!(msg.xor_mapped_address(), Some(Ok(mapped)));
    assert_eq!(msg.text(types::SOFTWARE), Some(Ok("test vector")));

    let mut out = [0u8; 256];
    let mut b =
        MessageBuilder::new(&mut out, Class::SuccessResponse, Method::BINDING, tid(&msg)).unwrap();
    b.padding_byte(0x20);
    b.add(&Attribute::Software("test vector")).unwrap();
    b.add(&Attribute::XorMappedAddress(mapped)).unwrap();
    b.add_message_integrity(&key).unwrap();
    b.add_fingerprint().unwrap();
    let len = b.finish();
    assert_eq!(hex::encode(&out[..len]), hex::encode(&wire));
}

#[test]
fn ipv4_response_decodes_verifies_and_reencodes() {
    check_response(RESPONSE_V4, "192.0.2.1:32853");
}

#[test]
fn ipv6_response_decodes_verifies_and_reencodes() {
    check_response(RESPONSE_V6, "[2001:db8:1234:5678:11:2233:4455:6677]:32853");
}

#[test]
fn long_term_request_decodes_verifies_and_reencodes() {
    let wire = bytes(LONG_TERM);
    let msg = Message::parse(&wire).expect("parses");
    let username = "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}";
    assert_eq!(msg.text(types::USERNAME), Some(Ok(username)));
    assert_eq!(
        msg.text(types::NONCE),
        Some(Ok("f//499k954d6OL34oL9FSTvy64sA"))
    );
    assert_eq!(msg.text(types::REALM), Some(Ok("example.org")));
    // The password "The\u{00AD}M\u{00AA}tr\u{2168}" after SASLprep/OpaqueString is "TheMatrIX".
    let key = IntegrityKey::long_term(
        PasswordAlgorithmKind::Md5,
        username,
        "example.org",
        "TheMatrIX",
    );
    msg.verify_integrity(&key).expect("integrity");
    assert_eq!(
        msg.verify_fingerprint(),
        Err(IntegrityError::FingerprintMissing)
    );

    let mut out = [0u8; 256];
    let mut b = MessageBuilder::new(&mut out, Class::Request, Method::BINDING, tid(&msg)).unwrap();
    b.add(&Attribute::Username(username)).unwrap();
    b.add(&Attribute::Nonce("f//499k954d6OL34oL9FSTvy64sA"))
        .unwrap();
    b.add(&Attribute::Realm("example.org")).unwrap();
    b.add_message_integrity(&key).unwrap();
    let len = b.finish();
    assert_eq!(hex::encode(&out[..len]), hex::encode(&wire));
}

#[test]
fn a_flipped_bit_anywhere_fails_integrity_or_fingerprint_or_parse() {
    let wire = bytes(REQUEST);
    let key = IntegrityKey::short_term(PASSWORD);
    for i in 0..wire.len() * 8 {
        let mut w = wire.clone();
        w[i / 8] ^= 1 << (i % 8);
        let Ok(msg) = Message::parse(&w) else {
            continue;
        };
        let ok = msg.verify_integrity(&key).is_ok() && msg.verify_fingerprint().is_ok();
        assert!(!ok, "bit {i} flipped yet the message still verifies");
    }
}
