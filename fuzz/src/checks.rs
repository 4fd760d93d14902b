//! Invariants of the STUN codec on untrusted input, shared by the fuzz targets
//! (`fuzz/fuzz_targets/*.rs`), the corpus replay test (`core/tests/fuzz_corpus.rs`) and the
//! property tests (`core/tests/stun_proptest.rs`), which all include this file with `#[path]`.
//!
//! Every check returns normally on inputs the codec rightly rejects and panics (through an
//! assertion) when the codec breaks one of its promises: no panics on any input, decoded
//! attributes re-encode to what decodes back equal, and integrity attributes are located the way
//! RFC 8489 §14.5–14.7 prescribe.

use holepunch_core::stun::attr::{self, types};
use holepunch_core::stun::{
    Attribute, Class, HEADER_LEN, IntegrityKey, Message, MessageBuilder, Method, TransactionId,
};

/// The transaction id [`check_attribute_input`] decodes and encodes XOR-ed addresses with.
const ATTRIBUTE_TID: TransactionId = TransactionId([
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
]);

/// The RFC 5769 password, so the seed vectors take the successful-verification paths.
pub const FUZZ_PASSWORD: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";

/// Input of the `stun_message` target: one datagram.
///
/// Parses it; on success walks, decodes and verifies everything, then re-encodes every processed
/// attribute into a fresh message and checks it parses back to the same decoded sequence.
pub fn check_message(data: &[u8]) {
    let Ok(msg) = Message::parse(data) else {
        return;
    };
    assert_eq!(msg.as_bytes(), data);
    let (class, method, tid) = (msg.class(), msg.method(), msg.transaction_id());
    assert_eq!(&tid.0[..], &data[8..20]);

    let key = IntegrityKey::short_term(FUZZ_PASSWORD);
    let integrity = msg.verify_integrity(&key);
    let fingerprint = msg.verify_fingerprint();
    assert_eq!(
        integrity.is_err_and(|e| e == holepunch_core::stun::IntegrityError::Missing),
        !msg.has_integrity()
    );
    assert_eq!(
        fingerprint.is_err_and(|e| e == holepunch_core::stun::IntegrityError::FingerprintMissing),
        !msg.has_fingerprint()
    );
    let _ = msg.unknown_comprehension_required(attr::is_known).count();
    // The address accessors' fast paths agree with the general decoder.
    for (t, fast) in [
        (types::XOR_MAPPED_ADDRESS, msg.xor_mapped_address()),
        (types::MAPPED_ADDRESS, msg.mapped_address()),
    ] {
        let general = msg.decode(t).map(|r| {
            r.map(|a| match a {
                Attribute::XorMappedAddress(x) | Attribute::MappedAddress(x) => x,
                other => panic!("{t:#06x} decoded as {other:?}"),
            })
        });
        assert_eq!(
            fast, general,
            "fast and general decoding of {t:#06x} differ"
        );
    }

    // Walk the processed attributes: in bounds, increasing, values exactly where the header says,
    // and nothing but MESSAGE-INTEGRITY-SHA256 / FINGERPRINT after the first integrity attribute.
    let mut last_offset = None;
    let mut sealed = false;
    let (mut seen_mi, mut seen_mi256, mut seen_fp) = (false, false, false);
    let mut count = 0usize;
    for raw in msg.attributes() {
        count += 1;
        assert!(
            last_offset.is_none_or(|o| raw.offset > o),
            "offsets must increase"
        );
        last_offset = Some(raw.offset);
        assert!(raw.offset >= HEADER_LEN && raw.offset % 4 == 0);
        let header = &data[raw.offset..raw.offset + 4];
        assert_eq!(u16::from_be_bytes([header[0], header[1]]), raw.attr);
        assert_eq!(
            usize::from(u16::from_be_bytes([header[2], header[3]])),
            raw.value.len()
        );
        assert_eq!(
            raw.value,
            &data[raw.offset + 4..raw.offset + 4 + raw.value.len()]
        );
        assert!(!seen_fp, "FINGERPRINT must be the last processed attribute");
        match raw.attr {
            types::MESSAGE_INTEGRITY => {
                assert!(
                    !sealed && !seen_mi,
                    "MESSAGE-INTEGRITY processed after integrity"
                );
                seen_mi = true;
                sealed = true;
            }
            types::MESSAGE_INTEGRITY_SHA256 => {
                assert!(!seen_mi256, "second MESSAGE-INTEGRITY-SHA256 processed");
                seen_mi256 = true;
                sealed = true;
            }
            types::FINGERPRINT => seen_fp = true,
            other => assert!(!sealed, "attribute {other:#06x} processed after integrity"),
        }
        let found = msg
            .find(raw.attr)
            .expect("a yielded attribute can be found");
        assert!(found.offset <= raw.offset);
        let decoded = Attribute::decode(raw.attr, raw.value, &tid);
        if found.offset == raw.offset {
            assert_eq!(msg.decode(raw.attr), Some(decoded));
        }
        if let Ok(a) = decoded {
            check_decoded(&a, raw.attr, raw.value);
        }
    }
    assert_eq!(seen_mi || seen_mi256, msg.has_integrity());
    assert_eq!(seen_fp, msg.has_fingerprint());
    let _ = (
        msg.reflexive_address(),
        msg.error_code(),
        msg.text(types::USERNAME),
    );

    // Re-encode: decoded attributes through their typed encoders, undecodable ones verbatim.
    // Every value keeps its length and only ignored attributes are dropped, so it fits in as
    // many bytes as the original.
    let mut buf = vec![0u8; data.len()];
    let mut b = MessageBuilder::new(&mut buf, class, method, tid).expect("header fits");
    for raw in msg.attributes() {
        let a = Attribute::decode(raw.attr, raw.value, &tid).unwrap_or(Attribute::Other {
            attr: raw.attr,
            value: raw.value,
        });
        b.add(&a)
            .unwrap_or_else(|e| panic!("re-encoding {a:?} failed: {e}"));
    }
    let len = b.finish();
    assert!(
        len <= data.len(),
        "re-encoding only drops ignored attributes"
    );
    let again = Message::parse(&buf[..len]).expect("re-encoded message parses");
    assert_eq!(
        (again.class(), again.method(), again.transaction_id()),
        (class, method, tid)
    );
    assert_eq!(again.has_integrity(), msg.has_integrity());
    assert_eq!(again.has_fingerprint(), msg.has_fingerprint());
    assert_eq!(again.attributes().count(), count);
    for (x, y) in msg.attributes().zip(again.attributes()) {
        assert_eq!(x.attr, y.attr);
        assert_eq!(
            Attribute::decode(x.attr, x.value, &tid).ok(),
            Attribute::decode(y.attr, y.value, &tid).ok()
        );
    }
}

/// Input of the `stun_attribute` target: a big-endian attribute type, then the value.
pub fn check_attribute_input(data: &[u8]) {
    if let [t0, t1, value @ ..] = data {
        check_attribute(u16::from_be_bytes([*t0, *t1]), value);
    }
}

/// Decodes `value` as an attribute of type `attr`; when that succeeds, encodes it into a message,
/// parses and decodes it again, and checks both the value and the bytes are stable.
pub fn check_attribute(attr: u16, value: &[u8]) {
    let tid = ATTRIBUTE_TID;
    let Ok(a) = Attribute::decode(attr, value, &tid) else {
        return;
    };
    check_decoded(&a, attr, value);

    let mut first = vec![0u8; encoded_len(value.len())];
    let Some(len) = encode_one(&mut first, &a, value.len()) else {
        return;
    };
    let msg = Message::parse(&first[..len]).expect("an encoded attribute parses");
    let raw = msg.find(attr).expect("the encoded attribute is processed");
    assert_eq!(raw.offset, HEADER_LEN);
    assert_eq!(raw.value.len(), value.len());
    let b = Attribute::decode(attr, raw.value, &tid).expect("re-decodes");
    assert_eq!(a, b);
    assert_eq!(msg.decode(attr), Some(Ok(b)));

    // The encoding of a decoded attribute is canonical: encoding it again changes nothing.
    let mut second = vec![0u8; encoded_len(value.len())];
    let len2 = encode_one(&mut second, &b, value.len()).expect("encoded once, encodes again");
    assert_eq!(&first[..len], &second[..len2]);
}

/// What holds for any successfully decoded attribute.
fn check_decoded(a: &Attribute<'_>, attr: u16, value: &[u8]) {
    assert_eq!(a.attr_type(), attr);
    assert_eq!(
        a.value_len(),
        value.len(),
        "decoding accepts exactly the encoded length"
    );
    a.validate()
        .unwrap_or_else(|e| panic!("decoded {a:?} fails validation: {e}"));
    assert_eq!(attr::is_known(attr), !matches!(a, Attribute::Other { .. }));
}

/// Bytes a message holding one attribute with a `value_len`-byte value takes.
fn encoded_len(value_len: usize) -> usize {
    HEADER_LEN + 4 + value_len.next_multiple_of(4)
}

/// Encodes `a` as the only attribute of a message; `None` when the message length field cannot
/// describe a value that long, which the builder must then have refused.
fn encode_one(buf: &mut [u8], a: &Attribute<'_>, value_len: usize) -> Option<usize> {
    let fits = encoded_len(value_len) - HEADER_LEN <= u16::MAX as usize;
    let mut b = MessageBuilder::new(buf, Class::Indication, Method::BINDING, ATTRIBUTE_TID)
        .expect("header fits");
    match b.add(a) {
        Ok(()) => {
            assert!(fits);
            Some(b.finish())
        }
        Err(e) => {
            assert!(!fits, "adding {a:?} failed: {e}");
            None
        }
    }
}

/// RFC 8839 candidate lines and offer lines from arbitrary text: nothing may panic, and
/// whatever parses must format and parse back to the same value.
pub fn check_ice_candidate(data: &[u8]) {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    for line in text.split('\n').chain(core::iter::once(text)) {
        check_candidate_line(line);
    }
}

fn check_candidate_line(line: &str) {
    use holepunch_core::ice::candidate::Candidate;
    use holepunch_core::ice::offer::{
        OfferLine, write_candidate, write_keepalive, write_pwd, write_ufrag,
    };
    if let Ok(c) = Candidate::parse(line) {
        let formatted = c.to_string();
        assert_eq!(
            Candidate::parse(&formatted),
            Ok(c),
            "{line:?} -> {formatted:?}"
        );
    }
    let mut out = String::new();
    match OfferLine::parse(line) {
        Ok(OfferLine::Candidate(c)) => {
            write_candidate(&mut out, &c).expect("writing to a String cannot fail");
            assert_eq!(
                OfferLine::parse(&out),
                Ok(OfferLine::Candidate(c)),
                "{line:?} -> {out:?}"
            );
        }
        Ok(OfferLine::Ufrag(ufrag)) => {
            write_ufrag(&mut out, ufrag).expect("writing to a String cannot fail");
            assert_eq!(
                OfferLine::parse(&out),
                Ok(OfferLine::Ufrag(ufrag)),
                "{line:?}"
            );
        }
        Ok(OfferLine::Pwd(pwd)) => {
            write_pwd(&mut out, pwd).expect("writing to a String cannot fail");
            assert_eq!(OfferLine::parse(&out), Ok(OfferLine::Pwd(pwd)), "{line:?}");
        }
        Ok(OfferLine::Keepalive(interval)) => {
            write_keepalive(&mut out, interval).expect("writing to a String cannot fail");
            assert_eq!(
                OfferLine::parse(&out),
                Ok(OfferLine::Keepalive(interval)),
                "{line:?}"
            );
        }
        Ok(OfferLine::EndOfCandidates | OfferLine::Ignored) | Err(_) => {}
    }
}
