//! `holepunch signal --listen ADDR`: the rendezvous that forwards offer lines between named
//! peers, until SIGINT or SIGTERM. The protocol is `holepunch_tokio::signal`'s.

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;

use holepunch_tokio::signal::{SignalServerConfig, serve_signal};

use crate::EXIT_FAILED;

/// Arguments of `holepunch signal`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Protocol (TCP, one UTF-8 line per message, at most 4096 bytes):
  client: register NAME        first line; answered with `ok`, then lines queued for NAME
  client: to PEER TEXT         PEER receives `from NAME TEXT`
  client: ping                 answered with `pong`
  server: error REASON [...]   name-taken, bad-name, not-registered, line-too-long (these close
                               the connection), queue-full PEER, unknown-command CMD, bad-utf8
Lines for a PEER not connected yet are queued (256 lines, 64 KiB per peer) until it registers,
and dropped if their sender disconnects first. Names are 1-64 printable ASCII characters without
spaces, unique among connected clients.")]
pub struct Args {
    /// TCP address to listen on, IP:PORT (port 0 picks a free one).
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
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
    let server = match serve_signal(SignalServerConfig::new(args.listen)).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("holepunch signal: cannot listen on {}: {e}", args.listen);
            return ExitCode::from(EXIT_FAILED);
        }
    };
    eprintln!("signal: listening on tcp {}", server.local_addr());
    eprintln!("signal: forwarding offer lines between named peers; stop with SIGINT or SIGTERM");
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
