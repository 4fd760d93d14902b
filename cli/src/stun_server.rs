//! `holepunch stun-server --listen ADDR [--alternate ADDR]`: serves until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use holepunch_core::stun::server::{AmplificationPolicy, ServerConfig};
use holepunch_std::DriverError;

use crate::signal::StopSignals;
use crate::{EXIT_FAILED, EXIT_USAGE, SOFTWARE};

/// Arguments of `holepunch stun-server`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to serve on, IP:PORT (port 0 picks a free one).
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// RFC 5780: the alternate address, with an IP and a port both different from --listen's.
    #[arg(long, value_name = "ADDR")]
    alternate: Option<SocketAddr>,
    /// How answers to unauthenticated requests are bounded: `bounded` (default: optional
    /// attributes only within the request's size, worst case 2.2x), `strict` (never larger than
    /// the request) or `unbounded` (every answer in full, up to 4.6x: labs and trusted networks
    /// only; standard tools that send bare requests need it for RFC 5780).
    #[arg(long, value_name = "POLICY", default_value = "bounded", value_parser = parse_policy)]
    amplification: AmplificationPolicy,
}

fn parse_policy(s: &str) -> Result<AmplificationPolicy, String> {
    match s {
        "bounded" => Ok(AmplificationPolicy::Bounded),
        "strict" => Ok(AmplificationPolicy::Strict),
        "unbounded" => Ok(AmplificationPolicy::Unbounded),
        other => Err(format!(
            "unknown policy {other:?} (bounded, strict or unbounded)"
        )),
    }
}

/// Names of the sockets, in `Server::local_addresses` order.
const ROLES: [&str; 4] = [
    "primary",
    "alternate port",
    "alternate IP",
    "alternate IP and port",
];

/// Serves on a single-threaded tokio runtime (the server is stateless and cheap).
pub fn run(args: &Args) -> ExitCode {
    let runtime = match crate::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("holepunch stun-server: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    runtime.block_on(serve(args))
}

async fn serve(args: &Args) -> ExitCode {
    // Signal handlers first, so a signal that arrives as soon as we log is handled, not fatal.
    let mut signals = match StopSignals::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("holepunch stun-server: cannot install signal handlers: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let mut config = ServerConfig::new(args.listen);
    config.alternate = args.alternate;
    config.software = Some(SOFTWARE);
    config.amplification = args.amplification;
    let server = match holepunch_tokio::serve_stun(config).await {
        Ok(server) => server,
        Err(e @ DriverError::Config(_)) => {
            eprintln!("holepunch stun-server: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
        Err(e) => {
            let alternate = args
                .alternate
                .map(|a| format!(" (or --alternate {a})"))
                .unwrap_or_default();
            eprintln!(
                "holepunch stun-server: cannot listen on {}{alternate}: {e}",
                args.listen
            );
            return ExitCode::from(EXIT_FAILED);
        }
    };
    for (addr, role) in server.local_addrs().iter().zip(ROLES) {
        eprintln!("stun-server: listening on udp {addr} ({role})");
    }
    let rfc5780 = if args.alternate.is_some() {
        "with"
    } else {
        "without"
    };
    eprintln!(
        "stun-server: serving {rfc5780} RFC 5780 behaviour discovery; stop with SIGINT or SIGTERM"
    );

    let mut health = tokio::time::interval(Duration::from_millis(500));
    let reason = loop {
        tokio::select! {
            name = signals.recv() => break name.to_string(),
            _ = health.tick() => {
                if server.is_finished() {
                    break "every socket failed".to_string();
                }
            }
        }
    };
    eprintln!("stun-server: {reason}, stopping");
    match server.shutdown().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("holepunch stun-server: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}
