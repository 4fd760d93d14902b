//! TURN inside the agent: allocating, and wrapping what leaves from the relayed candidate.

use core::net::SocketAddr;

use super::Agent;
use crate::io::Transmit;
use crate::time::Instant;
use crate::turn::{ClientConfig, ClientError};

impl Agent {
    /// Allocates on the TURN server `config.server`, reached from the local socket (or TCP
    /// connection) `base`. Call it before [`gather`](Self::gather) so that end-of-candidates
    /// waits for the relayed candidate; a later call still adds it, trickled after. Of several
    /// servers, the one with the lowest round-trip time is kept and the others released.
    pub fn add_turn_server(
        &mut self,
        now: Instant,
        base: SocketAddr,
        config: ClientConfig,
    ) -> Result<(), ClientError> {
        self.observe(now);
        let seed = self.rng.next_u64();
        self.relays.allocate(now, &mut self.ice, base, config, seed)
    }

    /// Whether `from` is one of our TURN servers.
    pub fn is_turn_server(&self, from: SocketAddr) -> bool {
        self.relays.is_server(from)
    }

    /// Releases every allocation (RFC 8656 §7.3: Refresh with LIFETIME 0), for a connection
    /// that ends; the requests come out of [`poll_transmit`](Self::poll_transmit).
    pub fn close(&mut self, now: Instant) {
        self.observe(now);
        self.relays.close(now);
    }

    /// Wraps the ICE session's `len` bytes in `out`, sent from `relayed` to `to`, for the TURN
    /// server, back into `out`.
    pub(super) fn wrap_from_relay(
        &mut self,
        now: Instant,
        relayed: SocketAddr,
        to: SocketAddr,
        len: usize,
        out: &mut [u8],
    ) -> Option<Transmit> {
        let payload = self.scratch.get_mut(..len)?;
        payload.copy_from_slice(out.get(..len)?);
        self.relays
            .wrap(now, relayed, to, &self.scratch[..len], out)
            .ok()
    }
}
