//! `holepunch netcheck --stun SERVER [--stun SERVER]... [--json] [--timeout SECS] [--lifetime]`:
//! classifies this host's NAT.
//!
//! With `--lifetime` it then measures how long the NAT keeps an idle UDP mapping (RFC 5780
//! §4.6 against the first server, which must serve RFC 5780; up to about two minutes, less
//! when mappings expire sooner): `mapping_lifetime_s` is the longest idle time a mapping was
//! seen to survive and `mapping_lifetime_expired_s` the shortest it did not (`null`: not run,
//! not measurable, or never seen).
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
//! Port mapping: while the STUN probes run, the gateway on the path to the first IPv4 server
//! (the next hop of its route) is asked with PCP, NAT-PMP and UPnP IGD at once, with requests
//! that create nothing (PCP ANNOUNCE, NAT-PMP's external address request, SSDP M-SEARCH), for at
//! most [`PORTMAP_PROBE`]. With no gateway on that path (loopback or on-link servers) it is not
//! probed: `null` in `--json`, "not probed" for people.
//!
//! CLAT: the host's IPv4 default route going through a 464XLAT CLAT (RFC 6877; an address in
//! RFC 7335's 192.0.0.0/29, or a `clat*`/`v4-*` interface) is reported as `clat`
//! (`{"interface","address"}` or `null`).
//!
//! NAT64: meanwhile the system resolver (the first `nameserver` of `/etc/resolv.conf`, or of the
//! file `HOLEPUNCH_RESOLV_CONF` names) is asked for `ipv4only.arpa` AAAA (RFC 7050), twice at
//! most, within [`NAT64_PROBE`]. `nat64_prefix` is the prefix its DNS64 synthesises with, as
//! `prefix/length`, or `null` (none, no answer, or no resolver: the text line says which).

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use holepunch_core::nat64::discovery::{DiscoveryConfig, DiscoveryError};
use holepunch_core::netcheck::Report;
use holepunch_core::portmap::probe::Answered;
use holepunch_std::clat::{Clat, detect_clat};
use holepunch_std::nat64::{Nat64Finding, discover_nat64};
use holepunch_std::netcheck::{NetcheckOptions, NetcheckRun, NetcheckRunError};
use holepunch_std::portmap::gateway_towards;
use holepunch_std::portmap_probe::probe_gateway;

use crate::address::{self, Target};
use crate::json::{self, Event as _};
use crate::stun::parse_secs;
use crate::{EXIT_FAILED, EXIT_USAGE, format_ms};

/// Why a run in which no server answered is a failed job.
const NO_ANSWER: &str = "no STUN server answered: UDP is blocked here, or the servers are \
                         down or unreachable; nothing could be measured";

/// The longest the gateway's port-mapping protocols are waited for (the STUN probes run
/// meanwhile).
pub const PORTMAP_PROBE: Duration = Duration::from_millis(1200);

/// The longest the resolver is waited for (0.5 s, then 1 s for the one retry).
pub const NAT64_PROBE: Duration = Duration::from_millis(1500);

/// What the port-mapping probe found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PortmapFinding {
    /// No gateway on the path to the servers, or the probe's socket failed.
    NotProbed,
    /// The gateway was asked; these answered.
    Probed(IpAddr, Answered),
}

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
    /// Also measure the NAT's idle UDP mapping lifetime (up to ~2 minutes more; the first
    /// server must serve RFC 5780).
    #[arg(long)]
    lifetime: bool,
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
        if args.lifetime {
            eprintln!("netcheck: then measuring the mapping lifetime (up to ~2 minutes)");
        }
    }
    let mut options = NetcheckOptions::default().with_timeout(args.timeout);
    options.lifetime = args.lifetime;
    let gateway = servers
        .iter()
        .find(|s| s.is_ipv4())
        .and_then(|s| gateway_towards(s.ip()));
    let probe_for = PORTMAP_PROBE.min(args.timeout);
    let probe = std::thread::spawn(move || match gateway {
        Some(gw) => probe_gateway(Some(IpAddr::V4(gw)), probe_for)
            .map_or(PortmapFinding::NotProbed, |a| {
                PortmapFinding::Probed(IpAddr::V4(gw), a)
            }),
        None => PortmapFinding::NotProbed,
    });
    let nat64_for = NAT64_PROBE.min(args.timeout);
    let nat64 = std::thread::spawn(move || {
        discover_nat64(DiscoveryConfig {
            first_timeout: nat64_for / 3,
            max_sends: 2,
        })
    });
    let result = holepunch_std::netcheck::netcheck(&servers, &options);
    let portmap = probe.join().unwrap_or(PortmapFinding::NotProbed);
    let nat64 = nat64.join().unwrap_or(Nat64Finding::NoResolver);
    let clat = detect_clat();
    match result {
        Ok(mut run) => {
            run.report.nat64_prefix = nat64.prefix().map(Into::into);
            if args.json {
                report_json(&run, portmap, clat.as_ref()).print();
            } else {
                print!("{}", human(&run, portmap, nat64, clat.as_ref()));
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
fn report_json(
    run: &NetcheckRun,
    portmap: PortmapFinding,
    clat: Option<&Clat>,
) -> json::NetcheckReport {
    let r = &run.report;
    let text = |a: Option<SocketAddr>| a.map(|a| a.to_string());
    json::NetcheckReport {
        udp: r.udp,
        public_v4: text(r.public_v4),
        public_v6: text(r.public_v6),
        mapping: r.mapping.to_string(),
        filtering: r.filtering.to_string(),
        hairpinning: r.hairpinning,
        // Not probed: unknown, not "absent".
        portmap: match portmap {
            PortmapFinding::NotProbed => json::Portmap {
                upnp: None,
                natpmp: None,
                pcp: None,
            },
            PortmapFinding::Probed(_, a) => json::Portmap {
                upnp: Some(a.upnp),
                natpmp: Some(a.natpmp),
                pcp: Some(a.pcp),
            },
        },
        nat64_prefix: r.nat64_prefix.map(|p| p.to_string()),
        clat: clat.map(|c| json::ClatInfo {
            interface: c.interface.clone(),
            address: c.address.to_string(),
        }),
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
        mapping_lifetime_s: run.lifetime.and_then(|l| l.survived).map(|d| d.as_secs()),
        mapping_lifetime_expired_s: run.lifetime.and_then(|l| l.expired).map(|d| d.as_secs()),
    }
}

/// The human-readable report: one labelled line per finding.
fn human(
    run: &NetcheckRun,
    portmap: PortmapFinding,
    nat64: Nat64Finding,
    clat: Option<&Clat>,
) -> String {
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
    line("port mapping:", &portmap_text(portmap));
    line("NAT64 prefix:", &nat64_text(nat64));
    let clat = clat.map_or_else(
        || "none".to_string(),
        |c| {
            format!(
                "{} ({}): IPv4 goes out translated to IPv6 and back by the NAT64 (464XLAT)",
                c.interface, c.address
            )
        },
    );
    line("CLAT:", &clat);
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
    line("mapping life:", &lifetime_text(run));
    format!("netcheck report ({}):\n{out}", format_ms(run.elapsed))
}

/// The lifetime bracket for people: "not measured", "not measurable (…)", or seconds.
fn lifetime_text(run: &NetcheckRun) -> String {
    let Some(l) = run.lifetime else {
        return "not measured (--lifetime)".into();
    };
    match (l.measurable, l.survived, l.expired) {
        (false, ..) => "not measurable (the first server must serve RFC 5780)".into(),
        (true, Some(s), Some(e)) => format!(
            "{} s (survived {} s idle, expired by {} s)",
            s.as_secs(),
            s.as_secs(),
            e.as_secs()
        ),
        (true, Some(s), None) => format!("at least {} s", s.as_secs()),
        (true, None, Some(e)) => format!("under {} s", e.as_secs()),
        (true, None, None) => "not measurable".into(),
    }
}

/// The prefix and the resolver that revealed it, or why there is none.
fn nat64_text(nat64: Nat64Finding) -> String {
    match nat64 {
        Nat64Finding::NoResolver => "not probed (no nameserver in resolv.conf)".into(),
        Nat64Finding::Found { resolver, prefix } => {
            format!("{prefix} (DNS64 at {})", resolver.ip())
        }
        Nat64Finding::NoNat64 { resolver } => {
            format!("none (resolver {} synthesises no AAAA)", resolver.ip())
        }
        Nat64Finding::Failed {
            resolver,
            error: DiscoveryError::TimedOut,
        } => format!("unknown (resolver {} did not answer)", resolver.ip()),
        Nat64Finding::Failed { resolver, error } => {
            format!("unknown (resolver {}: {error})", resolver.ip())
        }
    }
}

/// "not probed (…)", "none answered (gateway G)", or the protocols that answered.
fn portmap_text(portmap: PortmapFinding) -> String {
    match portmap {
        PortmapFinding::NotProbed => "not probed (no gateway on the path to the servers)".into(),
        PortmapFinding::Probed(gw, a) => {
            let names: Vec<&str> = [(a.pcp, "PCP"), (a.natpmp, "NAT-PMP"), (a.upnp, "UPnP IGD")]
                .into_iter()
                .filter_map(|(yes, name)| yes.then_some(name))
                .collect();
            if names.is_empty() {
                format!("none answered (gateway {gw})")
            } else {
                format!("{} (gateway {gw})", names.join(", "))
            }
        }
    }
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
