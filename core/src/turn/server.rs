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

mod allocation;
mod auth;
mod data;
mod nonce;
mod output;
mod requests;

use allocation::{Allocation, has_permission, install_permission, take_tokens};
use nonce::{NONCE_LEN, hmac_key};

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
            // A client's keepalive (RFC 8489 §3): it has done its job by arriving.
            Class::Indication if msg.method() == Method::BINDING => {}
            _ => self.stats.dropped += 1,
        }
    }
}

fn secs(s: u32) -> Duration {
    Duration::from_secs(u64::from(s))
}
