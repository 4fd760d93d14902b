//! Two [`holepunch_core::Agent`]s over loopback UDP, pumped by a hand-written `std` loop: what embedding the
//! core in your own event loop takes, without any holepunch driver.
//!
//! The loop is the contract of design.md §4: feed every input (datagrams, timeouts), then drain
//! every output (transmits, events, actions), then sleep until the deadline. Signalling (the
//! peer's credentials and candidates) is a function call here; in an application it is
//! whatever channel the two sides already share.
//!
//! Run it with `cargo run -p holepunch-core --example custom_loop`; `core/tests/custom_loop.rs`
//! runs it in the tests.
#![allow(clippy::unwrap_used)]

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration as StdDuration;

use holepunch_core::ice::agent::{AgentConfig, IceEvent};
use holepunch_core::{Agent, Datagram, Event, Instant, Received};

/// One side: its agent and its one UDP socket.
struct Side {
    agent: Agent,
    socket: UdpSocket,
    local: SocketAddr,
    /// Candidates to signal to the peer, and whether gathering ended.
    outbox: Vec<IceEvent>,
    connected: Option<SocketAddr>,
    received: Vec<Vec<u8>>,
}

impl Side {
    fn new(controlling: bool, seed: u64, now: Instant) -> std::io::Result<Side> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_nonblocking(true)?;
        let local = socket.local_addr()?;
        let mut agent = Agent::new(AgentConfig::aggressive(controlling), seed);
        agent.add_host_candidate(now, local).unwrap();
        agent.gather(now); // no STUN servers configured: gathering ends at once
        Ok(Side {
            agent,
            socket,
            local,
            outbox: Vec::new(),
            connected: None,
            received: Vec::new(),
        })
    }

    /// Inputs: every datagram waiting on the socket, then the timers.
    fn read(&mut self, now: Instant) {
        let mut buf = [0u8; 2048];
        loop {
            match self.socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let d = Datagram::new(self.local, from, &buf[..n]);
                    if let Received::AppData { payload, .. } = self.agent.handle_datagram(now, d) {
                        self.received.push(payload.to_vec());
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => break, // e.g. ICMP port unreachable on loopback: UDP carries on
            }
        }
        self.agent.handle_timeout(now);
    }

    /// Sends application data on the selected path: `send` writes the datagram (wrapped for
    /// the TURN server on a relayed path) and says where it goes.
    fn send(&mut self, now: Instant, payload: &[u8]) {
        let mut out = [0u8; 1500];
        if let Ok(t) = self.agent.send(now, payload, &mut out) {
            let _ = self.socket.send_to(&out[..t.len], t.to);
        }
    }

    /// Outputs: transmits go out on the socket, events are kept for signalling.
    fn drain(&mut self, now: Instant) {
        let mut out = [0u8; 1500];
        while let Some(t) = self.agent.poll_transmit(now, &mut out) {
            let _ = self.socket.send_to(&out[..t.len], t.to); // UDP: the agent retransmits
        }
        while let Some(event) = self.agent.poll_event() {
            // Relay events come only with a TURN server (`add_turn_server`); none here.
            let Event::Ice(event) = event else { continue };
            if let IceEvent::Connected(path) | IceEvent::PathChanged(path) = event {
                self.connected = Some(path.remote);
            }
            self.outbox.push(event);
        }
        // This agent asks for actions only for hard-NAT punching, which loopback never needs.
        while self.agent.poll_action().is_some() {}
    }
}

/// Hands one side's signalling to the other: candidates and end-of-candidates.
fn signal(from: &mut Side, to: &mut Side, now: Instant) {
    for event in from.outbox.drain(..) {
        match event {
            IceEvent::LocalCandidate(c) => to.agent.add_remote_candidate(now, c).unwrap(),
            IceEvent::GatheringComplete => to.agent.end_of_remote_candidates(),
            _ => {}
        }
    }
}

/// Connects two agents over loopback and sends one datagram each way; returns the time it
/// took to connect.
pub fn run() -> Result<StdDuration, String> {
    #[allow(clippy::disallowed_methods)] // the loop is the driver: it owns the clock
    let start = std::time::Instant::now();
    let clock = || Instant::from_micros(start.elapsed().as_micros() as u64);
    let now = clock();
    let mut a = Side::new(true, 1, now).map_err(|e| e.to_string())?;
    let mut b = Side::new(false, 2, now).map_err(|e| e.to_string())?;
    a.agent.set_remote_credentials(b.agent.local_credentials());
    b.agent.set_remote_credentials(a.agent.local_credentials());

    let mut connected_after = None;
    let mut sent = false;
    while start.elapsed() < StdDuration::from_secs(10) {
        let now = clock();
        for side in [&mut a, &mut b] {
            side.read(now);
            side.drain(now);
        }
        signal(&mut a, &mut b, now);
        signal(&mut b, &mut a, now);
        if a.connected.is_some() && b.connected.is_some() {
            connected_after.get_or_insert(start.elapsed());
            if !sent {
                a.send(now, b"\x17hello from A");
                b.send(now, b"\x17hello from B");
                sent = true;
            }
            if !a.received.is_empty() && !b.received.is_empty() {
                break;
            }
        }
        // Sleep until the earliest deadline, but wake for datagrams at least every 2 ms.
        let deadline = [a.agent.poll_timeout(), b.agent.poll_timeout()]
            .into_iter()
            .flatten()
            .map(|d| d.at)
            .min();
        let wait = deadline.map_or(StdDuration::from_millis(2), |at| {
            StdDuration::from_micros(at.as_micros().saturating_sub(clock().as_micros()))
        });
        std::thread::sleep(wait.min(StdDuration::from_millis(2)));
    }
    if a.received.first().map(Vec::as_slice) != Some(b"\x17hello from B")
        || b.received.first().map(Vec::as_slice) != Some(b"\x17hello from A")
    {
        return Err(format!(
            "no exchange: A connected to {:?}, B to {:?}",
            a.connected, b.connected
        ));
    }
    connected_after.ok_or_else(|| "never connected".to_string())
}

#[allow(dead_code)] // the test includes this file as a module and calls `run` itself
fn main() {
    match run() {
        Ok(t) => println!("connected over loopback in {t:?}; one datagram each way"),
        Err(e) => {
            eprintln!("custom_loop: {e}");
            std::process::exit(1);
        }
    }
}
