//! Consent freshness on the selected pair (RFC 7675): checks, expiry and failover.

#[allow(unused_imports)]
use super::*;

impl Agent {
    pub(super) fn check_consent(&mut self, now: Instant) {
        let Some(sel) = self.selected else {
            // Mid-restart: the old path goes when its consent deadline passes.
            if let Some(info) = self.path.filter(|_| now >= self.consent_at) {
                self.path = None;
                self.push_event(IceEvent::ConsentLost(info));
            }
            return;
        };
        let Some(p) = self.checklist.get(sel) else {
            return;
        };
        let fresh = p
            .last_response
            .is_some_and(|t| now < t + self.consent_timeout());
        if fresh {
            return;
        }
        let lost = self.path;
        if let Some(p) = self.checklist.get_mut(sel) {
            p.state = PairState::Failed;
            p.nominated = false;
            p.retry_at = now + self.config.upgrade_interval;
        }
        // Whatever path comes next, direct pairs are worth probing promptly again.
        self.reset_upgrade_backoff(now);
        self.selected = None;
        // Fail over to the best pair that still has consent.
        let timeout = self.consent_timeout();
        let next = self.checklist.best_where(|p| {
            p.state == PairState::Succeeded && p.last_response.is_some_and(|t| now < t + timeout)
        });
        match next {
            Some(n) => self.select(n),
            None => {
                if let Some(info) = lost {
                    self.push_event(IceEvent::ConsentLost(info));
                }
                self.path = None;
                self.nomination_wait = NominationWait::Idle;
                // Start over on every pair, as after a restart, so a new path can be found.
                for q in self.checklist.pairs_mut() {
                    if q.state != PairState::InProgress {
                        q.state = PairState::Waiting;
                    }
                }
            }
        }
    }

    pub(super) fn start_consent_check(&mut self, now: Instant) -> Option<usize> {
        let sel = self.selected?;
        if now < self.consent_at {
            return None;
        }
        let in_flight = self
            .transactions
            .iter()
            .any(|t| t.data.purpose == Purpose::Consent { pair: sel });
        self.consent_at = now + self.jittered_consent_interval();
        if in_flight {
            return None;
        }
        let p = self.checklist.get(sel)?;
        let (local, remote) = (self.locals[p.local].base, self.remotes[p.remote].address);
        // Consent checks are single-shot: the 30 s window, not retransmission, gives the slack.
        let rto = self.config.check_rto;
        self.start_transaction(now, Purpose::Consent { pair: sel }, local, remote, 1, rto)
    }
}
