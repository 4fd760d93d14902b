//! `holepunch demo [--seed N] [--json]`: until the simulated internet exists, a STUN server and
//! client in one process over loopback.
//!
//! The server runs RFC 5780 on 127.0.0.1 and 127.0.0.2 (Linux routes all of 127/8 to loopback);
//! where 127.0.0.2 cannot be bound it serves 127.0.0.1 alone and says so. The client runs a plain
//! Binding, then CHANGE-REQUEST tests, from one socket, and checks each answer.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use holepunch_core::stun::client::{BindingOptions, TransactionError};
use holepunch_core::stun::server::ServerConfig;
use holepunch_std::{DriverError, StunOptions, StunReport, StunServer};

use crate::json::Event;
use crate::{EXIT_FAILED, SOFTWARE, format_ms, whole_ms};

/// Arguments of `holepunch demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seed for everything random (today: the client's transaction ids), for reproducible runs.
    #[arg(long, value_name = "N", default_value_t = 0)]
    seed: u64,
    /// Print one JSON object per line instead of text.
    #[arg(long)]
    json: bool,
}

/// How long each transaction may take; loopback answers in well under a millisecond.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
const PRIMARY: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
const ALTERNATE: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), 0);

/// Runs the demo; exit 0 when every check passed, 1 otherwise.
pub fn run(args: &Args) -> ExitCode {
    let out = Output { json: args.json };
    out.note(
        "the simulated internet is not built yet: running a STUN server and client over loopback",
    );
    let server = match bind_server(&out) {
        Ok(server) => server,
        Err(e) => {
            out.failed(&format!("cannot start the STUN server: {e}"));
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let rfc5780 = server.config().alternate.is_some();
    out.server(&server.local_addrs(), rfc5780);

    let stop = AtomicBool::new(false);
    let results = std::thread::scope(|s| {
        let serving = s.spawn(|| server.serve(&stop));
        let results = run_checks(&server, args.seed, &out);
        stop.store(true, Ordering::Relaxed);
        match serving.join() {
            Ok(Ok(())) => results,
            Ok(Err(e)) => Err(format!("the STUN server failed: {e}")),
            Err(_) => Err("the STUN server thread panicked".into()),
        }
    });
    let (passed, total) = match results {
        Ok(counts) => counts,
        Err(reason) => {
            out.failed(&reason);
            return ExitCode::from(EXIT_FAILED);
        }
    };
    out.summary(args.seed, rfc5780, passed, total);
    if passed == total {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    }
}

/// RFC 5780 on two loopback IPs, else primary only.
fn bind_server(out: &Output) -> Result<StunServer, DriverError> {
    let mut config = ServerConfig::new(PRIMARY);
    config.software = Some(SOFTWARE);
    let mut rfc5780 = config.clone();
    rfc5780.alternate = Some(ALTERNATE);
    match StunServer::bind(rfc5780) {
        Ok(server) => Ok(server),
        Err(e) => {
            out.note(&format!(
                "cannot bind {} ({e}): serving {} alone, without RFC 5780",
                ALTERNATE.ip(),
                PRIMARY.ip()
            ));
            StunServer::bind(config)
        }
    }
}

/// One check: a Binding with these CHANGE-REQUEST flags, and what must come back.
struct Check {
    name: &'static str,
    change_ip: bool,
    change_port: bool,
}

const CHECKS: [Check; 3] = [
    Check {
        name: "binding",
        change_ip: false,
        change_port: false,
    },
    Check {
        name: "change-port",
        change_ip: false,
        change_port: true,
    },
    Check {
        name: "change-ip-and-port",
        change_ip: true,
        change_port: true,
    },
];

/// Runs every check from one client socket; returns (passed, total).
fn run_checks(server: &StunServer, seed: u64, out: &Output) -> Result<(u64, u64), String> {
    let socket = UdpSocket::bind(PRIMARY).map_err(|e| format!("cannot bind the client: {e}"))?;
    let local = socket
        .local_addr()
        .map_err(|e| format!("client socket: {e}"))?;
    let addrs = server.local_addrs();
    let primary = addrs[0];
    let alternate = server.config().alternate;
    out.client(local, seed);
    let mut passed = 0;
    for (i, check) in CHECKS.iter().enumerate() {
        let mut options = StunOptions::rfc5780()
            .with_timeout(CHECK_TIMEOUT)
            .with_binding(BindingOptions {
                change_ip: check.change_ip,
                change_port: check.change_port,
                response_port: None,
            });
        options.client.software = Some(SOFTWARE);
        options.seed = Some(seed.wrapping_add(i as u64));
        let result = holepunch_std::stun_on(&socket, primary, &options);
        let verdict = judge(check, &result, local, primary, alternate);
        passed += u64::from(verdict.is_ok());
        out.check(check.name, primary, &result, &verdict);
    }
    Ok((passed, CHECKS.len() as u64))
}

/// Whether the answer is what RFC 5780 (or, without it, RFC 8489) prescribes; the text says why.
fn judge(
    check: &Check,
    result: &Result<StunReport, DriverError>,
    local: SocketAddr,
    primary: SocketAddr,
    alternate: Option<SocketAddr>,
) -> Result<String, String> {
    let changes = check.change_ip || check.change_port;
    let report = match (result, alternate) {
        (Ok(report), _) => report,
        // Without RFC 5780 a server does not understand CHANGE-REQUEST: 420 is right.
        (Err(DriverError::Failed(TransactionError::Rejected { code: 420 })), None) if changes => {
            return Ok(
                "rejected with 420 (unknown attribute), as a server without RFC 5780 must".into(),
            );
        }
        (Err(e), _) => return Err(e.to_string()),
    };
    if report.mapped != local {
        return Err(format!(
            "mapped {} but the client is {local}",
            report.mapped
        ));
    }
    let Some(alternate) = alternate else {
        return if changes {
            Err("a server without RFC 5780 honoured CHANGE-REQUEST".into())
        } else {
            Ok(format!("mapped address is the client's own, {local}"))
        };
    };
    let expected = SocketAddr::new(
        if check.change_ip {
            alternate.ip()
        } else {
            primary.ip()
        },
        if check.change_port {
            alternate.port()
        } else {
            primary.port()
        },
    );
    if report.from != expected {
        return Err(format!(
            "answered from {}, expected {expected}",
            report.from
        ));
    }
    if report.response_origin != Some(expected) {
        return Err(format!(
            "RESPONSE-ORIGIN {:?}, expected {expected}",
            report.response_origin
        ));
    }
    if report.other_address != Some(alternate) {
        return Err(format!(
            "OTHER-ADDRESS {:?}, expected {alternate}",
            report.other_address
        ));
    }
    Ok(if changes {
        format!("answered from {expected}, as asked")
    } else {
        format!("mapped address is the client's own; OTHER-ADDRESS {alternate}")
    })
}

/// Prints events as text or JSON lines.
struct Output {
    json: bool,
}

impl Output {
    fn note(&self, message: &str) {
        if self.json {
            Event::new("note").str("message", message).print();
        } else {
            println!("note: {message}");
        }
    }

    fn server(&self, addrs: &[SocketAddr], rfc5780: bool) {
        if self.json {
            Event::new("server")
                .str_list("addresses", addrs)
                .bool("rfc5780", rfc5780)
                .print();
        } else {
            let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
            let mode = if rfc5780 {
                "RFC 5780 behaviour discovery"
            } else {
                "plain RFC 8489"
            };
            println!("server: {} ({mode})", list.join(", "));
        }
    }

    fn client(&self, local: SocketAddr, seed: u64) {
        if self.json {
            Event::new("client")
                .str("local", local)
                .unsigned("seed", u128::from(seed))
                .print();
        } else {
            println!("client: {local} (seed {seed})");
        }
    }

    fn check(
        &self,
        name: &str,
        server: SocketAddr,
        result: &Result<StunReport, DriverError>,
        verdict: &Result<String, String>,
    ) {
        let (ok, why) = match verdict {
            Ok(why) => (true, why),
            Err(why) => (false, why),
        };
        if self.json {
            let mut e = Event::new("check")
                .str("name", name)
                .str("server", server)
                .bool("ok", ok)
                .str("detail", why);
            if let Ok(r) = result {
                e = e
                    .str("mapped", r.mapped)
                    .str("from", r.from)
                    .opt_str("other_address", r.other_address)
                    .opt_str("response_origin", r.response_origin)
                    .unsigned("rtt_ms", whole_ms(r.rtt))
                    .unsigned("rtt_us", r.rtt.as_micros());
            }
            e.print();
        } else {
            let status = if ok { "ok" } else { "FAILED" };
            let answer = match result {
                Ok(r) => format!(
                    "mapped {} from {} (rtt {})",
                    r.mapped,
                    r.from,
                    format_ms(r.rtt)
                ),
                Err(_) => "no mapping".into(),
            };
            println!("{name:<19} {status:<6} {answer}: {why}");
        }
    }

    fn summary(&self, seed: u64, rfc5780: bool, passed: u64, total: u64) {
        if self.json {
            Event::new("summary")
                .bool("ok", passed == total)
                .num("passed", passed)
                .num("checks", total)
                .bool("rfc5780", rfc5780)
                .bool("simulated", false)
                .unsigned("seed", u128::from(seed))
                .print();
        } else {
            println!("summary: {passed} of {total} checks passed");
        }
    }

    fn failed(&self, reason: &str) {
        if self.json {
            Event::new("failed").str("reason", reason).print();
        } else {
            eprintln!("holepunch demo: {reason}");
        }
    }
}
