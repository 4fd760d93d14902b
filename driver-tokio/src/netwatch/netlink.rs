//! The kernel's rtnetlink notifications, parsed: what one `recv` on a `NETLINK_ROUTE` socket
//! returned, as a list of [`Change`]s. Only `RTM_NEWADDR`, `RTM_DELADDR`, `RTM_NEWROUTE` and
//! `RTM_DELROUTE` are read (other message types are skipped); every length is checked against
//! the buffer, and malformed input is a [`NetlinkError`], never a panic.
//!
//! Layout (netlink(7), rtnetlink(7)), host byte order: a 16-byte `nlmsghdr` (length, type,
//! flags, sequence, port id), then the body; messages are 4-byte aligned. An address message's
//! body is an 8-byte `ifaddrmsg` (family first) and `rtattr`s (length, type, data, aligned);
//! a route message's is a 12-byte `rtmsg` (family first) and attributes, not read here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The netlink message header's length.
pub const HEADER_LEN: usize = 16;
/// `ifaddrmsg`'s length.
const IFADDRMSG_LEN: usize = 8;
/// `rtmsg`'s length.
const RTMSG_LEN: usize = 12;
/// An `rtattr` header's length.
const RTATTR_LEN: usize = 4;

/// The kernel lost notifications (the socket's buffer was full).
const NLMSG_OVERRUN: u16 = 4;
/// An address was added (or changed).
pub const RTM_NEWADDR: u16 = 20;
/// An address was removed.
pub const RTM_DELADDR: u16 = 21;
/// A route was added (or changed).
pub const RTM_NEWROUTE: u16 = 24;
/// A route was removed.
pub const RTM_DELROUTE: u16 = 25;

/// The interface address attribute (the peer's on point-to-point links).
pub const IFA_ADDRESS: u16 = 1;
/// The local address attribute (present when it differs from `IFA_ADDRESS`).
pub const IFA_LOCAL: u16 = 2;
/// Linux's `AF_INET`.
pub const AF_INET: u8 = 2;
/// Linux's `AF_INET6`.
pub const AF_INET6: u8 = 10;

/// What a notification reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// `RTM_NEWADDR`.
    AddressAdded,
    /// `RTM_DELADDR`.
    AddressRemoved,
    /// `RTM_NEWROUTE`.
    RouteAdded,
    /// `RTM_DELROUTE`.
    RouteRemoved,
}

/// One notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    /// Its message type.
    pub kind: ChangeKind,
    /// The address family byte (`AF_INET`, `AF_INET6`, or another the kernel used).
    pub family: u8,
    /// For address messages, the local address (`IFA_LOCAL`, else `IFA_ADDRESS`) when the
    /// message carried one of the family's length.
    pub address: Option<IpAddr>,
}

/// Why a buffer could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NetlinkError {
    /// Fewer than 16 bytes left for a message header.
    #[error("truncated netlink header at byte {0}")]
    TruncatedHeader(usize),
    /// A header's length is shorter than the header or runs past the buffer.
    #[error("netlink message at byte {at} has length {len}, out of bounds")]
    BadLength {
        /// The message's offset in the buffer.
        at: usize,
        /// The length it claimed.
        len: usize,
    },
    /// An address or route message too short for its fixed part.
    #[error("netlink message at byte {0} is too short for its type")]
    TruncatedBody(usize),
    /// A route attribute's length is shorter than its header or runs past its message.
    #[error("route attribute at byte {0} is out of bounds")]
    BadAttribute(usize),
    /// The kernel reported lost notifications: the caller must assume anything changed.
    #[error("the kernel dropped netlink notifications (overrun)")]
    Overrun,
}

/// `len` rounded up to netlink's 4-byte alignment.
fn align(len: usize) -> usize {
    len.saturating_add(3) & !3
}

fn u16_at(buf: &[u8], at: usize) -> Option<u16> {
    let b = buf.get(at..at.checked_add(2)?)?;
    Some(u16::from_ne_bytes([b[0], b[1]]))
}

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// Parses the messages of one datagram from a `NETLINK_ROUTE` socket. Messages of other types
/// (`NLMSG_DONE`, `NLMSG_NOOP`, link changes, …) are skipped; `NLMSG_OVERRUN` is an error.
pub fn parse(buf: &[u8]) -> Result<Vec<Change>, NetlinkError> {
    let mut changes = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let (Some(len), Some(kind)) = (u32_at(buf, at), u16_at(buf, at + 4)) else {
            return Err(NetlinkError::TruncatedHeader(at));
        };
        if buf.len() - at < HEADER_LEN {
            // The length and type fit, the rest of the header does not.
            return Err(NetlinkError::TruncatedHeader(at));
        }
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len < HEADER_LEN || len > buf.len() - at {
            return Err(NetlinkError::BadLength { at, len });
        }
        let body = &buf[at + HEADER_LEN..at + len];
        match kind {
            RTM_NEWADDR | RTM_DELADDR => {
                let kind = if kind == RTM_NEWADDR {
                    ChangeKind::AddressAdded
                } else {
                    ChangeKind::AddressRemoved
                };
                changes.push(address_change(body, at, kind)?);
            }
            RTM_NEWROUTE | RTM_DELROUTE => {
                let kind = if kind == RTM_NEWROUTE {
                    ChangeKind::RouteAdded
                } else {
                    ChangeKind::RouteRemoved
                };
                if body.len() < RTMSG_LEN {
                    return Err(NetlinkError::TruncatedBody(at));
                }
                changes.push(Change {
                    kind,
                    family: body[0],
                    address: None,
                });
            }
            NLMSG_OVERRUN => return Err(NetlinkError::Overrun),
            _ => {}
        }
        at = at.saturating_add(align(len));
    }
    Ok(changes)
}

/// An address message's body (`at`: the message's offset, for errors).
fn address_change(body: &[u8], at: usize, kind: ChangeKind) -> Result<Change, NetlinkError> {
    if body.len() < IFADDRMSG_LEN {
        return Err(NetlinkError::TruncatedBody(at));
    }
    let family = body[0];
    let mut local = None;
    let mut address = None;
    let mut a = IFADDRMSG_LEN;
    while a < body.len() {
        let attr_at = at + HEADER_LEN + a;
        let (Some(len), Some(ty)) = (u16_at(body, a), u16_at(body, a + 2)) else {
            return Err(NetlinkError::BadAttribute(attr_at));
        };
        let len = usize::from(len);
        if len < RTATTR_LEN || len > body.len() - a {
            return Err(NetlinkError::BadAttribute(attr_at));
        }
        let data = &body[a + RTATTR_LEN..a + len];
        let ip = match (
            family,
            <[u8; 4]>::try_from(data),
            <[u8; 16]>::try_from(data),
        ) {
            (AF_INET, Ok(v4), _) => Some(IpAddr::V4(Ipv4Addr::from(v4))),
            (AF_INET6, _, Ok(v6)) => Some(IpAddr::V6(Ipv6Addr::from(v6))),
            _ => None,
        };
        match ty {
            IFA_LOCAL => local = local.or(ip),
            IFA_ADDRESS => address = address.or(ip),
            _ => {}
        }
        a = a.saturating_add(align(len));
    }
    Ok(Change {
        kind,
        family,
        address: local.or(address),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One netlink message of type `kind` with `body`, padded to alignment.
    pub(crate) fn message(kind: u16, body: &[u8]) -> Vec<u8> {
        let len = u32::try_from(HEADER_LEN + body.len()).expect("small");
        let mut m = Vec::new();
        m.extend_from_slice(&len.to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes()); // flags
        m.extend_from_slice(&0u32.to_ne_bytes()); // sequence
        m.extend_from_slice(&0u32.to_ne_bytes()); // port id
        m.extend_from_slice(body);
        m.resize(align(m.len()), 0);
        m
    }

    /// One route attribute, padded.
    fn attr(ty: u16, data: &[u8]) -> Vec<u8> {
        let len = u16::try_from(RTATTR_LEN + data.len()).expect("small");
        let mut a = Vec::new();
        a.extend_from_slice(&len.to_ne_bytes());
        a.extend_from_slice(&ty.to_ne_bytes());
        a.extend_from_slice(data);
        a.resize(align(a.len()), 0);
        a
    }

    /// An address message body: `ifaddrmsg` for `ip`'s family, then its attributes.
    pub(crate) fn address_body(ip: IpAddr, attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let family = if ip.is_ipv4() { AF_INET } else { AF_INET6 };
        let mut b = vec![family, 24, 0, 0];
        b.extend_from_slice(&2u32.to_ne_bytes()); // interface index
        for (ty, data) in attrs {
            b.extend_from_slice(&attr(*ty, data));
        }
        b
    }

    fn octets(ip: IpAddr) -> Vec<u8> {
        match ip {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        }
    }

    fn route_body(family: u8) -> Vec<u8> {
        let mut b = vec![family, 0, 0, 0, 254, 3, 0, 1];
        b.extend_from_slice(&0u32.to_ne_bytes());
        b
    }

    #[test]
    fn an_address_burst_parses_into_its_changes() {
        let old: IpAddr = "192.168.1.2".parse().expect("ip");
        let new: IpAddr = "2001:db8::5".parse().expect("ip");
        let mut buf = message(
            RTM_DELADDR,
            &address_body(old, &[(IFA_ADDRESS, &octets(old))]),
        );
        buf.extend(message(
            RTM_NEWADDR,
            &address_body(new, &[(8, b"eth0\0"), (IFA_ADDRESS, &octets(new))]),
        ));
        buf.extend(message(RTM_DELROUTE, &route_body(AF_INET)));
        buf.extend(message(RTM_NEWROUTE, &route_body(AF_INET6)));
        let changes = parse(&buf).expect("parses");
        assert_eq!(
            changes,
            [
                Change {
                    kind: ChangeKind::AddressRemoved,
                    family: AF_INET,
                    address: Some(old)
                },
                Change {
                    kind: ChangeKind::AddressAdded,
                    family: AF_INET6,
                    address: Some(new)
                },
                Change {
                    kind: ChangeKind::RouteRemoved,
                    family: AF_INET,
                    address: None
                },
                Change {
                    kind: ChangeKind::RouteAdded,
                    family: AF_INET6,
                    address: None
                },
            ]
        );
    }

    #[test]
    fn the_local_address_wins_over_the_peer_address() {
        let peer: IpAddr = "10.0.0.1".parse().expect("ip");
        let local: IpAddr = "10.0.0.2".parse().expect("ip");
        let body = address_body(
            local,
            &[(IFA_ADDRESS, &octets(peer)), (IFA_LOCAL, &octets(local))],
        );
        let changes = parse(&message(RTM_NEWADDR, &body)).expect("parses");
        assert_eq!(changes[0].address, Some(local));
    }

    #[test]
    fn other_types_are_skipped_and_a_wrong_sized_address_is_none() {
        let ip: IpAddr = "10.0.0.2".parse().expect("ip");
        let mut buf = message(16, &[0; 16]); // RTM_NEWLINK
        buf.extend(message(3, &[0; 4])); // NLMSG_DONE
        buf.extend(message(
            RTM_NEWADDR,
            &address_body(ip, &[(IFA_ADDRESS, &[1, 2])]),
        ));
        let changes = parse(&buf).expect("parses");
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].address, None);
    }

    #[test]
    fn malformed_buffers_are_typed_errors() {
        let ip: IpAddr = "10.0.0.2".parse().expect("ip");
        let good = message(
            RTM_NEWADDR,
            &address_body(ip, &[(IFA_ADDRESS, &octets(ip))]),
        );
        assert_eq!(parse(&good[..10]), Err(NetlinkError::TruncatedHeader(0)));
        let mut long = good.clone();
        long[..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert_eq!(
            parse(&long),
            Err(NetlinkError::BadLength { at: 0, len: 1000 })
        );
        let mut short = good.clone();
        short[..4].copy_from_slice(&4u32.to_ne_bytes());
        assert_eq!(
            parse(&short),
            Err(NetlinkError::BadLength { at: 0, len: 4 })
        );
        assert_eq!(
            parse(&message(RTM_NEWROUTE, &[AF_INET, 0])),
            Err(NetlinkError::TruncatedBody(0))
        );
        assert_eq!(
            parse(&message(RTM_DELADDR, &[AF_INET])),
            Err(NetlinkError::TruncatedBody(0))
        );
        let mut bad_attr = good.clone();
        // The attribute's length (right after the 8-byte ifaddrmsg) claims past the message.
        let a = HEADER_LEN + IFADDRMSG_LEN;
        bad_attr[a..a + 2].copy_from_slice(&200u16.to_ne_bytes());
        assert_eq!(parse(&bad_attr), Err(NetlinkError::BadAttribute(a)));
        assert_eq!(
            parse(&message(NLMSG_OVERRUN, &[])),
            Err(NetlinkError::Overrun)
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&buf);
        }

        #[test]
        fn encoded_address_messages_parse_back(
            v4 in any::<[u8; 4]>(),
            v6 in any::<[u8; 16]>(),
            six in any::<bool>(),
            added in any::<bool>(),
            noise in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let ip = if six { IpAddr::from(v6) } else { IpAddr::from(v4) };
            let kind = if added { RTM_NEWADDR } else { RTM_DELADDR };
            let body = address_body(ip, &[(9, &noise), (IFA_ADDRESS, &octets(ip))]);
            let mut buf = message(kind, &body);
            buf.extend(message(RTM_NEWROUTE, &route_body(AF_INET)));
            let changes = parse(&buf).expect("parses");
            prop_assert_eq!(changes.len(), 2);
            prop_assert_eq!(changes[0].address, Some(ip));
            prop_assert_eq!(
                changes[0].kind,
                if added { ChangeKind::AddressAdded } else { ChangeKind::AddressRemoved }
            );
            prop_assert_eq!(changes[1].kind, ChangeKind::RouteAdded);
        }
    }
}
