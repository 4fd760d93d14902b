//! NAT-PMP (RFC 6886) messages: the external address request, UDP/TCP map and unmap, and their
//! responses. All fields are big-endian; requests are fixed-size arrays, responses are parsed
//! from borrowed bytes into `Copy` values.

use core::net::Ipv4Addr;

use super::Protocol;

/// NAT-PMP's version number.
pub const VERSION: u8 = 0;
/// Opcode of the external address request.
pub const OP_EXTERNAL_ADDRESS: u8 = 0;
/// Opcode of a UDP mapping request.
pub const OP_MAP_UDP: u8 = 1;
/// Opcode of a TCP mapping request.
pub const OP_MAP_TCP: u8 = 2;
/// Added to the request opcode in responses.
pub const RESPONSE_BIT: u8 = 128;
/// The largest NAT-PMP response (a mapping response).
pub const MAX_RESPONSE_LEN: usize = 16;

/// The external address request (RFC 6886 §3.2).
pub const fn external_address_request() -> [u8; 2] {
    [VERSION, OP_EXTERNAL_ADDRESS]
}

/// A mapping request (RFC 6886 §3.3); `lifetime_secs` 0 with external port 0 deletes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapRequest {
    /// UDP or TCP.
    pub protocol: Protocol,
    /// The client's local port.
    pub internal_port: u16,
    /// The external port asked for (0: any); the gateway may pick another.
    pub suggested_external_port: u16,
    /// Requested lifetime in seconds (RFC 6886 recommends 7200).
    pub lifetime_secs: u32,
}

impl MapRequest {
    /// The request deleting the mapping of `internal_port` (RFC 6886 §3.4).
    pub const fn unmap(protocol: Protocol, internal_port: u16) -> Self {
        MapRequest {
            protocol,
            internal_port,
            suggested_external_port: 0,
            lifetime_secs: 0,
        }
    }

    /// The 12 request bytes.
    pub fn encode(&self) -> [u8; 12] {
        let mut out = [0u8; 12];
        out[0] = VERSION;
        out[1] = map_opcode(self.protocol);
        out[4..6].copy_from_slice(&self.internal_port.to_be_bytes());
        out[6..8].copy_from_slice(&self.suggested_external_port.to_be_bytes());
        out[8..12].copy_from_slice(&self.lifetime_secs.to_be_bytes());
        out
    }

    /// Parses request bytes (what a gateway, or a test gateway, receives).
    pub fn parse(data: &[u8]) -> Result<Self, NatPmpError> {
        let b: &[u8; 12] = data
            .get(..12)
            .and_then(|b| b.try_into().ok())
            .ok_or(NatPmpError::TooShort(data.len()))?;
        if b[0] != VERSION {
            return Err(NatPmpError::Version(b[0]));
        }
        let protocol = match b[1] {
            OP_MAP_UDP => Protocol::Udp,
            OP_MAP_TCP => Protocol::Tcp,
            op => return Err(NatPmpError::UnknownOpcode(op)),
        };
        Ok(MapRequest {
            protocol,
            internal_port: u16::from_be_bytes([b[4], b[5]]),
            suggested_external_port: u16::from_be_bytes([b[6], b[7]]),
            lifetime_secs: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        })
    }
}

fn map_opcode(p: Protocol) -> u8 {
    match p {
        Protocol::Udp => OP_MAP_UDP,
        Protocol::Tcp => OP_MAP_TCP,
    }
}

/// A successful NAT-PMP response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Response {
    /// The gateway's external IPv4 address (RFC 6886 §3.2).
    ExternalAddress {
        /// Seconds since the gateway's mappings were last lost.
        epoch: u32,
        /// The external address.
        addr: Ipv4Addr,
    },
    /// A mapping was created, renewed or (lifetime 0) deleted (RFC 6886 §3.3).
    Map {
        /// UDP or TCP.
        protocol: Protocol,
        /// Seconds since the gateway's mappings were last lost.
        epoch: u32,
        /// The client's port the mapping forwards to.
        internal_port: u16,
        /// The external port the gateway assigned.
        external_port: u16,
        /// The granted lifetime in seconds.
        lifetime_secs: u32,
    },
}

impl Response {
    /// The gateway's epoch.
    pub fn epoch(&self) -> u32 {
        match *self {
            Response::ExternalAddress { epoch, .. } | Response::Map { epoch, .. } => epoch,
        }
    }

    /// Parses a response datagram; a non-zero result code is a [`NatPmpError::Result`].
    pub fn parse(data: &[u8]) -> Result<Self, NatPmpError> {
        // Version, opcode, result code and epoch come first in every response, failures included.
        let header: &[u8; 8] = data
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or(NatPmpError::TooShort(data.len()))?;
        if header[0] != VERSION {
            return Err(NatPmpError::Version(header[0]));
        }
        if header[1] & RESPONSE_BIT == 0 {
            return Err(NatPmpError::NotAResponse);
        }
        let opcode = header[1] & !RESPONSE_BIT;
        if !matches!(opcode, OP_EXTERNAL_ADDRESS | OP_MAP_UDP | OP_MAP_TCP) {
            return Err(NatPmpError::UnknownOpcode(opcode));
        }
        let code = u16::from_be_bytes([header[2], header[3]]);
        if code != 0 {
            return Err(NatPmpError::Result {
                opcode,
                code: ResultCode::from_u16(code),
            });
        }
        let epoch = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        let need = if opcode == OP_EXTERNAL_ADDRESS {
            12
        } else {
            16
        };
        let b = data.get(8..need).ok_or(NatPmpError::TooShort(data.len()))?;
        Ok(match opcode {
            OP_EXTERNAL_ADDRESS => Response::ExternalAddress {
                epoch,
                addr: Ipv4Addr::new(b[0], b[1], b[2], b[3]),
            },
            _ => Response::Map {
                protocol: if opcode == OP_MAP_UDP {
                    Protocol::Udp
                } else {
                    Protocol::Tcp
                },
                epoch,
                internal_port: u16::from_be_bytes([b[0], b[1]]),
                external_port: u16::from_be_bytes([b[2], b[3]]),
                lifetime_secs: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            },
        })
    }

    /// Encodes this response (what a gateway sends; used by tests and simulations).
    pub fn encode(&self, out: &mut [u8; MAX_RESPONSE_LEN]) -> usize {
        out.fill(0);
        out[0] = VERSION;
        out[4..8].copy_from_slice(&self.epoch().to_be_bytes());
        match *self {
            Response::ExternalAddress { addr, .. } => {
                out[1] = RESPONSE_BIT | OP_EXTERNAL_ADDRESS;
                out[8..12].copy_from_slice(&addr.octets());
                12
            }
            Response::Map {
                protocol,
                internal_port,
                external_port,
                lifetime_secs,
                ..
            } => {
                out[1] = RESPONSE_BIT | map_opcode(protocol);
                out[8..10].copy_from_slice(&internal_port.to_be_bytes());
                out[10..12].copy_from_slice(&external_port.to_be_bytes());
                out[12..16].copy_from_slice(&lifetime_secs.to_be_bytes());
                16
            }
        }
    }
}

/// A NAT-PMP result code other than success (RFC 6886 §3.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResultCode {
    /// 1: the gateway speaks another version (a PCP-only gateway answers so).
    #[error("unsupported version")]
    UnsupportedVersion,
    /// 2: mapping refused, e.g. disabled by the administrator.
    #[error("not authorized or refused")]
    NotAuthorized,
    /// 3: the gateway has no external address yet (e.g. DHCP pending).
    #[error("network failure")]
    NetworkFailure,
    /// 4: out of mappings.
    #[error("out of resources")]
    OutOfResources,
    /// 5: the opcode is not supported.
    #[error("unsupported opcode")]
    UnsupportedOpcode,
    /// Any other code.
    #[error("result code {0}")]
    Other(u16),
}

impl ResultCode {
    fn from_u16(code: u16) -> Self {
        match code {
            1 => ResultCode::UnsupportedVersion,
            2 => ResultCode::NotAuthorized,
            3 => ResultCode::NetworkFailure,
            4 => ResultCode::OutOfResources,
            5 => ResultCode::UnsupportedOpcode,
            other => ResultCode::Other(other),
        }
    }
}

/// Why a NAT-PMP datagram was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NatPmpError {
    /// Shorter than its opcode requires.
    #[error("{0} bytes is too short for this NAT-PMP message")]
    TooShort(usize),
    /// Not version 0 (a PCP answer is version 2).
    #[error("version {0}, not NAT-PMP's 0")]
    Version(u8),
    /// A request, not a response.
    #[error("not a response")]
    NotAResponse,
    /// An opcode NAT-PMP does not define.
    #[error("unknown opcode {0}")]
    UnknownOpcode(u8),
    /// The gateway answered with an error.
    #[error("gateway refused opcode {opcode}: {code}")]
    Result {
        /// The request's opcode.
        opcode: u8,
        /// Why.
        code: ResultCode,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_follow_rfc6886_layouts() {
        assert_eq!(external_address_request(), [0, 0]);
        let req = MapRequest {
            protocol: Protocol::Udp,
            internal_port: 47000,
            suggested_external_port: 47000,
            lifetime_secs: 7200,
        };
        assert_eq!(
            req.encode(),
            [0, 1, 0, 0, 0xb7, 0x98, 0xb7, 0x98, 0, 0, 0x1c, 0x20]
        );
        assert_eq!(MapRequest::parse(&req.encode()), Ok(req));
        let unmap = MapRequest::unmap(Protocol::Tcp, 80).encode();
        assert_eq!(unmap, [0, 2, 0, 0, 0, 80, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn responses_parse() {
        let ext = [0, 128, 0, 0, 0, 0, 0x0e, 0x10, 203, 0, 113, 10];
        assert_eq!(
            Response::parse(&ext),
            Ok(Response::ExternalAddress {
                epoch: 3600,
                addr: Ipv4Addr::new(203, 0, 113, 10)
            })
        );
        let map = [
            0, 129, 0, 0, 0, 0, 0, 5, 0xb7, 0x98, 0xb7, 0x99, 0, 0, 0x02, 0x58,
        ];
        let parsed = Response::parse(&map).expect("parses");
        assert_eq!(
            parsed,
            Response::Map {
                protocol: Protocol::Udp,
                epoch: 5,
                internal_port: 47000,
                external_port: 47001,
                lifetime_secs: 600
            }
        );
        let mut out = [0; MAX_RESPONSE_LEN];
        let n = parsed.encode(&mut out);
        assert_eq!(&out[..n], &map);
    }

    #[test]
    fn bad_responses_are_typed_errors() {
        assert_eq!(Response::parse(&[]), Err(NatPmpError::TooShort(0)));
        assert_eq!(
            Response::parse(&[0, 129, 0, 0, 0, 0, 0, 5, 1, 2]),
            Err(NatPmpError::TooShort(10))
        );
        assert_eq!(
            Response::parse(&[2, 129, 0, 0, 0, 0, 0, 5]),
            Err(NatPmpError::Version(2))
        );
        assert_eq!(
            Response::parse(&[0, 1, 0, 0, 0, 0, 0, 5]),
            Err(NatPmpError::NotAResponse)
        );
        assert_eq!(
            Response::parse(&[0, 133, 0, 0, 0, 0, 0, 5]),
            Err(NatPmpError::UnknownOpcode(5))
        );
        for (code, expected) in [
            (1, ResultCode::UnsupportedVersion),
            (2, ResultCode::NotAuthorized),
            (3, ResultCode::NetworkFailure),
            (4, ResultCode::OutOfResources),
            (5, ResultCode::UnsupportedOpcode),
            (99, ResultCode::Other(99)),
        ] {
            // Error answers may be short: only the 8-byte common header is needed.
            assert_eq!(
                Response::parse(&[0, 129, 0, code, 0, 0, 0, 0]),
                Err(NatPmpError::Result {
                    opcode: 1,
                    code: expected
                })
            );
        }
    }
}
