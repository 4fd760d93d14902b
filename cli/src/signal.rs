//! `holepunch signal --listen ADDR [--secret S]`: the rendezvous that forwards offer lines
//! between named peers, until SIGINT or SIGTERM. The protocol is `holepunch_tokio::signal`'s.

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;

use holepunch_tokio::signal::{SignalServerConfig, serve_signal};

use crate::EXIT_FAILED;

/// Arguments of `holepunch signal`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Protocol (TCP, one UTF-8 line per message, at most 4096 bytes):
  client: register NAME [PROOF]  first line; answered with `ok`, then lines queued for NAME
  client: to PEER TEXT           PEER receives `from NAME TEXT`
  client: ping                   answered with `pong`
  server: challenge NONCE        with --secret, first line on every connection; PROOF is the hex
                                 HMAC-SHA256 under the secret of \"holepunch-signal register\\n\"
                                 NONCE \"\\n\" NAME
  server: error REASON [...]     name-taken, bad-name, bad-proof, not-registered, line-too-long,
                                 register-timeout, idle-timeout (these close the connection),
                                 queue-full PEER, unknown-command CMD, bad-utf8
Lines for a PEER not connected yet are queued (256 lines, 64 KiB per peer) until it registers,
and dropped if their sender disconnects first. Names are 1-64 printable ASCII characters without
spaces, unique among connected clients.

Limits: 30 s to register, 120 s without a line closes a connection (clients ping every 30 s),
64 connections per IPv4 address or IPv6 /64, 1024 in all; a client that stops reading is
disconnected once 1024 lines or 128 KiB wait for it.

Threat model. The server sees every offer line (ICE credentials and candidates, i.e. the peers'
addresses) in plain text, and so does anyone on the path: it is a meeting point, not a secure
channel. What it defends against, on a public address:
  - lock-out: idle or slow connections are closed (timeouts, per-source cap, stuck readers);
    many sources together can still fill the 1024 slots for up to 30 s at a time;
  - squatting (with --secret): only a client that knows the secret can take a name, so a
    stranger can neither impersonate a peer nor read the offers queued for it. The proof is
    bound to a fresh nonce, so one seen on the wire cannot be replayed. Everyone who has the
    secret can take any free name: share it only with peers you trust with each other.
Without --secret anyone who reaches the server can take a free name, read what is queued for it,
and answer in its place: ICE then connects to the impostor. Even with --secret the server and the
secret's holders are trusted; authenticate the peer end to end above ICE when that matters.")]
pub struct Args {
    /// TCP address to listen on, IP:PORT (port 0 picks a free one).
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// Require clients to prove this shared secret to register a name (give peers the same
    /// value with `holepunch connect --signal-secret`). It shows in the process list: on a
    /// shared host, prefer a wrapper that keeps it out of argv.
    #[arg(long, value_name = "S")]
    secret: Option<String>,
}

/// Serves on a single-threaded runtime until a stop signal.
pub fn run(args: &Args) -> ExitCode {
    let runtime = match crate::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("holepunch signal: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    runtime.block_on(serve(args))
}

async fn serve(args: &Args) -> ExitCode {
    let mut signals = match StopSignals::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("holepunch signal: cannot install signal handlers: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let mut config = SignalServerConfig::new(args.listen);
    config.secret = args.secret.as_ref().map(|s| s.as_bytes().to_vec());
    let server = match serve_signal(config).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("holepunch signal: cannot listen on {}: {e}", args.listen);
            return ExitCode::from(EXIT_FAILED);
        }
    };
    eprintln!("signal: listening on tcp {}", server.local_addr());
    eprintln!("signal: forwarding offer lines between named peers; stop with SIGINT or SIGTERM");
    if args.secret.is_none() {
        eprintln!("signal: no --secret: anyone who reaches this server can take a free name");
    }
    let name = signals.recv().await;
    eprintln!("signal: {name}, stopping");
    server.shutdown().await;
    ExitCode::SUCCESS
}

/// SIGINT and SIGTERM (Ctrl-C elsewhere), installed when built.
pub struct StopSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Installs the handlers; must run inside a tokio runtime.
    pub fn new() -> io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(StopSignals {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(StopSignals {})
        }
    }

    /// Waits for the next stop signal and names it.
    pub async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => "SIGINT",
                _ = self.terminate.recv() => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}
