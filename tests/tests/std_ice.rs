//! holepunch-std's ICE driver ([`IceSocket`]): two agents on loopback, one thread each,
//! signalling through in-process channels; consent loss when the peer goes away; the sockets
//! [`Action::BindSockets`] asks for.
mod common;

use std::collections::BTreeSet;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    DATAGRAMS, KEEP_ALIVE, PHASE_TIMEOUT, Signal, app_payload, assert_direct, parse_app_payload,
};
use holepunch_core::ice::agent::{Action, AgentConfig, IceEvent, PathInfo};
use holepunch_std::ice::{IceSocket, Output};

/// The longest one [`IceSocket::step`] waits, so signalling is applied promptly.
const STEP: Duration = Duration::from_millis(20);

/// One side: its socket and its ends of the signalling channels.
struct Side {
    ice: IceSocket,
    to_peer: Sender<Signal>,
    from_peer: Receiver<Signal>,
}

impl Side {
    /// Two sides on 127.0.0.1 whose signalling channels are connected; credentials are already
    /// on their way and gathering has started.
    fn pair(a: AgentConfig, b: AgentConfig) -> (Side, Side) {
        let (a_to_b, b_from_a) = mpsc::channel();
        let (b_to_a, a_from_b) = mpsc::channel();
        (
            Side::new(a, a_to_b, a_from_b),
            Side::new(b, b_to_a, b_from_a),
        )
    }

    fn new(config: AgentConfig, to_peer: Sender<Signal>, from_peer: Receiver<Signal>) -> Side {
        let mut ice = IceSocket::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), config)
            .expect("bind the host socket");
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

    /// Applies what the peer signalled, steps once, and signals our candidates; returns the
    /// step's output for the test to look at.
    fn step(&mut self) -> Option<Output> {
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
        let output = self.ice.step(STEP).expect("step");
        // The peer may have finished and hung up; what it missed no longer matters.
        match output {
            Some(Output::Event(IceEvent::LocalCandidate(c))) => {
                let _ = self.to_peer.send(Signal::Candidate(c));
            }
            Some(Output::Event(IceEvent::GatheringComplete)) => {
                let _ = self.to_peer.send(Signal::EndOfCandidates);
            }
            _ => {}
        }
        output
    }
}

/// What one side saw in the exchange test.
#[derive(Debug)]
struct ExchangeReport {
    connected: PathInfo,
    selected_at_end: Option<PathInfo>,
    received: BTreeSet<u32>,
}

/// Connects, sends [`DATAGRAMS`] datagrams on the selected path once connected, and receives
/// the peer's, stepping until both sides have everything (`done` counts finished sides).
fn exchange(mut side: Side, peer: SocketAddr, done: &AtomicUsize) -> ExchangeReport {
    let give_up = Instant::now() + PHASE_TIMEOUT;
    let mut connected = None;
    let mut received = BTreeSet::new();
    let mut finished = false;
    while done.load(Ordering::SeqCst) < 2 {
        assert!(
            Instant::now() < give_up,
            "{}: connected {connected:?}, received {} of {DATAGRAMS}",
            side.ice.local_addr(),
            received.len()
        );
        match side.step() {
            Some(Output::Event(IceEvent::Connected(path))) => {
                assert!(connected.is_none(), "Connected twice: {path:?}");
                connected = Some(path);
                for i in 0..DATAGRAMS {
                    side.ice.send_app(&app_payload(i)).expect("send app data");
                }
            }
            Some(Output::Event(e @ (IceEvent::Failed | IceEvent::ConsentLost(_)))) => {
                panic!("{}: {e:?}", side.ice.local_addr())
            }
            Some(Output::AppData(d)) => {
                assert_eq!(d.local, side.ice.local_addr(), "arrived on the host socket");
                assert_eq!(d.from, peer, "sent by the peer's host socket");
                assert!(
                    received.insert(parse_app_payload(&d.payload)),
                    "duplicate {d:?}"
                );
            }
            _ => {}
        }
        if !finished && connected.is_some() && received.len() == DATAGRAMS as usize {
            finished = true;
            done.fetch_add(1, Ordering::SeqCst);
        }
    }
    ExchangeReport {
        connected: connected.expect("connected before finishing"),
        selected_at_end: side.ice.selected_path(),
        received,
    }
}

#[test]
fn two_agents_connect_and_exchange_app_data() {
    let (a, b) = Side::pair(AgentConfig::rfc(true), AgentConfig::rfc(false));
    let (addr_a, addr_b) = (a.ice.local_addr(), b.ice.local_addr());
    let done = AtomicUsize::new(0);
    let (report_a, report_b) = thread::scope(|s| {
        let a = s.spawn(|| exchange(a, addr_b, &done));
        let b = s.spawn(|| exchange(b, addr_a, &done));
        (
            a.join().expect("side a panicked"),
            b.join().expect("side b panicked"),
        )
    });
    let all: BTreeSet<u32> = (0..DATAGRAMS).collect();
    for (report, local, remote) in [(&report_a, addr_a, addr_b), (&report_b, addr_b, addr_a)] {
        assert_direct(&report.connected, local, remote);
        assert_eq!(
            report.selected_at_end.map(|p| (p.local, p.remote)),
            Some((local, remote))
        );
        assert_eq!(report.received, all, "every datagram arrived once");
    }
}

#[test]
fn survivor_reports_consent_lost_when_the_peer_is_dropped() {
    let fast_consent = |controlling| AgentConfig {
        consent_interval: Duration::from_millis(200),
        consent_timeout: Duration::from_secs(1),
        ..AgentConfig::rfc(controlling)
    };
    let (survivor, leaver) = Side::pair(fast_consent(true), fast_consent(false));
    let (addr_s, addr_l) = (survivor.ice.local_addr(), leaver.ice.local_addr());
    let connected = AtomicUsize::new(0);
    let stopped_at = OnceLock::new();

    let (survivor_path, lost, lost_at) = thread::scope(|s| {
        let (connected, stopped_at) = (&connected, &stopped_at);
        s.spawn(move || {
            let mut side = leaver;
            let give_up = Instant::now() + PHASE_TIMEOUT;
            let mut kept_until = None;
            loop {
                assert!(Instant::now() < give_up, "leaver never connected");
                if let Some(Output::Event(IceEvent::Connected(p))) = side.step() {
                    assert_direct(&p, addr_l, addr_s);
                    connected.fetch_add(1, Ordering::SeqCst);
                }
                if kept_until.is_none() && connected.load(Ordering::SeqCst) == 2 {
                    kept_until = Some(Instant::now() + KEEP_ALIVE);
                }
                if kept_until.is_some_and(|t| Instant::now() >= t) {
                    break;
                }
            }
            // From here on nothing answers the survivor's consent checks.
            stopped_at.set(Instant::now()).expect("stopped once");
            drop(side);
        });
        let survivor = s.spawn(move || {
            let mut side = survivor;
            let give_up = Instant::now() + 2 * PHASE_TIMEOUT;
            let mut path = None;
            loop {
                assert!(
                    Instant::now() < give_up,
                    "no ConsentLost; connected {path:?}"
                );
                match side.step() {
                    Some(Output::Event(IceEvent::Connected(p))) => {
                        assert_direct(&p, addr_s, addr_l);
                        path = Some(p);
                        connected.fetch_add(1, Ordering::SeqCst);
                    }
                    Some(Output::Event(IceEvent::ConsentLost(p))) => {
                        let at = Instant::now();
                        assert!(
                            stopped_at.get().is_some(),
                            "consent lost while the peer was still answering: {p:?}"
                        );
                        return (path, p, at);
                    }
                    Some(Output::Event(e @ (IceEvent::Failed | IceEvent::PathChanged(_)))) => {
                        panic!("unexpected {e:?}")
                    }
                    _ => {}
                }
            }
        });
        survivor.join().expect("survivor panicked")
    });

    let survivor_path = survivor_path.expect("connected before losing consent");
    assert_eq!(
        lost.local, survivor_path.local,
        "the lost path is the selected one"
    );
    assert_eq!(lost.remote, survivor_path.remote);
    let after_stop = lost_at.duration_since(*stopped_at.get().expect("leaver stopped"));
    println!("consent lost {after_stop:?} after the peer stopped answering");
    // The last answer came at most one jittered interval (240 ms) before the stop, and consent
    // runs out 1 s after it; allow generous scheduling slack above.
    assert!(
        after_stop >= Duration::from_millis(500) && after_stop <= Duration::from_secs(3),
        "consent lost {after_stop:?} after the peer stopped"
    );
}

#[test]
fn bind_sockets_action_opens_distinct_sockets_that_are_read() {
    let host = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let mut ice = IceSocket::bind(host, AgentConfig::rfc(true)).expect("bind");
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
    let mut expected = vec![host];
    expected.extend_from_slice(&bound);
    assert_eq!(ice.local_addrs(), expected.as_slice());

    // Every extra socket is read, and what arrives is reported with its own local address.
    let stranger = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind stranger");
    let stranger_addr = stranger.local_addr().expect("stranger address");
    for (i, &target) in bound.iter().enumerate() {
        stranger
            .send_to(&app_payload(i as u32), target)
            .expect("send to an extra socket");
    }
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + PHASE_TIMEOUT;
    let finished = ice
        .run_until(deadline, |output| {
            if let Output::AppData(d) = output {
                assert_eq!(d.from, stranger_addr);
                let i = parse_app_payload(&d.payload) as usize;
                assert_eq!(d.local, bound[i], "reported on the socket it arrived on");
                seen.insert(i);
            }
            if seen.len() == bound.len() {
                std::ops::ControlFlow::Break(())
            } else {
                std::ops::ControlFlow::Continue(())
            }
        })
        .expect("run");
    assert_eq!(finished, Some(()), "received on {seen:?} only");

    // Nothing is left open once the driver is dropped.
    drop(ice);
    for addr in expected {
        UdpSocket::bind(addr).unwrap_or_else(|e| panic!("{addr} still bound: {e}"));
    }
}

#[test]
fn zero_sockets_and_misuse_are_reported() {
    let host = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let mut ice = IceSocket::bind(host, AgentConfig::rfc(false)).expect("bind");
    assert_eq!(
        ice.perform_action(Action::BindSockets {
            token: holepunch_core::IoToken(0),
            count: 0,
            ip: ice.local_addr().ip()
        })
        .expect("zero sockets"),
        Vec::<SocketAddr>::new()
    );
    assert_eq!(ice.local_addrs().len(), 1);
    let err = ice.send_app(b"app").expect_err("no path yet");
    assert_eq!(err.kind(), io::ErrorKind::NotConnected);
    // With no remote, the only output is the host candidate, then nothing until the timeout.
    let first = ice.step(Duration::from_millis(50)).expect("step");
    assert!(
        matches!(first, Some(Output::Event(IceEvent::LocalCandidate(c))) if c.address == ice.local_addr()),
        "{first:?}"
    );
    assert_eq!(ice.step(Duration::ZERO).expect("step"), None);

    let unspecified = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
    let err = IceSocket::bind(unspecified, AgentConfig::rfc(true)).expect_err("unspecified");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}
