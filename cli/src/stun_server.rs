//! `holepunch stun-server --listen ADDR [--alternate ADDR]`: serves until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use holepunch_core::stun::server::{
    AmplificationPolicy, RATE_LIMIT_SLOTS, RateLimit, ServerConfig,
};
use holepunch_std::{DEFAULT_RECV_BUFFER, DriverError, ServeOptions, StunServer};

use crate::signal::StopSignals;
use crate::{EXIT_FAILED, EXIT_USAGE, SOFTWARE};

/// Arguments of `holepunch stun-server`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
RFC 3489 (classic) Binding requests, without the magic cookie, are answered too (RFC 8489 §12):
MAPPED-ADDRESS, and with --alternate SOURCE-ADDRESS and CHANGED-ADDRESS.

Amplification (what a spoofed-source flood can make this server send):
  without --alternate   size-bounded: an answer is never larger than its request plus 24 bytes
                        (worst case 20 bytes in, 44 out for IPv6), whatever the rate.
  with --alternate      rate-limited: a source (IPv4 address, IPv6 /64) gets --burst full RFC 5780
                        answers at once, then --rate-limit per second; past that, answers shrink to
                        no larger than their request or are dropped (a bare 20-byte request gets
                        none). A full answer is at most 120 bytes (IPv6; 84 for IPv4).
  Worst case with the defaults (10/s, burst 30), per spoofed victim: 3600 bytes at once, then
  1200 bytes/s (IPv6; 840 for IPv4). In total, over any number of spoofed sources: 1024 buckets
  per thread, so at most 1.2 MB/s per thread of full answers (after at most 3.7 MB of bursts),
  plus answers no larger than the flood's own bytes. --amplification strict|bounded|unbounded overrides the policy.")]
pub struct Args {
    /// Address to serve on, IP:PORT (port 0 picks a free one).
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// RFC 5780: the alternate address, with an IP and a port both different from --listen's.
    #[arg(long, value_name = "ADDR")]
    alternate: Option<SocketAddr>,
    /// How answers to unauthenticated requests are bounded: `rate-limited` (default with
    /// --alternate: full answers within a per-source budget, see --rate-limit), `bounded`
    /// (default without: optional attributes only within the request's size, worst case 2.2x),
    /// `strict` (never larger than the request) or `unbounded` (every answer in full, up to 4.6x,
    /// without limit: labs and trusted networks only).
    #[arg(long, value_name = "POLICY", value_parser = parse_policy)]
    amplification: Option<Policy>,
    /// Full (amplifying) answers per second per source under `rate-limited`; implies it.
    #[arg(long, value_name = "PKTS/S", value_parser = parse_rate)]
    rate_limit: Option<u32>,
    /// How many full answers a source may get at once under `rate-limited`; implies it.
    #[arg(long, value_name = "PKTS")]
    burst: Option<u32>,
    /// Worker threads, each with its own copy of every socket (SO_REUSEPORT, Linux); when
    /// rate-limited, one source always meets the same worker. Default: one per core.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
    /// Receive buffer to ask for on each socket, in bytes (0: system default). Past
    /// net.core.rmem_max only with CAP_NET_ADMIN.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_RECV_BUFFER)]
    recv_buffer: usize,
}

/// `--amplification`'s choices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Policy {
    RateLimited,
    Bounded,
    Strict,
    Unbounded,
}

fn parse_policy(s: &str) -> Result<Policy, String> {
    match s {
        "rate-limited" => Ok(Policy::RateLimited),
        "bounded" => Ok(Policy::Bounded),
        "strict" => Ok(Policy::Strict),
        "unbounded" => Ok(Policy::Unbounded),
        other => Err(format!(
            "unknown policy {other:?} (rate-limited, bounded, strict or unbounded)"
        )),
    }
}

/// `10` or `10/s`.
fn parse_rate(s: &str) -> Result<u32, String> {
    let n = s.strip_suffix("/s").unwrap_or(s);
    n.parse()
        .map_err(|_| format!("{s:?} is not a number of packets per second (like 10 or 10/s)"))
}

impl Args {
    /// The policy the flags ask for (see the help text for the defaults).
    fn policy(&self) -> Result<AmplificationPolicy, String> {
        let limited = self.rate_limit.is_some() || self.burst.is_some();
        let limit = RateLimit {
            per_second: self.rate_limit.unwrap_or(RateLimit::DEFAULT.per_second),
            burst: self.burst.unwrap_or(RateLimit::DEFAULT.burst),
        };
        let chosen = self
            .amplification
            .unwrap_or(if limited || self.alternate.is_some() {
                Policy::RateLimited
            } else {
                Policy::Bounded
            });
        match chosen {
            Policy::RateLimited => Ok(AmplificationPolicy::RateLimited(limit)),
            _ if limited => {
                Err("--rate-limit and --burst need --amplification rate-limited".into())
            }
            Policy::Bounded => Ok(AmplificationPolicy::Bounded),
            Policy::Strict => Ok(AmplificationPolicy::Strict),
            Policy::Unbounded => Ok(AmplificationPolicy::Unbounded),
        }
    }
}

/// Names of the sockets, in `Server::local_addresses` order.
const ROLES: [&str; 4] = [
    "primary",
    "alternate port",
    "alternate IP",
    "alternate IP and port",
];

/// Serves with the std driver's worker threads; a single-threaded tokio runtime only waits for
/// the stop signals.
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
    let policy = match args.policy() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("holepunch stun-server: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let mut config = ServerConfig::new(args.listen);
    config.alternate = args.alternate;
    config.software = Some(SOFTWARE);
    config.amplification = policy;
    let options = ServeOptions {
        threads: args
            .threads
            .map_or_else(|| ServeOptions::per_core().threads, usize::from),
        recv_buffer: args.recv_buffer,
    };
    let server = match StunServer::bind_with(config, &options) {
        Ok(server) => Arc::new(server),
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
        "stun-server: serving {rfc5780} RFC 5780 behaviour discovery; {}; {} thread(s); \
         receive buffer {} bytes; stop with SIGINT or SIGTERM",
        describe(policy, server.config().max_full_answer_len()),
        server.threads(),
        server.recv_buffer(),
    );

    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let (server, stop) = (Arc::clone(&server), Arc::clone(&stop));
        std::thread::spawn(move || server.serve(&stop))
    };
    let mut health = tokio::time::interval(Duration::from_millis(500));
    let reason = loop {
        tokio::select! {
            name = signals.recv() => break name.to_string(),
            _ = health.tick() => {
                if worker.is_finished() {
                    break "a socket failed".to_string();
                }
            }
        }
    };
    eprintln!("stun-server: {reason}, stopping");
    stop.store(true, Ordering::Relaxed);
    match worker.join() {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("holepunch stun-server: {e}");
            ExitCode::from(EXIT_FAILED)
        }
        Err(_) => {
            eprintln!("holepunch stun-server: a worker thread panicked");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// The amplification bound in force, in one phrase for the log.
fn describe(policy: AmplificationPolicy, max_answer: usize) -> String {
    match policy {
        AmplificationPolicy::RateLimited(l) => format!(
            "rate-limited amplification ({} full answers/s per source, burst {}, at most {max_answer} \
             bytes each, {RATE_LIMIT_SLOTS} sources per thread)",
            l.per_second, l.burst
        ),
        AmplificationPolicy::Strict => {
            "strict amplification bound (never above the request)".into()
        }
        AmplificationPolicy::Unbounded => "UNBOUNDED amplification (labs only)".into(),
        _ => "size-bounded amplification (request size, or the minimal answer)".into(),
    }
}
