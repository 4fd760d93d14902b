//! A stateless STUN Binding responder with RFC 5780 behaviour discovery.
//!
//! One datagram in, at most one datagram out, written into the caller's buffer: the server keeps
//! no per-client state, so it cannot be exhausted and needs no timers. With an alternate address
//! configured it serves from four sockets (primary/alternate IP × primary/alternate port) and
//! honours CHANGE-REQUEST, RESPONSE-PORT, OTHER-ADDRESS and RESPONSE-ORIGIN (RFC 5780 §6).
//!
//! # Amplification
//! An unauthenticated server must not become a reflector. Every response is held to the size of
//! the request that caused it, except for a fixed floor: the smallest useful answer (header plus
//! XOR-MAPPED-ADDRESS, or header plus ERROR-CODE and UNKNOWN-ATTRIBUTES), plus FINGERPRINT when
//! the request carried one. Optional attributes (OTHER-ADDRESS, RESPONSE-ORIGIN, SOFTWARE,
//! PADDING, reason phrases) are added only while the response stays within the request's size,
//! so PADDING can never inflate a response. The worst case is a bare 20-byte request from an
//! IPv6 client answered with 20 + 24 bytes: a factor of 2.2 and at most 24 extra bytes.
//! [`AmplificationPolicy::Strict`] drops requests smaller than their minimal answer instead.
//! Clients that want the full RFC 5780 answer pad their requests (our client does).

use core::net::SocketAddr;

use super::attr::{self, Attribute, ErrorCode, types};
use super::message::{EncodeError, Message, MessageBuilder};
use super::{Class, HEADER_LEN, Method};
use crate::Transmit;

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
    /// Every answer in full, whatever the request's size: what standard tools that send bare
    /// requests (`turnutils_natdiscovery`) need for RFC 5780. Up to 4.6× for IPv6 (20 bytes in,
    /// 92 out): only for labs and trusted networks, never on the open internet.
    Unbounded,
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
}

impl ServerConfig {
    /// A plain RFC 8489 server on `primary`.
    pub fn new(primary: SocketAddr) -> Self {
        ServerConfig {
            primary,
            alternate: None,
            software: None,
            amplification: AmplificationPolicy::default(),
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

/// What the server did with a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Send this response (its bytes are at the start of the caller's buffer).
    Respond(Transmit),
    /// Not STUN: the datagram belongs to someone else, or is noise.
    NotStun,
    /// STUN, but nothing to answer: a response, an indication, a bad FINGERPRINT, a request that
    /// arrived on a socket this server does not serve, or (strict policy) one too small to answer.
    Dropped,
}

/// The stateless Binding responder.
#[derive(Clone, Debug)]
pub struct Server {
    config: ServerConfig,
}

impl Server {
    /// Checks the configuration and builds the server.
    pub fn new(config: ServerConfig) -> Result<Self, ConfigError> {
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
        Ok(Server { config })
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

    /// Answers one datagram that arrived on local socket `local` from `from`, writing any
    /// response into `out` (1280 bytes is always enough: optional attributes, mirrored PADDING
    /// included, shrink to fit the buffer; 52 bytes fit every minimal answer).
    pub fn handle_datagram(
        &self,
        local: SocketAddr,
        from: SocketAddr,
        datagram: &[u8],
        out: &mut [u8],
    ) -> Outcome {
        if !super::looks_like_stun(datagram) {
            return Outcome::NotStun;
        }
        let Ok(msg) = Message::parse(datagram) else {
            // A malformed header gives us no transaction to answer; 400 needs a parseable one.
            return Outcome::Dropped;
        };
        if msg.class() != Class::Request || !self.serves(local) {
            return Outcome::Dropped;
        }
        if msg.has_fingerprint() && msg.verify_fingerprint().is_err() {
            return Outcome::Dropped; // RFC 8489 §7.3: a bad FINGERPRINT means not ours.
        }
        match self.respond(&msg, local, from, out) {
            Ok(Some(t)) => Outcome::Respond(t),
            // The budget logic keeps every response far below 1280 bytes; a smaller buffer or the
            // strict policy is the only way here.
            Ok(None) | Err(_) => Outcome::Dropped,
        }
    }

    fn serves(&self, local: SocketAddr) -> bool {
        self.local_addresses().any(|a| a == local)
            || (self.config.primary.ip().is_unspecified()
                && self.config.alternate.is_none()
                && local.port() == self.config.primary.port())
    }

    fn respond(
        &self,
        msg: &Message<'_>,
        local: SocketAddr,
        from: SocketAddr,
        out: &mut [u8],
    ) -> Result<Option<Transmit>, EncodeError> {
        let budget = Budget::new(msg, self.config.amplification, out.len());
        let rfc5780 = self.config.alternate.is_some();
        let is_known = |t| match t {
            types::CHANGE_REQUEST | types::RESPONSE_PORT => rfc5780,
            t => attr::is_known(t),
        };

        // 420: at most as many types as fit the size budget; the first one always.
        let mut unknown = [0u16; 16];
        let mut n_unknown = 0;
        for t in msg.unknown_comprehension_required(is_known) {
            if n_unknown < unknown.len() && !unknown[..n_unknown].contains(&t) {
                unknown[n_unknown] = t;
                n_unknown += 1;
            }
        }
        if n_unknown > 0 {
            // ERROR-CODE without reason + one type, and FINGERPRINT if mirrored.
            let fixed = 8 + 4 + attr::padded(2) + budget.fingerprint;
            let fit = 1 + budget.extra(fixed) / 2;
            let list = &unknown[..n_unknown.min(fit)];
            return self.error(
                msg,
                (local, from),
                out,
                budget,
                ErrorCode::UNKNOWN_ATTRIBUTE,
                Some(list),
            );
        }
        if msg.method() != Method::BINDING {
            return self.error(
                msg,
                (local, from),
                out,
                budget,
                ErrorCode::BAD_REQUEST,
                None,
            );
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
                Err(_) if attr::is_comprehension_required(raw.attr) => {
                    return self.error(
                        msg,
                        (local, from),
                        out,
                        budget,
                        ErrorCode::BAD_REQUEST,
                        None,
                    );
                }
                Err(_) => {}
            }
        }

        let source = self.source(local, change);
        let to = match response_port {
            Some(port) => SocketAddr::new(from.ip(), port),
            None => from,
        };
        let minimal = addr_len(from) + budget.fingerprint;
        if !budget.allows_floor(minimal) {
            return Ok(None);
        }
        let mut b = MessageBuilder::new(out, Class::SuccessResponse, Method::BINDING, tid)?;
        b.add(&Attribute::XorMappedAddress(from))?;
        let mut spare = budget.extra(minimal);
        if let Some(alt) = self.config.alternate {
            // OTHER-ADDRESS and RESPONSE-ORIGIN travel together: a client needs both to run the
            // RFC 5780 tests, so send neither rather than one.
            let both = 2 * addr_len(alt);
            if spare >= both {
                // §7.4: where a change-IP-and-port answer to *this* socket would come from.
                b.add(&Attribute::OtherAddress(self.source(local, (true, true))))?;
                b.add(&Attribute::ResponseOrigin(source))?;
                spare -= both;
            }
        }
        if let Some(s) = self.config.software {
            let need = 4 + attr::padded(s.len());
            if spare >= need {
                b.add(&Attribute::Software(s))?;
                spare -= need;
            }
        }
        // RFC 5780 §7.6: mirror PADDING (sized to stay within the request, and only when the
        // answer goes back to the sender, never redirected by RESPONSE-PORT).
        if padding > 0 && response_port.is_none() && spare >= 4 {
            let len = padding.min(spare - 4) & !3;
            b.add_padding(len)?;
        }
        if budget.fingerprint > 0 {
            b.add_fingerprint()?;
        }
        let len = b.finish();
        Ok(Some(Transmit {
            from: Some(source),
            to,
            len,
        }))
    }

    /// The socket that answers: the one the request came in on, moved to the alternate IP
    /// and/or port as CHANGE-REQUEST asks.
    fn source(&self, local: SocketAddr, (change_ip, change_port): (bool, bool)) -> SocketAddr {
        let Some(alt) = self.config.alternate else {
            return local;
        };
        let p = self.config.primary;
        let flip_ip = |ip| if ip == p.ip() { alt.ip() } else { p.ip() };
        let flip_port = |port| {
            if port == p.port() {
                alt.port()
            } else {
                p.port()
            }
        };
        let ip = if change_ip {
            flip_ip(local.ip())
        } else {
            local.ip()
        };
        let port = if change_port {
            flip_port(local.port())
        } else {
            local.port()
        };
        SocketAddr::new(ip, port)
    }

    fn error(
        &self,
        msg: &Message<'_>,
        (local, from): (SocketAddr, SocketAddr),
        out: &mut [u8],
        budget: Budget,
        code: ErrorCode<'static>,
        unknown: Option<&[u16]>,
    ) -> Result<Option<Transmit>, EncodeError> {
        let list_len = unknown.map_or(0, |l| 4 + attr::padded(l.len() * 2));
        let minimal = 8 + list_len + budget.fingerprint;
        if !budget.allows_floor(minimal) {
            return Ok(None);
        }
        // The reason phrase is optional decoration: keep it only if it fits.
        let reason = if budget.extra(minimal) >= attr::padded(code.reason.len()) {
            code.reason
        } else {
            ""
        };
        let mut b = MessageBuilder::new(
            out,
            Class::ErrorResponse,
            msg.method(),
            msg.transaction_id(),
        )?;
        b.add(&Attribute::ErrorCode(ErrorCode {
            code: code.code,
            reason,
        }))?;
        if let Some(list) = unknown {
            b.add_unknown_attributes(list)?;
        }
        if budget.fingerprint > 0 {
            b.add_fingerprint()?;
        }
        let len = b.finish();
        Ok(Some(Transmit {
            from: Some(local),
            to: from,
            len,
        }))
    }
}

/// The size budget for one response (see the module docs).
#[derive(Clone, Copy, Debug)]
struct Budget {
    request_len: usize,
    /// The caller's output buffer: optional attributes shrink to fit it too.
    out_len: usize,
    /// 8 when the response must carry FINGERPRINT (the request did), else 0.
    fingerprint: usize,
    policy: AmplificationPolicy,
}

impl Budget {
    fn new(msg: &Message<'_>, policy: AmplificationPolicy, out_len: usize) -> Self {
        let fingerprint = if msg.has_fingerprint() { 8 } else { 0 };
        Budget {
            request_len: msg.as_bytes().len(),
            out_len,
            fingerprint,
            policy,
        }
    }

    /// Whether a response whose mandatory attributes take `floor` bytes may be sent at all.
    fn allows_floor(&self, floor: usize) -> bool {
        self.policy != AmplificationPolicy::Strict || HEADER_LEN + floor <= self.request_len
    }

    /// Bytes available for optional attributes beyond `floor` bytes of mandatory ones: within
    /// the request's size and the output buffer.
    fn extra(&self, floor: usize) -> usize {
        let limit = match self.policy {
            // Bounded by the output buffer only (the caller's 1280 bytes fit every answer).
            AmplificationPolicy::Unbounded => self.out_len,
            _ => self.request_len.min(self.out_len),
        };
        limit.saturating_sub(HEADER_LEN + floor)
    }
}

/// Encoded size of an address attribute, header included.
fn addr_len(a: SocketAddr) -> usize {
    if a.is_ipv4() { 12 } else { 24 }
}
