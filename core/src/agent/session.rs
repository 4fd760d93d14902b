//! The signalling side of the agent: credentials, candidates, restarts, and what the driver
//! learnt about the host (port mappings, the NAT64 prefix, the NAT's behaviour).

use core::net::{IpAddr, SocketAddr};

use super::Agent;
use crate::ice::agent::{IceError, PathInfo};
use crate::ice::candidate::Candidate;
use crate::ice::credentials::IceCredentials;
use crate::nat64::Nat64Prefix;
use crate::netcheck::Report;
use crate::time::{Duration, Instant};

impl Agent {
    /// Our ufrag and password, for the offer.
    pub fn local_credentials(&self) -> &IceCredentials {
        self.ice.local_credentials()
    }

    /// Whether we are the controlling side now (a role conflict may have switched it).
    pub fn is_controlling(&self) -> bool {
        self.ice.is_controlling()
    }

    /// The selected path, if any.
    pub fn selected_path(&self) -> Option<PathInfo> {
        self.ice.selected_path()
    }

    /// Adds a host candidate: a local socket's address. `Transmit::from` names it when the
    /// agent sends from that socket.
    pub fn add_host_candidate(&mut self, now: Instant, base: SocketAddr) -> Result<(), IceError> {
        self.observe(now);
        self.ice.add_host_candidate(now, base)
    }

    /// Adds the address a gateway mapped for the host socket `base` (PCP, NAT-PMP or UPnP,
    /// run by the driver) as a port-mapped candidate.
    pub fn add_port_mapping(
        &mut self,
        now: Instant,
        external: SocketAddr,
        base: SocketAddr,
        gateway: IpAddr,
    ) -> Result<(), IceError> {
        self.observe(now);
        let candidate = Candidate::port_mapped(external, base, gateway);
        self.ice.add_local_candidate(now, candidate)
    }

    /// Starts gathering: the STUN servers are asked for every host candidate added so far (a
    /// host candidate added later is asked about when it is added), and end-of-candidates
    /// waits for the TURN allocations started before.
    pub fn gather(&mut self, now: Instant) {
        self.observe(now);
        self.ice.gather(now);
    }

    /// The peer's ufrag and password, from signalling.
    pub fn set_remote_credentials(&mut self, credentials: &IceCredentials) {
        self.ice.set_remote_credentials(credentials);
    }

    /// A candidate the peer signalled (trickle).
    pub fn add_remote_candidate(&mut self, now: Instant, c: Candidate) -> Result<(), IceError> {
        self.observe(now);
        self.ice.add_remote_candidate(now, c)
    }

    /// The peer signalled end-of-candidates.
    pub fn end_of_remote_candidates(&mut self) {
        self.ice.end_of_remote_candidates();
    }

    /// ICE restart (RFC 8445 §9): new credentials; the old path carries data until a new one
    /// is selected or its consent expires. The relay allocation is kept.
    pub fn restart(&mut self, now: Instant) {
        self.observe(now);
        self.ice.restart(now);
    }

    /// The host's network changed: direct pairs are probed again and the STUN servers asked
    /// again (host candidates for new addresses are added as usual).
    pub fn network_changed(&mut self, now: Instant) {
        self.observe(now);
        self.ice.network_changed(now);
    }

    /// The NAT64 prefix the driver discovered (RFC 7050), or `None`: an IPv6-only host then
    /// reaches IPv4 servers and peers at synthesised addresses.
    pub fn set_nat64_prefix(&mut self, now: Instant, prefix: Option<Nat64Prefix>) {
        self.observe(now);
        self.ice.set_nat64_prefix(now, prefix);
    }

    /// What netcheck found about this host's NAT, from a run the driver did itself (a run
    /// started with [`start_netcheck`](Self::start_netcheck) hands its report in by itself):
    /// its mapping behaviour tells the punch planner which side is hard (otherwise it is read
    /// from the server-reflexive ports, which need two STUN servers to show anything).
    pub fn set_nat_report(&mut self, report: &Report) {
        self.ice.set_local_mapping(report.mapping);
    }

    /// How long this host's NAT keeps an idle mapping: keepalives just under it are proposed
    /// to the peer. Returns the proposal (`None`: too short to beat RFC 7675's cadence).
    pub fn set_mapping_lifetime(&mut self, lifetime: Duration) -> Option<Duration> {
        self.ice.set_mapping_lifetime(lifetime)
    }
}
