//! Netcheck on real sockets: binds what the core [`Netcheck`] needs and pumps it to its report.
//!
//! [`netcheck`] picks, for each address family it has servers of, the local IP the kernel routes
//! towards the first server of that family (a throwaway UDP socket is connected, which sends
//! nothing, and its local address read), binds the pair of sockets (mapping, filtering) on that
//! IP for the preferred family (IPv4 when a server of it is reachable) and one socket of the
//! other family when a server of it is reachable too, and runs the prober to completion.
//! Binding concrete addresses, not `0.0.0.0`, is what lets the core see "no NAT": it compares
//! the mapped address with the socket's own.
//!
//! The sockets are read by one thread each (std has no readiness API), which hand datagrams to
//! the pumping thread over a channel; the pump sleeps on that channel until the core's
//! `poll_timeout`. Send failures count as lost datagrams, exactly as UDP loss would (a host
//! without a route or with an output firewall then reports `udp: false`); only failing to bind
//! or read a socket is an error.
//!
//! ```no_run
//! use holepunch_std::netcheck::{NetcheckOptions, netcheck};
//!
//! let servers = ["192.0.2.1:3478".parse()?];
//! let run = netcheck(&servers, &NetcheckOptions::default())?;
//! println!("mapping {}, filtering {}", run.report.mapping, run.report.filtering);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use holepunch_core::io::Datagram;
use holepunch_core::netcheck::{
    LifetimeConfig, LifetimeProbe, LifetimeReport, Netcheck, NetcheckConfig, NetcheckError, Report,
};
use holepunch_core::time::Instant;

use crate::{Clock, RECV_BUFFER_LEN, is_transient, os_seed, unspecified_like};

/// How often the reader threads look at their stop flag, and so the most a run overstays its
/// report.
pub const READER_POLL_INTERVAL: Duration = Duration::from_millis(20);

/// How to run netcheck.
#[derive(Clone, Debug)]
pub struct NetcheckOptions {
    /// Hard cap on the run ([`NetcheckConfig::timeout`]; 5 s). The core's requests give up after
    /// 2.2 s anyway, so a run normally ends well before it.
    pub timeout: Duration,
    /// Whether to add a socket of the other address family when a server of it is reachable
    /// (for the public IPv6 address); `true`.
    pub other_family: bool,
    /// The seed for transaction ids; `None` draws one with [`os_seed`]. Fixed seeds are for
    /// reproducible tests only.
    pub seed: Option<u64>,
    /// Also measure how long the NAT keeps an idle mapping (RFC 5780 §4.6, see
    /// [`LifetimeProbe`]) against the first server, after the classification: up to about
    /// two minutes more, and 15 more sockets. `false`.
    pub lifetime: bool,
}

impl Default for NetcheckOptions {
    fn default() -> Self {
        NetcheckOptions {
            timeout: Duration::from_secs(5),
            other_family: true,
            seed: None,
            lifetime: false,
        }
    }
}

impl NetcheckOptions {
    /// Sets the hard cap on the run.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// A finished run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetcheckRun {
    /// The core's report.
    pub report: Report,
    /// The local sockets probed from, as bound: mapping socket, filtering socket, then the
    /// other family's socket if any.
    pub locals: Vec<SocketAddr>,
    /// Wall-clock time the run took.
    pub elapsed: Duration,
    /// The mapping lifetime bracket, when [`NetcheckOptions::lifetime`] asked for it and the
    /// run reached a server (the report says whether it was measurable).
    pub lifetime: Option<LifetimeReport>,
}

/// Why netcheck could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetcheckRunError {
    /// Binding or reading a local socket failed.
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
    /// The core refused the configuration (no servers, say).
    #[error("invalid netcheck configuration: {0}")]
    Config(#[from] NetcheckError),
}

/// Binds the sockets for `servers` (see the module docs) and runs netcheck to its report.
///
/// The first server of the pair's family is the one the RFC 5780 tests run against: put an
/// RFC 5780 server first. A family whose servers cannot be routed to (no address, no route) is
/// left out; if no family can, the pair is bound on the unspecified address of the first
/// server's family and the run reports what it can (normally `udp: false`).
pub fn netcheck(
    servers: &[SocketAddr],
    options: &NetcheckOptions,
) -> Result<NetcheckRun, NetcheckRunError> {
    let first = *servers.first().ok_or(NetcheckError::NoServers)?;
    let route = |v4: bool| {
        servers
            .iter()
            .find(|s| s.is_ipv4() == v4)
            .and_then(|&s| local_ip_towards(s).ok())
    };
    let (v4, v6) = (route(true), route(false));
    let (pair_ip, other_ip) = match (v4, v6) {
        (Some(v4), v6) => (v4, v6),
        (None, Some(v6)) => (v6, None),
        (None, None) => (unspecified_like(first).ip(), None),
    };
    let mut sockets = vec![
        UdpSocket::bind((pair_ip, 0))?,
        UdpSocket::bind((pair_ip, 0))?,
    ];
    if let Some(ip) = other_ip.filter(|_| options.other_family) {
        sockets.push(UdpSocket::bind((ip, 0))?);
    }
    tracing::debug!(
        ?servers,
        locals = ?sockets.iter().map(UdpSocket::local_addr).collect::<Vec<_>>(),
        "netcheck sockets bound"
    );
    netcheck_on(&sockets, servers, options)
}

/// Runs netcheck on sockets the caller bound: two of one family (mapping socket first, then
/// filtering socket) and at most one of the other, on concrete addresses (see the module docs).
///
/// The sockets' read timeouts are changed; datagrams that are not netcheck's are discarded.
pub fn netcheck_on(
    sockets: &[UdpSocket],
    servers: &[SocketAddr],
    options: &NetcheckOptions,
) -> Result<NetcheckRun, NetcheckRunError> {
    let locals = sockets
        .iter()
        .map(UdpSocket::local_addr)
        .collect::<io::Result<Vec<_>>>()?;
    let mut config = NetcheckConfig::new(servers.to_vec(), locals.clone());
    config.timeout = options.timeout;
    let seed = options.seed.unwrap_or_else(os_seed);
    let mut prober = Netcheck::new(config, seed)?;
    let clock = Clock::new();
    pump_sockets(&mut prober, sockets, &locals)?;
    let report = prober.report();
    let server = servers.iter().find(|s| s.is_ipv4() == locals[0].is_ipv4());
    let lifetime = match server {
        Some(&server) if options.lifetime && report.udp => {
            Some(lifetime_on(locals[0].ip(), server, seed ^ 0x11fe)?)
        }
        _ => None,
    };
    Ok(NetcheckRun {
        report,
        locals,
        elapsed: clock.epoch().elapsed(),
        lifetime,
    })
}

/// Measures the mapping lifetime towards `server` (an RFC 5780 server) from new sockets on
/// `ip`: the prober, then one per default idle time.
pub fn lifetime_on(ip: IpAddr, server: SocketAddr, seed: u64) -> io::Result<LifetimeReport> {
    let count = LifetimeConfig::DEFAULT_IDLE_TIMES.len() + 1;
    let sockets = (0..count)
        .map(|_| UdpSocket::bind((ip, 0)))
        .collect::<io::Result<Vec<_>>>()?;
    let locals = sockets
        .iter()
        .map(UdpSocket::local_addr)
        .collect::<io::Result<Vec<_>>>()?;
    let config = LifetimeConfig::new(server, locals[0], locals[1..].to_vec());
    let mut probe = LifetimeProbe::new(config, seed).map_err(io::Error::other)?;
    pump_sockets(&mut probe, &sockets, &locals)?;
    Ok(probe.report())
}

/// Runs `machine` on `sockets` (bound at `locals`) until it is done: one reader thread per
/// socket, the pump on this one.
fn pump_sockets(
    machine: &mut dyn Pumped,
    sockets: &[UdpSocket],
    locals: &[SocketAddr],
) -> io::Result<()> {
    for socket in sockets {
        socket.set_read_timeout(Some(READER_POLL_INTERVAL))?;
    }
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel();
    let clock = Clock::new();
    std::thread::scope(|scope| {
        for (index, socket) in sockets.iter().enumerate() {
            let (tx, stop) = (tx.clone(), &stop);
            scope.spawn(move || read_socket(index, socket, &tx, stop));
        }
        drop(tx);
        let result = pump(machine, &clock, sockets, locals, &rx);
        stop.store(true, Ordering::Relaxed);
        result
    })
}

/// What [`pump`] drives: netcheck and the lifetime probe.
trait Pumped {
    fn handle_timeout(&mut self, now: Instant);
    fn poll_transmit(
        &mut self,
        now: Instant,
        out: &mut [u8],
    ) -> Option<holepunch_core::io::Transmit>;
    fn is_done(&self) -> bool;
    fn poll_timeout(&self) -> Option<Instant>;
    fn handle_datagram(&mut self, now: Instant, d: Datagram<'_>);
}

impl Pumped for Netcheck {
    fn handle_timeout(&mut self, now: Instant) {
        Netcheck::handle_timeout(self, now);
    }
    fn poll_transmit(
        &mut self,
        now: Instant,
        out: &mut [u8],
    ) -> Option<holepunch_core::io::Transmit> {
        Netcheck::poll_transmit(self, now, out)
    }
    fn is_done(&self) -> bool {
        Netcheck::is_done(self)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Netcheck::poll_timeout(self)
    }
    fn handle_datagram(&mut self, now: Instant, d: Datagram<'_>) {
        Netcheck::handle_datagram(self, now, d);
    }
}

impl Pumped for LifetimeProbe {
    fn handle_timeout(&mut self, now: Instant) {
        LifetimeProbe::handle_timeout(self, now);
    }
    fn poll_transmit(
        &mut self,
        now: Instant,
        out: &mut [u8],
    ) -> Option<holepunch_core::io::Transmit> {
        LifetimeProbe::poll_transmit(self, now, out)
    }
    fn is_done(&self) -> bool {
        LifetimeProbe::is_done(self)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        LifetimeProbe::poll_timeout(self)
    }
    fn handle_datagram(&mut self, now: Instant, d: Datagram<'_>) {
        LifetimeProbe::handle_datagram(self, now, d);
    }
}

/// The local IP the kernel would send from towards `server`: a UDP socket is connected to it
/// (which sends nothing) and its local address read.
pub fn local_ip_towards(server: SocketAddr) -> io::Result<IpAddr> {
    let probe = UdpSocket::bind(unspecified_like(server))?;
    probe.connect(server)?;
    let ip = probe.local_addr()?.ip();
    if ip.is_unspecified() {
        return Err(io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!("no local address routes to {server}"),
        ));
    }
    Ok(ip)
}

/// What a reader thread hands the pump: a datagram (socket index, source, bytes) or the error
/// that stopped it.
type Received = io::Result<(usize, SocketAddr, Vec<u8>)>;

fn pump(
    prober: &mut dyn Pumped,
    clock: &Clock,
    sockets: &[UdpSocket],
    locals: &[SocketAddr],
    rx: &Receiver<Received>,
) -> io::Result<()> {
    let mut out = vec![0u8; 1280];
    loop {
        let now = clock.now();
        prober.handle_timeout(now);
        while let Some(t) = prober.poll_transmit(now, &mut out) {
            let index = t
                .from
                .and_then(|from| locals.iter().position(|l| *l == from))
                .unwrap_or(0);
            // A failed send is a lost datagram: the core's retransmissions and report cope.
            if let Err(e) = sockets[index].send_to(&out[..t.len], t.to) {
                tracing::debug!(to = %t.to, error = %e, "netcheck probe not sent");
            }
        }
        if prober.is_done() {
            return Ok(());
        }
        // While running, the core always has a deadline (its overall cap at the latest).
        let wait = prober
            .poll_timeout()
            .map_or(READER_POLL_INTERVAL, |t| clock.until(t));
        let first = match rx.recv_timeout(wait) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => {
                return Err(io::Error::other("netcheck socket readers stopped"));
            }
        };
        for received in std::iter::once(first).chain(rx.try_iter()) {
            let (index, from, bytes) = received?;
            tracing::trace!(local = %locals[index], %from, len = bytes.len(), "netcheck datagram");
            prober.handle_datagram(clock.now(), Datagram::new(locals[index], from, &bytes));
        }
    }
}

/// Reads `socket` until `stop`, handing every datagram (or the first hard error) to `tx`.
fn read_socket(index: usize, socket: &UdpSocket, tx: &Sender<Received>, stop: &AtomicBool) {
    let mut buf = vec![0u8; RECV_BUFFER_LEN];
    while !stop.load(Ordering::Relaxed) {
        let received = match socket.recv_from(&mut buf) {
            Ok((n, from)) => Ok((index, from, buf[..n].to_vec())),
            Err(e) if is_transient(&e) => continue,
            Err(e) => Err(e),
        };
        let failed = received.is_err();
        if tx.send(received).is_err() || failed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use holepunch_core::stun::server::ServerConfig;
    use std::net::Ipv4Addr;

    #[test]
    fn loopback_without_nat_is_endpoint_independent() {
        // No RFC 5780 (one address): mapping comes from "mapped = own address", filtering is
        // unknown, and the hairpin probe to our own address arrives.
        let server = crate::StunServer::bind(ServerConfig::new(SocketAddr::from((
            Ipv4Addr::LOCALHOST,
            0,
        ))))
        .expect("bind server");
        let primary = server.local_addrs()[0];
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| server.serve(&stop));
            let options = NetcheckOptions {
                seed: Some(7),
                ..NetcheckOptions::default()
            };
            let run = netcheck(&[primary], &options);
            stop.store(true, Ordering::Relaxed);
            let run = run.expect("netcheck runs");
            assert_eq!(run.locals.len(), 2, "{run:?}");
            assert!(run.locals.iter().all(|l| l.ip() == primary.ip()), "{run:?}");
            let r = &run.report;
            assert!(r.udp, "{run:?}");
            assert_eq!(r.public_v4, Some(run.locals[0]), "{run:?}");
            assert_eq!(r.mapping.as_str(), "endpoint-independent", "{run:?}");
            assert_eq!(r.filtering.as_str(), "unknown", "{run:?}");
            assert_eq!(r.hairpinning, Some(true), "{run:?}");
        });
    }

    #[test]
    fn silence_ends_with_udp_false_within_the_retransmission_profile() {
        let silent = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let target = silent.local_addr().expect("addr");
        let run = netcheck(&[target], &NetcheckOptions::default()).expect("netcheck runs");
        assert!(!run.report.udp, "{run:?}");
        assert_eq!(run.report.public_v4, None);
        assert_eq!(run.report.hairpinning, None);
        assert!(run.elapsed < Duration::from_secs(4), "{run:?}");
    }

    #[test]
    fn routes_to_loopback_from_loopback() {
        let ip = local_ip_towards(SocketAddr::from((Ipv4Addr::LOCALHOST, 9))).expect("route");
        assert_eq!(ip, IpAddr::V4(Ipv4Addr::LOCALHOST));
    }

    #[test]
    fn no_servers_is_a_configuration_error() {
        assert!(matches!(
            netcheck(&[], &NetcheckOptions::default()),
            Err(NetcheckRunError::Config(NetcheckError::NoServers))
        ));
    }
}
