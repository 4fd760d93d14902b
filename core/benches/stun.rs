//! STUN codec benchmark: holepunch-core against peer crates on the RFC 5769 test vectors.
//!
//! Workloads (password "VOkJxbRl1RmTxUk/WvJxBt"):
//! - `decode_request`: parse + verify MESSAGE-INTEGRITY + FINGERPRINT of the §2.1 request;
//! - `encode_request`: Binding request with USERNAME, PRIORITY, ICE-CONTROLLING,
//!   MESSAGE-INTEGRITY and FINGERPRINT into a caller buffer;
//! - `decode_response_v4` / `decode_response_v6`: parse + verify both + XOR-MAPPED-ADDRESS of the
//!   §2.2 / §2.3 responses.
//!
//! Run: `cargo bench -p holepunch-core --bench stun`. Criterion groups run first (filterable as
//! usual); then, unless in test/list mode, a table measured in the same process with calibrated
//! loops (best of 25 rounds, interleaved across implementations), giving ns/op, heap allocations
//! per op, and time relative to ours. Set `STUN_BENCH_TABLE_ONLY=1` to skip criterion and print
//! only the table.
//!
//! Peers, the "floor" and the fairness notes live in `stun/peers.rs`; our side in `stun/ours.rs`.
//! Every implementation is asserted to verify the vectors (and reject tampering) before timing.

// `unsafe_code` is denied workspace-wide; the one exception is the counting global allocator
// below, which must `unsafe impl GlobalAlloc` and only forwards to `System`.
#![allow(unsafe_code)]

#[path = "stun/ours.rs"]
mod ours;
#[path = "stun/peers.rs"]
mod peers;

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::Criterion;
use peers::Codec;

/// Counts heap operations (alloc, alloc_zeroed, realloc) so the table can report them per op.
struct CountingAlloc;

static HEAP_OPS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the counter
// is a relaxed atomic with no effect on the allocation itself.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HEAP_OPS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        HEAP_OPS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HEAP_OPS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

#[derive(Clone, Copy)]
enum Workload {
    DecodeRequest,
    EncodeRequest,
    DecodeResponseV4,
    DecodeResponseV6,
}

impl Workload {
    const ALL: [Workload; 4] = [
        Workload::DecodeRequest,
        Workload::EncodeRequest,
        Workload::DecodeResponseV4,
        Workload::DecodeResponseV6,
    ];

    fn name(self) -> &'static str {
        match self {
            Workload::DecodeRequest => "decode_request",
            Workload::EncodeRequest => "encode_request",
            Workload::DecodeResponseV4 => "decode_response_v4",
            Workload::DecodeResponseV6 => "decode_response_v6",
        }
    }

    /// One operation of this workload; inputs and outputs go through `black_box`.
    #[inline(always)]
    fn run(self, codec: &mut dyn Codec, out: &mut [u8; 256]) {
        match self {
            Workload::DecodeRequest => {
                black_box(codec.decode_request(black_box(&peers::REQUEST)));
            }
            Workload::EncodeRequest => {
                black_box(codec.encode_request(black_box(&mut out[..])));
                black_box(&out);
            }
            Workload::DecodeResponseV4 => {
                black_box(codec.decode_response(black_box(&peers::RESPONSE_V4)));
            }
            Workload::DecodeResponseV6 => {
                black_box(codec.decode_response(black_box(&peers::RESPONSE_V6)));
            }
        }
    }
}

fn codecs() -> Vec<Box<dyn Codec>> {
    let mut all: Vec<Box<dyn Codec>> = vec![Box::new(ours::Ours::new())];
    all.extend(peers::all());
    all
}

fn run_criterion(codecs: &mut [Box<dyn Codec>]) {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    for w in Workload::ALL {
        let mut group = c.benchmark_group(format!("stun/{}", w.name()));
        for codec in codecs.iter_mut() {
            let codec: &mut dyn Codec = &mut **codec;
            let mut out = [0u8; 256];
            group.bench_function(codec.name(), |b| b.iter(|| w.run(codec, &mut out)));
        }
        group.finish();
    }
    c.final_summary();
}

/// Timed rounds per (workload, implementation) in the table; each keeps its fastest round.
const ROUNDS: usize = 25;
/// Target length of one timed round.
const ROUND: Duration = Duration::from_millis(3);

/// Iterations of `w` on `codec` that take about [`ROUND`].
// The sans-IO clock ban (clippy.toml) is for the library; a benchmark harness must read a clock.
#[allow(clippy::disallowed_methods)]
fn calibrate(w: Workload, codec: &mut dyn Codec) -> u64 {
    let mut out = [0u8; 256];
    let mut iters: u64 = 16;
    loop {
        let t = Instant::now();
        for _ in 0..iters {
            w.run(codec, &mut out);
        }
        let el = t.elapsed();
        if el >= ROUND / 2 {
            let per = el.as_secs_f64() / iters as f64;
            return ((ROUND.as_secs_f64() / per) as u64).max(1);
        }
        iters *= 2;
    }
}

/// ns per op of one round of `iters` iterations.
#[allow(clippy::disallowed_methods)] // see `calibrate`
fn round_ns(w: Workload, codec: &mut dyn Codec, iters: u64) -> f64 {
    let mut out = [0u8; 256];
    let t = Instant::now();
    for _ in 0..iters {
        w.run(codec, &mut out);
    }
    t.elapsed().as_secs_f64() * 1e9 / iters as f64
}

/// Best-of-[`ROUNDS`] ns/op for every codec on `w`, rounds interleaved across codecs so that a
/// burst of load from elsewhere on the machine hits them alike rather than one row.
fn times_per_op(w: Workload, codecs: &mut [Box<dyn Codec>]) -> Vec<f64> {
    let iters: Vec<u64> = codecs.iter_mut().map(|c| calibrate(w, &mut **c)).collect();
    let mut best = vec![f64::INFINITY; codecs.len()];
    for _ in 0..ROUNDS {
        for (i, c) in codecs.iter_mut().enumerate() {
            best[i] = best[i].min(round_ns(w, &mut **c, iters[i]));
        }
    }
    best
}

/// Heap operations per op, averaged over 1000 ops after a warm-up (so reused scratch has grown).
fn heap_ops_per_op(w: Workload, codec: &mut dyn Codec) -> f64 {
    const N: u64 = 1000;
    let mut out = [0u8; 256];
    for _ in 0..10 {
        w.run(codec, &mut out);
    }
    let before = HEAP_OPS.load(Ordering::Relaxed);
    for _ in 0..N {
        w.run(codec, &mut out);
    }
    (HEAP_OPS.load(Ordering::Relaxed) - before) as f64 / N as f64
}

fn print_table(codecs: &mut [Box<dyn Codec>]) {
    println!();
    println!(
        "ratio table (same process; best of {ROUNDS} interleaved ~{}ms rounds; ratio = row / ours)",
        ROUND.as_millis()
    );
    println!(
        "{:<20} {:<36} {:>10} {:>10} {:>14}",
        "workload", "impl", "ns/op", "allocs/op", "ratio_vs_ours"
    );
    for w in Workload::ALL {
        let times = times_per_op(w, codecs);
        let rows: Vec<(&'static str, f64, f64)> = codecs
            .iter_mut()
            .zip(times)
            .map(|(c, ns)| {
                let c: &mut dyn Codec = &mut **c;
                (c.name(), ns, heap_ops_per_op(w, c))
            })
            .collect();
        let ours = rows
            .iter()
            .find(|r| r.0 == ours::NAME)
            .map_or(f64::NAN, |r| r.1);
        for (name, ns, allocs) in rows {
            println!(
                "{:<20} {:<36} {:>10.1} {:>10.2} {:>13.2}x",
                w.name(),
                name,
                ns,
                allocs,
                ns / ours
            );
        }
    }
    println!("* is: FINGERPRINT verified by the bench with crc32fast (the crate has no check).");
}

fn main() {
    let mut codecs = codecs();
    for c in codecs.iter_mut() {
        peers::sanity_check(&mut **c);
    }
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    // Like criterion: without `--bench` (e.g. `cargo test --benches`) it is test mode.
    let bench_mode = has("--bench") && !has("--test") && !has("--list");
    let table_only = std::env::var_os("STUN_BENCH_TABLE_ONLY").is_some();
    if !table_only {
        run_criterion(&mut codecs);
    }
    if bench_mode || table_only {
        print_table(&mut codecs);
    } else {
        println!(
            "stun bench: sanity checks passed for {} codecs",
            codecs.len()
        );
    }
}
