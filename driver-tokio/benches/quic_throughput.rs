//! QUIC throughput on loopback, in one run: holepunch's QUIC over an ICE connection
//! ([`holepunch_tokio::quic`]) against plain quinn over a plain UDP socket (the baseline), with
//! the same keys, TLS configuration and transport settings. Prints MB/s, CPU seconds per GB
//! (this process's user + system time, both ends included) and the ratios.
//!
//! `cargo bench -p holepunch-tokio --bench quic_throughput` (`HOLEPUNCH_BENCH_MIB` sets the
//! size, 256 MiB by default; best of `HOLEPUNCH_BENCH_RUNS`, 3 by default).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use holepunch_tokio::ice::{Endpoint, EndpointConfig};
use holepunch_tokio::quic::{self, endpoint_config};
use holepunch_tokio::quic_identity::{Identity, SERVER_NAME};
use holepunch_tokio::signalling::ChannelSignalling;

/// User + system CPU time of this process so far (from /proc; clock ticks of 10 ms).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which ends with ')'): utime is the 12th, stime the 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// Sends `bytes` over one stream from `client` to `server` and waits until all was read.
async fn transfer(client: quinn::Connection, server: quinn::Connection, bytes: usize) {
    let chunk = vec![0x5au8; 1 << 20];
    let writer = async {
        let mut send = client.open_uni().await.expect("open");
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len());
            send.write_all(&chunk[..n]).await.expect("write");
            left -= n;
        }
        send.finish().expect("finish");
        let _ = send.stopped().await;
    };
    let reader = async {
        let mut recv = server.accept_uni().await.expect("accept");
        let mut got = 0usize;
        while let Some(c) = recv.read_chunk(usize::MAX, false).await.expect("read") {
            got += c.bytes.len();
        }
        assert_eq!(got, bytes);
    };
    tokio::join!(writer, reader);
}

/// (wall time, CPU time) of one transfer over ICE.
async fn over_ice(bytes: usize) -> (Duration, Duration) {
    let local: [SocketAddr; 1] = ["127.0.0.1:0".parse().expect("addr")];
    let mut config = EndpointConfig::aggressive();
    config.recv_queue = std::env::var("HOLEPUNCH_BENCH_QUEUE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8192);
    let a = Endpoint::bind(&local, config.clone()).await.expect("bind");
    let b = Endpoint::bind(&local, config).await.expect("bind");
    let (sa, sb) = ChannelSignalling::pair();
    let (a, b) = tokio::join!(a.connect(sa, true), b.connect(sb, false));
    let (a, b) = (Arc::new(a.expect("ice a")), Arc::new(b.expect("ice b")));
    let (ia, ib) = (
        Identity::generate().expect("id"),
        Identity::generate().expect("id"),
    );
    let (ra, rb) = tokio::join!(
        quic::connect(a, true, &ia, ib.fingerprint()),
        quic::connect(b, false, &ib, ia.fingerprint())
    );
    let ((_ea, ca), (_eb, cb)) = (ra.expect("client"), rb.expect("server"));
    let (wall, cpu) = (Instant::now(), cpu_time());
    transfer(ca, cb, bytes).await;
    (wall.elapsed(), cpu_time() - cpu)
}

/// (wall time, CPU time) of one transfer with plain quinn on plain UDP sockets.
async fn plain(bytes: usize) -> (Duration, Duration) {
    let (ia, ib) = (
        Identity::generate().expect("id"),
        Identity::generate().expect("id"),
    );
    let runtime = Arc::new(quinn::TokioRuntime);
    let sock = || std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let server = quinn::Endpoint::new(
        endpoint_config(),
        Some(ib.server_config(ia.fingerprint()).expect("server config")),
        sock(),
        runtime.clone(),
    )
    .expect("server endpoint");
    let client = quinn::Endpoint::new(endpoint_config(), None, sock(), runtime).expect("client");
    let to = server.local_addr().expect("addr");
    let config = ia.client_config(ib.fingerprint()).expect("client config");
    let connecting = client
        .connect_with(config, to, SERVER_NAME)
        .expect("connect");
    let accept = async {
        server
            .accept()
            .await
            .expect("incoming")
            .await
            .expect("accept")
    };
    let (ca, cb) = tokio::join!(connecting, accept);
    let (wall, cpu) = (Instant::now(), cpu_time());
    transfer(ca.expect("client"), cb, bytes).await;
    (wall.elapsed(), cpu_time() - cpu)
}

fn main() {
    let mib: usize = std::env::var("HOLEPUNCH_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let runs: usize = std::env::var("HOLEPUNCH_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let bytes = mib << 20;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let best = |f: &dyn Fn() -> (Duration, Duration)| {
        (0..runs)
            .map(|_| f())
            .min_by_key(|(w, _)| *w)
            .expect("runs")
    };
    let base = best(&|| rt.block_on(plain(bytes)));
    let ice = best(&|| rt.block_on(over_ice(bytes)));
    let mbps = |(w, _): (Duration, Duration)| bytes as f64 / w.as_secs_f64() / 1e6;
    let cpu_gb = |(_, c): (Duration, Duration)| c.as_secs_f64() / (bytes as f64 / 1e9);
    println!("QUIC, one stream, {mib} MiB on loopback, best of {runs} (one thread, both ends):");
    println!(
        "  plain quinn on a UDP socket: {:8.1} MB/s  {:6.2} CPU s/GB",
        mbps(base),
        cpu_gb(base)
    );
    println!(
        "  holepunch QUIC over ICE:     {:8.1} MB/s  {:6.2} CPU s/GB",
        mbps(ice),
        cpu_gb(ice)
    );
    println!(
        "  ratio (over ICE / plain):    {:8.2}x MB/s {:6.2}x CPU/GB",
        mbps(ice) / mbps(base),
        cpu_gb(ice) / cpu_gb(base)
    );
}
