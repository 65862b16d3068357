//! Inbound signature verification for Sources (DESIGN §4 `signature{scheme, secret, header}`,
//! §7), and the reverse, signing a body the way each provider would (`loft send`, tests).
//!
//! Each scheme uses its secret the way the sender does:
//!
//! | scheme | header | signed bytes | key |
//! |---|---|---|---|
//! | Standard Webhooks | `webhook-id`, `-timestamp`, `-signature` | `{id}.{ts}.{body}` | base64-decoded after `whsec_` (or a `whpk_` key) |
//! | GitHub | `X-Hub-Signature-256: sha256=<hex>` | body | secret as UTF-8 |
//! | Stripe | `Stripe-Signature: t=<unix>,v1=<hex>…` | `{t}.{body}` | the whole `whsec_…` string as UTF-8 (Stripe never decodes it) |
//! | Shopify | `X-Shopify-Hmac-Sha256: <base64>` | body | secret as UTF-8 |
//! | generic hex / base64 | the configured header, optional `sha256=` | body | secret as UTF-8 |
//!
//! All comparisons of secret-derived values are constant-time. Schemes with a timestamp
//! (Standard Webhooks, Stripe) reject it more than `tolerance` away in either direction, checked
//! before the signature. (Stripe's own libraries only reject old timestamps; a timestamp far in
//! the future is just as much a replay hazard, so Loft refuses both.)

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use hmac::Mac as _;
use subtle::ConstantTimeEq as _;

use super::keys::{
    BASE64, DestinationKey, ED25519_PUBLIC_PREFIX, ED25519_SECRET_PREFIX, Ed25519SigningKey, HMAC_SECRET_PREFIX,
    HmacSha256, KeyError, SigningSecret, decode_base64, random_bytes,
};
use super::standard::{self, Skew, VerifyError, VerifyKey, WebhookHeaders};
use super::{REDACTED, SecretString};

pub const GITHUB_HEADER: &str = "X-Hub-Signature-256";
pub const STRIPE_HEADER: &str = "Stripe-Signature";
pub const SHOPIFY_HEADER: &str = "X-Shopify-Hmac-Sha256";

/// How a Source's senders sign their requests.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scheme {
    StandardWebhooks,
    Github,
    Stripe,
    Shopify,
    /// Lowercase or uppercase hex HMAC-SHA256 of the body in `header`.
    HmacSha256Hex {
        header: String,
    },
    /// Standard base64 HMAC-SHA256 of the body in `header`.
    HmacSha256Base64 {
        header: String,
    },
}

impl Scheme {
    /// The header that carries the signature.
    pub fn signature_header(&self) -> &str {
        match self {
            Self::StandardWebhooks => standard::HEADER_SIGNATURE,
            Self::Github => GITHUB_HEADER,
            Self::Stripe => STRIPE_HEADER,
            Self::Shopify => SHOPIFY_HEADER,
            Self::HmacSha256Hex { header } | Self::HmacSha256Base64 { header } => header,
        }
    }

    /// Whether requests of this scheme carry a timestamp that is checked against a tolerance.
    pub fn has_timestamp(&self) -> bool {
        matches!(self, Self::StandardWebhooks | Self::Stripe)
    }
}

/// Case-insensitive header access, so this module needs no HTTP crate. Implement it for the
/// ingest listener's header map; with a repeated header, return the first value.
pub trait HeaderLookup {
    fn get(&self, name: &str) -> Option<&str>;
}

impl<K: AsRef<str>, V: AsRef<str>> HeaderLookup for [(K, V)] {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(k, _)| k.as_ref().eq_ignore_ascii_case(name)).map(|(_, v)| v.as_ref())
    }
}

impl<K: AsRef<str>, V: AsRef<str>> HeaderLookup for Vec<(K, V)> {
    fn get(&self, name: &str) -> Option<&str> {
        HeaderLookup::get(self.as_slice(), name)
    }
}

/// The ingest listener's headers. A value that is not visible ASCII counts as absent, since no
/// signature header can hold one.
impl HeaderLookup for ::http::HeaderMap {
    fn get(&self, name: &str) -> Option<&str> {
        ::http::HeaderMap::get(self, name).and_then(|v| v.to_str().ok())
    }
}

impl<T: HeaderLookup + ?Sized> HeaderLookup for &T {
    fn get(&self, name: &str) -> Option<&str> {
        (**self).get(name)
    }
}

/// Why an inbound request failed verification. Every variant is answered `401`; the message says
/// what was wrong with the request and never includes the secret or the expected signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InboundError {
    #[error("missing `{0}` header")]
    MissingHeader(String),
    #[error("malformed `{header}` header: {reason}")]
    MalformedHeader { header: String, reason: &'static str },
    #[error("signature does not match")]
    SignatureMismatch,
    #[error("timestamp is older than the allowed tolerance")]
    TimestampTooOld,
    #[error("timestamp is further in the future than the allowed tolerance")]
    TimestampInFuture,
    /// The Source's own secret is unusable (only a Standard Webhooks secret can be: it must be
    /// base64). Validate with [`InboundVerifier::new`] when the Source is saved so this never
    /// reaches a request.
    #[error("source secret is invalid: {0}")]
    InvalidSecret(#[from] KeyError),
}

impl From<VerifyError> for InboundError {
    fn from(e: VerifyError) -> Self {
        let malformed = |header: &str, reason| Self::MalformedHeader { header: header.to_owned(), reason };
        match e {
            VerifyError::MissingHeader(name) => Self::MissingHeader(name.to_owned()),
            VerifyError::MalformedTimestamp => {
                malformed(standard::HEADER_TIMESTAMP, "not an integer number of seconds")
            }
            VerifyError::MalformedSignature => malformed(standard::HEADER_SIGNATURE, "not `version,base64` entries"),
            VerifyError::TimestampTooOld => Self::TimestampTooOld,
            VerifyError::TimestampInFuture => Self::TimestampInFuture,
            VerifyError::SignatureMismatch => Self::SignatureMismatch,
        }
    }
}

/// A Source's scheme with its secret already turned into a key, so a request costs one HMAC and
/// no parsing of the secret. Build it when the Source is loaded (or saved, to reject a bad secret
/// early).
#[derive(Clone)]
pub struct InboundVerifier {
    scheme: Scheme,
    check: Check,
}

#[derive(Clone)]
enum Check {
    StandardWebhooks(VerifyKey),
    Stripe(HmacSha256),
    /// An HMAC of the body alone, in the scheme's signature header.
    Body {
        keyed: HmacSha256,
        encoding: TagEncoding,
        sha256_prefix: Prefix,
    },
}

#[derive(Clone, Copy)]
enum TagEncoding {
    /// 64 hex digits, either case.
    Hex,
    /// Standard padded base64 of the 32 bytes.
    Base64,
}

/// Whether the tag is preceded by `sha256=`.
#[derive(Clone, Copy)]
enum Prefix {
    Required,
    Optional,
    Absent,
}

impl std::fmt::Debug for InboundVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundVerifier").field("scheme", &self.scheme).field("secret", &REDACTED).finish()
    }
}

impl InboundVerifier {
    /// Fails for an empty secret, and for a Standard Webhooks secret that is not a `whpk_` key or
    /// base64 (see [`VerifyKey::parse`]); other schemes take any string as UTF-8 bytes.
    pub fn new(scheme: Scheme, secret: &str) -> Result<Self, KeyError> {
        if secret.is_empty() {
            return Err(KeyError::Empty { what: "source secret" });
        }
        let body = |encoding, sha256_prefix| Check::Body { keyed: keyed(secret.as_bytes()), encoding, sha256_prefix };
        let check = match scheme {
            Scheme::StandardWebhooks => Check::StandardWebhooks(VerifyKey::parse(secret)?),
            Scheme::Stripe => Check::Stripe(keyed(secret.as_bytes())),
            Scheme::Github => body(TagEncoding::Hex, Prefix::Required),
            Scheme::Shopify => body(TagEncoding::Base64, Prefix::Absent),
            Scheme::HmacSha256Hex { .. } => body(TagEncoding::Hex, Prefix::Optional),
            Scheme::HmacSha256Base64 { .. } => body(TagEncoding::Base64, Prefix::Optional),
        };
        Ok(Self { scheme, check })
    }

    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    pub fn verify(
        &self,
        headers: &(impl HeaderLookup + ?Sized),
        body: &[u8],
        now: SystemTime,
        tolerance: Duration,
    ) -> Result<(), InboundError> {
        match &self.check {
            Check::StandardWebhooks(key) => {
                let get = |name| headers.get(name).unwrap_or("");
                let received = WebhookHeaders {
                    id: get(standard::HEADER_ID),
                    timestamp: get(standard::HEADER_TIMESTAMP),
                    signature: get(standard::HEADER_SIGNATURE),
                };
                let keys = std::slice::from_ref(key);
                Ok(standard::verify(keys, &received, body, now, tolerance)?)
            }
            Check::Stripe(keyed) => verify_stripe(keyed, headers, body, now, tolerance),
            Check::Body { keyed, encoding, sha256_prefix } => {
                let header = self.scheme.signature_header();
                let value = required(headers, header)?;
                let tag = match (sha256_prefix, value.strip_prefix("sha256=")) {
                    (Prefix::Required | Prefix::Optional, Some(tag)) => tag,
                    (Prefix::Required, None) => {
                        return Err(InboundError::MalformedHeader {
                            header: header.to_owned(),
                            reason: "must start with `sha256=`",
                        });
                    }
                    (Prefix::Optional | Prefix::Absent, _) => value,
                };
                let tag = match encoding {
                    TagEncoding::Hex => decode_hex_tag(tag, header)?,
                    TagEncoding::Base64 => decode_base64_tag(tag, header)?,
                };
                let mut mac = keyed.clone();
                mac.update(body);
                if bool::from(mac.finalize().into_bytes().as_slice().ct_eq(&tag)) {
                    Ok(())
                } else {
                    Err(InboundError::SignatureMismatch)
                }
            }
        }
    }
}

/// Verifies one inbound request. Parses `secret` on every call; on the ingest path keep an
/// [`InboundVerifier`] per Source instead.
pub fn verify_inbound(
    scheme: &Scheme,
    secret: &str,
    headers: &(impl HeaderLookup + ?Sized),
    body: &[u8],
    now: SystemTime,
    tolerance: Duration,
) -> Result<(), InboundError> {
    InboundVerifier::new(scheme.clone(), secret)?.verify(headers, body, now, tolerance)
}

/// `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…][,v0=…]`: the request passes when any `v1`
/// is the HMAC of `"{t}.{body}"`. Other keys (`v0`, Stripe's test-mode scheme) are ignored, as
/// Stripe's libraries do.
fn verify_stripe(
    mac: &HmacSha256,
    headers: &(impl HeaderLookup + ?Sized),
    body: &[u8],
    now: SystemTime,
    tolerance: Duration,
) -> Result<(), InboundError> {
    let value = required(headers, STRIPE_HEADER)?;
    let malformed = |reason| InboundError::MalformedHeader { header: STRIPE_HEADER.to_owned(), reason };
    let mut timestamp: Option<&str> = None;
    let mut any_v1 = false;
    for item in value.split(',') {
        match item.trim().split_once('=') {
            Some(("t", t)) => timestamp = Some(t),
            Some(("v1", _)) => any_v1 = true,
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or_else(|| malformed("no `t=` timestamp"))?;
    let seconds = standard::parse_timestamp(timestamp).ok_or_else(|| malformed("`t=` is not unix seconds"))?;
    if !any_v1 {
        return Err(malformed("no `v1=` signature"));
    }
    standard::check_timestamp(seconds, now, tolerance).map_err(|skew| match skew {
        Skew::TooOld => InboundError::TimestampTooOld,
        Skew::InFuture => InboundError::TimestampInFuture,
    })?;

    let mut mac = mac.clone();
    // Signed as the header spelled it, like Stripe's libraries.
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    let matched = value.split(',').filter_map(|item| item.trim().strip_prefix("v1=")).any(|hex| {
        let mut tag = [0u8; 32];
        hex::decode_to_slice(hex, &mut tag).is_ok() && bool::from(expected.as_slice().ct_eq(&tag))
    });
    if matched { Ok(()) } else { Err(InboundError::SignatureMismatch) }
}

/// The headers a provider would send with `body`, signed with `secret` at `now` (for `loft send`
/// and tests). Standard Webhooks gets a fresh random `msg_…` id.
pub fn sign_outbound_as(
    scheme: &Scheme,
    secret: &str,
    body: &[u8],
    now: SystemTime,
) -> Result<Vec<(String, String)>, KeyError> {
    let mut id_bytes = [0u8; 16];
    random_bytes(&mut id_bytes);
    let msg_id = format!("msg_{}", hex::encode(id_bytes));
    sign_outbound_as_with_id(scheme, secret, &msg_id, body, now)
}

/// [`sign_outbound_as`] with a chosen Standard Webhooks `webhook-id` (ignored by other schemes).
/// Standard Webhooks signs with `v1` (HMAC) for a `whsec_` secret, `v1a` for a `whsk_` key.
pub fn sign_outbound_as_with_id(
    scheme: &Scheme,
    secret: &str,
    msg_id: &str,
    body: &[u8],
    now: SystemTime,
) -> Result<Vec<(String, String)>, KeyError> {
    // A clock before 1970 would make a timestamp every receiver refuses as malformed.
    let seconds = standard::unix_seconds(now).max(0);
    let header = |name: &str, value: String| (name.to_owned(), value);
    if let Scheme::StandardWebhooks = scheme {
        let key = standard_signing_key(secret)?;
        let signature = standard::sign(std::slice::from_ref(&key), msg_id, seconds, body);
        return Ok(vec![
            header(standard::HEADER_ID, msg_id.to_owned()),
            header(standard::HEADER_TIMESTAMP, seconds.to_string()),
            header(standard::HEADER_SIGNATURE, signature),
        ]);
    }
    if secret.is_empty() {
        return Err(KeyError::Empty { what: "source secret" });
    }
    let mut mac = keyed(secret.as_bytes());
    let name = scheme.signature_header();
    let value = match scheme {
        Scheme::Stripe => {
            mac.update(seconds.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            format!("t={seconds},v1={}", hex::encode(mac.finalize().into_bytes()))
        }
        Scheme::Github => {
            mac.update(body);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        }
        Scheme::HmacSha256Hex { .. } => {
            mac.update(body);
            hex::encode(mac.finalize().into_bytes())
        }
        Scheme::Shopify | Scheme::HmacSha256Base64 { .. } => {
            mac.update(body);
            BASE64.encode(mac.finalize().into_bytes())
        }
        Scheme::StandardWebhooks => unreachable!("handled above"),
    };
    Ok(vec![header(name, value)])
}

/// A sender's Standard Webhooks key: `whsk_` for Ed25519, otherwise an HMAC secret decoded like
/// [`VerifyKey::parse`] does (prefix optional, any length), so whatever a Source accepts, `loft
/// send` can sign for.
fn standard_signing_key(secret: &str) -> Result<DestinationKey, KeyError> {
    if secret.starts_with(ED25519_SECRET_PREFIX) {
        return Ed25519SigningKey::parse(secret).map(DestinationKey::Ed25519);
    }
    if secret.starts_with(ED25519_PUBLIC_PREFIX) {
        return Err(KeyError::PublicKeyForSigning);
    }
    const WHAT: &str = "webhook secret";
    let encoded = secret.strip_prefix(HMAC_SECRET_PREFIX).unwrap_or(secret);
    if encoded.is_empty() {
        return Err(KeyError::Empty { what: WHAT });
    }
    let prefix = if encoded.len() < secret.len() { HMAC_SECRET_PREFIX } else { "" };
    let key = decode_base64(encoded, WHAT, prefix)?;
    Ok(DestinationKey::Hmac(SigningSecret::from_decoded(SecretString::new(secret), key)))
}

fn keyed(key: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length")
}

fn required<'h>(headers: &'h (impl HeaderLookup + ?Sized), name: &str) -> Result<&'h str, InboundError> {
    match headers.get(name) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(InboundError::MissingHeader(name.to_owned())),
    }
}

fn decode_hex_tag(hex: &str, header: &str) -> Result<[u8; 32], InboundError> {
    let mut tag = [0u8; 32];
    hex::decode_to_slice(hex, &mut tag)
        .map_err(|_| InboundError::MalformedHeader { header: header.to_owned(), reason: "not 64 hex digits" })?;
    Ok(tag)
}

fn decode_base64_tag(b64: &str, header: &str) -> Result<[u8; 32], InboundError> {
    let malformed =
        || InboundError::MalformedHeader { header: header.to_owned(), reason: "not standard base64 of 32 bytes" };
    if b64.len() != 44 {
        return Err(malformed());
    }
    // Room for whole final quads: the decoder counts 3 bytes per 4 characters.
    let mut buf = [0u8; 33];
    let n = BASE64.decode_slice(b64, &mut buf).map_err(|_| malformed())?;
    buf[..n].try_into().map_err(|_| malformed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    const NOW: u64 = 1_700_000_000;
    const BODY: &[u8] = br#"{"id":"evt_1","type":"invoice.paid"}"#;
    const TOL: Duration = Duration::from_secs(300);

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn all_schemes() -> Vec<Scheme> {
        vec![
            Scheme::StandardWebhooks,
            Scheme::Github,
            Scheme::Stripe,
            Scheme::Shopify,
            Scheme::HmacSha256Hex { header: "X-Signature".into() },
            Scheme::HmacSha256Base64 { header: "X-Body-Signature".into() },
        ]
    }

    fn secret_for(scheme: &Scheme) -> &'static str {
        match scheme {
            Scheme::StandardWebhooks | Scheme::Stripe => "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            _ => "It's a Secret to Everybody",
        }
    }

    #[test]
    fn every_scheme_verifies_what_it_signs() {
        for scheme in all_schemes() {
            let secret = secret_for(&scheme);
            let headers = sign_outbound_as(&scheme, secret, BODY, at(NOW)).unwrap();
            verify_inbound(&scheme, secret, &headers, BODY, at(NOW + 10), TOL)
                .unwrap_or_else(|e| panic!("{scheme:?}: {e}"));
            assert_eq!(
                verify_inbound(&scheme, secret, &headers, b"{}", at(NOW), TOL),
                Err(InboundError::SignatureMismatch),
                "{scheme:?}"
            );
            assert_eq!(
                verify_inbound(&scheme, "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &headers, BODY, at(NOW), TOL),
                Err(InboundError::SignatureMismatch),
                "{scheme:?}"
            );
            assert_eq!(
                verify_inbound(&scheme, secret, &Vec::<(String, String)>::new(), BODY, at(NOW), TOL),
                Err(InboundError::MissingHeader(
                    if scheme == Scheme::StandardWebhooks { "webhook-id" } else { scheme.signature_header() }
                        .to_owned()
                )),
                "{scheme:?}"
            );
        }
    }

    #[test]
    fn http_header_map_lookup() {
        let secret = "It's a Secret to Everybody";
        let signed = sign_outbound_as(&Scheme::Github, secret, BODY, at(NOW)).unwrap();
        let mut map = http::HeaderMap::new();
        map.insert("x-hub-signature-256", signed[0].1.parse().unwrap());
        verify_inbound(&Scheme::Github, secret, &map, BODY, at(NOW), TOL).unwrap();
        map.insert("x-hub-signature-256", http::HeaderValue::from_bytes(b"sha256=\xff").unwrap());
        assert_eq!(
            verify_inbound(&Scheme::Github, secret, &map, BODY, at(NOW), TOL),
            Err(InboundError::MissingHeader(GITHUB_HEADER.into()))
        );
    }

    #[test]
    fn header_names_match_case_insensitively() {
        let headers = [("x-hub-signature-256", "sha256=00")];
        let err = verify_inbound(&Scheme::Github, "s", &headers[..], BODY, at(NOW), TOL).unwrap_err();
        assert!(matches!(err, InboundError::MalformedHeader { .. }), "{err:?}");
    }

    #[test]
    fn github_matches_its_documented_example() {
        // docs.github.com, "Validating webhook deliveries": secret "It's a Secret to Everybody",
        // payload "Hello, World!".
        let headers =
            [("X-Hub-Signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")];
        verify_inbound(&Scheme::Github, "It's a Secret to Everybody", &headers[..], b"Hello, World!", at(NOW), TOL)
            .unwrap();
        let unprefixed = [("X-Hub-Signature-256", "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")];
        assert_eq!(
            verify_inbound(&Scheme::Github, "x", &unprefixed[..], b"", at(NOW), TOL),
            Err(InboundError::MalformedHeader { header: GITHUB_HEADER.into(), reason: "must start with `sha256=`" })
        );
        let short = [("X-Hub-Signature-256", "sha256=757107")];
        assert!(matches!(
            verify_inbound(&Scheme::Github, "x", &short[..], b"", at(NOW), TOL),
            Err(InboundError::MalformedHeader { reason: "not 64 hex digits", .. })
        ));
    }

    #[test]
    fn stripe_keys_with_the_whole_secret_string() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let mut mac = keyed(secret.as_bytes());
        mac.update(format!("{NOW}.").as_bytes());
        mac.update(BODY);
        let good = hex::encode(mac.finalize().into_bytes());
        let check = |value: &str, now: u64| {
            verify_inbound(&Scheme::Stripe, secret, &[(STRIPE_HEADER, value)][..], BODY, at(now), TOL)
        };

        assert_eq!(check(&format!("t={NOW},v1={good}"), NOW), Ok(()));
        // Rotation: any v1 may match; v0 and unknown keys are ignored; order is free.
        let zeros = "0".repeat(64);
        assert_eq!(check(&format!("v1={zeros},t={NOW},v1={good},v0={zeros},x=1"), NOW), Ok(()));
        assert_eq!(check(&format!("t={NOW}, v1={}", good.to_uppercase()), NOW), Ok(()));
        assert_eq!(check(&format!("t={NOW},v1={zeros}"), NOW), Err(InboundError::SignatureMismatch));
        assert_eq!(
            check(&format!("t={NOW},v0={good}"), NOW),
            Err(InboundError::MalformedHeader { header: STRIPE_HEADER.into(), reason: "no `v1=` signature" })
        );
        assert!(matches!(
            check(&format!("v1={good}"), NOW),
            Err(InboundError::MalformedHeader { reason: "no `t=` timestamp", .. })
        ));
        assert!(matches!(check(&format!("t=soon,v1={good}"), NOW), Err(InboundError::MalformedHeader { .. })));
        assert_eq!(check(&format!("t={NOW},v1={good}"), NOW + 301), Err(InboundError::TimestampTooOld));
        assert_eq!(check(&format!("t={NOW},v1={good}"), NOW - 301), Err(InboundError::TimestampInFuture));
        assert_eq!(check(&format!("t={NOW},v1={good}"), NOW + 300), Ok(()));

        // Decoding the secret, as Standard Webhooks does, must not verify.
        let decoded = BASE64.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let mut mac = keyed(&decoded);
        mac.update(format!("{NOW}.").as_bytes());
        mac.update(BODY);
        let wrong = hex::encode(mac.finalize().into_bytes());
        assert_eq!(check(&format!("t={NOW},v1={wrong}"), NOW), Err(InboundError::SignatureMismatch));
    }

    #[test]
    fn shopify_and_generic_schemes() {
        let secret = "hush";
        let mut mac = keyed(secret.as_bytes());
        mac.update(BODY);
        let tag = mac.finalize().into_bytes();
        let b64 = BASE64.encode(tag);
        let hex = hex::encode(tag);

        let run = |scheme: &Scheme, name: &str, value: &str| {
            verify_inbound(scheme, secret, &[(name, value)][..], BODY, at(NOW), TOL)
        };
        assert_eq!(run(&Scheme::Shopify, "x-shopify-hmac-sha256", &b64), Ok(()));
        assert!(matches!(run(&Scheme::Shopify, SHOPIFY_HEADER, &hex), Err(InboundError::MalformedHeader { .. })));

        let hex_scheme = Scheme::HmacSha256Hex { header: "X-Signature".into() };
        assert_eq!(run(&hex_scheme, "x-signature", &hex), Ok(()));
        assert_eq!(run(&hex_scheme, "X-Signature", &format!("sha256={hex}")), Ok(()));
        assert_eq!(run(&hex_scheme, "X-Signature", &hex.to_uppercase()), Ok(()));
        assert_eq!(run(&hex_scheme, "X-Other", &hex), Err(InboundError::MissingHeader("X-Signature".into())));
        assert_eq!(run(&hex_scheme, "X-Signature", ""), Err(InboundError::MissingHeader("X-Signature".into())));

        let b64_scheme = Scheme::HmacSha256Base64 { header: "X-Sig".into() };
        assert_eq!(run(&b64_scheme, "X-Sig", &b64), Ok(()));
        assert_eq!(run(&b64_scheme, "X-Sig", &format!("sha256={b64}")), Ok(()));
        assert!(matches!(run(&b64_scheme, "X-Sig", &b64[..43]), Err(InboundError::MalformedHeader { .. })));
    }

    #[test]
    fn standard_webhooks_errors_map_through() {
        let secret = secret_for(&Scheme::StandardWebhooks);
        let mut headers = sign_outbound_as_with_id(&Scheme::StandardWebhooks, secret, "msg_1", BODY, at(NOW)).unwrap();
        assert_eq!(headers[0], ("webhook-id".to_owned(), "msg_1".to_owned()));
        assert_eq!(headers[1], ("webhook-timestamp".to_owned(), NOW.to_string()));
        let v = |h: &Vec<(String, String)>, now| verify_inbound(&Scheme::StandardWebhooks, secret, h, BODY, now, TOL);
        assert_eq!(v(&headers, at(NOW + 301)), Err(InboundError::TimestampTooOld));
        assert_eq!(v(&headers, at(NOW - 301)), Err(InboundError::TimestampInFuture));
        headers[2].1 = "nonsense".into();
        assert_eq!(
            v(&headers, at(NOW)),
            Err(InboundError::MalformedHeader {
                header: "webhook-signature".into(),
                reason: "not `version,base64` entries"
            })
        );
        assert!(matches!(
            verify_inbound(&Scheme::StandardWebhooks, "whsec_%%%", &headers, BODY, at(NOW), TOL),
            Err(InboundError::InvalidSecret(KeyError::InvalidBase64 { .. }))
        ));
    }

    #[test]
    fn standard_webhooks_source_with_an_ed25519_public_key() {
        let key = super::super::Ed25519SigningKey::generate();
        let headers = sign_outbound_as(&Scheme::StandardWebhooks, key.expose(), BODY, at(NOW)).unwrap();
        assert!(headers[2].1.starts_with("v1a,"));
        let public = key.public_key().to_string();
        assert_eq!(
            sign_outbound_as(&Scheme::StandardWebhooks, &public, BODY, at(NOW)).unwrap_err(),
            KeyError::PublicKeyForSigning
        );
        verify_inbound(&Scheme::StandardWebhooks, &public, &headers, BODY, at(NOW), TOL).unwrap();
    }

    #[test]
    fn loft_send_signs_for_secrets_outside_loft_s_own_length_rule() {
        // 16 bytes, unprefixed: a valid Standard Webhooks secret from another sender.
        let secret = BASE64.encode([9u8; 16]);
        let headers = sign_outbound_as(&Scheme::StandardWebhooks, &secret, BODY, at(NOW)).unwrap();
        verify_inbound(&Scheme::StandardWebhooks, &secret, &headers, BODY, at(NOW), TOL).unwrap();
        verify_inbound(&Scheme::StandardWebhooks, &format!("whsec_{secret}"), &headers, BODY, at(NOW), TOL).unwrap();
    }

    #[test]
    fn verifier_debug_hides_the_secret() {
        let v = InboundVerifier::new(Scheme::Github, "hunter2").unwrap();
        let text = format!("{v:?}");
        assert!(!text.contains("hunter2") && text.contains("[redacted]"), "{text}");
        assert_eq!(InboundVerifier::new(Scheme::Github, "").unwrap_err(), KeyError::Empty { what: "source secret" });
    }
}
