//! Interoperability with libnice, the ICE stack of GStreamer and many SIP and WebRTC clients:
//! a real libnice agent (Debian `gir1.2-nice-0.1`, driven from `/usr/bin/python3` through
//! GObject introspection, the recipe of the shared lab.md §6) in the netns lab.
//!
//! - In its default RFC 5245 compatibility libnice gathers server-reflexive candidates with RFC
//!   3489 Binding requests (no magic cookie); it must get one from `holepunch stun-server`.
//! - It then connects to `holepunch connect --local-file/--remote-file` across two
//!   port-restricted-cone NATs, with our agent controlling and with it controlled, and both sides
//!   exchange a line of text.
//!
//! Needs root, `/usr/bin/python3` and libnice's introspection data (skips with a reason
//! otherwise; fails under `CI=true`).
mod lab_common;

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use holepunch_tests::lab::{self, LabProcess, Profile, Stream};
use lab_common::{STUN_ALTERNATE, STUN_PRIMARY, holepunch};

/// The interpreter the GObject bindings are installed for (lab.md §6).
const PYTHON: &str = "/usr/bin/python3";

/// The libnice side: `python3 agent.py --controlling|--controlled OUT IN STUN_IP STUN_PORT`.
///
/// Gathers (host and server-reflexive, no UPnP, no ICE-TCP), prints each local candidate as
/// `CANDIDATE a=candidate:...`, writes its offer to OUT atomically (rename), reads IN until
/// `a=end-of-candidates`, connects, then sends `hello from libnice` every 200 ms; once it has
/// received `hello from holepunch` it sends a few more and exits 0. Prints `CONNECTED`,
/// `RECEIVED`, `DONE`. libnice reads its sockets only with a receive callback, which GI cannot
/// install, hence `nice_agent_attach_recv` through ctypes.
const LIBNICE_AGENT: &str = r#"
import ctypes, os, sys, time
import gi
gi.require_version("Nice", "0.1")
from gi.repository import GLib, Nice

role, out, inp, stun_ip, stun_port = sys.argv[1:6]
controlling = role == "--controlling"
ctx = GLib.MainContext.default()
loop = GLib.MainLoop.new(ctx, False)
agent = Nice.Agent.new(ctx, Nice.Compatibility.RFC5245)
agent.set_property("controlling-mode", controlling)
agent.set_property("stun-server", stun_ip)
agent.set_property("stun-server-port", int(stun_port))
agent.set_property("upnp", False)
agent.set_property("ice-tcp", False)
stream = agent.add_stream(1)

lib = ctypes.CDLL("libnice.so.10")
ctypes.pythonapi.PyCapsule_GetPointer.restype = ctypes.c_void_p
ctypes.pythonapi.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
agent_ptr = ctypes.pythonapi.PyCapsule_GetPointer(agent.__gpointer__, None)
RECV = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint,
                        ctypes.POINTER(ctypes.c_char), ctypes.c_void_p)
state = {"got": None, "ready": False, "failed": False, "sent_after": 0}

def on_recv(_agent, _stream, _component, length, buf, _data):
    data = ctypes.string_at(buf, length)
    if b"hello from holepunch" in data and state["got"] is None:
        state["got"] = data
        print("RECEIVED", data.decode(errors="replace").strip(), flush=True)

recv_cb = RECV(on_recv)
lib.nice_agent_attach_recv.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint,
                                       ctypes.c_void_p, RECV, ctypes.c_void_p]
lib.nice_agent_send.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint,
                                ctypes.c_char_p]
if not lib.nice_agent_attach_recv(agent_ptr, stream, 1, None, recv_cb, None):
    print("attach_recv failed", flush=True)
    sys.exit(1)

def send(data):
    lib.nice_agent_send(agent_ptr, stream, 1, len(data), data)

def on_gathered(_agent, _stream):
    ok, ufrag, pwd = agent.get_local_credentials(stream)
    lines = ["ice-ufrag:" + ufrag, "ice-pwd:" + pwd]
    for c in agent.get_local_candidates(stream, 1):
        sdp = agent.generate_local_candidate_sdp(c)
        print("CANDIDATE", sdp, flush=True)
        lines.append(sdp)
    lines.append("a=end-of-candidates")
    with open(out + ".tmp", "w") as f:
        f.write("\n".join(lines) + "\n")
    os.rename(out + ".tmp", out)
    print("OFFER", len(lines) - 3, "candidates", flush=True)
    GLib.timeout_add(20, read_remote)

remote = {"seen": 0, "ufrag": None, "pwd": None, "cands": [], "deadline": time.monotonic() + 20}

def read_remote():
    if time.monotonic() > remote["deadline"]:
        print("TIMEOUT reading the remote offer", flush=True)
        loop.quit()
        return False
    try:
        with open(inp) as f:
            text = f.read()
    except FileNotFoundError:
        return True
    complete = text[: text.rfind("\n") + 1].splitlines()
    ended = False
    for line in complete[remote["seen"]:]:
        line = line.strip()
        if line.startswith("ice-ufrag:"):
            remote["ufrag"] = line.split(":", 1)[1]
        elif line.startswith("ice-pwd:"):
            remote["pwd"] = line.split(":", 1)[1]
        elif line.startswith("a=candidate:"):
            c = agent.parse_remote_candidate_sdp(stream, line)
            if c is not None:
                remote["cands"].append(c)
        elif line == "a=end-of-candidates":
            ended = True
    remote["seen"] = len(complete)
    if not ended:
        return True
    agent.set_remote_credentials(stream, remote["ufrag"], remote["pwd"])
    n = agent.set_remote_candidates(stream, 1, remote["cands"])
    print("REMOTE", remote["ufrag"], n, "candidates", flush=True)
    return False

def on_state(_agent, _stream, _component, st):
    if st == Nice.ComponentState.READY and not state["ready"]:
        state["ready"] = True
        # get_selected_pair's out-parameters are not usable through GI; the state is enough.
        print("CONNECTED", "ready", flush=True)
        GLib.timeout_add(200, talk)
    elif st == Nice.ComponentState.FAILED:
        print("FAILED", flush=True)
        state["failed"] = True
        loop.quit()

def talk():
    send(b"hello from libnice\n")
    if state["got"] is not None:
        state["sent_after"] += 1
        if state["sent_after"] >= 5:
            GLib.timeout_add(2500, finish)
            return False
    return True

def finish():
    print("DONE", flush=True)
    loop.quit()
    return False

agent.connect("candidate-gathering-done", on_gathered)
agent.connect("component-state-changed", on_state)
GLib.timeout_add(45000, lambda: (print("TIMEOUT overall", flush=True), loop.quit()))
agent.gather_candidates(stream)
loop.run()
sys.exit(0 if state["got"] is not None and not state["failed"] else 1)
"#;

/// Whether libnice can be driven from Python; when not, fails under CI and otherwise says why.
fn require_libnice() -> bool {
    let mut cmd = std::process::Command::new(PYTHON);
    cmd.args([
        "-c",
        "import gi; gi.require_version('Nice', '0.1'); from gi.repository import Nice",
    ]);
    let ok = Path::new(PYTHON).exists()
        && lab::run_bounded(&mut cmd, Duration::from_secs(20)).is_ok_and(|o| o.success());
    if !ok {
        assert!(
            !holepunch_tests::is_ci(),
            "CI=true: libnice's GObject bindings are missing (apt-get install gir1.2-nice-0.1 python3-gi)"
        );
        println!(
            "skipped: libnice's GObject bindings are missing (apt-get install gir1.2-nice-0.1 python3-gi)"
        );
    }
    ok
}

/// Our agent (`controlling` or not) behind one port-restricted-cone NAT, libnice behind another.
fn interop(we_control: bool) {
    let Some(lab) = lab::require() else {
        return;
    };
    if !require_libnice() {
        return;
    }
    let (_srv, _stun) = lab_common::stun_server(&lab);
    let ours_site = lab.nat_site(Profile::PortRestrictedCone, false);
    let theirs_site = lab.nat_site(Profile::PortRestrictedCone, false);
    let ours_file = lab.dir().join("holepunch.offer");
    let theirs_file = lab.dir().join("libnice.offer");
    let script = lab.dir().join("libnice_agent.py");
    std::fs::write(&script, LIBNICE_AGENT).expect("write libnice_agent.py");

    let (role, their_role) = if we_control {
        ("--controlling", "--controlled")
    } else {
        ("--controlled", "--controlling")
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
    let mut theirs = lab.spawn(theirs_site.host(), "libnice", PYTHON, theirs_args);

    // libnice gathered a server-reflexive candidate from our server: its NAT's public address.
    let limit = Duration::from_secs(30);
    theirs
        .wait_for_line(Stream::Stdout, limit, |l| l.starts_with("OFFER"))
        .unwrap_or_else(|e| {
            panic!(
                "libnice did not gather: {e}\nholepunch: {}",
                ours.describe()
            )
        });
    let public = theirs_site.public_ip.to_string();
    let srflx = theirs
        .lines(Stream::Stdout)
        .into_iter()
        .find(|l| l.starts_with("CANDIDATE") && l.contains(" typ srflx"));
    assert!(
        srflx
            .as_deref()
            .is_some_and(|l| l.contains(&format!(" {public} "))),
        "libnice got no server-reflexive candidate with {public} from holepunch stun-server: {}",
        theirs.describe()
    );

    let event = ours
        .wait_for_line(Stream::Stderr, limit, |l| {
            l.contains("\"event\":\"connected\"") || l.contains("\"event\":\"failed\"")
        })
        .unwrap_or_else(|e| panic!("holepunch: {e}\nlibnice: {}", theirs.describe()));
    let event = lab::parse_json(&event).expect("connected event is JSON");
    assert_eq!(
        event.str_field("event"),
        Some("connected"),
        "holepunch did not connect: {}\nlibnice: {}",
        ours.describe(),
        theirs.describe()
    );
    assert_eq!(event.str_field("path"), Some("direct"));
    let connected = theirs
        .wait_for_line(Stream::Stdout, limit, |l| l.starts_with("CONNECTED"))
        .unwrap_or_else(|e| panic!("libnice: {e}\nholepunch: {}", ours.describe()));

    exchange(&mut ours, &mut theirs);
    ours.close_stdin();
    let status = theirs.wait_exit(Duration::from_secs(15));
    assert!(
        status.is_some_and(|s| s.success()),
        "libnice did not finish: {}",
        theirs.describe()
    );
    let status = ours.wait_exit(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "holepunch did not exit 0 after EOF: {}",
        ours.describe()
    );
    println!(
        "holepunch {role} <-> libnice {their_role}: srflx {}; holepunch {} -> {} in {} ms; libnice {}",
        srflx.unwrap_or_default().trim_start_matches("CANDIDATE "),
        event.str_field("local").unwrap_or("?"),
        event.str_field("remote").unwrap_or("?"),
        event
            .get("elapsed_ms")
            .and_then(lab::Json::as_f64)
            .unwrap_or(f64::NAN),
        connected.trim_start_matches("CONNECTED ")
    );
}

/// Sends our line every 200 ms until libnice printed it, and waits for libnice's line on our
/// stdout (15 s in all).
fn exchange(ours: &mut LabProcess, theirs: &mut LabProcess) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let they_got = theirs
            .lines(Stream::Stdout)
            .iter()
            .any(|l| l.starts_with("RECEIVED hello from holepunch"));
        let we_got = ours.stdout().contains("hello from libnice");
        if they_got && we_got {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "datagrams not exchanged (libnice got ours: {they_got}, we got theirs: {we_got}):\n{}\n{}",
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
fn libnice_interop_holepunch_controlling() {
    interop(true);
}

#[test]
fn libnice_interop_holepunch_controlled() {
    interop(false);
}
