//! `holepunch netcheck --stun SERVER [--stun SERVER]... [--json] [--timeout SECS]`: classifies
//! this host's NAT.
//!
//! The report is the core prober's (`holepunch_core::netcheck`), run over real sockets by
//! `holepunch_std::netcheck`. The first server should offer RFC 5780 (`holepunch stun-server
//! --alternate`): mapping and filtering come from its tests. A server given by name is probed on
//! its IPv4 address and, when it has one, its IPv6 address too (for the public IPv6 address).
//!
//! Exit status: 0 when at least one server answered; 1 when none did (the report is still
//! printed, then a `failed` event: UDP is blocked or the servers are down, so nothing was
//! measured), when a server name does not resolve or a local socket fails; 2 on bad usage
//! (malformed addresses included, before any lookup).
//!
//! Port mapping (UPnP, NAT-PMP, PCP) and NAT64 are not probed yet: `null` in `--json`, "not
//! probed" for people.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use holepunch_core::netcheck::Report;
use holepunch_std::netcheck::{NetcheckOptions, NetcheckRun, NetcheckRunError};

use crate::address::{self, Target};
use crate::json::{self, Event as _};
use crate::stun::parse_secs;
use crate::{EXIT_FAILED, EXIT_USAGE, format_ms};

/// Why a run in which no server answered is a failed job.
const NO_ANSWER: &str = "no STUN server answered: UDP is blocked here, or the servers are \
                         down or unreachable; nothing could be measured";

/// Arguments of `holepunch netcheck`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A STUN server (the help text gives its forms); repeatable.
    #[arg(
        long = "stun",
        value_name = "SERVER",
        required = true,
        value_parser = address::stun_server,
        help = "A STUN server: IP:PORT, [IPv6]:PORT or HOST:PORT; without a port, 3478. \
                Repeatable; the first should serve RFC 5780 (two IPs) for mapping and filtering \
                tests"
    )]
    stun: Vec<Target>,
    /// Print one JSON object per line instead of text.
    #[arg(long)]
    json: bool,
    /// Cap on the whole run in seconds; requests give up after 2.2 s anyway.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_secs)]
    timeout: Duration,
}

/// Runs netcheck and prints its report; see the module docs for the exit status.
pub fn run(args: &Args) -> ExitCode {
    let servers = match resolve_servers(&args.stun) {
        Ok(servers) => servers,
        Err(reason) => return fail(args, &reason, EXIT_FAILED),
    };
    if !args.json {
        let list: Vec<String> = servers.iter().map(ToString::to_string).collect();
        eprintln!(
            "netcheck: probing {} (at most {} s)",
            list.join(", "),
            args.timeout.as_secs_f64()
        );
    }
    let options = NetcheckOptions::default().with_timeout(args.timeout);
    match holepunch_std::netcheck::netcheck(&servers, &options) {
        Ok(run) => {
            if args.json {
                report_json(&run).print();
            } else {
                print!("{}", human(&run));
            }
            if run.report.udp {
                ExitCode::SUCCESS
            } else {
                fail(args, NO_ANSWER, EXIT_FAILED)
            }
        }
        Err(e @ NetcheckRunError::Config(_)) => fail(args, &e.to_string(), EXIT_USAGE),
        Err(e) => fail(args, &e.to_string(), EXIT_FAILED),
    }
}

/// Every `--stun` argument resolved, duplicates dropped; a name also contributes its address of
/// the other family, if it has one.
fn resolve_servers(specs: &[Target]) -> Result<Vec<SocketAddr>, String> {
    let mut servers = Vec::new();
    for spec in specs {
        let preferred = spec.resolve()?;
        let other = spec.other_family(preferred);
        for server in std::iter::once(preferred).chain(other) {
            if !servers.contains(&server) {
                servers.push(server);
            }
        }
    }
    Ok(servers)
}

/// The `report` event.
fn report_json(run: &NetcheckRun) -> json::NetcheckReport {
    let r = &run.report;
    let text = |a: Option<SocketAddr>| a.map(|a| a.to_string());
    json::NetcheckReport {
        udp: r.udp,
        public_v4: text(r.public_v4),
        public_v6: text(r.public_v6),
        mapping: r.mapping.to_string(),
        filtering: r.filtering.to_string(),
        hairpinning: r.hairpinning,
        // Not probed yet: unknown, not "absent".
        portmap: json::Portmap {
            upnp: None,
            natpmp: None,
            pcp: None,
        },
        nat64_prefix: r.nat64_prefix.map(|p| p.to_string()),
        servers: r
            .server_rtts
            .iter()
            .map(|s| json::ServerRtt {
                server: s.server.to_string(),
                rtt_ms: s.rtt.map(json::ms),
            })
            .collect(),
        locals: run.locals.iter().map(ToString::to_string).collect(),
        observed_ports: r.observed_ports.clone(),
        elapsed_ms: json::ms(run.elapsed),
    }
}

/// The human-readable report: one labelled line per finding.
fn human(run: &NetcheckRun) -> String {
    let r: &Report = &run.report;
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let addr = |a: Option<SocketAddr>| a.map_or_else(|| "none".to_string(), |a| a.to_string());
    let mut out = String::new();
    let mut line = |label: &str, value: &str| {
        let _ = writeln!(out, "  {label:<15}{value}");
    };
    let udp = if r.udp {
        "yes"
    } else {
        "no (no STUN server answered)"
    };
    let locals: Vec<String> = run.locals.iter().map(ToString::to_string).collect();
    let hairpinning = r.hairpinning.map_or("not tested", yes_no);
    line("UDP:", udp);
    line("public IPv4:", &addr(r.public_v4));
    line("public IPv6:", &addr(r.public_v6));
    line("mapping:", r.mapping.as_str());
    line("filtering:", r.filtering.as_str());
    line("hairpinning:", hairpinning);
    line("port mapping:", "not probed");
    line(
        "NAT64 prefix:",
        &r.nat64_prefix
            .map_or_else(|| "not probed".to_string(), |p| p.to_string()),
    );
    for (i, s) in r.server_rtts.iter().enumerate() {
        let rtt = s.rtt.map_or_else(
            || "no answer".to_string(),
            |d| format!("rtt {}", format_ms(d)),
        );
        line(
            if i == 0 { "servers:" } else { "" },
            &format!("{} {rtt}", s.server),
        );
    }
    line("local sockets:", &locals.join(", "));
    format!("netcheck report ({}):\n{out}", format_ms(run.elapsed))
}

fn fail(args: &Args, reason: &str, code: u8) -> ExitCode {
    if args.json {
        json::Failed::new(reason).print();
    } else {
        eprintln!("holepunch netcheck: {reason}");
    }
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_resolve_to_themselves_only() {
        let specs = [
            address::stun_server("127.0.0.1:5").expect("valid"),
            address::stun_server("[::1]").expect("valid"),
        ];
        assert_eq!(
            resolve_servers(&specs),
            Ok(vec![
                "127.0.0.1:5".parse().expect("addr"),
                "[::1]:3478".parse().expect("addr")
            ])
        );
        let twice = [specs[0].clone(), specs[0].clone()];
        assert_eq!(resolve_servers(&twice).map(|s| s.len()), Ok(1));
    }
}
