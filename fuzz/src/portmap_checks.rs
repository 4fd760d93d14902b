//! Invariants of the NAT-PMP and PCP codecs on untrusted input, shared by the `natpmp_response`
//! and `pcp_response` fuzz targets, the corpus replay test (`core/tests/fuzz_corpus.rs`) and the
//! property tests (`core/tests/portmap.rs`), which include this file with `#[path]`.

use holepunch_core::io::Datagram;
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

/// Input of `portmap_client`: a script of gateway datagrams and clock steps for the PCP/NAT-PMP
/// client. Each step is a length byte `n`, a clock-advance byte (in 100 ms units) and `n` bytes
/// delivered from the gateway. Nothing may panic, and the client sends a bounded number of
/// requests however the gateway behaves.
pub fn check_client(data: &[u8]) {
    use holepunch_core::portmap::client::{Client, ClientConfig, MAX_REQUEST_LEN, Protocols};
    use holepunch_core::portmap::{Protocol, RetryPolicy, SERVER_PORT};
    use holepunch_core::rng::Rng;
    use holepunch_core::time::{Duration, Instant};
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    let gateway = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 1));
    let config = ClientConfig {
        gateway,
        client_ip: IpAddr::V4(Ipv4Addr::new(192, 168, 1, 2)),
        protocol: Protocol::Udp,
        internal_port: 48000,
        suggested_external_port: 48000,
        lifetime: Duration::from_secs(600),
        protocols: Protocols::ALL,
        retry: RetryPolicy::default(),
    };
    let from = SocketAddr::new(gateway, SERVER_PORT);
    let mut now = Instant::ZERO;
    let mut c = Client::new(now, &mut Rng::from_seed(0), config);
    let mut out = [0u8; MAX_REQUEST_LEN];
    let mut sent = 0usize;
    let mut rest = data;
    while let [n, step, tail @ ..] = rest {
        let n = usize::from(*n).min(tail.len());
        let (datagram, after) = tail.split_at(n);
        rest = after;
        let local = SocketAddr::new(config.client_ip, config.internal_port);
        let _ = c.handle_datagram(now, Datagram::new(local, from, datagram));
        now += Duration::from_millis(100 * u64::from(*step));
        if c.poll_timeout().is_some_and(|t| t <= now) {
            c.handle_timeout(now);
        }
        while c.poll_transmit(now, &mut out).is_some() {
            sent += 1;
        }
        while c.poll_event().is_some() {}
    }
    // Each step can at most trigger one retransmission round (3 requests) or a re-map.
    assert!(sent <= 12 + 3 * (data.len() / 2 + 1), "{sent} requests");
}
