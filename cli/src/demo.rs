//! `holepunch demo [--seed N] [--json]`: the simulated internet, every NAT pair.
//!
//! Two core ICE agents are placed behind modelled NATs (every profile of cli.md against every
//! other), with an RFC 5780 STUN server on the simulated internet and signalling between them,
//! and pumped in virtual time exactly as a driver pumps them. The demo prints, for each pair,
//! whether a direct path was found and how long it took (virtual time). No root, no network.

use std::process::ExitCode;

use holepunch_tests::sim::matrix::{Cell, fmt_ms, render_grid, run_cells};
use holepunch_tests::sim::pair::PathKind;
use holepunch_tests::sim::profile::Profile;

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
    /// Print one JSON object per line instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs the matrix; exit 0 when every pair reached the path it should, 1 otherwise.
pub fn run(args: &Args) -> ExitCode {
    let cells = run_cells(&Profile::ALL, &Profile::ALL, args.seed, args.seeds, |_| {});
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
            c.a,
            c.b,
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
}

fn print_json(args: &Args, cells: &[Cell], all_expected: bool) {
    let n = |x: usize| x as u64;
    for c in cells {
        let path = c.typical_path();
        json::Pair {
            a: c.a.name().into(),
            b: c.b.name().into(),
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
