//! `holepunch stun SERVER [--json] [--timeout SECS]`: one Binding transaction.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use holepunch_std::{DriverError, StunOptions, StunReport};

use crate::address::{self, Target};

use crate::json::{self, Event as _};
use crate::{EXIT_FAILED, format_ms};

/// Arguments of `holepunch stun`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The STUN server (the help text gives its forms).
    #[arg(
        value_name = "SERVER",
        value_parser = address::stun_server,
        help = "The STUN server: IP:PORT, [IPv6]:PORT or HOST:PORT; without a port, 3478. A \
                malformed address is bad usage (exit 2); only a host name is looked up"
    )]
    server: Target,
    /// Print one JSON object per line instead of text.
    #[arg(long)]
    json: bool,
    /// Give up after this many seconds; retransmissions are spread over it (RFC 8489 schedule).
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_secs)]
    timeout: Duration,
}

/// Runs the transaction and prints the result; exit 1 if there is none.
pub fn run(args: &Args) -> ExitCode {
    let server = match args.server.resolve() {
        Ok(server) => server,
        Err(reason) => return fail(args, None, &reason),
    };
    let options = StunOptions::default().with_timeout(args.timeout);
    match holepunch_std::stun(server, &options) {
        Ok(report) => {
            print_report(args, &report);
            ExitCode::SUCCESS
        }
        Err(e) => {
            let reason = match e {
                DriverError::Failed(_) if e.is_timeout() => format!(
                    "timeout: no response from {server} within {} s",
                    args.timeout.as_secs_f64()
                ),
                e => e.to_string(),
            };
            fail(args, Some(server), &reason)
        }
    }
}

fn print_report(args: &Args, r: &StunReport) {
    if args.json {
        json::Mapped {
            address: r.mapped.to_string(),
            rtt_ms: json::ms(r.rtt),
            rtt_us: u64::try_from(r.rtt.as_micros()).unwrap_or(u64::MAX),
            local: r.local.to_string(),
            server: r.server.to_string(),
            from: r.from.to_string(),
            other_address: r.other_address.map(|a| a.to_string()),
            response_origin: r.response_origin.map(|a| a.to_string()),
        }
        .print();
    } else {
        println!("mapped {} (rtt {})", r.mapped, format_ms(r.rtt));
    }
}

fn fail(args: &Args, server: Option<SocketAddr>, reason: &str) -> ExitCode {
    if args.json {
        json::Failed {
            reason: reason.into(),
            server: server.map(|s| s.to_string()),
        }
        .print();
    } else {
        eprintln!("holepunch stun: {reason}");
    }
    ExitCode::from(EXIT_FAILED)
}

/// `--timeout`: positive, finite seconds (fractions allowed).
pub(crate) fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("not a number of seconds: {s}"))?;
    if !(secs.is_finite() && secs > 0.0 && secs <= 86_400.0) {
        return Err(format!(
            "must be more than 0 and at most 86400 seconds: {s}"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_must_be_positive() {
        assert_eq!(parse_secs("2.5"), Ok(Duration::from_millis(2500)));
        assert!(parse_secs("0").is_err());
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("nan").is_err());
        assert!(parse_secs("soon").is_err());
    }
}
