//! Sending no faster than the peer can take: a token bucket over `--rate`.
//!
//! Datagram mode has no acknowledgements, so a sender that writes as fast as stdin reads
//! overruns the receiver's socket buffer and the excess is silently dropped (on loopback, a
//! fifth of a 5 MiB file). The pacer spaces datagrams at the configured rate, allowing a small
//! burst, so a loopback or LAN transfer arrives whole; `--rate 0` turns pacing off.

use std::time::Duration;

use tokio::time::Instant;

/// The default rate, bytes per second: 2 MiB/s (16 Mbit/s). Datagram mode has no flow control,
/// so the margin is against a receiver that is briefly starved of CPU: a default 208 KiB socket
/// buffer holds about 90 datagrams of 1200 bytes, 50 ms at this rate. Measured on a loaded
/// two-core machine, 4 MiB/s still lost up to a few percent of 5 MiB now and then; raise it
/// with `--rate` on fast, idle receivers.
pub const DEFAULT_RATE: u64 = 2 * 1024 * 1024;
/// How far ahead of the schedule a sender may get (a burst), in time at the rate.
const BURST: Duration = Duration::from_millis(4);

/// Spaces sends so they average `rate` bytes per second.
#[derive(Debug)]
pub struct Pacer {
    /// Bytes per second; `None` sends at once.
    rate: Option<u64>,
    /// When the next byte may go, on the schedule.
    next: Option<Instant>,
}

impl Pacer {
    /// A pacer at `rate` bytes per second (0: no pacing).
    pub fn new(rate: u64) -> Pacer {
        Pacer {
            rate: (rate > 0).then_some(rate),
            next: None,
        }
    }

    /// Waits until `bytes` more may be sent.
    pub async fn wait(&mut self, bytes: usize) {
        let Some(rate) = self.rate else { return };
        let now = Instant::now();
        // An idle sender does not bank credit beyond the burst.
        let floor = now.checked_sub(BURST).unwrap_or(now);
        let start = self.next.map_or(now, |n| n.max(floor));
        let cost = Duration::from_secs_f64(bytes as f64 / rate as f64);
        let next = start + cost;
        self.next = Some(next);
        if next > now + BURST {
            tokio::time::sleep_until(next - BURST).await;
        }
    }
}

/// `--rate`: bytes per second with an optional `k`, `M` or `G` suffix (powers of 1024); `0`
/// turns pacing off.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (digits, scale) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1u64 << 10),
        Some((i, 'm' | 'M')) => (&t[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("not a rate in bytes per second (like 500k, 4M or 0): {s}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rate("0"), Ok(0));
        assert_eq!(parse_rate("1500"), Ok(1500));
        assert_eq!(parse_rate("500k"), Ok(512_000));
        assert_eq!(parse_rate("4M"), Ok(4 << 20));
        assert_eq!(parse_rate("1G"), Ok(1 << 30));
        for bad in ["", "M", "-1", "1.5M", "fast", "99999999999999999999G"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn sends_average_the_rate() {
        let mut pacer = Pacer::new(1_000_000);
        let started = Instant::now();
        for _ in 0..100 {
            pacer.wait(10_000).await;
        }
        // 1 MB at 1 MB/s: about a second, less the burst allowance.
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(980), "{took:?}");
        assert!(took <= Duration::from_millis(1_010), "{took:?}");
        let mut off = Pacer::new(0);
        let before = Instant::now();
        off.wait(1 << 30).await;
        assert_eq!(before.elapsed(), Duration::ZERO);
    }
}
