//! Per-source token buckets in a fixed table: how many full (amplifying) answers a source earns.
//!
//! The table is allocated once, when the server is built; handling a packet only reads and writes
//! one slot. Sources are hashed (with a caller-supplied seed, so an off-path attacker cannot aim
//! at a slot) into [`SLOTS`] buckets and are never stored: two sources that share a slot share its
//! budget, which can only make answers smaller, never bigger. That is what bounds the total: at
//! most [`SLOTS`] buckets exist, whatever the number of (spoofed) sources.

use alloc::boxed::Box;
use alloc::vec;
use core::net::IpAddr;

use crate::Instant;

/// Number of buckets: the bound on how many sources can hold a full budget at once.
pub const SLOTS: usize = 1024;

/// Token-bucket parameters: `per_second` full answers per source on average, up to `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Tokens added per second (one token pays for one full answer); 0 means none after the burst.
    pub per_second: u32,
    /// Bucket size: the most full answers a source gets back to back.
    pub burst: u32,
}

impl RateLimit {
    /// The default: 10 full answers per second per source, bursts of 30 (a `turnutils_natdiscovery`
    /// run, libnice's gathering with retransmissions, and a few clients behind one NAT all fit).
    pub const DEFAULT: RateLimit = RateLimit {
        per_second: 10,
        burst: 30,
    };
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit::DEFAULT
    }
}

/// Micro-tokens per token: refill is `per_second` micro-tokens per microsecond.
const SCALE: u64 = 1_000_000;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    /// Micro-tokens left.
    level: u64,
    /// When `level` was last brought up to date.
    updated: Instant,
}

/// The fixed table of token buckets.
#[derive(Clone, Debug)]
pub(crate) struct Limiter {
    limit: RateLimit,
    seed: u64,
    buckets: Box<[Bucket]>,
}

impl Limiter {
    /// A table whose buckets all start full.
    pub(crate) fn new(limit: RateLimit, seed: u64) -> Self {
        let full = Bucket {
            level: u64::from(limit.burst) * SCALE,
            updated: Instant::ZERO,
        };
        Limiter {
            limit,
            seed,
            buckets: vec![full; SLOTS].into_boxed_slice(),
        }
    }

    /// Takes one token from `source`'s bucket at `now`; false when the bucket is empty.
    pub(crate) fn admit(&mut self, now: Instant, source: IpAddr) -> bool {
        let cap = u64::from(self.limit.burst) * SCALE;
        let rate = u64::from(self.limit.per_second);
        let slot = self.slot(source);
        let b = &mut self.buckets[slot];
        // A clock that goes backwards (it must not, but it is the caller's) refills nothing.
        let elapsed = now.as_micros().saturating_sub(b.updated.as_micros());
        b.level = b
            .level
            .saturating_add(elapsed.saturating_mul(rate))
            .min(cap);
        b.updated = now.max(b.updated);
        if b.level >= SCALE {
            b.level -= SCALE;
            true
        } else {
            false
        }
    }

    /// The bucket of a source: its IPv4 address, or its IPv6 /64 (one host's addresses all share
    /// it, so spoofing many addresses of one victim network does not multiply the victim's budget).
    fn slot(&self, source: IpAddr) -> usize {
        let key = match source {
            IpAddr::V4(ip) => u64::from(u32::from(ip)),
            IpAddr::V6(ip) => {
                let o = ip.to_canonical();
                match o {
                    IpAddr::V4(v4) => u64::from(u32::from(v4)),
                    IpAddr::V6(v6) => (u128::from(v6) >> 64) as u64 | (1 << 63),
                }
            }
        };
        (mix(key ^ self.seed) % SLOTS as u64) as usize
    }
}

/// SplitMix64's finaliser: every input bit affects every output bit.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse()
            .unwrap_or(IpAddr::V4(core::net::Ipv4Addr::UNSPECIFIED))
    }

    #[test]
    fn burst_then_rate() {
        let mut l = Limiter::new(
            RateLimit {
                per_second: 10,
                burst: 3,
            },
            7,
        );
        let a = ip("203.0.113.9");
        let t0 = Instant::from_millis(5_000);
        assert!((0..3).all(|_| l.admit(t0, a)), "the burst");
        assert!(!l.admit(t0, a), "then empty");
        assert!(!l.admit(t0 + core::time::Duration::from_millis(99), a));
        assert!(
            l.admit(t0 + core::time::Duration::from_millis(100), a),
            "one per 100 ms"
        );
        assert!(!l.admit(t0 + core::time::Duration::from_millis(150), a));
        // A long pause refills only up to the burst.
        let later = t0 + core::time::Duration::from_secs(3600);
        assert_eq!((0..10).filter(|_| l.admit(later, a)).count(), 3);
    }

    #[test]
    fn one_ipv6_network_shares_a_bucket_and_time_going_back_is_harmless() {
        let mut l = Limiter::new(
            RateLimit {
                per_second: 1,
                burst: 2,
            },
            0,
        );
        let t = Instant::from_millis(10);
        assert!(l.admit(t, ip("2001:db8:1:2::1")));
        assert!(l.admit(t, ip("2001:db8:1:2::ffff")));
        assert!(!l.admit(t, ip("2001:db8:1:2:abcd::9")));
        assert!(!l.admit(Instant::ZERO, ip("2001:db8:1:2::1")));
    }

    #[test]
    fn zero_rate_and_zero_burst_never_admit() {
        let mut l = Limiter::new(
            RateLimit {
                per_second: 0,
                burst: 0,
            },
            0,
        );
        assert!(!l.admit(Instant::from_millis(1), ip("192.0.2.1")));
        let mut l = Limiter::new(
            RateLimit {
                per_second: u32::MAX,
                burst: u32::MAX,
            },
            0,
        );
        assert!(l.admit(Instant::FAR_FUTURE, ip("192.0.2.1")));
    }
}
