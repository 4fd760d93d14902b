//! End to end: `holepunch demo --population` (issue 16), as a script uses it: exit codes,
//! the `--json` summary, determinism, and what a mix decides.
mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::{Output, TempDir, holepunch, run_bounded};

/// Bound on one run (they take well under a second in release).
const LIMIT: Duration = Duration::from_secs(60);

fn demo(args: &[&str]) -> Output {
    run_bounded("demo", holepunch().arg("demo").args(args), LIMIT)
}

/// The `--json` lines of a successful run.
fn json_run(args: &[&str]) -> Vec<Value> {
    let out = demo(&[&["--json"], args].concat());
    assert_eq!(out.code(), 0, "{}", out.stderr);
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect()
}

fn summary(lines: &[Value]) -> &Value {
    let last = lines.last().expect("some output");
    assert_eq!(last["event"], "summary");
    last
}

fn write_mix(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write the mix");
    path.display().to_string()
}

#[test]
fn json_summary_shares_sum_to_one_and_the_same_seed_gives_the_same_lines() {
    let args = ["--population", "200", "--connections", "2", "--seed", "9"];
    let first = json_run(&args);
    let s = summary(&first);
    let share = |k: &str| s[k].as_f64().expect(k);
    let total = share("direct_share") + share("relay_share") + share("failed_share");
    assert!((total - 1.0).abs() < 1e-9, "{s}");
    assert_eq!(s["connections"], 400);
    assert_eq!(s["unexpected"], 0, "{s}");
    assert_eq!(
        (&s["punching"], &s["mapping_detection"]),
        (&true.into(), &true.into())
    );
    for key in [
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "relays_needed",
        "relay_bytes_share",
    ] {
        assert!(s[key].is_number(), "{key}: {s}");
    }
    // One line per profile and per relay (three by default) before the summary.
    let count = |e: &str| first.iter().filter(|l| l["event"] == e).count();
    assert_eq!((count("profile"), count("relay")), (9, 3));
    assert_eq!(first, json_run(&args), "same seed, same output");
    let other = json_run(&["--population", "200", "--connections", "2", "--seed", "10"]);
    assert_ne!(summary(&first), summary(&other));
}

#[test]
fn a_mix_without_symmetric_or_blocked_peers_is_all_direct() {
    let dir = TempDir::new("hp-mix");
    let mix = write_mix(
        dir.path(),
        "easy.json",
        r#"{"profiles": {
            "open": {"share": 0.2}, "full-cone": {"share": 0.2},
            "port-restricted-cone": {"share": 0.3}, "cgnat": {"share": 0.2},
            "firewall": {"share": 0.1}},
          "port_mapping": {"share": 0.5}, "ipv6": {"share": 0.5}}"#,
    );
    let lines = json_run(&["--population", "150", "--mix", &mix, "--relays", "2"]);
    let s = summary(&lines);
    assert_eq!(s["direct_share"], 1.0, "{s}");
    assert_eq!(s["relay"], 0);
    assert_eq!(s["failed"], 0);
}

#[test]
fn only_symmetric_random_without_mapping_is_all_relayed() {
    let dir = TempDir::new("hp-mix");
    let mix = write_mix(
        dir.path(),
        "hard.json",
        r#"{"profiles": {"symmetric-random": {"share": 1.0}}, "port_mapping": {"share": 0}}"#,
    );
    let lines = json_run(&["--population", "40", "--connections", "2", "--mix", &mix]);
    let s = summary(&lines);
    assert_eq!(s["relay_share"], 1.0, "{s}");
    assert!(s["relay_bytes"].as_u64() > Some(0));
    let relayed: u64 = lines
        .iter()
        .filter(|l| l["event"] == "relay")
        .map(|l| l["relayed_connections"].as_u64().expect("count"))
        .sum();
    assert!(
        relayed >= 80,
        "every relayed connection crossed a relay: {relayed}"
    );
}

#[test]
fn bad_input_is_bad_usage() {
    let dir = TempDir::new("hp-mix");
    let missing = dir.path().join("missing.json").display().to_string();
    let malformed = write_mix(dir.path(), "malformed.json", "{\"profiles\": [1, 2");
    let short = write_mix(
        dir.path(),
        "short.json",
        r#"{"profiles": {"open": {"share": 0.5}, "cgnat": {"share": 0.4}}}"#,
    );
    let unknown = write_mix(
        dir.path(),
        "unknown.json",
        r#"{"profiles": {"carrier-grade": {"share": 1.0}}}"#,
    );
    let cases: [(&[&str], &str); 8] = [
        (&["--population", "0"], "population"),
        (&["--population", "1"], "population"),
        (&["--population", "10", "--mix", &missing], "cannot read"),
        (&["--population", "10", "--mix", &malformed], "malformed"),
        (&["--population", "10", "--mix", &short], "sum to 0.9"),
        (
            &["--population", "10", "--mix", &unknown],
            "unknown profile",
        ),
        (&["--connections", "2"], "--population"),
        (&["--no-punching"], "--population"),
    ];
    for (args, why) in cases {
        let out = demo(args);
        assert_eq!(out.code(), 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(why), "{args:?}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
    }
}

#[test]
fn human_output_has_the_shares_times_and_relay_table() {
    let out = demo(&["--population", "100", "--relays", "2"]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    for needle in [
        "connections: 300: direct",
        "time to connected",
        "relays needed:",
        "203.0.113.17:3478",
        "symmetric-random",
    ] {
        assert!(out.stdout.contains(needle), "{needle}: {}", out.stdout);
    }
    // stderr is a pipe here: no progress bar.
    assert!(!out.stderr.contains('['), "{}", out.stderr);
}

#[test]
fn switching_off_punching_and_detection_costs_direct_connections() {
    let dir = TempDir::new("hp-mix");
    let mix = write_mix(
        dir.path(),
        "half.json",
        r#"{"profiles": {"symmetric-random": {"share": 0.5}, "port-restricted-cone": {"share": 0.5}}}"#,
    );
    let base = ["--population", "40", "--connections", "2", "--mix", &mix];
    let direct = |extra: &[&str]| {
        let lines = json_run(&[&base[..], extra].concat());
        let s = summary(&lines).clone();
        (s["direct"].as_u64().expect("count"), s)
    };
    let (all, _) = direct(&[]);
    let (no_punch, s) = direct(&["--no-punching"]);
    assert_eq!(s["punching"], false);
    let (plain, s) = direct(&["--plain-stun"]);
    assert_eq!(s["mapping_detection"], false);
    // One plain STUN address hides which side is hard; the blind fallback still punches, so
    // it beats switching punching off.
    assert!(
        no_punch < all && no_punch < plain,
        "{all} {no_punch} {plain}"
    );
}
