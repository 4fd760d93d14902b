//! Hard-NAT punching glue: deciding a plan from the candidates, its probes and its extra sockets.

#[allow(unused_imports)]
use super::*;

impl Agent {
    /// This host's NAT mapping behaviour (RFC 4787) as netcheck measured it. The punch planner
    /// then knows whether this side is the hard one instead of reading it from the
    /// server-reflexive ports, which say nothing with a single STUN server.
    pub fn set_local_mapping(&mut self, mapping: Behaviour) {
        self.local_mapping = mapping;
    }

    /// The mapping behaviour the punch planner works with: netcheck's measure, or
    /// [`Behaviour::Unknown`] (the server-reflexive ports decide) when there is none.
    pub fn local_mapping(&self) -> Behaviour {
        self.local_mapping
    }

    /// Whether this side's NAT maps per destination: netcheck's measure when there is one,
    /// else whether its server-reflexive ports differ.
    fn self_is_hard(&self, my_ports: &[u16]) -> bool {
        match self.local_mapping {
            Behaviour::EndpointIndependent => false,
            Behaviour::AddressDependent | Behaviour::AddressAndPortDependent => true,
            Behaviour::Unknown => varies(my_ports),
        }
    }

    /// Whether hard-NAT punching may still find a path: about to be decided, running, or with
    /// probes awaiting answers. Ordinary checks give up long before a birthday search does.
    pub(super) fn punch_may_connect(&self) -> bool {
        let undecided = self.config.punch.is_some()
            && !self.punch.decided
            && self.gathering == Gathering::Complete;
        undecided
            || self.punch.blind_at.is_some()
            || self.punch.hard.as_ref().is_some_and(|p| !p.is_finished())
            || self.punch.easy.as_ref().is_some_and(|p| !p.is_finished())
            || self
                .transactions
                .iter()
                .any(|t| t.data.purpose == Purpose::Probe)
    }

    /// Decides, once, whether this side should punch as the hard or the easy side: when checks
    /// have not connected after the configured delay, both sides know all candidates, and
    /// exactly one side's server-reflexive candidates show an endpoint-dependent mapping
    /// (different ports towards different servers). When neither side's candidates can show it
    /// (one observation each: a single server without RFC 5780), the blind fallback is armed.
    pub(super) fn maybe_start_punch(&mut self, now: Instant) {
        let Some(cfg) = self.config.punch else { return };
        let Some(since) = self.checking_since else {
            return;
        };
        self.maybe_start_blind_punch(now, cfg);
        if self.punch.decided || self.has_direct_path() || now < since + cfg.delay {
            return;
        }
        self.punch.delay_elapsed = true;
        if self.gathering != Gathering::Complete || !self.remote_complete {
            return;
        }
        self.punch.decided = true;
        let (mine, theirs) = (first_srflx(&self.locals), first_srflx(&self.remotes));
        let my_ports = srflx_ports(&self.locals, mine.map(|a| a.ip()));
        let their_ports = srflx_ports(&self.remotes, theirs.map(|a| a.ip()));
        let (self_hard, remote_hard) = (self.self_is_hard(&my_ports), varies(&their_ports));
        if self_hard && !remote_hard {
            self.start_hard_plan(now, cfg, &my_ports, mine);
        } else if !self_hard && remote_hard {
            self.start_easy_plan(now, cfg, &their_ports, theirs);
        } else if !self_hard
            && my_ports.len() <= 1
            && their_ports.len() <= 1
            && (mine.is_some() || theirs.is_some())
            && let Some(delay) = cfg.blind_delay
        {
            // Neither side can tell how its NAT maps. If ordinary checks still fail by
            // `blind_delay`, the side that cannot rule out being hard plays both halves.
            self.punch.blind_at = Some(since + delay.max(cfg.delay));
        }
    }

    /// Runs the armed blind fallback once its time has come and no direct path appeared: the
    /// easy half when the peer is behind a NAT (it may be hard), the hard half when this side
    /// is, unless its own mapping was seen to stay the same towards two servers.
    fn maybe_start_blind_punch(&mut self, now: Instant, cfg: PunchConfig) {
        let Some(at) = self.punch.blind_at else {
            return;
        };
        if now < at {
            return;
        }
        self.punch.blind_at = None;
        if self.has_direct_path() {
            return;
        }
        let (mine, theirs) = (first_srflx(&self.locals), first_srflx(&self.remotes));
        let my_ports = srflx_ports(&self.locals, mine.map(|a| a.ip()));
        let their_ports = srflx_ports(&self.remotes, theirs.map(|a| a.ip()));
        // Without a server-reflexive candidate this side has no NAT: never the hard side.
        let known_easy = self.local_mapping == Behaviour::EndpointIndependent
            || mine.is_none_or(|m| self.mapping_seen_stable(m));
        let hard = !known_easy && self.start_hard_plan(now, cfg, &my_ports, mine);
        let easy = self.start_easy_plan(now, cfg, &their_ports, theirs);
        if hard || easy {
            self.push_event(IceEvent::BlindPunching { hard, easy });
        }
    }

    /// Whether the server-reflexive address `mapped` was answered by two or more different
    /// servers: an endpoint-independent mapping, seen.
    fn mapping_seen_stable(&self, mapped: SocketAddr) -> bool {
        let mut servers = self
            .srflx_observations
            .iter()
            .filter(|(m, _)| *m == mapped)
            .map(|(_, s)| *s);
        servers
            .next()
            .is_some_and(|first| servers.any(|s| s != first))
    }

    /// Starts the hard side's plan towards the peer's public address (its first
    /// server-reflexive, or host, candidate); whether it started.
    fn start_hard_plan(
        &mut self,
        now: Instant,
        cfg: PunchConfig,
        my_ports: &[u16],
        mine: Option<SocketAddr>,
    ) -> bool {
        let Some(easy) = first_public(&self.remotes) else {
            return false;
        };
        // A sequential allocator is found by the peer's prediction; no sockets needed.
        let sequential = PortPredictor::new(my_ports)
            .is_ok_and(|p| matches!(p.allocation(), PortAllocation::Sequential { .. }));
        if sequential {
            return false;
        }
        // The sockets go where the varying mappings came from: the srflx candidate's base.
        let Some(ip) = self
            .locals
            .iter()
            .find(|c| c.kind == CandidateKind::ServerReflexive && Some(c.address) == mine)
            .map(|c| c.base.ip())
        else {
            return false;
        };
        let Ok(mut plan) = HardSidePlan::new(cfg.hard, easy, now) else {
            return false;
        };
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
        true
    }

    /// Starts the easy side's plan: probes over the peer's (hard) public IP from the host
    /// socket of the same family, predicted ports first; whether it started.
    fn start_easy_plan(
        &mut self,
        now: Instant,
        cfg: PunchConfig,
        their_ports: &[u16],
        theirs: Option<SocketAddr>,
    ) -> bool {
        let Some(target) = theirs else { return false };
        // Behind a NAT64 an IPv6 host socket probes an IPv4 peer (see `synthesis`).
        let from = self.locals.iter().find(|c| {
            c.kind == CandidateKind::Host && self.destination_from(c.base, target).is_some()
        });
        let Some(from) = from.map(|c| c.base) else {
            return false;
        };
        let predicted: Vec<u16> = match PortPredictor::new(their_ports) {
            Ok(p) if matches!(p.allocation(), PortAllocation::Sequential { .. }) => {
                // The peer's first checks to us go out while it still gathers, so the
                // mapping towards us may sit in a gap between its observed ports (one
                // server asked twice, via OTHER-ADDRESS, leaves such a gap): those first.
                gap_ports(their_ports)
                    .chain(p.predicted(cfg.predicted_ports))
                    .collect()
            }
            _ => Vec::new(),
        };
        let seed = self.rng.next_u64();
        let Ok(plan) = EasySidePlan::new(cfg.easy, target.ip(), predicted, seed, now) else {
            return false;
        };
        self.punch.easy = Some(plan);
        self.punch.easy_from = Some(from);
        true
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
        // The agent-wide budget: both plans end once it is spent.
        let budget = self.config.punch.map_or(0, |c| c.max_probes);
        if self.punch.probes_sent >= budget {
            self.punch.hard = None;
            self.punch.easy = None;
            return None;
        }
        // Both halves run at once only in the blind fallback; the hard half goes first.
        let hard = self
            .punch
            .hard
            .as_mut()
            .and_then(|plan| plan.poll_probe(now));
        let (local, to) = if let Some(probe) = hard {
            (
                *self.punch.sockets.get(usize::from(probe.socket_index))?,
                probe.to,
            )
        } else {
            let to = self.punch.easy.as_mut()?.poll_probe(now)?;
            (self.punch.easy_from?, to)
        };
        // The plans aim at the peer's IPv4 NAT; behind a NAT64 that is its synthesised address.
        let to = self.destination_from(local, to)?;
        // Probes are not retransmitted; they only wait a short while for an answer.
        let ti = self.start_transaction(now, Purpose::Probe, local, to, 1, PROBE_RTO)?;
        self.punch.probes_sent = self.punch.probes_sent.saturating_add(1);
        if self.punch.probes_sent >= budget {
            self.punch.hard = None;
            self.punch.easy = None;
        }
        Some(ti)
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

/// The sorted ports of the server-reflexive candidates on `ip` (all of them without one). A
/// sequential allocator hands ports out in ascending order, which is what prediction needs,
/// and answers (so candidates) can arrive out of order.
fn srflx_ports(cands: &[Candidate], ip: Option<IpAddr>) -> Vec<u16> {
    let mut ports: Vec<u16> = cands
        .iter()
        .filter(|c| c.kind == CandidateKind::ServerReflexive)
        .filter(|c| ip.is_none_or(|ip| c.address.ip() == ip))
        .map(|c| c.address.port())
        .collect();
    ports.sort_unstable();
    ports
}

/// The first server-reflexive candidate's address.
fn first_srflx(cands: &[Candidate]) -> Option<SocketAddr> {
    cands
        .iter()
        .find(|c| c.kind == CandidateKind::ServerReflexive)
        .map(|c| c.address)
}

/// The address a peer is reached at: its first server-reflexive candidate, or without one its
/// first IPv4 host candidate (no NAT). Punch sockets are IPv4, the family NATs are about.
fn first_public(cands: &[Candidate]) -> Option<SocketAddr> {
    first_srflx(cands).or_else(|| {
        cands
            .iter()
            .find(|c| c.kind == CandidateKind::Host && c.address.is_ipv4())
            .map(|c| c.address)
    })
}

/// Whether the observed ports differ: an endpoint-dependent ("hard") mapping.
fn varies(ports: &[u16]) -> bool {
    ports.windows(2).any(|w| w[0] != w[1])
}
