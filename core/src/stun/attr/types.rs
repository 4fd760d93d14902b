//! Attribute type numbers (IANA "STUN Attributes" registry).

use super::AttrType;

/// MAPPED-ADDRESS (RFC 8489 §14.1).
pub const MAPPED_ADDRESS: AttrType = 0x0001;
/// CHANGE-REQUEST (RFC 5780 §7.2).
pub const CHANGE_REQUEST: AttrType = 0x0003;
/// SOURCE-ADDRESS (RFC 3489 §11.2.5): where a classic response was sent from, the RFC 3489
/// form of RESPONSE-ORIGIN.
pub const SOURCE_ADDRESS: AttrType = 0x0004;
/// CHANGED-ADDRESS (RFC 3489 §11.2.3): the server's other IP and port, the RFC 3489 form of
/// OTHER-ADDRESS.
pub const CHANGED_ADDRESS: AttrType = 0x0005;
/// USERNAME (RFC 8489 §14.3).
pub const USERNAME: AttrType = 0x0006;
/// MESSAGE-INTEGRITY (RFC 8489 §14.5).
pub const MESSAGE_INTEGRITY: AttrType = 0x0008;
/// ERROR-CODE (RFC 8489 §14.8).
pub const ERROR_CODE: AttrType = 0x0009;
/// UNKNOWN-ATTRIBUTES (RFC 8489 §14.9).
pub const UNKNOWN_ATTRIBUTES: AttrType = 0x000A;
/// REALM (RFC 8489 §14.9).
pub const REALM: AttrType = 0x0014;
/// NONCE (RFC 8489 §14.10).
pub const NONCE: AttrType = 0x0015;
/// MESSAGE-INTEGRITY-SHA256 (RFC 8489 §14.6).
pub const MESSAGE_INTEGRITY_SHA256: AttrType = 0x001C;
/// PASSWORD-ALGORITHM (RFC 8489 §14.12).
pub const PASSWORD_ALGORITHM: AttrType = 0x001D;
/// USERHASH (RFC 8489 §14.4).
pub const USERHASH: AttrType = 0x001E;
/// XOR-MAPPED-ADDRESS (RFC 8489 §14.2).
pub const XOR_MAPPED_ADDRESS: AttrType = 0x0020;
/// PADDING (RFC 5780 §7.6).
pub const PADDING: AttrType = 0x0026;
/// RESPONSE-PORT (RFC 5780 §7.5).
pub const RESPONSE_PORT: AttrType = 0x0027;
/// PRIORITY (RFC 8445 §16.1).
pub const PRIORITY: AttrType = 0x0024;
/// USE-CANDIDATE (RFC 8445 §16.1).
pub const USE_CANDIDATE: AttrType = 0x0025;
/// PASSWORD-ALGORITHMS (RFC 8489 §14.11).
pub const PASSWORD_ALGORITHMS: AttrType = 0x8002;
/// ALTERNATE-DOMAIN (RFC 8489 §14.16).
pub const ALTERNATE_DOMAIN: AttrType = 0x8003;
/// SOFTWARE (RFC 8489 §14.14).
pub const SOFTWARE: AttrType = 0x8022;
/// ALTERNATE-SERVER (RFC 8489 §14.15).
pub const ALTERNATE_SERVER: AttrType = 0x8023;
/// FINGERPRINT (RFC 8489 §14.7).
pub const FINGERPRINT: AttrType = 0x8028;
/// ICE-CONTROLLED (RFC 8445 §16.1).
pub const ICE_CONTROLLED: AttrType = 0x8029;
/// ICE-CONTROLLING (RFC 8445 §16.1).
pub const ICE_CONTROLLING: AttrType = 0x802A;
/// RESPONSE-ORIGIN (RFC 5780 §7.3).
pub const RESPONSE_ORIGIN: AttrType = 0x802B;
/// OTHER-ADDRESS (RFC 5780 §7.4).
pub const OTHER_ADDRESS: AttrType = 0x802C;
/// X-HOLEPUNCH-KEEPALIVE (this crate's own, comprehension-optional): the sender's
/// keepalive proposal in whole seconds as a 32-bit big-endian integer, 0 for none (see
/// [`crate::ice::agent::Agent::set_local_keepalive`]). Carried in ICE connectivity and
/// consent checks; stacks that do not know it ignore it (RFC 8489 §14). 0xC4E5 is in the
/// Designated Expert range and not assigned in IANA's STUN Attributes registry (assigned
/// comprehension-optional values sit at 0x8000–0x80xx and 0xC000–0xC0xx); it stays
/// undecoded ([`Attribute::Other`](super::Attribute::Other)).
pub const X_HOLEPUNCH_KEEPALIVE: AttrType = 0xC4E5;
