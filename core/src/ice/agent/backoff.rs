//! The probe budget once connected: how long failed pairs that beat the selected one (and, on a
//! relay, STUN re-gathering) wait before the next try (doubling from `upgrade_interval` up to `upgrade_backoff_max`), what brings the
//! waits back to prompt, and which pairs are not worth re-probing at all.

#[allow(unused_imports)]
use super::*;

impl Agent {
    /// The wait after `steps` failed re-probes: `upgrade_interval` doubled `steps` times, at
    /// most `upgrade_backoff_max` (never less than `upgrade_interval`).
    pub(super) fn upgrade_wait(&self, steps: u32) -> Duration {
        let base = self.config.upgrade_interval;
        let cap = self.config.upgrade_backoff_max.max(base);
        base.saturating_mul(1u32 << steps.min(31)).min(cap)
    }

    /// Whether failed re-probes lengthen the next wait: once a path is selected, relayed or
    /// direct (before that, checks are the connection attempt itself). On a direct path too:
    /// a better pair that keeps failing (the peer's host address on another LAN) was otherwise
    /// re-probed every `upgrade_interval` for ever, ~3,700 datagrams an hour in the simulation,
    /// fifty times what sized keepalives send on the path.
    pub(super) fn backing_off(&self) -> bool {
        self.selected.is_some()
    }

    /// Back to prompt re-probing: every pair's wait and the re-gathering's start again at
    /// `upgrade_interval`, and waits already longer end that soon. Pairs whose remote
    /// candidate was superseded stay retired.
    pub(super) fn reset_upgrade_backoff(&mut self, now: Instant) {
        let soon = now + self.config.upgrade_interval;
        for pi in 0..self.checklist.pairs().len() {
            let retired = self
                .checklist
                .get(pi)
                .is_some_and(|p| self.remote_superseded(p.remote));
            if let Some(p) = self.checklist.get_mut(pi) {
                p.backoff_steps = 0;
                if p.state == PairState::Failed && !retired {
                    p.retry_at = p.retry_at.min(soon);
                }
            }
        }
        self.regather_steps = 0;
        self.regather_at = self.regather_at.min(soon);
    }

    /// The host's network changed (an address came or went, the default route moved): the
    /// probe backoff is reset, failed pairs that beat the selected one are re-probed at once,
    /// and the STUN servers are asked again (new server-reflexive candidates are trickled).
    /// Drivers call it when the OS reports a change; host candidates for new addresses are
    /// added with [`add_host_candidate`](Self::add_host_candidate) as usual.
    pub fn network_changed(&mut self, now: Instant) {
        self.observe(now);
        self.reset_upgrade_backoff(now);
        for pi in 0..self.checklist.pairs().len() {
            let retired = self
                .checklist
                .get(pi)
                .is_some_and(|p| self.remote_superseded(p.remote));
            if let Some(p) = self.checklist.get_mut(pi) {
                if p.state == PairState::Failed && !retired {
                    p.retry_at = now;
                }
            }
        }
        if self.gathering != Gathering::NotStarted {
            self.ask_stun_servers(now);
            self.regather_at = now + self.config.upgrade_interval;
        }
    }

    /// Whether remote candidate `ri` is a server-reflexive address the peer has since
    /// replaced: a later one has the same foundation and related address (the peer's mapping
    /// from that base towards that server changed, as a symmetric NAT's does once it expires).
    /// Its pairs are not re-probed after they fail.
    pub(super) fn remote_superseded(&self, ri: usize) -> bool {
        let Some(c) = self.remotes.get(ri) else {
            return false;
        };
        c.kind == CandidateKind::ServerReflexive
            && self.remotes[ri + 1..].iter().any(|r| {
                r.kind == CandidateKind::ServerReflexive
                    && r.foundation == c.foundation
                    && r.related == c.related
            })
    }

    /// The pairs of remote `ri`, a port churn of earlier server-reflexive candidates, take
    /// over the backoff of those candidates' pairs from the same local candidate: they are
    /// checked once, as any new address is, and then wait as long as their predecessors would
    /// have (a symmetric NAT's mappings churn at every re-gathering that outlives them).
    pub(super) fn inherit_backoff(&mut self, ri: usize) {
        let Some(c) = self.remotes.get(ri).copied() else {
            return;
        };
        for pi in 0..self.checklist.pairs().len() {
            let Some(local) = self
                .checklist
                .get(pi)
                .filter(|p| p.remote == ri)
                .map(|p| p.local)
            else {
                continue;
            };
            let steps = self
                .checklist
                .pairs()
                .iter()
                .filter(|q| q.local == local && q.remote < ri)
                .filter(|q| {
                    let r = &self.remotes[q.remote];
                    r.kind == CandidateKind::ServerReflexive
                        && r.foundation == c.foundation
                        && r.related == c.related
                })
                .map(|q| q.backoff_steps)
                .max();
            if let (Some(steps), Some(p)) = (steps, self.checklist.get_mut(pi)) {
                p.backoff_steps = steps;
            }
        }
    }

    /// Retires the failed pairs of remote candidates that `ri` (just added) supersedes.
    pub(super) fn retire_superseded(&mut self, ri: usize) {
        for pi in 0..self.checklist.pairs().len() {
            let Some(p) = self.checklist.get(pi) else {
                continue;
            };
            if p.remote != ri && p.state == PairState::Failed && self.remote_superseded(p.remote) {
                if let Some(p) = self.checklist.get_mut(pi) {
                    p.retry_at = Instant::FAR_FUTURE;
                }
            }
        }
    }
}

/// Whether `c` only moves the port of a server-reflexive candidate `known` already holds (same
/// foundation, related address and IP): a mapping that expired and was made again, not a new
/// network, so the probe backoff goes on.
pub(super) fn is_port_churn(known: &[Candidate], c: &Candidate) -> bool {
    c.kind == CandidateKind::ServerReflexive
        && known.iter().any(|k| {
            k.kind == CandidateKind::ServerReflexive
                && k.foundation == c.foundation
                && k.related == c.related
                && k.address.ip() == c.address.ip()
        })
}
