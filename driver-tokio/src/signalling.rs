//! The side channel an [`Endpoint`](crate::ice::Endpoint) exchanges offer lines over.
//!
//! ICE needs the peers to swap credentials and candidates before any packet can find its way;
//! how those lines travel is the application's business. [`Signalling`] is that seam: send one
//! line, receive the next. Three implementations ship here and in [`signal`](crate::signal):
//!
//! - [`SignalClient`](crate::signal::SignalClient): the `holepunch signal` rendezvous over TCP;
//! - [`OfferFiles`]: a pair of files, ours written and theirs tailed (`--local-file` /
//!   `--remote-file`), so another ICE stack or a person with copy and paste can be the peer;
//! - [`ChannelSignalling`]: an in-process pair, for tests and for apps that already have a
//!   channel of their own.
//!
//! Lines are the offer format of `holepunch_core::ice::offer` (one RFC 8839 attribute per line),
//! plus [`EOF_LINE`], which a [`Connection`](crate::ice::Connection) sends when its application
//! will send no more datagrams; other readers ignore it as an unknown attribute.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;

/// The line a [`Connection`](crate::ice::Connection) signals after
/// [`finish`](crate::ice::Connection::finish): this side will send no more datagrams. It is an
/// SDP-style attribute no other stack knows, so their readers skip it.
pub const EOF_LINE: &str = "a=x-holepunch-eof";

/// The longest line [`OfferFiles`] accepts; longer ones are skipped whole. Offer lines are
/// under 300 bytes; this is generous.
pub const MAX_OFFER_LINE: usize = 4096;

/// A bidirectional line channel to the peer.
///
/// Lines are passed without their terminating newline; implementations frame them. The driver
/// calls `send` and `recv` from one task and never concurrently, but it races `recv` against
/// sockets and timers, so **`recv` must be cancel-safe**: a `recv` future dropped before it
/// completes must not lose a line (keep partial input in `self`).
pub trait Signalling: Send + 'static {
    /// Sends one line to the peer (without its `\n`).
    fn send(&mut self, line: &str) -> impl Future<Output = io::Result<()>> + Send;

    /// The next line from the peer (without its line ending); `Ok(None)` once the channel is
    /// closed for good. Cancel-safe.
    fn recv(&mut self) -> impl Future<Output = io::Result<Option<String>>> + Send;
}

/// One end of an in-process signalling pair (see [`ChannelSignalling::pair`]).
#[derive(Debug)]
pub struct ChannelSignalling {
    tx: mpsc::UnboundedSender<String>,
    rx: mpsc::UnboundedReceiver<String>,
}

impl ChannelSignalling {
    /// Two connected ends: what one sends, the other receives.
    pub fn pair() -> (ChannelSignalling, ChannelSignalling) {
        let (a_tx, b_rx) = mpsc::unbounded_channel();
        let (b_tx, a_rx) = mpsc::unbounded_channel();
        (
            ChannelSignalling { tx: a_tx, rx: a_rx },
            ChannelSignalling { tx: b_tx, rx: b_rx },
        )
    }
}

impl Signalling for ChannelSignalling {
    async fn send(&mut self, line: &str) -> io::Result<()> {
        self.tx
            .send(line.to_owned())
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the other end is gone"))
    }

    async fn recv(&mut self) -> io::Result<Option<String>> {
        Ok(self.rx.recv().await)
    }
}

/// Offer exchange through two files: ours is written, theirs is read as it grows (`tail -f`).
///
/// - [`create`](OfferFiles::create) creates or truncates our file; every [`send`] appends one
///   complete line (`line` and its `\n`) with a single `write` on an `O_APPEND` descriptor, so a
///   reader never sees a torn line (short of a full disk).
/// - [`recv`] polls the peer's file every `poll_interval` (20 ms by default): a missing file is
///   waited for, only complete lines are returned (a trailing partial line waits for its `\n`),
///   lines longer than [`MAX_OFFER_LINE`] are skipped, and a file that shrinks (the peer started
///   over) is read again from the start. Each poll opens, reads and closes the file with blocking
///   calls: microseconds on a local file system.
///
/// A stale file from an earlier run is read like a live one: the reader cannot tell. An
/// application that wants to follow a newer offer (the peer started over: its first line, the
/// `ice-ufrag`, changed) starts a new session on it with [`append`](OfferFiles::append), as
/// `holepunch connect` does.
///
/// [`send`]: Signalling::send
/// [`recv`]: Signalling::recv
#[derive(Debug)]
pub struct OfferFiles {
    local: File,
    remote: PathBuf,
    offset: u64,
    partial: Vec<u8>,
    /// Inside a line longer than [`MAX_OFFER_LINE`]: drop bytes until its end.
    skipping: bool,
    lines: VecDeque<String>,
    poll_interval: Duration,
}

impl OfferFiles {
    /// How often [`recv`](Signalling::recv) looks at the peer's file by default.
    pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(20);
    /// At most this much of the peer's file is read per poll (the rest on the next).
    const MAX_READ: u64 = 64 * 1024;

    /// Creates (or truncates) `local` for our lines and prepares to tail `remote`, which need
    /// not exist yet.
    pub fn create(local: impl AsRef<Path>, remote: impl AsRef<Path>) -> io::Result<OfferFiles> {
        // O_APPEND cannot be combined with O_TRUNC through std, hence two opens.
        File::create(local.as_ref())?;
        let file = OpenOptions::new().append(true).open(local.as_ref())?;
        Ok(OfferFiles {
            local: file,
            remote: remote.as_ref().to_path_buf(),
            offset: 0,
            partial: Vec::new(),
            skipping: false,
            lines: VecDeque::new(),
            poll_interval: Self::DEFAULT_POLL_INTERVAL,
        })
    }

    /// Like [`create`](Self::create) but keeps what `local` holds and appends to it: for a
    /// session started again over the same files (the peer has read our earlier lines).
    pub fn append(local: impl AsRef<Path>, remote: impl AsRef<Path>) -> io::Result<OfferFiles> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(local.as_ref())?;
        Ok(OfferFiles {
            local: file,
            remote: remote.as_ref().to_path_buf(),
            offset: 0,
            partial: Vec::new(),
            skipping: false,
            lines: VecDeque::new(),
            poll_interval: Self::DEFAULT_POLL_INTERVAL,
        })
    }

    /// The same files, polled every `interval` (at least 1 ms).
    #[must_use]
    pub fn with_poll_interval(mut self, interval: Duration) -> OfferFiles {
        self.poll_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Reads what the peer appended since the last poll and splits off complete lines.
    fn poll_remote(&mut self) -> io::Result<()> {
        let mut file = match File::open(&self.remote) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        if len < self.offset {
            // Truncated: the peer started over. Its new lines follow from the start.
            self.offset = 0;
            self.partial.clear();
            self.skipping = false;
        }
        if len == self.offset {
            return Ok(());
        }
        file.seek(SeekFrom::Start(self.offset))?;
        let mut chunk = Vec::new();
        file.take(Self::MAX_READ).read_to_end(&mut chunk)?;
        self.offset += chunk.len() as u64;
        for piece in chunk.split_inclusive(|b| *b == b'\n') {
            let complete = piece.last() == Some(&b'\n');
            if !self.skipping {
                self.partial.extend_from_slice(piece);
            }
            if self.partial.len() > MAX_OFFER_LINE + 2 {
                self.partial.clear();
                self.skipping = true;
            }
            if complete {
                if !self.skipping {
                    let text = String::from_utf8_lossy(&self.partial);
                    self.lines
                        .push_back(text.trim_end_matches(['\n', '\r']).to_owned());
                }
                self.partial.clear();
                self.skipping = false;
            }
        }
        Ok(())
    }
}

impl Signalling for OfferFiles {
    async fn send(&mut self, line: &str) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.trim_end_matches(['\n', '\r']).as_bytes());
        bytes.push(b'\n');
        // One write per line: with O_APPEND it lands whole at the end of the file.
        let written = self.local.write(&bytes)?;
        if written < bytes.len() {
            self.local.write_all(&bytes[written..])?;
        }
        Ok(())
    }

    async fn recv(&mut self) -> io::Result<Option<String>> {
        loop {
            if let Some(line) = self.lines.pop_front() {
                return Ok(Some(line));
            }
            self.poll_remote()?;
            if self.lines.is_empty() {
                tokio::time::sleep(self.poll_interval).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "holepunch-tokio-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        dir
    }

    #[tokio::test]
    async fn files_carry_whole_lines_both_ways() {
        let dir = temp_dir("files");
        let (a_path, b_path) = (dir.join("a"), dir.join("b"));
        let mut a = OfferFiles::create(&a_path, &b_path)
            .expect("a")
            .with_poll_interval(Duration::from_millis(2));
        let mut b = OfferFiles::create(&b_path, &a_path).expect("b");
        a.send("ice-ufrag:abcd").await.expect("send");
        a.send("a=end-of-candidates").await.expect("send");
        b.send("ice-pwd:xyz").await.expect("send");
        async fn next(f: &mut OfferFiles) -> Option<String> {
            tokio::time::timeout(Duration::from_secs(5), f.recv())
                .await
                .expect("a line within 5 s")
                .expect("no error")
        }
        assert_eq!(next(&mut b).await.as_deref(), Some("ice-ufrag:abcd"));
        assert_eq!(next(&mut b).await.as_deref(), Some("a=end-of-candidates"));
        assert_eq!(next(&mut a).await.as_deref(), Some("ice-pwd:xyz"));
        let text = std::fs::read_to_string(&a_path).expect("read a");
        assert_eq!(text, "ice-ufrag:abcd\na=end-of-candidates\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn partial_and_overlong_lines_wait_or_are_skipped() {
        let dir = temp_dir("partial");
        let (ours, theirs) = (dir.join("ours"), dir.join("theirs"));
        let mut reader = OfferFiles::create(&ours, &theirs).expect("create");
        // Not there yet: nothing, no error.
        reader.poll_remote().expect("missing file is fine");
        assert!(reader.lines.is_empty());
        let mut w = File::create(&theirs).expect("theirs");
        w.write_all(b"ice-ufr").expect("write");
        reader.poll_remote().expect("poll");
        assert!(reader.lines.is_empty(), "a torn line is not returned");
        w.write_all(b"ag:abcd\r\n").expect("write");
        w.write_all(&vec![b'x'; MAX_OFFER_LINE * 3]).expect("write");
        w.write_all(b"\nlast\n").expect("write");
        reader.poll_remote().expect("poll");
        assert_eq!(
            Vec::from(reader.lines.clone()),
            vec!["ice-ufrag:abcd", "last"]
        );
        // The peer starts over: its file shrinks and is read from the start.
        std::fs::write(&theirs, "new\n").expect("truncate");
        reader.lines.clear();
        reader.poll_remote().expect("poll");
        assert_eq!(Vec::from(reader.lines.clone()), vec!["new"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn channel_pair_is_connected() {
        let (mut a, mut b) = ChannelSignalling::pair();
        a.send("hello").await.expect("send");
        assert_eq!(b.recv().await.expect("recv").as_deref(), Some("hello"));
        drop(a);
        assert_eq!(b.recv().await.expect("recv"), None);
        assert!(b.send("x").await.is_err());
    }
}
