//! ICE short-term credentials: the username fragment and password (RFC 8445 §5.3, RFC 8839 §5.4).

use core::fmt;

use crate::ice::candidate::{ICE_CHARS, is_ice_char};
use crate::rng::Rng;

/// The shortest username fragment RFC 8839 §5.4 allows.
pub const MIN_UFRAG_LEN: usize = 4;
/// The shortest password RFC 8839 §5.4 allows.
pub const MIN_PWD_LEN: usize = 22;
/// The longest username fragment or password RFC 8839 §5.4 allows.
pub const MAX_CREDENTIAL_LEN: usize = 256;
/// Length of a [`IceCredentials::random`] username fragment (48 bits of entropy).
pub const RANDOM_UFRAG_LEN: usize = 8;
/// Length of a [`IceCredentials::random`] password (144 bits; RFC 8445 asks for at least 128).
pub const RANDOM_PWD_LEN: usize = 24;

/// Why a username fragment or password was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialsError {
    /// The username fragment is not 4 to 256 characters long.
    #[error("ice-ufrag of {0} characters is outside 4..=256")]
    UfragLength(usize),
    /// The username fragment contains a character outside ALPHA / DIGIT / "+" / "/".
    #[error("ice-ufrag contains a character that is not an ice-char")]
    UfragChar,
    /// The password is not 22 to 256 characters long.
    #[error("ice-pwd of {0} characters is outside 22..=256")]
    PwdLength(usize),
    /// The password contains a character outside ALPHA / DIGIT / "+" / "/".
    #[error("ice-pwd contains a character that is not an ice-char")]
    PwdChar,
}

/// One side's ICE username fragment and password, stored inline (no heap).
///
/// `Debug` shows the username fragment but not the password.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IceCredentials {
    ufrag: Text,
    pwd: Text,
}

impl IceCredentials {
    /// Validates a username fragment (4 to 256 ICE-chars) and password (22 to 256 ICE-chars).
    pub fn new(ufrag: &str, pwd: &str) -> Result<IceCredentials, CredentialsError> {
        validate_ufrag(ufrag)?;
        validate_pwd(pwd)?;
        Ok(IceCredentials {
            ufrag: Text::from_valid(ufrag.as_bytes()),
            pwd: Text::from_valid(pwd.as_bytes()),
        })
    }

    /// Fresh credentials drawn from `rng`: an 8-character username fragment and a
    /// 24-character password over the 64 ICE-chars. Same generator state, same credentials.
    pub fn random(rng: &mut Rng) -> IceCredentials {
        let mut ufrag = [0u8; RANDOM_UFRAG_LEN];
        let mut pwd = [0u8; RANDOM_PWD_LEN];
        for b in ufrag.iter_mut().chain(pwd.iter_mut()) {
            *b = ICE_CHARS[(rng.below(ICE_CHARS.len() as u64) & 63) as usize];
        }
        IceCredentials {
            ufrag: Text::from_valid(&ufrag),
            pwd: Text::from_valid(&pwd),
        }
    }

    /// The username fragment.
    pub fn ufrag(&self) -> &str {
        self.ufrag.as_str()
    }

    /// The password.
    pub fn pwd(&self) -> &str {
        self.pwd.as_str()
    }
}

impl fmt::Debug for IceCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IceCredentials")
            .field("ufrag", &self.ufrag())
            .field("pwd", &"<redacted>")
            .finish()
    }
}

/// Checks a username fragment alone (4 to 256 ICE-chars), as trickled signalling delivers it.
pub fn validate_ufrag(ufrag: &str) -> Result<(), CredentialsError> {
    let len = ufrag.len();
    if !(MIN_UFRAG_LEN..=MAX_CREDENTIAL_LEN).contains(&len) {
        return Err(CredentialsError::UfragLength(len));
    }
    if !ufrag.bytes().all(is_ice_char) {
        return Err(CredentialsError::UfragChar);
    }
    Ok(())
}

/// Checks a password alone (22 to 256 ICE-chars), as trickled signalling delivers it.
pub fn validate_pwd(pwd: &str) -> Result<(), CredentialsError> {
    let len = pwd.len();
    if !(MIN_PWD_LEN..=MAX_CREDENTIAL_LEN).contains(&len) {
        return Err(CredentialsError::PwdLength(len));
    }
    if !pwd.bytes().all(is_ice_char) {
        return Err(CredentialsError::PwdChar);
    }
    Ok(())
}

/// Up to 256 validated ASCII bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Text {
    len: u16,
    bytes: [u8; MAX_CREDENTIAL_LEN],
}

impl Text {
    /// Copies at most 256 bytes; callers pass validated ICE-chars.
    fn from_valid(src: &[u8]) -> Text {
        let mut bytes = [0u8; MAX_CREDENTIAL_LEN];
        let mut len = 0u16;
        for (dst, b) in bytes.iter_mut().zip(src) {
            *dst = *b;
            len += 1;
        }
        Text { len, bytes }
    }

    fn as_str(&self) -> &str {
        self.bytes
            .get(..usize::from(self.len))
            .and_then(|b| core::str::from_utf8(b).ok())
            .unwrap_or("")
    }
}
