//! The relay's sending side: the outputs of a turn's inputs, copied out of the server while
//! the lock is held and sent after it is released, consecutive datagrams to one destination
//! batched with UDP segmentation offload.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use holepunch_core::turn::channel::MAX_FRAME_LEN;
use holepunch_core::turn::{Transport, Via};
use nix::errno::Errno;
use nix::sys::socket::{ControlMessage, MsgFlags, SockaddrStorage, sendmsg};
use socket2::SockRef;
use tokio::net::UdpSocket;

use super::{Shared, lock};

/// The datagrams one input produced, copied out of the server so they are sent after the lock
/// is released.
pub(super) struct Outbox {
    /// Where `poll_transmit` writes (large enough for any output).
    scratch: Vec<u8>,
    /// The waiting datagrams' bytes, back to back.
    bytes: Vec<u8>,
    /// The waiting datagrams: socket, destination, and range in `bytes`.
    datagrams: Vec<(Arc<UdpSocket>, SocketAddr, usize, usize)>,
}

impl Outbox {
    pub(super) fn new() -> Self {
        Outbox {
            scratch: vec![0u8; MAX_FRAME_LEN + 128],
            bytes: Vec::with_capacity(MAX_FRAME_LEN + 128),
            datagrams: Vec::with_capacity(GSO_MAX_SEGMENTS),
        }
    }

    /// Feeds one datagram or frame to the server and sends what it produced.
    pub(super) fn feed(&mut self, shared: &Mutex<Shared>, via: Via, from: SocketAddr, data: &[u8]) {
        self.take(shared, via, from, data);
        self.flush();
    }

    /// Feeds one datagram or frame to the server and keeps what it produced for the next
    /// [`Outbox::flush`] (several inputs' outputs go out together, see [`Outbox::flush`]).
    pub(super) fn take(&mut self, shared: &Mutex<Shared>, via: Via, from: SocketAddr, data: &[u8]) {
        let mut s = lock(shared);
        let now = s.clock.now();
        s.server.handle_datagram(now, via, from, data);
        self.collect(&mut s);
    }

    /// Whether enough waits that it should go out before more is taken.
    pub(super) fn is_full(&self) -> bool {
        self.datagrams.len() >= GSO_MAX_SEGMENTS || self.bytes.len() >= GSO_MAX_BYTES
    }

    /// Carries out the server's socket actions and takes its outputs: frames for TCP and TLS
    /// clients go to their write queues at once, datagrams wait for [`Outbox::flush`].
    pub(super) fn collect(&mut self, s: &mut Shared) {
        for _ in 0..64 {
            let mut progressed = false;
            while let Some(action) = s.server.poll_action() {
                progressed = true;
                s.act(action);
            }
            while let Some(t) = s.server.poll_transmit(&mut self.scratch) {
                progressed = true;
                let bytes = &self.scratch[..t.len];
                let socket = match t.via {
                    Via::Client(Transport::Udp) => Arc::clone(&s.udp),
                    Via::Client(_) => {
                        if let Some(c) = s.connections.get(&t.to) {
                            // A client that does not read loses frames rather than our memory.
                            let _ = c.writer.try_send(bytes.to_vec());
                        }
                        continue;
                    }
                    Via::Relay(relayed) => match s.relays.get(&relayed) {
                        Some(r) => Arc::clone(&r.socket),
                        None => continue,
                    },
                };
                let start = self.bytes.len();
                self.bytes.extend_from_slice(bytes);
                self.datagrams.push((socket, t.to, start, t.len));
            }
            if !progressed {
                return;
            }
        }
    }

    /// Sends the waiting datagrams. Consecutive ones from one socket to one destination with
    /// one size (the last may be shorter) go out in one system call with UDP segmentation
    /// offload (Linux's `UDP_SEGMENT`): the kernel routes and builds headers once for the lot,
    /// and the wire carries the same datagrams as one call each would. A full send buffer
    /// drops datagrams, as a congested link would (UDP gives no guarantee either way).
    pub(super) fn flush(&mut self) {
        let mut i = 0;
        while i < self.datagrams.len() {
            let (socket, to, start, len) = &self.datagrams[i];
            let mut end = i + 1;
            let mut total = *len;
            while end < self.datagrams.len() && gso_enabled() {
                let (s, t, st, l) = &self.datagrams[end];
                let same = Arc::ptr_eq(s, socket) && t == to && *st == start + total;
                // Only the last segment may be shorter than the others.
                let fits = *l == *len || (*l < *len && *l > 0);
                if !same || !fits || end - i >= GSO_MAX_SEGMENTS || total + l > GSO_MAX_BYTES {
                    break;
                }
                total += l;
                end += 1;
                if *l < *len {
                    break;
                }
            }
            let bytes = &self.bytes[*start..*start + total];
            if end - i < 2 || send_segments(socket, *to, bytes, *len).is_err() {
                // One datagram, or segmentation refused (no offload on the route's device,
                // a datagram over its MTU, an old kernel): one call each.
                for (socket, to, start, len) in &self.datagrams[i..end] {
                    // A plain non-blocking send: the socket may be registered with the other
                    // thread's reactor, whose readiness this thread cannot wait for.
                    let _ = SockRef::from(&**socket)
                        .send_to(&self.bytes[*start..*start + *len], &(*to).into());
                }
            }
            i = end;
        }
        self.datagrams.clear();
        self.bytes.clear();
    }
}

/// Most datagrams in one segmented send (the kernel's `UDP_MAX_SEGMENTS` is 64 or more).
const GSO_MAX_SEGMENTS: usize = 64;
/// Most bytes in one segmented send (one IP packet's worth, less headers).
const GSO_MAX_BYTES: usize = 60_000;

/// Cleared when the kernel refuses `UDP_SEGMENT` outright (no such option): every send is
/// then a call of its own.
static GSO: AtomicBool = AtomicBool::new(true);

fn gso_enabled() -> bool {
    GSO.load(Ordering::Relaxed)
}

/// Sends `bytes` as datagrams of `segment` bytes (the last may be shorter) to `to` in one call.
fn send_segments(
    socket: &UdpSocket,
    to: SocketAddr,
    bytes: &[u8],
    segment: usize,
) -> io::Result<()> {
    let segment = u16::try_from(segment).map_err(io::Error::other)?;
    let iov = [IoSlice::new(bytes)];
    let cmsg = [ControlMessage::UdpGsoSegments(&segment)];
    let addr = SockaddrStorage::from(to);
    match sendmsg(
        socket.as_raw_fd(),
        &iov,
        &cmsg,
        MsgFlags::empty(),
        Some(&addr),
    ) {
        Ok(_) => Ok(()),
        // Full send buffer: dropped, as a single datagram would be.
        Err(Errno::EAGAIN) => Ok(()),
        Err(e) => {
            if matches!(e, Errno::ENOPROTOOPT | Errno::EOPNOTSUPP) {
                GSO.store(false, Ordering::Relaxed);
            }
            Err(e.into())
        }
    }
}
