//! 464XLAT CLAT detection (RFC 6877): is this host's IPv4 a translator's?
//!
//! On an IPv6-only network with 464XLAT, the host runs a CLAT: a stateless translator that
//! gives applications an IPv4 address on a virtual interface and turns their IPv4 packets into
//! IPv6 towards the network's NAT64 (the PLAT). IPv4 then works, but every IPv4 path crosses
//! two translators and the NAT64's pool, so netcheck says so. RFC 7335 reserves 192.0.0.0/29
//! for the CLAT's IPv4 address; Android names the interface `v4-<uplink>` and Linux clatd and
//! most others `clat*`.
//!
//! A CLAT is reported when the interface carrying the IPv4 default route (or, without one, the
//! only interface with an IPv4 address that is not loopback) looks like one: an address in
//! 192.0.0.0/29 or a CLAT-style name. [`find_clat`] is the pure decision; [`detect_clat`] reads
//! the host's interfaces (`getifaddrs`) and IPv4 routes (`/proc/net/route`).

use std::net::Ipv4Addr;

/// A CLAT this host runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Clat {
    /// The CLAT's virtual interface.
    pub interface: String,
    /// Its IPv4 address (the applications' source address).
    pub address: Ipv4Addr,
}

/// Whether `ip` is in RFC 7335's IPv4 Service Continuity Prefix, 192.0.0.0/29.
pub fn is_service_continuity(ip: Ipv4Addr) -> bool {
    let [a, b, c, d] = ip.octets();
    (a, b, c) == (192, 0, 0) && d < 8
}

/// Whether `name` is how CLAT implementations name their interface.
fn clat_style_name(name: &str) -> bool {
    name.starts_with("clat") || name.starts_with("v4-")
}

/// The CLAT among `addresses` (interface, IPv4 address), given the interfaces the IPv4 default
/// route leaves through.
pub fn find_clat(addresses: &[(String, Ipv4Addr)], default_routes: &[String]) -> Option<Clat> {
    let usable: Vec<&(String, Ipv4Addr)> = addresses
        .iter()
        .filter(|(_, ip)| !ip.is_loopback() && !ip.is_link_local())
        .collect();
    let uplink: Vec<&&(String, Ipv4Addr)> = if default_routes.is_empty() {
        // No IPv4 default route: only a lone IPv4 interface can be the path out.
        match usable.as_slice() {
            [only] => vec![only],
            _ => Vec::new(),
        }
    } else {
        usable
            .iter()
            .filter(|(name, _)| default_routes.contains(name))
            .collect()
    };
    uplink
        .into_iter()
        .find(|(name, ip)| is_service_continuity(*ip) || clat_style_name(name))
        .map(|(name, ip)| Clat {
            interface: name.clone(),
            address: *ip,
        })
}

/// The interfaces of IPv4 default routes in `/proc/net/route`'s text (`Destination` and
/// `Mask` both 0).
pub fn default_route_interfaces(proc_net_route: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in proc_net_route.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // Iface Destination Gateway Flags RefCnt Use Metric Mask ...
        if let [iface, dest, _, _, _, _, _, mask, ..] = fields.as_slice() {
            if *dest == "00000000" && *mask == "00000000" && !out.iter().any(|o| o == iface) {
                out.push((*iface).to_string());
            }
        }
    }
    out
}

/// This host's CLAT, if it runs one. `None` also when the interfaces cannot be read.
pub fn detect_clat() -> Option<Clat> {
    let addresses: Vec<(String, Ipv4Addr)> = nix::ifaddrs::getifaddrs()
        .ok()?
        .filter_map(|i| {
            let ip = i.address?.as_sockaddr_in()?.ip();
            Some((i.interface_name, ip))
        })
        .collect();
    let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    find_clat(&addresses, &default_route_interfaces(&routes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ifs(list: &[(&str, [u8; 4])]) -> Vec<(String, Ipv4Addr)> {
        list.iter()
            .map(|(n, ip)| ((*n).to_string(), Ipv4Addr::from(*ip)))
            .collect()
    }

    #[test]
    fn the_default_route_through_a_service_continuity_address_is_a_clat() {
        let a = ifs(&[("lo", [127, 0, 0, 1]), ("tun464", [192, 0, 0, 4])]);
        let clat = find_clat(&a, &["tun464".into()]).expect("a CLAT");
        assert_eq!(clat.interface, "tun464");
        assert_eq!(clat.address, Ipv4Addr::new(192, 0, 0, 4));
        // 192.0.0.8 is past the /29.
        let b = ifs(&[("tun464", [192, 0, 0, 8])]);
        assert_eq!(find_clat(&b, &["tun464".into()]), None);
    }

    #[test]
    fn clat_style_names_count_and_the_route_decides() {
        let a = ifs(&[("eth0", [10, 0, 0, 2]), ("v4-rmnet0", [10, 1, 0, 2])]);
        assert_eq!(
            find_clat(&a, &["v4-rmnet0".into()]).map(|c| c.interface),
            Some("v4-rmnet0".into())
        );
        // Native IPv4 carries the default route: the CLAT-looking interface is not the path.
        assert_eq!(find_clat(&a, &["eth0".into()]), None);
    }

    #[test]
    fn without_a_default_route_only_a_lone_ipv4_interface_counts() {
        let lone = ifs(&[("lo", [127, 0, 0, 1]), ("clat4", [192, 0, 0, 2])]);
        assert!(find_clat(&lone, &[]).is_some());
        let two = ifs(&[("clat4", [192, 0, 0, 2]), ("eth0", [198, 51, 100, 2])]);
        assert_eq!(find_clat(&two, &[]), None);
        assert_eq!(find_clat(&ifs(&[("eth0", [198, 51, 100, 2])]), &[]), None);
    }

    #[test]
    fn default_routes_are_read_from_proc_net_route() {
        let text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                    clat4\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0\n\
                    eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                    short\n";
        assert_eq!(default_route_interfaces(text), vec!["clat4".to_string()]);
        assert!(default_route_interfaces("").is_empty());
    }
}
