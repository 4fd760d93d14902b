//! Stream mode across the netns lab's NATs under heavy loss: a 50 MiB file piped through
//! `holepunch connect` (QUIC over the punched path) from a host behind one port-restricted
//! NAT to a host behind another, with 20 % loss on each router (nftables `numgen random`
//! drop, both directions, signalling included: 36 % of the packets end to end), arrives
//! byte-identical, and both sides exit 0. Through our relay: a stream between two
//! symmetric-random NATs, and one that starts on the relay (a UDP-blocked side, TURN over TCP)
//! and moves to the direct path when the block is lifted mid-transfer, arrive byte-identical.
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
    connect_with(lab, ns, id, peer, input, output, &[])
}

/// [`connect`] with more arguments (`--turn ...`).
fn connect_with(
    lab: &holepunch_tests::lab::Lab,
    ns: &holepunch_tests::lab::Ns,
    id: &str,
    peer: &str,
    input: &Path,
    output: &Path,
    extra: &[&str],
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
    sh_args.extend(extra);
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

/// Runs `a` (sending `data`) and `b` (sending nothing) in stream mode behind `pa` and `pb`,
/// both given our relay (a UDP-blocked side over TCP). `a` reads from a FIFO: the first half of
/// `data` goes in once both are connected, then `during` runs on the lab, then the rest. Returns
/// `a`'s and `b`'s stderr lines and the time the whole run took.
fn stream_via_relay(
    pa: Profile,
    pb: Profile,
    data: &[u8],
    during: impl FnOnce(
        &holepunch_tests::lab::Lab,
        &mut holepunch_tests::lab::Site,
        &mut LabProcess,
        &mut LabProcess,
    ),
) -> Option<(Vec<String>, Vec<String>, Duration)> {
    let lab = lab_common::require_with(&["mkfifo"])?;
    let (_srv, _stun, _signal) = lab_common::servers(&lab);
    let (_relay_ns, _relay) = lab_common::relay(&lab);
    let mut site_a = lab.nat_site(pa, false);
    let site_b = lab.nat_site(pb, false);
    let dir = lab.dir();
    let (input, empty) = (dir.join("relay.fifo"), dir.join("relay-empty.in"));
    let made = std::process::Command::new("mkfifo").arg(&input).status();
    assert!(
        made.is_ok_and(|s| s.success()),
        "mkfifo {}",
        input.display()
    );
    fs::write(&empty, b"").expect("empty file");
    let (out_a, out_b) = (dir.join("relay-a.out"), dir.join("relay-b.out"));
    let turn = format!("{}@{}", lab_common::RELAY_USER, lab_common::RELAY);
    let turn_for = |p: Profile| {
        if p == Profile::UdpBlocked {
            format!("{turn}?transport=tcp")
        } else {
            turn.clone()
        }
    };
    let (ta, tb) = (turn_for(pa), turn_for(pb));
    let started = Instant::now();
    let mut a = connect_with(
        &lab,
        site_a.host(),
        "a",
        "b",
        &input,
        &out_a,
        &["--turn", &ta],
    );
    let mut b = connect_with(
        &lab,
        site_b.host(),
        "b",
        "a",
        &empty,
        &out_b,
        &["--turn", &tb],
    );
    // Opening the FIFO for writing waits for `a`'s shell to open it for reading.
    let mut fifo = fs::OpenOptions::new()
        .write(true)
        .open(&input)
        .expect("open the FIFO");
    let limit = Duration::from_secs(CONNECT_TIMEOUT_S + 10);
    for p in [&mut a, &mut b] {
        let line = p.expect_line(Stream::Stderr, limit, |l| {
            l.contains("\"event\":\"connected\"") || l.contains("\"event\":\"failed\"")
        });
        assert!(line.contains("\"path\":\"relay\""), "{}", p.describe());
    }
    let half = data.len() / 2;
    std::io::Write::write_all(&mut fifo, &data[..half]).expect("first half into the FIFO");
    during(&lab, &mut site_a, &mut a, &mut b);
    std::io::Write::write_all(&mut fifo, &data[half..]).expect("second half into the FIFO");
    drop(fifo);
    let status_b = b.wait_exit(LIMIT.saturating_sub(started.elapsed()));
    let status_a = a.wait_exit(Duration::from_secs(10));
    assert!(
        status_b.is_some_and(|s| s.success()) && status_a.is_some_and(|s| s.success()),
        "both exit 0:\n{}\n{}",
        a.describe(),
        b.describe()
    );
    let got = fs::read(&out_b).expect("b's output");
    assert_eq!(got.len(), data.len(), "length");
    assert!(got == data, "the stream arrives byte-identical");
    Some((
        a.lines(Stream::Stderr),
        b.lines(Stream::Stderr),
        started.elapsed(),
    ))
}

/// Whether `lines` hold a `path_changed` to a direct path.
fn moved_to_direct(lines: &[String]) -> bool {
    lines
        .iter()
        .any(|l| l.contains("\"event\":\"path_changed\"") && l.contains("\"path\":\"direct\""))
}

#[test]
fn a_stream_through_the_relay_arrives_byte_identical() {
    // Both symmetric: QUIC runs over the relayed path.
    let data = pattern(4 << 20);
    let Some((_, _, took)) = stream_via_relay(
        Profile::SymmetricRandom,
        Profile::SymmetricRandom,
        &data,
        |_, _, _, _| {},
    ) else {
        return;
    };
    println!("4 MiB through the relay in {took:?}");
}

#[test]
fn a_stream_survives_the_move_from_relay_to_direct() {
    // A UDP-blocked side starts on the relay (TURN over TCP). Half the data crosses the relay;
    // then the block is lifted, and the rest goes once both sides report the direct path.
    let data = pattern(16 << 20);
    let Some((a, b, took)) = stream_via_relay(
        Profile::UdpBlocked,
        Profile::PortRestrictedCone,
        &data,
        |lab, site_a, a, b| {
            lab.unblock_udp(site_a);
            let lifted = Instant::now();
            while !(moved_to_direct(&a.lines(Stream::Stderr))
                && moved_to_direct(&b.lines(Stream::Stderr)))
            {
                assert!(
                    lifted.elapsed() < Duration::from_secs(15),
                    "no move to direct:\n{}\n{}",
                    a.describe(),
                    b.describe()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            println!(
                "relay -> direct {:?} after the block was lifted",
                lifted.elapsed()
            );
        },
    ) else {
        return;
    };
    println!("16 MiB, half relayed, half direct, in {took:?}");
    assert!(moved_to_direct(&a) && moved_to_direct(&b));
}
