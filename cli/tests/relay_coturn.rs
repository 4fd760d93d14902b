//! TURN interop and relay security on loopback: our core client through coturn's `turnserver`
//! and through `holepunch relay`, coturn's `turnutils_uclient` through `holepunch relay`, the
//! default peer deny list, a flood of malformed input, and SIGINT.
//!
//! Needs coturn (`turnserver`, `turnutils_uclient`, `turnutils_peer`) on PATH; without it the
//! coturn tests print why they skip, or fail under `CI=true`.
mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use holepunch_core::Instant;
use holepunch_core::turn::channel::frame_len;
use holepunch_core::turn::{Client, ClientConfig, ClientEvent, Received, Transport, TurnError};
use support::{Proc, TempDir, free_port, holepunch, run_bounded};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const LIMIT: Duration = Duration::from_secs(15);

fn coturn_installed() -> bool {
    let missing: Vec<&str> = ["turnserver", "turnutils_uclient", "turnutils_peer"]
        .into_iter()
        .filter(|p| !support::on_path(p))
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        !support::is_ci(),
        "CI=true: coturn is required but {missing:?} not on PATH (scripts/test.sh installs it)"
    );
    println!("skipped: coturn not installed (apt-get install coturn)");
    false
}

/// coturn's `turnserver` with long-term credentials on loopback, relaying to loopback peers.
struct Coturn {
    addr: SocketAddr,
    _proc: Proc,
    _dir: TempDir,
}

impl Coturn {
    fn start() -> Coturn {
        let dir = TempDir::new("holepunch-coturn-turn");
        let port = free_port(LOCALHOST);
        let mut cmd = std::process::Command::new("turnserver");
        cmd.arg("-n")
            .arg(format!("--listening-port={port}"))
            .args([
                "--listening-ip=127.0.0.1",
                "--relay-ip=127.0.0.1",
                "--lt-cred-mech",
                "--user=alice:alicepass",
                "--realm=lab.test",
                "--fingerprint",
                "--allow-loopback-peers",
                "--no-tls",
                "--no-dtls",
                "--no-cli",
                "--simple-log",
                "--no-stdout-log",
                "--min-port=49152",
                "--max-port=65535",
            ])
            .arg(format!(
                "--log-file={}",
                dir.path().join("turn.log").display()
            ))
            .arg(format!(
                "--pidfile={}",
                dir.path().join("turn.pid").display()
            ))
            .arg(format!(
                "--userdb={}",
                dir.path().join("turndb.sqlite").display()
            ));
        let proc = Proc::spawn("turnserver", &mut cmd);
        let addr = SocketAddr::new(LOCALHOST, port);
        wait_tcp(addr);
        Coturn {
            addr,
            _proc: proc,
            _dir: dir,
        }
    }
}

/// `holepunch relay` on loopback.
struct Relay {
    addr: SocketAddr,
    proc: Proc,
}

impl Relay {
    fn start(extra: &[&str]) -> Relay {
        let port = free_port(LOCALHOST);
        let addr = SocketAddr::new(LOCALHOST, port);
        let mut cmd = holepunch();
        cmd.args([
            "relay",
            "--listen",
            &addr.to_string(),
            "--relay-ip",
            "127.0.0.1",
        ])
        .args(["--user", "alice:alicepass", "--realm", "lab.test"])
        .args(extra);
        let mut proc = Proc::spawn("holepunch relay", &mut cmd);
        proc.wait_for_lines("relay: listening on udp and tcp", 1, LIMIT);
        Relay { addr, proc }
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.proc.pid()))
            .expect("relay status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }
}

fn wait_tcp(addr: SocketAddr) {
    let deadline = std::time::Instant::now() + LIMIT;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "{addr} never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The server side of our core client: one UDP socket or TCP stream, pumped in real time.
enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream, Vec<u8>, usize),
}

struct TurnPump {
    client: Client,
    conn: Conn,
    server: SocketAddr,
    epoch: std::time::Instant,
    events: Vec<ClientEvent>,
    data: Vec<(SocketAddr, Vec<u8>)>,
}

impl TurnPump {
    fn new(server: SocketAddr, transport: Transport, pass: &str) -> TurnPump {
        let conn = match transport {
            Transport::Udp => {
                let s = UdpSocket::bind((LOCALHOST, 0)).expect("bind");
                s.set_read_timeout(Some(Duration::from_millis(10)))
                    .expect("timeout");
                Conn::Udp(s)
            }
            _ => {
                let s = TcpStream::connect(server).expect("connect");
                s.set_read_timeout(Some(Duration::from_millis(10)))
                    .expect("timeout");
                s.set_nodelay(true).expect("nodelay");
                Conn::Tcp(s, vec![0; 70_000], 0)
            }
        };
        let config = ClientConfig::new(server, transport, "alice", pass);
        let mut pump = TurnPump {
            client: Client::new(config, 42),
            conn,
            server,
            epoch: std::time::Instant::now(),
            events: Vec::new(),
            data: Vec::new(),
        };
        let now = pump.now();
        pump.client.allocate(now).expect("allocate");
        pump
    }

    fn now(&self) -> Instant {
        Instant::from_micros(self.epoch.elapsed().as_micros() as u64)
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        match &mut self.conn {
            Conn::Udp(s) => {
                s.send_to(bytes, self.server).expect("send");
            }
            Conn::Tcp(s, _, _) => s.write_all(bytes).expect("write"),
        }
    }

    /// One round: flush, receive for up to 10 ms, run timers.
    fn step(&mut self) {
        let mut out = vec![0u8; 2_000];
        let now = self.now();
        while let Some(t) = self.client.poll_transmit(now, &mut out) {
            let bytes = out[..t.len].to_vec();
            self.send_raw(&bytes);
        }
        let mut frames: Vec<Vec<u8>> = Vec::new();
        match &mut self.conn {
            Conn::Udp(s) => {
                let mut buf = vec![0u8; 70_000];
                if let Ok((n, from)) = s.recv_from(&mut buf) {
                    if from == self.server {
                        frames.push(buf[..n].to_vec());
                    }
                }
            }
            Conn::Tcp(s, buf, filled) => {
                if let Ok(n) = s.read(&mut buf[*filled..]) {
                    *filled += n;
                }
                let mut start = 0;
                while let Ok(Some(f)) = frame_len(&buf[start..*filled]) {
                    if *filled - start < f.len() {
                        break;
                    }
                    frames.push(buf[start..start + f.len()].to_vec());
                    start += f.len();
                }
                buf.copy_within(start..*filled, 0);
                *filled -= start;
            }
        }
        for frame in frames {
            let now = self.now();
            if let Received::Data { peer, payload } =
                self.client.handle_datagram(now, self.server, &frame)
            {
                self.data.push((peer, payload.to_vec()));
            }
        }
        let now = self.now();
        if self.client.poll_timeout().is_some_and(|t| t <= now) {
            self.client.handle_timeout(now);
        }
        while let Some(e) = self.client.poll_event() {
            self.events.push(e);
        }
    }

    fn run_until(&mut self, what: &str, done: impl Fn(&TurnPump) -> bool) {
        let deadline = std::time::Instant::now() + LIMIT;
        while !done(self) {
            assert!(
                std::time::Instant::now() < deadline,
                "{what} did not happen; events {:?}",
                self.events
            );
            self.step();
        }
    }

    fn relayed(&self) -> Option<SocketAddr> {
        self.events.iter().find_map(|e| match e {
            ClientEvent::Allocated { relayed, .. } => Some(*relayed),
            _ => None,
        })
    }

    fn send(&mut self, peer: SocketAddr, payload: &[u8]) {
        let mut out = vec![0u8; 2_000];
        let t = self
            .client
            .send_to(peer, payload, &mut out)
            .expect("send_to");
        let bytes = out[..t.len].to_vec();
        self.send_raw(&bytes);
    }
}

/// Allocates, binds a channel to a local peer, and echoes both ways through `server`.
fn exchange_through(server: SocketAddr, transport: Transport) {
    let peer = UdpSocket::bind((LOCALHOST, 0)).expect("peer");
    peer.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let peer_addr = peer.local_addr().expect("addr");
    let mut turn = TurnPump::new(server, transport, "alicepass");
    turn.run_until("allocation", |t| t.relayed().is_some());
    let relayed = turn.relayed().expect("relayed");
    let now = turn.now();
    turn.client.add_peer(now, peer_addr).expect("peer");
    turn.run_until("channel bind", |t| {
        t.events
            .iter()
            .any(|e| matches!(e, ClientEvent::ChannelBound { .. }))
    });
    assert!(turn.client.channel(peer_addr).is_some());
    for i in 0..5u8 {
        let msg = [b'p', b'i', b'n', b'g', i];
        turn.send(peer_addr, &msg);
        let mut buf = [0u8; 100];
        let (n, from) = peer
            .recv_from(&mut buf)
            .expect("peer receives through the relay");
        assert_eq!((from, &buf[..n]), (relayed, &msg[..]));
        peer.send_to(&[b'p', b'o', b'n', b'g', i], relayed)
            .expect("reply");
        turn.run_until("reply", |t| t.data.len() > usize::from(i));
        assert_eq!(
            turn.data[usize::from(i)],
            (peer_addr, vec![b'p', b'o', b'n', b'g', i])
        );
    }
    let now = turn.now();
    turn.client.close(now);
    turn.run_until("deallocation", |t| {
        t.events.contains(&ClientEvent::Deallocated)
    });
}

#[test]
fn our_client_allocates_binds_and_exchanges_through_coturn_over_udp_and_tcp() {
    if !coturn_installed() {
        return;
    }
    let coturn = Coturn::start();
    exchange_through(coturn.addr, Transport::Udp);
    exchange_through(coturn.addr, Transport::Tcp);
    let mut wrong = TurnPump::new(coturn.addr, Transport::Udp, "wrong");
    wrong.run_until("refusal", |t| !t.events.is_empty());
    assert_eq!(
        wrong.events,
        vec![ClientEvent::Failed {
            error: TurnError::Unauthorized
        }]
    );
}

#[test]
fn our_client_allocates_binds_and_exchanges_through_holepunch_relay() {
    let relay = Relay::start(&["--allow-peer", "127.0.0.0/8"]);
    exchange_through(relay.addr, Transport::Udp);
    exchange_through(relay.addr, Transport::Tcp);
    let mut wrong = TurnPump::new(relay.addr, Transport::Tcp, "wrong");
    wrong.run_until("refusal", |t| !t.events.is_empty());
    assert_eq!(
        wrong.events,
        vec![ClientEvent::Failed {
            error: TurnError::Unauthorized
        }]
    );
}

fn uclient(relay: SocketAddr, peer_port: u16, tcp: bool, pass: &str) -> support::Output {
    let mut cmd = std::process::Command::new("turnutils_uclient");
    if tcp {
        cmd.arg("-t");
    }
    cmd.args([
        "-u",
        "alice",
        "-w",
        pass,
        "-e",
        "127.0.0.1",
        "-r",
        &peer_port.to_string(),
    ])
    .args(["-n", "20", "-m", "1", "-l", "200", "-c", "-X"])
    .args(["-p", &relay.port().to_string(), "127.0.0.1"]);
    run_bounded("turnutils_uclient", &mut cmd, Duration::from_secs(30))
}

#[test]
fn coturn_uclient_allocates_and_echoes_through_holepunch_relay_over_udp_and_tcp() {
    if !coturn_installed() {
        return;
    }
    let relay = Relay::start(&["--allow-peer", "127.0.0.0/8"]);
    let peer_port = free_port(LOCALHOST);
    let mut peer_cmd = std::process::Command::new("turnutils_peer");
    peer_cmd.args(["-L", "127.0.0.1", "-p", &peer_port.to_string()]);
    let _peer = Proc::spawn("turnutils_peer", &mut peer_cmd);
    std::thread::sleep(Duration::from_millis(200));
    for tcp in [false, true] {
        let out = uclient(relay.addr, peer_port, tcp, "alicepass");
        let all = format!("{}\n{}", out.stdout, out.stderr);
        assert_eq!(out.code(), 0, "uclient (tcp: {tcp}) failed: {all}");
        assert!(
            all.contains("tot_send_msgs=20, tot_recv_msgs=20"),
            "tcp {tcp}: {all}"
        );
        assert!(all.contains("Total lost packets 0"), "tcp {tcp}: {all}");
    }
    let out = uclient(relay.addr, peer_port, false, "wrong");
    let all = format!("{}\n{}", out.stdout, out.stderr);
    assert_ne!(out.code(), 0, "{all}");
    assert!(all.contains("Cannot complete Allocation"), "{all}");
}

#[test]
fn default_deny_list_refuses_loopback_private_and_link_local_peers() {
    let relay = Relay::start(&[]);
    let mut turn = TurnPump::new(relay.addr, Transport::Udp, "alicepass");
    turn.run_until("allocation", |t| t.relayed().is_some());
    let denied: Vec<SocketAddr> = ["127.0.0.1:9", "10.1.2.3:9", "169.254.169.254:80"]
        .iter()
        .map(|s| s.parse().expect("addr"))
        .collect();
    for &peer in &denied {
        let now = turn.now();
        turn.client.add_peer(now, peer).expect("peer");
    }
    turn.run_until("refusals", |t| {
        t.events
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    ClientEvent::PeerFailed {
                        error: TurnError::Rejected { code: 403 },
                        ..
                    }
                )
            })
            .count()
            == 2 * denied.len()
    });
}

#[test]
fn malformed_floods_leave_the_relay_serving_with_bounded_memory() {
    let relay = Relay::start(&["--allow-peer", "127.0.0.0/8"]);
    let before = relay.rss_kib();
    let flood = UdpSocket::bind((LOCALHOST, 0)).expect("bind");
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let allocate_header = [0x00u8, 0x03, 0xff, 0xfc, 0x21, 0x12, 0xa4, 0x42];
    for i in 0..20_000u32 {
        let len = (next() % 200) as usize + 1;
        let mut d: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        match i % 4 {
            // A STUN header claiming 64 KiB.
            0 if d.len() >= 8 => d[..8].copy_from_slice(&allocate_header),
            // ChannelData claiming more than follows.
            1 if d.len() >= 4 => d[..4].copy_from_slice(&[0x40, 0x00, 0xff, 0xff]),
            // A truncated STUN header.
            2 => d.truncate(19.min(d.len())),
            _ => {}
        }
        let _ = flood.send_to(&d, relay.addr);
    }
    for i in 0..200u32 {
        let Ok(mut s) = TcpStream::connect(relay.addr) else {
            continue;
        };
        let junk: Vec<u8> = match i % 3 {
            0 => [0x00, 0x03, 0xff, 0xfc, 0x21, 0x12, 0xa4, 0x42].repeat(4), // 64 KiB claim, then silence
            1 => vec![0x40, 0x00, 0xff, 0xff, 1, 2, 3], // truncated ChannelData
            _ => (0..300).map(|_| next() as u8).collect(),
        };
        let _ = s.write_all(&junk);
        // Dropped: the relay must clean up after a half-written frame.
    }
    // Still serving, end to end.
    exchange_through(relay.addr, Transport::Udp);
    let after = relay.rss_kib();
    assert!(
        after < before + 64 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    println!("relay RSS {before} KiB before, {after} KiB after 20,000 datagrams and 200 streams");
}

#[test]
fn sigint_stops_the_relay_cleanly() {
    let mut relay = Relay::start(&[]);
    relay.proc.signal("INT");
    let status = relay.proc.wait_exit(LIMIT).expect("relay exits on SIGINT");
    assert_eq!(status.code(), Some(0), "{}", relay.proc.stderr_so_far());
    assert!(relay.proc.stderr_so_far().contains("SIGINT, stopping"));
}
