//! The check list's pairs: forming, ranking, success and failure.

#[allow(unused_imports)]
use super::*;

impl Agent {
    pub(super) fn form_pair(
        &mut self,
        now: Instant,
        local: usize,
        remote: usize,
    ) -> Result<Option<usize>, IceError> {
        let (l, r) = (self.locals[local], self.remotes[remote]);
        if !matches!(l.kind, CandidateKind::Host | CandidateKind::Relayed) || !compatible(&l, &r) {
            return Ok(None);
        }
        // Every check received lands here: a known pair needs no sibling scan.
        if let Some(index) = self.checklist.find(local, remote) {
            self.start_checking(Some(now));
            return Ok(Some(index));
        }
        let prio = self.pair_priority_of(&l, &r);
        // One pair per foundation pair checks first; the rest wait frozen (RFC 8445 §6.1.2.6).
        let sibling_active = self.checklist.pairs().iter().any(|p| {
            let (pl, pr) = (&self.locals[p.local], &self.remotes[p.remote]);
            pl.foundation == l.foundation
                && pr.foundation == r.foundation
                && matches!(p.state, PairState::Waiting | PairState::InProgress)
        });
        let state = if sibling_active {
            PairState::Frozen
        } else {
            PairState::Waiting
        };
        let index = self
            .checklist
            .add(local, remote, prio, state, now)
            .ok_or(IceError::TooManyCandidates)?;
        self.start_checking(Some(now));
        Ok(Some(index))
    }

    /// Recomputes the priorities of remote `remote`'s pairs after its candidate changed. A
    /// nominated valid pair that now outranks the selected one is selected by the usual rule;
    /// otherwise the two sides could keep different selected pairs (the controlled side ranks
    /// a pair first checked from an unsignalled address lower than the controlling side does).
    pub(super) fn rerank_remote(&mut self, now: Instant, remote: usize) {
        let mut best_nominated: Option<(usize, u64)> = None;
        let (controlling, selected) = (self.controlling, self.selected);
        for (i, p) in self.checklist.pairs_mut().iter_mut().enumerate() {
            if p.remote != remote {
                continue;
            }
            let prio = ranked_priority(controlling, &self.locals[p.local], &self.remotes[remote]);
            p.priority = prio;
            let valid = p.nominated && p.state == PairState::Succeeded;
            if valid && selected != Some(i) && best_nominated.is_none_or(|(_, b)| prio > b) {
                best_nominated = Some((i, prio));
            }
        }
        if let Some(sel) = self.selected {
            if self.checklist.get(sel).is_some_and(|p| p.remote == remote) {
                self.path = self.path_info(sel).or(self.path);
            }
        }
        if let Some((i, _)) = best_nominated {
            self.nominate(now, i);
        }
    }

    pub(super) fn pair_priority_of(&self, l: &Candidate, r: &Candidate) -> u64 {
        ranked_priority(self.controlling, l, r)
    }

    pub(super) fn pair_succeeded(
        &mut self,
        now: Instant,
        pi: usize,
        use_candidate: bool,
        rtt: Duration,
    ) {
        let controlling = self.controlling;
        let Some(p) = self.checklist.get_mut(pi) else {
            return;
        };
        p.state = PairState::Succeeded;
        p.last_response = Some(now);
        p.rtt_micros = crate::time::duration_micros(rtt);
        let nominate = (controlling && use_candidate) || (!controlling && p.nominate_on_success);
        p.nominate_on_success = false;
        let held = self.pair_is_relayed(pi) && self.relay_held(now);
        let Some(p) = self.checklist.get_mut(pi) else {
            return;
        };
        // Unfreeze the pairs that share this pair's foundations (RFC 8445 §7.2.5.3.3).
        let (lf, rf) = (
            self.locals[p.local].foundation,
            self.remotes[p.remote].foundation,
        );
        for q in self.checklist.pairs_mut() {
            let same =
                self.locals[q.local].foundation == lf && self.remotes[q.remote].foundation == rf;
            if same && q.state == PairState::Frozen {
                q.state = PairState::Waiting;
            }
        }
        if nominate && !(held && controlling) {
            self.nominate(now, pi);
        } else if held {
            // Valid, kept for when direct paths run out (release_relay).
        } else if controlling && self.pair_is_relayed(pi) && self.path.is_none() {
            self.release_relay(now);
        } else if controlling && self.config.nomination == Nomination::Regular {
            if self.nomination_wait == NominationWait::Idle && self.path.is_none() {
                self.nomination_wait = NominationWait::Until(now + self.config.nomination_delay);
            }
            self.maybe_nominate_regular(now);
        }
        // Only the selected pair's RTT is the path's: refresh_path_rtt checks.
        self.refresh_path_rtt(pi);
    }

    pub(super) fn path_info(&self, pi: usize) -> Option<PathInfo> {
        let p = self.checklist.get(pi)?;
        let (l, r) = (self.locals.get(p.local)?, self.remotes.get(p.remote)?);
        Some(PathInfo {
            local: l.base,
            remote: r.address,
            local_kind: l.kind,
            remote_kind: r.kind,
            relayed: is_relayed(l, r),
            rtt: Duration::from_micros(p.rtt_micros),
        })
    }

    pub(super) fn refresh_path_rtt(&mut self, pi: usize) {
        if self.selected == Some(pi) {
            if let (Some(path), Some(p)) = (self.path.as_mut(), self.checklist.get(pi)) {
                path.rtt = Duration::from_micros(p.rtt_micros);
            }
        }
    }

    pub(super) fn pair_failed(&mut self, now: Instant, pi: usize) {
        let backing_off = self.backing_off();
        if let Some((steps, remote)) = self.checklist.get(pi).map(|p| (p.backoff_steps, p.remote)) {
            // On a relay every failed re-probe doubles the next wait (the probe budget); a
            // pair to an address the peer has replaced is not re-probed at all.
            let retry = if self.remote_superseded(remote) {
                Instant::FAR_FUTURE
            } else {
                now + self.upgrade_wait(steps)
            };
            if let Some(p) = self.checklist.get_mut(pi) {
                // A pair that worked stays valid until consent says otherwise.
                if p.state != PairState::Succeeded {
                    p.state = PairState::Failed;
                }
                p.triggered = false;
                p.retry_at = retry;
                if backing_off {
                    p.backoff_steps = steps.saturating_add(1);
                }
            }
        }
        // Nothing left to check: let a frozen pair go next so the list never stalls.
        if self.checklist.best_waiting().is_none() {
            if let Some(f) = self.checklist.best_where(|p| p.state == PairState::Frozen) {
                if let Some(p) = self.checklist.get_mut(f) {
                    p.state = PairState::Waiting;
                }
            }
        }
    }
}

/// A pair's priority (RFC 8445 §6.1.2.3) from our role and its local and remote candidates.
pub(super) fn ranked_priority(controlling: bool, local: &Candidate, remote: &Candidate) -> u64 {
    if controlling {
        pair_priority(local.priority, remote.priority)
    } else {
        pair_priority(remote.priority, local.priority)
    }
}
