//! One retransmission schedule for every STUN transaction in the core (RFC 8489 §6.2.1).
//!
//! A request over UDP is sent, then sent again after RTO, 2·RTO, 4·RTO… until it has gone out
//! `max_sends` times (Rc); after the last send the transaction waits a while longer (Rm·RTO in
//! RFC 8489, or one more doubled RTO for ICE checks, RFC 8445 §14.3) and then times out. The
//! STUN client (and netcheck through it) and the ICE agent's checks, consent and probes keep
//! the state of each request in a [`Retransmit`] and differ only in their [`Schedule`].

use crate::io::TimerReason;
use crate::time::{Duration, Instant};

/// How long a transaction waits after its last send before it times out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LastWait {
    /// `factor` × the initial RTO (RFC 8489's Rm = 16).
    InitialRtoTimes(u32),
    /// The RTO the next send would have used (ICE checks: the doubled, capped RTO).
    NextRto,
}

/// A transaction's retransmission schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// The first RTO.
    pub initial_rto: Duration,
    /// The largest RTO doubling may reach (`None`: no cap).
    pub max_rto: Option<Duration>,
    /// Rc: how many times the request is sent (at least once).
    pub max_sends: u32,
    /// The wait after the last send.
    pub last_wait: LastWait,
}

impl Schedule {
    /// RFC 8489's defaults with this RTO: Rc 7, Rm 16, no cap.
    pub const fn rfc8489(initial_rto: Duration) -> Schedule {
        Schedule {
            initial_rto,
            max_rto: None,
            max_sends: 7,
            last_wait: LastWait::InitialRtoTimes(16),
        }
    }
}

/// Where one transaction stands in its schedule: how often it was sent, when it is sent next,
/// and when it gives up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retransmit {
    sends: u32,
    max_sends: u32,
    rto: Duration,
    next_send: Instant,
    deadline: Instant,
}

impl Retransmit {
    /// A transaction started at `now`: its first send is due at once.
    pub fn start(now: Instant, schedule: &Schedule) -> Retransmit {
        Retransmit {
            sends: 0,
            max_sends: schedule.max_sends.max(1),
            rto: schedule.initial_rto,
            next_send: now,
            deadline: Instant::FAR_FUTURE,
        }
    }

    /// How many times it was sent.
    pub fn sends(&self) -> u32 {
        self.sends
    }

    /// Whether a send (first or retransmission) is due at `now`.
    pub fn is_due(&self, now: Instant) -> bool {
        self.sends < self.max_sends && self.next_send <= now
    }

    /// Whether every send went out and the wait after the last one is over at `now`.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.sends >= self.max_sends && now >= self.deadline
    }

    /// Records a send at `now`: the next one is due an RTO later (the RTO then doubles, up to
    /// the cap), or, after the last, the transaction times out after the schedule's last wait.
    pub fn sent(&mut self, now: Instant, schedule: &Schedule) {
        self.sends += 1;
        if self.sends < self.max_sends {
            self.next_send = now + self.rto;
            let doubled = self.rto.saturating_mul(2);
            self.rto = schedule.max_rto.map_or(doubled, |cap| doubled.min(cap));
        } else {
            self.next_send = Instant::FAR_FUTURE;
            self.deadline = now
                + match schedule.last_wait {
                    LastWait::InitialRtoTimes(factor) => {
                        schedule.initial_rto.saturating_mul(factor)
                    }
                    LastWait::NextRto => self.rto,
                };
        }
    }

    /// When it next needs the clock, and why: its next send, or its timeout.
    pub fn deadline(&self) -> (Instant, TimerReason) {
        if self.sends < self.max_sends {
            (self.next_send, TimerReason::Retransmit)
        } else {
            (self.deadline, TimerReason::TransactionTimeout)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sends_and_timeout(schedule: Schedule) -> (alloc::vec::Vec<u64>, u64) {
        let mut now = Instant::ZERO;
        let mut r = Retransmit::start(now, &schedule);
        let mut sends = alloc::vec::Vec::new();
        for _ in 0..100 {
            if r.is_due(now) {
                sends.push(now.as_micros() / 1000);
                r.sent(now, &schedule);
            }
            if r.is_expired(now) {
                return (sends, now.as_micros() / 1000);
            }
            now = r.deadline().0;
        }
        panic!("never expired");
    }

    #[test]
    fn rfc_8489_defaults_send_seven_times_and_time_out_at_39_5_s() {
        let (sends, timeout) = sends_and_timeout(Schedule::rfc8489(Duration::from_millis(500)));
        assert_eq!(sends, [0, 500, 1500, 3500, 7500, 15500, 31500]);
        assert_eq!(timeout, 39_500);
    }

    #[test]
    fn a_capped_schedule_waits_one_more_rto_after_the_last_send() {
        let schedule = Schedule {
            initial_rto: Duration::from_millis(100),
            max_rto: Some(Duration::from_millis(300)),
            max_sends: 5,
            last_wait: LastWait::NextRto,
        };
        let (sends, timeout) = sends_and_timeout(schedule);
        assert_eq!(sends, [0, 100, 300, 600, 900]);
        assert_eq!(timeout, 1200);
    }

    #[test]
    fn at_least_one_send() {
        let schedule = Schedule {
            max_sends: 0,
            ..Schedule::rfc8489(Duration::from_millis(100))
        };
        let (sends, timeout) = sends_and_timeout(schedule);
        assert_eq!(sends, [0]);
        assert_eq!(timeout, 1600);
    }
}
