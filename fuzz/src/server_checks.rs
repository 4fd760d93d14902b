//! Invariants of the STUN Binding server on untrusted datagrams, shared by the `stun_server`
//! fuzz target and the corpus replay test (`core/tests/fuzz_corpus.rs`, through `#[path]`).

use holepunch_core::Instant;
use holepunch_core::io::{Datagram, Received};
use holepunch_core::stun::server::{AmplificationPolicy, RateLimit, Server, ServerConfig};
use holepunch_core::stun::{HEADER_LEN, MAGIC_COOKIE, Message};

/// Input of the `stun_server` target: one selector byte, then the datagram.
///
/// The selector's low two bits pick the policy (size-bounded plain server, strict, rate-limited
/// RFC 5780, unbounded RFC 5780), the next two the local socket it arrives on. The server must
/// not panic; an answer must fit the buffer, go back to the sender's IP, be a STUN message (RFC
/// 8489, or RFC 3489 with the request's 16-byte ID echoed), and, under the strict policy, be no
/// larger than the request.
pub fn check_server(data: &[u8]) {
    let Some((&selector, datagram)) = data.split_first() else {
        return;
    };
    let primary = "192.0.2.1:3478".parse().expect("address");
    let alternate = "192.0.2.2:3479".parse().expect("address");
    let policy = match selector & 3 {
        0 => AmplificationPolicy::Bounded,
        1 => AmplificationPolicy::Strict,
        2 => AmplificationPolicy::RateLimited(RateLimit {
            per_second: 1,
            burst: 1,
        }),
        _ => AmplificationPolicy::Unbounded,
    };
    let mut config = if selector & 2 == 2 {
        ServerConfig::rfc5780(primary, alternate)
    } else {
        ServerConfig::new(primary)
    };
    config.amplification = policy;
    config.software = Some("holepunch fuzz");
    let mut server = Server::new(config).expect("valid configuration");
    let locals: Vec<_> = server.local_addresses().collect();
    let local = locals[usize::from(selector >> 2) % locals.len()];
    let from = "203.0.113.9:40000".parse().expect("address");
    let mut out = [0u8; 1280];
    // Twice: the second answer of a rate-limited server comes out of an empty bucket.
    for now in [Instant::from_millis(1), Instant::from_millis(2)] {
        if server.handle_datagram(now, Datagram::new(local, from, datagram)) != Received::Consumed {
            continue;
        }
        let Some(t) = server.poll_transmit(now, &mut out) else {
            continue;
        };
        assert!(t.len <= out.len() && t.len >= HEADER_LEN);
        assert_eq!(t.to.ip(), from.ip());
        let resp = &out[..t.len];
        if resp[4..8] == MAGIC_COOKIE.to_be_bytes() {
            Message::parse(resp).expect("an RFC 8489 answer parses");
            assert_eq!(resp[8..20], datagram[8..20], "transaction ID echoed");
        } else {
            assert_eq!(resp[4..20], datagram[4..20], "RFC 3489 ID echoed in full");
        }
        if policy == AmplificationPolicy::Strict {
            assert!(t.len <= datagram.len(), "strict never amplifies");
        }
        if matches!(policy, AmplificationPolicy::RateLimited(_)) && now == Instant::from_millis(2) {
            assert!(t.len <= datagram.len(), "no tokens left: strict form");
        }
    }
}
