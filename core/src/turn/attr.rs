//! TURN attributes (RFC 8656 §18) encoded and decoded on top of the STUN codec.
//!
//! They travel as [`Attribute::Other`] values, so the STUN builder and parser need no changes:
//! the `add_*` functions write one into a [`MessageBuilder`], the readers decode it from a
//! [`Message`]. Nothing here allocates.

use core::net::{IpAddr, SocketAddr};

use crate::stun::attr::{AttrError, AttrType, decode_xor_address, xor_address};
use crate::stun::{Attribute, EncodeError, Message, MessageBuilder};

use super::channel::ChannelNumber;

/// TURN attribute type numbers (RFC 8656 §18, IANA "STUN Attributes").
pub mod types {
    use crate::stun::attr::AttrType;
    /// CHANNEL-NUMBER (§18.1).
    pub const CHANNEL_NUMBER: AttrType = 0x000C;
    /// LIFETIME (§18.2).
    pub const LIFETIME: AttrType = 0x000D;
    /// XOR-PEER-ADDRESS (§18.3).
    pub const XOR_PEER_ADDRESS: AttrType = 0x0012;
    /// DATA (§18.4).
    pub const DATA: AttrType = 0x0013;
    /// XOR-RELAYED-ADDRESS (§18.5).
    pub const XOR_RELAYED_ADDRESS: AttrType = 0x0016;
    /// REQUESTED-ADDRESS-FAMILY (§18.6).
    pub const REQUESTED_ADDRESS_FAMILY: AttrType = 0x0017;
    /// EVEN-PORT (§18.7).
    pub const EVEN_PORT: AttrType = 0x0018;
    /// REQUESTED-TRANSPORT (§18.8).
    pub const REQUESTED_TRANSPORT: AttrType = 0x0019;
    /// DONT-FRAGMENT (§18.9).
    pub const DONT_FRAGMENT: AttrType = 0x001A;
    /// RESERVATION-TOKEN (§18.10).
    pub const RESERVATION_TOKEN: AttrType = 0x0022;
    /// ADDITIONAL-ADDRESS-FAMILY (§18.11).
    pub const ADDITIONAL_ADDRESS_FAMILY: AttrType = 0x8000;
    /// ADDRESS-ERROR-CODE (§18.12).
    pub const ADDRESS_ERROR_CODE: AttrType = 0x8001;
    /// ICMP (§18.13).
    pub const ICMP: AttrType = 0x8004;
}

/// TURN error codes (RFC 8656 §19) besides STUN's own.
pub mod codes {
    /// 403 Forbidden: the peer address is not allowed.
    pub const FORBIDDEN: u16 = 403;
    /// 437 Allocation Mismatch.
    pub const ALLOCATION_MISMATCH: u16 = 437;
    /// 440 Address Family not Supported.
    pub const ADDRESS_FAMILY_NOT_SUPPORTED: u16 = 440;
    /// 441 Wrong Credentials: a request for an allocation made by another user.
    pub const WRONG_CREDENTIALS: u16 = 441;
    /// 442 Unsupported Transport Protocol.
    pub const UNSUPPORTED_TRANSPORT: u16 = 442;
    /// 486 Allocation Quota Reached.
    pub const ALLOCATION_QUOTA_REACHED: u16 = 486;
    /// 508 Insufficient Capacity.
    pub const INSUFFICIENT_CAPACITY: u16 = 508;
}

/// Whether a TURN server understands `t`: a STUN attribute this crate knows, or a TURN one.
pub const fn is_known(t: AttrType) -> bool {
    use types::*;
    crate::stun::attr::is_known(t)
        || matches!(
            t,
            CHANNEL_NUMBER
                | LIFETIME
                | XOR_PEER_ADDRESS
                | DATA
                | XOR_RELAYED_ADDRESS
                | REQUESTED_ADDRESS_FAMILY
                | EVEN_PORT
                | REQUESTED_TRANSPORT
                | DONT_FRAGMENT
                | RESERVATION_TOKEN
                | ADDITIONAL_ADDRESS_FAMILY
                | ADDRESS_ERROR_CODE
                | ICMP
        )
}

/// Appends LIFETIME in seconds.
pub fn add_lifetime(b: &mut MessageBuilder<'_>, secs: u32) -> Result<(), EncodeError> {
    add_raw(b, types::LIFETIME, &secs.to_be_bytes())
}

/// Appends REQUESTED-TRANSPORT with the IANA protocol number (17 for UDP).
pub fn add_requested_transport(
    b: &mut MessageBuilder<'_>,
    protocol: u8,
) -> Result<(), EncodeError> {
    add_raw(b, types::REQUESTED_TRANSPORT, &[protocol, 0, 0, 0])
}

/// Appends CHANNEL-NUMBER.
pub fn add_channel_number(
    b: &mut MessageBuilder<'_>,
    channel: ChannelNumber,
) -> Result<(), EncodeError> {
    let [hi, lo] = channel.get().to_be_bytes();
    add_raw(b, types::CHANNEL_NUMBER, &[hi, lo, 0, 0])
}

/// Appends an XOR-encoded address attribute (XOR-PEER-ADDRESS, XOR-RELAYED-ADDRESS, or
/// XOR-MAPPED-ADDRESS), masked with this message's transaction id.
pub fn add_xor_address(
    b: &mut MessageBuilder<'_>,
    attr: AttrType,
    addr: SocketAddr,
) -> Result<(), EncodeError> {
    let masked = xor_address(addr, &b.transaction_id());
    let mut value = [0u8; 20];
    let len = encode_plain_address(masked, &mut value);
    add_raw(b, attr, &value[..len])
}

/// Appends DATA.
pub fn add_data(b: &mut MessageBuilder<'_>, data: &[u8]) -> Result<(), EncodeError> {
    add_raw(b, types::DATA, data)
}

/// LIFETIME, in seconds.
pub fn lifetime(msg: &Message<'_>) -> Option<Result<u32, AttrError>> {
    let raw = msg.find(types::LIFETIME)?;
    Some(fixed::<4>(types::LIFETIME, raw.value).map(u32::from_be_bytes))
}

/// REQUESTED-TRANSPORT's protocol number.
pub fn requested_transport(msg: &Message<'_>) -> Option<Result<u8, AttrError>> {
    let raw = msg.find(types::REQUESTED_TRANSPORT)?;
    Some(fixed::<4>(types::REQUESTED_TRANSPORT, raw.value).map(|v| v[0]))
}

/// REQUESTED-ADDRESS-FAMILY's family byte (0x01 IPv4, 0x02 IPv6).
pub fn requested_address_family(msg: &Message<'_>) -> Option<Result<u8, AttrError>> {
    let raw = msg.find(types::REQUESTED_ADDRESS_FAMILY)?;
    Some(fixed::<4>(types::REQUESTED_ADDRESS_FAMILY, raw.value).map(|v| v[0]))
}

/// CHANNEL-NUMBER as the raw number (validate it with [`ChannelNumber::new`]).
pub fn channel_number(msg: &Message<'_>) -> Option<Result<u16, AttrError>> {
    let raw = msg.find(types::CHANNEL_NUMBER)?;
    Some(fixed::<4>(types::CHANNEL_NUMBER, raw.value).map(|v| u16::from_be_bytes([v[0], v[1]])))
}

/// DATA's bytes, borrowed from the message.
pub fn data<'a>(msg: &Message<'a>) -> Option<&'a [u8]> {
    msg.find(types::DATA).map(|a| a.value)
}

/// The first XOR-encoded address attribute of type `attr`, decoded.
pub fn xor_address_attr(
    msg: &Message<'_>,
    attr: AttrType,
) -> Option<Result<SocketAddr, AttrError>> {
    let raw = msg.find(attr)?;
    Some(decode_xor_address(attr, raw.value, &mask(msg)))
}

/// Every XOR-PEER-ADDRESS in order (CreatePermission may carry several), decoded.
pub fn xor_peer_addresses<'a>(
    msg: &Message<'a>,
) -> impl Iterator<Item = Result<SocketAddr, AttrError>> + 'a {
    let mask = mask(msg);
    msg.attributes()
        .filter(|a| a.attr == types::XOR_PEER_ADDRESS)
        .map(move |a| decode_xor_address(a.attr, a.value, &mask))
}

/// The XOR mask of a message: its magic cookie and transaction id (bytes 4..20).
fn mask(msg: &Message<'_>) -> [u8; 16] {
    let mut mask = [0u8; 16];
    mask.copy_from_slice(&msg.as_bytes()[4..20]);
    mask
}

fn add_raw(b: &mut MessageBuilder<'_>, attr: AttrType, value: &[u8]) -> Result<(), EncodeError> {
    b.add(&Attribute::Other { attr, value })
}

fn fixed<const N: usize>(attr: AttrType, value: &[u8]) -> Result<[u8; N], AttrError> {
    value.try_into().map_err(|_| AttrError::BadLength {
        attr,
        len: value.len(),
    })
}

/// Writes the plain (family, port, address) form and returns its length.
fn encode_plain_address(a: SocketAddr, out: &mut [u8; 20]) -> usize {
    out[0] = 0;
    out[2..4].copy_from_slice(&a.port().to_be_bytes());
    match a.ip() {
        IpAddr::V4(ip) => {
            out[1] = 0x01;
            out[4..8].copy_from_slice(&ip.octets());
            8
        }
        IpAddr::V6(ip) => {
            out[1] = 0x02;
            out[4..20].copy_from_slice(&ip.octets());
            20
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::{Class, TransactionId};
    use alloc::vec;
    use alloc::vec::Vec;

    #[test]
    fn every_turn_attribute_round_trips() {
        let mut buf = [0u8; 256];
        let tid = TransactionId([9; 12]);
        let mut b = MessageBuilder::new(&mut buf, Class::Request, super::super::CHANNEL_BIND, tid)
            .expect("header fits");
        let peer4: SocketAddr = "192.0.2.1:4000".parse().expect("addr");
        let peer6: SocketAddr = "[2001:db8::1]:5000".parse().expect("addr");
        let ch = ChannelNumber::new(0x4001).expect("valid");
        add_channel_number(&mut b, ch).expect("fits");
        add_lifetime(&mut b, 600).expect("fits");
        add_requested_transport(&mut b, 17).expect("fits");
        add_xor_address(&mut b, types::XOR_PEER_ADDRESS, peer4).expect("fits");
        add_xor_address(&mut b, types::XOR_PEER_ADDRESS, peer6).expect("fits");
        add_xor_address(&mut b, types::XOR_RELAYED_ADDRESS, peer6).expect("fits");
        add_data(&mut b, b"hello").expect("fits");
        let len = b.finish();
        let msg = Message::parse(&buf[..len]).expect("parses");
        assert_eq!(channel_number(&msg), Some(Ok(0x4001)));
        assert_eq!(lifetime(&msg), Some(Ok(600)));
        assert_eq!(requested_transport(&msg), Some(Ok(17)));
        let peers: Vec<_> = xor_peer_addresses(&msg).collect();
        assert_eq!(peers, vec![Ok(peer4), Ok(peer6)]);
        assert_eq!(
            xor_address_attr(&msg, types::XOR_RELAYED_ADDRESS),
            Some(Ok(peer6))
        );
        assert_eq!(data(&msg), Some(&b"hello"[..]));
        assert!(
            msg.unknown_comprehension_required(is_known)
                .next()
                .is_none()
        );
    }

    #[test]
    fn wrong_lengths_are_typed_errors() {
        let mut buf = [0u8; 64];
        let mut b = MessageBuilder::new(
            &mut buf,
            Class::Request,
            super::super::ALLOCATE,
            TransactionId([1; 12]),
        )
        .expect("header fits");
        b.add(&Attribute::Other {
            attr: types::LIFETIME,
            value: &[0, 1],
        })
        .expect("fits");
        let len = b.finish();
        let msg = Message::parse(&buf[..len]).expect("parses");
        assert!(matches!(
            lifetime(&msg),
            Some(Err(AttrError::BadLength { .. }))
        ));
        assert_eq!(requested_transport(&msg), None);
    }
}
