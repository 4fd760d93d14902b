//! The core's own notion of time: a caller-supplied monotonic instant.
//!
//! The core never reads a clock. Drivers pick an epoch (usually the moment they started), convert
//! their clock readings into [`Instant`]s (microseconds since that epoch) and pass them in with
//! every input. Being a plain integer keeps the core `no_std`, deterministic and trivially
//! simulated: a virtual-time simulator just counts.

use core::fmt;
use core::ops::{Add, AddAssign, Sub};
pub use core::time::Duration;

/// A point in monotonic time, in microseconds since a driver-chosen epoch.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

impl Instant {
    /// The driver's epoch itself.
    pub const ZERO: Instant = Instant(0);
    /// A time later than any the core will ever be given; used as "never".
    pub const FAR_FUTURE: Instant = Instant(u64::MAX);

    /// Builds an instant from microseconds since the driver's epoch.
    pub const fn from_micros(micros: u64) -> Self {
        Instant(micros)
    }

    /// Builds an instant from milliseconds since the driver's epoch.
    pub const fn from_millis(millis: u64) -> Self {
        Instant(millis.saturating_mul(1000))
    }

    /// Microseconds since the driver's epoch.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Time elapsed since the epoch, as a [`Duration`]: what drivers add to their own epoch to
    /// turn a core deadline back into a clock reading.
    pub const fn since_epoch(self) -> Duration {
        Duration::from_micros(self.0)
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later (never panics).
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, saturating at [`Instant::FAR_FUTURE`].
    pub fn saturating_add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(duration_micros(d)))
    }
}

/// A [`Duration`] in whole microseconds, saturating instead of overflowing.
pub fn duration_micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        self.saturating_add(d)
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}s", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_panicking() {
        let t = Instant::from_millis(1500);
        assert_eq!(t.as_micros(), 1_500_000);
        assert_eq!(t + Duration::from_millis(500), Instant::from_millis(2000));
        assert_eq!(Instant::ZERO - t, Duration::ZERO);
        assert_eq!(t - Instant::ZERO, Duration::from_millis(1500));
        assert_eq!(
            Instant::FAR_FUTURE + Duration::from_secs(1),
            Instant::FAR_FUTURE
        );
        assert_eq!(t.since_epoch(), Duration::from_millis(1500));
    }
}
