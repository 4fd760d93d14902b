//! A sans-IO TURN client: one allocation on one server (RFC 8656).
//!
//! The client allocates a relayed address with long-term credentials, keeps it alive with
//! Refresh, installs a permission and a channel for every peer it is told about, keeps those
//! fresh (CreatePermission every 4 minutes, before RFC 8656's 5; ChannelBind every 9, before 10),
//! and wraps application data as ChannelData once a channel is bound, as a Send indication
//! before that or if binding fails. `close` deallocates (Refresh with LIFETIME 0).
//!
//! Over UDP the allocation lives on the NAT mapping between client and server: the server
//! knows the allocation by that 5-tuple (RFC 8656 §2.2). Refreshes come minutes apart, and once
//! a direct path wins nothing else may go to the server, so a NAT that forgets idle mappings
//! (RFC 4787 allows 2 minutes, real ones less) would move the next Refresh to a new port and
//! lose the allocation to a 437. The client therefore sends a STUN Binding indication (RFC 8489
//! §3, the keepalive STUN itself defines) whenever nothing went to the server for
//! [`ClientConfig::keepalive`].
//!
//! Requests run on the STUN transaction table ([`crate::stun::client::Client`]), which brings
//! RFC 8489 retransmission over UDP, the 401 → REALM/NONCE → retry flow, and 438 stale-nonce
//! retries. Over TCP and TLS requests are sent once and time out after 39.5 s (RFC 8489 §6.2.2).
//!
//! Pumped like every holepunch state machine: `handle_datagram` / `handle_timeout` in,
//! `poll_transmit` / `poll_event` / `poll_deadline` out, with the caller's `now`. The data path
//! (`send_to`, ChannelData and Data indications in `handle_datagram`) allocates nothing.
//!
//! This file holds the allocation's state and the pump verbs; `peers` owns each peer's
//! permission and channel, and `config` the public configuration, errors and events.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::net::SocketAddr;

use super::attr::{self, types as turn_types};
use super::channel::{ChannelData, ChannelNumber, looks_like_channel_data};
use super::{
    ALLOCATE, CHANNEL_BIND, CHANNEL_LIFETIME_SECS, CREATE_PERMISSION, DATA,
    PERMISSION_LIFETIME_SECS, PROTOCOL_UDP, REFRESH, SEND, Transport,
};
use crate::io::{Datagram, Deadline, TimerReason, Transmit};
use crate::stun::client::{
    Client as StunClient, ClientConfig as StunConfig, ClientError as StunError,
    ClientEvent as StunEvent, LongTermCredentials,
};
use crate::stun::{Class, EncodeError, Message, MessageBuilder, Method, TransactionId};
use crate::time::{Duration, Instant};

mod config;
mod peers;

pub use config::{
    ClientConfig, ClientError, ClientEvent, ClientStats, KEEPALIVE, MAX_QUEUED_EVENTS, Received,
    SOFTWARE, State, TurnError,
};
use peers::{Peer, Refresh};

/// How often a failed or refused refresh is retried when the table is busy.
const BUSY_RETRY: Duration = Duration::from_secs(1);
/// Refresh permissions this long after installing them (lifetime 300 s).
const PERMISSION_REFRESH: Duration = Duration::from_secs(PERMISSION_LIFETIME_SECS as u64 - 60);
/// Refresh channels this long after binding them (lifetime 600 s).
const CHANNEL_REFRESH: Duration = Duration::from_secs(CHANNEL_LIFETIME_SECS as u64 - 60);

/// A TURN client for one allocation.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    stun: StunClient,
    state: State,
    relayed: Option<SocketAddr>,
    mapped: Option<SocketAddr>,
    /// When the allocation expires and when to refresh it.
    expires: Instant,
    refresh_at: Instant,
    /// When anything last went to the server (keepalives are counted from it).
    last_sent: Instant,
    /// A keepalive is due: the next `poll_transmit` writes it.
    keepalive_due: bool,
    peers: Vec<Peer>,
    /// Transactions in flight and what they were for; bounded by the STUN table's size.
    pending: Vec<(TransactionId, Op)>,
    events: VecDeque<ClientEvent>,
    /// What the response being handled carried beyond what the STUN table reports.
    stash: Stash,
    /// The latest `now` an input gave: the deadline while output is pending.
    now: Instant,
    stats: ClientStats,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Allocate,
    Refresh,
    Deallocate,
    Permission(usize),
    Channel(usize),
}

#[derive(Clone, Copy, Debug, Default)]
struct Stash {
    relayed: Option<SocketAddr>,
    lifetime: Option<u32>,
}

impl Client {
    /// A client for `config`; `seed` drives transaction ids (draw it from the OS in drivers).
    pub fn new(config: ClientConfig, seed: u64) -> Self {
        let stream = config.transport.is_stream();
        let stun_config = StunConfig {
            // One send over streams, and RFC 8489's 39.5 s wait (79 × 500 ms).
            max_sends: if stream { 1 } else { 7 },
            last_wait_factor: if stream { 79 } else { 16 },
            max_transactions: 8 + 2 * config.max_peers.max(1),
            software: config.software,
            credentials: Some(LongTermCredentials {
                username: config.username.clone(),
                password: config.password.clone(),
            }),
            ..StunConfig::default()
        };
        let max_peers = config
            .max_peers
            .max(1)
            .min(usize::from(ChannelNumber::MAX.get() - ChannelNumber::MIN.get()) + 1);
        Client {
            stun: StunClient::new(stun_config.clone(), seed),
            pending: Vec::with_capacity(stun_config.max_transactions),
            peers: Vec::with_capacity(max_peers),
            events: VecDeque::with_capacity(config.max_events.max(1)),
            config: ClientConfig {
                max_peers,
                ..config
            },
            state: State::Idle,
            relayed: None,
            mapped: None,
            expires: Instant::FAR_FUTURE,
            refresh_at: Instant::FAR_FUTURE,
            last_sent: Instant::ZERO,
            keepalive_due: false,
            stash: Stash::default(),
            now: Instant::ZERO,
            stats: ClientStats::default(),
        }
    }

    /// The server this client talks to.
    pub fn server(&self) -> SocketAddr {
        self.config.server
    }

    /// The transport to the server.
    pub fn transport(&self) -> Transport {
        self.config.transport
    }

    /// Where the allocation stands.
    pub fn state(&self) -> State {
        self.state
    }

    /// The relayed address, once allocated.
    pub fn relayed_address(&self) -> Option<SocketAddr> {
        self.relayed.filter(|_| self.state == State::Allocated)
    }

    /// Our address as the server saw it, once allocated.
    pub fn mapped_address(&self) -> Option<SocketAddr> {
        self.mapped
    }

    /// The channel bound to `peer`, if its ChannelBind has succeeded.
    pub fn channel(&self, peer: SocketAddr) -> Option<ChannelNumber> {
        self.peers
            .iter()
            .find(|p| p.addr == peer && p.binding.is_ready())
            .map(|p| p.channel)
    }

    /// Starts the allocation (Allocate with REQUESTED-TRANSPORT UDP and LIFETIME).
    pub fn allocate(&mut self, now: Instant) -> Result<(), ClientError> {
        self.observe(now);
        if self.state != State::Idle {
            return Err(ClientError::AlreadyStarted);
        }
        self.start(now, Op::Allocate)?;
        self.state = State::Allocating;
        Ok(())
    }

    /// Adds `peer`: installs a permission for its IP and binds a channel to it, both kept
    /// fresh until `close`. Data can be sent to it at once (as Send indications until the
    /// channel is bound). Adding a known peer is a no-op that returns its channel.
    pub fn add_peer(
        &mut self,
        now: Instant,
        peer: SocketAddr,
    ) -> Result<ChannelNumber, ClientError> {
        self.observe(now);
        if let Some(p) = self.peers.iter().find(|p| p.addr == peer) {
            return Ok(p.channel);
        }
        if self.state != State::Allocated {
            return Err(ClientError::NotAllocated);
        }
        if self.peers.len() >= self.config.max_peers {
            return Err(ClientError::TooManyPeers);
        }
        let index = self.peers.len();
        // index < max_peers <= 4096, so the channel stays inside 0x4000..=0x4FFF.
        let channel = ChannelNumber::new(ChannelNumber::MIN.get() + index as u16)
            .ok_or(ClientError::TooManyPeers)?;
        self.peers.push(Peer {
            addr: peer,
            channel,
            permission: Refresh::Absent { retry_at: now },
            binding: Refresh::Absent { retry_at: now },
        });
        self.refresh_peers(now);
        Ok(channel)
    }

    /// Wraps `payload` for `peer` into `out` (ChannelData on a bound channel, else a Send
    /// indication) and returns the transmit to the server. `now` is when it is sent: it
    /// postpones the next keepalive.
    pub fn send_to(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<Transmit, ClientError> {
        if self.state != State::Allocated {
            return Err(ClientError::NotAllocated);
        }
        let p = self
            .peers
            .iter()
            .find(|p| p.addr == peer)
            .ok_or(ClientError::NoPermission)?;
        let len = if p.binding.is_ready() {
            let msg = ChannelData {
                channel: p.channel,
                data: payload,
            };
            msg.encode(out, self.config.transport.is_stream())?
        } else {
            // Indications need no random id: the server ignores it (RFC 8656 §11.1).
            let mut b = MessageBuilder::new(out, Class::Indication, SEND, TransactionId([0; 12]))?;
            attr::add_xor_address(&mut b, turn_types::XOR_PEER_ADDRESS, peer)?;
            attr::add_data(&mut b, payload)?;
            b.finish()
        };
        self.sent(now);
        Ok(Transmit {
            from: None,
            to: self.config.server,
            len,
        })
    }

    /// Releases the allocation (Refresh with LIFETIME 0); `Deallocated` follows.
    pub fn close(&mut self, now: Instant) {
        self.observe(now);
        for (id, _) in self.pending.drain(..) {
            self.stun.cancel(id);
        }
        if self.state == State::Allocated && self.start(now, Op::Deallocate).is_ok() {
            self.state = State::Closing;
            return;
        }
        if self.state != State::Closed {
            self.finish(ClientEvent::Deallocated);
        }
    }

    /// Feeds bytes received from `d.from`: a datagram over UDP, or one frame (see
    /// [`super::channel::frame_len`]) over TCP/TLS.
    pub fn handle_datagram<'a>(&mut self, now: Instant, d: Datagram<'a>) -> Received<'a> {
        self.observe(now);
        let (from, datagram) = (d.from, d.payload);
        // ChannelData and indications are trusted only from our server's address.
        if from != self.config.server {
            return Received::Unrecognized;
        }
        if looks_like_channel_data(datagram) {
            let Ok(msg) = ChannelData::parse(datagram) else {
                return Received::Consumed;
            };
            return match self.peers.iter().find(|p| p.channel == msg.channel) {
                Some(p) => Received::Data {
                    peer: p.addr,
                    payload: msg.data,
                },
                None => Received::Consumed,
            };
        }
        let Ok(msg) = Message::parse(datagram) else {
            return Received::Unrecognized;
        };
        if msg.class() == Class::Indication {
            if msg.method() != DATA || self.state != State::Allocated {
                return Received::Consumed;
            }
            let peer =
                attr::xor_address_attr(&msg, turn_types::XOR_PEER_ADDRESS).and_then(Result::ok);
            return match (peer, attr::data(&msg)) {
                (Some(peer), Some(payload))
                    if self.peers.iter().any(|p| p.addr.ip() == peer.ip()) =>
                {
                    Received::Data { peer, payload }
                }
                _ => Received::Consumed,
            };
        }
        self.stash = Stash {
            relayed: attr::xor_address_attr(&msg, turn_types::XOR_RELAYED_ADDRESS)
                .and_then(Result::ok),
            lifetime: attr::lifetime(&msg).and_then(Result::ok),
        };
        let consumed = self.stun.handle_datagram(now, d) == crate::io::Received::Consumed;
        self.drain_stun(now);
        self.stash = Stash::default();
        if consumed {
            Received::Consumed
        } else {
            Received::Unrecognized
        }
    }

    /// Runs timers: retransmissions, refreshes, expiry. Early calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.observe(now);
        self.stun.handle_timeout(now);
        self.drain_stun(now);
        if self.state != State::Allocated {
            return;
        }
        if now >= self.expires {
            self.fail(TurnError::Expired);
            return;
        }
        if now >= self.refresh_at {
            match self.start(now, Op::Refresh) {
                Ok(()) => self.refresh_at = Instant::FAR_FUTURE,
                Err(_) => self.refresh_at = now + BUSY_RETRY,
            }
        }
        self.refresh_peers(now);
        if self.keepalive_at().is_some_and(|at| now >= at) {
            self.keepalive_due = true;
        }
    }

    /// The next request, retransmission or keepalive to send, written into `out` (1280 bytes
    /// suffice).
    pub fn poll_transmit(&mut self, now: Instant, out: &mut [u8]) -> Option<Transmit> {
        if let Some(t) = self.stun.poll_transmit(now, out) {
            self.sent(now);
            return Some(t);
        }
        if !self.keepalive_due || self.state != State::Allocated {
            return None;
        }
        self.keepalive_due = false;
        let len = write_keepalive(out).ok()?;
        self.sent(now);
        Some(Transmit {
            from: None,
            to: self.config.server,
            len,
        })
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// When `handle_timeout` (or `poll_transmit`) is next needed, and why: the latest `now`
    /// it was given while an event or a keepalive waits to be polled; `None` when nothing is
    /// scheduled. Polling outputs never moves it.
    pub fn poll_deadline(&self) -> Option<Deadline> {
        let allocated = self.state == State::Allocated;
        if !self.events.is_empty() || (self.keepalive_due && allocated) {
            return Some(Deadline::new(self.now, TimerReason::OutputPending));
        }
        let mut next = self.stun.poll_deadline();
        let mut consider = |at: Instant, reason: TimerReason| {
            next = Deadline::earliest(next, Some(Deadline::new(at, reason)));
        };
        if allocated {
            consider(self.refresh_at, TimerReason::Refresh);
            consider(self.expires, TimerReason::Refresh);
            if let Some(at) = self.keepalive_at() {
                consider(at, TimerReason::Keepalive);
            }
            for p in &self.peers {
                consider(p.permission.due(), TimerReason::Refresh);
                consider(p.binding.due(), TimerReason::Refresh);
            }
        }
        next.filter(|d| d.at != Instant::FAR_FUTURE)
    }

    /// [`poll_deadline`](Self::poll_deadline)'s instant alone.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.poll_deadline().map(|d| d.at)
    }

    /// Counters of events dropped because the application did not poll them.
    pub fn stats(&self) -> ClientStats {
        self.stats
    }

    /// Every input with a time passes through here: it is the deadline while output waits.
    fn observe(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    /// When the next keepalive is due, if this allocation wants them.
    fn keepalive_at(&self) -> Option<Instant> {
        let interval = self.config.keepalive?;
        if self.state != State::Allocated || self.config.transport.is_stream() {
            return None;
        }
        Some(self.last_sent + interval)
    }

    /// Notes that something went to the server at `now`: the mapping is fresh.
    fn sent(&mut self, now: Instant) {
        self.last_sent = self.last_sent.max(now);
        self.keepalive_due = false;
    }

    /// Starts the request for `op`.
    fn start(&mut self, now: Instant, op: Op) -> Result<(), ClientError> {
        let server = self.config.server;
        let lifetime = self.config.lifetime_secs;
        let peer = match op {
            Op::Permission(i) | Op::Channel(i) => Some(self.peers[i]),
            _ => None,
        };
        let result = match op {
            Op::Allocate => self.stun.request(now, server, ALLOCATE, |b| {
                attr::add_requested_transport(b, PROTOCOL_UDP)?;
                attr::add_lifetime(b, lifetime)
            }),
            Op::Refresh => self
                .stun
                .request(now, server, REFRESH, |b| attr::add_lifetime(b, lifetime)),
            Op::Deallocate => self
                .stun
                .request(now, server, REFRESH, |b| attr::add_lifetime(b, 0)),
            Op::Permission(_) => {
                let addr = peer.map(|p| p.addr).unwrap_or(server);
                self.stun.request(now, server, CREATE_PERMISSION, |b| {
                    attr::add_xor_address(b, turn_types::XOR_PEER_ADDRESS, addr)
                })
            }
            Op::Channel(_) => {
                let (addr, channel) = peer
                    .map(|p| (p.addr, p.channel))
                    .unwrap_or((server, ChannelNumber::MIN));
                self.stun.request(now, server, CHANNEL_BIND, |b| {
                    attr::add_channel_number(b, channel)?;
                    attr::add_xor_address(b, turn_types::XOR_PEER_ADDRESS, addr)
                })
            }
        };
        match result {
            Ok(id) => {
                self.pending.push((id, op));
                Ok(())
            }
            Err(StunError::Encode(e)) => Err(ClientError::Encode(e)),
            Err(_) => Err(ClientError::Busy),
        }
    }

    /// Turns finished STUN transactions into TURN state changes and events.
    fn drain_stun(&mut self, now: Instant) {
        while let Some(event) = self.stun.poll_event() {
            let (id, outcome) = match event {
                StunEvent::Succeeded {
                    id, mapped, rtt, ..
                } => (id, Ok((mapped, rtt))),
                StunEvent::Failed { id, error, .. } => (id, Err(TurnError::from(error))),
            };
            let Some(at) = self.pending.iter().position(|(p, _)| *p == id) else {
                continue;
            };
            let (_, op) = self.pending.swap_remove(at);
            self.complete(now, op, outcome);
        }
    }

    fn complete(
        &mut self,
        now: Instant,
        op: Op,
        outcome: Result<(Option<SocketAddr>, Duration), TurnError>,
    ) {
        let granted = self.stash.lifetime.unwrap_or(self.config.lifetime_secs);
        match (op, outcome) {
            (Op::Allocate, Ok((mapped, rtt))) => {
                let Some(relayed) = self.stash.relayed else {
                    return self.fail(TurnError::MalformedResponse);
                };
                self.state = State::Allocated;
                self.relayed = Some(relayed);
                self.mapped = mapped;
                let lifetime = self.schedule_refresh(now, granted);
                self.push_event(ClientEvent::Allocated {
                    relayed,
                    mapped,
                    lifetime,
                    rtt,
                });
            }
            (Op::Refresh, Ok(_)) => {
                let lifetime = self.schedule_refresh(now, granted);
                self.push_event(ClientEvent::Refreshed { lifetime });
            }
            (Op::Deallocate, _) => self.finish(ClientEvent::Deallocated),
            (Op::Allocate | Op::Refresh, Err(error)) => self.fail(error),
            (Op::Permission(i), outcome) => {
                let Some(p) = self.peers.get_mut(i) else {
                    return;
                };
                let peer = p.addr;
                match outcome {
                    Ok(_) => {
                        p.permission = Refresh::Ready {
                            refresh_at: now + PERMISSION_REFRESH,
                        };
                        self.push_event(ClientEvent::PermissionCreated { peer: peer.ip() });
                    }
                    Err(error) => {
                        p.permission = Refresh::Absent {
                            retry_at: Instant::FAR_FUTURE,
                        };
                        self.push_event(ClientEvent::PeerFailed { peer, error });
                    }
                }
            }
            (Op::Channel(i), outcome) => {
                let Some(p) = self.peers.get_mut(i) else {
                    return;
                };
                let (peer, channel) = (p.addr, p.channel);
                match outcome {
                    Ok(_) => {
                        p.binding = Refresh::Ready {
                            refresh_at: now + CHANNEL_REFRESH,
                        };
                        self.push_event(ClientEvent::ChannelBound { peer, channel });
                    }
                    Err(error) => {
                        // Send indications keep working without the channel.
                        p.binding = Refresh::Absent {
                            retry_at: Instant::FAR_FUTURE,
                        };
                        self.push_event(ClientEvent::PeerFailed { peer, error });
                    }
                }
            }
        }
    }

    /// Records a granted lifetime and schedules the Refresh a minute before it ends (or at
    /// half of it when it is shorter than two minutes).
    fn schedule_refresh(&mut self, now: Instant, granted_secs: u32) -> Duration {
        let lifetime = Duration::from_secs(u64::from(granted_secs));
        let margin = Duration::from_secs(60).min(lifetime / 2);
        self.expires = now + lifetime;
        self.refresh_at = now + (lifetime - margin);
        lifetime
    }

    /// Queues an event; an application that never polls loses the oldest, not memory.
    fn push_event(&mut self, event: ClientEvent) {
        if self.events.len() >= self.config.max_events.max(1) {
            self.events.pop_front();
            self.stats.events_dropped += 1;
        }
        self.events.push_back(event);
    }

    fn fail(&mut self, error: TurnError) {
        for (id, _) in self.pending.drain(..) {
            self.stun.cancel(id);
        }
        self.finish(ClientEvent::Failed { error });
    }

    fn finish(&mut self, event: ClientEvent) {
        self.state = State::Closed;
        self.relayed = None;
        self.expires = Instant::FAR_FUTURE;
        self.refresh_at = Instant::FAR_FUTURE;
        self.push_event(event);
    }
}

/// Writes the keepalive: a Binding indication with FINGERPRINT (RFC 8489 §3), which servers
/// answer with nothing. Its transaction id is zero: no answer is matched to it.
fn write_keepalive(out: &mut [u8]) -> Result<usize, EncodeError> {
    let mut b = MessageBuilder::new(
        out,
        Class::Indication,
        Method::BINDING,
        TransactionId([0; 12]),
    )?;
    b.add_fingerprint()?;
    Ok(b.finish())
}
