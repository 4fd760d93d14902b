//! Server addresses as the user types them: `IP:PORT`, `[IPv6]:PORT`, a bare IP (where a
//! default port exists) or `HOST:PORT`.
//!
//! Checked when the arguments are parsed, so a malformed address is bad usage (exit 2, from
//! clap) and never reaches the resolver: `999.1.1.1:1` is a broken IPv4 literal, not a host
//! name, and `127.0.0.1:70000` has no valid port. Only a well-formed host name is looked up,
//! later, by [`Target::resolve`].

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// A well-formed server address, not yet resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// An IP literal with its port.
    Addr(SocketAddr),
    /// A host name and port, for the system resolver.
    Name(String, u16),
}

impl Target {
    /// Parses `s`; without a port, `default_port` is used, or the address is malformed when
    /// there is none.
    pub fn parse(s: &str, default_port: Option<u16>) -> Result<Target, String> {
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return check_port(s, addr.port()).map(|()| Target::Addr(addr));
        }
        let (host, port) = split_host_port(s)?;
        let port = match (port, default_port) {
            (Some(p), _) => parse_port(s, p)?,
            (None, Some(p)) => p,
            (None, None) => return Err(format!("{s}: a port is required (IP:PORT or HOST:PORT)")),
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Target::Addr(SocketAddr::new(ip, port)));
        }
        if looks_like_ipv4(host) || host.contains(':') || s.starts_with('[') {
            return Err(format!("{s}: {host} is not a valid IP address"));
        }
        if !is_host_name(host) {
            return Err(format!(
                "{s}: {host:?} is neither an IP address nor a host name"
            ));
        }
        Ok(Target::Name(host.to_owned(), port))
    }

    /// The address: an IP literal as it is, a name through the system resolver (IPv4
    /// preferred when it has both).
    pub fn resolve(&self) -> Result<SocketAddr, String> {
        match self {
            Target::Addr(addr) => Ok(*addr),
            Target::Name(host, port) => {
                let addrs: Vec<SocketAddr> = (host.as_str(), *port)
                    .to_socket_addrs()
                    .map_err(|e| format!("cannot resolve {self}: {e}"))?
                    .collect();
                addrs
                    .iter()
                    .find(|a| a.is_ipv4())
                    .or_else(|| addrs.first())
                    .copied()
                    .ok_or_else(|| format!("cannot resolve {self}: no addresses"))
            }
        }
    }

    /// For a host name, its first address of the other family than `preferred`'s.
    pub fn other_family(&self, preferred: SocketAddr) -> Option<SocketAddr> {
        let Target::Name(host, port) = self else {
            return None;
        };
        (host.as_str(), *port)
            .to_socket_addrs()
            .ok()?
            .find(|a| a.is_ipv4() != preferred.is_ipv4())
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Addr(a) => write!(f, "{a}"),
            Target::Name(h, p) => write!(f, "{h}:{p}"),
        }
    }
}

/// clap value parser: a server with the STUN default port (3478) when none is given.
pub fn stun_server(s: &str) -> Result<Target, String> {
    Target::parse(s, Some(holepunch_core::stun::DEFAULT_PORT))
}

/// clap value parser: a server whose port must be given.
pub fn with_port(s: &str) -> Result<Target, String> {
    Target::parse(s, None)
}

/// `host` and the port text, if any: `[v6]:p`, `[v6]`, `v6` (two colons or more), `h:p`, `h`.
fn split_host_port(s: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{s}: missing ']'"))?;
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(format!("{s}: expected [IPv6]:PORT")),
            },
        };
    }
    if s.matches(':').count() > 1 {
        // A bare IPv6 literal (its port would need brackets).
        return Ok((s, None));
    }
    match s.split_once(':') {
        Some((host, port)) if !host.is_empty() => Ok((host, Some(port))),
        Some(_) => Err(format!("{s}: the host is missing")),
        None => Ok((s, None)),
    }
}

fn parse_port(s: &str, port: &str) -> Result<u16, String> {
    let p: u16 = port
        .parse()
        .map_err(|_| format!("{s}: {port:?} is not a port (1 to 65535)"))?;
    check_port(s, p).map(|()| p)
}

fn check_port(s: &str, port: u16) -> Result<(), String> {
    if port == 0 {
        return Err(format!("{s}: port 0 is not a server's port"));
    }
    Ok(())
}

/// Digits and dots only: meant as an IPv4 literal, never a host name (RFC 1123 §2.1 top-level
/// labels are not all-numeric).
fn looks_like_ipv4(host: &str) -> bool {
    !host.is_empty() && host.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// Letters, digits, `-`, `_` and dots, at most 253 characters.
fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Target {
        Target::Addr(s.parse().expect("addr"))
    }

    #[test]
    fn literals_with_and_without_ports() {
        assert_eq!(stun_server("1.2.3.4:5"), Ok(addr("1.2.3.4:5")));
        assert_eq!(stun_server("1.2.3.4"), Ok(addr("1.2.3.4:3478")));
        assert_eq!(stun_server("[::1]:9"), Ok(addr("[::1]:9")));
        assert_eq!(stun_server("[::1]"), Ok(addr("[::1]:3478")));
        assert_eq!(stun_server("::1"), Ok(addr("[::1]:3478")));
        assert_eq!(
            stun_server("localhost"),
            Ok(Target::Name("localhost".into(), 3478))
        );
        assert_eq!(
            with_port("example.net:7"),
            Ok(Target::Name("example.net".into(), 7))
        );
    }

    #[test]
    fn malformed_addresses_are_rejected_without_lookup() {
        for bad in [
            "999.1.1.1:1",
            "127.0.0.1:70000",
            "1.2.3:4",
            "[::1]x",
            "[nope]:5",
            ":5",
            "a b:5",
            "1.2.3.4:0",
            "",
        ] {
            assert!(stun_server(bad).is_err(), "{bad}");
        }
        assert!(with_port("[::1]").is_err());
        assert!(with_port("1.2.3.4").is_err());
        assert!(with_port("localhost").is_err());
    }

    #[test]
    fn names_resolve_and_literals_stay() {
        assert_eq!(
            addr("1.2.3.4:5").resolve(),
            Ok("1.2.3.4:5".parse().expect("addr"))
        );
        let local = Target::Name("localhost".into(), 7).resolve();
        assert_eq!(local.map(|a| a.port()), Ok(7));
    }
}
