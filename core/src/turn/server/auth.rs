//! Long-term credentials: checking a request's MESSAGE-INTEGRITY against a static or TURN
//! REST user's key, and the 401/438 challenges (never larger than the request).

use super::*;

impl Server {
    /// Checks the long-term credential of a request; answers 400/401/438 itself and returns
    /// `None` when the request must go no further.
    pub(super) fn authenticate(
        &mut self,
        now: Instant,
        client: (Transport, SocketAddr),
        msg: &Message<'_>,
    ) -> Option<IntegrityKey> {
        let (method, tid, fp) = (msg.method(), msg.transaction_id(), msg.has_fingerprint());
        let limit = msg.as_bytes().len();
        if !msg.has_integrity() {
            self.challenge(now, client, method, tid, 401, fp, limit);
            return None;
        }
        let text = |attr| msg.text(attr).and_then(Result::ok);
        let (Some(username), Some(realm), Some(nonce)) = (
            text(types::USERNAME),
            text(types::REALM),
            text(types::NONCE),
        ) else {
            self.respond_limited_error(client, method, tid, 400, fp, limit);
            return None;
        };
        if realm != self.config.realm || !self.nonce_fresh(now, client.1, nonce) {
            self.stats.auth_failures += 1;
            self.challenge(now, client, method, tid, 438, fp, limit);
            return None;
        }
        let existing = self
            .by_client
            .get(&client)
            .and_then(|&s| self.slots[s as usize].as_ref());
        let key = match existing {
            Some(a) if a.username == username => Some(a.key.clone()),
            // Only the user who made an allocation may touch it (RFC 8656 §5: 441).
            Some(a) => {
                let key = a.key.clone();
                if msg.verify_integrity(&key).is_err() {
                    self.stats.auth_failures += 1;
                    self.challenge(now, client, method, tid, 401, fp, limit);
                } else {
                    self.respond_error(
                        client,
                        method,
                        tid,
                        codes::WRONG_CREDENTIALS,
                        Some(&key),
                        fp,
                    );
                }
                return None;
            }
            None => self.user_key(now, username),
        };
        match key {
            Some(key) if msg.verify_integrity(&key).is_ok() => Some(key),
            _ => {
                self.stats.auth_failures += 1;
                self.challenge(now, client, method, tid, 401, fp, limit);
                None
            }
        }
    }

    /// The key for `username`: a static user's, or a REST user's that has not expired.
    fn user_key(&self, now: Instant, username: &str) -> Option<IntegrityKey> {
        if let Some(key) = self.users.get(username) {
            return Some(key.clone());
        }
        let secret = self.config.shared_secret.as_ref()?;
        let expiry = credentials::expiry_of(username)?;
        if expiry <= self.unix_now(now) {
            return None;
        }
        let mut password = [0u8; PASSWORD_LEN];
        let password = credentials::password_for(secret, username, &mut password);
        Some(IntegrityKey::long_term(
            PasswordAlgorithmKind::Md5,
            username,
            &self.config.realm,
            password,
        ))
    }

    fn unix_now(&self, now: Instant) -> u64 {
        self.config.unix_secs_at_zero + now.as_micros() / 1_000_000
    }

    /// 401 or 438 with REALM and a fresh NONCE, if it fits the request's size.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn challenge(
        &mut self,
        now: Instant,
        client: (Transport, SocketAddr),
        method: Method,
        tid: TransactionId,
        code: u16,
        fp: bool,
        limit: usize,
    ) {
        let mut nonce = [0u8; NONCE_LEN];
        self.make_nonce(now, client.1, &mut nonce);
        let realm = core::mem::take(&mut self.config.realm);
        self.respond(
            client,
            method,
            tid,
            Class::ErrorResponse,
            None,
            fp,
            Some(limit),
            |b| {
                b.add(&Attribute::ErrorCode(ErrorCode { code, reason: "" }))?;
                b.add(&Attribute::Realm(&realm))?;
                b.add(&Attribute::Nonce(
                    core::str::from_utf8(&nonce).unwrap_or_default(),
                ))
            },
        );
        self.config.realm = realm;
    }
}
