//! One allocation's state (its permissions, channels, lifetime and bandwidth tokens) and its
//! place in the table: the checks the data path makes, and removal.

use super::*;

pub(super) struct Allocation {
    pub(super) generation: u32,
    pub(super) client: (Transport, SocketAddr),
    pub(super) relayed: Option<SocketAddr>,
    pub(super) username: String,
    pub(super) key: IntegrityKey,
    pub(super) allocate_tid: TransactionId,
    /// Whether the Allocate carried FINGERPRINT (its success response mirrors it).
    pub(super) fingerprint: bool,
    pub(super) lifetime: u32,
    pub(super) expires: Instant,
    pub(super) permissions: Vec<(IpAddr, Instant)>,
    pub(super) channels: Vec<(ChannelNumber, SocketAddr, Instant)>,
    pub(super) tokens: u64,
    pub(super) refilled: Instant,
}

impl Server {
    pub(super) fn remove(&mut self, slot: u32) {
        let Some(a) = self.slots.get_mut(slot as usize).and_then(Option::take) else {
            return;
        };
        self.by_client.remove(&a.client);
        if let Some(relayed) = a.relayed {
            self.by_relay.remove(&relayed);
            self.actions.push_back(ServerAction::CloseRelay { relayed });
        }
        if let Some(n) = self.per_user.get_mut(a.username.as_str()) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_user.remove(a.username.as_str());
            }
        }
        self.free.push(slot);
    }

    pub(super) fn bucket_size(&self) -> u64 {
        self.config.bandwidth_bytes_per_sec.max(OUT_SLOT_LEN as u64)
    }
}

pub(super) fn has_permission(a: &Allocation, ip: IpAddr, now: Instant) -> bool {
    a.permissions.iter().any(|(p, exp)| *p == ip && *exp > now)
}

pub(super) fn install_permission(a: &mut Allocation, ip: IpAddr, now: Instant, max: usize) -> bool {
    let expires = now + secs(PERMISSION_LIFETIME_SECS);
    if let Some(p) = a.permissions.iter_mut().find(|(p, _)| *p == ip) {
        p.1 = expires;
        return true;
    }
    a.permissions.retain(|(_, exp)| *exp > now);
    if a.permissions.len() >= max {
        return false;
    }
    a.permissions.push((ip, expires));
    true
}

/// Token bucket: refills at the configured rate, holds at most one second of it (and at least
/// one full frame, so the largest datagram can pass).
pub(super) fn take_tokens(
    a: &mut Allocation,
    config: &ServerConfig,
    now: Instant,
    bytes: usize,
) -> bool {
    let rate = config.bandwidth_bytes_per_sec;
    if rate == 0 {
        return true;
    }
    let cap = rate.max(OUT_SLOT_LEN as u64);
    let elapsed = (now - a.refilled).as_micros();
    let refill =
        u64::try_from(elapsed.saturating_mul(u128::from(rate)) / 1_000_000).unwrap_or(u64::MAX);
    if refill > 0 {
        a.tokens = a.tokens.saturating_add(refill).min(cap);
        a.refilled = now;
    }
    let bytes = bytes as u64;
    if a.tokens < bytes {
        return false;
    }
    a.tokens -= bytes;
    true
}
