//! Watching the OS for network changes: an address came or went, a route moved.
//!
//! [`spawn`] starts a task that reports each change, debounced: a burst of notifications (a
//! DHCP renewal, `ip addr flush` then `ip addr add`, a Wi-Fi roam) gives one report once
//! [`DEBOUNCE`] passed without another (or [`MAX_BURST`] after the burst began, so a storm
//! still reports). The ICE session ([`crate::ice`]) then looks at its host addresses again and
//! tells the agent (`Agent::network_changed`).
//!
//! - Linux: a `NETLINK_ROUTE` socket subscribed to the IPv4 and IPv6 address and route groups;
//!   each datagram is parsed by [`netlink::parse`] and any address or route message counts.
//! - Elsewhere (or when the netlink socket cannot be opened): the interfaces' addresses
//!   (`getifaddrs`) are compared every [`POLL_INTERVAL`]; a difference is a change.
//!
//! Both go through `nix`'s safe wrappers; the only `unsafe` is registering the netlink socket
//! with tokio's reactor (`AsyncFd::register`, whose contract an owned descriptor keeps).

pub mod netlink;

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::time::Duration;

use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::time::{Instant, Interval, MissedTickBehavior};

/// How long a burst of notifications must be quiet before it is reported.
pub const DEBOUNCE: Duration = Duration::from_millis(250);
/// The longest a burst is held back: a continuous storm is reported this often.
pub const MAX_BURST: Duration = Duration::from_secs(1);
/// Where there is no netlink: how often the interface addresses are compared.
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);

/// Starts watching (inside the current tokio runtime). The receiver gets one `()` per
/// debounced change; dropping it stops the task.
pub fn spawn() -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel(1);
    #[cfg(target_os = "linux")]
    match linux::NetlinkSource::open() {
        Ok(source) => {
            tracing::debug!("watching the network through netlink");
            tokio::spawn(debounce(source, tx, DEBOUNCE, MAX_BURST));
            return rx;
        }
        Err(e) => tracing::debug!(error = %e, "no netlink socket: polling the interfaces"),
    }
    tokio::spawn(debounce(
        Poller::new(POLL_INTERVAL),
        tx,
        DEBOUNCE,
        MAX_BURST,
    ));
    rx
}

/// Where raw change notifications come from.
pub(crate) trait ChangeSource: Send + 'static {
    /// Waits for the next change; an error ends the watching. Cancel-safe.
    fn next_change(&mut self) -> impl Future<Output = io::Result<()>> + Send;
}

/// Reports `source`'s changes on `tx`, one per burst (see the [module docs](self)); ends when
/// `tx`'s receiver is dropped or the source fails.
pub(crate) async fn debounce<S: ChangeSource>(
    mut source: S,
    tx: mpsc::Sender<()>,
    quiet: Duration,
    max_burst: Duration,
) {
    loop {
        tokio::select! {
            () = tx.closed() => return,
            r = source.next_change() => if let Err(e) = r {
                tracing::debug!(error = %e, "network watch stopped");
                return;
            },
        }
        let began = Instant::now();
        loop {
            let until = (Instant::now() + quiet).min(began + max_burst);
            tokio::select! {
                () = tokio::time::sleep_until(until) => break,
                r = source.next_change() => if let Err(e) = r {
                    tracing::debug!(error = %e, "network watch stopped");
                    break;
                },
            }
        }
        tracing::debug!(burst = ?began.elapsed(), "network changed");
        // Full: a report is still pending, and it covers this burst too.
        if let Err(TrySendError::Closed(())) = tx.try_send(()) {
            return;
        }
    }
}

/// The periodic interface diff.
struct Poller {
    last: Vec<IpAddr>,
    interval: Interval,
}

impl Poller {
    fn new(every: Duration) -> Poller {
        let mut interval = tokio::time::interval_at(Instant::now() + every, every);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Poller {
            last: interface_ips(),
            interval,
        }
    }
}

impl ChangeSource for Poller {
    async fn next_change(&mut self) -> io::Result<()> {
        loop {
            self.interval.tick().await;
            let now = interface_ips();
            if now != self.last {
                self.last = now;
                return Ok(());
            }
        }
    }
}

/// Every IP address on this host's interfaces, sorted (empty when they cannot be listed).
pub fn interface_ips() -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut ips: Vec<IpAddr> = addrs
        .filter_map(|a| a.address)
        .filter_map(|a| {
            a.as_sockaddr_in()
                .map(|s| IpAddr::V4(s.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))
        })
        .collect();
    ips.sort_unstable();
    ips.dedup();
    ips
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::os::fd::{AsRawFd, OwnedFd};

    use nix::libc;
    use nix::sys::socket::{
        AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, socket,
    };
    use tokio::io::unix::AsyncFd;

    use super::{ChangeSource, netlink};

    /// The rtnetlink groups watched: IPv4 and IPv6 addresses and routes.
    const GROUPS: u32 = (libc::RTMGRP_IPV4_IFADDR
        | libc::RTMGRP_IPV6_IFADDR
        | libc::RTMGRP_IPV4_ROUTE
        | libc::RTMGRP_IPV6_ROUTE) as u32;
    /// Large enough for any notification datagram (the kernel sends at most a page's worth).
    const BUFFER: usize = 64 * 1024;

    /// A `NETLINK_ROUTE` socket subscribed to [`GROUPS`].
    pub(super) struct NetlinkSource {
        fd: AsyncFd<OwnedFd>,
        buf: Vec<u8>,
    }

    impl NetlinkSource {
        pub(super) fn open() -> io::Result<NetlinkSource> {
            let fd = socket(
                AddressFamily::Netlink,
                SockType::Raw,
                SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
                SockProtocol::NetlinkRoute,
            )?;
            // Port id 0: the kernel assigns one.
            bind(fd.as_raw_fd(), &NetlinkAddr::new(0, GROUPS))?;
            // The one `unsafe` of this module: tokio's `AsyncFd::register` asks the caller to
            // promise the descriptor stays open and the same while registered.
            // SAFETY: `OwnedFd` owns the descriptor, moves into the `AsyncFd` and is closed only
            // when that is dropped; its `as_raw_fd` always returns the same descriptor.
            #[allow(unsafe_code)]
            let fd = unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)?;
            Ok(NetlinkSource {
                fd,
                buf: vec![0; BUFFER],
            })
        }
    }

    impl ChangeSource for NetlinkSource {
        async fn next_change(&mut self) -> io::Result<()> {
            loop {
                let mut guard = self.fd.readable().await?;
                let buf = &mut self.buf;
                let read = guard.try_io(|fd| {
                    recv(fd.as_raw_fd(), buf, MsgFlags::empty()).map_err(io::Error::from)
                });
                match read {
                    Ok(Ok(n)) => match netlink::parse(&buf[..n]) {
                        Ok(changes) if changes.is_empty() => {}
                        // A malformed or overrun batch: assume something changed.
                        Ok(_) | Err(_) => return Ok(()),
                    },
                    // The socket's buffer overflowed: notifications were lost, so something
                    // changed.
                    Ok(Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => return Ok(()),
                    Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                    Ok(Err(e)) => return Err(e),
                    Err(_would_block) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Raw notifications pushed by the test.
    struct Fake(mpsc::UnboundedReceiver<()>);

    impl ChangeSource for Fake {
        async fn next_change(&mut self) -> io::Result<()> {
            self.0
                .recv()
                .await
                .ok_or_else(|| io::Error::other("closed"))
        }
    }

    fn start() -> (mpsc::UnboundedSender<()>, mpsc::Receiver<()>) {
        let (raw_tx, raw_rx) = mpsc::unbounded_channel();
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(debounce(Fake(raw_rx), tx, DEBOUNCE, MAX_BURST));
        (raw_tx, rx)
    }

    /// Whether no report came within `limit`. The watcher ending (its sender dropped) fails
    /// the test: a closed channel would otherwise look like an endless stream of reports.
    async fn nothing_within(rx: &mut mpsc::Receiver<()>, limit: Duration) -> bool {
        match tokio::time::timeout(limit, rx.recv()).await {
            Ok(Some(())) => false,
            Ok(None) => panic!("the watcher ended"),
            Err(_elapsed) => true,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_gives_one_report_once_it_is_quiet() {
        let (raw, mut rx) = start();
        let began = Instant::now();
        for _ in 0..5 {
            raw.send(()).expect("send");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        rx.recv().await.expect("a report");
        // The last notification came at 400 ms; the report waits 250 ms of quiet after it.
        assert_eq!(began.elapsed(), Duration::from_millis(650));
        assert!(nothing_within(&mut rx, Duration::from_secs(30)).await);
        raw.send(()).expect("send");
        rx.recv().await.expect("a second change, a second report");
    }

    #[tokio::test(start_paused = true)]
    async fn a_storm_is_reported_every_max_burst() {
        let (raw, mut rx) = start();
        // The feeder hands the sender back rather than dropping it: a closed source ends the
        // watcher, and the storm's tail is counted while the watcher still runs.
        let feeder = tokio::spawn(async move {
            for _ in 0..30 {
                raw.send(()).expect("send");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            raw
        });
        let began = Instant::now();
        rx.recv().await.expect("a report");
        assert_eq!(began.elapsed(), MAX_BURST);
        let mut reports = 1;
        while !nothing_within(&mut rx, Duration::from_secs(5)).await {
            reports += 1;
        }
        let raw = feeder.await.expect("feeder");
        drop(raw);
        // 3 s of storm: one report per second, and the tail's.
        assert!((3..=4).contains(&reports), "{reports} reports");
    }

    #[tokio::test(start_paused = true)]
    async fn the_task_ends_when_the_receiver_is_dropped() {
        let (raw_tx, raw_rx) = mpsc::unbounded_channel::<()>();
        let (tx, rx) = mpsc::channel(1);
        let task = tokio::spawn(debounce(Fake(raw_rx), tx, DEBOUNCE, MAX_BURST));
        drop(rx);
        task.await.expect("ends");
        drop(raw_tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_source_reports_its_pending_burst_and_ends() {
        let (raw, mut rx) = start();
        raw.send(()).expect("send");
        drop(raw);
        rx.recv().await.expect("the burst before the failure");
        assert!(rx.recv().await.is_none(), "the watcher ended");
    }

    #[test]
    fn interface_ips_include_loopback() {
        let ips = interface_ips();
        assert!(ips.iter().any(IpAddr::is_loopback), "{ips:?}");
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_netlink_socket_opens() {
        assert!(linux::NetlinkSource::open().is_ok());
    }
}
