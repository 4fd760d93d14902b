//! Hard-NAT punch plans: determinism, bounds, coverage, prediction and the birthday-paradox
//! success rate checked by Monte Carlo against 1-(1-N/64512)^k.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use holepunch_core::punch::{
    EasySideConfig, EasySidePlan, FIRST_PORT, HardSideConfig, HardSidePlan, PORT_SPACE,
    PortAllocation, PortPredictor, Probe, PunchAction, PunchError, success_probability,
};
use holepunch_core::rng::Rng;
use holepunch_core::{Duration, Instant};

const HARD_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));

fn easy_addr() -> SocketAddr {
    SocketAddr::from(([203, 0, 113, 9], 41641))
}

fn t0() -> Instant {
    Instant::from_millis(5_000)
}

/// Drives an easy plan the way a driver would (sleep until `poll_timeout`, then drain) and
/// returns every probe with its send time.
fn run_easy(mut plan: EasySidePlan) -> Vec<(Instant, u16)> {
    let mut out = Vec::new();
    while let Some(at) = plan.poll_timeout() {
        plan.handle_timeout(at);
        while let Some(to) = plan.poll_probe(at) {
            assert_eq!(to.ip(), HARD_IP);
            out.push((at, to.port()));
        }
    }
    assert!(plan.is_finished());
    out
}

fn easy(config: EasySideConfig, seed: u64) -> EasySidePlan {
    EasySidePlan::new(config, HARD_IP, [], seed, t0()).unwrap()
}

fn fast(max_probes: u32) -> EasySideConfig {
    EasySideConfig {
        rate: 1_000_000,
        max_probes,
        max_duration: Duration::from_secs(3600),
    }
}

fn ports(schedule: &[(Instant, u16)]) -> Vec<u16> {
    schedule.iter().map(|&(_, p)| p).collect()
}

// ---------------------------------------------------------------------------------------------
// success_probability

#[test]
fn success_probability_matches_the_closed_form() {
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
    assert!(close(success_probability(256, 64), 0.224_675_398_2));
    assert!(close(success_probability(256, 174), 0.499_350_897_8));
    assert!(close(success_probability(256, 256), 0.638_644_841_3));
    assert!(close(success_probability(256, 1024), 0.982_949_503_2));
    assert!(close(success_probability(256, 2048), 0.999_709_280_6));
    assert!(close(success_probability(1, 1), 1.0 / 64512.0));
    assert_eq!(success_probability(0, 1000), 0.0);
    assert_eq!(success_probability(256, 0), 0.0);
    assert_eq!(success_probability(PORT_SPACE, 1), 1.0);
    assert_eq!(success_probability(u32::MAX, 1), 1.0);
    // Repeated squaring agrees with the naive product.
    let miss = 1.0 - 300.0 / 64512.0;
    let naive = 1.0 - (0..777).fold(1.0f64, |acc, _| acc * miss);
    assert!((success_probability(300, 777) - naive).abs() < 1e-12);
    let mut last = 0.0;
    for k in (0..5000).step_by(97) {
        let p = success_probability(256, k);
        assert!(p >= last && p <= 1.0);
        last = p;
    }
}

// ---------------------------------------------------------------------------------------------
// Easy side

#[test]
fn easy_side_is_deterministic_by_seed() {
    let a = run_easy(easy(EasySideConfig::default(), 42));
    let b = run_easy(easy(EasySideConfig::default(), 42));
    let c = run_easy(easy(EasySideConfig::default(), 43));
    assert_eq!(a.len(), 2048);
    assert_eq!(a, b);
    assert_ne!(ports(&a), ports(&c));
    // Different seeds share only about as many early ports as chance allows (2048²/64512 ≈ 65).
    let a_ports: std::collections::HashSet<u16> = ports(&a).into_iter().collect();
    let shared = ports(&c).iter().filter(|p| a_ports.contains(p)).count();
    assert!(shared < 130, "{shared} shared ports");
}

#[test]
fn easy_side_never_repeats_and_covers_the_whole_space() {
    for seed in [0, 1, 0xdead_beef, u64::MAX] {
        let schedule = run_easy(easy(fast(u32::MAX), seed));
        assert_eq!(schedule.len(), PORT_SPACE as usize);
        let mut seen = vec![false; 65536];
        for &(_, port) in &schedule {
            assert!(port >= FIRST_PORT);
            assert!(!seen[usize::from(port)], "port {port} repeated");
            seen[usize::from(port)] = true;
        }
    }
}

/// Pearson's chi-square statistic of `counts` against a uniform expectation.
fn chi_square(counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    let expected = total as f64 / counts.len() as f64;
    counts
        .iter()
        .map(|&c| (c as f64 - expected).powi(2) / expected)
        .sum()
}

/// A generous acceptance bound for a chi-square with `dof` degrees of freedom: mean + 5 sd.
fn chi_bound(dof: usize) -> f64 {
    dof as f64 + 5.0 * (2.0 * dof as f64).sqrt()
}

#[test]
fn easy_side_probes_are_uniform() {
    // 63 buckets of 1024 ports each tile 1024..=65535 exactly.
    let bucket = |port: u16| usize::from(port - FIRST_PORT) / 1024;

    // The first 2048 probes of each of several seeds spread over the space.
    for seed in 0..8 {
        let mut counts = [0u64; 63];
        for (_, port) in run_easy(easy(EasySideConfig::default(), seed)) {
            counts[bucket(port)] += 1;
        }
        let chi = chi_square(&counts);
        assert!(chi < chi_bound(62), "seed {seed}: chi² {chi:.1}");
    }

    // The first probe over many seeds, and consecutive pairs (8×8 grid of 8064-port cells), so
    // neither the start nor the step of the permutation is predictable.
    let mut first = [0u64; 63];
    for seed in 0..6300 {
        let (_, port) = run_easy(easy(fast(1), seed))[0];
        first[bucket(port)] += 1;
    }
    let chi = chi_square(&first);
    assert!(chi < chi_bound(62), "first probes: chi² {chi:.1}");

    let cell = |port: u16| usize::from(port - FIRST_PORT) / 8064;
    let mut pairs = [0u64; 64];
    let schedule = ports(&run_easy(easy(fast(16_384), 7)));
    for w in schedule.windows(2) {
        pairs[cell(w[0]) * 8 + cell(w[1])] += 1;
    }
    let chi = chi_square(&pairs);
    assert!(chi < chi_bound(63), "pairs: chi² {chi:.1}");
}

#[test]
fn easy_side_respects_the_rate_in_every_second() {
    let config = EasySideConfig::default();
    let schedule = run_easy(easy(config, 9));
    assert_eq!(schedule.len(), 2048);
    let times: Vec<u64> = schedule.iter().map(|(t, _)| t.as_micros()).collect();
    for (i, &start) in times.iter().enumerate() {
        let in_window = times[i..]
            .iter()
            .take_while(|&&t| t < start + 1_000_000)
            .count();
        assert!(
            in_window <= config.rate as usize,
            "{in_window} probes in 1 s"
        );
    }
    // 2048 probes at 100/s: the last goes out 20.47 s after the first.
    assert_eq!(times[0], t0().as_micros());
    assert_eq!(times[2047] - times[0], 2047 * 10_000);

    // A rate that does not divide a second rounds the gap up, never the rate.
    let odd = easy(
        EasySideConfig {
            rate: 3,
            ..EasySideConfig::default()
        },
        1,
    );
    assert_eq!(odd.interval(), Duration::from_micros(333_334));
}

#[test]
fn easy_side_does_not_burst_after_a_late_poll() {
    let mut plan = easy(EasySideConfig::default(), 3);
    let mut rng = Rng::from_seed(99);
    let mut now = t0();
    let mut sends = Vec::new();
    while !plan.is_finished() {
        while let Some(to) = plan.poll_probe(now) {
            sends.push((now, to));
        }
        // A sloppy driver: wakes up anywhere from 0 to 50 ms late.
        now = plan.poll_timeout().unwrap_or(now) + Duration::from_micros(rng.below(50_000));
    }
    for w in sends.windows(2) {
        assert!(w[1].0 - w[0].0 >= plan.interval());
    }
    assert!(sends.iter().all(|(t, _)| *t < plan.deadline()));
}

#[test]
fn easy_side_stops_at_its_bounds() {
    // Time-bounded: 5 s at 100/s is at most 500 probes, none at or after the deadline.
    let config = EasySideConfig {
        max_duration: Duration::from_secs(5),
        ..EasySideConfig::default()
    };
    let plan = easy(config, 11);
    let deadline = plan.deadline();
    let schedule = run_easy(plan);
    assert_eq!(schedule.len(), 500);
    assert!(schedule.iter().all(|(t, _)| *t < deadline));

    // Probe-bounded.
    let schedule = run_easy(easy(
        EasySideConfig {
            max_probes: 37,
            ..EasySideConfig::default()
        },
        11,
    ));
    assert_eq!(schedule.len(), 37);

    // Finished means finished: no timer, no probe, whatever time is given.
    let mut plan = easy(config, 11);
    assert_eq!(plan.poll_timeout(), Some(t0()));
    plan.handle_timeout(t0() + Duration::from_secs(4)); // early: harmless
    assert!(!plan.is_finished());
    assert!(plan.poll_probe(t0() + Duration::from_secs(5)).is_none());
    assert!(plan.is_finished());
    assert_eq!(plan.poll_timeout(), None);
    assert!(plan.poll_probe(t0() + Duration::from_secs(6)).is_none());
    assert_eq!(plan.probes_sent(), 0);

    // Before the next slot nothing comes out; the timer says when.
    let mut plan = easy(EasySideConfig::default(), 11);
    assert!(plan.poll_probe(t0()).is_some());
    assert!(plan.poll_probe(t0()).is_none());
    assert_eq!(plan.poll_timeout(), Some(t0() + Duration::from_millis(10)));
    assert!(plan.poll_probe(t0() + Duration::from_millis(9)).is_none());
    assert!(plan.poll_probe(t0() + Duration::from_millis(10)).is_some());
}

#[test]
fn easy_side_rejects_nonsense_configs() {
    let bad = |config: EasySideConfig| {
        EasySidePlan::new(config, HARD_IP, [], 0, t0())
            .err()
            .unwrap()
    };
    let d = EasySideConfig::default();
    assert_eq!(
        bad(EasySideConfig { rate: 0, ..d }),
        PunchError::InvalidConfig { field: "rate" }
    );
    assert_eq!(
        bad(EasySideConfig {
            rate: 2_000_000,
            ..d
        }),
        PunchError::InvalidConfig { field: "rate" }
    );
    assert_eq!(
        bad(EasySideConfig { max_probes: 0, ..d }),
        PunchError::InvalidConfig {
            field: "max_probes"
        }
    );
    assert_eq!(
        bad(EasySideConfig {
            max_duration: Duration::ZERO,
            ..d
        }),
        PunchError::InvalidConfig {
            field: "max_duration"
        }
    );
}

#[test]
fn easy_side_tries_predicted_ports_first_and_never_again() {
    let predictor = PortPredictor::new(&[40_000, 40_001, 40_002, 40_003]).unwrap();
    let predicted: Vec<u16> = predictor.predicted(16).collect();
    assert_eq!(predicted, (40_004..40_020).collect::<Vec<u16>>());
    // Zeros and repeats in the caller's list are dropped.
    let input = predicted
        .iter()
        .copied()
        .chain([0, 40_004, 40_005])
        .collect::<Vec<_>>();
    let plan = EasySidePlan::new(fast(u32::MAX), HARD_IP, input, 5, t0()).unwrap();
    let schedule = ports(&run_easy(plan));
    assert_eq!(&schedule[..16], &predicted[..]);
    assert_eq!(schedule.len(), PORT_SPACE as usize);
    let mut seen = vec![false; 65536];
    for port in schedule {
        assert!(!seen[usize::from(port)]);
        seen[usize::from(port)] = true;
    }

    // Predictions count against max_probes.
    let plan = EasySidePlan::new(
        EasySideConfig {
            max_probes: 10,
            ..EasySideConfig::default()
        },
        HARD_IP,
        predictor.predicted(64),
        5,
        t0(),
    )
    .unwrap();
    assert_eq!(
        ports(&run_easy(plan)),
        (40_004..40_014).collect::<Vec<u16>>()
    );
}

// ---------------------------------------------------------------------------------------------
// Hard side

/// Drives a hard plan to its end, returning every probe with its send time.
fn run_hard(plan: &mut HardSidePlan) -> Vec<(Instant, Probe)> {
    let mut out = Vec::new();
    while let Some(at) = plan.poll_timeout() {
        plan.handle_timeout(at);
        while let Some(probe) = plan.poll_probe(at) {
            out.push((at, probe));
        }
    }
    out
}

fn hard_opened(config: HardSideConfig, opened: impl Fn(u16) -> bool) -> HardSidePlan {
    let mut plan = HardSidePlan::new(config, easy_addr(), t0()).unwrap();
    assert_eq!(plan.poll_timeout(), Some(t0()), "the action is pending");
    assert_eq!(
        plan.poll_action(),
        Some(PunchAction::BindUdp {
            count: config.sockets
        })
    );
    assert_eq!(plan.poll_action(), None);
    for i in 0..plan.sockets_needed() {
        if opened(i) {
            plan.handle_socket_opened(t0(), i).unwrap();
        }
    }
    plan
}

#[test]
fn hard_side_asks_for_sockets_and_sends_from_every_one() {
    let config = HardSideConfig::default();
    assert_eq!(config.sockets, 256);
    let mut plan = hard_opened(config, |_| true);
    assert_eq!(plan.sockets_needed(), 256);
    let sends = run_hard(&mut plan);
    assert!(plan.is_finished());
    assert_eq!(plan.poll_timeout(), None);
    assert_eq!(sends.len(), 256 * 3);
    assert_eq!(plan.probes_sent(), 768);

    let mut per_socket: Vec<Vec<Instant>> = vec![Vec::new(); 256];
    for (at, probe) in &sends {
        assert_eq!(probe.to, easy_addr());
        assert!(*at < plan.deadline());
        per_socket[usize::from(probe.socket_index)].push(*at);
    }
    for times in &per_socket {
        assert_eq!(
            times.len(),
            3,
            "every socket sends max_sends_per_socket times"
        );
        for w in times.windows(2) {
            assert!(w[1] - w[0] >= config.refresh_interval);
        }
    }
    for w in sends.windows(2) {
        assert!(w[1].0 - w[0].0 >= config.spacing);
    }
    // The first round goes out in index order, one per millisecond.
    for (i, (at, probe)) in sends[..256].iter().enumerate() {
        assert_eq!(usize::from(probe.socket_index), i);
        assert_eq!(*at, t0() + Duration::from_millis(i as u64));
    }
}

#[test]
fn hard_side_is_deterministic_and_bounded_in_time() {
    let config = HardSideConfig {
        max_duration: Duration::from_secs(15),
        ..HardSideConfig::default()
    };
    let a = run_hard(&mut hard_opened(config, |_| true));
    let b = run_hard(&mut hard_opened(config, |_| true));
    assert_eq!(a, b);
    // Rounds at 0 and 10 s fit in 15 s; the one at 20 s does not.
    assert_eq!(a.len(), 512);
    assert!(a.iter().all(|(t, _)| *t < t0() + Duration::from_secs(15)));
}

#[test]
fn hard_side_uses_only_the_sockets_it_was_given() {
    let mut plan = hard_opened(HardSideConfig::default(), |i| i % 2 == 0);
    // Socket 10 is lost before anything is sent; socket 255 turns up after the first round.
    plan.handle_socket_closed(10).unwrap();
    let mut sends = Vec::new();
    let late = t0() + Duration::from_millis(500);
    let mut opened_late = false;
    while let Some(at) = plan.poll_timeout() {
        let at = if !opened_late && at > late {
            plan.handle_socket_opened(late, 255).unwrap();
            opened_late = true;
            late
        } else {
            at
        };
        while let Some(probe) = plan.poll_probe(at) {
            sends.push((at, probe.socket_index));
        }
    }
    let mut count = [0u32; 256];
    for &(_, i) in &sends {
        count[usize::from(i)] += 1;
    }
    for (i, &c) in count.iter().enumerate() {
        let expected = if i == 10 || (i % 2 == 1 && i != 255) {
            0
        } else {
            3
        };
        assert_eq!(c, expected, "socket {i}");
    }
    // The late socket's first send goes out at once.
    let first_late = sends.iter().find(|(_, i)| *i == 255).unwrap().0;
    assert_eq!(first_late, late);

    assert_eq!(
        plan.handle_socket_opened(t0(), 256),
        Err(PunchError::UnknownSocket {
            index: 256,
            requested: 256
        })
    );
    assert_eq!(
        plan.handle_socket_closed(999),
        Err(PunchError::UnknownSocket {
            index: 999,
            requested: 256
        })
    );
}

#[test]
fn hard_side_without_sockets_just_waits_out_its_deadline() {
    let mut plan = hard_opened(HardSideConfig::default(), |_| false);
    assert_eq!(plan.poll_timeout(), Some(plan.deadline()));
    assert!(plan.poll_probe(t0()).is_none());
    let end = plan.deadline();
    plan.handle_timeout(Instant::from_micros(end.as_micros() - 1));
    assert!(!plan.is_finished());
    plan.handle_timeout(end);
    assert!(plan.is_finished());
    assert_eq!(plan.poll_timeout(), None);
    // Sockets reported after the end are never used.
    plan.handle_socket_opened(end, 0).unwrap();
    assert!(plan.poll_probe(end).is_none());
}

#[test]
fn hard_side_rejects_nonsense_configs() {
    let d = HardSideConfig::default();
    let bad = |config: HardSideConfig| HardSidePlan::new(config, easy_addr(), t0()).err();
    assert_eq!(
        bad(HardSideConfig { sockets: 0, ..d }),
        Some(PunchError::InvalidConfig { field: "sockets" })
    );
    assert_eq!(
        bad(HardSideConfig {
            max_sends_per_socket: 0,
            ..d
        }),
        Some(PunchError::InvalidConfig {
            field: "max_sends_per_socket"
        })
    );
    assert_eq!(
        bad(HardSideConfig {
            refresh_interval: Duration::ZERO,
            ..d
        }),
        Some(PunchError::InvalidConfig {
            field: "refresh_interval"
        })
    );
    assert_eq!(
        bad(HardSideConfig {
            max_duration: Duration::ZERO,
            ..d
        }),
        Some(PunchError::InvalidConfig {
            field: "max_duration"
        })
    );
    // One send per socket needs no refresh interval.
    assert!(
        bad(HardSideConfig {
            refresh_interval: Duration::ZERO,
            max_sends_per_socket: 1,
            ..d
        })
        .is_none()
    );
}

// ---------------------------------------------------------------------------------------------
// Prediction

fn allocation(observed: &[u16]) -> PortAllocation {
    PortPredictor::new(observed).unwrap().allocation()
}

#[test]
fn prediction_detects_sequential_allocators() {
    assert_eq!(
        allocation(&[30_000, 30_001, 30_002, 30_003]),
        PortAllocation::Sequential { delta: 1 }
    );
    assert_eq!(
        allocation(&[30_000, 30_002, 30_004]),
        PortAllocation::Sequential { delta: 2 }
    );
    assert_eq!(
        allocation(&[1024, 1040]),
        PortAllocation::Sequential { delta: 16 }
    );
    // Wrapping from 65535 to 1024.
    let p = PortPredictor::new(&[65_533, 65_534, 65_535, 1024, 1025]).unwrap();
    assert_eq!(p.allocation(), PortAllocation::Sequential { delta: 1 });
    assert_eq!(p.anchor(), 1025);
    let p = PortPredictor::new(&[65_530, 65_532, 65_534]).unwrap();
    assert_eq!(p.allocation(), PortAllocation::Sequential { delta: 2 });
    assert_eq!(p.predicted(3).collect::<Vec<_>>(), [1024, 1026, 65_535]);
}

#[test]
fn prediction_tolerates_one_outlier() {
    // Another host grabbed ports between two of ours: the allocator jumped, and is now at 7009.
    let p = PortPredictor::new(&[7000, 7001, 7002, 7008, 7009]).unwrap();
    assert_eq!(p.allocation(), PortAllocation::Sequential { delta: 1 });
    assert_eq!(p.anchor(), 7009);
    // The same jump as the last step: the allocator moved there.
    let p = PortPredictor::new(&[7000, 7001, 7002, 7050]).unwrap();
    assert_eq!(p.allocation(), PortAllocation::Sequential { delta: 1 });
    assert_eq!(p.anchor(), 7050);
    // A last port that went backward is the odd one out: predict from the one before.
    let p = PortPredictor::new(&[7000, 7001, 7002, 5000]).unwrap();
    assert_eq!(p.allocation(), PortAllocation::Sequential { delta: 1 });
    assert_eq!(p.anchor(), 7002);
    // One odd observation in the middle.
    let p = PortPredictor::new(&[7000, 7002, 51_234, 7006, 7008]).unwrap();
    assert_eq!(p.allocation(), PortAllocation::Sequential { delta: 2 });
    assert_eq!(p.anchor(), 7008);
    // An odd first observation.
    assert_eq!(
        allocation(&[40_000, 7000, 7001, 7002]),
        PortAllocation::Sequential { delta: 1 }
    );
    // Two outliers are too many.
    assert_eq!(
        allocation(&[7000, 9000, 7002, 7003, 12_000, 7005]),
        PortAllocation::Random
    );
    // Three observations cannot outvote an outlier.
    assert_eq!(allocation(&[7000, 7001, 9000]), PortAllocation::Random);
}

#[test]
fn prediction_detects_preserving_and_random_allocators() {
    assert_eq!(
        allocation(&[41_641, 41_641, 41_641]),
        PortAllocation::Preserving
    );
    assert_eq!(allocation(&[500, 500]), PortAllocation::Preserving);
    // One mapping moved, the port came back: still preserving, anchored at the kept port.
    let p = PortPredictor::new(&[41_641, 41_641, 41_641, 50_000]).unwrap();
    assert_eq!(p.allocation(), PortAllocation::Preserving);
    assert_eq!(p.anchor(), 41_641);
    assert_eq!(
        allocation(&[41_641, 41_641, 3000, 41_641, 41_641]),
        PortAllocation::Preserving
    );

    assert_eq!(
        allocation(&[51_234, 2_317, 40_999, 17_000, 63_111]),
        PortAllocation::Random
    );
    assert_eq!(allocation(&[30_000, 30_100]), PortAllocation::Random);
    assert_eq!(allocation(&[30_000, 29_999]), PortAllocation::Random);
    // Random draws from the Rng are (overwhelmingly) classified random.
    let mut rng = Rng::from_seed(1);
    let mut random = 0;
    for _ in 0..1000 {
        let obs: Vec<u16> = (0..5)
            .map(|_| FIRST_PORT + rng.below(u64::from(PORT_SPACE)) as u16)
            .collect();
        if PortPredictor::new(&obs).unwrap().allocation() == PortAllocation::Random {
            random += 1;
        }
    }
    assert_eq!(random, 1000);
    let p = PortPredictor::new(&[51_234, 2_317, 40_999]).unwrap();
    assert_eq!(p.predicted(100).count(), 0);

    assert_eq!(
        PortPredictor::new(&[4000]).err(),
        Some(PunchError::TooFewObservations)
    );
    assert_eq!(
        PortPredictor::new(&[]).err(),
        Some(PunchError::TooFewObservations)
    );
    assert_eq!(
        PortPredictor::new(&[4000, 0, 4001]).err(),
        Some(PunchError::ZeroPort)
    );
}

#[test]
fn prediction_only_looks_at_recent_observations() {
    // An old random history followed by a sequential run as long as the window.
    let mut obs = vec![51_234, 2_317, 40_999, 17_000, 63_111];
    obs.extend((0..PortPredictor::WINDOW as u16).map(|i| 20_000 + 3 * i));
    let p = PortPredictor::new(&obs).unwrap();
    assert_eq!(p.allocation(), PortAllocation::Sequential { delta: 3 });
    assert_eq!(p.anchor(), 20_045);
}

#[test]
fn predicted_ports_follow_the_line_then_fill_around_it() {
    let p = PortPredictor::new(&[10_000, 10_002, 10_004]).unwrap();
    let got: Vec<u16> = p.predicted(10).collect();
    assert_eq!(
        got,
        [
            10_006, 10_008, 10_010, 10_012, 10_014, 10_005, 10_007, 10_009, 10_011, 10_013
        ]
    );
    let p = PortPredictor::new(&[10_000, 10_003, 10_006]).unwrap();
    let got: Vec<u16> = p.predicted(7).collect();
    assert_eq!(
        got,
        [10_009, 10_012, 10_015, 10_018, 10_007, 10_008, 10_010]
    );
    let p = PortPredictor::new(&[10_000, 10_000]).unwrap();
    let got: Vec<u16> = p.predicted(5).collect();
    assert_eq!(got, [10_000, 10_001, 9_999, 10_002, 9_998]);
    // Bounded, exact-sized and distinct even when wrapping.
    for observed in [
        &[65_000u16, 65_016, 65_032][..],
        &[65_535, 65_535],
        &[1024, 1024],
        &[80, 80],
        &[65_534, 65_535],
    ] {
        let p = PortPredictor::new(observed).unwrap();
        let it = p.predicted(u16::MAX);
        assert_eq!(it.len(), usize::from(PortPredictor::MAX_PREDICTED));
        let got: Vec<u16> = it.collect();
        assert_eq!(got.len(), usize::from(PortPredictor::MAX_PREDICTED));
        let mut sorted = got.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), got.len(), "{observed:?}");
        assert!(got.iter().all(|&port| port != 0));
    }
    assert_eq!(
        PortPredictor::new(&[1, 2])
            .unwrap()
            .predicted(3)
            .collect::<Vec<_>>(),
        [3, 4, 5]
    );
}

// ---------------------------------------------------------------------------------------------
// Monte Carlo: the two plans against a simulated hard NAT

/// One punch attempt: the hard side's NAT gives each socket's first send a fresh random public
/// port (endpoint-dependent mapping with random allocation); the easy side starts probing once
/// the hard side's first round is out. Returns how many easy probes it took to hit an open
/// mapping, if any did.
fn attempt(seed: u64, bitmap: &mut [u64; 1024]) -> Option<u32> {
    bitmap.fill(0);
    let is_open =
        |bitmap: &[u64; 1024], port: u16| (bitmap[usize::from(port / 64)] >> (port % 64)) & 1 == 1;
    let mut nat = Rng::from_seed(seed ^ 0x5eed_f00d_4a7e);
    let mut hard =
        HardSidePlan::new(HardSideConfig::default(), easy_addr(), Instant::ZERO).unwrap();
    let Some(PunchAction::BindUdp { count }) = hard.poll_action() else {
        panic!("no socket request")
    };
    for i in 0..count {
        hard.handle_socket_opened(Instant::ZERO, i).unwrap();
    }
    let mut mapped = vec![0u16; usize::from(count)];
    let easy_start = Instant::from_millis(300);
    let mut easy =
        EasySidePlan::new(EasySideConfig::default(), HARD_IP, [], seed, easy_start).unwrap();
    loop {
        let next = match (hard.poll_timeout(), easy.poll_timeout()) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        while let Some(probe) = hard.poll_probe(next) {
            let slot = &mut mapped[usize::from(probe.socket_index)];
            if *slot == 0 {
                // A fresh mapping: a random free public port.
                let port = loop {
                    let p = FIRST_PORT + nat.below(u64::from(PORT_SPACE)) as u16;
                    if !is_open(bitmap, p) {
                        break p;
                    }
                };
                bitmap[usize::from(port / 64)] |= 1 << (port % 64);
                *slot = port;
            }
        }
        while let Some(to) = easy.poll_probe(next) {
            if is_open(bitmap, to.port()) {
                return Some(easy.probes_sent());
            }
        }
        if easy.is_finished() {
            return None;
        }
    }
}

/// The exact success probability without repetition: 1 - C(S-N, k)/C(S, k).
fn hypergeometric(open: u32, probes: u32) -> f64 {
    let s = f64::from(PORT_SPACE);
    let miss: f64 = (0..probes)
        .map(|i| 1.0 - f64::from(open) / (s - f64::from(i)))
        .product();
    1.0 - miss
}

#[test]
fn monte_carlo_success_rate_matches_the_birthday_formula() {
    // Unoptimised builds run a tenth of the trials (with tolerances widened to match); the
    // release run is the real check.
    const TRIALS: u32 = if cfg!(debug_assertions) { 600 } else { 6000 };
    const N: u32 = 256;
    let mut bitmap = [0u64; 1024];
    let first_hits: Vec<Option<u32>> = (0..u64::from(TRIALS))
        .map(|seed| attempt(seed, &mut bitmap))
        .collect();
    // Deterministic by seed.
    assert_eq!(attempt(17, &mut bitmap), first_hits[17]);

    println!("N = {N} open ports, {TRIALS} seeded trials");
    println!("    k   1-(1-N/64512)^k   hypergeometric   empirical   |diff|   tolerance");
    for k in [64, 128, 174, 256, 512, 1024, 2048] {
        let formula = success_probability(N, k);
        let exact = hypergeometric(N, k);
        let hits = first_hits
            .iter()
            .filter(|h| h.is_some_and(|h| h <= k))
            .count();
        let empirical = hits as f64 / f64::from(TRIALS);
        // Four standard errors, plus the with/without-replacement gap (< 0.0004 here).
        let sigma = (formula * (1.0 - formula) / f64::from(TRIALS)).sqrt();
        let tolerance = 4.0 * sigma + (exact - formula).abs() + 0.001;
        let diff = (empirical - formula).abs();
        println!(
            "{k:>5}   {formula:>15.4}   {exact:>14.4}   {empirical:>9.4}   {diff:.4}   {tolerance:.4}"
        );
        assert!(diff <= tolerance, "k = {k}: {empirical} vs {formula}");
    }
    // Never more than max_probes.
    assert!(first_hits.iter().flatten().all(|&h| h <= 2048));
}

#[test]
fn monte_carlo_sequential_allocator_falls_to_prediction() {
    // A sequential NAT (delta 1) seen by netcheck at 30000..=30003; then the hard side's 256
    // sockets get the next 256 ports (other hosts take a few in between). The easy side, fed the
    // prediction, hits on its very first probes.
    let predictor = PortPredictor::new(&[30_000, 30_001, 30_002, 30_003]).unwrap();
    for seed in 0..50u64 {
        let mut nat = Rng::from_seed(seed);
        let skipped = 1 + nat.below(8) as u16;
        let open: Vec<u16> = (0..256).map(|i| 30_003 + skipped + i).collect();
        let mut plan = EasySidePlan::new(
            EasySideConfig::default(),
            HARD_IP,
            predictor.predicted(64),
            seed,
            t0(),
        )
        .unwrap();
        let mut probes = 0;
        let mut now = t0();
        loop {
            let to = plan.poll_probe(now).unwrap();
            probes += 1;
            if open.contains(&to.port()) {
                break;
            }
            now = plan.poll_timeout().unwrap();
        }
        assert_eq!(probes, u32::from(skipped));
    }
}
