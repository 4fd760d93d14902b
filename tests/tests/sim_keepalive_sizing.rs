//! Simulation: keepalives sized to the NAT's measured mapping lifetime (issue 14).
//!
//! Two port-restricted peers connect directly; some time later each agent is told its NAT's
//! idle mapping lifetime (as the driver's background measurement would tell it) and proposes
//! a keepalive just under it in band, in its next check. Over a long idle session the path
//! must never break, and each side's idle traffic must fall from RFC 7675's check every ~5 s
//! to one check (and one answer to the peer's) per agreed interval.

use holepunch_core::time::{Duration, Instant};
use holepunch_tests::sim::pair::{PairConfig, PairOutcome, PathKind, run_pair};
use holepunch_tests::sim::profile::Profile;

/// A Binding request's STUN message type.
const BINDING_REQUEST: u16 = 0x0001;
/// How long after connecting each agent learns its NAT's lifetime (a search over idle times
/// up to the lifetime itself takes about that long).
const MEASURED_AFTER: Duration = Duration::from_secs(150);
/// Time for both sides to hear each other's proposal and drop checks still scheduled at the
/// old cadence, after the later measurement.
const SETTLE: Duration = Duration::from_secs(20);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Runs two port-restricted peers (no relay) behind NATs forgetting idle mappings after
/// `timeout`, held `hold` after connecting; each agent is told `lifetime` [`MEASURED_AFTER`]
/// connecting, or nothing.
fn run(timeout: Duration, lifetime: Option<Duration>, hold: Duration, seed: u64) -> PairOutcome {
    let mut config = PairConfig::new(
        Profile::PortRestrictedCone,
        Profile::PortRestrictedCone,
        seed,
    )
    .without_relay();
    config.nat_timeout = Some(timeout);
    config.mapping_lifetime = lifetime.map(|l| (MEASURED_AFTER, l));
    config.hold = hold;
    config.time_limit = hold + secs(60);
    let o = run_pair(&config);
    assert_eq!(o.path, PathKind::Direct, "{:?}", o.log.last());
    o
}

/// What side `i` sent after `since`.
struct Idle {
    /// Datagrams on the selected path (to the peer's address on it): consent checks and
    /// answers to the peer's.
    path: usize,
    /// Binding requests among them (this side's consent checks).
    checks: usize,
    /// The longest silence between two of them.
    longest: Duration,
    /// Every datagram towards the peer, on any pair (re-probes of failed pairs too).
    all: usize,
}

fn idle_traffic(o: &PairOutcome, i: usize, since: Instant) -> Idle {
    let remote = o.selected[i].expect("a selected path").remote;
    let after: Vec<_> = o.direct_log[i]
        .iter()
        .filter(|(t, _, _)| *t >= since)
        .collect();
    let path: Vec<(Instant, u16)> = after
        .iter()
        .filter(|(_, _, to)| *to == remote)
        .map(|(t, k, _)| (*t, *k))
        .collect();
    Idle {
        path: path.len(),
        checks: path.iter().filter(|(_, k)| *k == BINDING_REQUEST).count(),
        longest: path
            .windows(2)
            .map(|w| w[1].0 - w[0].0)
            .max()
            .unwrap_or(Duration::ZERO),
        all: after.len(),
    }
}

/// When the later side connected, and when the run ended (the last log line's time is when
/// the loop stopped; the hold ends it).
fn window(o: &PairOutcome, hold: Duration) -> (Instant, Instant) {
    let connected = Instant::ZERO + o.elapsed.expect("connected");
    (connected, connected + hold)
}

/// Lines of the log after `since` naming `what` (each line starts with its virtual time,
/// `SECS.MICROSs`).
fn after<'a>(o: &'a PairOutcome, since: Instant, what: &str) -> Vec<&'a String> {
    let at = |line: &str| -> Option<Instant> {
        let t = line.split(' ').next()?.strip_suffix('s')?;
        let (s, us) = t.split_once('.')?;
        let micros = s.parse::<u64>().ok()? * 1_000_000 + us.parse::<u64>().ok()?;
        Some(Instant::ZERO + Duration::from_micros(micros))
    };
    o.log
        .iter()
        .filter(|l| l.contains(what) && at(l).is_some_and(|t| t > since))
        .collect()
}

/// Datagrams per hour over `span`.
fn per_hour(count: usize, span: Duration) -> f64 {
    count as f64 * 3600.0 / span.as_secs_f64()
}

/// The whole check for one NAT timeout: sized, the path holds and each side sends about one
/// check per `interval`; unsized, RFC 7675's ~5 s cadence. Returns idle datagrams per hour of
/// side A (sized, unsized).
/// `all_per_hour`: the most datagrams an hour side may send towards the peer on any pair (the
/// failed host pair's re-probes, backed off to one every 5 minutes, come on top of the path's).
fn sized_to(
    timeout: Duration,
    interval: Duration,
    hold: Duration,
    seed: u64,
    all_per_hour: f64,
) -> (f64, f64) {
    let sized = run(timeout, Some(timeout), hold, seed);
    let (connected, end) = window(&sized, hold);
    assert!(
        after(&sized, connected, "ConsentLost").is_empty()
            && after(&sized, connected, "PathChanged").is_empty(),
        "{timeout:?}: the path broke: {:?}",
        &sized.log[sized.log.len().saturating_sub(20)..]
    );
    for side in ["A", "B"] {
        let agreed = format!("{side} KeepaliveInterval({interval:?})");
        assert!(
            sized.log.iter().any(|l| l.ends_with(&agreed)),
            "{timeout:?}: {side} did not agree on {interval:?}: {:?}",
            sized
                .log
                .iter()
                .filter(|l| l.contains("Keepalive"))
                .collect::<Vec<_>>()
        );
    }
    let idle_from = connected + MEASURED_AFTER + SETTLE;
    let span = end - idle_from;
    let baseline = run(timeout, None, hold, seed);
    let (base_connected, _) = window(&baseline, hold);
    let base_from = base_connected + MEASURED_AFTER + SETTLE;
    let mut rates = (0.0, 0.0);
    for i in 0..2 {
        let idle = idle_traffic(&sized, i, idle_from);
        let base = idle_traffic(&baseline, i, base_from);
        println!(
            "NAT timeout {timeout:?}, side {i}, over {span:?} idle: on the path {} datagrams \
             ({:.0}/h, {} checks, longest silence {:?}) sized vs {} ({:.0}/h, {} checks) at \
             RFC 7675's 5 s; towards the peer on any pair {} ({:.0}/h) vs {} ({:.0}/h)",
            idle.path,
            per_hour(idle.path, span),
            idle.checks,
            idle.longest,
            base.path,
            per_hour(base.path, span),
            base.checks,
            idle.all,
            per_hour(idle.all, span),
            base.all,
            per_hour(base.all, span),
        );
        // One check per interval (randomised down by up to a tenth), never fewer than the
        // interval allows.
        let most = (span.as_secs_f64() / (interval.as_secs_f64() * 0.9)).ceil() as usize + 1;
        let least = (span.as_secs_f64() / interval.as_secs_f64()).floor() as usize - 1;
        assert!(
            (least..=most).contains(&idle.checks),
            "{timeout:?} side {i}: {} checks in {span:?}, want {least}..={most}",
            idle.checks
        );
        // Its own datagrams on the path keep its mapping: the longest silence stays clear of
        // the timeout by the sizing's margin (a tenth, at least 2 s), not just under it.
        let margin = (timeout / 10).max(secs(2));
        assert!(
            idle.longest <= timeout - margin + Duration::from_millis(100),
            "{timeout:?} side {i}: {:?} of silence on the path",
            idle.longest
        );
        assert!(
            idle.checks * 3 < base.checks,
            "{timeout:?} side {i}: {} checks sized vs {} unsized",
            idle.checks,
            base.checks
        );
        assert!(
            per_hour(idle.all, span) < all_per_hour,
            "{timeout:?} side {i}: {:.0} datagrams an hour towards the peer",
            per_hour(idle.all, span)
        );
        if i == 0 {
            rates = (per_hour(idle.path, span), per_hour(base.path, span));
        }
    }
    rates
}

#[test]
fn a_120_s_nat_gets_one_check_per_108_s_and_the_path_holds_twenty_idle_minutes() {
    let (sized, unsized_) = sized_to(secs(120), secs(108), secs(20 * 60), 11, 600.0);
    assert!(sized * 10.0 < unsized_, "{sized} vs {unsized_}");
}

#[test]
fn a_20_s_nat_gets_one_check_per_18_s_and_the_path_holds() {
    let (sized, unsized_) = sized_to(secs(20), secs(18), secs(10 * 60), 12, 1100.0);
    assert!(sized * 2.0 < unsized_, "{sized} vs {unsized_}");
}
