//! Mapping lifetime discovery (RFC 5780 §4.6) against a core RFC 5780 server behind a modelled
//! NAT whose mappings expire after a set idle time, in virtual time.
#![allow(clippy::unwrap_used)]

#[path = "support/verbs.rs"]
mod verbs;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use verbs::{Answer, FeedProber, Outcome};

use holepunch_core::netcheck::{LifetimeConfig, LifetimeProbe, LifetimeReport};
use holepunch_core::stun::server::{Server, ServerConfig};
use holepunch_core::{Duration, Instant};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const ONE_WAY: Duration = Duration::from_millis(10);
const PUBLIC: &str = "198.51.100.10";

/// A port-preserving NAT with address-and-port-dependent filtering: mapping `port` lives while
/// it carried a packet (either way) less than `timeout` ago.
struct Nat {
    timeout: Duration,
    /// local port -> (remote endpoints sent to, last use)
    mappings: HashMap<u16, (Vec<SocketAddr>, Instant)>,
}

impl Nat {
    fn out(&mut self, now: Instant, local: SocketAddr, to: SocketAddr) -> SocketAddr {
        let e = self
            .mappings
            .entry(local.port())
            .or_insert((Vec::new(), now));
        if now >= e.1 + self.timeout {
            e.0.clear();
        }
        if !e.0.contains(&to) {
            e.0.push(to);
        }
        e.1 = now;
        SocketAddr::new(PUBLIC.parse::<IpAddr>().unwrap(), local.port())
    }

    /// The local port an inbound packet from `from` to public `port` reaches, if any.
    fn inbound(&mut self, now: Instant, from: SocketAddr, port: u16) -> Option<u16> {
        let e = self.mappings.get_mut(&port)?;
        if now >= e.1 + self.timeout || !e.0.contains(&from) {
            return None;
        }
        e.1 = now;
        Some(port)
    }
}

fn run(timeout: Duration, rfc5780: bool) -> (LifetimeReport, Duration) {
    let (primary, alternate) = (addr("203.0.113.3:3478"), addr("203.0.113.4:3479"));
    let config = if rfc5780 {
        ServerConfig::rfc5780(primary, alternate)
    } else {
        ServerConfig::new(primary)
    };
    let mut server = Server::new(config).unwrap();
    let prober = addr("192.168.1.2:5000");
    let mappings: Vec<SocketAddr> = (0..LifetimeConfig::DEFAULT_IDLE_TIMES.len())
        .map(|i| SocketAddr::new(prober.ip(), 5001 + i as u16))
        .collect();
    let mut probe = LifetimeProbe::new(LifetimeConfig::new(primary, prober, mappings), 9).unwrap();
    let mut nat = Nat {
        timeout,
        mappings: HashMap::new(),
    };
    // (arrival, to_server, from, to, bytes)
    let mut wire: Vec<(Instant, bool, SocketAddr, SocketAddr, Vec<u8>)> = Vec::new();
    let mut now = Instant::ZERO;
    let mut buf = [0u8; 1500];
    for _ in 0..100_000 {
        probe.handle_timeout(now);
        while let Some(t) = probe.poll_transmit(now, &mut buf) {
            let local = t.from.unwrap();
            let public = nat.out(now, local, t.to);
            wire.push((now + ONE_WAY, true, public, t.to, buf[..t.len].to_vec()));
        }
        if probe.is_done() {
            return (probe.report(), now - Instant::ZERO);
        }
        let next = wire
            .iter()
            .map(|w| w.0)
            .chain(probe.poll_timeout())
            .min()
            .unwrap();
        now = next.max(now);
        let (due, rest): (Vec<_>, Vec<_>) = wire.drain(..).partition(|w| w.0 <= now);
        wire = rest;
        for (_, to_server, from, to, bytes) in due {
            if to_server {
                if let Outcome::Respond(t) = server.answer(now, to, from, &bytes, &mut buf) {
                    let src = t.from.unwrap_or(to);
                    wire.push((now + ONE_WAY, false, src, t.to, buf[..t.len].to_vec()));
                }
            } else if let Some(port) = nat.inbound(now, from, to.port()) {
                let local = SocketAddr::new(prober.ip(), port);
                probe.feed(now, local, from, &bytes);
            }
        }
    }
    panic!("the probe did not finish");
}

#[test]
fn the_bracket_contains_the_nat_timeout() {
    for secs in [3u64, 8, 30, 60] {
        let timeout = Duration::from_secs(secs);
        let (r, took) = run(timeout, true);
        println!("timeout {secs} s: {r:?} in {took:?}");
        assert!(r.measurable);
        let (lo, hi) = (r.survived.unwrap(), r.expired.unwrap());
        assert!(lo < timeout && timeout <= hi, "{secs} s: {r:?}");
        // Stops soon after the first expiry: no trial longer than it is waited for.
        assert!(took < hi + Duration::from_secs(4), "{secs} s took {took:?}");
    }
}

#[test]
fn a_long_timeout_is_reported_as_a_lower_bound() {
    let (r, took) = run(Duration::from_secs(300), true);
    assert!(r.measurable);
    assert_eq!(r.survived, Some(Duration::from_secs(110)));
    assert_eq!(r.expired, None);
    assert!(took < Duration::from_secs(120), "{took:?}");
}

#[test]
fn a_server_without_rfc_5780_is_not_measurable() {
    let (r, took) = run(Duration::from_secs(30), false);
    assert_eq!(r, LifetimeReport::default());
    assert!(took < Duration::from_secs(10), "{took:?}");
}
