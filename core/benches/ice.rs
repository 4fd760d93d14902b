//! ICE agent benches: application-data demultiplexing throughput (the ICE session's own, and
//! the composed `holepunch_core::Agent`'s, which drivers pump), and time to connected (in
//! virtual time) for 4 host + 2 srflx candidates a side at 50 ms RTT.
//!
//! Demux is measured against a baseline in the same run: a function that only looks at the
//! first byte, the least any demultiplexer must do. The ratio is printed at the end.
#![allow(clippy::unwrap_used)] // a bench: a panic is the right failure
#![allow(clippy::disallowed_methods)] // benches own the wall clock

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Instant as Wall;

use criterion::{Criterion, Throughput};
use holepunch_core::demux::Received;
use holepunch_core::ice::agent::{Agent, AgentConfig};
use holepunch_core::io::Datagram;
use holepunch_core::time::{Duration, Instant};

#[path = "../tests/support/ice_net.rs"]
mod ice_net;
#[path = "../tests/support/pump.rs"]
mod pump;

fn agent_with_host() -> (Agent, SocketAddr, SocketAddr) {
    let local: SocketAddr = "192.0.2.1:5000".parse().unwrap();
    let peer: SocketAddr = "198.51.100.1:6000".parse().unwrap();
    let mut agent = Agent::new(AgentConfig::aggressive(true), 1);
    agent.add_host_candidate(Instant::ZERO, local).unwrap();
    (agent, local, peer)
}

fn composed_with_host(local: SocketAddr) -> holepunch_core::Agent {
    let mut agent = holepunch_core::Agent::new(AgentConfig::aggressive(true), 1);
    agent.add_host_candidate(Instant::ZERO, local).unwrap();
    agent
}

#[inline(never)]
fn baseline_first_byte(d: &[u8]) -> usize {
    match d.first() {
        Some(0..=3) => 0,
        _ => d.len(),
    }
}

fn ns_per_op(mut f: impl FnMut(), iters: u64) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..9 {
        let t = Wall::now();
        for _ in 0..iters {
            f();
        }
        best = best.min(t.elapsed().as_nanos() as f64 / iters as f64);
    }
    best
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let (mut agent, local, peer) = agent_with_host();
    let payload = vec![0x17u8; 1200];
    let now = Instant::from_millis(1);
    let mut group = c.benchmark_group("ice/demux");
    group.throughput(Throughput::Elements(1));
    group.bench_function("handle_datagram app data", |b| {
        b.iter(|| {
            match agent.handle_datagram(now, Datagram::new(local, peer, black_box(&payload))) {
                Received::AppData { payload, .. } => payload.len(),
                _ => 0,
            }
        })
    });
    let mut composed = composed_with_host(local);
    group.bench_function("composed Agent handle_datagram app data", |b| {
        b.iter(|| {
            match composed.handle_datagram(now, Datagram::new(local, peer, black_box(&payload))) {
                Received::AppData { payload, .. } => payload.len(),
                _ => 0,
            }
        })
    });
    group.bench_function("baseline: first byte only", |b| {
        b.iter(|| baseline_first_byte(black_box(&payload)))
    });
    group.finish();
    c.final_summary();

    // Ratio table measured here, in the same run (best of 9 rounds).
    let ours = ns_per_op(
        || {
            black_box(agent.handle_datagram(now, Datagram::new(local, peer, black_box(&payload))));
        },
        2_000_000,
    );
    let base = ns_per_op(
        || {
            black_box(baseline_first_byte(black_box(&payload)));
        },
        2_000_000,
    );
    let composed_ns = ns_per_op(
        || {
            black_box(
                composed.handle_datagram(now, Datagram::new(local, peer, black_box(&payload))),
            );
        },
        2_000_000,
    );
    println!(
        "\ncomposed Agent demux: handle_datagram {composed_ns:.2} ns/datagram, ratio {:.2}x the baseline, {:.2}x the ICE session's",
        composed_ns / base.max(0.01),
        composed_ns / ours.max(0.01)
    );
    println!(
        "ice demux: handle_datagram {ours:.2} ns/datagram ({:.0} M datagrams/s), baseline {base:.2} ns, ratio {:.2}x",
        1e3 / ours,
        ours / base.max(0.01)
    );

    // Time to connected in virtual time (deterministic), and the wall time to simulate it.
    for (name, config) in [
        (
            "aggressive",
            AgentConfig::aggressive as fn(bool) -> AgentConfig,
        ),
        ("rfc", AgentConfig::rfc),
    ] {
        let rtt = Duration::from_millis(50);
        let wall = Wall::now();
        let mut net = ice_net::Net::new(config, 4, 2, rtt);
        net.signal(1, 0);
        net.run_until(Instant::from_millis(300));
        let learned = net.now;
        net.signal(0, 1);
        net.run_until(learned + Duration::from_secs(10));
        let done = net.sides.iter().filter_map(|s| s.connected_at).max();
        match done {
            Some(d) => println!(
                "time to connected ({name}, 4 host + 2 srflx a side, RTT 50 ms): {:.1} ms virtual = {:.2} RTT after the second side learned the candidates (simulated in {:?})",
                (d - learned).as_secs_f64() * 1e3,
                (d - learned).as_secs_f64() / rtt.as_secs_f64(),
                wall.elapsed()
            ),
            None => println!("time to connected ({name}): did not connect"),
        }
    }
}
