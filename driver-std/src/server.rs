//! A blocking STUN server: the sockets the core [`Server`] asks for, answered by worker threads.
//!
//! With one worker, each of the server's sockets (one, or four for RFC 5780) is bound once. With
//! `N` workers on Linux, each socket is bound `N` times with `SO_REUSEPORT`. For a rate-limited
//! server a classic BPF program makes the kernel hand every datagram of one source (IPv4
//! address, IPv6 /64) to the same worker, whichever of the server's addresses it was sent to;
//! otherwise the kernel spreads datagrams by their 4-tuple. Each worker owns a core [`Server`],
//! so its rate-limit table sees all of its sources' requests, and the workers share nothing. Every socket gets a large receive buffer ([`DEFAULT_RECV_BUFFER`], like coturn's),
//! so a burst waits in the kernel instead of being dropped.

mod sys;

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use holepunch_core::io::Datagram;
use holepunch_core::stun::server::{AmplificationPolicy, Server, ServerConfig};

use crate::{Clock, DriverError, RECV_BUFFER_LEN, RESPONSE_BUFFER_LEN, is_transient, os_seed};

/// How often [`StunServer::serve`] looks at its stop flag.
pub const SERVE_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// The receive buffer asked for each socket by default: 4 MiB, as coturn does. Linux caps it at
/// `net.core.rmem_max` unless the process has CAP_NET_ADMIN, which root has.
pub const DEFAULT_RECV_BUFFER: usize = 4 << 20;

/// How a [`StunServer`] uses the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServeOptions {
    /// Worker threads (at least 1). More than one needs Linux's `SO_REUSEPORT`.
    pub threads: usize,
    /// Receive buffer to ask for on each socket, in bytes; 0 keeps the system default.
    pub recv_buffer: usize,
}

impl Default for ServeOptions {
    /// One worker, [`DEFAULT_RECV_BUFFER`].
    fn default() -> Self {
        ServeOptions {
            threads: 1,
            recv_buffer: DEFAULT_RECV_BUFFER,
        }
    }
}

impl ServeOptions {
    /// One worker per available core, [`DEFAULT_RECV_BUFFER`].
    pub fn per_core() -> Self {
        ServeOptions {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            ..ServeOptions::default()
        }
    }
}

/// A blocking STUN server: the sockets the core [`Server`] asks for, answered by worker threads.
#[derive(Debug)]
pub struct StunServer {
    server: Server,
    /// `workers[w][i]` is worker `w`'s socket for `Server::local_addresses()` entry `i`.
    workers: Vec<Vec<UdpSocket>>,
    recv_buffer: usize,
}

impl StunServer {
    /// Binds every socket of `config` for one worker (see [`bind_server_sockets`] for port 0).
    pub fn bind(config: ServerConfig) -> Result<Self, DriverError> {
        StunServer::bind_with(config, &ServeOptions::default())
    }

    /// Binds every socket of `config` once per worker of `options`.
    ///
    /// Fails with [`DriverError::Io`] when more than one worker is asked for where
    /// `SO_REUSEPORT` workers and their source steering are unavailable.
    pub fn bind_with(config: ServerConfig, options: &ServeOptions) -> Result<Self, DriverError> {
        let threads = options.threads.max(1);
        let reuse = threads > 1;
        let (server, first) = bind_sockets(config, |a| sys::bind_udp(a, reuse))?;
        let mut workers = vec![first];
        for _ in 1..threads {
            let sockets = server
                .local_addresses()
                .map(|a| sys::bind_udp(a, true))
                .collect::<io::Result<Vec<_>>>()?;
            workers.push(sockets);
        }
        // Only a rate-limited server keeps per-source state; the others are better served by the
        // kernel's own spreading (a hash of the whole 4-tuple), which also spreads one busy
        // address (a carrier-grade NAT) over every worker.
        let per_source = matches!(
            server.config().amplification,
            AmplificationPolicy::RateLimited(_)
        );
        if reuse && per_source {
            let n = u32::try_from(threads).unwrap_or(u32::MAX);
            for socket in &workers[0] {
                sys::steer_by_source(socket, n)?;
            }
        }
        let mut recv_buffer = 0;
        if options.recv_buffer > 0 {
            for socket in workers.iter().flatten() {
                recv_buffer = sys::size_recv_buffer(socket, options.recv_buffer)?;
            }
        }
        let server = Server::with_seed(server.config().clone(), os_seed())?;
        tracing::debug!(
            addrs = ?server.local_addresses().collect::<Vec<_>>(),
            threads,
            recv_buffer,
            "stun server sockets bound"
        );
        Ok(StunServer {
            server,
            workers,
            recv_buffer,
        })
    }

    /// The bound addresses, in the order of `Server::local_addresses` (primary first).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.server.local_addresses().collect()
    }

    /// The configuration actually served (port 0 replaced by the bound ports).
    pub fn config(&self) -> &ServerConfig {
        self.server.config()
    }

    /// The number of worker threads [`serve`](StunServer::serve) runs.
    pub fn threads(&self) -> usize {
        self.workers.len()
    }

    /// The receive buffer the kernel granted each socket, as `SO_RCVBUF` reports it (Linux
    /// reports twice the payload it books); 0 when left at the system default.
    pub fn recv_buffer(&self) -> usize {
        self.recv_buffer
    }

    /// Answers requests until `stop` is set, with one thread per socket of each worker;
    /// returns within about [`SERVE_POLL_INTERVAL`] of `stop` being set.
    ///
    /// Each worker has its own core [`Server`] (behind a mutex its sockets' threads share, held
    /// only while an answer is built), so its rate-limit table sees every request of the sources
    /// steered to it. A response leaves from the worker's socket the core names in
    /// `Transmit::from` (an RFC 5780 answer to CHANGE-REQUEST goes out of another socket than
    /// the request came in on). Failures to send one response are ignored, as UDP loses
    /// datagrams anyway; a failure to receive stops every thread and is returned.
    pub fn serve(&self, stop: &AtomicBool) -> io::Result<()> {
        for socket in self.workers.iter().flatten() {
            socket.set_read_timeout(Some(SERVE_POLL_INTERVAL))?;
        }
        let abort = AtomicBool::new(false);
        let clock = Clock::new();
        let cores: Vec<Mutex<Server>> = (0..self.workers.len())
            .map(|_| Mutex::new(self.server.clone()))
            .collect();
        let locals = self.local_addrs();
        std::thread::scope(|scope| {
            let mut threads = Vec::new();
            for (sockets, core) in self.workers.iter().zip(&cores) {
                for (socket, &local) in sockets.iter().zip(&locals) {
                    let ctx = Worker {
                        sockets,
                        locals: &locals,
                        core,
                        clock: &clock,
                    };
                    let abort = &abort;
                    threads.push(scope.spawn(move || {
                        let result = ctx.serve_socket(socket, local, stop, abort);
                        if let Err(e) = &result {
                            tracing::warn!(%local, error = %e, "receive failed, stopping");
                            abort.store(true, Ordering::Relaxed);
                        }
                        result
                    }));
                }
            }
            let mut result = Ok(());
            for t in threads {
                let r = t
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("STUN server thread panicked")));
                if result.is_ok() {
                    result = r;
                }
            }
            result
        })
    }
}

/// What one socket's thread needs: its worker's sockets (to answer from another one) and core.
struct Worker<'a> {
    sockets: &'a [UdpSocket],
    locals: &'a [SocketAddr],
    core: &'a Mutex<Server>,
    clock: &'a Clock,
}

impl Worker<'_> {
    fn serve_socket(
        &self,
        socket: &UdpSocket,
        local: SocketAddr,
        stop: &AtomicBool,
        abort: &AtomicBool,
    ) -> io::Result<()> {
        let mut buf = vec![0u8; RECV_BUFFER_LEN];
        let mut out = vec![0u8; RESPONSE_BUFFER_LEN];
        while !stop.load(Ordering::Relaxed) && !abort.load(Ordering::Relaxed) {
            let (n, from) = match socket.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e) if is_transient(&e) => continue,
                Err(e) => return Err(e),
            };
            let now = self.clock.now();
            // A thread that panicked holding the lock left a server that is still sound (it
            // keeps no invariant across calls beyond plain numbers), so keep serving.
            let lock = || self.core.lock().unwrap_or_else(|e| e.into_inner());
            let mut next = {
                let mut core = lock();
                core.handle_datagram(now, Datagram::new(local, from, &buf[..n]));
                core.poll_transmit(now, &mut out)
            };
            // The lock is not held across a send: answers are taken one at a time.
            while let Some(t) = next {
                let sender = t
                    .from
                    .and_then(|a| self.locals.iter().position(|l| *l == a))
                    .and_then(|i| self.sockets.get(i))
                    .unwrap_or(socket);
                if let Err(e) = sender.send_to(&out[..t.len], t.to) {
                    tracing::debug!(to = %t.to, error = %e, "response not sent");
                } else {
                    tracing::trace!(%from, %local, to = %t.to, len = t.len, "answered");
                }
                next = lock().poll_transmit(now, &mut out);
            }
        }
        Ok(())
    }
}

/// Binds the sockets a core [`Server`] for `config` needs and returns the server, built from the
/// addresses actually bound, with its sockets in `Server::local_addresses` order.
///
/// Port 0 means "any free port": the primary and alternate are bound first, the real ports
/// written into the configuration, and then the two cross combinations (primary IP with the
/// alternate port, alternate IP with the primary port) are bound. If the kernel's choice
/// collides (the same port for both, or a cross combination already taken), it tries again with
/// fresh ports, a bounded number of times. Fixed ports are bound exactly once.
pub fn bind_server_sockets(config: ServerConfig) -> Result<(Server, Vec<UdpSocket>), DriverError> {
    bind_sockets(config, UdpSocket::bind)
}

/// [`bind_server_sockets`] with the binding call given (plain, or with `SO_REUSEPORT`).
fn bind_sockets(
    config: ServerConfig,
    bind: impl Fn(SocketAddr) -> io::Result<UdpSocket>,
) -> Result<(Server, Vec<UdpSocket>), DriverError> {
    // Checks what does not depend on ports (families, distinct IPs) before binding anything.
    let mut probe = config.clone();
    if probe.primary.port() == 0 {
        probe.primary.set_port(1);
    }
    if let Some(alt) = probe.alternate.as_mut().filter(|a| a.port() == 0) {
        alt.set_port(2);
    }
    Server::new(probe)?;

    let any_zero = config.primary.port() == 0 || config.alternate.is_some_and(|a| a.port() == 0);
    let attempts = if any_zero { 32 } else { 1 };
    let mut last_error = None;
    for _ in 0..attempts {
        match try_bind_server(&config, &bind) {
            Ok(bound) => return Ok(bound),
            Err(BindError::Retry(e)) if any_zero => last_error = Some(e),
            Err(BindError::Retry(e)) => return Err(e),
            Err(BindError::Fatal(e)) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("could not bind the STUN server").into()))
}

enum BindError {
    /// Worth another attempt with fresh ports.
    Retry(DriverError),
    Fatal(DriverError),
}

fn try_bind_server(
    config: &ServerConfig,
    bind_udp: &impl Fn(SocketAddr) -> io::Result<UdpSocket>,
) -> Result<(Server, Vec<UdpSocket>), BindError> {
    let bind = |addr: SocketAddr| {
        bind_udp(addr).map_err(|e| {
            if e.kind() == io::ErrorKind::AddrInUse {
                BindError::Retry(e.into())
            } else {
                BindError::Fatal(e.into())
            }
        })
    };
    let bound_addr = |s: &UdpSocket| s.local_addr().map_err(|e| BindError::Fatal(e.into()));
    let primary = bind(config.primary)?;
    let mut real = config.clone();
    real.primary = bound_addr(&primary)?;
    let Some(alternate_wanted) = config.alternate else {
        let server = Server::new(real).map_err(|e| BindError::Fatal(e.into()))?;
        return Ok((server, vec![primary]));
    };
    let alternate = bind(alternate_wanted)?;
    real.alternate = Some(bound_addr(&alternate)?);
    // Equal ports from the kernel are a collision to retry; other errors were ruled out above.
    let server = Server::new(real).map_err(|e| BindError::Retry(e.into()))?;
    let mut sockets = Vec::with_capacity(4);
    for addr in server.local_addresses() {
        let socket = if addr == server.config().primary {
            primary.try_clone()
        } else if Some(addr) == server.config().alternate {
            alternate.try_clone()
        } else {
            sockets.push(bind(addr)?);
            continue;
        };
        sockets.push(socket.map_err(|e| BindError::Fatal(e.into()))?);
    }
    Ok((server, sockets))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::{StunOptions, stun};
    use holepunch_core::stun::server::RateLimit;
    use std::net::Ipv4Addr;

    /// Two workers with per-source steering (rate-limited) and two without: every client, on
    /// several loopback addresses, gets its answer, and the receive buffer was sized.
    #[test]
    fn reuseport_workers_answer_every_source() {
        for amplification in [
            AmplificationPolicy::RateLimited(RateLimit::DEFAULT),
            AmplificationPolicy::Bounded,
        ] {
            let config = ServerConfig {
                amplification,
                ..ServerConfig::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            };
            let options = ServeOptions {
                threads: 2,
                recv_buffer: 1 << 20,
            };
            let server = StunServer::bind_with(config, &options).expect("bind two workers");
            assert_eq!(server.threads(), 2);
            assert!(server.recv_buffer() > 0);
            let primary = server.local_addrs()[0];
            let stop = AtomicBool::new(false);
            std::thread::scope(|scope| {
                scope.spawn(|| server.serve(&stop));
                let options = StunOptions::default().with_timeout(Duration::from_secs(5));
                let results: Vec<_> = (1..=6u8)
                    .map(|i| {
                        let local = SocketAddr::from(([127, 0, 2, i], 0));
                        stun(primary, &options.clone().with_local(local))
                    })
                    .collect();
                stop.store(true, Ordering::Relaxed);
                for (i, r) in results.iter().enumerate() {
                    let r = r.as_ref().expect("answered");
                    assert_eq!(
                        r.mapped.ip(),
                        std::net::IpAddr::from([127, 0, 2, i as u8 + 1])
                    );
                }
            });
        }
    }
}
