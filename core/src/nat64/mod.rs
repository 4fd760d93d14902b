//! NAT64 address arithmetic (RFC 6052) and prefix discovery (RFC 7050).
//!
//! An IPv6-only host reaches an IPv4 address through NAT64 by sending to an IPv4-embedded IPv6
//! address: the NAT64 prefix (Pref64::/n) followed by the IPv4 address, laid out as RFC 6052 §2.2
//! prescribes for each of the six allowed prefix lengths. [`Nat64Prefix`] synthesises such
//! addresses and extracts the IPv4 address back out of them.
//!
//! [`discovery`] learns the prefix the way RFC 7050 does: ask the resolver for the AAAA records
//! of `ipv4only.arpa`, which has only A records (192.0.0.170 and 192.0.0.171), so any AAAA
//! answer was synthesised by DNS64 and shows where the prefix ends.

pub mod discovery;

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use core::str::FromStr;

/// The NAT64 well-known prefix `64:ff9b::/96` (RFC 6052 §2.1).
pub const WELL_KNOWN_PREFIX: Nat64Prefix = Nat64Prefix {
    bytes: [0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    len: PrefixLen::L96,
};

/// Index of the "u" octet (bits 64–71), which RFC 6052 §2.2 reserves and requires to be zero.
const U_OCTET: usize = 8;

/// One of the six prefix lengths RFC 6052 §2.2 allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum PrefixLen {
    /// `/32`: the IPv4 address fills bits 32–63.
    L32,
    /// `/40`: bits 40–63, then 72–79 after the u octet.
    L40,
    /// `/48`: bits 48–63, then 72–87.
    L48,
    /// `/56`: bits 56–63, then 72–95.
    L56,
    /// `/64`: bits 72–103, just after the u octet.
    L64,
    /// `/96`: bits 96–127, the last four bytes.
    L96,
}

impl PrefixLen {
    /// Every allowed length, shortest first.
    pub const ALL: [PrefixLen; 6] = [
        PrefixLen::L32,
        PrefixLen::L40,
        PrefixLen::L48,
        PrefixLen::L56,
        PrefixLen::L64,
        PrefixLen::L96,
    ];

    /// The length in bits.
    pub const fn bits(self) -> u8 {
        match self {
            PrefixLen::L32 => 32,
            PrefixLen::L40 => 40,
            PrefixLen::L48 => 48,
            PrefixLen::L56 => 56,
            PrefixLen::L64 => 64,
            PrefixLen::L96 => 96,
        }
    }

    /// The length for `bits`, if RFC 6052 allows it.
    pub const fn from_bits(bits: u8) -> Result<PrefixLen, Nat64Error> {
        Ok(match bits {
            32 => PrefixLen::L32,
            40 => PrefixLen::L40,
            48 => PrefixLen::L48,
            56 => PrefixLen::L56,
            64 => PrefixLen::L64,
            96 => PrefixLen::L96,
            other => return Err(Nat64Error::InvalidLength(other)),
        })
    }

    /// The byte positions of the four IPv4 octets inside the IPv6 address: they start where the
    /// prefix ends and skip the u octet.
    const fn v4_positions(self) -> [usize; 4] {
        match self {
            PrefixLen::L32 => [4, 5, 6, 7],
            PrefixLen::L40 => [5, 6, 7, 9],
            PrefixLen::L48 => [6, 7, 9, 10],
            PrefixLen::L56 => [7, 9, 10, 11],
            PrefixLen::L64 => [9, 10, 11, 12],
            PrefixLen::L96 => [12, 13, 14, 15],
        }
    }
}

/// What is wrong with a prefix or an address handed to this module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Nat64Error {
    /// Not one of 32, 40, 48, 56, 64 or 96.
    #[error("prefix length /{0} is not one RFC 6052 allows (32, 40, 48, 56, 64, 96)")]
    InvalidLength(u8),
    /// Bits 64–71 (the u octet) are not zero.
    #[error("bits 64-71 (the u octet) must be zero")]
    NonZeroUOctet,
    /// The address does not start with the prefix.
    #[error("address is not inside the NAT64 prefix")]
    NotInPrefix,
    /// Text that is not `IPV6ADDR/LEN`.
    #[error("not a prefix of the form 64:ff9b::/96")]
    Syntax,
}

/// A NAT64 prefix (Pref64::/n): an IPv6 prefix of an RFC 6052 length with a zero u octet.
///
/// Bits past the prefix length are always zero, so two prefixes compare equal exactly when they
/// describe the same translator.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nat64Prefix {
    bytes: [u8; 16],
    len: PrefixLen,
}

impl Nat64Prefix {
    /// Builds the prefix `addr/len`; bits of `addr` past `len` are cleared.
    ///
    /// Fails when the u octet would be non-zero, which for /96 means bits 64–71 of `addr`
    /// (RFC 6052 §2.2: administrators must keep them zero).
    pub fn new(addr: Ipv6Addr, len: PrefixLen) -> Result<Self, Nat64Error> {
        let mut bytes = addr.octets();
        let keep = usize::from(len.bits() / 8);
        bytes[keep..].fill(0);
        if bytes[U_OCTET] != 0 {
            return Err(Nat64Error::NonZeroUOctet);
        }
        Ok(Nat64Prefix { bytes, len })
    }

    /// The prefix address, with every bit past the length zero.
    pub fn addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.bytes)
    }

    /// The prefix length.
    pub fn len(&self) -> PrefixLen {
        self.len
    }

    /// Whether this is the well-known prefix `64:ff9b::/96`, which RFC 6052 §3.1 forbids for
    /// private IPv4 addresses.
    pub fn is_well_known(&self) -> bool {
        *self == WELL_KNOWN_PREFIX
    }

    /// The IPv4-embedded IPv6 address for `v4` (RFC 6052 §2.2), with a zero suffix.
    pub fn synthesize(&self, v4: Ipv4Addr) -> Ipv6Addr {
        let mut out = self.bytes;
        for (pos, octet) in self.len.v4_positions().into_iter().zip(v4.octets()) {
            out[pos] = octet;
        }
        Ipv6Addr::from(out)
    }

    /// `addr`'s IPv4-embedded IPv6 address, same port: where an IPv6-only host sends what is
    /// meant for `addr`; `None` when `addr` is not IPv4.
    pub fn synthesize_socket(&self, addr: SocketAddr) -> Option<SocketAddr> {
        match addr.ip() {
            IpAddr::V4(v4) => Some(SocketAddr::new(
                IpAddr::V6(self.synthesize(v4)),
                addr.port(),
            )),
            IpAddr::V6(_) => None,
        }
    }

    /// The IPv4 address embedded in `v6` (RFC 6052 §2.3).
    ///
    /// `v6` must start with this prefix and have a zero u octet; the suffix is ignored, as the
    /// RFC tells decoders to.
    pub fn extract(&self, v6: Ipv6Addr) -> Result<Ipv4Addr, Nat64Error> {
        let bytes = v6.octets();
        let plen = usize::from(self.len.bits() / 8);
        if bytes[..plen] != self.bytes[..plen] {
            return Err(Nat64Error::NotInPrefix);
        }
        if bytes[U_OCTET] != 0 {
            return Err(Nat64Error::NonZeroUOctet);
        }
        Ok(embedded_v4(&bytes, self.len))
    }

    /// Whether `v6` starts with this prefix.
    pub fn contains(&self, v6: Ipv6Addr) -> bool {
        let plen = usize::from(self.len.bits() / 8);
        v6.octets()[..plen] == self.bytes[..plen]
    }
}

/// The four octets at `len`'s IPv4 positions of `bytes`.
fn embedded_v4(bytes: &[u8; 16], len: PrefixLen) -> Ipv4Addr {
    let [a, b, c, d] = len.v4_positions().map(|p| bytes[p]);
    Ipv4Addr::new(a, b, c, d)
}

impl fmt::Display for Nat64Prefix {
    /// `64:ff9b::/96`, the form `netcheck` reports.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr(), self.len.bits())
    }
}

impl fmt::Debug for Nat64Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Nat64Prefix {
    type Err = Nat64Error;

    /// Parses `IPV6ADDR/LEN`, e.g. `64:ff9b::/96`.
    fn from_str(s: &str) -> Result<Self, Nat64Error> {
        let (addr, len) = s.split_once('/').ok_or(Nat64Error::Syntax)?;
        let addr: Ipv6Addr = addr.parse().map_err(|_| Nat64Error::Syntax)?;
        // Reject signs and leading junk u8::from_str would tolerate ("+96").
        if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Nat64Error::Syntax);
        }
        let bits: u8 = len.parse().map_err(|_| Nat64Error::Syntax)?;
        Nat64Prefix::new(addr, PrefixLen::from_bits(bits)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().expect("test address")
    }

    /// RFC 6052 §2.4, Table 1 (and the well-known prefix line of Table 2).
    const RFC6052_TABLE: [(&str, &str); 7] = [
        ("2001:db8::/32", "2001:db8:c000:221::"),
        ("2001:db8:100::/40", "2001:db8:1c0:2:21::"),
        ("2001:db8:122::/48", "2001:db8:122:c000:2:2100::"),
        ("2001:db8:122:300::/56", "2001:db8:122:3c0:0:221::"),
        ("2001:db8:122:344::/64", "2001:db8:122:344:c0:2:2100:0"),
        ("2001:db8:122:344::/96", "2001:db8:122:344::192.0.2.33"),
        ("64:ff9b::/96", "64:ff9b::192.0.2.33"),
    ];

    #[test]
    fn rfc6052_section_2_4_examples() {
        let v4 = Ipv4Addr::new(192, 0, 2, 33);
        for (prefix, embedded) in RFC6052_TABLE {
            let p: Nat64Prefix = prefix.parse().expect("table prefix parses");
            assert_eq!(p.synthesize(v4), v6(embedded), "{prefix}");
            assert_eq!(p.extract(v6(embedded)), Ok(v4), "{prefix}");
            assert_eq!(p.to_string(), prefix);
        }
    }

    #[test]
    fn u_octet_must_be_zero() {
        let p: Nat64Prefix = "2001:db8::/32".parse().expect("parses");
        let mut bad = p.synthesize(Ipv4Addr::new(192, 0, 2, 33)).octets();
        bad[8] = 1;
        assert_eq!(
            p.extract(Ipv6Addr::from(bad)),
            Err(Nat64Error::NonZeroUOctet)
        );
        assert_eq!(
            "2001:db8:0:0:ff00::/96".parse::<Nat64Prefix>(),
            Err(Nat64Error::NonZeroUOctet)
        );
    }

    #[test]
    fn bad_lengths_and_foreign_addresses_are_typed_errors() {
        assert_eq!(
            "64:ff9b::/95".parse::<Nat64Prefix>(),
            Err(Nat64Error::InvalidLength(95))
        );
        for bad in [
            "64:ff9b::",
            "64:ff9b::/",
            "64:ff9b::/+96",
            "x/96",
            "64:ff9b::/300",
        ] {
            assert_eq!(bad.parse::<Nat64Prefix>(), Err(Nat64Error::Syntax), "{bad}");
        }
        assert_eq!(
            WELL_KNOWN_PREFIX.extract(v6("2001:db8::c000:221")),
            Err(Nat64Error::NotInPrefix)
        );
    }

    #[test]
    fn host_bits_are_cleared_and_well_known_is_recognised() {
        let p = Nat64Prefix::new(v6("64:ff9b::1.2.3.4"), PrefixLen::L96).expect("valid");
        assert!(p.is_well_known());
        assert_eq!(p.to_string(), "64:ff9b::/96");
        assert!(p.contains(v6("64:ff9b::8.8.8.8")));
        assert!(!p.contains(v6("64:ff9c::8.8.8.8")));
    }
}
