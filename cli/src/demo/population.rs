//! `holepunch demo --population N`: N simulated peers drawn from a NAT mix, K connections each.
//!
//! The simulation is [`holepunch_tests::sim::population`] (its documentation states the
//! model); this module reads the mix, shows progress, and prints the report as a table or as
//! `--json` lines (`profile` per NAT profile, `relay` per relay, then `summary`).

use std::io::{IsTerminal, Write as _};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

use holepunch_tests::sim::matrix::fmt_ms;
use holepunch_tests::sim::population::{
    PopulationConfig, PopulationReport, RelayLoad, Techniques, relay_address, run_population,
};
use holepunch_tests::sim::profile::Profile;

use super::mix;
use crate::EXIT_USAGE;
use crate::json::{self, Event as _};

/// Packets/s one relay is taken to sustain: the STUN server's measured answer rate
/// (`cargo bench -p holepunch-cli --bench stun_load`, README "Servers"). A TURN relay does
/// more per packet than a STUN answer, so this is an upper bound on a relay's capacity.
pub const RELAY_CAPACITY_PPS: u64 = 70_886;

/// What [`RELAY_CAPACITY_PPS`] is.
const CAPACITY_BASIS: &str = "upper bound: STUN answers/s of our stun_load benchmark \
     (70,886/s on 2 loaded cores); no TURN throughput has been measured yet";

/// What to run, from the command line.
#[derive(Debug)]
pub struct Options {
    /// Peers.
    pub peers: u64,
    /// Connections per peer.
    pub connections: u64,
    /// Relays.
    pub relays: u32,
    /// Population seed.
    pub seed: u64,
    /// `--mix FILE`, or the built-in mix.
    pub mix: Option<std::path::PathBuf>,
    /// Application packets/s each way assumed on a relayed connection.
    pub app_pps: u64,
    /// Traversal techniques the agents use.
    pub techniques: Techniques,
    /// `--json`.
    pub json: bool,
}

/// Runs the population; exit 0 when it ran, 2 for a bad mix or configuration.
pub fn run(opts: &Options) -> ExitCode {
    let mix = match &opts.mix {
        None => mix::parse(mix::DEFAULT_MIX),
        Some(path) => mix::load(path),
    };
    let mix = match mix {
        Ok(m) => m,
        Err(e) => {
            let which = opts
                .mix
                .as_ref()
                .map_or("the built-in mix".to_string(), |p| p.display().to_string());
            eprintln!("holepunch demo: bad --mix {which}: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let (Ok(peers), Ok(connections)) = (
        usize::try_from(opts.peers),
        usize::try_from(opts.connections),
    ) else {
        eprintln!("holepunch demo: --population × --connections is too large for this machine");
        return ExitCode::from(EXIT_USAGE);
    };
    let config = PopulationConfig {
        peers,
        connections,
        relays: opts.relays,
        seed: opts.seed,
        mix,
        threads: 0,
        techniques: opts.techniques,
    };
    let started = Instant::now();
    let show = !opts.json && std::io::stderr().is_terminal();
    let bar = Progress::new(started, show);
    let report = match run_population(&config, &|done, total| bar.update(done, total)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("holepunch demo: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    bar.finish();
    let wall = started.elapsed();
    if opts.json {
        print_json(opts, &report);
    } else {
        print_human(opts, &config, &report, wall);
    }
    ExitCode::SUCCESS
}

/// A one-line progress bar on stderr, drawn once the run has taken a second.
struct Progress {
    started: Instant,
    show: bool,
    /// Whether anything was drawn (so `finish` clears the line).
    drawn: Mutex<(bool, u64)>,
}

impl Progress {
    fn new(started: Instant, show: bool) -> Self {
        Progress {
            started,
            show,
            drawn: Mutex::new((false, 0)),
        }
    }

    fn update(&self, done: u64, total: u64) {
        if !self.show || self.started.elapsed().as_secs_f64() < 1.0 {
            return;
        }
        let Ok(mut drawn) = self.drawn.lock() else {
            return;
        };
        // Redraw at most once per percent.
        let percent = done * 100 / total.max(1);
        if drawn.0 && percent <= drawn.1 {
            return;
        }
        *drawn = (true, percent);
        let width = 30;
        let filled = (percent as usize * width / 100).min(width);
        eprint!(
            "\r[{}{}] {percent:>3}% {done}/{total} connections, {:.0} s",
            "#".repeat(filled),
            " ".repeat(width - filled),
            self.started.elapsed().as_secs_f64()
        );
        let _ = std::io::stderr().flush();
    }

    fn finish(&self) {
        if self.drawn.lock().is_ok_and(|d| d.0) {
            eprint!("\r{:70}\r", "");
        }
    }
}

/// The relay figures both outputs print.
struct Fleet {
    pps: Vec<f64>,
    pps_with_app: Vec<f64>,
    allocations_max: u64,
    allocations_mean: f64,
    pps_max: f64,
    pps_mean: f64,
    needed: u64,
}

fn fleet(opts: &Options, report: &PopulationReport) -> Fleet {
    let app = |r: &RelayLoad| (r.relayed_connections * 2 * opts.app_pps) as f64;
    let pps: Vec<f64> = report
        .relays
        .iter()
        .map(|r| report.packets_per_second(r))
        .collect();
    let pps_with_app = report
        .relays
        .iter()
        .zip(&pps)
        .map(|(r, p)| p + app(r))
        .collect();
    let n = report.relays.len().max(1) as f64;
    let simulated: f64 = pps.iter().sum();
    let demand = (report.relayed * 2 * opts.app_pps) as f64 + simulated;
    Fleet {
        allocations_max: report
            .relays
            .iter()
            .map(|r| r.allocations)
            .max()
            .unwrap_or(0),
        allocations_mean: report.relays.iter().map(|r| r.allocations).sum::<u64>() as f64 / n,
        pps_max: pps.iter().copied().fold(0.0, f64::max),
        pps_mean: simulated / n,
        needed: (demand / RELAY_CAPACITY_PPS as f64).ceil() as u64,
        pps,
        pps_with_app,
    }
}

/// Connections involving each profile (either side; a pair of the same profile once).
fn by_profile(report: &PopulationReport) -> Vec<[u64; 3]> {
    (0..9)
        .map(|p| {
            let mut sum = [0u64; 3];
            for a in 0..9 {
                for b in 0..9 {
                    if a == p || b == p {
                        for (s, n) in sum.iter_mut().zip(report.by_profiles[a][b]) {
                            *s += n;
                        }
                    }
                }
            }
            sum
        })
        .collect()
}

fn print_json(opts: &Options, report: &PopulationReport) {
    for (i, counts) in by_profile(report).iter().enumerate() {
        json::PopulationProfile {
            profile: Profile::ALL[i].name().into(),
            peers: report.peers_by_profile[i],
            connections: counts.iter().sum(),
            direct: counts[0],
            relay: counts[1],
            failed: counts[2],
        }
        .print();
    }
    let f = fleet(opts, report);
    for (i, r) in report.relays.iter().enumerate() {
        json::PopulationRelay {
            relay: i as u64,
            address: relay_address(i as u32).to_string(),
            allocations: r.allocations,
            relayed_connections: r.relayed_connections,
            relayed_packets: r.relayed_packets,
            relayed_bytes: r.relayed_bytes,
            packets_per_s: round3(f.pps[i]),
            packets_per_s_with_app: round3(f.pps_with_app[i]),
        }
        .print();
    }
    let [direct_share, relay_share, failed_share] = report.shares();
    let ms = |q| report.quantile(q).map(json::ms);
    json::PopulationSummary {
        peers: opts.peers,
        connections: report.connections,
        direct_share,
        relay_share,
        failed_share,
        direct: report.direct,
        relay: report.relayed,
        failed: report.failed,
        unexpected: report.unexpected,
        p50_ms: ms(0.5),
        p95_ms: ms(0.95),
        p99_ms: ms(0.99),
        total_bytes: report.delivered_bytes,
        relay_bytes: report.relayed_bytes(),
        relay_bytes_share: report.relayed_bytes() as f64 / report.delivered_bytes.max(1) as f64,
        relays: report.relays.len() as u64,
        relay_allocations_max: f.allocations_max,
        relay_allocations_mean: round3(f.allocations_mean),
        relay_pps_max: round3(f.pps_max),
        relay_pps_mean: round3(f.pps_mean),
        app_pps: opts.app_pps,
        relay_capacity_pps: RELAY_CAPACITY_PPS,
        relay_capacity_basis: CAPACITY_BASIS.into(),
        relays_needed: f.needed,
        punching: opts.techniques.punching,
        mapping_detection: opts.techniques.mapping_detection,
        seed: opts.seed,
        simulated: true,
    }
    .print();
}

fn print_human(
    opts: &Options,
    config: &PopulationConfig,
    report: &PopulationReport,
    wall: std::time::Duration,
) {
    let mix_name = opts
        .mix
        .as_ref()
        .map_or("built-in (cli/data/population-mix.json)".to_string(), |p| {
            p.display().to_string()
        });
    println!(
        "holepunch demo --population: {} peers x {} connections, {} relays, seed {}, mix {mix_name}",
        opts.peers, opts.connections, opts.relays, opts.seed
    );
    println!(
        "Each connection: two core ICE agents behind the two peers' simulated NATs, one STUN server, \
         each peer's nearest relay; virtual time."
    );
    let t = opts.techniques;
    if !t.punching || !t.mapping_detection {
        println!(
            "Switched off:{}{} (the predictions below assume both on).",
            if t.punching { "" } else { " hard-NAT punching" },
            if t.mapping_detection {
                ""
            } else {
                " RFC 5780 mapping detection (one plain STUN address)"
            }
        );
    }
    println!();
    let pct = |n: u64, d: u64| 100.0 * n as f64 / d.max(1) as f64;
    println!(
        "{:22} {:>8} {:>6} {:>9} {:>8} {:>8} {:>8}",
        "profile", "peers", "share", "conns", "direct", "relay", "failed"
    );
    for (i, c) in by_profile(report).iter().enumerate() {
        let conns: u64 = c.iter().sum();
        println!(
            "{:22} {:>8} {:>5.1}% {:>9} {:>7.1}% {:>7.1}% {:>7.1}%",
            Profile::ALL[i].name(),
            report.peers_by_profile[i],
            pct(report.peers_by_profile[i], opts.peers),
            conns,
            pct(c[0], conns),
            pct(c[1], conns),
            pct(c[2], conns)
        );
    }
    println!(
        "(a connection counts in the rows of both its peers' profiles); port-mapped peers {:.1}%, IPv6 peers {:.1}% \
         (mix: {:.0}% of one-router NATs map, {:.0}% IPv6)",
        pct(report.peers_mapped, opts.peers),
        pct(report.peers_ipv6, opts.peers),
        config.mix.port_mapping * 100.0,
        config.mix.ipv6 * 100.0
    );
    println!();
    let [d, r, f] = report.shares();
    println!(
        "connections: {}: direct {} ({:.1}%), relay {} ({:.1}%), failed {} ({:.1}%); {} not on the path the 9x9 matrix predicts",
        report.connections,
        report.direct,
        d * 100.0,
        report.relayed,
        r * 100.0,
        report.failed,
        f * 100.0,
        report.unexpected
    );
    for u in &report.unexpected_examples {
        let side = |p: &holepunch_tests::sim::population::Peer| {
            format!(
                "{}{}{}",
                p.profile,
                if p.port_mapped { "+mapped" } else { "" },
                if p.ipv6 { "+ipv6" } else { "" }
            )
        };
        println!(
            "  unexpected: connection {} {} -> {}: {} (predicted {})",
            u.connection,
            side(&u.a),
            side(&u.b),
            u.path.name(),
            u.expected.name()
        );
    }
    let q = |x| report.quantile(x).map_or("-".to_string(), fmt_ms);
    println!(
        "time to connected (virtual ms, both sides): p50 {}, p95 {}, p99 {}",
        q(0.5),
        q(0.95),
        q(0.99)
    );
    println!(
        "bytes: {} delivered, {} relayed ({:.2}%): STUN, ICE, TURN and punching only, no application data",
        report.delivered_bytes,
        report.relayed_bytes(),
        pct(report.relayed_bytes(), report.delivered_bytes)
    );
    println!();
    let fl = fleet(opts, report);
    println!(
        "{:>5} {:18} {:>11} {:>13} {:>12} {:>10} {:>14}",
        "relay", "address", "allocations", "relayed conns", "packets", "pkt/s", "pkt/s with app"
    );
    for (i, load) in report.relays.iter().enumerate() {
        println!(
            "{i:>5} {:18} {:>11} {:>13} {:>12} {:>10.1} {:>14.1}",
            relay_address(i as u32).to_string(),
            load.allocations,
            load.relayed_connections,
            load.relayed_packets,
            fl.pps[i],
            fl.pps_with_app[i]
        );
    }
    println!(
        "allocations per relay: max {}, mean {:.1}; simulated pkt/s per relay: max {:.1}, mean {:.1} \
         (all connections live at once, over the {} s run window)",
        fl.allocations_max,
        fl.allocations_mean,
        fl.pps_max,
        fl.pps_mean,
        report.window.as_secs()
    );
    println!(
        "relays needed: {} = ceil(({} relayed connections x 2 directions x {} app pkt/s + {:.0} simulated pkt/s) / {} pkt/s per relay)",
        fl.needed,
        report.relayed,
        opts.app_pps,
        fl.pps.iter().sum::<f64>(),
        RELAY_CAPACITY_PPS
    );
    println!("  relay capacity: {CAPACITY_BASIS}");
    println!();
    println!(
        "wall time {:.1} s on {} threads",
        wall.as_secs_f64(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
}

/// Three decimals, so the JSON is short and the same on every platform.
fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
