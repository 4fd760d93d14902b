//! The IGD device description: which WAN connection service the gateway offers and its SOAP
//! control URL.

use alloc::string::String;

use super::xml::{Visit, walk};
use super::{HttpUrl, MAX_DESCRIPTION_LEN, UpnpError};

/// A WAN connection service type this client can drive, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServiceType {
    /// IGDv2's WANIPConnection:2 (has AddAnyPortMapping).
    WanIpConnection2,
    /// WANIPConnection:1.
    WanIpConnection1,
    /// WANPPPConnection:1 (PPPoE gateways; same actions).
    WanPppConnection1,
}

impl ServiceType {
    /// Every supported type, best first.
    pub const ALL: [ServiceType; 3] = [
        ServiceType::WanIpConnection2,
        ServiceType::WanIpConnection1,
        ServiceType::WanPppConnection1,
    ];

    /// The service type URN, as used in SSDP ST, descriptions and SOAPAction.
    pub const fn urn(self) -> &'static str {
        match self {
            ServiceType::WanIpConnection2 => "urn:schemas-upnp-org:service:WANIPConnection:2",
            ServiceType::WanIpConnection1 => "urn:schemas-upnp-org:service:WANIPConnection:1",
            ServiceType::WanPppConnection1 => "urn:schemas-upnp-org:service:WANPPPConnection:1",
        }
    }

    /// The type named by `urn`, if supported.
    pub fn from_urn(urn: &str) -> Option<Self> {
        ServiceType::ALL.into_iter().find(|t| t.urn() == urn)
    }
}

/// The service to send SOAP actions to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WanService {
    /// Its type.
    pub service_type: ServiceType,
    /// Where its actions are POSTed.
    pub control_url: HttpUrl,
}

/// Finds the best WAN connection service in the description `body` fetched from `location`.
///
/// Relative control URLs are resolved against `<URLBase>` if present, else `location`.
pub fn parse(body: &[u8], location: &HttpUrl) -> Result<WanService, UpnpError> {
    if body.len() > MAX_DESCRIPTION_LEN {
        return Err(UpnpError::TooLarge {
            len: body.len(),
            max: MAX_DESCRIPTION_LEN,
        });
    }
    let doc = core::str::from_utf8(body).map_err(|_| UpnpError::Encoding)?;
    let mut url_base: Option<String> = None;
    let mut service_type: Option<ServiceType> = None;
    let mut control: Option<String> = None;
    let mut best: Option<(ServiceType, String)> = None;
    walk(doc, |v| match v {
        Visit::Leaf {
            name: "URLBase",
            text,
            ..
        } => url_base = Some(text.into()),
        Visit::Leaf {
            name: "serviceType",
            parent: "service",
            text,
        } => service_type = ServiceType::from_urn(text),
        Visit::Leaf {
            name: "controlURL",
            parent: "service",
            text,
        } => control = Some(text.into()),
        Visit::Close { name: "service" } => {
            if let (Some(t), Some(c)) = (service_type.take(), control.take()) {
                if best.as_ref().is_none_or(|(b, _)| t < *b) {
                    best = Some((t, c));
                }
            }
            service_type = None;
            control = None;
        }
        _ => {}
    })?;
    let (service_type, control) = best.ok_or(UpnpError::NoWanService)?;
    let base = match url_base.filter(|b| !b.is_empty()) {
        Some(b) => HttpUrl::parse(&b)?,
        None => location.clone(),
    };
    Ok(WanService {
        service_type,
        control_url: base.join(&control)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trimmed from miniupnpd 2.3's rootDesc.xml: IGDv1 with WANIPConnection:1 nested two
    /// devices deep, beside other services.
    pub(crate) const MINIUPNPD_DESC: &str = r#"<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0"><specVersion><major>1</major><minor>0</minor></specVersion>
<device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType>
<serviceList><service><serviceType>urn:schemas-upnp-org:service:Layer3Forwarding:1</serviceType>
<controlURL>/ctl/L3F</controlURL></service></serviceList>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:1</deviceType>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:1</deviceType>
<serviceList><service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType>
<serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId><controlURL>/ctl/IPConn</controlURL>
<eventSubURL>/evt/IPConn</eventSubURL><SCPDURL>/WANIPCn.xml</SCPDURL></service></serviceList>
</device></deviceList></device></deviceList></device></root>"#;

    fn location() -> HttpUrl {
        HttpUrl::parse("http://192.168.1.1:5000/rootDesc.xml").expect("url")
    }

    #[test]
    fn finds_miniupnpds_wanipconnection() {
        let s = parse(MINIUPNPD_DESC.as_bytes(), &location()).expect("parses");
        assert_eq!(s.service_type, ServiceType::WanIpConnection1);
        assert_eq!(s.control_url.addr, location().addr);
        assert_eq!(s.control_url.path, "/ctl/IPConn");
    }

    #[test]
    fn prefers_igdv2_and_honours_urlbase() {
        let doc = r#"<root><URLBase>http://192.168.1.254:49152/</URLBase><device><serviceList>
<service><serviceType>urn:schemas-upnp-org:service:WANPPPConnection:1</serviceType><controlURL>ppp</controlURL></service>
<service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:2</serviceType><controlURL>upnp/control/ip2</controlURL></service>
</serviceList></device></root>"#;
        let s = parse(doc.as_bytes(), &location()).expect("parses");
        assert_eq!(s.service_type, ServiceType::WanIpConnection2);
        assert_eq!(
            s.control_url.addr,
            "192.168.1.254:49152".parse().expect("addr")
        );
        assert_eq!(s.control_url.path, "/upnp/control/ip2");
    }

    #[test]
    fn no_service_huge_and_hostile_descriptions_are_typed_errors() {
        let l3 = "<root><device><serviceList><service><serviceType>urn:schemas-upnp-org:service:Layer3Forwarding:1</serviceType><controlURL>/x</controlURL></service></serviceList></device></root>";
        assert_eq!(
            parse(l3.as_bytes(), &location()),
            Err(UpnpError::NoWanService)
        );
        let huge = alloc::vec![b' '; 10 * 1024 * 1024];
        assert_eq!(
            parse(&huge, &location()),
            Err(UpnpError::TooLarge {
                len: 10 * 1024 * 1024,
                max: MAX_DESCRIPTION_LEN
            })
        );
        assert_eq!(
            parse(b"\xff\xfe<root/>", &location()),
            Err(UpnpError::Encoding)
        );
        let bomb =
            "<!DOCTYPE r [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;\">]><root>&b;</root>";
        assert_eq!(parse(bomb.as_bytes(), &location()), Err(UpnpError::Xml));
    }
}
