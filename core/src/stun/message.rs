//! The zero-copy message view and the in-place message builder.
//!
//! [`Message::parse`] validates the header and walks every attribute header once, recording where
//! the integrity and fingerprint attributes sit, so later accessors and checks cannot run out of
//! bounds and need no second pass. [`MessageBuilder`] writes straight into the caller's buffer and
//! computes MESSAGE-INTEGRITY(-SHA256) and FINGERPRINT over exactly the bytes RFC 8489 names, with
//! the length field adjusted as §14.5–14.7 say.

use core::net::SocketAddr;

use super::attr::{self, AttrError, AttrType, Attribute, ErrorCode, U16List, padded, types};
use super::integrity::{self, IntegrityError, IntegrityKey};
use super::{
    Class, HEADER_LEN, MAGIC_COOKIE, Method, TransactionId, message_type, split_message_type,
};

/// Why a datagram is not a well-formed STUN message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Shorter than the 20-byte header.
    #[error("datagram of {0} bytes is shorter than a STUN header")]
    TooShort(usize),
    /// The two most significant bits are not zero: not STUN (RFC 7983 demultiplexing).
    #[error("first two bits are not zero")]
    NotStun,
    /// The magic cookie is missing: not RFC 5389/8489 STUN.
    #[error("magic cookie missing")]
    NoMagicCookie,
    /// The length field is not a multiple of four.
    #[error("message length {0} is not a multiple of 4")]
    UnalignedLength(usize),
    /// The length field disagrees with the datagram's size.
    #[error("message length field says {declared} bytes but {actual} follow the header")]
    LengthMismatch {
        /// What the header says.
        declared: usize,
        /// What the datagram holds after the header.
        actual: usize,
    },
    /// An attribute's value runs past the end of the message.
    #[error("attribute {attr:#06x} at offset {offset} runs past the end of the message")]
    TruncatedAttribute {
        /// The attribute type.
        attr: AttrType,
        /// Offset of its header from the start of the message.
        offset: usize,
    },
    /// An attribute follows FINGERPRINT, which must be last (RFC 8489 §14.7).
    #[error("FINGERPRINT is not the last attribute")]
    FingerprintNotLast,
    /// MESSAGE-INTEGRITY or FINGERPRINT with a value of the wrong size.
    #[error("integrity attribute {attr:#06x} has invalid length {len}")]
    BadIntegrityLength {
        /// The attribute type.
        attr: AttrType,
        /// Its value length.
        len: usize,
    },
}

/// Why a message could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The caller's buffer is too small for what was added.
    #[error("buffer too small: need {needed} bytes, have {available}")]
    BufferTooSmall {
        /// Bytes the message would need.
        needed: usize,
        /// Bytes in the buffer.
        available: usize,
    },
    /// An ordinary attribute after MESSAGE-INTEGRITY or FINGERPRINT, which receivers ignore.
    #[error("attribute {0:#06x} added after MESSAGE-INTEGRITY or FINGERPRINT")]
    AfterIntegrity(AttrType),
    /// An attribute value outside the RFC's limits.
    #[error(transparent)]
    Attribute(#[from] AttrError),
}

/// One attribute as it sits in the message: its type and unpadded value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawAttribute<'a> {
    /// The attribute type.
    pub attr: AttrType,
    /// The value without padding.
    pub value: &'a [u8],
    /// Offset of the attribute header from the start of the message.
    pub offset: usize,
}

/// A validated, zero-copy view of one STUN message.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    buf: &'a [u8],
    /// Offset of the first MESSAGE-INTEGRITY header, if any.
    integrity: Option<usize>,
    /// Offset of the first MESSAGE-INTEGRITY-SHA256 header that receivers must honour, if any.
    integrity_sha256: Option<usize>,
    /// Offset of the FINGERPRINT header, if any (always the last attribute).
    fingerprint: Option<usize>,
    /// Ordinary attributes at or after this offset are ignored (they follow an integrity one).
    ignore_from: usize,
    /// Offsets of the first processed occurrence of the hot attributes (see [`hot_slot`]),
    /// 0 when absent: lookups on the per-packet path skip the attribute walk.
    hot: [u32; HOT_TYPES.len()],
}

/// Attributes looked up on every ICE check or STUN response, indexed during `parse`.
const HOT_TYPES: [AttrType; 4] = [
    types::XOR_MAPPED_ADDRESS,
    types::MAPPED_ADDRESS,
    types::USERNAME,
    types::ERROR_CODE,
];

/// The index of a hot attribute type in [`HOT_TYPES`] (a jump table, not a search).
const fn hot_slot(attr: AttrType) -> Option<usize> {
    match attr {
        types::XOR_MAPPED_ADDRESS => Some(0),
        types::MAPPED_ADDRESS => Some(1),
        types::USERNAME => Some(2),
        types::ERROR_CODE => Some(3),
        _ => None,
    }
}

impl<'a> Message<'a> {
    /// Validates `datagram` as exactly one STUN message and returns a view of it.
    ///
    /// Checks the header (leading zero bits, magic cookie, aligned length matching the datagram)
    /// and that every attribute fits; attribute values are decoded lazily.
    pub fn parse(datagram: &'a [u8]) -> Result<Self, DecodeError> {
        let buf = datagram;
        if buf.len() < HEADER_LEN {
            return Err(DecodeError::TooShort(buf.len()));
        }
        if buf[0] & 0xc0 != 0 {
            return Err(DecodeError::NotStun);
        }
        if buf[4..8] != MAGIC_COOKIE.to_be_bytes() {
            return Err(DecodeError::NoMagicCookie);
        }
        let declared = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        if declared % 4 != 0 {
            return Err(DecodeError::UnalignedLength(declared));
        }
        let actual = buf.len() - HEADER_LEN;
        if declared != actual {
            return Err(DecodeError::LengthMismatch { declared, actual });
        }

        let mut msg = Message {
            buf,
            integrity: None,
            integrity_sha256: None,
            fingerprint: None,
            ignore_from: buf.len(),
            hot: [0; HOT_TYPES.len()],
        };
        let mut offset = HEADER_LEN;
        while offset < buf.len() {
            if msg.fingerprint.is_some() {
                return Err(DecodeError::FingerprintNotLast);
            }
            let (attr, value) = read_attribute(buf, offset)?;
            let within_ignored = offset >= msg.ignore_from;
            match attr {
                types::MESSAGE_INTEGRITY if msg.integrity.is_none() && !within_ignored => {
                    check_len(attr, value.len(), |l| l == 20)?;
                    msg.integrity = Some(offset);
                    msg.ignore_from = offset + 4 + 20;
                }
                // Honoured first, or right after MESSAGE-INTEGRITY (§14.5); ignored after itself.
                types::MESSAGE_INTEGRITY_SHA256
                    if msg.integrity_sha256.is_none()
                        && (!within_ignored || msg.integrity.is_some()) =>
                {
                    check_len(attr, value.len(), |l| (16..=32).contains(&l) && l % 4 == 0)?;
                    msg.integrity_sha256 = Some(offset);
                    // Never move the boundary later: attributes between MESSAGE-INTEGRITY and
                    // this one stay ignored (§14.5), only this attribute is let through.
                    msg.ignore_from = msg.ignore_from.min(offset + 4 + value.len());
                }
                types::FINGERPRINT => {
                    check_len(attr, value.len(), |l| l == 4)?;
                    msg.fingerprint = Some(offset);
                }
                _ => {
                    if let Some(slot) = hot_slot(attr) {
                        if msg.hot[slot] == 0 && !within_ignored {
                            // offset < buf.len() <= HEADER_LEN + u16::MAX, so it fits.
                            msg.hot[slot] = offset as u32;
                        }
                    }
                }
            }
            offset += 4 + padded(value.len());
        }
        Ok(msg)
    }

    /// The whole message as received.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// The message class.
    pub fn class(&self) -> Class {
        split_message_type(self.raw_type()).0
    }

    /// The message method.
    pub fn method(&self) -> Method {
        split_message_type(self.raw_type()).1
    }

    /// The transaction id.
    pub fn transaction_id(&self) -> TransactionId {
        let mut id = [0; 12];
        id.copy_from_slice(&self.buf[8..20]);
        TransactionId(id)
    }

    /// The attributes a receiver must process, in order: everything up to the first integrity
    /// attribute, that attribute, and the integrity/fingerprint attributes allowed after it.
    pub fn attributes(&self) -> RawAttributes<'a> {
        RawAttributes {
            msg: *self,
            offset: HEADER_LEN,
        }
    }

    /// The first attribute of type `attr` a receiver must process.
    pub fn find(&self, attr: AttrType) -> Option<RawAttribute<'a>> {
        if let Some(slot) = hot_slot(attr) {
            let offset = self.hot[slot] as usize;
            return (offset != 0).then(|| RawAttribute {
                attr,
                value: self.value_at(offset),
                offset,
            });
        }
        self.attributes().find(|a| a.attr == attr)
    }

    /// The first attribute of type `attr`, decoded.
    pub fn decode(&self, attr: AttrType) -> Option<Result<Attribute<'a>, AttrError>> {
        let tid = self.transaction_id();
        self.find(attr)
            .map(|a| Attribute::decode(a.attr, a.value, &tid))
    }

    /// XOR-MAPPED-ADDRESS, decoded.
    pub fn xor_mapped_address(&self) -> Option<Result<SocketAddr, AttrError>> {
        self.address(types::XOR_MAPPED_ADDRESS)
    }

    /// MAPPED-ADDRESS, decoded (servers that predate RFC 5389 send only this).
    pub fn mapped_address(&self) -> Option<Result<SocketAddr, AttrError>> {
        self.address(types::MAPPED_ADDRESS)
    }

    /// The reflexive address: XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS.
    pub fn reflexive_address(&self) -> Option<Result<SocketAddr, AttrError>> {
        self.xor_mapped_address().or_else(|| self.mapped_address())
    }

    /// ERROR-CODE, decoded.
    pub fn error_code(&self) -> Option<Result<ErrorCode<'a>, AttrError>> {
        self.decode(types::ERROR_CODE).map(|r| match r? {
            Attribute::ErrorCode(e) => Ok(e),
            _ => unreachable_attr(types::ERROR_CODE),
        })
    }

    /// A text attribute (USERNAME, REALM, NONCE, SOFTWARE, ALTERNATE-DOMAIN), decoded.
    pub fn text(&self, attr: AttrType) -> Option<Result<&'a str, AttrError>> {
        self.decode(attr).map(|r| match r? {
            Attribute::Username(s)
            | Attribute::Realm(s)
            | Attribute::Nonce(s)
            | Attribute::Software(s)
            | Attribute::AlternateDomain(s) => Ok(s),
            _ => unreachable_attr(attr),
        })
    }

    /// The first comprehension-required attribute type that `is_known` rejects, if any.
    ///
    /// A server answers such a request with 420 and UNKNOWN-ATTRIBUTES (RFC 8489 §6.3).
    /// Callers pass their own predicate so extensions (TURN) can widen the known set.
    pub fn unknown_comprehension_required(
        &self,
        is_known: impl Fn(AttrType) -> bool + 'a,
    ) -> impl Iterator<Item = AttrType> + 'a {
        self.attributes()
            .map(|a| a.attr)
            .filter(move |t| attr::is_comprehension_required(*t) && !is_known(*t))
    }

    /// Whether the message carries MESSAGE-INTEGRITY or MESSAGE-INTEGRITY-SHA256.
    pub fn has_integrity(&self) -> bool {
        self.integrity.is_some() || self.integrity_sha256.is_some()
    }

    /// Whether the message carries FINGERPRINT.
    pub fn has_fingerprint(&self) -> bool {
        self.fingerprint.is_some()
    }

    /// Verifies the message's integrity with `key`, in constant time.
    ///
    /// MESSAGE-INTEGRITY-SHA256 is checked when present (it is the stronger one), else
    /// MESSAGE-INTEGRITY (RFC 8489 §9.1.3, §9.2.4).
    pub fn verify_integrity(&self, key: &IntegrityKey) -> Result<(), IntegrityError> {
        let (at, sha256) = match (self.integrity_sha256, self.integrity) {
            (Some(at), _) => (at, true),
            (None, Some(at)) => (at, false),
            (None, None) => return Err(IntegrityError::Missing),
        };
        let tag = self.value_at(at);
        let length = self.length_ending_at(at, tag.len());
        let covered: [&[u8]; 3] = [&self.buf[..2], &length, &self.buf[4..at]];
        if sha256 {
            key.verify_sha256(&covered, tag)
        } else {
            key.verify_sha1(&covered, tag)
        }
    }

    /// Verifies FINGERPRINT: present, last, and equal to the CRC-32 of what precedes it.
    pub fn verify_fingerprint(&self) -> Result<(), IntegrityError> {
        let at = self.fingerprint.ok_or(IntegrityError::FingerprintMissing)?;
        let value = self.value_at(at);
        let expected = u32::from_be_bytes([value[0], value[1], value[2], value[3]]);
        // FINGERPRINT is last, so the length field already covers it as §14.7 requires.
        if integrity::fingerprint(&[&self.buf[..at]]) == expected {
            Ok(())
        } else {
            Err(IntegrityError::FingerprintMismatch)
        }
    }

    fn raw_type(&self) -> u16 {
        u16::from_be_bytes([self.buf[0], self.buf[1]]) & 0x3fff
    }

    /// An address attribute decoded directly (the per-response hot path: no `Attribute` enum).
    pub(crate) fn address(&self, attr: AttrType) -> Option<Result<SocketAddr, AttrError>> {
        let raw = self.find(attr)?;
        if attr == types::XOR_MAPPED_ADDRESS {
            let mut mask = [0u8; 16];
            mask.copy_from_slice(&self.buf[4..HEADER_LEN]);
            return Some(attr::decode_xor_address(attr, raw.value, &mask));
        }
        Some(attr::decode_address(attr, raw.value))
    }

    fn value_at(&self, offset: usize) -> &'a [u8] {
        let len = usize::from(u16::from_be_bytes([
            self.buf[offset + 2],
            self.buf[offset + 3],
        ]));
        &self.buf[offset + 4..offset + 4 + len]
    }

    /// The length field an integrity attribute at `offset` with a `tag_len`-byte value is
    /// computed with: the message as if it ended right after that attribute (RFC 8489 §14.5).
    fn length_ending_at(&self, offset: usize, tag_len: usize) -> [u8; 2] {
        // offset + 4 + tag_len <= buf.len() <= HEADER_LEN + u16::MAX, so this fits.
        ((offset + 4 + tag_len - HEADER_LEN) as u16).to_be_bytes()
    }
}

/// Iterator over the attributes of a [`Message`] that a receiver processes.
#[derive(Clone, Debug)]
pub struct RawAttributes<'a> {
    msg: Message<'a>,
    offset: usize,
}

impl<'a> Iterator for RawAttributes<'a> {
    type Item = RawAttribute<'a>;

    fn next(&mut self) -> Option<RawAttribute<'a>> {
        let buf = self.msg.buf;
        while self.offset + 4 <= buf.len() {
            let offset = self.offset;
            // Parse validated every header, so this cannot fail; stop rather than panic anyway.
            let (attr, value) = read_attribute(buf, offset).ok()?;
            self.offset += 4 + padded(value.len());
            let processed = offset < self.msg.ignore_from
                || Some(offset) == self.msg.integrity_sha256
                || Some(offset) == self.msg.fingerprint;
            if processed {
                return Some(RawAttribute {
                    attr,
                    value,
                    offset,
                });
            }
        }
        None
    }
}

/// Writes a STUN message into a caller-supplied buffer, attribute by attribute.
///
/// ```
/// use holepunch_core::stun::{Attribute, Class, IntegrityKey, Message, MessageBuilder, Method, TransactionId};
/// let key = IntegrityKey::short_term(b"pass");
/// let mut buf = [0u8; 128];
/// let mut b = MessageBuilder::new(&mut buf, Class::Request, Method::BINDING, TransactionId([7; 12]))?;
/// b.add(&Attribute::Username("a:b"))?;
/// b.add_message_integrity(&key)?;
/// b.add_fingerprint()?;
/// let len = b.finish();
/// let msg = Message::parse(&buf[..len])?;
/// msg.verify_integrity(&key)?;
/// msg.verify_fingerprint()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct MessageBuilder<'b> {
    buf: &'b mut [u8],
    len: usize,
    tid: TransactionId,
    pad_byte: u8,
    sealed: Sealed,
}

/// How far a builder is sealed by integrity attributes: what may still be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Sealed {
    Open,
    Integrity,
    IntegritySha256,
    Fingerprint,
}

impl<'b> MessageBuilder<'b> {
    /// Starts a message with the given class, method and transaction id in `buf`.
    pub fn new(
        buf: &'b mut [u8],
        class: Class,
        method: Method,
        tid: TransactionId,
    ) -> Result<Self, EncodeError> {
        if buf.len() < HEADER_LEN {
            return Err(EncodeError::BufferTooSmall {
                needed: HEADER_LEN,
                available: buf.len(),
            });
        }
        buf[..2].copy_from_slice(&message_type(class, method).to_be_bytes());
        buf[2..4].fill(0);
        buf[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        buf[8..20].copy_from_slice(&tid.0);
        Ok(MessageBuilder {
            buf,
            len: HEADER_LEN,
            tid,
            pad_byte: 0,
            sealed: Sealed::Open,
        })
    }

    /// Sets the byte used to pad attribute values to four bytes (default 0; RFC 8489 says
    /// receivers ignore it, and RFC 5769's vectors use 0x20).
    pub fn padding_byte(&mut self, byte: u8) -> &mut Self {
        self.pad_byte = byte;
        self
    }

    /// The transaction id this message carries.
    pub fn transaction_id(&self) -> TransactionId {
        self.tid
    }

    /// Appends an attribute.
    ///
    /// Integrity and fingerprint values given here are copied verbatim (for re-encoding what was
    /// received); use [`add_message_integrity`](Self::add_message_integrity) and friends to
    /// compute them.
    #[inline]
    pub fn add(&mut self, attribute: &Attribute<'_>) -> Result<(), EncodeError> {
        let attr = attribute.attr_type();
        let after = self.admit(attr)?;
        let value_len = attribute.value_len();
        attribute.validate_len(attr, value_len)?;
        let tid = self.tid;
        let value = self.reserve(attr, value_len)?;
        attribute.encode_value(value, &tid);
        self.sealed = after;
        Ok(())
    }

    /// Appends attributes already in wire form (headers, values, padding), such as a run copied
    /// from another message. They are checked to be well-formed and to include no integrity or
    /// fingerprint attribute.
    pub fn add_raw_attributes(&mut self, raw: &[u8]) -> Result<(), EncodeError> {
        let mut at = 0;
        while at < raw.len() {
            let (attr, value) = read_attribute(raw, at).map_err(|_| {
                EncodeError::Attribute(AttrError::BadLength {
                    attr: 0,
                    len: raw.len(),
                })
            })?;
            if self.admit(attr)? != Sealed::Open {
                return Err(EncodeError::AfterIntegrity(attr));
            }
            at += 4 + padded(value.len());
        }
        let start = self.len;
        let end = start + raw.len();
        if end > self.buf.len() {
            return Err(EncodeError::BufferTooSmall {
                needed: end,
                available: self.buf.len(),
            });
        }
        let msg_len = u16::try_from(end - HEADER_LEN).map_err(|_| {
            EncodeError::Attribute(AttrError::BadLength {
                attr: 0,
                len: raw.len(),
            })
        })?;
        self.buf[start..end].copy_from_slice(raw);
        self.buf[2..4].copy_from_slice(&msg_len.to_be_bytes());
        self.len = end;
        Ok(())
    }

    /// Appends a 420 response's UNKNOWN-ATTRIBUTES list.
    pub fn add_unknown_attributes(&mut self, list: &[AttrType]) -> Result<(), EncodeError> {
        self.add(&Attribute::UnknownAttributes(U16List::Native(list)))
    }

    /// Appends `len` bytes of PADDING (RFC 5780 §7.6), filled with zeros.
    pub fn add_padding(&mut self, len: usize) -> Result<(), EncodeError> {
        self.admit(types::PADDING)?;
        self.reserve(types::PADDING, len)?.fill(0);
        Ok(())
    }

    /// Appends MESSAGE-INTEGRITY (HMAC-SHA1) over everything written so far.
    pub fn add_message_integrity(&mut self, key: &IntegrityKey) -> Result<(), EncodeError> {
        self.add_computed(types::MESSAGE_INTEGRITY, |covered| key.sha1(&[covered]))
    }

    /// Appends MESSAGE-INTEGRITY-SHA256 (full 32 bytes) over everything written so far,
    /// which may include a MESSAGE-INTEGRITY.
    pub fn add_message_integrity_sha256(&mut self, key: &IntegrityKey) -> Result<(), EncodeError> {
        self.add_computed(types::MESSAGE_INTEGRITY_SHA256, |covered| {
            key.sha256(&[covered])
        })
    }

    /// Appends FINGERPRINT; nothing can be added after it.
    pub fn add_fingerprint(&mut self) -> Result<(), EncodeError> {
        self.add_computed(types::FINGERPRINT, |covered| {
            integrity::fingerprint(&[covered]).to_be_bytes()
        })
    }

    /// What the message is sealed by once `attr` is appended, or why `attr` may not come next:
    /// only MESSAGE-INTEGRITY-SHA256 and FINGERPRINT follow MESSAGE-INTEGRITY, only FINGERPRINT
    /// follows MESSAGE-INTEGRITY-SHA256, and nothing follows FINGERPRINT (RFC 8489 §14.5-14.7).
    #[inline]
    fn admit(&self, attr: AttrType) -> Result<Sealed, EncodeError> {
        let after = match attr {
            types::MESSAGE_INTEGRITY => Sealed::Integrity,
            types::MESSAGE_INTEGRITY_SHA256 => Sealed::IntegritySha256,
            types::FINGERPRINT => Sealed::Fingerprint,
            _ => Sealed::Open,
        };
        if self.sealed > after || (self.sealed == after && after != Sealed::Open) {
            return Err(EncodeError::AfterIntegrity(attr));
        }
        Ok(after)
    }

    /// Appends `attr` with the `N`-byte value `compute` derives from everything written before
    /// it (the header's length already counting this attribute), then seals the message.
    #[inline]
    fn add_computed<const N: usize>(
        &mut self,
        attr: AttrType,
        compute: impl FnOnce(&[u8]) -> [u8; N],
    ) -> Result<(), EncodeError> {
        let after = self.admit(attr)?;
        let start = self.len;
        self.reserve(attr, N)?;
        let value = compute(&self.buf[..start]);
        self.buf[start + 4..start + 4 + N].copy_from_slice(&value);
        self.sealed = after;
        Ok(())
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether only the header has been written.
    pub fn is_empty(&self) -> bool {
        self.len == HEADER_LEN
    }

    /// Finishes the message and returns its length: `buf[..len]` is the datagram.
    pub fn finish(self) -> usize {
        self.len
    }

    /// Appends an attribute header for a `value_len`-byte value plus its padding, updates the
    /// header's length field (so integrity computed next covers this attribute as the RFC
    /// requires), and returns the value's bytes for the caller to fill.
    #[inline]
    fn reserve(&mut self, attr: AttrType, value_len: usize) -> Result<&mut [u8], EncodeError> {
        let start = self.len;
        let end = start + 4 + padded(value_len);
        let too_small = EncodeError::BufferTooSmall {
            needed: end,
            available: self.buf.len(),
        };
        if end > self.buf.len() {
            return Err(too_small);
        }
        let (Ok(value_len16), Ok(msg_len16)) =
            (u16::try_from(value_len), u16::try_from(end - HEADER_LEN))
        else {
            return Err(EncodeError::Attribute(AttrError::BadLength {
                attr,
                len: value_len,
            }));
        };
        self.buf[start..start + 2].copy_from_slice(&attr.to_be_bytes());
        self.buf[start + 2..start + 4].copy_from_slice(&value_len16.to_be_bytes());
        if value_len % 4 != 0 {
            // Pre-fill the last word with padding; the value overwrites its front. One 4-byte
            // store instead of a memset call for 1..=3 bytes.
            self.buf[end - 4..end].copy_from_slice(&[self.pad_byte; 4]);
        }
        self.buf[2..4].copy_from_slice(&msg_len16.to_be_bytes());
        self.len = end;
        Ok(&mut self.buf[start + 4..start + 4 + value_len])
    }
}

/// The attribute whose header starts at `offset`: its type and value (without padding), or an
/// error if the header, value or padding runs past `buf`.
pub(crate) fn read_attribute(buf: &[u8], offset: usize) -> Result<(AttrType, &[u8]), DecodeError> {
    let header = buf
        .get(offset..offset + 4)
        .ok_or(DecodeError::TruncatedAttribute { attr: 0, offset })?;
    let attr = u16::from_be_bytes([header[0], header[1]]);
    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    // The value and its padding must both fit (the length field is 4-aligned, so padding too).
    if offset + 4 + padded(len) > buf.len() {
        return Err(DecodeError::TruncatedAttribute { attr, offset });
    }
    Ok((attr, &buf[offset + 4..offset + 4 + len]))
}

fn check_len(attr: AttrType, len: usize, ok: impl Fn(usize) -> bool) -> Result<(), DecodeError> {
    if ok(len) {
        Ok(())
    } else {
        Err(DecodeError::BadIntegrityLength { attr, len })
    }
}

fn unreachable_attr<T>(attr: AttrType) -> Result<T, AttrError> {
    // Attribute::decode maps each type to exactly one variant; reaching this means a bug, which
    // we report as a decode error rather than a panic on network data.
    Err(AttrError::BadLength { attr, len: 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_slots_match_the_hot_type_table() {
        for (i, t) in HOT_TYPES.iter().enumerate() {
            assert_eq!(hot_slot(*t), Some(i));
        }
        assert_eq!(hot_slot(types::SOFTWARE), None);
    }
}
