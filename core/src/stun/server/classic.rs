//! RFC 3489 ("classic") Binding requests: the header without the magic cookie.
//!
//! RFC 8489 §12 tells a server how to answer them: echo all 16 bytes of the old transaction ID
//! (the four where the cookie would be included) and report the address in MAPPED-ADDRESS, which
//! such clients understand, instead of XOR-MAPPED-ADDRESS. libnice in its default RFC 5245 mode
//! still gathers server-reflexive candidates this way.

use super::super::{HEADER_LEN, MAGIC_COOKIE, attr::types};

/// RFC 3489's Binding Request message type.
const BINDING_REQUEST: u16 = 0x0001;

/// What the server needs from a classic Binding request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ClassicRequest {
    /// Bytes 4..20 of the header: the RFC 3489 128-bit transaction ID.
    pub(crate) transaction_id: [u8; 16],
    /// CHANGE-REQUEST's (change IP, change port) flags.
    pub(crate) change: (bool, bool),
}

/// Reads a classic Binding request; `None` for anything else (other types, RFC 8489 messages,
/// a length that does not match the datagram, attributes that overrun it).
///
/// RESPONSE-ADDRESS is deliberately ignored: answering to an address named in the request would
/// make the server a reflector for anyone who can send it a packet (RFC 5780 §9.2 drops it too).
pub(crate) fn parse(datagram: &[u8]) -> Option<ClassicRequest> {
    let header = datagram.get(..HEADER_LEN)?;
    let msg_type = u16::from_be_bytes([header[0], header[1]]);
    if msg_type != BINDING_REQUEST || header[4..8] == MAGIC_COOKIE.to_be_bytes() {
        return None;
    }
    let declared = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if declared % 4 != 0 || declared != datagram.len() - HEADER_LEN {
        return None;
    }
    let mut transaction_id = [0u8; 16];
    transaction_id.copy_from_slice(&header[4..HEADER_LEN]);
    let mut change = (false, false);
    let mut rest = &datagram[HEADER_LEN..];
    while !rest.is_empty() {
        let attr_header = rest.get(..4)?;
        let attr = u16::from_be_bytes([attr_header[0], attr_header[1]]);
        let len = usize::from(u16::from_be_bytes([attr_header[2], attr_header[3]]));
        // RFC 3489 attributes are whole words; tolerate RFC 5389-style padding anyway.
        let padded = len.checked_add(3)? & !3;
        let value = rest.get(4..4 + len)?;
        if attr == types::CHANGE_REQUEST && len == 4 {
            change = (value[3] & 0b100 != 0, value[3] & 0b010 != 0);
        }
        rest = rest.get(4 + padded..)?;
    }
    Some(ClassicRequest {
        transaction_id,
        change,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(attrs: &[u8]) -> [u8; 28] {
        let mut d = [0u8; 28];
        d[1] = 1;
        d[3] = attrs.len() as u8;
        for (i, b) in d[4..20].iter_mut().enumerate() {
            *b = i as u8 + 0x10;
        }
        d[20..20 + attrs.len()].copy_from_slice(attrs);
        d
    }

    #[test]
    fn reads_id_and_change_request() {
        let d = request(&[0, 3, 0, 4, 0, 0, 0, 6]);
        let r = parse(&d).expect("classic request");
        assert_eq!(r.transaction_id[0], 0x10);
        assert_eq!(r.transaction_id[15], 0x1f);
        assert_eq!(r.change, (true, true));
        let bare = request(&[]);
        assert_eq!(parse(&bare[..20]).map(|r| r.change), Some((false, false)));
    }

    #[test]
    fn rejects_what_is_not_a_classic_binding_request() {
        let mut d = request(&[0, 3, 0, 4, 0, 0, 0, 6]);
        assert!(parse(&d[..27]).is_none(), "length mismatch");
        assert!(parse(&d[..12]).is_none(), "short");
        d[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        assert!(parse(&d).is_none(), "RFC 8489");
        let mut r = request(&[0, 3, 0, 4, 0, 0, 0, 6]);
        r[1] = 0x11;
        assert!(parse(&r).is_none(), "indication");
        let overrun = request(&[0, 3, 0, 9, 0, 0, 0, 6]);
        assert!(parse(&overrun).is_none(), "attribute overruns");
    }
}
