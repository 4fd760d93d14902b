//! Stream mode on loopback: `connect` (QUIC over the ICE path), `send`/`receive`, keys
//! (`keygen`, `--peer-key`, `--trust-first-use`), and what a rewritten offer does.
//!
//! Each side gets its own config directory (XDG_CONFIG_HOME) so default keys and known_peers
//! never touch the user's. Offers travel through files (`--local-file`/`--remote-file`), which
//! also lets a test stand between the peers and rewrite an offer as a hostile signal server
//! would.
mod support;

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::{TempDir, holepunch, json_str, run_bounded};

/// Bound on any one process.
const LIMIT: Duration = Duration::from_secs(40);

/// Deterministic, incompressible-looking bytes.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// One `holepunch` process with files for stdin, stdout and stderr; killed on drop.
struct Side {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Side {
    fn spawn(dir: &Path, name: &str, input: &[u8], args: &[&str]) -> Side {
        let input_path = dir.join(format!("{name}.in"));
        fs::write(&input_path, input).expect("input");
        let (out, err) = (
            dir.join(format!("{name}.out")),
            dir.join(format!("{name}.err")),
        );
        let config = dir.join(format!("{name}.config"));
        let child = holepunch()
            .args(args)
            .env("XDG_CONFIG_HOME", &config)
            .stdin(File::open(&input_path).expect("stdin"))
            .stdout(File::create(&out).expect("stdout"))
            .stderr(File::create(&err).expect("stderr"))
            .spawn()
            .expect("spawn holepunch");
        Side { child, out, err }
    }

    /// The exit code within `LIMIT`, the stdout bytes and the stderr text.
    fn finish(mut self) -> (i32, Vec<u8>, String) {
        let started = Instant::now();
        let code = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status.code().unwrap_or(-1);
            }
            if started.elapsed() > LIMIT {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break -1;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = fs::read(&self.out).unwrap_or_default();
        let err = fs::read_to_string(&self.err).unwrap_or_default();
        (code, out, err)
    }
}

impl Drop for Side {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// File-mode arguments for side `a` (controlling) or `b`, plus `extra`.
fn files<'a>(d: &'a Path, a: bool, extra: &[&'a str]) -> Vec<String> {
    let (ours, theirs, role) = if a {
        ("a.offer", "b.offer", "--controlling")
    } else {
        ("b.offer", "a.offer", "--controlled")
    };
    let mut v = vec![
        "--local-file".to_string(),
        d.join(ours).display().to_string(),
        "--remote-file".to_string(),
        d.join(theirs).display().to_string(),
        role.to_string(),
        "--json".to_string(),
        "--timeout".to_string(),
        "15".to_string(),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn args<'a>(command: &'a str, rest: &'a [String]) -> Vec<&'a str> {
    std::iter::once(command)
        .chain(rest.iter().map(String::as_str))
        .collect()
}

/// `keygen --out PATH`: the fingerprint printed.
fn keygen(path: &Path) -> String {
    let out = run_bounded(
        "keygen",
        holepunch().args(["keygen", "--out", &path.display().to_string()]),
        LIMIT,
    );
    assert_eq!(out.code(), 0, "{out:?}");
    let fp = out.stdout.trim().to_string();
    assert!(fp.starts_with("sha256:") && fp.len() == 71, "{fp}");
    fp
}

/// The first `--json` event named `name` in `stderr`.
fn event<'a>(stderr: &'a str, name: &str) -> Option<&'a str> {
    stderr
        .lines()
        .find(|l| json_str(l, "event").as_deref() == Some(name))
}

#[test]
fn a_few_mib_cross_byte_identical_both_ways_with_keys_in_the_offers() {
    let dir = TempDir::new("hp-quic-cat");
    let d = dir.path();
    let (ka, kb) = (d.join("a.pem"), d.join("b.pem"));
    let (fa, fb) = (keygen(&ka), keygen(&kb));
    let (in_a, in_b) = (pattern(3 << 20, 1), pattern(2 << 20, 2));
    let ka_s = ka.display().to_string();
    let kb_s = kb.display().to_string();
    let a_rest = files(d, true, &["--key", &ka_s, "--peer-key", &fb]);
    let b_rest = files(d, false, &["--key", &kb_s, "--peer-key", &fa]);
    let a = Side::spawn(d, "a", &in_a, &args("connect", &a_rest));
    let b = Side::spawn(d, "b", &in_b, &args("connect", &b_rest));
    let (code_b, out_b, err_b) = b.finish();
    let (code_a, out_a, err_a) = a.finish();
    assert_eq!((code_a, code_b), (0, 0), "a: {err_a}\nb: {err_b}");
    assert!(
        out_b == in_a,
        "a's bytes reach b intact ({} bytes)",
        out_b.len()
    );
    assert!(
        out_a == in_b,
        "b's bytes reach a intact ({} bytes)",
        out_a.len()
    );
    let connected = event(&err_a, "connected").expect("connected");
    assert_eq!(json_str(connected, "peer_key").as_deref(), Some(&*fb));
    let peer = event(&err_a, "peer_key").expect("peer_key");
    assert_eq!(json_str(peer, "trust").as_deref(), Some("pinned"));
    assert!(event(&err_b, "stream_closed").is_some(), "{err_b}");
    // The key line is in the offer, before the credentials.
    let offer = fs::read_to_string(d.join("a.offer")).expect("offer");
    assert_eq!(
        offer.lines().next(),
        Some(&*format!("a=x-holepunch-key:{fa}"))
    );
}

#[test]
fn send_and_receive_move_a_file_with_its_hash_checked() {
    let dir = TempDir::new("hp-quic-send");
    let d = dir.path();
    let src = d.join("payload.bin");
    let data = pattern((1 << 20) + 12_345, 3);
    fs::write(&src, &data).expect("write");
    let inbox = d.join("inbox");
    fs::create_dir(&inbox).expect("inbox");
    let (src_s, inbox_s) = (src.display().to_string(), inbox.display().to_string());
    let a_rest = files(d, true, &[]);
    let b_rest = files(d, false, &[]);
    let mut a_args = vec!["send", src_s.as_str()];
    a_args.extend(a_rest.iter().map(String::as_str));
    let mut b_args = vec!["receive", inbox_s.as_str()];
    b_args.extend(b_rest.iter().map(String::as_str));
    let a = Side::spawn(d, "a", b"", &a_args);
    let b = Side::spawn(d, "b", b"", &b_args);
    let (code_b, _, err_b) = b.finish();
    let (code_a, _, err_a) = a.finish();
    assert_eq!((code_a, code_b), (0, 0), "a: {err_a}\nb: {err_b}");
    let got = fs::read(inbox.join("payload.bin")).expect("received file");
    assert!(got == data, "the file arrives intact");
    let sent = event(&err_a, "sent").expect("sent event");
    let received = event(&err_b, "received").expect("received event");
    assert_eq!(json_str(sent, "sha256"), json_str(received, "sha256"));
    assert!(event(&err_a, "key_created").is_some(), "default key made");
}

/// A hand-made transfer (what `send` writes) piped through `connect` to a `receive`.
fn crafted(name: &str, data: &[u8], hash: [u8; 32]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&(name.len() as u16).to_be_bytes());
    v.extend_from_slice(name.as_bytes());
    v.extend_from_slice(&(data.len() as u64).to_be_bytes());
    v.extend_from_slice(data);
    v.extend_from_slice(&hash);
    v
}

fn receive_from_crafted(name: &str, hash: [u8; 32]) -> (TempDir, i32, Vec<u8>, String) {
    let dir = TempDir::new("hp-quic-crafted");
    let d = dir.path();
    let inbox = d.join("inbox");
    fs::create_dir(&inbox).expect("inbox");
    let inbox_s = inbox.display().to_string();
    let a_rest = files(d, true, &[]);
    let b_rest = files(d, false, &[]);
    let mut b_args = vec!["receive", inbox_s.as_str()];
    b_args.extend(b_rest.iter().map(String::as_str));
    let a = Side::spawn(
        d,
        "a",
        &crafted(name, b"hello", hash),
        &args("connect", &a_rest),
    );
    let b = Side::spawn(d, "b", b"", &b_args);
    let (code_b, _, err_b) = b.finish();
    let (_, out_a, _) = a.finish();
    (dir, code_b, out_a, err_b)
}

#[test]
fn a_failed_hash_check_fails_the_receiver_and_leaves_no_file() {
    let (dir, code, answer, err) = receive_from_crafted("x.txt", [7; 32]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("SHA-256 check failed"), "{err}");
    assert_eq!(answer, b"bad\n", "the sender is told");
    assert!(!dir.path().join("inbox/x.txt").exists(), "deleted");
}

#[test]
fn the_receiver_refuses_a_path_in_the_name() {
    let (dir, code, _, err) = receive_from_crafted("../escaped.txt", [0; 32]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("only a plain file name"), "{err}");
    assert!(!dir.path().join("escaped.txt").exists());
}

#[test]
fn a_pinned_key_that_does_not_match_is_refused() {
    let dir = TempDir::new("hp-quic-pin");
    let d = dir.path();
    let stranger = keygen(&d.join("stranger.pem"));
    let a_rest = files(d, true, &["--peer-key", &stranger]);
    let b_rest = files(d, false, &[]);
    let a = Side::spawn(d, "a", b"secret", &args("connect", &a_rest));
    let b = Side::spawn(d, "b", b"secret", &args("connect", &b_rest));
    let (code_a, _, err_a) = a.finish();
    let (code_b, out_b, _) = b.finish();
    assert_eq!(code_a, 1, "{err_a}");
    assert!(
        err_a.contains("not the one given with --peer-key"),
        "{err_a}"
    );
    assert_ne!(code_b, 0);
    assert!(out_b.is_empty(), "no data reaches b");
}

#[test]
fn trust_first_use_stores_the_key_and_refuses_a_change() {
    let dir = TempDir::new("hp-quic-tofu");
    let d = dir.path();
    let run = |b_key: &Path| {
        let b_key = b_key.display().to_string();
        let _ = fs::remove_file(d.join("a.offer"));
        let _ = fs::remove_file(d.join("b.offer"));
        let a_rest = files(d, true, &["--trust-first-use"]);
        let b_rest = files(d, false, &["--key", &b_key]);
        let a = Side::spawn(d, "a", b"hi", &args("connect", &a_rest));
        let b = Side::spawn(d, "b", b"hi", &args("connect", &b_rest));
        let (code_a, out_a, err_a) = a.finish();
        let _ = b.finish();
        (code_a, out_a, err_a)
    };
    let (first, second) = (d.join("b1.pem"), d.join("b2.pem"));
    let fp1 = keygen(&first);
    keygen(&second);
    let (code, out, err) = run(&first);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, b"hi");
    let trust = event(&err, "peer_key").expect("peer_key");
    assert_eq!(json_str(trust, "trust").as_deref(), Some("stored"));
    let known = fs::read_to_string(d.join("a.config/holepunch/known_peers")).expect("known");
    assert!(known.contains(&fp1), "{known}");
    let (code, _, err) = run(&first);
    assert_eq!(code, 0, "{err}");
    let trust = event(&err, "peer_key").expect("peer_key");
    assert_eq!(json_str(trust, "trust").as_deref(), Some("known"));
    let (code, out, err) = run(&second);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("changed"), "{err}");
    assert!(out.is_empty());
}

#[test]
fn a_peer_without_a_key_is_refused_naming_datagram() {
    let dir = TempDir::new("hp-quic-nokey");
    let d = dir.path();
    let a_rest = files(d, true, &[]);
    let mut b_rest = files(d, false, &["--datagram"]);
    b_rest.push("--max-loss".into());
    b_rest.push("100".into());
    let a = Side::spawn(d, "a", b"stream", &args("connect", &a_rest));
    let b = Side::spawn(d, "b", b"", &args("connect", &b_rest));
    let (code_a, out_a, err_a) = a.finish();
    drop(b);
    assert_eq!(code_a, 1, "{err_a}");
    assert!(
        err_a.contains("carries no key") && err_a.contains("--datagram"),
        "{err_a}"
    );
    assert!(out_a.is_empty());
}

/// Copies `from` to `to` as it grows (like a signal server forwarding lines), replacing the
/// key line's fingerprint with `swap`, until `stop`.
fn rewriting_relay(from: PathBuf, to: PathBuf, swap: String, stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let mut out = File::create(&to).expect("rewritten offer");
        let mut offset = 0u64;
        let mut partial = String::new();
        while !stop.load(Ordering::Relaxed) {
            if let Ok(mut f) = File::open(&from) {
                let _ = f.seek(SeekFrom::Start(offset));
                let mut reader = BufReader::new(f);
                let mut line = String::new();
                while let Ok(n) = reader.read_line(&mut line) {
                    if n == 0 {
                        break;
                    }
                    offset += n as u64;
                    partial.push_str(&line);
                    line.clear();
                    if partial.ends_with('\n') {
                        let text = if partial.starts_with("a=x-holepunch-key:") {
                            format!("a=x-holepunch-key:{swap}\n")
                        } else {
                            partial.clone()
                        };
                        out.write_all(text.as_bytes()).expect("relay");
                        partial.clear();
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
}

#[test]
fn a_signal_path_that_rewrites_a_key_gets_no_session_and_no_data() {
    let dir = TempDir::new("hp-quic-mitm");
    let d = dir.path();
    let mallory = keygen(&d.join("mallory.pem"));
    let stop = Arc::new(AtomicBool::new(false));
    // a's offer reaches b only through the rewriter; b's reaches a as written.
    rewriting_relay(
        d.join("a.offer"),
        d.join("a.seen-by-b"),
        mallory,
        Arc::clone(&stop),
    );
    let a_rest = files(d, true, &[]);
    let b_rest = vec![
        "--local-file".to_string(),
        d.join("b.offer").display().to_string(),
        "--remote-file".to_string(),
        d.join("a.seen-by-b").display().to_string(),
        "--controlled".to_string(),
        "--json".to_string(),
        "--timeout".to_string(),
        "15".to_string(),
    ];
    let a = Side::spawn(d, "a", b"attack at dawn", &args("connect", &a_rest));
    let b = Side::spawn(d, "b", b"retreat", &args("connect", &b_rest));
    let (code_a, out_a, err_a) = a.finish();
    let (code_b, out_b, err_b) = b.finish();
    stop.store(true, Ordering::Relaxed);
    assert!(
        event(&err_b, "connected").is_some(),
        "ICE itself connects: {err_b}"
    );
    assert_eq!((code_a, code_b), (1, 1), "a: {err_a}\nb: {err_b}");
    assert!(err_b.contains("QUIC handshake failed"), "{err_b}");
    assert!(
        err_b.contains("the peer's key is"),
        "names the wrong key: {err_b}"
    );
    assert!(err_a.contains("QUIC handshake failed"), "{err_a}");
    assert!(
        out_a.is_empty() && out_b.is_empty(),
        "no application data delivered"
    );
}

#[test]
fn keygen_writes_a_private_key_and_refuses_to_overwrite() {
    let dir = TempDir::new("hp-keygen");
    let key = dir.path().join("k.pem");
    let key_s = key.display().to_string();
    let fp = keygen(&key);
    let mode = fs::metadata(&key).expect("key").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(
        fs::read_to_string(&key)
            .expect("pem")
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );
    let again = run_bounded(
        "keygen",
        holepunch().args(["keygen", "--out", &key_s]),
        LIMIT,
    );
    assert_eq!(again.code(), 1, "{again:?}");
    assert!(again.stderr.contains("--force"), "{again:?}");
    let forced = run_bounded(
        "keygen",
        holepunch().args(["keygen", "--out", &key_s, "--force", "--json"]),
        LIMIT,
    );
    assert_eq!(forced.code(), 0, "{forced:?}");
    let line = forced.stdout.trim();
    assert_eq!(json_str(line, "event").as_deref(), Some("key_created"));
    assert_ne!(
        json_str(line, "fingerprint").as_deref(),
        Some(&*fp),
        "a new key"
    );
    for bad in [
        vec!["keygen"],
        vec!["keygen", "--out"],
        vec!["keygen", "--out", "x.pem", "--bogus"],
        vec![
            "connect",
            "--local-file",
            "a",
            "--remote-file",
            "b",
            "--peer-key",
            "sha256:xyz",
        ],
    ] {
        let out = run_bounded("usage", holepunch().args(&bad), LIMIT);
        assert_eq!(out.code(), 2, "{bad:?}: {out:?}");
    }
}
