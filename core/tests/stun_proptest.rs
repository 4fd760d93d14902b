//! Property tests for the STUN codec: every attribute round-trips, whole messages keep their
//! attribute order and verify, arbitrary bytes never panic, and a flipped byte is never accepted.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use holepunch_core::stun::attr::{self, MAX_DOMAIN_LEN, MAX_TEXT_LEN, MAX_USERNAME_LEN, types};
use holepunch_core::stun::{
    AttrError, Attribute, Class, DecodeError, EncodeError, ErrorCode, HEADER_LEN, IntegrityError,
    IntegrityKey, MAGIC_COOKIE, Message, MessageBuilder, Method, PasswordAlgorithm,
    PasswordAlgorithms, TransactionId, U16List,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

#[path = "../../fuzz/src/checks.rs"]
#[allow(dead_code)] // shared with the fuzz targets; this file uses the STUN checks only
mod checks;

/// Every type [`attr::is_known`] accepts; `known_types_are_exactly_is_known` keeps it in sync.
const KNOWN_TYPES: [u16; 27] = [
    types::MAPPED_ADDRESS,
    types::CHANGE_REQUEST,
    types::USERNAME,
    types::MESSAGE_INTEGRITY,
    types::ERROR_CODE,
    types::UNKNOWN_ATTRIBUTES,
    types::REALM,
    types::NONCE,
    types::MESSAGE_INTEGRITY_SHA256,
    types::PASSWORD_ALGORITHM,
    types::USERHASH,
    types::XOR_MAPPED_ADDRESS,
    types::PADDING,
    types::RESPONSE_PORT,
    types::PRIORITY,
    types::USE_CANDIDATE,
    types::PASSWORD_ALGORITHMS,
    types::ALTERNATE_DOMAIN,
    types::SOFTWARE,
    types::ALTERNATE_SERVER,
    types::FINGERPRINT,
    types::ICE_CONTROLLED,
    types::ICE_CONTROLLING,
    types::RESPONSE_ORIGIN,
    types::OTHER_ADDRESS,
    types::SOURCE_ADDRESS,
    types::CHANGED_ADDRESS,
];

/// Room for the largest message the length field can describe.
const MAX_MESSAGE: usize = HEADER_LEN + u16::MAX as usize;

/// Room for any [`message_spec`]: at most 8 attributes of at most 4 + 764 bytes, plus trailers.
const SPEC_MESSAGE: usize = 8 * 1024;

/// `release` cases in optimised builds; a sixteenth of them in debug builds, where hashing is an
/// order of magnitude slower, so a plain `cargo test` stays quick.
fn cases(release: u32) -> ProptestConfig {
    ProptestConfig::with_cases(if cfg!(debug_assertions) {
        release / 16
    } else {
        release
    })
}

/// An owned attribute value, from which a borrowed [`Attribute`] is built.
#[derive(Clone, Debug)]
enum Spec {
    MappedAddress(SocketAddr),
    XorMappedAddress(SocketAddr),
    Username(String),
    UserHash([u8; 32]),
    MessageIntegrity([u8; 20]),
    MessageIntegritySha256(Vec<u8>),
    Fingerprint(u32),
    ErrorCode(u16, String),
    Realm(String),
    Nonce(String),
    PasswordAlgorithms(Vec<(u16, Vec<u8>)>),
    PasswordAlgorithm(u16, Vec<u8>),
    UnknownAttributes(Vec<u16>),
    Software(String),
    AlternateServer(SocketAddr),
    AlternateDomain(String),
    ChangeRequest(bool, bool),
    ResponseOrigin(SocketAddr),
    OtherAddress(SocketAddr),
    SourceAddress(SocketAddr),
    ChangedAddress(SocketAddr),
    ResponsePort(u16),
    Padding(Vec<u8>),
    Priority(u32),
    UseCandidate,
    IceControlled(u64),
    IceControlling(u64),
    Other(u16, Vec<u8>),
}

impl Spec {
    /// The entries a PASSWORD-ALGORITHMS attribute borrows (empty for every other variant).
    fn algorithms(&self) -> Vec<PasswordAlgorithm<'_>> {
        match self {
            Spec::PasswordAlgorithms(list) => list
                .iter()
                .map(|(algorithm, params)| PasswordAlgorithm {
                    algorithm: *algorithm,
                    params,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    fn attribute<'a>(&'a self, algorithms: &'a [PasswordAlgorithm<'a>]) -> Attribute<'a> {
        match self {
            Spec::MappedAddress(a) => Attribute::MappedAddress(*a),
            Spec::XorMappedAddress(a) => Attribute::XorMappedAddress(*a),
            Spec::Username(s) => Attribute::Username(s),
            Spec::UserHash(h) => Attribute::UserHash(h),
            Spec::MessageIntegrity(h) => Attribute::MessageIntegrity(h),
            Spec::MessageIntegritySha256(v) => Attribute::MessageIntegritySha256(v),
            Spec::Fingerprint(v) => Attribute::Fingerprint(*v),
            Spec::ErrorCode(code, reason) => Attribute::ErrorCode(ErrorCode {
                code: *code,
                reason,
            }),
            Spec::Realm(s) => Attribute::Realm(s),
            Spec::Nonce(s) => Attribute::Nonce(s),
            Spec::PasswordAlgorithms(_) => {
                Attribute::PasswordAlgorithms(PasswordAlgorithms::Native(algorithms))
            }
            Spec::PasswordAlgorithm(algorithm, params) => {
                Attribute::PasswordAlgorithm(PasswordAlgorithm {
                    algorithm: *algorithm,
                    params,
                })
            }
            Spec::UnknownAttributes(list) => Attribute::UnknownAttributes(U16List::Native(list)),
            Spec::Software(s) => Attribute::Software(s),
            Spec::AlternateServer(a) => Attribute::AlternateServer(*a),
            Spec::AlternateDomain(s) => Attribute::AlternateDomain(s),
            Spec::ChangeRequest(change_ip, change_port) => Attribute::ChangeRequest {
                change_ip: *change_ip,
                change_port: *change_port,
            },
            Spec::ResponseOrigin(a) => Attribute::ResponseOrigin(*a),
            Spec::OtherAddress(a) => Attribute::OtherAddress(*a),
            Spec::SourceAddress(a) => Attribute::SourceAddress(*a),
            Spec::ChangedAddress(a) => Attribute::ChangedAddress(*a),
            Spec::ResponsePort(p) => Attribute::ResponsePort(*p),
            Spec::Padding(v) => Attribute::Padding(v),
            Spec::Priority(v) => Attribute::Priority(*v),
            Spec::UseCandidate => Attribute::UseCandidate,
            Spec::IceControlled(v) => Attribute::IceControlled(*v),
            Spec::IceControlling(v) => Attribute::IceControlling(*v),
            Spec::Other(attr, value) => Attribute::Other { attr: *attr, value },
        }
    }

    /// Whether the builder treats it as an integrity/fingerprint attribute that seals the message.
    fn seals(&self) -> bool {
        matches!(
            self,
            Spec::MessageIntegrity(_) | Spec::MessageIntegritySha256(_) | Spec::Fingerprint(_)
        )
    }

    /// One value of every variant, for the coverage check.
    fn examples() -> Vec<Spec> {
        let a: SocketAddr = "192.0.2.1:3478".parse().expect("literal address");
        vec![
            Spec::MappedAddress(a),
            Spec::XorMappedAddress(a),
            Spec::Username("u".into()),
            Spec::UserHash([1; 32]),
            Spec::MessageIntegrity([2; 20]),
            Spec::MessageIntegritySha256(vec![3; 32]),
            Spec::Fingerprint(4),
            Spec::ErrorCode(420, "Unknown Attribute".into()),
            Spec::Realm("r".into()),
            Spec::Nonce("n".into()),
            Spec::PasswordAlgorithms(vec![(1, vec![]), (2, vec![])]),
            Spec::PasswordAlgorithm(2, vec![]),
            Spec::UnknownAttributes(vec![0x7fff]),
            Spec::Software("s".into()),
            Spec::AlternateServer(a),
            Spec::AlternateDomain("example.org".into()),
            Spec::ChangeRequest(true, false),
            Spec::ResponseOrigin(a),
            Spec::OtherAddress(a),
            Spec::SourceAddress(a),
            Spec::ChangedAddress(a),
            Spec::ResponsePort(5000),
            Spec::Padding(vec![0; 3]),
            Spec::Priority(5),
            Spec::UseCandidate,
            Spec::IceControlled(6),
            Spec::IceControlling(7),
            Spec::Other(0xc0de, b"x".to_vec()),
        ]
    }
}

// ---- strategies -------------------------------------------------------------------------------

fn socket_addr() -> impl Strategy<Value = SocketAddr> {
    let ip = prop_oneof![
        any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
        any::<[u8; 16]>().prop_map(|o| IpAddr::V6(Ipv6Addr::from(o))),
    ];
    (ip, any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(ip, port))
}

/// UTF-8 text of at most `max` bytes: short ASCII, arbitrary (mostly non-ASCII) characters, or
/// multi-byte text filled right up to the limit.
fn text(max: usize) -> impl Strategy<Value = String> {
    let truncate = move |chars: Vec<char>| {
        let mut s = String::new();
        for c in chars {
            if s.len() + c.len_utf8() > max {
                break;
            }
            s.push(c);
        }
        s
    };
    prop_oneof![
        "[ -~]{0,24}",
        vec(any::<char>(), 0..=64).prop_map(truncate),
        vec(any::<char>(), max / 4..=max).prop_map(truncate),
    ]
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..=max)
}

fn unknown_type() -> impl Strategy<Value = u16> {
    any::<u16>().prop_filter("a type this crate decodes", |t| !attr::is_known(*t))
}

/// Every attribute that may appear before integrity in a message.
fn ordinary_spec() -> impl Strategy<Value = Spec> {
    prop_oneof![
        socket_addr().prop_map(Spec::MappedAddress),
        socket_addr().prop_map(Spec::XorMappedAddress),
        text(MAX_USERNAME_LEN).prop_map(Spec::Username),
        any::<[u8; 32]>().prop_map(Spec::UserHash),
        (300u16..=699, text(MAX_TEXT_LEN)).prop_map(|(c, r)| Spec::ErrorCode(c, r)),
        text(MAX_TEXT_LEN).prop_map(Spec::Realm),
        text(MAX_TEXT_LEN).prop_map(Spec::Nonce),
        vec((any::<u16>(), bytes(11)), 0..6).prop_map(Spec::PasswordAlgorithms),
        (any::<u16>(), bytes(11)).prop_map(|(a, p)| Spec::PasswordAlgorithm(a, p)),
        vec(any::<u16>(), 0..20).prop_map(Spec::UnknownAttributes),
        text(MAX_TEXT_LEN).prop_map(Spec::Software),
        socket_addr().prop_map(Spec::AlternateServer),
        text(MAX_DOMAIN_LEN).prop_map(Spec::AlternateDomain),
        (any::<bool>(), any::<bool>()).prop_map(|(i, p)| Spec::ChangeRequest(i, p)),
        socket_addr().prop_map(Spec::ResponseOrigin),
        socket_addr().prop_map(Spec::OtherAddress),
        socket_addr().prop_map(Spec::SourceAddress),
        socket_addr().prop_map(Spec::ChangedAddress),
        any::<u16>().prop_map(Spec::ResponsePort),
        bytes(64).prop_map(Spec::Padding),
        any::<u32>().prop_map(Spec::Priority),
        Just(Spec::UseCandidate),
        any::<u64>().prop_map(Spec::IceControlled),
        any::<u64>().prop_map(Spec::IceControlling),
        (unknown_type(), bytes(64)).prop_map(|(t, v)| Spec::Other(t, v)),
    ]
}

/// Every attribute, including verbatim integrity and fingerprint values.
fn any_spec() -> impl Strategy<Value = Spec> {
    prop_oneof![
        8 => ordinary_spec(),
        1 => any::<[u8; 20]>().prop_map(Spec::MessageIntegrity),
        1 => select(vec![16usize, 20, 24, 28, 32])
            .prop_flat_map(|n| vec(any::<u8>(), n))
            .prop_map(Spec::MessageIntegritySha256),
        1 => any::<u32>().prop_map(Spec::Fingerprint),
    ]
}

fn class() -> impl Strategy<Value = Class> {
    select(vec![
        Class::Request,
        Class::Indication,
        Class::SuccessResponse,
        Class::ErrorResponse,
    ])
}

/// A whole message to build: header, ordinary attributes, then the integrity trailer.
#[derive(Clone, Debug)]
struct MessageSpec {
    class: Class,
    method: u16,
    tid: [u8; 12],
    body: Vec<Spec>,
    password: Vec<u8>,
    mi: bool,
    mi256: bool,
    fingerprint: bool,
}

fn message_spec() -> impl Strategy<Value = MessageSpec> {
    (
        class(),
        0u16..0x1000,
        any::<[u8; 12]>(),
        vec(ordinary_spec(), 0..8),
        bytes(40),
        any::<(bool, bool, bool)>(),
    )
        .prop_map(
            |(class, method, tid, body, password, (mi, mi256, fingerprint))| MessageSpec {
                class,
                method,
                tid,
                body,
                password,
                mi,
                mi256,
                fingerprint,
            },
        )
}

/// Builds `spec` into `buf` and returns the message length.
fn build(spec: &MessageSpec, buf: &mut [u8]) -> usize {
    let key = IntegrityKey::short_term(&spec.password);
    let mut b = MessageBuilder::new(
        buf,
        spec.class,
        Method::new(spec.method),
        TransactionId(spec.tid),
    )
    .expect("buffer holds a header");
    for s in &spec.body {
        let algorithms = s.algorithms();
        b.add(&s.attribute(&algorithms))
            .expect("an in-limits attribute encodes");
    }
    if spec.mi {
        b.add_message_integrity(&key)
            .expect("MESSAGE-INTEGRITY fits");
    }
    if spec.mi256 {
        b.add_message_integrity_sha256(&key)
            .expect("MESSAGE-INTEGRITY-SHA256 fits");
    }
    if spec.fingerprint {
        b.add_fingerprint().expect("FINGERPRINT fits");
    }
    b.finish()
}

/// A key that differs from `password`'s as an HMAC key. (Appending zero bytes would not do: HMAC
/// pads short keys with zeros, so `k` and `k || 0` are the same key.)
fn other_password(password: &[u8]) -> Vec<u8> {
    let mut p = password.to_vec();
    match p.first_mut() {
        Some(b) => *b ^= 1,
        None => p.push(b'x'),
    }
    p
}

/// Raw bytes of an attribute, header and zero padding included.
fn raw_attribute(attr: u16, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + value.len() + 3);
    out.extend_from_slice(&attr.to_be_bytes());
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
    out.resize(out.len().next_multiple_of(4), 0);
    out
}

/// A header with the magic cookie and a length field matching `body`, then `body`.
fn stun_datagram(msg_type: u16, tid: [u8; 12], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&(msg_type & 0x3fff).to_be_bytes());
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    out.extend_from_slice(&tid);
    out.extend_from_slice(body);
    out
}

/// Attribute soup: known and random types with values of plausible and random lengths, so parsing
/// succeeds often and the decoders see both valid and invalid values.
fn attribute_soup() -> impl Strategy<Value = Vec<u8>> {
    let attr_type = prop_oneof![3 => select(KNOWN_TYPES.to_vec()), 1 => any::<u16>()];
    let value = prop_oneof![
        bytes(40),
        select(vec![0usize, 4, 8, 20, 32]).prop_flat_map(|n| vec(any::<u8>(), n)),
        (select(vec![1u8, 2]), any::<[u8; 18]>()).prop_map(|(family, rest)| {
            let mut v = vec![0, family];
            v.extend_from_slice(&rest[..if family == 1 { 6 } else { 18 }]);
            v
        }),
    ];
    (
        any::<u16>(),
        any::<[u8; 12]>(),
        vec((attr_type, value), 0..12),
    )
        .prop_map(|(msg_type, tid, attrs)| {
            let body: Vec<u8> = attrs
                .iter()
                .flat_map(|(t, v)| raw_attribute(*t, v))
                .collect();
            stun_datagram(msg_type, tid, &body)
        })
}

// ---- (a) every attribute round-trips ------------------------------------------------------------

proptest! {
    #![proptest_config(cases(10_000))]

    #[test]
    fn every_attribute_round_trips(spec in any_spec(), tid in any::<[u8; 12]>()) {
        let algorithms = spec.algorithms();
        let attribute = spec.attribute(&algorithms);
        let tid = TransactionId(tid);
        let mut buf = [0u8; 2048];
        let mut b = MessageBuilder::new(&mut buf, Class::Request, Method::BINDING, tid)
            .expect("buffer holds a header");
        b.add(&attribute).expect("an in-limits attribute encodes");
        let len = b.finish();
        prop_assert_eq!(len, HEADER_LEN + 4 + attribute.value_len().next_multiple_of(4));

        let msg = Message::parse(&buf[..len]).expect("a built message parses");
        let t = attribute.attr_type();
        let raw = msg.find(t).expect("the attribute is there");
        prop_assert_eq!(raw.value.len(), attribute.value_len());
        prop_assert_eq!(msg.decode(t), Some(Ok(attribute)));
        checks::check_attribute(t, raw.value);
        checks::check_message(&buf[..len]);
    }
}

// ---- (b) whole messages -----------------------------------------------------------------------

proptest! {
    #![proptest_config(cases(2_500))]

    #[test]
    fn messages_keep_order_and_verify(spec in message_spec()) {
        let mut buf = vec![0u8; SPEC_MESSAGE];
        let len = build(&spec, &mut buf);
        let wire = &buf[..len];
        let msg = Message::parse(wire).expect("a built message parses");
        prop_assert_eq!(msg.class(), spec.class);
        prop_assert_eq!(msg.method().number(), spec.method);
        prop_assert_eq!(msg.transaction_id(), TransactionId(spec.tid));

        let tid = msg.transaction_id();
        let mut seen = msg.attributes();
        for s in &spec.body {
            let algorithms = s.algorithms();
            let expected = s.attribute(&algorithms);
            let raw = seen.next().expect("every body attribute is processed");
            prop_assert_eq!(Attribute::decode(raw.attr, raw.value, &tid), Ok(expected));
        }
        let trailer = [
            (spec.mi, types::MESSAGE_INTEGRITY),
            (spec.mi256, types::MESSAGE_INTEGRITY_SHA256),
            (spec.fingerprint, types::FINGERPRINT),
        ];
        for (_, t) in trailer.iter().filter(|(present, _)| *present) {
            prop_assert_eq!(seen.next().map(|raw| raw.attr), Some(*t));
        }
        prop_assert_eq!(seen.next(), None);

        let unknown: Vec<u16> = msg.unknown_comprehension_required(attr::is_known).collect();
        let expected_unknown: Vec<u16> = spec
            .body
            .iter()
            .filter_map(|s| match s {
                Spec::Other(t, _) if *t < 0x8000 => Some(*t),
                _ => None,
            })
            .collect();
        prop_assert_eq!(unknown, expected_unknown);

        let key = IntegrityKey::short_term(&spec.password);
        let wrong = IntegrityKey::short_term(&other_password(&spec.password));
        if spec.mi || spec.mi256 {
            prop_assert_eq!(msg.verify_integrity(&key), Ok(()));
            prop_assert_eq!(msg.verify_integrity(&wrong), Err(IntegrityError::Mismatch));
        } else {
            prop_assert_eq!(msg.verify_integrity(&key), Err(IntegrityError::Missing));
        }
        if spec.mi && spec.mi256 {
            // MESSAGE-INTEGRITY-SHA256 takes precedence, so check MESSAGE-INTEGRITY on its own:
            // cut the message right after it, as a receiver that ignores the rest would see it.
            let mi = msg.find(types::MESSAGE_INTEGRITY).expect("MESSAGE-INTEGRITY was added");
            let mut cut = wire[..mi.offset + 24].to_vec();
            let body_len = (cut.len() - HEADER_LEN) as u16;
            cut[2..4].copy_from_slice(&body_len.to_be_bytes());
            let cut = Message::parse(&cut).expect("the cut message parses");
            prop_assert_eq!(cut.verify_integrity(&key), Ok(()));
            prop_assert_eq!(cut.verify_integrity(&wrong), Err(IntegrityError::Mismatch));
        }
        if spec.fingerprint {
            prop_assert_eq!(msg.verify_fingerprint(), Ok(()));
        } else {
            prop_assert_eq!(msg.verify_fingerprint(), Err(IntegrityError::FingerprintMissing));
        }
        checks::check_message(wire);
    }
}

// ---- (c) arbitrary input never panics ---------------------------------------------------------

proptest! {
    #![proptest_config(cases(16_000))]

    #[test]
    fn arbitrary_bytes_never_panic(data in bytes(256)) {
        checks::check_message(&data);
        checks::check_attribute_input(&data);
    }

    #[test]
    fn arbitrary_stun_looking_bytes_never_panic(
        msg_type in any::<u16>(),
        tid in any::<[u8; 12]>(),
        words in vec(any::<[u8; 4]>(), 0..64),
    ) {
        let body: Vec<u8> = words.concat();
        let data = stun_datagram(msg_type, tid, &body);
        // Whatever is wrong, it is not the header.
        let header_error = matches!(
            Message::parse(&data),
            Err(DecodeError::TooShort(_)
                | DecodeError::NotStun
                | DecodeError::NoMagicCookie
                | DecodeError::UnalignedLength(_)
                | DecodeError::LengthMismatch { .. })
        );
        prop_assert!(!header_error);
        checks::check_message(&data);
    }

    #[test]
    fn attribute_soup_never_panics(data in attribute_soup(), corrupt in any::<Option<(usize, u8)>>()) {
        let mut data = data;
        if let Some((at, xor)) = corrupt {
            let at = at % data.len();
            data[at] ^= xor;
        }
        checks::check_message(&data);
    }
}

/// The soup must mostly parse, or the test above would only ever exercise the error paths.
#[test]
fn attribute_soup_mostly_parses_and_decodes() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = attribute_soup();
    let (mut parsed, mut decoded, mut attributes) = (0, 0, 0);
    for _ in 0..1000 {
        let data = strategy
            .new_tree(&mut runner)
            .expect("soup generates")
            .current();
        let Ok(msg) = Message::parse(&data) else {
            continue;
        };
        parsed += 1;
        let tid = msg.transaction_id();
        for raw in msg.attributes() {
            attributes += 1;
            decoded += usize::from(Attribute::decode(raw.attr, raw.value, &tid).is_ok());
        }
    }
    assert!(parsed >= 500, "only {parsed} of 1000 soups parsed");
    assert!(
        decoded * 4 >= attributes,
        "only {decoded} of {attributes} attributes decoded"
    );
}

// ---- (d) a flipped byte is never accepted -----------------------------------------------------

fn integrity_choice() -> impl Strategy<Value = (bool, bool)> {
    select(vec![(true, false), (false, true), (true, true)])
}

proptest! {
    #![proptest_config(cases(6_000))]

    /// With FINGERPRINT every byte is covered (by the CRC at least), so no flip may pass both
    /// checks.
    #[test]
    fn a_flipped_byte_is_never_accepted(
        spec in message_spec(),
        (mi, mi256) in integrity_choice(),
        at in any::<usize>(),
        xor in 1u8..=255,
    ) {
        let spec = MessageSpec { mi, mi256, fingerprint: true, ..spec };
        let mut buf = vec![0u8; SPEC_MESSAGE];
        let len = build(&spec, &mut buf);
        let wire = &mut buf[..len];
        wire[at % len] ^= xor;
        let key = IntegrityKey::short_term(&spec.password);
        if let Ok(msg) = Message::parse(wire) {
            let accepted = msg.verify_integrity(&key).is_ok() && msg.verify_fingerprint().is_ok();
            prop_assert!(!accepted, "byte {} ^ {:#04x} was accepted", at % len, xor);
        }
    }

    /// Without FINGERPRINT, integrity alone must catch every change a receiver would act on:
    /// a flip that still verifies can only lie after the first integrity attribute, in what
    /// RFC 8489 §14.5 tells receivers to ignore (for example turning a trailing
    /// MESSAGE-INTEGRITY-SHA256 into an unknown attribute, which leaves MESSAGE-INTEGRITY in charge).
    #[test]
    fn without_fingerprint_only_ignored_bytes_can_change(
        spec in message_spec(),
        (mi, mi256) in integrity_choice(),
        at in any::<usize>(),
        xor in 1u8..=255,
    ) {
        let spec = MessageSpec { mi, mi256, fingerprint: false, ..spec };
        let mut buf = vec![0u8; SPEC_MESSAGE];
        let len = build(&spec, &mut buf);
        let covered_end = {
            let msg = Message::parse(&buf[..len]).expect("a built message parses");
            let first = msg
                .attributes()
                .find(|a| matches!(a.attr, types::MESSAGE_INTEGRITY | types::MESSAGE_INTEGRITY_SHA256))
                .expect("an integrity attribute was added");
            first.offset + 4 + first.value.len()
        };
        let at = at % len;
        let wire = &mut buf[..len];
        wire[at] ^= xor;
        let key = IntegrityKey::short_term(&spec.password);
        if let Ok(msg) = Message::parse(wire) {
            if msg.verify_integrity(&key).is_ok() {
                prop_assert!(at >= covered_end, "byte {} ^ {:#04x} was accepted", at, xor);
            }
        }
    }
}

// ---- deterministic edges ----------------------------------------------------------------------

#[test]
fn known_types_are_exactly_is_known() {
    let listed: BTreeSet<u16> = KNOWN_TYPES.into_iter().collect();
    let known: BTreeSet<u16> = (0..=u16::MAX).filter(|t| attr::is_known(*t)).collect();
    assert_eq!(listed, known);
}

/// The strategies cover every variant: a new `Attribute` variant needs a `Spec` here too.
#[test]
fn specs_cover_every_known_type() {
    let covered: BTreeSet<u16> = Spec::examples()
        .iter()
        .map(|s| s.attribute(&s.algorithms()).attr_type())
        .filter(|t| attr::is_known(*t))
        .collect();
    assert_eq!(covered, KNOWN_TYPES.into_iter().collect());
    assert!(
        Spec::examples()
            .iter()
            .any(|s| matches!(s, Spec::Other(..)))
    );
    assert_eq!(Spec::examples().iter().filter(|s| s.seals()).count(), 3);
}

#[test]
fn text_limits_are_enforced_both_ways() {
    let tid = TransactionId([9; 12]);
    let limits = [
        (types::USERNAME, MAX_USERNAME_LEN),
        (types::REALM, MAX_TEXT_LEN),
        (types::NONCE, MAX_TEXT_LEN),
        (types::SOFTWARE, MAX_TEXT_LEN),
        (types::ALTERNATE_DOMAIN, MAX_DOMAIN_LEN),
    ];
    for (t, max) in limits {
        // Three-byte characters up to the limit, topped up with ASCII to land on it exactly.
        let mut at_limit = "\u{30de}".repeat(max / 3);
        at_limit.push_str(&"a".repeat(max % 3));
        assert_eq!(at_limit.len(), max);
        let over = format!("{at_limit}a");
        let decoded = Attribute::decode(t, at_limit.as_bytes(), &tid).expect("at the limit");
        assert_eq!(decoded.value_len(), max);
        assert_eq!(
            Attribute::decode(t, over.as_bytes(), &tid),
            Err(AttrError::BadLength {
                attr: t,
                len: max + 1
            })
        );
        let mut buf = [0u8; 2048];
        let mut b = MessageBuilder::new(&mut buf, Class::Request, Method::BINDING, tid)
            .expect("header fits");
        b.add(&decoded).expect("at the limit encodes");
        let too_long = text_attribute(t, &over);
        assert!(matches!(
            b.add(&too_long),
            Err(EncodeError::Attribute(AttrError::BadLength { .. }))
        ));
    }
}

fn text_attribute(t: u16, s: &str) -> Attribute<'_> {
    match t {
        types::USERNAME => Attribute::Username(s),
        types::REALM => Attribute::Realm(s),
        types::NONCE => Attribute::Nonce(s),
        types::SOFTWARE => Attribute::Software(s),
        _ => Attribute::AlternateDomain(s),
    }
}

#[test]
fn error_codes_outside_300_to_699_are_refused() {
    let mut buf = [0u8; 128];
    for code in [0u16, 299, 700, 999, 6999] {
        let mut b = MessageBuilder::new(
            &mut buf,
            Class::ErrorResponse,
            Method::BINDING,
            TransactionId([0; 12]),
        )
        .expect("header fits");
        let e = Attribute::ErrorCode(ErrorCode { code, reason: "x" });
        assert!(b.add(&e).is_err(), "code {code} was accepted");
    }
    for code in [300u16, 420, 699] {
        let mut b = MessageBuilder::new(
            &mut buf,
            Class::ErrorResponse,
            Method::BINDING,
            TransactionId([0; 12]),
        )
        .expect("header fits");
        b.add(&Attribute::ErrorCode(ErrorCode { code, reason: "x" }))
            .expect("in range");
        let len = b.finish();
        let msg = Message::parse(&buf[..len]).expect("parses");
        assert_eq!(msg.error_code(), Some(Ok(ErrorCode { code, reason: "x" })));
    }
}

#[test]
fn the_largest_message_round_trips_and_one_byte_more_is_refused() {
    let tid = TransactionId([3; 12]);
    let mut buf = vec![0u8; MAX_MESSAGE + 8];
    // 4 header bytes + 65528 value bytes = 65532, the largest 4-aligned message length.
    let big = vec![0xa5u8; 65528];
    let mut b = MessageBuilder::new(&mut buf, Class::Indication, Method::BINDING, tid)
        .expect("header fits");
    b.add(&Attribute::Padding(&big))
        .expect("largest value fits");
    let len = b.finish();
    assert_eq!(len, HEADER_LEN + 65532);
    let msg = Message::parse(&buf[..len]).expect("largest message parses");
    assert_eq!(
        msg.decode(types::PADDING),
        Some(Ok(Attribute::Padding(&big)))
    );
    checks::check_message(&buf[..len]);

    let bigger = vec![0u8; 65529];
    let mut b = MessageBuilder::new(&mut buf, Class::Indication, Method::BINDING, tid)
        .expect("header fits");
    assert!(b.add(&Attribute::Padding(&bigger)).is_err());
    assert!(b.is_empty(), "a refused attribute leaves nothing behind");
}

/// RFC 8489 §14.5–14.6: after MESSAGE-INTEGRITY only MESSAGE-INTEGRITY-SHA256 and FINGERPRINT are
/// processed; an attribute between the two integrity attributes is ignored.
#[test]
fn attributes_between_the_two_integrity_attributes_are_ignored() {
    let key = IntegrityKey::short_term(b"pw");
    let mut buf = [0u8; 256];
    let tid = TransactionId([5; 12]);
    let mut b =
        MessageBuilder::new(&mut buf, Class::Request, Method::BINDING, tid).expect("header fits");
    b.add(&Attribute::Username("a:b")).expect("fits");
    b.add_message_integrity(&key).expect("fits");
    let len = b.finish();
    // Append SOFTWARE, MESSAGE-INTEGRITY-SHA256 and FINGERPRINT by hand: the builder refuses to.
    let mut wire = buf[..len].to_vec();
    wire.extend_from_slice(&raw_attribute(types::SOFTWARE, b"sneaked in"));
    wire.extend_from_slice(&raw_attribute(types::MESSAGE_INTEGRITY_SHA256, &[0; 32]));
    wire.extend_from_slice(&raw_attribute(types::FINGERPRINT, &[0; 4]));
    let body_len = (wire.len() - HEADER_LEN) as u16;
    wire[2..4].copy_from_slice(&body_len.to_be_bytes());
    let msg = Message::parse(&wire).expect("parses");
    let seen: Vec<u16> = msg.attributes().map(|a| a.attr).collect();
    assert_eq!(
        seen,
        [
            types::USERNAME,
            types::MESSAGE_INTEGRITY,
            types::MESSAGE_INTEGRITY_SHA256,
            types::FINGERPRINT
        ]
    );
    assert_eq!(msg.find(types::SOFTWARE), None);
}
