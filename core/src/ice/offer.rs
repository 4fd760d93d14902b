//! The offer / signal line format: RFC 8839 attributes, one per line, appended as candidates
//! trickle in.
//!
//! ```text
//! ice-ufrag:92zk
//! ice-pwd:IAhGN5DIlTb5ikNFYhjJLL
//! a=candidate:1 1 udp 2130706431 192.168.1.2 33789 typ host
//! a=candidate:2 1 udp 1694498815 203.0.113.10 33789 typ srflx raddr 192.168.1.2 rport 33789
//! a=end-of-candidates
//! ```
//!
//! One line is holepunch's own: `a=x-holepunch-keepalive:SECS`, the keepalive interval the
//! sender proposes (see [`AgentConfig::keepalive_interval`](crate::ice::agent::AgentConfig)).
//! Other stacks ignore it as an unknown attribute, and so the agent keeps RFC 7675's consent
//! cadence with them. A proposal made after the offers were exchanged travels in band instead,
//! in the checks' X-HOLEPUNCH-KEEPALIVE STUN attribute
//! ([`X_HOLEPUNCH_KEEPALIVE`](crate::stun::attr::types::X_HOLEPUNCH_KEEPALIVE)).
//!
//! The reader accepts what other stacks write (with or without `a=`, `\r\n` endings, TCP and
//! host-name candidates and unknown lines ignored); the writers emit exactly the lines above, each
//! with its terminating `\n`, so appending one call's output never leaves a torn line.

use core::fmt;

use crate::ice::candidate::{Candidate, CandidateError, strip_prefix_ignore_case};
use crate::ice::credentials::{CredentialsError, validate_pwd, validate_ufrag};
use crate::time::Duration;

/// The longest keepalive interval an offer line may carry, in seconds (a day: far beyond any
/// NAT's mapping lifetime, and small enough for any arithmetic on it).
pub const MAX_KEEPALIVE_SECS: u64 = 86_400;

/// Why an offer line that claims to be an ICE attribute was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OfferError {
    /// An `ice-ufrag` or `ice-pwd` line with an invalid value.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// A malformed `candidate` line (TCP and host-name candidates are not errors: they are
    /// [`OfferLine::Ignored`]).
    #[error(transparent)]
    Candidate(#[from] CandidateError),
    /// An `x-holepunch-keepalive` line whose value is not whole seconds from 1 to
    /// [`MAX_KEEPALIVE_SECS`].
    #[error("x-holepunch-keepalive wants whole seconds from 1 to {MAX_KEEPALIVE_SECS}")]
    Keepalive,
}

/// One parsed line of an offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OfferLine<'a> {
    /// `ice-ufrag:…`: the sender's username fragment (validated: 4 to 256 ICE-chars).
    Ufrag(&'a str),
    /// `ice-pwd:…`: the sender's password (validated: 22 to 256 ICE-chars).
    Pwd(&'a str),
    /// `a=candidate:…`: a usable UDP candidate.
    Candidate(Candidate),
    /// `a=end-of-candidates`: the sender will trickle no more (a hint; checks need not wait).
    EndOfCandidates,
    /// `a=x-holepunch-keepalive:SECS`: the keepalive interval the sender proposes (for
    /// [`Agent::set_remote_keepalive`](crate::ice::agent::Agent::set_remote_keepalive)).
    Keepalive(Duration),
    /// A blank line, an attribute this reader does not use, or a candidate it cannot use
    /// (TCP, FQDN / mDNS address).
    Ignored,
}

impl<'a> OfferLine<'a> {
    /// Parses one line (surrounding whitespace, including a trailing `\r` or `\n`, is ignored).
    ///
    /// `ice-ufrag:`, `ice-pwd:`, `candidate:`, `end-of-candidates` and
    /// `x-holepunch-keepalive:` are recognised with or without the `a=` prefix; anything else
    /// is [`OfferLine::Ignored`].
    pub fn parse(line: &'a str) -> Result<OfferLine<'a>, OfferError> {
        let line = line.trim();
        let attr = line.strip_prefix("a=").unwrap_or(line);
        if let Some(ufrag) = strip_attribute(attr, "ice-ufrag:") {
            validate_ufrag(ufrag)?;
            return Ok(OfferLine::Ufrag(ufrag));
        }
        if let Some(pwd) = strip_attribute(attr, "ice-pwd:") {
            validate_pwd(pwd)?;
            return Ok(OfferLine::Pwd(pwd));
        }
        if let Some(secs) = strip_attribute(attr, KEEPALIVE_ATTRIBUTE) {
            return parse_keepalive(secs).map(OfferLine::Keepalive);
        }
        if attr.eq_ignore_ascii_case("end-of-candidates") {
            return Ok(OfferLine::EndOfCandidates);
        }
        if strip_attribute(attr, "candidate:").is_some() {
            return match Candidate::parse(attr) {
                Ok(candidate) => Ok(OfferLine::Candidate(candidate)),
                Err(CandidateError::UnsupportedTransport | CandidateError::UnsupportedAddress) => {
                    Ok(OfferLine::Ignored)
                }
                Err(e) => Err(e.into()),
            };
        }
        Ok(OfferLine::Ignored)
    }
}

/// Writes `ice-ufrag:{ufrag}\n`.
pub fn write_ufrag<W: fmt::Write + ?Sized>(out: &mut W, ufrag: &str) -> fmt::Result {
    writeln!(out, "ice-ufrag:{ufrag}")
}

/// Writes `ice-pwd:{pwd}\n`.
pub fn write_pwd<W: fmt::Write + ?Sized>(out: &mut W, pwd: &str) -> fmt::Result {
    writeln!(out, "ice-pwd:{pwd}")
}

/// Writes `a=candidate:…\n` (see [`Candidate`]'s `Display`).
pub fn write_candidate<W: fmt::Write + ?Sized>(out: &mut W, candidate: &Candidate) -> fmt::Result {
    writeln!(out, "a={candidate}")
}

/// Writes `a=end-of-candidates\n`.
pub fn write_end<W: fmt::Write + ?Sized>(out: &mut W) -> fmt::Result {
    out.write_str("a=end-of-candidates\n")
}

/// Writes `a=x-holepunch-keepalive:{secs}\n`, the interval in whole seconds (rounded down,
/// at least 1, at most [`MAX_KEEPALIVE_SECS`]).
pub fn write_keepalive<W: fmt::Write + ?Sized>(out: &mut W, interval: Duration) -> fmt::Result {
    let secs = interval.as_secs().clamp(1, MAX_KEEPALIVE_SECS);
    writeln!(out, "a={KEEPALIVE_ATTRIBUTE}{secs}")
}

/// The keepalive attribute's name and colon.
const KEEPALIVE_ATTRIBUTE: &str = "x-holepunch-keepalive:";

/// A keepalive line's value: decimal seconds, 1 to [`MAX_KEEPALIVE_SECS`].
fn parse_keepalive(secs: &str) -> Result<Duration, OfferError> {
    // `u64::from_str` alone would take a leading `+`.
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return Err(OfferError::Keepalive);
    }
    match secs.parse::<u64>() {
        Ok(s @ 1..=MAX_KEEPALIVE_SECS) => Ok(Duration::from_secs(s)),
        _ => Err(OfferError::Keepalive),
    }
}

/// The value after an attribute name (matched ignoring ASCII case), trimmed.
fn strip_attribute<'a>(attr: &'a str, name: &str) -> Option<&'a str> {
    strip_prefix_ignore_case(attr, name).map(str::trim)
}
