//! `holepunch receive [DIR]`: one file from a peer running `holepunch send`, into DIR (default
//! the current directory). The format is in [`crate::send`].
//!
//! The name must be a plain file name: no `/` or `\`, not `.` or `..`, no control characters,
//! at most 255 bytes; an existing file is not overwritten. The data goes to the file as it
//! arrives; when the SHA-256 at the end does not match, the file is deleted, the sender is told
//! (`bad`), and the job fails.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::connect::report::Reporter;
use crate::connect::stream::{Done, Job, Stream, finish};
use crate::connect::{self, Link};
use crate::json;
use crate::send::{ANSWER_BAD, ANSWER_OK, MAX_NAME, hex, progress};

/// Arguments of `holepunch receive`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
The peer runs `holepunch send FILE` with matching connection options. The file is written to
DIR under the name the sender gave (a plain file name; paths are refused) and is never
overwritten; its SHA-256 is checked at the end. Exit status: 0 the file arrived intact; 1 no path,
a refused key or name, the check failed (the file is deleted) or the connection broke; 2 bad
usage.")]
pub struct Args {
    /// Where to write the file (default: the current directory).
    #[arg(value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// How to reach the peer.
    #[command(flatten)]
    link: Link,
}

/// Receives one file; the exit status follows cli.md.
pub fn run(args: &Args) -> ExitCode {
    let report = Reporter {
        json: args.link.json,
        started: Instant::now(),
        command: "receive",
    };
    if !args.dir.is_dir() {
        return report.failed(&format!("{} is not a directory", args.dir.display()));
    }
    connect::run_job(&args.link, Job::Receive(args.dir.clone()), report)
}

/// Whether `name` is a plain file name we may create in the target directory.
pub fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control())
}

async fn read_exact(recv: &mut quinn::RecvStream, buf: &mut [u8]) -> Result<(), String> {
    recv.read_exact(buf)
        .await
        .map_err(|e| format!("the stream ended early: {e}"))
}

/// The receiving side of the transfer (see the module docs).
pub async fn receive_file(stream: Stream, dir: &Path, report: Reporter) -> Result<Done, String> {
    let Stream { mut send, mut recv } = stream;
    let mut len = [0u8; 2];
    read_exact(&mut recv, &mut len).await?;
    let mut name = vec![0u8; usize::from(u16::from_be_bytes(len))];
    if name.len() > MAX_NAME {
        return Err(format!(
            "the sender's file name is {} bytes long",
            name.len()
        ));
    }
    read_exact(&mut recv, &mut name).await?;
    let name = String::from_utf8(name).map_err(|_| "the sender's file name is not UTF-8")?;
    if !safe_name(&name) {
        return Err(format!(
            "refusing the sender's file name {name:?}: only a plain file name is accepted"
        ));
    }
    let mut size = [0u8; 8];
    read_exact(&mut recv, &mut size).await?;
    let size = u64::from_be_bytes(size);
    let target: PathBuf = dir.join(&name);
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&target)
        .await
        .map_err(|e| format!("cannot create {}: {e}", target.display()))?;
    let started = Instant::now();
    let bar = progress(report, size);
    let mut hash = Sha256::new();
    let mut left = size;
    let outcome: Result<[u8; 32], String> = async {
        while left > 0 {
            let max = usize::try_from(left).unwrap_or(usize::MAX);
            let chunk = recv
                .read_chunk(max, true)
                .await
                .map_err(|e| format!("the stream failed: {e}"))?
                .ok_or_else(|| format!("the stream ended {left} bytes short"))?;
            hash.update(&chunk.bytes);
            file.write_all(&chunk.bytes)
                .await
                .map_err(|e| format!("writing {}: {e}", target.display()))?;
            left -= chunk.bytes.len() as u64;
            bar.inc(chunk.bytes.len() as u64);
        }
        file.flush()
            .await
            .map_err(|e| format!("writing {}: {e}", target.display()))?;
        let mut theirs = [0u8; 32];
        read_exact(&mut recv, &mut theirs).await?;
        Ok(theirs)
    }
    .await;
    bar.finish_and_clear();
    let theirs = match outcome {
        Ok(t) => t,
        Err(e) => {
            let _ = tokio::fs::remove_file(&target).await;
            return Err(e);
        }
    };
    let ours: [u8; 32] = hash.finalize().into();
    if ours != theirs {
        let _ = tokio::fs::remove_file(&target).await;
        let _ = send.write_all(ANSWER_BAD).await;
        let _ = finish(&mut send).await;
        return Err(format!(
            "SHA-256 check failed for {name}: received {}, the sender's is {}; the file was deleted",
            hex(&ours),
            hex(&theirs)
        ));
    }
    send.write_all(ANSWER_OK)
        .await
        .map_err(|e| format!("the stream failed: {e}"))?;
    finish(&mut send).await?;
    let event = json::FileReceived {
        name: name.clone(),
        path: target.display().to_string(),
        bytes: size,
        sha256: hex(&ours),
        transfer_ms: json::ms(started.elapsed()),
    };
    let human = format!(
        "received {name} ({size} bytes) into {}, SHA-256 {} checked",
        target.display(),
        hex(&ours)
    );
    report.event(&event, &human);
    Ok(Done {
        sent: ANSWER_OK.len() as u64,
        received: size,
        report_closed: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_are_safe() {
        for ok in ["a.bin", ".hidden", "naïve file.txt", "x..y"] {
            assert!(safe_name(ok), "{ok}");
        }
        let long = "a".repeat(256);
        for bad in [
            "",
            ".",
            "..",
            "../etc/passwd",
            "a/b",
            "/abs",
            "a\\b",
            "a\nb",
            "a\0b",
            &long,
        ] {
            assert!(!safe_name(bad), "{bad:?}");
        }
    }
}
