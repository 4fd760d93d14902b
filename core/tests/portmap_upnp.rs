//! The UPnP IGD client against a scripted gateway: SSDP answer, description, external address,
//! AddPortMapping with the 718 and 725 fallbacks, renewal at half the lease, and delete on close;
//! hostile answers end in typed errors.

use std::net::{IpAddr, SocketAddr};

use holepunch_core::portmap::Protocol;
use holepunch_core::portmap::client::{MappedVia, PortmapError, PortmapEvent};
use holepunch_core::portmap::upnp::UpnpError;
use holepunch_core::portmap::upnp::client::{HttpIo, UpnpAction, UpnpClient, UpnpConfig};
use holepunch_core::time::{Duration, Instant};

const GW: &str = "192.168.1.1";

const DESC: &str = r#"<?xml version="1.0"?><root xmlns="urn:schemas-upnp-org:device-1-0"><device>
<deviceList><device><deviceList><device><serviceList><service>
<serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType>
<controlURL>/ctl/IPConn</controlURL></service></serviceList></device></deviceList></device></deviceList>
</device></root>"#;

fn config() -> UpnpConfig {
    UpnpConfig {
        gateway: Some(GW.parse().expect("ip")),
        client_ip: "192.168.1.2".parse().expect("ip"),
        protocol: Protocol::Udp,
        internal_port: 46000,
        external_port: 46000,
        lease: Duration::from_secs(600),
        description: "holepunch".into(),
    }
}

fn ssdp_answer() -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nST: urn:schemas-upnp-org:service:WANIPConnection:1\r\n\
         LOCATION: http://{GW}:5000/rootDesc.xml\r\n\r\n"
    )
    .into_bytes()
}

fn http(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn soap_ok(inner: &str) -> Vec<u8> {
    http(
        "200 OK",
        &format!("<s:Envelope><s:Body><u:R>{inner}</u:R></s:Body></s:Envelope>"),
    )
}

fn fault(code: u16) -> Vec<u8> {
    http(
        "500 Internal Server Error",
        &format!(
            "<s:Envelope><s:Body><s:Fault><detail><UPnPError><errorCode>{code}</errorCode>\
             </UPnPError></detail></s:Fault></s:Body></s:Envelope>"
        ),
    )
}

/// Takes the pending HTTP action: (token, request text).
fn action(c: &mut UpnpClient) -> (u64, String) {
    match c.poll_action() {
        Some(UpnpAction::Http { token, request, .. }) => {
            (token, String::from_utf8(request).expect("utf8"))
        }
        other => panic!("expected an HTTP action, got {other:?}"),
    }
}

fn from_gw() -> SocketAddr {
    SocketAddr::new(GW.parse().expect("ip"), 1900)
}

/// Runs discovery up to the first AddPortMapping request.
fn to_first_add(c: &mut UpnpClient, now: Instant) -> (u64, String) {
    let mut buf = [0u8; 512];
    let mut searches = 0;
    while let Some(t) = c.poll_transmit(now, &mut buf) {
        assert_eq!(t.to, "239.255.255.250:1900".parse().expect("addr"));
        assert!(buf[..t.len].starts_with(b"M-SEARCH * HTTP/1.1\r\n"));
        searches += 1;
    }
    assert_eq!(searches, 3, "one M-SEARCH per service type");
    c.handle_datagram(now, from_gw(), &ssdp_answer())
        .expect("answer");
    let (t, req) = action(c);
    assert!(req.starts_with("GET /rootDesc.xml HTTP/1.1\r\n"), "{req}");
    c.handle_io(now, t, HttpIo::Response(&http("200 OK", DESC)));
    let (t, req) = action(c);
    assert!(req.contains("#GetExternalIPAddress\""), "{req}");
    c.handle_io(
        now,
        t,
        HttpIo::Response(&soap_ok(
            "<NewExternalIPAddress>203.0.113.10</NewExternalIPAddress>",
        )),
    );
    let (t, req) = action(c);
    assert!(req.starts_with("POST /ctl/IPConn HTTP/1.1\r\n"), "{req}");
    assert!(req.contains("#AddPortMapping\""), "{req}");
    (t, req)
}

#[test]
fn maps_renews_and_deletes() {
    let t0 = Instant::ZERO;
    let mut c = UpnpClient::new(t0, config());
    let (t, _) = to_first_add(&mut c, t0);
    c.handle_io(t0, t, HttpIo::Response(&soap_ok("")));
    let external: SocketAddr = "203.0.113.10:46000".parse().expect("addr");
    assert_eq!(
        c.poll_event(),
        Some(PortmapEvent::Mapped {
            via: MappedVia::Upnp,
            external,
            lifetime: Duration::from_secs(600)
        })
    );
    assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(300)));
    let renew = t0 + Duration::from_secs(300);
    c.handle_timeout(renew);
    let (t, req) = action(&mut c);
    assert!(req.contains("<NewExternalPort>46000</NewExternalPort>"));
    c.handle_io(renew, t, HttpIo::Response(&soap_ok("")));
    assert!(matches!(c.poll_event(), Some(PortmapEvent::Renewed { .. })));
    c.close(renew);
    let (t, req) = action(&mut c);
    assert!(req.contains("#DeletePortMapping\""), "{req}");
    c.handle_io(renew, t, HttpIo::Response(&soap_ok("")));
    assert_eq!(c.poll_event(), Some(PortmapEvent::Closed));
    assert!(c.is_done());
}

#[test]
fn conflict_718_tries_the_next_port_and_725_asks_for_a_permanent_lease() {
    let t0 = Instant::ZERO;
    let mut c = UpnpClient::new(t0, config());
    let (t, _) = to_first_add(&mut c, t0);
    c.handle_io(t0, t, HttpIo::Response(&fault(718)));
    let (t, req) = action(&mut c);
    assert!(
        req.contains("<NewExternalPort>46001</NewExternalPort>"),
        "{req}"
    );
    c.handle_io(t0, t, HttpIo::Response(&fault(725)));
    let (t, req) = action(&mut c);
    assert!(
        req.contains("<NewLeaseDuration>0</NewLeaseDuration>"),
        "{req}"
    );
    c.handle_io(t0, t, HttpIo::Response(&soap_ok("")));
    assert!(matches!(
        c.poll_event(),
        Some(PortmapEvent::Mapped { external, .. }) if external.port() == 46001
    ));
    assert_eq!(c.poll_timeout(), None, "a permanent lease is not renewed");
}

#[test]
fn hostile_gateways_end_in_typed_errors() {
    let t0 = Instant::ZERO;
    // An SSDP answer from elsewhere, or pointing elsewhere, is refused.
    let mut c = UpnpClient::new(t0, config());
    let stranger = SocketAddr::new(IpAddr::from([192, 168, 1, 66]), 1900);
    assert_eq!(
        c.handle_datagram(t0, stranger, &ssdp_answer()),
        Err(UpnpError::Url)
    );
    assert!(c.handle_datagram(t0, from_gw(), b"garbage").is_err());
    // A 10 MB description is refused before parsing.
    c.handle_datagram(t0, from_gw(), &ssdp_answer())
        .expect("answer");
    let (t, _) = action(&mut c);
    let huge = http("200 OK", &" ".repeat(10 * 1024 * 1024));
    c.handle_io(t0, t, HttpIo::Response(&huge));
    assert!(matches!(
        c.poll_event(),
        Some(PortmapEvent::Failed(PortmapError::Upnp(
            UpnpError::TooLarge { .. }
        )))
    ));
    // An XML bomb in the description.
    let mut c = UpnpClient::new(t0, config());
    c.handle_datagram(t0, from_gw(), &ssdp_answer())
        .expect("answer");
    let (t, _) = action(&mut c);
    let bomb = "<!DOCTYPE r [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;&a;\">]><root>&b;</root>";
    c.handle_io(t0, t, HttpIo::Response(&http("200 OK", bomb)));
    assert_eq!(
        c.poll_event(),
        Some(PortmapEvent::Failed(PortmapError::Upnp(UpnpError::Xml)))
    );
    // A gateway whose HTTP server never answers: the exchange times out.
    let mut c = UpnpClient::new(t0, config());
    c.handle_datagram(t0, from_gw(), &ssdp_answer())
        .expect("answer");
    let _ = action(&mut c);
    let deadline = c.poll_timeout().expect("a deadline");
    assert_eq!(deadline, t0 + Duration::from_secs(10));
    c.handle_timeout(deadline);
    assert_eq!(
        c.poll_event(),
        Some(PortmapEvent::Failed(PortmapError::NoAnswer))
    );
    // Nobody answers SSDP: three rounds, then a typed failure.
    let mut c = UpnpClient::new(t0, config());
    let mut buf = [0u8; 512];
    let mut sent = Vec::new();
    let mut now = t0;
    for _ in 0..10 {
        while c.poll_transmit(now, &mut buf).is_some() {
            sent.push((now - t0).as_secs());
        }
        let Some(t) = c.poll_timeout() else { break };
        now = t;
        c.handle_timeout(now);
    }
    assert_eq!(
        sent,
        [0, 0, 0, 1, 1, 1, 3, 3, 3],
        "rounds 1 s and 2 s apart"
    );
    assert_eq!(
        now - t0,
        Duration::from_secs(7),
        "then 4 s for the last answers"
    );
    assert_eq!(
        c.poll_event(),
        Some(PortmapEvent::Failed(PortmapError::NoAnswer))
    );
}
