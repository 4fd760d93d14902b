//! `holepunch portmap [--protocol auto|upnp|natpmp|pcp] --port PORT [--lifetime SECS]
//! [--gateway IP] [--json]`: maps a local UDP port on the gateway and keeps it mapped until
//! SIGINT/SIGTERM, then deletes it.

use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::ValueEnum;
use holepunch_core::portmap::client::{MappedVia, PortmapEvent, Protocols};
use holepunch_std::portmap::{PortmapOptions, run_portmap, run_upnp};
use holepunch_std::portmap_probe::run_auto;

use crate::json::{self, Event};
use crate::signal::StopSignals;
use crate::{EXIT_FAILED, runtime};

/// Which protocol to ask the gateway with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProtocolChoice {
    /// PCP, NAT-PMP and UPnP IGD probed at once; the best that answers maps (PCP > NAT-PMP >
    /// UPnP).
    Auto,
    /// UPnP IGD (SSDP, then SOAP to the WAN connection service).
    Upnp,
    /// NAT-PMP (RFC 6886) only.
    Natpmp,
    /// PCP (RFC 6887) only.
    Pcp,
}

/// Arguments of `holepunch portmap`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Protocol to use; `auto` probes PCP, NAT-PMP and UPnP IGD at once and maps with the best
    /// that answers (PCP > NAT-PMP > UPnP).
    #[arg(long, value_enum, default_value = "auto")]
    protocol: ProtocolChoice,
    /// Local UDP port to map (the external port asked for is the same).
    #[arg(long)]
    port: u16,
    /// Requested lifetime in seconds; the mapping is renewed at half of what the gateway grants.
    #[arg(long, default_value_t = 7200, value_parser = clap::value_parser!(u32).range(1..=86_400))]
    lifetime: u32,
    /// Gateway to ask (default: the IPv4 default route's gateway from /proc/net/route).
    #[arg(long)]
    gateway: Option<IpAddr>,
    /// One JSON object per line: mapped, renewed, external_changed, gateway_restarted, deleted,
    /// failed.
    #[arg(long)]
    json: bool,
}

/// Runs the command.
pub fn run(args: &Args) -> ExitCode {
    let protocols = match args.protocol {
        ProtocolChoice::Auto => Protocols::ALL,
        ProtocolChoice::Pcp => Protocols {
            pcp: true,
            natpmp: false,
        },
        ProtocolChoice::Natpmp => Protocols {
            pcp: false,
            natpmp: true,
        },
        // UPnP has its own client; `None` selects it below.
        ProtocolChoice::Upnp => Protocols {
            pcp: false,
            natpmp: false,
        },
    };
    let options = PortmapOptions {
        gateway: args.gateway,
        port: args.port,
        lifetime: Duration::from_secs(u64::from(args.lifetime)),
        protocols,
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(args, &format!("cannot start the runtime: {e}")),
    };
    let stop = Arc::new(AtomicBool::new(false));
    rt.block_on(async {
        // Signal handlers first, so an early SIGINT still deletes the mapping.
        let mut signals = match StopSignals::new() {
            Ok(s) => s,
            Err(e) => return fail(args, &format!("cannot install signal handlers: {e}")),
        };
        let json = args.json;
        let flag = Arc::clone(&stop);
        let upnp_only = args.protocol == ProtocolChoice::Upnp;
        let auto = args.protocol == ProtocolChoice::Auto;
        let mut worker = tokio::task::spawn_blocking(move || {
            if upnp_only {
                run_upnp(&options, &flag, |e| report(json, e))
            } else if auto {
                run_auto(&options, &flag, |e| report(json, e))
            } else {
                run_portmap(&options, &flag, |e| report(json, e))
            }
        });
        let outcome = tokio::select! {
            done = &mut worker => done,
            name = signals.recv() => {
                if !json {
                    eprintln!("portmap: {name}, deleting the mapping");
                }
                stop.store(true, Ordering::Relaxed);
                worker.await
            }
        };
        match outcome {
            Ok(Ok(PortmapEvent::Closed)) => ExitCode::SUCCESS,
            Ok(Ok(PortmapEvent::Failed(e))) => fail(args, &failure_text(args, &e.to_string())),
            Ok(Ok(other)) => fail(args, &format!("stopped unexpectedly after {other:?}")),
            Ok(Err(e)) => fail(args, &format!("socket error: {e}")),
            Err(e) => fail(args, &format!("port-mapping task failed: {e}")),
        }
    })
}

fn failure_text(args: &Args, reason: &str) -> String {
    let gateway = args
        .gateway
        .map_or_else(|| "the default gateway".to_string(), |g| g.to_string());
    let asked = match args.protocol {
        ProtocolChoice::Upnp => "with SSDP",
        ProtocolChoice::Auto => "port 5351 and with SSDP",
        _ => "port 5351",
    };
    format!("{reason} (asked {gateway} {asked})")
}

fn protocol_name(via: MappedVia) -> &'static str {
    match via {
        MappedVia::Pcp => "pcp",
        MappedVia::NatPmp => "natpmp",
        MappedVia::Upnp => "upnp",
    }
}

/// Prints one client event (failures are printed by `fail`, once).
fn report(json: bool, e: &PortmapEvent) {
    match *e {
        PortmapEvent::Mapped {
            via,
            external,
            lifetime,
        }
        | PortmapEvent::Renewed {
            via,
            external,
            lifetime,
        } => {
            let first = matches!(e, PortmapEvent::Mapped { .. });
            if json {
                let mapped = json::PortMapped {
                    protocol: protocol_name(via).into(),
                    external: external.to_string(),
                    lifetime_s: lifetime.as_secs(),
                };
                if first {
                    mapped.print();
                } else {
                    json::PortRenewed(mapped).print();
                }
            } else {
                println!(
                    "{} {external} via {} (lifetime {} s)",
                    if first { "mapped" } else { "renewed" },
                    protocol_name(via),
                    lifetime.as_secs()
                );
            }
        }
        PortmapEvent::ExternalAddressChanged { external } => {
            if json {
                json::ExternalChanged {
                    external: external.to_string(),
                }
                .print();
            } else {
                println!("external address changed: {external}");
            }
        }
        PortmapEvent::GatewayRestarted => {
            if json {
                json::GatewayRestarted {}.print();
            } else {
                println!("gateway restarted (its epoch went back); mapping again");
            }
        }
        PortmapEvent::Closed => {
            if json {
                json::MappingDeleted {}.print();
            } else {
                println!("mapping deleted");
            }
        }
        _ => {}
    }
}

fn fail(args: &Args, reason: &str) -> ExitCode {
    if args.json {
        json::Failed::new(reason).print();
    } else {
        eprintln!("holepunch portmap: {reason}");
    }
    ExitCode::from(EXIT_FAILED)
}
