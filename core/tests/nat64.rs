//! NAT64 property tests: RFC 6052 synthesis and extraction round-trip for every prefix length,
//! RFC 7050 discovery finds any synthesising prefix, the DNS codec never panics on arbitrary
//! bytes, and the checked-in `dns_answer` seeds give the outcomes their names promise.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use holepunch_core::dns::{self, DnsError, Response, TYPE_AAAA};
use holepunch_core::nat64::discovery::{
    DiscoveryError, DnsQuery, WELL_KNOWN_V4, prefixes_from_response,
};
use holepunch_core::nat64::{Nat64Error, Nat64Prefix, PrefixLen};
use proptest::prelude::*;
use proptest::sample::select;

#[path = "../../fuzz/src/nat64_checks.rs"]
mod nat64_checks;

/// Any valid prefix: random bits, any RFC 6052 length, u octet cleared.
fn prefix() -> impl Strategy<Value = Nat64Prefix> {
    (any::<[u8; 16]>(), select(PrefixLen::ALL.to_vec())).prop_map(|(mut bytes, len)| {
        bytes[8] = 0;
        Nat64Prefix::new(Ipv6Addr::from(bytes), len).expect("u octet cleared")
    })
}

/// The response to `query` with `addrs` as AAAA records.
fn answer(query: &DnsQuery, addrs: &[Ipv6Addr]) -> Vec<u8> {
    let mut m = query.as_bytes().to_vec();
    m[2] |= 0x80;
    m[6..8].copy_from_slice(&(addrs.len() as u16).to_be_bytes());
    for a in addrs {
        m.extend_from_slice(&[0xc0, 12, 0, 28, 0, 1, 0, 0, 0, 60, 0, 16]);
        m.extend_from_slice(&a.octets());
    }
    m
}

proptest! {
    #[test]
    fn synthesis_and_extraction_round_trip(p in prefix(), v4 in any::<[u8; 4]>()) {
        let v4 = Ipv4Addr::from(v4);
        let v6 = p.synthesize(v4);
        prop_assert!(p.contains(v6));
        prop_assert_eq!(v6.octets()[8], 0, "u octet stays zero");
        prop_assert_eq!(p.extract(v6), Ok(v4));
        let text = p.to_string();
        prop_assert_eq!(text.parse::<Nat64Prefix>(), Ok(p));
    }

    #[test]
    fn extraction_ignores_the_suffix_but_not_the_u_octet(
        p in prefix(), v4 in any::<[u8; 4]>(), noise in any::<[u8; 16]>(),
    ) {
        let v4 = Ipv4Addr::from(v4);
        let mut bytes = p.synthesize(v4).octets();
        let end = match p.len() { PrefixLen::L96 => 16, l => usize::from(l.bits() / 8) + 5 };
        bytes[end..].copy_from_slice(&noise[end..]);
        prop_assert_eq!(p.extract(Ipv6Addr::from(bytes)), Ok(v4));
        if p.len() != PrefixLen::L96 {
            bytes[8] |= 1;
            prop_assert_eq!(p.extract(Ipv6Addr::from(bytes)), Err(Nat64Error::NonZeroUOctet));
        }
    }

    #[test]
    fn discovery_finds_any_synthesising_prefix(p in prefix(), id in any::<u16>()) {
        let q = DnsQuery::new(id);
        let m = answer(&q, &WELL_KNOWN_V4.map(|w| p.synthesize(w)));
        match prefixes_from_response(&m, id) {
            Ok(Some(found)) => prop_assert_eq!(found.as_slice(), &[p][..]),
            // Random prefix bits can hold a well-known address at a shorter length too.
            Err(DiscoveryError::AmbiguousLength) => {}
            other => prop_assert!(false, "{other:?}"),
        }
    }

    #[test]
    fn arbitrary_answers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        nat64_checks::check_dns_answer(&data);
    }

    #[test]
    fn flipped_bytes_of_a_good_answer_never_panic(flip in 0usize..59, to in any::<u8>()) {
        let q = DnsQuery::new(0x1234);
        let mut m = answer(&q, &[p96().synthesize(WELL_KNOWN_V4[0])]);
        m[flip] = to;
        nat64_checks::check_dns_answer(&m);
    }

    #[test]
    fn queries_round_trip_through_the_parser(
        labels in proptest::collection::vec("[a-z0-9-]{1,20}", 1..5), id in any::<u16>(),
    ) {
        let name = labels.join(".");
        let mut out = [0u8; 128];
        let len = dns::build_query(&mut out, id, &name, TYPE_AAAA).expect("valid name");
        let mut m = out[..len].to_vec();
        m[2] |= 0x80;
        let r = Response::parse(&m, id, &name.to_uppercase(), TYPE_AAAA).expect("echoes");
        prop_assert_eq!(r.answer_count(), 0);
        prop_assert_eq!(
            Response::parse(&m, id, &format!("{name}x"), TYPE_AAAA).err(),
            Some(DnsError::QuestionMismatch)
        );
    }
}

fn p96() -> Nat64Prefix {
    "64:ff9b::/96".parse().expect("prefix")
}

/// Each checked-in seed's outcome, so the replayed corpus exercises the paths it is named for.
#[test]
fn dns_answer_seeds_give_their_outcomes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/dns_answer");
    let seed = |name: &str| {
        let data = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        prefixes_from_response(&data, 0x1234)
    };
    let prefix = |s: &str| s.parse::<Nat64Prefix>().expect("prefix");
    for (name, expected) in [
        ("well-known-prefix", "64:ff9b::/96"),
        ("lab-prefix-96", "2001:db8:64:ff9b::/96"),
        ("prefix-32", "2001:db8::/32"),
        ("prefix-40", "2001:db8:100::/40"),
        ("prefix-64", "2001:db8:122:344::/64"),
        ("cname-then-aaaa", "64:ff9b::/96"),
    ] {
        let found = seed(name).expect(name).expect(name);
        assert_eq!(found.as_slice(), [prefix(expected)], "{name}");
    }
    assert_eq!(seed("nodata"), Ok(None));
    assert_eq!(seed("nxdomain"), Ok(None));
    let dns_err = |e| Err(DiscoveryError::Dns(e));
    assert_eq!(seed("tc-bit"), dns_err(DnsError::TruncatedAnswer));
    assert!(matches!(
        seed("not-synthesised"),
        Err(DiscoveryError::NotSynthesized(_))
    ));
    assert_eq!(
        seed("ambiguous-32-96"),
        Err(DiscoveryError::AmbiguousLength)
    );
    assert_eq!(
        seed("inconsistent-lengths"),
        Err(DiscoveryError::InconsistentLengths)
    );
    assert_eq!(seed("wrong-class"), dns_err(DnsError::WrongClass(3)));
    assert_eq!(
        seed("aaaa-15-bytes"),
        dns_err(DnsError::BadRdataLength {
            rtype: TYPE_AAAA,
            len: 15
        })
    );
    assert!(matches!(
        seed("huge-count"),
        Err(DiscoveryError::Dns(DnsError::HugeCount { .. }))
    ));
    assert_eq!(
        seed("pointer-self"),
        dns_err(DnsError::CompressionLoop { at: 31 })
    );
    assert_eq!(
        seed("pointer-into-header"),
        dns_err(DnsError::CompressionLoop { at: 31 })
    );
    assert_eq!(
        seed("pointer-forward-question"),
        dns_err(DnsError::CompressionLoop { at: 12 })
    );
    assert!(matches!(
        seed("truncated-record"),
        Err(DiscoveryError::Dns(DnsError::Truncated { .. }))
    ));
    assert_eq!(seed("header-only"), dns_err(DnsError::Truncated { at: 12 }));
    assert_eq!(seed("extended-label"), dns_err(DnsError::BadLabel(0x40)));
    assert_eq!(seed("query-not-answer"), dns_err(DnsError::NotAResponse));
}
