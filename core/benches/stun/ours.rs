//! holepunch-core's STUN codec, behind the bench's `Codec` trait.

use std::net::SocketAddr;

use holepunch_core::stun::{
    Attribute, Class, IntegrityKey, Message, MessageBuilder, Method, TransactionId,
};

use crate::peers::{self, Codec};

/// Row label; the table's ratios are relative to this row.
pub const NAME: &str = "ours (holepunch-core)";

/// Pre-keyed short-term key, built once.
pub struct Ours {
    key: IntegrityKey,
}

impl Ours {
    /// Pre-keys the integrity key.
    pub fn new() -> Self {
        Self {
            key: IntegrityKey::short_term(peers::PASSWORD.as_bytes()),
        }
    }
}

impl Codec for Ours {
    fn name(&self) -> &'static str {
        NAME
    }

    fn decode_request(&mut self, buf: &[u8]) -> bool {
        let Ok(msg) = Message::parse(buf) else {
            return false;
        };
        msg.verify_fingerprint().is_ok() && msg.verify_integrity(&self.key).is_ok()
    }

    fn encode_request(&mut self, out: &mut [u8]) -> usize {
        let tid = TransactionId(peers::TID);
        let mut b = MessageBuilder::new(out, Class::Request, Method::BINDING, tid).expect("fits");
        b.add(&Attribute::Username(peers::USERNAME)).expect("fits");
        b.add(&Attribute::Priority(peers::PRIORITY)).expect("fits");
        b.add(&Attribute::IceControlling(peers::TIE_BREAKER))
            .expect("fits");
        b.add_message_integrity(&self.key).expect("fits");
        b.add_fingerprint().expect("fits");
        b.finish()
    }

    fn decode_response(&mut self, buf: &[u8]) -> Option<SocketAddr> {
        let msg = Message::parse(buf).ok()?;
        msg.verify_fingerprint().ok()?;
        msg.verify_integrity(&self.key).ok()?;
        msg.xor_mapped_address()?.ok()
    }
}
