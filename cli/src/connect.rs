//! `holepunch connect`: ICE to a peer, then netcat over one QUIC stream ([`stream`], the
//! default) or over plain UDP datagrams (`--datagram`).
//!
//! ```text
//! holepunch connect --signal ADDR --id NAME --peer NAME [--stun SERVER]... [--turn ...]...
//!                   [--timeout SECS] [--key PATH] [--peer-key FP | --trust-first-use]
//!                   [--datagram [--rate BYTES] [--max-loss PERCENT]] [--json]
//! holepunch connect --local-file PATH --remote-file PATH [--controlling|--controlled] ...
//! ```
//!
//! The [`Link`] options are shared with `send` and `receive`, which run other jobs on the same
//! stream. What follows is the session machinery both modes share, and datagram mode's data
//! phase; stream mode's keys and QUIC are in [`stream`] and [`keyed`].
//!
//! - Offer lines travel through the `signal` rendezvous (registered as `--id`, talking to
//!   `--peer`; the lexicographically smaller name is the controlling agent) or through two files
//!   (ours written, theirs tailed; `--controlling` unless `--controlled`). In file mode a new
//!   offer in the peer's file (a rerun over old files) starts the session again on it
//!   ([`rerun`]).
//! - Sockets: one per host address, found from the routes to the STUN servers and the default
//!   route (see `holepunch_tokio::ice`), IPv4 and, when routed, IPv6. The aggressive agent
//!   profile; `--stun` servers give server-reflexive candidates.
//! - Progress goes to stderr ([`report`]): `gathered` (host candidates, once bound), then
//!   `candidate` for each later one, `checking`, `connected`; `waiting` every 5 s while the peer
//!   has sent nothing; a `warning` when no `--stun` server answered its first retransmissions.
//!   stdout carries only the peer's data.
//! - Data (`--datagram`): each read of stdin (at most 1200 bytes) is one datagram to the peer, paced at
//!   `--rate` ([`pace`]); each datagram from the peer is written to stdout. Delivery is not
//!   guaranteed (UDP), but loss is reported: at EOF each side signals its sent counts
//!   ([`tally`]), and `closed` says "received N of M datagrams (X% lost)".
//! - Ending (`--datagram`): at EOF on stdin we signal `a=x-holepunch-eof` to the peer; we exit once the peer
//!   signalled the same and 200 ms passed without data (datagrams still in flight), or once 2 s
//!   passed without a datagram from a peer that signals no EOF (another ICE stack): 0 when
//!   nothing the peer reported sending was lost (or at most `--max-loss` percent), 1 when more
//!   was. No path within `--timeout`
//!   (default 30 s; also after consent on the path was lost), or the signal server gone before a
//!   path: `failed`, exit 1.

mod keepalive;
mod keyed;
mod pace;
pub mod report;
mod rerun;
pub mod stream;
mod tally;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use holepunch_core::ice::candidate::CandidateKind;
use holepunch_core::ice::relay::{MAX_RELAYS, RelayEvent};
use holepunch_core::nat64::Nat64Prefix;
use holepunch_core::nat64::discovery::DiscoveryConfig;
use holepunch_core::turn::{ClientConfig as TurnConfig, Transport as TurnTransport};
use holepunch_std::nat64::{Nat64Finding, discover_nat64};
use holepunch_std::netcheck::local_ip_towards;
use holepunch_tokio::ice::{
    ConnectError, Connection, ConnectionEvent, Endpoint, EndpointConfig, host_ips,
};
use holepunch_tokio::quic_identity::{Fingerprint, FingerprintError, Identity};
use holepunch_tokio::signal::{MAX_NAME, SignalClient, is_valid_name};
use holepunch_tokio::turn_tls::TurnTrust;
use holepunch_tokio::{OfferFiles, Signalling};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use self::keepalive::{Keepalive, parse_keepalive};
use self::pace::{DEFAULT_RATE, Pacer, parse_rate};
use self::report::Reporter;
use self::rerun::{OfferWatch, same_file};
use self::stream::Job;
use self::tally::{Counted, Tally};
use crate::EXIT_USAGE;
use crate::address::{self, Target};
use crate::keys;
use crate::signal::StopSignals;
use crate::stun::parse_secs;

/// The largest datagram made from stdin: one read of at most this many bytes.
pub const CHUNK: usize = 1200;
/// After both sides reached EOF: exit once this long passed without data.
const DRAIN: Duration = Duration::from_millis(200);
/// After our EOF, with no EOF from the peer: exit once this long passed without data.
const IDLE_AFTER_EOF: Duration = Duration::from_secs(2);
/// On SIGINT/SIGTERM, how long signalling our EOF to the peer may take.
const FINISH_ON_SIGNAL: Duration = Duration::from_millis(500);
/// How often "waiting for peer" is repeated while the peer has sent nothing.
const WAITING_EVERY: Duration = Duration::from_secs(5);
/// A STUN server that has not answered by now missed its first retransmissions (the aggressive
/// profile sends at 0, 250 and 750 ms; RFC 8489's at 0, 500 and 1500 ms).
const STUN_SILENT_AFTER: Duration = Duration::from_millis(1600);
/// How often the peer's offer file is checked for a newer offer (file mode, before a path).
const OFFER_CHECK_EVERY: Duration = Duration::from_millis(100);
/// Received data waits at most this long in our stdout buffer.
const FLUSH_AFTER: Duration = Duration::from_millis(5);
/// Received datagrams queued between the sockets and stdout (the driver drops beyond it).
const RECV_QUEUE: usize = 8192;
/// RFC 7050 discovery on an IPv6-only host: the first wait (then one retry waiting twice as
/// long), 1.5 s in all, as `netcheck` does.
const NAT64_FIRST_WAIT: Duration = Duration::from_millis(500);
/// Addresses whose routes tell whether the host reaches the IPv4 and IPv6 internet (no packet
/// is sent to them).
const ANCHOR_V4: &str = "8.8.8.8:53";
const ANCHOR_V6: &str = "[2001:4860:4860::8888]:53";

/// Arguments of `holepunch connect`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Stream mode (the default): once ICE has a path, one QUIC connection over it (TLS 1.3, mutual
authentication) carries one bidirectional stream: reliable, ordered, encrypted. The controlling
agent is the QUIC client. At EOF on stdin our side of the stream is finished; the command exits
once the peer finished too and everything was delivered.

Keys: each side signals `a=x-holepunch-key:sha256:HEX` (the SHA-256 of its Ed25519 public key's
SubjectPublicKeyInfo) with its offer, and QUIC accepts only the key its peer's offer named, so a
signal server that rewrites keys or candidates gets a failed handshake, never a session. The key
is --key PATH, or key.pem in $XDG_CONFIG_HOME/holepunch (~/.config/holepunch), created on first
use (`holepunch keygen` makes one). --peer-key pins the peer's fingerprint; --trust-first-use
remembers it in known_peers there and refuses a later change; otherwise the key seen is printed.
A peer whose offer has no key (another ICE stack) is refused: use --datagram on both sides.

--datagram: netcat over UDP datagrams, unencrypted, as other ICE stacks (libnice, aioice,
browsers) speak it. Delivery is not guaranteed: each read of stdin (up to 1200 bytes) is sent as
one UDP datagram, which real networks may drop, duplicate or reorder. Sends are paced at --rate
(default 2M bytes/s) so a loopback or LAN receiver is not overrun. A chunk starting with a byte
0-3 would be taken for STUN (RFC 7983) and is not sent (warning).

Roles: with --signal, the peer whose --id sorts first (bytewise) is the controlling agent. With
files, --controlling is the default; give one side --controlled (a clash is repaired by ICE's
tie-breaker, at the cost of a round trip).

Offer files: PATH is created or truncated, then each line is appended with a single write; the
remote file is read as it grows (polled every 20 ms) and need not exist yet; it must be another
file than PATH. Format: ice-ufrag, ice-pwd, a=candidate lines (RFC 8839), a=end-of-candidates;
unknown lines are ignored. When the remote file starts over with a new offer (the peer was run
again over old files), the session starts again on the new offer.

Ending (--datagram): at EOF on stdin this side signals `a=x-holepunch-sent:DATAGRAMS BYTES` and
`a=x-holepunch-eof`; it ends once the peer signalled the same (after 200 ms without data), or
after 2 s without data from a peer that never signals EOF. The summary (`closed`) says \"received
N of M datagrams (X% lost)\" when the peer reported its count.

Exit status: 0 done (stream mode: everything delivered both ways; --datagram: nothing the peer
reported sending was lost, or at most --max-loss percent); 1 a refused or mismatched key, a
failed QUIC handshake, a broken stream, more datagrams lost (a `failed` event follows `closed`), no path within --timeout (also
after consent on the path is lost), or the signal server went away before a path; 2 bad usage
(malformed addresses, the same file twice, ...).

On an IPv6-only host (an IPv6 default route, no IPv4 one), connect first asks the system
resolver (the first nameserver of /etc/resolv.conf, or of the file HOLEPUNCH_RESOLV_CONF names)
for the NAT64 prefix (RFC 7050, up to 1.5 s) and reaches IPv4 STUN servers, IPv4 TURN servers
(UDP, TCP, TLS) and IPv4 peers at their RFC 6052 synthesised addresses through the NAT64: a
`nat64` event reports the prefix, or a warning says none was found.

Network changes are watched (netlink on Linux, an interface diff every 5 s elsewhere): a new
local address becomes a candidate sent to the peer, failed direct pairs are probed again at once
and the STUN servers asked again; when the path's own local address is gone, ICE restarts by
itself (restart event, reason network_changed) while signalling is open.

SIGUSR1 restarts ICE (RFC 8445 §9) without ending the session: new credentials and candidates go
to the peer, which restarts too, and the old path carries data until a new one is selected. A path
that loses consent restarts ICE by itself while signalling is open.

Events go to stderr (stdout carries only the peer's data); with --json one object per line:
key_created, gathered, candidate, waiting, checking, connected (with peer_key), peer_key,
path_changed, consent_lost, restart (ICE restarted: reason signal, peer, consent_lost or network_changed),
keepalive (interval_s: the keepalive interval both sides agreed, see --keepalive),
punching (blind hard-NAT punching started: one STUN server without
RFC 5780 could not show which NAT is hard), signalling_closed, nat64 (prefix, resolver: an
IPv6-only host's NAT64), warning, failed, stream_closed
(stream mode), closed (--datagram).")]
pub struct Args {
    /// How to reach the peer and who it is (shared with send and receive).
    #[command(flatten)]
    pub link: Link,
    /// Datagram mode (today's `nc -u` semantics): each read of stdin is one UDP datagram,
    /// unencrypted, delivery not guaranteed. Needed to talk to another ICE stack (libnice,
    /// aioice, browsers); no key is used or required.
    #[arg(long)]
    datagram: bool,
    /// Datagram mode: send at most this many bytes per second (suffix k, M or G, powers of
    /// 1024; 0: unpaced).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_RATE, value_parser = parse_rate)]
    rate: u64,
    /// Datagram mode: fail (exit 1) when more than this percentage of the datagrams the peer
    /// reported sending did not arrive (0: any loss fails the job).
    #[arg(long, value_name = "PERCENT", default_value = "0", value_parser = parse_percent)]
    max_loss: f64,
}

/// The options every command that connects to a peer takes (connect, send, receive).
#[derive(Clone, Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["signal", "local_file"])))]
pub struct Link {
    /// The signal server (rendezvous), IP:PORT or HOST:PORT.
    #[arg(long, value_name = "ADDR", requires_all = ["id", "peer"], value_parser = address::with_port)]
    pub signal: Option<Target>,
    /// Our name at the signal server.
    #[arg(long, value_name = "NAME", requires = "signal")]
    pub id: Option<String>,
    /// The peer's name at the signal server.
    #[arg(long, value_name = "NAME", requires = "signal")]
    pub peer: Option<String>,
    /// Prove this shared secret to the signal server to register --id (its --secret).
    #[arg(long, value_name = "S", requires = "signal")]
    pub signal_secret: Option<String>,
    /// Write our offer to this file (created or truncated).
    #[arg(
        long,
        value_name = "PATH",
        requires = "remote_file",
        conflicts_with = "signal"
    )]
    pub local_file: Option<PathBuf>,
    /// Read the peer's offer from this file as it grows (not the same file as --local-file).
    #[arg(long, value_name = "PATH", requires = "local_file")]
    pub remote_file: Option<PathBuf>,
    /// Be the controlling ICE agent (file mode; the default).
    #[arg(long, conflicts_with_all = ["controlled", "signal"])]
    pub controlling: bool,
    /// Be the controlled ICE agent (file mode).
    #[arg(long, conflicts_with = "signal")]
    pub controlled: bool,
    /// STUN server for server-reflexive candidates (IP:PORT, HOST:PORT; port 3478 if omitted).
    #[arg(long = "stun", value_name = "SERVER", value_parser = address::stun_server)]
    pub stun: Vec<Target>,
    /// TURN relay (repeatable, at most 8): its relayed address becomes a candidate, used when
    /// no direct path works within 3 s; a direct path found later takes over. Over UDP, or
    /// over TCP with `?transport=tcp` or TLS with `?transport=tls` (for networks that block
    /// UDP). Over TLS the relay's certificate must be valid for HOST (a name, or an IP in its
    /// IP SANs) and chain to a system root or a --turn-ca.
    #[arg(long = "turn", value_name = "USER:PASS@HOST:PORT[?transport=udp|tcp|tls]", value_parser = parse_turn)]
    pub turn: Vec<TurnServer>,
    /// Also trust the CA certificates in this PEM file for TURN relays over TLS (a self-hosted
    /// relay's private CA; repeatable).
    #[arg(long = "turn-ca", value_name = "PEM")]
    pub turn_ca: Vec<PathBuf>,
    /// Do not ask the gateway for a port mapping. By default connect asks it (PCP, then
    /// NAT-PMP) to map its socket, signals the mapped address as a candidate (a peer reaches it
    /// even behind a symmetric NAT here), and deletes the mapping at exit.
    #[arg(long)]
    pub no_portmap: bool,
    /// Give up when no path is found within this many seconds.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_secs)]
    pub timeout: Duration,
    /// Keepalives on the path: `auto` measures this NAT's UDP mapping lifetime in the
    /// background once connected (the first IPv4 --stun server must serve RFC 5780; up to ~2
    /// minutes) and proposes keepalives just under it; `SECS` (10 to 3600) proposes that
    /// interval; `off` keeps RFC 7675's 5 s consent checks. A proposal takes effect only when
    /// the peer proposes one too (a `keepalive` event then gives the shorter, which both use).
    #[arg(long, value_name = "auto|off|SECS", default_value = "auto", value_parser = parse_keepalive)]
    pub keepalive: Keepalive,
    /// Our identity for stream mode: an Ed25519 key in PKCS#8 PEM (`holepunch keygen`).
    /// Default: key.pem in $XDG_CONFIG_HOME/holepunch (or ~/.config/holepunch), created on
    /// first use.
    #[arg(long, value_name = "PATH")]
    pub key: Option<PathBuf>,
    /// Accept only a peer whose key has this fingerprint (sha256:HEX, as keygen prints it).
    #[arg(long, value_name = "FINGERPRINT", value_parser = parse_fingerprint)]
    pub peer_key: Option<Fingerprint>,
    /// Remember the peer's key (known_peers in the config directory) the first time, and
    /// refuse a different key for the same peer later.
    #[arg(long, conflicts_with = "peer_key")]
    pub trust_first_use: bool,
    /// Print progress as one JSON object per line (on stderr).
    #[arg(long)]
    pub json: bool,
}

/// `--peer-key`: `sha256:` and 64 hex digits.
fn parse_fingerprint(s: &str) -> Result<Fingerprint, String> {
    s.parse().map_err(|e: FingerprintError| e.to_string())
}

/// `--max-loss`: a percentage, 0 to 100.
fn parse_percent(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|p| (0.0..=100.0).contains(p))
        .ok_or_else(|| format!("not a percentage from 0 to 100: {s}"))
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
    /// `?transport=`: UDP unless told.
    pub transport: TurnTransport,
}

impl TurnServer {
    /// HOST, without an IPv6 literal's brackets: the name a TLS certificate is checked for.
    pub fn host(&self) -> &str {
        let host = self
            .server
            .rsplit_once(':')
            .map_or(&*self.server, |(h, _)| h);
        host.strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
    }
}

/// Connects and copies data; the exit status follows cli.md.
pub fn run(args: &Args) -> ExitCode {
    let report = Reporter {
        json: args.link.json,
        started: Instant::now(),
        command: "connect",
    };
    let job = if args.datagram { None } else { Some(Job::Cat) };
    run_with(args, job, report)
}

/// `send` and `receive`: a stream-mode session running `job`.
pub fn run_job(link: &Link, job: Job, report: Reporter) -> ExitCode {
    let args = Args {
        link: link.clone(),
        datagram: false,
        rate: DEFAULT_RATE,
        max_loss: 0.0,
    };
    run_with(&args, Some(job), report)
}

/// The longest `connect` waits at exit for its port mapping to be deleted.
const PORTMAP_DELETE_LIMIT: Duration = Duration::from_secs(2);

/// `job` is `None` in datagram mode.
fn run_with(args: &Args, job: Option<Job>, report: Reporter) -> ExitCode {
    if let Err(reason) = check_usage(args) {
        eprintln!("holepunch {}: {reason}", report.command);
        return ExitCode::from(EXIT_USAGE);
    }
    let runtime = match crate::runtime() {
        Ok(rt) => rt,
        Err(e) => return report.failed(&format!("cannot start the runtime: {e}")),
    };
    let code = runtime.block_on(session(args, job, report));
    // The stdin reader thread may still sit in a blocking read: do not wait for it.
    runtime.shutdown_background();
    // But do wait (briefly) for the gateway to hear that our port mapping is deleted.
    holepunch_std::portmap_probe::finish_all(PORTMAP_DELETE_LIMIT);
    code
}

/// What clap cannot check: names, and two different offer files.
fn check_usage(args: &Args) -> Result<(), String> {
    if args.link.turn.len() > MAX_RELAYS {
        return Err(format!("at most {MAX_RELAYS} --turn servers"));
    }
    if let (Some(local), Some(remote)) = (&args.link.local_file, &args.link.remote_file) {
        if same_file(local, remote) {
            return Err(format!(
                "--local-file and --remote-file are the same file ({}): each side writes its \
                 own offer and reads the other's",
                local.display()
            ));
        }
    }
    let (Some(id), Some(peer)) = (&args.link.id, &args.link.peer) else {
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

/// How one ICE session over one signalling channel ended.
enum Outcome {
    /// The command is done with this status.
    Done(ExitCode),
    /// The peer's offer file holds a newer offer: start again on it.
    Restart,
}

/// What stays the same across the sessions of one command.
struct Common<'a> {
    args: &'a Args,
    report: Reporter,
    stun: Vec<SocketAddr>,
    /// TURN servers to allocate relayed candidates on.
    turn: Vec<TurnConfig>,
    /// The CAs TURN servers over TLS are verified against.
    turn_trust: TurnTrust,
    /// Our agent's seed: a restarted session keeps our credentials.
    seed: u64,
    tally: Arc<Tally>,
    /// Who we are waiting for, for people (and the name `known_peers` files the key under).
    peer: String,
    /// Stream mode: what runs on the stream (`None`: datagram mode).
    job: Job,
    /// Stream mode: our key.
    identity: Option<Arc<Identity>>,
}

async fn session(args: &Args, job: Option<Job>, report: Reporter) -> ExitCode {
    let mut signals = match StopSignals::new() {
        Ok(s) => s,
        Err(e) => return report.failed(&format!("cannot install signal handlers: {e}")),
    };
    let mut turn = Vec::new();
    for server in &args.link.turn {
        let addr = match Target::parse(&server.server, None).and_then(|t| t.resolve()) {
            Ok(addr) => addr,
            Err(reason) => return report.failed(&reason),
        };
        let mut config = TurnConfig::new(addr, server.transport, &server.user, &server.password);
        config.tls_name = Some(server.host().to_string());
        turn.push(config);
    }
    let mut turn_trust = TurnTrust::system();
    for path in &args.link.turn_ca {
        match holepunch_tokio::turn_tls::load_certs(path) {
            Ok(cas) => turn_trust.extra_cas.extend(cas),
            Err(e) => return report.failed(&format!("--turn-ca: {e}")),
        }
    }
    let mut stun = Vec::with_capacity(args.link.stun.len());
    for server in &args.link.stun {
        match server.resolve() {
            Ok(addr) => stun.push(addr),
            Err(reason) => return report.failed(&reason),
        }
    }
    let identity = match &job {
        None => None,
        Some(_) => match keys::load_identity(args.link.key.as_deref()) {
            Ok((identity, created)) => {
                if let Some(path) = created {
                    report.key_created(&path, &identity.fingerprint());
                }
                Some(Arc::new(identity))
            }
            Err(reason) => return report.failed(&reason),
        },
    };
    let mut common = Common {
        args,
        report,
        stun,
        turn,
        turn_trust,
        seed: holepunch_tokio::os_seed(),
        tally: Arc::new(Tally::default()),
        peer: String::new(),
        job: job.unwrap_or(Job::Cat),
        identity,
    };
    if let (Some(server), Some(id), Some(peer)) =
        (&args.link.signal, &args.link.id, &args.link.peer)
    {
        common.peer = peer.clone();
        let client = match reach_signal_server(server, id, peer, &common, &mut signals).await {
            Ok(client) => client,
            Err(code) => return code,
        };
        let controlling = id.as_bytes() < peer.as_bytes();
        let counted = Counted::new(client, Arc::clone(&common.tally));
        match either(counted, controlling, &common, &mut signals, None).await {
            Outcome::Done(code) => code,
            // Only file mode restarts.
            Outcome::Restart => report.failed("the session ended"),
        }
    } else if let (Some(local), Some(remote)) = (&args.link.local_file, &args.link.remote_file) {
        common.peer = remote.display().to_string();
        file_sessions(local, remote, &common, &mut signals).await
    } else {
        // clap's argument groups make this unreachable; say so rather than panic.
        eprintln!(
            "holepunch connect: give --signal ADDR --id NAME --peer NAME, or --local-file and --remote-file"
        );
        ExitCode::from(EXIT_USAGE)
    }
}

/// Connects and registers at the signal server, within --timeout and until a signal.
async fn reach_signal_server(
    server: &Target,
    id: &str,
    peer: &str,
    common: &Common<'_>,
    signals: &mut StopSignals,
) -> Result<SignalClient, ExitCode> {
    let report = common.report;
    let connecting = async {
        let addr = server.resolve()?;
        let secret = common.args.link.signal_secret.as_deref().map(str::as_bytes);
        SignalClient::connect_with_secret(addr, id, peer, secret)
            .await
            .map_err(|e| format!("signal server {server}: {e}"))
    };
    tokio::select! {
        r = tokio::time::timeout(common.args.link.timeout, connecting) => match r {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(reason)) => Err(report.failed(&reason)),
            Err(_) => Err(report.failed(&format!(
                "signal server {server}: no answer within {} s",
                common.args.link.timeout.as_secs_f64()
            ))),
        },
        name = signals.recv() => Err(report.failed(&format!("interrupted by {name}"))),
    }
}

/// File mode: sessions over the offer files, started again whenever the peer's file holds a
/// newer offer before a path was found.
async fn file_sessions(
    local: &std::path::Path,
    remote: &std::path::Path,
    common: &Common<'_>,
    signals: &mut StopSignals,
) -> ExitCode {
    let report = common.report;
    let mut watch = OfferWatch::new(remote);
    let mut files = OfferFiles::create(local, remote);
    loop {
        let f = match files {
            Ok(f) => f,
            Err(e) => return report.failed(&format!("cannot write {}: {e}", local.display())),
        };
        let counted = Counted::new(f, Arc::clone(&common.tally));
        let controlling = !common.args.link.controlled;
        match either(counted, controlling, common, signals, Some(&mut watch)).await {
            Outcome::Done(code) => return code,
            Outcome::Restart => {
                report.warning(&format!(
                    "{} holds a new offer; starting again on it",
                    remote.display()
                ));
                // Our earlier lines stay: the peer may have read them, and they are still ours.
                files = OfferFiles::append(local, remote);
            }
        }
    }
}

/// Where the data phase stands.
#[derive(Default)]
struct Ending {
    local_eof: Option<Instant>,
    peer_eof: Option<Instant>,
    last_data: Option<Instant>,
}

impl Ending {
    /// When to exit, once our stdin is done.
    fn exit_at(&self) -> Option<Instant> {
        let ours = self.local_eof?;
        let last = self.last_data.unwrap_or(ours);
        Some(match self.peer_eof {
            Some(theirs) => theirs.max(last) + DRAIN,
            None => ours.max(last) + IDLE_AFTER_EOF,
        })
    }
}

/// Binds the sockets, reports the host candidates (`gathered`) and starts ICE over
/// `signalling`, with what is left of --timeout.
async fn start(
    signalling: impl Signalling,
    controlling: bool,
    common: &Common<'_>,
    deadline: Instant,
) -> Result<Arc<Connection>, ExitCode> {
    let mut config = EndpointConfig::aggressive()
        .with_stun_servers(common.stun.clone())
        .with_turn_servers(common.turn.clone());
    config.turn_trust = common.turn_trust.clone();
    config.portmap = !common.args.link.no_portmap;
    config.nat64_prefix = nat64_prefix(common).await;
    config.seed = Some(common.seed);
    config.recv_queue = RECV_QUEUE;
    keepalive::configure(&mut config, common.args.link.keepalive);
    // The time spent reaching the signal server (and earlier sessions) counts against --timeout.
    config.connect_timeout = Some(
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1)),
    );
    let wildcard = [
        SocketAddr::new(IpAddr::from([0u8; 4]), 0),
        SocketAddr::new(IpAddr::from([0u16; 8]), 0),
    ];
    let endpoint = Endpoint::bind(&wildcard, config).await.map_err(|e| {
        common
            .report
            .failed(&format!("cannot bind UDP sockets: {e}"))
    })?;
    // The host candidates are known now; later ones come as `candidate` events.
    tracing::debug!(
        host = ?endpoint.host_addrs(),
        stun = ?common.stun,
        turn = common.turn.len(),
        controlling,
        "ICE sockets bound"
    );
    common.report.gathered(endpoint.host_addrs().len());
    let conn = Arc::new(endpoint.start(signalling, controlling));
    restart_on_sigusr1(&conn, common.report);
    Ok(conn)
}

/// On an IPv6-only host (an IPv6 default route and no IPv4 one, nor an IPv4 address towards
/// any --stun server): the NAT64 prefix the system resolver synthesises with (RFC 7050, up to
/// 1.5 s), reported as a `nat64` event, or a warning that IPv4 peers and servers are out of
/// reach.
async fn nat64_prefix(common: &Common<'_>) -> Option<Nat64Prefix> {
    let routed = |anchor: &str| {
        let anchor: SocketAddr = anchor.parse().expect("constant");
        local_ip_towards(anchor).is_ok_and(|ip| !ip.is_loopback())
    };
    let v4 = host_ips(true, &common.stun);
    if routed(ANCHOR_V4) || v4.iter().any(|ip| !ip.is_loopback()) || !routed(ANCHOR_V6) {
        return None;
    }
    let config = DiscoveryConfig {
        first_timeout: NAT64_FIRST_WAIT,
        max_sends: 2,
    };
    let finding = tokio::task::spawn_blocking(move || discover_nat64(config))
        .await
        .unwrap_or(Nat64Finding::NoResolver);
    let report = common.report;
    match finding {
        Nat64Finding::Found { resolver, prefix } => {
            let event = crate::json::Nat64 {
                prefix: prefix.to_string(),
                resolver: resolver.to_string(),
            };
            let human = format!(
                "IPv6-only host: NAT64 prefix {prefix} (from resolver {resolver}); IPv4 peers and \
                 servers are reached through it"
            );
            report.event(&event, &human);
            Some(prefix)
        }
        other => {
            let why = match other {
                Nat64Finding::NoResolver => "no resolver configured".to_string(),
                Nat64Finding::NoNat64 { resolver } => format!("resolver {resolver} has no DNS64"),
                Nat64Finding::Failed { resolver, error } => format!("resolver {resolver}: {error}"),
                Nat64Finding::Found { .. } => unreachable!("handled above"),
            };
            report.warning(&format!(
                "IPv6-only host and no NAT64 prefix found ({why}): IPv4 peers and servers are out of reach"
            ));
            None
        }
    }
}

/// SIGUSR1 restarts ICE on `conn` (RFC 8445 §9): after a network change the user or a network
/// manager hook can ask for new candidates without ending the session. The watcher holds only a
/// weak reference and ends with the connection.
fn restart_on_sigusr1(conn: &Arc<Connection>, report: Reporter) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut usr1) = signal(SignalKind::user_defined1()) else {
        report.warning("cannot watch SIGUSR1; ICE restart by signal is off");
        return;
    };
    let conn = Arc::downgrade(conn);
    tokio::spawn(async move {
        while usr1.recv().await.is_some() {
            let Some(conn) = conn.upgrade() else { return };
            if let Err(e) = conn.restart().await {
                report.warning(&format!("ICE restart on SIGUSR1 failed: {e}"));
            }
        }
    });
}

/// What one session has seen so far, changed by the connection's events.
struct Phase {
    connected: bool,
    /// File mode: ICE gave up on the offer read; waiting for a newer one (or the timeout).
    ice_failed: bool,
    srflx_seen: bool,
    ending: Ending,
    /// Handed to the stdin pump once connected; it reports our EOF through it.
    eof_tx: Option<oneshot::Sender<()>>,
}

impl Phase {
    /// Reports `event` and acts on it; `Some` when the session is over.
    fn on_event(
        &mut self,
        event: ConnectionEvent,
        conn: &Arc<Connection>,
        common: &Common<'_>,
        file_mode: bool,
    ) -> Option<Outcome> {
        let report = common.report;
        tracing::debug!(?event, "connection event");
        match event {
            // Host candidates were counted in `gathered`.
            ConnectionEvent::LocalCandidate(c) if c.kind != CandidateKind::Host => {
                self.srflx_seen |= c.kind == CandidateKind::ServerReflexive;
                report.candidate(&c);
            }
            ConnectionEvent::Relay(RelayEvent::Failed { server, error }) => {
                report.warning(&format!(
                    "TURN relay {server}: no allocation ({error}); the relay is not used"
                ));
            }
            ConnectionEvent::RelayUnreachable { server, error } => {
                report.warning(&format!(
                    "TURN relay {server} over TCP or TLS: {error}; the relay is not used"
                ));
            }
            ConnectionEvent::Checking => report.checking(),
            ConnectionEvent::Connected(path) => {
                report.path(true, &path);
                self.connected = true;
                keepalive::after_connecting(conn, common);
                // The data phase starts here (datagram mode: stdin, paced, to the peer).
                if let Some(done) = self.eof_tx.take() {
                    let pacer = Pacer::new(common.args.rate);
                    let tally = Arc::clone(&common.tally);
                    pump_stdin(Arc::clone(conn), tally, report, done, pacer);
                }
            }
            ConnectionEvent::PathChanged(path) => report.path(false, &path),
            ConnectionEvent::ConsentLost(path) => report.consent_lost(&path),
            ConnectionEvent::BlindPunching { hard, easy } => report.blind_punching(hard, easy),
            ConnectionEvent::Restarted(reason) => report.restarted(reason),
            ConnectionEvent::KeepaliveInterval(interval) => report.keepalive(interval),
            ConnectionEvent::PeerFinished => self.ending.peer_eof = Some(Instant::now()),
            ConnectionEvent::SignallingClosed(error) => {
                if !self.connected {
                    // No path yet and no way to exchange candidates: waiting is futile.
                    let why = error.map_or_else(
                        || "the signal server closed the connection".to_string(),
                        |e| format!("signalling failed: {e}"),
                    );
                    let reason = format!("{why} before a path was found");
                    return Some(Outcome::Done(report.failed(&reason)));
                }
                report.signalling_closed(error.as_ref());
            }
            ConnectionEvent::Failed(ConnectError::NoPath) if file_mode => {
                // The offer read may be stale; a new one may still come.
                self.ice_failed = true;
                report.warning("no path with the peer's current offer; waiting for a new one");
            }
            ConnectionEvent::Failed(e) => {
                let reason = match e {
                    ConnectError::TimedOut(_) => no_path_within(common.args.link.timeout),
                    e => e.to_string(),
                };
                return Some(Outcome::Done(report.failed(&reason)));
            }
            _ => {}
        }
        None
    }
}

fn no_path_within(timeout: Duration) -> String {
    format!("no path within {} s", timeout.as_secs_f64())
}

/// The warning for `--stun` servers that have not answered their first retransmissions.
fn silent_stun_warning(common: &Common<'_>) -> String {
    let list: Vec<String> = common.stun.iter().map(ToString::to_string).collect();
    format!(
        "no answer from STUN server {} after {} ms (retransmitting); without it there is no \
         server-reflexive candidate",
        list.join(", "),
        STUN_SILENT_AFTER.as_millis()
    )
}

/// Stream mode ([`stream::converse`]) or datagram mode ([`converse`]).
async fn either<S: Signalling>(
    signalling: S,
    controlling: bool,
    common: &Common<'_>,
    signals: &mut StopSignals,
    offers: Option<&mut OfferWatch>,
) -> Outcome {
    if common.identity.is_some() {
        stream::converse(signalling, controlling, common, signals, offers).await
    } else {
        converse(signalling, controlling, common, signals, offers).await
    }
}

/// Datagram mode: runs ICE over `signalling`, then copies data until both sides are done. `offers` (file
/// mode) is checked for a newer offer from the peer until a path is found.
async fn converse<S: Signalling>(
    signalling: S,
    controlling: bool,
    common: &Common<'_>,
    signals: &mut StopSignals,
    mut offers: Option<&mut OfferWatch>,
) -> Outcome {
    let (args, report, tally) = (common.args, common.report, &common.tally);
    let deadline = report.started + args.link.timeout;
    let conn = match start(signalling, controlling, common, deadline).await {
        Ok(conn) => conn,
        Err(code) => return Outcome::Done(code),
    };
    let file_mode = offers.is_some();
    let (eof_tx, mut eof_rx) = oneshot::channel::<()>();
    let mut phase = Phase {
        connected: false,
        ice_failed: false,
        srflx_seen: false,
        ending: Ending::default(),
        eof_tx: Some(eof_tx),
    };
    let mut data_open = true;
    let mut output = Output::new();
    let mut buf = vec![0u8; 65_536];
    let mut waiting =
        tokio::time::interval_at((Instant::now() + WAITING_EVERY).into(), WAITING_EVERY);
    let stun_silent = tokio::time::sleep(STUN_SILENT_AFTER);
    tokio::pin!(stun_silent);
    let mut stun_checked = common.stun.is_empty();
    let mut offer_check = tokio::time::interval(OFFER_CHECK_EVERY);
    loop {
        let exit_at = phase.ending.exit_at();
        let far = Instant::now() + Duration::from_secs(3600);
        let exit_sleep = tokio::time::sleep_until(exit_at.unwrap_or(far).into());
        let give_up = tokio::time::sleep_until(deadline.into());
        let connected = phase.connected;
        tokio::select! {
            name = signals.recv() => {
                if connected {
                    // Tell the peer we are gone rather than let it wait for consent to expire.
                    let _ = tokio::time::timeout(FINISH_ON_SIGNAL, conn.finish()).await;
                    output.flush().await;
                    report.closed(&tally.counts(), &format!("stopped by {name}"));
                    return Outcome::Done(ExitCode::SUCCESS);
                }
                return Outcome::Done(report.failed(&format!("interrupted by {name}")));
            }
            event = conn.next_event(), if !phase.ice_failed => {
                let Some(event) = event else {
                    return Outcome::Done(report.failed("the session ended"));
                };
                if let Some(outcome) = phase.on_event(event, &conn, common, file_mode) {
                    return outcome;
                }
            }
            received = conn.recv(&mut buf), if data_open => match received {
                Ok(n) => {
                    tally.received(n);
                    phase.ending.last_data = Some(Instant::now());
                    output.write(&buf[..n]).await;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "receiving ended");
                    data_open = false;
                }
            },
            () = output.flush_due() => output.flush().await,
            _ = waiting.tick(), if !connected && !tally.heard_peer() => {
                report.waiting(&common.peer);
            }
            () = &mut stun_silent, if !stun_checked => {
                stun_checked = true;
                if !phase.srflx_seen && !connected {
                    report.warning(&silent_stun_warning(common));
                }
            }
            _ = offer_check.tick(), if !connected && file_mode => {
                if offers.as_mut().is_some_and(|w| w.changed()) {
                    return Outcome::Restart;
                }
            }
            () = give_up, if phase.ice_failed => {
                return Outcome::Done(report.failed(&no_path_within(args.link.timeout)));
            }
            _ = &mut eof_rx, if connected && phase.ending.local_eof.is_none() => {
                phase.ending.local_eof = Some(Instant::now());
            }
            () = exit_sleep, if exit_at.is_some() => {
                output.flush().await;
                let code = close(report, tally, phase.ending.peer_eof.is_some(), args.max_loss);
                return Outcome::Done(code);
            }
        }
    }
}

/// Reports `closed`; exit 1 (after a `failed` event) when more than `max_loss` percent of the
/// datagrams the peer reported sending never arrived.
fn close(report: Reporter, tally: &Tally, peer_done: bool, max_loss: f64) -> ExitCode {
    let why = if peer_done {
        "both sides done"
    } else {
        "no data from the peer for 2 s after our EOF"
    };
    let counts = tally.counts();
    report.closed(&counts, why);
    match counts.too_lossy(max_loss) {
        Some(reason) => report.failed(&reason),
        None => ExitCode::SUCCESS,
    }
}

/// Our stdout: received data, buffered briefly so a fast transfer is not one write per
/// datagram. A closed stdout (`| head`) discards the rest, as a full buffer would.
struct Output {
    stdout: tokio::io::Stdout,
    buf: Vec<u8>,
    open: bool,
    due: Option<Instant>,
}

impl Output {
    fn new() -> Output {
        Output {
            stdout: tokio::io::stdout(),
            buf: Vec::with_capacity(64 * 1024),
            open: true,
            due: None,
        }
    }

    async fn write(&mut self, data: &[u8]) {
        if !self.open {
            return;
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 48 * 1024 {
            self.flush().await;
        } else if self.due.is_none() {
            self.due = Some(Instant::now() + FLUSH_AFTER);
        }
    }

    /// Resolves when buffered data is due (never while there is none).
    async fn flush_due(&self) {
        match self.due {
            Some(due) => tokio::time::sleep_until(due.into()).await,
            None => std::future::pending().await,
        }
    }

    async fn flush(&mut self) {
        self.due = None;
        if self.buf.is_empty() || !self.open {
            self.buf.clear();
            return;
        }
        let written = async {
            self.stdout.write_all(&self.buf).await?;
            self.stdout.flush().await
        };
        self.open = written.await.is_ok();
        self.buf.clear();
    }
}

/// Copies stdin to the peer, one paced datagram per read, then signals EOF (with our counts)
/// and reports through `done`.
fn pump_stdin(
    conn: Arc<Connection>,
    tally: Arc<Tally>,
    report: Reporter,
    done: oneshot::Sender<()>,
    mut pacer: Pacer,
) {
    tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut chunk = vec![0u8; CHUNK];
        loop {
            let n = match stdin.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            pacer.wait(n).await;
            match conn.send(&chunk[..n]).await {
                Ok(()) => tally.sent(n),
                Err(e) if e.kind() == io::ErrorKind::InvalidInput => report.warning(&format!(
                    "not sent: {n} bytes starting with byte {:#04x}, which the peer would take \
                     for STUN; --datagram is for text (the default stream mode carries any bytes)",
                    chunk[0]
                )),
                // No path at this moment (consent lost): the datagram is lost, as on a network.
                Err(e) => tracing::debug!(len = n, error = %e, "datagram not sent"),
            }
        }
        let _ = conn.finish().await;
        let _ = done.send(());
    });
}

/// `--turn USER:PASS@HOST:PORT[?transport=tcp|udp]`.
fn parse_turn(s: &str) -> Result<TurnServer, String> {
    let shape = "expected USER:PASS@HOST:PORT[?transport=udp|tcp|tls]";
    let (credentials, rest) = s.rsplit_once('@').ok_or(shape)?;
    let (user, password) = credentials.split_once(':').ok_or(shape)?;
    let (server, query) = match rest.split_once('?') {
        Some((server, query)) => (server, Some(query)),
        None => (rest, None),
    };
    let transport = match query {
        None | Some("transport=udp") => TurnTransport::Udp,
        Some("transport=tcp") => TurnTransport::Tcp,
        Some("transport=tls") => TurnTransport::Tls,
        Some(other) => {
            return Err(format!(
                "unknown TURN option {other:?} (transport=udp, transport=tcp or transport=tls)"
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
        transport,
    })
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
                transport: TurnTransport::Tcp,
            }
        );
        let udp = parse_turn("u:p@1.2.3.4:3478").expect("valid");
        assert_eq!(udp.transport, TurnTransport::Udp);
        assert_eq!(udp.host(), "1.2.3.4");
        let tls = parse_turn("u:p@[::1]:5349?transport=tls").expect("valid");
        assert_eq!(tls.transport, TurnTransport::Tls);
        assert_eq!(tls.host(), "::1");
        assert_eq!(t.host(), "relay.example");
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
}
