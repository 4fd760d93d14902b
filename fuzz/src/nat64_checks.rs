//! Invariants of the DNS answer parser and RFC 7050 prefix extraction on untrusted input, shared
//! by the `dns_answer` fuzz target, the corpus replay test (`core/tests/fuzz_corpus.rs`) and the
//! property tests (`core/tests/nat64_proptest.rs`), which include this file with `#[path]`.

use holepunch_core::dns::{self, Response, TYPE_AAAA};
use holepunch_core::nat64::discovery::{
    DiscoveryEvent, DnsIo, IPV4ONLY_ARPA, PrefixDiscovery, WELL_KNOWN_V4, prefixes_from_response,
};
use holepunch_core::rng::Rng;
use holepunch_core::time::Instant;

/// Input of the `dns_answer` target: one datagram from "the resolver".
///
/// The query id is taken from the datagram itself so the parser gets past the id check. Nothing
/// may panic; a parsed response yields exactly the records it counts, each of class IN with
/// RDATA inside the message; every prefix found explains a well-known address in some record;
/// and the discovery machine reports what the free function decided.
pub fn check_dns_answer(data: &[u8]) {
    let id = match data {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 0,
    };
    if let Ok(r) = Response::parse(data, id, IPV4ONLY_ARPA, TYPE_AAAA) {
        let mut n = 0u16;
        for rec in r.answers() {
            n += 1;
            assert!(rec.rdata.len() <= data.len());
            if rec.rtype == TYPE_AAAA {
                assert!(rec.aaaa().is_some(), "AAAA records are 16 bytes");
            }
        }
        assert_eq!(n, r.answer_count());
        assert!(n <= dns::MAX_ANSWERS);
    }

    let found = prefixes_from_response(data, id);
    if let Ok(Some(prefixes)) = found {
        let r = Response::parse(data, id, IPV4ONLY_ARPA, TYPE_AAAA).expect("parsed before");
        for p in prefixes.as_slice() {
            let explained = r
                .answers()
                .filter_map(|rec| rec.aaaa())
                .any(|a| p.contains(a) && p.extract(a).is_ok_and(|v4| WELL_KNOWN_V4.contains(&v4)));
            assert!(explained, "{p} explains no record");
        }
    }

    // The machine, given this datagram re-addressed to its own query id, agrees.
    let mut d = PrefixDiscovery::new(Instant::ZERO, &mut Rng::from_seed(0), Default::default());
    let query_id = d.query().id();
    let mut copy = data.to_vec();
    if let Some(head) = copy.get_mut(..2) {
        head.copy_from_slice(&query_id.to_be_bytes());
    }
    let found = prefixes_from_response(&copy, query_id);
    d.handle_io(Instant::ZERO, DnsIo::Answer(&copy));
    match (d.poll_event(), found) {
        (Some(DiscoveryEvent::Discovered(a)), Ok(Some(b))) => assert_eq!(a, b),
        (Some(DiscoveryEvent::NoNat64), Ok(None)) => {}
        (Some(DiscoveryEvent::Failed(a)), Err(b)) => assert_eq!(a, b),
        (None, Err(_)) => assert!(!d.is_done(), "ignored answers keep it waiting"),
        (event, found) => panic!("machine said {event:?}, function said {found:?}"),
    }
}
