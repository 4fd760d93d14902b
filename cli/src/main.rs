//! `holepunch`: the command line (its contract, flags and `--json` events, is in cli.md).
//!
//! One module per subcommand; each turns its arguments into an exit status:
//! 0 success, 1 the job failed (timeout, no answer, data lost), 2 bad usage (clap's own,
//! malformed addresses, or an impossible configuration). `--json` events are typed structs in
//! [`json`]; server addresses are checked by [`address`] while the arguments are parsed.
//! Diagnostics (`-v`, `RUST_LOG`) are `tracing` events, set up by [`logging`].

mod address;
mod connect;
mod demo;
mod json;
mod keygen;
mod keys;
mod logging;
mod netcheck;
mod portmap;
mod receive;
mod relay;
mod send;
mod signal;
mod stun;
mod stun_server;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit status when the job failed (no answer, timeout, socket error).
pub const EXIT_FAILED: u8 = 1;
/// Exit status for bad usage (clap uses it too).
pub const EXIT_USAGE: u8 = 2;
/// SOFTWARE attribute our servers add when a response has room for it.
pub const SOFTWARE: &str = concat!("holepunch ", env!("CARGO_PKG_VERSION"));

/// The `--help` paragraph on diagnostics (see [`logging`]).
const DIAGNOSTICS_HELP: &str = "Diagnostics: -v (or -vv for more) prints tracing events on stderr: \
sockets bound, servers that answered or not, candidates, the selected path, relay allocations. \
RUST_LOG=<filter> picks them instead (e.g. RUST_LOG=holepunch_tokio=trace). Without either, \
stderr carries only each command's progress events.";

/// NAT traversal toolkit: connect two hosts behind NATs (ICE), with the STUN, rendezvous and
/// diagnostic tools around it, and a simulated-internet demo.
#[derive(Debug, Parser)]
#[command(
    name = "holepunch",
    version,
    about,
    propagate_version = true,
    after_help = DIAGNOSTICS_HELP
)]
struct Cli {
    /// Diagnostics on stderr: -v for debug events, -vv for per-datagram trace events (RUST_LOG
    /// overrides)
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the NAT-pair matrix on a simulated internet (no root, no network): for every pair
    /// of NAT profiles, whether two ICE agents find a direct path, and how fast (virtual time).
    /// With --population N: N peers from a NAT mix, their direct/relay shares and relay load.
    Demo(demo::Args),
    /// Serves STUN (RFC 8489); with --alternate also RFC 5780 behaviour discovery.
    StunServer(stun_server::Args),
    /// Runs one STUN Binding transaction and prints the mapped address.
    Stun(stun::Args),
    /// Classifies this host's NAT: public addresses, mapping, filtering, hairpinning, the
    /// gateway's port mapping, the NAT64 prefix (asking the resolver of /etc/resolv.conf,
    /// or of the file $HOLEPUNCH_RESOLV_CONF names), and a 464XLAT CLAT carrying IPv4 (`clat`:
    /// its interface and RFC 7335 address).
    Netcheck(netcheck::Args),
    /// Serves the rendezvous that forwards offer lines between named peers (for connect).
    Signal(signal::Args),
    /// Connects to a peer through NATs (ICE) and copies stdin/stdout over one reliable,
    /// encrypted QUIC stream (peer keys travel in the offers); --datagram for plain UDP.
    Connect(connect::Args),
    /// Sends one file to a peer running `holepunch receive` (stream mode, SHA-256 checked).
    Send(send::Args),
    /// Receives one file from a peer running `holepunch send` into DIR.
    Receive(receive::Args),
    /// Writes a new Ed25519 key (PKCS#8 PEM) and prints its fingerprint.
    Keygen(keygen::Args),
    /// Maps a local UDP port on the gateway (PCP, NAT-PMP or UPnP IGD), keeps it renewed until
    /// SIGINT or SIGTERM, then deletes it.
    Portmap(portmap::Args),
    /// Serves TURN (RFC 8656) over UDP and TCP: the relay for peers with no direct path.
    Relay(relay::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.verbose);
    match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::StunServer(args) => stun_server::run(&args),
        Command::Stun(args) => stun::run(&args),
        Command::Netcheck(args) => netcheck::run(&args),
        Command::Signal(args) => signal::run(&args),
        Command::Connect(args) => connect::run(&args),
        Command::Send(args) => send::run(&args),
        Command::Receive(args) => receive::run(&args),
        Command::Keygen(args) => keygen::run(&args),
        Command::Portmap(args) => portmap::run(&args),
        Command::Relay(args) => relay::run(&args),
    }
}

/// A duration for humans: one decimal below 10 ms, whole milliseconds above.
pub fn format_ms(d: std::time::Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// Whole milliseconds, rounded to nearest, for `--json` fields named `*_ms`.
pub fn whole_ms(d: std::time::Duration) -> u128 {
    (d.as_micros() + 500) / 1000
}

/// The single-threaded tokio runtime the serving and connecting commands run on.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}
