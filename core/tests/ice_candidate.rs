//! ICE candidates, credentials and offer lines: RFC 8445 priorities, RFC 8839 parsing of what
//! real stacks write (cli.md, lab.md §5), formatting round-trips and malformed-input rejection.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

use holepunch_core::ice::candidate::{
    Candidate, CandidateError, CandidateKind, DEFAULT_LOCAL_PREFERENCE, Field, Foundation, priority,
};
use holepunch_core::ice::credentials::{CredentialsError, IceCredentials};
use holepunch_core::ice::offer::{
    MAX_KEEPALIVE_SECS, OfferError, OfferLine, write_candidate, write_end, write_keepalive,
    write_pwd, write_ufrag,
};
use holepunch_core::rng::Rng;
use holepunch_core::time::Duration;
use proptest::prelude::*;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn is_ice_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '+' || c == '/'
}

// ---------------------------------------------------------------- priorities

#[test]
fn priority_matches_rfc_and_cli_examples() {
    // RFC 8445 §5.1.2.1 with the §5.1.2.2 recommended type preferences.
    assert_eq!(priority(CandidateKind::Host, 65535, 1), 2_130_706_431);
    assert_eq!(
        priority(CandidateKind::ServerReflexive, 65535, 1),
        1_694_498_815
    );
    assert_eq!(priority(CandidateKind::Relayed, 65535, 1), 16_777_215);
    assert_eq!(
        priority(CandidateKind::PeerReflexive, 65535, 1),
        1_862_270_975
    );
    assert_eq!(priority(CandidateKind::PortMapped, 65535, 1), 2_030_043_135);
    assert_eq!(priority(CandidateKind::Host, 65535, 2), 2_130_706_430);
    assert_eq!(priority(CandidateKind::Host, 0, 256), 126 << 24);
    // Out-of-range components clamp instead of spilling into the local preference.
    assert_eq!(
        priority(CandidateKind::Host, 7, 0),
        priority(CandidateKind::Host, 7, 1)
    );
    assert_eq!(
        priority(CandidateKind::Host, 7, 999),
        priority(CandidateKind::Host, 7, 256)
    );
    assert!(priority(CandidateKind::Host, u16::MAX, 1) < 1 << 31);
}

#[test]
fn type_preferences_are_ordered() {
    assert_eq!(CandidateKind::Host.type_preference(), 126);
    assert_eq!(CandidateKind::PortMapped.type_preference(), 120);
    assert_eq!(CandidateKind::PeerReflexive.type_preference(), 110);
    assert_eq!(CandidateKind::ServerReflexive.type_preference(), 100);
    assert_eq!(CandidateKind::Relayed.type_preference(), 0);
}

// ---------------------------------------------------------------- constructors, foundations

#[test]
fn constructors_fill_every_field() {
    let base = sa("192.168.1.2:33789");
    let mapped = sa("203.0.113.10:33789");
    let stun = ip("203.0.113.3");

    let host = Candidate::host(base, DEFAULT_LOCAL_PREFERENCE);
    assert_eq!(host.kind, CandidateKind::Host);
    assert_eq!((host.address, host.base, host.related), (base, base, None));
    assert_eq!((host.priority, host.component), (2_130_706_431, 1));

    let srflx = Candidate::server_reflexive(mapped, base, stun);
    assert_eq!(srflx.kind, CandidateKind::ServerReflexive);
    assert_eq!(
        (srflx.address, srflx.base, srflx.related),
        (mapped, base, Some(base))
    );
    assert_eq!(srflx.priority, 1_694_498_815);

    let relay = sa("203.0.113.3:49350");
    let relayed = Candidate::relayed(relay, mapped, stun);
    assert_eq!(relayed.kind, CandidateKind::Relayed);
    assert_eq!(
        (relayed.address, relayed.base, relayed.related),
        (relay, relay, Some(mapped))
    );
    assert_eq!(relayed.priority, 16_777_215);

    let prflx = Candidate::peer_reflexive(mapped, base, 1_862_270_975);
    assert_eq!(prflx.kind, CandidateKind::PeerReflexive);
    assert_eq!(
        (prflx.address, prflx.base, prflx.related),
        (mapped, base, Some(base))
    );
    assert_eq!(prflx.priority, 1_862_270_975);

    let mapped_gw = Candidate::port_mapped(mapped, base, ip("192.168.1.1"));
    assert_eq!(mapped_gw.kind, CandidateKind::PortMapped);
    assert_eq!(mapped_gw.related, Some(base));
    assert_eq!(mapped_gw.priority, 2_030_043_135);

    let lower = host.with_local_preference(10);
    assert_eq!(lower.priority, priority(CandidateKind::Host, 10, 1));
    assert_eq!(lower.foundation, host.foundation);
}

#[test]
fn foundations_follow_kind_base_and_server() {
    let base = ip("192.168.1.2");
    let server = Some(ip("203.0.113.3"));
    let f = Foundation::for_candidate(CandidateKind::ServerReflexive, base, server);
    assert_eq!(
        f,
        Foundation::for_candidate(CandidateKind::ServerReflexive, base, server)
    );
    assert!((8..=12).contains(&f.as_str().len()));
    assert!(f.as_str().chars().all(is_ice_char));
    assert_eq!(Foundation::new(f.as_str()), Ok(f));

    let others = [
        Foundation::for_candidate(CandidateKind::Host, base, server),
        Foundation::for_candidate(CandidateKind::Relayed, base, server),
        Foundation::for_candidate(CandidateKind::PortMapped, base, server),
        Foundation::for_candidate(CandidateKind::ServerReflexive, ip("192.168.1.3"), server),
        Foundation::for_candidate(CandidateKind::ServerReflexive, base, None),
        Foundation::for_candidate(
            CandidateKind::ServerReflexive,
            base,
            Some(ip("203.0.113.4")),
        ),
        Foundation::for_candidate(
            CandidateKind::ServerReflexive,
            ip("::ffff:192.168.1.2"),
            server,
        ),
    ];
    for (i, a) in others.iter().enumerate() {
        assert_ne!(*a, f);
        for b in &others[i + 1..] {
            assert_ne!(a, b);
        }
    }

    // Two host candidates on the same IP (different ports) share a foundation.
    let h1 = Candidate::host(sa("10.0.0.1:1000"), 65535);
    let h2 = Candidate::host(sa("10.0.0.1:2000"), 65535);
    assert_eq!(h1.foundation, h2.foundation);
}

#[test]
fn foundation_validation() {
    assert_eq!(Foundation::new("1").unwrap().as_str(), "1");
    assert_eq!(Foundation::new("a+/Z9").unwrap().to_string(), "a+/Z9");
    let max = "e2aea8ef0c61df57b654b7125d14184e";
    assert_eq!(Foundation::new(max).unwrap().as_str(), max);
    assert_eq!(
        Foundation::new("e2aea8ef0c61df57b654b7125d14184ef"),
        Err(CandidateError::FoundationTooLong(33))
    );
    assert_eq!(Foundation::new(""), Err(CandidateError::InvalidFoundation));
    assert_eq!(
        Foundation::new("a-b"),
        Err(CandidateError::InvalidFoundation)
    );
    assert_eq!(
        Foundation::new("a=b"),
        Err(CandidateError::InvalidFoundation)
    );
    assert_eq!(Foundation::new("é"), Err(CandidateError::InvalidFoundation));
    assert_eq!(Foundation::default().as_str(), "");
}

// ---------------------------------------------------------------- parsing real lines

#[test]
fn parses_cli_md_example_lines() {
    let host =
        Candidate::parse("a=candidate:1 1 udp 2130706431 192.168.1.2 33789 typ host").unwrap();
    assert_eq!(host.foundation.as_str(), "1");
    assert_eq!(host.component, 1);
    assert_eq!(host.priority, 2_130_706_431);
    assert_eq!(host.address, sa("192.168.1.2:33789"));
    assert_eq!(host.kind, CandidateKind::Host);
    assert_eq!(host.base, host.address);
    assert_eq!(host.related, None);

    let srflx = Candidate::parse(
        "a=candidate:2 1 udp 1694498815 203.0.113.10 33789 typ srflx raddr 192.168.1.2 rport 33789",
    )
    .unwrap();
    assert_eq!(srflx.kind, CandidateKind::ServerReflexive);
    assert_eq!(srflx.priority, 1_694_498_815);
    assert_eq!(srflx.address, sa("203.0.113.10:33789"));
    assert_eq!(srflx.related, Some(sa("192.168.1.2:33789")));
    assert_eq!(srflx.base, sa("192.168.1.2:33789"));
}

#[test]
fn accepts_every_prefix_form() {
    let full = "a=candidate:1 1 udp 2130706431 192.168.1.2 33789 typ host";
    let want = Candidate::parse(full).unwrap();
    for line in [
        "candidate:1 1 udp 2130706431 192.168.1.2 33789 typ host",
        // aioice's to_sdp(): no `candidate:` prefix.
        "1 1 udp 2130706431 192.168.1.2 33789 typ host",
        "a=1 1 udp 2130706431 192.168.1.2 33789 typ host",
        "a=candidate:1 1 udp 2130706431 192.168.1.2 33789 typ host\r",
        "a=candidate:1 1 udp 2130706431 192.168.1.2 33789 typ host\r\n",
        "  a=candidate:1  1\tudp 2130706431 192.168.1.2 33789 typ host  ",
        "a=CANDIDATE:1 1 UDP 2130706431 192.168.1.2 33789 TYP HOST",
    ] {
        assert_eq!(Candidate::parse(line), Ok(want), "{line:?}");
    }
    assert_eq!(full.parse::<Candidate>(), Ok(want));
}

#[test]
fn parses_aioice_lines_from_lab_md() {
    let host = Candidate::parse(
        "a=candidate:e2aea8ef0c61df57b654b7125d14184e 1 udp 2130706431 192.168.1.2 33789 typ host",
    )
    .unwrap();
    assert_eq!(host.foundation.as_str(), "e2aea8ef0c61df57b654b7125d14184e");

    let srflx = Candidate::parse(
        "a=candidate:7b29ffc97bc5f5ca4db0cbe5623d884d 1 udp 1694498815 203.0.113.10 33789 typ srflx raddr 192.168.1.2 rport 33789",
    )
    .unwrap();
    assert_eq!(srflx.kind, CandidateKind::ServerReflexive);
    assert_eq!(srflx.related, Some(sa("192.168.1.2:33789")));

    let relay = Candidate::parse(
        "a=candidate:ea5efcabc923d1200595c7d8727c915f 1 udp 16777215 203.0.113.3 49350 typ relay raddr 203.0.113.10 rport 14429",
    )
    .unwrap();
    assert_eq!(relay.kind, CandidateKind::Relayed);
    assert_eq!(relay.priority, 16_777_215);
    assert_eq!(relay.address, sa("203.0.113.3:49350"));
    assert_eq!(relay.base, relay.address);
    assert_eq!(relay.related, Some(sa("203.0.113.10:14429")));
}

#[test]
fn parses_libnice_and_libwebrtc_lines() {
    let c = Candidate::parse(
        "a=candidate:7 1 UDP 1679819007 203.0.113.10 33789 typ srflx raddr 192.168.1.2 rport 33789",
    )
    .unwrap();
    assert_eq!(c.foundation.as_str(), "7");
    assert_eq!(c.priority, 1_679_819_007);

    // libnice's relay raddr is the local base.
    let relay = Candidate::parse(
        "a=candidate:9 1 UDP 8331263 203.0.113.3 49351 typ relay raddr 192.168.1.2 rport 33789",
    )
    .unwrap();
    assert_eq!(relay.kind, CandidateKind::Relayed);
    assert_eq!(relay.related, Some(sa("192.168.1.2:33789")));

    let fe80 =
        Candidate::parse("a=candidate:3 1 UDP 2015363327 fe80::1c2d:3eff:fe4f:5a6b 54321 typ host")
            .unwrap();
    assert_eq!(fe80.address, sa("[fe80::1c2d:3eff:fe4f:5a6b]:54321"));

    let chrome = Candidate::parse(
        "candidate:842163049 1 udp 1677729535 203.0.113.10 60001 typ srflx raddr 0.0.0.0 rport 0 generation 0 ufrag Ab12 network-id 1 network-cost 10",
    )
    .unwrap();
    assert_eq!(chrome.related, Some(sa("0.0.0.0:0")));
    assert_eq!(chrome.address, sa("203.0.113.10:60001"));

    let v6 = Candidate::parse(
        "candidate:1 1 udp 2122262783 2001:db8::1 50000 typ host generation 0 network-id 2",
    )
    .unwrap();
    assert_eq!(v6.address, sa("[2001:db8::1]:50000"));

    // raddr/rport after other extensions, and in reversed order.
    let reordered = Candidate::parse(
        "candidate:2 1 udp 1694498815 203.0.113.10 33789 typ srflx generation 0 rport 33789 raddr 192.168.1.2 network-id 1",
    )
    .unwrap();
    assert_eq!(reordered.related, Some(sa("192.168.1.2:33789")));
    assert_eq!(reordered.base, sa("192.168.1.2:33789"));
}

#[test]
fn tcp_and_host_name_candidates_are_unsupported_not_malformed() {
    for line in [
        "a=candidate:5 1 TCP 1015021823 192.168.1.2 9 typ host tcptype active",
        "a=candidate:6 1 TCP 1010827519 192.168.1.2 43210 typ host tcptype passive",
        "candidate:1 1 tcp 1518280447 192.168.1.2 9 typ host tcptype active generation 0",
        "candidate:1 1 ssltcp 1518280447 192.168.1.2 443 typ relay raddr 1.2.3.4 rport 5",
    ] {
        assert_eq!(
            Candidate::parse(line),
            Err(CandidateError::UnsupportedTransport),
            "{line:?}"
        );
    }
    for line in [
        "candidate:1 1 udp 2122260223 5b1d4c8e-2f3a-4b5c-9d6e-7f8a9b0c1d2e.local 54400 typ host generation 0",
        "candidate:1 1 udp 2122260223 peer.example.com 54400 typ host",
        "candidate:1 1 udp 2122260223 localhost 54400 typ host",
    ] {
        assert_eq!(
            Candidate::parse(line),
            Err(CandidateError::UnsupportedAddress),
            "{line:?}"
        );
    }
    // A host-name raddr is informational: dropped, the candidate kept.
    let c = Candidate::parse(
        "candidate:1 1 udp 1677729535 203.0.113.10 60001 typ srflx raddr x.local rport 9",
    )
    .unwrap();
    assert_eq!(c.related, None);
    assert_eq!(c.base, c.address);
}

#[test]
fn malformed_lines_give_precise_errors() {
    use CandidateError as E;
    let cases: &[(&str, CandidateError)] = &[
        ("", E::MissingField(Field::Foundation)),
        ("a=candidate:", E::MissingField(Field::Foundation)),
        ("candidate:1", E::MissingField(Field::Component)),
        ("candidate:1 1", E::MissingField(Field::Transport)),
        ("candidate:1 1 udp", E::MissingField(Field::Priority)),
        ("candidate:1 1 udp 1", E::MissingField(Field::Address)),
        ("candidate:1 1 udp 1 1.2.3.4", E::MissingField(Field::Port)),
        (
            "candidate:1 1 udp 1 1.2.3.4 5",
            E::MissingField(Field::Type),
        ),
        (
            "candidate:1 1 udp 1 1.2.3.4 5 typ",
            E::MissingField(Field::Type),
        ),
        (
            "candidate:e2aea8ef0c61df57b654b7125d14184ef 1 udp 1 1.2.3.4 5 typ host",
            E::FoundationTooLong(33),
        ),
        (
            "candidate:a_b 1 udp 1 1.2.3.4 5 typ host",
            E::InvalidFoundation,
        ),
        (
            "candidate:1 0 udp 1 1.2.3.4 5 typ host",
            E::InvalidComponent,
        ),
        (
            "candidate:1 257 udp 1 1.2.3.4 5 typ host",
            E::InvalidComponent,
        ),
        (
            "candidate:1 0001 udp 1 1.2.3.4 5 typ host",
            E::InvalidComponent,
        ),
        (
            "candidate:1 x udp 1 1.2.3.4 5 typ host",
            E::InvalidComponent,
        ),
        (
            "candidate:1 +1 udp 1 1.2.3.4 5 typ host",
            E::InvalidComponent,
        ),
        (
            "candidate:1 1 udp -1 1.2.3.4 5 typ host",
            E::InvalidPriority,
        ),
        (
            "candidate:1 1 udp +1 1.2.3.4 5 typ host",
            E::InvalidPriority,
        ),
        (
            "candidate:1 1 udp 12ab 1.2.3.4 5 typ host",
            E::InvalidPriority,
        ),
        (
            "candidate:1 1 udp 4294967296 1.2.3.4 5 typ host",
            E::PriorityOverflow,
        ),
        (
            "candidate:1 1 udp 99999999999999999999999 1.2.3.4 5 typ host",
            E::PriorityOverflow,
        ),
        (
            "candidate:1 1 udp 1 1.2.3.256 5 typ host",
            E::InvalidAddress,
        ),
        ("candidate:1 1 udp 1 1.2.3 5 typ host", E::InvalidAddress),
        ("candidate:1 1 udp 1 [::1] 5 typ host", E::InvalidAddress),
        (
            "candidate:1 1 udp 1 fe80::1%eth0 5 typ host",
            E::InvalidAddress,
        ),
        ("candidate:1 1 udp 1 ::zz 5 typ host", E::InvalidAddress),
        ("candidate:1 1 udp 1 1.2.3.4 65536 typ host", E::InvalidPort),
        ("candidate:1 1 udp 1 1.2.3.4 -5 typ host", E::InvalidPort),
        ("candidate:1 1 udp 1 1.2.3.4 port typ host", E::InvalidPort),
        ("candidate:1 1 udp 1 1.2.3.4 5 type host", E::ExpectedTyp),
        ("candidate:1 1 udp 1 1.2.3.4 5 host", E::ExpectedTyp),
        ("candidate:1 1 udp 1 1.2.3.4 5 typ hostt", E::UnknownType),
        ("candidate:1 1 udp 1 1.2.3.4 5 typ relayed", E::UnknownType),
        (
            "candidate:1 1 udp 1 1.2.3.4 5 typ srflx raddr 1.2.3.4",
            E::MissingField(Field::RelatedPort),
        ),
        (
            "candidate:1 1 udp 1 1.2.3.4 5 typ srflx raddr 1.2.3.4 generation 0",
            E::MissingField(Field::RelatedPort),
        ),
        (
            "candidate:1 1 udp 1 1.2.3.4 5 typ srflx rport 5",
            E::MissingField(Field::RelatedAddress),
        ),
        (
            "candidate:1 1 udp 1 1.2.3.4 5 typ srflx raddr",
            E::MissingField(Field::RelatedAddress),
        ),
        (
            "candidate:1 1 udp 1 1.2.3.4 5 typ srflx raddr 1.2.3.4 rport",
            E::MissingField(Field::RelatedPort),
        ),
        (
            "candidate:1 1 udp 1 1.2.3.4 5 typ srflx raddr 1.2.3.4 rport 70000",
            E::InvalidRelatedPort,
        ),
        (
            "candidate:1 1 udp 1 1.2.3.4 5 typ srflx raddr 1.2.3.999 rport 7",
            E::InvalidRelatedAddress,
        ),
        (
            "candidate:1 1 udp 1 1.2.3.4 5 typ srflx raddr 1.2.3.4 rport 7 raddr 1.2.3.5",
            E::DuplicateField(Field::RelatedAddress),
        ),
        (
            "candidate:1 1 udp 1 1.2.3.4 5 typ srflx raddr 1.2.3.4 rport 7 rport 8",
            E::DuplicateField(Field::RelatedPort),
        ),
    ];
    for (line, want) in cases {
        assert_eq!(Candidate::parse(line), Err(*want), "{line:?}");
    }
}

#[test]
fn boundary_values_parse() {
    let c = Candidate::parse("candidate:1 256 udp 4294967295 0.0.0.0 0 typ host").unwrap();
    assert_eq!(
        (c.component, c.priority, c.address),
        (256, u32::MAX, sa("0.0.0.0:0"))
    );
    let c = Candidate::parse("candidate:1 1 udp 0 255.255.255.255 65535 typ prflx").unwrap();
    assert_eq!(c.address.port(), 65535);
    assert_eq!(c.kind, CandidateKind::PeerReflexive);
    // Lone trailing extension name: an empty value, as the grammar allows.
    assert!(Candidate::parse("candidate:1 1 udp 1 1.2.3.4 5 typ host generation").is_ok());
}

// ---------------------------------------------------------------- formatting

#[test]
fn formats_rfc_8839_lines() {
    let mut host = Candidate::host(sa("192.168.1.2:33789"), DEFAULT_LOCAL_PREFERENCE);
    host.foundation = Foundation::new("1").unwrap();
    assert_eq!(
        host.to_string(),
        "candidate:1 1 udp 2130706431 192.168.1.2 33789 typ host"
    );

    let mut srflx = Candidate::server_reflexive(
        sa("203.0.113.10:33789"),
        sa("192.168.1.2:33789"),
        ip("203.0.113.3"),
    );
    srflx.foundation = Foundation::new("2").unwrap();
    assert_eq!(
        srflx.to_string(),
        "candidate:2 1 udp 1694498815 203.0.113.10 33789 typ srflx raddr 192.168.1.2 rport 33789"
    );

    let v6 = Candidate::host(sa("[2001:db8::1]:5000"), 65535);
    assert!(v6.to_string().contains(" 2001:db8::1 5000 typ host"));

    let pm = Candidate::port_mapped(
        sa("198.51.100.7:4000"),
        sa("192.168.1.2:33789"),
        ip("192.168.1.1"),
    );
    let text = pm.to_string();
    assert!(
        text.ends_with(" 2030043135 198.51.100.7 4000 typ srflx raddr 192.168.1.2 rport 33789"),
        "{text}"
    );
    // Port-mapped reads back as server-reflexive; everything else is kept.
    let back = Candidate::parse(&text).unwrap();
    assert_eq!(back.kind, CandidateKind::ServerReflexive);
    assert_eq!(
        Candidate {
            kind: CandidateKind::PortMapped,
            ..back
        },
        pm
    );
}

/// A fixed-capacity writer: formatting needs no heap.
struct StackBuf {
    buf: [u8; 256],
    len: usize,
}

impl std::fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(std::fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[test]
fn formats_into_a_stack_buffer() {
    let c = Candidate::relayed(
        sa("203.0.113.3:49350"),
        sa("203.0.113.10:14429"),
        ip("203.0.113.3"),
    );
    let mut out = StackBuf {
        buf: [0; 256],
        len: 0,
    };
    write_candidate(&mut out, &c).unwrap();
    let text = std::str::from_utf8(&out.buf[..out.len]).unwrap();
    assert_eq!(text, format!("a={c}\n"));
    assert_eq!(Candidate::parse(text), Ok(c));
}

// ---------------------------------------------------------------- offer lines

const CLI_OFFER: &str = "ice-ufrag:92zk
ice-pwd:IAhGN5DIlTb5ikNFYhjJLL
a=candidate:1 1 udp 2130706431 192.168.1.2 33789 typ host
a=candidate:2 1 udp 1694498815 203.0.113.10 33789 typ srflx raddr 192.168.1.2 rport 33789
a=end-of-candidates
";

#[test]
fn writers_reproduce_the_cli_md_example() {
    let mut host = Candidate::host(sa("192.168.1.2:33789"), DEFAULT_LOCAL_PREFERENCE);
    host.foundation = Foundation::new("1").unwrap();
    let mut srflx = Candidate::server_reflexive(
        sa("203.0.113.10:33789"),
        sa("192.168.1.2:33789"),
        ip("203.0.113.3"),
    );
    srflx.foundation = Foundation::new("2").unwrap();

    let mut out = String::new();
    write_ufrag(&mut out, "92zk").unwrap();
    write_pwd(&mut out, "IAhGN5DIlTb5ikNFYhjJLL").unwrap();
    write_candidate(&mut out, &host).unwrap();
    write_candidate(&mut out, &srflx).unwrap();
    write_end(&mut out).unwrap();
    assert_eq!(out, CLI_OFFER);

    let parsed: Vec<_> = out.lines().map(|l| OfferLine::parse(l).unwrap()).collect();
    assert_eq!(
        parsed,
        [
            OfferLine::Ufrag("92zk"),
            OfferLine::Pwd("IAhGN5DIlTb5ikNFYhjJLL"),
            OfferLine::Candidate(host),
            OfferLine::Candidate(srflx),
            OfferLine::EndOfCandidates,
        ]
    );
}

#[test]
fn offer_reader_accepts_other_stacks() {
    let lines = [
        ("a=ice-ufrag:92zk\r", OfferLine::Ufrag("92zk")),
        ("ice-ufrag: 92zk ", OfferLine::Ufrag("92zk")),
        (
            "a=ice-pwd:IAhGN5DIlTb5ikNFYhjJLL\r\n",
            OfferLine::Pwd("IAhGN5DIlTb5ikNFYhjJLL"),
        ),
        ("end-of-candidates", OfferLine::EndOfCandidates),
        ("a=end-of-candidates\r", OfferLine::EndOfCandidates),
        ("", OfferLine::Ignored),
        ("   \r", OfferLine::Ignored),
        ("v=0", OfferLine::Ignored),
        ("a=ice-options:trickle", OfferLine::Ignored),
        (
            "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
            OfferLine::Ignored,
        ),
        ("# a comment", OfferLine::Ignored),
        (
            "a=candidate:5 1 TCP 1015021823 192.168.1.2 9 typ host tcptype active",
            OfferLine::Ignored,
        ),
        (
            "a=candidate:1 1 udp 2122260223 abc.local 54400 typ host generation 0",
            OfferLine::Ignored,
        ),
    ];
    for (line, want) in lines {
        assert_eq!(OfferLine::parse(line), Ok(want), "{line:?}");
    }
    let c = OfferLine::parse(
        "candidate:e2aea8ef0c61df57b654b7125d14184e 1 udp 2130706431 192.168.1.2 33789 typ host generation 0 network-id 1\r",
    )
    .unwrap();
    assert!(matches!(c, OfferLine::Candidate(c) if c.address == sa("192.168.1.2:33789")));
}

#[test]
fn offer_reader_rejects_malformed_ice_lines() {
    assert_eq!(
        OfferLine::parse("ice-ufrag:abc"),
        Err(OfferError::Credentials(CredentialsError::UfragLength(3)))
    );
    assert_eq!(
        OfferLine::parse("a=ice-ufrag:ab-cd"),
        Err(OfferError::Credentials(CredentialsError::UfragChar))
    );
    assert_eq!(
        OfferLine::parse("ice-pwd:short"),
        Err(OfferError::Credentials(CredentialsError::PwdLength(5)))
    );
    assert_eq!(
        OfferLine::parse("a=candidate:1 1 udp 1 1.2.3.4 5 typ bogus"),
        Err(OfferError::Candidate(CandidateError::UnknownType))
    );
    assert_eq!(
        OfferLine::parse("a=candidate:1 1 udp 2130706431 192.168.1.2"),
        Err(OfferError::Candidate(CandidateError::MissingField(
            Field::Port
        )))
    );
}

#[test]
fn keepalive_line_is_read_and_written() {
    let mut out = String::new();
    write_keepalive(&mut out, Duration::from_secs(17)).unwrap();
    assert_eq!(out, "a=x-holepunch-keepalive:17\n");
    for line in [
        "a=x-holepunch-keepalive:17",
        "x-holepunch-keepalive:17\r\n",
        "a=X-Holepunch-Keepalive: 17 ",
    ] {
        assert_eq!(
            OfferLine::parse(line),
            Ok(OfferLine::Keepalive(Duration::from_secs(17))),
            "{line:?}"
        );
    }
    // Written in whole seconds, rounded down, within the range the reader takes.
    for (interval, want) in [
        (Duration::from_millis(17_900), "17"),
        (Duration::ZERO, "1"),
        (Duration::MAX, "86400"),
    ] {
        let mut out = String::new();
        write_keepalive(&mut out, interval).unwrap();
        assert_eq!(out, format!("a=x-holepunch-keepalive:{want}\n"));
        assert!(OfferLine::parse(&out).is_ok());
    }
}

#[test]
fn malformed_keepalive_lines_are_typed_errors_and_the_rest_still_parses() {
    for line in [
        "a=x-holepunch-keepalive:",
        "a=x-holepunch-keepalive:0",
        "a=x-holepunch-keepalive:-5",
        "a=x-holepunch-keepalive:+5",
        "a=x-holepunch-keepalive:1.5",
        "a=x-holepunch-keepalive:17s",
        "a=x-holepunch-keepalive:1 7",
        "a=x-holepunch-keepalive:abc",
        "a=x-holepunch-keepalive:86401",
        "a=x-holepunch-keepalive:99999999999999999999999999",
        "a=x-holepunch-keepalive:١٧",
    ] {
        assert_eq!(
            OfferLine::parse(line),
            Err(OfferError::Keepalive),
            "{line:?}"
        );
    }
    // An offer with a broken keepalive line: every other line reads as before.
    let offer = format!("{CLI_OFFER}a=x-holepunch-keepalive:soon\n");
    let offer = offer.replacen("a=candidate", "a=x-holepunch-keepalive:0\na=candidate", 1);
    let parsed: Vec<_> = offer.lines().map(OfferLine::parse).collect();
    assert_eq!(parsed.len(), 7);
    assert_eq!(parsed.iter().filter(|r| r.is_err()).count(), 2);
    let good: Vec<_> = parsed.into_iter().filter_map(Result::ok).collect();
    assert_eq!(good.len(), 5);
    assert!(matches!(
        good[..],
        [
            OfferLine::Ufrag("92zk"),
            OfferLine::Pwd(_),
            OfferLine::Candidate(_),
            OfferLine::Candidate(_),
            OfferLine::EndOfCandidates,
        ]
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn keepalive_lines_round_trip(secs in 1..=MAX_KEEPALIVE_SECS, prefix in any::<bool>()) {
        let mut line = String::new();
        write_keepalive(&mut line, Duration::from_secs(secs)).unwrap();
        let want = Ok(OfferLine::Keepalive(Duration::from_secs(secs)));
        prop_assert_eq!(OfferLine::parse(&line), want);
        let bare = line.trim_start_matches("a=");
        prop_assert_eq!(OfferLine::parse(if prefix { &line } else { bare }), want);
    }

    #[test]
    fn keepalive_values_never_panic(value in "\\PC{0,24}") {
        let line = format!("a=x-holepunch-keepalive:{value}");
        match OfferLine::parse(&line) {
            Ok(OfferLine::Keepalive(d)) => {
                prop_assert!((1..=MAX_KEEPALIVE_SECS).contains(&d.as_secs()));
                prop_assert_eq!(d.as_secs().to_string(), value.trim().trim_start_matches('0'));
            }
            other => prop_assert_eq!(other, Err(OfferError::Keepalive)),
        }
    }
}

// ---------------------------------------------------------------- credentials

#[test]
fn credentials_validate_lengths_and_alphabet() {
    let c = IceCredentials::new("92zk", "IAhGN5DIlTb5ikNFYhjJLL").unwrap();
    assert_eq!((c.ufrag(), c.pwd()), ("92zk", "IAhGN5DIlTb5ikNFYhjJLL"));

    let long = "a".repeat(256);
    let c = IceCredentials::new(&long, &long).unwrap();
    assert_eq!((c.ufrag().len(), c.pwd().len()), (256, 256));

    let pwd = "IAhGN5DIlTb5ikNFYhjJLL";
    assert_eq!(
        IceCredentials::new("abc", pwd),
        Err(CredentialsError::UfragLength(3))
    );
    assert_eq!(
        IceCredentials::new("", pwd),
        Err(CredentialsError::UfragLength(0))
    );
    assert_eq!(
        IceCredentials::new(&"a".repeat(257), pwd),
        Err(CredentialsError::UfragLength(257))
    );
    assert_eq!(
        IceCredentials::new("ab:c", pwd),
        Err(CredentialsError::UfragChar)
    );
    assert_eq!(
        IceCredentials::new("abcé", pwd),
        Err(CredentialsError::UfragChar)
    );
    assert_eq!(
        IceCredentials::new("abcd", &pwd[..21]),
        Err(CredentialsError::PwdLength(21))
    );
    assert_eq!(
        IceCredentials::new("abcd", &"p".repeat(257)),
        Err(CredentialsError::PwdLength(257))
    );
    assert_eq!(
        IceCredentials::new("abcd", "IAhGN5DIlTb5ikNFYhjJL "),
        Err(CredentialsError::PwdChar)
    );
    assert!(IceCredentials::new("a+/b", "0123456789+/abcdefghijkl").is_ok());
}

#[test]
fn random_credentials_are_deterministic_by_seed() {
    let a = IceCredentials::random(&mut Rng::from_seed(42));
    let b = IceCredentials::random(&mut Rng::from_seed(42));
    let c = IceCredentials::random(&mut Rng::from_seed(43));
    assert_eq!(a, b);
    assert_ne!(a.ufrag(), c.ufrag());
    assert_ne!(a.pwd(), c.pwd());
    assert_eq!((a.ufrag().len(), a.pwd().len()), (8, 24));
    assert!(a.ufrag().chars().chain(a.pwd().chars()).all(is_ice_char));
    assert_eq!(IceCredentials::new(a.ufrag(), a.pwd()), Ok(a));

    // Successive draws from one generator differ.
    let mut rng = Rng::from_seed(7);
    let first = IceCredentials::random(&mut rng);
    let second = IceCredentials::random(&mut rng);
    assert_ne!(first, second);

    let debug = format!("{a:?}");
    assert!(debug.contains(a.ufrag()));
    assert!(!debug.contains(a.pwd()));
}

// ---------------------------------------------------------------- properties

fn arb_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
        any::<[u8; 16]>().prop_map(|o| IpAddr::V6(Ipv6Addr::from(o))),
        // Link-local forms, which print specially.
        any::<u64>().prop_map(|x| IpAddr::V6(Ipv6Addr::from((0xfe80u128 << 112) | u128::from(x)))),
    ]
    // A candidate never holds an IPv4-mapped form: parsing reads it as IPv4 (see
    // ice_nat64.rs), so the round trip is over canonical addresses.
    .prop_map(|ip| ip.to_canonical())
}

fn arb_addr() -> impl Strategy<Value = SocketAddr> {
    (arb_ip(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(ip, port))
}

fn arb_kind() -> impl Strategy<Value = CandidateKind> {
    prop_oneof![
        Just(CandidateKind::Host),
        Just(CandidateKind::ServerReflexive),
        Just(CandidateKind::PeerReflexive),
        Just(CandidateKind::Relayed),
        Just(CandidateKind::PortMapped),
    ]
}

prop_compose! {
    fn arb_candidate()(
        kind in arb_kind(),
        address in arb_addr(),
        related in proptest::option::of(arb_addr()),
        foundation in "[A-Za-z0-9+/]{1,32}",
        component in 1u16..=256,
        priority in any::<u32>(),
    ) -> Candidate {
        // The base follows the invariant the parser reconstructs (module docs).
        let base = match kind {
            CandidateKind::ServerReflexive | CandidateKind::PeerReflexive
            | CandidateKind::PortMapped => related.unwrap_or(address),
            _ => address,
        };
        Candidate {
            address,
            kind,
            priority,
            foundation: Foundation::new(&foundation).unwrap(),
            base,
            related,
            component,
        }
    }
}

/// Token soup close to real lines, so the parser's deeper branches get exercised.
fn arb_near_line() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("a=candidate:1".to_string()),
        Just("candidate:".to_string()),
        Just("udp".to_string()),
        Just("TCP".to_string()),
        Just("typ".to_string()),
        Just("host".to_string()),
        Just("srflx".to_string()),
        Just("relay".to_string()),
        Just("raddr".to_string()),
        Just("rport".to_string()),
        Just("generation".to_string()),
        Just("x.local".to_string()),
        arb_ip().prop_map(|ip| ip.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        "[ -~]{0,12}",
    ];
    proptest::collection::vec(token, 0..16).prop_map(|t| t.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn format_then_parse_round_trips(c in arb_candidate()) {
        let text = c.to_string();
        let back = Candidate::parse(&text).unwrap();
        let want = if c.kind == CandidateKind::PortMapped {
            Candidate { kind: CandidateKind::ServerReflexive, ..c }
        } else {
            c
        };
        prop_assert_eq!(back, want);

        let mut line = String::new();
        write_candidate(&mut line, &c).unwrap();
        prop_assert_eq!(OfferLine::parse(&line), Ok(OfferLine::Candidate(want)));
    }

    #[test]
    fn constructed_candidates_round_trip(
        kind in arb_kind(),
        a in arb_addr(),
        b in arb_addr(),
        server in arb_ip(),
        lp in any::<u16>(),
        prio in any::<u32>(),
    ) {
        let c = match kind {
            CandidateKind::Host => Candidate::host(a, lp),
            CandidateKind::ServerReflexive => Candidate::server_reflexive(a, b, server),
            CandidateKind::PeerReflexive => Candidate::peer_reflexive(a, b, prio),
            CandidateKind::Relayed => Candidate::relayed(a, b, server),
            CandidateKind::PortMapped => Candidate::port_mapped(a, b, server),
        }
        .with_local_preference(lp);
        let back = Candidate::parse(&c.to_string()).unwrap();
        prop_assert_eq!(Candidate { kind: c.kind, ..back }, c);
    }

    #[test]
    fn scoped_v6_loses_only_scope_and_flow(
        octets in any::<[u8; 16]>(), port in any::<u16>(), flow in any::<u32>(), scope in any::<u32>(),
    ) {
        let scoped = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(octets), port, flow, scope));
        let back = Candidate::parse(&Candidate::host(scoped, 1).to_string()).unwrap();
        prop_assert_eq!(back.address, SocketAddr::new(scoped.ip(), port));
    }

    #[test]
    fn arbitrary_strings_never_panic(s in "\\PC*") {
        let _ = Candidate::parse(&s);
        let _ = OfferLine::parse(&s);
        let _ = Foundation::new(&s);
        let _ = IceCredentials::new(&s, &s);
    }

    #[test]
    fn near_miss_lines_never_panic_and_successes_round_trip(s in arb_near_line()) {
        if let Ok(c) = Candidate::parse(&s) {
            prop_assert_eq!(Candidate::parse(&c.to_string()), Ok(c));
        }
        let _ = OfferLine::parse(&s);
    }

    #[test]
    fn distinct_inputs_give_distinct_foundations(
        k1 in arb_kind(), k2 in arb_kind(), b1 in arb_ip(), b2 in arb_ip(),
        s1 in proptest::option::of(arb_ip()), s2 in proptest::option::of(arb_ip()),
    ) {
        let f1 = Foundation::for_candidate(k1, b1, s1);
        let f2 = Foundation::for_candidate(k2, b2, s2);
        prop_assert_eq!(f1 == f2, (k1, b1, s1) == (k2, b2, s2));
        prop_assert!(f1.as_str().chars().all(is_ice_char));
    }

    #[test]
    fn written_credentials_read_back(seed in any::<u64>()) {
        let creds = IceCredentials::random(&mut Rng::from_seed(seed));
        let mut out = String::new();
        write_ufrag(&mut out, creds.ufrag()).unwrap();
        write_pwd(&mut out, creds.pwd()).unwrap();
        let mut lines = out.lines();
        prop_assert_eq!(OfferLine::parse(lines.next().unwrap()), Ok(OfferLine::Ufrag(creds.ufrag())));
        prop_assert_eq!(OfferLine::parse(lines.next().unwrap()), Ok(OfferLine::Pwd(creds.pwd())));
    }
}

/// RFC 1035 §2.3.4: a name is at most 253 characters (255 octets on the wire). Exactly 253 is a
/// host name (unsupported, well-formed); 254 is not a name at all.
#[test]
fn host_names_are_bounded_at_253_characters() {
    let label = "a".repeat(63);
    // 63 + 1 + 63 + 1 + 63 + 1 + 61 = 253.
    let name_253 = format!("{label}.{label}.{label}.{}", "b".repeat(61));
    assert_eq!(name_253.len(), 253);
    let name_254 = format!("{label}.{label}.{label}.{}", "b".repeat(62));
    let line = |name: &str| format!("candidate:1 1 udp 2122260223 {name} 54400 typ host");
    assert_eq!(
        Candidate::parse(&line(&name_253)),
        Err(CandidateError::UnsupportedAddress)
    );
    assert_eq!(
        Candidate::parse(&line(&name_254)),
        Err(CandidateError::InvalidAddress)
    );
}

/// Foundations spread over the whole ICE-char alphabet: over 4,096 host candidates on
/// consecutive IPs, each of the first ten characters (60 bits of the hash; the eleventh holds
/// only the last 4) takes every one of the 64 values about equally often. A hash whose output
/// bits lean towards 0 or 1 would make collisions between foundations far likelier than the
/// 2^-64 per pair promised. Deterministic: the inputs are fixed, so this never flakes.
#[test]
fn foundations_use_the_alphabet_uniformly() {
    const N: usize = 4096;
    let mut counts = [[0u32; 128]; 10];
    for i in 0..N {
        let ip = IpAddr::from([10, 0, (i >> 8) as u8, i as u8]);
        let f = Foundation::for_candidate(CandidateKind::Host, ip, None);
        for (pos, b) in f.as_str().bytes().take(10).enumerate() {
            counts[pos][usize::from(b)] += 1;
        }
    }
    // Chi-square with 63 degrees of freedom: mean 63, standard deviation about 11; a uniform
    // source exceeds 130 with probability below 1e-6.
    let expected = (N / 64) as f64;
    for (pos, row) in counts.iter().enumerate() {
        let used = row.iter().filter(|&&c| c > 0).count();
        let chi2: f64 = row
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| (f64::from(c) - expected).powi(2) / expected)
            .sum::<f64>()
            + (64 - used) as f64 * expected;
        assert!(
            chi2 < 130.0,
            "position {pos}: chi-square {chi2:.1}, {used} characters used"
        );
    }
}
