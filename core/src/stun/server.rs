//! A STUN Binding responder with RFC 5780 behaviour discovery, for RFC 8489 and RFC 3489 clients.
//!
//! Sans-IO like the rest of the core: [`Server::handle_datagram`] takes one datagram (with the
//! time, the local socket it arrived on and its sender) and queues the request in a few words;
//! [`Server::poll_transmit`] writes the answers, oldest first, into the caller's buffer. The
//! queue holds [`ServerConfig::max_pending`] requests, allocated at construction; a request
//! that finds it full is dropped and counted ([`ServerStats::queue_full`]). With an alternate address configured it serves from four sockets
//! (primary/alternate IP × primary/alternate port) and honours CHANGE-REQUEST, RESPONSE-PORT,
//! OTHER-ADDRESS and RESPONSE-ORIGIN (RFC 5780 §6).
//!
//! Requests without the magic cookie come from RFC 3489 clients (libnice in its default mode
//! among them). They are answered as RFC 8489 §12 says: the 16-byte transaction ID echoed in
//! full, MAPPED-ADDRESS instead of XOR-MAPPED-ADDRESS, and, in RFC 5780 mode, SOURCE-ADDRESS and
//! CHANGED-ADDRESS, the RFC 3489 names of RESPONSE-ORIGIN and OTHER-ADDRESS.
//!
//! # Amplification
//! An unauthenticated server must not become a reflector. Three bounds are available:
//!
//! - Size ([`AmplificationPolicy::Bounded`], the default without an alternate): every response is
//!   held to the size of the request that caused it, except for a fixed floor, the smallest
//!   useful answer (header plus XOR-MAPPED-ADDRESS, or header plus ERROR-CODE and
//!   UNKNOWN-ATTRIBUTES), plus FINGERPRINT when the request carried one. Optional attributes
//!   (OTHER-ADDRESS, RESPONSE-ORIGIN, SOFTWARE, PADDING, reason phrases) are added only while the
//!   response stays within the request's size, so PADDING can never inflate a response. The
//!   worst case is a bare 20-byte request from an IPv6 client answered with 20 + 24 bytes: a
//!   factor of 2.2 and at most 24 extra bytes. [`AmplificationPolicy::Strict`] drops requests
//!   smaller than their minimal answer instead.
//! - Rate ([`AmplificationPolicy::RateLimited`], the default of [`ServerConfig::rfc5780`]): an
//!   answer larger than its request costs the source one token from a per-source token bucket
//!   (IPv4 address, or IPv6 /64) in a fixed table of [`RATE_LIMIT_SLOTS`] buckets. With a token
//!   the answer goes out in full, so standard tools that send bare requests
//!   (`turnutils_natdiscovery`) get OTHER-ADDRESS; without one it shrinks to the strict form
//!   (never larger than the request) or is dropped. Answers no larger than their request (our
//!   client pads RFC 5780 requests) cost nothing. Worst case per source: `burst` full answers at
//!   once, then `per_second` full answers a second, each at most
//!   [`ServerConfig::max_full_answer_len`] bytes (120 for IPv6 with a 15-byte SOFTWARE); in
//!   total at most [`RATE_LIMIT_SLOTS`] times that, plus answers no larger than the attacker's
//!   own requests.
//! - None ([`AmplificationPolicy::Unbounded`]): every answer in full, for labs only.

use alloc::collections::VecDeque;
use core::net::SocketAddr;

use super::attr::{self, Attribute, ErrorCode, types};
use super::message::Message;
use super::{Class, HEADER_LEN, Method, TransactionId};
use crate::Instant;
use crate::io::{Datagram, Deadline, Received, TimerReason, Transmit};

mod answer;
mod classic;
mod limiter;

use answer::Form;

pub use limiter::{RateLimit, SLOTS as RATE_LIMIT_SLOTS};

/// How the server bounds the size of its answers to unauthenticated requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AmplificationPolicy {
    /// Optional attributes only within the request's size; the minimal answer always goes out
    /// (worst case 2.2×, +24 bytes). Works with every standard client.
    #[default]
    Bounded,
    /// Never answer with more bytes than the request had: requests too small for their minimal
    /// answer are dropped. Clients must pad (for example with SOFTWARE or PADDING).
    Strict,
    /// Every answer in full, whatever the request's size. Up to 4.6× for IPv6 (20 bytes in, 92
    /// out), without limit in count: only for labs and trusted networks, never on the open
    /// internet.
    Unbounded,
    /// Answers in full while the source has tokens, then in the strict form (see the module
    /// docs): RFC 5780 for standard tools, with reflection bounded by rate.
    RateLimited(RateLimit),
}

impl AmplificationPolicy {
    /// The default for a server with RFC 5780 behaviour discovery: rate-limited full answers.
    pub const RFC5780_DEFAULT: AmplificationPolicy =
        AmplificationPolicy::RateLimited(RateLimit::DEFAULT);
}

/// Server configuration.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The address clients send to first.
    pub primary: SocketAddr,
    /// The other IP and port for RFC 5780; both must differ from the primary's.
    pub alternate: Option<SocketAddr>,
    /// SOFTWARE to add when the size budget allows.
    pub software: Option<&'static str>,
    /// How responses are bounded.
    pub amplification: AmplificationPolicy,
    /// Requests held for [`Server::poll_transmit`] before more are dropped (and counted).
    pub max_pending: usize,
}

/// The default [`ServerConfig::max_pending`]: more than a driver that drains after every
/// datagram ever holds, and room for a driver that reads a whole batch first.
pub const DEFAULT_MAX_PENDING: usize = 1024;

impl ServerConfig {
    /// A plain RFC 8489 server on `primary`, size-bounded.
    pub fn new(primary: SocketAddr) -> Self {
        ServerConfig {
            primary,
            alternate: None,
            software: None,
            amplification: AmplificationPolicy::default(),
            max_pending: DEFAULT_MAX_PENDING,
        }
    }

    /// The largest answer this configuration can send to a request of at most that size,
    /// PADDING aside (it is mirrored only within the request's own size): for an RFC 8489 client
    /// of the server's family, XOR-MAPPED-ADDRESS, OTHER-ADDRESS and RESPONSE-ORIGIN, SOFTWARE and
    /// FINGERPRINT; the RFC 3489 answer is never larger. What a full answer costs in the
    /// rate-limit budget.
    pub fn max_full_answer_len(&self) -> usize {
        let addr = addr_len(self.primary);
        let rfc5780 = if self.alternate.is_some() {
            2 * addr
        } else {
            0
        };
        let software = self.software.map_or(0, |s| 4 + attr::padded(s.len()));
        HEADER_LEN + addr + rfc5780 + software + 8
    }

    /// An RFC 5780 server on `primary` and `alternate`, rate-limited
    /// ([`AmplificationPolicy::RFC5780_DEFAULT`]) so bare requests get OTHER-ADDRESS.
    pub fn rfc5780(primary: SocketAddr, alternate: SocketAddr) -> Self {
        ServerConfig {
            alternate: Some(alternate),
            amplification: AmplificationPolicy::RFC5780_DEFAULT,
            ..ServerConfig::new(primary)
        }
    }
}

/// A configuration the server cannot serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// RFC 5780 needs an alternate address with a different IP *and* a different port.
    #[error("alternate {alternate} must differ from primary {primary} in both IP and port")]
    AlternateNotDistinct {
        /// The primary address.
        primary: SocketAddr,
        /// The offending alternate.
        alternate: SocketAddr,
    },
    /// Primary and alternate must be of the same address family.
    #[error("primary and alternate addresses are of different families")]
    MixedFamilies,
    /// Addresses must be concrete: RESPONSE-ORIGIN and OTHER-ADDRESS name them.
    #[error("{0} is unspecified; give the server concrete addresses")]
    Unspecified(SocketAddr),
}

/// Counters of work the server dropped rather than queue without bound.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Requests dropped because [`ServerConfig::max_pending`] answers already waited.
    pub queue_full: u64,
}

/// The Binding responder: stateless per request, but for the per-source rate limit and the
/// answers waiting for [`poll_transmit`](Server::poll_transmit).
#[derive(Clone, Debug)]
pub struct Server {
    config: ServerConfig,
    limiter: Option<limiter::Limiter>,
    /// Accepted requests, oldest first; capacity `max_pending`, reserved at construction.
    pending: VecDeque<Pending>,
    /// The latest `now` an input gave: the deadline while answers wait.
    now: Instant,
    stats: ServerStats,
}

/// An accepted request, kept in a few words until its answer is written.
#[derive(Clone, Copy, Debug)]
struct Pending {
    /// When the request arrived: the rate limit counts tokens at that time.
    at: Instant,
    local: SocketAddr,
    from: SocketAddr,
    method: Method,
    tid: TransactionId,
    request_len: usize,
    /// The response carries FINGERPRINT (the request did).
    fingerprint: bool,
    reply: Reply,
}

#[derive(Clone, Copy, Debug)]
enum Reply {
    Binding {
        change: (bool, bool),
        response_port: Option<u16>,
        padding: usize,
    },
    Error {
        code: ErrorCode<'static>,
        unknown: [u16; MAX_UNKNOWN],
        n_unknown: usize,
    },
    /// RFC 3489: the first four bytes of the 128-bit transaction ID, echoed where the cookie goes.
    Classic {
        cookie: [u8; 4],
        change: (bool, bool),
    },
}

/// What [`Server::accept`] made of a datagram.
enum Accepted {
    /// A request to answer.
    Request(Pending),
    /// Not STUN: the datagram belongs to someone else, or is noise.
    NotStun,
    /// STUN, but nothing to answer.
    Dropped,
}

/// The most unknown comprehension-required types a 420 lists.
const MAX_UNKNOWN: usize = 16;

impl Server {
    /// Checks the configuration and builds the server (rate-limit table hashed with seed 0; use
    /// [`Server::with_seed`] on a server that faces the internet).
    pub fn new(config: ServerConfig) -> Result<Self, ConfigError> {
        Server::with_seed(config, 0)
    }

    /// Like [`Server::new`], with a secret seed for the rate-limit table's hash, so an attacker
    /// cannot pick spoofed sources that land in a chosen client's bucket.
    pub fn with_seed(config: ServerConfig, seed: u64) -> Result<Self, ConfigError> {
        if config.primary.ip().is_unspecified() && config.alternate.is_some() {
            return Err(ConfigError::Unspecified(config.primary));
        }
        if let Some(alt) = config.alternate {
            if alt.ip().is_unspecified() {
                return Err(ConfigError::Unspecified(alt));
            }
            if alt.is_ipv4() != config.primary.is_ipv4() {
                return Err(ConfigError::MixedFamilies);
            }
            if alt.ip() == config.primary.ip() || alt.port() == config.primary.port() {
                return Err(ConfigError::AlternateNotDistinct {
                    primary: config.primary,
                    alternate: alt,
                });
            }
        }
        let limiter = match config.amplification {
            AmplificationPolicy::RateLimited(limit) => Some(limiter::Limiter::new(limit, seed)),
            _ => None,
        };
        let max_pending = config.max_pending.max(1);
        Ok(Server {
            config,
            limiter,
            pending: VecDeque::with_capacity(max_pending),
            now: Instant::ZERO,
            stats: ServerStats::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The sockets a driver must bind: the primary alone, or all four RFC 5780 combinations
    /// (primary, alternate port, alternate IP, alternate IP and port).
    pub fn local_addresses(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        let p = self.config.primary;
        let combos = self.config.alternate.map(|a| {
            [
                SocketAddr::new(p.ip(), a.port()),
                SocketAddr::new(a.ip(), p.port()),
                a,
            ]
        });
        core::iter::once(p).chain(combos.into_iter().flatten())
    }

    /// Takes one datagram that arrived at `now` on one of the server's sockets.
    ///
    /// A request is queued until [`poll_transmit`](Server::poll_transmit) answers it
    /// ([`Received::Consumed`]); so is STUN the server drops (a response, an indication, a bad
    /// FINGERPRINT, a request on a socket it does not serve), reported as
    /// [`Received::Unrecognized`]; anything else is [`Received::AppData`]. A request that finds
    /// [`ServerConfig::max_pending`] answers waiting is dropped and counted in
    /// [`stats`](Server::stats). Nothing is allocated and nothing of the payload is kept.
    pub fn handle_datagram<'a>(&mut self, now: Instant, d: Datagram<'a>) -> Received<'a> {
        self.now = self.now.max(now);
        match self.accept(now, d.local, d.from, d.payload) {
            Accepted::Request(p) => {
                if self.pending.len() >= self.config.max_pending.max(1) {
                    self.stats.queue_full += 1;
                } else {
                    self.pending.push_back(p);
                }
                Received::Consumed
            }
            Accepted::NotStun => Received::AppData {
                from: d.from,
                payload: d.payload,
            },
            Accepted::Dropped => Received::Unrecognized,
        }
    }

    /// The server keeps no timers: this only notes the time. Early calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    /// Writes the answer to the oldest request waiting into `out`, and says where it goes and
    /// from which local socket. `None` when nothing waits; a request whose answer does not fit
    /// the size bound in force or `out` is skipped (1280 bytes is always enough: optional
    /// attributes, mirrored PADDING included, shrink to fit the buffer; 52 bytes fit every
    /// minimal answer).
    pub fn poll_transmit(&mut self, _now: Instant, out: &mut [u8]) -> Option<Transmit> {
        while let Some(pending) = self.pending.pop_front() {
            if let Some(t) = self.answer_one(&pending, out) {
                return Some(t);
            }
        }
        None
    }

    /// When the server next needs a call: the latest `now` it was given while answers wait,
    /// else `None` (it keeps no timers).
    pub fn poll_deadline(&self) -> Option<Deadline> {
        (!self.pending.is_empty()).then(|| Deadline::new(self.now, TimerReason::OutputPending))
    }

    /// [`poll_deadline`](Self::poll_deadline)'s instant alone.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.poll_deadline().map(|d| d.at)
    }

    /// Counters of requests dropped because the answer queue was full.
    pub fn stats(&self) -> ServerStats {
        self.stats
    }

    /// What one datagram asks of the server.
    fn accept(&self, at: Instant, local: SocketAddr, from: SocketAddr, payload: &[u8]) -> Accepted {
        if !super::looks_like_stun(payload) {
            let Some(req) = classic::parse(payload) else {
                return Accepted::NotStun;
            };
            if !self.serves(local) {
                return Accepted::Dropped;
            }
            let mut cookie = [0u8; 4];
            cookie.copy_from_slice(&req.transaction_id[..4]);
            let mut tid = TransactionId::default();
            tid.0.copy_from_slice(&req.transaction_id[4..]);
            return Accepted::Request(Pending {
                at,
                local,
                from,
                method: Method::BINDING,
                tid,
                request_len: payload.len(),
                fingerprint: false,
                reply: Reply::Classic {
                    cookie,
                    change: req.change,
                },
            });
        }
        let Ok(msg) = Message::parse(payload) else {
            // A malformed header gives us no transaction to answer; 400 needs a parseable one.
            return Accepted::Dropped;
        };
        if msg.class() != Class::Request || !self.serves(local) {
            return Accepted::Dropped;
        }
        if msg.has_fingerprint() && msg.verify_fingerprint().is_err() {
            return Accepted::Dropped; // RFC 8489 §7.3: a bad FINGERPRINT means not ours.
        }
        Accepted::Request(Pending {
            at,
            local,
            from,
            method: msg.method(),
            tid: msg.transaction_id(),
            request_len: payload.len(),
            fingerprint: msg.has_fingerprint(),
            reply: self.reply_to(&msg),
        })
    }

    /// The answer to one queued request, sized by the policy (and the source's tokens at the
    /// time the request arrived).
    fn answer_one(&mut self, pending: &Pending, out: &mut [u8]) -> Option<Transmit> {
        let form = match self.config.amplification {
            AmplificationPolicy::Bounded => Form::Bounded,
            AmplificationPolicy::Strict => Form::Strict,
            AmplificationPolicy::Unbounded | AmplificationPolicy::RateLimited(_) => Form::Full,
        };
        let t = self.build(pending, form, out).ok().flatten()?;
        let Some(limiter) = self.limiter.as_mut() else {
            return Some(t);
        };
        // Tokens pay for amplification only: an answer within the request's size is free.
        if t.len <= pending.request_len || limiter.admit(pending.at, pending.from.ip()) {
            return Some(t);
        }
        self.build(pending, Form::Strict, out).ok().flatten()
    }

    fn serves(&self, local: SocketAddr) -> bool {
        self.local_addresses().any(|a| a == local)
            || (self.config.primary.ip().is_unspecified()
                && self.config.alternate.is_none()
                && local.port() == self.config.primary.port())
    }

    /// What a parsed RFC 8489 request deserves: an error, or a Binding success and its options.
    fn reply_to(&self, msg: &Message<'_>) -> Reply {
        let rfc5780 = self.config.alternate.is_some();
        let is_known = |t| match t {
            types::CHANGE_REQUEST | types::RESPONSE_PORT => rfc5780,
            t => attr::is_known(t),
        };
        let mut unknown = [0u16; MAX_UNKNOWN];
        let mut n_unknown = 0;
        for t in msg.unknown_comprehension_required(is_known) {
            if n_unknown < unknown.len() && !unknown[..n_unknown].contains(&t) {
                unknown[n_unknown] = t;
                n_unknown += 1;
            }
        }
        if n_unknown > 0 {
            return Reply::Error {
                code: ErrorCode::UNKNOWN_ATTRIBUTE,
                unknown,
                n_unknown,
            };
        }
        let bad_request = Reply::Error {
            code: ErrorCode::BAD_REQUEST,
            unknown,
            n_unknown: 0,
        };
        if msg.method() != Method::BINDING {
            return bad_request;
        }
        let mut change = (false, false);
        let mut response_port = None;
        let mut padding = 0;
        let tid = msg.transaction_id();
        for raw in msg.attributes() {
            match Attribute::decode(raw.attr, raw.value, &tid) {
                Ok(Attribute::ChangeRequest {
                    change_ip,
                    change_port,
                }) => change = (change_ip, change_port),
                Ok(Attribute::ResponsePort(p)) => response_port = Some(p),
                Ok(Attribute::Padding(p)) => padding = p.len(),
                Ok(_) => {}
                // A malformed comprehension-required attribute makes the request bad (§6.3);
                // malformed optional ones are ignored like unknown ones.
                Err(_) if attr::is_comprehension_required(raw.attr) => return bad_request,
                Err(_) => {}
            }
        }
        Reply::Binding {
            change,
            response_port,
            padding,
        }
    }
}

/// Encoded size of an address attribute, header included.
fn addr_len(a: SocketAddr) -> usize {
    if a.is_ipv4() { 12 } else { 24 }
}
