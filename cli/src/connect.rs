//! `holepunch connect`: ICE to a peer, then netcat over UDP datagrams.
//!
//! ```text
//! holepunch connect --signal ADDR --id NAME --peer NAME [--stun SERVER]... [--turn ...]...
//!                   [--timeout SECS] [--json]
//! holepunch connect --local-file PATH --remote-file PATH [--controlling|--controlled] ...
//! ```
//!
//! - Offer lines travel through the `signal` rendezvous (registered as `--id`, talking to
//!   `--peer`; the lexicographically smaller name is the controlling agent) or through two files
//!   (ours written, theirs tailed; `--controlling` unless `--controlled`).
//! - Sockets: one per host address, found from the routes to the STUN servers and the default
//!   route (see `holepunch_tokio::ice`), IPv4 and, when routed, IPv6. The aggressive agent
//!   profile; `--stun` servers give server-reflexive candidates.
//! - Progress goes to stderr (human, or `--json` objects); stdout carries only the peer's data.
//! - Data: each read of stdin (at most 1200 bytes) is one datagram to the peer; each datagram
//!   from the peer is written to stdout. Delivery is not guaranteed (UDP).
//! - Ending: at EOF on stdin we signal `a=x-holepunch-eof` to the peer; we exit 0 once the peer
//!   signalled the same and 200 ms passed without data (datagrams still in flight), or once 2 s
//!   passed without a datagram from a peer that signals no EOF (another ICE stack). No path
//!   within `--timeout` (default 30 s; also after consent on the path was lost): `failed`,
//!   exit 1.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use holepunch_core::ice::agent::PathInfo;
use holepunch_core::stun::DEFAULT_PORT;
use holepunch_tokio::ice::{ConnectError, Connection, ConnectionEvent, Endpoint, EndpointConfig};
use holepunch_tokio::signal::{MAX_NAME, SignalClient, is_valid_name};
use holepunch_tokio::{OfferFiles, Signalling};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use crate::json::Event;
use crate::signal::StopSignals;
use crate::stun::parse_secs;
use crate::{EXIT_FAILED, EXIT_USAGE, format_ms, whole_ms};

/// The largest datagram made from stdin: one read of at most this many bytes.
pub const CHUNK: usize = 1200;
/// After both sides reached EOF: exit once this long passed without data.
const DRAIN: Duration = Duration::from_millis(200);
/// After our EOF, with no EOF from the peer: exit once this long passed without data.
const IDLE_AFTER_EOF: Duration = Duration::from_secs(2);
/// On SIGINT/SIGTERM, how long signalling our EOF to the peer may take.
const FINISH_ON_SIGNAL: Duration = Duration::from_millis(500);

/// Arguments of `holepunch connect`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["signal", "local_file"])))]
#[command(after_help = "\
Delivery is not guaranteed: each read of stdin (up to 1200 bytes) is sent as one UDP datagram,
which real networks may drop, duplicate or reorder; a reliable, encrypted stream mode is planned.
A chunk starting with a byte 0-3 would be taken for STUN (RFC 7983) and is not sent (warning).

Roles: with --signal, the peer whose --id sorts first (bytewise) is the controlling agent. With
files, --controlling is the default; give one side --controlled (a clash is repaired by ICE's
tie-breaker, at the cost of a round trip).

Offer files: PATH is created or truncated, then each line is appended with a single write; the
remote file is read as it grows (polled every 20 ms) and need not exist yet. Format: ice-ufrag,
ice-pwd, a=candidate lines (RFC 8839), a=end-of-candidates; unknown lines are ignored.

Ending: at EOF on stdin this side signals `a=x-holepunch-eof`; it exits 0 once the peer signalled
the same (after 200 ms without data), or after 2 s without data from a peer that never signals
EOF. No path within --timeout (also after consent on the path is lost): `failed`, exit 1.

Events go to stderr (stdout carries only the peer's data); with --json one object per line:
gathered, checking, connected, path_changed, consent_lost, warning, failed, closed.")]
pub struct Args {
    /// The signal server (rendezvous), IP:PORT or HOST:PORT.
    #[arg(long, value_name = "ADDR", requires_all = ["id", "peer"])]
    signal: Option<String>,
    /// Our name at the signal server.
    #[arg(long, value_name = "NAME", requires = "signal")]
    id: Option<String>,
    /// The peer's name at the signal server.
    #[arg(long, value_name = "NAME", requires = "signal")]
    peer: Option<String>,
    /// Prove this shared secret to the signal server to register --id (its --secret).
    #[arg(long, value_name = "S", requires = "signal")]
    signal_secret: Option<String>,
    /// Write our offer to this file (created or truncated).
    #[arg(
        long,
        value_name = "PATH",
        requires = "remote_file",
        conflicts_with = "signal"
    )]
    local_file: Option<PathBuf>,
    /// Read the peer's offer from this file as it grows.
    #[arg(long, value_name = "PATH", requires = "local_file")]
    remote_file: Option<PathBuf>,
    /// Be the controlling ICE agent (file mode; the default).
    #[arg(long, conflicts_with_all = ["controlled", "signal"])]
    controlling: bool,
    /// Be the controlled ICE agent (file mode).
    #[arg(long, conflicts_with = "signal")]
    controlled: bool,
    /// STUN server for server-reflexive candidates (IP:PORT, HOST:PORT; port 3478 if omitted).
    #[arg(long = "stun", value_name = "SERVER")]
    stun: Vec<String>,
    /// TURN relay (accepted, not used yet: relays are not supported).
    #[arg(long = "turn", value_name = "USER:PASS@ADDR[?transport=tcp]", value_parser = parse_turn)]
    turn: Vec<TurnServer>,
    /// Give up when no path is found within this many seconds.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_secs)]
    timeout: Duration,
    /// Print progress as one JSON object per line (on stderr).
    #[arg(long)]
    json: bool,
}

/// A `--turn` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TurnServer {
    /// Long-term credential user name.
    pub user: String,
    /// Long-term credential password.
    pub password: String,
    /// The relay, HOST:PORT.
    pub server: String,
    /// `?transport=tcp`.
    pub tcp: bool,
}

/// Connects and copies data; the exit status follows cli.md.
pub fn run(args: &Args) -> ExitCode {
    let report = Reporter {
        json: args.json,
        started: Instant::now(),
    };
    if let Err(reason) = check_names(args) {
        eprintln!("holepunch connect: {reason}");
        return ExitCode::from(EXIT_USAGE);
    }
    let runtime = match crate::runtime() {
        Ok(rt) => rt,
        Err(e) => return report.failed(&format!("cannot start the runtime: {e}")),
    };
    let code = runtime.block_on(session(args, report));
    // The stdin reader thread may still sit in a blocking read: do not wait for it.
    runtime.shutdown_background();
    code
}

fn check_names(args: &Args) -> Result<(), String> {
    let (Some(id), Some(peer)) = (&args.id, &args.peer) else {
        return Ok(());
    };
    for name in [id, peer] {
        if !is_valid_name(name) {
            return Err(format!(
                "invalid name {name:?}: 1 to {MAX_NAME} printable ASCII characters without spaces"
            ));
        }
    }
    if id == peer {
        return Err("--id and --peer must differ".into());
    }
    Ok(())
}

async fn session(args: &Args, report: Reporter) -> ExitCode {
    let mut signals = match StopSignals::new() {
        Ok(s) => s,
        Err(e) => return report.failed(&format!("cannot install signal handlers: {e}")),
    };
    for turn in &args.turn {
        report.warning(&format!(
            "relays (TURN) are not supported yet; ignoring --turn {}",
            turn.server
        ));
    }
    let mut stun = Vec::with_capacity(args.stun.len());
    for server in &args.stun {
        match resolve(server, Some(DEFAULT_PORT)).await {
            Ok(addr) => stun.push(addr),
            Err(reason) => return report.failed(&reason),
        }
    }
    if let (Some(server), Some(id), Some(peer)) = (&args.signal, &args.id, &args.peer) {
        let connecting = async {
            let addr = resolve(server, None).await?;
            let secret = args.signal_secret.as_deref().map(str::as_bytes);
            SignalClient::connect_with_secret(addr, id, peer, secret)
                .await
                .map_err(|e| format!("signal server {server}: {e}"))
        };
        let client = tokio::select! {
            r = tokio::time::timeout(args.timeout, connecting) => match r {
                Ok(Ok(client)) => client,
                Ok(Err(reason)) => return report.failed(&reason),
                Err(_) => return report.failed(&format!(
                    "signal server {server}: no answer within {} s",
                    args.timeout.as_secs_f64()
                )),
            },
            name = signals.recv() => return report.failed(&format!("interrupted by {name}")),
        };
        // Bytewise order of the names decides the roles, the same way on both sides.
        let controlling = id.as_bytes() < peer.as_bytes();
        converse(client, controlling, stun, args, report, &mut signals).await
    } else if let (Some(local), Some(remote)) = (&args.local_file, &args.remote_file) {
        let files = match OfferFiles::create(local, remote) {
            Ok(f) => f,
            Err(e) => return report.failed(&format!("cannot create {}: {e}", local.display())),
        };
        converse(files, !args.controlled, stun, args, report, &mut signals).await
    } else {
        // clap's argument groups make this unreachable; say so rather than panic.
        eprintln!(
            "holepunch connect: give --signal ADDR --id NAME --peer NAME, or --local-file and --remote-file"
        );
        ExitCode::from(EXIT_USAGE)
    }
}

/// Runs ICE over `signalling`, then copies data until both sides are done.
async fn converse<S: Signalling>(
    signalling: S,
    controlling: bool,
    stun: Vec<SocketAddr>,
    args: &Args,
    report: Reporter,
    signals: &mut StopSignals,
) -> ExitCode {
    let mut config = EndpointConfig::aggressive().with_stun_servers(stun);
    // The time spent reaching the signal server counts against --timeout.
    let left = args
        .timeout
        .saturating_sub(report.started.elapsed())
        .max(Duration::from_millis(1));
    config.connect_timeout = Some(left);
    let wildcard = [
        SocketAddr::new(IpAddr::from([0u8; 4]), 0),
        SocketAddr::new(IpAddr::from([0u16; 8]), 0),
    ];
    let endpoint = match Endpoint::bind(&wildcard, config).await {
        Ok(e) => e,
        Err(e) => return report.failed(&format!("cannot bind UDP sockets: {e}")),
    };
    let conn = Arc::new(endpoint.start(signalling, controlling));
    let counters = Arc::new(Counters::default());
    let (eof_tx, mut eof_rx) = oneshot::channel::<()>();
    let mut eof_tx = Some(eof_tx);
    let mut connected = false;
    let mut local_eof: Option<Instant> = None;
    let mut peer_eof: Option<Instant> = None;
    let mut last_data = Instant::now();
    let mut data_open = true;
    let mut stdout_open = true;
    let mut stdout = tokio::io::stdout();
    let mut buf = vec![0u8; 65_536];
    loop {
        let exit_at = local_eof.map(|ours| match peer_eof {
            Some(theirs) => theirs.max(last_data) + DRAIN,
            None => ours.max(last_data) + IDLE_AFTER_EOF,
        });
        let far = Instant::now() + Duration::from_secs(3600);
        let exit_sleep = tokio::time::sleep_until(exit_at.unwrap_or(far).into());
        tokio::select! {
            name = signals.recv() => {
                if connected {
                    // Tell the peer we are gone rather than let it wait for consent to expire.
                    let _ = tokio::time::timeout(FINISH_ON_SIGNAL, conn.finish()).await;
                    report.closed(&counters, &format!("stopped by {name}"));
                    return ExitCode::SUCCESS;
                }
                return report.failed(&format!("interrupted by {name}"));
            }
            event = conn.next_event() => match event {
                None => return report.failed("the session ended"),
                Some(ConnectionEvent::GatheringComplete { candidates }) => {
                    report.gathered(candidates);
                }
                Some(ConnectionEvent::Checking) => report.checking(),
                Some(ConnectionEvent::Connected(path)) => {
                    report.path("connected", &path);
                    connected = true;
                    if let Some(done) = eof_tx.take() {
                        pump_stdin(Arc::clone(&conn), Arc::clone(&counters), report, done);
                    }
                }
                Some(ConnectionEvent::PathChanged(path)) => report.path("path_changed", &path),
                Some(ConnectionEvent::ConsentLost(path)) => report.consent_lost(&path),
                Some(ConnectionEvent::PeerFinished) => peer_eof = Some(Instant::now()),
                Some(ConnectionEvent::SignallingClosed(error)) => {
                    report.signalling_closed(error.as_ref());
                }
                Some(ConnectionEvent::Failed(e)) => {
                    let reason = match e {
                        ConnectError::TimedOut(_) => format!(
                            "no path within {} s",
                            args.timeout.as_secs_f64()
                        ),
                        e => e.to_string(),
                    };
                    return report.failed(&reason);
                }
                Some(_) => {}
            },
            received = conn.recv(&mut buf), if data_open => match received {
                Ok(n) => {
                    counters.received(n);
                    last_data = Instant::now();
                    if stdout_open {
                        let written = async {
                            stdout.write_all(&buf[..n]).await?;
                            stdout.flush().await
                        };
                        // A closed stdout (`| head`) discards the rest, as a full buffer would.
                        stdout_open = written.await.is_ok();
                    }
                }
                Err(_) => data_open = false,
            },
            _ = &mut eof_rx, if connected && local_eof.is_none() => {
                local_eof = Some(Instant::now());
            }
            () = exit_sleep, if exit_at.is_some() => {
                let why = if peer_eof.is_some() {
                    "both sides done"
                } else {
                    "no data from the peer for 2 s after our EOF"
                };
                report.closed(&counters, why);
                return ExitCode::SUCCESS;
            }
        }
    }
}

/// Copies stdin to the peer, one datagram per read, then signals EOF and reports through `done`.
fn pump_stdin(
    conn: Arc<Connection>,
    counters: Arc<Counters>,
    report: Reporter,
    done: oneshot::Sender<()>,
) {
    tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut chunk = vec![0u8; CHUNK];
        loop {
            let n = match stdin.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            match conn.send(&chunk[..n]).await {
                Ok(()) => counters.sent(n),
                Err(e) if e.kind() == io::ErrorKind::InvalidInput => report.warning(&format!(
                    "not sent: {n} bytes starting with byte {:#04x}, which the peer would take \
                     for STUN; this mode is for text (a stream mode is planned)",
                    chunk[0]
                )),
                // No path at this moment (consent lost): the datagram is lost, as on a network.
                Err(_) => {}
            }
        }
        let _ = conn.finish().await;
        let _ = done.send(());
    });
}

/// Datagram and byte counts, for the `closed` event.
#[derive(Debug, Default)]
struct Counters {
    sent_datagrams: AtomicU64,
    sent_bytes: AtomicU64,
    received_datagrams: AtomicU64,
    received_bytes: AtomicU64,
}

impl Counters {
    fn sent(&self, n: usize) {
        self.sent_datagrams.fetch_add(1, Ordering::Relaxed);
        self.sent_bytes.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn received(&self, n: usize) {
        self.received_datagrams.fetch_add(1, Ordering::Relaxed);
        self.received_bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Progress on stderr: `connect: ...` lines, or one JSON object per line.
#[derive(Clone, Copy, Debug)]
struct Reporter {
    json: bool,
    started: Instant,
}

impl Reporter {
    fn emit(&self, event: Event, human: &str) {
        if self.json {
            eprintln!("{}", event.finish());
        } else {
            eprintln!("connect: {human}");
        }
    }

    fn gathered(&self, candidates: usize) {
        self.emit(
            Event::new("gathered")
                .unsigned("candidates", candidates as u128)
                .unsigned("elapsed_ms", whole_ms(self.started.elapsed())),
            &format!("gathered {candidates} candidates"),
        );
    }

    fn checking(&self) {
        self.emit(
            Event::new("checking").unsigned("elapsed_ms", whole_ms(self.started.elapsed())),
            "checking candidate pairs",
        );
    }

    fn path(&self, name: &str, p: &PathInfo) {
        let kind = if p.relayed { "relay" } else { "direct" };
        let elapsed = self.started.elapsed();
        let event = Event::new(name)
            .str("path", kind)
            .str("local", p.local)
            .str("remote", p.remote)
            .unsigned("rtt_ms", whole_ms(p.rtt))
            .unsigned("elapsed_ms", whole_ms(elapsed))
            .str("local_type", p.local_kind.sdp_name())
            .str("remote_type", p.remote_kind.sdp_name());
        let what = if name == "connected" {
            "connected"
        } else {
            "path changed"
        };
        self.emit(
            event,
            &format!(
                "{what}: {kind} {} -> {} ({}/{}, rtt {}, after {})",
                p.local,
                p.remote,
                p.local_kind.sdp_name(),
                p.remote_kind.sdp_name(),
                format_ms(p.rtt),
                format_ms(elapsed)
            ),
        );
    }

    fn consent_lost(&self, p: &PathInfo) {
        self.emit(
            Event::new("consent_lost")
                .str("local", p.local)
                .str("remote", p.remote),
            &format!(
                "path {} -> {} stopped answering; looking for another",
                p.local, p.remote
            ),
        );
    }

    fn signalling_closed(&self, error: Option<&io::Error>) {
        self.emit(
            Event::new("signalling_closed").opt_str("reason", error),
            &match error {
                Some(e) => format!("signalling closed: {e}"),
                None => "signalling closed".into(),
            },
        );
    }

    fn warning(&self, reason: &str) {
        self.emit(
            Event::new("warning").str("reason", reason),
            &format!("warning: {reason}"),
        );
    }

    fn failed(&self, reason: &str) -> ExitCode {
        self.emit(
            Event::new("failed").str("reason", reason),
            &format!("failed: {reason}"),
        );
        ExitCode::from(EXIT_FAILED)
    }

    fn closed(&self, c: &Counters, why: &str) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (sd, sb) = (load(&c.sent_datagrams), load(&c.sent_bytes));
        let (rd, rb) = (load(&c.received_datagrams), load(&c.received_bytes));
        self.emit(
            Event::new("closed")
                .unsigned("sent_datagrams", sd.into())
                .unsigned("sent_bytes", sb.into())
                .unsigned("received_datagrams", rd.into())
                .unsigned("received_bytes", rb.into())
                .unsigned("elapsed_ms", whole_ms(self.started.elapsed()))
                .str("reason", why),
            &format!(
                "closed ({why}): sent {sd} datagrams ({sb} bytes), received {rd} ({rb} bytes)"
            ),
        );
    }
}

/// `--turn USER:PASS@HOST:PORT[?transport=tcp|udp]`.
fn parse_turn(s: &str) -> Result<TurnServer, String> {
    let shape = "expected USER:PASS@HOST:PORT[?transport=tcp]";
    let (credentials, rest) = s.rsplit_once('@').ok_or(shape)?;
    let (user, password) = credentials.split_once(':').ok_or(shape)?;
    let (server, query) = match rest.split_once('?') {
        Some((server, query)) => (server, Some(query)),
        None => (rest, None),
    };
    let tcp = match query {
        None | Some("transport=udp") => false,
        Some("transport=tcp") => true,
        Some(other) => {
            return Err(format!(
                "unknown TURN option {other:?} (transport=tcp or transport=udp)"
            ));
        }
    };
    let port_ok = server
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if user.is_empty() || !port_ok {
        return Err(shape.into());
    }
    Ok(TurnServer {
        user: user.into(),
        password: password.into(),
        server: server.into(),
        tcp,
    })
}

/// An address: IP:PORT, a bare IP (with `default_port`), or a host name resolved by the system
/// (IPv4 preferred).
async fn resolve(server: &str, default_port: Option<u16>) -> Result<SocketAddr, String> {
    if let Ok(addr) = server.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bare = server
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(server);
    if let (Ok(ip), Some(port)) = (bare.parse::<IpAddr>(), default_port) {
        return Ok(SocketAddr::new(ip, port));
    }
    let has_port = server
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    let found: io::Result<Vec<SocketAddr>> = match (has_port, default_port) {
        (true, _) => tokio::net::lookup_host(server).await.map(Iterator::collect),
        (false, Some(port)) => tokio::net::lookup_host((server, port))
            .await
            .map(Iterator::collect),
        (false, None) => return Err(format!("{server}: expected IP:PORT or HOST:PORT")),
    };
    let addrs = found.map_err(|e| format!("cannot resolve {server}: {e}"))?;
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("cannot resolve {server}: no addresses"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_values_parse() {
        let t = parse_turn("user:p@ss@relay.example:3478?transport=tcp").expect("valid");
        assert_eq!(
            t,
            TurnServer {
                user: "user".into(),
                password: "p@ss".into(),
                server: "relay.example:3478".into(),
                tcp: true,
            }
        );
        assert!(!parse_turn("u:p@1.2.3.4:3478").expect("valid").tcp);
        for bad in [
            "1.2.3.4:3478",
            "u@1.2.3.4:3478",
            ":p@1.2.3.4:3478",
            "u:p@1.2.3.4",
            "u:p@1.2.3.4:0",
            "u:p@1.2.3.4:3478?transport=sctp",
        ] {
            assert!(parse_turn(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn addresses_resolve() {
        let ok = |r: Result<SocketAddr, String>| r.expect("resolves");
        assert_eq!(
            ok(resolve("1.2.3.4", Some(3478)).await),
            "1.2.3.4:3478".parse().expect("addr")
        );
        assert_eq!(
            ok(resolve("[::1]:9", None).await),
            "[::1]:9".parse().expect("addr")
        );
        assert_eq!(ok(resolve("localhost:7", None).await).port(), 7);
        assert!(
            resolve("1.2.3.4", None).await.is_err(),
            "a port is required"
        );
    }
}
