//! Assertions, guards and helpers the driver tests share (each test file compiles its own copy).
#![allow(dead_code, reason = "each test file uses a different subset")]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use holepunch_core::ice::agent::PathInfo;
use holepunch_core::ice::candidate::{Candidate, CandidateKind};
use holepunch_core::ice::credentials::IceCredentials;
use holepunch_core::stun::client::BindingOptions;
use holepunch_std::{StunOptions, StunReport};
use holepunch_tests::{expected_source, loopback_any_port};

/// The longest any single transaction in these tests may take before it fails.
pub const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(5);

/// Sets the flag when dropped, so a panicking test still stops the server thread it scoped.
pub struct StopOnDrop<'a>(pub &'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Options for a plain request from 127.0.0.1, bounded by [`TRANSACTION_TIMEOUT`].
pub fn plain_options() -> StunOptions {
    StunOptions::default()
        .with_local(loopback_any_port())
        .with_timeout(TRANSACTION_TIMEOUT)
}

/// Options for an RFC 5780 request (padded, with CHANGE-REQUEST) from 127.0.0.1.
pub fn rfc5780_options(change_ip: bool, change_port: bool) -> StunOptions {
    StunOptions::rfc5780()
        .with_local(loopback_any_port())
        .with_timeout(TRANSACTION_TIMEOUT)
        .with_binding(BindingOptions {
            change_ip,
            change_port,
            response_port: None,
        })
}

/// A plain server's answer: the mapped address is the client's own, from the address asked, and
/// no RFC 5780 attributes.
pub fn assert_plain(report: &StunReport, local: SocketAddr, server: SocketAddr) {
    assert_eq!(report.mapped, local, "mapped address: {report:?}");
    assert_eq!(report.local, local, "{report:?}");
    assert_eq!(report.server, server, "{report:?}");
    assert_eq!(report.from, server, "response source: {report:?}");
    assert_eq!(report.other_address, None, "{report:?}");
    assert_eq!(report.response_origin, None, "{report:?}");
    assert!(report.rtt < TRANSACTION_TIMEOUT, "{report:?}");
}

/// An RFC 5780 server's answer to a request sent to `asked` with the given CHANGE-REQUEST:
/// from the right socket, RESPONSE-ORIGIN naming it, and, for a request to the primary,
/// OTHER-ADDRESS the alternate.
///
/// OTHER-ADDRESS is not checked for requests to the other three sockets: RFC 5780 §7.4 defines
/// it as where a change-IP-and-port answer would come from (relative to the receiving socket),
/// but the core always sends the configured alternate; `rfc5780_other_address_follows_the_receiving_socket`
/// in std_driver.rs pins that down (ignored until the core is fixed).
///
/// `addrs` is the server's four addresses, primary first and alternate last.
pub fn assert_rfc5780(
    report: &StunReport,
    local: SocketAddr,
    addrs: &[SocketAddr],
    asked: SocketAddr,
    (change_ip, change_port): (bool, bool),
) {
    assert_eq!(addrs.len(), 4, "an RFC 5780 server binds four sockets");
    let (primary, alternate) = (addrs[0], addrs[3]);
    let source = expected_source(primary, alternate, asked, change_ip, change_port);
    let case = format!("asked {asked} with change ip {change_ip} port {change_port}: {report:?}");
    assert_eq!(report.mapped, local, "mapped address, {case}");
    assert_eq!(report.server, asked, "{case}");
    assert_eq!(report.from, source, "response source, {case}");
    assert_eq!(
        report.response_origin,
        Some(source),
        "RESPONSE-ORIGIN, {case}"
    );
    if asked == primary {
        assert_eq!(
            report.other_address,
            Some(alternate),
            "OTHER-ADDRESS, {case}"
        );
    } else {
        assert!(report.other_address.is_some(), "OTHER-ADDRESS, {case}");
    }
}

/// The four addresses of an RFC 5780 server are distinct and pair up as primary/alternate IP ×
/// primary/alternate port, in `Server::local_addresses` order.
pub fn assert_rfc5780_addrs(addrs: &[SocketAddr]) {
    assert_eq!(addrs.len(), 4, "{addrs:?}");
    let (p, a) = (addrs[0], addrs[3]);
    assert_ne!(p.ip(), a.ip(), "{addrs:?}");
    assert_ne!(p.port(), a.port(), "{addrs:?}");
    assert_ne!(p.port(), 0, "{addrs:?}");
    assert_ne!(a.port(), 0, "{addrs:?}");
    assert_eq!(addrs[1], SocketAddr::new(p.ip(), a.port()), "{addrs:?}");
    assert_eq!(addrs[2], SocketAddr::new(a.ip(), p.port()), "{addrs:?}");
}

/// The bound on every phase of an ICE driver test (connecting, exchanging, losing consent).
pub const PHASE_TIMEOUT: Duration = Duration::from_secs(20);
/// Application datagrams each side sends in the ICE driver tests.
pub const DATAGRAMS: u32 = 100;
/// How long both sides stay up after connecting in the consent tests: longer than the consent
/// timeout, so a path that survives it is being refreshed.
pub const KEEP_ALIVE: Duration = Duration::from_millis(1500);

/// What the ICE driver tests' signalling channel carries.
pub enum Signal {
    /// Boxed: inline credentials are over 500 bytes, the other variants small.
    Credentials(Box<IceCredentials>),
    Candidate(Candidate),
    EndOfCandidates,
}

/// Application datagram `i`: `app:` and `i` big-endian.
pub fn app_payload(i: u32) -> Vec<u8> {
    // 'a' (0x61) is outside the STUN first-byte range 0..=3 (RFC 7983), so it is app data.
    let mut payload = b"app:".to_vec();
    payload.extend_from_slice(&i.to_be_bytes());
    payload
}

/// The `i` of an [`app_payload`]; panics on anything else.
pub fn parse_app_payload(payload: &[u8]) -> u32 {
    let bytes = payload
        .strip_prefix(b"app:")
        .and_then(|rest| <[u8; 4]>::try_from(rest).ok())
        .unwrap_or_else(|| panic!("unexpected app payload {payload:?}"));
    u32::from_be_bytes(bytes)
}

/// A direct host-to-host path between the two sockets.
pub fn assert_direct(path: &PathInfo, local: SocketAddr, remote: SocketAddr) {
    assert_eq!(path.local, local, "{path:?}");
    assert_eq!(path.remote, remote, "{path:?}");
    assert_eq!(path.local_kind, CandidateKind::Host, "{path:?}");
    assert_eq!(path.remote_kind, CandidateKind::Host, "{path:?}");
    assert!(!path.relayed, "{path:?}");
}
