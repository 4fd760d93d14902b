//! Which port-mapping protocols the gateway speaks, asked all at once with requests that create
//! nothing: a PCP ANNOUNCE (RFC 6887 §14.1), a NAT-PMP external address request (RFC 6886
//! §3.2) and an SSDP M-SEARCH for each WAN connection service (UPnP Device Architecture §1.3).
//!
//! Pumped like the mapping clients: `poll_transmit` / `handle_datagram` / `handle_timeout`, all
//! on one socket the driver owns (not the one to be mapped). The PCP and NAT-PMP requests are
//! resent on RFC 6886's 250 ms doubling schedule, the M-SEARCHes with them; the probe ends when
//! every protocol it asked answered, or at its deadline. [`Probe::decision`] says earlier which
//! protocol a mapping client should use (PCP > NAT-PMP > UPnP IGD): at once when PCP answers,
//! [`DECISION_GRACE`] after a lesser protocol answered (a gateway that speaks PCP answers both
//! PCP and NAT-PMP within the same round trip), or at the deadline.

use core::net::{IpAddr, SocketAddr};

use super::client::MappedVia;
use super::upnp::description::ServiceType;
use super::upnp::ssdp;
use super::{SERVER_PORT, natpmp, pcp};
use crate::Transmit;
use crate::time::{Duration, Instant};

/// How long after a NAT-PMP or UPnP answer the probe waits for a better protocol to answer.
pub const DECISION_GRACE: Duration = Duration::from_millis(250);
/// The M-SEARCH MX: answers may be delayed up to this many seconds (1 is the UDA's minimum).
const SSDP_MX: u8 = 1;
/// Gaps between rounds: 250 ms, then 500 ms (RFC 6886 §3.1's schedule).
const FIRST_GAP: Duration = Duration::from_millis(250);
/// Rounds sent at most (0, 0.25 and 0.75 s).
const ROUNDS: u8 = 3;
/// Datagrams in a round: PCP ANNOUNCE, NAT-PMP external address, one M-SEARCH per service.
const PER_ROUND: u8 = 2 + ServiceType::ALL.len() as u8;
/// The largest datagram the probe writes; `poll_transmit` buffers must be at least this long.
pub const MAX_PROBE_LEN: usize = 160;

/// What to probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeConfig {
    /// The default gateway; PCP and NAT-PMP go to its port 5351, and only SSDP answers from it
    /// count.
    pub gateway: IpAddr,
    /// This host's address on the link to the gateway (the ANNOUNCE's client address field).
    pub client_ip: IpAddr,
    /// When the probe gives up on protocols that have not answered.
    pub timeout: Duration,
}

/// Which protocols answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Answered {
    /// PCP answered the ANNOUNCE with success.
    pub pcp: bool,
    /// NAT-PMP answered the external address request with success.
    pub natpmp: bool,
    /// An SSDP answer for a WAN connection service came from the gateway.
    pub upnp: bool,
}

impl Answered {
    /// The protocol to map with, PCP > NAT-PMP > UPnP IGD; `None` when none answered.
    pub fn best(&self) -> Option<MappedVia> {
        if self.pcp {
            Some(MappedVia::Pcp)
        } else if self.natpmp {
            Some(MappedVia::NatPmp)
        } else if self.upnp {
            Some(MappedVia::Upnp)
        } else {
            None
        }
    }

    fn any(&self) -> bool {
        self.pcp || self.natpmp || self.upnp
    }
}

/// Why a datagram was not counted as an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// It did not come from the gateway.
    #[error("datagram not from the gateway")]
    NotFromGateway,
    /// It came from the gateway's port 5351 but was no successful answer to the probe.
    #[error("not a successful PCP or NAT-PMP answer to the probe")]
    NotAnAnswer,
    /// It came from elsewhere on the gateway but was no SSDP answer for a WAN service.
    #[error("not an SSDP answer for a WAN connection service")]
    NotSsdp,
}

/// The probe. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct Probe {
    config: ProbeConfig,
    deadline: Instant,
    /// Sent rounds, and datagrams of the current round still to send.
    rounds: u8,
    pending: u8,
    next_round: Option<Instant>,
    answered: Answered,
    first_answer: Option<Instant>,
}

impl Probe {
    /// Starts probing at `now`: the first round is ready in `poll_transmit`.
    pub fn new(now: Instant, config: ProbeConfig) -> Self {
        Probe {
            config,
            deadline: now + config.timeout,
            rounds: 1,
            pending: PER_ROUND,
            next_round: Some(now + FIRST_GAP),
            answered: Answered::default(),
            first_answer: None,
        }
    }

    /// What answered so far.
    pub fn answered(&self) -> Answered {
        self.answered
    }

    fn v4(&self) -> bool {
        self.config.gateway.is_ipv4() && self.config.client_ip.is_ipv4()
    }

    /// Whether every protocol that can answer did.
    fn all_answered(&self) -> bool {
        let a = self.answered;
        a.pcp && (!self.v4() || (a.natpmp && a.upnp))
    }

    /// Whether the probe is over: every protocol answered, or the deadline passed.
    pub fn is_done(&self, now: Instant) -> bool {
        self.all_answered() || now >= self.deadline
    }

    /// The protocol to map with, once it is known: `Some(Some(via))`, or `Some(None)` when the
    /// deadline passed with no answer; `None` while waiting is still worth it.
    pub fn decision(&self, now: Instant) -> Option<Option<MappedVia>> {
        let a = self.answered;
        let graced = self.first_answer.is_some_and(|t| now >= t + DECISION_GRACE);
        if a.pcp || (a.any() && graced) || self.is_done(now) {
            Some(a.best())
        } else {
            None
        }
    }

    /// A datagram received on the probe's socket.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &[u8],
    ) -> Result<(), ProbeError> {
        if from.ip() != self.config.gateway {
            return Err(ProbeError::NotFromGateway);
        }
        if from.port() == SERVER_PORT {
            match data.first() {
                Some(&natpmp::VERSION) => match natpmp::Response::parse(data) {
                    Ok(natpmp::Response::ExternalAddress { .. }) => self.answered.natpmp = true,
                    _ => return Err(ProbeError::NotAnAnswer),
                },
                _ => match pcp::Response::parse(data) {
                    Ok(r) if r.opcode == pcp::OP_ANNOUNCE && r.error.is_none() => {
                        self.answered.pcp = true;
                    }
                    _ => return Err(ProbeError::NotAnAnswer),
                },
            }
        } else {
            match ssdp::parse_response(data) {
                Ok(r) if r.service_type.is_some() => self.answered.upnp = true,
                _ => return Err(ProbeError::NotSsdp),
            }
        }
        self.first_answer.get_or_insert(now);
        Ok(())
    }

    /// Advances the resend schedule.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.is_done(now) {
            self.next_round = None;
            self.pending = 0;
            return;
        }
        if let Some(at) = self.next_round.filter(|&at| now >= at) {
            self.rounds += 1;
            self.pending = PER_ROUND;
            self.next_round =
                (self.rounds < ROUNDS).then(|| at + FIRST_GAP * (1 << (self.rounds - 1)));
        }
    }

    /// The next probe datagram, written into `out` (at least [`MAX_PROBE_LEN`] bytes); protocols
    /// that already answered, or cannot (NAT-PMP and SSDP on IPv6), are skipped.
    pub fn poll_transmit(&mut self, _now: Instant, out: &mut [u8]) -> Option<Transmit> {
        while self.pending > 0 {
            let index = PER_ROUND - self.pending;
            self.pending -= 1;
            let gateway = SocketAddr::new(self.config.gateway, SERVER_PORT);
            let (bytes, to): (&[u8], SocketAddr) = match index {
                0 if !self.answered.pcp => {
                    let req = pcp::announce_request(self.config.client_ip);
                    let dst = out.get_mut(..req.len())?;
                    dst.copy_from_slice(&req);
                    (dst, gateway)
                }
                1 if !self.answered.natpmp && self.v4() => {
                    let req = natpmp::external_address_request();
                    let dst = out.get_mut(..req.len())?;
                    dst.copy_from_slice(&req);
                    (dst, gateway)
                }
                i if i >= 2 && !self.answered.upnp && self.v4() => {
                    let target = ServiceType::ALL[usize::from(i - 2)];
                    let msg = ssdp::m_search(target, SSDP_MX);
                    let dst = out.get_mut(..msg.len())?;
                    dst.copy_from_slice(msg.as_bytes());
                    (dst, ssdp::MULTICAST_ADDR)
                }
                _ => continue,
            };
            return Some(Transmit {
                from: None,
                to,
                len: bytes.len(),
            });
        }
        None
    }

    /// When `handle_timeout` is due: the next round, the end of the decision grace, or the
    /// deadline; `None` once the probe is done.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.all_answered() {
            return None;
        }
        let grace = self.first_answer.map(|t| t + DECISION_GRACE);
        [self.next_round, grace, Some(self.deadline)]
            .into_iter()
            .flatten()
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;

    const GW: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 1));

    fn probe(now: Instant) -> Probe {
        Probe::new(
            now,
            ProbeConfig {
                gateway: GW,
                client_ip: IpAddr::V4(Ipv4Addr::new(192, 168, 1, 2)),
                timeout: Duration::from_secs(1),
            },
        )
    }

    fn drain(p: &mut Probe, now: Instant) -> alloc::vec::Vec<(SocketAddr, alloc::vec::Vec<u8>)> {
        let mut out = [0u8; MAX_PROBE_LEN];
        let mut sent = alloc::vec::Vec::new();
        while let Some(t) = p.poll_transmit(now, &mut out) {
            sent.push((t.to, out[..t.len].to_vec()));
        }
        sent
    }

    fn natpmp_answer() -> alloc::vec::Vec<u8> {
        let mut out = [0u8; natpmp::MAX_RESPONSE_LEN];
        let n = natpmp::Response::ExternalAddress {
            epoch: 5,
            addr: Ipv4Addr::new(203, 0, 113, 10),
        }
        .encode(&mut out);
        out[..n].to_vec()
    }

    fn pcp_announce_answer() -> alloc::vec::Vec<u8> {
        let (b, n) = pcp::Response {
            opcode: pcp::OP_ANNOUNCE,
            error: None,
            lifetime_secs: 0,
            epoch: 5,
            map: None,
        }
        .encode();
        b[..n].to_vec()
    }

    const SSDP_OK: &[u8] = b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: urn:schemas-upnp-org:service:WANIPConnection:1\r\nUSN: uuid:x::urn:schemas-upnp-org:service:WANIPConnection:1\r\nEXT:\r\nLOCATION: http://192.168.1.1:5000/rootDesc.xml\r\n\r\n";

    #[test]
    fn one_round_asks_all_three_and_nothing_creates_a_mapping() {
        let now = Instant::ZERO;
        let mut p = probe(now);
        let sent = drain(&mut p, now);
        assert_eq!(sent.len(), 5);
        let gw = SocketAddr::new(GW, SERVER_PORT);
        assert_eq!(sent[0].0, gw);
        assert_eq!(sent[0].1[..2], [pcp::VERSION, pcp::OP_ANNOUNCE]);
        assert_eq!(sent[0].1.len(), pcp::HEADER_LEN);
        assert_eq!(sent[1], (gw, natpmp::external_address_request().to_vec()));
        for (to, bytes) in &sent[2..] {
            assert_eq!(*to, ssdp::MULTICAST_ADDR);
            assert!(bytes.starts_with(b"M-SEARCH * HTTP/1.1\r\n"));
        }
        assert!(sent.iter().all(|(_, b)| b.len() <= MAX_PROBE_LEN));
    }

    #[test]
    fn silence_resends_twice_then_ends_at_the_deadline_with_no_protocol() {
        let t0 = Instant::ZERO;
        let mut p = probe(t0);
        let mut sends = drain(&mut p, t0).len();
        let mut now = t0;
        let mut steps = 0;
        while let Some(at) = p.poll_timeout() {
            assert!(p.decision(now).is_none());
            now = at;
            p.handle_timeout(now);
            sends += drain(&mut p, now).len();
            steps += 1;
            assert!(steps < 10, "bounded");
            if p.is_done(now) {
                break;
            }
        }
        assert_eq!(sends, 15, "3 rounds of 5");
        assert_eq!(now, t0 + Duration::from_secs(1));
        assert_eq!(p.decision(now), Some(None));
        assert_eq!(p.answered(), Answered::default());
    }

    #[test]
    fn pcp_decides_at_once_and_a_lesser_protocol_after_the_grace() {
        let t0 = Instant::ZERO;
        let gw = SocketAddr::new(GW, SERVER_PORT);
        let mut p = probe(t0);
        drain(&mut p, t0);
        let t1 = t0 + Duration::from_millis(3);
        p.handle_datagram(t1, gw, &natpmp_answer())
            .expect("NAT-PMP");
        assert_eq!(p.decision(t1), None, "PCP may still answer");
        p.handle_datagram(t1, gw, &pcp_announce_answer())
            .expect("PCP");
        assert_eq!(p.decision(t1), Some(Some(MappedVia::Pcp)));

        let mut p = probe(t0);
        drain(&mut p, t0);
        p.handle_datagram(t1, SocketAddr::new(GW, 1900), SSDP_OK)
            .expect("SSDP");
        assert_eq!(p.decision(t1), None);
        assert_eq!(p.poll_timeout(), Some(t0 + FIRST_GAP));
        let after = t1 + DECISION_GRACE;
        assert_eq!(p.decision(after), Some(Some(MappedVia::Upnp)));
        p.handle_timeout(t0 + FIRST_GAP);
        let resent = drain(&mut p, t0 + FIRST_GAP);
        assert_eq!(resent.len(), 2, "UPnP answered: only PCP and NAT-PMP again");
    }

    #[test]
    fn all_three_answering_ends_the_probe() {
        let t0 = Instant::ZERO;
        let gw = SocketAddr::new(GW, SERVER_PORT);
        let mut p = probe(t0);
        drain(&mut p, t0);
        p.handle_datagram(t0, gw, &pcp_announce_answer())
            .expect("PCP");
        p.handle_datagram(t0, gw, &natpmp_answer())
            .expect("NAT-PMP");
        p.handle_datagram(t0, SocketAddr::new(GW, 1900), SSDP_OK)
            .expect("SSDP");
        assert!(p.is_done(t0));
        assert_eq!(p.poll_timeout(), None);
        assert_eq!(
            p.answered(),
            Answered {
                pcp: true,
                natpmp: true,
                upnp: true
            }
        );
    }

    #[test]
    fn strangers_garbage_and_refusals_are_typed_and_count_for_nothing() {
        let t0 = Instant::ZERO;
        let gw = SocketAddr::new(GW, SERVER_PORT);
        let mut p = probe(t0);
        let stranger = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 9)), 1900);
        assert_eq!(
            p.handle_datagram(t0, stranger, SSDP_OK),
            Err(ProbeError::NotFromGateway)
        );
        for junk in [&b""[..], &[0][..], &[2, 0x80][..], &[0xff; 40][..]] {
            assert_eq!(
                p.handle_datagram(t0, gw, junk),
                Err(ProbeError::NotAnAnswer)
            );
            assert_eq!(
                p.handle_datagram(t0, SocketAddr::new(GW, 1900), junk),
                Err(ProbeError::NotSsdp)
            );
        }
        // NAT-PMP's "unsupported version" answer to the PCP request is not a NAT-PMP answer
        // to the probe's own request (its opcode is PCP's), nor a PCP answer.
        let unsupported = [0, 0x80, 0, 1, 0, 0, 0, 5];
        assert_eq!(
            p.handle_datagram(t0, gw, &unsupported),
            Err(ProbeError::NotAnAnswer)
        );
        let (mut refused, n) = pcp::Response {
            opcode: pcp::OP_ANNOUNCE,
            error: None,
            lifetime_secs: 0,
            epoch: 5,
            map: None,
        }
        .encode();
        refused[3] = 2; // NOT_AUTHORIZED
        assert_eq!(
            p.handle_datagram(t0, gw, &refused[..n]),
            Err(ProbeError::NotAnAnswer)
        );
        assert_eq!(p.answered(), Answered::default());
        assert_eq!(p.decision(t0), None);
    }
}
