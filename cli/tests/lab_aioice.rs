//! Interoperability with a foreign ICE stack: aioice (Python) against `holepunch connect
//! --local-file/--remote-file` across two port-restricted-cone NATs of the netns lab, with our
//! agent controlling and with it controlled.
//!
//! Each side writes its offer (cli.md's format: `ice-ufrag:`, `ice-pwd:`, `a=candidate:` lines,
//! `a=end-of-candidates`) to its own file in the lab's directory and reads the other's. The
//! aioice side is the small script [`AIOICE_AGENT`] (the recipe of the shared lab.md §5). Once
//! connected, each side sends one text line (repeated until the other printed it) and both exit
//! 0. Needs root and python3 with aioice (skips with a reason otherwise; fails under `CI=true`).
mod lab_common;

use std::ffi::OsString;
use std::time::Duration;

use holepunch_tests::lab::{self, LabProcess, Profile, Stream};
use lab_common::{STUN_ALTERNATE, STUN_PRIMARY, holepunch, require_aioice};

/// The aioice side: `python3 agent.py --controlling|--controlled OUT IN STUN_IP STUN_PORT`.
///
/// Gathers (host and server-reflexive), writes its offer to OUT atomically (rename), reads IN as
/// it grows until `a=end-of-candidates`, connects, then sends `hello from aioice` every 200 ms
/// until it has received a datagram containing `hello from holepunch`, sends it a few more
/// times, and exits 0. Prints `CONNECTED <local> -> <remote>` and `RECEIVED <text>`.
const AIOICE_AGENT: &str = r#"
import asyncio, os, sys, time
import aioice
from aioice import Candidate, Connection

async def main():
    role, out, inp, stun_ip, stun_port = sys.argv[1:6]
    conn = Connection(ice_controlling=(role == "--controlling"),
                      stun_server=(stun_ip, int(stun_port)), use_ipv6=False)
    await conn.gather_candidates()
    lines = ["ice-ufrag:" + conn.local_username, "ice-pwd:" + conn.local_password]
    lines += ["a=candidate:" + c.to_sdp() for c in conn.local_candidates]
    lines.append("a=end-of-candidates")
    with open(out + ".tmp", "w") as f:
        f.write("\n".join(lines) + "\n")
    os.rename(out + ".tmp", out)
    print("OFFER", len(conn.local_candidates), "candidates", flush=True)

    ufrag = pwd = None
    seen = 0
    ended = False
    deadline = time.monotonic() + 20
    while not ended:
        if time.monotonic() > deadline:
            print("TIMEOUT reading the remote offer", flush=True)
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
    print("REMOTE", ufrag, len(conn.remote_candidates), "candidates", flush=True)

    await asyncio.wait_for(conn.connect(), 20)
    pair = conn._nominated.get(1)
    desc = (f"{pair.local_candidate.type} {pair.local_candidate.host}:{pair.local_candidate.port}"
            f" -> {pair.remote_candidate.type} {pair.remote_addr[0]}:{pair.remote_addr[1]}"
            if pair else "?")
    print("CONNECTED", desc, flush=True)

    got = None
    deadline = time.monotonic() + 15
    while got is None and time.monotonic() < deadline:
        await conn.send(b"hello from aioice\n")
        try:
            data = await asyncio.wait_for(conn.recv(), 0.2)
        except asyncio.TimeoutError:
            continue
        if b"hello from holepunch" in data:
            got = data
    if got is None:
        print("NO DATA from holepunch", flush=True)
        sys.exit(1)
    print("RECEIVED", got.decode().strip(), flush=True)
    for _ in range(5):
        await conn.send(b"hello from aioice\n")
        await asyncio.sleep(0.1)
    await asyncio.sleep(2.5)
    await conn.close()
    print("DONE", flush=True)

asyncio.run(main())
"#;

/// Our agent (`controlling` or not) behind one port-restricted-cone NAT, aioice behind another.
fn interop(we_control: bool) {
    let Some(lab) = lab::require() else {
        return;
    };
    if !require_aioice() {
        return;
    }
    let (_srv, _stun) = lab_common::stun_server(&lab);
    let ours_site = lab.nat_site(Profile::PortRestrictedCone, false);
    let theirs_site = lab.nat_site(Profile::PortRestrictedCone, false);
    let ours_file = lab.dir().join("holepunch.offer");
    let theirs_file = lab.dir().join("aioice.offer");
    let script = lab.dir().join("aioice_agent.py");
    std::fs::write(&script, AIOICE_AGENT).expect("write aioice_agent.py");

    let role = if we_control {
        "--controlling"
    } else {
        "--controlled"
    };
    let their_role = if we_control {
        "--controlled"
    } else {
        "--controlling"
    };
    let os = |s: &str| OsString::from(s);
    let ours_args = vec![
        os("connect"),
        os("--datagram"),
        os("--local-file"),
        ours_file.clone().into_os_string(),
        os("--remote-file"),
        theirs_file.clone().into_os_string(),
        os(role),
        os("--stun"),
        os(&STUN_PRIMARY.to_string()),
        os("--stun"),
        os(&STUN_ALTERNATE.to_string()),
        os("--json"),
        os("--timeout"),
        os("20"),
    ];
    let theirs_args = vec![
        os("-u"),
        script.into_os_string(),
        os(their_role),
        theirs_file.into_os_string(),
        ours_file.into_os_string(),
        os(&STUN_PRIMARY.ip().to_string()),
        os(&STUN_PRIMARY.port().to_string()),
    ];
    let mut ours = lab.spawn_with_stdin(ours_site.host(), "connect", holepunch(), ours_args);
    let mut theirs = lab.spawn(theirs_site.host(), "aioice", lab::python3(), theirs_args);

    let limit = Duration::from_secs(30);
    let event = ours
        .wait_for_line(Stream::Stderr, limit, |l| {
            l.contains("\"event\":\"connected\"") || l.contains("\"event\":\"failed\"")
        })
        .unwrap_or_else(|e| panic!("holepunch: {e}\naioice: {}", theirs.describe()));
    let event = lab::parse_json(&event).expect("connected event is JSON");
    assert_eq!(
        event.str_field("event"),
        Some("connected"),
        "holepunch did not connect: {}\naioice: {}",
        ours.describe(),
        theirs.describe()
    );
    assert_eq!(event.str_field("path"), Some("direct"));
    let connected = theirs
        .wait_for_line(Stream::Stdout, limit, |l| l.starts_with("CONNECTED"))
        .unwrap_or_else(|e| panic!("aioice: {e}\nholepunch: {}", ours.describe()));

    exchange(&mut ours, &mut theirs);
    ours.close_stdin();
    let status = theirs.wait_exit(Duration::from_secs(15));
    assert!(
        status.is_some_and(|s| s.success()),
        "aioice did not finish: {}",
        theirs.describe()
    );
    let status = ours.wait_exit(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "holepunch did not exit 0 after EOF: {}",
        ours.describe()
    );
    println!(
        "holepunch {role} <-> aioice {their_role}: holepunch {} -> {} in {} ms; aioice {}",
        event.str_field("local").unwrap_or("?"),
        event.str_field("remote").unwrap_or("?"),
        event
            .get("elapsed_ms")
            .and_then(lab::Json::as_f64)
            .unwrap_or(f64::NAN),
        connected.trim_start_matches("CONNECTED ")
    );
}

/// Sends our line every 200 ms until aioice printed it, and waits for aioice's line on our
/// stdout (15 s in all).
fn exchange(ours: &mut LabProcess, theirs: &mut LabProcess) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let they_got = theirs
            .lines(Stream::Stdout)
            .iter()
            .any(|l| l.starts_with("RECEIVED hello from holepunch"));
        let we_got = ours.stdout().contains("hello from aioice");
        if they_got && we_got {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "datagrams not exchanged (aioice got ours: {they_got}, we got theirs: {we_got}):\n{}\n{}",
            ours.describe(),
            theirs.describe()
        );
        if !they_got {
            ours.write_stdin(b"hello from holepunch\n")
                .unwrap_or_else(|e| panic!("{e}: {}", ours.describe()));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn aioice_interop_holepunch_controlling() {
    interop(true);
}

#[test]
fn aioice_interop_holepunch_controlled() {
    interop(false);
}
