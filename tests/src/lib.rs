//! holepunch-tests: integration tests across the workspace, and the helpers they share.
//!
//! The drivers (std, mio, tokio) against each other on loopback, plain and RFC 5780; the
//! simulated internet ([`sim`]: virtual time, NAT models, the NAT-pair matrix the `demo` prints);
//! and the network-namespace lab ([`lab`]: real nftables NATs and real servers, for the CLI's
//! lab tests). The tests live in `tests/tests/` and `cli/tests/`; this library holds what they
//! share.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};

use holepunch_core::stun::server::ServerConfig;

/// The second loopback address RFC 5780 tests use as the server's alternate IP.
pub const SECOND_LOOPBACK: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// Whether the tests run under CI (`CI=true` or `CI=1`), where a missing prerequisite is a
/// failure instead of a skip.
pub fn is_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1"))
}

/// Whether this host can bind [`SECOND_LOOPBACK`] (Linux routes all of 127/8 to loopback; macOS
/// only has 127.0.0.1 unless configured).
pub fn second_loopback_available() -> bool {
    UdpSocket::bind((SECOND_LOOPBACK, 0)).is_ok()
}

/// An RFC 5780 server configuration on 127.0.0.1 and 127.0.0.2, ports chosen at bind time; `None`
/// (after printing why) when the second loopback address is missing and the test may be skipped.
///
/// # Panics
/// Under CI, when the second loopback address is missing.
pub fn rfc5780_loopback_config() -> Option<ServerConfig> {
    if !second_loopback_available() {
        assert!(
            !is_ci(),
            "CI=true: cannot bind {SECOND_LOOPBACK}, which the RFC 5780 tests need"
        );
        println!("skipped: cannot bind {SECOND_LOOPBACK} (add it to the loopback interface)");
        return None;
    }
    let mut config = ServerConfig::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    config.alternate = Some(SocketAddr::from((SECOND_LOOPBACK, 0)));
    Some(config)
}

/// A plain server configuration on 127.0.0.1, port chosen at bind time.
pub fn plain_loopback_config() -> ServerConfig {
    ServerConfig::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
}

/// The client's local address for loopback tests: 127.0.0.1, any port, so the mapped address
/// the server reports must equal the socket's own address.
pub fn loopback_any_port() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

/// Where an RFC 5780 server must answer from, worked out independently of the core: the address
/// the request was sent to, with its IP and/or port swapped for the other one as CHANGE-REQUEST
/// asks (RFC 5780 §6.1).
pub fn expected_source(
    primary: SocketAddr,
    alternate: SocketAddr,
    asked: SocketAddr,
    change_ip: bool,
    change_port: bool,
) -> SocketAddr {
    let other_ip = |ip: IpAddr| {
        if ip == primary.ip() {
            alternate.ip()
        } else {
            primary.ip()
        }
    };
    let other_port = |port: u16| {
        if port == primary.port() {
            alternate.port()
        } else {
            primary.port()
        }
    };
    SocketAddr::new(
        if change_ip {
            other_ip(asked.ip())
        } else {
            asked.ip()
        },
        if change_port {
            other_port(asked.port())
        } else {
            asked.port()
        },
    )
}

/// Every CHANGE-REQUEST combination: (change IP, change port).
pub const CHANGE_REQUESTS: [(bool, bool); 4] =
    [(false, false), (false, true), (true, false), (true, true)];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_source_swaps_what_is_asked() {
        let p: SocketAddr = "127.0.0.1:1000".parse().expect("addr");
        let a: SocketAddr = "127.0.0.2:2000".parse().expect("addr");
        assert_eq!(expected_source(p, a, p, false, false), p);
        assert_eq!(expected_source(p, a, p, true, true), a);
        assert_eq!(
            expected_source(p, a, p, false, true),
            "127.0.0.1:2000".parse().expect("addr")
        );
        assert_eq!(
            expected_source(p, a, p, true, false),
            "127.0.0.2:1000".parse().expect("addr")
        );
        assert_eq!(expected_source(p, a, a, true, true), p);
    }
}

pub mod lab;
pub mod profile;
pub mod sim;
