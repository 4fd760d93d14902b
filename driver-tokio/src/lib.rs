//! holepunch-tokio: async drivers for `holepunch-core` on tokio.
//!
//! - [`stun`] / [`stun_on`]: one Binding transaction; the core's `poll_timeout` becomes a
//!   `tokio::time::sleep_until` raced against the socket.
//! - [`serve_stun`]: a STUN server as spawned tasks (one per socket), stopped through the
//!   returned [`StunServerHandle`].
//! - [`ice`]: an ICE session ([`ice::Endpoint`], [`ice::Connection`]) whose offer lines travel
//!   over a [`Signalling`]: the [`signal`] rendezvous ([`signal::SignalClient`], served by
//!   [`signal::serve_signal`]), a pair of files ([`OfferFiles`]) or an in-process channel.
//! - [`netwatch`]: the OS's network changes (netlink on Linux, an interface diff elsewhere),
//!   which an ICE session follows by itself ([`ice::EndpointConfig::watch_network`]).
//! - [`quic`]: quinn over an ICE connection's path ([`quic::IceSocket`]), authenticated by
//!   keys whose fingerprints travel in the offers ([`quic_identity`]).
//!
//! Shared types ([`StunOptions`], [`StunReport`], [`DriverError`], [`Clock`]) come from
//! `holepunch-std`, as does the port-0-aware socket binding of the server.
//!
//! ```no_run
//! use holepunch_core::stun::server::ServerConfig;
//! use holepunch_tokio::{StunOptions, serve_stun, stun};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let server = serve_stun(ServerConfig::new("127.0.0.1:0".parse()?)).await?;
//! let report = stun(server.local_addrs()[0], &StunOptions::default()).await?;
//! assert_eq!(report.mapped.port(), report.local.port());
//! server.shutdown().await?;
//! # Ok(())
//! # }
//! ```

pub mod frames;
pub mod ice;
pub mod netwatch;
pub mod quic;
pub mod quic_identity;
pub mod relay;
pub mod signal;
pub mod signalling;
pub mod turn_tls;

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use holepunch_core::io::Datagram;
use holepunch_core::stun::client::{Client, TransactionError};
use holepunch_core::stun::server::{Server, ServerConfig};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use holepunch_std::{Clock, DriverError, StunOptions, StunReport, os_seed};
use holepunch_std::{
    RECV_BUFFER_LEN, RESPONSE_BUFFER_LEN, event_id, is_transient, report_or_error,
};
pub use signalling::{ChannelSignalling, OfferFiles, Signalling};

/// Runs one Binding transaction to `server` from a fresh socket (see [`StunOptions::local`]).
pub async fn stun(server: SocketAddr, options: &StunOptions) -> Result<StunReport, DriverError> {
    let socket = UdpSocket::bind(options.local_for(server)).await?;
    stun_on(&socket, server, options).await
}

/// Runs one Binding transaction from an existing socket, so several transactions share one
/// mapping. `options.local` is ignored; datagrams that are not the answer are discarded.
///
/// Cancel-safe in the sense that dropping the future abandons the transaction and nothing else.
pub async fn stun_on(
    socket: &UdpSocket,
    server: SocketAddr,
    options: &StunOptions,
) -> Result<StunReport, DriverError> {
    let local = socket.local_addr()?;
    let clock = Clock::new();
    let mut client = Client::new(options.client.clone(), options.seed_or_os());
    let id = client.binding(clock.now(), server, options.binding)?;
    let mut out = vec![0u8; options.client.max_request_len];
    let mut buf = vec![0u8; RECV_BUFFER_LEN];
    loop {
        let now = clock.now();
        client.handle_timeout(now);
        while let Some(t) = client.poll_transmit(now, &mut out) {
            socket.send_to(&out[..t.len], t.to).await?;
        }
        while let Some(event) = client.poll_event() {
            if event_id(&event) == id {
                return report_or_error(&event, local);
            }
        }
        let Some(deadline) = client.poll_timeout() else {
            return Err(DriverError::Failed(TransactionError::TimedOut));
        };
        let wake = tokio::time::Instant::from_std(clock.deadline(deadline));
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            received = socket.recv_from(&mut buf) => match received {
                Ok((n, from)) => {
                    client.handle_datagram(clock.now(), Datagram::new(local, from, &buf[..n]));
                }
                Err(e) if is_transient(&e) => {}
                Err(e) => return Err(e.into()),
            },
        }
    }
}

/// Binds every socket of `config` (port 0 allowed, see [`holepunch_std::bind_server_sockets`])
/// and spawns one task per socket answering STUN requests. Must be called within a tokio runtime.
///
/// The server runs until [`StunServerHandle::shutdown`], or until the handle is dropped.
pub async fn serve_stun(config: ServerConfig) -> Result<StunServerHandle, DriverError> {
    let (server, std_sockets) = holepunch_std::bind_server_sockets(config)?;
    let mut sockets = Vec::with_capacity(std_sockets.len());
    for socket in std_sockets {
        socket.set_nonblocking(true)?;
        sockets.push(UdpSocket::from_std(socket)?);
    }
    let local_addrs: Vec<SocketAddr> = server.local_addresses().collect();
    let shared = Arc::new(Shared {
        server: Mutex::new(Server::with_seed(server.config().clone(), os_seed())?),
        clock: Clock::new(),
        sockets,
        local_addrs: local_addrs.clone(),
    });
    let (stop, stopped) = watch::channel(false);
    let tasks = (0..local_addrs.len())
        .map(|i| tokio::spawn(serve_socket(Arc::clone(&shared), i, stopped.clone())))
        .collect();
    Ok(StunServerHandle {
        local_addrs,
        stop,
        tasks,
    })
}

/// A running [`serve_stun`] server. Dropping it stops the tasks without waiting for them.
#[derive(Debug)]
pub struct StunServerHandle {
    local_addrs: Vec<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<io::Result<()>>>,
}

impl StunServerHandle {
    /// The bound addresses, in `Server::local_addresses` order (primary first).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Whether every task has ended (only after a receive error, unless shut down).
    pub fn is_finished(&self) -> bool {
        self.tasks.iter().all(JoinHandle::is_finished)
    }

    /// Stops the tasks and waits for them; returns the first receive error any task stopped
    /// with.
    pub async fn shutdown(self) -> io::Result<()> {
        let _ = self.stop.send(true);
        let mut result = Ok(());
        for task in self.tasks {
            let r = task
                .await
                .unwrap_or_else(|e| Err(io::Error::other(format!("STUN server task: {e}"))));
            if result.is_ok() {
                result = r;
            }
        }
        result
    }
}

#[derive(Debug)]
struct Shared {
    /// Held only while an answer is built: the per-source rate limit is shared by every socket.
    server: Mutex<Server>,
    clock: Clock,
    sockets: Vec<UdpSocket>,
    local_addrs: Vec<SocketAddr>,
}

/// Answers datagrams on socket `index` until told to stop or the handle is dropped.
async fn serve_socket(
    shared: Arc<Shared>,
    index: usize,
    mut stopped: watch::Receiver<bool>,
) -> io::Result<()> {
    let socket = &shared.sockets[index];
    let local = shared.local_addrs[index];
    let mut buf = vec![0u8; RECV_BUFFER_LEN];
    let mut out = vec![0u8; RESPONSE_BUFFER_LEN];
    loop {
        let (n, from) = tokio::select! {
            // A send of `true`, or the handle dropped (Err): either way, stop.
            _ = stopped.changed() => return Ok(()),
            received = socket.recv_from(&mut buf) => match received {
                Ok(r) => r,
                Err(e) if is_transient(&e) => continue,
                Err(e) => return Err(e),
            },
        };
        let now = shared.clock.now();
        let lock = || shared.server.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = {
            let mut server = lock();
            server.handle_datagram(now, Datagram::new(local, from, &buf[..n]));
            server.poll_transmit(now, &mut out)
        };
        // The lock is not held across a send: answers are taken one at a time.
        while let Some(t) = next {
            // The core names the socket to answer from (CHANGE-REQUEST moves it).
            let sender = t
                .from
                .and_then(|a| shared.local_addrs.iter().position(|l| *l == a))
                .unwrap_or(index);
            let _ = shared.sockets[sender].send_to(&out[..t.len], t.to).await;
            next = lock().poll_transmit(now, &mut out);
        }
    }
}
