//! The agent's STUN transactions: starting, (re)sending, and writing checks and responses.

#[allow(unused_imports)]
use super::*;

impl Agent {
    pub(super) fn start_paced_check(&mut self, now: Instant) -> Option<usize> {
        if !self.can_check() || now < self.next_check_at {
            return None;
        }
        let pi = self
            .checklist
            .best_where(|p| p.triggered)
            .or_else(|| self.checklist.best_waiting())
            // Nothing waiting: unfreeze the best frozen pair (trickle may never unfreeze it).
            .or_else(|| self.checklist.best_where(|p| p.state == PairState::Frozen))?;
        let (local, remote, nominated) = {
            let p = self.checklist.get(pi)?;
            (
                self.locals[p.local].base,
                self.remotes[p.remote].address,
                p.nominated,
            )
        };
        // A relayed pair is nominated only once no direct path can still work (relay_held).
        let aggressive = self.config.nomination == Nomination::Aggressive
            && !(self.pair_is_relayed(pi) && self.relay_held(now));
        let use_candidate = self.controlling && (aggressive || nominated);
        let purpose = Purpose::Check {
            pair: pi,
            use_candidate,
        };
        let max_sends = self.config.check_max_sends;
        let rto = self.config.check_rto;
        let ti = self.start_transaction(now, purpose, local, remote, max_sends, rto)?;
        if let Some(p) = self.checklist.get_mut(pi) {
            p.triggered = false;
            if p.state != PairState::Succeeded {
                p.state = PairState::InProgress;
            }
        }
        self.next_check_at = now + self.config.ta;
        Some(ti)
    }

    pub(super) fn free_transactions(&self) -> usize {
        self.transactions.free()
    }

    pub(super) fn start_transaction(
        &mut self,
        now: Instant,
        purpose: Purpose,
        local: SocketAddr,
        to: SocketAddr,
        max_sends: u32,
        rto: Duration,
    ) -> Option<usize> {
        // A full table starts nothing (the store counts the refusal); the caller retries later.
        let i = self.transactions.vacant().ok()?;
        let id = TransactionId::random(&mut self.rng);
        // RFC 8445 §14.3: the RTO doubles up to the configured cap, and a transaction gives up
        // one RTO after its last send.
        let schedule = Schedule {
            initial_rto: rto,
            max_rto: Some(self.config.check_rto_max),
            max_sends,
            last_wait: LastWait::NextRto,
        };
        let tx = Tx {
            purpose,
            sent_controlling: self.controlling,
        };
        self.transactions
            .start_in(i, now, tx, id, local, to, schedule);
        Some(i)
    }

    pub(super) fn send_transaction(
        &mut self,
        now: Instant,
        ti: usize,
        out: &mut [u8],
    ) -> Option<Transmit> {
        let t = self.transactions[ti];
        let len = match t.data.purpose {
            Purpose::Gather { .. } => {
                let b = MessageBuilder::new(out, Class::Request, Method::BINDING, t.id).ok()?;
                finish_with_fingerprint(b)?
            }
            Purpose::Check {
                pair,
                use_candidate,
            } => self.write_check(out, &t, pair, use_candidate)?,
            Purpose::Consent { pair } => {
                let renominate = self.controlling;
                self.write_check(out, &t, pair, renominate)?
            }
            Purpose::Probe => {
                let use_candidate = self.config.nomination == Nomination::Aggressive;
                let prio = priority(CandidateKind::PeerReflexive, 1, 1);
                self.write_request(out, t.id, prio, use_candidate)?
            }
            Purpose::Free => return None,
        };
        self.transactions[ti].data.sent_controlling = self.controlling;
        self.transactions.sent(ti, now);
        Some(Transmit {
            from: Some(t.local),
            to: t.to,
            len,
        })
    }

    pub(super) fn write_check(
        &self,
        out: &mut [u8],
        t: &Transaction,
        pi: usize,
        use_candidate: bool,
    ) -> Option<usize> {
        let p = self.checklist.get(pi)?;
        let local = self.locals.get(p.local)?;
        let local_preference = ((local.priority >> 8) & 0xffff) as u16;
        let prflx_priority = priority(
            CandidateKind::PeerReflexive,
            local_preference,
            local.component,
        );
        self.write_request(out, t.id, prflx_priority, use_candidate)
    }

    /// A connectivity check: USERNAME, PRIORITY, our role, USE-CANDIDATE when nominating,
    /// X-HOLEPUNCH-KEEPALIVE (our proposal, see `keepalive`), MESSAGE-INTEGRITY with the
    /// peer's password, FINGERPRINT.
    pub(super) fn write_request(
        &self,
        out: &mut [u8],
        id: TransactionId,
        prflx_priority: u32,
        use_candidate: bool,
    ) -> Option<usize> {
        let remote = self.remote.as_ref()?;
        let username = core::str::from_utf8(&remote.username[..remote.username_len]).ok()?;
        let mut b = MessageBuilder::new(out, Class::Request, Method::BINDING, id).ok()?;
        b.add(&Attribute::Username(username)).ok()?;
        b.add(&Attribute::Priority(prflx_priority)).ok()?;
        let role = if self.controlling {
            Attribute::IceControlling(self.tie_breaker)
        } else {
            Attribute::IceControlled(self.tie_breaker)
        };
        b.add(&role).ok()?;
        if use_candidate && self.controlling {
            b.add(&Attribute::UseCandidate).ok()?;
        }
        b.add(&Attribute::Other {
            attr: types::X_HOLEPUNCH_KEEPALIVE,
            value: &self.keepalive_attribute(),
        })
        .ok()?;
        b.add_message_integrity(&remote.key).ok()?;
        finish_with_fingerprint(b)
    }

    pub(super) fn write_response(&self, r: &PendingResponse, out: &mut [u8]) -> Option<Transmit> {
        let class = if r.role_conflict {
            Class::ErrorResponse
        } else {
            Class::SuccessResponse
        };
        let mut b = MessageBuilder::new(out, class, Method::BINDING, r.id).ok()?;
        if r.role_conflict {
            b.add(&Attribute::ErrorCode(ErrorCode::ROLE_CONFLICT))
                .ok()?;
        } else {
            b.add(&Attribute::XorMappedAddress(r.to)).ok()?;
        }
        b.add_message_integrity(&self.local_key).ok()?;
        let len = finish_with_fingerprint(b)?;
        Some(Transmit {
            from: Some(r.local),
            to: r.to,
            len,
        })
    }

    pub(super) fn queue_response(&mut self, r: PendingResponse) {
        if self.responses.len() < self.config.max_pending_responses {
            self.responses.push(r);
        } else {
            self.stats.responses_dropped += 1;
        }
    }
}

pub(super) fn finish_with_fingerprint(mut b: MessageBuilder<'_>) -> Option<usize> {
    b.add_fingerprint().ok()?;
    Some(b.finish())
}
