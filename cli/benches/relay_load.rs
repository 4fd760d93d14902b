//! Relay benchmark, run by hand (`cargo bench -p holepunch-cli --bench relay_load`; not in
//! CI): the same TURN client, payload and duration against `holepunch relay` and coturn's
//! `turnserver` on loopback, one after the other, TURN over UDP.
//!
//! Per server:
//! - **throughput**: `FLOWS` allocations, each with a channel bound to its own UDP echo peer,
//!   keep `WINDOW` ChannelData datagrams of `PAYLOAD` bytes in flight for `SECS`: every echo
//!   is replaced at once, one unanswered for `LOST_AFTER` counts as lost and is replaced. A
//!   round trip crosses the relay twice (client → peer, peer → client), so relayed packets/s
//!   is twice the round trips per second. The server's CPU time per relayed packet comes from
//!   /proc.
//! - **added latency**: one allocation, one datagram in flight (no queueing), p50/p99 round
//!   trip minus the same client's direct loopback round trip to the same kind of echo peer.
//! - **memory per allocation**: the server's RSS before and after `ALLOCS` more allocations
//!   (each from its own UDP socket; all kept until the end), divided by `ALLOCS`.
//!
//! The client is holepunch-core's TURN client (`turn::Client`) with blocking std sockets, one
//! thread per flow and one per echo peer. It competes with the server for this machine's
//! cores equally in both runs.
//!
//! Environment: `RELAY_LOAD_SECS` (default 5), `RELAY_LOAD_FLOWS` (4), `RELAY_LOAD_WINDOW`
//! (32), `RELAY_LOAD_PAYLOAD` (bytes, 100), `RELAY_LOAD_ALLOCS` (1000), `RELAY_LOAD_BIN`
//! (another `holepunch` binary to measure instead of this build's).
#![allow(clippy::unwrap_used)] // A hand-run benchmark: failing loudly is the point.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use holepunch_core::io::Datagram;
use holepunch_core::turn::{Client, ClientConfig, ClientEvent, Received, Transport};

const LOST_AFTER: Duration = Duration::from_millis(500);
const USER: &str = "alice";
const PASS: &str = "alicepass";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A free port on loopback (bound, read, released).
fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// User + system CPU time of a process so far, from /proc/PID/stat (clock ticks of 10 ms).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// Resident set size of a process, KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A TURN allocation from its own socket, pumped synchronously.
struct Turn {
    socket: UdpSocket,
    client: Client,
    server: SocketAddr,
    epoch: Instant,
    out: Vec<u8>,
    buf: Vec<u8>,
}

impl Turn {
    fn now(&self) -> holepunch_core::Instant {
        holepunch_core::Instant::from_micros(self.epoch.elapsed().as_micros() as u64)
    }

    /// Allocates on `server` (bounded wait).
    fn allocate(server: SocketAddr, seed: u64) -> Turn {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        let config = ClientConfig::new(server, Transport::Udp, USER, PASS);
        let mut turn = Turn {
            socket,
            client: Client::new(config, seed),
            server,
            epoch: Instant::now(),
            out: vec![0u8; 2048],
            buf: vec![0u8; 2048],
        };
        let now = turn.now();
        turn.client.allocate(now).unwrap();
        turn.pump_until(|e| matches!(e, ClientEvent::Allocated { .. }));
        turn
    }

    /// Permission and channel for `peer`.
    fn bind(&mut self, peer: SocketAddr) {
        let now = self.now();
        self.client.add_peer(now, peer).unwrap();
        self.pump_until(|e| matches!(e, ClientEvent::ChannelBound { .. }));
    }

    fn pump_until(&mut self, done: impl Fn(&ClientEvent) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = self.now();
            while let Some(t) = self.client.poll_transmit(now, &mut self.out) {
                self.socket.send_to(&self.out[..t.len], t.to).unwrap();
            }
            if let Ok((n, from)) = self.socket.recv_from(&mut self.buf) {
                let now = self.now();
                let local = self.socket.local_addr().unwrap();
                let d = Datagram::new(local, from, &self.buf[..n]);
                let _ = self.client.handle_datagram(now, d);
            }
            let now = self.now();
            if self.client.poll_timeout().is_some_and(|t| t <= now) {
                self.client.handle_timeout(now);
            }
            while let Some(e) = self.client.poll_event() {
                assert!(!matches!(e, ClientEvent::Failed { .. }), "{e:?}");
                if done(&e) {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "TURN exchange timed out");
        }
    }
}

/// Where a flow's datagrams go: straight to the echo peer, or through a TURN channel to it.
enum Path {
    Direct { socket: UdpSocket, peer: SocketAddr },
    Relayed { turn: Box<Turn>, peer: SocketAddr },
}

impl Path {
    fn send(&mut self, payload: &[u8]) {
        match self {
            Path::Direct { socket, peer } => {
                let _ = socket.send_to(payload, *peer);
            }
            Path::Relayed { turn, peer } => {
                let now = turn.now();
                let t = turn
                    .client
                    .send_to(now, *peer, payload, &mut turn.out)
                    .unwrap();
                let _ = turn.socket.send_to(&turn.out[..t.len], turn.server);
            }
        }
    }

    /// The next echoed payload's sequence number and send time (micros since `epoch`), or
    /// `None` after the socket's read timeout.
    fn recv(&mut self) -> Option<(u64, u64)> {
        match self {
            Path::Direct { socket, .. } => {
                let mut buf = [0u8; 2048];
                let (n, _) = socket.recv_from(&mut buf).ok()?;
                stamp(&buf[..n])
            }
            Path::Relayed { turn, .. } => {
                let (n, from) = turn.socket.recv_from(&mut turn.buf).ok()?;
                let now = turn.now();
                let local = turn.socket.local_addr().ok()?;
                match turn
                    .client
                    .handle_datagram(now, Datagram::new(local, from, &turn.buf[..n]))
                {
                    Received::Data { payload, .. } => stamp(payload),
                    _ => None,
                }
            }
        }
    }
}

fn stamp(payload: &[u8]) -> Option<(u64, u64)> {
    let seq = u64::from_be_bytes(payload.get(..8)?.try_into().ok()?);
    let sent = u64::from_be_bytes(payload.get(8..16)?.try_into().ok()?);
    Some((seq, sent))
}

/// A UDP echo peer on loopback, until `stop`.
fn echo_peer(stop: Arc<AtomicBool>) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let addr = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, from)) = socket.recv_from(&mut buf) {
                let _ = socket.send_to(&buf[..n], from);
            }
        }
    });
    addr
}

#[derive(Default)]
struct Tally {
    rtts_us: Vec<u64>,
    sent: u64,
    lost: u64,
}

/// Closed loop on `path` for `run`: `window` in flight, `payload` bytes each.
fn drive(path: &mut Path, window: usize, payload: usize, run: Duration, epoch: Instant) -> Tally {
    let mut tally = Tally::default();
    let mut in_flight: HashMap<u64, Instant> = HashMap::with_capacity(window * 2);
    let mut data = vec![0u8; payload.max(16)];
    let mut seq = 0u64;
    let end = Instant::now() + run;
    let mut sweep = Instant::now() + LOST_AFTER;
    while Instant::now() < end {
        while in_flight.len() < window {
            seq += 1;
            let now = Instant::now();
            data[..8].copy_from_slice(&seq.to_be_bytes());
            let t = (now - epoch).as_micros() as u64;
            data[8..16].copy_from_slice(&t.to_be_bytes());
            path.send(&data);
            in_flight.insert(seq, now);
            tally.sent += 1;
        }
        if let Some((s, sent_us)) = path.recv() {
            if in_flight.remove(&s).is_some() {
                let now_us = epoch.elapsed().as_micros() as u64;
                tally.rtts_us.push(now_us.saturating_sub(sent_us));
            }
        }
        if Instant::now() >= sweep {
            let now = Instant::now();
            let before = in_flight.len();
            in_flight.retain(|_, t| now - *t < LOST_AFTER);
            tally.lost += (before - in_flight.len()) as u64;
            sweep = now + LOST_AFTER / 4;
        }
    }
    // Still in flight at the end: neither answered nor lost.
    tally.sent -= in_flight.len() as u64;
    tally
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

struct Figures {
    relayed_pps: f64,
    cpu_us_per_packet: f64,
    loss: f64,
    p50_us: u64,
    p99_us: u64,
    kib_per_alloc: f64,
}

struct Config {
    secs: u64,
    flows: usize,
    window: usize,
    payload: usize,
    allocs: usize,
}

/// Direct loopback round trips: p50, p99 (µs), one in flight.
fn direct_latency(cfg: &Config) -> (u64, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let peer = echo_peer(Arc::clone(&stop));
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    let run = Duration::from_secs(cfg.secs.div_ceil(2).max(1));
    let mut t = drive(
        &mut Path::Direct { socket, peer },
        1,
        cfg.payload,
        run,
        Instant::now(),
    );
    stop.store(true, Ordering::Relaxed);
    t.rtts_us.sort_unstable();
    (percentile(&t.rtts_us, 0.5), percentile(&t.rtts_us, 0.99))
}

fn measure(pid: u32, server: SocketAddr, cfg: &Config) -> Figures {
    let stop = Arc::new(AtomicBool::new(false));
    // Latency: one allocation, one in flight.
    let peer = echo_peer(Arc::clone(&stop));
    let mut turn = Turn::allocate(server, 1);
    turn.bind(peer);
    let run = Duration::from_secs(cfg.secs.div_ceil(2).max(1));
    // Every socket is kept until the end: a closed one's port, given to a later socket, would
    // meet its still-live allocation (437 Allocation Mismatch).
    let mut lat_path = Path::Relayed {
        turn: Box::new(turn),
        peer,
    };
    let mut lat = drive(&mut lat_path, 1, cfg.payload, run, Instant::now());
    lat.rtts_us.sort_unstable();

    // Throughput: FLOWS allocations in parallel.
    let mut paths = Vec::new();
    for i in 0..cfg.flows {
        let peer = echo_peer(Arc::clone(&stop));
        let mut turn = Turn::allocate(server, 100 + i as u64);
        turn.bind(peer);
        paths.push(Path::Relayed {
            turn: Box::new(turn),
            peer,
        });
    }
    let cpu_before = cpu_time(pid);
    let started = Instant::now();
    let run = Duration::from_secs(cfg.secs);
    let handles: Vec<_> = paths
        .into_iter()
        .map(|p| {
            let (window, payload) = (cfg.window, cfg.payload);
            std::thread::spawn(move || {
                let mut p = p;
                let t = drive(&mut p, window, payload, run, Instant::now());
                (p, t)
            })
        })
        .collect();
    let (paths, tallies): (Vec<Path>, Vec<Tally>) =
        handles.into_iter().map(|h| h.join().unwrap()).unzip();
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = (cpu_time(pid) - cpu_before).as_secs_f64();
    let echoed: u64 = tallies.iter().map(|t| t.rtts_us.len() as u64).sum();
    let sent: u64 = tallies.iter().map(|t| t.sent).sum();
    let lost: u64 = tallies.iter().map(|t| t.lost).sum();
    let relayed = 2 * echoed;

    // Memory: ALLOCS more allocations, each from its own socket, all kept.
    std::thread::sleep(Duration::from_millis(300));
    let rss_before = rss_kib(pid);
    let kept: Vec<Turn> = (0..cfg.allocs)
        .map(|i| Turn::allocate(server, 10_000 + i as u64))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let rss_after = rss_kib(pid);
    drop((kept, paths, lat_path));
    stop.store(true, Ordering::Relaxed);

    Figures {
        relayed_pps: relayed as f64 / elapsed,
        cpu_us_per_packet: cpu * 1e6 / relayed.max(1) as f64,
        loss: lost as f64 / sent.max(1) as f64,
        p50_us: percentile(&lat.rtts_us, 0.5),
        p99_us: percentile(&lat.rtts_us, 0.99),
        kib_per_alloc: rss_after.saturating_sub(rss_before) as f64 / cfg.allocs.max(1) as f64,
    }
}

fn print(name: &str, f: &Figures, direct: (u64, u64)) {
    println!(
        "{name:<20} {:>9.0} relayed pkt/s  {:>5.2} µs CPU/pkt  loss {:.3}%  RTT p50 {} µs (+{}) p99 {} µs (+{})  {:.1} KiB/allocation",
        f.relayed_pps,
        f.cpu_us_per_packet,
        f.loss * 100.0,
        f.p50_us,
        f.p50_us.saturating_sub(direct.0),
        f.p99_us,
        f.p99_us.saturating_sub(direct.1),
        f.kib_per_alloc,
    );
}

/// A server started here: killed (by its own handle) and reaped when dropped, a panic
/// included, so a failed run leaves no server behind.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits (bounded) until a TURN server answers an Allocate.
fn wait_ready(server: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ok = std::panic::catch_unwind(|| {
            let mut t = Turn::allocate(server, 7);
            let now = t.now();
            // Released, so a later socket that gets this port is not a 437 mismatch.
            t.client.close(now);
            t.pump_until(|e| matches!(e, ClientEvent::Deallocated));
        });
        if ok.is_ok() {
            return;
        }
        assert!(Instant::now() < deadline, "{server} never answered");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn main() {
    let cfg = Config {
        secs: env_or("RELAY_LOAD_SECS", 5),
        flows: env_or("RELAY_LOAD_FLOWS", 4) as usize,
        window: env_or("RELAY_LOAD_WINDOW", 32) as usize,
        payload: env_or("RELAY_LOAD_PAYLOAD", 100).max(16) as usize,
        allocs: env_or("RELAY_LOAD_ALLOCS", 1000) as usize,
    };
    println!(
        "relay load: TURN over UDP on loopback, {} flows x {} in flight, {}-byte payloads, {} s per server; latency with 1 in flight; memory over {} allocations",
        cfg.flows, cfg.window, cfg.payload, cfg.secs, cfg.allocs
    );
    let direct = direct_latency(&cfg);
    println!(
        "{:<20} RTT p50 {} µs p99 {} µs",
        "direct loopback", direct.0, direct.1
    );

    let port = free_port();
    let bin =
        std::env::var("RELAY_LOAD_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_holepunch").into());
    let quota = (cfg.allocs + cfg.flows + 16).to_string();
    let child = Server(
        Command::new(bin)
            .args(["relay", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--relay-ip", "127.0.0.1", "--allow-peer", "127.0.0.0/8"])
            .args(["--user", &format!("{USER}:{PASS}"), "--realm", "bench"])
            .args(["--user-quota", &quota, "--max-allocations", &quota])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let server = SocketAddr::from(([127, 0, 0, 1], port));
    wait_ready(server);
    let ours = measure(child.0.id(), server, &cfg);
    drop(child);
    print("holepunch relay", &ours, direct);

    let dir: PathBuf =
        std::env::temp_dir().join(format!("relay-load-coturn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let coturn = Command::new("turnserver")
        .arg("-n")
        .arg(format!("--listening-port={port}"))
        .args([
            "--listening-ip=127.0.0.1",
            "--relay-ip=127.0.0.1",
            "--lt-cred-mech",
            "--realm=bench",
            "--allow-loopback-peers",
            "--no-tls",
            "--no-dtls",
            "--no-cli",
            "--no-stdout-log",
            "--simple-log",
            "--min-port=20000",
            "--max-port=60000",
        ])
        .arg(format!("--user={USER}:{PASS}"))
        .arg(format!("--log-file={}", dir.join("turn.log").display()))
        .arg(format!("--pidfile={}", dir.join("turn.pid").display()))
        .arg(format!("--userdb={}", dir.join("turndb.sqlite").display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match coturn {
        Ok(child) => {
            let child = Server(child);
            let server = SocketAddr::from(([127, 0, 0, 1], port));
            wait_ready(server);
            let theirs = measure(child.0.id(), server, &cfg);
            drop(child);
            print("coturn turnserver", &theirs, direct);
            println!(
                "ratio vs coturn: {:.2}x relayed pkt/s, {:.2}x CPU per packet, p50 added latency {} vs {} µs, {:.2}x memory per allocation",
                ours.relayed_pps / theirs.relayed_pps.max(1.0),
                ours.cpu_us_per_packet / theirs.cpu_us_per_packet.max(1e-9),
                ours.p50_us.saturating_sub(direct.0),
                theirs.p50_us.saturating_sub(direct.0),
                ours.kib_per_alloc / theirs.kib_per_alloc.max(1e-9),
            );
        }
        Err(e) => println!("coturn: not run ({e})"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}
