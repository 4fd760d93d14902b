//! Nomination and selection: regular and aggressive, and the relay hold (a relayed pair waits while a direct one may still work).

#[allow(unused_imports)]
use super::*;

impl Agent {
    /// Regular nomination: once no better pair is still being checked, repeat the best valid
    /// pair's check with USE-CANDIDATE (RFC 8445 §8.1.1). Also upgrades a selected path when a
    /// better pair starts working.
    pub(super) fn maybe_nominate_regular(&mut self, now: Instant) {
        let Some(best) = self
            .checklist
            .best_where(|p| p.state == PairState::Succeeded)
        else {
            return;
        };
        if self.selected == Some(best) || (self.pair_is_relayed(best) && self.relay_held(now)) {
            return;
        }
        let best_priority = self.checklist.get(best).map_or(0, |p| p.priority);
        let better_pending = self.checklist.pairs().iter().any(|p| {
            p.priority > best_priority
                && matches!(p.state, PairState::Waiting | PairState::InProgress)
        });
        // While connected, upgrade without waiting; while connecting, give better pairs their
        // chance first, but only for `nomination_delay` after the first pair worked: a better
        // pair that never answers would otherwise hold nomination for its whole retransmission
        // schedule (~40 s at RFC defaults).
        let waited = match self.nomination_wait {
            NominationWait::Idle => false,
            NominationWait::Until(due) => now >= due,
            NominationWait::Elapsed => true,
        };
        if better_pending && self.selected.is_none() && !waited {
            return;
        }
        let nominating = self.transactions.iter().any(
            |t| matches!(t.data.purpose, Purpose::Check { pair, use_candidate: true } if pair == best),
        );
        if !nominating {
            if let Some(p) = self.checklist.get_mut(best) {
                p.triggered = true;
                p.nominated = true; // the next check on it carries USE-CANDIDATE
            }
        }
    }

    /// Records a nomination and selects the pair, unless the selected pair is better and
    /// recently proven alive. A worse pair still takes over from a stale one: after a NAT
    /// rebinding the old pair goes quiet while the peer keeps nominating the new one.
    pub(super) fn nominate(&mut self, now: Instant, pi: usize) {
        let Some(p) = self.checklist.get_mut(pi) else {
            return;
        };
        p.nominated = true;
        let candidate_priority = p.priority;
        let interval = self.consent_interval();
        if let Some(sel) = self.selected.and_then(|s| self.checklist.get(s)) {
            let fresh = sel.last_response.is_some_and(|t| now < t + interval);
            if sel.priority > candidate_priority && fresh {
                return;
            }
        }
        self.select(pi);
    }

    pub(super) fn select(&mut self, pi: usize) {
        if self.selected == Some(pi) {
            return;
        }
        let Some(info) = self.path_info(pi) else {
            return;
        };
        let first = self.path.is_none();
        self.selected = Some(pi);
        self.path = Some(info);
        self.failed = false;
        // Consent starts fresh on the new pair.
        let interval = self.jittered_consent_interval();
        let last = self
            .checklist
            .get(pi)
            .and_then(|p| p.last_response)
            .unwrap_or(Instant::ZERO);
        self.consent_at = last + interval;
        self.push_event(if first {
            IceEvent::Connected(info)
        } else {
            IceEvent::PathChanged(info)
        });
    }

    /// Whether the selected path is direct (punching stops; on a relay it goes on).
    pub(super) fn has_direct_path(&self) -> bool {
        self.path.is_some_and(|p| !p.relayed)
    }

    /// Whether pair `pi` crosses a relay (either candidate relayed).
    pub(super) fn pair_is_relayed(&self, pi: usize) -> bool {
        self.checklist
            .get(pi)
            .is_some_and(|p| is_relayed(&self.locals[p.local], &self.remotes[p.remote]))
    }

    /// Whether a direct path may still work, so relayed pairs wait: candidates still coming,
    /// direct pairs still being checked, or hard-NAT punching still possible. The relay is
    /// the last resort ("direct when possible"), and an ICE relay costs the operator money.
    pub(super) fn relay_held(&self, now: Instant) -> bool {
        let held_since = self.checking_since.unwrap_or(now);
        if now >= held_since + self.config.relay_hold {
            return false;
        }
        if self.gathering != Gathering::Complete || !self.remote_complete {
            return true;
        }
        let direct_pending = self.checklist.pairs().iter().any(|p| {
            !is_relayed(&self.locals[p.local], &self.remotes[p.remote])
                && matches!(
                    p.state,
                    PairState::Frozen | PairState::Waiting | PairState::InProgress
                )
        });
        direct_pending || self.punch_may_connect()
    }

    /// Controlling side, not connected, direct paths exhausted: nominate the best relayed pair
    /// that works (its next check carries USE-CANDIDATE).
    pub(super) fn release_relay(&mut self, now: Instant) {
        if self.relay_held(now) {
            return;
        }
        let (locals, remotes) = (&self.locals, &self.remotes);
        let best = self.checklist.best_where(|p| {
            p.state == PairState::Succeeded && is_relayed(&locals[p.local], &remotes[p.remote])
        });
        let Some(best) = best else { return };
        let nominating = self.transactions.iter().any(
            |t| matches!(t.data.purpose, Purpose::Check { pair, use_candidate: true } if pair == best),
        );
        if let Some(p) = self.checklist.get_mut(best).filter(|_| !nominating) {
            if !p.nominated {
                p.nominated = true;
                p.triggered = true;
            }
        }
    }
}
