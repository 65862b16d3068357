//! The API key secret: format, generation, hashing.

use std::fmt;

use rand::Rng;
use rand::distributions::Alphanumeric;
use sha2::{Digest, Sha256};

const PREFIX: &str = "loft_";
const BODY_LEN: usize = 32;
/// Characters of the key kept in clear for display: `loft_` and the first 7 of the body.
const DISPLAY_LEN: usize = PREFIX.len() + 7;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an API key is `loft_` followed by 32 letters and digits")]
pub struct KeyFormatError;

/// A plaintext API key. Shown once, at creation; `Debug` redacts it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeySecret(String);

impl ApiKeySecret {
    pub fn generate() -> Self {
        let body: String = rand::thread_rng().sample_iter(&Alphanumeric).take(BODY_LEN).map(char::from).collect();
        Self(format!("{PREFIX}{body}"))
    }

    pub fn parse(s: &str) -> Result<Self, KeyFormatError> {
        let body = s.strip_prefix(PREFIX).ok_or(KeyFormatError)?;
        if body.len() != BODY_LEN || !body.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(KeyFormatError);
        }
        Ok(Self(s.to_owned()))
    }

    /// The stored form: hex SHA-256. The key has ~190 bits of entropy, so a fast hash is enough.
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }

    /// What lists show, e.g. `loft_AbC12de`.
    pub fn display_prefix(&self) -> &str {
        &self.0[..DISPLAY_LEN]
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeySecret({}…[redacted])", self.display_prefix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_redact() {
        let k = ApiKeySecret::generate();
        assert_eq!(k.expose().len(), 37);
        assert_eq!(ApiKeySecret::parse(k.expose()).unwrap(), k);
        assert!(!format!("{k:?}").contains(&k.expose()[12..]));
        assert_eq!(k.hash().len(), 64);
        assert_ne!(k.hash(), ApiKeySecret::generate().hash());
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "loft_",
            "loft_short",
            "LOFT_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "loft_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!",
        ] {
            assert_eq!(ApiKeySecret::parse(bad), Err(KeyFormatError), "{bad}");
        }
    }
}
