//! `holepunch demo [--seed N] [--json]`: the simulated internet, every NAT pair.
//!
//! Two core ICE agents are placed behind modelled NATs (every profile of cli.md against every
//! other, plus `symmetric-random+pcp`: that NAT behind a gateway that grants a port mapping, and
//! an `ipv6-only+nat64` row: an IPv6-only host behind a NAT64), with an RFC 5780 STUN server on the simulated internet and signalling between them,
//! and pumped in virtual time exactly as a driver pumps them. The demo prints, for each pair,
//! whether a direct path was found and how long it took (virtual time). No root, no network.
//!
//! With `--population N` it simulates N peers drawn from a NAT mix instead ([`population`]).

mod mix;
mod population;

use std::process::ExitCode;

use holepunch_tests::sim::matrix::{Cell, Situation, fmt_ms, render_grid, run_situations};
use holepunch_tests::sim::pair::PathKind;
use holepunch_tests::sim::population::Techniques;

use crate::EXIT_FAILED;
use crate::json::{self, Event as _};

/// Arguments of `holepunch demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seed for everything random (NAT ports, latency jitter, the agents): same seed, same run.
    #[arg(long, value_name = "N", default_value_t = 1)]
    seed: u64,
    /// Run every pair with this many consecutive seeds and report success rates.
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1000))]
    seeds: u64,
    /// Simulate a population of N peers drawn from a NAT mix instead of the matrix: each
    /// connection is two core agents behind the two peers' NATs; prints the shares of direct,
    /// relayed and failed connections, time to connected and the load on each relay.
    #[arg(long, value_name = "N", conflicts_with = "seeds", value_parser = clap::value_parser!(u64).range(2..=10_000_000))]
    population: Option<u64>,
    /// With --population: connections each peer starts, to peers drawn at random.
    #[arg(long, value_name = "K", default_value_t = 3, requires = "population", value_parser = clap::value_parser!(u64).range(1..=1000))]
    connections: u64,
    /// With --population: the NAT mix, a JSON file shaped like the built-in one
    /// (cli/data/population-mix.json; shares with their sources).
    #[arg(long, value_name = "FILE", requires = "population")]
    mix: Option<std::path::PathBuf>,
    /// With --population: independent relays; each peer uses the one with the lowest RTT.
    #[arg(long, value_name = "R", default_value_t = 3, requires = "population", value_parser = clap::value_parser!(u32).range(1..=200))]
    relays: u32,
    /// With --population: application packets/s each way assumed on a relayed connection
    /// when counting the relays needed (50: 20 ms audio frames).
    #[arg(long, value_name = "P", default_value_t = 50, requires = "population", value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    app_pps: u64,
    /// With --population: no hard-NAT punching (birthday probing, port prediction), to see
    /// what it is worth.
    #[arg(long, requires = "population")]
    no_punching: bool,
    /// With --population: agents get one plain STUN address (no RFC 5780 alternate, no
    /// OTHER-ADDRESS), so they cannot tell a hard NAT from an easy one.
    #[arg(long, requires = "population")]
    plain_stun: bool,
    /// Print one JSON object per line instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs the matrix; exit 0 when every pair reached the path it should, 1 otherwise.
pub fn run(args: &Args) -> ExitCode {
    if let Some(peers) = args.population {
        return population::run(&population::Options {
            peers,
            connections: args.connections,
            relays: args.relays,
            seed: args.seed,
            mix: args.mix.clone(),
            app_pps: args.app_pps,
            techniques: Techniques {
                punching: !args.no_punching,
                mapping_detection: !args.plain_stun,
            },
            json: args.json,
        });
    }
    let cells = run_situations(
        &Situation::demo_rows(),
        &Situation::DEMO,
        args.seed,
        args.seeds,
        |_| {},
    );
    let all_expected = cells.iter().all(|c| c.success_rate() == 1.0);
    if args.json {
        print_json(args, &cells, all_expected);
    } else {
        print_human(args, &cells, all_expected);
    }
    if all_expected {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    }
}

fn count(cells: &[Cell], kind: PathKind) -> usize {
    cells.iter().filter(|c| c.typical_path() == kind).count()
}

fn print_human(args: &Args, cells: &[Cell], all_expected: bool) {
    println!(
        "holepunch demo: two agents behind every pair of simulated NATs (seed {}{})",
        args.seed,
        if args.seeds > 1 {
            format!(", {} seeds per pair", args.seeds)
        } else {
            String::new()
        }
    );
    println!(
        "A (controlling) down the side, B across; D = direct path, R = relayed, ms of virtual time to first connected."
    );
    println!();
    print!("{}", render_grid(cells));
    println!();
    for c in cells.iter().filter(|c| c.success_rate() < 1.0) {
        println!(
            "UNEXPECTED: {} / {} should be {} but got it in {} of {} runs",
            c.situation_a(),
            c.situation_b(),
            c.expected.name(),
            c.successes(),
            c.outcomes.len()
        );
    }
    println!(
        "summary: {} pairs, {} direct, {} relay, {} without a path{}",
        cells.len(),
        count(cells, PathKind::Direct),
        count(cells, PathKind::Relay),
        count(cells, PathKind::None),
        if all_expected {
            "; every pair as expected"
        } else {
            "; SOME PAIRS UNEXPECTED"
        }
    );
    println!(
        "relayed: both sides symmetric, or UDP blocked (TURN over TCP); the relay is used 3 s after checks began \
         when no direct path works by then, and a direct path found later takes over."
    );
    println!(
        "symmetric-random+pcp: a symmetric-random NAT whose gateway maps the agent's port (PCP, NAT-PMP or \
         UPnP IGD); its port-mapped candidate makes every pair without UDP blocking direct."
    );
    println!(
        "ipv6-only+nat64 (a row only): an IPv6-only host whose network reaches IPv4 through a stateful NAT64 \
         (prefix 2001:db8:64::/96, told to the agent as RFC 7050 discovery would); it reaches the IPv4 STUN \
         servers, relay and peers at their synthesised addresses."
    );
}

fn print_json(args: &Args, cells: &[Cell], all_expected: bool) {
    let n = |x: usize| x as u64;
    for c in cells {
        let path = c.typical_path();
        json::Pair {
            a: c.situation_a().name(),
            b: c.situation_b().name(),
            path: path.name().into(),
            // cli.md: a number, or left out when there is no path.
            elapsed_ms: match path {
                PathKind::None => None,
                _ => c.quantile(0.5).map(json::ms),
            },
            expected: c.expected.name().into(),
            runs: n(c.outcomes.len()),
            as_expected: n(c.successes()),
            p95: (args.seeds > 1)
                .then(|| c.quantile(0.95).map(fmt_ms))
                .flatten(),
        }
        .print();
    }
    json::Summary {
        pairs: n(cells.len()),
        direct: n(count(cells, PathKind::Direct)),
        relay: n(count(cells, PathKind::Relay)),
        none: n(count(cells, PathKind::None)),
        ok: all_expected,
        seed: args.seed,
        seeds: args.seeds,
        simulated: true,
    }
    .print();
}
