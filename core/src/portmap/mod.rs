//! Port mapping: asking the gateway for an inbound mapping with PCP (RFC 6887) or NAT-PMP
//! (RFC 6886), sans-IO.
//!
//! A gateway that maps a port turns any NAT, symmetric ones included, into an easy one. The
//! codecs ([`natpmp`], [`pcp`]) build request bytes and parse answers; [`client`] probes both,
//! keeps the mapping renewed, notices gateway restarts and deletes the mapping on close. The
//! driver only moves datagrams to and from the gateway's port 5351. [`probe`] asks which of PCP,
//! NAT-PMP and UPnP IGD the gateway speaks, creating nothing.

pub mod client;
pub mod natpmp;
pub mod pcp;
#[cfg(feature = "std")]
pub mod probe;
#[cfg(feature = "std")]
pub mod upnp;

use crate::time::{Duration, Instant};

/// The gateway's port for both NAT-PMP and PCP requests (RFC 6886 §3, RFC 6887 §19.1).
pub const SERVER_PORT: u16 = 5351;
/// The port clients listen on for multicast announcements (RFC 6886 §3.2.1, RFC 6887 §19.1).
pub const ANNOUNCE_PORT: u16 = 5350;

/// The transport protocol a mapping is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// UDP (IANA protocol 17).
    Udp,
    /// TCP (IANA protocol 6).
    Tcp,
}

impl Protocol {
    /// The IANA protocol number, as PCP carries it.
    pub const fn iana(self) -> u8 {
        match self {
            Protocol::Udp => 17,
            Protocol::Tcp => 6,
        }
    }

    /// The protocol for an IANA number, if it is one of these two.
    pub const fn from_iana(n: u8) -> Option<Protocol> {
        match n {
            17 => Some(Protocol::Udp),
            6 => Some(Protocol::Tcp),
            _ => None,
        }
    }
}

/// Tracks a gateway's epoch (seconds since its mappings were last lost) to notice restarts.
///
/// Both RFC 6886 §3.6 and RFC 6887 §8.5 use the same rule: between two answers the epoch must
/// advance by about as much as the client's clock did. If it advanced by less than 7/8 of that,
/// minus 2 s of slack, or went backwards, the gateway lost its state and every mapping must be
/// re-created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EpochTracker {
    last: Option<(Instant, u32)>,
}

impl EpochTracker {
    /// A tracker that has seen nothing yet.
    pub const fn new() -> Self {
        EpochTracker { last: None }
    }

    /// Records the epoch `epoch` received at `now`; `true` when it shows the gateway restarted.
    pub fn observe(&mut self, now: Instant, epoch: u32) -> bool {
        let reset = match self.last {
            None => false,
            Some((then, last_epoch)) => {
                let elapsed = now.saturating_duration_since(then).as_secs();
                let expected = u64::from(last_epoch) + elapsed * 7 / 8;
                epoch < last_epoch || u64::from(epoch) + 2 < expected
            }
        };
        self.last = Some((now, epoch));
        reset
    }

    /// Forgets the history, e.g. when the gateway changes.
    pub fn reset(&mut self) {
        self.last = None;
    }
}

/// Retransmission schedule shared by both protocols: RFC 6886 §3.1's 250 ms doubling, capped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Wait before the first retransmission.
    pub initial: Duration,
    /// How many times a request is sent in all (RFC 6886 uses 9, i.e. 64 s; 0 counts as 1).
    pub max_sends: u8,
}

impl Default for RetryPolicy {
    /// 250 ms doubling, 6 sends: 0, 0.25, 0.75, 1.75, 3.75, 7.75 s, giving up at 15.75 s. RFC
    /// 6886's full 9 sends (64 s) is too long to wait for a gateway that does not exist.
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_millis(250),
            max_sends: 6,
        }
    }
}

impl RetryPolicy {
    /// How long to wait after send number `sent` (1-based) before the next one, or before giving
    /// up after the last.
    pub fn wait_after(&self, sent: u8) -> Duration {
        let shift = u32::from(sent.saturating_sub(1)).min(16);
        self.initial.saturating_mul(1 << shift)
    }

    /// Sends allowed, at least one.
    pub fn sends(&self) -> u8 {
        self.max_sends.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_going_backwards_or_lagging_is_a_restart() {
        let mut t = EpochTracker::new();
        let at = Instant::from_millis;
        assert!(!t.observe(at(0), 1000));
        assert!(!t.observe(at(100_000), 1100), "advanced with the clock");
        assert!(!t.observe(at(200_000), 1188), "within 7/8 minus slack");
        assert!(t.observe(at(300_000), 1200), "lagged far behind the clock");
        assert!(t.observe(at(300_001), 5), "went backwards");
        t.reset();
        assert!(!t.observe(at(400_000), 1));
    }

    #[test]
    fn retry_waits_double_from_250ms() {
        let p = RetryPolicy::default();
        let waits: [u64; 6] =
            core::array::from_fn(|i| p.wait_after(i as u8 + 1).as_millis() as u64);
        assert_eq!(waits, [250, 500, 1000, 2000, 4000, 8000]);
        assert_eq!(p.wait_after(200), Duration::from_millis(250 << 16));
        assert_eq!(
            Protocol::from_iana(Protocol::Udp.iana()),
            Some(Protocol::Udp)
        );
        assert_eq!(Protocol::from_iana(1), None);
    }
}
