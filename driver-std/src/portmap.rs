//! Port mapping on blocking sockets: finds the default gateway and pumps the core's PCP/NAT-PMP
//! [`Client`] (or its [`UpnpClient`]) until it fails or is stopped (then it deletes the
//! mapping).
//!
//! One UDP socket, bound to an ephemeral port, talks to the gateway's port 5351; the mapped port
//! is the caller's own socket's, which this driver never touches. Announcements the gateway
//! multicasts to port 5350 are not listened for: restarts are still noticed at the next renewal
//! through the epoch rule.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use holepunch_core::io::Datagram;
use holepunch_core::portmap::client::{
    Client, ClientConfig, MAX_REQUEST_LEN, PortmapEvent, Protocols,
};
use holepunch_core::portmap::upnp::client::{HttpIo, UpnpAction, UpnpClient, UpnpConfig};
use holepunch_core::portmap::upnp::http;
use holepunch_core::portmap::{Protocol, RetryPolicy, SERVER_PORT};
use holepunch_core::rng::Rng;
use holepunch_core::time::Instant;

use crate::netcheck::local_ip_towards;
use crate::{Clock, os_seed};

/// How often the loop looks at the stop flag while waiting.
const STOP_POLL: Duration = Duration::from_millis(100);
/// Connect, read and write timeout of one UPnP HTTP exchange.
const HTTP_IO_TIMEOUT: Duration = Duration::from_secs(5);

/// What to map, and how.
#[derive(Clone, Copy, Debug)]
pub struct PortmapOptions {
    /// The gateway; `None` reads the default route from /proc/net/route.
    pub gateway: Option<IpAddr>,
    /// The local UDP port to map.
    pub port: u16,
    /// Requested lifetime.
    pub lifetime: Duration,
    /// Which protocols to try.
    pub protocols: Protocols,
}

/// Maps `options.port` and keeps it mapped until `stop` is raised or the client fails, handing
/// every event to `on_event`. Returns the last event: [`PortmapEvent::Closed`] after a stop, or
/// [`PortmapEvent::Failed`].
pub fn run_portmap(
    options: &PortmapOptions,
    stop: &AtomicBool,
    mut on_event: impl FnMut(&PortmapEvent),
) -> io::Result<PortmapEvent> {
    let gateway = gateway_or_default(options.gateway)?;
    let server = SocketAddr::new(gateway, SERVER_PORT);
    let client_ip = local_ip_towards(server)?;
    let socket = UdpSocket::bind(SocketAddr::new(client_ip, 0))?;
    tracing::debug!(%gateway, local = ?socket.local_addr(), "port mapping socket bound");
    let clock = Clock::new();
    let mut client = Client::new(
        clock.now(),
        &mut Rng::from_seed(os_seed()),
        ClientConfig {
            gateway,
            client_ip,
            protocol: Protocol::Udp,
            internal_port: options.port,
            suggested_external_port: options.port,
            lifetime: options.lifetime,
            protocols: options.protocols,
            retry: RetryPolicy::default(),
        },
    );
    let mut out = [0u8; MAX_REQUEST_LEN];
    let mut buf = [0u8; 1100];
    let mut last = None;
    let mut closing = false;
    loop {
        let now = clock.now();
        if stop.load(Ordering::Relaxed) && !closing {
            closing = true;
            client.close(now);
        }
        while let Some(t) = client.poll_transmit(now, &mut out) {
            socket.send_to(&out[..t.len], t.to)?;
        }
        while let Some(e) = client.poll_event() {
            on_event(&e);
            last = Some(e);
        }
        if client.is_done() {
            return Ok(last.unwrap_or(PortmapEvent::Closed));
        }
        if let Some((n, from)) = recv_until(&socket, &clock, client.poll_timeout(), &mut buf)? {
            // Rejected datagrams are the client's business (typed, ignored); keep going.
            let local = socket.local_addr()?;
            let _ = client.handle_datagram(clock.now(), Datagram::new(local, from, &buf[..n]));
        }
        client.handle_timeout(clock.now());
    }
}

/// Like [`run_portmap`], with UPnP IGD: SSDP on one UDP socket, then blocking TCP exchanges
/// for the description and the SOAP actions (each bounded by the core's limits and timeouts).
pub fn run_upnp(
    options: &PortmapOptions,
    stop: &AtomicBool,
    mut on_event: impl FnMut(&PortmapEvent),
) -> io::Result<PortmapEvent> {
    let gateway = gateway_or_default(options.gateway)?;
    let client_ip = local_ip_towards(SocketAddr::new(gateway, 1900))?;
    let socket = UdpSocket::bind(SocketAddr::new(client_ip, 0))?;
    tracing::debug!(%gateway, local = ?socket.local_addr(), "port mapping socket bound");
    let clock = Clock::new();
    let mut client = UpnpClient::new(
        clock.now(),
        UpnpConfig {
            gateway: Some(gateway),
            client_ip,
            protocol: Protocol::Udp,
            internal_port: options.port,
            external_port: options.port,
            lease: options.lifetime,
            description: format!("holepunch {}", options.port),
        },
    );
    let mut out = [0u8; 512];
    let mut buf = [0u8; 2048];
    let mut last = None;
    let mut closing = false;
    loop {
        let now = clock.now();
        if stop.load(Ordering::Relaxed) && !closing {
            closing = true;
            client.close(now);
        }
        while let Some(t) = client.poll_transmit(now, &mut out) {
            socket.send_to(&out[..t.len], t.to)?;
        }
        while let Some(UpnpAction::Http {
            token,
            to,
            request,
            max_response,
        }) = client.poll_action()
        {
            let answer = http_exchange(to, &request, max_response);
            let io = match &answer {
                Ok(bytes) => HttpIo::Response(bytes),
                Err(e) => {
                    tracing::debug!(%to, error = %e, "UPnP HTTP exchange failed");
                    HttpIo::Failed
                }
            };
            client.handle_io(clock.now(), token, io);
        }
        while let Some(e) = client.poll_event() {
            on_event(&e);
            last = Some(e);
        }
        if client.is_done() {
            return Ok(last.unwrap_or(PortmapEvent::Closed));
        }
        if let Some((n, from)) = recv_until(&socket, &clock, client.poll_timeout(), &mut buf)? {
            let _ = client.handle_datagram(clock.now(), from, &buf[..n]);
        }
        client.handle_timeout(clock.now());
    }
}

/// The gateway to talk to: the one given, or else the default route's.
pub(crate) fn gateway_or_default(gateway: Option<IpAddr>) -> io::Result<IpAddr> {
    match gateway {
        Some(g) => Ok(g),
        None => default_gateway().map(IpAddr::V4),
    }
}

/// Waits for one datagram until `deadline` (a machine's `poll_timeout`), but at most
/// [`STOP_POLL`] so that the caller sees its stop flag; `None` when nothing came.
///
/// An ICMP port unreachable (`ConnectionRefused`) counts as silence: a gateway without a
/// PCP/NAT-PMP server sends one, and the machine's own retry schedule decides when to give up.
pub(crate) fn recv_until(
    socket: &UdpSocket,
    clock: &Clock,
    deadline: Option<Instant>,
    buf: &mut [u8],
) -> io::Result<Option<(usize, SocketAddr)>> {
    let wait = deadline
        .map_or(STOP_POLL, |t| clock.until(t))
        .clamp(Duration::from_millis(1), STOP_POLL);
    socket.set_read_timeout(Some(wait))?;
    match socket.recv_from(buf) {
        Ok(got) => Ok(Some(got)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::ConnectionRefused
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// One HTTP exchange: connect, send, read until the peer closes, the response is complete, or
/// `max` bytes arrived.
fn http_exchange(to: SocketAddr, request: &[u8], max: usize) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&to, HTTP_IO_TIMEOUT)?;
    stream.set_read_timeout(Some(HTTP_IO_TIMEOUT))?;
    stream.set_write_timeout(Some(HTTP_IO_TIMEOUT))?;
    stream.write_all(request)?;
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    while data.len() <= max {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        data.extend_from_slice(&chunk[..n]);
        if http::read_response(&data, max).is_ok() {
            break;
        }
    }
    Ok(data)
}

/// The IPv4 default gateway from /proc/net/route (Linux).
pub fn default_gateway() -> io::Result<Ipv4Addr> {
    let table = std::fs::read_to_string("/proc/net/route")?;
    default_gateway_in(&table).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "no IPv4 default route with a gateway in /proc/net/route",
        )
    })
}

/// The gateway of the first default route (destination and mask 0, RTF_GATEWAY set) in the text
/// of /proc/net/route, whose addresses are host-order hex.
pub fn default_gateway_in(table: &str) -> Option<Ipv4Addr> {
    const RTF_UP: u32 = 0x1;
    const RTF_GATEWAY: u32 = 0x2;
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let hex = |i: usize| f.get(i).and_then(|s| u32::from_str_radix(s, 16).ok());
        let (dest, gw, flags, mask) = (hex(1)?, hex(2)?, hex(3)?, hex(7)?);
        let default =
            dest == 0 && mask == 0 && flags & (RTF_UP | RTF_GATEWAY) == RTF_UP | RTF_GATEWAY;
        // The kernel prints the network-order bytes as a native integer: little-endian here.
        (default && gw != 0).then(|| Ipv4Addr::from(gw.to_le_bytes()))
    })
}

/// The gateway packets to `dest` leave through: the next hop of the longest-prefix route to it
/// in /proc/net/route (Linux, IPv4). `None` for loopback or IPv6 destinations, for on-link
/// ones, or when the table cannot be read.
pub fn gateway_towards(dest: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V4(dest) = dest else {
        return None;
    };
    if dest.is_loopback() {
        return None;
    }
    let table = std::fs::read_to_string("/proc/net/route").ok()?;
    gateway_towards_in(&table, dest)
}

/// [`gateway_towards`] on the text of /proc/net/route.
pub fn gateway_towards_in(table: &str, dest: Ipv4Addr) -> Option<Ipv4Addr> {
    const RTF_UP: u32 = 0x1;
    const RTF_GATEWAY: u32 = 0x2;
    let dest = u32::from_be_bytes(dest.octets());
    let mut best: Option<(u32, u32, u32)> = None;
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let hex = |i: usize| f.get(i).and_then(|s| u32::from_str_radix(s, 16).ok());
        let (Some(net), Some(gw), Some(flags), Some(mask)) = (hex(1), hex(2), hex(3), hex(7))
        else {
            continue;
        };
        // Host-order hex of network-order bytes (little-endian here), as in default_gateway_in.
        let [net, gw, mask] = [net, gw, mask].map(|x| u32::from_be_bytes(x.to_le_bytes()));
        if flags & RTF_UP == 0 || dest & mask != net & mask {
            continue;
        }
        if best.is_none_or(|(m, _, _)| mask.count_ones() > m.count_ones()) {
            best = Some((mask, gw, flags));
        }
    }
    let (_, gw, flags) = best?;
    (flags & RTF_GATEWAY != 0 && gw != 0).then(|| Ipv4Addr::from(gw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_towards_a_destination_is_the_longest_prefix_routes() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
            eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
            eth1\t0000000A\tFE01A8C0\t0003\t0\t0\t0\t000000FF\t0\t0\t0\n";
        let via = |d: [u8; 4]| gateway_towards_in(table, Ipv4Addr::from(d));
        assert_eq!(via([203, 0, 113, 5]), Some(Ipv4Addr::new(192, 168, 1, 1)));
        assert_eq!(via([192, 168, 1, 7]), None, "on-link");
        assert_eq!(via([10, 9, 8, 7]), Some(Ipv4Addr::new(192, 168, 1, 254)));
        assert_eq!(
            gateway_towards_in("garbage\nmore garbage\n", Ipv4Addr::new(1, 2, 3, 4)),
            None
        );
        assert_eq!(gateway_towards("127.0.0.1".parse().expect("ip")), None);
        assert_eq!(gateway_towards("::1".parse().expect("ip")), None);
    }

    #[test]
    fn default_route_is_read_from_proc_net_route() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            br-lan\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
            eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n";
        assert_eq!(
            default_gateway_in(table),
            Some(Ipv4Addr::new(192, 168, 1, 1))
        );
        let no_default = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n\
            lo\t0000007F\t00000000\t0001\t0\t0\t0\t000000FF\n";
        assert_eq!(default_gateway_in(no_default), None);
        assert_eq!(default_gateway_in("garbage\nmore garbage here\n"), None);
    }

    /// The driver against a PCP gateway played by a thread on 127.0.0.151:5351 (loopback
    /// only): maps, then on stop deletes with the creation nonce and reports Closed.
    #[test]
    fn maps_and_deletes_through_a_loopback_pcp_gateway() {
        use holepunch_core::portmap::client::MappedVia;
        use holepunch_core::portmap::pcp;
        use std::sync::Arc;

        let gw_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 151));
        let gw = UdpSocket::bind(SocketAddr::new(gw_ip, SERVER_PORT)).expect("bind gateway");
        gw.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let stop = Arc::new(AtomicBool::new(false));
        let gateway = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut buf = [0u8; 1100];
            for _ in 0..2 {
                let (n, from) = gw.recv_from(&mut buf).expect("request within 5 s");
                let req = pcp::MapRequest::parse(&buf[..n]).expect("PCP MAP");
                let (bytes, len) = pcp::Response {
                    opcode: pcp::OP_MAP,
                    error: None,
                    lifetime_secs: req.lifetime_secs,
                    epoch: 1,
                    map: Some(pcp::MapResponse {
                        nonce: req.nonce,
                        protocol: 17,
                        internal_port: req.internal_port,
                        external: "203.0.113.10:40000".parse().expect("addr"),
                    }),
                }
                .encode();
                gw.send_to(&bytes[..len], from).expect("answer");
                seen.push(req);
            }
            seen
        });
        let options = PortmapOptions {
            gateway: Some(gw_ip),
            port: 40000,
            lifetime: Duration::from_secs(120),
            protocols: Protocols {
                pcp: true,
                natpmp: false,
            },
        };
        let flag = Arc::clone(&stop);
        let mut events = Vec::new();
        let last = run_portmap(&options, &stop, |e| {
            events.push(*e);
            if matches!(e, PortmapEvent::Mapped { .. }) {
                flag.store(true, Ordering::Relaxed);
            }
        })
        .expect("runs");
        assert_eq!(last, PortmapEvent::Closed);
        assert!(matches!(
            events[0],
            PortmapEvent::Mapped { via: MappedVia::Pcp, external, .. }
                if external == "203.0.113.10:40000".parse().expect("addr")
        ));
        let seen = gateway.join().expect("gateway thread");
        assert_eq!(seen[0].lifetime_secs, 120);
        assert_eq!(seen[1].lifetime_secs, 0, "the second request deletes");
        assert_eq!(seen[0].nonce, seen[1].nonce);
    }
}
