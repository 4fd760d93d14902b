//! The session: the peer's credentials, our role (RFC 8445 §7.3.1.1 conflicts), the start of checking, failure and restart.

#[allow(unused_imports)]
use super::*;

impl Agent {
    /// The peer's ufrag and password, from signalling. Checks start once these and a remote
    /// candidate are known.
    pub fn set_remote_credentials(&mut self, credentials: &IceCredentials) {
        let mut username = [0u8; MAX_USERNAME];
        let (r, l) = (
            credentials.ufrag().as_bytes(),
            self.local_credentials.ufrag().as_bytes(),
        );
        // Both ufrags are at most 256 bytes (IceCredentials enforces it), so this fits.
        username[..r.len()].copy_from_slice(r);
        username[r.len()] = b':';
        username[r.len() + 1..r.len() + 1 + l.len()].copy_from_slice(l);
        self.remote = Some(RemoteAuth {
            key: IntegrityKey::short_term(credentials.pwd().as_bytes()),
            username,
            username_len: r.len() + 1 + l.len(),
        });
        self.start_checking(None);
    }

    /// The peer signalled end-of-candidates: once every pair has failed, the agent reports
    /// [`IceEvent::Failed`] instead of waiting for more.
    pub fn end_of_remote_candidates(&mut self) {
        self.remote_complete = true;
        // Every pair may have failed already, with no timer left to notice: decide now.
        self.check_failed();
    }

    /// ICE restart (RFC 8445 §9): new local credentials, remote state forgotten. The selected
    /// path stays usable for sending until a new one is selected, or until its consent expires
    /// (its last answer + `consent_timeout`): a peer that dies mid-restart is still noticed.
    pub fn restart(&mut self, now: Instant) {
        self.observe(now);
        let old_answer = self
            .selected
            .and_then(|s| self.checklist.get(s)?.last_response);
        self.local_credentials = IceCredentials::random(&mut self.rng);
        self.local_key = IntegrityKey::short_term(self.local_credentials.pwd().as_bytes());
        self.remote = None;
        self.remotes.clear();
        self.checklist.clear();
        self.responses.clear();
        for t in self.transactions.iter_mut() {
            if !matches!(t.data.purpose, Purpose::Gather { .. }) {
                t.data.purpose = Purpose::Free;
            }
        }
        self.locals
            .retain(|c| c.kind != CandidateKind::PeerReflexive);
        self.selected = None;
        self.remote_complete = false;
        self.nomination_wait = NominationWait::Idle;
        self.checking = false;
        self.failed = false;
        // Mid-restart (no pair selected, old path kept) `consent_at` is the old path's deadline.
        self.consent_at = old_answer.unwrap_or(now) + self.consent_timeout();
        self.next_check_at = now;
        for c in self.locals.clone().iter() {
            self.push_event(IceEvent::LocalCandidate(*c));
        }
        if self.gathering == Gathering::Complete {
            self.push_event(IceEvent::GatheringComplete);
        }
    }

    pub(super) fn check_failed(&mut self) {
        if self.failed || !self.remote_complete || self.path.is_some() || !self.checking {
            return;
        }
        let all_failed = !self.checklist.pairs().is_empty()
            && self
                .checklist
                .pairs()
                .iter()
                .all(|p| p.state == PairState::Failed);
        if all_failed && self.gathering != Gathering::InProgress && !self.punch_may_connect() {
            self.failed = true;
            self.push_event(IceEvent::Failed);
        }
    }

    pub(super) fn switch_role(&mut self) {
        self.controlling = !self.controlling;
        let controlling = self.controlling;
        for p in self.checklist.pairs_mut() {
            p.priority =
                ranked_priority(controlling, &self.locals[p.local], &self.remotes[p.remote]);
        }
        self.push_event(IceEvent::RoleChanged {
            controlling: self.controlling,
        });
    }

    /// Starts checking once credentials and a pair exist; `now` is `None` from a call that
    /// has no time, and the next input's time starts the clocks then (see `observe`).
    pub(super) fn start_checking(&mut self, now: Option<Instant>) {
        if !self.checking && self.remote.is_some() && !self.checklist.pairs().is_empty() {
            self.checking = true;
            if self.checking_since.is_none() {
                self.checking_since = now;
            }
            self.push_event(IceEvent::Checking);
        }
    }

    pub(super) fn can_check(&self) -> bool {
        self.remote.is_some()
    }

    pub(super) fn has_checkable_pair(&self) -> bool {
        self.checklist
            .pairs()
            .iter()
            .any(|p| p.triggered || matches!(p.state, PairState::Waiting | PairState::Frozen))
    }
}
