//! Stream mode across the netns lab's NATs under heavy loss: a 50 MiB file piped through
//! `holepunch connect` (QUIC over the punched path) from a host behind one port-restricted
//! NAT to a host behind another, with 20 % loss on each router (nftables `numgen random`
//! drop, both directions, signalling included: 36 % of the packets end to end), arrives
//! byte-identical, and both sides exit 0.
//!
//! Needs root and the lab (skips with a reason otherwise; fails under `CI=true`). The time and
//! goodput are printed: `cargo test --release -p holepunch-cli --test lab_stream -- --nocapture`.
mod lab_common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use holepunch_tests::lab::{LabProcess, Profile, Stream};
use lab_common::{CONNECT_TIMEOUT_S, SIGNAL, STUN_ALTERNATE, STUN_PRIMARY, holepunch};
use sha2::{Digest, Sha256};

/// The file's size: 50 MiB, or `HOLEPUNCH_STREAM_MIB` MiB.
fn size() -> usize {
    std::env::var("HOLEPUNCH_STREAM_MIB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(50)
        .clamp(1, 1024)
        << 20
}
/// Loss on each router.
const LOSS_PER_ROUTER: u8 = 20;
/// The whole transfer, connecting included, must end within this.
const LIMIT: Duration = Duration::from_secs(170);

/// Deterministic bytes that do not compress.
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// `holepunch connect` in stream mode as `id`, stdin from `input`, stdout to `output` (a shell
/// does the redirections so the test never blocks on a pipe).
fn connect(
    lab: &holepunch_tests::lab::Lab,
    ns: &holepunch_tests::lab::Ns,
    id: &str,
    peer: &str,
    input: &Path,
    output: &Path,
) -> LabProcess {
    let script = "exec \"$0\" \"$@\" < \"$HP_IN\" > \"$HP_OUT\"";
    let timeout = CONNECT_TIMEOUT_S.to_string();
    let (stun1, stun2) = (STUN_PRIMARY.to_string(), STUN_ALTERNATE.to_string());
    let args = [
        "connect",
        "--signal",
        SIGNAL,
        "--id",
        id,
        "--peer",
        peer,
        "--stun",
        &stun1,
        "--stun",
        &stun2,
        "--json",
        "--timeout",
        &timeout,
    ];
    let mut sh_args = vec!["-c", script, holepunch()];
    sh_args.extend(args);
    let env_cmd = [
        format!("HP_IN={}", input.display()),
        format!("HP_OUT={}", output.display()),
        format!(
            "XDG_CONFIG_HOME={}",
            lab.dir().join(format!("{id}.config")).display()
        ),
    ];
    let mut all: Vec<String> = env_cmd.to_vec();
    all.push("/bin/sh".into());
    all.extend(sh_args.iter().map(|s| s.to_string()));
    lab.spawn(ns, &format!("stream-{id}"), "/usr/bin/env", all)
}

#[test]
fn fifty_mib_through_two_lossy_nats_arrive_byte_identical() {
    let Some(lab) = lab_common::require_with(&[]) else {
        return;
    };
    let (_srv, _stun, _signal) = lab_common::servers(&lab);
    let site_a = lab.nat_site(Profile::PortRestrictedCone, false);
    let site_b = lab.nat_site(Profile::PortRestrictedCone, false);
    lab.set_loss(&site_a.router, LOSS_PER_ROUTER);
    lab.set_loss(&site_b.router, LOSS_PER_ROUTER);
    let data = pattern(size());
    let dir = lab.dir();
    let (input, empty) = (dir.join("stream.in"), dir.join("empty.in"));
    fs::write(&input, &data).expect("input file");
    fs::write(&empty, b"").expect("empty file");
    let (out_a, out_b) = (dir.join("a.out"), dir.join("b.out"));
    let started = Instant::now();
    let mut a = connect(&lab, site_a.host(), "a", "b", &input, &out_a);
    let mut b = connect(&lab, site_b.host(), "b", "a", &empty, &out_b);
    let connected = b.expect_line(
        Stream::Stderr,
        Duration::from_secs(CONNECT_TIMEOUT_S + 10),
        |l| l.contains("\"event\":\"peer_key\"") || l.contains("\"event\":\"failed\""),
    );
    assert!(connected.contains("peer_key"), "{}", b.describe());
    let connect_time = started.elapsed();
    let left = LIMIT.saturating_sub(started.elapsed());
    let status_b = b.wait_exit(left);
    let status_a = a.wait_exit(
        LIMIT
            .saturating_sub(started.elapsed())
            .max(Duration::from_secs(5)),
    );
    let took = started.elapsed();
    assert!(
        status_b.is_some_and(|s| s.success()) && status_a.is_some_and(|s| s.success()),
        "both exit 0 within {LIMIT:?}:\n{}\n{}",
        a.describe(),
        b.describe()
    );
    let got = fs::read(&out_b).expect("b's output");
    assert_eq!(got.len(), data.len(), "length");
    assert_eq!(
        Sha256::digest(&got)[..],
        Sha256::digest(&data)[..],
        "50 MiB arrive byte-identical"
    );
    assert!(got == data);
    let transfer = took.saturating_sub(connect_time).as_secs_f64().max(1e-3);
    println!(
        "{LOSS_PER_ROUTER} % loss per router: {} MiB in {took:?} (connected after \
         {connect_time:?}; {:.2} MB/s over the transfer)",
        data.len() >> 20,
        data.len() as f64 / transfer / 1e6
    );
    lab.set_loss(&site_a.router, 0);
    lab.set_loss(&site_b.router, 0);
}
