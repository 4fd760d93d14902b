//! What went each way, and the peer's word on what it sent.
//!
//! At EOF each side signals `a=x-holepunch-sent:DATAGRAMS BYTES` just before
//! `a=x-holepunch-eof` (both over the offer/signal channel, which is reliable), so the receiver
//! can say "received N of M datagrams (X% lost)" instead of guessing. Other ICE stacks ignore
//! the attribute as unknown; a peer that sends none leaves the loss unknown.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use holepunch_tokio::Signalling;
use holepunch_tokio::signalling::EOF_LINE;

/// The attribute that carries a side's sent counts, followed by `DATAGRAMS BYTES`.
pub const SENT_PREFIX: &str = "a=x-holepunch-sent:";

/// Datagram and byte counts both ways, plus what the peer said it sent.
#[derive(Debug, Default)]
pub struct Tally {
    sent_datagrams: AtomicU64,
    sent_bytes: AtomicU64,
    received_datagrams: AtomicU64,
    received_bytes: AtomicU64,
    peer_sent: Mutex<Option<(u64, u64)>>,
    heard_peer: AtomicBool,
}

/// A snapshot of a [`Tally`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Counts {
    /// Datagrams we sent.
    pub sent_datagrams: u64,
    /// Bytes we sent.
    pub sent_bytes: u64,
    /// Datagrams we received.
    pub received_datagrams: u64,
    /// Bytes we received.
    pub received_bytes: u64,
    /// What the peer said it sent (datagrams, bytes), if it said.
    pub peer_sent: Option<(u64, u64)>,
}

impl Counts {
    /// Datagrams the peer sent that never arrived, if the peer told us its count.
    pub fn lost(&self) -> Option<u64> {
        self.peer_sent
            .map(|(d, _)| d.saturating_sub(self.received_datagrams))
    }

    /// The lost share in percent, one decimal (0 when the peer sent nothing).
    pub fn lost_percent(&self) -> Option<f64> {
        let (sent, _) = self.peer_sent?;
        let lost = self.lost()?;
        if sent == 0 {
            return Some(0.0);
        }
        Some((lost as f64 * 1000.0 / sent as f64).round() / 10.0)
    }

    /// Why the job failed, when more than `max_loss` percent of what the peer reported sending
    /// was lost (any loss at all when `max_loss` is 0).
    pub fn too_lossy(&self, max_loss: f64) -> Option<String> {
        let (lost, pct, (sent, _)) = (self.lost()?, self.lost_percent()?, self.peer_sent?);
        // The exact ratio, not the rounded percentage: 1 lost in 10 000 is not "0.0%" here.
        let exact = lost as f64 * 100.0 / sent.max(1) as f64;
        (lost > 0 && exact > max_loss).then(|| {
            format!(
                "lost {lost} of the {sent} datagrams the peer sent ({pct:.1}%, more than \
                 --max-loss {max_loss}%)"
            )
        })
    }

    /// "received N of M datagrams (X% lost)", or the plain count when the peer did not say.
    pub fn received_summary(&self) -> String {
        match (self.peer_sent, self.lost_percent()) {
            (Some((sent, _)), Some(pct)) => format!(
                "received {} of {sent} datagrams ({pct:.1}% lost; {} bytes)",
                self.received_datagrams, self.received_bytes
            ),
            _ => format!(
                "received {} datagrams ({} bytes; the peer did not say how many it sent)",
                self.received_datagrams, self.received_bytes
            ),
        }
    }
}

impl Tally {
    /// One datagram of `n` bytes sent.
    pub fn sent(&self, n: usize) {
        self.sent_datagrams.fetch_add(1, Ordering::Relaxed);
        self.sent_bytes.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// One datagram of `n` bytes received.
    pub fn received(&self, n: usize) {
        self.received_datagrams.fetch_add(1, Ordering::Relaxed);
        self.received_bytes.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Whether any line came from the peer yet (it is there).
    pub fn heard_peer(&self) -> bool {
        self.heard_peer.load(Ordering::Relaxed)
    }

    /// The counts now.
    pub fn counts(&self) -> Counts {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counts {
            sent_datagrams: load(&self.sent_datagrams),
            sent_bytes: load(&self.sent_bytes),
            received_datagrams: load(&self.received_datagrams),
            received_bytes: load(&self.received_bytes),
            peer_sent: *self
                .peer_sent
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        }
    }

    /// Our sent counts as a signalling line.
    fn sent_line(&self) -> String {
        let c = self.counts();
        format!("{SENT_PREFIX}{} {}", c.sent_datagrams, c.sent_bytes)
    }

    /// Notes a line from the peer: that it is there, and its sent counts if the line has them.
    fn peer_line(&self, line: &str) {
        self.heard_peer.store(true, Ordering::Relaxed);
        if let Some(counts) = parse_sent(line) {
            *self
                .peer_sent
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(counts);
        }
    }
}

/// `a=x-holepunch-sent:D B` → `(D, B)`.
pub fn parse_sent(line: &str) -> Option<(u64, u64)> {
    let rest = line.trim().strip_prefix(SENT_PREFIX)?;
    let (d, b) = rest.split_once(' ')?;
    Some((d.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// A [`Signalling`] that adds our counts before our EOF line and notes the peer's.
#[derive(Debug)]
pub struct Counted<S> {
    inner: S,
    tally: Arc<Tally>,
}

impl<S: Signalling> Counted<S> {
    /// Wraps `inner`, counting into `tally`.
    pub fn new(inner: S, tally: Arc<Tally>) -> Self {
        Counted { inner, tally }
    }
}

impl<S: Signalling> Signalling for Counted<S> {
    async fn send(&mut self, line: &str) -> io::Result<()> {
        if line.trim() == EOF_LINE {
            // Before the EOF line, so the peer has the counts when it hears we are done.
            let counts = self.tally.sent_line();
            self.inner.send(&counts).await?;
        }
        self.inner.send(line).await
    }

    async fn recv(&mut self) -> io::Result<Option<String>> {
        // Cancel-safe: nothing happens between the inner (cancel-safe) await and the return.
        let line = self.inner.recv().await?;
        if let Some(l) = &line {
            self.tally.peer_line(l);
        }
        Ok(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use holepunch_tokio::ChannelSignalling;

    #[test]
    fn loss_is_computed_from_the_peer_count() {
        let c = Counts {
            sent_datagrams: 0,
            sent_bytes: 0,
            received_datagrams: 3627,
            received_bytes: 1,
            peer_sent: Some((4480, 5_242_880)),
        };
        assert_eq!(c.lost(), Some(853));
        assert_eq!(c.lost_percent(), Some(19.0));
        assert!(
            c.received_summary()
                .starts_with("received 3627 of 4480 datagrams (19.0% lost")
        );
        let unknown = Counts {
            peer_sent: None,
            ..c
        };
        assert_eq!(unknown.lost(), None);
        assert_eq!(unknown.too_lossy(0.0), None, "unknown loss is no failure");
        assert!(
            c.too_lossy(0.0)
                .is_some_and(|r| r.contains("lost 853 of the 4480"))
        );
        assert!(c.too_lossy(19.0).is_some());
        assert_eq!(c.too_lossy(20.0), None);
        let one_in_many = Counts {
            received_datagrams: 9_999,
            peer_sent: Some((10_000, 1)),
            ..c
        };
        assert!(
            one_in_many.too_lossy(0.0).is_some(),
            "any loss fails by default"
        );
        let whole = Counts {
            received_datagrams: 4480,
            ..c
        };
        assert_eq!(whole.too_lossy(0.0), None);
        assert!(unknown.received_summary().contains("did not say"));
        assert_eq!(parse_sent("a=x-holepunch-sent:5 10"), Some((5, 10)));
        assert_eq!(parse_sent("a=x-holepunch-sent:5"), None);
        assert_eq!(parse_sent("a=x-holepunch-sent:-1 2"), None);
    }

    proptest::proptest! {
        #[test]
        fn sent_lines_round_trip(d: u64, b: u64) {
            let tally = Tally::default();
            let line = format!("{SENT_PREFIX}{d} {b}");
            proptest::prop_assert_eq!(parse_sent(&line), Some((d, b)));
            tally.peer_line(&line);
            proptest::prop_assert_eq!(tally.counts().peer_sent, Some((d, b)));
        }

        #[test]
        fn any_line_is_read_without_panic(line in "\\PC{0,80}") {
            let _ = parse_sent(&line);
            let _ = parse_sent(&format!("{SENT_PREFIX}{line}"));
        }
    }

    #[tokio::test]
    async fn counts_travel_before_the_eof_line() {
        let (a, b) = ChannelSignalling::pair();
        let (ta, tb) = (Arc::new(Tally::default()), Arc::new(Tally::default()));
        let (mut a, mut b) = (
            Counted::new(a, Arc::clone(&ta)),
            Counted::new(b, Arc::clone(&tb)),
        );
        ta.sent(7);
        ta.sent(5);
        a.send(EOF_LINE).await.expect("send");
        assert!(!tb.heard_peer());
        assert_eq!(
            b.recv().await.expect("recv").as_deref(),
            Some("a=x-holepunch-sent:2 12")
        );
        assert_eq!(b.recv().await.expect("recv").as_deref(), Some(EOF_LINE));
        assert!(tb.heard_peer());
        assert_eq!(tb.counts().peer_sent, Some((2, 12)));
    }
}
