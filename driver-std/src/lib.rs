//! holepunch-std: the smallest correct driver for `holepunch-core`, on blocking `std::net`
//! sockets.
//!
//! It owns what the core refuses to touch: sockets, the wall clock and OS randomness. Everything
//! else is the core's public API, called exactly as any user would call it:
//!
//! - [`stun`] / [`stun_on`]: one Binding transaction, pumped with `poll_transmit`, a socket read
//!   bounded by `poll_timeout`, `handle_datagram`, `handle_timeout` and `poll_event`.
//! - [`StunServer`]: binds every socket the core [`Server`](holepunch_core::stun::server::Server) asks for (supporting port 0) and
//!   answers on them, one thread per socket, until a stop flag is raised.
//! - [`ice::IceSocket`]: a UDP socket with an ICE agent inside, one reader thread per socket.
//! - [`pump::IcePump`]: what every ICE driver does the same way (the agent's wrappers, its
//!   actions, sending its transmits), over a [`pump::SocketSet`] that holds the sockets, and
//!   [`ice_pump_methods!`] to give a driver type those calls; the mio driver reuses both.
//! - [`Clock`] and [`os_seed`]: the clock and seed conversions the other drivers reuse;
//!   [`bind_server_sockets`] is shared with them too.
//!
//! ```no_run
//! use holepunch_std::{StunOptions, stun};
//! use std::time::Duration;
//!
//! let options = StunOptions::default().with_timeout(Duration::from_secs(5));
//! let report = stun("192.0.2.1:3478".parse()?, &options)?;
//! println!("mapped {} (rtt {:?})", report.mapped, report.rtt);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod clat;
pub mod ice;
pub mod nat64;
pub mod netcheck;
pub mod portmap;
pub mod portmap_probe;
pub mod pump;

/// The paths [`ice_pump_methods!`] names, so that it expands in crates that do not depend on
/// `holepunch-core` by that name.
#[doc(hidden)]
pub mod __private {
    pub use holepunch_core::Agent;
    pub use holepunch_core::ice::agent::{Action, IceError, PathInfo};
    pub use holepunch_core::ice::candidate::Candidate;
    pub use holepunch_core::ice::credentials::IceCredentials;
}
pub mod server;

pub use server::{
    DEFAULT_RECV_BUFFER, SERVE_POLL_INTERVAL, ServeOptions, StunServer, bind_server_sockets,
};

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use holepunch_core::Instant;
use holepunch_core::io::Datagram;
use holepunch_core::stun::client::{
    BindingOptions, Client, ClientConfig, ClientError, ClientEvent, TransactionError,
};
use holepunch_core::stun::server::ConfigError;
use holepunch_core::time::duration_micros;

/// Buffer size for received datagrams: the largest UDP payload, so nothing is ever truncated
/// (RFC 5780 clients probe with PADDING up to the path MTU, and servers mirror it).
pub const RECV_BUFFER_LEN: usize = 65_536;
/// Buffer size for server responses: as large as the largest request, so an answer can mirror a
/// request's PADDING in full (RFC 5780 §7.6; coturn's `turnutils_stunclient -f` probes with 1532
/// bytes). The core's server never answers with more bytes than the request had beyond a small
/// floor, so this is always enough; with the 1280 bytes `Server::handle_datagram` suggests, such
/// an answer is cut short (or, in the committed core, dropped).
pub const RESPONSE_BUFFER_LEN: usize = RECV_BUFFER_LEN;
/// What [`StunOptions::rfc5780`] pads Binding requests to: enough for a server that bounds its
/// answers by the request's size (ours) to include OTHER-ADDRESS and RESPONSE-ORIGIN for IPv6
/// (20 header + 3 × 24 address attributes + 8 FINGERPRINT).
pub const RFC5780_PADDED_LEN: usize = 100;

/// The driver's clock: a `std::time::Instant` epoch that core [`Instant`]s count from.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    epoch: std::time::Instant,
}

impl Clock {
    /// A clock whose epoch is now.
    pub fn new() -> Self {
        Clock::with_epoch(wall_now())
    }

    /// A clock with the given epoch (several state machines can share one timeline).
    pub fn with_epoch(epoch: std::time::Instant) -> Self {
        Clock { epoch }
    }

    /// The epoch.
    pub fn epoch(&self) -> std::time::Instant {
        self.epoch
    }

    /// The current time as a core [`Instant`].
    pub fn now(&self) -> Instant {
        self.to_core(wall_now())
    }

    /// Converts a clock reading into a core [`Instant`] (readings before the epoch are the epoch).
    pub fn to_core(&self, t: std::time::Instant) -> Instant {
        Instant::from_micros(duration_micros(t.saturating_duration_since(self.epoch)))
    }

    /// Converts a core deadline back into a clock reading, for a read timeout or a sleep.
    ///
    /// [`Instant::FAR_FUTURE`] and anything else the platform cannot represent become a point
    /// about thirty years away: never, for any practical purpose.
    pub fn deadline(&self, t: Instant) -> std::time::Instant {
        self.epoch
            .checked_add(t.since_epoch())
            .or_else(|| {
                self.epoch
                    .checked_add(Duration::from_secs(30 * 365 * 86_400))
            })
            .unwrap_or(self.epoch)
    }

    /// Time from now until the core deadline `t`, zero if it has passed.
    pub fn until(&self, t: Instant) -> Duration {
        self.deadline(t).saturating_duration_since(wall_now())
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// A 64-bit seed for a core state machine, drawn from the operating system.
///
/// Reads 8 bytes from `/dev/urandom` (present on Linux, the BSDs and macOS) so the driver needs no
/// extra crate. Where that fails it falls back to std's `RandomState` — whose keys std itself draws
/// from the OS once per process — hashing the current time and the process id, so two processes
/// or two calls still get different seeds. The seed only has to make transaction ids
/// unpredictable to off-path attackers (see `holepunch_core::rng`), not be cryptographic.
pub fn os_seed() -> u64 {
    let mut bytes = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok()
    {
        return u64::from_le_bytes(bytes);
    }
    let mut h = RandomState::new().build_hasher();
    h.write_u128(wall_time_nanos());
    h.write_u32(std::process::id());
    h.write_u64(wall_now().elapsed().as_nanos() as u64);
    h.finish()
}

/// A core [`ClientConfig`] whose RFC 8489 retransmission schedule gives up within `total`.
///
/// Keeps the RFC's initial RTO of 500 ms (less when `total` is under a second), sends as many
/// times as fit (at most Rc = 7, at 0, RTO, 3·RTO, 7·RTO, …) and sets the final wait (at most
/// Rm = 16 RTOs) so the timeout lands at or before `total`. `total` of 39.5 s or more gives the
/// RFC's defaults.
pub fn retransmission_within(total: Duration) -> ClientConfig {
    let defaults = ClientConfig::default();
    let total_us = duration_micros(total).max(2);
    let rto_us = duration_micros(defaults.initial_rto)
        .min(total_us / 2)
        .max(1);
    // Sends at (2^k - 1)·RTO; keep a send only if at least one RTO of waiting still fits after it.
    let mut sends = 1u32;
    while sends < defaults.max_sends {
        let next_send_at = ((1u64 << sends) - 1).saturating_mul(rto_us);
        if next_send_at.saturating_add(rto_us) > total_us {
            break;
        }
        sends += 1;
    }
    let last_send_at = ((1u64 << (sends - 1)) - 1).saturating_mul(rto_us);
    let wait = ((total_us - last_send_at) / rto_us).clamp(1, u64::from(defaults.last_wait_factor));
    ClientConfig {
        initial_rto: Duration::from_micros(rto_us),
        max_sends: sends,
        last_wait_factor: u32::try_from(wait).unwrap_or(defaults.last_wait_factor),
        ..defaults
    }
}

/// What to ask for in a Binding transaction, and how.
#[derive(Clone, Debug)]
pub struct StunOptions {
    /// The local address to bind; `None` binds the unspecified address of the server's family,
    /// port 0.
    pub local: Option<SocketAddr>,
    /// RFC 5780 options of the request (CHANGE-REQUEST, RESPONSE-PORT).
    pub binding: BindingOptions,
    /// The core client's configuration (retransmission, padding, SOFTWARE, credentials).
    pub client: ClientConfig,
    /// The seed for transaction ids; `None` draws one with [`os_seed`]. Fixed seeds are for
    /// reproducible tests and demos only.
    pub seed: Option<u64>,
}

impl Default for StunOptions {
    /// RFC 8489 defaults: no padding (the PADDING attribute is comprehension-required, so a
    /// server without RFC 5780 may refuse it), retransmission giving up after 39.5 s.
    fn default() -> Self {
        StunOptions {
            local: None,
            binding: BindingOptions::default(),
            client: ClientConfig::default(),
            seed: None,
        }
    }
}

impl StunOptions {
    /// Options for RFC 5780 behaviour discovery: requests padded to [`RFC5780_PADDED_LEN`] so a
    /// size-bounding server can include OTHER-ADDRESS and RESPONSE-ORIGIN.
    pub fn rfc5780() -> Self {
        let mut options = StunOptions::default();
        options.client.pad_requests_to = RFC5780_PADDED_LEN;
        options
    }

    /// Sets the retransmission schedule so the transaction gives up within `total`
    /// (see [`retransmission_within`]), keeping the other client settings.
    pub fn with_timeout(mut self, total: Duration) -> Self {
        let schedule = retransmission_within(total);
        self.client.initial_rto = schedule.initial_rto;
        self.client.max_sends = schedule.max_sends;
        self.client.last_wait_factor = schedule.last_wait_factor;
        self
    }

    /// Sets the RFC 5780 request options.
    pub fn with_binding(mut self, binding: BindingOptions) -> Self {
        self.binding = binding;
        self
    }

    /// Sets the local address to bind.
    pub fn with_local(mut self, local: SocketAddr) -> Self {
        self.local = Some(local);
        self
    }

    /// The address to bind for `server`: the configured one, else unspecified of its family.
    pub fn local_for(&self, server: SocketAddr) -> SocketAddr {
        self.local.unwrap_or_else(|| unspecified_like(server))
    }

    /// The seed to build the client with.
    pub fn seed_or_os(&self) -> u64 {
        self.seed.unwrap_or_else(os_seed)
    }
}

/// The answer to a successful Binding transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StunReport {
    /// The reflexive transport address the server saw (XOR-MAPPED-ADDRESS).
    pub mapped: SocketAddr,
    /// The local socket the request went out of, as bound (unspecified IP if bound that way).
    pub local: SocketAddr,
    /// The server that answered last (differs from the one asked after a 300 redirect).
    pub server: SocketAddr,
    /// Where the response came from (differs from `server` after a CHANGE-REQUEST).
    pub from: SocketAddr,
    /// Round-trip time of the answered send (a lower bound after retransmissions).
    pub rtt: Duration,
    /// RFC 5780 OTHER-ADDRESS, when the server offers behaviour discovery.
    pub other_address: Option<SocketAddr>,
    /// RFC 5780 RESPONSE-ORIGIN.
    pub response_origin: Option<SocketAddr>,
}

impl StunReport {
    /// Builds a report from the core's event; `None` for a failure or a success without a
    /// mapped address (the core reports the latter as `MalformedResponse` for Binding).
    pub fn from_event(event: &ClientEvent, local: SocketAddr) -> Option<Self> {
        match *event {
            ClientEvent::Succeeded {
                server,
                from,
                mapped: Some(mapped),
                other_address,
                response_origin,
                rtt,
                ..
            } => Some(StunReport {
                mapped,
                local,
                server,
                from,
                rtt,
                other_address,
                response_origin,
            }),
            _ => None,
        }
    }
}

/// Turns the one event of a finished transaction into the driver's result.
pub fn report_or_error(event: &ClientEvent, local: SocketAddr) -> Result<StunReport, DriverError> {
    match event {
        ClientEvent::Failed { error, .. } => Err(DriverError::Failed(*error)),
        e => StunReport::from_event(e, local)
            .ok_or(DriverError::Failed(TransactionError::MalformedResponse)),
    }
}

/// Why a driver operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// A socket operation failed.
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
    /// The core refused to start the transaction.
    #[error("cannot start the STUN transaction: {0}")]
    Client(#[from] ClientError),
    /// The transaction ended without a usable answer.
    #[error("STUN transaction failed: {}", describe_transaction_error(.0))]
    Failed(TransactionError),
    /// The server configuration cannot be served.
    #[error("invalid STUN server configuration: {0}")]
    Config(#[from] ConfigError),
}

impl DriverError {
    /// Whether this is the transaction timing out (no answer after all retransmissions).
    pub fn is_timeout(&self) -> bool {
        matches!(self, DriverError::Failed(TransactionError::TimedOut))
    }
}

/// A human-readable reason for a core [`TransactionError`], with more to go on than its terse
/// `Display`.
pub fn describe_transaction_error(e: &TransactionError) -> String {
    match e {
        TransactionError::TimedOut => "timed out: no response after all retransmissions".into(),
        TransactionError::Rejected { code } => format!("rejected by the server (error {code})"),
        TransactionError::Unauthorized => "unauthorized: the server wants credentials".into(),
        TransactionError::TooManyRetries => "too many redirects or authentication retries".into(),
        TransactionError::MalformedResponse => "malformed response (no mapped address)".into(),
        other => format!("{other:?}"),
    }
}

/// Runs one Binding transaction to `server` from a fresh socket (see [`StunOptions::local`]).
pub fn stun(server: SocketAddr, options: &StunOptions) -> Result<StunReport, DriverError> {
    let socket = UdpSocket::bind(options.local_for(server))?;
    stun_on(&socket, server, options)
}

/// Runs one Binding transaction to `server` from an existing socket, so several transactions
/// (plain, then CHANGE-REQUEST) share one mapping. `options.local` is ignored.
///
/// Datagrams that are not the answer are discarded; the socket's read timeout is changed.
pub fn stun_on(
    socket: &UdpSocket,
    server: SocketAddr,
    options: &StunOptions,
) -> Result<StunReport, DriverError> {
    let local = socket.local_addr()?;
    let _span = tracing::debug_span!("stun", %server, %local).entered();
    let clock = Clock::new();
    let mut client = Client::new(options.client.clone(), options.seed_or_os());
    let id = client.binding(clock.now(), server, options.binding)?;
    let mut out = vec![0u8; options.client.max_request_len];
    let mut buf = vec![0u8; RECV_BUFFER_LEN];
    loop {
        let now = clock.now();
        client.handle_timeout(now);
        while let Some(t) = client.poll_transmit(now, &mut out) {
            socket.send_to(&out[..t.len], t.to)?;
        }
        while let Some(event) = client.poll_event() {
            if event_id(&event) == id {
                let result = report_or_error(&event, local);
                match &result {
                    Ok(r) => tracing::debug!(mapped = %r.mapped, rtt = ?r.rtt, "server answered"),
                    Err(e) => tracing::debug!(error = %e, "no answer"),
                }
                return result;
            }
        }
        // The transaction is active until its event, so there is always a deadline.
        let Some(deadline) = client.poll_timeout() else {
            return Err(DriverError::Failed(TransactionError::TimedOut));
        };
        let wait = clock.until(deadline);
        if wait.is_zero() {
            continue;
        }
        socket.set_read_timeout(Some(wait))?;
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                tracing::trace!(%from, len = n, "datagram");
                client.handle_datagram(clock.now(), Datagram::new(local, from, &buf[..n]));
            }
            Err(e) if is_transient(&e) => {}
            Err(e) => {
                tracing::debug!(error = %e, "receive failed");
                return Err(e.into());
            }
        }
    }
}

/// The unspecified address of `addr`'s family, port 0.
pub fn unspecified_like(addr: SocketAddr) -> SocketAddr {
    let ip = match addr {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, 0)
}

/// Whether a socket error is only a timeout, an interruption, or a stale ICMP report (Windows
/// reports those on unconnected UDP sockets): nothing to stop for.
pub fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock
            | io::ErrorKind::TimedOut
            | io::ErrorKind::Interrupted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

/// The transaction an event belongs to.
pub fn event_id(event: &ClientEvent) -> holepunch_core::stun::TransactionId {
    match event {
        ClientEvent::Succeeded { id, .. } | ClientEvent::Failed { id, .. } => *id,
        // The core may add event kinds; none of them belongs to a Binding we started.
        _ => holepunch_core::stun::TransactionId::default(),
    }
}

fn wall_now() -> std::time::Instant {
    std::time::Instant::now()
}

fn wall_time_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// When the schedule gives up: last send plus the final wait.
    fn give_up_at(c: &ClientConfig) -> Duration {
        let last = ((1u32 << (c.max_sends - 1)) - 1) * c.initial_rto;
        last + c.initial_rto * c.last_wait_factor
    }

    #[test]
    fn retransmission_fits_the_timeout() {
        let rfc = retransmission_within(Duration::from_millis(39_500));
        assert_eq!(rfc.max_sends, 7);
        assert_eq!(rfc.last_wait_factor, 16);
        assert_eq!(rfc.initial_rto, Duration::from_millis(500));

        let five = retransmission_within(Duration::from_secs(5));
        assert_eq!(five.max_sends, 4, "sends at 0, 0.5, 1.5, 3.5 s");
        assert_eq!(give_up_at(&five), Duration::from_secs(5));

        for ms in [
            1, 3, 10, 250, 999, 1000, 1001, 2600, 7000, 60_000, 3_600_000,
        ] {
            let total = Duration::from_millis(ms);
            let c = retransmission_within(total);
            assert!(
                c.max_sends >= 1 && c.last_wait_factor >= 1,
                "{ms} ms: {c:?}"
            );
            assert!(
                give_up_at(&c) <= total,
                "{ms} ms gives up at {:?}",
                give_up_at(&c)
            );
        }
    }

    #[test]
    fn clock_round_trips() {
        let clock = Clock::new();
        let t = Instant::from_millis(1234);
        assert_eq!(clock.to_core(clock.deadline(t)), t);
        assert!(clock.deadline(Instant::FAR_FUTURE) > clock.epoch());
    }

    #[test]
    fn seeds_differ() {
        assert_ne!(os_seed(), os_seed());
    }
}
