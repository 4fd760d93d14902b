//! RFC 7050 NAT64 prefix discovery: the `ipv4only.arpa` AAAA query, reading the prefix out of
//! its answer, and a small sans-IO machine that asks, retries and reports.
//!
//! `ipv4only.arpa` has only the A records 192.0.0.170 and 192.0.0.171 (the well-known IPv4
//! addresses, WKAs). A DNS64 resolver answers an AAAA query for it by synthesising addresses from
//! its Pref64::/n, so finding a WKA inside an answer shows both the prefix and, from the WKA's
//! position, its length (RFC 7050 §3).
//!
//! Strictness, because the answer steers where all IPv4 traffic goes: an AAAA record without a
//! WKA is rejected (the name has no native AAAA, so it means a broken or lying resolver), and so
//! are answers whose records put the WKA at different lengths, or at several lengths at once
//! that no other record disambiguates.

use core::net::{Ipv4Addr, Ipv6Addr};

use super::{Nat64Prefix, PrefixLen, U_OCTET, embedded_v4};
use crate::dns::{self, DnsError, Response, TYPE_AAAA};
use crate::rng::Rng;
use crate::time::{Duration, Instant};

/// The name whose AAAA records reveal the NAT64 prefix (RFC 7050 §2).
pub const IPV4ONLY_ARPA: &str = "ipv4only.arpa";
/// The well-known IPv4 addresses of `ipv4only.arpa` (RFC 7050 §2.2).
pub const WELL_KNOWN_V4: [Ipv4Addr; 2] =
    [Ipv4Addr::new(192, 0, 0, 170), Ipv4Addr::new(192, 0, 0, 171)];
/// The most distinct prefixes one answer may reveal.
pub const MAX_PREFIXES: usize = 4;
/// Room for the query: 12 header + 15 name + 4 type/class bytes.
const QUERY_CAP: usize = 32;

/// Why an answer reveals no usable prefix, or discovery gave up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The DNS message itself is malformed or not the answer to our query.
    #[error("DNS answer rejected: {0}")]
    Dns(#[from] DnsError),
    /// An AAAA record with no well-known address at any RFC 6052 position.
    #[error("AAAA record {0} holds no well-known address: not synthesised by DNS64")]
    NotSynthesized(Ipv6Addr),
    /// The records put the well-known address at different prefix lengths.
    #[error("answer records disagree on the prefix length")]
    InconsistentLengths,
    /// The well-known address appears at several lengths and nothing tells which is meant.
    #[error("the well-known address appears at several prefix lengths")]
    AmbiguousLength,
    /// More distinct prefixes than [`MAX_PREFIXES`].
    #[error("more than {MAX_PREFIXES} distinct prefixes")]
    TooManyPrefixes,
    /// The resolver could not be asked (the driver reported a failure).
    #[error("the DNS query could not be sent or its answer received")]
    Io,
    /// No answer after every attempt.
    #[error("the resolver did not answer")]
    TimedOut,
}

/// The prefixes one answer revealed: at least one, at most [`MAX_PREFIXES`], no duplicates, in
/// the order their records arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefixes {
    list: [Nat64Prefix; MAX_PREFIXES],
    len: usize,
}

impl Prefixes {
    /// The prefixes, first-seen first.
    pub fn as_slice(&self) -> &[Nat64Prefix] {
        &self.list[..self.len]
    }

    /// The first prefix, which RFC 7050 §3 says to prefer when several are found.
    pub fn first(&self) -> Nat64Prefix {
        self.list[0]
    }
}

/// Bytes of an `ipv4only.arpa` AAAA query, ready for the driver to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DnsQuery {
    bytes: [u8; QUERY_CAP],
    len: usize,
}

impl DnsQuery {
    /// Builds the query with id `id` (RD set, one question).
    pub fn new(id: u16) -> Self {
        let mut bytes = [0; QUERY_CAP];
        // The name is a valid constant that fits QUERY_CAP, so this cannot fail; a zero length
        // would only make the query unanswerable, never unsafe.
        let len = dns::build_query(&mut bytes, id, IPV4ONLY_ARPA, TYPE_AAAA).unwrap_or(0);
        DnsQuery { bytes, len }
    }

    /// The message id.
    pub fn id(&self) -> u16 {
        u16::from_be_bytes([self.bytes[0], self.bytes[1]])
    }

    /// The wire bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Reads the NAT64 prefixes out of the response `msg` to the `ipv4only.arpa` AAAA query `id`.
///
/// `Ok(None)`: the resolver answered but synthesised nothing (no AAAA records, or NXDOMAIN), so
/// there is no DNS64 here.
pub fn prefixes_from_response(msg: &[u8], id: u16) -> Result<Option<Prefixes>, DiscoveryError> {
    let response = match Response::parse(msg, id, IPV4ONLY_ARPA, TYPE_AAAA) {
        Ok(r) => r,
        Err(DnsError::Rcode(3)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let addrs = || response.answers().filter_map(|r| r.aaaa());

    // Which lengths every record allows; a record without any WKA is rejected outright.
    let mut common = ALL_LENGTHS;
    let mut any = false;
    for addr in addrs() {
        let mask = wka_lengths(addr);
        if mask == 0 {
            return Err(DiscoveryError::NotSynthesized(addr));
        }
        common &= mask;
        any = true;
    }
    if !any {
        return Ok(None);
    }
    let len = match common.count_ones() {
        0 => return Err(DiscoveryError::InconsistentLengths),
        1 => PrefixLen::ALL[common.trailing_zeros() as usize],
        _ => return Err(DiscoveryError::AmbiguousLength),
    };

    let mut out = Prefixes {
        list: [super::WELL_KNOWN_PREFIX; MAX_PREFIXES],
        len: 0,
    };
    for addr in addrs() {
        // wka_lengths checked the u octet, so `new` cannot fail; skip rather than trust that.
        let Ok(prefix) = Nat64Prefix::new(addr, len) else {
            continue;
        };
        if out.as_slice().contains(&prefix) {
            continue;
        }
        if out.len == MAX_PREFIXES {
            return Err(DiscoveryError::TooManyPrefixes);
        }
        out.list[out.len] = prefix;
        out.len += 1;
    }
    Ok(Some(out))
}

/// Bit i set: `PrefixLen::ALL[i]`.
const ALL_LENGTHS: u8 = (1 << PrefixLen::ALL.len()) - 1;

/// The lengths at which `addr` embeds a well-known address with a zero u octet.
fn wka_lengths(addr: Ipv6Addr) -> u8 {
    let bytes = addr.octets();
    if bytes[U_OCTET] != 0 {
        return 0;
    }
    PrefixLen::ALL
        .iter()
        .enumerate()
        .filter(|(_, len)| WELL_KNOWN_V4.contains(&embedded_v4(&bytes, **len)))
        .fold(0, |mask, (i, _)| mask | (1 << i))
}

/// Retry schedule for [`PrefixDiscovery`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiscoveryConfig {
    /// How long to wait for the first answer; each retry waits twice as long as the last.
    pub first_timeout: Duration,
    /// How many times the query is sent in all (0 counts as 1).
    pub max_sends: u8,
}

impl Default for DiscoveryConfig {
    /// 1 s, 2 s, 4 s: three sends, the usual stub resolver pattern, 7 s in all.
    fn default() -> Self {
        DiscoveryConfig {
            first_timeout: Duration::from_secs(1),
            max_sends: 3,
        }
    }
}

/// Something the driver must do for [`PrefixDiscovery`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiscoveryAction {
    /// Send these bytes over UDP to the system resolver (from /etc/resolv.conf) and hand the
    /// answer (or a failure) back through [`PrefixDiscovery::handle_io`].
    SendQuery(DnsQuery),
}

/// What the driver reports back for a [`DiscoveryAction::SendQuery`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DnsIo<'a> {
    /// A datagram arrived from the resolver.
    Answer(&'a [u8]),
    /// The query could not be sent or the resolver is unreachable.
    Failed,
}

/// How discovery ended; exactly one is reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiscoveryEvent {
    /// DNS64 is present and synthesises with these prefixes.
    Discovered(Prefixes),
    /// The resolver answered without synthesising: no NAT64 here.
    NoNat64,
    /// Discovery failed.
    Failed(DiscoveryError),
}

/// A sans-IO RFC 7050 prefix discovery: one query, bounded retransmissions, one event.
///
/// Pump it like every holepunch machine: drain [`poll_action`](Self::poll_action) and
/// [`poll_event`](Self::poll_event) after every input, and call
/// [`handle_timeout`](Self::handle_timeout) at [`poll_timeout`](Self::poll_timeout).
#[derive(Clone, Debug)]
pub struct PrefixDiscovery {
    config: DiscoveryConfig,
    query: DnsQuery,
    sends: u8,
    send_pending: bool,
    deadline: Option<Instant>,
    timeout: Duration,
    event: Option<DiscoveryEvent>,
}

impl PrefixDiscovery {
    /// Starts a discovery at `now`; the first query is ready at once. The id comes from `rng`,
    /// so an off-path attacker cannot easily forge the answer.
    pub fn new(now: Instant, rng: &mut Rng, config: DiscoveryConfig) -> Self {
        let id = rng.next_u64() as u16;
        PrefixDiscovery {
            config,
            query: DnsQuery::new(id),
            sends: 1,
            send_pending: true,
            deadline: Some(now + config.first_timeout),
            timeout: config.first_timeout,
            event: None,
        }
    }

    /// The query this discovery sends (the same bytes on every retry).
    pub fn query(&self) -> &DnsQuery {
        &self.query
    }

    /// The driver's report on a [`DiscoveryAction::SendQuery`].
    ///
    /// Answers that are not for this query (wrong id, not a response, another question) are
    /// ignored, as a stub resolver ignores them; anything else ends the discovery.
    pub fn handle_io(&mut self, _now: Instant, io: DnsIo<'_>) {
        if self.is_done() {
            return;
        }
        let event = match io {
            DnsIo::Failed => DiscoveryEvent::Failed(DiscoveryError::Io),
            DnsIo::Answer(msg) => match prefixes_from_response(msg, self.query.id()) {
                Ok(Some(p)) => DiscoveryEvent::Discovered(p),
                Ok(None) => DiscoveryEvent::NoNat64,
                Err(DiscoveryError::Dns(
                    DnsError::IdMismatch { .. }
                    | DnsError::NotAResponse
                    | DnsError::QuestionMismatch
                    | DnsError::Truncated { at: 0 },
                )) => return,
                Err(e) => DiscoveryEvent::Failed(e),
            },
        };
        self.finish(event);
    }

    /// Retransmits, or gives up after the last attempt's wait. Early calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(deadline) = self.deadline else {
            return;
        };
        if now < deadline {
            return;
        }
        if self.sends >= self.config.max_sends.max(1) {
            self.finish(DiscoveryEvent::Failed(DiscoveryError::TimedOut));
            return;
        }
        self.sends += 1;
        self.timeout = self.timeout.saturating_mul(2);
        self.deadline = Some(now + self.timeout);
        self.send_pending = true;
    }

    /// The next thing the driver must do.
    pub fn poll_action(&mut self) -> Option<DiscoveryAction> {
        if core::mem::take(&mut self.send_pending) {
            return Some(DiscoveryAction::SendQuery(self.query));
        }
        None
    }

    /// The outcome, once.
    pub fn poll_event(&mut self) -> Option<DiscoveryEvent> {
        self.event.take()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called; `None` once done.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether the outcome has been decided (it may still wait in `poll_event`).
    pub fn is_done(&self) -> bool {
        self.deadline.is_none()
    }

    fn finish(&mut self, event: DiscoveryEvent) {
        self.deadline = None;
        self.send_pending = false;
        self.event = Some(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().expect("test address")
    }

    /// The response to `query` carrying `addrs` as AAAA records.
    fn answer(query: &DnsQuery, addrs: &[Ipv6Addr]) -> Vec<u8> {
        let mut m = query.as_bytes().to_vec();
        m[2] |= 0x80;
        m[6..8].copy_from_slice(&(addrs.len() as u16).to_be_bytes());
        for a in addrs {
            m.extend_from_slice(&[0xc0, 12, 0, 28, 0, 1, 0, 0, 0, 60, 0, 16]);
            m.extend_from_slice(&a.octets());
        }
        m
    }

    #[test]
    fn the_lab_and_well_known_answers_give_their_prefixes() {
        let q = DnsQuery::new(7);
        for (prefix, records) in [
            ("64:ff9b::/96", ["64:ff9b::c000:aa", "64:ff9b::c000:ab"]),
            (
                "2001:db8:64:ff9b::/96",
                ["2001:db8:64:ff9b::c000:aa", "2001:db8:64:ff9b::c000:ab"],
            ),
        ] {
            let m = answer(&q, &records.map(v6));
            let found = prefixes_from_response(&m, 7)
                .expect("valid")
                .expect("found");
            assert_eq!(found.as_slice(), [prefix.parse().expect("prefix")]);
        }
    }

    #[test]
    fn every_length_is_found_from_a_synthesised_address() {
        let q = DnsQuery::new(9);
        for len in PrefixLen::ALL {
            let p = Nat64Prefix::new(v6("2001:db8:122:344::"), len).expect("prefix");
            let m = answer(&q, &WELL_KNOWN_V4.map(|w| p.synthesize(w)));
            let found = prefixes_from_response(&m, 9)
                .expect("valid")
                .expect("found");
            assert_eq!(found.first(), p, "{len:?}");
        }
    }

    #[test]
    fn answers_off_the_pattern_are_rejected() {
        let q = DnsQuery::new(1);
        let native = answer(&q, &[v6("2001:db8::1")]);
        assert_eq!(
            prefixes_from_response(&native, 1),
            Err(DiscoveryError::NotSynthesized(v6("2001:db8::1")))
        );
        let mixed = answer(&q, &[v6("64:ff9b::c000:aa"), v6("2001:db8:c000:aa::")]);
        assert_eq!(
            prefixes_from_response(&mixed, 1),
            Err(DiscoveryError::InconsistentLengths)
        );
        // A non-zero u octet disqualifies every length, /96 included (RFC 6052 §2.2).
        let mut bad = v6("2001:db8::c000:aa").octets();
        bad[8] = 1;
        let m = answer(&q, &[Ipv6Addr::from(bad)]);
        assert_eq!(
            prefixes_from_response(&m, 1),
            Err(DiscoveryError::NotSynthesized(Ipv6Addr::from(bad)))
        );
        // 192.0.0.170 at both /32 (bytes 4-7) and /96 (bytes 12-15).
        let both = v6("2001:db8:c000:aa::c000:aa");
        assert_eq!(
            prefixes_from_response(&answer(&q, &[both]), 1),
            Err(DiscoveryError::AmbiguousLength)
        );
        // ...which another record can disambiguate.
        let m = answer(&q, &[both, v6("2001:db8:c000:ab::")]);
        assert_eq!(
            prefixes_from_response(&m, 1)
                .expect("valid")
                .expect("found")
                .first(),
            "2001:db8::/32".parse().expect("prefix")
        );
    }

    #[test]
    fn no_records_or_nxdomain_mean_no_nat64() {
        let q = DnsQuery::new(3);
        assert_eq!(prefixes_from_response(&answer(&q, &[]), 3), Ok(None));
        let mut nx = answer(&q, &[]);
        nx[3] = 3;
        assert_eq!(prefixes_from_response(&nx, 3), Ok(None));
    }

    #[test]
    fn machine_sends_retries_on_schedule_and_gives_up() {
        let mut rng = Rng::from_seed(1);
        let t0 = Instant::from_millis(1000);
        let mut d = PrefixDiscovery::new(t0, &mut rng, DiscoveryConfig::default());
        let mut sends = Vec::new();
        let mut now = t0;
        for _ in 0..10 {
            while let Some(DiscoveryAction::SendQuery(q)) = d.poll_action() {
                assert_eq!(q.as_bytes(), d.query().as_bytes());
                sends.push(now - t0);
            }
            let Some(at) = d.poll_timeout() else { break };
            d.handle_timeout(Instant::from_micros(at.as_micros() - 1000)); // early: a no-op
            now = at;
            d.handle_timeout(now);
        }
        assert_eq!(
            sends,
            [0, 1, 3].map(Duration::from_secs),
            "sent at 0, 1 and 3 s"
        );
        assert_eq!(now - t0, Duration::from_secs(7));
        assert_eq!(
            d.poll_event(),
            Some(DiscoveryEvent::Failed(DiscoveryError::TimedOut))
        );
        assert_eq!(d.poll_event(), None);
        assert_eq!(d.poll_timeout(), None);
    }

    #[test]
    fn machine_ignores_strangers_and_reports_the_prefix() {
        let mut rng = Rng::from_seed(2);
        let mut d = PrefixDiscovery::new(Instant::ZERO, &mut rng, DiscoveryConfig::default());
        let q = *d.query();
        assert!(matches!(
            d.poll_action(),
            Some(DiscoveryAction::SendQuery(_))
        ));
        let stranger = answer(
            &DnsQuery::new(q.id().wrapping_add(1)),
            &[v6("64:ff9b::c000:aa")],
        );
        d.handle_io(Instant::ZERO, DnsIo::Answer(&stranger));
        d.handle_io(Instant::ZERO, DnsIo::Answer(&[]));
        assert_eq!(d.poll_event(), None);
        assert!(!d.is_done());
        let good = answer(&q, &[v6("64:ff9b::c000:aa")]);
        d.handle_io(Instant::ZERO, DnsIo::Answer(&good));
        let Some(DiscoveryEvent::Discovered(p)) = d.poll_event() else {
            panic!("no prefix reported");
        };
        assert!(p.first().is_well_known());
        // A late duplicate changes nothing.
        d.handle_io(Instant::ZERO, DnsIo::Answer(&good));
        assert_eq!(d.poll_event(), None);
        assert_eq!(d.poll_action(), None);
    }

    #[test]
    fn machine_reports_malformed_answers_and_io_failures() {
        let mut rng = Rng::from_seed(3);
        let mut d = PrefixDiscovery::new(Instant::ZERO, &mut rng, DiscoveryConfig::default());
        let mut m = answer(d.query(), &[v6("64:ff9b::c000:aa")]);
        let last = m.len() - 1;
        m.truncate(last);
        d.handle_io(Instant::ZERO, DnsIo::Answer(&m));
        assert!(matches!(
            d.poll_event(),
            Some(DiscoveryEvent::Failed(DiscoveryError::Dns(
                DnsError::Truncated { .. }
            )))
        ));
        let mut d = PrefixDiscovery::new(Instant::ZERO, &mut rng, DiscoveryConfig::default());
        d.handle_io(Instant::ZERO, DnsIo::Failed);
        assert_eq!(
            d.poll_event(),
            Some(DiscoveryEvent::Failed(DiscoveryError::Io))
        );
    }
}
