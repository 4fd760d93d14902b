//! `holepunch connect --turn USER:PASS@HOST:PORT?transport=tls --turn-ca PEM` end to end, with
//! a CA and relay certificate made by the test (nothing is checked in):
//! - in the netns lab, a UDP-blocked peer and a port-restricted one meet only through
//!   `holepunch relay --tls-listen` (the blocked side has no other way out): both report
//!   `path: relay` and a line goes each way. Needs root (skips with a reason otherwise; fails
//!   under `CI=true`); the lab deletes every namespace it made.
//! - on loopback, a client trusting another CA refuses the relay's certificate: a warning that
//!   names the reason, no relayed candidate, exit 1; the same command trusting the right CA
//!   gets its relayed candidate (so the refusal is the CA's doing).
mod lab_common;
mod relay_common;
mod support;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::Stdio;
use std::time::Duration;

use holepunch_tests::lab::{self, Profile, Stream};
use lab_common::{CONNECT_TIMEOUT_S, RELAY_USER, STUN_PRIMARY, connect_with, servers};
use relay_common::{LIMIT, Pki, Relay};
use support::{TempDir, holepunch, json_str, run_bounded};

/// The lab relay's TLS listener (beside its UDP and TCP one on `lab_common::RELAY`).
const RELAY_TLS: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 7), 5349);

#[test]
fn a_udp_blocked_peer_connects_through_our_relay_over_tls_with_a_private_ca() {
    let Some(lab) = lab::require() else {
        return;
    };
    // The certificate names the relay by IP: clients check it against HOST in --turn.
    let pki = Pki::for_names("holepunch lab CA", &[&RELAY_TLS.ip().to_string()]);
    let (_srv, _stun, _signal) = servers(&lab);
    let (cert, key) = (pki.file("cert.pem"), pki.file("key.pem"));
    let tls = RELAY_TLS.to_string();
    let extra = ["--tls-listen", &tls, "--cert", &cert, "--key", &key];
    let (_relay_ns, _relay) = lab_common::relay_with(&lab, "relay-tls", &extra, "listening on tls");
    let site_a = lab.nat_site(Profile::UdpBlocked, false);
    let site_b = lab.nat_site(Profile::PortRestrictedCone, false);
    let turn = format!("{RELAY_USER}@{RELAY_TLS}?transport=tls");
    let ca = pki.file("ca.pem");
    let extra = ["--turn", turn.as_str(), "--turn-ca", ca.as_str()];
    let mut a = connect_with(&lab, site_a.host(), "a", "b", &[STUN_PRIMARY], &extra);
    let mut b = connect_with(&lab, site_b.host(), "b", "a", &[STUN_PRIMARY], &extra);
    let limit = Duration::from_secs(CONNECT_TIMEOUT_S + 10);
    for p in [&mut a, &mut b] {
        let line = p.expect_line(Stream::Stderr, limit, |l| {
            l.contains("\"event\":\"connected\"") || l.contains("\"event\":\"failed\"")
        });
        println!("{line}");
        assert!(line.contains("\"event\":\"connected\""), "{}", p.describe());
        assert!(line.contains("\"path\":\"relay\""), "{line}");
    }
    // The blocked side's relay went over TLS: nothing warns that a relay is not used.
    for p in [&mut a, &mut b] {
        assert!(
            !p.stderr().contains("the relay is not used"),
            "{}",
            p.describe()
        );
    }
    // A line each way (repeated while lost), then EOF: both exit 0.
    lab_common::lines_both_ways_then_eof(&mut a, &mut b);
}

/// `holepunch connect` in file mode with only the TLS relay at `port`, trusting `ca`; its exit
/// code and stderr (JSON events).
fn connect_trusting(port: u16, ca: &str) -> (i32, String) {
    let dir = TempDir::new("holepunch-connect-tls");
    let (local, remote) = (
        dir.path().join("local.offer"),
        dir.path().join("remote.offer"),
    );
    let turn = format!("alice:alicepass@127.0.0.1:{port}?transport=tls");
    let mut cmd = holepunch();
    cmd.arg("connect")
        .args(["--datagram", "--json", "--timeout", "2"])
        .arg("--local-file")
        .arg(&local)
        .arg("--remote-file")
        .arg(&remote)
        .args(["--turn", &turn, "--turn-ca", ca])
        .stdin(Stdio::null());
    let out = run_bounded("connect", &mut cmd, LIMIT);
    (out.code(), out.stderr)
}

#[test]
fn a_relay_certificate_from_another_ca_is_refused_with_a_clear_warning() {
    let pki = Pki::new("holepunch test CA");
    let other = Pki::new("another test CA");
    let (_relay, tls) = Relay::start_tls(&pki, &[]);

    let (code, stderr) = connect_trusting(tls.port(), &pki.file("ca.pem"));
    assert_eq!(code, 1, "no peer: the job fails\n{stderr}");
    assert!(
        stderr.contains("\"type\":\"relay\""),
        "trusting the relay's CA, the relayed candidate is gathered:\n{stderr}"
    );
    assert!(!stderr.contains("\"event\":\"warning\""), "{stderr}");

    let (code, stderr) = connect_trusting(tls.port(), &other.file("ca.pem"));
    assert_eq!(code, 1, "{stderr}");
    let warning = stderr
        .lines()
        .find(|l| l.contains("\"event\":\"warning\""))
        .unwrap_or_else(|| panic!("no warning for the refused certificate:\n{stderr}"));
    let reason = json_str(warning, "reason").unwrap_or_default();
    assert!(
        reason.contains(&format!("127.0.0.1:{}", tls.port()))
            && reason.contains("UnknownIssuer")
            && reason.contains("the relay is not used"),
        "the warning names the relay, the reason and the consequence: {reason}"
    );
    assert!(
        !stderr.contains("\"type\":\"relay\""),
        "no relayed candidate from a relay whose certificate was refused:\n{stderr}"
    );
    assert!(stderr.contains("\"event\":\"failed\""), "{stderr}");
}
