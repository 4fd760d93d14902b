//! TURN (RFC 8656): relaying when no direct path exists.
//!
//! - [`attr`]: the TURN attributes on top of the STUN codec ([`crate::stun`]).
//! - [`channel`]: ChannelData framing and the stream framing of STUN and ChannelData over TCP.
//! - [`credentials`]: TURN REST time-limited credentials (`expiry:user`, HMAC-SHA1 password).
//! - [`client`]: a sans-IO allocation: Allocate, Refresh, permissions, channels, data.
//! - [`policy`]: which peer addresses a relay may send to (the default deny list).
//! - [`server`]: a sans-IO allocation table for `holepunch relay`.

pub mod attr;
pub mod channel;
pub mod client;
pub mod credentials;
pub mod policy;
pub mod server;

pub use channel::{ChannelData, ChannelError, ChannelNumber, Frame, FrameError};
pub use client::{
    Client, ClientConfig, ClientError, ClientEvent, ClientStats, Received, TurnError,
};
pub use credentials::RestCredentials;
pub use policy::{Cidr, CidrError, PeerPolicy};
pub use server::{
    AllocationId, Server, ServerAction, ServerConfig, ServerStats, ServerTransmit, Via,
};

use crate::stun::Method;

/// Allocate (RFC 8656 §7.2).
pub const ALLOCATE: Method = Method::new(0x003);
/// Refresh (RFC 8656 §7.3).
pub const REFRESH: Method = Method::new(0x004);
/// Send indication (RFC 8656 §11.1).
pub const SEND: Method = Method::new(0x006);
/// Data indication (RFC 8656 §11.4).
pub const DATA: Method = Method::new(0x007);
/// CreatePermission (RFC 8656 §10).
pub const CREATE_PERMISSION: Method = Method::new(0x008);
/// ChannelBind (RFC 8656 §12.1).
pub const CHANNEL_BIND: Method = Method::new(0x009);

/// How a client reaches its TURN server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    /// Datagrams; requests are retransmitted, ChannelData is unpadded.
    Udp,
    /// A TCP stream: no retransmission, ChannelData padded to 4 bytes (RFC 8656 §12.5).
    Tcp,
    /// TLS over TCP: framed like TCP.
    Tls,
}

impl Transport {
    /// Whether this transport is a byte stream (TCP or TLS), which needs framing and padding.
    pub const fn is_stream(self) -> bool {
        !matches!(self, Transport::Udp)
    }
}

/// The IANA protocol number REQUESTED-TRANSPORT carries for UDP relaying.
pub const PROTOCOL_UDP: u8 = 17;

/// Default allocation lifetime (RFC 8656 §3.2: 10 minutes).
pub const DEFAULT_LIFETIME_SECS: u32 = 600;
/// Permission lifetime (RFC 8656 §9: 300 s, not refreshable by data).
pub const PERMISSION_LIFETIME_SECS: u32 = 300;
/// Channel binding lifetime (RFC 8656 §12: 10 minutes).
pub const CHANNEL_LIFETIME_SECS: u32 = 600;
