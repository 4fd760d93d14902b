//! Relayed candidates (RFC 8445 §5.1.1.2): TURN allocations that feed an ICE [`Agent`].
//!
//! [`Relays`] owns one [`turn::Client`] per TURN server and stands between the agent and the
//! sockets for everything that crosses a relay:
//!
//! - **Gathering.** [`Relays::allocate`] starts an allocation on each server and tells the
//!   agent to wait before [`IceEvent::GatheringComplete`](super::agent::IceEvent::GatheringComplete).
//!   Of the servers that answer, the one with the lowest round-trip time is kept (Tailscale's
//!   nearest-region idea, for any TURN fleet): the choice is made when every allocation
//!   finished, or [`CHOICE_WINDOW`] after the first one succeeded, whichever comes first. Its
//!   relayed address becomes the local candidate; the others are released.
//! - **Sending.** The agent sends from a relayed candidate's address as from any other local
//!   socket. The pump asks [`Relays::is_relayed`] for each transmit's `from`, and
//!   [`Relays::wrap`] turns those into ChannelData (or a Send indication until the channel is
//!   bound) for the TURN server, sent from the socket the allocation was made on. The peer gets
//!   a permission and a channel the first time it is sent to.
//! - **Receiving.** Datagrams from a TURN server go to [`Relays::handle_datagram`] first: TURN
//!   responses are consumed, and relayed data comes back as [`RelayReceived::Data`], to be fed
//!   to the agent as arriving on the relayed address from the peer.
//!
//! The data path allocates nothing: wrapping writes into the caller's buffer, unwrapping
//! borrows from the datagram. Adding a peer (once per remote address) grows a table.

use alloc::vec::Vec;
use core::net::SocketAddr;

use super::agent::Agent;
use super::candidate::Candidate;
use crate::Transmit;
use crate::time::{Duration, Instant};
use crate::turn::{self, ClientConfig, ClientError, ClientEvent, TurnError};

/// Most TURN servers one agent allocates on.
pub const MAX_RELAYS: usize = 8;

/// How long slower servers get, after the first allocation succeeded, to answer and compete
/// on round-trip time; a server that has not answered by then is given up.
pub const CHOICE_WINDOW: Duration = Duration::from_millis(500);

/// What a datagram that arrived on a local socket was, as far as the relays are concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayReceived<'a> {
    /// A TURN server's response or indication, handled here.
    Consumed,
    /// Data a peer sent through a relay: feed it to the agent as arriving on `relayed` from
    /// `peer`.
    Data {
        /// The relayed address (the local candidate) it arrived on.
        relayed: SocketAddr,
        /// The peer that sent it, as the TURN server saw it.
        peer: SocketAddr,
        /// The payload, borrowed from the datagram.
        payload: &'a [u8],
    },
    /// Not from a TURN server of ours: for the agent.
    NotRelayed,
}

/// Something about the relays the application may want to report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayEvent {
    /// The allocation on `server` was chosen (lowest round-trip time): its relayed address is
    /// now a local candidate.
    Allocated {
        /// The TURN server.
        server: SocketAddr,
        /// The relayed address.
        relayed: SocketAddr,
        /// The round-trip time of its Allocate exchange.
        rtt: Duration,
    },
    /// Another server was chosen (or answered too late): this allocation is released.
    NotChosen {
        /// The TURN server.
        server: SocketAddr,
    },
    /// The allocation on `server` failed or was lost.
    Failed {
        /// The TURN server.
        server: SocketAddr,
        /// Why.
        error: TurnError,
    },
}

/// Where one server's allocation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Standing {
    /// Allocate in flight.
    Pending,
    /// Allocated, waiting for the choice.
    Ready {
        relayed: SocketAddr,
        mapped: Option<SocketAddr>,
        rtt: Duration,
    },
    /// The one in use.
    Chosen { relayed: SocketAddr },
    /// Failed, or released for another.
    Out,
}

/// A TURN server the agent allocated on.
#[derive(Debug)]
struct Relay {
    client: turn::Client,
    /// The local socket (or TCP connection) the server is reached from.
    base: SocketAddr,
    standing: Standing,
    /// Whether the agent still waits for this allocation before gathering completes.
    gathering: bool,
}

/// TURN allocations feeding relayed candidates into an ICE agent (see the module docs).
#[derive(Debug, Default)]
pub struct Relays {
    relays: Vec<Relay>,
    events: Vec<RelayEvent>,
    /// When the choice is made at the latest (set by the first successful allocation).
    choose_at: Option<Instant>,
}

impl Relays {
    /// No relays yet.
    pub fn new() -> Self {
        Relays::default()
    }

    /// Starts an allocation on `config.server`, reached from the local socket `base`. Call it
    /// before [`Agent::gather`] so that gathering waits for the relayed candidate; a later
    /// call still adds the candidate, trickled after end-of-candidates.
    pub fn allocate(
        &mut self,
        now: Instant,
        agent: &mut Agent,
        base: SocketAddr,
        config: ClientConfig,
        seed: u64,
    ) -> Result<(), ClientError> {
        if self.relays.len() >= MAX_RELAYS {
            return Err(ClientError::TooManyPeers);
        }
        let mut client = turn::Client::new(config, seed);
        client.allocate(now)?;
        agent.begin_external_gathering();
        self.relays.push(Relay {
            client,
            base,
            standing: Standing::Pending,
            gathering: true,
        });
        Ok(())
    }

    /// Whether `local` is the relayed address in use (a transmit from it must be wrapped).
    pub fn is_relayed(&self, local: SocketAddr) -> bool {
        self.relays
            .iter()
            .any(|r| r.standing == Standing::Chosen { relayed: local })
    }

    /// Whether `from` is one of the TURN servers (datagrams from it go to
    /// [`handle_datagram`](Self::handle_datagram)).
    pub fn is_server(&self, from: SocketAddr) -> bool {
        self.relays.iter().any(|r| r.client.server() == from)
    }

    /// Wraps `payload`, which the agent sends from relayed address `relayed` to `to`, for the
    /// TURN server into `out`; the transmit says which local socket sends it. The peer gets a
    /// permission and a channel on first use.
    pub fn wrap(
        &mut self,
        now: Instant,
        relayed: SocketAddr,
        to: SocketAddr,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<Transmit, ClientError> {
        let relay = self
            .relays
            .iter_mut()
            .find(|r| r.standing == Standing::Chosen { relayed })
            .ok_or(ClientError::NotAllocated)?;
        relay.client.add_peer(now, to)?;
        let t = relay.client.send_to(now, to, payload, out)?;
        Ok(Transmit {
            from: Some(relay.base),
            ..t
        })
    }

    /// Feeds a datagram that arrived on local socket `local` from `from`.
    pub fn handle_datagram<'a>(
        &mut self,
        now: Instant,
        agent: &mut Agent,
        local: SocketAddr,
        from: SocketAddr,
        datagram: &'a [u8],
    ) -> RelayReceived<'a> {
        let Some(i) = self
            .relays
            .iter()
            .position(|r| r.base == local && r.client.server() == from)
        else {
            return RelayReceived::NotRelayed;
        };
        let d = crate::io::Datagram::new(local, from, datagram);
        let received = self.relays[i].client.handle_datagram(now, d);
        self.drain(now, agent, i);
        self.maybe_choose(now, agent);
        let relayed = match self.relays[i].standing {
            Standing::Chosen { relayed } => Some(relayed),
            _ => None,
        };
        match (received, relayed) {
            (turn::Received::Data { peer, payload }, Some(relayed)) => RelayReceived::Data {
                relayed,
                peer,
                payload,
            },
            (turn::Received::Unrecognized, _) => RelayReceived::NotRelayed,
            _ => RelayReceived::Consumed,
        }
    }

    /// Runs the allocations' timers (retransmissions, refreshes). Early calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant, agent: &mut Agent) {
        for i in 0..self.relays.len() {
            self.relays[i].client.handle_timeout(now);
            self.drain(now, agent, i);
        }
        self.maybe_choose(now, agent);
    }

    /// The next TURN request to send, written into `out`, with the local socket to send from.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut [u8]) -> Option<Transmit> {
        self.relays.iter_mut().find_map(|r| {
            let t = r.client.poll_transmit(now, out)?;
            Some(Transmit {
                from: Some(r.base),
                ..t
            })
        })
    }

    /// The next relay event, oldest first.
    pub fn poll_event(&mut self) -> Option<RelayEvent> {
        (!self.events.is_empty()).then(|| self.events.remove(0))
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next needed; `now` while an event
    /// waits.
    pub fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        if !self.events.is_empty() {
            return Some(now);
        }
        self.relays
            .iter()
            .filter_map(|r| r.client.poll_timeout())
            .chain(self.choose_at)
            .min()
    }

    /// Releases every allocation (Refresh with LIFETIME 0); the requests go out through
    /// [`poll_transmit`](Self::poll_transmit).
    pub fn close(&mut self, now: Instant) {
        for r in &mut self.relays {
            r.client.close(now);
        }
    }

    /// Moves relay `i`'s client events into its standing and the event queue.
    fn drain(&mut self, now: Instant, agent: &mut Agent, i: usize) {
        while let Some(event) = self.relays[i].client.poll_event() {
            let relay = &mut self.relays[i];
            let server = relay.client.server();
            match event {
                ClientEvent::Allocated {
                    relayed,
                    mapped,
                    rtt,
                    ..
                } if relay.standing == Standing::Pending => {
                    relay.standing = Standing::Ready {
                        relayed,
                        mapped,
                        rtt,
                    };
                    self.choose_at.get_or_insert(now + CHOICE_WINDOW);
                }
                ClientEvent::Failed { error } => {
                    relay.standing = Standing::Out;
                    self.events.push(RelayEvent::Failed { server, error });
                    Self::done_gathering(agent, &mut self.relays[i]);
                }
                _ => {}
            }
        }
    }

    /// Keeps the allocation with the lowest round-trip time once every server answered or the
    /// window after the first answer closed; releases the rest.
    fn maybe_choose(&mut self, now: Instant, agent: &mut Agent) {
        let Some(at) = self.choose_at else { return };
        let pending = self.relays.iter().any(|r| r.standing == Standing::Pending);
        if pending && now < at {
            return;
        }
        self.choose_at = None;
        let best = self
            .relays
            .iter()
            .enumerate()
            .filter_map(|(i, r)| match r.standing {
                Standing::Ready { rtt, .. } => Some((rtt, i)),
                _ => None,
            })
            .min();
        for i in 0..self.relays.len() {
            let relay = &mut self.relays[i];
            let server = relay.client.server();
            match relay.standing {
                Standing::Ready {
                    relayed,
                    mapped,
                    rtt,
                } if best.is_some_and(|(_, b)| b == i) => {
                    relay.standing = Standing::Chosen { relayed };
                    let related = mapped.unwrap_or(relay.base);
                    let candidate = Candidate::relayed(relayed, related, server.ip());
                    // A full candidate table leaves the relay unused; gathering still ends.
                    let _ = agent.add_local_candidate(now, candidate);
                    self.events.push(RelayEvent::Allocated {
                        server,
                        relayed,
                        rtt,
                    });
                }
                Standing::Ready { .. } | Standing::Pending => {
                    relay.standing = Standing::Out;
                    relay.client.close(now);
                    self.events.push(RelayEvent::NotChosen { server });
                }
                Standing::Chosen { .. } | Standing::Out => {}
            }
            Self::done_gathering(agent, &mut self.relays[i]);
        }
    }

    /// Tells the agent, once per relay, that it no longer waits for this allocation.
    fn done_gathering(agent: &mut Agent, relay: &mut Relay) {
        if relay.gathering {
            relay.gathering = false;
            agent.end_external_gathering();
        }
    }
}
