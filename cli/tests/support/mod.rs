//! Helpers for the end-to-end tests: processes that die with the test, bounded waits, free
//! ports, temporary directories and a few JSON field lookups.
#![allow(dead_code, reason = "each test file uses a different subset")]

use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// The `holepunch` binary cargo built for these tests. It reads no resolvers (netcheck's NAT64
/// probe would otherwise ask the host's, off the machine); a test that wants one overrides
/// `HOLEPUNCH_RESOLV_CONF`.
pub fn holepunch() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_holepunch"));
    command.env("HOLEPUNCH_RESOLV_CONF", "/dev/null");
    // A RUST_LOG in the caller's environment would add tracing lines to the stderr the tests
    // read: each test that wants diagnostics asks for them itself.
    command.env_remove("RUST_LOG");
    command
}

/// Whether the tests run under CI, where missing tools fail instead of skipping.
pub use holepunch_tests::is_ci;

/// Whether 127.0.0.2 can be bound (Linux routes all of 127/8 to loopback; macOS does not); when
/// not, fails under CI and otherwise prints why the test is skipped.
pub fn second_loopback() -> bool {
    if holepunch_tests::second_loopback_available() {
        return true;
    }
    assert!(!is_ci(), "CI=true: cannot bind 127.0.0.2");
    println!("skipped: cannot bind 127.0.0.2");
    false
}

/// Whether `program` is an executable file somewhere on `PATH`.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| is_executable(&dir.join(program)))
    })
}

fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        path.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}

/// A port free for both UDP and TCP on `ip` a moment ago (coturn opens both). Another process
/// could take it before we use it; the tests accept that small race.
pub fn free_port(ip: IpAddr) -> u16 {
    for _ in 0..100 {
        let udp = UdpSocket::bind((ip, 0)).expect("bind a UDP socket");
        let port = udp.local_addr().expect("local addr").port();
        if TcpListener::bind((ip, port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP on {ip}");
}

/// A child process killed (and reaped) when dropped, even if the test panics; its stderr is
/// read line by line on a thread so it can be waited on, and its stdout is collected.
pub struct Proc {
    name: String,
    child: Child,
    stderr: Receiver<String>,
    seen: Vec<String>,
    stdout: Option<std::thread::JoinHandle<String>>,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr piped.
    pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
        Self::spawn_with(name, cmd.stdin(Stdio::null()))
    }

    /// [`spawn`](Self::spawn) with stdin piped: the process reads what is written to the
    /// returned handle, and sees EOF when it is dropped.
    #[allow(dead_code)] // Not every test binary that shares this module writes to stdin.
    pub fn spawn_with_stdin(name: &str, cmd: &mut Command) -> (Proc, std::process::ChildStdin) {
        let mut p = Self::spawn_with(name, cmd.stdin(Stdio::piped()));
        let stdin = p.child.stdin.take().expect("piped stdin");
        (p, stdin)
    }

    fn spawn_with(name: &str, cmd: &mut Command) -> Proc {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let (tx, rx) = channel();
        let err = child.stderr.take().expect("piped stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut out = child.stdout.take().expect("piped stdout");
        let stdout = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        Proc {
            name: name.into(),
            child,
            stderr: rx,
            seen: Vec::new(),
            stdout: Some(stdout),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `limit` for `count` stderr lines containing `needle`; panics with everything
    /// seen so far when they do not come.
    pub fn wait_for_lines(&mut self, needle: &str, count: usize, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        loop {
            let found: Vec<String> = self
                .seen
                .iter()
                .filter(|l| l.contains(needle))
                .cloned()
                .collect();
            if found.len() >= count {
                return found;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Timeout) => panic!(
                    "{}: no {count} stderr lines with {needle:?} within {limit:?}; stderr so far:\n{}",
                    self.name,
                    self.seen.join("\n")
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "{}: exited ({:?}) before printing {needle:?}; stderr:\n{}",
                    self.name,
                    self.child.try_wait(),
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Sends a signal by name (`TERM`, `INT`) with the system's `kill` command.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {name} {} failed", self.pid());
    }

    /// Waits up to `limit` for the process to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every stderr line read so far, plus whatever else is already waiting.
    pub fn stderr_so_far(&mut self) -> String {
        while let Ok(line) = self.stderr.try_recv() {
            self.seen.push(line);
        }
        self.seen.join("\n")
    }

    /// The whole stdout, once the process has exited.
    pub fn stdout(&mut self) -> String {
        self.stdout
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// What a bounded run produced.
#[derive(Debug)]
pub struct Output {
    /// The exit status; `None` when the process was killed for running too long.
    pub status: Option<ExitStatus>,
    /// Everything it printed on stdout.
    pub stdout: String,
    /// Everything it printed on stderr.
    pub stderr: String,
}

impl Output {
    /// The exit code, or a panic explaining why there is none.
    pub fn code(&self) -> i32 {
        let status = self
            .status
            .unwrap_or_else(|| panic!("timed out and was killed; output: {self:?}"));
        status
            .code()
            .unwrap_or_else(|| panic!("killed by a signal; output: {self:?}"))
    }
}

/// Runs `cmd` to completion, killing it after `limit`.
pub fn run_bounded(name: &str, cmd: &mut Command, limit: Duration) -> Output {
    let mut proc = Proc::spawn(name, cmd);
    let status = proc.wait_exit(limit);
    if status.is_none() {
        let _ = proc.child.kill();
        let _ = proc.child.wait();
    }
    // The reader threads end once the pipes close (the process is gone).
    let stdout = proc.stdout();
    let mut stderr = Vec::new();
    while let Ok(line) = proc.stderr.recv_timeout(Duration::from_secs(2)) {
        stderr.push(line);
    }
    proc.seen.extend(stderr);
    Output {
        status,
        stdout,
        stderr: proc.seen.join("\n"),
    }
}

/// A directory under the system's temporary directory, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates a fresh, uniquely named directory.
    pub fn new(prefix: &str) -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let unique = format!(
            "{prefix}-{}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        );
        let path = std::env::temp_dir().join(unique);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The string value of `key` in a one-line JSON object (`None` for a non-object line, a missing
/// key or a value that is not a string).
pub fn json_str(line: &str, key: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    value.get(key)?.as_str().map(str::to_owned)
}

/// The value of `key` in a one-line JSON object as JSON text: numbers, booleans and `null` as
/// written (`3`, `true`, `null`), strings with their quotes.
pub fn json_raw(line: &str, key: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    Some(value.get(key)?.to_string())
}

/// Parses a socket address printed by the binary.
pub fn addr(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or_else(|e| panic!("not an address: {s:?}: {e}"))
}

/// The address at the start of a `stun-server: listening on udp ADDR (role)` line.
pub fn listening_addr(line: &str) -> SocketAddr {
    let rest = line
        .split("listening on udp ")
        .nth(1)
        .unwrap_or_else(|| panic!("not a listening line: {line}"));
    addr(rest.split_whitespace().next().unwrap_or_default())
}
