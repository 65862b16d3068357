//! Secrets as stored: sealed under the master key, plus a hint safe to show.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::crypto::{Cipher, CryptoError};

/// A write-only secret at rest. `Debug` shows only the hint.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret {
    #[serde(serialize_with = "to_base64", deserialize_with = "from_base64")]
    sealed: Vec<u8>,
    /// What `Get`/`List` show instead of the secret, e.g. `whsec_…abcd`.
    pub hint: String,
}

impl SealedSecret {
    pub fn seal(cipher: &Cipher, plaintext: &str) -> Self {
        Self { sealed: cipher.seal_str(plaintext), hint: hint(plaintext) }
    }

    pub fn open(&self, cipher: &Cipher) -> Result<String, CryptoError> {
        cipher.open_str(&self.sealed)
    }
}

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealedSecret({})", self.hint)
    }
}

/// A hint: the conventional prefix (up to and including the first `_`, if short) and the last
/// four characters, e.g. `whsec_…abcd`; short secrets show only `…` and their length class.
pub fn hint(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() < 12 {
        return "…".to_owned();
    }
    let prefix: String = match secret.find('_') {
        Some(i) if i <= 6 => secret[..=i].to_owned(),
        _ => String::new(),
    };
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{prefix}…{tail}")
}

fn to_base64<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&STANDARD.encode(bytes))
}

fn from_base64<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let s = String::deserialize(d)?;
    STANDARD.decode(s).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_reveal_little() {
        assert_eq!(hint("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), "whsec_…LaSw");
        assert_eq!(hint("hunter2"), "…");
        assert_eq!(hint("averyveryverylongpassword"), "…word");
    }

    #[test]
    fn serializes_without_plaintext() {
        let cipher = Cipher::from_base64(&STANDARD.encode([1u8; 32])).unwrap();
        let s = SealedSecret::seal(&cipher, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let json = serde_json::to_string(&s).unwrap();
        assert!(!json.contains("MfKQ9r8"));
        let back: SealedSecret = serde_json::from_str(&json).unwrap();
        assert_eq!(back.open(&cipher).unwrap(), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        assert!(!format!("{back:?}").contains("MfKQ9r8"));
    }
}
