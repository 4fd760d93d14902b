//! Classifying datagrams on a shared socket (RFC 7983).
//!
//! ICE checks, TURN ChannelData and the application's own protocol share one socket. The
//! first byte tells them apart: 0–3 STUN, 16–19 ZRTP, 20–63 DTLS, 64–79 TURN ChannelData,
//! 128–191 RTP/RTCP. QUIC long headers (0xC0–0xFF) and short headers (0x40–0x7F) overlap
//! ChannelData, which is why TURN data is only treated as ChannelData when it comes from a relay.

pub use crate::io::Received;

/// The protocol family a datagram's first byte announces (RFC 7983 §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// 0–3: STUN.
    Stun,
    /// 64–79: TURN ChannelData (only meaningful from a TURN server).
    ChannelData,
    /// Anything else: the application's.
    Other,
}

/// Classifies a datagram by its first byte: a couple of branches, no parsing.
#[inline]
pub fn classify(datagram: &[u8]) -> Kind {
    match datagram.first() {
        Some(0..=3) => Kind::Stun,
        Some(64..=79) => Kind::ChannelData,
        _ => Kind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_byte_ranges_follow_rfc_7983() {
        assert_eq!(classify(&[0x00, 0x01]), Kind::Stun);
        assert_eq!(classify(&[0x03]), Kind::Stun);
        assert_eq!(classify(&[0x40]), Kind::ChannelData);
        assert_eq!(classify(&[0x4f]), Kind::ChannelData);
        assert_eq!(classify(&[0x17]), Kind::Other);
        assert_eq!(classify(&[0x80]), Kind::Other);
        assert_eq!(classify(&[]), Kind::Other);
    }
}
