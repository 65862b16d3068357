//! Webhook signing and verification.
//!
//! - [`keys`]: the parsed key types a Destination signs with (`whsec_` HMAC secrets, `whsk_`
//!   Ed25519 keys) and their public halves (`whpk_`).
//! - [`standard`]: Standard Webhooks (<https://www.standardwebhooks.com>) signing for outbound
//!   deliveries, its verification, and the legacy `X-Loft-Signature` header.
//! - [`providers`]: verification of inbound requests signed the way Stripe, GitHub, Shopify or a
//!   generic HMAC sender sign them, and the reverse (used by `loft send` and by tests).
//!
//! Nothing here logs, and no error message carries secret material.

pub mod keys;
pub mod providers;
pub mod standard;

use std::fmt;

use zeroize::Zeroizing;

pub use keys::{DestinationKey, Ed25519PublicKey, Ed25519SigningKey, KeyError, SignatureScheme, SigningSecret};
pub use providers::{
    HeaderLookup, InboundError, InboundVerifier, Scheme, sign_outbound_as, sign_outbound_as_with_id, verify_inbound,
};
pub use standard::{DEFAULT_TOLERANCE, VerifyError, VerifyKey, WebhookHeaders, legacy_signature, sign, verify};

/// What `Debug` and `Display` print for any secret.
pub const REDACTED: &str = "[redacted]";

/// A secret string (an encoded key, a source secret). It is wiped from memory on drop and never
/// printed: `Debug` and `Display` write `[redacted]`, so a secret inside a struct that derives
/// `Debug` cannot leak into a log line. The one way to read it is [`SecretString::expose`].
#[derive(Clone, Default)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// The secret itself. Call it only where the value is used (signing, encrypting at rest,
    /// the one RPC answer that returns a new secret).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl From<&str> for SecretString {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Secret bytes (decoded key material); wiped on drop, never printed.
#[derive(Clone)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    pub fn new(value: Vec<u8>) -> Self {
        Self(Zeroizing::new(value))
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl From<Zeroizing<Vec<u8>>> for SecretBytes {
    fn from(value: Zeroizing<Vec<u8>>) -> Self {
        Self(value)
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_wrappers_redact_debug_and_display() {
        let s = SecretString::new("whsec_c2VjcmV0");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(&s)), "Some([redacted])");
        assert_eq!(s.expose(), "whsec_c2VjcmV0");

        let b = SecretBytes::new(b"key".to_vec());
        assert_eq!(format!("{b:?} {b}"), "[redacted] [redacted]");
        assert_eq!(b.expose(), b"key");
    }
}
