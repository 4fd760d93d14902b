//! `--keepalive`: keepalives sized to this host's NAT (issue 14).
//!
//! `auto` (the default): once connected, the mapping-lifetime search of `holepunch netcheck
//! --lifetime` runs in the background against the first IPv4 `--stun` server (it needs RFC
//! 5780, up to ~2 minutes, on sockets of its own) and the agent proposes keepalives just under
//! the lifetime it found; `off`: RFC 7675's 5 s consent cadence throughout; `SECS`: propose that
//! interval from the start. A proposal only takes effect when the peer (a holepunch agent)
//! proposes one too; both then check at the shorter, reported as a `keepalive` event.

use std::sync::Arc;
use std::time::Duration;

use holepunch_std::netcheck::{lifetime_on, local_ip_towards};
use holepunch_tokio::ice::{Connection, EndpointConfig};

use super::Common;

/// What `--keepalive` asked for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Keepalive {
    /// Measure the NAT's mapping lifetime after connecting and size keepalives to it.
    Auto,
    /// RFC 7675's cadence; propose nothing.
    Off,
    /// Propose this interval from the start.
    Every(Duration),
}

/// `--keepalive`: `auto`, `off`, or whole seconds (at least 10, the agent's floor).
pub fn parse_keepalive(s: &str) -> Result<Keepalive, String> {
    match s {
        "auto" => Ok(Keepalive::Auto),
        "off" => Ok(Keepalive::Off),
        _ => match s.parse::<u64>() {
            Ok(secs) if (10..=3600).contains(&secs) => {
                Ok(Keepalive::Every(Duration::from_secs(secs)))
            }
            _ => Err(format!(
                "want auto, off, or whole seconds from 10 to 3600: {s}"
            )),
        },
    }
}

/// Puts a fixed proposal into the agent's configuration.
pub fn configure(config: &mut EndpointConfig, keepalive: Keepalive) {
    if let Keepalive::Every(interval) = keepalive {
        config.agent.keepalive_interval = Some(interval);
    }
}

/// Once connected: with `auto`, measures the mapping lifetime in the background and hands it to
/// the agent. A lifetime that cannot be measured (no IPv4 `--stun` server, no RFC 5780) is a
/// warning; keepalives then stay at RFC 7675's cadence.
pub fn after_connecting(conn: &Arc<Connection>, common: &Common<'_>) {
    if common.args.link.keepalive != Keepalive::Auto {
        return;
    }
    let report = common.report;
    let Some(server) = common.stun.iter().copied().find(|s| s.is_ipv4()) else {
        return;
    };
    let seed = common.seed;
    let conn = Arc::downgrade(conn);
    // A plain thread, not `spawn_blocking`: a runtime waits for those when it shuts down, and
    // the search (up to ~2 minutes) must not hold up the exit of a session that ended.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let measured = local_ip_towards(server).and_then(|ip| lifetime_on(ip, server, seed));
        let _ = tx.send(measured);
    });
    tokio::spawn(async move {
        let lifetime = match rx.await {
            Ok(Ok(r)) if r.measurable => r.survived,
            _ => None,
        };
        let Some(lifetime) = lifetime else {
            report.warning(&format!(
                "keepalive: could not measure the NAT's mapping lifetime with {server} (it \
                 needs RFC 5780); consent checks stay at RFC 7675's 5 s"
            ));
            return;
        };
        if let Some(conn) = conn.upgrade() {
            let _ = conn.set_mapping_lifetime(lifetime).await;
        }
    });
}
