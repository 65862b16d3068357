//! Secrets at rest: AES-256-GCM under the master key.
//!
//! A sealed value is `version (1 byte) ‖ nonce (12 bytes) ‖ ciphertext+tag`. The version byte
//! leaves room for key rotation without guessing at the format of old rows.

use std::fmt;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, OsRng};
use aes_gcm::{AeadCore, Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

const VERSION: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("master key must be base64 of exactly 32 bytes")]
    BadMasterKey,
    #[error("sealed secret is corrupt or was sealed under another master key")]
    Unseal,
    #[error("reading or writing the master key file {path}: {source}")]
    KeyFile { path: String, source: std::io::Error },
}

/// Seals and opens secrets with the master key.
#[derive(Clone)]
pub struct Cipher {
    aead: Aes256Gcm,
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cipher([redacted])")
    }
}

impl Cipher {
    /// From `LOFT_MASTER_KEY`: base64 of 32 bytes.
    pub fn from_base64(key: &str) -> Result<Self, CryptoError> {
        let bytes = STANDARD.decode(key.trim()).map_err(|_| CryptoError::BadMasterKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::BadMasterKey)?;
        Ok(Self { aead: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key)) })
    }

    /// Reads the key file, creating it (mode 0600) with a fresh key when it does not exist.
    /// Returns whether it was created, so the caller can warn that losing it loses the secrets.
    pub fn load_or_create_file(path: &Path) -> Result<(Self, bool), CryptoError> {
        let err = |source| CryptoError::KeyFile { path: path.display().to_string(), source };
        match std::fs::read_to_string(path) {
            Ok(text) => Ok((Self::from_base64(&text)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Aes256Gcm::generate_key(OsRng);
                let text = STANDARD.encode(key);
                write_private(path, text.as_bytes()).map_err(err)?;
                Ok((Self::from_base64(&text)?, true))
            }
            Err(e) => Err(err(e)),
        }
    }

    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ciphertext =
            self.aead.encrypt(&nonce, plaintext).expect("AES-GCM encryption cannot fail for in-memory buffers");
        let mut out = Vec::with_capacity(1 + nonce.len() + ciphertext.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out
    }

    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < 1 + 12 + 16 || sealed[0] != VERSION {
            return Err(CryptoError::Unseal);
        }
        let (nonce, ciphertext) = sealed[1..].split_at(12);
        self.aead.decrypt(Nonce::from_slice(nonce), ciphertext).map_err(|_| CryptoError::Unseal)
    }

    pub fn seal_str(&self, plaintext: &str) -> Vec<u8> {
        self.seal(plaintext.as_bytes())
    }

    pub fn open_str(&self, sealed: &[u8]) -> Result<String, CryptoError> {
        String::from_utf8(self.open(sealed)?).map_err(|_| CryptoError::Unseal)
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let (c, created) = Cipher::load_or_create_file(&path).unwrap();
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let sealed = c.seal_str("whsec_abc");
        assert!(!sealed.windows(9).any(|w| w == b"whsec_abc"));
        let (again, created) = Cipher::load_or_create_file(&path).unwrap();
        assert!(!created);
        assert_eq!(again.open_str(&sealed).unwrap(), "whsec_abc");
        let other = Cipher::from_base64(&STANDARD.encode([7u8; 32])).unwrap();
        assert!(other.open(&sealed).is_err());
    }
}
