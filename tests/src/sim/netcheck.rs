//! Netcheck in the simulation: the core prober on a host behind a [`Profile`], against the RFC 5780
//! STUN server, in virtual time.
//!
//! The host binds two sockets, [`MAPPING_PORT`] and [`FILTERING_PORT`] on its own address (the
//! LAN address behind a NAT, the public one otherwise), and asks the server at
//! [`STUN_PRIMARY`] (alternate [`STUN_ALTERNATE`]) exactly as a driver would: drain
//! `poll_transmit` after every input, sleep until the earlier of `poll_timeout` and the next
//! arrival, feed arrivals to `handle_datagram`, then `handle_timeout`. The run ends when
//! [`Netcheck::is_done`] says so.
//!
//! ```
//! use holepunch_tests::sim::netcheck::{NetcheckScenario, run_netcheck};
//! use holepunch_tests::sim::profile::Profile;
//!
//! let outcome = run_netcheck(&NetcheckScenario::new(Profile::FullCone, 1).with_hairpin(true));
//! assert_eq!(outcome.report.mapping.as_str(), "endpoint-independent");
//! assert_eq!(outcome.report.hairpinning, Some(true));
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use holepunch_core::io::Datagram;
use holepunch_core::netcheck::{Netcheck, NetcheckConfig, Report};
use holepunch_core::stun::server::{Server, ServerConfig};
use holepunch_core::time::{Duration, Instant};

use super::network::Network;
use super::pair::{STUN_ALTERNATE, STUN_PRIMARY, host_v6};
use super::profile::{Profile, V6Policy};

/// The public address of the site (the outermost router's, or the host's own when it has one).
pub const SITE_PUBLIC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
/// The host's LAN address behind a NAT.
pub const LAN_HOST: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 2);
/// Port of the mapping socket (netcheck's first local).
pub const MAPPING_PORT: u16 = 7000;
/// Port of the filtering socket (netcheck's second local).
pub const FILTERING_PORT: u16 = 7001;

/// What to run.
#[derive(Clone, Debug)]
pub struct NetcheckScenario {
    /// The host's situation.
    pub profile: Profile,
    /// Hairpinning on every router of the profile's chain; `None` keeps the profile's own
    /// setting (off).
    pub hairpin: Option<bool>,
    /// Seed for the NATs' port choices, jitter, loss and the prober's transaction ids.
    pub seed: u64,
    /// One-way latency between the site and the internet core.
    pub site_latency: Duration,
    /// Random extra latency per datagram, uniformly in `0..=jitter`.
    pub jitter: Duration,
    /// Loss per mille on the site's access link.
    pub loss_per_mille: u32,
    /// Give up after this much virtual time (the prober's own cap is 5 s).
    pub time_limit: Duration,
    /// Make the site dual-stack: the host also gets an IPv6 address (side A's,
    /// [`host_v6`]`(false)`) behind this policy. The prober still probes over IPv4 only, so the
    /// report must not change; `None` (the default): IPv4 only.
    pub ipv6: Option<V6Policy>,
}

impl NetcheckScenario {
    /// `profile` with the pair runner's network defaults: 12.5 ms site latency, 2 ms jitter, no
    /// loss, a 30 s limit, hairpinning as the profile has it.
    pub fn new(profile: Profile, seed: u64) -> Self {
        NetcheckScenario {
            profile,
            hairpin: None,
            seed,
            site_latency: Duration::from_micros(12_500),
            jitter: Duration::from_millis(2),
            loss_per_mille: 0,
            time_limit: Duration::from_secs(30),
            ipv6: None,
        }
    }

    /// Makes the site dual-stack behind `policy` (see [`NetcheckScenario::ipv6`]).
    pub fn with_ipv6(mut self, policy: V6Policy) -> Self {
        self.ipv6 = Some(policy);
        self
    }

    /// Turns hairpinning on or off on every router of the profile's chain (for a CGNAT both
    /// the home router and the carrier NAT; the carrier's is the one a probe to the public
    /// address meets).
    pub fn with_hairpin(mut self, on: bool) -> Self {
        self.hairpin = Some(on);
        self
    }
}

/// What a run produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetcheckOutcome {
    /// The prober's final report.
    pub report: Report,
    /// Whether the prober finished (rather than the scenario's time limit cutting it off).
    pub done: bool,
    /// The host's address (its sockets are this IP at [`MAPPING_PORT`] and
    /// [`FILTERING_PORT`]).
    pub host: IpAddr,
    /// The site's public address.
    pub public_ip: IpAddr,
    /// Virtual time from the start to the end of the run.
    pub elapsed: Duration,
    /// Datagrams the prober sent.
    pub sent: u32,
    /// Datagrams the network dropped (filtering, loss, hairpinning off, UDP blocked).
    pub dropped: u64,
}

/// Runs the prober once, to completion or the time limit.
pub fn run_netcheck(scenario: &NetcheckScenario) -> NetcheckOutcome {
    let mut net = Network::new(scenario.seed);
    net.jitter = scenario.jitter;
    let (mut site, host) = scenario.profile.site(
        SITE_PUBLIC,
        LAN_HOST,
        scenario.site_latency,
        scenario.seed ^ 0x5e7,
    );
    site.loss_per_mille = scenario.loss_per_mille;
    if let Some(on) = scenario.hairpin {
        for nat in &mut site.chain {
            nat.config.hairpin = on;
        }
    }
    if let Some(policy) = scenario.ipv6 {
        policy.attach(&mut site, host_v6(false), scenario.seed ^ 0x6);
    }
    net.add_site(site);
    let primary: SocketAddr = STUN_PRIMARY.parse().expect("constant");
    let alternate: SocketAddr = STUN_ALTERNATE.parse().expect("constant");
    net.add_public_host(primary.ip(), Duration::from_millis(5));
    net.add_public_host(alternate.ip(), Duration::from_millis(5));
    let mut server_config = ServerConfig::new(primary);
    server_config.alternate = Some(alternate);
    let mut server = Server::new(server_config).expect("valid server configuration");

    let locals = vec![
        SocketAddr::new(host, MAPPING_PORT),
        SocketAddr::new(host, FILTERING_PORT),
    ];
    let config = NetcheckConfig::new(vec![primary], locals.clone());
    let mut netcheck = Netcheck::new(config, scenario.seed).expect("valid netcheck configuration");

    let limit = Instant::ZERO + scenario.time_limit;
    let mut now = Instant::ZERO;
    let mut buf = vec![0u8; 1500];
    let mut sent = 0u32;
    // A poll_timeout that keeps naming a past instant without producing anything would spin
    // here: catch that as the bug it is.
    let mut stalled = (Instant::ZERO, 0u32);
    loop {
        while let Some(t) = netcheck.poll_transmit(now, &mut buf) {
            let from = t.from.expect("netcheck names the sending socket");
            assert!(
                locals.contains(&from),
                "transmit from unknown socket {from}"
            );
            net.send(now, from, t.to, &buf[..t.len]);
            sent += 1;
        }
        if netcheck.is_done() || now >= limit {
            break;
        }
        let next = [netcheck.poll_timeout(), net.next_arrival()]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(limit)
            .clamp(now, limit);
        if next == stalled.0 {
            stalled.1 += 1;
            assert!(
                stalled.1 < 10_000,
                "no progress at {next:?}: poll_timeout repeats a past deadline"
            );
        } else {
            stalled = (next, 0);
        }
        now = next;
        while let Some(d) = net.poll_delivery(now) {
            if server.local_addresses().any(|a| a == d.to) {
                server.handle_datagram(now, Datagram::new(d.to, d.from, &d.bytes));
                while let Some(t) = server.poll_transmit(now, &mut buf) {
                    net.send(now, t.from.unwrap_or(d.to), t.to, &buf[..t.len]);
                }
            } else if locals.contains(&d.to) {
                netcheck.handle_datagram(now, Datagram::new(d.to, d.from, &d.bytes));
            }
        }
        netcheck.handle_timeout(now);
    }
    NetcheckOutcome {
        report: netcheck.report(),
        done: netcheck.is_done(),
        host,
        public_ip: IpAddr::V4(SITE_PUBLIC),
        elapsed: now - Instant::ZERO,
        sent,
        dropped: net.dropped,
    }
}
