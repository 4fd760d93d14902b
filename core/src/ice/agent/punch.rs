//! Hard-NAT punching glue: deciding a plan from the candidates, its probes and its extra sockets.

#[allow(unused_imports)]
use super::*;

impl Agent {
    /// Whether hard-NAT punching may still find a path: about to be decided, running, or with
    /// probes awaiting answers. Ordinary checks give up long before a birthday search does.
    pub(super) fn punch_may_connect(&self) -> bool {
        let undecided = self.config.punch.is_some()
            && !self.punch.decided
            && self.gathering == Gathering::Complete;
        undecided
            || self.punch.hard.as_ref().is_some_and(|p| !p.is_finished())
            || self.punch.easy.as_ref().is_some_and(|p| !p.is_finished())
            || self
                .transactions
                .iter()
                .any(|t| t.purpose == Purpose::Probe)
    }

    /// Decides, once, whether this side should punch as the hard or the easy side: when checks
    /// have not connected after the configured delay, both sides know all candidates, and
    /// exactly one side's server-reflexive candidates show an endpoint-dependent mapping
    /// (different ports towards different servers).
    pub(super) fn maybe_start_punch(&mut self, now: Instant) {
        let Some(cfg) = self.config.punch else { return };
        let Some(since) = self.checking_since else {
            return;
        };
        if self.punch.decided || self.has_direct_path() || now < since + cfg.delay {
            return;
        }
        self.punch.delay_elapsed = true;
        if self.gathering != Gathering::Complete || !self.remote_complete {
            return;
        }
        self.punch.decided = true;
        let srflx_ports = |cands: &[Candidate], ip: Option<IpAddr>| -> Vec<u16> {
            let mut ports: Vec<u16> = cands
                .iter()
                .filter(|c| c.kind == CandidateKind::ServerReflexive)
                .filter(|c| ip.is_none_or(|ip| c.address.ip() == ip))
                .map(|c| c.address.port())
                .collect();
            // Answers (and so candidates) can arrive out of order; a sequential allocator
            // handed the ports out in ascending order, which is what prediction needs.
            ports.sort_unstable();
            ports
        };
        let first_srflx = |cands: &[Candidate]| {
            cands
                .iter()
                .find(|c| c.kind == CandidateKind::ServerReflexive)
                .map(|c| c.address)
        };
        // A peer without server-reflexive candidates sits on its host address (no NAT).
        // Punch sockets are IPv4 (the family NATs are about): the fallback host must be too.
        let first_public = |cands: &[Candidate]| {
            first_srflx(cands).or_else(|| {
                cands
                    .iter()
                    .find(|c| c.kind == CandidateKind::Host && c.address.is_ipv4())
                    .map(|c| c.address)
            })
        };
        let hard = |ports: &[u16]| ports.windows(2).any(|w| w[0] != w[1]);
        let (mine, theirs) = (first_srflx(&self.locals), first_srflx(&self.remotes));
        let my_ports = srflx_ports(&self.locals, mine.map(|a| a.ip()));
        let their_ports = srflx_ports(&self.remotes, theirs.map(|a| a.ip()));
        let (self_hard, remote_hard) = (hard(&my_ports), hard(&their_ports));
        if self_hard && !remote_hard {
            let Some(easy) = first_public(&self.remotes) else {
                return;
            };
            // A sequential allocator is found by the peer's prediction; no sockets needed.
            let sequential = PortPredictor::new(&my_ports)
                .is_ok_and(|p| matches!(p.allocation(), PortAllocation::Sequential { .. }));
            if sequential {
                return;
            }
            // The sockets go where the varying mappings came from: the srflx candidate's base.
            let Some(ip) = self
                .locals
                .iter()
                .find(|c| c.kind == CandidateKind::ServerReflexive && Some(c.address) == mine)
                .map(|c| c.base.ip())
            else {
                return;
            };
            if let Ok(mut plan) = HardSidePlan::new(cfg.hard, easy, now) {
                if let Some(PunchAction::BindUdp { count }) = plan.poll_action() {
                    let token = IoToken(self.next_token);
                    self.next_token = self.next_token.wrapping_add(1);
                    self.punch.action = Some(Action::BindSockets { token, count, ip });
                    self.punch.token = Some(token);
                }
                self.punch
                    .sockets
                    .reserve(usize::from(plan.sockets_needed()));
                self.punch.hard = Some(plan);
            }
        } else if !self_hard && remote_hard {
            let Some(target) = theirs else { return };
            let from = self
                .locals
                .iter()
                .find(|c| c.kind == CandidateKind::Host && c.address.is_ipv4() == target.is_ipv4());
            let Some(from) = from.map(|c| c.base) else {
                return;
            };
            let predicted: Vec<u16> = match PortPredictor::new(&their_ports) {
                Ok(p) if matches!(p.allocation(), PortAllocation::Sequential { .. }) => {
                    // The peer's first checks to us go out while it still gathers, so the
                    // mapping towards us may sit in a gap between its observed ports (one
                    // server asked twice, via OTHER-ADDRESS, leaves such a gap): those first.
                    gap_ports(&their_ports)
                        .chain(p.predicted(cfg.predicted_ports))
                        .collect()
                }
                _ => Vec::new(),
            };
            let seed = self.rng.next_u64();
            if let Ok(plan) = EasySidePlan::new(cfg.easy, target.ip(), predicted, seed, now) {
                self.punch.easy = Some(plan);
                self.punch.easy_from = Some(from);
            }
        }
    }

    /// The next punch probe due, started as a single-shot transaction.
    pub(super) fn start_probe(&mut self, now: Instant) -> Option<usize> {
        // Probes never take the last slots: checks and consent must always find room.
        if self.has_direct_path()
            || self.remote.is_none()
            || self.free_transactions() <= PROBE_RESERVE
        {
            return None;
        }
        let (local, to) = if let Some(plan) = self.punch.hard.as_mut() {
            let probe = plan.poll_probe(now)?;
            (
                *self.punch.sockets.get(usize::from(probe.socket_index))?,
                probe.to,
            )
        } else {
            let to = self.punch.easy.as_mut()?.poll_probe(now)?;
            (self.punch.easy_from?, to)
        };
        // Probes are not retransmitted; they only wait a short while for an answer.
        self.start_transaction(now, Purpose::Probe, local, to, 1, PROBE_RTO)
    }

    pub(super) fn probe_succeeded(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        rtt: Duration,
    ) {
        let Some(li) = self.local_or_punch_socket(local) else {
            return;
        };
        let Some(ri) = self.remote_or_peer_reflexive(remote, PRFLX_PRIORITY) else {
            return;
        };
        if let Ok(Some(pi)) = self.form_pair(now, li, ri) {
            let use_candidate =
                self.controlling && self.config.nomination == Nomination::Aggressive;
            self.pair_succeeded(now, pi, use_candidate, rtt);
        }
    }

    /// The local candidate whose socket is `local`, adopting a punch socket as one if need be.
    pub(super) fn local_or_punch_socket(&mut self, local: SocketAddr) -> Option<usize> {
        self.local_for_socket(local)
            .or_else(|| self.adopt_punch_socket(local))
    }

    /// A check arrived on one of the extra punch sockets: it becomes a local candidate (never
    /// signalled) so the pair through it can be checked and used.
    pub(super) fn adopt_punch_socket(&mut self, local: SocketAddr) -> Option<usize> {
        if !self.punch.sockets.contains(&local)
            || self.locals.len() >= self.config.max_local_candidates + 16
        {
            return None;
        }
        self.locals.push(Candidate::host(local, 1));
        Some(self.locals.len() - 1)
    }
}

/// Ports strictly between successive sorted observations that were not observed themselves, at
/// most [`MAX_GAP_PORTS`] of them: where a sequential allocator put mappings made between them.
pub(super) fn gap_ports(sorted: &[u16]) -> impl Iterator<Item = u16> + '_ {
    sorted
        .windows(2)
        .flat_map(|w| (w[0].saturating_add(1)..w[1]).take(MAX_GAP_PORTS))
        .take(MAX_GAP_PORTS)
}

/// Gaps wider than this are not a sequential allocator's few intervening mappings.
const MAX_GAP_PORTS: usize = 8;
