//! Port-mapping codec property tests: NAT-PMP and PCP requests and responses round-trip,
//! arbitrary and mutated datagrams never panic, and the checked-in seeds give the outcomes their
//! names promise.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use holepunch_core::portmap::Protocol;
use holepunch_core::portmap::natpmp::{self, NatPmpError};
use holepunch_core::portmap::pcp::{self, PcpError, ResultCode};
use proptest::prelude::*;

#[path = "../../fuzz/src/portmap_checks.rs"]
mod portmap_checks;
#[path = "../../fuzz/src/upnp_checks.rs"]
mod upnp_checks;

fn protocol() -> impl Strategy<Value = Protocol> {
    prop_oneof![Just(Protocol::Udp), Just(Protocol::Tcp)]
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
    ]
    // ::ffff:a.b.c.d travels as IPv4 on the wire, so it comes back as one: normalise.
    .prop_map(|ip| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    })
}

proptest! {
    #[test]
    fn natpmp_map_requests_round_trip(
        protocol in protocol(), internal_port: u16, suggested_external_port: u16, lifetime_secs: u32,
    ) {
        let req = natpmp::MapRequest { protocol, internal_port, suggested_external_port, lifetime_secs };
        prop_assert_eq!(natpmp::MapRequest::parse(&req.encode()), Ok(req));
    }

    #[test]
    fn natpmp_responses_round_trip(
        protocol in protocol(), epoch: u32, a: u16, b: u16, life: u32, addr: [u8; 4], map: bool,
    ) {
        let r = if map {
            natpmp::Response::Map { protocol, epoch, internal_port: a, external_port: b, lifetime_secs: life }
        } else {
            natpmp::Response::ExternalAddress { epoch, addr: addr.into() }
        };
        let mut out = [0u8; natpmp::MAX_RESPONSE_LEN];
        let n = r.encode(&mut out);
        prop_assert_eq!(natpmp::Response::parse(&out[..n]), Ok(r));
        portmap_checks::check_natpmp(&out[..n]);
    }

    #[test]
    fn pcp_map_requests_round_trip(
        nonce: [u8; 12], protocol in protocol(), client in ip(), internal_port: u16,
        suggested_external_port: u16, ext in proptest::option::of(ip()), lifetime_secs: u32,
    ) {
        let req = pcp::MapRequest {
            nonce: pcp::Nonce(nonce), protocol, client_ip: client, internal_port,
            suggested_external_port,
            suggested_external_ip: ext.filter(|e| !e.is_unspecified()),
            lifetime_secs,
        };
        prop_assert_eq!(pcp::MapRequest::parse(&req.encode()), Ok(req));
    }

    #[test]
    fn pcp_responses_round_trip(
        nonce: [u8; 12], proto: u8, code: u8, life: u32, epoch: u32, port: u16, eport: u16,
        ext in ip(), with_map: bool,
    ) {
        let r = pcp::Response {
            opcode: if with_map { pcp::OP_MAP } else { pcp::OP_ANNOUNCE },
            error: ResultCode::from_u8(code),
            lifetime_secs: life,
            epoch,
            map: with_map.then_some(pcp::MapResponse {
                nonce: pcp::Nonce(nonce), protocol: proto, internal_port: port,
                external: SocketAddr::new(ext, eport),
            }),
        };
        let (bytes, n) = r.encode();
        prop_assert_eq!(pcp::Response::parse(&bytes[..n]), Ok(r));
        portmap_checks::check_pcp(&bytes[..n]);
    }

    #[test]
    fn arbitrary_datagrams_never_panic(data in proptest::collection::vec(any::<u8>(), 0..128)) {
        portmap_checks::check_natpmp(&data);
        portmap_checks::check_pcp(&data);
    }

    #[test]
    fn arbitrary_gateway_scripts_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        portmap_checks::check_client(&data);
    }

    #[test]
    fn mutated_pcp_answers_never_panic(flip in 0usize..60, to: u8, cut in 0usize..=60) {
        let (mut bytes, _) = pcp::Response {
            opcode: pcp::OP_MAP, error: None, lifetime_secs: 600, epoch: 1,
            map: Some(pcp::MapResponse {
                nonce: pcp::Nonce([1; 12]), protocol: 17, internal_port: 1,
                external: "203.0.113.10:1".parse().expect("addr"),
            }),
        }.encode();
        bytes[flip] = to;
        portmap_checks::check_pcp(&bytes[..cut]);
        portmap_checks::check_natpmp(&bytes[..cut]);
    }
}

fn seed(target: &str, name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn natpmp_seeds_give_their_outcomes() {
    let parse = |n| natpmp::Response::parse(&seed("natpmp_response", n));
    assert!(matches!(
        parse("external-address"),
        Ok(natpmp::Response::ExternalAddress { epoch: 3600, .. })
    ));
    assert!(matches!(
        parse("map-udp"),
        Ok(natpmp::Response::Map {
            external_port: 47000,
            lifetime_secs: 600,
            ..
        })
    ));
    assert!(matches!(
        parse("map-tcp"),
        Ok(natpmp::Response::Map {
            protocol: Protocol::Tcp,
            ..
        })
    ));
    assert!(matches!(
        parse("unmap-response"),
        Ok(natpmp::Response::Map {
            lifetime_secs: 0,
            ..
        })
    ));
    assert_eq!(
        parse("not-authorized"),
        Err(NatPmpError::Result {
            opcode: 1,
            code: natpmp::ResultCode::NotAuthorized
        })
    );
    assert_eq!(
        parse("unsupported-version"),
        Err(NatPmpError::Result {
            opcode: 0,
            code: natpmp::ResultCode::UnsupportedVersion
        })
    );
    assert_eq!(parse("truncated-map"), Err(NatPmpError::TooShort(13)));
    assert_eq!(parse("pcp-answer"), Err(NatPmpError::Version(2)));
    assert_eq!(parse("request-map"), Err(NatPmpError::NotAResponse));
    assert_eq!(parse("empty"), Err(NatPmpError::TooShort(0)));
    assert!(natpmp::MapRequest::parse(&seed("natpmp_response", "request-map")).is_ok());
}

#[test]
fn pcp_seeds_give_their_outcomes() {
    let parse = |n| pcp::Response::parse(&seed("pcp_response", n));
    let ok = |n| parse(n).unwrap_or_else(|e| panic!("{n}: {e}"));
    let ext = |n| ok(n).map.expect("map payload").external;
    assert_eq!(
        ext("map-v4-success"),
        "203.0.113.10:48000".parse().expect("addr")
    );
    assert_eq!(
        ext("map-v6-success"),
        "[2001:db8::10]:48000".parse().expect("addr")
    );
    assert_eq!(
        ext("map-with-option"),
        "203.0.113.10:48000".parse().expect("addr")
    );
    assert_eq!(ok("map-delete").lifetime_secs, 0);
    assert_eq!(
        ok("not-authorized-copied").error,
        Some(ResultCode::NotAuthorized)
    );
    assert_eq!(
        ok("no-resources-header-only").error,
        Some(ResultCode::NoResources)
    );
    assert_eq!(
        ok("unsupp-version").error,
        Some(ResultCode::UnsupportedVersion)
    );
    assert_eq!(ok("announce").opcode, pcp::OP_ANNOUNCE);
    assert_eq!(
        parse("map-bad-option"),
        Err(PcpError::BadOption { at: pcp::MAP_LEN })
    );
    assert_eq!(parse("natpmp-version0"), Err(PcpError::NatPmpGateway));
    assert_eq!(parse("truncated-map"), Err(PcpError::TooShort(40)));
    assert_eq!(parse("unaligned"), Err(PcpError::Unaligned(58)));
    assert_eq!(parse("request-map"), Err(PcpError::NotAResponse));
    assert_eq!(parse("peer-opcode"), Err(PcpError::UnknownOpcode(2)));
    assert_eq!(parse("too-long"), Err(PcpError::TooLong(1104)));
    assert!(pcp::MapRequest::parse(&seed("pcp_response", "request-map")).is_ok());
}

mod upnp {
    use holepunch_core::portmap::upnp::HttpUrl;
    use proptest::prelude::*;

    use super::upnp_checks;

    proptest! {
        #[test]
        fn urls_round_trip(ip: std::net::IpAddr, port: u16, path in "(/[a-zA-Z0-9._~-]{0,12}){1,4}") {
            let addr = std::net::SocketAddr::new(ip, port);
            let url = HttpUrl::parse(&format!("http://{addr}{path}")).expect("valid");
            prop_assert_eq!(url.addr, addr);
            prop_assert_eq!(&url.path, &path);
            prop_assert_eq!(url.join(&path), Ok(url.clone()));
        }

        #[test]
        fn arbitrary_gateway_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            upnp_checks::check_ssdp(&data);
            upnp_checks::check_http(&data);
            upnp_checks::check_xml(&data);
        }

        #[test]
        fn arbitrary_text_never_panics(text in "[<>/a-zA-Z0-9&;#:=\" \\r\\n!-]{0,300}") {
            upnp_checks::check_ssdp(text.as_bytes());
            upnp_checks::check_http(text.as_bytes());
            upnp_checks::check_xml(text.as_bytes());
        }
    }
}
