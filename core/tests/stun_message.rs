//! The STUN message builder's and parser's framing rules: the order integrity and fingerprint
//! attributes must keep (RFC 8489 §14.5-14.7), MESSAGE-INTEGRITY-SHA256's value lengths,
//! padding that never leaks old buffer contents, runs of raw attributes, and attributes after
//! an integrity attribute being ignored.
#![allow(clippy::unwrap_used)]

use holepunch_core::stun::attr::types;
use holepunch_core::stun::{
    Attribute, Class, EncodeError, IntegrityKey, Message, MessageBuilder, Method, TransactionId,
};

const TID: TransactionId = TransactionId([3; 12]);

fn key() -> IntegrityKey {
    IntegrityKey::short_term(b"a password")
}

/// MESSAGE-INTEGRITY-SHA256 carries 16 to 32 bytes in whole 4-byte words (RFC 8489 §14.6):
/// the builder refuses any other length, and the parser rejects it.
#[test]
fn sha256_integrity_values_are_16_to_32_bytes_in_whole_words() {
    for len in 0..=40usize {
        let valid = (16..=32).contains(&len) && len % 4 == 0;
        let value = vec![0x5au8; len];
        let mut buf = [0u8; 128];
        let mut b = MessageBuilder::new(&mut buf, Class::Request, Method::BINDING, TID).unwrap();
        let added = b.add(&Attribute::MessageIntegritySha256(&value));
        assert_eq!(added.is_ok(), valid, "builder, {len} bytes: {added:?}");
        assert!(
            added.is_ok() || matches!(added, Err(EncodeError::Attribute(_))),
            "{added:?}"
        );

        // The same attribute in wire form, parsed.
        let mut raw = vec![0x00, 0x01, 0, 0];
        raw.extend_from_slice(&0x2112_a442u32.to_be_bytes());
        raw.extend_from_slice(&TID.0);
        raw.extend_from_slice(&types::MESSAGE_INTEGRITY_SHA256.to_be_bytes());
        raw.extend_from_slice(&(len as u16).to_be_bytes());
        raw.extend_from_slice(&value);
        raw.resize(raw.len() + (4 - len % 4) % 4, 0);
        let body = (raw.len() - 20) as u16;
        raw[2..4].copy_from_slice(&body.to_be_bytes());
        assert_eq!(Message::parse(&raw).is_ok(), valid, "parser, {len} bytes");
    }
}

/// Only MESSAGE-INTEGRITY-SHA256 and FINGERPRINT may follow MESSAGE-INTEGRITY, only
/// FINGERPRINT may follow MESSAGE-INTEGRITY-SHA256, nothing follows FINGERPRINT, and none of
/// the three appears twice.
#[test]
fn integrity_and_fingerprint_keep_their_order_and_appear_once() {
    #[derive(Clone, Copy, Debug)]
    enum Step {
        Software,
        Integrity,
        Sha256,
        Fingerprint,
    }
    use Step::*;
    let run = |steps: &[Step]| -> Result<(), EncodeError> {
        let mut buf = [0u8; 256];
        let mut b = MessageBuilder::new(&mut buf, Class::Request, Method::BINDING, TID).unwrap();
        for s in steps {
            match s {
                Software => b.add(&Attribute::Software("x")),
                Integrity => b.add_message_integrity(&key()),
                Sha256 => b.add_message_integrity_sha256(&key()),
                Fingerprint => b.add_fingerprint(),
            }?;
        }
        Ok(())
    };
    for ok in [
        &[Software, Integrity, Sha256, Fingerprint][..],
        &[Integrity, Fingerprint],
        &[Sha256, Fingerprint],
        &[Integrity, Sha256],
        &[Software, Software, Fingerprint],
    ] {
        assert!(run(ok).is_ok(), "{ok:?}: {:?}", run(ok));
    }
    for (bad, attr) in [
        (&[Integrity, Software][..], types::SOFTWARE),
        (&[Integrity, Integrity], types::MESSAGE_INTEGRITY),
        (&[Sha256, Sha256], types::MESSAGE_INTEGRITY_SHA256),
        (&[Sha256, Integrity], types::MESSAGE_INTEGRITY),
        (&[Sha256, Software], types::SOFTWARE),
        (&[Fingerprint, Fingerprint], types::FINGERPRINT),
        (&[Fingerprint, Software], types::SOFTWARE),
        (&[Fingerprint, Integrity], types::MESSAGE_INTEGRITY),
        (
            &[Integrity, Fingerprint, Sha256],
            types::MESSAGE_INTEGRITY_SHA256,
        ),
    ] {
        assert_eq!(run(bad), Err(EncodeError::AfterIntegrity(attr)), "{bad:?}");
    }
}

/// Padding is the padding byte (0 unless set), never what the buffer held before: a reused
/// buffer must not leak an earlier datagram's bytes onto the wire.
#[test]
fn padding_is_the_padding_byte_never_old_buffer_contents() {
    for pad in [None, Some(0x20u8)] {
        let mut buf = [0xaau8; 128];
        let mut b = MessageBuilder::new(&mut buf, Class::Request, Method::BINDING, TID).unwrap();
        if let Some(p) = pad {
            b.padding_byte(p);
        }
        b.add(&Attribute::Username("abc")).unwrap(); // 20..24 header, 24..27, pad 27
        b.add(&Attribute::Software("hello")).unwrap(); // 28..32 header, 32..37, pad 37..40
        b.add(&Attribute::Software("12345678")).unwrap(); // 40..44 header, 44..52, no pad
        let len = b.finish();
        assert_eq!(len, 52);
        let p = pad.unwrap_or(0);
        assert_eq!(buf[27], p);
        assert_eq!(buf[37..40], [p; 3]);
        assert_eq!(&buf[44..52], b"12345678");
        let m = Message::parse(&buf[..len]).unwrap();
        assert_eq!(m.text(types::USERNAME), Some(Ok("abc")));
    }
}

/// A run of attributes copied from another message in wire form makes a well-formed message:
/// the header's length counts it, whether it comes last or integrity and fingerprint follow.
#[test]
fn a_raw_attribute_run_becomes_part_of_a_valid_message() {
    let mut first = [0u8; 128];
    let mut b = MessageBuilder::new(&mut first, Class::Request, Method::BINDING, TID).unwrap();
    b.add(&Attribute::Software("copied")).unwrap();
    b.add(&Attribute::Username("user:name")).unwrap();
    let n = b.finish();
    let run = first[20..n].to_vec();

    let mut buf = [0xffu8; 256];
    let mut b = MessageBuilder::new(&mut buf, Class::Request, Method::BINDING, TID).unwrap();
    b.add(&Attribute::Realm("r")).unwrap();
    b.add_raw_attributes(&run).unwrap();
    b.add_message_integrity(&key()).unwrap();
    b.add_fingerprint().unwrap();
    let len = b.finish();
    assert_eq!(len, 20 + 8 + run.len() + 24 + 8);
    assert_eq!(usize::from(u16::from_be_bytes([buf[2], buf[3]])), len - 20);
    let m = Message::parse(&buf[..len]).unwrap();
    assert_eq!(m.text(types::SOFTWARE), Some(Ok("copied")));
    assert_eq!(m.text(types::USERNAME), Some(Ok("user:name")));
    assert!(m.verify_integrity(&key()).is_ok());
    assert!(m.verify_fingerprint().is_ok());

    // The run last: the header's length is the run's doing alone.
    let mut buf = [0xffu8; 256];
    let mut b = MessageBuilder::new(&mut buf, Class::Request, Method::BINDING, TID).unwrap();
    b.add_raw_attributes(&run).unwrap();
    let len = b.finish();
    assert_eq!(len, 20 + run.len());
    let m = Message::parse(&buf[..len]).unwrap();
    assert_eq!(m.text(types::USERNAME), Some(Ok("user:name")));

    // Integrity or fingerprint attributes cannot be smuggled in a raw run.
    let mut sealed = [0u8; 128];
    let mut b = MessageBuilder::new(&mut sealed, Class::Request, Method::BINDING, TID).unwrap();
    b.add_fingerprint().unwrap();
    let n = b.finish();
    let mut buf = [0u8; 128];
    let mut b = MessageBuilder::new(&mut buf, Class::Request, Method::BINDING, TID).unwrap();
    assert_eq!(
        b.add_raw_attributes(&sealed[20..n]),
        Err(EncodeError::AfterIntegrity(types::FINGERPRINT))
    );
}

/// Attributes after MESSAGE-INTEGRITY-SHA256 (other than FINGERPRINT) are not covered by it
/// and are ignored (RFC 8489 §14.6): an on-path attacker's appended SOFTWARE is not seen.
#[test]
fn attributes_after_sha256_integrity_are_ignored() {
    let mut buf = [0u8; 256];
    let mut b = MessageBuilder::new(&mut buf, Class::Request, Method::BINDING, TID).unwrap();
    b.add(&Attribute::Username("before")).unwrap();
    b.add_message_integrity_sha256(&key()).unwrap();
    let mut len = b.finish();
    // Appended by hand: SOFTWARE "late".
    buf[len..len + 8].copy_from_slice(&[0x80, 0x22, 0, 4, b'l', b'a', b't', b'e']);
    len += 8;
    let body = (len - 20) as u16;
    buf[2..4].copy_from_slice(&body.to_be_bytes());
    let m = Message::parse(&buf[..len]).unwrap();
    assert_eq!(m.text(types::USERNAME), Some(Ok("before")));
    assert!(m.find(types::SOFTWARE).is_none(), "ignored after integrity");
    let seen: Vec<u16> = m.attributes().map(|a| a.attr).collect();
    assert_eq!(seen, [types::USERNAME, types::MESSAGE_INTEGRITY_SHA256]);
}
