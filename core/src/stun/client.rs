//! STUN client transactions: RFC 8489 retransmission, response matching and the long-term
//! credential flow.
//!
//! The [`Client`] holds a fixed number of transactions in the core's one transaction table
//! ([`Store`]), each with its encoded request, so retransmissions copy bytes and allocate
//! nothing. It is pumped like every holepunch state machine:
//! `handle_datagram`/`handle_timeout` in; `poll_transmit`, `poll_event`, `poll_timeout`
//! out. A transaction ends in exactly one [`ClientEvent`].
//!
//! Retransmission (RFC 8489 §6.2.1): over UDP a request is sent at 0, RTO, 3·RTO, 7·RTO, … up to
//! Rc sends, then the client waits Rm·RTO after the last one before giving up. With the defaults
//! (RTO 500 ms, Rc 7, Rm 16) that is sends at 0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s and a timeout
//! at 39.5 s.
//!
//! Long-term credentials (RFC 8489 §9.2): a request goes out without credentials; a 401 with
//! REALM and NONCE makes the client derive the key once and retry as a new transaction; 438
//! (stale nonce) retries with the fresh nonce; 300 follows ALTERNATE-SERVER. Each is bounded so
//! a hostile server cannot keep a transaction alive forever. What a 401 taught is cached for
//! that server only (§9.2.3): first requests to other servers carry no credentials.
//!
//! This file holds the transaction table and the pump verbs; `auth` owns the long-term
//! credential state, and `config` the public configuration, options, errors and events.

use alloc::vec;
use alloc::vec::Vec;
use core::net::SocketAddr;

use super::attr::{Attribute, PasswordAlgorithm, PasswordAlgorithms, types};
use super::message::{EncodeError, Message, MessageBuilder, read_attribute};
use super::transaction::{Attached, LastWait, Schedule, Store};
use super::{Class, Method, TransactionId};
use crate::demux::{self, Kind};
use crate::io::{Datagram, Deadline, Received, TimerReason, Transmit};
use crate::rng::Rng;
use crate::time::Instant;

mod auth;
mod config;

use auth::AuthState;
pub use config::{
    BindingOptions, ClientConfig, ClientError, ClientEvent, LongTermCredentials, TransactionError,
};

/// Bounds on the recovery flows, so a hostile server cannot loop us.
const MAX_AUTH_RETRIES: u8 = 2;
const MAX_REDIRECTS: u8 = 2;

/// A STUN client: a fixed table of transactions.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    rng: Rng,
    /// The transactions: each entry's wire id, server (`to`), timing, request bytes, and the
    /// key its request on the wire was signed with, if any: its responses must verify with
    /// exactly that key (RFC 8489 §9.2.5), whatever was learnt since.
    slots: Store<Slot>,
    /// `max_transactions × max_request_len` bytes: each slot's body (the caller's attributes),
    /// from which every (re)build of its request starts.
    bodies: Vec<u8>,
    auth: Option<AuthState>,
    completed: u64,
    /// The latest `now` an input gave: the deadline while an event waits to be polled.
    now: Instant,
}

/// What the client attaches to each transaction of its [`Store`] (the wire id, the server,
/// the timing and the request bytes are the store's).
#[derive(Debug, Clone, Copy)]
struct Slot {
    state: SlotState,
    /// The id the caller knows; stays fixed across 401/438/300 retries (the store's is the
    /// one on the wire now: a retry is a new transaction, RFC 8489 §9.2.3).
    id: TransactionId,
    method: Method,
    len: usize,
    body_len: usize,
    auth_retries: u8,
    redirects: u8,
    /// The servers this transaction was redirected away from (RFC 8489 §10 forbids going back).
    visited: [SocketAddr; MAX_REDIRECTS as usize],
}

impl Attached for Slot {
    fn is_free(&self) -> bool {
        self.state == SlotState::Free
    }

    fn in_flight(&self) -> bool {
        self.state == SlotState::Active
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Free,
    Active,
    /// Finished; the event waits for `poll_event`, ordered by `seq`.
    Done {
        event: ClientEvent,
        seq: u64,
    },
}

impl Client {
    /// A client with `config`; `seed` drives transaction ids (draw it from the OS in drivers).
    pub fn new(mut config: ClientConfig, seed: u64) -> Self {
        let n = config.max_transactions.max(1);
        // Rc = 0 would leave a transaction that never sends and never times out.
        config.max_sends = config.max_sends.max(1);
        let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
        let slot = Slot {
            state: SlotState::Free,
            id: TransactionId::default(),
            method: Method::BINDING,
            len: 0,
            body_len: 0,
            auth_retries: 0,
            redirects: 0,
            visited: [unspecified; MAX_REDIRECTS as usize],
        };
        let slots = Store::new(n, slot, schedule(&config), config.max_request_len);
        Client {
            bodies: vec![0; n * config.max_request_len],
            config,
            rng: Rng::from_seed(seed),
            slots,
            auth: None,
            completed: 0,
            now: Instant::ZERO,
        }
    }

    /// Starts a Binding request to `server`.
    pub fn binding(
        &mut self,
        now: Instant,
        server: SocketAddr,
        options: BindingOptions,
    ) -> Result<TransactionId, ClientError> {
        // The client adds SOFTWARE (before the body) and FINGERPRINT (after it) itself.
        let software = self
            .config
            .software
            .map_or(0, |s| 4 + super::attr::padded(s.len()));
        let target = self.config.pad_requests_to.saturating_sub(software + 8);
        self.request(now, server, Method::BINDING, |b| {
            if options.change_ip || options.change_port {
                b.add(&Attribute::ChangeRequest {
                    change_ip: options.change_ip,
                    change_port: options.change_port,
                })?;
            }
            if let Some(port) = options.response_port {
                b.add(&Attribute::ResponsePort(port))?;
            }
            // PADDING costs at least its 4-byte header, so any shortfall at all takes one.
            if b.len() < target {
                b.add_padding((target - b.len()).saturating_sub(4))?;
            }
            Ok(())
        })
    }

    /// Starts a request of any method; `body` adds its attributes (the client adds SOFTWARE,
    /// credentials, integrity and FINGERPRINT itself).
    pub fn request(
        &mut self,
        now: Instant,
        server: SocketAddr,
        method: Method,
        body: impl FnOnce(&mut MessageBuilder<'_>) -> Result<(), EncodeError>,
    ) -> Result<TransactionId, ClientError> {
        self.observe(now);
        let index = self
            .slots
            .vacant()
            .map_err(|_| ClientError::TooManyTransactions)?;
        let id = TransactionId::random(&mut self.rng);
        // Encode the caller's attributes once into the slot's body area; every (re)build of
        // the request copies them from there.
        let body_len = {
            let area = self.body_area(index);
            let mut b = MessageBuilder::new(area, Class::Request, method, id)?;
            body(&mut b)?;
            b.finish() - super::HEADER_LEN
        };
        let entry = &mut self.slots[index];
        entry.to = server;
        let slot = &mut entry.data;
        slot.id = id;
        slot.method = method;
        slot.body_len = body_len;
        slot.auth_retries = 0;
        slot.redirects = 0;
        self.send_new(index, now, id)?;
        Ok(id)
    }

    /// Abandons a transaction: no event will be reported for it.
    pub fn cancel(&mut self, id: TransactionId) {
        for e in self.slots.iter_mut() {
            let s = &mut e.data;
            if s.id == id && s.state != SlotState::Free {
                s.state = SlotState::Free;
            }
        }
    }

    /// Feeds a datagram received on the client's socket: [`Received::Consumed`] for a response
    /// to one of our transactions, [`Received::AppData`] for anything that is not STUN (RFC
    /// 7983), and [`Received::Unrecognized`] for STUN that is not ours, left for the caller.
    pub fn handle_datagram<'a>(&mut self, now: Instant, d: Datagram<'a>) -> Received<'a> {
        self.observe(now);
        if demux::classify(d.payload) == Kind::Stun && self.handle_stun(now, d.from, d.payload) {
            Received::Consumed
        } else {
            Received::unclaimed(d)
        }
    }

    /// Whether `datagram` was a response to one of our transactions (and was handled).
    fn handle_stun(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) -> bool {
        let Ok(msg) = Message::parse(datagram) else {
            return false;
        };
        if !matches!(msg.class(), Class::SuccessResponse | Class::ErrorResponse) {
            return false;
        }
        let wire_id = msg.transaction_id();
        let Some(index) = self.slots.find(wire_id) else {
            return false;
        };
        if msg.method() != self.slots[index].data.method
            || (msg.has_fingerprint() && msg.verify_fingerprint().is_err())
        {
            return false;
        }
        // A response to an authenticated request must prove it knows the key; one that does
        // not is discarded as if never received (RFC 8489 §9.2.5, unreliable transport), so
        // an off-path forger cannot end or redirect the transaction.
        if let Some(key) = self.slots.key(index) {
            let verified = msg.verify_integrity(key).is_ok();
            let challenge =
                msg.class() == Class::ErrorResponse && matches!(error_code(&msg), 401 | 438);
            if !verified && !challenge {
                return true;
            }
        }
        match msg.class() {
            Class::SuccessResponse => self.succeed(index, now, from, &msg),
            _ => self.handle_error(index, now, &msg),
        }
        true
    }

    /// Retires transactions whose last wait has passed. Early calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.observe(now);
        for i in 0..self.slots.len() {
            if self.slots.is_expired(i, now) {
                self.finish_failed(i, TransactionError::TimedOut);
            }
        }
    }

    /// The next datagram to send, written into `out` (at least `max_request_len` bytes).
    pub fn poll_transmit(&mut self, now: Instant, out: &mut [u8]) -> Option<Transmit> {
        let index = self.slots.due(now)?;
        let len = self.slots[index].data.len;
        if out.len() < len {
            return None;
        }
        out[..len].copy_from_slice(self.slots.request(index, len));
        self.slots.sent(index, now);
        Some(Transmit {
            from: None,
            to: self.slots[index].to,
            len,
        })
    }

    /// The next finished transaction, oldest first.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        let (index, event) = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match e.data.state {
                SlotState::Done { event, seq } => Some((seq, i, event)),
                _ => None,
            })
            .min_by_key(|(seq, _, _)| *seq)
            .map(|(_, i, e)| (i, e))?;
        self.slots[index].data.state = SlotState::Free;
        Some(event)
    }

    /// When the client next needs `handle_timeout` or `poll_transmit`, and why: the latest
    /// `now` it was given while a finished transaction's event waits to be polled, `now` or
    /// earlier while a send is due, `None` when idle. Polling outputs never moves it.
    pub fn poll_deadline(&self) -> Option<Deadline> {
        if self
            .slots
            .iter()
            .any(|e| matches!(e.data.state, SlotState::Done { .. }))
        {
            return Some(Deadline::new(self.now, TimerReason::OutputPending));
        }
        self.slots.deadline()
    }

    /// [`poll_deadline`](Self::poll_deadline)'s instant alone.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.poll_deadline().map(|d| d.at)
    }

    /// Whether any transaction is still in flight.
    pub fn is_idle(&self) -> bool {
        !self.slots.iter().any(|e| e.data.in_flight())
    }

    /// Every input with a time passes through here: it is the deadline while output waits.
    fn observe(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    fn body_area(&mut self, index: usize) -> &mut [u8] {
        let n = self.config.max_request_len;
        &mut self.bodies[index * n..(index + 1) * n]
    }

    /// (Re)builds the slot's request under a fresh wire id and schedules its first send.
    fn send_new(
        &mut self,
        index: usize,
        now: Instant,
        wire_id: TransactionId,
    ) -> Result<(), EncodeError> {
        let n = self.config.max_request_len;
        let slot = self.slots[index].data;
        let (method, body_len) = (slot.method, slot.body_len);
        let server = self.slots[index].to;
        let body_start = index * n + super::HEADER_LEN;
        let body = &self.bodies[body_start..body_start + body_len];
        let out = self.slots.request_area(index);
        let mut b = MessageBuilder::new(out, Class::Request, method, wire_id)?;
        if let Some(s) = self.config.software {
            b.add(&Attribute::Software(s))?;
        }
        b.add_raw_attributes(body)?;
        let mut key = None;
        let auth = self.auth.as_ref().filter(|a| a.server == server);
        if let (Some(auth), Some(creds)) = (auth, &self.config.credentials) {
            b.add(&Attribute::Username(&creds.username))?;
            b.add(&Attribute::Realm(&auth.realm))?;
            b.add(&Attribute::Nonce(&auth.nonce))?;
            if let Some((kind, offered)) = &auth.algorithm {
                b.add(&Attribute::PasswordAlgorithms(PasswordAlgorithms::Wire(
                    offered,
                )))?;
                b.add(&Attribute::PasswordAlgorithm(PasswordAlgorithm {
                    algorithm: kind.number(),
                    params: &[],
                }))?;
                b.add_message_integrity_sha256(&auth.key)?;
            } else {
                b.add_message_integrity(&auth.key)?;
            }
            key = Some(auth.key.clone());
        }
        b.add_fingerprint()?;
        let len = b.finish();
        let s = &mut self.slots[index].data;
        s.state = SlotState::Active;
        s.len = len;
        self.slots.restart(index, now, wire_id);
        self.slots.set_key(index, key);
        Ok(())
    }

    fn succeed(&mut self, index: usize, now: Instant, from: SocketAddr, msg: &Message<'_>) {
        let e = &self.slots[index];
        let mapped = msg.reflexive_address().and_then(Result::ok);
        if e.data.method == Method::BINDING && mapped.is_none() {
            return self.finish_failed(index, TransactionError::MalformedResponse);
        }
        let event = ClientEvent::Succeeded {
            id: e.data.id,
            server: e.to,
            from,
            mapped,
            other_address: address(msg, types::OTHER_ADDRESS),
            response_origin: address(msg, types::RESPONSE_ORIGIN),
            rtt: now - e.last_sent,
        };
        self.finish(index, event);
    }

    fn handle_error(&mut self, index: usize, now: Instant, msg: &Message<'_>) {
        let code = error_code(msg);
        let retry = match code {
            300 => self.redirect(index, msg),
            401 | 438 => self.learn_challenge(index, code, msg),
            420 => self.drop_padding(index, msg),
            _ => Err(TransactionError::Rejected { code }),
        };
        let result = retry.and_then(|()| {
            let wire_id = TransactionId::random(&mut self.rng);
            self.send_new(index, now, wire_id)
                .map_err(|_| TransactionError::Unauthorized)
        });
        if let Err(e) = result {
            self.finish_failed(index, e);
        }
    }

    /// A server without RFC 5780 rejects PADDING (comprehension-required) with 420: retry once
    /// without it, so padding for RFC 5780 servers never costs the plain answer.
    fn drop_padding(&mut self, index: usize, msg: &Message<'_>) -> Result<(), TransactionError> {
        let rejected = TransactionError::Rejected { code: 420 };
        let listed = match msg.decode(types::UNKNOWN_ATTRIBUTES) {
            Some(Ok(Attribute::UnknownAttributes(list))) => {
                list.iter().any(|t| t == types::PADDING)
            }
            _ => false,
        };
        if !listed {
            return Err(rejected);
        }
        let n = self.config.max_request_len;
        let start = index * n + super::HEADER_LEN;
        let len = self.slots[index].data.body_len;
        let body = &mut self.bodies[start..start + len];
        let kept = remove_attribute(body, types::PADDING);
        if kept == len {
            return Err(rejected); // nothing to drop: the 420 is about something else
        }
        self.slots[index].data.body_len = kept;
        Ok(())
    }

    fn redirect(&mut self, index: usize, msg: &Message<'_>) -> Result<(), TransactionError> {
        let e = &mut self.slots[index];
        let server = e.to;
        let s = &mut e.data;
        if s.redirects >= MAX_REDIRECTS {
            return Err(TransactionError::TooManyRetries);
        }
        // Unauthenticated redirects are only followed when we sent no credentials (§10; see
        // handle_datagram). The first ALTERNATE-SERVER must be of the request's family (§10);
        // one we cannot reach from our socket is no redirect.
        let alternate = address(msg, types::ALTERNATE_SERVER)
            .filter(|a| a.is_ipv4() == server.is_ipv4())
            .ok_or(TransactionError::Rejected { code: 300 })?;
        // §10: a redirect to a server this request already went to fails the transaction.
        let done = usize::from(s.redirects);
        if alternate == server || s.visited[..done].contains(&alternate) {
            return Err(TransactionError::TooManyRetries);
        }
        s.visited[done] = server;
        s.redirects += 1;
        e.to = alternate;
        Ok(())
    }

    fn finish_failed(&mut self, index: usize, error: TransactionError) {
        let e = &self.slots[index];
        let event = ClientEvent::Failed {
            id: e.data.id,
            server: e.to,
            error,
        };
        self.finish(index, event);
    }

    fn finish(&mut self, index: usize, event: ClientEvent) {
        self.completed += 1;
        self.slots[index].data.state = SlotState::Done {
            event,
            seq: self.completed,
        };
    }
}

/// Removes every attribute of type `attr` from wire-form attributes in place; returns the new
/// length. Stops at the first malformed header (the body was built by our own builder).
fn remove_attribute(body: &mut [u8], attr: super::AttrType) -> usize {
    let (mut read, mut write) = (0, 0);
    while let Ok((t, len)) = read_attribute(body, read).map(|(t, v)| (t, v.len())) {
        let total = 4 + super::attr::padded(len);
        if t != attr {
            body.copy_within(read..read + total, write);
            write += total;
        }
        read += total;
    }
    write
}

fn error_code(msg: &Message<'_>) -> u16 {
    msg.error_code().and_then(Result::ok).map_or(0, |e| e.code)
}

fn address(msg: &Message<'_>, attr: super::AttrType) -> Option<SocketAddr> {
    msg.address(attr).and_then(Result::ok)
}

/// The configuration's retransmission schedule (RFC 8489 §6.2.1: RTO doubling without a cap,
/// Rm·RTO after the last send).
fn schedule(config: &ClientConfig) -> Schedule {
    Schedule {
        initial_rto: config.initial_rto,
        max_rto: None,
        max_sends: config.max_sends,
        last_wait: LastWait::InitialRtoTimes(config.last_wait_factor),
    }
}
