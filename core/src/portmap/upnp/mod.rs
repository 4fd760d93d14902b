//! UPnP IGD port mapping, codec side: SSDP discovery, the device description, and the SOAP
//! actions of WANIPConnection:1/2 and WANPPPConnection:1.
//!
//! The core builds request bytes and parses response bytes; the driver moves them over UDP
//! multicast (SSDP) and TCP (description, SOAP). HTTP framing is `httparse`'s and XML is
//! `quick-xml`'s: nothing here hand-parses either. Everything a gateway sends is bounded in size
//! ([`MAX_DESCRIPTION_LEN`], [`MAX_SOAP_RESPONSE_LEN`]), XML may not declare a DOCTYPE (so no
//! entity can expand: no XML bombs), nesting depth and element counts are capped, and every
//! failure is a typed [`UpnpError`].
//!
//! Needs the `std` feature: `quick-xml` is not `no_std`.

pub mod client;
pub mod description;
pub mod http;
pub mod soap;
pub mod ssdp;
mod xml;

use alloc::string::String;
use core::net::{IpAddr, SocketAddr};

/// The largest device description accepted (real ones are a few KiB).
pub const MAX_DESCRIPTION_LEN: usize = 64 * 1024;
/// The largest SOAP response accepted.
pub const MAX_SOAP_RESPONSE_LEN: usize = 16 * 1024;
/// The longest URL or text value accepted from a gateway.
pub const MAX_TEXT_LEN: usize = 1024;

/// Why a UPnP message was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpnpError {
    /// The HTTP framing is malformed (httparse's verdict) or incomplete.
    #[error("malformed HTTP message")]
    Http,
    /// The message is incomplete: more bytes are needed.
    #[error("incomplete HTTP message")]
    Incomplete,
    /// An HTTP status other than the one expected.
    #[error("HTTP status {0}")]
    Status(u16),
    /// Larger than the limit for its kind.
    #[error("message of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Its size (or declared size).
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A header needed is missing.
    #[error("required header missing")]
    MissingHeader,
    /// Malformed XML, or XML the limits refuse (DOCTYPE, entities, depth, element count).
    #[error("malformed or refused XML")]
    Xml,
    /// Not valid UTF-8.
    #[error("not UTF-8")]
    Encoding,
    /// A URL that is not `http://IP[:port]/path` or a path relative to one.
    #[error("unsupported URL")]
    Url,
    /// The description lists no WANIPConnection:1/2 or WANPPPConnection:1 service.
    #[error("no WAN connection service in the description")]
    NoWanService,
    /// The response lacks an output argument it must have, or it is not a number/address.
    #[error("missing or malformed output argument")]
    BadArgument,
    /// The gateway answered with a SOAP fault carrying this UPnP error code.
    #[error("UPnP error {0}")]
    Fault(u16),
}

impl UpnpError {
    /// 718 ConflictInMappingEntry: the external port is taken; try another.
    pub const CONFLICT_IN_MAPPING_ENTRY: u16 = 718;
    /// 725 OnlyPermanentLeasesSupported: retry with lease duration 0.
    pub const ONLY_PERMANENT_LEASES_SUPPORTED: u16 = 725;
}

/// An `http://` URL with an IP-literal host: where to connect and what to ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    /// Host and port (80 when absent).
    pub addr: SocketAddr,
    /// Absolute path with query, `/` when empty.
    pub path: String,
}

impl HttpUrl {
    /// Parses `http://HOST[:PORT][/PATH]` where HOST is an IPv4 literal or a bracketed IPv6
    /// literal. Names are refused: the gateway is on the link and a name would need DNS.
    pub fn parse(url: &str) -> Result<Self, UpnpError> {
        if url.len() > MAX_TEXT_LEN {
            return Err(UpnpError::Url);
        }
        let rest = url
            .get(..7)
            .filter(|s| s.eq_ignore_ascii_case("http://"))
            .map(|_| &url[7..])
            .ok_or(UpnpError::Url)?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr = parse_authority(authority)?;
        if path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(UpnpError::Url);
        }
        Ok(HttpUrl {
            addr,
            path: String::from(path),
        })
    }

    /// Resolves `reference` against this URL: absolute `http://` URLs stand alone, `/paths`
    /// replace the path, and other relative paths replace the last path segment.
    pub fn join(&self, reference: &str) -> Result<HttpUrl, UpnpError> {
        if reference.len() > 7 && reference[..7].eq_ignore_ascii_case("http://") {
            return HttpUrl::parse(reference);
        }
        if reference.is_empty()
            || reference.len() > MAX_TEXT_LEN
            || reference.contains("://")
            || reference.bytes().any(|b| b.is_ascii_control() || b == b' ')
        {
            return Err(UpnpError::Url);
        }
        let path = if reference.starts_with('/') {
            String::from(reference)
        } else {
            let base = &self.path[..self.path.rfind('/').map_or(0, |i| i + 1)];
            let mut p = String::from(if base.is_empty() { "/" } else { base });
            p.push_str(reference);
            p
        };
        Ok(HttpUrl {
            addr: self.addr,
            path,
        })
    }
}

fn parse_authority(a: &str) -> Result<SocketAddr, UpnpError> {
    let (host, port) = if let Some(v6) = a.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or(UpnpError::Url)?;
        (host, after.strip_prefix(':'))
    } else {
        match a.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (a, None),
        }
    };
    let ip: IpAddr = host.parse().map_err(|_| UpnpError::Url)?;
    let port = match port {
        None => 80,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            p.parse().map_err(|_| UpnpError::Url)?
        }
        Some(_) => return Err(UpnpError::Url),
    };
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_join() {
        let u = HttpUrl::parse("http://192.168.1.1:5000/rootDesc.xml").expect("parses");
        assert_eq!(u.addr, "192.168.1.1:5000".parse().expect("addr"));
        assert_eq!(u.path, "/rootDesc.xml");
        assert_eq!(u.join("/ctl/IPConn").expect("join").path, "/ctl/IPConn");
        assert_eq!(u.join("ctl/IPConn").expect("join").path, "/ctl/IPConn");
        let v6 = HttpUrl::parse("HTTP://[fe80::1]/").expect("parses");
        assert_eq!(v6.addr.port(), 80);
        assert_eq!(
            u.join("http://192.168.1.1:5000/x").expect("join").path,
            "/x"
        );
        for bad in [
            "https://192.168.1.1/",
            "http://router.lan/",
            "http://192.168.1.1:/",
            "http://192.168.1.1:99999/",
            "http://192.168.1.1/a b",
            "ftp://x",
        ] {
            assert_eq!(HttpUrl::parse(bad), Err(UpnpError::Url), "{bad}");
        }
        assert_eq!(u.join("ftp://x/"), Err(UpnpError::Url));
    }
}
