//! Peer STUN codecs and the "floor", behind one small trait so the bench can time them alike.
//!
//! Every implementation does the same job on the same RFC 5769 bytes:
//! - `decode_request`: parse the §2.1 request, verify MESSAGE-INTEGRITY (HMAC-SHA1, short-term
//!   key = password) and FINGERPRINT;
//! - `encode_request`: write a Binding request with USERNAME, PRIORITY, ICE-CONTROLLING,
//!   MESSAGE-INTEGRITY and FINGERPRINT into the caller's buffer;
//! - `decode_response`: parse a §2.2 / §2.3 response, verify MESSAGE-INTEGRITY and FINGERPRINT,
//!   return XOR-MAPPED-ADDRESS.
//!
//! Fairness rules (see also each impl's comments): the key is pre-computed ("pre-keyed") wherever
//! the peer's public API lets a long-lived object carry it, per-call scratch the API lets us keep
//! (rtc-stun's `Message`) is reused, and constant attribute values are built once outside the timed
//! call where the API makes them owned objects. `sanity_check` asserts that every implementation
//! accepts the vectors, rejects tampered MESSAGE-INTEGRITY and tampered FINGERPRINT, and produces an
//! encoding that verifies, so a broken peer cannot look fast.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hmac::{Hmac, Mac};
use sha1::Sha1;

type HmacSha1 = Hmac<Sha1>;

/// Short-term password shared by RFC 5769 §2.1–§2.3.
pub const PASSWORD: &str = "VOkJxbRl1RmTxUk/WvJxBt";
/// USERNAME of the encoded request (as in RFC 5769 §2.1).
pub const USERNAME: &str = "evtj:h6vY";
/// PRIORITY of the encoded request.
pub const PRIORITY: u32 = 0x6e00_01ff;
/// ICE-CONTROLLING tie-breaker of the encoded request.
pub const TIE_BREAKER: u64 = 0x932f_f9b1_5126_3b36;
/// Transaction ID used for the encoded request (that of RFC 5769 §2.1).
pub const TID: [u8; 12] = [
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
];
/// Encoded length of the request every implementation must produce: header 20, USERNAME 4+12,
/// PRIORITY 4+4, ICE-CONTROLLING 4+8, MESSAGE-INTEGRITY 4+20, FINGERPRINT 4+4.
pub const ENCODED_LEN: usize = 88;

/// RFC 5769 §2.1 sample request.
#[rustfmt::skip]
pub const REQUEST: [u8; 108] = [
    0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01,
    0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    0x80, 0x22, 0x00, 0x10, // SOFTWARE "STUN test client"
    0x53, 0x54, 0x55, 0x4e, 0x20, 0x74, 0x65, 0x73, 0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74,
    0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x01, 0xff, // PRIORITY
    0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36, // ICE-CONTROLLED
    0x00, 0x06, 0x00, 0x09, 0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76, 0x59, 0x20, 0x20, 0x20,
    0x00, 0x08, 0x00, 0x14, // MESSAGE-INTEGRITY
    0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e, 0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49,
    0xc1, 0xb5, 0x71, 0xa2,
    0x80, 0x28, 0x00, 0x04, 0xe5, 0x7a, 0x3b, 0xcf, // FINGERPRINT
];

/// RFC 5769 §2.2 sample IPv4 response.
#[rustfmt::skip]
pub const RESPONSE_V4: [u8; 80] = [
    0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01,
    0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63, 0x74, 0x6f, 0x72, 0x20,
    0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43, // XOR-MAPPED-ADDRESS
    0x00, 0x08, 0x00, 0x14,
    0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3, 0x8c, 0x74, 0x89, 0xf9, 0x2a, 0xf9, 0xba, 0x53,
    0xf0, 0x6b, 0xe7, 0xd7,
    0x80, 0x28, 0x00, 0x04, 0xc0, 0x7d, 0x4c, 0x96,
];

/// RFC 5769 §2.3 sample IPv6 response.
#[rustfmt::skip]
pub const RESPONSE_V6: [u8; 92] = [
    0x01, 0x01, 0x00, 0x48, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01,
    0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63, 0x74, 0x6f, 0x72, 0x20,
    0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0xa1, 0x47, // XOR-MAPPED-ADDRESS
    0x01, 0x13, 0xa9, 0xfa, 0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25, 0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9,
    0x00, 0x08, 0x00, 0x14,
    0xa3, 0x82, 0x95, 0x4e, 0x4b, 0xe6, 0x7b, 0xf1, 0x17, 0x84, 0xc9, 0x7c, 0x82, 0x92, 0xc2, 0x75,
    0xbf, 0xe3, 0xed, 0x41,
    0x80, 0x28, 0x00, 0x04, 0xc8, 0xfb, 0x0b, 0x4c,
];

/// Mapped address in RFC 5769 §2.2.
pub fn expected_v4() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 32853)
}

/// Mapped address in RFC 5769 §2.3.
pub fn expected_v6() -> SocketAddr {
    let ip = Ipv6Addr::new(0x2001, 0xdb8, 0x1234, 0x5678, 0x11, 0x2233, 0x4455, 0x6677);
    SocketAddr::new(IpAddr::V6(ip), 32853)
}

/// One STUN codec under test. `&mut self` lets an implementation keep the pre-keyed state and
/// reusable scratch its API allows; nothing else may be carried between calls.
pub trait Codec {
    /// Row label in the tables.
    fn name(&self) -> &'static str;
    /// Parse + verify MESSAGE-INTEGRITY + verify FINGERPRINT. `true` only if all pass.
    fn decode_request(&mut self, buf: &[u8]) -> bool;
    /// Encode the Binding request into `out`, returning its length.
    fn encode_request(&mut self, out: &mut [u8]) -> usize;
    /// Parse + verify both + read XOR-MAPPED-ADDRESS. `None` if anything fails.
    fn decode_response(&mut self, buf: &[u8]) -> Option<SocketAddr>;
}

fn prekeyed() -> HmacSha1 {
    HmacSha1::new_from_slice(PASSWORD.as_bytes()).expect("HMAC takes keys of any length")
}

fn fingerprint_of(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes) ^ 0x5354_554e
}

/// FINGERPRINT check for a message whose last attribute must be FINGERPRINT (RFC 8489 §14.7),
/// with crc32fast. Used only where a peer has no FINGERPRINT verification of its own.
fn fingerprint_ok(buf: &[u8]) -> bool {
    let Some(at) = buf.len().checked_sub(8) else {
        return false;
    };
    if at < 20 || buf[at..at + 4] != [0x80, 0x28, 0x00, 0x04] {
        return false;
    }
    let got = u32::from_be_bytes([buf[at + 4], buf[at + 5], buf[at + 6], buf[at + 7]]);
    fingerprint_of(&buf[..at]) == got
}

// ---------------------------------------------------------------------------------------------
// Floor: the unavoidable cryptographic work and nothing else.
// ---------------------------------------------------------------------------------------------

/// Pre-keyed HMAC-SHA1 (clone of a keyed state) + crc32fast over exactly the bytes a codec must
/// cover, at offsets hard-coded for these vectors (MESSAGE-INTEGRITY then FINGERPRINT last).
/// No parsing: the only extras are the 4-byte length patch and, for responses, reading the
/// XOR-MAPPED-ADDRESS at its known offset so the result can be checked.
pub struct Floor {
    mac: HmacSha1,
}

impl Floor {
    /// Pre-keys the HMAC.
    pub fn new() -> Self {
        Self { mac: prekeyed() }
    }

    fn verify(&self, buf: &[u8]) -> bool {
        let len = buf.len();
        let mut mac = self.mac.clone();
        mac.update(&buf[..2]);
        // Length as seen by MESSAGE-INTEGRITY: everything up to and including it (no FINGERPRINT).
        mac.update(&((len - 20 - 8) as u16).to_be_bytes());
        mac.update(&buf[4..len - 32]);
        if mac.verify_slice(&buf[len - 28..len - 8]).is_err() {
            return false;
        }
        let got = u32::from_be_bytes([buf[len - 4], buf[len - 3], buf[len - 2], buf[len - 1]]);
        fingerprint_of(&buf[..len - 8]) == got
    }
}

/// Header + USERNAME + PRIORITY + ICE-CONTROLLING, length field already counting MESSAGE-INTEGRITY.
#[rustfmt::skip]
const FLOOR_PREFIX: [u8; 56] = [
    0x00, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42,
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    0x00, 0x06, 0x00, 0x09, b'e', b'v', b't', b'j', b':', b'h', b'6', b'v', b'Y', 0, 0, 0,
    0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x01, 0xff,
    0x80, 0x2a, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36,
];

impl Codec for Floor {
    fn name(&self) -> &'static str {
        "floor (hmac+crc only)"
    }

    fn decode_request(&mut self, buf: &[u8]) -> bool {
        self.verify(buf)
    }

    fn encode_request(&mut self, out: &mut [u8]) -> usize {
        out[..56].copy_from_slice(&FLOOR_PREFIX);
        let mut mac = self.mac.clone();
        mac.update(&out[..56]);
        out[56..60].copy_from_slice(&[0x00, 0x08, 0x00, 0x14]);
        out[60..80].copy_from_slice(&mac.finalize().into_bytes());
        out[2..4].copy_from_slice(&68u16.to_be_bytes());
        let fp = fingerprint_of(&out[..80]);
        out[80..84].copy_from_slice(&[0x80, 0x28, 0x00, 0x04]);
        out[84..88].copy_from_slice(&fp.to_be_bytes());
        ENCODED_LEN
    }

    fn decode_response(&mut self, buf: &[u8]) -> Option<SocketAddr> {
        if !self.verify(buf) {
            return None;
        }
        // XOR-MAPPED-ADDRESS value starts at 40 in both §2.2 and §2.3.
        let port = u16::from_be_bytes([buf[42], buf[43]]) ^ 0x2112;
        let ip = match buf[41] {
            1 => {
                let x = u32::from_be_bytes([buf[44], buf[45], buf[46], buf[47]]) ^ 0x2112_a442;
                IpAddr::V4(Ipv4Addr::from(x))
            }
            _ => {
                let mut b = [0u8; 16];
                b.copy_from_slice(&buf[44..60]);
                for (x, m) in b.iter_mut().zip(buf[4..20].iter()) {
                    *x ^= m;
                }
                IpAddr::V6(Ipv6Addr::from(b))
            }
        };
        Some(SocketAddr::new(ip, port))
    }
}

// ---------------------------------------------------------------------------------------------
// stun-types (+ rice-stun-types for the ICE attributes), by the librice author.
// ---------------------------------------------------------------------------------------------

/// `stun-types` 2.x. `Message::from_bytes` verifies FINGERPRINT itself whenever the attribute is
/// present (it is, in every vector); `validate_integrity_with_key` uses an `IntegrityKey` which
/// caches the keyed HMAC state (std feature: `Arc<Mutex<Option<Hmac>>>` + `finalize_reset`), so it
/// is pre-keyed. Encoding writes into the caller's slice (`MessageWriteMutSlice`, no heap).
/// PRIORITY / ICE-CONTROLLING come from the same author's `rice-stun-types`.
/// Generosity: the attribute objects (its `Username` owns a `String`) are built once, not per call.
pub struct StunTypes {
    key: stun_types::message::IntegrityKey,
    username: stun_types::attribute::Username,
    priority: rice_stun_types::attribute::Priority,
    controlling: rice_stun_types::attribute::IceControlling,
}

impl StunTypes {
    /// Builds the cached key and the constant attributes.
    pub fn new() -> Self {
        use stun_types::message::{MessageIntegrityCredentials, ShortTermCredentials};
        let creds =
            MessageIntegrityCredentials::ShortTerm(ShortTermCredentials::new(PASSWORD.to_owned()));
        let key = creds.make_key(stun_types::message::IntegrityAlgorithm::Sha1);
        Self {
            key,
            username: stun_types::attribute::Username::new(USERNAME).expect("short username"),
            priority: rice_stun_types::attribute::Priority::new(PRIORITY),
            controlling: rice_stun_types::attribute::IceControlling::new(TIE_BREAKER),
        }
    }
}

impl Codec for StunTypes {
    fn name(&self) -> &'static str {
        "stun-types 2.0"
    }

    fn decode_request(&mut self, buf: &[u8]) -> bool {
        use stun_types::message::Message;
        match Message::from_bytes(buf) {
            Ok(msg) => msg.validate_integrity_with_key(&self.key).is_ok(),
            Err(_) => false,
        }
    }

    fn encode_request(&mut self, out: &mut [u8]) -> usize {
        use stun_types::message::{
            BINDING, IntegrityAlgorithm, Message, MessageClass, MessageType, MessageWriteMutSlice,
            TransactionId,
        };
        use stun_types::prelude::*;
        let mut tid = [0u8; 16];
        tid[4..].copy_from_slice(&TID);
        let mut w = Message::builder(
            MessageType::from_class_method(MessageClass::Request, BINDING),
            TransactionId::from(u128::from_be_bytes(tid)),
            MessageWriteMutSlice::new(out),
        );
        w.add_attribute(&self.username).expect("fits");
        w.add_attribute(&self.priority).expect("fits");
        w.add_attribute(&self.controlling).expect("fits");
        w.add_message_integrity_with_key(&self.key, IntegrityAlgorithm::Sha1)
            .expect("fits");
        w.add_fingerprint().expect("fits");
        w.finish()
    }

    fn decode_response(&mut self, buf: &[u8]) -> Option<SocketAddr> {
        use stun_types::attribute::XorMappedAddress;
        use stun_types::message::Message;
        let msg = Message::from_bytes(buf).ok()?;
        msg.validate_integrity_with_key(&self.key).ok()?;
        let xma = msg.attribute::<XorMappedAddress>().ok()?;
        Some(xma.addr(msg.transaction_id()))
    }
}

// ---------------------------------------------------------------------------------------------
// is: str0m's sans-IO ICE crate (str0m re-uses it; str0m's own public API has no STUN codec).
// ---------------------------------------------------------------------------------------------

/// `is` 0.11 (`is::stun::StunMessage`). Its HMAC is an injected `Fn(key, parts) -> [u8; 20]`, so a
/// pre-keyed closure is allowed by the API: `prekeyed = true` clones a keyed state (falling back to
/// keying if handed a different key); `prekeyed = false` uses the crate's stock
/// `DefaultSha1HmacProvider`, which keys per call, as str0m does.
///
/// FAIRNESS CAVEAT: `is` has no FINGERPRINT verification (parse records the value; str0m never
/// checks it). To make the work equal we verify FINGERPRINT ourselves with crc32fast after its
/// parse — the same CRC code the floor uses. Its encoder computes FINGERPRINT itself (crc crate).
/// `is::stun::TransId` has no public constructor from bytes, so the transaction ID for encoding is
/// taken once from the parsed §2.1 request (same bytes as everyone else's).
pub struct Is {
    prekeyed: bool,
    mac: HmacSha1,
    tid: is::stun::TransId,
}

impl Is {
    /// `prekeyed`: clone a keyed HMAC (true) or use the stock provider (false).
    pub fn new(prekeyed: bool) -> Self {
        let tid = is::stun::StunMessage::parse(&REQUEST)
            .expect("is parses RFC 5769 2.1")
            .trans_id();
        Self {
            prekeyed,
            mac: self::prekeyed(),
            tid,
        }
    }

    fn hmac(&self, key: &[u8], parts: &[&[u8]]) -> [u8; 20] {
        let mut mac = if self.prekeyed && key == PASSWORD.as_bytes() {
            self.mac.clone()
        } else {
            use is::Sha1HmacProvider;
            return is::DefaultSha1HmacProvider.sha1_hmac(key, parts);
        };
        for p in parts {
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }
}

impl Codec for Is {
    fn name(&self) -> &'static str {
        if self.prekeyed {
            "is 0.11 (pre-keyed closure)*"
        } else {
            "is 0.11 (stock provider)*"
        }
    }

    fn decode_request(&mut self, buf: &[u8]) -> bool {
        match is::stun::StunMessage::parse(buf) {
            Ok(msg) => {
                msg.verify(PASSWORD.as_bytes(), |k, p| self.hmac(k, p)) && fingerprint_ok(buf)
            }
            Err(_) => false,
        }
    }

    fn encode_request(&mut self, out: &mut [u8]) -> usize {
        let msg = is::stun::StunMessageBuilder::new()
            .binding()
            .request()
            .username(USERNAME)
            .prio(PRIORITY)
            .ice_controlling(TIE_BREAKER)
            .build(self.tid);
        msg.to_bytes(Some(PASSWORD.as_bytes()), out, |k, p| self.hmac(k, p))
            .expect("fits")
    }

    fn decode_response(&mut self, buf: &[u8]) -> Option<SocketAddr> {
        let msg = is::stun::StunMessage::parse(buf).ok()?;
        if msg.verify(PASSWORD.as_bytes(), |k, p| self.hmac(k, p)) && fingerprint_ok(buf) {
            msg.mapped_address()
        } else {
            None
        }
    }
}

// ---------------------------------------------------------------------------------------------
// rtc-stun: webrtc-rs's sans-IO STUN (successor of the `stun` crate).
// ---------------------------------------------------------------------------------------------

/// `rtc-stun` 0.21. Decoding copies the datagram into a `Message` (its API owns `raw`); we reuse
/// one `Message` so its `raw`/attribute `Vec`s keep their capacity — but every attribute value is
/// still an owned `Vec<u8>` and `Message::get` returns a cloned `Vec`, so it allocates per call.
/// `MessageIntegrity::check` takes the raw key and calls `RTCCrypto::new_hmac(key)` per message:
/// with the stock `RingCrypto` (which routes HMAC-SHA1 to RustCrypto) that keys per call and
/// boxes the MAC. `prekeyed = true` passes instead a small `RTCCrypto` of ours that hands out a
/// clone of a pre-keyed state for the matching key — the best the provider extension point
/// allows (the per-call `Box` remains). FINGERPRINT is checked with `FINGERPRINT.check`.
/// Encoding: rtc-stun has no ICE attribute types (they live in rtc-ice), so USERNAME, PRIORITY
/// and ICE-CONTROLLING are written with its public `Message::add(AttrType, &[u8])`, exactly what
/// those setters do; MESSAGE-INTEGRITY and FINGERPRINT via their `Setter`s; `raw` is then copied
/// into `out`.
pub struct RtcStun {
    msg: rtc_stun::message::Message,
    crypto: &'static dyn rtc_stun::crypto::RTCCrypto,
    integrity: rtc_stun::integrity::MessageIntegrity<'static>,
    prekeyed: bool,
}

impl RtcStun {
    /// `prekeyed`: use our caching provider (true) or the stock `RingCrypto` (false).
    pub fn new(prekeyed: bool) -> Self {
        let crypto: &'static dyn rtc_stun::crypto::RTCCrypto = if prekeyed {
            Box::leak(Box::new(PreKeyedCrypto {
                key: PASSWORD.as_bytes().to_vec(),
                mac: self::prekeyed(),
            }))
        } else {
            &rtc_stun::crypto::providers::RingCrypto
        };
        let integrity =
            rtc_stun::integrity::MessageIntegrity::new_short_term_integrity_with_provider(
                PASSWORD.to_owned(),
                crypto,
            );
        Self {
            msg: rtc_stun::message::Message::new(),
            crypto,
            integrity,
            prekeyed,
        }
    }

    fn load_and_verify(&mut self, buf: &[u8]) -> bool {
        use rtc_stun::fingerprint::FINGERPRINT;
        use rtc_stun::integrity::MessageIntegrity;
        self.msg.write(buf).is_ok()
            && FINGERPRINT.check(&self.msg).is_ok()
            && MessageIntegrity::check(&mut self.msg, PASSWORD.as_bytes(), self.crypto).is_ok()
    }
}

impl Codec for RtcStun {
    fn name(&self) -> &'static str {
        if self.prekeyed {
            "rtc-stun 0.21 (pre-keyed provider)"
        } else {
            "rtc-stun 0.21 (stock RingCrypto)"
        }
    }

    fn decode_request(&mut self, buf: &[u8]) -> bool {
        self.load_and_verify(buf)
    }

    fn encode_request(&mut self, out: &mut [u8]) -> usize {
        use rtc_stun::attributes::{ATTR_ICE_CONTROLLING, ATTR_PRIORITY, ATTR_USERNAME};
        use rtc_stun::fingerprint::FINGERPRINT;
        use rtc_stun::message::{BINDING_REQUEST, Setter, TransactionId};
        let m = &mut self.msg;
        m.reset();
        m.typ = BINDING_REQUEST;
        m.transaction_id = TransactionId(TID);
        m.write_header();
        m.add(ATTR_USERNAME, USERNAME.as_bytes());
        m.add(ATTR_PRIORITY, &PRIORITY.to_be_bytes());
        m.add(ATTR_ICE_CONTROLLING, &TIE_BREAKER.to_be_bytes());
        self.integrity.add_to(m).expect("integrity");
        FINGERPRINT.add_to(m).expect("fingerprint");
        let len = m.raw.len();
        out[..len].copy_from_slice(&m.raw);
        len
    }

    fn decode_response(&mut self, buf: &[u8]) -> Option<SocketAddr> {
        use rtc_stun::message::Getter;
        use rtc_stun::xoraddr::XorMappedAddress;
        if !self.load_and_verify(buf) {
            return None;
        }
        let mut xma = XorMappedAddress::default();
        xma.get_from(&self.msg).ok()?;
        Some(SocketAddr::new(xma.ip, xma.port))
    }
}

/// An `RTCCrypto` that serves HMAC-SHA1 for one known key from a pre-keyed state (and keys
/// afresh for any other key). Only what rtc-stun's STUN integrity path calls is implemented.
struct PreKeyedCrypto {
    key: Vec<u8>,
    mac: HmacSha1,
}

struct PreKeyedMac(HmacSha1);

impl rtc_stun::crypto::Mac for PreKeyedMac {
    fn output_len(&self) -> usize {
        20
    }

    fn sign(
        &mut self,
        input: &[&[u8]],
        output: &mut [u8],
    ) -> Result<(), rtc_stun::crypto::CryptoError> {
        let mut mac = self.0.clone();
        for p in input {
            mac.update(p);
        }
        output.copy_from_slice(&mac.finalize().into_bytes());
        Ok(())
    }

    fn verify(
        &mut self,
        input: &[&[u8]],
        expected: &[u8],
    ) -> Result<(), rtc_stun::crypto::CryptoError> {
        let mut mac = self.0.clone();
        for p in input {
            mac.update(p);
        }
        mac.verify_slice(expected)
            .map_err(|_| rtc_stun::crypto::CryptoError::AuthenticationFailed)
    }
}

impl rtc_stun::crypto::RTCCrypto for PreKeyedCrypto {
    fn supports(&self, algorithm: rtc_stun::crypto::CryptoAlgorithm) -> bool {
        algorithm == rtc_stun::crypto::CryptoAlgorithm::Hmac(rtc_stun::crypto::HmacAlgorithm::Sha1)
    }

    fn new_hmac(
        &self,
        algorithm: rtc_stun::crypto::HmacAlgorithm,
        key: &[u8],
    ) -> Result<Box<dyn rtc_stun::crypto::Mac>, rtc_stun::crypto::CryptoError> {
        match algorithm {
            rtc_stun::crypto::HmacAlgorithm::Sha1 if key == self.key.as_slice() => {
                Ok(Box::new(PreKeyedMac(self.mac.clone())))
            }
            rtc_stun::crypto::HmacAlgorithm::Sha1 => Ok(Box::new(PreKeyedMac(
                HmacSha1::new_from_slice(key).expect("any key length"),
            ))),
            other => Err(rtc_stun::crypto::CryptoError::UnsupportedAlgorithm(
                rtc_stun::crypto::CryptoAlgorithm::Hmac(other),
            )),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Sanity check, run once before anything is timed.
// ---------------------------------------------------------------------------------------------

/// Recomputes FINGERPRINT after a deliberate edit, so only MESSAGE-INTEGRITY can catch it.
fn refingerprint(buf: &mut [u8]) {
    let at = buf.len() - 8;
    let fp = fingerprint_of(&buf[..at]);
    buf[at + 4..].copy_from_slice(&fp.to_be_bytes());
}

/// Flips a bit in the first attribute's value (SOFTWARE, ASCII, stays valid UTF-8), fixing
/// FINGERPRINT: must fail MESSAGE-INTEGRITY.
fn bad_integrity(v: &[u8]) -> Vec<u8> {
    let mut b = v.to_vec();
    b[24] ^= 0x01;
    refingerprint(&mut b);
    b
}

/// Flips a bit in the FINGERPRINT value only: must fail FINGERPRINT.
fn bad_fingerprint(v: &[u8]) -> Vec<u8> {
    let mut b = v.to_vec();
    let last = b.len() - 1;
    b[last] ^= 0x01;
    b
}

/// Checks an encoded request independently of any codec: layout walk, attribute values,
/// MESSAGE-INTEGRITY (fresh HMAC) and FINGERPRINT.
fn check_encoded(name: &str, m: &[u8]) {
    assert_eq!(m.len(), ENCODED_LEN, "{name}: encoded length");
    assert_eq!(&m[..2], &[0x00, 0x01], "{name}: Binding request type");
    assert_eq!(usize::from(u16::from_be_bytes([m[2], m[3]])), m.len() - 20);
    assert_eq!(&m[4..8], &[0x21, 0x12, 0xa4, 0x42], "{name}: cookie");
    assert_eq!(&m[8..20], &TID, "{name}: transaction id");
    let (mut user, mut prio, mut ctl, mut mi_at, mut fp_at) = (None, None, None, None, None);
    let mut off = 20;
    while off + 4 <= m.len() {
        let t = u16::from_be_bytes([m[off], m[off + 1]]);
        let l = usize::from(u16::from_be_bytes([m[off + 2], m[off + 3]]));
        let v = &m[off + 4..off + 4 + l];
        match t {
            0x0006 => user = Some(v.to_vec()),
            0x0024 => prio = Some(v.to_vec()),
            0x802a => ctl = Some(v.to_vec()),
            0x0008 => mi_at = Some(off),
            0x8028 => fp_at = Some(off),
            _ => panic!("{name}: unexpected attribute {t:#06x}"),
        }
        off += 4 + l.div_ceil(4) * 4;
    }
    assert_eq!(off, m.len(), "{name}: attribute walk");
    assert_eq!(
        user.as_deref(),
        Some(USERNAME.as_bytes()),
        "{name}: USERNAME"
    );
    assert_eq!(
        prio.as_deref(),
        Some(&PRIORITY.to_be_bytes()[..]),
        "{name}: PRIORITY"
    );
    assert_eq!(
        ctl.as_deref(),
        Some(&TIE_BREAKER.to_be_bytes()[..]),
        "{name}: ICE-CONTROLLING"
    );
    let mi_at = mi_at.expect("MESSAGE-INTEGRITY present");
    assert_eq!(fp_at, Some(m.len() - 8), "{name}: FINGERPRINT last");
    assert_eq!(
        mi_at,
        m.len() - 32,
        "{name}: MESSAGE-INTEGRITY before FINGERPRINT"
    );
    let mut mac = prekeyed();
    mac.update(&m[..2]);
    mac.update(&((mi_at + 24 - 20) as u16).to_be_bytes());
    mac.update(&m[4..mi_at]);
    assert!(
        mac.verify_slice(&m[mi_at + 4..mi_at + 24]).is_ok(),
        "{name}: MESSAGE-INTEGRITY of encoding"
    );
    assert!(fingerprint_ok(m), "{name}: FINGERPRINT of encoding");
}

/// Asserts that `codec` does all three jobs correctly, and rejects tampering.
pub fn sanity_check(codec: &mut dyn Codec) {
    let name = codec.name();
    assert!(codec.decode_request(&REQUEST), "{name}: accepts 2.1");
    assert!(
        !codec.decode_request(&bad_integrity(&REQUEST)),
        "{name}: checks MI (2.1)"
    );
    assert!(
        !codec.decode_request(&bad_fingerprint(&REQUEST)),
        "{name}: checks FP (2.1)"
    );

    for (v, want) in [
        (&RESPONSE_V4[..], expected_v4()),
        (&RESPONSE_V6[..], expected_v6()),
    ] {
        assert_eq!(
            codec.decode_response(v),
            Some(want),
            "{name}: decodes response"
        );
        assert_eq!(
            codec.decode_response(&bad_integrity(v)),
            None,
            "{name}: checks MI"
        );
        assert_eq!(
            codec.decode_response(&bad_fingerprint(v)),
            None,
            "{name}: checks FP"
        );
    }

    let mut out = [0u8; 256];
    let n = codec.encode_request(&mut out);
    check_encoded(name, &out[..n]);
    // Encoding must not depend on what was in the buffer before.
    let mut dirty = [0xa5u8; 256];
    let n2 = codec.encode_request(&mut dirty);
    assert_eq!(&out[..n], &dirty[..n2], "{name}: encoding is deterministic");
}

/// All peer rows plus the floor, in table order.
pub fn all() -> Vec<Box<dyn Codec>> {
    vec![
        Box::new(StunTypes::new()),
        Box::new(Is::new(true)),
        Box::new(Is::new(false)),
        Box::new(RtcStun::new(false)),
        Box::new(RtcStun::new(true)),
        Box::new(Floor::new()),
    ]
}
