//! `holepunch relay`: a TURN server (RFC 8656) over UDP and TCP on one port, and TLS on
//! another with `--tls-listen`, until SIGINT or SIGTERM.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use holepunch_core::turn::{Cidr, ServerConfig};
use holepunch_tokio::relay::{HEALTH_INTERVAL, RelayConfig, RelayTls, serve_relay};
use holepunch_tokio::turn_tls;

use crate::signal::StopSignals;
use crate::{EXIT_FAILED, EXIT_USAGE};

/// Arguments of `holepunch relay`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Peers on loopback, private (RFC 1918), link-local, CGNAT (100.64/10), multicast and the relay's
own addresses are refused by default; --allow-peer opens a range (for tests on one machine:
--allow-peer 127.0.0.0/8). Clients authenticate with long-term credentials: --user, or TURN REST
credentials (username EXPIRY:USER, password base64(HMAC-SHA1(SECRET, username))) with --secret.
TURN over TLS (turns:, what clients behind UDP-blocking firewalls use, often on port 443): give
--tls-listen with --cert and --key PEM files; TLS 1.2 and 1.3, framed as over TCP.")]
pub struct Args {
    /// UDP and TCP address to listen on, IP:PORT (3478 is the standard port).
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// IP address relayed sockets are bound to and advertised with (not a wildcard).
    #[arg(long, value_name = "IP")]
    relay_ip: IpAddr,
    /// A static user, USER:PASS (repeatable).
    #[arg(long = "user", value_name = "USER:PASS", value_parser = parse_user)]
    users: Vec<(String, String)>,
    /// Shared secret for TURN REST time-limited credentials.
    #[arg(long, value_name = "SECRET")]
    secret: Option<String>,
    /// The realm of the long-term credentials. Realms of at most 8 bytes let the 401 challenge
    /// fit the smallest Allocate clients send (60 bytes), which no answer may exceed.
    #[arg(long, default_value = "relay")]
    realm: String,
    /// A peer range to allow despite the default deny list, e.g. 127.0.0.0/8 (repeatable).
    #[arg(long = "allow-peer", value_name = "CIDR")]
    allow_peers: Vec<Cidr>,
    /// Most allocations per user.
    #[arg(long, default_value_t = 64, value_name = "N")]
    user_quota: usize,
    /// Most allocations in total.
    #[arg(long, default_value_t = 4096, value_name = "N")]
    max_allocations: usize,
    /// Per-allocation bandwidth cap in bytes per second (0: unlimited).
    #[arg(long, default_value_t = 0, value_name = "BYTES")]
    bandwidth: u64,
    /// TLS address to listen on too, IP:PORT (5349 is the standard port; 443 passes most
    /// firewalls). Needs --cert and --key.
    #[arg(long, value_name = "ADDR", requires_all = ["cert", "key"])]
    tls_listen: Option<SocketAddr>,
    /// The TLS certificate chain, PEM (leaf first).
    #[arg(long, value_name = "PEM", requires = "tls_listen")]
    cert: Option<PathBuf>,
    /// The TLS certificate's private key, PEM (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "PEM", requires = "tls_listen")]
    key: Option<PathBuf>,
}

/// Reads --cert and --key into the TLS listener's configuration.
fn tls_config(listen: SocketAddr, cert: &Path, key: &Path) -> Result<RelayTls, String> {
    let chain = turn_tls::load_certs(cert).map_err(|e| format!("--cert: {e}"))?;
    let key = turn_tls::load_key(key).map_err(|e| format!("--key: {e}"))?;
    let config = turn_tls::server_config(chain, key)
        .map_err(|e| format!("--cert and --key do not make a TLS identity: {e}"))?;
    Ok(RelayTls { listen, config })
}

fn parse_user(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((u, p)) if !u.is_empty() && !p.is_empty() => Ok((u.into(), p.into())),
        _ => Err(format!("{s:?} is not USER:PASS")),
    }
}

/// Serves until a stop signal: the relay task on this thread's runtime, the relayed sockets on
/// the relay's own peer thread.
pub fn run(args: &Args) -> ExitCode {
    if args.users.is_empty() && args.secret.is_none() {
        eprintln!("holepunch relay: give at least one --user USER:PASS or --secret");
        return ExitCode::from(EXIT_USAGE);
    }
    if args.relay_ip.is_unspecified() {
        eprintln!(
            "holepunch relay: --relay-ip must be a concrete address, not {}",
            args.relay_ip
        );
        return ExitCode::from(EXIT_USAGE);
    }
    // A current-thread runtime: the relay starts its one other thread itself (the peer
    // thread, see holepunch_tokio::relay), and no packet crosses between the two; on a
    // work-stealing runtime every hand-off cost a wake-up (futex, context switch) that
    // dominated the profile (relay_load bench: 0.62x coturn's packets/s).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("holepunch relay: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    runtime.block_on(serve(args))
}

async fn serve(args: &Args) -> ExitCode {
    let mut signals = match StopSignals::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("holepunch relay: cannot install signal handlers: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let mut config = ServerConfig::new(&args.realm);
    config.users = args.users.clone();
    config.shared_secret = args.secret.as_ref().map(|s| s.as_bytes().to_vec());
    config.policy.allow = args.allow_peers.clone();
    config.max_allocations_per_user = args.user_quota;
    config.max_allocations = args.max_allocations;
    config.bandwidth_bytes_per_sec = args.bandwidth;
    let mut relay_config = RelayConfig::new(args.listen, args.relay_ip, config);
    if let (Some(listen), Some(cert), Some(key)) = (args.tls_listen, &args.cert, &args.key) {
        match tls_config(listen, cert, key) {
            Ok(tls) => relay_config.tls = Some(tls),
            Err(reason) => {
                eprintln!("holepunch relay: {reason}");
                return ExitCode::from(EXIT_FAILED);
            }
        }
    }
    let relay = match serve_relay(relay_config).await {
        Ok(relay) => relay,
        Err(e) => {
            eprintln!("holepunch relay: cannot listen on {}: {e}", args.listen);
            return ExitCode::from(EXIT_FAILED);
        }
    };
    eprintln!(
        "relay: listening on udp and tcp {}, relaying from {}, realm {:?}",
        relay.local_addr(),
        args.relay_ip,
        args.realm
    );
    if let Some(addr) = relay.tls_addr() {
        eprintln!("relay: listening on tls {addr}");
    }
    for cidr in &args.allow_peers {
        eprintln!("relay: peers in {cidr} allowed despite the default deny list");
    }
    eprintln!("relay: stop with SIGINT or SIGTERM");
    let mut health = tokio::time::interval(HEALTH_INTERVAL);
    let reason = loop {
        tokio::select! {
            name = signals.recv() => break name.to_string(),
            _ = health.tick() => {
                if relay.is_finished() {
                    break "the listener failed".to_string();
                }
            }
        }
    };
    let stats = relay.stats();
    eprintln!(
        "relay: {reason}, stopping ({} allocations, {} datagrams relayed, {} dropped, {} auth failures, {} forbidden peers)",
        stats.allocations, stats.relayed, stats.dropped, stats.auth_failures, stats.forbidden_peers
    );
    match relay.shutdown().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("holepunch relay: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}
