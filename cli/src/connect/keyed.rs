//! The key line on the signalling channel: ours goes out first, the peer's is picked up.
//!
//! Stream mode binds the QUIC identity to the offer: before its first offer line (the
//! `ice-ufrag`) each side signals `a=x-holepunch-key:sha256:HEX`, so the key travels with the
//! ICE credentials and candidates. [`Keyed`] wraps a [`Signalling`] to send that line and to
//! note the first valid key line the peer sends (lines pass through unchanged; the ICE driver
//! ignores the attribute). A malformed key line is remembered as such, so the session can say
//! so rather than report that no key came.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use holepunch_tokio::Signalling;
use holepunch_tokio::quic_identity::{Fingerprint, FingerprintError, key_line, parse_key_line};

/// What the peer's offer said about its key so far.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum PeerKeySeen {
    /// No key line yet.
    #[default]
    None,
    /// The first key line, valid.
    Key(Fingerprint),
    /// The first key line, malformed.
    Malformed(FingerprintError),
}

/// The peer's key as seen on the signalling channel, shared with the session.
#[derive(Debug, Default)]
pub struct PeerKeySlot(Mutex<PeerKeySeen>);

impl PeerKeySlot {
    /// What was seen so far.
    pub fn get(&self) -> PeerKeySeen {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn offer(&self, seen: PeerKeySeen) {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if *slot == PeerKeySeen::None {
            *slot = seen;
        }
    }
}

/// A [`Signalling`] that announces our key and records the peer's.
#[derive(Debug)]
pub struct Keyed<S> {
    inner: S,
    ours: Option<String>,
    peer: Arc<PeerKeySlot>,
}

impl<S: Signalling> Keyed<S> {
    /// Wraps `inner`; `ours` is signalled before the first line.
    pub fn new(inner: S, ours: &Fingerprint, peer: Arc<PeerKeySlot>) -> Keyed<S> {
        Keyed {
            inner,
            ours: Some(key_line(ours)),
            peer,
        }
    }
}

impl<S: Signalling> Signalling for Keyed<S> {
    async fn send(&mut self, line: &str) -> io::Result<()> {
        if let Some(ours) = self.ours.take() {
            self.inner.send(&ours).await?;
        }
        self.inner.send(line).await
    }

    async fn recv(&mut self) -> io::Result<Option<String>> {
        let line = self.inner.recv().await?;
        if let Some(l) = &line {
            match parse_key_line(l) {
                Some(Ok(key)) => self.peer.offer(PeerKeySeen::Key(key)),
                Some(Err(e)) => self.peer.offer(PeerKeySeen::Malformed(e)),
                None => {}
            }
        }
        Ok(line)
    }
}

#[cfg(test)]
mod tests {
    use holepunch_tokio::signalling::ChannelSignalling;

    use super::*;

    #[tokio::test]
    async fn our_key_goes_first_and_the_peers_first_key_is_kept() {
        let (a, mut b) = ChannelSignalling::pair();
        let ours = Fingerprint([1; 32]);
        let slot = Arc::new(PeerKeySlot::default());
        let mut keyed = Keyed::new(a, &ours, Arc::clone(&slot));
        keyed.send("ice-ufrag:abcd").await.expect("send");
        assert_eq!(b.recv().await.expect("recv"), Some(key_line(&ours)));
        assert_eq!(
            b.recv().await.expect("recv").as_deref(),
            Some("ice-ufrag:abcd")
        );
        let theirs = Fingerprint([2; 32]);
        b.send(&key_line(&theirs)).await.expect("send");
        b.send(&key_line(&Fingerprint([3; 32])))
            .await
            .expect("send");
        for _ in 0..2 {
            keyed.recv().await.expect("recv");
        }
        assert_eq!(slot.get(), PeerKeySeen::Key(theirs), "the first one counts");
    }
}
