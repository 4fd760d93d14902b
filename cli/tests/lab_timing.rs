//! Side-by-side timing, same topology, same run: `holepunch connect` against two aioice agents.
//!
//! One lab: a server host running `holepunch stun-server` on 203.0.113.3:3478 (alternate
//! 203.0.113.4:3479) and two port-restricted-cone NAT sites, A and B. [`RUNS`] runs of each
//! implementation, alternating (holepunch, aioice, holepunch, ...): each run starts a fresh pair of
//! agents (A controlling, B controlled) exchanging offers through two files in the lab's directory
//! (holepunch: `connect --local-file/--remote-file --json`, both STUN servers; aioice: the embedded
//! [`AIOICE_AGENT`], primary STUN server only, as aioice takes one).
//!
//! The measured interval, defined identically for both implementations and observed the same way
//! (the test polling files every [`POLL`]):
//!
//! - start: the first instant at which the test has seen `a=end-of-candidates` in BOTH offer files
//!   (both sides have their candidates: the later of the two sides' "gathered" instants);
//! - end: the first instant at which the test sees a complete line with the peer's payload on the
//!   stdout of EITHER agent (the first application datagram received).
//!
//! Each side sends its payload as soon as it is connected and repeats it every [`RESEND`] until
//! the peer printed it: for holepunch the test writes the line to its stdin (one written before it
//! connects is sent on connecting; stdout carries only received data), the aioice agent sends from
//! Python and prints the first datagram it receives with a flush. A run counts as connected once
//! both sides printed the other's payload. The medians and their ratio are printed with every
//! run's time; the test asserts that every run connected and that our median is at most half of
//! aioice's (the README's figure; measured ratios are far below). Needs root and python3 with
//! aioice (skips with a reason otherwise; fails under `CI=true`).
mod lab_common;

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use holepunch_tests::lab::{self, Lab, LabProcess, Ns, Profile, Stream};
use lab_common::{STUN_ALTERNATE, STUN_PRIMARY, holepunch, require_aioice};

/// Runs of each implementation.
const RUNS: usize = 10;
/// How often the test looks at the offer files and the agents' stdout.
const POLL: Duration = Duration::from_millis(5);
/// How often each side repeats its payload until the peer printed it.
const RESEND: Duration = Duration::from_millis(50);
/// The bound on one run, from starting the agents to both payloads printed.
const RUN_LIMIT: Duration = Duration::from_secs(15);
/// What marks an offer file complete.
const END: &str = "a=end-of-candidates";

/// The aioice side: `python3 -u agent.py --controlling|--controlled OUT IN STUN_IP STUN_PORT
/// PAYLOAD`.
///
/// Gathers (host and server-reflexive), writes its offer to OUT atomically (rename), reads IN as
/// it grows (every 20 ms, as holepunch does) until `a=end-of-candidates`, connects, then sends
/// PAYLOAD every 50 ms (the first at once) and prints the first datagram it receives to stdout
/// (flushed); diagnostics go to stderr. Exits on its own after 20 s at the latest.
const AIOICE_AGENT: &str = r#"
import asyncio, os, sys, time
from aioice import Candidate, Connection

def log(*a):
    print(*a, file=sys.stderr, flush=True)

async def main():
    role, out, inp, stun_ip, stun_port, payload = sys.argv[1:7]
    stop_at = time.monotonic() + 20
    conn = Connection(ice_controlling=(role == "--controlling"),
                      stun_server=(stun_ip, int(stun_port)), use_ipv6=False)
    await conn.gather_candidates()
    lines = ["ice-ufrag:" + conn.local_username, "ice-pwd:" + conn.local_password]
    lines += ["a=candidate:" + c.to_sdp() for c in conn.local_candidates]
    lines.append("a=end-of-candidates")
    with open(out + ".tmp", "w") as f:
        f.write("\n".join(lines) + "\n")
    os.rename(out + ".tmp", out)
    log("OFFER", len(conn.local_candidates), "candidates")

    ufrag = pwd = None
    seen = 0
    ended = False
    while not ended:
        if time.monotonic() > stop_at:
            log("TIMEOUT reading the remote offer")
            sys.exit(1)
        try:
            with open(inp) as f:
                text = f.read()
        except FileNotFoundError:
            text = ""
        complete = text[: text.rfind("\n") + 1].splitlines()
        for line in complete[seen:]:
            line = line.strip()
            if line.startswith("ice-ufrag:"):
                ufrag = line.split(":", 1)[1]
            elif line.startswith("ice-pwd:"):
                pwd = line.split(":", 1)[1]
            elif line.startswith("a=candidate:"):
                c = Candidate.from_sdp(line[len("a=candidate:"):])
                if c.transport.lower() == "udp" and ":" not in c.host:
                    await conn.add_remote_candidate(c)
            elif line == "a=end-of-candidates":
                ended = True
        seen = len(complete)
        if not ended:
            await asyncio.sleep(0.02)
    conn.remote_username = ufrag
    conn.remote_password = pwd
    await conn.add_remote_candidate(None)

    await asyncio.wait_for(conn.connect(), max(0.1, stop_at - time.monotonic()))
    log("CONNECTED")

    async def sender():
        while True:
            await conn.send((payload + "\n").encode())
            await asyncio.sleep(0.05)

    task = asyncio.ensure_future(sender())
    printed = False
    while time.monotonic() < stop_at:
        try:
            data = await asyncio.wait_for(conn.recv(), max(0.01, stop_at - time.monotonic()))
        except asyncio.TimeoutError:
            break
        if not printed:
            sys.stdout.write(data.decode(errors="replace"))
            sys.stdout.flush()
            printed = True
    task.cancel()
    await conn.close()

asyncio.run(main())
"#;

/// Which implementation a run used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Impl {
    Holepunch,
    Aioice,
}

impl Impl {
    fn name(self) -> &'static str {
        match self {
            Impl::Holepunch => "holepunch",
            Impl::Aioice => "aioice",
        }
    }
}

/// What one run measured.
#[derive(Debug)]
struct Sample {
    /// From both offers complete to the first payload printed, in ms (negative would mean a
    /// datagram arrived before both offers were complete: holepunch trickles candidates).
    ms: f64,
    /// Which side (A or B) printed first.
    first: char,
    /// From starting the agents to both offers complete, in ms.
    gather_ms: f64,
}

/// Whether the file at `path` exists and contains `a=end-of-candidates` on a complete line.
fn offer_complete(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .is_ok_and(|t| t.lines().any(|l| l.trim() == END) && t.ends_with('\n'))
}

/// Whether `p` printed a complete stdout line containing `payload`.
fn printed(p: &LabProcess, payload: &str) -> bool {
    p.lines(Stream::Stdout).iter().any(|l| l.contains(payload))
}

/// Polls both offer files and both agents' stdout every [`POLL`] until both agents printed the
/// other's payload (within [`RUN_LIMIT`] of `started`), calling `resend` every [`RESEND`] with
/// which sides still need to send (A's payload not yet printed by B, and B's not by A).
fn measure(
    started: Instant,
    (a, file_a, payload_a): (&mut LabProcess, &Path, &str),
    (b, file_b, payload_b): (&mut LabProcess, &Path, &str),
    mut resend: impl FnMut(&mut LabProcess, &mut LabProcess, bool, bool) -> Result<(), String>,
) -> Result<Sample, String> {
    let deadline = started + RUN_LIMIT;
    let (mut gathered_a, mut gathered_b) = (None, None);
    let mut first: Option<(Instant, char)> = None;
    let mut next_resend = Instant::now();
    loop {
        let now = Instant::now();
        if gathered_a.is_none() && offer_complete(file_a) {
            gathered_a = Some(now);
        }
        if gathered_b.is_none() && offer_complete(file_b) {
            gathered_b = Some(now);
        }
        let a_got = printed(a, payload_b);
        let b_got = printed(b, payload_a);
        if first.is_none() {
            if a_got {
                first = Some((now, 'A'));
            } else if b_got {
                first = Some((now, 'B'));
            }
        }
        if let (Some(ga), Some(gb), Some((t1, side))) = (gathered_a, gathered_b, first)
            && a_got
            && b_got
        {
            let t0: Instant = ga.max(gb);
            let ms = if t1 >= t0 {
                (t1 - t0).as_secs_f64() * 1e3
            } else {
                -(t0 - t1).as_secs_f64() * 1e3
            };
            return Ok(Sample {
                ms,
                first: side,
                gather_ms: (t0 - started).as_secs_f64() * 1e3,
            });
        }
        if now >= deadline {
            return Err(format!(
                "not done within {RUN_LIMIT:?} (A offer complete: {}, B offer complete: {}, A got \
                 B's payload: {a_got}, B got A's: {b_got}):\n{}\n{}",
                gathered_a.is_some(),
                gathered_b.is_some(),
                a.describe(),
                b.describe()
            ));
        }
        if now >= next_resend {
            resend(a, b, !b_got, !a_got)?;
            next_resend = now + RESEND;
        }
        std::thread::sleep(POLL);
    }
}

/// The offer files of run `run` of `which`, fresh names in the lab's directory.
fn offer_files(lab: &Lab, which: Impl, run: usize) -> (PathBuf, PathBuf) {
    let dir = lab.dir();
    (
        dir.join(format!("{}-{run}-a.offer", which.name())),
        dir.join(format!("{}-{run}-b.offer", which.name())),
    )
}

/// Whether holepunch `p` reported `connected` (on stderr, `--json`).
fn hp_connected(p: &LabProcess) -> bool {
    p.stderr().contains("\"event\":\"connected\"")
}

/// One holepunch run: A controlling, B controlled.
fn run_holepunch(lab: &Lab, a: &Ns, b: &Ns, run: usize) -> Result<Sample, String> {
    let (file_a, file_b) = offer_files(lab, Impl::Holepunch, run);
    let stun1 = STUN_PRIMARY.to_string();
    let stun2 = STUN_ALTERNATE.to_string();
    let args = |local: &Path, remote: &Path, role: &str| -> Vec<OsString> {
        [
            "connect".into(),
            "--datagram".into(),
            "--local-file".into(),
            local.as_os_str().to_owned(),
            "--remote-file".into(),
            remote.as_os_str().to_owned(),
            role.into(),
            "--stun".into(),
            stun1.as_str().into(),
            "--stun".into(),
            stun2.as_str().into(),
            "--json".into(),
            "--timeout".into(),
            "12".into(),
        ]
        .into()
    };
    let (pa, pb) = ("ping from holepunch A", "ping from holepunch B");
    let started = Instant::now();
    let mut ha = lab.spawn_with_stdin(
        a,
        "hp-a",
        holepunch(),
        args(&file_a, &file_b, "--controlling"),
    );
    let mut hb = lab.spawn_with_stdin(
        b,
        "hp-b",
        holepunch(),
        args(&file_b, &file_a, "--controlled"),
    );
    // Queued before connecting: each sends its line as soon as it is connected.
    ha.write_stdin(format!("{pa}\n").as_bytes())?;
    hb.write_stdin(format!("{pb}\n").as_bytes())?;
    let result = measure(
        started,
        (&mut ha, &file_a, pa),
        (&mut hb, &file_b, pb),
        |ha, hb, a_needs, b_needs| {
            // Repeats only once connected (the first line is already queued).
            if a_needs && hp_connected(ha) {
                ha.write_stdin(format!("{pa}\n").as_bytes())?;
            }
            if b_needs && hp_connected(hb) {
                hb.write_stdin(format!("{pb}\n").as_bytes())?;
            }
            Ok(())
        },
    );
    ha.close_stdin();
    hb.close_stdin();
    for p in [&mut ha, &mut hb] {
        if p.wait_exit(Duration::from_secs(3)).is_none() {
            p.stop(Duration::from_millis(500));
        }
    }
    result
}

/// One aioice run: A controlling, B controlled.
fn run_aioice(lab: &Lab, a: &Ns, b: &Ns, script: &Path, run: usize) -> Result<Sample, String> {
    let (file_a, file_b) = offer_files(lab, Impl::Aioice, run);
    let (pa, pb) = ("ping from aioice A", "ping from aioice B");
    let stun_ip = STUN_PRIMARY.ip().to_string();
    let stun_port = STUN_PRIMARY.port().to_string();
    let args = |local: &Path, remote: &Path, role: &str, payload: &str| -> Vec<OsString> {
        [
            "-u".into(),
            script.as_os_str().to_owned(),
            role.into(),
            local.as_os_str().to_owned(),
            remote.as_os_str().to_owned(),
            stun_ip.as_str().into(),
            stun_port.as_str().into(),
            payload.into(),
        ]
        .into()
    };
    let started = Instant::now();
    let mut aa = lab.spawn(
        a,
        "aioice-a",
        lab::python3(),
        args(&file_a, &file_b, "--controlling", pa),
    );
    let mut ab = lab.spawn(
        b,
        "aioice-b",
        lab::python3(),
        args(&file_b, &file_a, "--controlled", pb),
    );
    // The agents repeat their payloads themselves.
    let result = measure(
        started,
        (&mut aa, &file_a, pa),
        (&mut ab, &file_b, pb),
        |_, _, _, _| Ok(()),
    );
    for p in [&mut aa, &mut ab] {
        p.stop(Duration::from_millis(300));
    }
    result
}

/// The median of `xs` (the mean of the middle two for an even count).
fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[test]
fn holepunch_vs_aioice_time_to_first_datagram() {
    let Some(lab) = lab::require() else {
        return;
    };
    if !require_aioice() {
        return;
    }
    let (_srv, _stun) = lab_common::stun_server(&lab);
    let site_a = lab.nat_site(Profile::PortRestrictedCone, false);
    let site_b = lab.nat_site(Profile::PortRestrictedCone, false);
    let script = lab.dir().join("aioice_timing_agent.py");
    std::fs::write(&script, AIOICE_AGENT).expect("write aioice_timing_agent.py");

    let started = Instant::now();
    let mut results: Vec<(Impl, usize, Result<Sample, String>)> = Vec::new();
    for run in 0..RUNS {
        for which in [Impl::Holepunch, Impl::Aioice] {
            let r = match which {
                Impl::Holepunch => run_holepunch(&lab, site_a.host(), site_b.host(), run),
                Impl::Aioice => run_aioice(&lab, site_a.host(), site_b.host(), &script, run),
            };
            results.push((which, run, r));
        }
    }

    let times = |which: Impl| -> Vec<f64> {
        results
            .iter()
            .filter(|(w, _, _)| *w == which)
            .filter_map(|(_, _, r)| r.as_ref().ok().map(|s| s.ms))
            .collect()
    };
    let (ours, theirs) = (times(Impl::Holepunch), times(Impl::Aioice));
    let (m_ours, m_theirs) = (median(&ours), median(&theirs));
    let ratio = m_ours / m_theirs;

    let mut table = String::new();
    let _ = writeln!(
        table,
        "time from both offers complete (a=end-of-candidates in both files) to the first \
         application datagram printed by either side; two port-restricted-cone NATs, one lab, \
         alternating runs, polled every {} ms:",
        POLL.as_millis()
    );
    let _ = writeln!(
        table,
        "{:>4}  {:>22}  {:>22}",
        "run", "holepunch ms (first)", "aioice ms (first)"
    );
    let cell = |which: Impl, run: usize| -> String {
        results
            .iter()
            .find(|(w, r, _)| *w == which && *r == run)
            .map_or_else(
                || "-".to_string(),
                |(_, _, r)| match r {
                    Ok(s) => format!("{:8.1} ({}) g{:5.0}", s.ms, s.first, s.gather_ms),
                    Err(_) => "FAILED".to_string(),
                },
            )
    };
    for run in 0..RUNS {
        let _ = writeln!(
            table,
            "{:>4}  {:>22}  {:>22}",
            run + 1,
            cell(Impl::Holepunch, run),
            cell(Impl::Aioice, run)
        );
    }
    let _ = writeln!(
        table,
        "median  holepunch {m_ours:.1} ms ({} runs)  aioice {m_theirs:.1} ms ({} runs)  ratio \
         {ratio:.3}  target <= 0.5: {}",
        ours.len(),
        theirs.len(),
        if ratio <= 0.5 { "met" } else { "NOT met" }
    );
    let _ = writeln!(
        table,
        "(g = ms from starting the agents to both offers complete; total {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    println!("{table}");

    let failures: Vec<String> = results
        .iter()
        .filter_map(|(w, run, r)| {
            r.as_ref()
                .err()
                .map(|e| format!("{} run {}: {e}", w.name(), run + 1))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} runs did not connect:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert!(
        ratio <= 0.5,
        "holepunch's median {m_ours:.1} ms is more than half of aioice's {m_theirs:.1} ms \
         (ratio {ratio:.3})"
    );
}
