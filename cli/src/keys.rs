//! Where keys live: our identity (a PKCS#8 PEM file) and the peers we trust on first use.
//!
//! - The config directory is `$XDG_CONFIG_HOME/holepunch`, else `$HOME/.config/holepunch`.
//! - Our default key is `key.pem` there, created (mode 0600, directory 0700) the first time a
//!   stream-mode command needs it; `--key PATH` names another, which must exist.
//! - `known_peers` there holds one `NAME sha256:HEX` line per peer trusted on first use
//!   (`--trust-first-use`); NAME is the `--peer` name, or the `--remote-file` path in file
//!   mode. A later, different key for the same NAME is refused.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use holepunch_tokio::quic_identity::{Fingerprint, Identity};

/// The file name of our default key in the config directory.
const KEY_FILE: &str = "key.pem";
/// The file name of the trusted-on-first-use peers in the config directory.
const KNOWN_PEERS: &str = "known_peers";

/// `$XDG_CONFIG_HOME/holepunch`, else `$HOME/.config/holepunch`.
pub fn config_dir() -> Option<PathBuf> {
    let non_empty = |v: &str| std::env::var_os(v).filter(|s| !s.is_empty());
    if let Some(x) = non_empty("XDG_CONFIG_HOME") {
        return Some(PathBuf::from(x).join("holepunch"));
    }
    non_empty("HOME").map(|h| PathBuf::from(h).join(".config").join("holepunch"))
}

/// Writes `identity` to `path` as PKCS#8 PEM, readable by the owner only; an existing file is
/// refused unless `force`.
pub fn write_key(path: &Path, identity: &Identity, force: bool) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).mode(0o600);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path)?;
    file.write_all(identity.to_pem().as_bytes())?;
    file.sync_all()
}

/// Reads a key file.
pub fn read_key(path: &Path) -> Result<Identity, String> {
    let pem =
        fs::read_to_string(path).map_err(|e| format!("cannot read key {}: {e}", path.display()))?;
    Identity::from_pem(&pem).map_err(|e| format!("key {}: {e}", path.display()))
}

/// Our identity: `--key PATH` (which must exist), else the default key, created on first use
/// (then its path is returned too).
pub fn load_identity(explicit: Option<&Path>) -> Result<(Identity, Option<PathBuf>), String> {
    if let Some(path) = explicit {
        if !path.exists() {
            return Err(format!(
                "no key at {} (holepunch keygen --out {} makes one)",
                path.display(),
                path.display()
            ));
        }
        return Ok((read_key(path)?, None));
    }
    let dir = config_dir()
        .ok_or("no config directory (neither XDG_CONFIG_HOME nor HOME is set): give --key PATH")?;
    let path = dir.join(KEY_FILE);
    if path.exists() {
        return Ok((read_key(&path)?, None));
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let identity = Identity::generate().map_err(|e| e.to_string())?;
    match write_key(&path, &identity, false) {
        Ok(()) => Ok((identity, Some(path))),
        // Another process made it meanwhile: use that one.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok((read_key(&path)?, None)),
        Err(e) => Err(format!("cannot write {}: {e}", path.display())),
    }
}

/// What `--trust-first-use` found for a peer.
#[derive(Debug, PartialEq, Eq)]
pub enum Trust {
    /// Never seen: stored now.
    Stored(PathBuf),
    /// Seen before with this same key.
    Known,
}

/// Checks `key` against the known-peers entry for `name`, storing it when there is none.
/// A different stored key is an error naming both fingerprints and the file.
pub fn trust_first_use(name: &str, key: &Fingerprint) -> Result<Trust, String> {
    let dir =
        config_dir().ok_or("no config directory for known_peers (set XDG_CONFIG_HOME or HOME)")?;
    let path = dir.join(KNOWN_PEERS);
    // Names with whitespace would not survive the line format.
    let name: String = name
        .chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect();
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (Some(n), Some(k)) = (words.next(), words.next()) else {
            continue;
        };
        if n != name {
            continue;
        }
        return match k.parse::<Fingerprint>() {
            Ok(stored) if stored == *key => Ok(Trust::Known),
            Ok(stored) => Err(format!(
                "the key of peer {name} changed: it was {stored}, now it is {key}; if that is \
                 expected, remove its line from {}",
                path.display()
            )),
            Err(e) => Err(format!("{}: bad entry for {name}: {e}", path.display())),
        };
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    file.write_all(format!("{name} {key}\n").as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(Trust::Stored(path))
}
