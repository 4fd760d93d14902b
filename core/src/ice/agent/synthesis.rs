//! NAT64 (RFC 6052/6146): how an IPv6-only agent reaches IPv4 STUN servers and IPv4 peers.
//!
//! On an IPv6-only network the only way to an IPv4 address is the NAT64, addressed by the
//! IPv4-embedded IPv6 address under its prefix (learned by RFC 7050 discovery, see
//! [`crate::nat64::discovery`]). Once the driver tells the agent the prefix, an agent with no
//! IPv4 host candidate:
//!
//! - sends its Binding requests for IPv4 STUN servers to their synthesised addresses; the
//!   server sees the NAT64's IPv4 pool address and answers with it, which becomes an IPv4
//!   server-reflexive candidate on an IPv6 base, the address an IPv4 peer can reach it at;
//! - gives every IPv4 candidate the peer signals that the NAT64 can reach a synthesised IPv6
//!   twin (same kind, priority and foundation), which pairs with its IPv6 host candidates, so
//!   its checks go out through the NAT64 (RFC 8445 §5.1.1.1 pairs only one family).
//!
//! A dual-stack agent synthesises nothing: it reaches IPv4 natively, which is cheaper and does
//! not depend on the translator.

#[allow(unused_imports)]
use super::*;

use core::net::Ipv4Addr;

use crate::nat64::Nat64Prefix;

impl Agent {
    /// Tells the agent the NAT64 prefix of its network (`None`: there is none). Set it before
    /// [`gather`](Self::gather) so IPv4 STUN servers are asked through it; IPv4 candidates the
    /// peer signalled already get their synthesised twins at once.
    pub fn set_nat64_prefix(&mut self, now: Instant, prefix: Option<Nat64Prefix>) {
        self.observe(now);
        self.nat64 = prefix;
        for i in 0..self.remotes.len() {
            let c = self.remotes[i];
            if c.kind == CandidateKind::PeerReflexive {
                continue;
            }
            if let Some(twin) = self.nat64_twin(&c) {
                // Table full: the twin is lost like any candidate past the cap.
                let _ = self.add_remote_candidate(now, twin);
            }
        }
    }

    /// The NAT64 prefix the agent was given.
    pub fn nat64_prefix(&self) -> Option<Nat64Prefix> {
        self.nat64
    }

    /// The prefix to synthesise with: one is known and this agent has no IPv4 host candidate
    /// that leads anywhere (loopback and link-local ones do not: a driver on an IPv6-only host
    /// may still bind 127.0.0.1).
    fn synthesising_prefix(&self) -> Option<Nat64Prefix> {
        let has_v4 = self.locals.iter().any(|c| match c.base.ip() {
            IpAddr::V4(v4) => {
                c.kind == CandidateKind::Host && !v4.is_loopback() && !v4.is_link_local()
            }
            IpAddr::V6(_) => false,
        });
        self.nat64.filter(|_| !has_v4)
    }

    /// The IPv6 twin of a remote IPv4 candidate the NAT64 can carry checks to.
    pub(super) fn nat64_twin(&self, c: &Candidate) -> Option<Candidate> {
        let prefix = self.synthesising_prefix()?;
        let IpAddr::V4(v4) = c.address.ip() else {
            return None;
        };
        if !reachable_through_nat64(v4, c.kind, prefix) {
            return None;
        }
        let address = prefix.synthesize_socket(c.address)?;
        Some(Candidate { address, ..*c })
    }

    /// Where a datagram from local socket `local` to `to` is sent: `to` itself when the
    /// families match, its synthesised address from an IPv6 socket of an agent behind a NAT64,
    /// or nowhere. Punch probes aim at the peer's IPv4 NAT this way.
    pub(super) fn destination_from(&self, local: SocketAddr, to: SocketAddr) -> Option<SocketAddr> {
        if local.is_ipv4() == to.is_ipv4() {
            return Some(to);
        }
        if local.is_ipv4() {
            return None;
        }
        self.synthesising_prefix()?.synthesize_socket(to)
    }

    /// Where a Binding request from `base` to the configured STUN server `server` goes: the
    /// server itself when the families match, its synthesised address when an IPv6-only agent
    /// has a NAT64 to reach an IPv4 server through, or nowhere.
    pub(super) fn stun_destination(
        &self,
        base: SocketAddr,
        server: SocketAddr,
    ) -> Option<SocketAddr> {
        // Through the NAT64 only to servers it forwards to (the rule for what the internet sees).
        if let (IpAddr::V6(_), IpAddr::V4(v4)) = (base.ip(), server.ip()) {
            let prefix = self.synthesising_prefix()?;
            if !reachable_through_nat64(v4, CandidateKind::ServerReflexive, prefix) {
                return None;
            }
        }
        self.destination_from(base, server)
    }
}

/// Whether the NAT64 under `prefix` can carry traffic to `v4` for a candidate of `kind`.
///
/// Never to addresses no translator forwards to (unspecified, loopback, multicast, broadcast,
/// link-local). A peer's host candidate on a private or shared (CGNAT) address is on the peer's
/// LAN, not behind the NAT64, and RFC 6052 §3.1 forbids the well-known prefix for non-global
/// addresses anyway; server-reflexive and relayed addresses are what the internet sees, so
/// they are always tried.
fn reachable_through_nat64(v4: Ipv4Addr, kind: CandidateKind, prefix: Nat64Prefix) -> bool {
    if v4.is_unspecified()
        || v4.is_loopback()
        || v4.is_multicast()
        || v4.is_broadcast()
        || v4.is_link_local()
    {
        return false;
    }
    let local_scope = v4.is_private() || is_shared(v4);
    match kind {
        CandidateKind::Host | CandidateKind::PeerReflexive => !local_scope,
        _ => !(local_scope && prefix.is_well_known()),
    }
}

/// RFC 6598 shared address space (100.64.0.0/10), used by carrier NATs.
fn is_shared(v4: Ipv4Addr) -> bool {
    let [a, b, ..] = v4.octets();
    a == 100 && (b & 0xc0) == 64
}
