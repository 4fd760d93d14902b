//! `holepunch netcheck --stun SERVER [--stun SERVER]... [--json] [--timeout SECS]`: classifies
//! this host's NAT.
//!
//! The report is the core prober's (`holepunch_core::netcheck`), run over real sockets by
//! `holepunch_std::netcheck`. The first server should offer RFC 5780 (`holepunch stun-server
//! --alternate`): mapping and filtering come from its tests. A server given by name is probed on
//! its IPv4 address and, when it has one, its IPv6 address too (for the public IPv6 address).
//!
//! Exit status: 0 when the run completed, whatever it found (UDP blocked included: the report
//! says so); 1 when a server name does not resolve or a local socket fails; 2 on bad usage.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use holepunch_core::netcheck::{PortmapAvailability, Report, ServerRtt};
use holepunch_std::netcheck::{NetcheckOptions, NetcheckRun, NetcheckRunError};

use crate::json::{Event, push_str};
use crate::stun::{parse_secs, resolve};
use crate::{EXIT_FAILED, EXIT_USAGE, format_ms, whole_ms};

/// Arguments of `holepunch netcheck`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A STUN server: IP:PORT, [IPv6]:PORT or HOST:PORT; without a port, 3478. Repeatable; the
    /// first should serve RFC 5780 (two IPs) for mapping and filtering tests.
    #[arg(long = "stun", value_name = "SERVER", required = true)]
    stun: Vec<String>,
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
                print_json(&run);
            } else {
                print!("{}", human(&run));
            }
            ExitCode::SUCCESS
        }
        Err(e @ NetcheckRunError::Config(_)) => fail(args, &e.to_string(), EXIT_USAGE),
        Err(e) => fail(args, &e.to_string(), EXIT_FAILED),
    }
}

/// Every `--stun` argument resolved, duplicates dropped; a name also contributes its address of
/// the other family, if it has one.
fn resolve_servers(specs: &[String]) -> Result<Vec<SocketAddr>, String> {
    let mut servers = Vec::new();
    for spec in specs {
        let preferred = resolve(spec)?;
        let other = other_family(spec, preferred);
        for server in std::iter::once(preferred).chain(other) {
            if !servers.contains(&server) {
                servers.push(server);
            }
        }
    }
    Ok(servers)
}

/// For a host name (not an IP literal), its first address of the family `preferred` is not.
fn other_family(spec: &str, preferred: SocketAddr) -> Option<SocketAddr> {
    let bare = spec
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(spec);
    if spec.parse::<SocketAddr>().is_ok() || bare.parse::<IpAddr>().is_ok() {
        return None;
    }
    let host = match spec.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => host,
        _ => spec,
    };
    (host, preferred.port())
        .to_socket_addrs()
        .ok()?
        .find(|a| a.is_ipv4() != preferred.is_ipv4())
}

fn print_json(run: &NetcheckRun) {
    let r = &run.report;
    let hairpinning = match r.hairpinning {
        Some(true) => "true",
        Some(false) => "false",
        None => "null",
    };
    let ports: Vec<String> = r.observed_ports.iter().map(u16::to_string).collect();
    Event::new("report")
        .bool("udp", r.udp)
        .opt_str("public_v4", r.public_v4)
        .opt_str("public_v6", r.public_v6)
        .str("mapping", r.mapping)
        .str("filtering", r.filtering)
        .raw("hairpinning", hairpinning)
        .raw("portmap", &portmap_json(r.portmap))
        .opt_str("nat64_prefix", r.nat64_prefix)
        .raw("servers", &servers_json(&r.server_rtts))
        .raw("locals", &string_array(&run.locals))
        .raw("observed_ports", &format!("[{}]", ports.join(",")))
        .unsigned("elapsed_ms", whole_ms(run.elapsed))
        .print();
}

/// `{"upnp":BOOL,"natpmp":BOOL,"pcp":BOOL}`.
fn portmap_json(p: PortmapAvailability) -> String {
    format!(
        "{{\"upnp\":{},\"natpmp\":{},\"pcp\":{}}}",
        p.upnp, p.natpmp, p.pcp
    )
}

/// `[{"server":"IP:PORT","rtt_ms":N|null},...]`.
fn servers_json(rtts: &[ServerRtt]) -> String {
    let mut out = String::from("[");
    for (i, s) in rtts.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"server\":");
        push_str(&mut out, &s.server.to_string());
        out.push_str(",\"rtt_ms\":");
        match s.rtt {
            Some(rtt) => out.push_str(&whole_ms(rtt).to_string()),
            None => out.push_str("null"),
        }
        out.push('}');
    }
    out.push(']');
    out
}

/// `["...",...]`: a JSON array of strings.
fn string_array<T: ToString>(items: &[T]) -> String {
    let mut out = String::from("[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(&mut out, &item.to_string());
    }
    out.push(']');
    out
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
    let portmap = format!(
        "UPnP {}, NAT-PMP {}, PCP {}",
        yes_no(r.portmap.upnp),
        yes_no(r.portmap.natpmp),
        yes_no(r.portmap.pcp)
    );
    let hairpinning = r.hairpinning.map_or("not tested", yes_no);
    line("UDP:", udp);
    line("public IPv4:", &addr(r.public_v4));
    line("public IPv6:", &addr(r.public_v6));
    line("mapping:", r.mapping.as_str());
    line("filtering:", r.filtering.as_str());
    line("hairpinning:", hairpinning);
    line("port mapping:", &portmap);
    line(
        "NAT64 prefix:",
        &r.nat64_prefix
            .map_or_else(|| "none".to_string(), |p| p.to_string()),
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
        Event::new("failed").str("reason", reason).print();
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
        let specs = ["127.0.0.1:5".to_string(), "[::1]".to_string()];
        assert_eq!(
            resolve_servers(&specs),
            Ok(vec![
                "127.0.0.1:5".parse().expect("addr"),
                "[::1]:3478".parse().expect("addr")
            ])
        );
        let twice = ["127.0.0.1:5".to_string(), "127.0.0.1:5".to_string()];
        assert_eq!(resolve_servers(&twice).map(|s| s.len()), Ok(1));
    }

    #[test]
    fn json_fragments_are_well_formed() {
        assert_eq!(
            portmap_json(PortmapAvailability::default()),
            r#"{"upnp":false,"natpmp":false,"pcp":false}"#
        );
        let rtts = [
            ServerRtt {
                server: "127.0.0.1:3478".parse().expect("addr"),
                rtt: Some(Duration::from_micros(1_600)),
            },
            ServerRtt {
                server: "[::1]:3478".parse().expect("addr"),
                rtt: None,
            },
        ];
        assert_eq!(
            servers_json(&rtts),
            r#"[{"server":"127.0.0.1:3478","rtt_ms":2},{"server":"[::1]:3478","rtt_ms":null}]"#
        );
        assert_eq!(string_array(&["a", "b\"c"]), r#"["a","b\"c"]"#);
        assert_eq!(string_array::<&str>(&[]), "[]");
    }
}
