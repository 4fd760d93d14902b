//! When the agent next needs the clock: `poll_deadline` gathers every timer the sub-states own.

#[allow(unused_imports)]
use super::*;

impl Agent {
    /// When the agent next needs `handle_timeout`, and why: the latest `now` it was given
    /// while output (a response, an event or an action) waits to be polled or a send is due;
    /// `None` when nothing is scheduled. Polling outputs never moves it.
    pub fn poll_deadline(&self) -> Option<Deadline> {
        if !self.responses.is_empty() || !self.events.is_empty() || self.punch.action.is_some() {
            return Some(Deadline::new(self.now, TimerReason::OutputPending));
        }
        let mut best = Deadline::new(Instant::FAR_FUTURE, TimerReason::OutputPending);
        let mut consider = |at: Instant, reason: TimerReason| {
            if at < best.at {
                best = Deadline::new(at, reason);
            }
        };
        if let Some(d) = self.transactions.deadline() {
            consider(d.at, d.reason);
        }
        // A full transaction table wakes us when an entry ends (its deadline, above), not
        // before: naming a due check we cannot start would have the caller spin.
        if let NominationWait::Until(due) = self.nomination_wait {
            consider(due, TimerReason::Nomination);
        }
        if self.path.is_some_and(|p| p.relayed) && self.gathering == Gathering::Complete {
            consider(self.regather_at, TimerReason::Upgrade);
        }
        // The relay hold ends: a working relayed pair is nominated then (release_relay).
        if let (true, None, Some(since)) = (self.controlling, self.path, self.checking_since) {
            let relayed = |p: &&crate::ice::checklist::Pair| {
                is_relayed(&self.locals[p.local], &self.remotes[p.remote])
            };
            let pairs = self.checklist.pairs();
            let works = pairs
                .iter()
                .filter(relayed)
                .any(|p| p.state == PairState::Succeeded);
            let nominated = pairs.iter().filter(relayed).any(|p| p.nominated);
            if works && !nominated {
                consider(since + self.config.relay_hold, TimerReason::RelayHold);
            }
        }
        let free = self.free_transactions();
        if free > 0 && self.can_check() && self.has_checkable_pair() {
            consider(self.next_check_at, TimerReason::Pacing);
        }
        if !self.has_direct_path() && free > PROBE_RESERVE {
            if let Some(t) = self
                .punch
                .hard
                .as_ref()
                .and_then(HardSidePlan::poll_timeout)
            {
                consider(t, TimerReason::Punch);
            }
            if let Some(t) = self
                .punch
                .easy
                .as_ref()
                .and_then(EasySidePlan::poll_timeout)
            {
                consider(t, TimerReason::Punch);
            }
            // The decision is due after the delay, or at once when end-of-candidates arrived
            // after it (it waited for them): in both cases `handle_timeout` decides.
            let decision_due = !self.punch.delay_elapsed
                || (!self.punch.decided
                    && self.remote_complete
                    && self.gathering == Gathering::Complete);
            if let (Some(cfg), Some(since), true) =
                (self.config.punch, self.checking_since, decision_due)
            {
                consider(since + cfg.delay, TimerReason::Punch);
            }
            if let Some(at) = self.punch.blind_at {
                consider(at, TimerReason::Punch);
            }
        }
        if self.selected.is_none() && self.path.is_some() {
            consider(self.consent_at, TimerReason::Consent); // mid-restart: the old path's consent deadline
        }
        if let Some(sel) = self.selected.and_then(|s| self.checklist.get(s)) {
            consider(self.consent_at, TimerReason::Consent);
            if let Some(last) = sel.last_response {
                consider(last + self.consent_timeout(), TimerReason::Consent);
            }
            for p in self.checklist.pairs() {
                if p.state == PairState::Failed && p.priority > sel.priority {
                    consider(p.retry_at, TimerReason::Upgrade);
                }
            }
        }
        (best.at != Instant::FAR_FUTURE).then_some(best)
    }

    /// [`poll_deadline`](Self::poll_deadline)'s instant alone.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.poll_deadline().map(|d| d.at)
    }
}
