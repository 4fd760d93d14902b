//! The check list: candidate pairs, their priorities and states (RFC 8445 §6.1.2).
//!
//! Pairs refer to candidates by index into the agent's fixed-capacity candidate tables, so the
//! list is plain `Copy` data in a vector sized at construction: adding a pair never reallocates.

use alloc::vec::Vec;

use super::candidate::{Candidate, CandidateKind};
use crate::time::Instant;

/// Where a pair is in its life (RFC 8445 §6.1.2.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PairState {
    /// Waiting for a pair of the same foundation to succeed first.
    Frozen,
    /// Ready to be checked when pacing allows.
    Waiting,
    /// A check is in flight.
    InProgress,
    /// A check succeeded: the pair is valid.
    Succeeded,
    /// Checks failed (timeout, or an unrecoverable error).
    Failed,
}

/// A local/remote candidate pair.
#[derive(Clone, Copy, Debug)]
pub struct Pair {
    /// Index into the agent's local candidates.
    pub local: usize,
    /// Index into the agent's remote candidates.
    pub remote: usize,
    /// RFC 8445 §6.1.2.3 pair priority (depends on the role, recomputed on a role change).
    pub priority: u64,
    /// Current state.
    pub state: PairState,
    /// The peer asked to nominate this pair (USE-CANDIDATE) or we nominated it.
    pub nominated: bool,
    /// USE-CANDIDATE arrived before our own check succeeded: nominate on success.
    pub nominate_on_success: bool,
    /// A triggered check is queued for this pair.
    pub triggered: bool,
    /// Last time a check or consent request on this pair was answered (consent freshness).
    pub last_response: Option<Instant>,
    /// Last round-trip time measured on this pair.
    pub rtt_micros: u64,
    /// When a failed pair may be retried (continuous improvement after connecting).
    pub retry_at: Instant,
    /// Re-probes of this pair that failed while the selected path was relayed, since the
    /// backoff was last reset: the next wait is the upgrade interval doubled this many times
    /// (up to the agent's `upgrade_backoff_max`).
    pub backoff_steps: u32,
}

/// RFC 8445 §6.1.2.3: 2^32·min(G,D) + 2·max(G,D) + (G>D ? 1 : 0), with G the controlling
/// side's candidate priority and D the controlled side's.
pub fn pair_priority(controlling: u32, controlled: u32) -> u64 {
    let (g, d) = (u64::from(controlling), u64::from(controlled));
    (g.min(d) << 32) + 2 * g.max(d) + u64::from(g > d)
}

/// Whether two candidates can form a pair: same component and address family.
pub fn compatible(local: &Candidate, remote: &Candidate) -> bool {
    local.component == remote.component && local.address.is_ipv4() == remote.address.is_ipv4()
}

/// The pairs of one check list.
#[derive(Debug)]
pub struct CheckList {
    pairs: Vec<Pair>,
    capacity: usize,
}

impl CheckList {
    /// An empty list that holds up to `capacity` pairs without reallocating.
    pub fn with_capacity(capacity: usize) -> Self {
        CheckList {
            pairs: Vec::with_capacity(capacity),
            capacity,
        }
    }

    /// All pairs, in insertion order.
    pub fn pairs(&self) -> &[Pair] {
        &self.pairs
    }

    /// Every pair, mutably (indices stay valid: the list cannot grow or shrink through this).
    pub fn pairs_mut(&mut self) -> &mut [Pair] {
        &mut self.pairs
    }

    /// A pair by index.
    pub fn get(&self, index: usize) -> Option<&Pair> {
        self.pairs.get(index)
    }

    /// A pair by index, mutably.
    pub fn get_mut(&mut self, index: usize) -> Option<&mut Pair> {
        self.pairs.get_mut(index)
    }

    /// The pair of these two candidates, if formed.
    pub fn find(&self, local: usize, remote: usize) -> Option<usize> {
        self.pairs
            .iter()
            .position(|p| p.local == local && p.remote == remote)
    }

    /// Forms the pair of `local` and `remote` unless it exists or the list is full; returns its
    /// index (the existing one if it exists).
    pub fn add(
        &mut self,
        local: usize,
        remote: usize,
        priority: u64,
        state: PairState,
        now: Instant,
    ) -> Option<usize> {
        if let Some(i) = self.find(local, remote) {
            return Some(i);
        }
        if self.pairs.len() >= self.capacity {
            return None;
        }
        self.pairs.push(Pair {
            local,
            remote,
            priority,
            state,
            nominated: false,
            nominate_on_success: false,
            triggered: false,
            last_response: None,
            rtt_micros: 0,
            retry_at: now,
            backoff_steps: 0,
        });
        Some(self.pairs.len() - 1)
    }

    /// Removes every pair (ICE restart).
    pub fn clear(&mut self) {
        self.pairs.clear();
    }

    /// The Waiting pair with the highest priority.
    pub fn best_waiting(&self) -> Option<usize> {
        self.best_where(|p| p.state == PairState::Waiting)
    }

    /// The highest-priority pair matching `f`.
    pub fn best_where(&self, f: impl Fn(&Pair) -> bool) -> Option<usize> {
        self.pairs
            .iter()
            .enumerate()
            .filter(|(_, p)| f(p))
            .max_by_key(|(_, p)| p.priority)
            .map(|(i, _)| i)
    }
}

/// Whether the pair's local candidate is relayed (for path reporting).
pub fn is_relayed(local: &Candidate, remote: &Candidate) -> bool {
    local.kind == CandidateKind::Relayed || remote.kind == CandidateKind::Relayed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_priority_follows_rfc_formula() {
        // Symmetric in magnitude, tie broken towards the controlling side's candidate.
        assert_eq!(pair_priority(10, 20), (10u64 << 32) + 40);
        assert_eq!(pair_priority(20, 10), (10u64 << 32) + 41);
        assert!(pair_priority(2130706431, 2130706431) > pair_priority(2130706431, 1694498815));
    }

    #[test]
    fn capacity_is_a_hard_bound_and_duplicates_are_merged() {
        let mut list = CheckList::with_capacity(2);
        let now = Instant::ZERO;
        assert_eq!(list.add(0, 0, 5, PairState::Waiting, now), Some(0));
        assert_eq!(list.add(0, 0, 9, PairState::Waiting, now), Some(0));
        assert_eq!(list.add(1, 0, 7, PairState::Frozen, now), Some(1));
        assert_eq!(list.add(2, 0, 7, PairState::Waiting, now), None);
        assert_eq!(list.best_waiting(), Some(0));
    }
}
