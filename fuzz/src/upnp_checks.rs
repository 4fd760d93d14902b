//! Invariants of the UPnP IGD codecs on untrusted input, shared by the `upnp_*` fuzz targets and
//! the corpus replay test (`core/tests/fuzz_corpus.rs`), which includes this file with `#[path]`.

use holepunch_core::portmap::Protocol;
use holepunch_core::portmap::upnp::description::{self, ServiceType, WanService};
use holepunch_core::portmap::upnp::http::{self, HttpResponse};
use holepunch_core::portmap::upnp::soap::{self, Action, Mapping};
use holepunch_core::portmap::upnp::{HttpUrl, MAX_DESCRIPTION_LEN, MAX_TEXT_LEN, UpnpError, ssdp};

/// Input of `upnp_ssdp`: one SSDP answer datagram. Nothing panics; a parsed answer's location,
/// written out again, parses to itself.
pub fn check_ssdp(data: &[u8]) {
    if let Ok(r) = ssdp::parse_response(data) {
        assert!(data.len() <= ssdp::MAX_RESPONSE_LEN);
        let text = format!("http://{}{}", r.location.addr, r.location.path);
        assert_eq!(HttpUrl::parse(&text), Ok(r.location));
    }
}

/// Input of `upnp_http`: bytes read from a description or SOAP connection. Nothing panics, the
/// body never exceeds the limit, and a complete response stays complete at EOF.
pub fn check_http(data: &[u8]) {
    const MAX: usize = 4096;
    let complete = http::read_response(data, MAX);
    if let Ok(r) = &complete {
        assert!(r.body.len() <= MAX);
        assert_eq!(http::read_response_at_eof(data, MAX).as_ref(), Ok(r));
    }
    if let Ok(r) = http::read_response_at_eof(data, MAX) {
        assert!(r.body.len() <= MAX);
    }
}

/// Input of `upnp_xml`: a description or SOAP body. Nothing panics; a found control URL is
/// bounded; every SOAP outcome is typed.
pub fn check_xml(data: &[u8]) {
    let location = HttpUrl::parse("http://192.168.1.1:5000/rootDesc.xml").expect("constant");
    if let Ok(s) = description::parse(data, &location) {
        assert!(data.len() <= MAX_DESCRIPTION_LEN);
        assert!(s.control_url.path.len() <= 2 * MAX_TEXT_LEN + 1);
    }
    let service = WanService {
        service_type: ServiceType::WanIpConnection1,
        control_url: location,
    };
    let mapping = Mapping {
        external_port: 1,
        protocol: Protocol::Udp,
        internal_port: 1,
        internal_client: "192.168.1.2".parse().expect("constant"),
        description: "fuzz",
        lease_secs: 0,
    };
    for status in [200, 500] {
        let resp = HttpResponse {
            status,
            body: data.to_vec(),
        };
        for action in [
            Action::GetExternalIpAddress,
            Action::AddAnyPortMapping(mapping),
            Action::DeletePortMapping {
                external_port: 1,
                protocol: Protocol::Udp,
            },
        ] {
            match soap::parse_response(&action, &resp) {
                Ok(_) => assert_eq!(status, 200),
                Err(UpnpError::Fault(_)) => assert_eq!(status, 500),
                Err(_) => {}
            }
        }
        let _ = soap::build_request(&service, &Action::AddPortMapping(mapping));
    }
}
