//! `holepunch stun SERVER [--json] [--timeout SECS]`: one Binding transaction.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use holepunch_core::stun::DEFAULT_PORT;
use holepunch_std::{DriverError, StunOptions, StunReport};

use crate::json::Event;
use crate::{EXIT_FAILED, format_ms, whole_ms};

/// Arguments of `holepunch stun`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The STUN server: IP:PORT, [IPv6]:PORT or HOST:PORT; without a port, 3478.
    #[arg(value_name = "SERVER")]
    server: String,
    /// Print one JSON object per line instead of text.
    #[arg(long)]
    json: bool,
    /// Give up after this many seconds; retransmissions are spread over it (RFC 8489 schedule).
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_secs)]
    timeout: Duration,
}

/// Runs the transaction and prints the result; exit 1 if there is none.
pub fn run(args: &Args) -> ExitCode {
    let server = match resolve(&args.server) {
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
        Event::new("mapped")
            .str("address", r.mapped)
            .unsigned("rtt_ms", whole_ms(r.rtt))
            .unsigned("rtt_us", r.rtt.as_micros())
            .str("local", r.local)
            .str("server", r.server)
            .str("from", r.from)
            .opt_str("other_address", r.other_address)
            .opt_str("response_origin", r.response_origin)
            .print();
    } else {
        println!("mapped {} (rtt {})", r.mapped, format_ms(r.rtt));
    }
}

fn fail(args: &Args, server: Option<SocketAddr>, reason: &str) -> ExitCode {
    if args.json {
        Event::new("failed")
            .str("reason", reason)
            .opt_str("server", server)
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

/// The server's address: an IP literal (with or without port) or a host name, resolved with the
/// system resolver; IPv4 preferred when a name has both.
pub(crate) fn resolve(server: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = server.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bare = server
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(server);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, DEFAULT_PORT));
    }
    let has_port = server
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    let found = if has_port {
        server.to_socket_addrs()
    } else {
        (server, DEFAULT_PORT).to_socket_addrs()
    };
    let addrs: Vec<SocketAddr> = found
        .map_err(|e| format!("cannot resolve {server}: {e}"))?
        .collect();
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
    fn resolves_literals_with_and_without_ports() {
        let ok = |s: &str| resolve(s).expect("resolves");
        assert_eq!(ok("1.2.3.4:5"), "1.2.3.4:5".parse().expect("addr"));
        assert_eq!(ok("1.2.3.4"), "1.2.3.4:3478".parse().expect("addr"));
        assert_eq!(ok("[::1]:9"), "[::1]:9".parse().expect("addr"));
        assert_eq!(ok("[::1]"), "[::1]:3478".parse().expect("addr"));
        assert_eq!(ok("::1"), "[::1]:3478".parse().expect("addr"));
        assert_eq!(ok("localhost:7").port(), 7);
    }

    #[test]
    fn timeouts_must_be_positive() {
        assert_eq!(parse_secs("2.5"), Ok(Duration::from_millis(2500)));
        assert!(parse_secs("0").is_err());
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("nan").is_err());
        assert!(parse_secs("soon").is_err());
    }
}
