//! holepunch-mio's ICE driver ([`IceSockets`]): two agents registered with one caller-owned
//! `mio::Poll` on loopback, signalling through in-process channels; consent loss when the peer
//! goes away; the sockets [`Action::BindSockets`] asks for, under the next tokens.
mod common;

use std::collections::BTreeSet;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use common::{
    DATAGRAMS, KEEP_ALIVE, PHASE_TIMEOUT, Signal, app_payload, assert_direct, parse_app_payload,
};
use holepunch_core::Agent;
use holepunch_core::ice::agent::{Action, AgentConfig, IceEvent, PathInfo};
use holepunch_mio::ice::{AppDatagram, IceSockets};
use holepunch_mio::{Clock, os_seed};
use mio::{Events, Poll, Token};

const A_BASE: Token = Token(0);
const B_BASE: Token = Token(1000);
/// The longest one poll waits, so signalling is applied promptly.
const TURN: Duration = Duration::from_millis(20);

/// One side: its sockets and its ends of the signalling channels.
struct Side {
    ice: IceSockets,
    to_peer: Sender<Signal>,
    from_peer: Receiver<Signal>,
}

/// What a side produced in one turn of the loop.
#[derive(Debug)]
enum Got {
    Event(IceEvent),
    App(AppDatagram),
}

impl Side {
    /// Two sides on 127.0.0.1 registered with `poll` under [`A_BASE`] and [`B_BASE`], their
    /// signalling channels connected, credentials on their way and gathering started.
    fn pair(poll: &Poll, a: AgentConfig, b: AgentConfig) -> (Side, Side) {
        assert!(A_BASE.0 + IceSockets::tokens_needed(&a) <= B_BASE.0);
        let (a_to_b, b_from_a) = mpsc::channel();
        let (b_to_a, a_from_b) = mpsc::channel();
        (
            Side::new(poll, A_BASE, a, a_to_b, a_from_b),
            Side::new(poll, B_BASE, b, b_to_a, b_from_a),
        )
    }

    fn new(
        poll: &Poll,
        base: Token,
        config: AgentConfig,
        to_peer: Sender<Signal>,
        from_peer: Receiver<Signal>,
    ) -> Side {
        let local = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let mut ice = IceSockets::bind(poll.registry(), base, local, config).expect("bind");
        to_peer
            .send(Signal::Credentials(Box::new(ice.local_credentials())))
            .expect("signal credentials");
        ice.gather();
        Side {
            ice,
            to_peer,
            from_peer,
        }
    }

    fn apply_signals(&mut self) {
        while let Ok(signal) = self.from_peer.try_recv() {
            match signal {
                Signal::Credentials(c) => self.ice.set_remote_credentials(&c),
                Signal::Candidate(c) => self
                    .ice
                    .add_remote_candidate(c)
                    .expect("add remote candidate"),
                Signal::EndOfCandidates => self.ice.end_of_remote_candidates(),
            }
        }
    }

    /// Drains events (signalling our candidates) and application data.
    fn drain(&mut self) -> Vec<Got> {
        let mut got = Vec::new();
        while let Some(event) = self.ice.poll_event() {
            // The peer may be gone already; what it missed no longer matters.
            match event {
                IceEvent::LocalCandidate(c) => {
                    let _ = self.to_peer.send(Signal::Candidate(c));
                }
                IceEvent::GatheringComplete => {
                    let _ = self.to_peer.send(Signal::EndOfCandidates);
                }
                _ => {}
            }
            got.push(Got::Event(event));
        }
        got.extend(std::iter::from_fn(|| self.ice.recv_app()).map(Got::App));
        got
    }
}

/// One turn of the caller's event loop over every side: signalling in, one bounded poll,
/// readiness to whichever side owns the token, timers, then each side's output.
fn turn(poll: &mut Poll, events: &mut Events, sides: &mut [&mut Side]) -> Vec<Vec<Got>> {
    for side in sides.iter_mut() {
        side.apply_signals();
    }
    let timeout = sides
        .iter()
        .filter_map(|s| s.ice.next_timeout())
        .fold(TURN, Duration::min);
    poll.poll(events, Some(timeout)).expect("poll");
    for event in events.iter() {
        let mut owners = 0;
        for side in sides.iter_mut() {
            if side.ice.handle_event(event.token()).expect("receive") {
                owners += 1;
            }
        }
        assert_eq!(owners, 1, "token {:?} has one owner", event.token());
    }
    sides
        .iter_mut()
        .map(|side| {
            side.ice.handle_timeout();
            side.drain()
        })
        .collect()
}

/// Turns the loop until both sides reported `Connected`; returns their paths.
fn connect(poll: &mut Poll, events: &mut Events, a: &mut Side, b: &mut Side) -> [PathInfo; 2] {
    let give_up = Instant::now() + PHASE_TIMEOUT;
    let mut paths = [None, None];
    while paths.iter().any(Option::is_none) {
        assert!(Instant::now() < give_up, "not connected: {paths:?}");
        for (i, got) in turn(poll, events, &mut [&mut *a, &mut *b])
            .into_iter()
            .enumerate()
        {
            for g in got {
                match g {
                    Got::Event(IceEvent::Connected(p)) => {
                        assert!(paths[i].replace(p).is_none(), "Connected twice: {p:?}");
                    }
                    Got::Event(e @ (IceEvent::Failed | IceEvent::ConsentLost(_))) => {
                        panic!("side {i}: {e:?}")
                    }
                    _ => {}
                }
            }
        }
    }
    paths.map(|p| p.expect("connected"))
}

#[test]
fn two_agents_in_one_poll_connect_and_exchange_app_data() {
    let mut poll = Poll::new().expect("poll");
    let mut events = Events::with_capacity(64);
    let (mut a, mut b) = Side::pair(&poll, AgentConfig::rfc(true), AgentConfig::rfc(false));
    let addrs = [a.ice.local_addr(), b.ice.local_addr()];
    let [path_a, path_b] = connect(&mut poll, &mut events, &mut a, &mut b);
    assert_direct(&path_a, addrs[0], addrs[1]);
    assert_direct(&path_b, addrs[1], addrs[0]);
    assert_eq!(a.ice.tokens().collect::<Vec<_>>(), vec![A_BASE]);
    assert_eq!(b.ice.tokens().collect::<Vec<_>>(), vec![B_BASE]);

    let give_up = Instant::now() + PHASE_TIMEOUT;
    let mut received = [BTreeSet::new(), BTreeSet::new()];
    let mut next = [0u32, 0u32];
    while received.iter().any(|r| r.len() < DATAGRAMS as usize) {
        assert!(
            Instant::now() < give_up,
            "received {} and {} of {DATAGRAMS}",
            received[0].len(),
            received[1].len()
        );
        // Sends in bursts of ten per turn, interleaved with receiving.
        for (side, sent) in [&a, &b].into_iter().zip(next.iter_mut()) {
            let end = (*sent + 10).min(DATAGRAMS);
            for i in *sent..end {
                side.ice.send_app(&app_payload(i)).expect("send app data");
            }
            *sent = end;
        }
        for (i, got) in turn(&mut poll, &mut events, &mut [&mut a, &mut b])
            .into_iter()
            .enumerate()
        {
            for g in got {
                match g {
                    Got::App(d) => {
                        assert_eq!(d.local, addrs[i], "arrived on the host socket");
                        assert_eq!(d.from, addrs[1 - i], "sent by the peer's host socket");
                        assert!(
                            received[i].insert(parse_app_payload(&d.payload)),
                            "duplicate {d:?}"
                        );
                    }
                    Got::Event(e @ (IceEvent::Failed | IceEvent::ConsentLost(_))) => {
                        panic!("side {i}: {e:?}")
                    }
                    Got::Event(_) => {}
                }
            }
        }
    }
    let all: BTreeSet<u32> = (0..DATAGRAMS).collect();
    assert_eq!(received, [all.clone(), all], "every datagram arrived once");
    assert_eq!(a.ice.selected_path().map(|p| p.remote), Some(addrs[1]));
    assert_eq!(b.ice.selected_path().map(|p| p.remote), Some(addrs[0]));
}

#[test]
fn survivor_reports_consent_lost_when_the_peer_is_dropped() {
    let fast_consent = |controlling| AgentConfig {
        consent_interval: Duration::from_millis(200),
        consent_timeout: Duration::from_secs(1),
        ..AgentConfig::aggressive(controlling)
    };
    let mut poll = Poll::new().expect("poll");
    let mut events = Events::with_capacity(64);
    // The controlled side survives this time (std_ice.rs keeps the controlling one).
    let (mut leaver, mut survivor) = Side::pair(&poll, fast_consent(true), fast_consent(false));
    let [_, path] = connect(&mut poll, &mut events, &mut leaver, &mut survivor);
    assert_direct(&path, survivor.ice.local_addr(), leaver.ice.local_addr());

    // Both up for longer than the consent timeout: consent keeps the path.
    let kept_until = Instant::now() + KEEP_ALIVE;
    while Instant::now() < kept_until {
        for got in turn(&mut poll, &mut events, &mut [&mut leaver, &mut survivor]) {
            for g in got {
                assert!(
                    !matches!(g, Got::Event(IceEvent::ConsentLost(_) | IceEvent::Failed)),
                    "{g:?} while both sides are up"
                );
            }
        }
    }

    drop(leaver);
    let stopped_at = Instant::now();
    let give_up = stopped_at + PHASE_TIMEOUT;
    let (lost, lost_at) = 'wait: loop {
        assert!(Instant::now() < give_up, "no ConsentLost");
        for got in turn(&mut poll, &mut events, &mut [&mut survivor]) {
            for g in got {
                match g {
                    Got::Event(IceEvent::ConsentLost(p)) => break 'wait (p, Instant::now()),
                    Got::Event(e @ (IceEvent::Failed | IceEvent::PathChanged(_))) => {
                        panic!("unexpected {e:?}")
                    }
                    _ => {}
                }
            }
        }
    };
    assert_eq!((lost.local, lost.remote), (path.local, path.remote));
    let after_stop = lost_at.duration_since(stopped_at);
    println!("consent lost {after_stop:?} after the peer stopped answering");
    // The last answer came at most one jittered interval (240 ms) before the stop, and consent
    // runs out 1 s after it; allow generous scheduling slack above.
    assert!(
        after_stop >= Duration::from_millis(500) && after_stop <= Duration::from_secs(3),
        "consent lost {after_stop:?} after the peer stopped"
    );
}

#[test]
fn bind_sockets_action_registers_the_next_tokens() {
    let mut poll = Poll::new().expect("poll");
    let mut events = Events::with_capacity(64);
    let local = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let config = AgentConfig::rfc(true);
    let base = Token(40);
    let mut ice = IceSockets::bind(poll.registry(), base, local, config.clone()).expect("bind");
    assert_eq!(ice.token_span(), IceSockets::tokens_needed(&config));
    let host = ice.local_addr();

    let bound = ice
        .perform_action(Action::BindSockets {
            token: holepunch_core::IoToken(0),
            count: 8,
            ip: ice.local_addr().ip(),
        })
        .expect("bind extra sockets");
    // What perform_action returns is exactly what it reported to the agent with handle_io.
    assert_eq!(bound.len(), 8, "{bound:?}");
    let distinct: BTreeSet<SocketAddr> = bound.iter().copied().collect();
    assert_eq!(distinct.len(), 8, "distinct addresses: {bound:?}");
    assert!(!distinct.contains(&host), "{bound:?}");
    assert!(bound.iter().all(|a| a.ip() == host.ip() && a.port() != 0));
    assert_eq!(&ice.local_addrs()[1..], bound.as_slice());
    let tokens: Vec<Token> = ice.tokens().collect();
    assert_eq!(tokens, (40..49).map(Token).collect::<Vec<_>>());

    // Each extra socket is readable under its own token and reports its own local address.
    let stranger = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind stranger");
    let stranger_addr = stranger.local_addr().expect("stranger address");
    for (i, &target) in bound.iter().enumerate() {
        stranger
            .send_to(&app_payload(i as u32), target)
            .expect("send to an extra socket");
    }
    let mut seen = BTreeSet::new();
    let give_up = Instant::now() + PHASE_TIMEOUT;
    while seen.len() < bound.len() {
        assert!(Instant::now() < give_up, "received on {seen:?} only");
        poll.poll(&mut events, Some(TURN)).expect("poll");
        for event in events.iter() {
            let before = seen.len();
            assert!(ice.handle_event(event.token()).expect("receive"));
            while let Some(d) = ice.recv_app() {
                assert_eq!(d.from, stranger_addr);
                let i = parse_app_payload(&d.payload) as usize;
                assert_eq!(d.local, bound[i], "reported on the socket it arrived on");
                assert_eq!(
                    event.token(),
                    Token(base.0 + 1 + i),
                    "under the socket's token"
                );
                seen.insert(i);
            }
            assert!(seen.len() > before, "{:?} was readable", event.token());
        }
        ice.handle_timeout();
    }
    assert!(!ice.handle_event(Token(base.0 + 9)).expect("not ours"));
}

#[test]
fn extra_sockets_stay_within_the_token_span() {
    let poll = Poll::new().expect("poll");
    let clock = Clock::new();
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let agent = Agent::new(AgentConfig::rfc(false), os_seed());
    let mut ice = IceSockets::new(poll.registry(), Token(7), 4, socket, agent, clock).expect("new");
    let err = ice.send_app(b"app").expect_err("no path yet");
    assert_eq!(err.kind(), io::ErrorKind::NotConnected);

    let bound = ice
        .perform_action(Action::BindSockets {
            token: holepunch_core::IoToken(0),
            count: 8,
            ip: ice.local_addr().ip(),
        })
        .expect("bind what fits");
    assert_eq!(bound.len(), 3, "host socket plus three fill a span of four");
    assert_eq!(
        ice.tokens().collect::<Vec<_>>(),
        vec![Token(7), Token(8), Token(9), Token(10)]
    );
    assert_eq!(
        ice.perform_action(Action::BindSockets {
            token: holepunch_core::IoToken(0),
            count: 8,
            ip: ice.local_addr().ip()
        })
        .expect("nothing fits"),
        Vec::<SocketAddr>::new()
    );

    let unspecified = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind");
    let agent = Agent::new(AgentConfig::rfc(false), os_seed());
    let err = IceSockets::new(
        poll.registry(),
        Token(20),
        1,
        unspecified,
        agent,
        Clock::new(),
    )
    .expect_err("unspecified host address");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}
