//! One pump for the wire tests: ICE agents (one or two) and a simulated wire, in virtual time.
//!
//! Each wire test used to hand-write the same loop: drain every agent's transmits and events,
//! jump to the earliest timer or arrival, deliver what is due, fire the timers, and give up
//! after a bounded number of steps. That loop lives here once; a test says only what is its
//! own, through [`Pumped`]: what becomes of a datagram an agent sent (put on the [`Wire`],
//! dropped, answered by a scripted network, logged), what it records of an event, and how a
//! due datagram reaches an agent.
#![allow(dead_code, clippy::unwrap_used)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;

use holepunch_core::ice::agent::{Agent, IceEvent};
use holepunch_core::io::{Datagram, Transmit};
use holepunch_core::time::Instant;

/// How many steps a run may take before the simulation is declared stuck.
pub const STEPS: usize = 1_000_000;

/// A datagram in flight: delivery time, then sequence (a stable order for equal times), then
/// the side it is for and the datagram.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
pub struct Flight {
    pub at: Instant,
    pub seq: u64,
    /// The side (index into the agents) it is delivered to.
    pub to_side: usize,
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub bytes: Vec<u8>,
}

/// The datagrams in flight, earliest first.
#[derive(Default)]
pub struct Wire {
    flights: BinaryHeap<Reverse<Flight>>,
    seq: u64,
}

impl Wire {
    /// Puts a datagram on the wire, to be delivered to `to_side` at `at`.
    pub fn send(
        &mut self,
        at: Instant,
        to_side: usize,
        from: SocketAddr,
        to: SocketAddr,
        bytes: Vec<u8>,
    ) {
        self.seq += 1;
        self.flights.push(Reverse(Flight {
            at,
            seq: self.seq,
            to_side,
            from,
            to,
            bytes,
        }));
    }

    /// When the next datagram arrives, if any is in flight.
    pub fn next_at(&self) -> Option<Instant> {
        self.flights.peek().map(|f| f.0.at)
    }

    /// The next datagram due by `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Flight> {
        if self.next_at()? > now {
            return None;
        }
        self.flights.pop().map(|f| f.0)
    }
}

/// A test's world as the pump sees it: its agents, its clock, its wire and its rules.
pub trait Pumped {
    /// How many agents there are (sides `0..sides()`): two unless said otherwise.
    fn sides(&self) -> usize {
        2
    }
    /// Side `side`'s agent.
    fn agent(&mut self, side: usize) -> &mut Agent;
    /// The virtual clock and the datagrams in flight.
    fn clock_and_wire(&mut self) -> (&mut Instant, &mut Wire);
    /// The virtual clock.
    fn now(&mut self) -> &mut Instant {
        self.clock_and_wire().0
    }
    /// The datagrams in flight.
    fn wire(&mut self) -> &mut Wire {
        self.clock_and_wire().1
    }
    /// What becomes of a datagram `side` sent (`bytes` is the transmit's payload).
    fn on_transmit(&mut self, side: usize, t: Transmit, bytes: &[u8]);
    /// What the test keeps of an event `side` reported.
    fn on_event(&mut self, side: usize, event: IceEvent);
    /// After `side`'s transmits and events are drained: anything else to drain (actions).
    fn after_drain(&mut self, _side: usize) {}
    /// A due datagram reaches its side's agent on `flight.to`.
    fn deliver(&mut self, flight: Flight) {
        let now = *self.now();
        let _ = self
            .agent(flight.to_side)
            .handle_datagram(now, Datagram::new(flight.to, flight.from, &flight.bytes));
    }
    /// Ends the run early (before the clock moves) once this holds.
    fn done(&self) -> bool {
        false
    }
    /// Sees each step's choice of the next instant (`next`), the next arrival (`next_packet`)
    /// and whether the drain before it moved anything: where a test checks the loop itself.
    fn on_step(&mut self, _next: Instant, _next_packet: Instant, _progress: bool) {}
}

/// Drains every agent's transmits and events, in side order; whether anything came out.
pub fn drain<P: Pumped + ?Sized>(p: &mut P) -> bool {
    let mut buf = [0u8; 1500];
    let mut progress = false;
    let now = *p.now();
    for side in 0..p.sides() {
        while let Some(t) = p.agent(side).poll_transmit(now, &mut buf) {
            progress = true;
            p.on_transmit(side, t, &buf[..t.len]);
        }
        while let Some(e) = p.agent(side).poll_event() {
            progress = true;
            p.on_event(side, e);
        }
        p.after_drain(side);
    }
    progress
}

/// Runs until `until` (or [`Pumped::done`]): drain, jump to the earliest timer or arrival,
/// deliver what is due, fire the timers. Bounded in [`STEPS`].
pub fn run_until<P: Pumped + ?Sized>(p: &mut P, until: Instant) {
    for _ in 0..STEPS {
        let progress = drain(p);
        if p.done() {
            return;
        }
        let next_timer = (0..p.sides())
            .filter_map(|side| p.agent(side).poll_timeout())
            .min()
            .unwrap_or(Instant::FAR_FUTURE);
        let next_packet = p.wire().next_at().unwrap_or(Instant::FAR_FUTURE);
        let now = *p.now();
        let next = next_timer.min(next_packet).max(now);
        p.on_step(next, next_packet, progress);
        if next > until {
            *p.now() = until;
            return;
        }
        *p.now() = next;
        while let Some(f) = p.wire().pop_due(next) {
            p.deliver(f);
        }
        for side in 0..p.sides() {
            p.agent(side).handle_timeout(next);
        }
    }
    panic!("simulation did not converge");
}
