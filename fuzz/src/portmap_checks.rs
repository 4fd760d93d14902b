//! Invariants of the NAT-PMP and PCP codecs on untrusted input, shared by the `natpmp_response`
//! and `pcp_response` fuzz targets, the corpus replay test (`core/tests/fuzz_corpus.rs`) and the
//! property tests (`core/tests/portmap.rs`), which include this file with `#[path]`.

use holepunch_core::portmap::{natpmp, pcp};

/// Input of the `natpmp_response` target: one datagram from "the gateway".
///
/// Nothing may panic; whatever parses as a response or a request encodes to bytes that parse
/// back to the same value.
pub fn check_natpmp(data: &[u8]) {
    if let Ok(r) = natpmp::Response::parse(data) {
        let mut out = [0u8; natpmp::MAX_RESPONSE_LEN];
        let n = r.encode(&mut out);
        assert!(n <= data.len(), "parsing needs at least the encoded bytes");
        assert_eq!(&out[..2], &data[..2]);
        assert_eq!(natpmp::Response::parse(&out[..n]), Ok(r));
    }
    if let Ok(req) = natpmp::MapRequest::parse(data) {
        assert_eq!(natpmp::MapRequest::parse(&req.encode()), Ok(req));
    }
}

/// Input of the `pcp_response` target: one datagram from "the gateway".
///
/// Nothing may panic; a parsed response is at most 1100 aligned bytes, and re-encodes (options
/// and reserved bytes dropped) to bytes that parse back to the same value; likewise requests.
pub fn check_pcp(data: &[u8]) {
    if let Ok(r) = pcp::Response::parse(data) {
        assert!(data.len() <= pcp::MAX_LEN && data.len() % 4 == 0);
        let (bytes, n) = r.encode();
        assert!(n <= data.len());
        assert_eq!(pcp::Response::parse(&bytes[..n]), Ok(r));
    }
    if let Ok(req) = pcp::MapRequest::parse(data) {
        assert_eq!(pcp::MapRequest::parse(&req.encode()), Ok(req));
    }
}
