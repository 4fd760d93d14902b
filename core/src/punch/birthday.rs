//! Birthday-paradox probe plans for a hard (endpoint-dependent) NAT facing an easy one.
//!
//! The hard side cannot know which public port its NAT will use toward the easy side, so it
//! makes many: [`HardSidePlan`] asks for `sockets` extra local sockets and sends from each to the
//! easy side's address, opening that many mappings which accept packets from it. The easy side
//! cannot know which of those ports are open, so [`EasySidePlan`] sends to the hard side's public
//! IP at ports drawn without repetition from a seeded permutation of 1024..=65535. With N open
//! ports, k probes all miss with probability about (1-N/64512)^k ([`success_probability`]);
//! without repetition it is the hypergeometric C(64512-N, k)/C(64512, k), slightly better still.
//!
//! Defaults follow Tailscale's published numbers ("How NAT traversal works", 2020): 256 sockets
//! on the hard side and up to 2048 probes at 100 per second on the easy side give 64% success
//! after 256 probes (2.6 s), 98% after 1024 (10 s) and 99.97% after 2048 (20.5 s).
//!
//! Both plans only schedule: their owner sends a connectivity check (a STUN Binding request with
//! short-term credentials) for each probe they yield and feeds nothing back but time; it drops
//! the plan once a check succeeds.

use alloc::vec;
use alloc::vec::Vec;
use core::net::{IpAddr, SocketAddr};

use super::{FIRST_PORT, PORT_SPACE, PunchError};
use crate::rng::Rng;
use crate::time::{Duration, Instant};

/// The probability that at least one of `probes` uniformly random probes at a host with
/// `open_ports` open mappings in the 64512-port space hits one: 1-(1-N/64512)^k.
///
/// This is the with-replacement figure; [`EasySidePlan`] never repeats a port, which can only
/// do better (by at most a few hundredths of a percent at the default sizes).
pub fn success_probability(open_ports: u32, probes: u32) -> f64 {
    if open_ports == 0 || probes == 0 {
        return 0.0;
    }
    if open_ports >= PORT_SPACE {
        return 1.0;
    }
    let miss = 1.0 - f64::from(open_ports) / f64::from(PORT_SPACE);
    1.0 - powu(miss, probes)
}

/// What a plan needs its driver to do: the core never opens sockets itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PunchAction {
    /// Open `count` extra UDP sockets (any local port, same local address as the socket netcheck
    /// used) and report each one with [`HardSidePlan::handle_socket_opened`], by index
    /// `0..count`. Opening fewer (descriptor limits) only lowers the success rate.
    BindUdp {
        /// How many sockets to open.
        count: u16,
    },
}

/// One datagram the hard side should send: a connectivity check from one of its extra sockets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Probe {
    /// The extra socket to send from, as indexed in [`PunchAction::BindUdp`].
    pub socket_index: u16,
    /// The easy side's public address.
    pub to: SocketAddr,
}

/// Configuration of a [`HardSidePlan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HardSideConfig {
    /// How many extra sockets (so NAT mappings) to open: 256 by default, Tailscale's number. It
    /// fits well inside the common 1024-descriptor limit and makes 1024 easy-side probes 98%
    /// likely to hit; doubling it only halves the probes needed.
    pub sockets: u16,
    /// Minimum gap between two sends, whatever socket they come from: 1 ms by default, so a
    /// round over 256 sockets takes about 256 ms, quick next to the easy side's 100 probes per
    /// second, yet no burst trips a NAT's new-mapping rate limit.
    pub spacing: Duration,
    /// How often each socket resends, so its mapping does not expire while the easy side
    /// probes: 10 s by default, a third of Linux conntrack's 30 s timeout for UDP flows that
    /// never saw a reply (the shortest common one), so one lost refresh is survivable.
    pub refresh_interval: Duration,
    /// The most sends per socket (3 by default: at 0, 10 and 20 s). Bounds the plan at
    /// `sockets × max_sends_per_socket` packets (768 by default).
    pub max_sends_per_socket: u16,
    /// How long the plan runs after construction: 30 s by default, covering the easy side's
    /// default 2048 probes at 100 per second (20.5 s) with slack for signalling delay.
    pub max_duration: Duration,
}

impl Default for HardSideConfig {
    fn default() -> Self {
        HardSideConfig {
            sockets: 256,
            spacing: Duration::from_millis(1),
            refresh_interval: Duration::from_secs(10),
            max_sends_per_socket: 3,
            max_duration: Duration::from_secs(30),
        }
    }
}

/// The hard side's plan: open many mappings toward the easy side and keep them open.
///
/// Lifecycle: construct; drain [`poll_action`](Self::poll_action) (one
/// [`PunchAction::BindUdp`]); report each socket the driver opened with
/// [`handle_socket_opened`](Self::handle_socket_opened); then, after any input and whenever
/// [`poll_timeout`](Self::poll_timeout) passes, drain [`poll_probe`](Self::poll_probe). Sockets
/// are served in the order they became due (by index among equals), one at least every
/// `spacing`; each resends every `refresh_interval`, up to `max_sends_per_socket` times. After
/// `max_duration` the plan is [finished](Self::is_finished) and the sockets can be released.
#[derive(Clone, Debug)]
pub struct HardSidePlan {
    config: HardSideConfig,
    easy: SocketAddr,
    started: Instant,
    deadline: Instant,
    action_pending: bool,
    slots: Vec<Slot>,
    /// The earliest the next send may happen (spacing).
    next_send: Instant,
    /// The earliest `next_due` of a socket with sends left (cached: polls stay O(1) until a
    /// send is due).
    earliest: Instant,
    probes_sent: u32,
    finished: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotState {
    /// Not reported by the driver (yet).
    Unopened,
    Open,
    /// Closed by the driver; never used again.
    Closed,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    state: SlotState,
    sends: u16,
    next_due: Instant,
}

impl HardSidePlan {
    /// A plan sending toward the easy side's public address `easy`, starting at `now`.
    pub fn new(config: HardSideConfig, easy: SocketAddr, now: Instant) -> Result<Self, PunchError> {
        if config.sockets == 0 {
            return Err(PunchError::InvalidConfig { field: "sockets" });
        }
        if config.max_sends_per_socket == 0 {
            return Err(PunchError::InvalidConfig {
                field: "max_sends_per_socket",
            });
        }
        if config.max_sends_per_socket > 1 && config.refresh_interval.is_zero() {
            return Err(PunchError::InvalidConfig {
                field: "refresh_interval",
            });
        }
        if config.max_duration.is_zero() {
            return Err(PunchError::InvalidConfig {
                field: "max_duration",
            });
        }
        let slot = Slot {
            state: SlotState::Unopened,
            sends: 0,
            next_due: Instant::FAR_FUTURE,
        };
        Ok(HardSidePlan {
            config,
            easy,
            started: now,
            deadline: now + config.max_duration,
            action_pending: true,
            slots: vec![slot; usize::from(config.sockets)],
            next_send: now,
            earliest: Instant::FAR_FUTURE,
            probes_sent: 0,
            finished: false,
        })
    }

    /// How many extra local sockets the plan wants (the configured `sockets`).
    pub fn sockets_needed(&self) -> u16 {
        self.config.sockets
    }

    /// The request for the driver: one [`PunchAction::BindUdp`] right after construction.
    pub fn poll_action(&mut self) -> Option<PunchAction> {
        if !self.action_pending {
            return None;
        }
        self.action_pending = false;
        Some(PunchAction::BindUdp {
            count: self.config.sockets,
        })
    }

    /// The driver opened extra socket `index`; its first send is due at once. Reporting an open
    /// socket again, a closed one, or any after the plan finished, changes nothing.
    pub fn handle_socket_opened(&mut self, now: Instant, index: u16) -> Result<(), PunchError> {
        let finished = self.finished;
        let slot = self.slot(index)?;
        if slot.state == SlotState::Unopened && !finished {
            slot.state = SlotState::Open;
            slot.next_due = now;
            self.earliest = self.earliest.min(now);
        }
        Ok(())
    }

    /// The driver lost or closed extra socket `index`: it is never used again.
    pub fn handle_socket_closed(&mut self, index: u16) -> Result<(), PunchError> {
        let slot = self.slot(index)?;
        slot.state = SlotState::Closed;
        slot.next_due = Instant::FAR_FUTURE;
        self.earliest = self.earliest_due();
        Ok(())
    }

    /// Finishes the plan once `max_duration` has passed. Early calls are harmless no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now >= self.deadline {
            self.finished = true;
        }
    }

    /// The next send due at `now`, if any; call until `None` after any input or timeout.
    pub fn poll_probe(&mut self, now: Instant) -> Option<Probe> {
        self.handle_timeout(now);
        if self.finished || now < self.next_send || now < self.earliest {
            return None;
        }
        let max_sends = self.config.max_sends_per_socket;
        // The first socket (by index) among those due earliest.
        let (index, slot) = self
            .slots
            .iter_mut()
            .enumerate()
            .find(|(_, s)| s.next_due == self.earliest && sendable(s, max_sends))?;
        slot.sends += 1;
        slot.next_due = if slot.sends < max_sends {
            now + self.config.refresh_interval
        } else {
            Instant::FAR_FUTURE
        };
        self.next_send = now + self.config.spacing;
        self.earliest = self.earliest_due();
        self.probes_sent += 1;
        Some(Probe {
            socket_index: u16::try_from(index).unwrap_or(u16::MAX),
            to: self.easy,
        })
    }

    /// When to call [`poll_probe`](Self::poll_probe) (or [`handle_timeout`](Self::handle_timeout))
    /// next: a past instant while the action is unpolled or a send is due, the end of the plan
    /// when no send remains before it, `None` once finished.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.finished {
            return None;
        }
        if self.action_pending {
            return Some(self.started);
        }
        Some(self.earliest.max(self.next_send).min(self.deadline))
    }

    /// Whether `max_duration` has passed (as last told by `now`): the sockets can go.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// When the plan ends.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// How many probes were handed out so far.
    pub fn probes_sent(&self) -> u32 {
        self.probes_sent
    }

    fn earliest_due(&self) -> Instant {
        let max_sends = self.config.max_sends_per_socket;
        self.slots
            .iter()
            .filter(|s| sendable(s, max_sends))
            .map(|s| s.next_due)
            .min()
            .unwrap_or(Instant::FAR_FUTURE)
    }

    fn slot(&mut self, index: u16) -> Result<&mut Slot, PunchError> {
        let requested = self.config.sockets;
        self.slots
            .get_mut(usize::from(index))
            .ok_or(PunchError::UnknownSocket { index, requested })
    }
}

fn sendable(slot: &Slot, max_sends: u16) -> bool {
    slot.state == SlotState::Open && slot.sends < max_sends
}

/// Configuration of an [`EasySidePlan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EasySideConfig {
    /// Probes per second, in `1..=1_000_000`: 100 by default (Tailscale's figure). At ~100 bytes
    /// a probe that is 10 kB/s, invisible on any link and well below what IDSes flag as a port
    /// scan, yet fast enough for 98% success within about 10 s against 256 open ports.
    pub rate: u32,
    /// The most probes (including predicted ports): 2048 by default, 99.97% success against 256
    /// open ports; beyond that each extra second buys almost nothing and a relay is better.
    pub max_probes: u32,
    /// How long the plan runs after construction: 30 s by default, the 20.5 s that 2048 probes
    /// take at 100 per second plus slack for a late-polling driver.
    pub max_duration: Duration,
}

impl Default for EasySideConfig {
    fn default() -> Self {
        EasySideConfig {
            rate: 100,
            max_probes: 2048,
            max_duration: Duration::from_secs(30),
        }
    }
}

/// The easy side's plan: probe the hard side's public IP at random ports, at a bounded rate.
///
/// Predicted ports (from [`PortPredictor::predicted`](super::PortPredictor::predicted)) go first;
/// then ports come from a seeded permutation of 1024..=65535 (a keyed Feistel network with
/// cycle walking, so no table), skipping ports already predicted: no port is ever probed twice.
/// Probes are spaced by `ceil(1 s / rate)` and a late poll never catches up with a burst, so no
/// 1 s window holds more than `rate` probes. The plan ends after `max_probes` probes, after
/// `max_duration`, or when the port space is exhausted.
#[derive(Clone, Debug)]
pub struct EasySidePlan {
    hard_ip: IpAddr,
    max_probes: u32,
    interval: Duration,
    deadline: Instant,
    next_due: Instant,
    permutation: Permutation,
    /// The next index into the permutation.
    cursor: u32,
    /// Predicted ports in probing order, and sorted for the random phase to skip them.
    predicted: Vec<u16>,
    predicted_sorted: Vec<u16>,
    predicted_next: usize,
    probes_sent: u32,
    finished: bool,
}

impl EasySidePlan {
    /// A plan probing `hard_ip`, starting at `now` with the first of `predicted` (at most
    /// `max_probes` of them are read; zeros and repeats are dropped; pass `[]` for none). `seed`
    /// picks the permutation: the same seed gives the same probes.
    pub fn new(
        config: EasySideConfig,
        hard_ip: IpAddr,
        predicted: impl IntoIterator<Item = u16>,
        seed: u64,
        now: Instant,
    ) -> Result<Self, PunchError> {
        if !(1..=1_000_000).contains(&config.rate) {
            return Err(PunchError::InvalidConfig { field: "rate" });
        }
        if config.max_probes == 0 {
            return Err(PunchError::InvalidConfig {
                field: "max_probes",
            });
        }
        if config.max_duration.is_zero() {
            return Err(PunchError::InvalidConfig {
                field: "max_duration",
            });
        }
        let mut ordered = Vec::new();
        let mut sorted: Vec<u16> = Vec::new();
        let limit = usize::try_from(config.max_probes).unwrap_or(usize::MAX);
        for port in predicted.into_iter().take(limit) {
            if port == 0 {
                continue;
            }
            if let Err(at) = sorted.binary_search(&port) {
                sorted.insert(at, port);
                ordered.push(port);
            }
        }
        let interval = Duration::from_micros(1_000_000u64.div_ceil(u64::from(config.rate)));
        let mut rng = Rng::from_seed(seed);
        Ok(EasySidePlan {
            hard_ip,
            max_probes: config.max_probes,
            interval,
            deadline: now + config.max_duration,
            next_due: now,
            permutation: Permutation::new(&mut rng),
            cursor: 0,
            predicted: ordered,
            predicted_sorted: sorted,
            predicted_next: 0,
            probes_sent: 0,
            finished: false,
        })
    }

    /// Finishes the plan once `max_duration` has passed. Early calls are harmless no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now >= self.deadline {
            self.finished = true;
        }
    }

    /// The next address to send a probe to, if one is due at `now`.
    pub fn poll_probe(&mut self, now: Instant) -> Option<SocketAddr> {
        self.handle_timeout(now);
        if self.finished || now < self.next_due {
            return None;
        }
        let Some(port) = self.next_port() else {
            self.finished = true;
            return None;
        };
        self.probes_sent += 1;
        self.next_due = now + self.interval;
        if self.probes_sent >= self.max_probes {
            self.finished = true;
        }
        Some(SocketAddr::new(self.hard_ip, port))
    }

    /// When to call [`poll_probe`](Self::poll_probe) next: the next probe's time (past while
    /// one is due), the end of the plan if that comes first, `None` once finished.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.finished {
            None
        } else {
            Some(self.next_due.min(self.deadline))
        }
    }

    /// Whether the plan is over: all probes sent, `max_duration` passed or the space exhausted.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// When the plan ends at the latest.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The gap between probes: `ceil(1 s / rate)`.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// How many probes were handed out so far.
    pub fn probes_sent(&self) -> u32 {
        self.probes_sent
    }

    fn next_port(&mut self) -> Option<u16> {
        if let Some(&port) = self.predicted.get(self.predicted_next) {
            self.predicted_next += 1;
            return Some(port);
        }
        while self.cursor < PORT_SPACE {
            let index = self.cursor;
            self.cursor += 1;
            let port = FIRST_PORT + self.permutation.apply(index);
            if self.predicted_sorted.binary_search(&port).is_err() {
                return Some(port);
            }
        }
        None
    }
}

/// A keyed pseudo-random permutation of `0..PORT_SPACE`: a balanced Feistel network on 16 bits,
/// cycle-walked back into the domain (at most 1024 extra rounds of walking, 0.02 on average).
#[derive(Clone, Debug)]
struct Permutation {
    keys: [u64; FEISTEL_ROUNDS],
}

/// Rounds of the Feistel network; 6 keeps the permutation's outputs statistically independent
/// of its inputs even with 8-bit halves, at a cost of nanoseconds per port.
const FEISTEL_ROUNDS: usize = 6;

impl Permutation {
    fn new(rng: &mut Rng) -> Self {
        Permutation {
            keys: core::array::from_fn(|_| rng.next_u64()),
        }
    }

    /// The image of `index` (< PORT_SPACE), also < PORT_SPACE.
    fn apply(&self, index: u32) -> u16 {
        let mut x = u16::try_from(index).unwrap_or(0);
        loop {
            x = self.encrypt(x);
            if u32::from(x) < PORT_SPACE {
                return x;
            }
        }
    }

    fn encrypt(&self, x: u16) -> u16 {
        let [mut left, mut right] = x.to_be_bytes();
        for &key in &self.keys {
            let mixed = left ^ round(right, key);
            left = right;
            right = mixed;
        }
        u16::from_be_bytes([left, right])
    }
}

/// The Feistel round function: SplitMix64's finaliser over the half-block and round key.
fn round(half: u8, key: u64) -> u8 {
    let mut z = u64::from(half) ^ key;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z = z ^ (z >> 31);
    (z >> 56) as u8
}

/// `base^exp` by repeated squaring (`f64::powi` is not in `core`).
fn powu(mut base: f64, mut exp: u32) -> f64 {
    let mut acc = 1.0;
    while exp > 0 {
        if exp & 1 == 1 {
            acc *= base;
        }
        base *= base;
        exp >>= 1;
    }
    acc
}
