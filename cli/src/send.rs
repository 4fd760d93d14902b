//! `holepunch send FILE`: one file to a peer running `holepunch receive`, over stream mode.
//!
//! On the stream, after the greeting: the name's length (2 bytes, big-endian), the name (UTF-8,
//! the file's last path component), the size (8 bytes, big-endian), the data, then the data's
//! SHA-256 (32 bytes), and our side is finished. The receiver answers `ok\n` when its SHA-256
//! matches, `bad\n` otherwise; anything else, or nothing, fails the job. A progress bar goes
//! to stderr when it is a terminal and `--json` is off.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::connect::report::Reporter;
use crate::connect::stream::{Done, Job, Stream, finish};
use crate::connect::{self, Link};
use crate::json;

/// The receiver's answer when the SHA-256 matched.
pub const ANSWER_OK: &[u8] = b"ok\n";
/// The receiver's answer when it did not.
pub const ANSWER_BAD: &[u8] = b"bad\n";
/// The longest name sent (bytes), as most file systems allow.
pub const MAX_NAME: usize = 255;

/// Arguments of `holepunch send`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
The peer runs `holepunch receive [DIR]` with matching connection options (the same --signal and
swapped --id/--peer, or swapped --local-file/--remote-file). The file's name and size go first,
then its data, then its SHA-256, which the receiver checks and confirms. Exit status: 0 the
receiver confirmed the file; 1 no path, a refused key, the check failed or the connection broke;
2 bad usage.")]
pub struct Args {
    /// The file to send.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// How to reach the peer.
    #[command(flatten)]
    link: Link,
}

/// Sends the file; the exit status follows cli.md.
pub fn run(args: &Args) -> ExitCode {
    let report = Reporter {
        json: args.link.json,
        started: Instant::now(),
        command: "send",
    };
    match std::fs::metadata(&args.file) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return report.failed(&format!("{} is not a file", args.file.display())),
        Err(e) => return report.failed(&format!("cannot read {}: {e}", args.file.display())),
    }
    if name_of(&args.file).is_none() {
        return report.failed(&format!(
            "{} has no usable file name (UTF-8, at most {MAX_NAME} bytes)",
            args.file.display()
        ));
    }
    connect::run_job(&args.link, Job::Send(args.file.clone()), report)
}

fn name_of(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?.to_owned();
    (!name.is_empty() && name.len() <= MAX_NAME).then_some(name)
}

/// A progress bar on stderr, hidden under `--json` or without a terminal.
pub fn progress(report: Reporter, size: u64) -> ProgressBar {
    if report.json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(size), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
    {
        bar.set_style(style);
    }
    bar
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The sending side of the transfer (see the module docs).
pub async fn send_file(stream: Stream, path: &Path, report: Reporter) -> Result<Done, String> {
    let Stream { mut send, mut recv } = stream;
    let broken = |e: &dyn std::fmt::Display| format!("the stream failed: {e}");
    let name = name_of(path).ok_or("no usable file name")?;
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let size = file
        .metadata()
        .await
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .len();
    let started = Instant::now();
    let mut header = Vec::with_capacity(2 + name.len() + 8);
    header.extend_from_slice(&(name.len() as u16).to_be_bytes());
    header.extend_from_slice(name.as_bytes());
    header.extend_from_slice(&size.to_be_bytes());
    send.write_all(&header).await.map_err(|e| broken(&e))?;
    let bar = progress(report, size);
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = file
            .read(&mut buf[..want])
            .await
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        if n == 0 {
            return Err(format!("{} shrank while it was sent", path.display()));
        }
        hash.update(&buf[..n]);
        send.write_all(&buf[..n]).await.map_err(|e| broken(&e))?;
        left -= n as u64;
        bar.inc(n as u64);
    }
    let digest: [u8; 32] = hash.finalize().into();
    send.write_all(&digest).await.map_err(|e| broken(&e))?;
    finish(&mut send).await?;
    bar.finish_and_clear();
    let answer = recv
        .read_to_end(16)
        .await
        .map_err(|e| format!("no confirmation from the receiver: {e}"))?;
    if answer == ANSWER_BAD {
        return Err("the receiver's SHA-256 check failed: the file did not arrive intact".into());
    }
    if answer != ANSWER_OK {
        return Err("the peer did not confirm the file (is it running holepunch receive?)".into());
    }
    let event = json::FileSent {
        name: name.clone(),
        bytes: size,
        sha256: hex(&digest),
        transfer_ms: json::ms(started.elapsed()),
    };
    let secs = started.elapsed().as_secs_f64().max(1e-6);
    let human = format!(
        "sent {name}: {size} bytes in {secs:.1} s ({:.1} MB/s), SHA-256 {} confirmed",
        size as f64 / secs / 1e6,
        hex(&digest)
    );
    report.event(&event, &human);
    Ok(Done {
        sent: size,
        received: answer.len() as u64,
        report_closed: false,
    })
}
