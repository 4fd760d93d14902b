//! SSDP discovery (UPnP Device Architecture §1.3): the M-SEARCH request and its unicast answers.

use alloc::format;
use alloc::string::String;
use core::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::description::ServiceType;
use super::{HttpUrl, UpnpError};

/// Where M-SEARCH requests go.
pub const MULTICAST_ADDR: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(239, 255, 255, 250)), 1900);
/// The largest SSDP answer accepted (they are a few hundred bytes).
pub const MAX_RESPONSE_LEN: usize = 2048;
/// Most headers accepted in an answer.
const MAX_HEADERS: usize = 24;

/// An M-SEARCH for `target` (a service type URN), asking for answers within `mx` seconds
/// (clamped to 1–5 as the UDA requires).
pub fn m_search(target: ServiceType, mx: u8) -> String {
    format!(
        "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: {}\r\nST: {}\r\n\r\n",
        mx.clamp(1, 5),
        target.urn()
    )
}

/// A gateway's answer to an M-SEARCH.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SsdpResponse {
    /// Where its device description is.
    pub location: HttpUrl,
    /// The service it answered for, if it is one this client drives.
    pub service_type: Option<ServiceType>,
}

/// Parses an SSDP answer datagram (`HTTP/1.1 200 OK` with LOCATION and ST headers).
pub fn parse_response(datagram: &[u8]) -> Result<SsdpResponse, UpnpError> {
    if datagram.len() > MAX_RESPONSE_LEN {
        return Err(UpnpError::TooLarge {
            len: datagram.len(),
            max: MAX_RESPONSE_LEN,
        });
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(datagram) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(UpnpError::Incomplete),
        Err(_) => return Err(UpnpError::Http),
    }
    match resp.code {
        Some(200) => {}
        Some(code) => return Err(UpnpError::Status(code)),
        None => return Err(UpnpError::Http),
    }
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| core::str::from_utf8(h.value).map(str::trim))
    };
    let location = header("location")
        .ok_or(UpnpError::MissingHeader)?
        .map_err(|_| UpnpError::Encoding)?;
    let service_type = match header("st") {
        Some(Ok(st)) => ServiceType::from_urn(st),
        _ => None,
    };
    Ok(SsdpResponse {
        location: HttpUrl::parse(location)?,
        service_type,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn m_search_is_well_formed_and_parses_as_http() {
        let req = m_search(ServiceType::WanIpConnection1, 9);
        assert!(req.contains("\r\nMX: 5\r\n"));
        let mut h = [httparse::EMPTY_HEADER; 8];
        let mut r = httparse::Request::new(&mut h);
        assert!(r.parse(req.as_bytes()).expect("valid").is_complete());
        assert_eq!(r.method, Some("M-SEARCH"));
    }

    #[test]
    fn miniupnpd_answer_parses() {
        let answer = b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\n\
            ST: urn:schemas-upnp-org:service:WANIPConnection:1\r\n\
            USN: uuid:3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b::urn:schemas-upnp-org:service:WANIPConnection:1\r\n\
            EXT:\r\nSERVER: Debian/12 UPnP/1.1 MiniUPnPd/2.3.1\r\n\
            LOCATION: http://192.168.1.1:5000/rootDesc.xml\r\nContent-Length: 0\r\n\r\n";
        let r = parse_response(answer).expect("parses");
        assert_eq!(r.location.path, "/rootDesc.xml");
        assert_eq!(r.service_type, Some(ServiceType::WanIpConnection1));
    }

    #[test]
    fn bad_answers_are_typed_errors() {
        assert_eq!(parse_response(b"garbage"), Err(UpnpError::Http));
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nLOC"),
            Err(UpnpError::Incomplete)
        );
        assert_eq!(
            parse_response(b"\x00\x01garbage\r\n\r\n"),
            Err(UpnpError::Http)
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 404 Not Found\r\n\r\n"),
            Err(UpnpError::Status(404))
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nST: x\r\n\r\n"),
            Err(UpnpError::MissingHeader)
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nLOCATION: http://evil.example/\r\n\r\n"),
            Err(UpnpError::Url)
        );
        assert!(matches!(
            parse_response(&[b'a'; 4096]),
            Err(UpnpError::TooLarge { .. })
        ));
    }
}
