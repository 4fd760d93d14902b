//! `ice::relay::Relays` against the core's own TURN servers, in virtual time: the nearest
//! server is kept, the others released, gathering waits for the choice, and relayed data is
//! wrapped and unwrapped.
#![allow(clippy::unwrap_used)] // a panic is the right failure in a test

use core::net::SocketAddr;

use holepunch_core::ice::agent::{Agent, AgentConfig, IceEvent};
use holepunch_core::ice::candidate::CandidateKind;
use holepunch_core::ice::relay::{CHOICE_WINDOW, RelayEvent, RelayReceived, Relays};
use holepunch_core::time::{Duration, Instant};
use holepunch_core::turn::{ClientConfig, Server, ServerAction, ServerConfig, Transport, Via};

const HOST: &str = "192.0.2.10:5000";
/// A marker in the event list: the agent's gathering completed here.
const GATHERED: &str = "0.0.0.0:1";

/// A TURN server at `listen`, answering after `one_way` each direction.
struct Relay {
    server: Server,
    listen: SocketAddr,
    one_way: Duration,
    next_port: u16,
}

impl Relay {
    fn new(listen: &str, one_way_ms: u64) -> Relay {
        let mut config = ServerConfig::new("test");
        config.users = vec![("u".into(), "p".into())];
        Relay {
            server: Server::new(config, 7),
            listen: listen.parse().unwrap(),
            one_way: Duration::from_millis(one_way_ms),
            next_port: 50_000,
        }
    }
}

/// A datagram in flight: arrives at `at`.
struct Flight {
    at: Instant,
    to: SocketAddr,
    from: SocketAddr,
    bytes: Vec<u8>,
}

/// Pumps the relays, the agent and two TURN servers until `until`; returns the relay events.
fn run(
    relays: &mut Relays,
    agent: &mut Agent,
    servers: &mut [Relay],
    now: &mut Instant,
    until: Instant,
) -> Vec<RelayEvent> {
    let mut events = Vec::new();
    let mut flights: Vec<Flight> = Vec::new();
    let mut buf = vec![0u8; 2048];
    for _ in 0..10_000 {
        while let Some(t) = relays.poll_transmit(*now, &mut buf) {
            // Nothing answers at an address without a server: the request is lost.
            let Some(s) = servers.iter().find(|s| s.listen == t.to) else {
                continue;
            };
            flights.push(Flight {
                at: *now + s.one_way,
                to: t.to,
                from: t.from.unwrap(),
                bytes: buf[..t.len].to_vec(),
            });
        }
        while let Some(e) = relays.poll_event() {
            events.push(e);
        }
        while let Some(e) = agent.poll_event() {
            if e == IceEvent::GatheringComplete {
                events.push(RelayEvent::NotChosen {
                    server: GATHERED.parse().unwrap(),
                });
            }
        }
        while agent.poll_transmit(*now, &mut buf).is_some() {}
        flights.sort_by_key(|f| f.at);
        let next = [relays.poll_timeout(*now), flights.first().map(|f| f.at)]
            .into_iter()
            .flatten()
            .min();
        let Some(next) = next.filter(|n| *n <= until) else {
            break;
        };
        *now = next.max(*now);
        while flights.first().is_some_and(|f| f.at <= *now) {
            let f = flights.remove(0);
            if let Some(s) = servers.iter_mut().find(|s| s.listen == f.to) {
                s.server
                    .handle_datagram(*now, Via::Client(Transport::Udp), f.from, &f.bytes);
                while let Some(action) = s.server.poll_action() {
                    if let ServerAction::BindRelay { id, .. } = action {
                        let bound = SocketAddr::new(s.listen.ip(), s.next_port);
                        s.next_port += 2;
                        s.server.handle_relay_bound(*now, id, Some(bound));
                    }
                }
                while let Some(t) = s.server.poll_transmit(&mut buf) {
                    flights.push(Flight {
                        at: *now + s.one_way,
                        to: t.to,
                        from: s.listen,
                        bytes: buf[..t.len].to_vec(),
                    });
                }
            } else {
                let r = relays.handle_datagram(*now, agent, f.to, f.from, &f.bytes);
                assert_eq!(r, RelayReceived::Consumed, "a TURN answer is consumed");
            }
        }
        relays.handle_timeout(*now, agent);
    }
    events
}

fn agent_with_host(now: Instant) -> Agent {
    let mut agent = Agent::new(AgentConfig::aggressive(true), 1);
    agent
        .add_host_candidate(now, HOST.parse().unwrap())
        .unwrap();
    agent
}

#[test]
fn the_nearest_relay_is_kept_and_the_others_released() {
    let mut now = Instant::ZERO;
    let mut agent = agent_with_host(now);
    let mut servers = [
        Relay::new("203.0.113.21:3478", 40),
        Relay::new("203.0.113.22:3478", 5),
        Relay::new("203.0.113.23:3478", 20),
    ];
    let mut relays = Relays::new();
    for (k, s) in servers.iter().enumerate() {
        let config = ClientConfig::new(s.listen, Transport::Udp, "u", "p");
        relays
            .allocate(now, &mut agent, HOST.parse().unwrap(), config, k as u64)
            .unwrap();
    }
    agent.gather(now);
    let events = run(
        &mut relays,
        &mut agent,
        &mut servers,
        &mut now,
        Instant::ZERO + Duration::from_secs(5),
    );
    let chosen: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            RelayEvent::Allocated {
                server, relayed, ..
            } => Some((*server, *relayed)),
            _ => None,
        })
        .collect();
    assert_eq!(chosen.len(), 1, "{events:?}");
    assert_eq!(
        chosen[0].0, servers[1].listen,
        "the 5 ms server: {events:?}"
    );
    let gathered: SocketAddr = GATHERED.parse().unwrap();
    let released = events
        .iter()
        .filter(|e| matches!(e, RelayEvent::NotChosen { server } if *server != gathered))
        .count();
    assert_eq!(released, 2, "{events:?}");
    let relayed: Vec<_> = agent
        .local_candidates()
        .iter()
        .filter(|c| c.kind == CandidateKind::Relayed)
        .collect();
    assert_eq!(relayed.len(), 1);
    assert_eq!(relayed[0].address, chosen[0].1);
    assert!(relays.is_relayed(chosen[0].1));
    // Every allocation answered (two round trips of 80 ms at most): chosen then, well inside
    // the window after the first.
    assert!(now < Instant::ZERO + Duration::from_secs(1), "{now:?}");
}

#[test]
fn a_silent_relay_is_given_up_after_the_window_and_gathering_ends() {
    let mut now = Instant::ZERO;
    let mut agent = agent_with_host(now);
    let mut servers = [Relay::new("203.0.113.21:3478", 10)];
    let mut relays = Relays::new();
    let host: SocketAddr = HOST.parse().unwrap();
    let live = ClientConfig::new(servers[0].listen, Transport::Udp, "u", "p");
    let silent_addr: SocketAddr = "203.0.113.99:3478".parse().unwrap();
    let silent = ClientConfig::new(silent_addr, Transport::Udp, "u", "p");
    relays.allocate(now, &mut agent, host, live, 1).unwrap();
    relays.allocate(now, &mut agent, host, silent, 2).unwrap();
    agent.gather(now);
    let until = Instant::ZERO + Duration::from_secs(5);
    let events = run(&mut relays, &mut agent, &mut servers, &mut now, until);
    let gathered = GATHERED.parse().unwrap();
    let position = |f: &dyn Fn(&RelayEvent) -> bool| events.iter().position(f);
    let chosen = position(
        &|e| matches!(e, RelayEvent::Allocated { server, .. } if *server == servers[0].listen),
    );
    let dropped =
        position(&|e| matches!(e, RelayEvent::NotChosen { server } if *server == silent_addr));
    let done = position(&|e| matches!(e, RelayEvent::NotChosen { server } if *server == gathered));
    assert!(chosen.is_some() && dropped.is_some(), "{events:?}");
    // Gathering ended with the choice, not after the silent server's 39.5 s of retries.
    assert!(done.is_some_and(|d| d > chosen.unwrap()), "{events:?}");
    assert!(
        relays
            .poll_timeout(now)
            .is_none_or(|t| t > Instant::ZERO + CHOICE_WINDOW),
        "no timer left for the choice"
    );
}

/// A relay that refuses the credentials is reported as failed, and gathering does not wait
/// for it: end-of-candidates follows the failure.
#[test]
fn a_relay_refusing_the_credentials_is_reported_and_gathering_ends() {
    let mut now = Instant::ZERO;
    let mut agent = agent_with_host(now);
    let mut servers = [Relay::new("203.0.113.21:3478", 10)];
    let mut relays = Relays::new();
    let host: SocketAddr = HOST.parse().unwrap();
    let wrong = ClientConfig::new(servers[0].listen, Transport::Udp, "u", "not-p");
    relays.allocate(now, &mut agent, host, wrong, 1).unwrap();
    agent.gather(now);
    let until = Instant::ZERO + Duration::from_secs(5);
    let events = run(&mut relays, &mut agent, &mut servers, &mut now, until);
    let gathered: SocketAddr = GATHERED.parse().unwrap();
    let failed = events.iter().position(
        |e| matches!(e, RelayEvent::Failed { server, .. } if *server == servers[0].listen),
    );
    let done = events
        .iter()
        .position(|e| matches!(e, RelayEvent::NotChosen { server } if *server == gathered));
    assert!(failed.is_some(), "{events:?}");
    assert!(done.is_some_and(|d| d > failed.unwrap()), "{events:?}");
    assert!(
        !agent
            .local_candidates()
            .iter()
            .any(|c| c.kind == CandidateKind::Relayed),
        "no relayed candidate"
    );
}
