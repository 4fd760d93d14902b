//! Netcheck against a tiny simulated internet: core STUN servers (one RFC 5780 server on
//! 203.0.113.3:3478 with alternate 203.0.113.4:3479, or plain ones) and a deterministic NAT model
//! (mapping EIM/ADM/APDM with sequential port allocation, filtering EIF/ADF/APDF, hairpinning on
//! or off, no NAT with or without a stateful firewall, UDP blocked) in front of the prober's
//! sockets at 192.168.1.2. Everything runs in virtual time; each case must reproduce the NAT's
//! configured behaviour exactly, quickly, deterministically and without allocating per packet.
#![allow(clippy::unwrap_used)]

#[path = "support/verbs.rs"]
mod verbs;
use std::net::{IpAddr, SocketAddr};
use verbs::{Answer, FeedProber, Outcome};

use holepunch_core::netcheck::{
    Behaviour, Netcheck, NetcheckConfig, NetcheckError, Report, ServerRtt,
};
use holepunch_core::punch::{PortAllocation, PortPredictor};
use holepunch_core::stun::server::{Server, ServerConfig};
use holepunch_core::stun::{Attribute, Class, MessageBuilder, Method, TransactionId};
use holepunch_core::{Duration, Instant};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Allocation counting (per thread, only around the prober's calls).

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

/// Runs `f`, adding the allocations it made to `count`.
fn counted<T>(count: &mut usize, f: impl FnOnce() -> T) -> T {
    let (n, r) = counting_alloc::allocations(f);
    *count += n;
    r
}

// ---------------------------------------------------------------------------------------------
// Addresses.

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const RTT: Duration = Duration::from_millis(20);
const ONE_WAY: Duration = Duration::from_millis(10);
const LOOP: Duration = Duration::from_millis(1);
const FIRST_PORT: u16 = 40000;

fn nat_ip() -> IpAddr {
    "198.51.100.1".parse().unwrap()
}

fn public(port: u16) -> SocketAddr {
    SocketAddr::new(nat_ip(), port)
}

fn a() -> SocketAddr {
    addr("203.0.113.3:3478")
}

fn alternate() -> SocketAddr {
    addr("203.0.113.4:3479")
}

fn private_locals() -> Vec<SocketAddr> {
    vec![addr("192.168.1.2:5000"), addr("192.168.1.2:5001")]
}

fn open_locals() -> Vec<SocketAddr> {
    vec![addr("198.51.100.2:5000"), addr("198.51.100.2:5001")]
}

fn rfc5780_server() -> Server {
    Server::new(ServerConfig {
        alternate: Some(alternate()),
        ..ServerConfig::new(a())
    })
    .unwrap()
}

fn plain_server(at: SocketAddr) -> Server {
    Server::new(ServerConfig::new(at)).unwrap()
}

// ---------------------------------------------------------------------------------------------
// The NAT model.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mapping {
    Eim,
    Adm,
    Apdm,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Filtering {
    Eif,
    Adf,
    Apdf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Profile {
    Nat {
        mapping: Mapping,
        filtering: Filtering,
        hairpin: bool,
    },
    /// No translation; `Some` is a stateful firewall filtering like a NAT would.
    NoNat(Option<Filtering>),
    UdpBlocked,
}

/// One mapping (or, without NAT, one socket's firewall state).
struct Binding {
    internal: SocketAddr,
    key: Option<SocketAddr>,
    external: SocketAddr,
    contacted: Vec<SocketAddr>,
}

/// Where an outbound datagram goes.
enum Route {
    Internet {
        src: SocketAddr,
    },
    /// Looped back inside the NAT (or the host) to a local socket, skipping the filter.
    Loop {
        src: SocketAddr,
        dst: SocketAddr,
    },
    Drop,
}

/// IPv4 behind the profile; IPv6 is never translated or filtered (only blocked).
struct Nat {
    profile: Profile,
    next_port: u16,
    bindings: Vec<Binding>,
}

impl Nat {
    fn new(profile: Profile) -> Self {
        Nat {
            profile,
            next_port: FIRST_PORT,
            bindings: Vec::new(),
        }
    }

    fn outbound(&mut self, from: SocketAddr, to: SocketAddr) -> Route {
        match self.profile {
            Profile::UdpBlocked => Route::Drop,
            _ if from.is_ipv6() => Route::Internet { src: from },
            Profile::NoNat(_) => {
                self.binding(from, None, Some(from)).contacted.push(to);
                if to.ip() == from.ip() {
                    Route::Loop { src: from, dst: to }
                } else {
                    Route::Internet { src: from }
                }
            }
            Profile::Nat {
                mapping, hairpin, ..
            } => {
                let key = match mapping {
                    Mapping::Eim => None,
                    Mapping::Adm => Some(SocketAddr::new(to.ip(), 0)),
                    Mapping::Apdm => Some(to),
                };
                let b = self.binding(from, key, None);
                b.contacted.push(to);
                let src = b.external;
                if to.ip() != nat_ip() {
                    return Route::Internet { src };
                }
                match self.bindings.iter().find(|b| b.external == to) {
                    Some(target) if hairpin => Route::Loop {
                        src,
                        dst: target.internal,
                    },
                    _ => Route::Drop,
                }
            }
        }
    }

    /// The local socket an inbound datagram reaches, if the filter lets it.
    fn inbound(&self, from: SocketAddr, to: SocketAddr) -> Option<SocketAddr> {
        let filtering = match self.profile {
            Profile::UdpBlocked => return None,
            _ if to.is_ipv6() => return Some(to),
            Profile::NoNat(None) => return Some(to),
            Profile::NoNat(Some(f)) => f,
            Profile::Nat { filtering, .. } => filtering,
        };
        let b = self.bindings.iter().find(|b| b.external == to)?;
        let allowed = match filtering {
            Filtering::Eif => true,
            Filtering::Adf => b.contacted.iter().any(|c| c.ip() == from.ip()),
            Filtering::Apdf => b.contacted.contains(&from),
        };
        allowed.then_some(b.internal)
    }

    fn binding(
        &mut self,
        internal: SocketAddr,
        key: Option<SocketAddr>,
        fixed: Option<SocketAddr>,
    ) -> &mut Binding {
        let i = match self
            .bindings
            .iter()
            .position(|b| b.internal == internal && b.key == key)
        {
            Some(i) => i,
            None => {
                let external = fixed.unwrap_or_else(|| {
                    self.next_port += 1;
                    public(self.next_port - 1)
                });
                self.bindings.push(Binding {
                    internal,
                    key,
                    external,
                    contacted: Vec::new(),
                });
                self.bindings.len() - 1
            }
        };
        &mut self.bindings[i]
    }
}

// ---------------------------------------------------------------------------------------------
// The network and the run loop.

struct Packet {
    at: Instant,
    seq: u64,
    from: SocketAddr,
    to: SocketAddr,
    /// Already routed to this local socket (looped back), skipping the NAT's filter.
    looped: bool,
    bytes: Vec<u8>,
}

struct Net {
    nat: Nat,
    servers: Vec<Server>,
    /// Answer every request from the socket it reached, as a server ignoring CHANGE-REQUEST.
    ignore_change_request: bool,
    queue: Vec<Packet>,
    seq: u64,
}

impl Net {
    fn send(&mut self, at: Instant, from: SocketAddr, to: SocketAddr, looped: bool, b: &[u8]) {
        self.seq += 1;
        self.queue.push(Packet {
            at,
            seq: self.seq,
            from,
            to,
            looped,
            bytes: b.to_vec(),
        });
    }

    fn next_arrival(&self) -> Option<Instant> {
        self.queue.iter().map(|p| p.at).min()
    }

    fn pop_due(&mut self, now: Instant) -> Option<Packet> {
        let i = self
            .queue
            .iter()
            .enumerate()
            .filter(|(_, p)| p.at <= now)
            .min_by_key(|(_, p)| (p.at, p.seq))
            .map(|(i, _)| i)?;
        Some(self.queue.swap_remove(i))
    }
}

/// One datagram the prober sent.
type Sent = (Instant, SocketAddr, SocketAddr, Vec<u8>);

struct Run {
    report: Report,
    elapsed: Duration,
    sent: Vec<Sent>,
    allocations: usize,
}

struct Setup {
    profile: Profile,
    servers: Vec<Server>,
    configured: Vec<SocketAddr>,
    locals: Vec<SocketAddr>,
    seed: u64,
    timeout: Option<Duration>,
    ignore_change_request: bool,
}

impl Setup {
    fn rfc5780(profile: Profile) -> Self {
        let locals = match profile {
            Profile::NoNat(_) => open_locals(),
            _ => private_locals(),
        };
        Setup {
            profile,
            servers: vec![rfc5780_server()],
            configured: vec![a()],
            locals,
            seed: 1,
            timeout: None,
            ignore_change_request: false,
        }
    }

    fn plain(profile: Profile, at: &[&str]) -> Self {
        let configured: Vec<SocketAddr> = at.iter().map(|s| addr(s)).collect();
        Setup {
            profile,
            servers: configured.iter().map(|&s| plain_server(s)).collect(),
            configured,
            locals: private_locals(),
            seed: 1,
            timeout: None,
            ignore_change_request: false,
        }
    }

    fn run(self) -> Run {
        let start = Instant::from_millis(1000);
        let mut config = NetcheckConfig::new(self.configured, self.locals.clone());
        if let Some(t) = self.timeout {
            config.timeout = t;
        }
        let mut nc = Netcheck::new(config, self.seed).unwrap();
        assert_eq!(nc.sockets(), &self.locals[..]);
        assert_eq!(nc.poll_timeout(), Some(Instant::ZERO), "asks to be started");
        let mut net = Net {
            nat: Nat::new(self.profile),
            servers: self.servers,
            ignore_change_request: self.ignore_change_request,
            queue: Vec::new(),
            seq: 0,
        };
        let mut allocations = 0;
        let mut sent = Vec::new();
        let mut buf = vec![0u8; 1280];
        let mut now = start;
        for _ in 0..10_000 {
            while let Some(t) = counted(&mut allocations, || nc.poll_transmit(now, &mut buf)) {
                let from = t.from.unwrap();
                assert!(nc.sockets().contains(&from));
                let bytes = &buf[..t.len];
                sent.push((now, from, t.to, bytes.to_vec()));
                match net.nat.outbound(from, t.to) {
                    Route::Internet { src } => net.send(now + ONE_WAY, src, t.to, false, bytes),
                    Route::Loop { src, dst } => net.send(now + LOOP, src, dst, true, bytes),
                    Route::Drop => {}
                }
            }
            if nc.is_done() {
                assert_eq!(nc.poll_timeout(), None);
                return Run {
                    report: nc.report(),
                    elapsed: now - start,
                    sent,
                    allocations,
                };
            }
            let timer = nc.poll_timeout().expect("a deadline while not done");
            let next = net.next_arrival().map_or(timer, |p| p.min(timer));
            now = now.max(next);
            assert!(now - start < Duration::from_secs(30), "runaway prober");
            while let Some(p) = net.pop_due(now) {
                let local = if p.looped {
                    Some(p.to)
                } else if let Some(server) = net.servers.iter_mut().find(|s| {
                    let mut locals = s.local_addresses();
                    locals.any(|l| l == p.to)
                }) {
                    let mut out = [0u8; 1280];
                    if let Outcome::Respond(t) =
                        server.answer(now, p.to, p.from, &p.bytes, &mut out)
                    {
                        let response = out[..t.len].to_vec();
                        let source = if net.ignore_change_request {
                            p.to
                        } else {
                            t.from.unwrap()
                        };
                        net.send(now + ONE_WAY, source, t.to, false, &response);
                    }
                    None
                } else {
                    net.nat.inbound(p.from, p.to)
                };
                if let Some(local) = local {
                    let consumed =
                        counted(&mut allocations, || nc.feed(now, local, p.from, &p.bytes));
                    assert!(consumed, "netcheck must claim its own traffic");
                }
            }
            counted(&mut allocations, || nc.handle_timeout(now));
        }
        panic!("prober never finished");
    }
}

fn rtts(servers: &[SocketAddr], rtt: Option<Duration>) -> Vec<ServerRtt> {
    servers
        .iter()
        .map(|&server| ServerRtt { server, rtt })
        .collect()
}

fn report(
    public_v4: Option<SocketAddr>,
    mapping: Behaviour,
    filtering: Behaviour,
    hairpinning: Option<bool>,
    observed_ports: Vec<u16>,
    server_rtts: Vec<ServerRtt>,
) -> Report {
    let mut r = Report::default();
    r.udp = public_v4.is_some();
    r.public_v4 = public_v4;
    r.mapping = mapping;
    r.filtering = filtering;
    r.hairpinning = hairpinning;
    r.observed_ports = observed_ports;
    r.server_rtts = server_rtts;
    r
}

fn behaviour_of_mapping(m: Mapping) -> Behaviour {
    match m {
        Mapping::Eim => Behaviour::EndpointIndependent,
        Mapping::Adm => Behaviour::AddressDependent,
        Mapping::Apdm => Behaviour::AddressAndPortDependent,
    }
}

fn behaviour_of_filtering(f: Filtering) -> Behaviour {
    match f {
        Filtering::Eif => Behaviour::EndpointIndependent,
        Filtering::Adf => Behaviour::AddressDependent,
        Filtering::Apdf => Behaviour::AddressAndPortDependent,
    }
}

const MAPPINGS: [Mapping; 3] = [Mapping::Eim, Mapping::Adm, Mapping::Apdm];
const FILTERINGS: [Filtering; 3] = [Filtering::Eif, Filtering::Adf, Filtering::Apdf];

/// The bound every case must finish within (virtual): one round trip plus the 2.2 s the short
/// retransmission profile waits for an answer that never comes.
const BOUND: Duration = Duration::from_millis(2300);

fn check(name: &str, run: &Run, expected: &Report) {
    println!("{name:<40} done after {:?}", run.elapsed);
    assert_eq!(&run.report, expected, "{name}");
    assert!(run.elapsed <= BOUND, "{name}: took {:?}", run.elapsed);
    assert_eq!(run.allocations, 0, "{name}: allocated while running");
}

// ---------------------------------------------------------------------------------------------
// The matrix.

#[test]
fn rfc5780_matrix_classifies_every_nat_exactly() {
    for mapping in MAPPINGS {
        for filtering in FILTERINGS {
            for hairpin in [true, false] {
                let run = Setup::rfc5780(Profile::Nat {
                    mapping,
                    filtering,
                    hairpin,
                })
                .run();
                // Sequential allocation from 40000: socket 1 → A:a, socket 2 → A:a, then
                // socket 1 → B:a and → B:b as far as the mapping makes them new.
                let observed = match mapping {
                    Mapping::Eim => vec![40000, 40001],
                    Mapping::Adm => vec![40000, 40001, 40002],
                    Mapping::Apdm => vec![40000, 40001, 40002, 40003],
                };
                let expected = report(
                    Some(public(FIRST_PORT)),
                    behaviour_of_mapping(mapping),
                    behaviour_of_filtering(filtering),
                    Some(hairpin),
                    observed,
                    rtts(&[a()], Some(RTT)),
                );
                let name = format!("{mapping:?}/{filtering:?}/hairpin={hairpin}");
                check(&name, &run, &expected);
                // Only an unanswerable test makes a run wait for its timeout.
                if filtering == Filtering::Eif && hairpin {
                    assert!(run.elapsed <= 3 * RTT, "{name}: {:?}", run.elapsed);
                }
            }
        }
    }
}

#[test]
fn open_host_firewall_and_blocked_udp() {
    let local = open_locals()[0];
    let run = Setup::rfc5780(Profile::NoNat(None)).run();
    let expected = report(
        Some(local),
        Behaviour::EndpointIndependent,
        Behaviour::EndpointIndependent,
        Some(true),
        vec![5000, 5001],
        rtts(&[a()], Some(RTT)),
    );
    check("open", &run, &expected);
    // No NAT: the mapping tests II and III are skipped (RFC 5780 §4.3).
    assert!(
        run.sent
            .iter()
            .all(|(_, _, to, _)| to.ip() != alternate().ip()),
        "no request to the alternate address without a NAT"
    );

    for filtering in FILTERINGS {
        let run = Setup::rfc5780(Profile::NoNat(Some(filtering))).run();
        let expected = report(
            Some(local),
            Behaviour::EndpointIndependent,
            behaviour_of_filtering(filtering),
            Some(true),
            vec![5000, 5001],
            rtts(&[a()], Some(RTT)),
        );
        check(&format!("firewall/{filtering:?}"), &run, &expected);
    }

    let run = Setup::rfc5780(Profile::UdpBlocked).run();
    let expected = report(
        None,
        Behaviour::Unknown,
        Behaviour::Unknown,
        None,
        vec![],
        rtts(&[a()], None),
    );
    check("udp-blocked", &run, &expected);
    assert!(!run.report.udp);
}

#[test]
fn without_rfc5780_two_servers_on_different_ips() {
    let servers = ["203.0.113.3:3478", "203.0.113.5:3478"];
    for mapping in MAPPINGS {
        let run = Setup::plain(
            Profile::Nat {
                mapping,
                filtering: Filtering::Apdf,
                hairpin: true,
            },
            &servers,
        )
        .run();
        // Different mappings to different IPs prove address dependence, not port dependence.
        let (behaviour, observed) = match mapping {
            Mapping::Eim => (Behaviour::EndpointIndependent, vec![40000, 40001]),
            Mapping::Adm | Mapping::Apdm => {
                (Behaviour::AddressDependent, vec![40000, 40001, 40002])
            }
        };
        let configured: Vec<SocketAddr> = servers.iter().map(|s| addr(s)).collect();
        let expected = report(
            Some(public(FIRST_PORT)),
            behaviour,
            Behaviour::Unknown,
            Some(true),
            observed,
            rtts(&configured, Some(RTT)),
        );
        check(&format!("plain-2ip/{mapping:?}"), &run, &expected);
    }
}

#[test]
fn without_rfc5780_same_ip_servers_prove_port_dependence() {
    // Two ports of one IP: only port dependence is observable.
    let same_ip = ["203.0.113.3:3478", "203.0.113.3:3479"];
    // Two ports of one IP plus another IP: the full classification.
    let three = ["203.0.113.3:3478", "203.0.113.3:3479", "203.0.113.5:3478"];
    for mapping in MAPPINGS {
        for (servers, name) in [(&same_ip[..], "plain-same-ip"), (&three[..], "plain-3")] {
            let run = Setup::plain(
                Profile::Nat {
                    mapping,
                    filtering: Filtering::Eif,
                    hairpin: false,
                },
                servers,
            )
            .run();
            let behaviour = match (mapping, servers.len()) {
                (Mapping::Apdm, _) => Behaviour::AddressAndPortDependent,
                (_, 2) => Behaviour::Unknown,
                (m, _) => behaviour_of_mapping(m),
            };
            // Distinct mappings on socket 1 (one per destination key), then socket 2's.
            let keys = match mapping {
                Mapping::Eim => 1,
                Mapping::Adm => servers.len() - 1, // the two same-IP servers share one
                Mapping::Apdm => servers.len(),
            };
            let observed = (0..=keys as u16).map(|i| FIRST_PORT + i).collect();
            let configured: Vec<SocketAddr> = servers.iter().map(|s| addr(s)).collect();
            let expected = report(
                Some(public(FIRST_PORT)),
                behaviour,
                Behaviour::Unknown,
                Some(false),
                observed,
                rtts(&configured, Some(RTT)),
            );
            check(&format!("{name}/{mapping:?}"), &run, &expected);
        }
    }
}

#[test]
fn ipv6_socket_reports_public_v6() {
    let v6_server = addr("[2001:db8::3]:3478");
    let v6_local = addr("[2001:db8:1::2]:5002");
    let mut setup = Setup::rfc5780(Profile::Nat {
        mapping: Mapping::Apdm,
        filtering: Filtering::Adf,
        hairpin: true,
    });
    setup.servers.push(plain_server(v6_server));
    setup.configured.push(v6_server);
    setup.locals.push(v6_local);
    let run = setup.run();
    let mut expected = report(
        Some(public(FIRST_PORT)),
        Behaviour::AddressAndPortDependent,
        Behaviour::AddressDependent,
        Some(true),
        vec![40000, 40001, 40002, 40003],
        rtts(&[a(), v6_server], Some(RTT)),
    );
    expected.public_v6 = Some(v6_local);
    check("v4 APDM/ADF + v6", &run, &expected);
}

#[test]
fn ipv6_pair_runs_the_same_tests() {
    let primary = addr("[2001:db8::3]:3478");
    let server = Server::new(ServerConfig {
        alternate: Some(addr("[2001:db8::4]:3479")),
        ..ServerConfig::new(primary)
    })
    .unwrap();
    let locals = vec![addr("[2001:db8:1::2]:5000"), addr("[2001:db8:1::2]:5001")];
    let run = Setup {
        profile: Profile::NoNat(None),
        servers: vec![server],
        configured: vec![primary],
        locals: locals.clone(),
        seed: 3,
        timeout: None,
        ignore_change_request: false,
    }
    .run();
    let mut expected = report(
        None,
        Behaviour::EndpointIndependent,
        Behaviour::EndpointIndependent,
        Some(true),
        vec![5000, 5001],
        rtts(&[primary], Some(RTT)),
    );
    expected.udp = true;
    expected.public_v6 = Some(locals[0]);
    check("v6 pair, no NAT", &run, &expected);
}

#[test]
fn observed_ports_feed_the_port_predictor() {
    let run = Setup::rfc5780(Profile::Nat {
        mapping: Mapping::Apdm,
        filtering: Filtering::Apdf,
        hairpin: false,
    })
    .run();
    let p = PortPredictor::new(&run.report.observed_ports).unwrap();
    assert_eq!(p.allocation(), PortAllocation::Sequential { delta: 1 });
}

#[test]
fn same_seed_same_run_and_report() {
    let profile = Profile::Nat {
        mapping: Mapping::Apdm,
        filtering: Filtering::Apdf,
        hairpin: false,
    };
    let one = Setup::rfc5780(profile).run();
    let two = Setup::rfc5780(profile).run();
    assert_eq!(one.report, two.report);
    assert_eq!(one.sent, two.sent);
    assert_eq!(one.elapsed, two.elapsed);
    let mut other = Setup::rfc5780(profile);
    other.seed = 2;
    let three = other.run();
    assert_eq!(one.report, three.report);
    assert_ne!(one.sent, three.sent, "transaction ids follow the seed");
    // Sends are padded so the RFC 5780 server can afford OTHER-ADDRESS and RESPONSE-ORIGIN.
    assert!(one.sent.iter().all(|(_, _, _, b)| b.len() >= 120));
}

#[test]
fn retransmission_profile_is_short() {
    // UDP blocked: Test I is sent at 0, 0.2, 0.6 and 1.4 s and given up at 2.2 s.
    let run = Setup::rfc5780(Profile::UdpBlocked).run();
    let times: Vec<Duration> = run
        .sent
        .iter()
        .filter(|(_, from, _, _)| *from == private_locals()[0])
        .map(|(t, _, _, _)| *t - Instant::from_millis(1000))
        .collect();
    let ms = Duration::from_millis;
    assert_eq!(times, [ms(0), ms(200), ms(600), ms(1400)]);
    assert_eq!(run.elapsed, ms(2200));
}

#[test]
fn server_ignoring_change_request_leaves_filtering_unknown() {
    // Answers that should have come from the alternate IP and/or port come from A:a: they
    // say nothing about the NAT's filter (a naive check would call any NAT EIF).
    let mut setup = Setup::rfc5780(Profile::Nat {
        mapping: Mapping::Eim,
        filtering: Filtering::Apdf,
        hairpin: true,
    });
    setup.ignore_change_request = true;
    let run = setup.run();
    let expected = report(
        Some(public(FIRST_PORT)),
        Behaviour::EndpointIndependent,
        Behaviour::Unknown,
        Some(true),
        vec![40000, 40001],
        rtts(&[a()], Some(RTT)),
    );
    check("ignores CHANGE-REQUEST", &run, &expected);
}

#[test]
fn overall_timeout_caps_the_run() {
    let mut setup = Setup::rfc5780(Profile::UdpBlocked);
    setup.timeout = Some(Duration::from_millis(1000));
    let run = setup.run();
    assert_eq!(run.elapsed, Duration::from_millis(1000));
    assert!(!run.report.udp);
    assert_eq!(run.report.server_rtts, rtts(&[a()], None));

    // Cut short while the filtering tests and the hairpin probe are still waiting: they count
    // as unanswered.
    let mut setup = Setup::rfc5780(Profile::Nat {
        mapping: Mapping::Adm,
        filtering: Filtering::Apdf,
        hairpin: false,
    });
    setup.timeout = Some(Duration::from_millis(500));
    let run = setup.run();
    assert_eq!(run.elapsed, Duration::from_millis(500));
    assert_eq!(run.report.mapping, Behaviour::AddressDependent);
    assert_eq!(run.report.filtering, Behaviour::AddressAndPortDependent);
    assert_eq!(run.report.hairpinning, Some(false));
}

// ---------------------------------------------------------------------------------------------
// API details.

#[test]
fn behaviour_strings_match_the_cli_contract() {
    assert_eq!(
        Behaviour::EndpointIndependent.as_str(),
        "endpoint-independent"
    );
    assert_eq!(Behaviour::AddressDependent.as_str(), "address-dependent");
    assert_eq!(
        Behaviour::AddressAndPortDependent.as_str(),
        "address-and-port-dependent"
    );
    assert_eq!(Behaviour::Unknown.as_str(), "unknown");
    assert_eq!(Behaviour::Unknown.to_string(), "unknown");
    assert_eq!(Behaviour::default(), Behaviour::Unknown);
}

#[test]
fn bad_configurations_are_typed_errors() {
    let err = |servers: &[&str], locals: &[&str]| {
        let config = NetcheckConfig::new(
            servers.iter().map(|s| addr(s)).collect(),
            locals.iter().map(|s| addr(s)).collect(),
        );
        Netcheck::new(config, 0).err()
    };
    let v4 = ["192.168.1.2:5000", "192.168.1.2:5001"];
    assert_eq!(err(&[], &v4), Some(NetcheckError::NoServers));
    assert_eq!(
        err(&["[2001:db8::3]:3478"], &v4),
        Some(NetcheckError::NoServers)
    );
    assert_eq!(
        err(&["203.0.113.3:3478"], &["192.168.1.2:5000"]),
        Some(NetcheckError::LocalCount { count: 1 })
    );
    assert_eq!(
        err(
            &["203.0.113.3:3478"],
            &["192.168.1.2:1", "192.168.1.2:2", "[::1]:3", "[::1]:4"]
        ),
        Some(NetcheckError::LocalCount { count: 4 })
    );
    assert_eq!(
        err(&["203.0.113.3:3478"], &["192.168.1.2:5000", "[::1]:5001"]),
        Some(NetcheckError::MixedFamilies)
    );
    assert_eq!(
        err(
            &["203.0.113.3:3478"],
            &["192.168.1.2:1", "192.168.1.2:2", "192.168.1.2:3"]
        ),
        Some(NetcheckError::MixedFamilies)
    );
    assert_eq!(
        err(&["203.0.113.3:3478"], &["192.168.1.2:1", "192.168.1.2:1"]),
        Some(NetcheckError::DuplicateLocal(addr("192.168.1.2:1")))
    );
    let mut config = NetcheckConfig::new(vec![a()], private_locals());
    config.max_sends = 0;
    assert_eq!(
        Netcheck::new(config, 0).err(),
        Some(NetcheckError::InvalidRetransmission)
    );
    let mut config = NetcheckConfig::new(vec![a()], private_locals());
    config.pad_requests_to = 4000;
    assert_eq!(
        Netcheck::new(config, 0).err(),
        Some(NetcheckError::PaddingTooLarge(4000))
    );
    // A v6 pair with a v4 third socket is fine, in any order.
    assert!(
        err(
            &["[2001:db8::3]:3478"],
            &["[::1]:1", "10.0.0.1:2", "[::1]:3"]
        )
        .is_none()
    );
}

#[test]
fn foreign_datagrams_are_left_to_the_caller() {
    let mut nc = Netcheck::new(NetcheckConfig::new(vec![a()], private_locals()), 9).unwrap();
    let local = private_locals()[0];
    let mut buf = [0u8; 1280];
    let now = Instant::from_millis(5);
    assert!(!nc.feed(now, local, a(), b"hello"), "not started");
    while nc.poll_transmit(now, &mut buf).is_some() {}
    assert!(!nc.is_done());
    assert!(!nc.feed(now, local, a(), b"hello"));
    assert!(!nc.feed(now, addr("10.9.9.9:1"), a(), &buf[..20]));
    // A STUN request with an unknown transaction id is someone else's.
    let mut out = [0u8; 64];
    let b = MessageBuilder::new(
        &mut out,
        Class::Request,
        Method::BINDING,
        TransactionId([7; 12]),
    )
    .unwrap();
    let len = b.finish();
    assert!(!nc.feed(now, local, a(), &out[..len]));
    // A partial report before any answer.
    let r = nc.report();
    assert!(!r.udp);
    assert_eq!(r.hairpinning, None);
    assert_eq!(nc.poll_timeout(), Some(now + Duration::from_millis(200)));
}

// ---------------------------------------------------------------------------------------------
// Robustness.

/// A datagram thrown at the prober: raw bytes, or a well-formed Binding response to one of its
/// transactions carrying arbitrary addresses.
#[derive(Clone, Debug)]
enum Junk {
    Raw(Vec<u8>),
    Response {
        tid_index: usize,
        class: u8,
        mapped: Option<SocketAddr>,
        other: Option<SocketAddr>,
        origin: Option<SocketAddr>,
    },
}

fn any_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
        Just(a()),
        Just(alternate()),
        Just(public(FIRST_PORT)),
        Just(addr("203.0.113.4:3478")),
        Just(addr("203.0.113.3:3479")),
        Just(private_locals()[0]),
    ]
}

fn junk() -> impl Strategy<Value = Junk> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..160).prop_map(Junk::Raw),
        (
            0usize..16,
            0u8..4,
            prop::option::of(any_addr()),
            prop::option::of(any_addr()),
            prop::option::of(any_addr()),
        )
            .prop_map(|(tid_index, class, mapped, other, origin)| Junk::Response {
                tid_index,
                class,
                mapped,
                other,
                origin,
            }),
    ]
}

fn encode(junk: &Junk, tids: &[TransactionId], out: &mut [u8]) -> usize {
    match junk {
        Junk::Raw(bytes) => {
            out[..bytes.len()].copy_from_slice(bytes);
            bytes.len()
        }
        Junk::Response {
            tid_index,
            class,
            mapped,
            other,
            origin,
        } => {
            let tid = if tids.is_empty() {
                TransactionId([1; 12])
            } else {
                tids[tid_index % tids.len()]
            };
            let class = [
                Class::Request,
                Class::Indication,
                Class::SuccessResponse,
                Class::ErrorResponse,
            ][*class as usize];
            let mut b = MessageBuilder::new(out, class, Method::BINDING, tid).unwrap();
            if let Some(m) = mapped {
                b.add(&Attribute::XorMappedAddress(*m)).unwrap();
            }
            if let Some(o) = other {
                b.add(&Attribute::OtherAddress(*o)).unwrap();
            }
            if let Some(o) = origin {
                b.add(&Attribute::ResponseOrigin(*o)).unwrap();
            }
            b.add_fingerprint().unwrap();
            b.finish()
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn arbitrary_datagrams_never_panic(
        seed in any::<u64>(),
        inputs in prop::collection::vec((0usize..3, any_addr(), junk(), 0u64..400), 0..40),
    ) {
        let mut nc = Netcheck::new(NetcheckConfig::new(vec![a()], private_locals()), seed).unwrap();
        let sockets = [private_locals()[0], private_locals()[1], addr("10.0.0.1:9")];
        let mut tids = Vec::new();
        let mut buf = [0u8; 1280];
        let mut now = Instant::from_millis(1);
        let mut drain = |nc: &mut Netcheck, now, tids: &mut Vec<TransactionId>| {
            while let Some(t) = nc.poll_transmit(now, &mut buf) {
                prop_assert!(t.len >= 20 && t.from.is_some());
                let mut id = [0u8; 12];
                id.copy_from_slice(&buf[8..20]);
                tids.push(TransactionId(id));
            }
            Ok(())
        };
        // The run starts at its first input (polling alone starts nothing), here at 1 ms.
        nc.handle_timeout(now);
        drain(&mut nc, now, &mut tids)?;
        for (socket, from, junk, dt) in &inputs {
            now += Duration::from_millis(*dt);
            let mut out = [0u8; 512];
            let len = encode(junk, &tids, &mut out);
            let _ = nc.feed(now, sockets[*socket], *from, &out[..len]);
            drain(&mut nc, now, &mut tids)?;
            nc.handle_timeout(now);
            drain(&mut nc, now, &mut tids)?;
            let _ = nc.report();
        }
        // Whatever happened, the run still ends, and by the overall deadline.
        for _ in 0..1000 {
            if nc.is_done() {
                break;
            }
            let at = nc.poll_timeout().unwrap();
            prop_assert!(at <= Instant::from_millis(1) + Duration::from_secs(5));
            now = now.max(at);
            nc.handle_timeout(now);
            drain(&mut nc, now, &mut tids)?;
        }
        prop_assert!(nc.is_done());
        let r = nc.report();
        prop_assert!(r.hairpinning.is_none() || r.udp);
    }
}
