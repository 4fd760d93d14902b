//! The peers of an allocation: each one's permission and channel, and keeping them fresh
//! (CreatePermission and ChannelBind again before RFC 8656's lifetimes run out).

use core::net::SocketAddr;

use super::{BUSY_RETRY, Client, Op};
use crate::time::Instant;
use crate::turn::channel::ChannelNumber;

#[derive(Clone, Copy, Debug)]
pub(super) struct Peer {
    pub(super) addr: SocketAddr,
    pub(super) channel: ChannelNumber,
    pub(super) permission: Refresh,
    pub(super) binding: Refresh,
}

/// The state of a refreshed thing (allocation, permission, channel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refresh {
    /// Not installed; retry at this time (FAR_FUTURE = never).
    Absent { retry_at: Instant },
    /// A request is in flight; `ready` says whether the previous one is still valid.
    Pending { ready: bool },
    /// Installed; refresh at this time.
    Ready { refresh_at: Instant },
}

impl Refresh {
    pub(super) fn is_ready(self) -> bool {
        matches!(
            self,
            Refresh::Ready { .. } | Refresh::Pending { ready: true }
        )
    }

    pub(super) fn due(self) -> Instant {
        match self {
            Refresh::Absent { retry_at } => retry_at,
            Refresh::Pending { .. } => Instant::FAR_FUTURE,
            Refresh::Ready { refresh_at } => refresh_at,
        }
    }
}

impl Client {
    /// Starts the permission and channel requests that are due.
    pub(super) fn refresh_peers(&mut self, now: Instant) {
        for i in 0..self.peers.len() {
            let p = self.peers[i];
            if p.permission.due() <= now {
                self.peers[i].permission = match self.start(now, Op::Permission(i)) {
                    Ok(()) => Refresh::Pending {
                        ready: p.permission.is_ready(),
                    },
                    Err(_) => Refresh::Absent {
                        retry_at: now + BUSY_RETRY,
                    },
                };
            }
            if p.binding.due() <= now {
                self.peers[i].binding = match self.start(now, Op::Channel(i)) {
                    Ok(()) => Refresh::Pending {
                        ready: p.binding.is_ready(),
                    },
                    Err(_) => Refresh::Absent {
                        retry_at: now + BUSY_RETRY,
                    },
                };
            }
        }
    }
}
