//! File mode across reruns: noticing that the peer's offer file now holds a newer offer.
//!
//! Offer files outlive their processes. A side that starts while the peer's file still holds
//! the offer of an earlier run reads stale credentials, and the ICE agent keeps the first
//! credentials it is given. Every offer starts with its own `ice-ufrag` line, and a new run
//! truncates its file and writes a new one, so a changed first line means a new offer: the
//! session is started again on it (same seed, so our own credentials do not change and the peer,
//! reading our file, sees no new offer from us).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use holepunch_tokio::signalling::MAX_OFFER_LINE;

/// The first line of the peer's offer file, followed across polls.
#[derive(Debug)]
pub struct OfferWatch {
    path: PathBuf,
    first: Option<String>,
}

impl OfferWatch {
    /// Starts following `path`'s first line (as it is now).
    pub fn new(path: &Path) -> OfferWatch {
        OfferWatch {
            path: path.to_path_buf(),
            first: first_line(path),
        }
    }

    /// Whether the file now starts with another complete first line than last time (a new
    /// offer); remembers the new one.
    pub fn changed(&mut self) -> bool {
        let now = first_line(&self.path);
        if now.is_some() && now != self.first {
            let had = self.first.is_some();
            self.first = now;
            return had;
        }
        false
    }
}

/// The file's first complete line, if it has one.
fn first_line(path: &Path) -> Option<String> {
    let file = File::open(path).ok()?;
    let mut line = String::new();
    BufReader::new(file.take(MAX_OFFER_LINE as u64))
        .read_line(&mut line)
        .ok()?;
    line.ends_with('\n')
        .then(|| line.trim_end_matches(['\n', '\r']).to_owned())
}

/// Whether `a` and `b` name the same file (as given, or once resolved).
pub fn same_file(a: &Path, b: &Path) -> bool {
    if a == b {
        return true;
    }
    let resolve = |p: &Path| -> Option<PathBuf> {
        if let Ok(full) = p.canonicalize() {
            return Some(full);
        }
        // Not there yet: its directory resolved, plus its name.
        let parent = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.canonicalize().ok()?,
            _ => std::env::current_dir().ok()?,
        };
        Some(parent.join(p.file_name()?))
    };
    matches!((resolve(a), resolve(b)), (Some(x), Some(y)) if x == y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_first_line_is_a_new_offer() {
        let dir = std::env::temp_dir().join(format!("holepunch-rerun-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("peer");
        let _ = std::fs::remove_file(&file);
        let mut watch = OfferWatch::new(&file);
        assert!(!watch.changed(), "no file");
        std::fs::write(&file, "ice-ufrag:old\nice-pwd:x\n").expect("write");
        assert!(!watch.changed(), "the first offer seen is not a change");
        std::fs::write(&file, "ice-ufrag:old\nice-pwd:x\na=end-of-candidates\n").expect("write");
        assert!(!watch.changed(), "the same offer growing");
        std::fs::write(&file, "ice-uf").expect("write");
        assert!(!watch.changed(), "a torn first line waits");
        std::fs::write(&file, "ice-ufrag:new\n").expect("write");
        assert!(watch.changed());
        assert!(!watch.changed());
        assert!(same_file(&file, &dir.join(".").join("peer")));
        assert!(same_file(&dir.join("none"), &dir.join("none")));
        assert!(!same_file(&file, &dir.join("other")));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
