//! `connect`'s progress on stderr: `connect: ...` lines for people, or one `--json` event per
//! line (stdout carries only the peer's data).

use std::io;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use holepunch_core::ice::agent::PathInfo;
use holepunch_core::ice::candidate::{Candidate, CandidateKind};
use holepunch_tokio::ice::RestartReason;
use holepunch_tokio::quic_identity::Fingerprint;

use super::tally::Counts;
use crate::json::{self, Event};
use crate::{EXIT_FAILED, format_ms};

/// Where and how progress is reported.
#[derive(Clone, Copy, Debug)]
pub struct Reporter {
    /// `--json`.
    pub json: bool,
    /// When the command started (for `elapsed_ms`).
    pub started: Instant,
    /// The subcommand, prefixed to human lines (`connect`, `send`, `receive`).
    pub command: &'static str,
}

impl Reporter {
    fn emit(&self, event: &impl Event, human: &str) {
        if self.json {
            event.eprint();
        } else {
            eprintln!("{}: {human}", self.command);
        }
    }

    fn elapsed_ms(&self) -> u64 {
        json::ms(self.started.elapsed())
    }

    /// The host candidates, as soon as the sockets are bound.
    pub fn gathered(&self, candidates: usize) {
        let event = json::Gathered {
            candidates: candidates as u64,
            elapsed_ms: self.elapsed_ms(),
        };
        self.emit(&event, &format!("gathered {candidates} host candidates"));
    }

    /// A candidate learnt later (server-reflexive, …).
    pub fn candidate(&self, c: &Candidate) {
        // A port-mapped candidate is signalled as `srflx` (RFC 8839 has no type for it), but
        // the user is told it came from the gateway.
        let kind = match c.kind {
            CandidateKind::PortMapped => "portmapped",
            kind => kind.sdp_name(),
        };
        let event = json::CandidateFound {
            kind: kind.into(),
            address: c.address.to_string(),
            elapsed_ms: self.elapsed_ms(),
        };
        self.emit(&event, &format!("candidate {kind} {}", c.address));
    }

    /// Still nothing from the peer.
    pub fn waiting(&self, peer: &str) {
        let event = json::Waiting {
            peer: peer.into(),
            elapsed_ms: self.elapsed_ms(),
        };
        self.emit(&event, &format!("waiting for peer {peer}…"));
    }

    /// Connectivity checks started.
    pub fn checking(&self) {
        let event = json::Checking {
            elapsed_ms: self.elapsed_ms(),
        };
        self.emit(&event, "checking candidate pairs");
    }

    /// `connected` (first path) or `path_changed`.
    pub fn path(&self, first: bool, p: &PathInfo) {
        self.path_with_key(first, p, None);
    }

    /// `connected` or `path_changed`, naming the peer's key (stream mode).
    pub fn path_with_key(&self, first: bool, p: &PathInfo, peer_key: Option<&Fingerprint>) {
        let kind = if p.relayed { "relay" } else { "direct" };
        let elapsed = self.started.elapsed();
        let path = json::Path {
            path: kind.into(),
            local: p.local.to_string(),
            remote: p.remote.to_string(),
            rtt_ms: json::ms(p.rtt),
            elapsed_ms: json::ms(elapsed),
            local_type: p.local_kind.sdp_name().into(),
            remote_type: p.remote_kind.sdp_name().into(),
            peer_key: peer_key.map(ToString::to_string),
        };
        let human = format!(
            "{}: {kind} {} -> {} ({}/{}, rtt {}, after {})",
            if first { "connected" } else { "path changed" },
            p.local,
            p.remote,
            p.local_kind.sdp_name(),
            p.remote_kind.sdp_name(),
            format_ms(p.rtt),
            format_ms(elapsed)
        );
        if first {
            self.emit(&json::Connected(path), &human);
        } else {
            self.emit(&json::PathChanged(path), &human);
        }
    }

    /// The peer's key from its offer, and how it is trusted (`pinned`, `stored`, `known`,
    /// `unverified`).
    pub fn peer_key(&self, key: &Fingerprint, trust: &str) {
        let event = json::PeerKey {
            fingerprint: key.to_string(),
            trust: trust.into(),
        };
        let human = match trust {
            "pinned" => format!("peer key {key} (matches --peer-key)"),
            "stored" => format!("peer key {key} (first use: remembered in known_peers)"),
            "known" => format!("peer key {key} (matches known_peers)"),
            _ => format!(
                "peer key {key} (not verified: pin it with --peer-key or --trust-first-use)"
            ),
        };
        self.emit(&event, &human);
    }

    /// The default key was created.
    pub fn key_created(&self, path: &std::path::Path, key: &Fingerprint) {
        let event = json::KeyCreated {
            path: path.display().to_string(),
            fingerprint: key.to_string(),
        };
        let human = format!("created key {} ({key})", path.display());
        self.emit(&event, &human);
    }

    /// Stream mode: the QUIC session ended.
    pub fn stream_closed(&self, sent: u64, received: u64, why: &str) {
        let event = json::StreamClosed {
            sent_bytes: sent,
            received_bytes: received,
            elapsed_ms: self.elapsed_ms(),
            reason: why.into(),
        };
        let human = format!("closed ({why}): sent {sent} bytes, received {received} bytes");
        self.emit(&event, &human);
    }

    /// Any other event, with its human line.
    pub fn event(&self, event: &impl Event, human: &str) {
        self.emit(event, human);
    }

    /// The path stopped answering.
    pub fn consent_lost(&self, p: &PathInfo) {
        let event = json::ConsentLost {
            local: p.local.to_string(),
            remote: p.remote.to_string(),
            elapsed_ms: self.elapsed_ms(),
        };
        let human = format!(
            "path {} -> {} stopped answering; looking for another",
            p.local, p.remote
        );
        self.emit(&event, &human);
    }

    /// ICE restarted: new credentials and candidates went to the peer.
    pub fn restarted(&self, reason: RestartReason) {
        let (name, why) = match reason {
            RestartReason::Requested => ("signal", "on SIGUSR1"),
            RestartReason::PeerRestarted => ("peer", "because the peer restarted"),
            RestartReason::ConsentLost => ("consent_lost", "because the path lost consent"),
            RestartReason::NetworkChanged => (
                "network_changed",
                "because the path's local address left this host",
            ),
            _ => ("other", "for another reason"),
        };
        let event = json::Restart {
            reason: name.into(),
            elapsed_ms: self.elapsed_ms(),
        };
        let human = format!("ICE restart {why}: gathering again, new candidates sent to the peer");
        self.emit(&event, &human);
    }

    /// The path's keepalive interval changed (agreed with the peer, or back to RFC 7675's).
    pub fn keepalive(&self, interval: Duration) {
        let event = json::Keepalive {
            interval_s: interval.as_secs(),
            elapsed_ms: self.elapsed_ms(),
        };
        let human = format!(
            "keepalive: consent checks on the path every {} s",
            interval.as_secs()
        );
        self.emit(&event, &human);
    }

    /// Hard-NAT punching started blind: no server showed which side's NAT is hard.
    pub fn blind_punching(&self, hard: bool, easy: bool) {
        let event = json::Punching {
            blind: true,
            hard,
            easy,
            elapsed_ms: self.elapsed_ms(),
        };
        let halves = match (hard, easy) {
            (true, true) => "both halves",
            (true, false) => "the hard half",
            _ => "the easy half",
        };
        let human = format!(
            "checks have not connected and the STUN server did not show which NAT is hard \
             (one server without RFC 5780): punching blind, {halves}"
        );
        self.emit(&event, &human);
    }

    /// Signalling closed after the path was found (the session goes on).
    pub fn signalling_closed(&self, error: Option<&io::Error>) {
        let event = json::SignallingClosed {
            reason: error.map(ToString::to_string),
        };
        let human = match error {
            Some(e) => format!("signalling closed: {e}"),
            None => "signalling closed".into(),
        };
        self.emit(&event, &human);
    }

    /// Something worth knowing that does not stop the job.
    pub fn warning(&self, reason: &str) {
        let event = json::Warning {
            reason: reason.into(),
        };
        self.emit(&event, &format!("warning: {reason}"));
    }

    /// The job failed: `failed`, exit 1.
    pub fn failed(&self, reason: &str) -> ExitCode {
        self.emit(&json::Failed::new(reason), &format!("failed: {reason}"));
        ExitCode::from(EXIT_FAILED)
    }

    /// The session ended: what went each way, and what was lost.
    pub fn closed(&self, c: &Counts, why: &str) {
        let event = json::Closed {
            sent_datagrams: c.sent_datagrams,
            sent_bytes: c.sent_bytes,
            received_datagrams: c.received_datagrams,
            received_bytes: c.received_bytes,
            peer_sent_datagrams: c.peer_sent.map(|(d, _)| d),
            peer_sent_bytes: c.peer_sent.map(|(_, b)| b),
            lost_datagrams: c.lost(),
            lost_percent: c.lost_percent(),
            elapsed_ms: self.elapsed_ms(),
            reason: why.into(),
        };
        let human = format!(
            "closed ({why}): sent {} datagrams ({} bytes); {}",
            c.sent_datagrams,
            c.sent_bytes,
            c.received_summary()
        );
        self.emit(&event, &human);
    }
}
