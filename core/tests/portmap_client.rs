//! The port-mapping client against scripted gateways on a virtual clock: PCP preferred, NAT-PMP
//! fallback, renewal at half the lifetime, restarts and address changes noticed, deletes on
//! close, and bad gateways (silent, garbage, truncated, wrong nonce) costing bounded retries.

#[path = "support/verbs.rs"]
mod verbs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use verbs::FeedPortmap;

use holepunch_core::portmap::client::{
    Client, ClientConfig, MAX_REQUEST_LEN, MappedVia, PortmapError, PortmapEvent, Protocols,
};
use holepunch_core::portmap::natpmp::{self, NatPmpError};
use holepunch_core::portmap::pcp::{self, PcpError};
use holepunch_core::portmap::{Protocol, RetryPolicy, SERVER_PORT};
use holepunch_core::rng::Rng;
use holepunch_core::time::{Duration, Instant};

const GATEWAY: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
const EXTERNAL: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

fn gw() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(GATEWAY), SERVER_PORT)
}

fn config(protocols: Protocols) -> ClientConfig {
    ClientConfig {
        gateway: IpAddr::V4(GATEWAY),
        client_ip: IpAddr::V4(Ipv4Addr::new(192, 168, 1, 2)),
        protocol: Protocol::Udp,
        internal_port: 48000,
        suggested_external_port: 48000,
        lifetime: Duration::from_secs(600),
        protocols,
        retry: RetryPolicy::default(),
    }
}

/// Every datagram the client wants sent now.
fn drain(c: &mut Client, now: Instant) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; MAX_REQUEST_LEN];
    for _ in 0..16 {
        let Some(t) = c.poll_transmit(now, &mut buf) else {
            return out;
        };
        assert_eq!(t.to, gw());
        out.push(buf[..t.len].to_vec());
    }
    panic!("more than 16 datagrams at once");
}

fn events(c: &mut Client) -> Vec<PortmapEvent> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

/// What a PCP gateway answers to a MAP request.
fn pcp_answer(req: &[u8], epoch: u32, port: u16) -> Vec<u8> {
    let r = pcp::MapRequest::parse(req).expect("a PCP MAP request");
    let (bytes, n) = pcp::Response {
        opcode: pcp::OP_MAP,
        error: None,
        lifetime_secs: r.lifetime_secs,
        epoch,
        map: Some(pcp::MapResponse {
            nonce: r.nonce,
            protocol: r.protocol.iana(),
            internal_port: r.internal_port,
            external: SocketAddr::new(IpAddr::V4(EXTERNAL), port),
        }),
    }
    .encode();
    bytes[..n].to_vec()
}

fn natpmp_bytes(r: natpmp::Response) -> Vec<u8> {
    let mut out = [0u8; natpmp::MAX_RESPONSE_LEN];
    let n = r.encode(&mut out);
    out[..n].to_vec()
}

/// A NAT-PMP-only gateway's answer to anything: version 0 "unsupported version" to PCP.
fn natpmp_gateway(req: &[u8], epoch: u32, ext: Ipv4Addr) -> Vec<u8> {
    match req[0] {
        2 => vec![0, 128 | req[1], 0, 1, 0, 0, 0, 0],
        _ if req.len() == 2 => natpmp_bytes(natpmp::Response::ExternalAddress { epoch, addr: ext }),
        _ => {
            let r = natpmp::MapRequest::parse(req).expect("a NAT-PMP map request");
            natpmp_bytes(natpmp::Response::Map {
                protocol: r.protocol,
                epoch,
                internal_port: r.internal_port,
                external_port: if r.lifetime_secs == 0 { 0 } else { 47001 },
                lifetime_secs: r.lifetime_secs,
            })
        }
    }
}

/// What [`run`] saw: each request with its send time, every event, and the final time.
type Run = (Vec<(Instant, Vec<u8>)>, Vec<PortmapEvent>, Instant);

/// Runs the client against `gateway` until `until`, advancing the virtual clock to each
/// deadline; returns every request sent (with its time) and every event.
fn run(
    c: &mut Client,
    mut now: Instant,
    until: Instant,
    mut gateway: impl FnMut(Instant, &[u8]) -> Option<Vec<u8>>,
) -> Run {
    let mut sent = Vec::new();
    let mut evs = Vec::new();
    for _ in 0..1000 {
        for req in drain(c, now) {
            if let Some(answer) = gateway(now, &req) {
                let _ = c.feed(now, gw(), &answer);
            }
            sent.push((now, req));
        }
        evs.extend(events(c));
        match c.poll_timeout() {
            Some(t) if t <= until => {
                now = t.max(now);
                c.handle_timeout(now);
            }
            _ => return (sent, evs, now),
        }
    }
    panic!("did not settle in 1000 steps");
}

#[test]
fn pcp_gateway_maps_renews_at_half_lifetime_and_deletes_on_close() {
    let t0 = Instant::from_millis(5_000);
    let mut c = Client::new(t0, &mut Rng::from_seed(1), config(Protocols::ALL));
    let until = t0 + Duration::from_secs(700);
    // A healthy gateway's epoch advances with the clock.
    let epoch = |now: Instant| 100 + (now - t0).as_secs() as u32;
    let (sent, evs, now) = run(&mut c, t0, until, |now, req| {
        (req[0] == 2).then(|| pcp_answer(req, epoch(now), 48000))
    });
    let external = SocketAddr::new(IpAddr::V4(EXTERNAL), 48000);
    assert_eq!(
        evs[0],
        PortmapEvent::Mapped {
            via: MappedVia::Pcp,
            external,
            lifetime: Duration::from_secs(600)
        }
    );
    assert!(evs[1..].iter().all(|e| matches!(
        e,
        PortmapEvent::Renewed {
            via: MappedVia::Pcp,
            ..
        }
    )));
    // Renewals at 300 s and 600 s, always with the creation nonce; the NAT-PMP probe went out
    // once at t0 and was never needed again.
    let pcp_times: Vec<_> = sent
        .iter()
        .filter(|(_, r)| r[0] == 2)
        .map(|(t, _)| (*t - t0).as_secs())
        .collect();
    assert_eq!(pcp_times, [0, 300, 600]);
    let nonces: Vec<_> = sent
        .iter()
        .filter(|(_, r)| r[0] == 2)
        .map(|(_, r)| pcp::MapRequest::parse(r).expect("MAP").nonce)
        .collect();
    assert!(nonces.iter().all(|n| *n == nonces[0]));
    assert_eq!(sent.iter().filter(|(_, r)| r[0] == 0).count(), 1);
    assert_eq!(c.external(), Some(external));

    c.close(now);
    let del = drain(&mut c, now);
    assert_eq!(del.len(), 1, "only PCP was ever asked to map");
    let req = pcp::MapRequest::parse(&del[0]).expect("MAP");
    assert_eq!((req.lifetime_secs, req.nonce), (0, nonces[0]));
    c.feed(now, gw(), &pcp_answer(&del[0], epoch(now), 0))
        .expect("accepted");
    assert_eq!(events(&mut c), [PortmapEvent::Closed]);
    assert!(c.is_done());
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn natpmp_only_gateway_is_used_after_its_version_0_answer() {
    let t0 = Instant::ZERO;
    let mut c = Client::new(t0, &mut Rng::from_seed(2), config(Protocols::ALL));
    let (sent, evs, now) = run(&mut c, t0, t0 + Duration::from_secs(1), |_, req| {
        Some(natpmp_gateway(req, 10, EXTERNAL))
    });
    assert_eq!(
        evs,
        [PortmapEvent::Mapped {
            via: MappedVia::NatPmp,
            external: SocketAddr::new(IpAddr::V4(EXTERNAL), 47001),
            lifetime: Duration::from_secs(600)
        }]
    );
    assert_eq!(
        sent.len(),
        3,
        "PCP MAP, NAT-PMP external address, NAT-PMP MAP"
    );
    c.close(now);
    let del = drain(&mut c, now);
    assert_eq!(del.len(), 2, "PCP went out once too, so both are deleted");
    let unmap = del.iter().find(|r| r[0] == 0).expect("NAT-PMP unmap");
    assert_eq!(
        natpmp::MapRequest::parse(unmap),
        Ok(natpmp::MapRequest::unmap(Protocol::Udp, 48000))
    );
    c.feed(now, gw(), &natpmp_gateway(unmap, 11, EXTERNAL))
        .expect("accepted");
    assert_eq!(events(&mut c), [PortmapEvent::Closed]);
}

#[test]
fn silent_pcp_gets_one_interval_of_grace_after_natpmp_answers() {
    let t0 = Instant::ZERO;
    let mut c = Client::new(t0, &mut Rng::from_seed(3), config(Protocols::ALL));
    let (sent, evs, _) = run(&mut c, t0, t0 + Duration::from_secs(2), |_, req| {
        (req[0] == 0).then(|| natpmp_gateway(req, 10, EXTERNAL))
    });
    assert!(matches!(
        evs[..],
        [PortmapEvent::Mapped {
            via: MappedVia::NatPmp,
            ..
        }]
    ));
    let (t, last) = sent.last().expect("sent");
    assert_eq!(
        *t,
        t0 + Duration::from_millis(250),
        "NAT-PMP MAP after 250 ms"
    );
    assert_eq!(last.len(), 12);
}

#[test]
fn a_gateway_that_never_answers_costs_bounded_sends_then_fails() {
    let t0 = Instant::ZERO;
    let mut c = Client::new(t0, &mut Rng::from_seed(4), config(Protocols::ALL));
    let (sent, evs, now) = run(&mut c, t0, t0 + Duration::from_secs(3600), |_, _| None);
    assert_eq!(evs, [PortmapEvent::Failed(PortmapError::NoAnswer)]);
    assert_eq!(sent.len(), 12, "6 PCP + 6 NAT-PMP probes");
    let times: Vec<_> = sent
        .iter()
        .step_by(2)
        .map(|(t, _)| (*t - t0).as_millis())
        .collect();
    assert_eq!(times, [0, 250, 750, 1750, 3750, 7750]);
    assert_eq!(now - t0, Duration::from_millis(15_750));
    assert!(c.is_done());
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn garbage_truncated_foreign_and_wrong_nonce_answers_are_typed_errors_and_change_nothing() {
    let t0 = Instant::ZERO;
    let mut c = Client::new(t0, &mut Rng::from_seed(5), config(Protocols::ALL));
    let reqs = drain(&mut c, t0);
    let pcp_req = reqs.iter().find(|r| r[0] == 2).expect("PCP probe");
    let good = pcp_answer(pcp_req, 1, 48000);

    let mut wrong_nonce = good.clone();
    wrong_nonce[30] ^= 0xff;
    let stranger = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 99)), SERVER_PORT);
    assert_eq!(
        c.feed(t0, stranger, &good),
        Err(PortmapError::NotFromGateway)
    );
    assert_eq!(
        c.feed(t0, gw(), &wrong_nonce),
        Err(PortmapError::NonceMismatch)
    );
    assert_eq!(
        c.feed(t0, gw(), &good[..40]),
        Err(PortmapError::Pcp(PcpError::TooShort(40)))
    );
    assert_eq!(
        c.feed(t0, gw(), &[0, 128, 0, 0, 1]),
        Err(PortmapError::NatPmp(NatPmpError::TooShort(5)))
    );
    assert_eq!(
        c.feed(t0, gw(), b"HTTP/1.1 200 OK\r\n"),
        Err(PortmapError::UnknownVersion(b'H'))
    );
    assert_eq!(
        c.feed(t0, gw(), &[]),
        Err(PortmapError::NatPmp(NatPmpError::TooShort(0)))
    );
    let mut other_port = good.clone();
    other_port[40] ^= 1;
    assert_eq!(c.feed(t0, gw(), &other_port), Err(PortmapError::Unexpected));
    assert_eq!(events(&mut c), []);
    assert_eq!(c.external(), None);
    // The real answer still works afterwards.
    c.feed(t0, gw(), &good).expect("accepted");
    assert!(matches!(
        events(&mut c)[..],
        [PortmapEvent::Mapped {
            via: MappedVia::Pcp,
            ..
        }]
    ));
}

#[test]
fn a_gateway_restart_is_noticed_and_the_mapping_recreated_at_once() {
    let t0 = Instant::ZERO;
    let mut c = Client::new(t0, &mut Rng::from_seed(6), config(Protocols::ALL));
    let reqs = drain(&mut c, t0);
    let pcp_req = reqs.iter().find(|r| r[0] == 2).expect("PCP probe").clone();
    c.feed(t0, gw(), &pcp_answer(&pcp_req, 5000, 48000))
        .expect("mapped");
    events(&mut c);
    // 100 s later an unsolicited ANNOUNCE shows epoch 3: the gateway rebooted.
    let later = t0 + Duration::from_secs(100);
    let (announce, n) = pcp::Response {
        opcode: pcp::OP_ANNOUNCE,
        error: None,
        lifetime_secs: 0,
        epoch: 3,
        map: None,
    }
    .encode();
    c.feed(later, gw(), &announce[..n]).expect("accepted");
    assert_eq!(events(&mut c), [PortmapEvent::GatewayRestarted]);
    let remap = drain(&mut c, later);
    assert_eq!(remap.len(), 1);
    let req = pcp::MapRequest::parse(&remap[0]).expect("MAP");
    assert_eq!(req.lifetime_secs, 600);
    assert_eq!(
        req.suggested_external_port, 48000,
        "asks for the same port back"
    );
    // The restarted gateway hands out another port: reported as a change.
    c.feed(later, gw(), &pcp_answer(&remap[0], 4, 48002))
        .expect("accepted");
    assert_eq!(
        events(&mut c),
        [PortmapEvent::ExternalAddressChanged {
            external: SocketAddr::new(IpAddr::V4(EXTERNAL), 48002)
        }]
    );
}

#[test]
fn natpmp_external_address_changes_are_reported() {
    let t0 = Instant::ZERO;
    let cfg = ClientConfig {
        protocols: Protocols {
            pcp: false,
            natpmp: true,
        },
        ..config(Protocols::ALL)
    };
    let mut c = Client::new(t0, &mut Rng::from_seed(7), cfg);
    let (sent, _, now) = run(&mut c, t0, t0 + Duration::from_secs(1), |_, req| {
        Some(natpmp_gateway(req, 10, EXTERNAL))
    });
    assert!(sent.iter().all(|(_, r)| r[0] == 0), "PCP disabled");
    let moved = Ipv4Addr::new(203, 0, 113, 77);
    let announcement = natpmp_bytes(natpmp::Response::ExternalAddress {
        epoch: 12,
        addr: moved,
    });
    c.feed(now, gw(), &announcement).expect("accepted");
    assert_eq!(
        events(&mut c),
        [PortmapEvent::ExternalAddressChanged {
            external: SocketAddr::new(IpAddr::V4(moved), 47001)
        }]
    );
}

#[test]
fn a_pcp_refusal_falls_back_to_natpmp_and_refusals_everywhere_fail_typed() {
    let refuse = |req: &[u8]| {
        let (mut bytes, n) = pcp::Response::parse(&pcp_answer(req, 1, 1))
            .expect("answer")
            .encode();
        bytes[3] = 2; // NOT_AUTHORIZED, payload copied
        bytes[..n].to_vec()
    };
    let t0 = Instant::ZERO;
    let mut c = Client::new(t0, &mut Rng::from_seed(8), config(Protocols::ALL));
    let (_, evs, _) = run(&mut c, t0, t0 + Duration::from_secs(1), |_, req| {
        Some(if req[0] == 2 {
            refuse(req)
        } else {
            natpmp_gateway(req, 10, EXTERNAL)
        })
    });
    assert!(matches!(
        evs[..],
        [PortmapEvent::Mapped {
            via: MappedVia::NatPmp,
            ..
        }]
    ));

    let mut c = Client::new(t0, &mut Rng::from_seed(9), config(Protocols::ALL));
    let (sent, evs, _) = run(&mut c, t0, t0 + Duration::from_secs(60), |_, req| {
        Some(if req[0] == 2 {
            refuse(req)
        } else {
            vec![0, 128, 0, 2, 0, 0, 0, 0] // NAT-PMP: not authorized
        })
    });
    assert_eq!(
        evs,
        [PortmapEvent::Failed(PortmapError::NatPmpRefused(
            natpmp::ResultCode::NotAuthorized
        ))]
    );
    assert_eq!(sent.len(), 2, "refusals end the probe at once");
}

#[test]
fn no_usable_protocol_fails_at_once() {
    let cfg = ClientConfig {
        gateway: "fe80::1".parse().expect("addr"),
        protocols: Protocols {
            pcp: false,
            natpmp: true,
        },
        ..config(Protocols::ALL)
    };
    let mut c = Client::new(Instant::ZERO, &mut Rng::from_seed(10), cfg);
    assert_eq!(
        events(&mut c),
        [PortmapEvent::Failed(PortmapError::NoProtocol)]
    );
    assert!(drain(&mut c, Instant::ZERO).is_empty());
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn close_before_any_answer_still_deletes_what_may_exist_and_is_bounded() {
    let t0 = Instant::ZERO;
    let mut c = Client::new(t0, &mut Rng::from_seed(11), config(Protocols::ALL));
    drain(&mut c, t0);
    c.close(t0);
    let (sent, evs, now) = run(&mut c, t0, t0 + Duration::from_secs(60), |_, _| None);
    assert!(
        sent.iter().all(|(_, r)| r[0] == 2),
        "only PCP carried a MAP"
    );
    assert_eq!(sent.len(), 3, "a delete is sent at most 3 times");
    assert!(
        sent.iter()
            .all(|(_, r)| pcp::MapRequest::parse(r).expect("MAP").lifetime_secs == 0)
    );
    assert_eq!(evs, [PortmapEvent::Closed]);
    assert_eq!(now - t0, Duration::from_millis(1750));
}

proptest::proptest! {
    /// Arbitrary datagrams from the gateway, interleaved with time passing: no panic, and a
    /// gateway that never gives a valid mapping costs a bounded number of sends.
    #[test]
    fn arbitrary_gateway_input_never_panics_or_sends_unboundedly(
        inputs in proptest::collection::vec(
            (proptest::collection::vec(proptest::prelude::any::<u8>(), 0..70), 0u64..5_000),
            0..40,
        ),
        seed in proptest::prelude::any::<u64>(),
    ) {
        let mut now = Instant::ZERO;
        let mut c = Client::new(now, &mut Rng::from_seed(seed), config(Protocols::ALL));
        let mut sent = drain(&mut c, now).len();
        for (data, advance_ms) in inputs {
            let _ = c.feed(now, gw(), &data);
            now += Duration::from_millis(advance_ms);
            if c.poll_timeout().is_some_and(|t| t <= now) {
                c.handle_timeout(now);
            }
            sent += drain(&mut c, now).len();
            events(&mut c);
        }
        // Random bytes cannot carry our nonce, so no PCP mapping: at most 12 probes and 6 NAT-PMP
        // MAPs (a random NAT-PMP answer can look like an external address); the bound leaves
        // room for the renewals of the (very rare) random valid NAT-PMP mapping.
        proptest::prop_assert!(sent <= 12 + 6 + 2 * 6, "{sent} sends");
    }
}
