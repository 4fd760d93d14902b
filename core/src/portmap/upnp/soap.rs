//! SOAP actions of the WAN connection services: GetExternalIPAddress, AddPortMapping,
//! AddAnyPortMapping (IGDv2) and DeletePortMapping, and their responses and faults.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::net::IpAddr;

use quick_xml::escape::escape;

use super::description::WanService;
use super::http::HttpResponse;
use super::xml::{Visit, walk};
use super::{MAX_SOAP_RESPONSE_LEN, UpnpError};
use crate::portmap::Protocol;

/// A port mapping to add.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping<'a> {
    /// The external port wanted (AddAnyPortMapping treats it as a wish).
    pub external_port: u16,
    /// UDP or TCP.
    pub protocol: Protocol,
    /// The LAN port to forward to.
    pub internal_port: u16,
    /// The LAN host to forward to (this host's address toward the gateway).
    pub internal_client: IpAddr,
    /// Shown in the router's table.
    pub description: &'a str,
    /// Lease in seconds; 0 is permanent (what error 725 asks for).
    pub lease_secs: u32,
}

/// A SOAP action to perform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action<'a> {
    /// Ask the gateway's external IPv4 address.
    GetExternalIpAddress,
    /// Add a mapping at exactly the given external port (IGDv1; 718 when taken).
    AddPortMapping(Mapping<'a>),
    /// Add a mapping, letting the gateway pick another port if needed (IGDv2 only).
    AddAnyPortMapping(Mapping<'a>),
    /// Delete the mapping of an external port.
    DeletePortMapping {
        /// The mapping's external port.
        external_port: u16,
        /// Its protocol.
        protocol: Protocol,
    },
}

impl Action<'_> {
    /// The action's name, as in SOAPAction.
    pub fn name(&self) -> &'static str {
        match self {
            Action::GetExternalIpAddress => "GetExternalIPAddress",
            Action::AddPortMapping(_) => "AddPortMapping",
            Action::AddAnyPortMapping(_) => "AddAnyPortMapping",
            Action::DeletePortMapping { .. } => "DeletePortMapping",
        }
    }
}

/// What a successful action returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActionResult {
    /// GetExternalIPAddress's NewExternalIPAddress.
    ExternalIp(IpAddr),
    /// AddAnyPortMapping's NewReservedPort: the external port actually mapped.
    ReservedPort(u16),
    /// AddPortMapping or DeletePortMapping succeeded.
    Done,
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Udp => "UDP",
        Protocol::Tcp => "TCP",
    }
}

/// The complete HTTP request (head and body) performing `action` on `service`.
pub fn build_request(service: &WanService, action: &Action<'_>) -> Vec<u8> {
    let urn = service.service_type.urn();
    let name = action.name();
    let mut args = String::new();
    let mut arg = |k: &str, v: &str| args.push_str(&format!("<{k}>{}</{k}>", escape(v)));
    match action {
        Action::GetExternalIpAddress => {}
        Action::AddPortMapping(m) | Action::AddAnyPortMapping(m) => {
            arg("NewRemoteHost", "");
            arg("NewExternalPort", &format!("{}", m.external_port));
            arg("NewProtocol", protocol_name(m.protocol));
            arg("NewInternalPort", &format!("{}", m.internal_port));
            arg("NewInternalClient", &format!("{}", m.internal_client));
            arg("NewEnabled", "1");
            arg("NewPortMappingDescription", m.description);
            arg("NewLeaseDuration", &format!("{}", m.lease_secs));
        }
        Action::DeletePortMapping {
            external_port,
            protocol,
        } => {
            arg("NewRemoteHost", "");
            arg("NewExternalPort", &format!("{external_port}"));
            arg("NewProtocol", protocol_name(*protocol));
        }
    }
    let body = format!(
        "<?xml version=\"1.0\"?>\r\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" \
         s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body>\
         <u:{name} xmlns:u=\"{urn}\">{args}</u:{name}></s:Body></s:Envelope>\r\n"
    );
    let url = &service.control_url;
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/xml; charset=\"utf-8\"\r\n\
         SOAPAction: \"{urn}#{name}\"\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        url.path,
        url.addr,
        body.len()
    );
    let mut out = head.into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// Reads the outcome of `action` from its HTTP response.
///
/// A SOAP fault (HTTP 500 with a UPnPError) is [`UpnpError::Fault`] with its code, e.g. 718 or
/// 725 (see the constants on [`UpnpError`]).
pub fn parse_response(action: &Action<'_>, resp: &HttpResponse) -> Result<ActionResult, UpnpError> {
    if resp.body.len() > MAX_SOAP_RESPONSE_LEN {
        return Err(UpnpError::TooLarge {
            len: resp.body.len(),
            max: MAX_SOAP_RESPONSE_LEN,
        });
    }
    let doc = core::str::from_utf8(&resp.body).map_err(|_| UpnpError::Encoding)?;
    let want = match action {
        Action::GetExternalIpAddress => Some("NewExternalIPAddress"),
        Action::AddAnyPortMapping(_) => Some("NewReservedPort"),
        _ => None,
    };
    let mut value: Option<String> = None;
    let mut fault: Option<String> = None;
    walk(doc, |v| {
        if let Visit::Leaf { name, parent, text } = v {
            if Some(name) == want {
                value = Some(text.into());
            } else if name == "errorCode" && parent == "UPnPError" {
                fault = Some(text.into());
            }
        }
    })?;
    match resp.status {
        200 => {}
        500 => {
            let code = fault.ok_or(UpnpError::Status(500))?;
            return Err(UpnpError::Fault(
                code.parse().map_err(|_| UpnpError::BadArgument)?,
            ));
        }
        other => return Err(UpnpError::Status(other)),
    }
    match action {
        Action::GetExternalIpAddress => value
            .and_then(|v| v.parse().ok())
            .map(ActionResult::ExternalIp)
            .ok_or(UpnpError::BadArgument),
        Action::AddAnyPortMapping(_) => value
            .and_then(|v| v.parse().ok())
            .map(ActionResult::ReservedPort)
            .ok_or(UpnpError::BadArgument),
        _ => Ok(ActionResult::Done),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::portmap::upnp::HttpUrl;
    use crate::portmap::upnp::description::ServiceType;
    use crate::portmap::upnp::http::read_response;

    fn service() -> WanService {
        WanService {
            service_type: ServiceType::WanIpConnection1,
            control_url: HttpUrl::parse("http://192.168.1.1:5000/ctl/IPConn").expect("url"),
        }
    }

    fn mapping() -> Mapping<'static> {
        Mapping {
            external_port: 46000,
            protocol: Protocol::Udp,
            internal_port: 46000,
            internal_client: "192.168.1.2".parse().expect("addr"),
            description: "holepunch <&>",
            lease_secs: 600,
        }
    }

    #[test]
    fn requests_are_http_with_an_escaped_soap_body() {
        let req = build_request(&service(), &Action::AddPortMapping(mapping()));
        let mut h = [httparse::EMPTY_HEADER; 16];
        let mut r = httparse::Request::new(&mut h);
        let head = match r.parse(&req).expect("valid HTTP") {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => panic!("incomplete"),
        };
        assert_eq!((r.method, r.path), (Some("POST"), Some("/ctl/IPConn")));
        let action = r
            .headers
            .iter()
            .find(|h| h.name == "SOAPAction")
            .expect("SOAPAction");
        assert_eq!(
            action.value,
            b"\"urn:schemas-upnp-org:service:WANIPConnection:1#AddPortMapping\""
        );
        let body = core::str::from_utf8(&req[head..]).expect("utf8");
        assert!(body.contains("<NewExternalPort>46000</NewExternalPort>"));
        assert!(body.contains(
            "<NewPortMappingDescription>holepunch &lt;&amp;&gt;</NewPortMappingDescription>"
        ));
        let mut names = alloc::vec::Vec::new();
        walk(body, |v| {
            if let Visit::Leaf { name, .. } = v {
                names.push(String::from(name));
            }
        })
        .expect("the body is well-formed XML");
        assert_eq!(names.len(), 8);
    }

    fn http(status: &str, body: &str) -> HttpResponse {
        let raw = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        read_response(raw.as_bytes(), 65536).expect("complete")
    }

    #[test]
    fn responses_and_faults() {
        let ok = http(
            "200 OK",
            "<?xml version=\"1.0\"?><s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body>\
             <u:GetExternalIPAddressResponse xmlns:u=\"urn:schemas-upnp-org:service:WANIPConnection:1\">\
             <NewExternalIPAddress>203.0.113.10</NewExternalIPAddress></u:GetExternalIPAddressResponse></s:Body></s:Envelope>",
        );
        assert_eq!(
            parse_response(&Action::GetExternalIpAddress, &ok),
            Ok(ActionResult::ExternalIp(
                "203.0.113.10".parse().expect("addr")
            ))
        );
        let any = http(
            "200 OK",
            "<s:Envelope><s:Body><u:AddAnyPortMappingResponse><NewReservedPort>46001</NewReservedPort>\
             </u:AddAnyPortMappingResponse></s:Body></s:Envelope>",
        );
        assert_eq!(
            parse_response(&Action::AddAnyPortMapping(mapping()), &any),
            Ok(ActionResult::ReservedPort(46001))
        );
        for code in [718u16, 725] {
            let fault = http(
                "500 Internal Server Error",
                &format!(
                    "<s:Envelope><s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring>\
                     <detail><UPnPError xmlns=\"urn:schemas-upnp-org:control-1-0\"><errorCode>{code}</errorCode>\
                     <errorDescription>x</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>"
                ),
            );
            assert_eq!(
                parse_response(&Action::AddPortMapping(mapping()), &fault),
                Err(UpnpError::Fault(code))
            );
        }
        assert_eq!(
            parse_response(&Action::GetExternalIpAddress, &http("200 OK", "<a/>")),
            Err(UpnpError::BadArgument)
        );
        assert_eq!(
            parse_response(
                &Action::GetExternalIpAddress,
                &http("403 Forbidden", "<a/>")
            ),
            Err(UpnpError::Status(403))
        );
        assert_eq!(
            parse_response(&Action::GetExternalIpAddress, &http("200 OK", "<a>")),
            Err(UpnpError::Xml)
        );
    }
}
