//! Keepalives sized to the NAT: the consent cadence both sides agreed on, when they did.
//!
//! Consent checks (RFC 7675) are what keeps an idle selected pair's NAT mappings alive: they
//! are the only traffic on it, so they double as RFC 8445 §11 keepalives and no separate
//! Binding indications are sent. RFC 7675 runs them every ~5 s, far more often than a NAT
//! that keeps mappings for 30 s or 2 minutes needs. Each side proposes a longer interval
//! (configured, or sized to its measured mapping lifetime); when both did, both check at the
//! shorter proposal, so each side's NAT sees its own outbound check at least that often.
//! A peer that proposed nothing is a standard RFC 7675 peer, and gets the usual cadence.
//!
//! A proposal travels two ways: in the offer (`a=x-holepunch-keepalive:SECS`), and in band,
//! in every connectivity and consent check this agent sends, as the comprehension-optional
//! STUN attribute [`X_HOLEPUNCH_KEEPALIVE`](crate::stun::attr::types::X_HOLEPUNCH_KEEPALIVE)
//! (seconds, 0 for none). The in-band copy is what lets a proposal made after connecting (the
//! mapping lifetime is measured in the background then) or withdrawn later reach the peer
//! without new signalling: it arrives with the next check, which a change pulls forward to
//! within the new interval. An authenticated request's value is the peer's latest word; a
//! request without the attribute (a foreign stack) changes nothing.

#[allow(unused_imports)]
use super::*;

/// The shortest keepalive interval the agent proposes or agrees to. Anything shorter costs
/// about as much as RFC 7675's own 5 s cadence; a NAT whose mappings do not outlive it is
/// better served by that cadence (see [`Agent::set_mapping_lifetime`]).
pub const MIN_KEEPALIVE: Duration = Duration::from_secs(10);

/// The gap between two consent checks at an agreed interval is drawn uniformly from the last
/// 1/this of it: randomised as RFC 7675 §5.1 asks, so sessions do not synchronise, but never
/// longer than the interval.
const KEEPALIVE_JITTER_DIVISOR: u64 = 10;

/// The keepalive to propose behind a NAT whose idle mappings were seen to survive `lifetime`:
/// a tenth under it (at least 2 s under, for the delay between the check leaving and reaching
/// the NAT, and for a measurement that is a lower bound taken in whole seconds), rounded down
/// to whole seconds as the offer line carries them. `None` when that is under
/// [`MIN_KEEPALIVE`]: such a NAT needs RFC 7675's 5 s cadence, so nothing is proposed.
pub fn keepalive_for_lifetime(lifetime: Duration) -> Option<Duration> {
    let margin = (lifetime / 10).max(Duration::from_secs(2));
    let interval = Duration::from_secs(lifetime.saturating_sub(margin).as_secs());
    (interval >= MIN_KEEPALIVE).then_some(interval)
}

/// What each side proposed.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Keepalive {
    /// Ours, as signalled (already at least [`MIN_KEEPALIVE`]).
    pub(super) local: Option<Duration>,
    /// The peer's, as signalled (unclamped).
    pub(super) remote: Option<Duration>,
}

impl Keepalive {
    /// The agreed interval: the shorter proposal, when both sides made one, never under
    /// [`MIN_KEEPALIVE`].
    pub(super) fn agreed(self) -> Option<Duration> {
        Some(self.local?.min(self.remote?).max(MIN_KEEPALIVE))
    }
}

impl Agent {
    /// Sizes this side's keepalive proposal to the NAT's measured idle mapping lifetime
    /// (`holepunch netcheck --lifetime`, [`crate::netcheck`]'s lifetime search): see
    /// [`keepalive_for_lifetime`]. It replaces [`AgentConfig::keepalive_interval`] and is
    /// returned (`None`: the NAT needs RFC 7675's cadence, nothing is proposed). The peer hears
    /// it in band with our next check; an offer written later may carry it too
    /// ([`write_keepalive`](crate::ice::offer::write_keepalive)). A new agreement is reported
    /// in [`IceEvent::KeepaliveInterval`].
    pub fn set_mapping_lifetime(&mut self, lifetime: Duration) -> Option<Duration> {
        let proposal = keepalive_for_lifetime(lifetime);
        self.set_local_keepalive(proposal);
        proposal
    }

    /// Sets this side's keepalive proposal directly (values under [`MIN_KEEPALIVE`] are raised
    /// to it; `None` withdraws it, back to RFC 7675's cadence). A new agreement is reported in
    /// [`IceEvent::KeepaliveInterval`].
    pub fn set_local_keepalive(&mut self, interval: Option<Duration>) {
        self.keepalive.local = interval.map(|i| i.max(MIN_KEEPALIVE));
        self.keepalive_changed();
    }

    /// This side's proposal, as every check carries it and as an offer may
    /// (`a=x-holepunch-keepalive:SECS`, see
    /// [`write_keepalive`](crate::ice::offer::write_keepalive)); `None`: none.
    pub fn local_keepalive(&self) -> Option<Duration> {
        self.keepalive.local
    }

    /// The peer's keepalive proposal, from its offer's `a=x-holepunch-keepalive` line;
    /// `None` withdraws it. An authenticated check from the peer carrying
    /// X-HOLEPUNCH-KEEPALIVE replaces it with that value. Without one the peer is a standard RFC 7675 peer and consent runs
    /// at [`AgentConfig::consent_interval`]. It outlives an ICE restart (it describes the
    /// peer's NAT, not the session's credentials). A new agreement is reported in
    /// [`IceEvent::KeepaliveInterval`].
    pub fn set_remote_keepalive(&mut self, interval: Option<Duration>) {
        self.keepalive.remote = interval;
        self.keepalive_changed();
    }

    /// The peer's proposal as an authenticated request carried it (`None`: withdrawn, or
    /// never made): taken like [`set_remote_keepalive`](Self::set_remote_keepalive) when it
    /// differs from what is known.
    pub(super) fn learn_remote_keepalive(&mut self, proposal: Option<Duration>) {
        if proposal != self.keepalive.remote {
            self.set_remote_keepalive(proposal);
        }
    }

    /// The X-HOLEPUNCH-KEEPALIVE value for our checks: our proposal in whole seconds, 0 for
    /// none.
    pub(super) fn keepalive_attribute(&self) -> [u8; 4] {
        let secs = self.keepalive.local.map_or(0, |d| d.as_secs());
        u32::try_from(secs).unwrap_or(u32::MAX).to_be_bytes()
    }

    /// The interval consent checks on the selected pair run at now: the agreed keepalive, or
    /// [`AgentConfig::consent_interval`] without one.
    pub fn consent_interval(&self) -> Duration {
        self.keepalive
            .agreed()
            .unwrap_or(self.config.consent_interval)
    }

    /// How long the selected pair may go unanswered before consent is lost.
    pub(super) fn consent_timeout(&self) -> Duration {
        match self.keepalive.agreed() {
            None => self.config.consent_timeout,
            // Consent checks are single-shot, so the window, not retransmission, absorbs loss:
            // RFC 7675's 30 s holds six 5 s checks. At an agreed interval I a check leaves at
            // least every I, so 3 × I always spans three of them (two lost in a row do not
            // lose the path), and never less than the configured timeout. A dead peer is
            // noticed later (after up to 3 × I), the price of the quieter path.
            Some(interval) => self.config.consent_timeout.max(interval * 3),
        }
    }

    /// The wait until the next consent check.
    pub(super) fn jittered_consent_interval(&mut self) -> Duration {
        match self.keepalive.agreed() {
            None => {
                // RFC 7675 §5.1: uniformly within ±20% of the interval.
                let base = crate::time::duration_micros(self.config.consent_interval);
                let jitter = self.rng.below(base / 5 * 2 + 1);
                Duration::from_micros(base - base / 5 + jitter)
            }
            Some(interval) => {
                // Randomised too, but only downwards (by up to a tenth): the agreed interval
                // is the longest silence the NAT may see.
                let base = crate::time::duration_micros(interval);
                let jitter = self.rng.below(base / KEEPALIVE_JITTER_DIVISOR + 1);
                Duration::from_micros(base - base / KEEPALIVE_JITTER_DIVISOR + jitter)
            }
        }
    }

    /// A proposal changed: report a new agreement, and bring a check that is now too far off
    /// forward (a check already due sooner stays).
    fn keepalive_changed(&mut self) {
        let interval = self.consent_interval();
        if interval == self.reported_consent_interval {
            return;
        }
        self.reported_consent_interval = interval;
        if self.selected.is_some() {
            self.consent_at = self.consent_at.min(self.now + interval);
        }
        self.push_event(IceEvent::KeepaliveInterval(interval));
    }
}

/// An X-HOLEPUNCH-KEEPALIVE value: `Some(None)` for 0 (no proposal), `Some(Some(secs))`, or
/// `None` when it is not the 4 bytes it must be (ignored, as an unknown attribute would be).
pub(super) fn decode_keepalive_attribute(value: &[u8]) -> Option<Option<Duration>> {
    let secs = u32::from_be_bytes(value.try_into().ok()?);
    Some((secs != 0).then(|| Duration::from_secs(u64::from(secs))))
}
