//! The long-term credential state (RFC 8489 §9.2): what a 401 or 438 taught about a server's
//! realm and nonce, the key derived from it, and the password algorithm chosen.

use alloc::string::String;
use alloc::vec::Vec;
use core::net::SocketAddr;

use super::{Client, LongTermCredentials, MAX_AUTH_RETRIES, TransactionError};
use crate::stun::attr::{Attribute, PasswordAlgorithms, types};
use crate::stun::integrity::{IntegrityKey, PasswordAlgorithmKind};
use crate::stun::message::Message;

/// What a server told us about its realm, and the key derived for it. Credentials are cached
/// for that server only (RFC 8489 §9.2.3): first requests to any other carry none.
#[derive(Debug)]
pub(super) struct AuthState {
    pub(super) server: SocketAddr,
    pub(super) realm: String,
    pub(super) nonce: String,
    pub(super) key: IntegrityKey,
    /// RFC 8489 mode (nonce cookie with password algorithms): send PASSWORD-ALGORITHM(S) and
    /// MESSAGE-INTEGRITY-SHA256; otherwise classic RFC 5389 MESSAGE-INTEGRITY.
    pub(super) algorithm: Option<(PasswordAlgorithmKind, Vec<u8>)>,
}

/// The RFC 8489 §9.2 "nonce cookie" announcing security features.
const NONCE_COOKIE: &str = "obMatJos2";

impl Client {
    pub(super) fn learn_challenge(
        &mut self,
        index: usize,
        code: u16,
        msg: &Message<'_>,
    ) -> Result<(), TransactionError> {
        let creds = self
            .config
            .credentials
            .as_ref()
            .ok_or(TransactionError::Unauthorized)?;
        let server = self.slots[index].to;
        let s = &mut self.slots[index].data;
        if s.auth_retries >= MAX_AUTH_RETRIES {
            return Err(if code == 401 {
                TransactionError::Unauthorized
            } else {
                TransactionError::TooManyRetries
            });
        }
        s.auth_retries += 1;
        let text = |t| msg.text(t).and_then(Result::ok);
        // §9.2.5: no 401 retry that changes neither username, realm nor password. Ours are
        // fixed, so a 401 to a request that carried them for this realm means they were
        // refused: fail, and forget them so the next transaction starts afresh (§9.2.3.1).
        if code == 401 && self.slots.key(index).is_some() {
            let sent_realm = self.sent_text(index, types::REALM);
            let realm = text(types::REALM);
            if realm.is_none() || realm == sent_realm.as_deref() {
                if self.auth.as_ref().is_some_and(|a| a.server == server) {
                    self.auth = None;
                }
                return Err(TransactionError::Unauthorized);
            }
        }
        let nonce = text(types::NONCE).ok_or(TransactionError::Unauthorized)?;
        let realm = match (text(types::REALM), &self.auth) {
            (Some(r), _) => r,
            // A 438 may omit REALM; keep the one we have for this server.
            (None, Some(a)) if code == 438 && a.server == server => {
                let realm = a.realm.clone();
                return self.store_auth(server, creds.clone(), &realm, nonce, msg);
            }
            _ => return Err(TransactionError::Unauthorized),
        };
        self.store_auth(server, creds.clone(), realm, nonce, msg)
    }

    /// A text attribute of the request the slot has on the wire.
    pub(super) fn sent_text(&self, index: usize, attr: crate::stun::AttrType) -> Option<String> {
        let request = self.slots.request(index, self.slots[index].data.len);
        let msg = Message::parse(request).ok()?;
        msg.text(attr).and_then(Result::ok).map(String::from)
    }

    /// Remembers `server`'s realm and nonce, deriving the key only when realm or algorithm
    /// changed.
    pub(super) fn store_auth(
        &mut self,
        server: SocketAddr,
        creds: LongTermCredentials,
        realm: &str,
        nonce: &str,
        msg: &Message<'_>,
    ) -> Result<(), TransactionError> {
        let algorithm = if let Some(features) = nonce.strip_prefix(NONCE_COOKIE) {
            // §9.2.5: take the first offered algorithm we support; keep the list to echo it.
            match msg.decode(types::PASSWORD_ALGORITHMS) {
                Some(Ok(Attribute::PasswordAlgorithms(list @ PasswordAlgorithms::Wire(raw)))) => {
                    let chosen = list
                        .iter()
                        .find_map(|p| PasswordAlgorithmKind::from_number(p.algorithm))
                        .ok_or(TransactionError::Unauthorized)?;
                    Some((chosen, raw.to_vec()))
                }
                // §9.2.5: the cookie announces PASSWORD-ALGORITHMS but there is no (valid)
                // list: someone stripped it to bid us down to MD5. Must not retry.
                _ if offers_password_algorithms(features) => {
                    return Err(TransactionError::Unauthorized);
                }
                _ => None,
            }
        } else {
            None
        };
        let kind = algorithm
            .as_ref()
            .map_or(PasswordAlgorithmKind::Md5, |(k, _)| *k);
        let reuse = self.auth.as_ref().is_some_and(|a| {
            a.realm == realm
                && a.algorithm.as_ref().map(|(k, _)| *k) == algorithm.as_ref().map(|(k, _)| *k)
        });
        let key = match self.auth.take() {
            Some(a) if reuse => a.key,
            _ => IntegrityKey::long_term(kind, &creds.username, realm, &creds.password),
        };
        self.auth = Some(AuthState {
            server,
            realm: realm.into(),
            nonce: nonce.into(),
            key,
            algorithm,
        });
        Ok(())
    }
}

/// Whether the STUN Security Features after a nonce cookie (4 base64 characters encoding 24
/// bits, bit 0 the most significant) have bit 0, "Password algorithms", set (RFC 8489 §18.1).
fn offers_password_algorithms(features: &str) -> bool {
    let sextet = match features.as_bytes().first() {
        Some(c @ b'A'..=b'Z') => c - b'A',
        Some(c @ b'a'..=b'z') => c - b'a' + 26,
        Some(c @ b'0'..=b'9') => c - b'0' + 52,
        Some(b'+') => 62,
        Some(b'/') => 63,
        _ => return false,
    };
    sextet & 0x20 != 0
}
