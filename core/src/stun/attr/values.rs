//! The typed values of attributes that are more than an address, a number or a string:
//! ERROR-CODE, UNKNOWN-ATTRIBUTES and PASSWORD-ALGORITHM(S).

use super::padded;

/// An ERROR-CODE attribute: a three-digit code and a human-readable reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorCode<'a> {
    /// The code, 300..=699.
    pub code: u16,
    /// The reason phrase (UTF-8, at most 128 characters).
    pub reason: &'a str,
}

impl ErrorCode<'static> {
    /// 300 Try Alternate.
    pub const TRY_ALTERNATE: ErrorCode<'static> = ErrorCode {
        code: 300,
        reason: "Try Alternate",
    };
    /// 400 Bad Request.
    pub const BAD_REQUEST: ErrorCode<'static> = ErrorCode {
        code: 400,
        reason: "Bad Request",
    };
    /// 401 Unauthenticated.
    pub const UNAUTHENTICATED: ErrorCode<'static> = ErrorCode {
        code: 401,
        reason: "Unauthenticated",
    };
    /// 420 Unknown Attribute.
    pub const UNKNOWN_ATTRIBUTE: ErrorCode<'static> = ErrorCode {
        code: 420,
        reason: "Unknown Attribute",
    };
    /// 438 Stale Nonce.
    pub const STALE_NONCE: ErrorCode<'static> = ErrorCode {
        code: 438,
        reason: "Stale Nonce",
    };
    /// 487 Role Conflict (RFC 8445).
    pub const ROLE_CONFLICT: ErrorCode<'static> = ErrorCode {
        code: 487,
        reason: "Role Conflict",
    };
    /// 500 Server Error.
    pub const SERVER_ERROR: ErrorCode<'static> = ErrorCode {
        code: 500,
        reason: "Server Error",
    };
}

/// A list of 16-bit values (UNKNOWN-ATTRIBUTES): either as received on the wire or as the
/// caller's slice when building.
#[derive(Clone, Copy, Debug)]
pub enum U16List<'a> {
    /// Big-endian pairs of bytes straight from a datagram (even length guaranteed).
    Wire(&'a [u8]),
    /// Values supplied by the caller.
    Native(&'a [u16]),
}

impl<'a> U16List<'a> {
    /// The values in order.
    pub fn iter(&self) -> impl Iterator<Item = u16> + 'a {
        let (wire, native): (&'a [u8], &'a [u16]) = match *self {
            U16List::Wire(w) => (w, &[]),
            U16List::Native(n) => (&[], n),
        };
        wire.chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .chain(native.iter().copied())
    }

    pub(super) fn wire_len(&self) -> usize {
        match self {
            U16List::Wire(w) => w.len(),
            U16List::Native(n) => n.len() * 2,
        }
    }
}

impl PartialEq for U16List<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

/// One entry of PASSWORD-ALGORITHM(S): an algorithm number and its parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PasswordAlgorithm<'a> {
    /// 0x0001 MD5, 0x0002 SHA-256 (RFC 8489 §18.5).
    pub algorithm: u16,
    /// Algorithm parameters (empty for both registered algorithms).
    pub params: &'a [u8],
}

impl PasswordAlgorithm<'_> {
    pub(super) fn wire_len(&self) -> usize {
        4 + padded(self.params.len())
    }
}

/// PASSWORD-ALGORITHMS: the algorithms a server offers, as received or as supplied.
#[derive(Clone, Copy, Debug)]
pub enum PasswordAlgorithms<'a> {
    /// The validated wire form.
    Wire(&'a [u8]),
    /// Entries supplied by the caller.
    Native(&'a [PasswordAlgorithm<'a>]),
}

impl<'a> PasswordAlgorithms<'a> {
    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = PasswordAlgorithm<'a>> + 'a {
        let (mut wire, native): (&'a [u8], &'a [PasswordAlgorithm<'a>]) = match *self {
            PasswordAlgorithms::Wire(w) => (w, &[]),
            PasswordAlgorithms::Native(n) => (&[], n),
        };
        core::iter::from_fn(move || {
            // The wire form was validated at decode, so these splits are in bounds; stay
            // defensive anyway and stop rather than panic.
            let (entry, rest) = split_password_algorithm(wire)?;
            wire = rest;
            Some(entry)
        })
        .chain(native.iter().copied())
    }

    pub(super) fn wire_len(&self) -> usize {
        match self {
            PasswordAlgorithms::Wire(w) => w.len(),
            PasswordAlgorithms::Native(n) => n.iter().map(PasswordAlgorithm::wire_len).sum(),
        }
    }
}

impl PartialEq for PasswordAlgorithms<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

pub(super) fn split_password_algorithm(b: &[u8]) -> Option<(PasswordAlgorithm<'_>, &[u8])> {
    let header = b.get(..4)?;
    let algorithm = u16::from_be_bytes([header[0], header[1]]);
    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let params = b.get(4..4 + len)?;
    let rest = b.get(4 + padded(len)..)?;
    Some((PasswordAlgorithm { algorithm, params }, rest))
}
