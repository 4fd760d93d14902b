//! The `--json` events of cli.md: one typed struct per event, serialized with serde_json.
//!
//! Every line is one JSON object whose first field is `"event"` (the struct's [`Event::NAME`]),
//! followed by the struct's fields in declaration order. A field the contract lists is a plain
//! field (so the compiler insists on it); `Option` fields the contract shows as `null` are
//! written as `null`, optional extras are left out when absent.

use serde::{Deserialize, Serialize};

/// One kind of `--json` line.
pub trait Event: Serialize + Sized {
    /// The value of its `"event"` field.
    const NAME: &'static str;

    /// The line, without a newline.
    fn line(&self) -> String {
        #[derive(Serialize)]
        struct Tagged<'a, T: Serialize> {
            event: &'static str,
            #[serde(flatten)]
            body: &'a T,
        }
        let tagged = Tagged {
            event: Self::NAME,
            body: self,
        };
        // Serializing plain structs of strings, numbers and options into a String cannot fail;
        // should it ever, say so on the line rather than panic.
        serde_json::to_string(&tagged).unwrap_or_else(|e| {
            format!(
                "{{\"event\":\"failed\",\"reason\":{}}}",
                serde_json::Value::from(format!("cannot encode {}: {e}", Self::NAME))
            )
        })
    }

    /// Prints the line on stdout.
    fn print(&self) {
        println!("{}", self.line());
    }

    /// Prints the line on stderr (connect: stdout carries the peer's data).
    fn eprint(&self) {
        eprintln!("{}", self.line());
    }
}

macro_rules! events {
    ($($ty:ident = $name:literal),* $(,)?) => {
        $(impl Event for $ty { const NAME: &'static str = $name; })*
        /// Every event's name, for the schema test.
        #[cfg(test)]
        const ALL_NAMES: &[&str] = &[$($name),*];
    };
}

events! {
    Mapped = "mapped",
    Failed = "failed",
    NetcheckReport = "report",
    Gathered = "gathered",
    CandidateFound = "candidate",
    Waiting = "waiting",
    Checking = "checking",
    Connected = "connected",
    PathChanged = "path_changed",
    ConsentLost = "consent_lost",
    Punching = "punching",
    Restart = "restart",
    Keepalive = "keepalive",
    SignallingClosed = "signalling_closed",
    Warning = "warning",
    Nat64 = "nat64",
    Closed = "closed",
    Pair = "pair",
    Summary = "summary",
    PopulationProfile = "profile",
    PopulationRelay = "relay",
    PopulationSummary = "summary",
    PortMapped = "mapped",
    PortRenewed = "renewed",
    ExternalChanged = "external_changed",
    GatewayRestarted = "gateway_restarted",
    MappingDeleted = "deleted",
    KeyCreated = "key_created",
    PeerKey = "peer_key",
    StreamClosed = "stream_closed",
    FileSent = "sent",
    FileReceived = "received",
}

/// `stun`: the mapped address of one Binding transaction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mapped {
    /// The server-reflexive address, `IP:PORT`.
    pub address: String,
    /// Round-trip time, whole milliseconds.
    pub rtt_ms: u64,
    /// Round-trip time, microseconds.
    pub rtt_us: u64,
    /// The local socket.
    pub local: String,
    /// The server asked.
    pub server: String,
    /// Where the answer came from.
    pub from: String,
    /// RFC 5780 OTHER-ADDRESS, if the server gave one.
    pub other_address: Option<String>,
    /// RFC 5780 RESPONSE-ORIGIN, if the server gave one.
    pub response_origin: Option<String>,
}

/// Any command: the job failed (exit 1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Failed {
    /// Why, for people.
    pub reason: String,
    /// The server concerned (`stun`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
}

impl Failed {
    /// A failure with its reason only.
    pub fn new(reason: impl Into<String>) -> Failed {
        Failed {
            reason: reason.into(),
            server: None,
        }
    }
}

/// Which port-mapping protocols answered; `null` each while they are not probed.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Portmap {
    /// UPnP IGD.
    pub upnp: Option<bool>,
    /// NAT-PMP.
    pub natpmp: Option<bool>,
    /// PCP.
    pub pcp: Option<bool>,
}

/// One server's round-trip time in a netcheck report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerRtt {
    /// The server, `IP:PORT`.
    pub server: String,
    /// Its Test I round-trip time, or `null` when it did not answer.
    pub rtt_ms: Option<u64>,
}

/// A CLAT in a netcheck report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClatInfo {
    /// Its interface.
    pub interface: String,
    /// Its IPv4 address.
    pub address: String,
}

/// `netcheck`: the report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetcheckReport {
    /// Whether any STUN server answered.
    pub udp: bool,
    /// The public IPv4 address, or `null`.
    pub public_v4: Option<String>,
    /// The public IPv6 address, or `null`.
    pub public_v6: Option<String>,
    /// Mapping behaviour (RFC 4787 names).
    pub mapping: String,
    /// Filtering behaviour.
    pub filtering: String,
    /// Hairpinning, or `null` when not tested.
    pub hairpinning: Option<bool>,
    /// Port-mapping services (`null`: not probed).
    pub portmap: Portmap,
    /// The NAT64 prefix, or `null` (not probed yet).
    pub nat64_prefix: Option<String>,
    /// The host's 464XLAT CLAT (RFC 6877), when its IPv4 default route goes through one:
    /// `{"interface":NAME,"address":IPV4}`, else `null`.
    pub clat: Option<ClatInfo>,
    /// Every server probed and its round-trip time.
    pub servers: Vec<ServerRtt>,
    /// The local sockets used.
    pub locals: Vec<String>,
    /// External ports of the distinct mappings seen.
    pub observed_ports: Vec<u16>,
    /// How long the run took.
    pub elapsed_ms: u64,
    /// `--lifetime`: the longest idle time (s) a UDP mapping survived; `null` when not run or
    /// not measurable.
    pub mapping_lifetime_s: Option<u64>,
    /// `--lifetime`: the shortest idle time (s) a mapping did not survive; `null` when every
    /// one tried survived, or not run.
    pub mapping_lifetime_expired_s: Option<u64>,
}

/// `connect`: the host candidates, known as soon as the sockets are bound.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gathered {
    /// How many candidates (host ones; later ones come as `candidate` events).
    pub candidates: u64,
    /// Since the start.
    pub elapsed_ms: u64,
}

/// `connect`: a candidate learnt after `gathered` (server-reflexive, …).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CandidateFound {
    /// Its type: `srflx`, `prflx`, `relay` or `host`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its address.
    pub address: String,
    /// Since the start.
    pub elapsed_ms: u64,
}

/// `connect`: still no line from the peer at the signal server (repeated about every 5 s).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Waiting {
    /// The peer's name (or the remote file).
    pub peer: String,
    /// Since the start.
    pub elapsed_ms: u64,
}

/// `connect`: connectivity checks started.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checking {
    /// Since the start.
    pub elapsed_ms: u64,
}

/// A selected path (the fields of `connected` and `path_changed`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Path {
    /// `direct` or `relay`.
    pub path: String,
    /// Our address on it.
    pub local: String,
    /// The peer's address on it.
    pub remote: String,
    /// Its round-trip time.
    pub rtt_ms: u64,
    /// Since the start.
    pub elapsed_ms: u64,
    /// Our candidate's type.
    pub local_type: String,
    /// The peer's candidate's type.
    pub remote_type: String,
    /// The fingerprint of the peer's key from its offer (stream mode), or `null`
    /// (`--datagram`, or a peer that sent none).
    pub peer_key: Option<String>,
}

/// `connect`: the first path.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Connected(pub Path);

/// `connect`: a later path (upgrade, failover).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PathChanged(pub Path);

/// `connect`: the path stopped answering consent checks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConsentLost {
    /// Our address on it.
    pub local: String,
    /// The peer's address on it.
    pub remote: String,
    /// Since the start.
    #[serde(default)]
    pub elapsed_ms: u64,
}

/// `connect`: hard-NAT punching started without knowing which side is hard (one STUN server
/// without RFC 5780 on each side) because checks had not connected.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Punching {
    /// Always `true` today: decided punching is not reported.
    pub blind: bool,
    /// Whether this side plays the hard half (many sockets towards the peer).
    pub hard: bool,
    /// Whether this side plays the easy half (probes over the peer's ports).
    pub easy: bool,
    /// Since the start.
    pub elapsed_ms: u64,
}

/// `connect`: ICE restarted (RFC 8445 §9).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Restart {
    /// `signal` (SIGUSR1), `peer` (the peer restarted) or `consent_lost`.
    pub reason: String,
    /// Since the start.
    pub elapsed_ms: u64,
}

/// `connect`: the interval the path's keepalives (consent checks) run at changed: both sides
/// proposed one (`--keepalive`) and this is the shorter, or a proposal was withdrawn and this
/// is RFC 7675's 5 s again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Keepalive {
    /// The interval, whole seconds.
    pub interval_s: u64,
    /// Since the start.
    pub elapsed_ms: u64,
}

/// `connect`: the signalling channel closed after the path was found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SignallingClosed {
    /// Why, or `null` for an orderly close.
    pub reason: Option<String>,
}

/// `connect` on a host without IPv4 of its own: the NAT64 prefix its resolver synthesises
/// with (RFC 7050), through which IPv4 peers and servers are reached.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Nat64 {
    /// The prefix, as `2001:db8:64::/96`.
    pub prefix: String,
    /// The resolver that revealed it.
    pub resolver: String,
}

/// Something the user should know that does not stop the job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Warning {
    /// What, for people.
    pub reason: String,
}

/// `connect`: the session ended; what went each way.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Closed {
    /// Datagrams we sent.
    pub sent_datagrams: u64,
    /// Bytes we sent.
    pub sent_bytes: u64,
    /// Datagrams we received.
    pub received_datagrams: u64,
    /// Bytes we received.
    pub received_bytes: u64,
    /// Datagrams the peer said it sent (its EOF report), or `null` when it did not say.
    pub peer_sent_datagrams: Option<u64>,
    /// Bytes the peer said it sent, or `null`.
    pub peer_sent_bytes: Option<u64>,
    /// `peer_sent_datagrams - received_datagrams` (never negative), or `null`.
    pub lost_datagrams: Option<u64>,
    /// Lost share in percent (one decimal), or `null`.
    pub lost_percent: Option<f64>,
    /// Since the start.
    pub elapsed_ms: u64,
    /// Why the session ended.
    pub reason: String,
}

/// `keygen`, and stream-mode commands that made the default key: a key was written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyCreated {
    /// Where the key (PKCS#8 PEM) was written.
    pub path: String,
    /// Its fingerprint, `sha256:` and 64 hex digits.
    pub fingerprint: String,
}

/// Stream mode: the peer's key from its offer, and how it is trusted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerKey {
    /// `sha256:` and 64 hex digits.
    pub fingerprint: String,
    /// `pinned` (matches --peer-key), `stored` (first use, now in `known_peers`), `known`
    /// (matches `known_peers`) or `unverified` (neither pinned nor remembered).
    pub trust: String,
}

/// Stream mode: the QUIC session ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamClosed {
    /// Bytes we sent on the stream (acknowledged by the peer).
    pub sent_bytes: u64,
    /// Bytes we received from it.
    pub received_bytes: u64,
    /// Since the start.
    pub elapsed_ms: u64,
    /// Why it ended.
    pub reason: String,
}

/// `send`: the file went through and the receiver's SHA-256 check passed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileSent {
    /// The name sent (the file's last path component).
    pub name: String,
    /// Its size.
    pub bytes: u64,
    /// Its SHA-256, hex.
    pub sha256: String,
    /// From the first byte sent to the receiver's confirmation.
    pub transfer_ms: u64,
}

/// `receive`: a file arrived and its SHA-256 matches the sender's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileReceived {
    /// The name the sender gave.
    pub name: String,
    /// Where it was written.
    pub path: String,
    /// Its size.
    pub bytes: u64,
    /// Its SHA-256, hex.
    pub sha256: String,
    /// From the header to the last byte.
    pub transfer_ms: u64,
}

/// `demo`: one NAT pair.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pair {
    /// A's profile.
    pub a: String,
    /// B's profile.
    pub b: String,
    /// `direct`, `relay` or `none`.
    pub path: String,
    /// Median virtual time to connected; left out with `path: none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_ms: Option<u64>,
    /// The path the pair should get.
    pub expected: String,
    /// Runs (seeds).
    pub runs: u64,
    /// Runs that got the expected path.
    pub as_expected: u64,
    /// 95th percentile time, with `--seeds` > 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p95: Option<String>,
}

/// `demo`: the totals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Pairs run.
    pub pairs: u64,
    /// Pairs with a direct path.
    pub direct: u64,
    /// Pairs relayed.
    pub relay: u64,
    /// Pairs without a path.
    pub none: u64,
    /// Whether every pair got the path it should.
    pub ok: bool,
    /// The first seed.
    pub seed: u64,
    /// Seeds per pair.
    pub seeds: u64,
    /// Always true: virtual time on the simulated internet.
    pub simulated: bool,
}

/// `demo --population`: the connections that involve one NAT profile (on either side).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PopulationProfile {
    /// The profile, cli.md's name.
    pub profile: String,
    /// Peers drawn with it.
    pub peers: u64,
    /// Connections with a peer in it on either side.
    pub connections: u64,
    /// Of those, direct.
    pub direct: u64,
    /// Of those, relayed.
    pub relay: u64,
    /// Of those, without a path.
    pub failed: u64,
}

/// `demo --population`: the load on one relay (all connections live at once).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PopulationRelay {
    /// Its index (0..R).
    pub relay: u64,
    /// Its address on the simulated internet.
    pub address: String,
    /// Allocations made on it (each peer near it allocates once per connection).
    pub allocations: u64,
    /// Relayed connections whose datagrams crossed it.
    pub relayed_connections: u64,
    /// Datagrams it relayed in the simulation (STUN, ICE and keepalives: no application data).
    pub relayed_packets: u64,
    /// Their bytes.
    pub relayed_bytes: u64,
    /// `relayed_packets` per second of the run window.
    pub packets_per_s: f64,
    /// Packets per second with the assumed application rate on every relayed connection.
    pub packets_per_s_with_app: f64,
}

/// `demo --population`: the totals. The three shares sum to 1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PopulationSummary {
    /// Peers (N).
    pub peers: u64,
    /// Connections run (N × K).
    pub connections: u64,
    /// Share of connections that ended direct.
    pub direct_share: f64,
    /// Share that ended relayed.
    pub relay_share: f64,
    /// Share without a path.
    pub failed_share: f64,
    /// Connections direct, relayed, failed.
    pub direct: u64,
    /// Relayed connections.
    pub relay: u64,
    /// Connections without a path.
    pub failed: u64,
    /// Connections whose path is not the one the NAT-pair matrix predicts for their peers.
    pub unexpected: u64,
    /// Time to connected (virtual), median; `null` when nothing connected.
    pub p50_ms: Option<u64>,
    /// 95th percentile.
    pub p95_ms: Option<u64>,
    /// 99th percentile.
    pub p99_ms: Option<u64>,
    /// Bytes of every datagram the simulation delivered (STUN, ICE, TURN, punching).
    pub total_bytes: u64,
    /// Bytes relayed (the datagrams crossing relayed sockets).
    pub relay_bytes: u64,
    /// `relay_bytes / total_bytes`.
    pub relay_bytes_share: f64,
    /// Relays (R).
    pub relays: u64,
    /// Most allocations on one relay.
    pub relay_allocations_max: u64,
    /// Mean allocations per relay.
    pub relay_allocations_mean: f64,
    /// Highest relayed packets/s of one relay (simulated traffic only).
    pub relay_pps_max: f64,
    /// Mean relayed packets/s per relay (simulated traffic only).
    pub relay_pps_mean: f64,
    /// Assumed application packets/s each way on a relayed connection.
    pub app_pps: u64,
    /// Packets/s one relay is taken to sustain (see `relay_capacity_basis`).
    pub relay_capacity_pps: u64,
    /// Where that capacity comes from.
    pub relay_capacity_basis: String,
    /// Relays needed for all relayed connections at once:
    /// ceil((relay × 2 × app_pps + simulated packets/s) / relay_capacity_pps).
    pub relays_needed: u64,
    /// Whether the agents punched hard NATs (off with `--no-punching`).
    pub punching: bool,
    /// Whether the agents could detect a hard NAT (off with `--plain-stun`).
    pub mapping_detection: bool,
    /// The population seed.
    pub seed: u64,
    /// Always true: virtual time on the simulated internet.
    pub simulated: bool,
}

/// `portmap`: the gateway mapped the port.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PortMapped {
    /// `upnp`, `natpmp` or `pcp`.
    pub protocol: String,
    /// The mapped external address, `IP:PORT`.
    pub external: String,
    /// The lifetime the gateway granted, seconds.
    pub lifetime_s: u64,
}

/// `portmap`: the mapping was renewed (same fields as `mapped`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PortRenewed(pub PortMapped);

/// `portmap`: the gateway's external address changed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExternalChanged {
    /// The new external address, `IP:PORT`.
    pub external: String,
}

/// `portmap`: the gateway restarted (its epoch went back); the mapping is being made again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GatewayRestarted {}

/// `portmap`: the mapping was deleted on the way out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MappingDeleted {}

/// Whole milliseconds, rounded to nearest, for `*_ms` fields.
pub fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(crate::whole_ms(d)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::DeserializeOwned;
    use serde_json::Value;

    /// Serializes `e`, checks `event` comes first with the right name and that every field of
    /// `required` (cli.md's list) is there, and reads the line back into the same struct.
    fn check<E: Event + DeserializeOwned + PartialEq + std::fmt::Debug>(
        e: &E,
        required: &[&str],
        seen: &mut Vec<&'static str>,
    ) {
        let line = e.line();
        let prefix = format!("{{\"event\":\"{}\"", E::NAME);
        assert!(line.starts_with(&prefix), "{line}");
        assert!(!line.contains('\n'), "{line}");
        let value: Value = serde_json::from_str(&line).expect("valid JSON");
        for field in required {
            assert!(
                value.get(field).is_some(),
                "{} lacks {field}: {line}",
                E::NAME
            );
        }
        let mut body = value;
        if let Value::Object(map) = &mut body {
            map.remove("event");
        }
        let back: E = serde_json::from_value(body).expect("reads back");
        assert_eq!(&back, e);
        seen.push(E::NAME);
    }

    fn path() -> Path {
        Path {
            path: "direct".into(),
            local: "127.0.0.1:1".into(),
            remote: "127.0.0.1:2".into(),
            rtt_ms: 1,
            elapsed_ms: 5,
            local_type: "host".into(),
            remote_type: "srflx".into(),
            peer_key: None,
        }
    }

    #[test]
    fn every_event_carries_the_fields_cli_md_requires() {
        let mut seen = Vec::new();
        let s = &mut seen;
        let mapped = Mapped {
            address: "192.0.2.1:5".into(),
            rtt_ms: 3,
            rtt_us: 2_900,
            local: "0.0.0.0:4".into(),
            server: "192.0.2.9:3478".into(),
            from: "192.0.2.9:3478".into(),
            other_address: None,
            response_origin: Some("192.0.2.9:3478".into()),
        };
        check(&mapped, &["address", "rtt_ms", "other_address"], s);
        check(&Failed::new("no \"path\"\n"), &["reason"], s);
        let report = NetcheckReport {
            udp: true,
            public_v4: Some("192.0.2.1:5".into()),
            public_v6: None,
            mapping: "endpoint-independent".into(),
            filtering: "unknown".into(),
            hairpinning: None,
            portmap: Portmap {
                upnp: None,
                natpmp: None,
                pcp: None,
            },
            nat64_prefix: None,
            clat: None,
            servers: vec![ServerRtt {
                server: "192.0.2.9:3478".into(),
                rtt_ms: None,
            }],
            locals: vec!["0.0.0.0:1".into()],
            observed_ports: vec![5],
            elapsed_ms: 9,
            mapping_lifetime_s: Some(25),
            mapping_lifetime_expired_s: None,
        };
        let netcheck_fields = [
            "udp",
            "public_v4",
            "public_v6",
            "mapping",
            "filtering",
            "hairpinning",
            "portmap",
            "nat64_prefix",
            "clat",
            "mapping_lifetime_s",
        ];
        check(&report, &netcheck_fields, s);
        let line: Value = serde_json::from_str(&report.line()).expect("json");
        for key in ["upnp", "natpmp", "pcp"] {
            assert!(line["portmap"][key].is_null(), "not probed is null");
        }
        check(
            &Gathered {
                candidates: 2,
                elapsed_ms: 1,
            },
            &["candidates"],
            s,
        );
        let found = CandidateFound {
            kind: "srflx".into(),
            address: "192.0.2.1:5".into(),
            elapsed_ms: 2,
        };
        check(&found, &["type", "address"], s);
        let waiting = Waiting {
            peer: "b".into(),
            elapsed_ms: 5_000,
        };
        check(&waiting, &["peer"], s);
        check(&Checking { elapsed_ms: 3 }, &[], s);
        let path_fields = [
            "path",
            "local",
            "remote",
            "rtt_ms",
            "elapsed_ms",
            "peer_key",
        ];
        check(&Connected(path()), &path_fields, s);
        check(&PathChanged(path()), &path_fields, s);
        let lost = ConsentLost {
            local: "127.0.0.1:1".into(),
            remote: "127.0.0.1:2".into(),
            elapsed_ms: 7,
        };
        check(&lost, &["local", "remote"], s);
        let punching = Punching {
            blind: true,
            hard: true,
            easy: false,
            elapsed_ms: 2000,
        };
        check(&punching, &["blind", "hard", "easy", "elapsed_ms"], s);
        let restart = Restart {
            reason: "signal".into(),
            elapsed_ms: 3,
        };
        check(&restart, &["reason", "elapsed_ms"], s);
        let keepalive = Keepalive {
            interval_s: 108,
            elapsed_ms: 4,
        };
        check(&keepalive, &["interval_s", "elapsed_ms"], s);
        check(&SignallingClosed { reason: None }, &["reason"], s);
        check(&Warning { reason: "x".into() }, &["reason"], s);
        let nat64 = Nat64 {
            prefix: "2001:db8:64::/96".into(),
            resolver: "[2001:db8:64::1]:53".into(),
        };
        check(&nat64, &["prefix", "resolver"], s);
        let closed = Closed {
            sent_datagrams: 1,
            sent_bytes: 2,
            received_datagrams: 3,
            received_bytes: 4,
            peer_sent_datagrams: Some(4),
            peer_sent_bytes: None,
            lost_datagrams: Some(1),
            lost_percent: Some(25.0),
            elapsed_ms: 6,
            reason: "both sides done".into(),
        };
        check(
            &closed,
            &["received_datagrams", "peer_sent_datagrams", "lost_percent"],
            s,
        );
        let mut pair = Pair {
            a: "open".into(),
            b: "udp-blocked".into(),
            path: "none".into(),
            elapsed_ms: None,
            expected: "none".into(),
            runs: 1,
            as_expected: 1,
            p95: None,
        };
        check(&pair, &["a", "b", "path"], s);
        assert!(
            !pair.line().contains("elapsed_ms"),
            "left out with path none"
        );
        pair.path = "direct".into();
        pair.elapsed_ms = Some(120);
        check(&pair, &["a", "b", "path", "elapsed_ms"], s);
        let summary = Summary {
            pairs: 81,
            direct: 60,
            relay: 0,
            none: 21,
            ok: true,
            seed: u64::MAX,
            seeds: 1,
            simulated: true,
        };
        check(&summary, &["pairs", "ok"], s);
        let profile = PopulationProfile {
            profile: "cgnat".into(),
            peers: 3,
            connections: 9,
            direct: 7,
            relay: 1,
            failed: 1,
        };
        check(
            &profile,
            &["profile", "peers", "direct", "relay", "failed"],
            s,
        );
        let relay = PopulationRelay {
            relay: 0,
            address: "203.0.113.16:3478".into(),
            allocations: 10,
            relayed_connections: 2,
            relayed_packets: 300,
            relayed_bytes: 30_000,
            packets_per_s: 10.0,
            packets_per_s_with_app: 210.0,
        };
        check(&relay, &["allocations", "packets_per_s"], s);
        let population = PopulationSummary {
            peers: 10,
            connections: 30,
            direct_share: 0.5,
            relay_share: 0.25,
            failed_share: 0.25,
            direct: 15,
            relay: 8,
            failed: 7,
            unexpected: 0,
            p50_ms: Some(98),
            p95_ms: Some(3_100),
            p99_ms: None,
            total_bytes: 1_000,
            relay_bytes: 100,
            relay_bytes_share: 0.1,
            relays: 1,
            relay_allocations_max: 60,
            relay_allocations_mean: 60.0,
            relay_pps_max: 10.0,
            relay_pps_mean: 10.0,
            app_pps: 50,
            relay_capacity_pps: 70_886,
            relay_capacity_basis: "upper bound".into(),
            relays_needed: 1,
            punching: true,
            mapping_detection: true,
            seed: 1,
            simulated: true,
        };
        let population_fields = [
            "direct_share",
            "relay_share",
            "failed_share",
            "p50_ms",
            "p95_ms",
            "p99_ms",
            "relay_bytes_share",
            "relays_needed",
        ];
        check(&population, &population_fields, s);
        let mapped_port = PortMapped {
            protocol: "pcp".into(),
            external: "192.0.2.1:4000".into(),
            lifetime_s: 7200,
        };
        check(&mapped_port, &["protocol", "external", "lifetime_s"], s);
        check(
            &PortRenewed(mapped_port),
            &["protocol", "external", "lifetime_s"],
            s,
        );
        let changed = ExternalChanged {
            external: "192.0.2.2:4000".into(),
        };
        check(&changed, &["external"], s);
        check(&GatewayRestarted {}, &[], s);
        check(&MappingDeleted {}, &[], s);
        let fp = format!("sha256:{}", "ab".repeat(32));
        let created = KeyCreated {
            path: "/k.pem".into(),
            fingerprint: fp.clone(),
        };
        check(&created, &["path", "fingerprint"], s);
        let peer = PeerKey {
            fingerprint: fp,
            trust: "pinned".into(),
        };
        check(&peer, &["fingerprint", "trust"], s);
        let closed = StreamClosed {
            sent_bytes: 1,
            received_bytes: 2,
            elapsed_ms: 3,
            reason: "both sides done".into(),
        };
        check(&closed, &["sent_bytes", "received_bytes", "reason"], s);
        let sent = FileSent {
            name: "a.bin".into(),
            bytes: 5,
            sha256: "00".repeat(32),
            transfer_ms: 1,
        };
        check(&sent, &["name", "bytes", "sha256"], s);
        let received = FileReceived {
            name: "a.bin".into(),
            path: "/d/a.bin".into(),
            bytes: 5,
            sha256: "00".repeat(32),
            transfer_ms: 1,
        };
        check(&received, &["name", "path", "bytes", "sha256"], s);
        for name in ALL_NAMES {
            assert!(seen.contains(name), "the schema test misses {name}");
        }
    }
}
