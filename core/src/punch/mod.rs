//! Hard-NAT hole punching: probe plans for when one side's mapping is endpoint-dependent.
//!
//! When netcheck finds one side behind an endpoint-dependent ("hard", APDM) mapping and the other
//! behind an endpoint-independent ("easy", EIM) one, the easy side's public address is known but
//! the port the hard side's NAT will use toward it is not. Two plans meet in the middle:
//!
//! - [`HardSidePlan`]: the hard side asks its driver for N extra local sockets
//!   ([`PunchAction::BindUdp`], 256 by default; the core never opens one itself) and sends from
//!   each to the easy side's address, so its NAT holds N mappings (N public ports) that accept
//!   packets from that address.
//! - [`EasySidePlan`]: the easy side sends to the hard side's public IP at ports drawn without
//!   repetition from a seeded permutation of 1024..=65535, at a bounded rate. Each probe hits an
//!   open mapping with probability about N/64512, so success after k probes is
//!   [`success_probability`]`(N, k)` = 1-(1-N/64512)^k: 64% at k = 256, 98% at 1024, 99.97% at
//!   2048 for N = 256 (the birthday paradox, as in Tailscale's "How NAT traversal works").
//!
//! Sequential port allocators need none of that: [`PortPredictor`] recognises them from the
//! ports successive mappings received and predicts the next ones, which the easy side tries
//! first ([`EasySidePlan::new`] takes them).
//!
//! Both plans are pure schedules: no sockets, no clock, no allocation after construction, and
//! the same inputs and seed give the same probes. They do not build packets either: their owner
//! (the ICE agent) sends its connectivity check for each [`Probe`] or address they yield, so
//! nothing but an authenticated check can select the resulting path.

pub mod birthday;
pub mod predict;

pub use birthday::{
    EasySideConfig, EasySidePlan, HardSideConfig, HardSidePlan, Probe, PunchAction,
    success_probability,
};
pub use predict::{PortAllocation, PortPredictor, PredictedPorts};

/// The lowest port the easy side probes and a wrapping allocator returns to: ports below are
/// privileged and NATs do not hand them out for dynamic mappings.
pub const FIRST_PORT: u16 = 1024;
/// How many ports the probed space `FIRST_PORT..=65535` holds (64512).
pub const PORT_SPACE: u32 = 65536 - FIRST_PORT as u32;

/// Why a punch plan or prediction could not be built or fed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PunchError {
    /// A configuration value is out of its documented range.
    #[error("invalid punch configuration: `{field}` is out of range")]
    InvalidConfig {
        /// The offending field of the configuration struct.
        field: &'static str,
    },
    /// The driver reported a socket index beyond the number requested.
    #[error("socket index {index} is beyond the {requested} sockets requested")]
    UnknownSocket {
        /// The index reported.
        index: u16,
        /// How many sockets the plan asked for.
        requested: u16,
    },
    /// Port prediction needs at least two observed mappings.
    #[error("port prediction needs at least two observed ports")]
    TooFewObservations,
    /// An observed mapping had port 0, which no NAT assigns.
    #[error("observed port 0")]
    ZeroPort,
}
