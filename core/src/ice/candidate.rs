//! ICE candidates: kinds, priorities, foundations (RFC 8445 §5.1) and RFC 8839 lines.
//!
//! Parsing and formatting never allocate: [`Candidate::parse`] borrows the line and
//! [`Candidate`]'s [`Display`](core::fmt::Display) writes into any formatter.
//!
//! # What survives the wire
//!
//! `Candidate::parse(&candidate.to_string()) == Ok(candidate)` holds for every candidate built by
//! the constructors (and every candidate whose fields follow the same invariants), with three
//! documented exceptions, all consequences of what RFC 8839 can express:
//! - [`CandidateKind::PortMapped`] is signalled as `srflx`, so the far side reads it back as
//!   [`CandidateKind::ServerReflexive`] (priority, foundation and addresses are unchanged);
//! - the base is not signalled: the parser reconstructs it as the related address for
//!   server-/peer-reflexive candidates (the related address *is* their base, RFC 8839 §5.1) and
//!   as the candidate's own address for host and relayed ones (RFC 8445 §5.1.1.2);
//! - IPv6 flow labels and scope ids are not signalled and read back as 0.

use core::fmt;
use core::net::{IpAddr, SocketAddr};
use core::str::FromStr;

/// The local preference given by constructors that take none: the maximum, as a single-homed
/// host uses (RFC 8445 §5.1.2.1).
pub const DEFAULT_LOCAL_PREFERENCE: u16 = 65535;

/// The longest foundation RFC 8839 allows (`1*32ice-char`).
pub const MAX_FOUNDATION_LEN: usize = 32;

/// What kind of address a candidate is (RFC 8445 §5.1.1), plus port-mapped ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CandidateKind {
    /// An address of a local interface.
    Host,
    /// The address a NAT gave us, learnt from a STUN server.
    ServerReflexive,
    /// The address a NAT gave us, learnt from a peer's connectivity check.
    PeerReflexive,
    /// An address on a TURN relay.
    Relayed,
    /// A mapping obtained from the gateway (UPnP IGD, NAT-PMP, PCP). Signalled as `srflx`,
    /// prioritised between host and server-reflexive.
    PortMapped,
}

impl CandidateKind {
    /// The type preference of RFC 8445 §5.1.2.2 (recommended values; 120 for port-mapped).
    ///
    /// Port-mapped candidates rank below host (a direct path on the same link is better) but
    /// above server-reflexive: a gateway mapping is explicit, so it works through NATs whose
    /// filtering defeats plain reflexive candidates.
    pub const fn type_preference(self) -> u8 {
        match self {
            CandidateKind::Host => 126,
            CandidateKind::PortMapped => 120,
            CandidateKind::PeerReflexive => 110,
            CandidateKind::ServerReflexive => 100,
            CandidateKind::Relayed => 0,
        }
    }

    /// The RFC 8839 `cand-type` token (`host`, `srflx`, `prflx`, `relay`); port-mapped is `srflx`.
    pub const fn sdp_name(self) -> &'static str {
        match self {
            CandidateKind::Host => "host",
            CandidateKind::ServerReflexive | CandidateKind::PortMapped => "srflx",
            CandidateKind::PeerReflexive => "prflx",
            CandidateKind::Relayed => "relay",
        }
    }

    /// Stable tag mixed into foundations so kinds never share one.
    const fn tag(self) -> u8 {
        match self {
            CandidateKind::Host => 0,
            CandidateKind::ServerReflexive => 1,
            CandidateKind::PeerReflexive => 2,
            CandidateKind::Relayed => 3,
            CandidateKind::PortMapped => 4,
        }
    }
}

/// The candidate priority of RFC 8445 §5.1.2.1:
/// `2^24·type_preference + 2^8·local_preference + (256 − component)`.
///
/// `component` is clamped to the valid `1..=256` so the result never spills into the
/// local-preference bits; the maximum (host, 65535, 1) is 2130706431 < 2^31.
pub const fn priority(kind: CandidateKind, local_preference: u16, component: u16) -> u32 {
    let component = if component == 0 {
        1
    } else if component > 256 {
        256
    } else {
        component
    };
    ((kind.type_preference() as u32) << 24)
        | ((local_preference as u32) << 8)
        | (256 - component as u32)
}

/// A candidate field named in [`CandidateError::MissingField`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Field {
    /// The foundation.
    Foundation,
    /// The component id.
    Component,
    /// The transport (`udp`).
    Transport,
    /// The priority.
    Priority,
    /// The connection address.
    Address,
    /// The port.
    Port,
    /// The `typ` keyword or its value.
    Type,
    /// The related address (`raddr`).
    RelatedAddress,
    /// The related port (`rport`).
    RelatedPort,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Foundation => "foundation",
            Field::Component => "component id",
            Field::Transport => "transport",
            Field::Priority => "priority",
            Field::Address => "connection address",
            Field::Port => "port",
            Field::Type => "candidate type",
            Field::RelatedAddress => "related address (raddr)",
            Field::RelatedPort => "related port (rport)",
        })
    }
}

/// Why a foundation or a candidate line was rejected.
///
/// [`UnsupportedTransport`](CandidateError::UnsupportedTransport) and
/// [`UnsupportedAddress`](CandidateError::UnsupportedAddress) mark well-formed candidates this
/// stack cannot use (TCP, FQDN / mDNS); callers skip those rather than fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CandidateError {
    /// A required field is absent (the line ended early).
    #[error("candidate line is missing its {0}")]
    MissingField(Field),
    /// The foundation is empty or contains a character outside ALPHA / DIGIT / "+" / "/".
    #[error("foundation contains a character that is not an ice-char")]
    InvalidFoundation,
    /// The foundation is longer than 32 characters.
    #[error("foundation of {0} characters is longer than 32")]
    FoundationTooLong(usize),
    /// The component id is not 1 to 3 digits in `1..=256`.
    #[error("component id is not a number in 1..=256")]
    InvalidComponent,
    /// The transport is not UDP (for example TCP candidates); the candidate is valid but unusable.
    #[error("transport is not UDP")]
    UnsupportedTransport,
    /// The priority is not a decimal number.
    #[error("priority is not a decimal number")]
    InvalidPriority,
    /// The priority does not fit in 32 bits.
    #[error("priority does not fit in 32 bits")]
    PriorityOverflow,
    /// The connection address is neither an IP address nor a host name.
    #[error("connection address is not an IP address")]
    InvalidAddress,
    /// The connection address is a host name (FQDN or mDNS `.local`), which holepunch does not
    /// resolve; the candidate is valid but unusable.
    #[error("connection address is a host name, not an IP address")]
    UnsupportedAddress,
    /// The port is not a decimal number in `0..=65535`.
    #[error("port is not a number in 0..=65535")]
    InvalidPort,
    /// The token after the port is not `typ`.
    #[error("expected `typ` after the port")]
    ExpectedTyp,
    /// The candidate type is not `host`, `srflx`, `prflx` or `relay`.
    #[error("unknown candidate type")]
    UnknownType,
    /// The `raddr` value is not an IP address.
    #[error("related address (raddr) is not an IP address")]
    InvalidRelatedAddress,
    /// The `rport` value is not a decimal number in `0..=65535`.
    #[error("related port (rport) is not a number in 0..=65535")]
    InvalidRelatedPort,
    /// `raddr` or `rport` appears twice.
    #[error("{0} appears twice")]
    DuplicateField(Field),
}

/// A candidate foundation: 1 to 32 ICE-chars, stored inline.
///
/// The [`Default`] value is empty, which no line carries; it exists only as a placeholder.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Foundation {
    len: u8,
    bytes: [u8; 32],
}

impl Foundation {
    /// Validates and stores a foundation: 1 to 32 of ALPHA / DIGIT / "+" / "/".
    pub fn new(text: &str) -> Result<Foundation, CandidateError> {
        let raw = text.as_bytes();
        if raw.len() > MAX_FOUNDATION_LEN {
            return Err(CandidateError::FoundationTooLong(raw.len()));
        }
        if raw.is_empty() || !raw.iter().all(|b| is_ice_char(*b)) {
            return Err(CandidateError::InvalidFoundation);
        }
        let mut bytes = [0u8; MAX_FOUNDATION_LEN];
        for (dst, src) in bytes.iter_mut().zip(raw) {
            *dst = *src;
        }
        Ok(Foundation {
            // At most 32 after the check above.
            len: raw.len() as u8,
            bytes,
        })
    }

    /// The foundation RFC 8445 §5.1.1.3 asks for: equal for candidates of the same kind, base IP
    /// address and STUN/TURN server IP address, and different otherwise.
    ///
    /// Deterministic (no randomness, same inputs ⇒ same foundation, on every host), 11 ICE-chars
    /// encoding a 64-bit FNV-1a hash with a final avalanche step, so distinct inputs collide only
    /// with probability about 2^-64 per pair.
    pub fn for_candidate(
        kind: CandidateKind,
        base_ip: IpAddr,
        server: Option<IpAddr>,
    ) -> Foundation {
        let mut h = Fnv1a::new();
        h.write(&[kind.tag()]);
        h.write_ip(Some(base_ip));
        h.write_ip(server);
        let mut v = fmix64(h.0);
        let mut bytes = [0u8; MAX_FOUNDATION_LEN];
        for b in bytes.iter_mut().take(FOUNDATION_HASH_LEN) {
            *b = ICE_CHARS[(v & 63) as usize];
            v >>= 6;
        }
        Foundation {
            len: FOUNDATION_HASH_LEN as u8,
            bytes,
        }
    }

    /// The foundation as text.
    pub fn as_str(&self) -> &str {
        // Constructors only accept ICE-chars (ASCII), so this cannot fail.
        let len = usize::from(self.len).min(MAX_FOUNDATION_LEN);
        self.bytes
            .get(..len)
            .and_then(|b| core::str::from_utf8(b).ok())
            .unwrap_or("")
    }
}

impl fmt::Debug for Foundation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Foundation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Foundation {
    type Err = CandidateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Foundation::new(s)
    }
}

/// One ICE candidate of component 1 over UDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Candidate {
    /// The transport address peers send to.
    pub address: SocketAddr,
    /// The kind.
    pub kind: CandidateKind,
    /// RFC 8445 §5.1.2 priority.
    pub priority: u32,
    /// The foundation: candidates with equal foundations share their fate.
    pub foundation: Foundation,
    /// The local address this candidate sends from (equal to `address` for host candidates;
    /// the relay's allocation for relayed ones is represented by the relay's address).
    pub base: SocketAddr,
    /// The related address of RFC 8839 (`raddr`/`rport`), if any.
    pub related: Option<SocketAddr>,
    /// The ICE component (1 for everything holepunch itself creates).
    pub component: u16,
}

impl Candidate {
    /// A host candidate on a local interface address (component 1, base and address equal).
    pub fn host(address: SocketAddr, local_preference: u16) -> Candidate {
        Candidate {
            address,
            kind: CandidateKind::Host,
            priority: priority(CandidateKind::Host, local_preference, 1),
            foundation: Foundation::for_candidate(CandidateKind::Host, address.ip(), None),
            base: address,
            related: None,
            component: 1,
        }
    }

    /// A server-reflexive candidate: `mapped` as reported by the STUN server at `server`, for a
    /// request sent from `base`. Local preference [`DEFAULT_LOCAL_PREFERENCE`] (see
    /// [`with_local_preference`](Self::with_local_preference)); related address = base.
    pub fn server_reflexive(mapped: SocketAddr, base: SocketAddr, server: IpAddr) -> Candidate {
        Self::reflexive(CandidateKind::ServerReflexive, mapped, base, Some(server))
    }

    /// A port-mapped candidate: the `external` address the gateway at `gateway` mapped to `base`
    /// (UPnP IGD, NAT-PMP, PCP). Signalled as `srflx` with related address = base.
    pub fn port_mapped(external: SocketAddr, base: SocketAddr, gateway: IpAddr) -> Candidate {
        Self::reflexive(CandidateKind::PortMapped, external, base, Some(gateway))
    }

    /// A relayed candidate: the `relayed` address a TURN server at `server` allocated, with the
    /// `mapped` (server-reflexive) address the server saw as related address.
    ///
    /// The base of a relayed candidate is the candidate itself (RFC 8445 §5.1.1.2), so its
    /// foundation hashes the relayed IP: allocations on the same server share a foundation.
    pub fn relayed(relayed: SocketAddr, mapped: SocketAddr, server: IpAddr) -> Candidate {
        let kind = CandidateKind::Relayed;
        Candidate {
            address: relayed,
            kind,
            priority: priority(kind, DEFAULT_LOCAL_PREFERENCE, 1),
            foundation: Foundation::for_candidate(kind, relayed.ip(), Some(server)),
            base: relayed,
            related: Some(mapped),
            component: 1,
        }
    }

    /// A peer-reflexive candidate: `address` learnt from a connectivity check, with the
    /// `priority` that check carried (RFC 8445 §7.2.5.3.1 / §7.3.1.3) and related address = base.
    ///
    /// For a remote peer-reflexive candidate pass the source address as both `address` and
    /// `base`: the foundation then differs from every other candidate's with overwhelming
    /// probability, as §7.3.1.3 asks.
    pub fn peer_reflexive(address: SocketAddr, base: SocketAddr, priority: u32) -> Candidate {
        let kind = CandidateKind::PeerReflexive;
        Candidate {
            address,
            kind,
            priority,
            foundation: Foundation::for_candidate(kind, base.ip(), None),
            base,
            related: Some(base),
            component: 1,
        }
    }

    /// The same candidate with its priority recomputed for `local_preference` (multi-homed
    /// hosts and RFC 8421 dual-stack ordering).
    #[must_use]
    pub fn with_local_preference(mut self, local_preference: u16) -> Candidate {
        self.priority = priority(self.kind, local_preference, self.component);
        self
    }

    /// Parses one RFC 8839 §5.1 candidate line, without allocating.
    ///
    /// Accepts the line with or without `a=` and `candidate:` prefixes and surrounding
    /// whitespace (including a trailing `\r`), any case of transport and type, foundations of 1 to
    /// 32 ICE-chars, IPv4 and (unbracketed) IPv6 addresses, `raddr`/`rport` in either order among
    /// the extensions, and ignores every other extension (`generation`, `network-id`,
    /// `network-cost`, `ufrag`, `tcptype`, unknown name/value pairs).
    ///
    /// TCP (or any non-UDP) candidates give [`CandidateError::UnsupportedTransport`] and host-name
    /// addresses give [`CandidateError::UnsupportedAddress`]: callers skip those. A host-name
    /// `raddr` is informational only and is dropped (`related: None`). See the module docs for the
    /// base reconstructed from the line.
    pub fn parse(line: &str) -> Result<Candidate, CandidateError> {
        let mut body = line.trim();
        if let Some(rest) = body.strip_prefix("a=") {
            body = rest;
        }
        if let Some(rest) = strip_prefix_ignore_case(body, "candidate:") {
            body = rest;
        }
        let mut tokens = body.split_ascii_whitespace();
        let mut next = |field| tokens.next().ok_or(CandidateError::MissingField(field));

        let foundation = Foundation::new(next(Field::Foundation)?)?;
        let component = parse_component(next(Field::Component)?)?;
        if !next(Field::Transport)?.eq_ignore_ascii_case("udp") {
            return Err(CandidateError::UnsupportedTransport);
        }
        let priority = parse_priority(next(Field::Priority)?)?;
        let ip = parse_connection_address(next(Field::Address)?)?;
        let port = parse_port(next(Field::Port)?).ok_or(CandidateError::InvalidPort)?;
        if !next(Field::Type)?.eq_ignore_ascii_case("typ") {
            return Err(CandidateError::ExpectedTyp);
        }
        let kind = parse_kind(next(Field::Type)?)?;

        let mut raddr: Option<Option<IpAddr>> = None;
        let mut rport: Option<u16> = None;
        while let Some(name) = tokens.next() {
            let value = tokens.next();
            if name.eq_ignore_ascii_case("raddr") {
                if raddr.is_some() {
                    return Err(CandidateError::DuplicateField(Field::RelatedAddress));
                }
                let value = value.ok_or(CandidateError::MissingField(Field::RelatedAddress))?;
                raddr = Some(parse_related_address(value)?);
            } else if name.eq_ignore_ascii_case("rport") {
                if rport.is_some() {
                    return Err(CandidateError::DuplicateField(Field::RelatedPort));
                }
                let value = value.ok_or(CandidateError::MissingField(Field::RelatedPort))?;
                rport = Some(parse_port(value).ok_or(CandidateError::InvalidRelatedPort)?);
            }
        }
        let related = match (raddr, rport) {
            (None, None) => None,
            (Some(ip), Some(port)) => ip.map(|ip| SocketAddr::new(ip, port)),
            (Some(_), None) => return Err(CandidateError::MissingField(Field::RelatedPort)),
            (None, Some(_)) => return Err(CandidateError::MissingField(Field::RelatedAddress)),
        };

        let address = SocketAddr::new(ip, port);
        let base = match kind {
            CandidateKind::ServerReflexive | CandidateKind::PeerReflexive => {
                related.unwrap_or(address)
            }
            _ => address,
        };
        Ok(Candidate {
            address,
            kind,
            priority,
            foundation,
            base,
            related,
            component,
        })
    }

    /// A server-reflexive or port-mapped candidate: related address = base (RFC 8839 §5.1).
    fn reflexive(
        kind: CandidateKind,
        address: SocketAddr,
        base: SocketAddr,
        server: Option<IpAddr>,
    ) -> Candidate {
        Candidate {
            address,
            kind,
            priority: priority(kind, DEFAULT_LOCAL_PREFERENCE, 1),
            foundation: Foundation::for_candidate(kind, base.ip(), server),
            base,
            related: Some(base),
            component: 1,
        }
    }
}

/// `candidate:{foundation} {component} udp {priority} {ip} {port} typ {type}[ raddr {ip} rport {port}]`,
/// the RFC 8839 attribute value without `a=` (port-mapped prints as `srflx`).
impl fmt::Display for Candidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "candidate:{} {} udp {} {} {} typ {}",
            self.foundation,
            self.component,
            self.priority,
            self.address.ip(),
            self.address.port(),
            self.kind.sdp_name(),
        )?;
        if let Some(related) = self.related {
            write!(f, " raddr {} rport {}", related.ip(), related.port())?;
        }
        Ok(())
    }
}

impl FromStr for Candidate {
    type Err = CandidateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Candidate::parse(s)
    }
}

/// The 64 ICE-chars (RFC 8839: ALPHA / DIGIT / "+" / "/"), in base64 order.
pub(crate) const ICE_CHARS: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Whether `b` is an ICE-char.
pub(crate) const fn is_ice_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

/// Characters in a hashed foundation: 11 × 6 bits covers all 64 hash bits.
const FOUNDATION_HASH_LEN: usize = 11;

/// FNV-1a, 64-bit.
struct Fnv1a(u64);

impl Fnv1a {
    const fn new() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// Writes a family tag before the octets so no two inputs share an encoding.
    fn write_ip(&mut self, ip: Option<IpAddr>) {
        match ip {
            None => self.write(&[0]),
            Some(IpAddr::V4(v4)) => {
                self.write(&[4]);
                self.write(&v4.octets());
            }
            Some(IpAddr::V6(v6)) => {
                self.write(&[6]);
                self.write(&v6.octets());
            }
        }
    }
}

/// MurmurHash3's finaliser: FNV-1a diffuses short inputs poorly into the high bits.
const fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// `s` after `prefix`, which is matched ignoring ASCII case.
pub(crate) fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

/// A run of ASCII digits as a number, `None` if empty, not all digits or above `max`.
fn parse_decimal(s: &str, max: u64) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut value: u64 = 0;
    for b in s.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        if value > max {
            return None;
        }
    }
    Some(value)
}

fn parse_component(s: &str) -> Result<u16, CandidateError> {
    if s.len() > 3 {
        return Err(CandidateError::InvalidComponent);
    }
    match parse_decimal(s, 256) {
        Some(c @ 1..=256) => Ok(c as u16),
        _ => Err(CandidateError::InvalidComponent),
    }
}

fn parse_priority(s: &str) -> Result<u32, CandidateError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CandidateError::InvalidPriority);
    }
    parse_decimal(s, u64::from(u32::MAX))
        .map(|p| p as u32)
        .ok_or(CandidateError::PriorityOverflow)
}

fn parse_port(s: &str) -> Option<u16> {
    parse_decimal(s, u64::from(u16::MAX)).map(|p| p as u16)
}

fn parse_kind(s: &str) -> Result<CandidateKind, CandidateError> {
    Ok(if s.eq_ignore_ascii_case("host") {
        CandidateKind::Host
    } else if s.eq_ignore_ascii_case("srflx") {
        CandidateKind::ServerReflexive
    } else if s.eq_ignore_ascii_case("prflx") {
        CandidateKind::PeerReflexive
    } else if s.eq_ignore_ascii_case("relay") {
        CandidateKind::Relayed
    } else {
        return Err(CandidateError::UnknownType);
    })
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is read as the IPv4 address it is, so a
/// candidate never carries that form and pairs with IPv4 candidates.
fn parse_connection_address(s: &str) -> Result<IpAddr, CandidateError> {
    match IpAddr::from_str(s) {
        Ok(ip) => Ok(ip.to_canonical()),
        Err(_) if is_host_name(s) => Err(CandidateError::UnsupportedAddress),
        Err(_) => Err(CandidateError::InvalidAddress),
    }
}

/// `Some(ip)`, or `None` for a host name (dropped: the related address is informational).
fn parse_related_address(s: &str) -> Result<Option<IpAddr>, CandidateError> {
    match IpAddr::from_str(s) {
        Ok(ip) => Ok(Some(ip.to_canonical())),
        Err(_) if is_host_name(s) => Ok(None),
        Err(_) => Err(CandidateError::InvalidRelatedAddress),
    }
}

/// A DNS name (RFC 1123 labels, optional trailing dot) whose last label is not all digits, so a
/// mistyped IPv4 address such as `1.2.3.256` is not taken for one.
fn is_host_name(s: &str) -> bool {
    let name = s.strip_suffix('.').unwrap_or(s);
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    let labels_ok = name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    });
    let last_numeric = name
        .rsplit('.')
        .next()
        .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()));
    labels_ok && !last_numeric
}
