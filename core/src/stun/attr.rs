//! STUN attributes: types, typed borrowed views, and their value encodings.
//!
//! Decoding never copies: strings and byte strings borrow from the datagram. Every length is
//! checked against the RFC before a value is returned, so a decoded [`Attribute`] can be encoded
//! back byte-for-byte (padding aside).

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{MAGIC_COOKIE, TransactionId};

/// A STUN attribute type number.
pub type AttrType = u16;

/// Attribute type numbers (IANA "STUN Attributes" registry).
pub mod types;
mod values;

use values::split_password_algorithm;
pub use values::{ErrorCode, PasswordAlgorithm, PasswordAlgorithms, U16List};

/// Whether a type is comprehension-required (0x0000–0x7FFF): an agent that does not know it
/// must reject the message (RFC 8489 §14).
pub const fn is_comprehension_required(t: AttrType) -> bool {
    t < 0x8000
}

/// Whether this crate decodes the type into a typed [`Attribute`] variant.
pub const fn is_known(t: AttrType) -> bool {
    use types::*;
    matches!(
        t,
        MAPPED_ADDRESS
            | CHANGE_REQUEST
            | SOURCE_ADDRESS
            | CHANGED_ADDRESS
            | USERNAME
            | MESSAGE_INTEGRITY
            | ERROR_CODE
            | UNKNOWN_ATTRIBUTES
            | REALM
            | NONCE
            | MESSAGE_INTEGRITY_SHA256
            | PASSWORD_ALGORITHM
            | USERHASH
            | XOR_MAPPED_ADDRESS
            | PADDING
            | RESPONSE_PORT
            | PRIORITY
            | USE_CANDIDATE
            | PASSWORD_ALGORITHMS
            | ALTERNATE_DOMAIN
            | SOFTWARE
            | ALTERNATE_SERVER
            | FINGERPRINT
            | ICE_CONTROLLED
            | ICE_CONTROLLING
            | RESPONSE_ORIGIN
            | OTHER_ADDRESS
    )
}

/// Longest USERNAME value: "fewer than 509 bytes" (RFC 8489 §14.3).
pub const MAX_USERNAME_LEN: usize = 508;
/// Longest REALM, NONCE, SOFTWARE and reason phrase: 128 characters, at most 763 bytes.
pub const MAX_TEXT_LEN: usize = 763;
/// Longest ALTERNATE-DOMAIN: a DNS name (RFC 8489 §14.16, 255 bytes).
pub const MAX_DOMAIN_LEN: usize = 255;

/// Why an attribute value could not be decoded or encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttrError {
    /// The value's length is not one the attribute allows.
    #[error("attribute {attr:#06x} has invalid length {len}")]
    BadLength {
        /// The attribute type.
        attr: AttrType,
        /// The offending value length.
        len: usize,
    },
    /// An address family other than IPv4 (0x01) or IPv6 (0x02).
    #[error("attribute {attr:#06x} has unknown address family {family:#04x}")]
    BadFamily {
        /// The attribute type.
        attr: AttrType,
        /// The family byte found.
        family: u8,
    },
    /// A text attribute is not UTF-8.
    #[error("attribute {attr:#06x} is not valid UTF-8")]
    InvalidUtf8 {
        /// The attribute type.
        attr: AttrType,
    },
    /// An ERROR-CODE whose class is outside 3..=6 or whose number is 100 or more.
    #[error("ERROR-CODE {class}{number:02} is out of range")]
    BadErrorCode {
        /// The hundreds digit.
        class: u8,
        /// The remainder.
        number: u8,
    },
}

/// A decoded STUN attribute, borrowing from the datagram it came from.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Attribute<'a> {
    /// MAPPED-ADDRESS: the reflexive address, unobfuscated (RFC 3489 servers).
    MappedAddress(SocketAddr),
    /// XOR-MAPPED-ADDRESS: the reflexive address, XORed with cookie and transaction id.
    XorMappedAddress(SocketAddr),
    /// USERNAME.
    Username(&'a str),
    /// USERHASH: SHA-256 of username ":" realm.
    UserHash(&'a [u8; 32]),
    /// MESSAGE-INTEGRITY: HMAC-SHA1 over the message before it.
    MessageIntegrity(&'a [u8; 20]),
    /// MESSAGE-INTEGRITY-SHA256: HMAC-SHA256, possibly truncated to 16..=32 bytes.
    MessageIntegritySha256(&'a [u8]),
    /// FINGERPRINT: CRC-32 of the message before it, XOR 0x5354554E.
    Fingerprint(u32),
    /// ERROR-CODE.
    ErrorCode(ErrorCode<'a>),
    /// REALM.
    Realm(&'a str),
    /// NONCE.
    Nonce(&'a str),
    /// PASSWORD-ALGORITHMS.
    PasswordAlgorithms(PasswordAlgorithms<'a>),
    /// PASSWORD-ALGORITHM.
    PasswordAlgorithm(PasswordAlgorithm<'a>),
    /// UNKNOWN-ATTRIBUTES: the comprehension-required types a request carried that were not known.
    UnknownAttributes(U16List<'a>),
    /// SOFTWARE.
    Software(&'a str),
    /// ALTERNATE-SERVER.
    AlternateServer(SocketAddr),
    /// ALTERNATE-DOMAIN.
    AlternateDomain(&'a str),
    /// CHANGE-REQUEST (RFC 5780): ask the server to answer from another IP and/or port.
    ChangeRequest {
        /// Answer from the alternate IP.
        change_ip: bool,
        /// Answer from the alternate port.
        change_port: bool,
    },
    /// RESPONSE-ORIGIN (RFC 5780): where the response was sent from.
    ResponseOrigin(SocketAddr),
    /// SOURCE-ADDRESS (RFC 3489): where a classic response was sent from.
    SourceAddress(SocketAddr),
    /// CHANGED-ADDRESS (RFC 3489): the server's other IP and port, for classic clients.
    ChangedAddress(SocketAddr),
    /// OTHER-ADDRESS (RFC 5780): the server's alternate IP and port.
    OtherAddress(SocketAddr),
    /// RESPONSE-PORT (RFC 5780): send the response to this port instead.
    ResponsePort(u16),
    /// PADDING (RFC 5780): bytes that only make the message bigger.
    Padding(&'a [u8]),
    /// PRIORITY (ICE): the priority a peer-reflexive candidate would have.
    Priority(u32),
    /// USE-CANDIDATE (ICE): nominate this pair.
    UseCandidate,
    /// ICE-CONTROLLED with the agent's tie-breaker.
    IceControlled(u64),
    /// ICE-CONTROLLING with the agent's tie-breaker.
    IceControlling(u64),
    /// Any other attribute, kept raw so extensions (TURN) can interpret it.
    Other {
        /// The attribute type.
        attr: AttrType,
        /// The unpadded value.
        value: &'a [u8],
    },
}

impl<'a> Attribute<'a> {
    /// Decodes the value of an attribute of type `attr`. `tid` is needed by the XOR-ed addresses.
    pub fn decode(attr: AttrType, value: &'a [u8], tid: &TransactionId) -> Result<Self, AttrError> {
        use types::*;
        let bad_len = || AttrError::BadLength {
            attr,
            len: value.len(),
        };
        Ok(match attr {
            MAPPED_ADDRESS => Attribute::MappedAddress(decode_address(attr, value)?),
            XOR_MAPPED_ADDRESS => {
                let mut mask = [0u8; 16];
                mask[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
                mask[4..].copy_from_slice(&tid.0);
                Attribute::XorMappedAddress(decode_xor_address(attr, value, &mask)?)
            }
            ALTERNATE_SERVER => Attribute::AlternateServer(decode_address(attr, value)?),
            RESPONSE_ORIGIN => Attribute::ResponseOrigin(decode_address(attr, value)?),
            OTHER_ADDRESS => Attribute::OtherAddress(decode_address(attr, value)?),
            SOURCE_ADDRESS => Attribute::SourceAddress(decode_address(attr, value)?),
            CHANGED_ADDRESS => Attribute::ChangedAddress(decode_address(attr, value)?),
            USERNAME => Attribute::Username(decode_text(attr, value, MAX_USERNAME_LEN)?),
            REALM => Attribute::Realm(decode_text(attr, value, MAX_TEXT_LEN)?),
            NONCE => Attribute::Nonce(decode_text(attr, value, MAX_TEXT_LEN)?),
            SOFTWARE => Attribute::Software(decode_text(attr, value, MAX_TEXT_LEN)?),
            ALTERNATE_DOMAIN => {
                Attribute::AlternateDomain(decode_text(attr, value, MAX_DOMAIN_LEN)?)
            }
            USERHASH => Attribute::UserHash(value.try_into().map_err(|_| bad_len())?),
            MESSAGE_INTEGRITY => {
                Attribute::MessageIntegrity(value.try_into().map_err(|_| bad_len())?)
            }
            MESSAGE_INTEGRITY_SHA256 => {
                if !(16..=32).contains(&value.len()) || value.len() % 4 != 0 {
                    return Err(bad_len());
                }
                Attribute::MessageIntegritySha256(value)
            }
            FINGERPRINT => Attribute::Fingerprint(u32::from_be_bytes(array(value, bad_len)?)),
            PRIORITY => Attribute::Priority(u32::from_be_bytes(array(value, bad_len)?)),
            ICE_CONTROLLED => Attribute::IceControlled(u64::from_be_bytes(array(value, bad_len)?)),
            ICE_CONTROLLING => {
                Attribute::IceControlling(u64::from_be_bytes(array(value, bad_len)?))
            }
            USE_CANDIDATE => {
                if !value.is_empty() {
                    return Err(bad_len());
                }
                Attribute::UseCandidate
            }
            ERROR_CODE => {
                if value.len() < 4 || value.len() > 4 + MAX_TEXT_LEN {
                    return Err(bad_len());
                }
                let class = value[2] & 0x07;
                let number = value[3];
                if !(3..=6).contains(&class) || number >= 100 {
                    return Err(AttrError::BadErrorCode { class, number });
                }
                let reason = core::str::from_utf8(&value[4..])
                    .map_err(|_| AttrError::InvalidUtf8 { attr })?;
                Attribute::ErrorCode(ErrorCode {
                    code: u16::from(class) * 100 + u16::from(number),
                    reason,
                })
            }
            UNKNOWN_ATTRIBUTES => {
                if value.len() % 2 != 0 {
                    return Err(bad_len());
                }
                Attribute::UnknownAttributes(U16List::Wire(value))
            }
            PASSWORD_ALGORITHMS => {
                let mut rest = value;
                while !rest.is_empty() {
                    rest = split_password_algorithm(rest).ok_or_else(bad_len)?.1;
                }
                Attribute::PasswordAlgorithms(PasswordAlgorithms::Wire(value))
            }
            PASSWORD_ALGORITHM => {
                // A single entry; its parameter padding lies outside the value, so the
                // declared parameter length must match the value exactly.
                let header = value.get(..4).ok_or_else(bad_len)?;
                let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
                if value.len() != 4 + len {
                    return Err(bad_len());
                }
                Attribute::PasswordAlgorithm(PasswordAlgorithm {
                    algorithm: u16::from_be_bytes([header[0], header[1]]),
                    params: &value[4..],
                })
            }
            CHANGE_REQUEST => {
                let flags = u32::from_be_bytes(array(value, bad_len)?);
                Attribute::ChangeRequest {
                    change_ip: flags & 0x4 != 0,
                    change_port: flags & 0x2 != 0,
                }
            }
            RESPONSE_PORT => {
                // A 16-bit port followed by two bytes of padding (RFC 5780 §7.5).
                let v: [u8; 4] = array(value, bad_len)?;
                Attribute::ResponsePort(u16::from_be_bytes([v[0], v[1]]))
            }
            PADDING => Attribute::Padding(value),
            _ => Attribute::Other { attr, value },
        })
    }

    /// The attribute's type number.
    #[inline]
    pub fn attr_type(&self) -> AttrType {
        use types::*;
        match self {
            Attribute::MappedAddress(_) => MAPPED_ADDRESS,
            Attribute::XorMappedAddress(_) => XOR_MAPPED_ADDRESS,
            Attribute::Username(_) => USERNAME,
            Attribute::UserHash(_) => USERHASH,
            Attribute::MessageIntegrity(_) => MESSAGE_INTEGRITY,
            Attribute::MessageIntegritySha256(_) => MESSAGE_INTEGRITY_SHA256,
            Attribute::Fingerprint(_) => FINGERPRINT,
            Attribute::ErrorCode(_) => ERROR_CODE,
            Attribute::Realm(_) => REALM,
            Attribute::Nonce(_) => NONCE,
            Attribute::PasswordAlgorithms(_) => PASSWORD_ALGORITHMS,
            Attribute::PasswordAlgorithm(_) => PASSWORD_ALGORITHM,
            Attribute::UnknownAttributes(_) => UNKNOWN_ATTRIBUTES,
            Attribute::Software(_) => SOFTWARE,
            Attribute::AlternateServer(_) => ALTERNATE_SERVER,
            Attribute::AlternateDomain(_) => ALTERNATE_DOMAIN,
            Attribute::ChangeRequest { .. } => CHANGE_REQUEST,
            Attribute::ResponseOrigin(_) => RESPONSE_ORIGIN,
            Attribute::OtherAddress(_) => OTHER_ADDRESS,
            Attribute::SourceAddress(_) => SOURCE_ADDRESS,
            Attribute::ChangedAddress(_) => CHANGED_ADDRESS,
            Attribute::ResponsePort(_) => RESPONSE_PORT,
            Attribute::Padding(_) => PADDING,
            Attribute::Priority(_) => PRIORITY,
            Attribute::UseCandidate => USE_CANDIDATE,
            Attribute::IceControlled(_) => ICE_CONTROLLED,
            Attribute::IceControlling(_) => ICE_CONTROLLING,
            Attribute::Other { attr, .. } => *attr,
        }
    }

    /// Length of the encoded value, without the header and padding.
    #[inline]
    pub fn value_len(&self) -> usize {
        match self {
            Attribute::MappedAddress(a)
            | Attribute::XorMappedAddress(a)
            | Attribute::AlternateServer(a)
            | Attribute::ResponseOrigin(a)
            | Attribute::OtherAddress(a)
            | Attribute::SourceAddress(a)
            | Attribute::ChangedAddress(a) => address_len(a),
            Attribute::Username(s)
            | Attribute::Realm(s)
            | Attribute::Nonce(s)
            | Attribute::Software(s)
            | Attribute::AlternateDomain(s) => s.len(),
            Attribute::UserHash(_) => 32,
            Attribute::MessageIntegrity(_) => 20,
            Attribute::MessageIntegritySha256(v) => v.len(),
            Attribute::Fingerprint(_)
            | Attribute::Priority(_)
            | Attribute::ChangeRequest { .. }
            | Attribute::ResponsePort(_) => 4,
            Attribute::ErrorCode(e) => 4 + e.reason.len(),
            Attribute::PasswordAlgorithms(p) => p.wire_len(),
            Attribute::PasswordAlgorithm(p) => 4 + p.params.len(),
            Attribute::UnknownAttributes(l) => l.wire_len(),
            Attribute::Padding(v) | Attribute::Other { value: v, .. } => v.len(),
            Attribute::UseCandidate => 0,
            Attribute::IceControlled(_) | Attribute::IceControlling(_) => 8,
        }
    }

    /// Checks the limits the RFC puts on a value before it is written.
    #[inline]
    pub fn validate(&self) -> Result<(), AttrError> {
        self.validate_len(self.attr_type(), self.value_len())
    }

    /// [`validate`](Self::validate) with the type and value length already at hand.
    #[inline]
    pub(crate) fn validate_len(&self, attr: AttrType, value_len: usize) -> Result<(), AttrError> {
        let too_long = |len: usize, max: usize| {
            if len > max {
                Err(AttrError::BadLength { attr, len })
            } else {
                Ok(())
            }
        };
        match self {
            Attribute::Username(s) => too_long(s.len(), MAX_USERNAME_LEN),
            Attribute::Realm(s) | Attribute::Nonce(s) | Attribute::Software(s) => {
                too_long(s.len(), MAX_TEXT_LEN)
            }
            Attribute::AlternateDomain(s) => too_long(s.len(), MAX_DOMAIN_LEN),
            Attribute::ErrorCode(e) => {
                let (class, number) = (e.code / 100, e.code % 100);
                if !(3..=6).contains(&class) {
                    return Err(AttrError::BadErrorCode {
                        class: class as u8,
                        number: number as u8,
                    });
                }
                too_long(e.reason.len(), MAX_TEXT_LEN)
            }
            Attribute::MessageIntegritySha256(v)
                if !(16..=32).contains(&v.len()) || v.len() % 4 != 0 =>
            {
                Err(AttrError::BadLength { attr, len: v.len() })
            }
            Attribute::PasswordAlgorithm(p) => too_long(p.params.len(), u16::MAX as usize),
            Attribute::PasswordAlgorithms(PasswordAlgorithms::Native(list)) => list
                .iter()
                .try_for_each(|p| too_long(p.params.len(), u16::MAX as usize)),
            _ => too_long(value_len, u16::MAX as usize - 3),
        }
    }

    /// Writes the value (no header, no padding) into `out`, which is exactly
    /// [`value_len`](Self::value_len) bytes.
    #[inline]
    pub(crate) fn encode_value(&self, out: &mut [u8], tid: &TransactionId) {
        match self {
            Attribute::MappedAddress(a)
            | Attribute::AlternateServer(a)
            | Attribute::ResponseOrigin(a)
            | Attribute::OtherAddress(a)
            | Attribute::SourceAddress(a)
            | Attribute::ChangedAddress(a) => encode_address(a, out),
            Attribute::XorMappedAddress(a) => encode_address(&xor_address(*a, tid), out),
            Attribute::Username(s)
            | Attribute::Realm(s)
            | Attribute::Nonce(s)
            | Attribute::Software(s)
            | Attribute::AlternateDomain(s) => out.copy_from_slice(s.as_bytes()),
            Attribute::UserHash(h) => out.copy_from_slice(&h[..]),
            Attribute::MessageIntegrity(h) => out.copy_from_slice(&h[..]),
            Attribute::MessageIntegritySha256(v)
            | Attribute::Padding(v)
            | Attribute::Other { value: v, .. } => out.copy_from_slice(v),
            Attribute::Fingerprint(v) | Attribute::Priority(v) => {
                out.copy_from_slice(&v.to_be_bytes())
            }
            Attribute::IceControlled(v) | Attribute::IceControlling(v) => {
                out.copy_from_slice(&v.to_be_bytes())
            }
            Attribute::ErrorCode(e) => {
                out[..2].fill(0);
                out[2] = (e.code / 100) as u8;
                out[3] = (e.code % 100) as u8;
                out[4..].copy_from_slice(e.reason.as_bytes());
            }
            Attribute::UnknownAttributes(list) => {
                for (chunk, v) in out.chunks_exact_mut(2).zip(list.iter()) {
                    chunk.copy_from_slice(&v.to_be_bytes());
                }
            }
            Attribute::PasswordAlgorithms(list) => {
                let mut at = 0;
                for p in list.iter() {
                    let n = p.wire_len();
                    encode_password_algorithm(&p, &mut out[at..at + n]);
                    at += n;
                }
            }
            Attribute::PasswordAlgorithm(p) => encode_password_algorithm(p, out),
            Attribute::ChangeRequest {
                change_ip,
                change_port,
            } => {
                let flags = (u32::from(*change_ip) << 2) | (u32::from(*change_port) << 1);
                out.copy_from_slice(&flags.to_be_bytes());
            }
            Attribute::ResponsePort(p) => {
                out[..2].copy_from_slice(&p.to_be_bytes());
                out[2..].fill(0);
            }
            Attribute::UseCandidate => {}
        }
    }
}

/// Rounds a length up to the next multiple of four (attribute padding).
#[inline]
pub(crate) const fn padded(len: usize) -> usize {
    (len + 3) & !3
}

fn array<const N: usize>(
    value: &[u8],
    bad_len: impl Fn() -> AttrError,
) -> Result<[u8; N], AttrError> {
    value.try_into().map_err(|_| bad_len())
}

fn decode_text(attr: AttrType, value: &[u8], max: usize) -> Result<&str, AttrError> {
    if value.len() > max {
        return Err(AttrError::BadLength {
            attr,
            len: value.len(),
        });
    }
    core::str::from_utf8(value).map_err(|_| AttrError::InvalidUtf8 { attr })
}

pub(crate) fn decode_address(attr: AttrType, v: &[u8]) -> Result<SocketAddr, AttrError> {
    let bad_len = AttrError::BadLength { attr, len: v.len() };
    let family = *v.get(1).ok_or(bad_len)?;
    let port = u16::from_be_bytes([
        v.get(2).copied().ok_or(bad_len)?,
        v.get(3).copied().ok_or(bad_len)?,
    ]);
    let ip = match family {
        0x01 => {
            let o: [u8; 4] = v[4..].try_into().map_err(|_| bad_len)?;
            IpAddr::V4(Ipv4Addr::from(o))
        }
        0x02 => {
            let o: [u8; 16] = v[4..].try_into().map_err(|_| bad_len)?;
            IpAddr::V6(Ipv6Addr::from(o))
        }
        family => return Err(AttrError::BadFamily { attr, family }),
    };
    Ok(SocketAddr::new(ip, port))
}

/// XOR-MAPPED-ADDRESS from its value and the XOR mask, the message's bytes 4..20 (magic cookie
/// and transaction id), with the same checks as [`decode_address`]: the only decoder of it.
#[inline]
pub(crate) fn decode_xor_address(
    attr: AttrType,
    v: &[u8],
    mask: &[u8; 16],
) -> Result<SocketAddr, AttrError> {
    let bad_len = AttrError::BadLength { attr, len: v.len() };
    let port = |v: &[u8]| u16::from_be_bytes([v[2] ^ mask[0], v[3] ^ mask[1]]);
    if v.len() < 4 {
        return Err(bad_len);
    }
    match (v[1], v.len()) {
        (0x01, 8) => {
            let ip = u32::from_be_bytes([v[4], v[5], v[6], v[7]])
                ^ u32::from_be_bytes([mask[0], mask[1], mask[2], mask[3]]);
            Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port(v)))
        }
        (0x02, 20) => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&v[4..20]);
            let ip = u128::from_be_bytes(o) ^ u128::from_be_bytes(*mask);
            Ok(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port(v)))
        }
        (0x01 | 0x02, _) => Err(bad_len),
        (family, _) => Err(AttrError::BadFamily { attr, family }),
    }
}

fn address_len(a: &SocketAddr) -> usize {
    if a.is_ipv4() { 8 } else { 20 }
}

#[inline]
fn encode_address(a: &SocketAddr, out: &mut [u8]) {
    out[0] = 0;
    out[2..4].copy_from_slice(&a.port().to_be_bytes());
    match a.ip() {
        IpAddr::V4(ip) => {
            out[1] = 0x01;
            out[4..8].copy_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out[1] = 0x02;
            out[4..20].copy_from_slice(&ip.octets());
        }
    }
}

/// XORs an address with the magic cookie (and, for IPv6, the transaction id) for encoding.
#[inline]
pub(crate) fn xor_address(a: SocketAddr, tid: &TransactionId) -> SocketAddr {
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let port = a.port() ^ (MAGIC_COOKIE >> 16) as u16;
    let ip = match a.ip() {
        IpAddr::V4(ip) => {
            let o = ip.octets();
            IpAddr::V4(Ipv4Addr::from(core::array::from_fn::<u8, 4, _>(|i| {
                o[i] ^ cookie[i]
            })))
        }
        IpAddr::V6(ip) => {
            let o = ip.octets();
            let mask = |i: usize| if i < 4 { cookie[i] } else { tid.0[i - 4] };
            IpAddr::V6(Ipv6Addr::from(core::array::from_fn::<u8, 16, _>(|i| {
                o[i] ^ mask(i)
            })))
        }
    };
    SocketAddr::new(ip, port)
}

fn encode_password_algorithm(p: &PasswordAlgorithm<'_>, out: &mut [u8]) {
    out[..2].copy_from_slice(&p.algorithm.to_be_bytes());
    out[2..4].copy_from_slice(&(p.params.len() as u16).to_be_bytes());
    out[4..4 + p.params.len()].copy_from_slice(p.params);
    out[4 + p.params.len()..].fill(0);
}
