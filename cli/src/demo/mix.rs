//! The population's NAT mix file (JSON): the built-in default, and `--mix FILE`.
//!
//! The format is the default file's, `cli/data/population-mix.json`: profile shares that sum
//! to 1, a port-mapping share and an IPv6 share, each with its source. Unknown fields are
//! refused so a misspelt key is not silently a zero share.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use holepunch_tests::sim::population::{Mix, MixError};
use holepunch_tests::sim::profile::Profile;
use serde::Deserialize;

/// The default mix, embedded so `demo` needs no files.
pub const DEFAULT_MIX: &str = include_str!("../../data/population-mix.json");

/// The file's shape.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MixFile {
    /// What the file is, for people.
    #[serde(default)]
    #[allow(dead_code, reason = "documentation inside the data file")]
    about: Option<String>,
    /// Sources the shares cite, by key.
    #[serde(default)]
    #[allow(dead_code, reason = "documentation inside the data file")]
    sources: BTreeMap<String, String>,
    /// Share of each profile, by cli.md name; profiles left out have share 0.
    profiles: BTreeMap<String, Share>,
    /// Share of one-router NATed peers whose gateway maps a port (0 when left out).
    #[serde(default)]
    port_mapping: Share,
    /// Share of peers with IPv6 (0 when left out).
    #[serde(default)]
    ipv6: Share,
}

/// One share and where it comes from.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "source, estimate and note document the data file")]
struct Share {
    share: f64,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    estimate: Option<bool>,
    #[serde(default)]
    note: Option<String>,
}

/// Why a mix file cannot be used.
#[derive(Debug)]
pub enum MixFileError {
    /// The file could not be read.
    Read(std::io::Error),
    /// Not JSON of the expected shape.
    Malformed(serde_json::Error),
    /// A profile name that is not cli.md's.
    UnknownProfile(String),
    /// The shares do not describe a population.
    Mix(MixError),
}

impl fmt::Display for MixFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MixFileError::Read(e) => write!(f, "cannot read it: {e}"),
            MixFileError::Malformed(e) => write!(f, "malformed: {e}"),
            MixFileError::UnknownProfile(p) => write!(
                f,
                "unknown profile {p:?} (known: {})",
                Profile::ALL.map(|p| p.name()).join(", ")
            ),
            MixFileError::Mix(e) => write!(f, "{e}"),
        }
    }
}

/// Parses a mix from the file format's text.
pub fn parse(text: &str) -> Result<Mix, MixFileError> {
    let file: MixFile = serde_json::from_str(text).map_err(MixFileError::Malformed)?;
    let mut shares = Vec::with_capacity(file.profiles.len());
    for (name, share) in &file.profiles {
        let profile: Profile = name
            .parse()
            .map_err(|_| MixFileError::UnknownProfile(name.clone()))?;
        shares.push((profile, share.share));
    }
    Mix::new(&shares, file.port_mapping.share, file.ipv6.share).map_err(MixFileError::Mix)
}

/// Reads and parses `path`.
pub fn load(path: &Path) -> Result<Mix, MixFileError> {
    let text = std::fs::read_to_string(path).map_err(MixFileError::Read)?;
    parse(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_mix_parses_and_cites_a_source_for_every_share() {
        let mix = parse(DEFAULT_MIX).expect("the default mix is valid");
        let total: f64 = Profile::ALL.iter().map(|&p| mix.share(p)).sum();
        assert!((total - 1.0).abs() < 1e-9);
        assert!(Profile::ALL.iter().all(|&p| mix.share(p) > 0.0));
        let file: MixFile = serde_json::from_str(DEFAULT_MIX).expect("parses");
        let shares = file
            .profiles
            .values()
            .chain([&file.port_mapping, &file.ipv6]);
        for share in shares {
            assert!(share.source.as_deref().is_some_and(|s| !s.is_empty()));
            assert!(share.estimate.is_some(), "say whether it is an estimate");
        }
    }

    #[test]
    fn bad_mixes_are_refused() {
        let bad = [
            r#"{"profiles":{"open":{"share":0.5}}}"#,
            r#"{"profiles":{"open":{"share":1.0}},"port_mapping":{"share":2}}"#,
            r#"{"profiles":{"opne":{"share":1.0}}}"#,
            r#"{"profiles":{"open":{"share":1.0}},"ipv4":{"share":0}}"#,
            r#"{"profiles":{"open":{"shares":1.0}}}"#,
            "not json",
        ];
        for text in bad {
            assert!(parse(text).is_err(), "{text}");
        }
        assert!(parse(r#"{"profiles":{"open":{"share":1.0}}}"#).is_ok());
    }
}
