//! PCP (RFC 6887) messages: MAP for IPv4 and IPv6, ANNOUNCE, and their responses.
//!
//! Addresses travel as 16 bytes, IPv4 ones in the `::ffff:a.b.c.d` form (RFC 6887 §5); this
//! module converts so callers only ever see plain [`IpAddr`]s. Requests are fixed-size arrays;
//! responses are parsed from borrowed bytes, options skipped within bounds.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::Protocol;
use crate::rng::Rng;

/// PCP's version number.
pub const VERSION: u8 = 2;
/// The ANNOUNCE opcode.
pub const OP_ANNOUNCE: u8 = 0;
/// The MAP opcode.
pub const OP_MAP: u8 = 1;
/// The response bit of the opcode byte.
pub const RESPONSE_BIT: u8 = 0x80;
/// Length of the common request and response header.
pub const HEADER_LEN: usize = 24;
/// Length of a MAP request or response without options.
pub const MAP_LEN: usize = HEADER_LEN + 36;
/// The largest PCP message (RFC 6887 §7).
pub const MAX_LEN: usize = 1100;

/// The 96-bit mapping nonce (RFC 6887 §11.1): chosen by the client, echoed by the server, and
/// needed again to renew or delete the mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Nonce(pub [u8; 12]);

impl Nonce {
    /// A fresh nonce from the injected generator.
    pub fn random(rng: &mut Rng) -> Self {
        let mut n = [0u8; 12];
        rng.fill(&mut n);
        Nonce(n)
    }
}

/// A MAP request (RFC 6887 §11.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapRequest {
    /// Identifies the mapping; reuse it to renew or delete.
    pub nonce: Nonce,
    /// UDP or TCP.
    pub protocol: Protocol,
    /// The client's own address on the link to the gateway (PCP checks it against the source).
    pub client_ip: IpAddr,
    /// The client's local port.
    pub internal_port: u16,
    /// External port wished for (0: no preference).
    pub suggested_external_port: u16,
    /// External address wished for (`None`: no preference).
    pub suggested_external_ip: Option<IpAddr>,
    /// Requested lifetime in seconds; 0 deletes the mapping.
    pub lifetime_secs: u32,
}

impl MapRequest {
    /// The 60 request bytes.
    pub fn encode(&self) -> [u8; MAP_LEN] {
        let mut out = [0u8; MAP_LEN];
        write_request_header(&mut out, OP_MAP, self.lifetime_secs, self.client_ip);
        out[24..36].copy_from_slice(&self.nonce.0);
        out[36] = self.protocol.iana();
        out[40..42].copy_from_slice(&self.internal_port.to_be_bytes());
        out[42..44].copy_from_slice(&self.suggested_external_port.to_be_bytes());
        // "No preference" is the all-zeros address of the client's family (§11.1).
        let ext = self.suggested_external_ip.unwrap_or(match self.client_ip {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        });
        out[44..60].copy_from_slice(&to_wire(ext));
        out
    }

    /// Parses request bytes (what a gateway, or a test gateway, receives); options ignored.
    pub fn parse(data: &[u8]) -> Result<Self, PcpError> {
        let b = check_frame(data, false)?;
        if b[1] != OP_MAP {
            return Err(PcpError::UnknownOpcode(b[1]));
        }
        let b: &[u8; MAP_LEN] = data
            .get(..MAP_LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or(PcpError::TooShort(data.len()))?;
        let protocol = Protocol::from_iana(b[36]).ok_or(PcpError::UnknownProtocol(b[36]))?;
        let ext = from_wire(&b[44..60]);
        Ok(MapRequest {
            nonce: Nonce(nonce_at(b)),
            protocol,
            client_ip: from_wire(&b[8..24]),
            internal_port: u16::from_be_bytes([b[40], b[41]]),
            suggested_external_port: u16::from_be_bytes([b[42], b[43]]),
            suggested_external_ip: (!ext.is_unspecified()).then_some(ext),
            lifetime_secs: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        })
    }
}

/// An ANNOUNCE request (RFC 6887 §14.1): a cheap way to ask "is a PCP server there?".
pub fn announce_request(client_ip: IpAddr) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    write_request_header(&mut out, OP_ANNOUNCE, 0, client_ip);
    out
}

fn write_request_header(out: &mut [u8], opcode: u8, lifetime: u32, client_ip: IpAddr) {
    out[0] = VERSION;
    out[1] = opcode;
    out[4..8].copy_from_slice(&lifetime.to_be_bytes());
    out[8..24].copy_from_slice(&to_wire(client_ip));
}

/// A PCP response, successful or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response {
    /// The request's opcode.
    pub opcode: u8,
    /// `None` on success, otherwise why the server refused.
    pub error: Option<ResultCode>,
    /// Granted lifetime on success; on some errors, how long before retrying (§7.4).
    pub lifetime_secs: u32,
    /// Seconds since the server's mappings were last lost.
    pub epoch: u32,
    /// The MAP payload; always present in a successful MAP response, and in error responses
    /// when the server copied it.
    pub map: Option<MapResponse>,
}

/// The MAP payload of a response (RFC 6887 §11.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapResponse {
    /// The request's nonce, echoed; the client must check it.
    pub nonce: Nonce,
    /// IANA protocol number (6 TCP, 17 UDP; others are not ours to map).
    pub protocol: u8,
    /// The client's local port.
    pub internal_port: u16,
    /// The assigned external address and port.
    pub external: SocketAddr,
}

impl Response {
    /// Parses a response datagram.
    ///
    /// A version-0 answer is [`PcpError::NatPmpGateway`]: the server only speaks NAT-PMP and
    /// the client should fall back to it (RFC 6887 §9).
    pub fn parse(data: &[u8]) -> Result<Self, PcpError> {
        if data.first() == Some(&crate::portmap::natpmp::VERSION) {
            return Err(PcpError::NatPmpGateway);
        }
        let b = check_frame(data, true)?;
        let opcode = b[1] & !RESPONSE_BIT;
        if !matches!(opcode, OP_ANNOUNCE | OP_MAP) {
            return Err(PcpError::UnknownOpcode(opcode));
        }
        let error = ResultCode::from_u8(b[3]);
        let lifetime_secs = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
        let epoch = u32::from_be_bytes([b[8], b[9], b[10], b[11]]);
        let map = match (opcode, data.get(..MAP_LEN)) {
            (OP_MAP, Some(m)) => {
                skip_options(data, MAP_LEN)?;
                Some(MapResponse {
                    nonce: Nonce(nonce_at(m)),
                    protocol: m[36],
                    internal_port: u16::from_be_bytes([m[40], m[41]]),
                    external: SocketAddr::new(
                        from_wire(&m[44..60]),
                        u16::from_be_bytes([m[42], m[43]]),
                    ),
                })
            }
            (OP_MAP, None) if error.is_none() => return Err(PcpError::TooShort(data.len())),
            _ => {
                if opcode == OP_ANNOUNCE {
                    skip_options(data, HEADER_LEN)?;
                }
                None
            }
        };
        Ok(Response {
            opcode,
            error,
            lifetime_secs,
            epoch,
            map,
        })
    }

    /// Encodes this response (what a gateway sends; used by tests and simulations).
    pub fn encode(&self) -> ([u8; MAP_LEN], usize) {
        let mut out = [0u8; MAP_LEN];
        out[0] = VERSION;
        out[1] = RESPONSE_BIT | self.opcode;
        out[3] = self.error.map_or(0, ResultCode::to_u8);
        out[4..8].copy_from_slice(&self.lifetime_secs.to_be_bytes());
        out[8..12].copy_from_slice(&self.epoch.to_be_bytes());
        let Some(m) = self.map else {
            return (out, HEADER_LEN);
        };
        out[24..36].copy_from_slice(&m.nonce.0);
        out[36] = m.protocol;
        out[40..42].copy_from_slice(&m.internal_port.to_be_bytes());
        out[42..44].copy_from_slice(&m.external.port().to_be_bytes());
        out[44..60].copy_from_slice(&to_wire(m.external.ip()));
        (out, MAP_LEN)
    }
}

/// Checks size, alignment, version and the R bit; returns the common header.
fn check_frame(data: &[u8], response: bool) -> Result<&[u8; HEADER_LEN], PcpError> {
    if data.len() > MAX_LEN {
        return Err(PcpError::TooLong(data.len()));
    }
    let b: &[u8; HEADER_LEN] = data
        .get(..HEADER_LEN)
        .and_then(|b| b.try_into().ok())
        .ok_or(PcpError::TooShort(data.len()))?;
    if data.len() % 4 != 0 {
        return Err(PcpError::Unaligned(data.len()));
    }
    if b[0] != VERSION {
        return Err(PcpError::Version(b[0]));
    }
    if (b[1] & RESPONSE_BIT != 0) != response {
        return Err(if response {
            PcpError::NotAResponse
        } else {
            PcpError::NotARequest
        });
    }
    Ok(b)
}

/// Walks the options after `at` (RFC 6887 §7.3), checking each fits; their contents are not
/// needed by this client. The walk is bounded by the message length, itself at most
/// [`MAX_LEN`].
fn skip_options(data: &[u8], mut at: usize) -> Result<(), PcpError> {
    while at < data.len() {
        let h = data.get(at..at + 4).ok_or(PcpError::BadOption { at })?;
        let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
        let end = at + 4 + len.next_multiple_of(4);
        if end > data.len() {
            return Err(PcpError::BadOption { at });
        }
        at = end;
    }
    Ok(())
}

fn nonce_at(b: &[u8]) -> [u8; 12] {
    let mut n = [0u8; 12];
    n.copy_from_slice(&b[24..36]);
    n
}

/// An address as PCP carries it: IPv4 as `::ffff:a.b.c.d`.
fn to_wire(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The inverse of [`to_wire`].
fn from_wire(b: &[u8]) -> IpAddr {
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&b[..16]);
    let v6 = Ipv6Addr::from(bytes);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// A PCP result code other than SUCCESS (RFC 6887 §7.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResultCode {
    /// 1: the server speaks another version.
    #[error("UNSUPP_VERSION")]
    UnsupportedVersion,
    /// 2: refused by policy (also: a delete with the wrong nonce).
    #[error("NOT_AUTHORIZED")]
    NotAuthorized,
    /// 3: the server could not parse the request.
    #[error("MALFORMED_REQUEST")]
    MalformedRequest,
    /// 4: the opcode is not supported.
    #[error("UNSUPP_OPCODE")]
    UnsupportedOpcode,
    /// 5: a mandatory option is not supported.
    #[error("UNSUPP_OPTION")]
    UnsupportedOption,
    /// 6: an option was malformed.
    #[error("MALFORMED_OPTION")]
    MalformedOption,
    /// 7: the server has no external connectivity (short-lived).
    #[error("NETWORK_FAILURE")]
    NetworkFailure,
    /// 8: out of mappings (short-lived).
    #[error("NO_RESOURCES")]
    NoResources,
    /// 9: the protocol cannot be mapped.
    #[error("UNSUPP_PROTOCOL")]
    UnsupportedProtocol,
    /// 10: this client's quota is used up.
    #[error("USER_EX_QUOTA")]
    UserExceededQuota,
    /// 11: the suggested external address or port cannot be given (with PREFER_FAILURE).
    #[error("CANNOT_PROVIDE_EXTERNAL")]
    CannotProvideExternal,
    /// 12: the client address in the request is not the packet's source: there is another NAT
    /// between client and server.
    #[error("ADDRESS_MISMATCH")]
    AddressMismatch,
    /// 13: too many remote peers.
    #[error("EXCESSIVE_REMOTE_PEERS")]
    ExcessiveRemotePeers,
    /// Any other code.
    #[error("result code {0}")]
    Other(u8),
}

impl ResultCode {
    /// `None` for SUCCESS (0).
    pub fn from_u8(code: u8) -> Option<Self> {
        Some(match code {
            0 => return None,
            1 => ResultCode::UnsupportedVersion,
            2 => ResultCode::NotAuthorized,
            3 => ResultCode::MalformedRequest,
            4 => ResultCode::UnsupportedOpcode,
            5 => ResultCode::UnsupportedOption,
            6 => ResultCode::MalformedOption,
            7 => ResultCode::NetworkFailure,
            8 => ResultCode::NoResources,
            9 => ResultCode::UnsupportedProtocol,
            10 => ResultCode::UserExceededQuota,
            11 => ResultCode::CannotProvideExternal,
            12 => ResultCode::AddressMismatch,
            13 => ResultCode::ExcessiveRemotePeers,
            other => ResultCode::Other(other),
        })
    }

    /// The wire value.
    pub fn to_u8(self) -> u8 {
        match self {
            ResultCode::UnsupportedVersion => 1,
            ResultCode::NotAuthorized => 2,
            ResultCode::MalformedRequest => 3,
            ResultCode::UnsupportedOpcode => 4,
            ResultCode::UnsupportedOption => 5,
            ResultCode::MalformedOption => 6,
            ResultCode::NetworkFailure => 7,
            ResultCode::NoResources => 8,
            ResultCode::UnsupportedProtocol => 9,
            ResultCode::UserExceededQuota => 10,
            ResultCode::CannotProvideExternal => 11,
            ResultCode::AddressMismatch => 12,
            ResultCode::ExcessiveRemotePeers => 13,
            ResultCode::Other(n) => n,
        }
    }

    /// Whether RFC 6887 §7.4 calls the condition short-lived (worth retrying soon).
    pub fn is_short_lived(self) -> bool {
        matches!(
            self,
            ResultCode::NetworkFailure | ResultCode::NoResources | ResultCode::UserExceededQuota
        )
    }
}

/// Why a PCP datagram was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PcpError {
    /// Shorter than the header or than its opcode requires.
    #[error("{0} bytes is too short for this PCP message")]
    TooShort(usize),
    /// Longer than 1100 bytes.
    #[error("{0} bytes is longer than PCP's 1100")]
    TooLong(usize),
    /// Not a multiple of 4 bytes.
    #[error("length {0} is not a multiple of 4")]
    Unaligned(usize),
    /// The answer is NAT-PMP (version 0): fall back to NAT-PMP.
    #[error("the gateway answered with NAT-PMP (version 0)")]
    NatPmpGateway,
    /// A version other than 2.
    #[error("PCP version {0}, expected 2")]
    Version(u8),
    /// A request where a response was expected.
    #[error("not a response")]
    NotAResponse,
    /// A response where a request was expected.
    #[error("not a request")]
    NotARequest,
    /// An opcode this implementation does not handle (PEER, vendor ones).
    #[error("unhandled opcode {0}")]
    UnknownOpcode(u8),
    /// A protocol other than UDP or TCP.
    #[error("unhandled protocol {0}")]
    UnknownProtocol(u8),
    /// An option header or value runs past the end.
    #[error("malformed option at offset {at}")]
    BadOption {
        /// Offset of the option's header.
        at: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab_request() -> MapRequest {
        MapRequest {
            nonce: Nonce([
                0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb,
            ]),
            protocol: Protocol::Udp,
            client_ip: IpAddr::V4(Ipv4Addr::new(192, 168, 1, 2)),
            internal_port: 48000,
            suggested_external_port: 48000,
            suggested_external_ip: None,
            lifetime_secs: 600,
        }
    }

    #[test]
    fn map_request_follows_rfc6887_layout() {
        let b = lab_request().encode();
        assert_eq!(&b[..4], &[2, 1, 0, 0]);
        assert_eq!(&b[4..8], &600u32.to_be_bytes());
        assert_eq!(
            &b[8..24],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 168, 1, 2]
        );
        assert_eq!(&b[24..36], &lab_request().nonce.0);
        assert_eq!(&b[36..40], &[17, 0, 0, 0]);
        assert_eq!(&b[40..44], &[0xbb, 0x80, 0xbb, 0x80]);
        assert_eq!(
            &b[44..60],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0]
        );
        assert_eq!(MapRequest::parse(&b), Ok(lab_request()));

        let v6 = MapRequest {
            client_ip: "2001:db8::2".parse().expect("addr"),
            ..lab_request()
        };
        let b = v6.encode();
        assert_eq!(&b[44..60], &[0; 16], "IPv6 no-preference is ::");
        assert_eq!(MapRequest::parse(&b), Ok(v6));
    }

    #[test]
    fn announce_request_is_a_bare_header() {
        let b = announce_request(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 2)));
        assert_eq!(&b[..8], &[2, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&b[20..24], &[192, 168, 1, 2]);
    }

    #[test]
    fn map_response_round_trips_with_options_skipped() {
        let r = Response {
            opcode: OP_MAP,
            error: None,
            lifetime_secs: 600,
            epoch: 77,
            map: Some(MapResponse {
                nonce: lab_request().nonce,
                protocol: 17,
                internal_port: 48000,
                external: "203.0.113.10:48000".parse().expect("addr"),
            }),
        };
        let (bytes, len) = r.encode();
        assert_eq!(bytes[1], 0x81);
        assert_eq!(Response::parse(&bytes[..len]), Ok(r));
        // A THIRD_PARTY-sized option (code 1, 16 bytes) after the payload is skipped.
        let mut with_opt = bytes[..len].to_vec();
        with_opt.extend_from_slice(&[1, 0, 0, 16]);
        with_opt.extend_from_slice(&[0; 16]);
        assert_eq!(Response::parse(&with_opt), Ok(r));
        // One that claims more than there is is not.
        let n = with_opt.len();
        with_opt[n - 17] = 20;
        assert_eq!(
            Response::parse(&with_opt),
            Err(PcpError::BadOption { at: MAP_LEN })
        );
    }

    #[test]
    fn error_responses_keep_their_code_and_may_be_header_only() {
        let mut b = [0u8; 24];
        b[0] = 2;
        b[1] = 0x81;
        b[3] = 8;
        b[4..8].copy_from_slice(&30u32.to_be_bytes());
        let r = Response::parse(&b).expect("parses");
        assert_eq!(r.error, Some(ResultCode::NoResources));
        assert!(r.error.is_some_and(ResultCode::is_short_lived));
        assert_eq!(r.lifetime_secs, 30);
        assert_eq!(r.map, None);
        for code in 0..=255u8 {
            assert_eq!(ResultCode::from_u8(code).map_or(0, ResultCode::to_u8), code);
        }
    }

    #[test]
    fn bad_responses_are_typed_errors() {
        let (good, len) = Response {
            opcode: OP_MAP,
            error: None,
            lifetime_secs: 1,
            epoch: 1,
            map: Some(MapResponse {
                nonce: Nonce([7; 12]),
                protocol: 17,
                internal_port: 1,
                external: "[2001:db8::1]:1".parse().expect("addr"),
            }),
        }
        .encode();
        let good = &good[..len];
        assert_eq!(
            Response::parse(&[0, 128, 0, 1, 0, 0, 0, 0]),
            Err(PcpError::NatPmpGateway)
        );
        assert_eq!(Response::parse(&good[..20]), Err(PcpError::TooShort(20)));
        assert_eq!(Response::parse(&good[..26]), Err(PcpError::Unaligned(26)));
        assert_eq!(Response::parse(&good[..28]), Err(PcpError::TooShort(28)));
        assert_eq!(
            Response::parse(&[0u8; 1104][..]),
            Err(PcpError::NatPmpGateway)
        );
        let mut long = [0u8; 1104];
        long[0] = 2;
        assert_eq!(Response::parse(&long), Err(PcpError::TooLong(1104)));
        let mut v1 = good.to_vec();
        v1[0] = 1;
        assert_eq!(Response::parse(&v1), Err(PcpError::Version(1)));
        let mut req = good.to_vec();
        req[1] = OP_MAP;
        assert_eq!(Response::parse(&req), Err(PcpError::NotAResponse));
        let mut peer = good.to_vec();
        peer[1] = 0x82;
        assert_eq!(Response::parse(&peer), Err(PcpError::UnknownOpcode(2)));
    }
}
