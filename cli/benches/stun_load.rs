//! Load benchmark, run by hand (`cargo bench --release -p holepunch-cli --bench stun_load`; not
//! in CI): the same closed-loop load generator against `holepunch stun-server` and coturn's
//! `turnserver --stun-only` on loopback, one after the other.
//!
//! The generator keeps `SOURCES × WINDOW` bare 20-byte Binding requests in flight from
//! `SOURCES` sockets (one thread each, each on its own loopback address) for `RUN`: every answer is timed and replaced at once, a
//! request unanswered for `LOST_AFTER` counts as lost and is replaced. That keeps the server
//! saturated with a standing queue bigger than Linux's default receive buffer holds. Reported
//! per server: answers per second, CPU microseconds per answer (the server process's user +
//! system time from /proc), p50/p99 latency, and loss. Both servers serve one address (no RFC
//! 5780), so every request deserves an answer.
//!
//! Environment: `STUN_LOAD_SECS` (default 5), `STUN_LOAD_SOURCES` (8), `STUN_LOAD_WINDOW` (64),
//! `STUN_LOAD_THREADS` (our `--threads`, default: one per core), `STUN_LOAD_BIN` (another
//! `holepunch` binary to measure instead of this build's).
#![allow(clippy::unwrap_used)] // A hand-run benchmark: failing loudly is the point.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LOST_AFTER: Duration = Duration::from_millis(500);

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A free UDP port on loopback (bound, read, released).
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
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// Waits until `target` answers a Binding request (bounded).
fn wait_ready(target: SocketAddr) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        s.send_to(&request(u64::MAX), target).unwrap();
        let mut buf = [0u8; 512];
        if s.recv(&mut buf).is_ok() {
            return;
        }
    }
    panic!("{target} does not answer");
}

/// A bare Binding request whose transaction ID carries `seq`.
fn request(seq: u64) -> [u8; 20] {
    let mut req = [0u8; 20];
    req[1] = 1;
    req[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
    req[12..20].copy_from_slice(&seq.to_be_bytes());
    req
}

#[derive(Default)]
struct Tally {
    sent: u64,
    answered: u64,
    lost: u64,
    latencies_us: Vec<u32>,
}

/// Source number `index` (on its own loopback address, 127.0.1.`index`, as distinct clients
/// would be): `window` requests in flight until `end`.
fn source(index: usize, target: SocketAddr, window: usize, end: Instant) -> Tally {
    let s = UdpSocket::bind(SocketAddr::from(([127, 0, 1, index as u8 + 1], 0))).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let mut t = Tally::default();
    // Send times by sequence number; a slot is free when None.
    let mut in_flight: Vec<Option<(u64, Instant)>> = vec![None; window];
    let mut seq = 0u64;
    let mut send = |slot: usize, in_flight: &mut Vec<Option<(u64, Instant)>>, t: &mut Tally| {
        let id = (seq << 16) | slot as u64;
        seq += 1;
        in_flight[slot] = Some((id, Instant::now()));
        let _ = s.send_to(&request(id), target);
        t.sent += 1;
    };
    for slot in 0..window {
        send(slot, &mut in_flight, &mut t);
    }
    let mut buf = [0u8; 512];
    while Instant::now() < end {
        match s.recv(&mut buf) {
            Ok(n) if n >= 20 => {
                let id = u64::from_be_bytes(buf[12..20].try_into().unwrap());
                let slot = (id & 0xffff) as usize;
                if let Some(Some((want, at))) = in_flight.get(slot).copied() {
                    if want == id {
                        t.answered += 1;
                        t.latencies_us.push(at.elapsed().as_micros() as u32);
                        send(slot, &mut in_flight, &mut t);
                    }
                }
            }
            _ => {}
        }
        // Requests unanswered for too long are lost: replace them.
        let now = Instant::now();
        for slot in 0..window {
            if in_flight[slot].is_some_and(|(_, at)| now - at > LOST_AFTER) {
                t.lost += 1;
                send(slot, &mut in_flight, &mut t);
            }
        }
    }
    // Whatever is still in flight gets one more LOST_AFTER to arrive.
    let drain_end = Instant::now() + LOST_AFTER;
    while Instant::now() < drain_end && in_flight.iter().any(Option::is_some) {
        if let Ok(n) = s.recv(&mut buf) {
            if n >= 20 {
                let id = u64::from_be_bytes(buf[12..20].try_into().unwrap());
                let slot = (id & 0xffff) as usize;
                if in_flight
                    .get(slot)
                    .copied()
                    .flatten()
                    .is_some_and(|(w, _)| w == id)
                {
                    in_flight[slot] = None;
                    t.answered += 1;
                }
            }
        }
    }
    t.lost += in_flight.iter().filter(|s| s.is_some()).count() as u64;
    t
}

struct Figures {
    rps: f64,
    cpu_us: f64,
    p50_us: u32,
    p99_us: u32,
    loss: f64,
    sent: u64,
}

fn load(pid: u32, target: SocketAddr, secs: u64, sources: usize, window: usize) -> Figures {
    wait_ready(target);
    let cpu0 = cpu_time(pid);
    let started = Instant::now();
    let end = started + Duration::from_secs(secs);
    let tallies: Vec<Tally> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..sources)
            .map(|i| s.spawn(move || source(i, target, window, end)))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_time(pid) - cpu0;
    let mut lat: Vec<u32> = tallies
        .iter()
        .flat_map(|t| t.latencies_us.iter().copied())
        .collect();
    lat.sort_unstable();
    let answered: u64 = tallies.iter().map(|t| t.answered).sum();
    let sent: u64 = tallies.iter().map(|t| t.sent).sum();
    let lost: u64 = tallies.iter().map(|t| t.lost).sum();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    Figures {
        rps: answered as f64 / elapsed,
        cpu_us: cpu.as_secs_f64() * 1e6 / answered.max(1) as f64,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        loss: lost as f64 / sent.max(1) as f64,
        sent,
    }
}

fn print(name: &str, f: &Figures) {
    println!(
        "{name:<28} {:>10.0} answers/s  {:>6.2} µs CPU/answer  p50 {:>6} µs  p99 {:>6} µs  loss {:.3}% of {}",
        f.rps,
        f.cpu_us,
        f.p50_us,
        f.p99_us,
        f.loss * 100.0,
        f.sent
    );
}

/// Kills a child started here (by its own handle) and reaps it.
fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn main() {
    let secs = env_or("STUN_LOAD_SECS", 5);
    let sources = env_or("STUN_LOAD_SOURCES", 8) as usize;
    let window = env_or("STUN_LOAD_WINDOW", 64) as usize;
    println!(
        "stun load: {sources} sources x {window} in flight, {secs} s per server, loopback, bare 20-byte requests"
    );

    let port = free_port();
    // STUN_LOAD_BIN compares another build (an older `holepunch`, say).
    let bin =
        std::env::var("STUN_LOAD_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_holepunch").into());
    let mut ours = Command::new(bin);
    ours.args(["stun-server", "--listen", &format!("127.0.0.1:{port}")]);
    if let Ok(t) = std::env::var("STUN_LOAD_THREADS") {
        ours.args(["--threads", &t]);
    }
    let child = ours.stderr(Stdio::null()).spawn().unwrap();
    let pid = child.id();
    let f = load(
        pid,
        SocketAddr::from(([127, 0, 0, 1], port)),
        secs,
        sources,
        window,
    );
    stop(child);
    print("holepunch stun-server", &f);

    let dir: PathBuf =
        std::env::temp_dir().join(format!("stun-load-coturn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let coturn = Command::new("turnserver")
        .arg("-n")
        .arg(format!("--listening-port={port}"))
        .args([
            "--listening-ip=127.0.0.1",
            "--stun-only",
            "--no-tls",
            "--no-dtls",
            "--no-cli",
        ])
        .args(["--no-stdout-log", "--simple-log"])
        .arg(format!(
            "--log-file={}",
            dir.join("turnserver.log").display()
        ))
        .arg(format!(
            "--pidfile={}",
            dir.join("turnserver.pid").display()
        ))
        .arg(format!("--userdb={}", dir.join("turndb.sqlite").display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match coturn {
        Ok(child) => {
            let pid = child.id();
            let g = load(
                pid,
                SocketAddr::from(([127, 0, 0, 1], port)),
                secs,
                sources,
                window,
            );
            stop(child);
            print("coturn turnserver", &g);
            println!(
                "ratio: {:.2}x coturn's answers/s, {:.2}x less CPU per answer",
                f.rps / g.rps.max(1.0),
                g.cpu_us / f.cpu_us.max(1e-9)
            );
        }
        Err(e) => println!("coturn: not run ({e})"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}
