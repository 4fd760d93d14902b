//! A sans-IO TURN server: the allocation table behind `holepunch relay` (RFC 8656).
//!
//! Clients reach the server over UDP or TCP (the driver frames streams with
//! [`super::channel::frame_len`]); each allocation owns one relayed UDP socket, which the server
//! asks the driver for with [`ServerAction::BindRelay`] and releases with
//! [`ServerAction::CloseRelay`].
//!
//! Security, all on by default:
//! - long-term credentials (static users, and TURN REST credentials from a shared secret) with
//!   stateless nonces that expire (438 Stale Nonce);
//! - no answer to an unauthenticated request is larger than the request (no amplification);
//! - peers are filtered by [`PeerPolicy`]: loopback, private, link-local, CGNAT, multicast and
//!   the relay's own addresses are refused (403) unless allowed;
//! - data from a peer without a permission is dropped;
//! - per-user allocation quota (486), a table bound (508), bounded permissions and channels per
//!   allocation, and an optional per-allocation bandwidth cap.
//!
//! Every table is sized at construction or bounded by configuration; the data path (ChannelData,
//! Send and Data indications, peer datagrams) allocates nothing.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::net::{IpAddr, SocketAddr};

use hmac::{Hmac, Mac};
use sha1::Sha1;

use super::attr::{self, codes, types as turn_types};
use super::channel::{ChannelData, ChannelNumber, MAX_FRAME_LEN, looks_like_channel_data};
use super::credentials::{self, PASSWORD_LEN};
use super::policy::PeerPolicy;
use super::{
    ALLOCATE, CHANNEL_BIND, CHANNEL_LIFETIME_SECS, CREATE_PERMISSION, DATA,
    PERMISSION_LIFETIME_SECS, PROTOCOL_UDP, REFRESH, SEND, Transport,
};
use crate::rng::Rng;
use crate::stun::attr::types;
use crate::stun::{
    Attribute, Class, EncodeError, ErrorCode, IntegrityKey, Message, MessageBuilder, Method,
    PasswordAlgorithmKind, TransactionId,
};
use crate::time::{Duration, Instant};

/// The relay's policy and limits.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// REALM for long-term credentials.
    pub realm: String,
    /// Static users: username and password.
    pub users: Vec<(String, String)>,
    /// Shared secret for TURN REST credentials (`EXPIRY:USER`, base64 HMAC-SHA1 password).
    pub shared_secret: Option<Vec<u8>>,
    /// Unix time, in seconds, at the driver's `Instant::ZERO` (REST expiry is wall-clock time).
    pub unix_secs_at_zero: u64,
    /// Which peers may be relayed to.
    pub policy: PeerPolicy,
    /// Most allocations at once (508 beyond).
    pub max_allocations: usize,
    /// Most allocations per username (486 beyond).
    pub max_allocations_per_user: usize,
    /// Most permissions, and most channels, per allocation (508 beyond).
    pub max_peers_per_allocation: usize,
    /// Per-allocation relayed bytes per second in both directions; 0 = unlimited (coturn's
    /// default).
    pub bandwidth_bytes_per_sec: u64,
    /// Lifetime granted when the client asks for less (RFC 8656: 600 s).
    pub default_lifetime_secs: u32,
    /// Longest lifetime granted (coturn: 3600 s).
    pub max_lifetime_secs: u32,
    /// How long a nonce stays fresh (coturn's `stale-nonce`: 600 s).
    pub nonce_lifetime_secs: u32,
    /// SOFTWARE in authenticated responses.
    pub software: Option<&'static str>,
}

impl ServerConfig {
    /// A configuration with the given realm and coturn-like defaults.
    pub fn new(realm: &str) -> Self {
        ServerConfig {
            realm: realm.into(),
            users: Vec::new(),
            shared_secret: None,
            unix_secs_at_zero: 0,
            policy: PeerPolicy::default(),
            max_allocations: 4096,
            max_allocations_per_user: 64,
            max_peers_per_allocation: 64,
            bandwidth_bytes_per_sec: 0,
            default_lifetime_secs: 600,
            max_lifetime_secs: 3600,
            nonce_lifetime_secs: 600,
            software: Some("holepunch relay"),
        }
    }
}

/// Where a datagram came from or goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Via {
    /// The client-facing listener over this transport (for TCP: the connection to the
    /// client's address).
    Client(Transport),
    /// The relayed socket bound at this address.
    Relay(SocketAddr),
}

/// A datagram (or stream frame) for the driver to send: `out[..len]` to `to` via `via`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerTransmit {
    /// Which socket sends it.
    pub via: Via,
    /// The destination.
    pub to: SocketAddr,
    /// Its length in the caller's buffer.
    pub len: usize,
}

/// Identifies an allocation across its life (a table slot and a generation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AllocationId {
    slot: u32,
    generation: u32,
}

/// Socket work the server needs from its driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerAction {
    /// Bind a relayed UDP socket (IPv6 if `ipv6`) and report it with
    /// [`Server::handle_relay_bound`].
    BindRelay {
        /// The allocation it is for.
        id: AllocationId,
        /// Whether the client asked for an IPv6 relayed address.
        ipv6: bool,
        /// Whether the port must be even (EVEN-PORT, RFC 8656 §14.6).
        even_port: bool,
    },
    /// Close the relayed socket at this address: its allocation is gone.
    CloseRelay {
        /// The relayed address.
        relayed: SocketAddr,
    },
}

/// Counters for operators and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Allocations alive now.
    pub allocations: usize,
    /// Requests refused for credentials (401) or stale nonces (438).
    pub auth_failures: u64,
    /// Requests refused for a forbidden peer (403).
    pub forbidden_peers: u64,
    /// Datagrams dropped: no permission, no allocation, malformed, over the bandwidth cap, or
    /// an answer that would have been larger than its unauthenticated request.
    pub dropped: u64,
    /// Datagrams relayed (both directions).
    pub relayed: u64,
}

/// Outputs that may wait for `poll_transmit` at once: each input makes at most one.
const OUT_SLOTS: usize = 4;
/// Each output slot holds the largest frame plus a Data indication's overhead.
const OUT_SLOT_LEN: usize = MAX_FRAME_LEN + 64;
/// Length of a nonce: 6 bytes (3 of expiry, 3 of MAC) in base64. Short on purpose: a 401 with
/// FINGERPRINT (which coturn's `turnutils_uclient` insists on) and an 8-byte realm must fit in
/// the smallest Allocate real clients send (uclient's: 60 bytes) without amplifying. Anyone
/// can ask for a fresh nonce, so the MAC only stops a client from extending one's life; 24 bits
/// (one guess per request) do that.
const NONCE_LEN: usize = 8;
/// Bytes of raw nonce: expiry and MAC.
const NONCE_RAW_LEN: usize = 6;
/// The expiry is kept modulo 2^24 seconds (194 days) and compared wrap-aware.
const NONCE_CLOCK_MASK: u32 = 0x00FF_FFFF;

/// The TURN server state machine.
pub struct Server {
    config: ServerConfig,
    /// Static users' keys, derived once.
    users: BTreeMap<String, IntegrityKey>,
    nonce_key: Hmac<Sha1>,
    slots: Vec<Option<Allocation>>,
    free: Vec<u32>,
    generation: u32,
    by_client: BTreeMap<(Transport, SocketAddr), u32>,
    by_relay: BTreeMap<SocketAddr, u32>,
    per_user: BTreeMap<String, usize>,
    /// The earliest an allocation can expire (a lower bound: early wake-ups are harmless).
    next_expiry: Instant,
    actions: VecDeque<ServerAction>,
    out: Vec<u8>,
    out_queue: VecDeque<(Via, SocketAddr, usize, usize)>,
    out_next: usize,
    stats: ServerStats,
}

impl core::fmt::Debug for Server {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Server")
            .field("realm", &self.config.realm)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

struct Allocation {
    generation: u32,
    client: (Transport, SocketAddr),
    relayed: Option<SocketAddr>,
    username: String,
    key: IntegrityKey,
    allocate_tid: TransactionId,
    /// Whether the Allocate carried FINGERPRINT (its success response mirrors it).
    fingerprint: bool,
    lifetime: u32,
    expires: Instant,
    permissions: Vec<(IpAddr, Instant)>,
    channels: Vec<(ChannelNumber, SocketAddr, Instant)>,
    tokens: u64,
    refilled: Instant,
}

/// A reply to send: the error code, or success.
enum Outcome {
    Error(u16),
    Done,
}

impl Server {
    /// A server with `config`; `seed` keys the nonces (draw it from the OS in drivers).
    pub fn new(config: ServerConfig, seed: u64) -> Self {
        let users = config
            .users
            .iter()
            .map(|(u, p)| {
                let key = IntegrityKey::long_term(PasswordAlgorithmKind::Md5, u, &config.realm, p);
                (u.clone(), key)
            })
            .collect();
        let mut rng = Rng::from_seed(seed);
        let mut secret = [0u8; 32];
        rng.fill(&mut secret);
        let max = config.max_allocations.max(1);
        Server {
            users,
            nonce_key: hmac_key(&secret),
            slots: (0..max).map(|_| None).collect(),
            free: (0..max as u32).rev().collect(),
            generation: 0,
            by_client: BTreeMap::new(),
            by_relay: BTreeMap::new(),
            per_user: BTreeMap::new(),
            next_expiry: Instant::FAR_FUTURE,
            actions: VecDeque::with_capacity(2 * max),
            out: vec![0; OUT_SLOTS * OUT_SLOT_LEN],
            out_queue: VecDeque::with_capacity(OUT_SLOTS),
            out_next: 0,
            stats: ServerStats::default(),
            config,
        }
    }

    /// Counters.
    pub fn stats(&self) -> ServerStats {
        ServerStats {
            allocations: self.by_client.len(),
            ..self.stats
        }
    }

    /// Feeds one datagram (or one complete stream frame) that arrived `via` from `from`.
    pub fn handle_datagram(&mut self, now: Instant, via: Via, from: SocketAddr, data: &[u8]) {
        match via {
            Via::Client(transport) => self.handle_client(now, transport, from, data),
            Via::Relay(relayed) => self.handle_peer(now, relayed, from, data),
        }
    }

    /// The driver's answer to [`ServerAction::BindRelay`].
    pub fn handle_relay_bound(
        &mut self,
        now: Instant,
        id: AllocationId,
        bound: Option<SocketAddr>,
    ) {
        let Some(Some(a)) = self.slots.get(id.slot as usize) else {
            if let Some(relayed) = bound {
                self.actions.push_back(ServerAction::CloseRelay { relayed });
            }
            return;
        };
        if a.generation != id.generation || a.relayed.is_some() {
            if let Some(relayed) = bound {
                self.actions.push_back(ServerAction::CloseRelay { relayed });
            }
            return;
        }
        let Some(relayed) = bound else {
            let (tid, client, key, fp) = (a.allocate_tid, a.client, a.key.clone(), a.fingerprint);
            self.remove(id.slot);
            self.respond_error(
                client,
                ALLOCATE,
                tid,
                codes::INSUFFICIENT_CAPACITY,
                Some(&key),
                fp,
            );
            return;
        };
        self.by_relay.insert(relayed, id.slot);
        // The relay's own addresses are never peers (no relaying into itself).
        if !self.config.policy.own.contains(&relayed.ip()) && self.config.policy.own.len() < 64 {
            self.config.policy.own.push(relayed.ip());
        }
        if let Some(Some(a)) = self.slots.get_mut(id.slot as usize) {
            a.relayed = Some(relayed);
            a.expires = now + secs(a.lifetime);
            self.next_expiry = self.next_expiry.min(a.expires);
        }
        self.send_allocate_success(id.slot);
    }

    /// A TCP client's connection closed: its allocation goes with it (RFC 8656 §3.1).
    pub fn handle_connection_closed(&mut self, _now: Instant, client: SocketAddr) {
        if let Some(&slot) = self.by_client.get(&(Transport::Tcp, client)) {
            self.remove(slot);
        }
        if let Some(&slot) = self.by_client.get(&(Transport::Tls, client)) {
            self.remove(slot);
        }
    }

    /// Expires allocations whose lifetime has run out. Early calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now < self.next_expiry {
            return;
        }
        let mut next = Instant::FAR_FUTURE;
        for slot in 0..self.slots.len() {
            let Some(a) = &mut self.slots[slot] else {
                continue;
            };
            if a.relayed.is_some() && a.expires <= now {
                self.remove(slot as u32);
                continue;
            }
            a.permissions.retain(|(_, exp)| *exp > now);
            a.channels.retain(|(_, _, exp)| *exp > now);
            if a.relayed.is_some() {
                next = next.min(a.expires);
            }
        }
        self.next_expiry = next;
    }

    /// The next datagram to send, copied into `out` (at least 65,620 bytes guarantees a fit;
    /// a smaller buffer drops what does not fit).
    pub fn poll_transmit(&mut self, out: &mut [u8]) -> Option<ServerTransmit> {
        loop {
            let (via, to, slot, len) = self.out_queue.pop_front()?;
            if len > out.len() {
                self.stats.dropped += 1;
                continue;
            }
            let start = slot * OUT_SLOT_LEN;
            out[..len].copy_from_slice(&self.out[start..start + len]);
            return Some(ServerTransmit { via, to, len });
        }
    }

    /// The next socket action for the driver.
    pub fn poll_action(&mut self) -> Option<ServerAction> {
        self.actions.pop_front()
    }

    /// When `handle_timeout` is next needed; `None` while no allocation exists.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (self.next_expiry != Instant::FAR_FUTURE).then_some(self.next_expiry)
    }

    fn handle_client(&mut self, now: Instant, transport: Transport, from: SocketAddr, data: &[u8]) {
        if looks_like_channel_data(data) {
            return self.handle_channel_data(now, transport, from, data);
        }
        let Ok(msg) = Message::parse(data) else {
            self.stats.dropped += 1;
            return;
        };
        if msg.has_fingerprint() && msg.verify_fingerprint().is_err() {
            self.stats.dropped += 1;
            return;
        }
        match msg.class() {
            Class::Request => self.handle_request(now, (transport, from), &msg),
            Class::Indication if msg.method() == SEND => {
                self.handle_send(now, (transport, from), &msg)
            }
            _ => self.stats.dropped += 1,
        }
    }

    fn handle_channel_data(
        &mut self,
        now: Instant,
        transport: Transport,
        from: SocketAddr,
        data: &[u8],
    ) {
        let Ok(cd) = ChannelData::parse(data) else {
            self.stats.dropped += 1;
            return;
        };
        let Some(&slot) = self.by_client.get(&(transport, from)) else {
            self.stats.dropped += 1;
            return;
        };
        let Some(Some(a)) = self.slots.get_mut(slot as usize) else {
            return;
        };
        let peer = a
            .channels
            .iter()
            .find(|(c, _, exp)| *c == cd.channel && *exp > now)
            .map(|(_, p, _)| *p);
        let (Some(peer), Some(relayed)) = (peer, a.relayed) else {
            self.stats.dropped += 1;
            return;
        };
        if !has_permission(a, peer.ip(), now) || !take_tokens(a, &self.config, now, cd.data.len()) {
            self.stats.dropped += 1;
            return;
        }
        self.stats.relayed += 1;
        self.push_raw(Via::Relay(relayed), peer, cd.data);
    }

    fn handle_send(&mut self, now: Instant, client: (Transport, SocketAddr), msg: &Message<'_>) {
        let Some(&slot) = self.by_client.get(&client) else {
            self.stats.dropped += 1;
            return;
        };
        let peer = attr::xor_address_attr(msg, turn_types::XOR_PEER_ADDRESS).and_then(Result::ok);
        let (Some(peer), Some(payload)) = (peer, attr::data(msg)) else {
            self.stats.dropped += 1;
            return;
        };
        let Some(Some(a)) = self.slots.get_mut(slot as usize) else {
            return;
        };
        let Some(relayed) = a.relayed else { return };
        if !has_permission(a, peer.ip(), now) || !take_tokens(a, &self.config, now, payload.len()) {
            self.stats.dropped += 1;
            return;
        }
        self.stats.relayed += 1;
        self.push_raw(Via::Relay(relayed), peer, payload);
    }

    fn handle_peer(&mut self, now: Instant, relayed: SocketAddr, from: SocketAddr, data: &[u8]) {
        let Some(&slot) = self.by_relay.get(&relayed) else {
            self.stats.dropped += 1;
            return;
        };
        let Some(Some(a)) = self.slots.get_mut(slot as usize) else {
            return;
        };
        // A permission is the only thing that lets a peer in (RFC 8656 §9); the policy was
        // checked when it was installed.
        if !has_permission(a, from.ip(), now) || !take_tokens(a, &self.config, now, data.len()) {
            self.stats.dropped += 1;
            return;
        }
        let (transport, client) = a.client;
        let channel = a
            .channels
            .iter()
            .find(|(_, p, exp)| *p == from && *exp > now)
            .map(|(c, _, _)| *c);
        let Some(slot_index) = self.claim_out_slot() else {
            return;
        };
        let start = slot_index * OUT_SLOT_LEN;
        let buf = &mut self.out[start..start + OUT_SLOT_LEN];
        let len = match channel {
            Some(channel) => ChannelData { channel, data }
                .encode(buf, transport.is_stream())
                .ok(),
            None => data_indication(buf, from, data).ok(),
        };
        match len {
            Some(len) => {
                self.stats.relayed += 1;
                self.out_queue
                    .push_back((Via::Client(transport), client, slot_index, len));
            }
            None => self.stats.dropped += 1,
        }
    }

    fn handle_request(&mut self, now: Instant, client: (Transport, SocketAddr), msg: &Message<'_>) {
        let method = msg.method();
        let tid = msg.transaction_id();
        let fp = msg.has_fingerprint();
        let limit = msg.as_bytes().len();
        if method == Method::BINDING {
            // Unauthenticated, so only answered when the answer is no larger.
            let mapped = client.1;
            self.respond(
                client,
                method,
                tid,
                Class::SuccessResponse,
                None,
                fp,
                Some(limit),
                |b| b.add(&Attribute::XorMappedAddress(mapped)),
            );
            return;
        }
        if ![ALLOCATE, REFRESH, CREATE_PERMISSION, CHANNEL_BIND].contains(&method) {
            self.respond_limited_error(client, method, tid, 400, fp, limit);
            return;
        }
        // A retransmitted Allocate for an existing allocation gets the same answer again.
        if method == ALLOCATE {
            if let Some(&slot) = self.by_client.get(&client) {
                let same = matches!(&self.slots[slot as usize], Some(a) if a.allocate_tid == tid);
                if !same {
                    let key = self.slots[slot as usize].as_ref().map(|a| a.key.clone());
                    self.respond_error(
                        client,
                        method,
                        tid,
                        codes::ALLOCATION_MISMATCH,
                        key.as_ref(),
                        fp,
                    );
                } else if matches!(&self.slots[slot as usize], Some(a) if a.relayed.is_some()) {
                    self.send_allocate_success(slot);
                }
                return;
            }
        }
        let Some(key) = self.authenticate(now, client, msg) else {
            return;
        };
        if let Some(unknown) = msg.unknown_comprehension_required(attr::is_known).next() {
            self.respond(
                client,
                method,
                tid,
                Class::ErrorResponse,
                Some(&key),
                fp,
                None,
                |b| {
                    b.add(&Attribute::ErrorCode(ErrorCode::UNKNOWN_ATTRIBUTE))?;
                    b.add_unknown_attributes(&[unknown])
                },
            );
            return;
        }
        let outcome = match method {
            ALLOCATE => self.allocate(now, client, msg, &key),
            REFRESH => self.refresh(now, client, msg),
            CREATE_PERMISSION => self.create_permission(now, client, msg),
            _ => self.channel_bind(now, client, msg),
        };
        match outcome {
            Some(Outcome::Error(code)) => {
                self.respond_error(client, method, tid, code, Some(&key), fp)
            }
            Some(Outcome::Done) => {
                let lifetime = match method {
                    REFRESH => Some(
                        self.by_client
                            .get(&client)
                            .and_then(|&s| self.slots[s as usize].as_ref())
                            .map_or(0, |a| a.lifetime),
                    ),
                    _ => None,
                };
                self.respond(
                    client,
                    method,
                    tid,
                    Class::SuccessResponse,
                    Some(&key),
                    fp,
                    None,
                    |b| {
                        if let Some(l) = lifetime {
                            attr::add_lifetime(b, l)?;
                        }
                        Ok(())
                    },
                );
            }
            // Allocate answers once the relayed socket is bound.
            None => {}
        }
    }

    /// Checks the long-term credential of a request; answers 400/401/438 itself and returns
    /// `None` when the request must go no further.
    fn authenticate(
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

    fn allocate(
        &mut self,
        now: Instant,
        client: (Transport, SocketAddr),
        msg: &Message<'_>,
        key: &IntegrityKey,
    ) -> Option<Outcome> {
        match attr::requested_transport(msg) {
            None | Some(Err(_)) => return Some(Outcome::Error(400)),
            Some(Ok(p)) if p != PROTOCOL_UDP => {
                return Some(Outcome::Error(codes::UNSUPPORTED_TRANSPORT));
            }
            Some(Ok(_)) => {}
        }
        let ipv6 = match attr::requested_address_family(msg) {
            None => false,
            Some(Ok(0x01)) => false,
            Some(Ok(0x02)) => true,
            Some(_) => return Some(Outcome::Error(codes::ADDRESS_FAMILY_NOT_SUPPORTED)),
        };
        if msg.find(turn_types::RESERVATION_TOKEN).is_some() {
            // Port reservations (RFC 8656 §14.9) are not offered.
            return Some(Outcome::Error(codes::INSUFFICIENT_CAPACITY));
        }
        // EVEN-PORT's R bit asks for a reservation of the next port too: not offered either.
        let even_port = match msg.find(turn_types::EVEN_PORT) {
            None => false,
            Some(a) if a.value.first().is_some_and(|b| b & 0x80 != 0) => {
                return Some(Outcome::Error(codes::INSUFFICIENT_CAPACITY));
            }
            Some(_) => true,
        };
        let username = msg
            .text(types::USERNAME)
            .and_then(Result::ok)
            .unwrap_or_default();
        let used = self.per_user.get(username).copied().unwrap_or(0);
        if used >= self.config.max_allocations_per_user {
            return Some(Outcome::Error(codes::ALLOCATION_QUOTA_REACHED));
        }
        let Some(slot) = self.free.pop() else {
            return Some(Outcome::Error(codes::INSUFFICIENT_CAPACITY));
        };
        let lifetime = self.granted_lifetime(msg);
        self.generation = self.generation.wrapping_add(1);
        let peers = self.config.max_peers_per_allocation;
        self.slots[slot as usize] = Some(Allocation {
            generation: self.generation,
            client,
            relayed: None,
            username: username.into(),
            key: key.clone(),
            allocate_tid: msg.transaction_id(),
            fingerprint: msg.has_fingerprint(),
            lifetime,
            expires: Instant::FAR_FUTURE,
            permissions: Vec::with_capacity(peers),
            channels: Vec::with_capacity(peers),
            tokens: self.bucket_size(),
            refilled: now,
        });
        self.by_client.insert(client, slot);
        *self.per_user.entry(username.into()).or_insert(0) += 1;
        self.actions.push_back(ServerAction::BindRelay {
            id: AllocationId {
                slot,
                generation: self.generation,
            },
            ipv6,
            even_port,
        });
        None
    }

    fn refresh(
        &mut self,
        now: Instant,
        client: (Transport, SocketAddr),
        msg: &Message<'_>,
    ) -> Option<Outcome> {
        let Some(&slot) = self.by_client.get(&client) else {
            return Some(Outcome::Error(codes::ALLOCATION_MISMATCH));
        };
        if matches!(attr::lifetime(msg), Some(Ok(0))) {
            self.remove(slot);
            return Some(Outcome::Done);
        }
        let lifetime = self.granted_lifetime(msg);
        let Some(Some(a)) = self.slots.get_mut(slot as usize) else {
            return Some(Outcome::Error(437));
        };
        a.lifetime = lifetime;
        a.expires = now + secs(lifetime);
        Some(Outcome::Done)
    }

    fn create_permission(
        &mut self,
        now: Instant,
        client: (Transport, SocketAddr),
        msg: &Message<'_>,
    ) -> Option<Outcome> {
        let Some(&slot) = self.by_client.get(&client) else {
            return Some(Outcome::Error(codes::ALLOCATION_MISMATCH));
        };
        // All or nothing: check every peer before installing any (RFC 8656 §10.2).
        let mut count = 0;
        for peer in attr::xor_peer_addresses(msg) {
            let Ok(peer) = peer else {
                return Some(Outcome::Error(400));
            };
            if !self.config.policy.permits(peer.ip()) {
                self.stats.forbidden_peers += 1;
                return Some(Outcome::Error(codes::FORBIDDEN));
            }
            count += 1;
        }
        if count == 0 {
            return Some(Outcome::Error(400));
        }
        let max = self.config.max_peers_per_allocation;
        let Some(Some(a)) = self.slots.get_mut(slot as usize) else {
            return Some(Outcome::Error(437));
        };
        for peer in attr::xor_peer_addresses(msg).flatten() {
            if !install_permission(a, peer.ip(), now, max) {
                return Some(Outcome::Error(codes::INSUFFICIENT_CAPACITY));
            }
        }
        Some(Outcome::Done)
    }

    fn channel_bind(
        &mut self,
        now: Instant,
        client: (Transport, SocketAddr),
        msg: &Message<'_>,
    ) -> Option<Outcome> {
        let Some(&slot) = self.by_client.get(&client) else {
            return Some(Outcome::Error(codes::ALLOCATION_MISMATCH));
        };
        let channel = attr::channel_number(msg)
            .and_then(Result::ok)
            .and_then(ChannelNumber::new);
        let peer = attr::xor_address_attr(msg, turn_types::XOR_PEER_ADDRESS).and_then(Result::ok);
        let (Some(channel), Some(peer)) = (channel, peer) else {
            return Some(Outcome::Error(400));
        };
        if !self.config.policy.permits(peer.ip()) {
            self.stats.forbidden_peers += 1;
            return Some(Outcome::Error(codes::FORBIDDEN));
        }
        let max = self.config.max_peers_per_allocation;
        let Some(Some(a)) = self.slots.get_mut(slot as usize) else {
            return Some(Outcome::Error(437));
        };
        let expires = now + secs(CHANNEL_LIFETIME_SECS);
        // A channel is bound to one peer and a peer to one channel, for the binding's life.
        let existing = a
            .channels
            .iter()
            .position(|(c, p, exp)| (*c == channel || *p == peer) && *exp > now);
        match existing {
            Some(i) if a.channels[i].0 == channel && a.channels[i].1 == peer => {
                a.channels[i].2 = expires
            }
            Some(_) => return Some(Outcome::Error(400)),
            None => {
                a.channels.retain(|(_, _, exp)| *exp > now);
                if a.channels.len() >= max {
                    return Some(Outcome::Error(codes::INSUFFICIENT_CAPACITY));
                }
                a.channels.push((channel, peer, expires));
            }
        }
        if !install_permission(a, peer.ip(), now, max) {
            return Some(Outcome::Error(codes::INSUFFICIENT_CAPACITY));
        }
        Some(Outcome::Done)
    }

    /// RFC 8656 §7.2: min(requested, maximum), but never below the default.
    fn granted_lifetime(&self, msg: &Message<'_>) -> u32 {
        let requested = attr::lifetime(msg)
            .and_then(Result::ok)
            .unwrap_or(self.config.default_lifetime_secs);
        requested
            .min(self.config.max_lifetime_secs)
            .max(self.config.default_lifetime_secs)
    }

    fn bucket_size(&self) -> u64 {
        self.config.bandwidth_bytes_per_sec.max(OUT_SLOT_LEN as u64)
    }

    fn send_allocate_success(&mut self, slot: u32) {
        let Some(Some(a)) = self.slots.get(slot as usize) else {
            return;
        };
        let (client, tid, key, fp, lifetime) = (
            a.client,
            a.allocate_tid,
            a.key.clone(),
            a.fingerprint,
            a.lifetime,
        );
        let Some(relayed) = a.relayed else { return };
        self.respond(
            client,
            ALLOCATE,
            tid,
            Class::SuccessResponse,
            Some(&key),
            fp,
            None,
            |b| {
                attr::add_xor_address(b, turn_types::XOR_RELAYED_ADDRESS, relayed)?;
                attr::add_lifetime(b, lifetime)?;
                b.add(&Attribute::XorMappedAddress(client.1))
            },
        );
    }

    fn remove(&mut self, slot: u32) {
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

    fn unix_now(&self, now: Instant) -> u64 {
        self.config.unix_secs_at_zero + now.as_micros() / 1_000_000
    }

    /// A nonce: its expiry (seconds on the server's clock) and a MAC binding it to the client,
    /// so no nonce table is needed and a nonce cannot be replayed from another address.
    fn make_nonce(&self, now: Instant, client: SocketAddr, out: &mut [u8; NONCE_LEN]) {
        let expiry = (clock_secs(now) + self.config.nonce_lifetime_secs) & NONCE_CLOCK_MASK;
        let tag = self.nonce_tag(expiry, client);
        let mut raw = [0u8; NONCE_RAW_LEN];
        raw[..3].copy_from_slice(&expiry.to_be_bytes()[1..]);
        raw[3..].copy_from_slice(&tag[..3]);
        base64_encode(&raw, out);
    }

    fn nonce_fresh(&self, now: Instant, client: SocketAddr, nonce: &str) -> bool {
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

    /// 401 or 438 with REALM and a fresh NONCE, if it fits the request's size.
    #[allow(clippy::too_many_arguments)]
    fn challenge(
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

    fn respond_limited_error(
        &mut self,
        client: (Transport, SocketAddr),
        method: Method,
        tid: TransactionId,
        code: u16,
        fp: bool,
        limit: usize,
    ) {
        self.respond(
            client,
            method,
            tid,
            Class::ErrorResponse,
            None,
            fp,
            Some(limit),
            |b| b.add(&Attribute::ErrorCode(ErrorCode { code, reason: "" })),
        );
    }

    fn respond_error(
        &mut self,
        client: (Transport, SocketAddr),
        method: Method,
        tid: TransactionId,
        code: u16,
        key: Option<&IntegrityKey>,
        fp: bool,
    ) {
        self.respond(
            client,
            method,
            tid,
            Class::ErrorResponse,
            key,
            fp,
            None,
            |b| {
                b.add(&Attribute::ErrorCode(ErrorCode {
                    code,
                    reason: reason(code),
                }))
            },
        );
    }

    /// Builds a response into an output slot and queues it; with `limit`, drops it instead if
    /// it would be larger than that (the unauthenticated request's size).
    #[allow(clippy::too_many_arguments)]
    fn respond(
        &mut self,
        client: (Transport, SocketAddr),
        method: Method,
        tid: TransactionId,
        class: Class,
        key: Option<&IntegrityKey>,
        fingerprint: bool,
        limit: Option<usize>,
        body: impl Fn(&mut MessageBuilder<'_>) -> Result<(), EncodeError>,
    ) {
        let Some(slot) = self.claim_out_slot() else {
            return;
        };
        let start = slot * OUT_SLOT_LEN;
        let software = if key.is_some() {
            self.config.software
        } else {
            None
        };
        let buf = &mut self.out[start..start + OUT_SLOT_LEN];
        let mut build = |fingerprint: bool| {
            let mut b = MessageBuilder::new(&mut *buf, class, method, tid)?;
            body(&mut b)?;
            if let Some(s) = software {
                b.add(&Attribute::Software(s))?;
            }
            if let Some(key) = key {
                b.add_message_integrity(key)?;
            }
            if fingerprint {
                b.add_fingerprint()?;
            }
            Ok::<usize, EncodeError>(b.finish())
        };
        let mut built = build(fingerprint);
        // FINGERPRINT is optional in answers: drop it before dropping the answer.
        if let (Ok(len), Some(l)) = (built, limit) {
            if len > l && fingerprint {
                built = build(false);
            }
        }
        match built {
            Ok(len) if limit.is_none_or(|l| len <= l) => {
                self.out_queue
                    .push_back((Via::Client(client.0), client.1, slot, len));
            }
            _ => self.stats.dropped += 1,
        }
    }

    /// Queues `payload` as is (relayed data to a peer).
    fn push_raw(&mut self, via: Via, to: SocketAddr, payload: &[u8]) {
        let Some(slot) = self.claim_out_slot() else {
            return;
        };
        let start = slot * OUT_SLOT_LEN;
        self.out[start..start + payload.len()].copy_from_slice(payload);
        self.out_queue.push_back((via, to, slot, payload.len()));
    }

    /// The next free output slot; when all are waiting (the driver did not poll), the oldest
    /// output is dropped, as a full socket buffer would.
    fn claim_out_slot(&mut self) -> Option<usize> {
        let slot = self.out_next;
        self.out_next = (self.out_next + 1) % OUT_SLOTS;
        if let Some(pos) = self.out_queue.iter().position(|e| e.2 == slot) {
            self.out_queue.remove(pos);
            self.stats.dropped += 1;
        }
        Some(slot)
    }
}

fn has_permission(a: &Allocation, ip: IpAddr, now: Instant) -> bool {
    a.permissions.iter().any(|(p, exp)| *p == ip && *exp > now)
}

fn install_permission(a: &mut Allocation, ip: IpAddr, now: Instant, max: usize) -> bool {
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
fn take_tokens(a: &mut Allocation, config: &ServerConfig, now: Instant, bytes: usize) -> bool {
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

fn data_indication(buf: &mut [u8], peer: SocketAddr, data: &[u8]) -> Result<usize, EncodeError> {
    // Indications need no random id: clients ignore it.
    let mut b = MessageBuilder::new(buf, Class::Indication, DATA, TransactionId([0; 12]))?;
    attr::add_xor_address(&mut b, turn_types::XOR_PEER_ADDRESS, peer)?;
    attr::add_data(&mut b, data)?;
    Ok(b.finish())
}

fn secs(s: u32) -> Duration {
    Duration::from_secs(u64::from(s))
}

fn hmac_key(key: &[u8]) -> Hmac<Sha1> {
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

fn reason(code: u16) -> &'static str {
    match code {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        420 => "Unknown Attribute",
        437 => "Allocation Mismatch",
        438 => "Stale Nonce",
        440 => "Address Family not Supported",
        441 => "Wrong Credentials",
        442 => "Unsupported Transport Protocol",
        486 => "Allocation Quota Reached",
        508 => "Insufficient Capacity",
        _ => "",
    }
}
