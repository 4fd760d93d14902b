//! Message integrity (HMAC-SHA1, HMAC-SHA256) and FINGERPRINT (CRC-32).
//!
//! An [`IntegrityKey`] is derived once per credential and keeps both HMACs already keyed, so a
//! check costs one clone of a small state plus the hashing of the message: no re-keying, no MD5
//! per packet, no allocation. Tags are compared in constant time by the `hmac` crate.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;
use sha2::Sha256;

/// XORed into the CRC-32 so FINGERPRINT differs from the CRC an application protocol might carry.
pub const FINGERPRINT_XOR: u32 = 0x5354_554E;

/// Why an integrity or fingerprint check failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IntegrityError {
    /// The message carries neither MESSAGE-INTEGRITY nor MESSAGE-INTEGRITY-SHA256.
    #[error("message has no MESSAGE-INTEGRITY")]
    Missing,
    /// The HMAC does not match: wrong key, or a tampered message.
    #[error("MESSAGE-INTEGRITY does not match")]
    Mismatch,
    /// The message carries no FINGERPRINT.
    #[error("message has no FINGERPRINT")]
    FingerprintMissing,
    /// The FINGERPRINT does not match the message's CRC-32.
    #[error("FINGERPRINT does not match")]
    FingerprintMismatch,
}

/// The password algorithms of RFC 8489 §18.5 for long-term credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PasswordAlgorithmKind {
    /// Key = MD5(username ":" realm ":" password): the classic RFC 5389 key.
    Md5,
    /// Key = SHA-256(username ":" realm ":" password).
    Sha256,
}

impl PasswordAlgorithmKind {
    /// The registry number carried in PASSWORD-ALGORITHM(S).
    pub const fn number(self) -> u16 {
        match self {
            PasswordAlgorithmKind::Md5 => 0x0001,
            PasswordAlgorithmKind::Sha256 => 0x0002,
        }
    }

    /// The algorithm for a registry number, if it is one this crate implements.
    pub const fn from_number(n: u16) -> Option<Self> {
        match n {
            0x0001 => Some(PasswordAlgorithmKind::Md5),
            0x0002 => Some(PasswordAlgorithmKind::Sha256),
            _ => None,
        }
    }
}

/// A credential's key with both HMACs pre-keyed: build once, use for every message.
///
/// Strings must already be prepared as RFC 8489 asks (OpaqueString for passwords and realms,
/// RFC 8265); ICE's short-term credentials are ASCII, for which that is the identity.
#[derive(Clone)]
pub struct IntegrityKey {
    sha1: Hmac<Sha1>,
    sha256: Hmac<Sha256>,
}

impl IntegrityKey {
    /// Short-term credential (RFC 8489 §9.1.1): the key is the password itself. ICE uses this.
    pub fn short_term(password: &[u8]) -> Self {
        Self::from_key(password)
    }

    /// Long-term credential (RFC 8489 §9.2.2): the key is a hash of `username:realm:password`.
    pub fn long_term(
        algorithm: PasswordAlgorithmKind,
        username: &str,
        realm: &str,
        password: &str,
    ) -> Self {
        let parts = [
            username.as_bytes(),
            b":",
            realm.as_bytes(),
            b":",
            password.as_bytes(),
        ];
        match algorithm {
            PasswordAlgorithmKind::Md5 => {
                let mut h = Md5::new();
                parts.iter().for_each(|p| h.update(p));
                Self::from_key(&h.finalize())
            }
            PasswordAlgorithmKind::Sha256 => {
                let mut h = Sha256::new();
                parts.iter().for_each(|p| h.update(p));
                Self::from_key(&h.finalize())
            }
        }
    }

    /// A key given as raw bytes (for example a long-term key stored pre-hashed).
    pub fn from_key(key: &[u8]) -> Self {
        IntegrityKey {
            sha1: keyed(key),
            sha256: keyed(key),
        }
    }

    /// HMAC-SHA1 over the concatenation of `parts`.
    pub(crate) fn sha1(&self, parts: &[&[u8]]) -> [u8; 20] {
        let mut mac = self.sha1.clone();
        parts.iter().for_each(|p| mac.update(p));
        mac.finalize().into_bytes().into()
    }

    /// HMAC-SHA256 over the concatenation of `parts`.
    pub(crate) fn sha256(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.sha256.clone();
        parts.iter().for_each(|p| mac.update(p));
        mac.finalize().into_bytes().into()
    }

    /// Constant-time check of an HMAC-SHA1 tag over `parts`.
    pub(crate) fn verify_sha1(&self, parts: &[&[u8]], tag: &[u8]) -> Result<(), IntegrityError> {
        let mut mac = self.sha1.clone();
        parts.iter().for_each(|p| mac.update(p));
        mac.verify_slice(tag).map_err(|_| IntegrityError::Mismatch)
    }

    /// Constant-time check of a (possibly truncated, RFC 8489 §14.6) HMAC-SHA256 tag.
    pub(crate) fn verify_sha256(&self, parts: &[&[u8]], tag: &[u8]) -> Result<(), IntegrityError> {
        let mut mac = self.sha256.clone();
        parts.iter().for_each(|p| mac.update(p));
        mac.verify_truncated_left(tag)
            .map_err(|_| IntegrityError::Mismatch)
    }
}

impl core::fmt::Debug for IntegrityKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("IntegrityKey(..)")
    }
}

fn keyed<M: Mac + hmac::digest::KeyInit>(key: &[u8]) -> M {
    // HMAC takes keys of any length (long ones are hashed), so this cannot fail.
    match <M as hmac::digest::KeyInit>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    }
}

/// FINGERPRINT value over `parts`: CRC-32 (ISO-HDLC) XOR 0x5354554E.
pub(crate) fn fingerprint(parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    parts.iter().for_each(|p| h.update(p));
    h.finalize() ^ FINGERPRINT_XOR
}
