//! Diagnostics on stderr: `-v`/`-vv` and `RUST_LOG` install a `tracing` subscriber.
//!
//! The libraries and subcommands emit `tracing` spans and events (sockets bound, servers that
//! answered or not, candidates, the selected path, relay allocations, errors that are otherwise
//! swallowed). They are diagnostics, distinct from the progress events of cli.md, which keep
//! their exact text on stderr (and their JSON with `--json`): so with neither `-v` nor
//! `RUST_LOG` no subscriber is installed and the output is byte-for-byte what it always was.

use tracing_subscriber::EnvFilter;

/// What `-v` turns on: our crates' `debug` events, other crates' warnings. (`holepunch` is this
/// binary's own crate name.)
const VERBOSE: &str = "warn,holepunch=debug,holepunch_std=debug,holepunch_mio=debug,\
holepunch_tokio=debug,holepunch_core=debug";
/// What `-vv` turns on: our crates' `trace` events (per datagram), other crates' `debug`.
const VERY_VERBOSE: &str = "debug,holepunch=trace,holepunch_std=trace,holepunch_mio=trace,\
holepunch_tokio=trace,holepunch_core=trace";

/// Installs the stderr subscriber when `verbose > 0` or `RUST_LOG` is set; `RUST_LOG`, when
/// set and valid, is the filter (it overrides `-v`), else `-v`/`-vv` pick one above.
pub fn init(verbose: u8) {
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| EnvFilter::try_new(v).ok());
    let filter = match (from_env, verbose) {
        (Some(filter), _) => filter,
        (None, 0) => return,
        (None, 1) => EnvFilter::new(VERBOSE),
        (None, _) => EnvFilter::new(VERY_VERBOSE),
    };
    // Another subscriber already installed (never, in the binary) is not worth failing for.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(true)
        .try_init();
}
