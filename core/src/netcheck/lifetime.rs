//! How long the NAT keeps an idle UDP mapping (RFC 5780 §4.6, binding lifetime discovery),
//! sans-IO.
//!
//! [`LifetimeProbe`] runs one trial per idle time in [`LifetimeConfig::idle_times`], all at
//! once, each on its own *mapping socket* X: X sends a Binding request to the RFC 5780 server
//! A (opening a mapping), then stays silent. When its idle time has passed since A's answer,
//! the *prober socket* Y sends A a Binding request with RESPONSE-PORT set to X's mapped port:
//! A answers to the NAT's address at that port, from the address X talked to, so the answer
//! reaches X exactly when X's mapping (and its filter entry) still exists. X receiving the
//! answer to Y's transaction means alive; Y's transaction ending unanswered means expired.
//! Nothing else is sent from X, so no trial refreshes its own mapping.
//!
//! Mappings expire monotonically with idle time, so once one trial expires every longer one is
//! dropped unprobed: a NAT with a short timeout is measured in about that long plus the
//! retransmission profile (~2.2 s). The result is a bracket: the longest idle time survived
//! and the shortest one not survived. A server without RFC 5780 (it rejects RESPONSE-PORT) or
//! one that answers Y itself makes the run unmeasurable.
//!
//! A mapping that saw one request and its answer is what is measured: Linux conntrack gives
//! such a flow its short UDP timeout (30 s by default), while a flow with traffic both ways for
//! a while gets the longer "stream" one (120 s), so the figure is a safe bound for keepalives.

use alloc::vec::Vec;
use core::net::SocketAddr;

use crate::io::{Datagram, Deadline, Received, TimerReason, Transmit};
use crate::rng::Rng;
use crate::stun::client::{BindingOptions, Client, ClientConfig, ClientEvent, TransactionError};
use crate::stun::{Class, Message, TransactionId};
use crate::time::{Duration, Instant};

/// What to measure, and against which server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LifetimeConfig {
    /// The RFC 5780 server (it must honour RESPONSE-PORT).
    pub server: SocketAddr,
    /// The prober socket Y.
    pub prober: SocketAddr,
    /// One mapping socket X per idle time, same order as `idle_times`.
    pub mapping_sockets: Vec<SocketAddr>,
    /// The idle times tried, ascending (see [`LifetimeConfig::DEFAULT_IDLE_TIMES`]).
    pub idle_times: Vec<Duration>,
    /// Initial retransmission timeout of every request (200 ms; 4 sends, given up at 2.2 s).
    pub initial_rto: Duration,
}

impl LifetimeConfig {
    /// The default idle times, in seconds: fine where common NAT timeouts sit (20 s, Linux's
    /// 30 s, many home routers' 60 s, 120 s streams; 18 and 28 s sit just under the first two,
    /// so keepalives sized to the result come close to them), ending under two minutes.
    pub const DEFAULT_IDLE_TIMES: [u64; 16] =
        [2, 4, 7, 10, 15, 18, 20, 25, 28, 32, 40, 50, 60, 75, 90, 110];

    /// The default profile; `mapping_sockets` must hold one socket per default idle time.
    pub fn new(server: SocketAddr, prober: SocketAddr, mapping_sockets: Vec<SocketAddr>) -> Self {
        LifetimeConfig {
            server,
            prober,
            mapping_sockets,
            idle_times: Self::DEFAULT_IDLE_TIMES
                .iter()
                .map(|&s| Duration::from_secs(s))
                .collect(),
            initial_rto: Duration::from_millis(200),
        }
    }
}

/// A configuration the probe cannot run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LifetimeError {
    /// `mapping_sockets` and `idle_times` differ in length, or are empty.
    #[error(
        "one mapping socket per idle time is needed ({sockets} sockets, {idle_times} idle times)"
    )]
    Mismatch {
        /// Mapping sockets given.
        sockets: usize,
        /// Idle times given.
        idle_times: usize,
    },
    /// The idle times are not strictly ascending, or the retransmission timeout is zero.
    #[error("idle times must be strictly ascending and the RTO non-zero")]
    BadSchedule,
}

/// The measurement: a bracket around the mapping lifetime.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LifetimeReport {
    /// The longest idle time a mapping survived (`None`: none did, or not measurable).
    pub survived: Option<Duration>,
    /// The shortest idle time a mapping did not survive (`None`: every one tried survived, or
    /// not measurable).
    pub expired: Option<Duration>,
    /// Whether the server supported the test and every trial could start.
    pub measurable: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trial {
    /// X's opening request is in flight.
    Opening(TransactionId),
    /// X is silent until `probe_at`; its mapped port is `port`.
    Idle {
        probe_at: Instant,
        port: u16,
    },
    /// Y asked the server to answer to X's mapping.
    Probing(TransactionId),
    Alive,
    Expired,
    /// Not probed: a shorter idle time expired already, or X's request went unanswered.
    Dropped,
}

/// The lifetime prober: pumped like [`super::Netcheck`].
#[derive(Debug)]
pub struct LifetimeProbe {
    config: LifetimeConfig,
    /// Index 0 is Y's client, then one per mapping socket.
    clients: Vec<Client>,
    trials: Vec<Trial>,
    started: bool,
    broken: bool,
}

impl LifetimeProbe {
    /// A probe; `seed` drives transaction ids.
    pub fn new(config: LifetimeConfig, seed: u64) -> Result<Self, LifetimeError> {
        let (n, m) = (config.mapping_sockets.len(), config.idle_times.len());
        if n != m || n == 0 {
            return Err(LifetimeError::Mismatch {
                sockets: n,
                idle_times: m,
            });
        }
        if config.initial_rto.is_zero() || config.idle_times.windows(2).any(|w| w[0] >= w[1]) {
            return Err(LifetimeError::BadSchedule);
        }
        let mut rng = Rng::from_seed(seed);
        let client_config = ClientConfig {
            initial_rto: config.initial_rto,
            max_sends: 4,
            last_wait_factor: 4,
            max_transactions: n + 1,
            max_request_len: 256,
            pad_requests_to: 120,
            ..ClientConfig::default()
        };
        let clients = (0..=n)
            .map(|_| Client::new(client_config.clone(), rng.next_u64()))
            .collect();
        Ok(LifetimeProbe {
            trials: alloc::vec![Trial::Dropped; n],
            clients,
            config,
            started: false,
            broken: false,
        })
    }

    /// The local sockets to bind: the prober Y, then the mapping sockets.
    pub fn sockets(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        core::iter::once(self.config.prober).chain(self.config.mapping_sockets.iter().copied())
    }

    fn start(&mut self, now: Instant) {
        if self.started {
            return;
        }
        self.started = true;
        let server = self.config.server;
        for i in 0..self.trials.len() {
            self.trials[i] =
                match self.clients[i + 1].binding(now, server, BindingOptions::default()) {
                    Ok(id) => Trial::Opening(id),
                    Err(_) => {
                        self.broken = true;
                        Trial::Dropped
                    }
                };
        }
    }

    /// Feeds a datagram that arrived on one of the probe's sockets: [`Received::Consumed`] for
    /// an answer to one of its requests (on X's socket, through its mapping, the answer to Y's
    /// probe), else [`Received::AppData`] or [`Received::Unrecognized`] as for any machine.
    pub fn handle_datagram<'a>(&mut self, now: Instant, d: Datagram<'a>) -> Received<'a> {
        let Some(ci) = self.sockets().position(|s| s == d.local) else {
            return Received::unclaimed(d);
        };
        self.start(now);
        if self.clients[ci].handle_datagram(now, d) == Received::Consumed {
            self.drain_events(now);
            return Received::Consumed;
        }
        if ci > 0 && self.handle_probe_answer(ci - 1, d.from, d.payload) {
            Received::Consumed
        } else {
            Received::unclaimed(d)
        }
    }

    /// Whether `d`, which X's socket of trial `ti` took from `from`, answers Y's probe
    /// through X's mapping: then the mapping is alive.
    fn handle_probe_answer(&mut self, ti: usize, from: SocketAddr, d: &[u8]) -> bool {
        let Ok(msg) = Message::parse(d) else {
            return false;
        };
        if msg.class() != Class::SuccessResponse || from != self.config.server {
            return false;
        }
        let id = msg.transaction_id();
        if self.trials[ti] == Trial::Probing(id) {
            self.trials[ti] = Trial::Alive;
            self.clients[0].cancel(id);
            return true;
        }
        false
    }

    /// Advances timers: requests retired, idle trials probed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.start(now);
        for c in &mut self.clients {
            c.handle_timeout(now);
        }
        self.drain_events(now);
        for ti in 0..self.trials.len() {
            if let Trial::Idle { probe_at, port } = self.trials[ti] {
                if now < probe_at {
                    continue;
                }
                let options = BindingOptions {
                    response_port: Some(port),
                    ..BindingOptions::default()
                };
                self.trials[ti] = match self.clients[0].binding(now, self.config.server, options) {
                    Ok(id) => Trial::Probing(id),
                    Err(_) => {
                        self.broken = true;
                        Trial::Dropped
                    }
                };
            }
        }
    }

    fn drain_events(&mut self, now: Instant) {
        for ci in 0..self.clients.len() {
            while let Some(e) = self.clients[ci].poll_event() {
                self.on_event(now, ci, e);
            }
        }
    }

    fn on_event(&mut self, now: Instant, ci: usize, e: ClientEvent) {
        let (id, outcome) = match e {
            ClientEvent::Succeeded { id, mapped, .. } => (id, Ok(mapped)),
            ClientEvent::Failed { id, error, .. } => (id, Err(error)),
        };
        if ci == 0 {
            let Some(ti) = self.trials.iter().position(|t| *t == Trial::Probing(id)) else {
                return;
            };
            match outcome {
                Err(TransactionError::TimedOut) => {
                    self.trials[ti] = Trial::Expired;
                    // Longer idle times would expire too: drop them.
                    for t in &mut self.trials[ti + 1..] {
                        if !matches!(t, Trial::Alive | Trial::Expired) {
                            *t = Trial::Dropped;
                        }
                    }
                }
                // Answered to Y itself, or rejected: the server does not do RESPONSE-PORT.
                _ => {
                    self.broken = true;
                    self.trials.iter_mut().for_each(|t| *t = Trial::Dropped);
                }
            }
            return;
        }
        let ti = ci - 1;
        if self.trials[ti] != Trial::Opening(id) {
            return;
        }
        self.trials[ti] = match outcome {
            Ok(Some(mapped)) => Trial::Idle {
                probe_at: now + self.config.idle_times[ti],
                port: mapped.port(),
            },
            _ => {
                self.broken = true;
                Trial::Dropped
            }
        };
    }

    /// The next datagram to send, written into `out` (256 bytes suffice). It only drains:
    /// the run starts at the first input, so polling changes no timing.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut [u8]) -> Option<Transmit> {
        for ci in 0..self.clients.len() {
            if let Some(mut t) = self.clients[ci].poll_transmit(now, out) {
                t.from = self.sockets().nth(ci);
                return Some(t);
            }
        }
        None
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next needed, and why: at once before
    /// the run starts, then a request's (re)send or timeout, or an idle trial's probe.
    pub fn poll_deadline(&self) -> Option<Deadline> {
        if !self.started {
            return Some(Deadline::new(Instant::ZERO, TimerReason::Start));
        }
        let idle = self.trials.iter().filter_map(|t| match t {
            Trial::Idle { probe_at, .. } => Some(Deadline::new(*probe_at, TimerReason::IdleProbe)),
            _ => None,
        });
        self.clients
            .iter()
            .filter_map(Client::poll_deadline)
            .chain(idle)
            .min_by_key(|d| d.at)
    }

    /// [`poll_deadline`](Self::poll_deadline)'s instant alone.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.poll_deadline().map(|d| d.at)
    }

    /// Whether every trial has ended.
    pub fn is_done(&self) -> bool {
        self.started
            && self
                .trials
                .iter()
                .all(|t| matches!(t, Trial::Alive | Trial::Expired | Trial::Dropped))
    }

    /// The bracket measured so far.
    pub fn report(&self) -> LifetimeReport {
        if self.broken {
            return LifetimeReport::default();
        }
        let idle = |want: Trial| {
            self.trials
                .iter()
                .zip(&self.config.idle_times)
                .filter(move |(t, _)| **t == want)
                .map(|(_, d)| *d)
        };
        LifetimeReport {
            survived: idle(Trial::Alive).max(),
            expired: idle(Trial::Expired).min(),
            measurable: true,
        }
    }
}
