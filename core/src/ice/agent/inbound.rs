//! Connectivity checks received (answered, maybe triggering a check) and answers to ours.

#[allow(unused_imports)]
use super::*;

impl Agent {
    pub(super) fn handle_request(
        &mut self,
        now: Instant,
        local: SocketAddr,
        from: SocketAddr,
        msg: &Message<'_>,
    ) -> Received<'static> {
        // USERNAME must be "<our ufrag>:<theirs>" and the message must verify with our
        // password; anything else is dropped without a trace (no state, no answer).
        let ours = self.local_credentials.ufrag().as_bytes();
        let username_ok = matches!(
            msg.find(types::USERNAME),
            Some(u) if u.value.len() > ours.len() && u.value.starts_with(ours) && u.value[ours.len()] == b':'
        );
        if !username_ok || msg.verify_integrity(&self.local_key).is_err() {
            return Received::Consumed;
        }
        let mut peer_priority = None;
        let mut use_candidate = false;
        let mut peer_role = None;
        let mut peer_keepalive = None;
        let tid = msg.transaction_id();
        for raw in msg.attributes() {
            if raw.attr == types::X_HOLEPUNCH_KEEPALIVE {
                peer_keepalive = decode_keepalive_attribute(raw.value);
                continue;
            }
            match Attribute::decode(raw.attr, raw.value, &tid) {
                Ok(Attribute::Priority(p)) => peer_priority = Some(p),
                Ok(Attribute::UseCandidate) => use_candidate = true,
                Ok(Attribute::IceControlling(t)) => peer_role = Some((true, t)),
                Ok(Attribute::IceControlled(t)) => peer_role = Some((false, t)),
                _ => {}
            }
        }
        // The peer's keepalive proposal, in band (its offer may predate the proposal).
        if let Some(proposal) = peer_keepalive {
            self.learn_remote_keepalive(proposal);
        }
        // Role conflict (RFC 8445 §7.3.1.1).
        if let Some((peer_controlling, peer_tie)) = peer_role {
            if peer_controlling == self.controlling {
                let we_win = self.tie_breaker >= peer_tie;
                if we_win == self.controlling {
                    // We keep our role; the peer must switch.
                    self.queue_response(PendingResponse {
                        id: tid,
                        local,
                        to: from,
                        role_conflict: true,
                    });
                    return Received::Consumed;
                }
                self.switch_role();
            }
        }
        self.queue_response(PendingResponse {
            id: tid,
            local,
            to: from,
            role_conflict: false,
        });

        let Some(li) = self.local_or_punch_socket(local) else {
            return Received::Consumed;
        };
        let Some(ri) = self.remote_or_peer_reflexive(from, peer_priority.unwrap_or(PRFLX_PRIORITY))
        else {
            return Received::Consumed;
        };
        let Ok(Some(pi)) = self.form_pair(now, li, ri) else {
            return Received::Consumed;
        };
        if use_candidate && !self.controlling {
            let consent_timeout = self.consent_timeout();
            match self.checklist.get_mut(pi) {
                // Proven recently: selected now. A pair whose last answer is too old for consent
                // (a relay nominated long after its check) is checked again first.
                Some(p)
                    if p.state == PairState::Succeeded
                        && p.last_response.is_some_and(|t| now < t + consent_timeout) =>
                {
                    self.nominate(now, pi)
                }
                Some(p) if p.state == PairState::Succeeded => {
                    p.nominate_on_success = true;
                    p.triggered = true;
                }
                Some(p) => p.nominate_on_success = true,
                None => {}
            }
        }
        // Triggered check (RFC 8445 §7.3.1.4), unless the pair is already known to work.
        let pair = self.checklist.get_mut(pi);
        if let Some(pair) = pair {
            match pair.state {
                PairState::Succeeded => {}
                PairState::InProgress => pair.triggered = true,
                _ => {
                    pair.state = PairState::Waiting;
                    pair.triggered = true;
                }
            }
        }
        self.start_checking(Some(now));
        Received::Consumed
    }

    pub(super) fn handle_response(
        &mut self,
        now: Instant,
        local: SocketAddr,
        from: SocketAddr,
        msg: &Message<'_>,
    ) -> Received<'static> {
        let id = msg.transaction_id();
        let Some(ti) = self.transactions.find(id) else {
            return Received::Unrecognized;
        };
        let t = self.transactions[ti];
        if let Purpose::Gather { server } = t.data.purpose {
            // A STUN server's answer carries no integrity (no credentials): accept it as RFC
            // 8489 does; an error answer just ends gathering from that server.
            self.transactions[ti].data.purpose = Purpose::Free;
            if msg.class() == Class::SuccessResponse {
                if let Some(Ok(mapped)) = msg.reflexive_address() {
                    self.add_server_reflexive(now, mapped, t.local, server);
                }
                if let Some(Ok(other)) = msg.address(types::OTHER_ADDRESS) {
                    self.gather_from_other_address(now, t.local, server, other);
                }
            }
            self.check_gathering_complete();
            return Received::Consumed;
        }
        // Checks and consent: the answer must carry the peer's integrity, or it never happened.
        let verified = self
            .remote
            .as_ref()
            .is_some_and(|r| msg.verify_integrity(&r.key).is_ok());
        if !verified {
            return Received::Consumed;
        }
        self.transactions[ti].data.purpose = Purpose::Free;
        let rtt = now - t.last_sent;
        match t.data.purpose {
            Purpose::Check {
                pair,
                use_candidate,
            } => {
                if msg.class() == Class::ErrorResponse {
                    let code = msg.error_code().and_then(Result::ok).map_or(0, |e| e.code);
                    if code == ErrorCode::ROLE_CONFLICT.code {
                        // RFC 8445 §7.2.5.1: switch only if we still hold the role the request
                        // claimed (a check from the peer may have switched us meanwhile).
                        if t.data.sent_controlling == self.controlling {
                            self.switch_role();
                        }
                        if let Some(p) = self.checklist.get_mut(pair) {
                            p.state = PairState::Waiting;
                            p.triggered = true;
                        }
                    } else {
                        self.pair_failed(now, pair);
                    }
                } else if from != t.to || local != t.local {
                    // Non-symmetric addresses (RFC 8445 §7.2.5.2.1): the pair fails.
                    self.pair_failed(now, pair);
                } else {
                    if let Some(Ok(mapped)) = msg.xor_mapped_address() {
                        self.learn_local_peer_reflexive(mapped, t.local);
                    }
                    self.pair_succeeded(now, pair, use_candidate, rtt);
                }
            }
            Purpose::Consent { pair } => {
                if msg.class() == Class::SuccessResponse {
                    if let Some(p) = self.checklist.get_mut(pair) {
                        p.last_response = Some(now);
                        p.rtt_micros = crate::time::duration_micros(rtt);
                    }
                    self.refresh_path_rtt(pair);
                }
            }
            Purpose::Probe => {
                // A punch probe got through: the address it went to is a working remote.
                if msg.class() == Class::SuccessResponse && from == t.to {
                    self.probe_succeeded(now, t.local, from, rtt);
                }
            }
            Purpose::Gather { .. } | Purpose::Free => {}
        }
        Received::Consumed
    }
}
