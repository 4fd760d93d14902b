//! A sans-IO UPnP IGD mapping client: SSDP discovery, the description, GetExternalIPAddress,
//! AddPortMapping / AddAnyPortMapping with the 718 and 725 fallbacks, renewal at half the lease,
//! and DeletePortMapping on close.
//!
//! SSDP datagrams come out of `poll_transmit` (to the multicast group) and go back in through
//! `handle_datagram`. HTTP exchanges are actions: [`UpnpClient::poll_action`] hands the driver a
//! complete request and where to send it over TCP; the driver answers with every byte the
//! gateway sent until it closed (at most `max_response`) through [`UpnpClient::handle_io`].
//! Events are the port-mapping client's [`PortmapEvent`]s with [`MappedVia::Upnp`].

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::net::{IpAddr, SocketAddr};

use super::description::{self, ServiceType, WanService};
use super::soap::{self, Action, ActionResult, Mapping};
use super::ssdp;
use super::{HttpUrl, MAX_DESCRIPTION_LEN, MAX_SOAP_RESPONSE_LEN, UpnpError, http};
use crate::Transmit;
use crate::portmap::Protocol;
use crate::portmap::client::{MappedVia, PortmapError, PortmapEvent};
use crate::time::{Duration, Instant};

/// Longest an HTTP exchange may take before the client gives up on it.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// SSDP rounds (each one M-SEARCH per service type): sent at 0, 1 and 3 s; given up at 7 s.
const SSDP_ROUNDS: u8 = 3;
/// Different external ports tried after 718 on an IGDv1 gateway.
const CONFLICT_RETRIES: u16 = 8;
/// Room for the HTTP head around a description or SOAP body.
const HEAD_ROOM: usize = 4096;

/// What to map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpnpConfig {
    /// Only accept SSDP answers from this address (the default gateway), if set.
    pub gateway: Option<IpAddr>,
    /// This host's address on the LAN (NewInternalClient).
    pub client_ip: IpAddr,
    /// UDP or TCP.
    pub protocol: Protocol,
    /// The local port to map.
    pub internal_port: u16,
    /// The external port wished for.
    pub external_port: u16,
    /// Lease asked for (0 would be permanent; renewal re-adds at half of it).
    pub lease: Duration,
    /// Shown in the router's mapping table.
    pub description: String,
}

/// An HTTP exchange the driver must carry out.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpnpAction {
    /// Connect over TCP to `to`, send `request`, read until the peer closes (or `max_response`
    /// bytes), and report with [`UpnpClient::handle_io`] and this `token`.
    Http {
        /// Matches the answer to the request.
        token: u64,
        /// The gateway's HTTP server.
        to: SocketAddr,
        /// The complete request.
        request: Vec<u8>,
        /// Read at most this many bytes.
        max_response: usize,
    },
}

/// What the driver reports for an [`UpnpAction::Http`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpIo<'a> {
    /// Everything received before the peer closed (or the limit was reached).
    Response(&'a [u8]),
    /// Connecting, sending or receiving failed.
    Failed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    Discovering,
    Description,
    ExternalIp,
    Adding,
    Mapped,
    Deleting,
    Done,
}

/// The UPnP IGD client. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct UpnpClient {
    config: UpnpConfig,
    step: Step,
    location: Option<HttpUrl>,
    service: Option<WanService>,
    external_ip: Option<IpAddr>,
    external: Option<SocketAddr>,
    port: u16,
    lease_secs: u32,
    conflicts: u16,
    any_tried: bool,
    ssdp_round: u8,
    ssdp_pending: usize,
    retry_at: Option<Instant>,
    renew_at: Option<Instant>,
    token: u64,
    in_flight: Option<(u64, Instant)>,
    action: Option<UpnpAction>,
    mapped_once: bool,
    events: VecDeque<PortmapEvent>,
}

impl UpnpClient {
    /// Starts discovery at `now`.
    pub fn new(now: Instant, config: UpnpConfig) -> Self {
        let lease_secs = u32::try_from(config.lease.as_secs()).unwrap_or(u32::MAX);
        let port = config.external_port;
        UpnpClient {
            config,
            step: Step::Discovering,
            location: None,
            service: None,
            external_ip: None,
            external: None,
            port,
            lease_secs,
            conflicts: 0,
            any_tried: false,
            ssdp_round: 1,
            ssdp_pending: ServiceType::ALL.len(),
            retry_at: Some(now + Duration::from_secs(1)),
            renew_at: None,
            token: 0,
            in_flight: None,
            action: None,
            mapped_once: false,
            events: VecDeque::new(),
        }
    }

    /// Whether the client has stopped.
    pub fn is_done(&self) -> bool {
        self.step == Step::Done
    }

    /// An SSDP answer (or anything else) received on the discovery socket.
    pub fn handle_datagram(
        &mut self,
        _now: Instant,
        from: SocketAddr,
        data: &[u8],
    ) -> Result<(), UpnpError> {
        if self.step != Step::Discovering {
            return Ok(());
        }
        if self.config.gateway.is_some_and(|g| g != from.ip()) {
            return Err(UpnpError::Url);
        }
        let answer = ssdp::parse_response(data)?;
        // The description must come from the device that answered: no redirection elsewhere.
        if answer.location.addr.ip() != from.ip() || answer.service_type.is_none() {
            return Err(UpnpError::Url);
        }
        let get = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            answer.location.path, answer.location.addr
        );
        let to = answer.location.addr;
        self.location = Some(answer.location);
        self.step = Step::Description;
        self.ssdp_pending = 0;
        self.start_http(_now, to, get.into_bytes(), MAX_DESCRIPTION_LEN + HEAD_ROOM);
        Ok(())
    }

    /// The driver's report on the HTTP action `token`; stale tokens are ignored.
    pub fn handle_io(&mut self, now: Instant, token: u64, io: HttpIo<'_>) {
        if self.in_flight.map(|(t, _)| t) != Some(token) {
            return;
        }
        self.in_flight = None;
        self.retry_at = None;
        let bytes = match io {
            HttpIo::Response(b) => b,
            HttpIo::Failed => {
                return self.give_up(now, PortmapError::NoAnswer);
            }
        };
        let max = if self.step == Step::Description {
            MAX_DESCRIPTION_LEN + HEAD_ROOM
        } else {
            MAX_SOAP_RESPONSE_LEN + HEAD_ROOM
        };
        let resp = match http::read_response_at_eof(bytes, max) {
            Ok(r) => r,
            Err(e) => return self.give_up(now, PortmapError::Upnp(e)),
        };
        match self.step {
            Step::Description => {
                if resp.status != 200 {
                    return self.give_up(now, PortmapError::Upnp(UpnpError::Status(resp.status)));
                }
                let Some(location) = self.location.clone() else {
                    return self.give_up(now, PortmapError::Upnp(UpnpError::Url));
                };
                match description::parse(&resp.body, &location) {
                    Ok(service) => {
                        self.service = Some(service);
                        self.step = Step::ExternalIp;
                        self.send_action(now, Action::GetExternalIpAddress);
                    }
                    Err(e) => self.give_up(now, PortmapError::Upnp(e)),
                }
            }
            Step::ExternalIp => match soap::parse_response(&Action::GetExternalIpAddress, &resp) {
                Ok(ActionResult::ExternalIp(ip)) => {
                    self.external_ip = Some(ip);
                    self.step = Step::Adding;
                    self.send_add(now);
                }
                Ok(_) => self.give_up(now, PortmapError::Upnp(UpnpError::BadArgument)),
                Err(e) => self.give_up(now, PortmapError::Upnp(e)),
            },
            Step::Adding => self.handle_add(now, &resp),
            Step::Deleting => self.finish(PortmapEvent::Closed),
            _ => {}
        }
    }

    /// Retransmits SSDP, renews, or gives up on a silent exchange. Early calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.renew_at.is_some_and(|t| now >= t) && self.step == Step::Mapped {
            self.renew_at = None;
            self.step = Step::Adding;
            self.send_add(now);
            return;
        }
        if self.in_flight.is_some_and(|(_, t)| now >= t) {
            self.in_flight = None;
            return self.give_up(now, PortmapError::NoAnswer);
        }
        if self.step == Step::Discovering && self.retry_at.is_some_and(|t| now >= t) {
            if self.ssdp_round >= SSDP_ROUNDS {
                return self.finish(PortmapEvent::Failed(PortmapError::NoAnswer));
            }
            self.ssdp_round += 1;
            self.ssdp_pending = ServiceType::ALL.len();
            self.retry_at = Some(now + Duration::from_secs(1 << (self.ssdp_round - 1).min(4)));
        }
    }

    /// Deletes the mapping, if one exists, and stops with [`PortmapEvent::Closed`].
    pub fn close(&mut self, now: Instant) {
        match self.step {
            Step::Deleting | Step::Done => {}
            _ if self.external.is_some() => {
                self.step = Step::Deleting;
                self.renew_at = None;
                let delete = Action::DeletePortMapping {
                    external_port: self.port,
                    protocol: self.config.protocol,
                };
                self.send_action(now, delete);
            }
            _ => self.finish(PortmapEvent::Closed),
        }
    }

    /// The next SSDP M-SEARCH datagram, written into `out`.
    pub fn poll_transmit(&mut self, _now: Instant, out: &mut [u8]) -> Option<Transmit> {
        if self.ssdp_pending == 0 || self.step != Step::Discovering {
            return None;
        }
        self.ssdp_pending -= 1;
        let target = ServiceType::ALL[self.ssdp_pending];
        let msg = ssdp::m_search(target, 2);
        let bytes = msg.as_bytes();
        let dst = out.get_mut(..bytes.len())?;
        dst.copy_from_slice(bytes);
        Some(Transmit {
            from: None,
            to: ssdp::MULTICAST_ADDR,
            len: bytes.len(),
        })
    }

    /// The next HTTP exchange to carry out.
    pub fn poll_action(&mut self) -> Option<UpnpAction> {
        self.action.take()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<PortmapEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.retry_at, self.renew_at, self.in_flight.map(|(_, t)| t)]
            .into_iter()
            .flatten()
            .min()
    }

    fn mapping(&self) -> Mapping<'_> {
        Mapping {
            external_port: self.port,
            protocol: self.config.protocol,
            internal_port: self.config.internal_port,
            internal_client: self.config.client_ip,
            description: &self.config.description,
            lease_secs: self.lease_secs,
        }
    }

    fn send_add(&mut self, now: Instant) {
        let v2 = self
            .service
            .as_ref()
            .is_some_and(|s| s.service_type == ServiceType::WanIpConnection2);
        // AddPortMapping first: it keeps the port; IGDv2's AddAnyPortMapping after a conflict.
        let action = if v2 && self.any_tried {
            Action::AddAnyPortMapping(self.mapping())
        } else {
            Action::AddPortMapping(self.mapping())
        };
        let (request, service_ok) = match &self.service {
            Some(s) => (soap::build_request(s, &action), s.control_url.addr),
            None => return self.give_up(now, PortmapError::Upnp(UpnpError::NoWanService)),
        };
        self.start_http(now, service_ok, request, MAX_SOAP_RESPONSE_LEN + HEAD_ROOM);
    }

    fn send_action(&mut self, now: Instant, action: Action<'_>) {
        let Some(s) = &self.service else {
            return self.finish(PortmapEvent::Closed);
        };
        let request = soap::build_request(s, &action);
        let to = s.control_url.addr;
        self.start_http(now, to, request, MAX_SOAP_RESPONSE_LEN + HEAD_ROOM);
    }

    fn handle_add(&mut self, now: Instant, resp: &http::HttpResponse) {
        let any = self.any_tried
            && self
                .service
                .as_ref()
                .is_some_and(|s| s.service_type == ServiceType::WanIpConnection2);
        let action = if any {
            Action::AddAnyPortMapping(self.mapping())
        } else {
            Action::AddPortMapping(self.mapping())
        };
        match soap::parse_response(&action, resp) {
            Ok(result) => {
                if let ActionResult::ReservedPort(p) = result {
                    self.port = p;
                }
                let ip = self.external_ip.unwrap_or(self.config.client_ip);
                let external = SocketAddr::new(ip, self.port);
                let lifetime = Duration::from_secs(u64::from(self.lease_secs));
                let event = if !self.mapped_once {
                    PortmapEvent::Mapped {
                        via: MappedVia::Upnp,
                        external,
                        lifetime,
                    }
                } else if self.external != Some(external) {
                    PortmapEvent::ExternalAddressChanged { external }
                } else {
                    PortmapEvent::Renewed {
                        via: MappedVia::Upnp,
                        external,
                        lifetime,
                    }
                };
                self.mapped_once = true;
                self.external = Some(external);
                self.events.push_back(event);
                self.step = Step::Mapped;
                // A permanent lease (after 725) needs no renewal.
                self.renew_at =
                    (self.lease_secs > 0).then(|| now + (lifetime / 2).max(Duration::from_secs(1)));
            }
            Err(UpnpError::Fault(UpnpError::ONLY_PERMANENT_LEASES_SUPPORTED))
                if self.lease_secs != 0 =>
            {
                self.lease_secs = 0;
                self.send_add(now);
            }
            Err(UpnpError::Fault(UpnpError::CONFLICT_IN_MAPPING_ENTRY))
                if self.conflicts < CONFLICT_RETRIES =>
            {
                self.conflicts += 1;
                let v2 = self
                    .service
                    .as_ref()
                    .is_some_and(|s| s.service_type == ServiceType::WanIpConnection2);
                if v2 && !self.any_tried {
                    self.any_tried = true;
                } else {
                    self.port = self.port.checked_add(1).unwrap_or(1024);
                }
                self.send_add(now);
            }
            Err(e) => self.give_up(now, PortmapError::Upnp(e)),
        }
    }

    fn start_http(&mut self, now: Instant, to: SocketAddr, request: Vec<u8>, max_response: usize) {
        self.token += 1;
        self.in_flight = Some((self.token, now + HTTP_TIMEOUT));
        self.retry_at = None;
        self.action = Some(UpnpAction::Http {
            token: self.token,
            to,
            request,
            max_response,
        });
    }

    /// Ends with a failure, or with Closed while deleting (a best-effort delete).
    fn give_up(&mut self, _now: Instant, why: PortmapError) {
        if self.step == Step::Deleting {
            self.finish(PortmapEvent::Closed)
        } else {
            self.finish(PortmapEvent::Failed(why))
        }
    }

    fn finish(&mut self, event: PortmapEvent) {
        self.step = Step::Done;
        self.retry_at = None;
        self.renew_at = None;
        self.in_flight = None;
        self.action = None;
        self.ssdp_pending = 0;
        self.events.push_back(event);
    }
}
