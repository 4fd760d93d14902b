//! NAT profiles as nftables tables (lab.md §1) and the sites built with them.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::Ns;

/// The name of the nftables table (family `ip`) a router's profile lives in; its chains are
/// `pre`, `post`, `learn` (full-cone, restricted-cone, hairpin), `input` and `forward`.
pub const NAT_TABLE: &str = "hp_nat";

/// How long learned full-cone/restricted-cone mappings live without outgoing traffic, unless
/// [`super::Lab::set_conntrack_timeouts`] changes it (lab.md uses 180 s, the kernel's default
/// UDP stream timeout is 120 s).
const DEFAULT_MAP_TIMEOUT: Duration = Duration::from_secs(180);

pub use crate::profile::{Filtering, Mapping, Profile};

impl Profile {
    /// The profiles the lab builds: all but `symmetric-sequential` (the kernel does not hand
    /// out ports sequentially).
    pub const LAB: [Profile; 8] = [
        Profile::Open,
        Profile::FullCone,
        Profile::RestrictedCone,
        Profile::PortRestrictedCone,
        Profile::SymmetricRandom,
        Profile::Cgnat,
        Profile::Firewall,
        Profile::UdpBlocked,
    ];

    /// Whether the host's address is translated (the public address is not the host's own).
    pub fn translates(self) -> bool {
        !matches!(self, Profile::Open | Profile::Firewall)
    }

    /// Whether the external port equals the host's local port (Linux masquerade keeps the port
    /// unless it clashes; `fully-random` never tries).
    pub fn preserves_port(self) -> bool {
        self != Profile::SymmetricRandom
    }

    /// Whether [`super::Lab::nat_site`] can add hairpinning to this profile.
    pub fn supports_hairpin(self) -> bool {
        matches!(
            self,
            Profile::FullCone
                | Profile::RestrictedCone
                | Profile::PortRestrictedCone
                | Profile::SymmetricRandom
        )
    }
}

/// A site built by [`super::Lab::nat_site`]: a router on the internet and the host(s) behind it.
#[derive(Clone, Debug)]
pub struct Site {
    /// The profile the router implements.
    pub profile: Profile,
    /// Whether hairpinning is on.
    pub hairpin: bool,
    /// The router facing the internet (the carrier router for `cgnat`).
    pub router: Ns,
    /// `cgnat` only: the home router between the carrier and the hosts.
    pub home_router: Option<Ns>,
    /// The LAN hosts, at least one.
    pub hosts: Vec<Ns>,
    /// The address the internet sees the hosts' traffic come from.
    pub public_ip: Ipv4Addr,
    /// The router's own internet address (for `open`/`firewall` not the host's).
    pub router_ip: Ipv4Addr,
    /// The hosts' own addresses, in `hosts` order.
    pub lan_ips: Vec<Ipv4Addr>,
}

impl Site {
    /// The first (often only) host.
    pub fn host(&self) -> &Ns {
        &self.hosts[0]
    }

    /// An internet address kept free for this site's [`super::Lab::change_public_ip`]: the
    /// original router address + 2.
    pub fn spare_ip(&self) -> Ipv4Addr {
        let [a, b, c, d] = self.router_ip.octets();
        let base = d - (d - 100) % 4;
        Ipv4Addr::new(a, b, c, base + 2)
    }
}

/// What a router's nftables table is made from; kept by the lab to re-render it after a change
/// of address or timeouts.
#[derive(Clone, Debug)]
pub(super) struct RouterConfig {
    kind: Kind,
    hairpin: bool,
    pub(super) wan_ip: Ipv4Addr,
    lan_net: Ipv4Addr,
    lan_len: u8,
    pub(super) map_timeout: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Plain forwarding (the router of an `open` site).
    Routed,
    /// Stateful firewall without NAT.
    Firewall,
    /// A NAT of the given single-NAT profile.
    Nat(Profile),
}

impl RouterConfig {
    /// The same router with its UDP drop rule gone: a `udp-blocked` NAT becomes a
    /// port-restricted cone (the same masquerade, now passing UDP). Other routers unchanged.
    pub(super) fn unblocked(mut self) -> Self {
        if self.kind == Kind::Nat(Profile::UdpBlocked) {
            self.kind = Kind::Nat(Profile::PortRestrictedCone);
        }
        self
    }

    /// A NAT router: `profile` is one of the single-NAT profiles (full-cone, restricted-cone,
    /// port-restricted-cone, symmetric-random, udp-blocked).
    pub(super) fn nat(
        profile: Profile,
        hairpin: bool,
        wan_ip: Ipv4Addr,
        lan_net: Ipv4Addr,
        lan_len: u8,
    ) -> RouterConfig {
        RouterConfig {
            kind: Kind::Nat(profile),
            hairpin,
            wan_ip,
            lan_net,
            lan_len,
            map_timeout: DEFAULT_MAP_TIMEOUT,
        }
    }

    /// A router for a public host: plain (`open`) or with a stateful filter (`firewall`).
    pub(super) fn routed(firewall: bool) -> RouterConfig {
        RouterConfig {
            kind: if firewall {
                Kind::Firewall
            } else {
                Kind::Routed
            },
            hairpin: false,
            wan_ip: Ipv4Addr::UNSPECIFIED,
            lan_net: Ipv4Addr::UNSPECIFIED,
            lan_len: 0,
            map_timeout: DEFAULT_MAP_TIMEOUT,
        }
    }

    /// Whether the table has the learned mapping map (full-cone, restricted-cone, hairpin).
    pub(super) fn uses_maps(&self) -> bool {
        let filtering_map = matches!(
            self.kind,
            Kind::Nat(Profile::FullCone | Profile::RestrictedCone)
        );
        filtering_map || self.hairpin
    }

    /// The nftables table, for `nft -f`.
    pub(super) fn render(&self) -> String {
        match self.kind {
            Kind::Routed => format!(
                "table ip {NAT_TABLE} {{\n\
                 \x20 chain forward {{ type filter hook forward priority filter; policy accept; }}\n\
                 }}\n"
            ),
            Kind::Firewall => format!(
                "table ip {NAT_TABLE} {{\n\
                 \x20 chain input {{ type filter hook input priority filter; policy accept;\n\
                 \x20   iifname \"wan0\" ct state new counter drop\n  }}\n\
                 \x20 chain forward {{ type filter hook forward priority filter; policy drop;\n\
                 \x20   ct state established,related accept\n\
                 \x20   iifname \"br-lan\" accept\n\
                 \x20   counter comment \"dropped unsolicited\"\n  }}\n\
                 }}\n"
            ),
            Kind::Nat(profile) => self.render_nat(profile),
        }
    }

    fn render_nat(&self, profile: Profile) -> String {
        let wan = self.wan_ip;
        let lan = format!("{}/{}", self.lan_net, self.lan_len);
        let timeout = self.map_timeout.as_secs().max(1);
        let masquerade = if profile == Profile::SymmetricRandom {
            "masquerade fully-random"
        } else {
            "masquerade"
        };
        let mut pre = Vec::new();
        match profile {
            Profile::FullCone => pre.push(format!(
                "iifname \"wan0\" ip daddr {wan} udp dport @fc dnat ip addr . port to udp dport map @fc"
            )),
            Profile::RestrictedCone => pre.push(format!(
                "iifname \"wan0\" ip daddr {wan} ip saddr . udp dport @rs dnat ip addr . port to udp dport map @fc"
            )),
            _ => {}
        }
        let mut post = Vec::new();
        if self.hairpin {
            // A LAN host sending to our own public address and a mapped port reaches the owner of
            // that mapping, and sees the sender's external address (RFC 4787 §6).
            pre.push(format!(
                "iifname \"br-lan\" ip daddr {wan} udp dport @fc dnat ip addr . port to udp dport map @fc"
            ));
            post.push(format!(
                "oifname \"br-lan\" ct status dnat ip saddr {lan} snat ip to {wan}"
            ));
        }
        post.push(format!("oifname \"wan0\" {masquerade}"));
        let learn = if self.uses_maps() {
            "  chain learn { type filter hook postrouting priority srcnat + 10; policy accept;\n\
             \x20   oifname \"wan0\" meta l4proto udp ct direction original ct status snat update @fc { ct reply proto-dst : ct original ip saddr . ct original proto-src }\n\
             \x20   oifname \"wan0\" meta l4proto udp ct direction original ct status snat update @rs { ip daddr . ct reply proto-dst }\n\
             \x20 }\n"
        } else {
            ""
        };
        let block = if profile == Profile::UdpBlocked {
            "    meta l4proto udp counter drop comment \"udp-blocked\"\n"
        } else {
            ""
        };
        let lines = |v: &[String]| v.iter().map(|l| format!("    {l}\n")).collect::<String>();
        format!(
            "table ip {NAT_TABLE} {{\n\
             \x20 map fc {{ type inet_service : ipv4_addr . inet_service; flags dynamic,timeout; timeout {timeout}s; }}\n\
             \x20 set rs {{ type ipv4_addr . inet_service; flags dynamic,timeout; timeout {timeout}s; }}\n\
             \x20 chain pre {{ type nat hook prerouting priority dstnat; policy accept;\n{pre}  }}\n\
             \x20 chain post {{ type nat hook postrouting priority srcnat; policy accept;\n{post}  }}\n\
             {learn}\
             \x20 chain input {{ type filter hook input priority filter; policy accept;\n\
             \x20   iifname \"wan0\" ct state new counter drop comment \"unsolicited to the router: dropped before conntrack confirms it (lab.md P1)\"\n  }}\n\
             \x20 chain forward {{ type filter hook forward priority filter; policy drop;\n\
             {block}\
             \x20   ct state established,related accept\n\
             \x20   iifname \"br-lan\" accept\n\
             \x20   ct status dnat accept\n\
             \x20   counter comment \"dropped unsolicited\"\n  }}\n\
             }}\n",
            pre = lines(&pre),
            post = lines(&post),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lab_builds_every_profile_but_sequential_ports() {
        let missing: Vec<Profile> = Profile::ALL
            .into_iter()
            .filter(|p| !Profile::LAB.contains(p))
            .collect();
        assert_eq!(missing, [Profile::SymmetricSequential]);
    }

    #[test]
    fn full_cone_rules_follow_lab_md() {
        let wan = Ipv4Addr::new(203, 0, 113, 100);
        let lan = Ipv4Addr::new(192, 168, 1, 0);
        let t = RouterConfig::nat(Profile::FullCone, true, wan, lan, 24).render();
        assert!(t.contains(
            "iifname \"wan0\" ip daddr 203.0.113.100 udp dport @fc dnat ip addr . port to udp dport map @fc"
        ));
        assert!(t.contains("iifname \"br-lan\" ip daddr 203.0.113.100 udp dport @fc"));
        assert!(t.contains("snat ip to 203.0.113.100"));
        assert!(t.contains("chain learn"));
        assert!(t.contains("oifname \"wan0\" masquerade\n"));
        let s = RouterConfig::nat(Profile::SymmetricRandom, false, wan, lan, 24).render();
        assert!(s.contains("masquerade fully-random"));
        assert!(!s.contains("chain learn"));
        let b = RouterConfig::nat(Profile::UdpBlocked, false, wan, lan, 24).render();
        assert!(b.contains("meta l4proto udp counter drop"));
    }

    #[test]
    fn spare_ip_is_in_the_sites_block() {
        let site = Site {
            profile: Profile::FullCone,
            hairpin: false,
            router: Ns("r".into()),
            home_router: None,
            hosts: vec![Ns("h".into())],
            public_ip: Ipv4Addr::new(203, 0, 113, 104),
            router_ip: Ipv4Addr::new(203, 0, 113, 104),
            lan_ips: vec![Ipv4Addr::new(192, 168, 2, 2)],
        };
        assert_eq!(site.spare_ip(), Ipv4Addr::new(203, 0, 113, 106));
    }
}
