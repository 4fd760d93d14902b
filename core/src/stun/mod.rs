//! STUN (RFC 8489) with RFC 5780 behaviour discovery and the ICE attributes (RFC 8445).
//!
//! - [`Message`] is a zero-copy, validated view over a received datagram; [`MessageBuilder`]
//!   writes a message into a caller's buffer. Neither allocates.
//! - [`Attribute`] is every attribute this crate understands, decoded as borrowed views; anything
//!   else stays available as [`Attribute::Other`] so TURN and future extensions can add theirs.
//! - [`IntegrityKey`] holds pre-keyed HMAC states for MESSAGE-INTEGRITY(-SHA256), derived once per
//!   credential (short-term, or long-term with MD5/SHA-256).
//! - [`client`] runs transactions with RFC 8489 retransmission and the long-term credential flow;
//!   [`server`] is a stateless Binding responder with RFC 5780 support.

pub mod attr;
pub mod client;
pub mod integrity;
pub mod message;
pub mod server;
pub mod transaction;

pub use attr::{
    AttrError, AttrType, Attribute, ErrorCode, PasswordAlgorithm, PasswordAlgorithms, U16List,
};
pub use integrity::{IntegrityError, IntegrityKey, PasswordAlgorithmKind};
pub use message::{DecodeError, EncodeError, Message, MessageBuilder, RawAttribute, RawAttributes};

use crate::rng::Rng;

/// The fixed value in bytes 4..8 of every RFC 5389/8489 message.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Size of the STUN header: type, length, magic cookie, transaction id.
pub const HEADER_LEN: usize = 20;
/// The default STUN port for UDP and TCP (RFC 8489 §18.5).
pub const DEFAULT_PORT: u16 = 3478;

/// The class of a message: the two class bits of the message type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// Expects a response.
    Request,
    /// Fire-and-forget.
    Indication,
    /// A successful answer to a request.
    SuccessResponse,
    /// A failed answer to a request, carrying ERROR-CODE.
    ErrorResponse,
}

impl Class {
    fn bits(self) -> u16 {
        match self {
            Class::Request => 0b00,
            Class::Indication => 0b01,
            Class::SuccessResponse => 0b10,
            Class::ErrorResponse => 0b11,
        }
    }

    fn from_bits(bits: u16) -> Class {
        match bits & 0b11 {
            0b00 => Class::Request,
            0b01 => Class::Indication,
            0b10 => Class::SuccessResponse,
            _ => Class::ErrorResponse,
        }
    }
}

/// A STUN method: the 12 method bits of the message type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Method(u16);

impl Method {
    /// Binding (RFC 8489): reflexive address discovery, ICE connectivity checks, keepalives.
    pub const BINDING: Method = Method(0x001);

    /// A method by number; only the low 12 bits are representable on the wire.
    pub const fn new(number: u16) -> Method {
        Method(number & 0x0fff)
    }

    /// The method number.
    pub const fn number(self) -> u16 {
        self.0
    }
}

/// Packs method and class into the 14-bit message type (RFC 8489 §5, figure 3).
pub(crate) fn message_type(class: Class, method: Method) -> u16 {
    let m = method.0;
    let c = class.bits();
    (m & 0x000f) | ((m & 0x0070) << 1) | ((m & 0x0f80) << 2) | ((c & 0b01) << 4) | ((c & 0b10) << 7)
}

/// Splits a 14-bit message type back into class and method.
pub(crate) fn split_message_type(t: u16) -> (Class, Method) {
    let method = (t & 0x000f) | ((t >> 1) & 0x0070) | ((t >> 2) & 0x0f80);
    let class = ((t >> 4) & 0b01) | ((t >> 7) & 0b10);
    (Class::from_bits(class), Method(method))
}

/// The 96-bit transaction id that pairs a response with its request.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TransactionId(pub [u8; 12]);

impl TransactionId {
    /// A fresh id drawn from the caller's generator (RFC 8489 §6: uniformly random).
    pub fn random(rng: &mut Rng) -> Self {
        let mut id = [0; 12];
        rng.fill(&mut id);
        TransactionId(id)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 12] {
        &self.0
    }
}

impl core::fmt::Debug for TransactionId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Whether a datagram looks like STUN (RFC 7983: first byte 0..=3, plus the magic cookie).
///
/// A cheap test for demultiplexing a shared socket; [`Message::parse`] does the full validation.
pub fn looks_like_stun(datagram: &[u8]) -> bool {
    datagram.len() >= HEADER_LEN
        && datagram[0] < 4
        && datagram[4..8] == MAGIC_COOKIE.to_be_bytes()
        && datagram.len() % 4 == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_type_packing_matches_rfc_figures() {
        assert_eq!(message_type(Class::Request, Method::BINDING), 0x0001);
        assert_eq!(
            message_type(Class::SuccessResponse, Method::BINDING),
            0x0101
        );
        assert_eq!(message_type(Class::ErrorResponse, Method::BINDING), 0x0111);
        assert_eq!(message_type(Class::Indication, Method::BINDING), 0x0011);
        // TURN Allocate (0x003) error response is 0x0113.
        assert_eq!(message_type(Class::ErrorResponse, Method::new(3)), 0x0113);
        for m in 0..0x1000u16 {
            for c in [
                Class::Request,
                Class::Indication,
                Class::SuccessResponse,
                Class::ErrorResponse,
            ] {
                assert_eq!(
                    split_message_type(message_type(c, Method::new(m))),
                    (c, Method::new(m))
                );
            }
        }
    }
}
