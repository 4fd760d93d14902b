//! Gathering and the candidate tables: host, server-reflexive (with RFC 5780 OTHER-ADDRESS), external (TURN), peer-reflexive.

#[allow(unused_imports)]
use super::*;

impl Agent {
    /// Adds a host candidate: a local socket's address on one interface. The driver binds the
    /// socket; `Transmit::from` names this address when the agent wants to send from it.
    pub fn add_host_candidate(&mut self, now: Instant, base: SocketAddr) -> Result<(), IceError> {
        if base.ip().is_unspecified() {
            return Err(IceError::Unspecified(base));
        }
        // RFC 8421: prefer IPv6 over IPv4 host candidates; within a family, earlier first.
        let same_family = self
            .locals
            .iter()
            .filter(|c| c.kind == CandidateKind::Host && c.address.is_ipv4() == base.is_ipv4())
            .count() as u16;
        let family_base: u16 = if base.is_ipv6() { 65535 } else { 65535 - 1024 };
        let local_preference = family_base.saturating_sub(same_family);
        self.add_local_candidate(now, Candidate::host(base, local_preference))
    }

    /// Adds a local candidate obtained elsewhere (relayed from a TURN allocation, port-mapped
    /// from the gateway); it is signalled and paired like the others.
    pub fn add_local_candidate(&mut self, now: Instant, c: Candidate) -> Result<(), IceError> {
        self.observe(now);
        if self
            .locals
            .iter()
            .any(|l| l.address == c.address && l.base == c.base)
        {
            return Ok(());
        }
        if self.locals.len() >= self.config.max_local_candidates {
            return Err(IceError::TooManyCandidates);
        }
        // A new address may mean a new network: direct pairs are worth probing promptly again.
        if !backoff::is_port_churn(&self.locals, &c) {
            self.reset_upgrade_backoff(now);
        }
        self.locals.push(c);
        self.push_event(IceEvent::LocalCandidate(c));
        // Server-reflexive and port-mapped candidates share their base's pairs (RFC 8445
        // §6.1.2.4 pruning): only host and relayed candidates are paired.
        if matches!(c.kind, CandidateKind::Host | CandidateKind::Relayed) {
            let local = self.locals.len() - 1;
            for remote in 0..self.remotes.len() {
                self.form_pair(now, local, remote)?;
            }
        }
        Ok(())
    }

    /// Starts learning server-reflexive candidates from the configured STUN servers for every
    /// host candidate added so far. [`IceEvent::GatheringComplete`] follows when all answered
    /// or timed out (at once when there are no servers).
    pub fn gather(&mut self, now: Instant) {
        self.observe(now);
        self.gathering = Gathering::InProgress;
        // Every configured server is asked again below, so their other addresses may be too.
        self.other_addresses_asked.clear();
        self.srflx_observations.clear();
        self.ask_stun_servers(now);
        self.check_gathering_complete();
    }

    /// Announces a candidate gathered outside the agent (a TURN allocation, see
    /// [`crate::ice::relay::Relays`]): [`IceEvent::GatheringComplete`] waits for the matching
    /// [`end_external_gathering`](Self::end_external_gathering).
    pub fn begin_external_gathering(&mut self) {
        self.external_gathering = self.external_gathering.saturating_add(1);
    }

    /// An external gathering announced with
    /// [`begin_external_gathering`](Self::begin_external_gathering) ended (its candidate, if
    /// any, was added with [`add_local_candidate`](Self::add_local_candidate)).
    pub fn end_external_gathering(&mut self) {
        self.external_gathering = self.external_gathering.saturating_sub(1);
        self.check_gathering_complete();
    }

    /// Adds a candidate the peer signalled (trickled); checks on its pairs start at once.
    pub fn add_remote_candidate(&mut self, now: Instant, c: Candidate) -> Result<(), IceError> {
        self.observe(now);
        if let Some(existing) = self.remotes.iter().position(|r| r.address == c.address) {
            // A peer-reflexive guess that is now signalled properly takes the signalled kind,
            // and its pairs the signalled priority (they were ranked with the check's).
            if self.remotes[existing].kind == CandidateKind::PeerReflexive {
                self.remotes[existing] = c;
                self.rerank_remote(now, existing);
            }
            return Ok(());
        }
        if self.remotes.len() >= self.config.max_remote_candidates {
            return Err(IceError::TooManyCandidates);
        }
        let churn = backoff::is_port_churn(&self.remotes, &c);
        if !churn {
            self.reset_upgrade_backoff(now);
        }
        self.remotes.push(c);
        let remote = self.remotes.len() - 1;
        self.retire_superseded(remote);
        for local in 0..self.locals.len() {
            self.form_pair(now, local, remote)?;
        }
        if churn {
            self.inherit_backoff(remote);
        }
        // Behind a NAT64 with no IPv4 of our own, an IPv4 candidate is reached via its twin.
        if let Some(twin) = self.nat64_twin(&c) {
            self.add_remote_candidate(now, twin)?;
        }
        Ok(())
    }

    /// On a relayed path, asks the STUN servers again, `upgrade_interval` apart at first and
    /// then doubling up to `upgrade_backoff_max` (see [`AgentConfig::upgrade_backoff_max`]):
    /// where UDP was blocked or the NAT changed, the new server-reflexive candidates are trickled and the
    /// direct pairs they make are checked (a path that works replaces the relay).
    pub(super) fn maybe_regather(&mut self, now: Instant) {
        let relayed = self.path.is_some_and(|p| p.relayed);
        if !relayed || self.gathering != Gathering::Complete || now < self.regather_at {
            return;
        }
        self.regather_at = now + self.upgrade_wait(self.regather_steps);
        self.regather_steps = self.regather_steps.saturating_add(1);
        self.ask_stun_servers(now);
    }

    /// Starts a Binding to every configured STUN server of its family (or, behind a NAT64,
    /// reachable through it) from every host candidate's socket, unless one is already in
    /// flight.
    pub(super) fn ask_stun_servers(&mut self, now: Instant) {
        for li in 0..self.locals.len() {
            let base = self.locals[li];
            if base.kind != CandidateKind::Host {
                continue;
            }
            for si in 0..self.config.stun_servers.len() {
                let server = self.config.stun_servers[si];
                let asking = self
                    .transactions
                    .iter()
                    .any(|t| t.local == base.base && t.data.purpose == Purpose::Gather { server });
                // Same family, or an IPv4 server through the NAT64 (see `synthesis`).
                let to = self.stun_destination(base.address, server);
                if let (Some(to), false) = (to, asking) {
                    let purpose = Purpose::Gather { server };
                    let sends = self.config.gather_max_sends;
                    let rto = self.config.check_rto;
                    let _ = self.start_transaction(now, purpose, base.base, to, sends, rto);
                }
            }
        }
    }

    pub(super) fn local_for_socket(&self, local: SocketAddr) -> Option<usize> {
        let host = |c: &Candidate| matches!(c.kind, CandidateKind::Host | CandidateKind::Relayed);
        self.locals
            .iter()
            .position(|c| host(c) && c.base == local)
            .or_else(|| {
                // A wildcard-bound socket reports 0.0.0.0:port: match the port and family.
                self.locals.iter().position(|c| {
                    host(c)
                        && local.ip().is_unspecified()
                        && c.base.port() == local.port()
                        && c.base.is_ipv4() == local.is_ipv4()
                })
            })
    }

    pub(super) fn add_server_reflexive(
        &mut self,
        now: Instant,
        mapped: SocketAddr,
        base: SocketAddr,
        server: SocketAddr,
    ) {
        if self.srflx_observations.len() < MAX_SRFLX_OBSERVATIONS {
            self.srflx_observations.push((mapped, server));
        }
        // Equal to a host candidate means no NAT: redundant (RFC 8445 §5.1.3).
        if self.locals.iter().any(|c| c.address == mapped) {
            return;
        }
        let c = Candidate::server_reflexive(mapped, base, server.ip());
        let _ = self.add_local_candidate(now, c);
    }

    /// Asks a configured RFC 5780 server's other address (RFC 5780 §7.3 OTHER-ADDRESS) for
    /// this base's mapping too, once: a different mapped port than the primary answer's marks
    /// an endpoint-dependent NAT for the punch decision, as two configured servers would.
    pub(super) fn gather_from_other_address(
        &mut self,
        now: Instant,
        base: SocketAddr,
        server: SocketAddr,
        other: SocketAddr,
    ) {
        let configured = &self.config.stun_servers;
        // Only the configured servers' answers lead on (no chains through alternates), and a
        // server the user configured anyway is asked by `gather` already.
        if !self.config.probe_other_address
            || !configured.contains(&server)
            || configured.contains(&other)
            || other == server
            || other.is_ipv4() != base.is_ipv4()
            || other.ip().is_unspecified()
            || other.port() == 0
        {
            return;
        }
        if self.other_addresses_asked.contains(&(base, other)) {
            return;
        }
        self.other_addresses_asked.push((base, other));
        let (sends, rto) = (self.config.gather_max_sends, self.config.check_rto);
        let purpose = Purpose::Gather { server: other };
        let _ = self.start_transaction(now, purpose, base, other, sends, rto);
    }

    pub(super) fn learn_local_peer_reflexive(&mut self, mapped: SocketAddr, base: SocketAddr) {
        if self.locals.iter().any(|c| c.address == mapped) {
            return;
        }
        if self.locals.len() < self.config.max_local_candidates {
            // Not signalled: peer-reflexive local candidates only matter to the valid list.
            self.locals
                .push(Candidate::peer_reflexive(mapped, base, PRFLX_PRIORITY));
        }
    }

    pub(super) fn check_gathering_complete(&mut self) {
        let pending = self
            .transactions
            .iter()
            .any(|t| matches!(t.data.purpose, Purpose::Gather { .. }));
        if self.gathering == Gathering::InProgress && !pending && self.external_gathering == 0 {
            self.gathering = Gathering::Complete;
            self.push_event(IceEvent::GatheringComplete);
        }
    }

    /// The remote candidate at `address`; a new one is learned as peer-reflexive (RFC 8445
    /// §7.3.1.3) with `priority` while the table has room.
    pub(super) fn remote_or_peer_reflexive(
        &mut self,
        address: SocketAddr,
        priority: u32,
    ) -> Option<usize> {
        if let Some(ri) = self.remotes.iter().position(|r| r.address == address) {
            return Some(ri);
        }
        if self.remotes.len() >= self.config.max_remote_candidates {
            return None;
        }
        self.remotes
            .push(Candidate::peer_reflexive(address, address, priority));
        Some(self.remotes.len() - 1)
    }
}
