//! Netcheck: classifies the NAT in front of this host, sans-IO.
//!
//! [`Netcheck`] runs the RFC 5780 §4 behaviour-discovery tests (plus a hairpin probe, per-server
//! round-trip times and an IPv6 binding) over sockets its driver binds, and condenses the answers
//! into a [`Report`]. It is pumped like every holepunch state machine: `handle_datagram` /
//! `handle_timeout` in, `poll_transmit` / `poll_timeout` out, [`Netcheck::is_done`] when finished.
//! The run starts at the first input, `handle_timeout` or `handle_datagram` (whose `now` is its
//! start); before that [`Netcheck::poll_timeout`] asks for an immediate call. Output calls never
//! start it: how often a driver polls changes no timing.
//!
//! # Sockets and tests
//! The driver binds the local sockets named in [`NetcheckConfig::locals`]: two of one family
//! (normally IPv4), the *mapping socket* and the *filtering socket* (in that order), and
//! optionally one of the other family. Keeping the two test groups on separate sockets stops
//! one contaminating the other (RFC 5780 §4.5): the mapping tests open filter state towards the
//! server's alternate address, which would make the filtering tests pass on any NAT.
//!
//! - Mapping socket: Test I (a plain Binding request) to every configured server of its
//!   family, giving the public address X1 (from the first server, "A:a"), per-server RTTs and
//!   the RFC 5780 OTHER-ADDRESS "B:b". Unless X1 is the socket's own address (no NAT), Test II
//!   to B:a and Test III to B:b run concurrently (RFC 5780 §4.3).
//! - Filtering socket: only ever talks to A:a. Test I, then concurrently Test II
//!   (CHANGE-REQUEST ip+port) and Test III (port only) (RFC 5780 §4.4).
//! - Hairpin probes, once both sockets know their public addresses (X1, and the filtering
//!   socket's X1'): the filtering socket sends a Binding request to X1 and the mapping socket
//!   one to X1'; each socket recognises the other's by its transaction id. Sending both ways is
//!   a simultaneous open: a NAT that filters hairpinned packets like any inbound ones lets the
//!   second one through, because the first opened its filter. The destinations are the NAT's
//!   own address, never A or B, so they cannot open filter state that would fake a filtering
//!   result.
//! - Other-family socket: Test I to every server of its family (the public IPv6 address when
//!   the pair is IPv4).
//!
//! One STUN [`Client`] per socket: a response is only ever matched against transactions of the
//! socket it arrived on, so a datagram delivered to the wrong socket (a hairpinned request, a
//! NAT's confusion, a spoof) cannot complete another socket's test, and no
//! transaction-to-socket table needs keeping beside the client's own.
//!
//! Requests use a short retransmission profile (RTO 200 ms, Rc 4, Rm 4: sends at 0, 0.2, 0.6,
//! 1.4 s, given up at 2.2 s) and are padded to 120 bytes so a server that bounds its answers by
//! the request's size (ours) still includes OTHER-ADDRESS and RESPONSE-ORIGIN. A whole run takes
//! one round trip plus at most 2.2 s, even when the NAT swallows the filtering tests; an overall
//! [`NetcheckConfig::timeout`] caps it regardless.
//!
//! # Classification
//! Mapping, from the mapping socket's answered requests (Test I to each server, Tests II, III),
//! each a pair (destination, mapped address):
//! 1. some mapped address equals the socket's own address: no NAT, **endpoint-independent**;
//! 2. two destinations with the same IP but different ports got different mappings:
//!    **address-and-port-dependent** (RFC 5780's X3 ≠ X2);
//! 3. otherwise two destinations got different mappings (necessarily different IPs):
//!    **address-dependent** — at least; port dependence is unproven without a same-IP pair, and
//!    both classes are equally hard for hole punching;
//! 4. otherwise two destinations with different IPs got the same mapping:
//!    **endpoint-independent** (RFC 5780's X2 = X1);
//! 5. otherwise (one answer, or only same-IP destinations agreeing): **unknown**.
//!
//! With an RFC 5780 server this is exactly §4.3; without one, configuring two servers on
//! different IPs gives EIM versus "address-dependent or worse", and a third on the same IP as
//! one of them (different port) separates ADM from APDM.
//!
//! Filtering, from the filtering socket's Tests II and III (only run when A offered a valid
//! OTHER-ADDRESS): Test II answered from the alternate IP and port → **endpoint-independent**;
//! Test II unanswered, Test III answered from A's IP and the alternate port →
//! **address-dependent**; neither answered → **address-and-port-dependent**; a server that
//! rejects CHANGE-REQUEST or answers from the wrong address → **unknown**.
//!
//! Hairpinning: `Some(true)` once either socket receives the other's hairpin probe,
//! `Some(false)` when both probes' transactions end without that, `None` when they never ran (a
//! public address missing). An address-and-port-dependent mapping NAT that filters hairpinned
//! packets reads as not hairpinning whatever it supports: each probe leaves through a new
//! mapping the other socket's filter never saw, which is what hole punching between two hosts
//! behind it would meet too. Without a NAT the probes go to our own addresses and read as
//! `Some(true)`.
//!
//! [`Report::observed_ports`] lists the external port of every distinct mapping seen on the two
//! sockets of the pair, in the order the mappings were created (their first request's send
//! order), which is what [`crate::punch::PortPredictor::new`] wants.
//!
//! Nothing allocates per packet: clients and the probe table are sized at construction;
//! [`Netcheck::report`] allocates its result.
//!
//! # Example
//! The driver's loop, with the sockets left out:
//! ```
//! use holepunch_core::netcheck::{Netcheck, NetcheckConfig};
//! use holepunch_core::Instant;
//!
//! let servers = vec!["203.0.113.3:3478".parse().unwrap()];
//! let locals = vec!["192.168.1.2:5000".parse().unwrap(), "192.168.1.2:5001".parse().unwrap()];
//! let mut netcheck = Netcheck::new(NetcheckConfig::new(servers, locals), 42).unwrap();
//! // Bind a UDP socket on each of `netcheck.sockets()`; the first input starts the run:
//! let now = Instant::from_millis(0);
//! netcheck.handle_timeout(now);
//! // Then, until `is_done()`:
//! let mut buf = [0u8; 1280];
//! while let Some(t) = netcheck.poll_transmit(now, &mut buf) {
//!     // send buf[..t.len] from socket t.from to t.to
//! }
//! // Sleep until `poll_timeout()` or a datagram; feed it with `handle_datagram(now,
//! // Datagram::new(local, from, bytes))`; call `handle_timeout(now)`; repeat. Then:
//! let report = netcheck.report();
//! println!("mapping: {}, filtering: {}", report.mapping, report.filtering);
//! ```

use alloc::vec::Vec;
use core::fmt;
use core::net::{Ipv6Addr, SocketAddr};

use crate::io::{Datagram, Deadline, Received, TimerReason, Transmit};
use crate::rng::Rng;
use crate::stun::client::{BindingOptions, Client, ClientConfig, ClientEvent, TransactionError};
use crate::stun::{self, Class, Message, TransactionId};
use crate::time::{Duration, Instant};

mod config;
mod lifetime;
mod report;

pub use config::{NetcheckConfig, NetcheckError};
pub use lifetime::{LifetimeConfig, LifetimeError, LifetimeProbe, LifetimeReport};
pub use report::{Behaviour, Ipv6Prefix, PortmapAvailability, Report, ServerRtt};

use report::valid_other;

/// The prober.
#[derive(Debug)]
pub struct Netcheck {
    locals: Vec<SocketAddr>,
    servers: Vec<SocketAddr>,
    /// Whether the pair (mapping and filtering sockets) is IPv4.
    pair_v4: bool,
    mapping_socket: usize,
    filtering_socket: usize,
    other_socket: Option<usize>,
    /// "A": the first server of the pair's family.
    primary: SocketAddr,
    /// One per local socket, same index.
    clients: Vec<Client>,
    /// Every request started, in start order; capacity fixed at construction.
    probes: Vec<Probe>,
    timeout: Duration,
    started: Option<Instant>,
    deadline: Instant,
    /// Datagrams sent so far: orders mappings by creation.
    sent: u32,
    /// The mapping socket's first public address, target of the hairpin probe.
    hairpin_target: Option<SocketAddr>,
    /// The filtering socket's public address, target of the return hairpin probe.
    hairpin_return_target: Option<SocketAddr>,
    mapping_phase: bool,
    filtering_phase: bool,
    hairpin_phase: bool,
}

/// Which test a request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Test {
    /// Test I: plain Binding.
    Binding,
    /// Mapping Test II: to B:a.
    MappingII,
    /// Mapping Test III: to B:b.
    MappingIII,
    /// Filtering Test II: to A:a, change IP and port.
    FilteringII,
    /// Filtering Test III: to A:a, change port.
    FilteringIII,
    /// From the filtering socket to the mapping socket's public address.
    Hairpin,
    /// From the mapping socket to the filtering socket's public address.
    HairpinReturn,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Pending,
    Answered {
        from: SocketAddr,
        mapped: Option<SocketAddr>,
        other: Option<SocketAddr>,
        rtt: Duration,
    },
    /// Timed out (or cut off by the overall deadline).
    NoAnswer,
    /// Any other failure: an error response, a malformed answer.
    Rejected,
    /// A hairpin probe arrived on the other socket of the pair.
    Seen,
}

#[derive(Clone, Copy, Debug)]
struct Probe {
    socket: usize,
    test: Test,
    to: SocketAddr,
    id: TransactionId,
    /// Position of its first send among all datagrams sent.
    order: Option<u32>,
    outcome: Outcome,
}

impl Netcheck {
    /// The largest [`NetcheckConfig::pad_requests_to`] accepted: with it every request fits a
    /// 1280-byte buffer.
    pub const MAX_PADDING: usize = 1200;

    /// Checks `config` and builds the prober; `seed` drives transaction ids.
    pub fn new(config: NetcheckConfig, seed: u64) -> Result<Self, NetcheckError> {
        let NetcheckConfig {
            servers: configured,
            locals,
            initial_rto,
            max_sends,
            last_wait_factor,
            pad_requests_to,
            timeout,
        } = config;
        if !(2..=3).contains(&locals.len()) {
            return Err(NetcheckError::LocalCount {
                count: locals.len(),
            });
        }
        for (i, a) in locals.iter().enumerate() {
            if locals[..i].contains(a) {
                return Err(NetcheckError::DuplicateLocal(*a));
            }
        }
        let v4 = locals.iter().filter(|a| a.is_ipv4()).count();
        let pair_v4 = match (v4, locals.len() - v4) {
            (2, _) => true,
            (_, 2) => false,
            _ => return Err(NetcheckError::MixedFamilies),
        };
        let mut pair = locals
            .iter()
            .enumerate()
            .filter(|(_, a)| a.is_ipv4() == pair_v4)
            .map(|(i, _)| i);
        let (Some(mapping_socket), Some(filtering_socket)) = (pair.next(), pair.next()) else {
            return Err(NetcheckError::MixedFamilies);
        };
        let other_socket = locals.iter().position(|a| a.is_ipv4() != pair_v4);
        if max_sends == 0 || initial_rto.is_zero() {
            return Err(NetcheckError::InvalidRetransmission);
        }
        if pad_requests_to > Self::MAX_PADDING {
            return Err(NetcheckError::PaddingTooLarge(pad_requests_to));
        }
        let mut servers: Vec<SocketAddr> = Vec::with_capacity(configured.len());
        for s in configured {
            if !servers.contains(&s) {
                servers.push(s);
            }
        }
        let primary = *servers
            .iter()
            .find(|s| s.is_ipv4() == pair_v4)
            .ok_or(NetcheckError::NoServers)?;
        let n_pair = servers.iter().filter(|s| s.is_ipv4() == pair_v4).count();
        let n_other = if other_socket.is_some() {
            servers.len() - n_pair
        } else {
            0
        };

        let mut rng = Rng::from_seed(seed);
        let clients = (0..locals.len())
            .map(|i| {
                let max_transactions = if i == mapping_socket {
                    n_pair + 3 // Test I to each server, Tests II and III, a hairpin probe
                } else if i == filtering_socket {
                    4 // Test I, filtering Tests II and III, the hairpin probe
                } else {
                    n_other.max(1)
                };
                let config = ClientConfig {
                    initial_rto,
                    max_sends,
                    last_wait_factor,
                    max_transactions,
                    // Room for the padding plus CHANGE-REQUEST, RESPONSE-PORT and FINGERPRINT.
                    max_request_len: pad_requests_to.max(64) + 64,
                    software: None,
                    credentials: None,
                    pad_requests_to,
                };
                Client::new(config, rng.next_u64())
            })
            .collect();
        Ok(Netcheck {
            // Test I per server; mapping II, III; filtering I, II, III; two hairpin probes.
            probes: Vec::with_capacity(n_pair + n_other + 7),
            locals,
            servers,
            pair_v4,
            mapping_socket,
            filtering_socket,
            other_socket,
            primary,
            clients,
            timeout,
            started: None,
            deadline: Instant::FAR_FUTURE,
            sent: 0,
            hairpin_target: None,
            hairpin_return_target: None,
            mapping_phase: false,
            filtering_phase: false,
            hairpin_phase: false,
        })
    }

    /// The local sockets the driver must bind and pump, as configured.
    pub fn sockets(&self) -> &[SocketAddr] {
        &self.locals
    }

    /// Feeds a datagram that arrived on one of netcheck's sockets: [`Received::Consumed`] when
    /// it was netcheck's (an answer to one of its requests, late duplicates included, or the
    /// hairpin probe), [`Received::AppData`] for anything that is not STUN, and
    /// [`Received::Unrecognized`] for STUN that is not netcheck's, left to the caller.
    pub fn handle_datagram<'a>(&mut self, now: Instant, d: Datagram<'a>) -> Received<'a> {
        let Some(socket) = self.locals.iter().position(|l| *l == d.local) else {
            return Received::unclaimed(d);
        };
        // Any input may come first: a datagram starts the run as a timeout would.
        self.start(now);
        if self.clients[socket].handle_datagram(now, d) == Received::Consumed {
            self.drain(now);
            return Received::Consumed;
        }
        if stun::looks_like_stun(d.payload) && self.handle_hairpin(socket, d.payload) {
            Received::Consumed
        } else {
            Received::unclaimed(d)
        }
    }

    /// Whether `datagram`, STUN that no client took, is one of netcheck's own probes (a
    /// hairpin probe or a late copy of a request); a hairpin probe settles both directions.
    fn handle_hairpin(&mut self, socket: usize, datagram: &[u8]) -> bool {
        let Ok(msg) = Message::parse(datagram) else {
            return false;
        };
        let id = msg.transaction_id();
        let Some(probe) = self.probes.iter_mut().find(|p| p.id == id) else {
            return false;
        };
        let hairpinned = match probe.test {
            Test::Hairpin => socket == self.mapping_socket,
            Test::HairpinReturn => socket == self.filtering_socket,
            _ => false,
        };
        if hairpinned && msg.class() == Class::Request && probe.outcome == Outcome::Pending {
            // One direction suffices: settle both probes.
            for p in &mut self.probes {
                if matches!(p.test, Test::Hairpin | Test::HairpinReturn)
                    && p.outcome == Outcome::Pending
                {
                    p.outcome = Outcome::Seen;
                    self.clients[p.socket].cancel(p.id);
                }
            }
        }
        true
    }

    /// Retires requests whose time is up and starts the tests their answers unlocked; the
    /// first input (this or a datagram) starts the run. Early calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.start(now);
        for c in &mut self.clients {
            c.handle_timeout(now);
        }
        self.drain(now);
        if now >= self.deadline {
            self.expire();
        }
    }

    /// The next datagram to send, written into `out` (1280 bytes always suffice);
    /// `Transmit::from` names the local socket to send it from.
    ///
    /// It only drains: before the run starts (at the first input) there is nothing to send.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut [u8]) -> Option<Transmit> {
        for socket in 0..self.clients.len() {
            let Some(t) = self.clients[socket].poll_transmit(now, out) else {
                continue;
            };
            let id = out
                .get(8..stun::HEADER_LEN)
                .and_then(|b| <[u8; 12]>::try_from(b).ok())
                .map(TransactionId);
            let order = self.sent;
            self.sent = self.sent.saturating_add(1);
            if let Some(p) = self
                .probes
                .iter_mut()
                .find(|p| p.socket == socket && Some(p.id) == id && p.order.is_none())
            {
                p.order = Some(order);
            }
            return Some(Transmit {
                from: Some(self.locals[socket]),
                ..t
            });
        }
        None
    }

    /// When netcheck next needs `handle_timeout` or `poll_transmit`: `now` or earlier while a
    /// send is due (before the run starts: at once), `None` once done.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.poll_deadline().map(|d| d.at)
    }

    /// [`poll_timeout`](Self::poll_timeout) with the reason: the start, a (re)send, or the
    /// run's time limit.
    pub fn poll_deadline(&self) -> Option<Deadline> {
        if self.started.is_none() {
            return Some(Deadline::new(Instant::ZERO, TimerReason::Start));
        }
        let send = self
            .clients
            .iter()
            .filter_map(Client::poll_deadline)
            .min_by_key(|d| d.at)?;
        Some(if self.deadline < send.at {
            Deadline::new(self.deadline, TimerReason::RunLimit)
        } else {
            send
        })
    }

    /// Whether the run has finished: every request answered or given up.
    pub fn is_done(&self) -> bool {
        self.started.is_some() && self.clients.iter().all(Client::is_idle)
    }

    fn start(&mut self, now: Instant) {
        if self.started.is_some() {
            return;
        }
        self.started = Some(now);
        self.deadline = now + self.timeout;
        for k in 0..self.servers.len() {
            let server = self.servers[k];
            let Some(socket) = self.socket_for(server) else {
                continue;
            };
            self.start_probe(
                now,
                socket,
                Test::Binding,
                server,
                BindingOptions::default(),
            );
        }
        let (socket, primary) = (self.filtering_socket, self.primary);
        self.start_probe(
            now,
            socket,
            Test::Binding,
            primary,
            BindingOptions::default(),
        );
    }

    fn start_probe(
        &mut self,
        now: Instant,
        socket: usize,
        test: Test,
        to: SocketAddr,
        options: BindingOptions,
    ) {
        // Slots are sized for every test, so this cannot fail; if it did, the test simply
        // has no result and classifies as unknown.
        if let Ok(id) = self.clients[socket].binding(now, to, options) {
            self.probes.push(Probe {
                socket,
                test,
                to,
                id,
                order: None,
                outcome: Outcome::Pending,
            });
        }
    }

    /// Collects finished transactions, then starts whatever they unlocked.
    fn drain(&mut self, now: Instant) {
        for socket in 0..self.clients.len() {
            while let Some(event) = self.clients[socket].poll_event() {
                self.record(socket, event);
            }
        }
        if now < self.deadline {
            self.advance(now);
        }
    }

    fn record(&mut self, socket: usize, event: ClientEvent) {
        let (id, outcome) = match event {
            ClientEvent::Succeeded {
                id,
                from,
                mapped,
                other_address,
                rtt,
                ..
            } => (
                id,
                Outcome::Answered {
                    from,
                    mapped,
                    other: other_address,
                    rtt,
                },
            ),
            ClientEvent::Failed {
                id,
                error: TransactionError::TimedOut,
                ..
            } => (id, Outcome::NoAnswer),
            ClientEvent::Failed { id, .. } => (id, Outcome::Rejected),
        };
        let Some(probe) = self
            .probes
            .iter_mut()
            .find(|p| p.socket == socket && p.id == id && p.outcome == Outcome::Pending)
        else {
            return;
        };
        probe.outcome = outcome;
        if probe.test == Test::Binding {
            if let Outcome::Answered {
                mapped: Some(m), ..
            } = outcome
            {
                // Only an address the other socket of the pair can actually send to.
                if m.is_ipv4() == self.pair_v4 && !m.ip().is_unspecified() && m.port() != 0 {
                    if socket == self.mapping_socket {
                        self.hairpin_target.get_or_insert(m);
                    } else if socket == self.filtering_socket {
                        self.hairpin_return_target.get_or_insert(m);
                    }
                }
            }
        }
    }

    /// Starts the second-phase tests once the first-phase answers they need are in.
    fn advance(&mut self, now: Instant) {
        let a = self.primary;
        if !self.mapping_phase {
            if let Some(outcome) = self.primary_outcome(self.mapping_socket) {
                self.mapping_phase = true;
                let local = self.locals[self.mapping_socket];
                if let Outcome::Answered {
                    mapped: Some(x1),
                    other,
                    ..
                } = outcome
                {
                    if let (true, Some(b)) = (x1 != local, valid_other(a, other)) {
                        let socket = self.mapping_socket;
                        let b_a = SocketAddr::new(b.ip(), a.port());
                        let plain = BindingOptions::default();
                        self.start_probe(now, socket, Test::MappingII, b_a, plain);
                        self.start_probe(now, socket, Test::MappingIII, b, plain);
                    }
                }
            }
        }
        if !self.filtering_phase {
            if let Some(outcome) = self.primary_outcome(self.filtering_socket) {
                self.filtering_phase = true;
                if let Outcome::Answered { other, .. } = outcome {
                    if valid_other(a, other).is_some() {
                        let socket = self.filtering_socket;
                        let both = BindingOptions {
                            change_ip: true,
                            change_port: true,
                            response_port: None,
                        };
                        let port = BindingOptions {
                            change_port: true,
                            ..BindingOptions::default()
                        };
                        self.start_probe(now, socket, Test::FilteringII, a, both);
                        self.start_probe(now, socket, Test::FilteringIII, a, port);
                    }
                }
            }
        }
        // Last, so a sequential allocator hands the tests' mappings consecutive ports.
        if !self.hairpin_phase && self.mapping_phase {
            if let (Some(target), Some(back)) = (self.hairpin_target, self.hairpin_return_target) {
                self.hairpin_phase = true;
                let plain = BindingOptions::default();
                let (filtering, mapping) = (self.filtering_socket, self.mapping_socket);
                self.start_probe(now, filtering, Test::Hairpin, target, plain);
                self.start_probe(now, mapping, Test::HairpinReturn, back, plain);
            }
        }
    }

    /// Gives up on everything still open (the overall deadline passed).
    fn expire(&mut self) {
        for p in &mut self.probes {
            if p.outcome == Outcome::Pending {
                self.clients[p.socket].cancel(p.id);
                p.outcome = Outcome::NoAnswer;
            }
        }
    }

    /// The socket that probes `server`: the mapping socket for the pair's family, the other
    /// family's socket otherwise (if there is one).
    fn socket_for(&self, server: SocketAddr) -> Option<usize> {
        if server.is_ipv4() == self.pair_v4 {
            Some(self.mapping_socket)
        } else {
            self.other_socket
        }
    }
}
