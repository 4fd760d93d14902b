//! Port prediction for sequential allocators.
//!
//! Many endpoint-dependent NATs do not pick ports at random: they hand out the next free port
//! (delta 1), or every second one (delta 2, e.g. when pairing RTP/RTCP), wrapping from 65535 back
//! to 1024. Given the external ports successive mappings received (netcheck's probes to different
//! servers, in the order they were made), [`PortPredictor`] recognises such an allocator and
//! lists the ports the next mappings are likely to get. When the hard side then opens its extra
//! sockets toward the easy side, their mappings land right after the last observation, so a
//! handful of predicted probes usually hits before any random probing is needed.
//!
//! Detection tolerates one outlier (another host behind the same NAT grabbing a port between two
//! of our mappings, or one odd observation) and considers only the most recent
//! [`PortPredictor::WINDOW`] observations, since the allocator's current position is what
//! matters.

use core::iter::FusedIterator;

use super::{FIRST_PORT, PORT_SPACE, PunchError};

/// How a NAT chooses the external port of a new mapping, as far as the observations tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PortAllocation {
    /// Successive mappings kept the same external port (port preservation, or port overloading
    /// behind an endpoint-dependent NAT): the next mapping most likely gets it too.
    Preserving,
    /// Successive mappings got ports a constant step apart.
    Sequential {
        /// The step between successive mappings' ports, in `1..=`[`PortPredictor::MAX_DELTA`].
        delta: u16,
    },
    /// No pattern: prediction cannot help, probe at random.
    Random,
}

/// A NAT's port allocator, learnt from the external ports of successive mappings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortPredictor {
    allocation: PortAllocation,
    anchor: u16,
}

impl PortPredictor {
    /// The largest step still taken for a sequential allocator. Real ones use 1 or 2; larger
    /// steps up to 16 cover allocators that skip ports per internal host or per protocol, while
    /// still making an accidental match by random ports negligible (16/64512 per delta).
    pub const MAX_DELTA: u16 = 16;
    /// How many of the most recent observations are considered.
    pub const WINDOW: usize = 16;
    /// The most ports [`predicted`](Self::predicted) yields, whatever count is asked for.
    pub const MAX_PREDICTED: u16 = 1024;

    /// Learns the allocator from the external ports of successive mappings, oldest first.
    ///
    /// Needs at least two observations; tolerating an outlier needs at least four (two
    /// agreeing steps beside the odd one). Ports below 1024 are accepted (a port-preserving NAT
    /// in front of a privileged local port) and step through the plain 16-bit space.
    pub fn new(observed: &[u16]) -> Result<Self, PunchError> {
        if observed.len() < 2 {
            return Err(PunchError::TooFewObservations);
        }
        if observed.contains(&0) {
            return Err(PunchError::ZeroPort);
        }
        let recent = &observed[observed.len().saturating_sub(Self::WINDOW)..];
        let mut buf = [0i32; Self::WINDOW - 1];
        let n = recent.len() - 1;
        for (d, pair) in buf.iter_mut().zip(recent.windows(2)) {
            *d = signed_distance(pair[0], pair[1]);
        }
        let deltas = &buf[..n];

        // The candidate step seen most often (ties to the smaller) that explains all
        // observations but one.
        let mut best: Option<(usize, i32, u16)> = None;
        for &candidate in deltas {
            if !(0..=i32::from(Self::MAX_DELTA)).contains(&candidate) {
                continue;
            }
            let count = deltas.iter().filter(|&&d| d == candidate).count();
            let better = match best {
                None => true,
                Some((c, d, _)) => count > c || (count == c && candidate < d),
            };
            if better {
                if let Some(anchor) = fit(deltas, recent, candidate) {
                    best = Some((count, candidate, anchor));
                }
            }
        }
        let last = recent[n];
        Ok(match best {
            Some((_, 0, anchor)) => PortPredictor {
                allocation: PortAllocation::Preserving,
                anchor,
            },
            Some((_, delta, anchor)) => PortPredictor {
                allocation: PortAllocation::Sequential {
                    delta: u16::try_from(delta).unwrap_or(1),
                },
                anchor,
            },
            None => PortPredictor {
                allocation: PortAllocation::Random,
                anchor: last,
            },
        })
    }

    /// The allocator recognised.
    pub fn allocation(&self) -> PortAllocation {
        self.allocation
    }

    /// The observation predictions start from: the last one, unless that was the outlier.
    pub fn anchor(&self) -> u16 {
        self.anchor
    }

    /// The ports the next mappings most likely get, most likely first, at most
    /// `min(count, MAX_PREDICTED)` of them, all distinct and non-zero.
    ///
    /// - Sequential with step d: first the line `anchor + d, anchor + 2d, …` (half the budget,
    ///   rounded up), then every other port from `anchor + 1` upward not on that line, which
    ///   covers allocators whose step was disturbed by other hosts' mappings. With d = 1 this is
    ///   simply `anchor + 1, anchor + 2, …`.
    /// - Preserving: the anchor itself, then `anchor ± 1`, `anchor ± 2`, ….
    /// - Random: nothing.
    ///
    /// Ports wrap from 65535 to 1024 like the allocators do.
    pub fn predicted(&self, count: u16) -> PredictedPorts {
        let remaining = match self.allocation {
            PortAllocation::Random => 0,
            _ => count.min(Self::MAX_PREDICTED),
        };
        let delta = match self.allocation {
            PortAllocation::Sequential { delta } => u32::from(delta),
            _ => 0,
        };
        PredictedPorts {
            anchor: self.anchor,
            delta,
            line: u32::from(remaining).div_ceil(2),
            remaining,
            step: 0,
            offset: 0,
        }
    }
}

/// The ports [`PortPredictor::predicted`] yields, computed on the fly (no allocation).
#[derive(Clone, Debug)]
pub struct PredictedPorts {
    anchor: u16,
    /// The sequential step, 0 for a preserving allocator.
    delta: u32,
    /// How many points of the line `anchor + k·delta` come first.
    line: u32,
    remaining: u16,
    /// How many ports were yielded so far.
    step: u32,
    /// The last offset examined after the line (sequential only).
    offset: u32,
}

impl Iterator for PredictedPorts {
    type Item = u16;

    fn next(&mut self) -> Option<u16> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let offset = if self.delta == 0 {
            // 0, +1, -1, +2, -2, …
            let s = i64::from(self.step);
            if s % 2 == 1 { (s + 1) / 2 } else { -(s / 2) }
        } else if self.step < self.line {
            i64::from(self.delta) * i64::from(self.step + 1)
        } else {
            let line_end = self.delta * self.line;
            loop {
                self.offset += 1;
                if self.offset % self.delta != 0 || self.offset > line_end {
                    break i64::from(self.offset);
                }
            }
        };
        self.step += 1;
        Some(port_add(self.anchor, offset))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::from(self.remaining);
        (n, Some(n))
    }
}

impl ExactSizeIterator for PredictedPorts {}
impl FusedIterator for PredictedPorts {}

/// Whether the steps fit `candidate` with at most one outlier; if so, the anchor to predict from.
fn fit(deltas: &[i32], observed: &[u16], candidate: i32) -> Option<u16> {
    let n = deltas.len();
    let last = observed[n];
    let bad = deltas.iter().filter(|&&d| d != candidate).count();
    let good = n - bad;
    let first_bad = deltas.iter().position(|&d| d != candidate);
    match (bad, first_bad) {
        (0, _) => Some(last),
        (1, Some(i)) if good >= 2 => {
            // A forward jump of a sequential allocator is other hosts' mappings: the allocator
            // really is at the last port. Anything else at the end makes the last port the odd
            // one out (and a preserving NAT keeps its port whatever one mapping got).
            let jumped = candidate > 0 && deltas[i] > 0;
            if i == n - 1 && !jumped {
                Some(observed[n - 1])
            } else {
                Some(last)
            }
        }
        (2, Some(i)) if good >= 1 && i + 1 < n && deltas[i + 1] != candidate => {
            // One odd observation in the middle: the two steps around it add up to two steps.
            let sum = i64::from(deltas[i]) + i64::from(deltas[i + 1]) - 2 * i64::from(candidate);
            (sum.rem_euclid(i64::from(PORT_SPACE)) == 0).then_some(last)
        }
        _ => None,
    }
}

/// The step from port `a` to port `b`: through the 1024..=65535 ring allocators wrap in, or
/// through the 16-bit space when a privileged port is involved; negative when backward.
fn signed_distance(a: u16, b: u16) -> i32 {
    if a >= FIRST_PORT && b >= FIRST_PORT {
        let space = PORT_SPACE as i32;
        let forward = (i32::from(b) - i32::from(a)).rem_euclid(space);
        if forward > space / 2 {
            forward - space
        } else {
            forward
        }
    } else {
        i32::from(b.wrapping_sub(a) as i16)
    }
}

/// `port + offset`, wrapping through the 1024..=65535 ring (never 0).
fn port_add(port: u16, offset: i64) -> u16 {
    let first = i64::from(FIRST_PORT);
    let v = i64::from(port) + offset;
    let v = if port < FIRST_PORT && (1..=65535).contains(&v) {
        v
    } else {
        first + (v - first).rem_euclid(i64::from(PORT_SPACE))
    };
    u16::try_from(v).unwrap_or(FIRST_PORT)
}
