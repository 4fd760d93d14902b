//! The key line of holepunch's offers: `a=x-holepunch-key:sha256:HEX`.
//!
//! Stream mode binds a QUIC identity to the offer: each side signals the SHA-256 of its public
//! key's DER SubjectPublicKeyInfo with its ICE credentials and candidates, and the QUIC
//! handshake accepts only that key. This module is the line's syntax only (parse and format);
//! computing fingerprints and checking certificates is the drivers' business. Other ICE stacks
//! ignore the attribute as unknown.

use alloc::string::String;
use core::fmt::{self, Write};
use core::str::FromStr;

/// The attribute that carries a side's key fingerprint, followed by [`Fingerprint`]'s text.
pub const KEY_LINE_PREFIX: &str = "a=x-holepunch-key:";

/// A SHA-256 key fingerprint; text form `sha256:` and 64 lowercase hex digits (the prefix and
/// upper-case digits are accepted when parsing).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a fingerprint's text form was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FingerprintError {
    /// It does not start with `sha256:`.
    #[error("a key fingerprint starts with \"sha256:\"")]
    Prefix,
    /// Not 64 hex digits after the prefix.
    #[error("a key fingerprint is \"sha256:\" and 64 hex digits")]
    Digits,
}

impl FromStr for Fingerprint {
    type Err = FingerprintError;

    fn from_str(s: &str) -> Result<Fingerprint, FingerprintError> {
        let prefix = s.get(..7).ok_or(FingerprintError::Prefix)?;
        if !prefix.eq_ignore_ascii_case("sha256:") {
            return Err(FingerprintError::Prefix);
        }
        let digits = s.get(7..).ok_or(FingerprintError::Digits)?.as_bytes();
        if digits.len() != 64 {
            return Err(FingerprintError::Digits);
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
            let hi = hex_digit(pair[0]).ok_or(FingerprintError::Digits)?;
            let lo = hex_digit(pair[1]).ok_or(FingerprintError::Digits)?;
            *byte = (hi << 4) | lo;
        }
        Ok(Fingerprint(out))
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Appends the key line for `fingerprint` (with its `\n`) to `out`.
pub fn write_key_line(out: &mut impl Write, fingerprint: &Fingerprint) -> fmt::Result {
    writeln!(out, "{KEY_LINE_PREFIX}{fingerprint}")
}

/// The key line for `fingerprint`, without a newline.
pub fn key_line(fingerprint: &Fingerprint) -> String {
    let mut s = String::with_capacity(KEY_LINE_PREFIX.len() + 71 + 1);
    let _ = write_key_line(&mut s, fingerprint);
    s.pop();
    s
}

/// Reads an offer line: `None` when it is not a key line, else the fingerprint or why it is
/// malformed. Surrounding whitespace is ignored.
pub fn parse_key_line(line: &str) -> Option<Result<Fingerprint, FingerprintError>> {
    let rest = line.trim().strip_prefix(KEY_LINE_PREFIX)?;
    Some(rest.trim().parse())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn text_round_trips_and_junk_is_refused() {
        let fp = Fingerprint([0xab; 32]);
        let text = fp.to_string();
        assert_eq!(text.len(), 71);
        assert_eq!(text.parse::<Fingerprint>(), Ok(fp));
        assert_eq!(text.to_uppercase().parse::<Fingerprint>(), Ok(fp));
        assert_eq!(parse_key_line(&key_line(&fp)), Some(Ok(fp)));
        assert_eq!(parse_key_line("ice-ufrag:abcd"), None);
        for bad in [
            "",
            "sha256:",
            "sha1:ab",
            "sha256:zz",
            &text[..70],
            "sha256:é",
            "sha25",
        ] {
            assert!(bad.parse::<Fingerprint>().is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_key_line("a=x-holepunch-key:sha256:00"),
            Some(Err(FingerprintError::Digits))
        );
    }
}
