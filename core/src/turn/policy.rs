//! Which peers a relay may send to: a deny list on by default, opened by an allow list.
//!
//! An open relay is a gift to attackers: it reaches the relay's own loopback services, the
//! private network it sits in, and cloud metadata endpoints (169.254.169.254). So by default
//! `holepunch relay` refuses loopback, unspecified, link-local, RFC 1918, CGNAT (100.64/10),
//! multicast and broadcast peers, IPv6 ULA and link-local, and its own addresses, as coturn's
//! `denied-peer-ip` recipes and `no-multicast-peers` do. Tests on one machine open ranges with
//! the allow list (`--allow-peer 127.0.0.0/8`).

use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use core::str::FromStr;

/// An IP prefix such as `10.0.0.0/8` or `fc00::/7`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a string is not a CIDR prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CidrError {
    /// The address part does not parse.
    #[error("not an IP address")]
    BadAddress,
    /// The prefix length does not parse or exceeds the address size.
    #[error("bad prefix length")]
    BadPrefix,
}

impl Cidr {
    /// A prefix; `None` when `prefix` exceeds the address's bits.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= bits).then_some(Cidr { addr, prefix })
    }

    /// Whether `ip` lies in this prefix (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `ADDR/LEN`, or a bare address meaning a single host.
    fn from_str(s: &str) -> Result<Self, CidrError> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| CidrError::BadAddress)?;
        let full = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse().map_err(|_| CidrError::BadPrefix)?,
            None => full,
        };
        Cidr::new(addr, prefix).ok_or(CidrError::BadPrefix)
    }
}

impl core::fmt::Display for Cidr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The relay's peer policy: the default deny list, the relay's own addresses, and an allow list
/// that overrides both.
#[derive(Clone, Debug, Default)]
pub struct PeerPolicy {
    /// Ranges allowed even if the deny list covers them.
    pub allow: Vec<Cidr>,
    /// Extra ranges to deny.
    pub deny: Vec<Cidr>,
    /// The relay's own addresses (listening and relayed), denied unless allowed.
    pub own: Vec<IpAddr>,
    /// Turns the built-in deny list off (the allow list then only matters for `deny`/`own`).
    pub no_default_deny: bool,
}

impl PeerPolicy {
    /// Whether the relay may send to (and accept data from) `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        if self.allow.iter().any(|c| c.contains(ip)) {
            return true;
        }
        if self.own.iter().any(|o| canonical(*o) == ip) || self.deny.iter().any(|c| c.contains(ip))
        {
            return false;
        }
        self.no_default_deny || !denied_by_default(ip)
    }
}

/// The built-in deny list.
pub fn denied_by_default(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => denied_v4(v4),
        IpAddr::V6(v6) => denied_v6(v6),
    }
}

fn denied_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xC0) == 64) // CGNAT 100.64.0.0/10
        || o[0] >= 240 // reserved
}

fn denied_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (first & 0xFE00) == 0xFC00 // unique local fc00::/7
        || (first & 0xFFC0) == 0xFE80 // link-local fe80::/10
}

/// IPv4-mapped IPv6 addresses judged as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::{String, ToString};

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn default_denies_the_dangerous_ranges() {
        let p = PeerPolicy::default();
        for denied in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "224.0.0.1",
            "255.255.255.255",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!p.permits(ip(denied)), "{denied} must be denied");
        }
        for allowed in ["203.0.113.5", "8.8.8.8", "100.128.0.1", "2001:db8::1"] {
            assert!(p.permits(ip(allowed)), "{allowed} must be allowed");
        }
    }

    #[test]
    fn allow_list_opens_and_own_addresses_close() {
        let p = PeerPolicy {
            allow: alloc::vec!["127.0.0.0/8".parse().expect("cidr")],
            own: alloc::vec![ip("203.0.113.3")],
            deny: alloc::vec!["198.51.100.0/24".parse().expect("cidr")],
            no_default_deny: false,
        };
        assert!(p.permits(ip("127.0.0.1")));
        assert!(!p.permits(ip("10.0.0.1")));
        assert!(!p.permits(ip("203.0.113.3")));
        assert!(!p.permits(ip("198.51.100.7")));
        assert!(p.permits(ip("203.0.113.4")));
    }

    #[test]
    fn cidr_parsing() {
        assert_eq!(
            "10.0.0.0/8".parse::<Cidr>().map(|c| c.to_string()),
            Ok(String::from("10.0.0.0/8"))
        );
        assert_eq!("10.0.0.0/33".parse::<Cidr>(), Err(CidrError::BadPrefix));
        assert_eq!("x/8".parse::<Cidr>(), Err(CidrError::BadAddress));
        assert!(
            "0.0.0.0/0"
                .parse::<Cidr>()
                .expect("cidr")
                .contains(ip("1.2.3.4"))
        );
        assert!(
            "::/0"
                .parse::<Cidr>()
                .expect("cidr")
                .contains(ip("2001:db8::1"))
        );
    }
}
