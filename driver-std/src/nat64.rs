//! RFC 7050 NAT64 prefix discovery over a real socket: the core's
//! [`PrefixDiscovery`] pumped against the system resolver.
//!
//! The resolver is the first usable `nameserver` of `/etc/resolv.conf` (or of the file named
//! by the `HOLEPUNCH_RESOLV_CONF` environment variable, which tests point at a resolver inside
//! their own network namespace, or at an empty file so that nothing leaves the machine). The
//! socket is connected to it, so answers from anyone else are never read.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Instant as StdInstant;

use holepunch_core::Instant;
use holepunch_core::nat64::Nat64Prefix;
use holepunch_core::nat64::discovery::{
    DiscoveryAction, DiscoveryConfig, DiscoveryError, DiscoveryEvent, DnsIo, PrefixDiscovery,
};
use holepunch_core::rng::Rng;

/// The environment variable naming a resolv.conf to read instead of `/etc/resolv.conf`.
pub const RESOLV_CONF_ENV: &str = "HOLEPUNCH_RESOLV_CONF";

/// Most `nameserver` lines read (as glibc: `MAXNS`).
const MAX_RESOLVERS: usize = 3;

/// What asking the resolver for `ipv4only.arpa` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nat64Finding {
    /// No resolver is configured: nothing was asked.
    NoResolver,
    /// The resolver synthesises with this prefix (the first, when it revealed several).
    Found {
        /// The resolver asked.
        resolver: SocketAddr,
        /// Its Pref64::/n.
        prefix: Nat64Prefix,
    },
    /// The resolver answered without synthesising: no DNS64 here.
    NoNat64 {
        /// The resolver asked.
        resolver: SocketAddr,
    },
    /// The resolver never answered usably (timed out, unreachable, or a malformed answer).
    Failed {
        /// The resolver asked.
        resolver: SocketAddr,
        /// Why.
        error: DiscoveryError,
    },
}

impl Nat64Finding {
    /// The discovered prefix, if any.
    pub fn prefix(self) -> Option<Nat64Prefix> {
        match self {
            Nat64Finding::Found { prefix, .. } => Some(prefix),
            _ => None,
        }
    }
}

/// The resolv.conf this process reads: [`RESOLV_CONF_ENV`] when set, else `/etc/resolv.conf`.
pub fn resolv_conf_path() -> PathBuf {
    std::env::var_os(RESOLV_CONF_ENV).map_or_else(|| "/etc/resolv.conf".into(), PathBuf::from)
}

/// The resolvers `path` names, port 53, in order (at most three; a missing or unreadable file
/// names none). Scoped IPv6 addresses (`fe80::1%eth0`) are skipped.
pub fn system_resolvers(path: &Path) -> Vec<SocketAddr> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    parse_resolv_conf(&text)
}

/// The `nameserver` addresses of resolv.conf text (see [`system_resolvers`]).
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
                .and_then(|a| a.parse::<IpAddr>().ok())
        })
        .map(|ip| SocketAddr::new(ip, 53))
        .take(MAX_RESOLVERS)
        .collect()
}

/// Asks the first system resolver (see the module docs) for the NAT64 prefix, within about
/// `first_timeout × (2^sends − 1)`.
pub fn discover_nat64(config: DiscoveryConfig) -> Nat64Finding {
    match system_resolvers(&resolv_conf_path()).first() {
        Some(&resolver) => discover_via(resolver, config),
        None => Nat64Finding::NoResolver,
    }
}

/// Asks `resolver` for the NAT64 prefix (RFC 7050), with the core's retry schedule.
pub fn discover_via(resolver: SocketAddr, config: DiscoveryConfig) -> Nat64Finding {
    let failed = |error| Nat64Finding::Failed { resolver, error };
    let unspecified: SocketAddr = if resolver.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = match UdpSocket::bind(unspecified).and_then(|s| s.connect(resolver).map(|()| s)) {
        Ok(s) => s,
        Err(_) => return failed(DiscoveryError::Io),
    };
    let epoch = StdInstant::now();
    let now = || Instant::from_micros(epoch.elapsed().as_micros() as u64);
    let mut rng = Rng::from_seed(seed());
    let mut discovery = PrefixDiscovery::new(now(), &mut rng, config);
    let mut buf = [0u8; 1500];
    // Bounded by the machine's own schedule; the count is a backstop against a bug there.
    for _ in 0..10_000 {
        while let Some(DiscoveryAction::SendQuery(query)) = discovery.poll_action() {
            if socket.send(query.as_bytes()).is_err() {
                discovery.handle_io(now(), DnsIo::Failed);
            }
        }
        if let Some(event) = discovery.poll_event() {
            return match event {
                DiscoveryEvent::Discovered(p) => Nat64Finding::Found {
                    resolver,
                    prefix: p.first(),
                },
                DiscoveryEvent::NoNat64 => Nat64Finding::NoNat64 { resolver },
                DiscoveryEvent::Failed(error) => failed(error),
                _ => failed(DiscoveryError::Io),
            };
        }
        let Some(deadline) = discovery.poll_timeout() else {
            return failed(DiscoveryError::TimedOut);
        };
        let wait = deadline.saturating_duration_since(now());
        if wait.is_zero() {
            discovery.handle_timeout(now());
            continue;
        }
        if socket.set_read_timeout(Some(wait)).is_err() {
            return failed(DiscoveryError::Io);
        }
        match socket.recv(&mut buf) {
            Ok(n) => discovery.handle_io(now(), DnsIo::Answer(&buf[..n])),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                discovery.handle_timeout(now());
            }
            // ICMP unreachable on the connected socket: nobody listens there.
            Err(_) => discovery.handle_io(now(), DnsIo::Failed),
        }
    }
    failed(DiscoveryError::TimedOut)
}

/// A query id seed the resolver's neighbours cannot guess from the clock alone.
fn seed() -> u64 {
    let mut bytes = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_ok()
    {
        return u64::from_le_bytes(bytes);
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    t.as_nanos() as u64 ^ u64::from(std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn resolv_conf_nameservers_in_order_at_most_three() {
        let text = "# comment\nsearch lab\nnameserver 192.0.2.53\nnameserver   2001:db8::53\n\
                    nameserver fe80::1%eth0\nnameserver bogus\nnameserver 198.51.100.53\n\
                    nameserver 203.0.113.53\n";
        let got = parse_resolv_conf(text);
        assert_eq!(
            got,
            vec![
                "192.0.2.53:53".parse().expect("addr"),
                "[2001:db8::53]:53".parse().expect("addr"),
                "198.51.100.53:53".parse().expect("addr"),
            ]
        );
        assert!(parse_resolv_conf("").is_empty());
        assert!(system_resolvers(Path::new("/nonexistent/resolv.conf")).is_empty());
    }

    #[test]
    fn a_resolver_that_never_answers_fails_within_the_schedule() {
        // A local socket that reads nothing: the query goes unanswered.
        let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let config = DiscoveryConfig {
            first_timeout: Duration::from_millis(50),
            max_sends: 2,
        };
        let started = StdInstant::now();
        let finding = discover_via(silent.local_addr().expect("addr"), config);
        assert!(
            matches!(
                finding,
                Nat64Finding::Failed {
                    error: DiscoveryError::TimedOut,
                    ..
                }
            ),
            "{finding:?}"
        );
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(140) && took < Duration::from_secs(2),
            "{took:?}"
        );
        let mut buf = [0u8; 512];
        silent
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let (n, _) = silent.recv_from(&mut buf).expect("the query arrived");
        assert!(n > 12, "a DNS query");
    }
}
