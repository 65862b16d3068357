//! The keys a Destination signs with, parsed once from their text form.
//!
//! - HMAC-SHA256 (`v1`): `whsec_` + standard base64 (with `=` padding) of 24 to 64 bytes. The
//!   HMAC key is the decoded bytes, as in every Standard Webhooks library.
//! - Ed25519 (`v1a`): `whsk_` + base64 of the 32-byte seed (RFC 8032 private key), whose public
//!   half is published as `whpk_` + base64 of the 32-byte public key. Same encoding as the
//!   Standard Webhooks reference libraries (`ed25519.NewKeyFromSeed` in Go).
//!
//! Parsing does all the decoding, so signing on the delivery path never touches base64 for the
//! key and never re-derives anything.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{GeneralPurpose, GeneralPurposeConfig};
use ed25519_dalek::{SigningKey, VerifyingKey};
use hmac::{Hmac, Mac as _};
use rand::RngCore as _;
use sha2::Sha256;
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use super::{REDACTED, SecretBytes, SecretString};

pub const HMAC_SECRET_PREFIX: &str = "whsec_";
pub const ED25519_SECRET_PREFIX: &str = "whsk_";
pub const ED25519_PUBLIC_PREFIX: &str = "whpk_";

/// Bounds on the decoded length of a `whsec_` secret: fewer than 24 bytes (192 bits) is too weak
/// to accept; more than 64 bytes (SHA-256's block) would only be hashed down by HMAC anyway.
pub const MIN_SECRET_BYTES: usize = 24;
pub const MAX_SECRET_BYTES: usize = 64;
/// Length of the secrets Loft generates.
pub const GENERATED_SECRET_BYTES: usize = 32;

const ED25519_KEY_BYTES: usize = 32;

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// Standard base64 with canonical `=` padding. Decoding tolerates non-zero unused bits in the
/// last character, as Go's `encoding/base64`, Python's `base64` and Node's `Buffer` do: the
/// clients in `clients/` must accept and reject exactly the same strings as Loft.
pub(crate) const BASE64: GeneralPurpose =
    GeneralPurpose::new(&alphabet::STANDARD, GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true));

/// Fills `buf` from the operating system's CSPRNG.
pub(crate) fn random_bytes(buf: &mut [u8]) {
    rand::rngs::OsRng.fill_bytes(buf);
}

/// Why a key string was rejected. Messages name the rule that failed and, for bad base64, the
/// position, but never echo any part of the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} must start with `{expected}`")]
    WrongPrefix { what: &'static str, expected: &'static str },
    #[error("signing key must start with `whsec_` (HMAC-SHA256) or `whsk_` (Ed25519)")]
    UnknownPrefix,
    #[error("{what} is not valid standard base64 after `{prefix}` (alphabet A-Z a-z 0-9 + /, `=` padding): {detail}")]
    InvalidBase64 { what: &'static str, prefix: &'static str, detail: String },
    #[error("{what} must decode to {expected} bytes, not {actual}")]
    WrongLength { what: &'static str, expected: &'static str, actual: usize },
    #[error("a `whsk_` key is private and only signs; verify with its `whpk_` public key")]
    PrivateKeyForVerification,
    #[error("a `whpk_` key is public and only verifies; sign with its `whsk_` private key")]
    PublicKeyForSigning,
    #[error("{what} is not a usable Ed25519 public key")]
    InvalidPublicKey { what: &'static str },
}

/// Decodes standard padded base64, describing a failure by position only. Positions count from 1
/// at the start of the whole string the user typed, prefix included.
pub(crate) fn decode_base64(
    encoded: &str,
    what: &'static str,
    prefix: &'static str,
) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let position = |offset: usize| offset + prefix.len() + 1;
    BASE64.decode(encoded).map(Zeroizing::new).map_err(|e| {
        use base64::DecodeError as D;
        let detail = match e {
            D::InvalidByte(offset, b'=') => {
                format!("misplaced `=` at position {}", position(offset))
            }
            D::InvalidByte(offset, _) => {
                format!("unexpected character at position {}", position(offset))
            }
            D::InvalidLength(_) => "length is not a multiple of 4 (is `=` padding missing?)".to_owned(),
            D::InvalidPadding => "wrong `=` padding".to_owned(),
            // `InvalidLastSymbol` cannot occur with trailing bits allowed.
            _ => "not decodable".to_owned(),
        };
        KeyError::InvalidBase64 { what, prefix, detail }
    })
}

/// Which kind of signature a Destination sends (DESIGN §4 `signature_scheme`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureScheme {
    /// `v1,` + base64 HMAC-SHA256, keyed by a `whsec_` secret.
    HmacSha256,
    /// `v1a,` + base64 Ed25519 signature, by a `whsk_` key; receivers verify with `whpk_`.
    Ed25519,
}

/// A Standard Webhooks HMAC secret, `whsec_` + base64 of 24–64 bytes.
#[derive(Clone)]
pub struct SigningSecret {
    encoded: SecretString,
    key: SecretBytes,
    /// HMAC already keyed with `key`: cloning it per message skips hashing the two key pads,
    /// about two of the five SHA-256 blocks a 100-byte message costs.
    keyed: HmacSha256,
}

impl SigningSecret {
    const WHAT: &'static str = "signing secret";

    pub fn parse(s: &str) -> Result<Self, KeyError> {
        if s.is_empty() {
            return Err(KeyError::Empty { what: Self::WHAT });
        }
        let Some(encoded) = s.strip_prefix(HMAC_SECRET_PREFIX) else {
            return Err(KeyError::WrongPrefix { what: Self::WHAT, expected: HMAC_SECRET_PREFIX });
        };
        let key = decode_base64(encoded, Self::WHAT, HMAC_SECRET_PREFIX)?;
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&key.len()) {
            return Err(KeyError::WrongLength { what: Self::WHAT, expected: "24 to 64", actual: key.len() });
        }
        Ok(Self::from_decoded(SecretString::new(s), key))
    }

    /// A new secret of 32 random bytes.
    pub fn generate() -> Self {
        let mut key = Zeroizing::new(vec![0u8; GENERATED_SECRET_BYTES]);
        random_bytes(&mut key[..]);
        let mut encoded = String::with_capacity(HMAC_SECRET_PREFIX.len() + 44);
        encoded.push_str(HMAC_SECRET_PREFIX);
        BASE64.encode_string(key.as_slice(), &mut encoded);
        Self::from_decoded(SecretString::new(encoded), key)
    }

    /// For keys decoded elsewhere under looser rules (`loft send` signing for another sender's
    /// Standard Webhooks secret); `parse` is the way in for Loft's own secrets.
    pub(crate) fn from_decoded(encoded: SecretString, key: Zeroizing<Vec<u8>>) -> Self {
        let keyed = HmacSha256::new_from_slice(&key).expect("HMAC accepts keys of any length");
        Self { encoded, key: SecretBytes::from(key), keyed }
    }

    /// `whsec_…` + the last 4 characters, the masked form `Get`/`List` answer with.
    pub fn hint(&self) -> String {
        hint(HMAC_SECRET_PREFIX, self.encoded.expose())
    }

    /// The whole `whsec_…` string.
    pub fn expose(&self) -> &str {
        self.encoded.expose()
    }

    /// The decoded HMAC key.
    pub fn key_bytes(&self) -> &[u8] {
        self.key.expose()
    }

    /// An HMAC-SHA256 instance keyed with this secret, ready for `update`.
    pub(crate) fn hmac(&self) -> HmacSha256 {
        self.keyed.clone()
    }
}

impl FromStr for SigningSecret {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        Self::parse(s)
    }
}

impl PartialEq for SigningSecret {
    fn eq(&self, other: &Self) -> bool {
        self.key_bytes().ct_eq(other.key_bytes()).into()
    }
}

impl Eq for SigningSecret {}

/// An Ed25519 signing key, `whsk_` + base64 of its 32-byte seed.
#[derive(Clone)]
pub struct Ed25519SigningKey {
    encoded: SecretString,
    /// Expanded once at parse time (scalar, nonce prefix, public key).
    key: SigningKey,
}

impl Ed25519SigningKey {
    const WHAT: &'static str = "Ed25519 signing key";

    pub fn parse(s: &str) -> Result<Self, KeyError> {
        if s.is_empty() {
            return Err(KeyError::Empty { what: Self::WHAT });
        }
        let Some(encoded) = s.strip_prefix(ED25519_SECRET_PREFIX) else {
            return Err(KeyError::WrongPrefix { what: Self::WHAT, expected: ED25519_SECRET_PREFIX });
        };
        let seed = decode_base64(encoded, Self::WHAT, ED25519_SECRET_PREFIX)?;
        let seed: &[u8; ED25519_KEY_BYTES] = seed.as_slice().try_into().map_err(|_| KeyError::WrongLength {
            what: Self::WHAT,
            expected: "32",
            actual: seed.len(),
        })?;
        Ok(Self { encoded: SecretString::new(s), key: SigningKey::from_bytes(seed) })
    }

    pub fn generate() -> Self {
        let mut seed = Zeroizing::new([0u8; ED25519_KEY_BYTES]);
        random_bytes(&mut seed[..]);
        let mut encoded = String::with_capacity(ED25519_SECRET_PREFIX.len() + 44);
        encoded.push_str(ED25519_SECRET_PREFIX);
        BASE64.encode_string(seed.as_slice(), &mut encoded);
        Self { encoded: SecretString::new(encoded), key: SigningKey::from_bytes(&seed) }
    }

    /// The public half, published on the Destination as `whpk_…`.
    pub fn public_key(&self) -> Ed25519PublicKey {
        Ed25519PublicKey { key: self.key.verifying_key() }
    }

    /// `whsk_…` + the last 4 characters.
    pub fn hint(&self) -> String {
        hint(ED25519_SECRET_PREFIX, self.encoded.expose())
    }

    /// The whole `whsk_…` string.
    pub fn expose(&self) -> &str {
        self.encoded.expose()
    }

    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.key
    }
}

impl FromStr for Ed25519SigningKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        Self::parse(s)
    }
}

impl PartialEq for Ed25519SigningKey {
    fn eq(&self, other: &Self) -> bool {
        self.key.as_bytes().ct_eq(other.key.as_bytes()).into()
    }
}

impl Eq for Ed25519SigningKey {}

/// An Ed25519 public key, `whpk_` + base64 of its 32 bytes. Not secret: `Display` and `Debug`
/// print it in full.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Ed25519PublicKey {
    key: VerifyingKey,
}

impl Ed25519PublicKey {
    const WHAT: &'static str = "Ed25519 public key";

    /// Parses `whpk_…`. Rejects points of small order: a signature by such a "key" can be forged
    /// without any secret.
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        if s.is_empty() {
            return Err(KeyError::Empty { what: Self::WHAT });
        }
        let Some(encoded) = s.strip_prefix(ED25519_PUBLIC_PREFIX) else {
            return Err(KeyError::WrongPrefix { what: Self::WHAT, expected: ED25519_PUBLIC_PREFIX });
        };
        let bytes = decode_base64(encoded, Self::WHAT, ED25519_PUBLIC_PREFIX)?;
        let bytes: &[u8; ED25519_KEY_BYTES] = bytes.as_slice().try_into().map_err(|_| KeyError::WrongLength {
            what: Self::WHAT,
            expected: "32",
            actual: bytes.len(),
        })?;
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| KeyError::InvalidPublicKey { what: Self::WHAT })?;
        if key.is_weak() {
            return Err(KeyError::InvalidPublicKey { what: Self::WHAT });
        }
        Ok(Self { key })
    }

    pub fn as_bytes(&self) -> &[u8; ED25519_KEY_BYTES] {
        self.key.as_bytes()
    }

    pub(crate) fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }
}

impl FromStr for Ed25519PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        Self::parse(s)
    }
}

impl fmt::Display for Ed25519PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(ED25519_PUBLIC_PREFIX)?;
        f.write_str(&BASE64.encode(self.key.as_bytes()))
    }
}

impl fmt::Debug for Ed25519PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ed25519PublicKey({self})")
    }
}

/// One live signing key of a Destination. During a rotation a Destination has several, and each
/// signs every message.
#[derive(Clone, PartialEq, Eq)]
pub enum DestinationKey {
    Hmac(SigningSecret),
    Ed25519(Ed25519SigningKey),
}

impl DestinationKey {
    /// Chooses the kind by prefix: `whsec_` or `whsk_`.
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        if s.starts_with(HMAC_SECRET_PREFIX) {
            SigningSecret::parse(s).map(Self::Hmac)
        } else if s.starts_with(ED25519_SECRET_PREFIX) {
            Ed25519SigningKey::parse(s).map(Self::Ed25519)
        } else if s.is_empty() {
            Err(KeyError::Empty { what: "signing key" })
        } else {
            Err(KeyError::UnknownPrefix)
        }
    }

    pub fn generate(scheme: SignatureScheme) -> Self {
        match scheme {
            SignatureScheme::HmacSha256 => Self::Hmac(SigningSecret::generate()),
            SignatureScheme::Ed25519 => Self::Ed25519(Ed25519SigningKey::generate()),
        }
    }

    pub fn scheme(&self) -> SignatureScheme {
        match self {
            Self::Hmac(_) => SignatureScheme::HmacSha256,
            Self::Ed25519(_) => SignatureScheme::Ed25519,
        }
    }

    pub fn hint(&self) -> String {
        match self {
            Self::Hmac(k) => k.hint(),
            Self::Ed25519(k) => k.hint(),
        }
    }

    /// The whole key string (`whsec_…` or `whsk_…`).
    pub fn expose(&self) -> &str {
        match self {
            Self::Hmac(k) => k.expose(),
            Self::Ed25519(k) => k.expose(),
        }
    }

    /// The `whpk_` key receivers verify with; `None` for HMAC, whose secret is shared.
    pub fn public_key(&self) -> Option<Ed25519PublicKey> {
        match self {
            Self::Hmac(_) => None,
            Self::Ed25519(k) => Some(k.public_key()),
        }
    }
}

impl FromStr for DestinationKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        Self::parse(s)
    }
}

impl From<SigningSecret> for DestinationKey {
    fn from(k: SigningSecret) -> Self {
        Self::Hmac(k)
    }
}

impl From<Ed25519SigningKey> for DestinationKey {
    fn from(k: Ed25519SigningKey) -> Self {
        Self::Ed25519(k)
    }
}

macro_rules! redacted_fmt {
    ($($ty:ty),*) => {$(
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(REDACTED)
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(REDACTED)
            }
        }
    )*};
}

redacted_fmt!(SigningSecret, Ed25519SigningKey, DestinationKey);

fn hint(prefix: &str, encoded: &str) -> String {
    // Key strings are ASCII once parsed, so slicing by bytes cannot split a character.
    let tail = &encoded[encoded.len().saturating_sub(4).max(prefix.len())..];
    format!("{prefix}…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    // 24 bytes: the length Svix and the Standard Webhooks examples use.
    const SVIX_EXAMPLE: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn parses_a_standard_webhooks_secret() {
        let s = SigningSecret::parse(SVIX_EXAMPLE).unwrap();
        assert_eq!(s.key_bytes().len(), 24);
        assert_eq!(s.expose(), SVIX_EXAMPLE);
        assert_eq!(s.hint(), "whsec_…LaSw");
        assert_eq!(s, SVIX_EXAMPLE.parse::<SigningSecret>().unwrap());
    }

    #[test]
    fn secret_errors_are_precise_and_do_not_echo_the_secret() {
        let err = |s: &str| SigningSecret::parse(s).unwrap_err();
        assert_eq!(err(""), KeyError::Empty { what: "signing secret" });
        assert_eq!(
            err("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            KeyError::WrongPrefix { what: "signing secret", expected: "whsec_" }
        );
        assert_eq!(err("whsk_AAAA").to_string(), "signing secret must start with `whsec_`");

        let bad = err("whsec_MfKQ9r8GKYqrTwjU*D8ILPZIo2LaLaSw");
        assert!(matches!(bad, KeyError::InvalidBase64 { .. }), "{bad:?}");
        let message = bad.to_string();
        assert!(message.contains("unexpected character at position 23"), "{message}");
        assert!(!message.contains("MfKQ"), "{message}");

        assert!(matches!(err("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS"), KeyError::InvalidBase64 { .. }));
        // URL-safe alphabet is not standard base64.
        assert!(matches!(err(&format!("whsec_{}", "_-".repeat(16))), KeyError::InvalidBase64 { .. }));

        // 16 and 65 bytes.
        assert_eq!(
            err(&format!("whsec_{}", BASE64.encode([7u8; 16]))),
            KeyError::WrongLength { what: "signing secret", expected: "24 to 64", actual: 16 }
        );
        assert_eq!(
            err(&format!("whsec_{}", BASE64.encode([7u8; 65]))).to_string(),
            "signing secret must decode to 24 to 64 bytes, not 65"
        );
        assert!(SigningSecret::parse(&format!("whsec_{}", BASE64.encode([7u8; 64]))).is_ok());
    }

    #[test]
    fn generated_secrets_round_trip() {
        let a = SigningSecret::generate();
        let b = SigningSecret::generate();
        assert_ne!(a, b);
        assert_eq!(a.key_bytes().len(), 32);
        assert!(a.expose().starts_with("whsec_"));
        assert_eq!(a.expose().len(), 6 + 44);
        let again = SigningSecret::parse(a.expose()).unwrap();
        assert_eq!(again.key_bytes(), a.key_bytes());
        assert_eq!(a.hint(), format!("whsec_…{}", &a.expose()[a.expose().len() - 4..]));
    }

    #[test]
    fn secrets_are_redacted() {
        let s = SigningSecret::parse(SVIX_EXAMPLE).unwrap();
        let k = Ed25519SigningKey::generate();
        let d = DestinationKey::Hmac(s.clone());
        for text in [
            format!("{s:?}"),
            format!("{s}"),
            format!("{k:?}"),
            format!("{k}"),
            format!("{d:?}"),
            format!("{:?}", vec![d.clone()]),
        ] {
            assert!(!text.contains("MfKQ") && !text.contains("whs"), "{text}");
            assert!(text.contains("[redacted]"));
        }
    }

    #[test]
    fn ed25519_keys_round_trip() {
        let k = Ed25519SigningKey::generate();
        assert!(k.expose().starts_with("whsk_"));
        let again = Ed25519SigningKey::parse(k.expose()).unwrap();
        assert_eq!(again, k);
        let public = k.public_key();
        let text = public.to_string();
        assert!(text.starts_with("whpk_") && text.len() == 5 + 44, "{text}");
        assert_eq!(Ed25519PublicKey::parse(&text).unwrap(), public);
        assert_eq!(format!("{public:?}"), format!("Ed25519PublicKey({text})"));
        assert!(k.hint().starts_with("whsk_…"));
    }

    #[test]
    fn ed25519_public_key_matches_rfc8032() {
        // RFC 8032 §7.1, TEST 1.
        let seed = hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60").unwrap();
        let k = Ed25519SigningKey::parse(&format!("whsk_{}", BASE64.encode(&seed))).unwrap();
        assert_eq!(
            hex::encode(k.public_key().as_bytes()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
    }

    #[test]
    fn ed25519_errors() {
        assert_eq!(
            Ed25519SigningKey::parse(&format!("whsk_{}", BASE64.encode([1u8; 64]))).unwrap_err(),
            KeyError::WrongLength { what: "Ed25519 signing key", expected: "32", actual: 64 }
        );
        assert!(matches!(
            Ed25519SigningKey::parse("whsec_AAAA").unwrap_err(),
            KeyError::WrongPrefix { expected: "whsk_", .. }
        ));
        // The identity point has small order: anyone could "sign" for it.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            Ed25519PublicKey::parse(&format!("whpk_{}", BASE64.encode(identity))).unwrap_err(),
            KeyError::InvalidPublicKey { what: "Ed25519 public key" }
        );
    }

    #[test]
    fn destination_key_chooses_by_prefix() {
        assert_eq!(DestinationKey::parse(SVIX_EXAMPLE).unwrap().scheme(), SignatureScheme::HmacSha256);
        let ed = DestinationKey::generate(SignatureScheme::Ed25519);
        assert_eq!(DestinationKey::parse(ed.expose()).unwrap(), ed);
        assert!(ed.public_key().is_some());
        assert!(DestinationKey::generate(SignatureScheme::HmacSha256).public_key().is_none());
        assert_eq!(DestinationKey::parse("whpk_AAAA").unwrap_err(), KeyError::UnknownPrefix);
        assert_eq!(DestinationKey::parse("").unwrap_err(), KeyError::Empty { what: "signing key" });
        assert_eq!(DestinationKey::parse(SVIX_EXAMPLE).unwrap().hint(), "whsec_…LaSw");
    }
}
