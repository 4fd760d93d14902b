//! A sans-IO port-mapping client: probes PCP and NAT-PMP at once, prefers PCP, keeps the mapping
//! renewed, notices gateway restarts and address changes, and deletes the mapping on close.
//!
//! Pumped like every holepunch machine: `handle_datagram` / `handle_timeout` / `close` in;
//! `poll_transmit`, `poll_event` and `poll_timeout` out. All datagrams go to the gateway's port
//! 5351 from one socket the driver owns (not the mapped one); unsolicited announcements arrive
//! from the same gateway port and are fed in the same way.
//!
//! Life of a mapping:
//! 1. Probe: a PCP MAP request and a NAT-PMP external address request go out together and are
//!    retransmitted on RFC 6886's doubling schedule ([`RetryPolicy`]). A PCP success wins at once.
//!    If NAT-PMP answers first, PCP keeps one retransmission interval of grace, then NAT-PMP is
//!    used. A version-0 answer to PCP, or a PCP refusal, means NAT-PMP.
//! 2. NAT-PMP only: a MAP request on the same schedule.
//! 3. Mapped: renewed at half the granted lifetime with the same nonce and the assigned port. An
//!    epoch that went backwards (in any answer or announcement) means the gateway lost its
//!    mappings: re-map at once.
//! 4. Close: a delete (lifetime 0, same nonce) for every protocol a MAP went out on, sent up to 3
//!    times, then [`PortmapEvent::Closed`].
//!
//! Every wait is bounded: a gateway that never answers costs [`RetryPolicy::max_sends`] sends
//! and ends in [`PortmapEvent::Failed`]; bad datagrams are typed errors and change nothing.

use alloc::collections::VecDeque;
use core::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::natpmp::{self, NatPmpError};
use super::pcp::{self, Nonce, PcpError};
use super::{EpochTracker, Protocol, RetryPolicy, SERVER_PORT};
use crate::io::{Datagram, Deadline, TimerReason, Transmit};
use crate::rng::Rng;
use crate::time::{Duration, Instant};

/// The largest request this client writes; `poll_transmit` buffers must be at least this long.
pub const MAX_REQUEST_LEN: usize = pcp::MAP_LEN;
/// How many times a delete is sent before giving up on hearing back.
const DELETE_SENDS: u8 = 3;
/// Events kept for the caller before the oldest are dropped.
const EVENT_CAPACITY: usize = 8;

/// Which protocols the client may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protocols {
    /// PCP (RFC 6887).
    pub pcp: bool,
    /// NAT-PMP (RFC 6886).
    pub natpmp: bool,
}

impl Protocols {
    /// Both, PCP preferred.
    pub const ALL: Protocols = Protocols {
        pcp: true,
        natpmp: true,
    };
}

/// What to map, and where to ask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// The gateway's address (the default route's next hop); requests go to its port 5351.
    pub gateway: IpAddr,
    /// This host's address on the link to the gateway (PCP's client address field).
    pub client_ip: IpAddr,
    /// UDP or TCP.
    pub protocol: Protocol,
    /// The local port to map.
    pub internal_port: u16,
    /// The external port wished for (0: no preference; the gateway may pick another anyway).
    pub suggested_external_port: u16,
    /// Requested lifetime (RFC 6886 recommends 7200 s).
    pub lifetime: Duration,
    /// Which protocols to try.
    pub protocols: Protocols,
    /// Retransmission schedule.
    pub retry: RetryPolicy,
}

/// The protocol a mapping was made with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MappedVia {
    /// PCP (RFC 6887).
    Pcp,
    /// NAT-PMP (RFC 6886).
    NatPmp,
    /// UPnP IGD (the `upnp` client; needs the `std` feature).
    Upnp,
}

/// What the client reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PortmapEvent {
    /// The first mapping exists.
    Mapped {
        /// How it was made.
        via: MappedVia,
        /// The public address and port that now reach the internal port.
        external: SocketAddr,
        /// The lifetime the gateway granted.
        lifetime: Duration,
    },
    /// The mapping was renewed (or re-created after a gateway restart) unchanged.
    Renewed {
        /// How.
        via: MappedVia,
        /// The public address and port.
        external: SocketAddr,
        /// The newly granted lifetime.
        lifetime: Duration,
    },
    /// The public address or port of the mapping changed.
    ExternalAddressChanged {
        /// The new public address and port.
        external: SocketAddr,
    },
    /// The gateway's epoch showed it lost its mappings; the client is re-mapping.
    GatewayRestarted,
    /// No mapping could be made or kept; the client has stopped.
    Failed(PortmapError),
    /// After [`Client::close`]: the delete was acknowledged or its retries ran out.
    Closed,
}

/// Why a datagram was rejected or the client gave up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PortmapError {
    /// Neither protocol answered within the retry budget.
    #[error("no port-mapping gateway answered")]
    NoAnswer,
    /// Neither protocol is enabled (or only NAT-PMP, which needs an IPv4 gateway).
    #[error("no usable port-mapping protocol for this gateway")]
    NoProtocol,
    /// The datagram did not come from the gateway's port 5351.
    #[error("datagram not from the gateway")]
    NotFromGateway,
    /// Neither NAT-PMP (0) nor PCP (2).
    #[error("unknown protocol version {0}")]
    UnknownVersion(u8),
    /// A PCP answer with another mapping's nonce (spoofed, or stale).
    #[error("PCP answer with the wrong nonce")]
    NonceMismatch,
    /// A well-formed answer for another port, protocol or request.
    #[error("answer for another mapping or request")]
    Unexpected,
    /// A malformed PCP datagram.
    #[error("PCP: {0}")]
    Pcp(#[from] PcpError),
    /// A malformed NAT-PMP datagram.
    #[error("NAT-PMP: {0}")]
    NatPmp(#[from] NatPmpError),
    /// The PCP server refused.
    #[error("PCP server refused: {0}")]
    PcpRefused(pcp::ResultCode),
    /// The NAT-PMP gateway refused.
    #[error("NAT-PMP gateway refused: {0}")]
    NatPmpRefused(natpmp::ResultCode),
    /// A UPnP IGD exchange failed.
    #[cfg(feature = "std")]
    #[error("UPnP: {0}")]
    Upnp(super::upnp::UpnpError),
}

/// Where one protocol stands during the probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Probe {
    Pending,
    Answered,
    Unavailable,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// PCP MAP and NAT-PMP external address requests in flight.
    Probing,
    /// NAT-PMP MAP in flight for a new mapping.
    NatPmpMapping,
    /// Holding a mapping; renewal due at `renew_at`.
    Mapped,
    /// Renewal (or re-creation) request in flight.
    Renewing,
    /// Delete in flight.
    Deleting,
    /// Finished; nothing more happens.
    Done,
}

// Pending transmissions, as bits.
const SEND_PCP_MAP: u8 = 1;
const SEND_NATPMP_EXTERNAL: u8 = 2;
const SEND_NATPMP_MAP: u8 = 4;

/// The port-mapping client. See the [module docs](self) for its life cycle.
#[derive(Clone, Debug)]
pub struct Client {
    config: ClientConfig,
    nonce: Nonce,
    phase: Phase,
    pcp: Probe,
    natpmp: Probe,
    via: Option<MappedVia>,
    natpmp_external_ip: Option<Ipv4Addr>,
    external: Option<SocketAddr>,
    /// Sends of the current request so far.
    sends: u8,
    /// Retransmit (or give up) at this time.
    retry_at: Option<Instant>,
    /// Renew at this time, while mapped.
    renew_at: Option<Instant>,
    pending: u8,
    /// Protocols a MAP went out on, so close() deletes whatever may exist.
    pcp_map_sent: bool,
    natpmp_map_sent: bool,
    epoch: EpochTracker,
    last_refusal: Option<PortmapError>,
    events: VecDeque<PortmapEvent>,
    /// The latest `now` an input gave: the deadline while output is pending.
    now: Instant,
    stats: ClientStats,
}

/// Counters of work the client dropped rather than queue without bound.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStats {
    /// Events dropped, oldest first, because the application left the queue full.
    pub events_dropped: u64,
}

impl Client {
    /// Starts probing at `now`; the nonce comes from `rng`.
    pub fn new(now: Instant, rng: &mut Rng, config: ClientConfig) -> Self {
        let natpmp_ok = config.protocols.natpmp && config.gateway.is_ipv4();
        let mut c = Client {
            config,
            nonce: Nonce::random(rng),
            phase: Phase::Probing,
            pcp: if config.protocols.pcp {
                Probe::Pending
            } else {
                Probe::Unavailable
            },
            natpmp: if natpmp_ok {
                Probe::Pending
            } else {
                Probe::Unavailable
            },
            via: None,
            natpmp_external_ip: None,
            external: None,
            sends: 0,
            retry_at: None,
            renew_at: None,
            pending: 0,
            pcp_map_sent: false,
            natpmp_map_sent: false,
            epoch: EpochTracker::new(),
            last_refusal: None,
            events: VecDeque::with_capacity(EVENT_CAPACITY),
            now,
            stats: ClientStats::default(),
        };
        if c.pcp == Probe::Unavailable && c.natpmp == Probe::Unavailable {
            c.fail(PortmapError::NoProtocol);
        } else {
            c.start_sending(now);
        }
        c
    }

    /// The current mapping's public address, if there is one.
    pub fn external(&self) -> Option<SocketAddr> {
        self.external.filter(|_| self.via.is_some())
    }

    /// Whether the client has stopped (failed or closed).
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// A datagram received from `d.from` on the port-mapping socket.
    ///
    /// Rejected datagrams (wrong source, malformed, wrong nonce, another mapping's) return the
    /// reason and change nothing, so garbage can neither stall nor steer the client.
    pub fn handle_datagram(&mut self, now: Instant, d: Datagram<'_>) -> Result<(), PortmapError> {
        self.observe(now);
        let (from, data) = (d.from, d.payload);
        if from != SocketAddr::new(self.config.gateway, SERVER_PORT) {
            return Err(PortmapError::NotFromGateway);
        }
        if self.phase == Phase::Done {
            return Ok(());
        }
        match data.first() {
            Some(&pcp::VERSION) => self.handle_pcp(now, data),
            Some(&natpmp::VERSION) => self.handle_natpmp(now, data),
            Some(&v) => Err(PortmapError::UnknownVersion(v)),
            None => Err(PortmapError::NatPmp(NatPmpError::TooShort(0))),
        }
    }

    /// Retransmits, renews or gives up as due. Early calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.observe(now);
        if self.renew_at.is_some_and(|t| now >= t) && self.phase == Phase::Mapped {
            self.renew_at = None;
            self.phase = Phase::Renewing;
            self.start_sending(now);
            return;
        }
        let Some(at) = self.retry_at else { return };
        if now < at {
            return;
        }
        // NAT-PMP answered and PCP stayed silent for a whole interval: use NAT-PMP.
        if self.phase == Phase::Probing
            && self.natpmp == Probe::Answered
            && self.pcp == Probe::Pending
        {
            self.pcp = Probe::Unavailable;
            self.phase = Phase::NatPmpMapping;
            self.start_sending(now);
            return;
        }
        let budget = if self.phase == Phase::Deleting {
            DELETE_SENDS.min(self.config.retry.sends())
        } else {
            self.config.retry.sends()
        };
        if self.sends < budget {
            self.sends += 1;
            self.retry_at = Some(now + self.config.retry.wait_after(self.sends));
            self.pending = self.requests_for_phase();
            return;
        }
        match self.phase {
            Phase::Deleting => self.finish(PortmapEvent::Closed),
            _ => {
                let why = self.last_refusal.unwrap_or(PortmapError::NoAnswer);
                self.fail(why)
            }
        }
    }

    /// Deletes the mapping (and any that may have been made unheard) and stops; ends with
    /// [`PortmapEvent::Closed`]. Calling it again does nothing.
    pub fn close(&mut self, now: Instant) {
        self.observe(now);
        if matches!(self.phase, Phase::Deleting | Phase::Done) {
            return;
        }
        if !self.pcp_map_sent && !self.natpmp_map_sent {
            self.finish(PortmapEvent::Closed);
            return;
        }
        self.phase = Phase::Deleting;
        self.renew_at = None;
        self.start_sending(now);
    }

    /// Writes the next request into `out` (at least [`MAX_REQUEST_LEN`] bytes).
    pub fn poll_transmit(&mut self, _now: Instant, out: &mut [u8]) -> Option<Transmit> {
        if out.len() < MAX_REQUEST_LEN {
            return None;
        }
        let deleting = self.phase == Phase::Deleting;
        let lifetime = if deleting { 0 } else { self.lifetime_secs() };
        let len = if self.pending & SEND_PCP_MAP != 0 {
            self.pending &= !SEND_PCP_MAP;
            self.pcp_map_sent |= !deleting;
            let req = pcp::MapRequest {
                nonce: self.nonce,
                protocol: self.config.protocol,
                client_ip: self.config.client_ip,
                internal_port: self.config.internal_port,
                suggested_external_port: self.suggested_port(),
                suggested_external_ip: self.external.map(|e| e.ip()),
                lifetime_secs: lifetime,
            };
            out[..pcp::MAP_LEN].copy_from_slice(&req.encode());
            pcp::MAP_LEN
        } else if self.pending & SEND_NATPMP_EXTERNAL != 0 {
            self.pending &= !SEND_NATPMP_EXTERNAL;
            out[..2].copy_from_slice(&natpmp::external_address_request());
            2
        } else if self.pending & SEND_NATPMP_MAP != 0 {
            self.pending &= !SEND_NATPMP_MAP;
            self.natpmp_map_sent |= !deleting;
            let req = if deleting {
                natpmp::MapRequest::unmap(self.config.protocol, self.config.internal_port)
            } else {
                natpmp::MapRequest {
                    protocol: self.config.protocol,
                    internal_port: self.config.internal_port,
                    suggested_external_port: self.suggested_port(),
                    lifetime_secs: lifetime,
                }
            };
            out[..12].copy_from_slice(&req.encode());
            12
        } else {
            return None;
        };
        Some(Transmit {
            from: None,
            to: SocketAddr::new(self.config.gateway, SERVER_PORT),
            len,
        })
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<PortmapEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called, and why: the latest
    /// `now` it was given while a request or an event waits to be polled, else the next
    /// retransmission or renewal. Polling outputs never moves it.
    pub fn poll_deadline(&self) -> Option<Deadline> {
        if self.pending != 0 || !self.events.is_empty() {
            return Some(Deadline::new(self.now, TimerReason::OutputPending));
        }
        Deadline::earliest(
            self.retry_at
                .map(|at| Deadline::new(at, TimerReason::Retransmit)),
            self.renew_at
                .map(|at| Deadline::new(at, TimerReason::Refresh)),
        )
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

    fn handle_pcp(&mut self, now: Instant, data: &[u8]) -> Result<(), PortmapError> {
        let r = pcp::Response::parse(data)?;
        if r.opcode == pcp::OP_ANNOUNCE {
            self.observe_epoch(now, r.epoch);
            return Ok(());
        }
        if let Some(m) = r.map {
            if m.nonce != self.nonce {
                return Err(PortmapError::NonceMismatch);
            }
            if m.internal_port != self.config.internal_port
                || m.protocol != self.config.protocol.iana()
            {
                return Err(PortmapError::Unexpected);
            }
        }
        let pcp_in_use = self.via == Some(MappedVia::Pcp);
        match (self.phase, r.error, r.map) {
            (Phase::Probing, None, Some(m)) => {
                self.pcp = Probe::Answered;
                self.observe_epoch(now, r.epoch);
                self.mapped(now, MappedVia::Pcp, m.external, r.lifetime_secs);
            }
            (Phase::Renewing | Phase::Mapped, None, Some(m)) if pcp_in_use => {
                self.observe_epoch(now, r.epoch);
                self.mapped(now, MappedVia::Pcp, m.external, r.lifetime_secs);
            }
            (Phase::Deleting, _, _) => self.finish(PortmapEvent::Closed),
            (Phase::Probing, Some(code), _) => {
                self.last_refusal = Some(PortmapError::PcpRefused(code));
                self.pcp_unavailable(now);
            }
            (Phase::Renewing, Some(code), _) if pcp_in_use && !code.is_short_lived() => {
                self.fail(PortmapError::PcpRefused(code));
            }
            // Short-lived refusals during renewal: keep retrying on schedule.
            (Phase::Renewing, Some(_), _) if pcp_in_use => {}
            _ => return Err(PortmapError::Unexpected),
        }
        Ok(())
    }

    fn handle_natpmp(&mut self, now: Instant, data: &[u8]) -> Result<(), PortmapError> {
        let r = match natpmp::Response::parse(data) {
            Ok(r) => r,
            // A NAT-PMP-only gateway answering our PCP request (RFC 6887 §9): fall back.
            Err(NatPmpError::Result {
                opcode: pcp::OP_MAP,
                code: natpmp::ResultCode::UnsupportedVersion,
            }) if self.phase == Phase::Probing => {
                self.pcp_unavailable(now);
                return Ok(());
            }
            Err(NatPmpError::Result { opcode, code }) => {
                return self.natpmp_refused(opcode, code);
            }
            Err(e) => return Err(e.into()),
        };
        match r {
            natpmp::Response::ExternalAddress { epoch, addr } => {
                self.observe_epoch(now, epoch);
                let changed = self.natpmp_external_ip.is_some_and(|old| old != addr);
                self.natpmp_external_ip = Some(addr);
                if self.phase == Phase::Probing && self.natpmp == Probe::Pending {
                    self.natpmp = Probe::Answered;
                    if self.pcp == Probe::Unavailable {
                        self.phase = Phase::NatPmpMapping;
                        self.start_sending(now);
                    }
                } else if changed && self.via == Some(MappedVia::NatPmp) {
                    if let Some(ext) = self.external {
                        let moved = SocketAddr::new(IpAddr::V4(addr), ext.port());
                        self.external = Some(moved);
                        self.push(PortmapEvent::ExternalAddressChanged { external: moved });
                    }
                }
            }
            natpmp::Response::Map {
                protocol,
                epoch,
                internal_port,
                external_port,
                lifetime_secs,
            } => {
                if protocol != self.config.protocol || internal_port != self.config.internal_port {
                    return Err(PortmapError::Unexpected);
                }
                match self.phase {
                    Phase::Deleting => self.finish(PortmapEvent::Closed),
                    Phase::NatPmpMapping | Phase::Renewing | Phase::Mapped
                        if self.via != Some(MappedVia::Pcp) && lifetime_secs > 0 =>
                    {
                        self.observe_epoch(now, epoch);
                        let ip = self.natpmp_external_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
                        let ext = SocketAddr::new(IpAddr::V4(ip), external_port);
                        self.mapped(now, MappedVia::NatPmp, ext, lifetime_secs);
                    }
                    _ => return Err(PortmapError::Unexpected),
                }
            }
        }
        Ok(())
    }

    fn natpmp_refused(&mut self, opcode: u8, code: natpmp::ResultCode) -> Result<(), PortmapError> {
        let err = PortmapError::NatPmpRefused(code);
        match self.phase {
            Phase::Probing if opcode == natpmp::OP_EXTERNAL_ADDRESS => {
                self.natpmp = Probe::Unavailable;
                self.last_refusal = Some(err);
                if self.pcp == Probe::Unavailable {
                    self.fail(err);
                }
            }
            Phase::Deleting => self.finish(PortmapEvent::Closed),
            Phase::NatPmpMapping | Phase::Renewing
                if opcode != natpmp::OP_EXTERNAL_ADDRESS && self.via != Some(MappedVia::Pcp) =>
            {
                // Short-lived conditions (RFC 6886 §3.5: 3, 4) are retried on schedule.
                if !matches!(
                    code,
                    natpmp::ResultCode::NetworkFailure | natpmp::ResultCode::OutOfResources
                ) {
                    self.fail(err);
                } else {
                    self.last_refusal = Some(err);
                }
            }
            _ => return Err(PortmapError::Unexpected),
        }
        Ok(())
    }

    /// PCP is out (refused, or the gateway only speaks NAT-PMP): continue with NAT-PMP if it
    /// answered, wait for it if it is still pending, fail if it is out too.
    fn pcp_unavailable(&mut self, now: Instant) {
        self.pcp = Probe::Unavailable;
        self.pending &= !SEND_PCP_MAP;
        match self.natpmp {
            Probe::Answered => {
                self.phase = Phase::NatPmpMapping;
                self.start_sending(now);
            }
            Probe::Pending => {}
            Probe::Unavailable => {
                let why = self.last_refusal.unwrap_or(PortmapError::NoAnswer);
                self.fail(why);
            }
        }
    }

    /// Records an epoch; a restart while mapped re-creates the mapping at once.
    fn observe_epoch(&mut self, now: Instant, epoch: u32) {
        if self.epoch.observe(now, epoch) && self.via.is_some() {
            self.push(PortmapEvent::GatewayRestarted);
            if matches!(self.phase, Phase::Mapped | Phase::Renewing) {
                self.phase = Phase::Renewing;
                self.renew_at = None;
                self.start_sending(now);
            }
        }
    }

    fn mapped(&mut self, now: Instant, via: MappedVia, external: SocketAddr, lifetime_secs: u32) {
        let lifetime = Duration::from_secs(u64::from(lifetime_secs));
        let event = match (self.via, self.external) {
            (None, _) => PortmapEvent::Mapped {
                via,
                external,
                lifetime,
            },
            (Some(_), Some(old)) if old != external => {
                PortmapEvent::ExternalAddressChanged { external }
            }
            _ => PortmapEvent::Renewed {
                via,
                external,
                lifetime,
            },
        };
        self.push(event);
        self.via = Some(via);
        self.external = Some(external);
        self.phase = Phase::Mapped;
        self.pending = 0;
        self.retry_at = None;
        self.last_refusal = None;
        // Half the lifetime (RFC 6886 §3.3, RFC 6887 §11.2.1), at least a second apart.
        self.renew_at = Some(now + (lifetime / 2).max(Duration::from_secs(1)));
    }

    /// Queues the current phase's requests and arms the first retransmission.
    fn start_sending(&mut self, now: Instant) {
        self.sends = 1;
        self.pending = self.requests_for_phase();
        self.retry_at = Some(now + self.config.retry.wait_after(1));
    }

    fn requests_for_phase(&self) -> u8 {
        let via = self.via;
        match self.phase {
            Phase::Probing => {
                let mut bits = 0;
                if self.pcp == Probe::Pending {
                    bits |= SEND_PCP_MAP;
                }
                if self.natpmp == Probe::Pending {
                    bits |= SEND_NATPMP_EXTERNAL;
                }
                bits
            }
            Phase::NatPmpMapping => SEND_NATPMP_MAP,
            // Asking for the external address on every NAT-PMP renewal notices address changes.
            Phase::Renewing if via == Some(MappedVia::NatPmp) => {
                SEND_NATPMP_MAP | SEND_NATPMP_EXTERNAL
            }
            Phase::Renewing => SEND_PCP_MAP,
            Phase::Deleting => {
                let mut bits = 0;
                if self.pcp_map_sent {
                    bits |= SEND_PCP_MAP;
                }
                if self.natpmp_map_sent {
                    bits |= SEND_NATPMP_MAP;
                }
                bits
            }
            Phase::Mapped | Phase::Done => 0,
        }
    }

    fn suggested_port(&self) -> u16 {
        self.external
            .map_or(self.config.suggested_external_port, |e| e.port())
    }

    fn lifetime_secs(&self) -> u32 {
        u32::try_from(self.config.lifetime.as_secs()).unwrap_or(u32::MAX)
    }

    fn fail(&mut self, why: PortmapError) {
        self.finish(PortmapEvent::Failed(why));
    }

    fn finish(&mut self, event: PortmapEvent) {
        self.phase = Phase::Done;
        self.pending = 0;
        self.retry_at = None;
        self.renew_at = None;
        self.via = None;
        self.push(event);
    }

    fn push(&mut self, event: PortmapEvent) {
        if self.events.len() == EVENT_CAPACITY {
            self.events.pop_front();
            self.stats.events_dropped += 1;
        }
        self.events.push_back(event);
    }
}
