//! TURN REST time-limited credentials (draft-uberti-behave-turn-rest, as coturn implements it).
//!
//! A web service and the relay share a secret. The service hands a client the username
//! `EXPIRY:USER` (EXPIRY in Unix seconds) and the password base64(HMAC-SHA1(secret, username)),
//! and the relay checks both without any per-user state.

use alloc::format;
use alloc::string::String;

use hmac::{Hmac, Mac};
use sha1::Sha1;

/// Length of the base64 password: 20 bytes of HMAC-SHA1 make 28 characters.
pub const PASSWORD_LEN: usize = 28;

/// A time-limited username and password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestCredentials {
    /// `EXPIRY:USER`.
    pub username: String,
    /// base64(HMAC-SHA1(secret, username)).
    pub password: String,
}

impl RestCredentials {
    /// Credentials for `user` valid until `expiry_unix_secs`, signed with `secret`.
    pub fn new(secret: &[u8], user: &str, expiry_unix_secs: u64) -> Self {
        let username = format!("{expiry_unix_secs}:{user}");
        let mut out = [0u8; PASSWORD_LEN];
        let password = String::from(password_for(secret, &username, &mut out));
        RestCredentials { username, password }
    }
}

/// The password for a REST `username`, written into `out` without allocating.
pub fn password_for<'o>(secret: &[u8], username: &str, out: &'o mut [u8; PASSWORD_LEN]) -> &'o str {
    let tag = hmac_sha1(secret, username.as_bytes());
    base64_encode(&tag, out);
    // base64 output is ASCII.
    core::str::from_utf8(out).unwrap_or_default()
}

/// The expiry a REST username carries (digits before the first ':', or the whole name), if any.
pub fn expiry_of(username: &str) -> Option<u64> {
    let digits = username.split(':').next()?;
    if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn hmac_sha1(key: &[u8], data: &[u8]) -> [u8; 20] {
    // HMAC takes keys of any length, so construction cannot fail; fall back to an empty-key MAC
    // rather than panic should that ever change.
    let mut mac = match <Hmac<Sha1> as Mac>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return [0; 20],
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Standard base64 with padding of exactly 20 bytes (all this module needs).
fn base64_encode(input: &[u8; 20], out: &mut [u8; PASSWORD_LEN]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut o = 0;
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            out[o + i] = if i <= chunk.len() {
                ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]
            } else {
                b'='
            };
        }
        o += 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_coturn_rest_example() {
        // Computed independently: printf '1700000000:alice' | openssl dgst -sha1 -hmac secret -binary | base64
        let creds = RestCredentials::new(b"secret", "alice", 1_700_000_000);
        assert_eq!(creds.username, "1700000000:alice");
        assert_eq!(creds.password, "d8soP47RbdIKLDUOpnJPVQyq5Ts=");
        assert_eq!(expiry_of(&creds.username), Some(1_700_000_000));
        assert_eq!(expiry_of("alice"), None);
        assert_eq!(expiry_of("123"), Some(123));
    }

    #[test]
    fn base64_matches_rfc4648() {
        let mut out = [0u8; PASSWORD_LEN];
        base64_encode(&[0xff; 20], &mut out);
        assert_eq!(&out, b"//////////////////////////8=");
        base64_encode(&[0; 20], &mut out);
        assert_eq!(&out, b"AAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    }
}
