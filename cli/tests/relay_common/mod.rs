//! What the TURN interop tests on loopback share (`relay_coturn.rs`, `relay_tls.rs`): coturn's
//! `turnserver` and `holepunch relay` as child processes, a test PKI for TLS, and our core
//! TURN client pumped over UDP, TCP or TLS in real time.
#![allow(dead_code, reason = "each test file uses a different subset")]

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use holepunch_core::Instant;
use holepunch_core::io::Datagram;
use holepunch_core::stun::{Class, Message, Method};
use holepunch_core::turn::channel::frame_len;
use holepunch_core::turn::{Client, ClientConfig, ClientEvent, Received, Transport};

use crate::support::{self, Proc, TempDir, free_port, holepunch};

pub const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
pub const LIMIT: Duration = Duration::from_secs(15);

pub fn coturn_installed() -> bool {
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

/// A test-only CA and a relay certificate it signed (for `localhost` and 127.0.0.1 unless
/// named otherwise), as PEM files in a temporary directory (made afresh for each test; nothing
/// is checked in).
pub struct Pki {
    /// The CA certificate, DER (what a client trusts).
    pub ca: rustls::pki_types::CertificateDer<'static>,
    /// ca.pem, cert.pem and key.pem.
    pub dir: TempDir,
}

impl Pki {
    /// A fresh CA named `ca_name` and a relay certificate it signed for `localhost` and
    /// 127.0.0.1.
    pub fn new(ca_name: &str) -> Pki {
        Pki::for_names(ca_name, &["localhost", "127.0.0.1"])
    }

    /// A fresh CA named `ca_name` and a relay certificate it signed for `names` (DNS names or
    /// IP addresses).
    pub fn for_names(ca_name: &str, names: &[&str]) -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, ca_name);
        let ca = ca_params.self_signed(&ca_key).expect("CA");
        let key = KeyPair::generate().expect("relay key");
        let names: Vec<String> = names.iter().map(|n| (*n).to_string()).collect();
        let params = CertificateParams::new(names).expect("relay params");
        let cert = params.signed_by(&key, &ca, &ca_key).expect("relay cert");
        let dir = TempDir::new("holepunch-relay-pki");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("ca.pem");
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).expect("cert.pem");
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).expect("key.pem");
        Pki {
            ca: ca.der().clone(),
            dir,
        }
    }

    /// The path of one of the PEM files.
    pub fn file(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

/// coturn's `turnserver` with long-term credentials on loopback, relaying to loopback peers.
pub struct Coturn {
    pub addr: SocketAddr,
    /// Its TLS listener, when started with a certificate.
    pub tls_addr: Option<SocketAddr>,
    _proc: Proc,
    _dir: TempDir,
}

impl Coturn {
    /// Over UDP and TCP only.
    pub fn start() -> Coturn {
        Coturn::start_with(None)
    }

    /// Over UDP and TCP, and over TLS with `tls`'s certificate.
    pub fn start_with(tls: Option<&Pki>) -> Coturn {
        let dir = TempDir::new("holepunch-coturn-turn");
        let port = free_port(LOCALHOST);
        let mut cmd = std::process::Command::new("turnserver");
        let tls_addr = match tls {
            Some(pki) => {
                let tls_port = free_port(LOCALHOST);
                cmd.arg(format!("--tls-listening-port={tls_port}"))
                    .arg(format!("--cert={}", pki.file("cert.pem")))
                    .arg(format!("--pkey={}", pki.file("key.pem")));
                Some(SocketAddr::new(LOCALHOST, tls_port))
            }
            None => {
                cmd.arg("--no-tls");
                None
            }
        };
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
        if let Some(tls) = tls_addr {
            wait_tcp(tls);
        }
        Coturn {
            addr,
            tls_addr,
            _proc: proc,
            _dir: dir,
        }
    }
}

/// `holepunch relay` on loopback.
pub struct Relay {
    pub addr: SocketAddr,
    pub proc: Proc,
}

impl Relay {
    /// With a TLS listener on a free port using `pki`'s certificate; returns its address too.
    pub fn start_tls(pki: &Pki, extra: &[&str]) -> (Relay, SocketAddr) {
        let tls = SocketAddr::new(LOCALHOST, free_port(LOCALHOST));
        let (tls_s, cert, key) = (tls.to_string(), pki.file("cert.pem"), pki.file("key.pem"));
        let mut args = vec!["--tls-listen", &tls_s, "--cert", &cert, "--key", &key];
        args.extend_from_slice(extra);
        (Relay::start(&args), tls)
    }

    pub fn start(extra: &[&str]) -> Relay {
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

    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.proc.pid()))
            .expect("relay status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }
}

/// Waits (bounded) until the UDP echo server at `addr` (`turnutils_peer`) echoes.
pub fn wait_udp_echo(addr: SocketAddr) {
    let probe = UdpSocket::bind((LOCALHOST, 0)).expect("bind");
    probe
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let deadline = std::time::Instant::now() + LIMIT;
    let mut buf = [0u8; 16];
    loop {
        let _ = probe.send_to(b"ping", addr);
        if probe.recv_from(&mut buf).is_ok() {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{addr} never echoed");
    }
}

pub fn wait_tcp(addr: SocketAddr) {
    let deadline = std::time::Instant::now() + LIMIT;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "{addr} never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A byte stream to a TURN server: plain TCP, or TLS over it.
pub trait ByteStream: Read + Write {}
impl<T: Read + Write> ByteStream for T {}

/// The server side of our core client: one UDP socket or byte stream, pumped in real time.
enum Conn {
    Udp(UdpSocket),
    Stream(Box<dyn ByteStream>, Vec<u8>, usize),
}

pub struct TurnPump {
    pub client: Client,
    conn: Conn,
    server: SocketAddr,
    epoch: std::time::Instant,
    pub events: Vec<ClientEvent>,
    pub data: Vec<(SocketAddr, Vec<u8>)>,
    /// Keepalives the client sent (Binding indications).
    pub keepalives: usize,
    /// Datagrams or frames the server sent that the client consumed as TURN (not data).
    pub control_received: usize,
}

fn tcp_to(server: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(server).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s
}

/// A TLS session with `server`, handshake done, verifying it for `name` against `ca` only.
pub fn tls_to(
    server: SocketAddr,
    name: &str,
    ca: &rustls::pki_types::CertificateDer<'static>,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).expect("CA");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(name.to_string()).expect("name");
    let mut tls = rustls::ClientConnection::new(std::sync::Arc::new(config), name)?;
    let mut tcp = tcp_to(server);
    tcp.set_read_timeout(Some(LIMIT)).expect("timeout");
    while tls.is_handshaking() {
        if let Err(e) = tls.complete_io(&mut tcp) {
            return Err(
                match e.into_inner().map(|e| e.downcast::<rustls::Error>()) {
                    Some(Ok(e)) => *e,
                    _ => rustls::Error::General("handshake I/O failed".into()),
                },
            );
        }
    }
    Ok(rustls::StreamOwned::new(tls, tcp))
}

impl TurnPump {
    /// Over UDP from a new socket, or over a new TCP connection.
    pub fn new(server: SocketAddr, transport: Transport, pass: &str) -> TurnPump {
        Self::with_config(server, transport, pass, |_| {})
    }

    /// As [`new`](Self::new), with the client configuration adjusted by `adjust`.
    pub fn with_config(
        server: SocketAddr,
        transport: Transport,
        pass: &str,
        adjust: impl FnOnce(&mut ClientConfig),
    ) -> TurnPump {
        let conn = match transport {
            Transport::Udp => {
                let s = UdpSocket::bind((LOCALHOST, 0)).expect("bind");
                s.set_read_timeout(Some(Duration::from_millis(10)))
                    .expect("timeout");
                Conn::Udp(s)
            }
            _ => {
                let s = tcp_to(server);
                s.set_read_timeout(Some(Duration::from_millis(10)))
                    .expect("timeout");
                Conn::Stream(Box::new(s), vec![0; 70_000], 0)
            }
        };
        TurnPump::over(server, transport, conn, pass, adjust)
    }

    /// Over TLS, after `tls_to`'s handshake.
    pub fn new_tls(
        server: SocketAddr,
        tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
        pass: &str,
    ) -> TurnPump {
        tls.sock
            .set_read_timeout(Some(Duration::from_millis(10)))
            .expect("timeout");
        let conn = Conn::Stream(Box::new(tls), vec![0; 70_000], 0);
        TurnPump::over(server, Transport::Tls, conn, pass, |_| {})
    }

    fn over(
        server: SocketAddr,
        transport: Transport,
        conn: Conn,
        pass: &str,
        adjust: impl FnOnce(&mut ClientConfig),
    ) -> TurnPump {
        let mut config = ClientConfig::new(server, transport, "alice", pass);
        adjust(&mut config);
        let mut pump = TurnPump {
            client: Client::new(config, 42),
            conn,
            server,
            epoch: std::time::Instant::now(),
            events: Vec::new(),
            data: Vec::new(),
            keepalives: 0,
            control_received: 0,
        };
        let now = pump.now();
        pump.client.allocate(now).expect("allocate");
        pump
    }

    pub fn now(&self) -> Instant {
        Instant::from_micros(self.epoch.elapsed().as_micros() as u64)
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        match &mut self.conn {
            Conn::Udp(s) => {
                s.send_to(bytes, self.server).expect("send");
            }
            Conn::Stream(s, _, _) => s.write_all(bytes).expect("write"),
        }
    }

    /// One round: flush, receive for up to 10 ms, run timers.
    fn step(&mut self) {
        let mut out = vec![0u8; 2_000];
        let now = self.now();
        while let Some(t) = self.client.poll_transmit(now, &mut out) {
            let bytes = out[..t.len].to_vec();
            let keepalive = Message::parse(&bytes)
                .is_ok_and(|m| m.class() == Class::Indication && m.method() == Method::BINDING);
            self.keepalives += usize::from(keepalive);
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
            Conn::Stream(s, buf, filled) => {
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
            // One client per connection or socket: it needs no local address to tell them apart.
            let local = SocketAddr::from((LOCALHOST, 0));
            let d = Datagram::new(local, self.server, &frame);
            match self.client.handle_datagram(now, d) {
                Received::Data { peer, payload } => self.data.push((peer, payload.to_vec())),
                _ => self.control_received += 1,
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

    pub fn run_until(&mut self, what: &str, done: impl Fn(&TurnPump) -> bool) {
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

    pub fn relayed(&self) -> Option<SocketAddr> {
        self.events.iter().find_map(|e| match e {
            ClientEvent::Allocated { relayed, .. } => Some(*relayed),
            _ => None,
        })
    }

    pub fn send(&mut self, peer: SocketAddr, payload: &[u8]) {
        let mut out = vec![0u8; 2_000];
        let now = self.now();
        let t = self
            .client
            .send_to(now, peer, payload, &mut out)
            .expect("send_to");
        let bytes = out[..t.len].to_vec();
        self.send_raw(&bytes);
    }
}

/// Allocates through `turn` and binds a channel to a new local UDP peer (5 s read timeout);
/// returns the peer, its address and the relayed address.
pub fn channel_to_local_peer(turn: &mut TurnPump) -> (UdpSocket, SocketAddr, SocketAddr) {
    let peer = UdpSocket::bind((LOCALHOST, 0)).expect("peer");
    peer.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let peer_addr = peer.local_addr().expect("addr");
    turn.run_until("allocation", |t| t.relayed().is_some());
    let relayed = turn.relayed().expect("relayed");
    let now = turn.now();
    turn.client.add_peer(now, peer_addr).expect("peer");
    turn.run_until("channel bind", |t| {
        t.events
            .iter()
            .any(|e| matches!(e, ClientEvent::ChannelBound { .. }))
    });
    (peer, peer_addr, relayed)
}

/// Allocates, binds a channel to a local peer, and echoes both ways through `server`.
pub fn exchange_through(server: SocketAddr, transport: Transport) {
    exchange(TurnPump::new(server, transport, "alicepass"));
}

/// Allocates, binds a channel to a local peer, and echoes both ways through `turn`'s server.
pub fn exchange(mut turn: TurnPump) {
    let (peer, peer_addr, relayed) = channel_to_local_peer(&mut turn);
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

/// Hostile TLS clients: 300 connections sending garbage instead of a handshake (truncated
/// records, TURN in the clear, random bytes), then 60 that complete the handshake and send
/// malformed TURN framing inside the session (64 KiB claims, truncated ChannelData, random
/// bytes). Every handshake must still succeed: the relay keeps serving TLS throughout.
pub fn tls_junk(tls: SocketAddr, pki: &Pki) {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..300u32 {
        let junk: Vec<u8> = match i % 4 {
            0 => vec![0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3],
            1 => [0x00, 0x03, 0xff, 0xfc, 0x21, 0x12, 0xa4, 0x42].repeat(4),
            _ => (0..(next() % 600 + 1)).map(|_| next() as u8).collect(),
        };
        if let Ok(mut s) = TcpStream::connect(tls) {
            let _ = s.write_all(&junk);
        }
    }
    for i in 0..60u32 {
        let mut s = match tls_to(tls, "localhost", &pki.ca) {
            Ok(s) => s,
            Err(e) => panic!("handshake {i} failed while the relay should be serving: {e}"),
        };
        let junk: Vec<u8> = match i % 3 {
            0 => [0x00, 0x03, 0xff, 0xfc, 0x21, 0x12, 0xa4, 0x42].repeat(4),
            1 => vec![0x40, 0x00, 0xff, 0xff, 1, 2, 3],
            _ => (0..300).map(|_| next() as u8).collect(),
        };
        let _ = s.write_all(&junk);
        let _ = s.flush();
    }
}
