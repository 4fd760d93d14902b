//! Stateless nonces (RFC 8656 §9.2, long-term credentials): an expiry and a MAC over it and
//! the client's address, so no nonce table is needed and a nonce cannot be replayed from
//! another address or have its life extended.

use super::*;

/// Length of a nonce: 6 bytes (3 of expiry, 3 of MAC) in base64. Short on purpose: a 401 with
/// FINGERPRINT (which coturn's `turnutils_uclient` insists on) and an 8-byte realm must fit in
/// the smallest Allocate real clients send (uclient's: 60 bytes) without amplifying. Anyone
/// can ask for a fresh nonce, so the MAC only stops a client from extending one's life; 24 bits
/// (one guess per request) do that.
pub(super) const NONCE_LEN: usize = 8;

/// Bytes of raw nonce: expiry and MAC.
const NONCE_RAW_LEN: usize = 6;

/// The expiry is kept modulo 2^24 seconds (194 days) and compared wrap-aware.
const NONCE_CLOCK_MASK: u32 = 0x00FF_FFFF;

impl Server {
    /// A nonce: its expiry (seconds on the server's clock) and a MAC binding it to the client,
    /// so no nonce table is needed and a nonce cannot be replayed from another address.
    pub(super) fn make_nonce(&self, now: Instant, client: SocketAddr, out: &mut [u8; NONCE_LEN]) {
        let expiry = (clock_secs(now) + self.config.nonce_lifetime_secs) & NONCE_CLOCK_MASK;
        let tag = self.nonce_tag(expiry, client);
        let mut raw = [0u8; NONCE_RAW_LEN];
        raw[..3].copy_from_slice(&expiry.to_be_bytes()[1..]);
        raw[3..].copy_from_slice(&tag[..3]);
        base64_encode(&raw, out);
    }

    pub(super) fn nonce_fresh(&self, now: Instant, client: SocketAddr, nonce: &str) -> bool {
        let Some(raw) = base64_decode(nonce.as_bytes()) else {
            return false;
        };
        let expiry = u32::from_be_bytes([0, raw[0], raw[1], raw[2]]);
        let mut mac = self.nonce_key.clone();
        mac.update(&expiry.to_be_bytes());
        mac_client(&mut mac, client);
        // Seconds left, modulo the clock's wrap: fresh while 1..=lifetime remain.
        let left = expiry.wrapping_sub(clock_secs(now)) & NONCE_CLOCK_MASK;
        mac.verify_truncated_left(&raw[3..]).is_ok()
            && left > 0
            && left <= self.config.nonce_lifetime_secs
    }

    fn nonce_tag(&self, expiry: u32, client: SocketAddr) -> [u8; 20] {
        let mut mac = self.nonce_key.clone();
        mac.update(&expiry.to_be_bytes());
        mac_client(&mut mac, client);
        mac.finalize().into_bytes().into()
    }
}

pub(super) fn hmac_key(key: &[u8]) -> Hmac<Sha1> {
    match <Hmac<Sha1> as Mac>::new_from_slice(key) {
        Ok(mac) => mac,
        // HMAC takes keys of any length; an empty key would still be a valid (weak) MAC.
        Err(_) => match <Hmac<Sha1> as Mac>::new_from_slice(&[]) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts keys of every length"),
        },
    }
}

fn mac_client(mac: &mut Hmac<Sha1>, client: SocketAddr) {
    match client.ip() {
        IpAddr::V4(ip) => mac.update(&ip.octets()),
        IpAddr::V6(ip) => mac.update(&ip.octets()),
    }
    mac.update(&client.port().to_be_bytes());
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The raw nonce as base64 (6 bytes make 8 characters, no padding).
fn base64_encode(raw: &[u8; NONCE_RAW_LEN], out: &mut [u8; NONCE_LEN]) {
    for (chunk, o) in raw.chunks(3).zip(out.chunks_mut(4)) {
        let n = (u32::from(chunk[0]) << 16) | (u32::from(chunk[1]) << 8) | u32::from(chunk[2]);
        for (i, c) in o.iter_mut().enumerate() {
            *c = BASE64[((n >> (18 - 6 * i)) & 63) as usize];
        }
    }
}

fn base64_decode(text: &[u8]) -> Option<[u8; NONCE_RAW_LEN]> {
    if text.len() != NONCE_LEN {
        return None;
    }
    let digit = |c: u8| BASE64.iter().position(|&b| b == c).map(|p| p as u32);
    let mut raw = [0u8; NONCE_RAW_LEN];
    for (chunk, o) in text.chunks(4).zip(raw.chunks_mut(3)) {
        let mut n = 0u32;
        for &c in chunk {
            n = (n << 6) | digit(c)?;
        }
        o.copy_from_slice(&n.to_be_bytes()[1..]);
    }
    Some(raw)
}

/// Whole seconds on the server's clock, modulo the nonce clock's wrap.
fn clock_secs(now: Instant) -> u32 {
    (now.as_micros() / 1_000_000) as u32 & NONCE_CLOCK_MASK
}
