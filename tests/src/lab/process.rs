//! Processes inside lab namespaces: started in their own process group, output to files, killed
//! and reaped on drop, every wait bounded.

use std::fs::File;
use std::io::Read;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::Ns;

/// How often waits look at a process's output files and status.
const POLL: Duration = Duration::from_millis(10);

/// Which output of a process to look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A process running inside a lab namespace, started by [`super::Lab::spawn`].
///
/// Its stdout and stderr go to files in the lab's directory, so they can be read at any time
/// and survive it. Dropping it kills its whole process group (SIGKILL) and reaps it.
#[derive(Debug)]
pub struct LabProcess {
    name: String,
    ns: Ns,
    child: Child,
    status: Option<ExitStatus>,
    /// Set once the process is reaped: its pid may then be reused, so the lab must no longer
    /// signal it or its group.
    reaped: Arc<AtomicBool>,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    /// The write end of its stdin, when started with [`super::Lab::spawn_with_stdin`].
    stdin: Option<ChildStdin>,
}

impl LabProcess {
    /// Starts `cmd` (already an `ip netns exec` command) with output to `<base>.stdout` and
    /// `<base>.stderr`.
    pub(super) fn start(name: &str, ns: &Ns, cmd: Command, base: &Path) -> LabProcess {
        Self::start_inner(name, ns, cmd, base, false)
    }

    /// [`LabProcess::start`] with stdin a pipe, written with [`LabProcess::write_stdin`] and
    /// closed with [`LabProcess::close_stdin`] (or on drop).
    pub(super) fn start_piped(name: &str, ns: &Ns, cmd: Command, base: &Path) -> LabProcess {
        Self::start_inner(name, ns, cmd, base, true)
    }

    fn start_inner(name: &str, ns: &Ns, mut cmd: Command, base: &Path, piped: bool) -> LabProcess {
        let with_suffix = |suffix: &str| {
            let mut p = base.as_os_str().to_os_string();
            p.push(suffix);
            PathBuf::from(p)
        };
        let stdout_path = with_suffix(".stdout");
        let stderr_path = with_suffix(".stderr");
        let out = File::create(&stdout_path)
            .unwrap_or_else(|e| panic!("lab: cannot create {}: {e}", stdout_path.display()));
        let err = File::create(&stderr_path)
            .unwrap_or_else(|e| panic!("lab: cannot create {}: {e}", stderr_path.display()));
        // Its own process group, so teardown can kill whatever it forks too.
        cmd.process_group(0)
            .stdin(if piped { Stdio::piped() } else { Stdio::null() })
            .stdout(out)
            .stderr(err);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("lab: cannot start {name} ({cmd:?}): {e}"));
        let stdin = child.stdin.take();
        LabProcess {
            name: name.to_string(),
            ns: ns.clone(),
            child,
            status: None,
            reaped: Arc::new(AtomicBool::new(false)),
            stdout_path,
            stderr_path,
            stdin,
        }
    }

    /// Writes `data` to its stdin (started with [`super::Lab::spawn_with_stdin`]) in one write
    /// call and flushes it.
    ///
    /// # Errors
    /// When stdin is not a pipe, was closed, or the process closed its end.
    pub fn write_stdin(&mut self, data: &[u8]) -> Result<(), String> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| format!("{}: stdin is not open", self.name))?;
        stdin
            .write_all(data)
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("{}: writing stdin: {e}", self.name))
    }

    /// Closes its stdin (EOF for the process); idempotent.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The process id (also its process-group id). `ip netns exec` execs the program, so this is
    /// the program itself (lab.md P3).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The flag set when the process is reaped (shared with the lab's teardown).
    pub(super) fn reaped_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.reaped)
    }

    /// Everything written to `stream` so far.
    pub fn output(&self, stream: Stream) -> String {
        let path = match stream {
            Stream::Stdout => &self.stdout_path,
            Stream::Stderr => &self.stderr_path,
        };
        let mut s = String::new();
        if let Ok(mut f) = File::open(path) {
            let mut bytes = Vec::new();
            let _ = f.read_to_end(&mut bytes);
            s = String::from_utf8_lossy(&bytes).into_owned();
        }
        s
    }

    /// Everything written to stdout so far.
    pub fn stdout(&self) -> String {
        self.output(Stream::Stdout)
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        self.output(Stream::Stderr)
    }

    /// Complete lines (ending in a newline) of `stream` so far.
    pub fn lines(&self, stream: Stream) -> Vec<String> {
        let text = self.output(stream);
        let complete = match text.rfind('\n') {
            Some(i) => &text[..i],
            None => "",
        };
        complete.lines().map(str::to_string).collect()
    }

    /// A description for failure messages: name, namespace, status and both outputs.
    pub fn describe(&mut self) -> String {
        let status = match self.try_status() {
            Some(s) => format!("exited: {s}"),
            None => "still running".to_string(),
        };
        format!(
            "{} in {} ({status})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.name,
            self.ns,
            self.stdout().trim_end(),
            self.stderr().trim_end()
        )
    }

    /// The exit status if it has exited (reaping it), `None` while it runs.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
            if self.status.is_some() {
                self.reaped.store(true, Ordering::SeqCst);
            }
        }
        self.status
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        self.try_status().is_none()
    }

    /// Waits up to `limit` for `count` complete lines of `stream` matching `pred`, and returns
    /// them (the first `count` in order).
    ///
    /// # Errors
    /// When they do not come within `limit`, or the process exits without printing them: a
    /// message with everything it printed.
    pub fn wait_for_lines(
        &mut self,
        stream: Stream,
        count: usize,
        limit: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>, String> {
        let deadline = Instant::now() + limit;
        loop {
            // Look at the status before the output, so output written just before exiting is
            // seen.
            let exited = self.try_status().is_some();
            let found: Vec<String> = self
                .lines(stream)
                .into_iter()
                .filter(|l| pred(l))
                .take(count)
                .collect();
            if found.len() >= count {
                return Ok(found);
            }
            if exited {
                let what = self.describe();
                return Err(format!(
                    "exited before printing {count} matching lines on {stream:?}: {what}"
                ));
            }
            if Instant::now() >= deadline {
                let what = self.describe();
                return Err(format!(
                    "no {count} matching lines on {stream:?} within {limit:?}: {what}"
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits up to `limit` for a complete line of `stream` matching `pred`.
    ///
    /// # Errors
    /// As [`LabProcess::wait_for_lines`].
    pub fn wait_for_line(
        &mut self,
        stream: Stream,
        limit: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String, String> {
        let mut lines = self.wait_for_lines(stream, 1, limit, pred)?;
        Ok(lines.remove(0))
    }

    /// [`LabProcess::wait_for_line`] that panics with the process's output on failure.
    ///
    /// # Panics
    /// When no such line comes in time.
    pub fn expect_line(
        &mut self,
        stream: Stream,
        limit: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        self.wait_for_line(stream, limit, pred)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits up to `limit` for it to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.try_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Sends signal `name` (`TERM`, `INT`, `KILL`, ...) to the process (not its group).
    pub fn signal(&self, name: &str) {
        let _ = Command::new("kill")
            .args(["-s", name, "--", &self.pid().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Stops it gracefully: SIGTERM, up to `grace` to exit, then SIGKILL to the whole group.
    /// Returns the exit status (`None` only if even SIGKILL did not end it within a second).
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.try_status() {
            return Some(status);
        }
        self.signal("TERM");
        if let Some(status) = self.wait_exit(grace) {
            return Some(status);
        }
        self.kill();
        self.status
    }

    /// Kills the whole process group with SIGKILL and reaps the process (bounded by a second).
    pub fn kill(&mut self) {
        if self.try_status().is_none() {
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{}", self.pid())])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = self.child.kill();
            let _ = self.wait_exit(Duration::from_secs(1));
        }
    }
}

impl Drop for LabProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What [`super::Lab::run`] produced.
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// The exit status; `None` when it ran out of time and was killed.
    pub status: Option<ExitStatus>,
    /// Everything it printed on stdout.
    pub stdout: String,
    /// Everything it printed on stderr.
    pub stderr: String,
}

impl RunOutput {
    /// Whether it exited with status 0.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// Its exit code; `None` when it was killed (by a signal or for running too long).
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    /// The status in words, for messages.
    pub fn status_text(&self) -> String {
        match self.status {
            Some(s) => s.to_string(),
            None => "timed out and was killed".to_string(),
        }
    }
}

/// Runs `cmd` with its output collected (reader threads, so a chatty command cannot block),
/// killing it after `limit`.
///
/// # Errors
/// When it cannot be started or runs out of time.
pub(super) fn run_collect(cmd: &mut Command, limit: Duration) -> Result<RunOutput, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    let reader = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = r.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let out = child.stdout.take().map(|o| reader(Box::new(o)));
    let err = child.stderr.take().map(|e| reader(Box::new(e)));
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let join = |h: Option<std::thread::JoinHandle<String>>| {
        h.map(|h| h.join().unwrap_or_default()).unwrap_or_default()
    };
    let output = RunOutput {
        status,
        stdout: join(out),
        stderr: join(err),
    };
    if output.status.is_none() {
        return Err(format!(
            "{cmd:?} did not finish within {limit:?}: {}",
            output.stderr.trim()
        ));
    }
    Ok(output)
}
