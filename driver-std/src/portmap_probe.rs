//! The gateway probe on a blocking socket ([`probe_gateway`], for `netcheck`), and
//! [`run_auto`]: probe all three protocols at once, then map with the best that answered
//! (PCP > NAT-PMP > UPnP IGD).
//!
//! [`spawn_auto`] runs [`run_auto`] on a thread of its own and registers it, so that a program
//! about to exit can stop every mapping and wait for the deletes with [`finish_all`] (a thread
//! killed by the process exit would leave its mapping on the gateway until it expires).

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use holepunch_core::portmap::SERVER_PORT;
use holepunch_core::portmap::client::{MappedVia, PortmapError, PortmapEvent, Protocols};
use holepunch_core::portmap::probe::{Answered, MAX_PROBE_LEN, Probe, ProbeConfig};

use crate::Clock;
use crate::netcheck::local_ip_towards;
use crate::portmap::{PortmapOptions, gateway_or_default, recv_until, run_portmap, run_upnp};

/// How long `run_auto`'s probe waits for a gateway that does not answer at all.
pub const AUTO_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Asks `gateway` (default: the default route's) which port-mapping protocols it speaks, with
/// requests that create nothing; returns after every protocol answered or `timeout`.
pub fn probe_gateway(gateway: Option<IpAddr>, timeout: Duration) -> io::Result<Answered> {
    let stop = AtomicBool::new(false);
    run_probe(gateway, timeout, &stop, false).map(|(answered, _)| answered)
}

/// Pumps a [`Probe`] until it is done (`until_decided`: until it knows which protocol to map
/// with) or `stop` is raised; returns what answered, and the decision.
fn run_probe(
    gateway: Option<IpAddr>,
    timeout: Duration,
    stop: &AtomicBool,
    until_decided: bool,
) -> io::Result<(Answered, Option<MappedVia>)> {
    let gateway = gateway_or_default(gateway)?;
    let client_ip = local_ip_towards(SocketAddr::new(gateway, SERVER_PORT))?;
    let socket = UdpSocket::bind(SocketAddr::new(client_ip, 0))?;
    let clock = Clock::new();
    let mut probe = Probe::new(
        clock.now(),
        ProbeConfig {
            gateway,
            client_ip,
            timeout,
        },
    );
    let mut out = [0u8; MAX_PROBE_LEN];
    let mut buf = [0u8; 2048];
    loop {
        let now = clock.now();
        while let Some(t) = probe.poll_transmit(now, &mut out) {
            // A multicast send can fail on a host without a multicast route; the others go on.
            let _ = socket.send_to(&out[..t.len], t.to);
        }
        let decided = if until_decided {
            probe.decision(now)
        } else {
            probe.is_done(now).then(|| probe.answered().best())
        };
        if let Some(best) = decided {
            return Ok((probe.answered(), best));
        }
        if stop.load(Ordering::Relaxed) {
            return Ok((probe.answered(), None));
        }
        // No PCP/NAT-PMP server gives an ICMP port unreachable (silence here); SSDP may still
        // answer.
        if let Some((n, from)) = recv_until(&socket, &clock, probe.poll_timeout(), &mut buf)? {
            // Not an answer: typed and ignored.
            let _ = probe.handle_datagram(clock.now(), from, &buf[..n]);
        }
        probe.handle_timeout(clock.now());
    }
}

/// Probes PCP, NAT-PMP and UPnP IGD at once, then maps `options.port` with the best protocol
/// that answered, PCP > NAT-PMP > UPnP, like [`run_portmap`] / [`run_upnp`] (which see for the
/// events and the return value). No answer within [`AUTO_PROBE_TIMEOUT`] is
/// [`PortmapEvent::Failed`] with [`PortmapError::NoAnswer`].
pub fn run_auto(
    options: &PortmapOptions,
    stop: &AtomicBool,
    mut on_event: impl FnMut(&PortmapEvent),
) -> io::Result<PortmapEvent> {
    let gateway = gateway_or_default(options.gateway)?;
    let (_, best) = run_probe(Some(gateway), AUTO_PROBE_TIMEOUT, stop, true)?;
    let options = PortmapOptions {
        gateway: Some(gateway),
        ..*options
    };
    let only = |pcp: bool| PortmapOptions {
        protocols: Protocols { pcp, natpmp: !pcp },
        ..options
    };
    match best {
        _ if stop.load(Ordering::Relaxed) => Ok(PortmapEvent::Closed),
        Some(MappedVia::Pcp) => run_portmap(&only(true), stop, on_event),
        Some(MappedVia::NatPmp) => run_portmap(&only(false), stop, on_event),
        Some(MappedVia::Upnp) => run_upnp(&options, stop, on_event),
        None => {
            let failed = PortmapEvent::Failed(PortmapError::NoAnswer);
            on_event(&failed);
            Ok(failed)
        }
    }
}

/// Mapping threads started by [`spawn_auto`] that [`finish_all`] has not collected.
static RUNNING: Mutex<Vec<(Arc<AtomicBool>, JoinHandle<()>)>> = Mutex::new(Vec::new());

/// Runs [`run_auto`] on a new thread until the returned flag is raised (then it deletes the
/// mapping). Every event goes to `on_event`; a socket error ends the thread with a
/// [`PortmapError::NoAnswer`] failure.
pub fn spawn_auto(
    options: PortmapOptions,
    mut on_event: impl FnMut(&PortmapEvent) + Send + 'static,
) -> io::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let handle = std::thread::Builder::new()
        .name("holepunch-portmap".into())
        .spawn(move || {
            if run_auto(&options, &flag, &mut on_event).is_err() {
                on_event(&PortmapEvent::Failed(PortmapError::NoAnswer));
            }
        })?;
    let mut running = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
    running.retain(|(_, h)| !h.is_finished());
    running.push((Arc::clone(&stop), handle));
    Ok(stop)
}

/// Stops every thread [`spawn_auto`] started and waits, at most `limit`, for them to delete
/// their mappings and end. Call it before the process exits.
pub fn finish_all(limit: Duration) {
    let started = std::time::Instant::now();
    let mut running = std::mem::take(&mut *RUNNING.lock().unwrap_or_else(|p| p.into_inner()));
    for (stop, _) in &running {
        stop.store(true, Ordering::Relaxed);
    }
    while !running.is_empty() && started.elapsed() < limit {
        running.retain(|(_, h)| !h.is_finished());
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use holepunch_core::portmap::{natpmp, pcp};
    use std::net::Ipv4Addr;

    /// A loopback gateway (127.0.0.152:5351) that answers NAT-PMP but not PCP: the probe
    /// reports NAT-PMP only and ends at its deadline, since PCP and SSDP stay silent.
    #[test]
    fn a_natpmp_only_gateway_is_reported_as_such() {
        let gw_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 152));
        let gw = UdpSocket::bind(SocketAddr::new(gw_ip, SERVER_PORT)).expect("bind gateway");
        gw.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let gateway = std::thread::spawn(move || {
            let mut buf = [0u8; 1100];
            let mut pcp_seen = 0;
            while !flag.load(Ordering::Relaxed) {
                let Ok((n, from)) = gw.recv_from(&mut buf) else {
                    continue;
                };
                if buf[..n] == natpmp::external_address_request() {
                    let mut out = [0u8; natpmp::MAX_RESPONSE_LEN];
                    let len = natpmp::Response::ExternalAddress {
                        epoch: 9,
                        addr: Ipv4Addr::new(203, 0, 113, 10),
                    }
                    .encode(&mut out);
                    gw.send_to(&out[..len], from).expect("answer");
                } else if buf.first() == Some(&pcp::VERSION) {
                    pcp_seen += 1;
                }
            }
            pcp_seen
        });
        let started = std::time::Instant::now();
        let answered = probe_gateway(Some(gw_ip), Duration::from_millis(600)).expect("probe");
        let took = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        let pcp_seen = gateway.join().expect("gateway thread");
        assert_eq!(
            answered,
            Answered {
                pcp: false,
                natpmp: true,
                upnp: false
            }
        );
        assert_eq!(answered.best(), Some(MappedVia::NatPmp));
        assert!(pcp_seen >= 2, "PCP ANNOUNCE resent: {pcp_seen}");
        assert!(took < Duration::from_secs(2), "bounded: {took:?}");
    }
}
