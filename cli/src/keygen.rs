//! `holepunch keygen --out PATH [--force] [--json]`: a new Ed25519 key for stream mode.
//!
//! The key is written as PKCS#8 PEM, readable by its owner only (mode 0600); an existing file
//! is refused (exit 1) unless `--force`. Its fingerprint (`sha256:` and 64 hex digits: the
//! SHA-256 of the public key's SubjectPublicKeyInfo) is printed on stdout, for the peer's
//! `--peer-key`.

use std::path::PathBuf;
use std::process::ExitCode;

use holepunch_tokio::quic_identity::Identity;

use crate::json::{self, Event};
use crate::{EXIT_FAILED, keys};

/// Arguments of `holepunch keygen`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Use the key with `holepunch connect --key PATH` (and send/receive); give the printed fingerprint
to the peer for its --peer-key. Without --key, stream mode uses key.pem in
$XDG_CONFIG_HOME/holepunch (or ~/.config/holepunch), created on first use. Exit status: 0 written;
1 the file exists (without --force) or cannot be written; 2 bad usage.")]
pub struct Args {
    /// Where to write the key.
    #[arg(long, value_name = "PATH")]
    out: PathBuf,
    /// Overwrite an existing file.
    #[arg(long)]
    force: bool,
    /// Print `{"event":"key_created","path":...,"fingerprint":...}` instead of the bare
    /// fingerprint.
    #[arg(long)]
    json: bool,
}

/// Writes the key and prints its fingerprint.
pub fn run(args: &Args) -> ExitCode {
    let fail = |reason: String| {
        if args.json {
            json::Failed::new(reason).print();
        } else {
            eprintln!("holepunch keygen: {reason}");
        }
        ExitCode::from(EXIT_FAILED)
    };
    let identity = match Identity::generate() {
        Ok(i) => i,
        Err(e) => return fail(e.to_string()),
    };
    if let Err(e) = keys::write_key(&args.out, &identity, args.force) {
        let reason = if e.kind() == std::io::ErrorKind::AlreadyExists {
            format!(
                "{} exists; give --force to overwrite it",
                args.out.display()
            )
        } else {
            format!("cannot write {}: {e}", args.out.display())
        };
        return fail(reason);
    }
    let fingerprint = identity.fingerprint().to_string();
    if args.json {
        json::KeyCreated {
            path: args.out.display().to_string(),
            fingerprint,
        }
        .print();
    } else {
        println!("{fingerprint}");
        eprintln!("holepunch keygen: wrote {}", args.out.display());
    }
    ExitCode::SUCCESS
}
