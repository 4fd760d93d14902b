//! One transaction table and one retransmission schedule for every STUN transaction in the
//! core (RFC 8489 §6.2.1).
//!
//! A request over UDP is sent, then sent again after RTO, 2·RTO, 4·RTO… until it has gone out
//! `max_sends` times (Rc); after the last send the transaction waits a while longer (Rm·RTO in
//! RFC 8489, or one more doubled RTO for ICE checks, RFC 8445 §14.3) and then times out. The
//! STUN client (and netcheck, the lifetime probe and TURN through it) and the ICE agent's
//! checks, consent and probes keep their requests in a [`Store`]: each entry holds the
//! transaction id, the local socket and destination, where it stands in its [`Schedule`]
//! ([`Retransmit`]), the encoded request when its user resends the same bytes, and the key its
//! response's MESSAGE-INTEGRITY must verify with; what else a user needs (ICE's purpose, the
//! client's retry state) rides along as the entry's `data`.

use alloc::vec;
use alloc::vec::Vec;
use core::net::SocketAddr;

use super::TransactionId;
use super::integrity::IntegrityKey;
use crate::io::{Deadline, TimerReason};
use crate::time::{Duration, Instant};

/// What a [`Store`]'s user attaches to each entry; it also says whether the entry is in use.
pub trait Attached: Copy {
    /// The entry holds no transaction: [`Store::vacant`] may hand it out.
    fn is_free(&self) -> bool;
    /// The request is in flight: its sends and its timeout are due by its schedule.
    fn in_flight(&self) -> bool;
}

/// Every entry of a [`Store`] is in use: the transaction was not started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the STUN transaction table is full")]
pub struct StoreFull;

/// One transaction of a [`Store`].
#[derive(Clone, Copy, Debug)]
pub struct Entry<T> {
    /// What the user attached (and whether the entry is in use).
    pub data: T,
    /// The transaction id on the wire.
    pub id: TransactionId,
    /// The local socket it is sent from (a user with one socket leaves it unspecified).
    pub local: SocketAddr,
    /// Where it is sent.
    pub to: SocketAddr,
    /// Its retransmission schedule.
    pub schedule: Schedule,
    /// Where it stands in the schedule.
    pub timing: Retransmit,
    /// When it was last sent (its response's round-trip time counts from here).
    pub last_sent: Instant,
}

/// A fixed-capacity table of STUN transactions, sized at construction: starting, sending and
/// matching a transaction allocates nothing. A start with every entry in use fails with
/// [`StoreFull`], and [`Store::overflows`] counts such refusals.
#[derive(Debug)]
pub struct Store<T> {
    entries: Vec<Entry<T>>,
    /// `max_request_len` bytes per entry: its encoded request, for users that resend the same
    /// bytes (a user that rebuilds each send from `data` asks for none).
    requests: Vec<u8>,
    max_request_len: usize,
    /// The key each entry's response must verify with, if its request was signed with one
    /// that may differ from the user's current one.
    keys: Vec<Option<IntegrityKey>>,
    overflows: u64,
}

impl<T: Attached> Store<T> {
    /// `capacity` entries (at least one), each `free` (for which [`Attached::is_free`] holds)
    /// with `schedule` until started, and `max_request_len` bytes of request each.
    pub fn new(capacity: usize, free: T, schedule: Schedule, max_request_len: usize) -> Self {
        let n = capacity.max(1);
        let entry = Entry {
            data: free,
            id: TransactionId::default(),
            local: SocketAddr::from(([0, 0, 0, 0], 0)),
            to: SocketAddr::from(([0, 0, 0, 0], 0)),
            schedule,
            timing: Retransmit::start(Instant::FAR_FUTURE, &schedule),
            last_sent: Instant::ZERO,
        };
        Store {
            entries: vec![entry; n],
            requests: vec![0; n * max_request_len],
            max_request_len,
            keys: vec![None; n],
            overflows: 0,
        }
    }

    /// The first free entry's index; [`StoreFull`] (counted) when none is.
    pub fn vacant(&mut self) -> Result<usize, StoreFull> {
        for (i, e) in self.entries.iter().enumerate() {
            if e.data.is_free() {
                return Ok(i);
            }
        }
        self.overflows += 1;
        Err(StoreFull)
    }

    /// Starts a transaction at `now` in the first free entry: its first send is due at once.
    /// Its key is cleared.
    pub fn start(
        &mut self,
        now: Instant,
        data: T,
        id: TransactionId,
        local: SocketAddr,
        to: SocketAddr,
        schedule: Schedule,
    ) -> Result<usize, StoreFull> {
        let i = self.vacant()?;
        self.start_in(i, now, data, id, local, to, schedule);
        Ok(i)
    }

    /// [`start`](Self::start) in entry `i`, which [`vacant`](Self::vacant) returned: for a
    /// caller that must know there is room before it draws the id (so a full store costs no
    /// random numbers), without a second scan.
    #[allow(clippy::too_many_arguments)]
    pub fn start_in(
        &mut self,
        i: usize,
        now: Instant,
        data: T,
        id: TransactionId,
        local: SocketAddr,
        to: SocketAddr,
        schedule: Schedule,
    ) {
        self.entries[i] = Entry {
            data,
            id,
            local,
            to,
            schedule,
            timing: Retransmit::start(now, &schedule),
            last_sent: now,
        };
        self.keys[i] = None;
    }

    /// Starts entry `i` over at `now` under a new wire id (a retry is a new transaction, RFC
    /// 8489 §9.2.3), with its schedule from the beginning.
    pub fn restart(&mut self, i: usize, now: Instant, id: TransactionId) {
        let e = &mut self.entries[i];
        e.id = id;
        e.timing = Retransmit::start(now, &e.schedule);
    }

    /// The first in-flight entry whose send is due at `now`.
    pub fn due(&self, now: Instant) -> Option<usize> {
        // Plain loops here and below: these scans run on every poll, also in debug builds.
        for (i, e) in self.entries.iter().enumerate() {
            if e.timing.is_due(now) && e.data.in_flight() {
                return Some(i);
            }
        }
        None
    }

    /// The in-flight entry with wire id `id`.
    pub fn find(&self, id: TransactionId) -> Option<usize> {
        for (i, e) in self.entries.iter().enumerate() {
            if e.id == id && e.data.in_flight() {
                return Some(i);
            }
        }
        None
    }

    /// Records that entry `i` was sent at `now`.
    pub fn sent(&mut self, i: usize, now: Instant) {
        let e = &mut self.entries[i];
        e.last_sent = now;
        let schedule = e.schedule;
        e.timing.sent(now, &schedule);
    }

    /// Whether in-flight entry `i` has used its sends and waited out its last at `now`.
    pub fn is_expired(&self, i: usize, now: Instant) -> bool {
        let e = &self.entries[i];
        e.data.in_flight() && e.timing.is_expired(now)
    }

    /// The earliest send or timeout of the in-flight entries (the first entry on a tie).
    pub fn deadline(&self) -> Option<Deadline> {
        let mut best: Option<Deadline> = None;
        for e in &self.entries {
            if !e.data.in_flight() {
                continue;
            }
            let (at, reason) = e.timing.deadline();
            if best.is_none_or(|b| at < b.at) {
                best = Some(Deadline::new(at, reason));
            }
        }
        best
    }

    /// How many entries are free.
    pub fn free(&self) -> usize {
        let mut n = 0;
        for e in &self.entries {
            n += usize::from(e.data.is_free());
        }
        n
    }

    /// The entries, in index order.
    pub fn iter(&self) -> core::slice::Iter<'_, Entry<T>> {
        self.entries.iter()
    }

    /// The entries, mutably.
    pub fn iter_mut(&mut self) -> core::slice::IterMut<'_, Entry<T>> {
        self.entries.iter_mut()
    }

    /// How many entries there are (the capacity).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Never: a store has at least one entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entry `i`'s request bytes area (`max_request_len` bytes).
    pub fn request_area(&mut self, i: usize) -> &mut [u8] {
        let n = self.max_request_len;
        &mut self.requests[i * n..(i + 1) * n]
    }

    /// The first `len` bytes of entry `i`'s request area.
    pub fn request(&self, i: usize, len: usize) -> &[u8] {
        let start = i * self.max_request_len;
        &self.requests[start..start + len]
    }

    /// The key entry `i`'s response must verify with, if one was recorded.
    pub fn key(&self, i: usize) -> Option<&IntegrityKey> {
        self.keys[i].as_ref()
    }

    /// Records the key entry `i`'s request was signed with.
    pub fn set_key(&mut self, i: usize, key: Option<IntegrityKey>) {
        self.keys[i] = key;
    }

    /// How many starts were refused because every entry was in use.
    pub fn overflows(&self) -> u64 {
        self.overflows
    }
}

impl<T> core::ops::Index<usize> for Store<T> {
    type Output = Entry<T>;
    fn index(&self, i: usize) -> &Entry<T> {
        &self.entries[i]
    }
}

impl<T> core::ops::IndexMut<usize> for Store<T> {
    fn index_mut(&mut self, i: usize) -> &mut Entry<T> {
        &mut self.entries[i]
    }
}

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

    /// A user's attachment: free, in flight, or finished (holding its entry, not in flight).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Use {
        Free,
        Active,
        Done,
    }

    impl Attached for Use {
        fn is_free(&self) -> bool {
            *self == Use::Free
        }
        fn in_flight(&self) -> bool {
            *self == Use::Active
        }
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    #[test]
    fn a_full_store_refuses_with_a_typed_error_and_counts_it() {
        let schedule = Schedule::rfc8489(Duration::from_millis(100));
        let mut store = Store::new(2, Use::Free, schedule, 32);
        let now = Instant::from_millis(5);
        let start = |store: &mut Store<Use>, n: u8| {
            let id = TransactionId([n; 12]);
            store.start(now, Use::Active, id, addr(1), addr(2), schedule)
        };
        assert_eq!(start(&mut store, 1), Ok(0));
        assert_eq!(start(&mut store, 2), Ok(1));
        assert_eq!(start(&mut store, 3), Err(StoreFull));
        assert_eq!((store.free(), store.overflows()), (0, 1));
        // A finished entry still holds its place until its user frees it.
        store[0].data = Use::Done;
        assert_eq!(start(&mut store, 4), Err(StoreFull));
        assert_eq!(store.find(TransactionId([1; 12])), None, "not in flight");
        store[0].data = Use::Free;
        assert_eq!(start(&mut store, 5), Ok(0));
        assert_eq!(store.overflows(), 2);
    }

    #[test]
    fn entries_send_match_and_expire_on_their_schedule() {
        let schedule = Schedule {
            initial_rto: Duration::from_millis(100),
            max_rto: None,
            max_sends: 2,
            last_wait: LastWait::NextRto,
        };
        let mut store = Store::new(4, Use::Free, schedule, 0);
        let t0 = Instant::from_millis(10);
        let id = TransactionId([7; 12]);
        let i = store
            .start(t0, Use::Active, id, addr(1), addr(2), schedule)
            .expect("room");
        assert_eq!(store.find(id), Some(i));
        assert_eq!(store.due(t0), Some(i));
        store.sent(i, t0);
        assert_eq!(store.due(t0), None);
        let d = store.deadline().expect("in flight");
        assert_eq!(
            (d.at, d.reason),
            (t0 + schedule.initial_rto, TimerReason::Retransmit)
        );
        store.sent(i, d.at);
        assert_eq!(store[i].last_sent, d.at);
        let d = store.deadline().expect("in flight");
        assert_eq!(d.reason, TimerReason::TransactionTimeout);
        assert!(!store.is_expired(i, store[i].last_sent));
        assert!(store.is_expired(i, d.at));
        // A retry under a new id starts the schedule over.
        let retry = TransactionId([8; 12]);
        store.restart(i, d.at, retry);
        assert_eq!((store.find(id), store.find(retry)), (None, Some(i)));
        assert_eq!(store.due(d.at), Some(i));
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
