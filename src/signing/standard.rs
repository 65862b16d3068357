//! Standard Webhooks (<https://www.standardwebhooks.com>): the signature on every outbound
//! delivery, its verification, and Loft's legacy `X-Loft-Signature` header.
//!
//! The signed content is `"{webhook-id}.{webhook-timestamp}.{body}"`, the body as raw bytes.
//! `webhook-signature` holds space-separated `version,base64` entries: `v1` is HMAC-SHA256 with
//! the decoded `whsec_` secret, `v1a` an Ed25519 signature. During a key rotation a message
//! carries one entry per live key, and a receiver accepts it when any entry matches any of its
//! keys.
//!
//! Verification answers exactly as the `webhooks` helpers in `clients/` do; the shared vectors in
//! `clients/testdata/webhooks.json` pin every rule below, and the test at the end of this file
//! runs them. Checks, in order, each with its own error:
//!
//! 1. `webhook-id`, `webhook-timestamp` and `webhook-signature` are all present and non-empty.
//! 2. `webhook-timestamp` is unix seconds: ASCII digits only (no sign, no spaces), fitting i64.
//! 3. `webhook-signature` splits on single spaces (empty pieces from repeated spaces are
//!    skipped) into at least one entry; every entry is `version,payload` with both parts
//!    non-empty; every `v1`/`v1a` payload is padded standard base64. One bad entry makes the whole
//!    header malformed, even beside a valid signature. Versions other than `v1`/`v1a` (case
//!    matters) are skipped unread, so a future version can be sent next to `v1`.
//! 4. The timestamp lies within `tolerance` of `now`, either way, in whole seconds, bounds
//!    included. Headers are parsed before this, the signature checked after.
//! 5. Some `v1` entry equals HMAC-SHA256 under some HMAC key (constant-time), or some `v1a` entry
//!    verifies under some Ed25519 public key. A payload of the wrong length just does not match.

use std::fmt;
use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, Verifier as _};
use hmac::Mac as _;
use subtle::ConstantTimeEq as _;

use super::REDACTED;
use super::keys::{
    BASE64, DestinationKey, ED25519_PUBLIC_PREFIX, ED25519_SECRET_PREFIX, Ed25519PublicKey, HMAC_SECRET_PREFIX,
    HmacSha256, KeyError, SigningSecret, decode_base64,
};

pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";
/// Sent besides the Standard Webhooks headers when a Destination has `legacy_signature` on.
pub const LEGACY_SIGNATURE_HEADER: &str = "X-Loft-Signature";

/// How far `webhook-timestamp` may be from the receiver's clock, either way.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

const HMAC_VERSION: &str = "v1";
const ED25519_VERSION: &str = "v1a";
/// base64 of a 32-byte HMAC-SHA256 tag.
const HMAC_B64_LEN: usize = 44;
/// base64 of a 64-byte Ed25519 signature.
const ED25519_B64_LEN: usize = 88;

/// Signs one message with every live key of a Destination and returns the `webhook-signature`
/// header value: one `v1,…` or `v1a,…` entry per key, in the order given, separated by spaces.
/// An empty `keys` gives an empty string. `msg_id` must be non-empty and `timestamp` not
/// negative, or receivers reject the message as malformed.
pub fn sign(keys: &[DestinationKey], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    // Receivers refuse both as malformed; Loft's ids and clocks never produce them.
    debug_assert!(!msg_id.is_empty(), "webhook-id must not be empty");
    debug_assert!(timestamp >= 0, "webhook-timestamp must not be before 1970");
    let mut ts_buf = [0u8; 20];
    let ts = format_timestamp(timestamp, &mut ts_buf);

    let capacity: usize = keys
        .iter()
        .map(|k| match k {
            DestinationKey::Hmac(_) => HMAC_VERSION.len() + 1 + HMAC_B64_LEN + 1,
            DestinationKey::Ed25519(_) => ED25519_VERSION.len() + 1 + ED25519_B64_LEN + 1,
        })
        .sum();
    let mut header = String::with_capacity(capacity);
    // Ed25519 hashes the message twice, so it needs it contiguous; HMAC streams it instead.
    let mut contiguous: Option<Vec<u8>> = None;

    for key in keys {
        if !header.is_empty() {
            header.push(' ');
        }
        match key {
            DestinationKey::Hmac(secret) => {
                let mut mac = secret.hmac();
                update_signed_content(&mut mac, msg_id, ts, body);
                header.push_str(HMAC_VERSION);
                header.push(',');
                BASE64.encode_string(mac.finalize().into_bytes(), &mut header);
            }
            DestinationKey::Ed25519(key) => {
                let content = contiguous.get_or_insert_with(|| signed_content(msg_id, ts, body));
                let signature: Signature = key.signing_key().sign(content);
                header.push_str(ED25519_VERSION);
                header.push(',');
                BASE64.encode_string(signature.to_bytes(), &mut header);
            }
        }
    }
    header
}

/// `sha256=` + lowercase hex of HMAC-SHA256(secret's key bytes, body), the value of
/// `X-Loft-Signature`. It covers the body only (no id, no timestamp): it exists for receivers
/// written against the GitHub-style scheme and gives no replay protection.
pub fn legacy_signature(secret: &SigningSecret, body: &[u8]) -> String {
    let mut mac = secret.hmac();
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let mut hex_buf = [0u8; 64];
    hex::encode_to_slice(tag, &mut hex_buf).expect("64 hex digits for 32 bytes");
    let mut value = String::with_capacity(7 + 64);
    value.push_str("sha256=");
    value.push_str(std::str::from_utf8(&hex_buf).expect("hex is ASCII"));
    value
}

/// A key a receiver verifies `webhook-signature` with.
///
/// Parsed as the Standard Webhooks reference libraries do: `whsec_…` or an unprefixed string is
/// a symmetric secret, and what follows the (optional) prefix is base64-decoded into the HMAC
/// key. It is never used as raw UTF-8. Unlike [`SigningSecret`], no length bound applies, so
/// secrets issued by other senders verify too. `whpk_…` is an Ed25519 public key. A `whsk_…`
/// private key is refused (use [`From<&DestinationKey>`] to verify with a key Loft holds).
#[derive(Clone)]
pub struct VerifyKey(VerifyKeyInner);

#[derive(Clone)]
enum VerifyKeyInner {
    /// Keyed at parse time, like `SigningSecret`.
    Hmac(HmacSha256),
    Ed25519(Ed25519PublicKey),
}

impl VerifyKey {
    const WHAT: &'static str = "webhook secret";

    pub fn parse(s: &str) -> Result<Self, KeyError> {
        if s.starts_with(ED25519_PUBLIC_PREFIX) {
            return Ed25519PublicKey::parse(s).map(Self::from);
        }
        if s.starts_with(ED25519_SECRET_PREFIX) {
            // Refused as the clients refuse it: a receiver holding the private key is a
            // misconfiguration worth reporting, not something to quietly make work.
            return Err(KeyError::PrivateKeyForVerification);
        }
        let encoded = s.strip_prefix(HMAC_SECRET_PREFIX).unwrap_or(s);
        if encoded.is_empty() {
            return Err(KeyError::Empty { what: Self::WHAT });
        }
        let prefix = if encoded.len() < s.len() { HMAC_SECRET_PREFIX } else { "" };
        let key = decode_base64(encoded, Self::WHAT, prefix)?;
        let mac = HmacSha256::new_from_slice(&key).expect("HMAC accepts keys of any length");
        Ok(Self(VerifyKeyInner::Hmac(mac)))
    }

    /// Several keys, e.g. from a receiver's configuration during a rotation.
    pub fn parse_all<'a>(keys: impl IntoIterator<Item = &'a str>) -> Result<Vec<Self>, KeyError> {
        keys.into_iter().map(Self::parse).collect()
    }
}

impl std::str::FromStr for VerifyKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        Self::parse(s)
    }
}

impl From<&SigningSecret> for VerifyKey {
    fn from(secret: &SigningSecret) -> Self {
        Self(VerifyKeyInner::Hmac(secret.hmac()))
    }
}

impl From<Ed25519PublicKey> for VerifyKey {
    fn from(key: Ed25519PublicKey) -> Self {
        Self(VerifyKeyInner::Ed25519(key))
    }
}

impl From<&DestinationKey> for VerifyKey {
    fn from(key: &DestinationKey) -> Self {
        match key {
            DestinationKey::Hmac(secret) => secret.into(),
            DestinationKey::Ed25519(key) => key.public_key().into(),
        }
    }
}

impl fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            VerifyKeyInner::Hmac(_) => write!(f, "VerifyKey::Hmac({REDACTED})"),
            VerifyKeyInner::Ed25519(key) => write!(f, "VerifyKey::Ed25519({key})"),
        }
    }
}

/// The three Standard Webhooks header values of one request, as received. An absent header is
/// passed as `""`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookHeaders<'a> {
    pub id: &'a str,
    pub timestamp: &'a str,
    pub signature: &'a str,
}

/// Why a Standard Webhooks request was rejected. All of these are `401` at the ingest listener.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing `{0}` header")]
    MissingHeader(&'static str),
    #[error("`webhook-timestamp` is not an integer number of seconds")]
    MalformedTimestamp,
    #[error("`webhook-signature` is not a space-separated list of `version,base64` entries")]
    MalformedSignature,
    #[error("`webhook-timestamp` is older than the allowed tolerance")]
    TimestampTooOld,
    #[error("`webhook-timestamp` is further in the future than the allowed tolerance")]
    TimestampInFuture,
    #[error("no signature in `webhook-signature` matches")]
    SignatureMismatch,
}

/// Verifies a Standard Webhooks request against a receiver's keys (see the module docs for the
/// rules and their order). With no keys at all nothing can match: `SignatureMismatch`.
pub fn verify(
    keys: &[VerifyKey],
    headers: &WebhookHeaders<'_>,
    body: &[u8],
    now: SystemTime,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    for (value, name) in
        [(headers.id, HEADER_ID), (headers.timestamp, HEADER_TIMESTAMP), (headers.signature, HEADER_SIGNATURE)]
    {
        if value.is_empty() {
            return Err(VerifyError::MissingHeader(name));
        }
    }
    let timestamp = parse_timestamp(headers.timestamp).ok_or(VerifyError::MalformedTimestamp)?;
    let signatures = parse_signatures(headers.signature)?;
    check_timestamp(timestamp, now, tolerance).map_err(|skew| match skew {
        Skew::TooOld => VerifyError::TimestampTooOld,
        Skew::InFuture => VerifyError::TimestampInFuture,
    })?;

    let mut ts_buf = [0u8; 20];
    let ts = format_timestamp(timestamp, &mut ts_buf);
    let mut contiguous: Option<Vec<u8>> = None;

    for key in keys {
        let matched = match &key.0 {
            VerifyKeyInner::Hmac(keyed) => {
                let mut mac = keyed.clone();
                update_signed_content(&mut mac, headers.id, ts, body);
                let expected = mac.finalize().into_bytes();
                // Not `any`: every entry is compared, so the time taken does not depend on
                // which entry (if any) matched.
                signatures
                    .iter()
                    .fold(subtle::Choice::from(0), |found, s| match s {
                        ReceivedSignature::Hmac(tag) => found | tag.ct_eq(expected.as_slice()),
                        ReceivedSignature::Ed25519(_) => found,
                    })
                    .into()
            }
            VerifyKeyInner::Ed25519(public) => {
                let content = contiguous.get_or_insert_with(|| signed_content(headers.id, ts, body));
                signatures.iter().any(|s| match s {
                    ReceivedSignature::Ed25519(signature) => {
                        // Plain RFC 8032 verification, as Go's `ed25519.Verify`; the weak public
                        // keys that stricter checks guard against are refused at parse time.
                        public.verifying_key().verify(content, signature).is_ok()
                    }
                    ReceivedSignature::Hmac(_) => false,
                })
            }
        };
        if matched {
            return Ok(());
        }
    }
    Err(VerifyError::SignatureMismatch)
}

/// One `v1`/`v1a` entry of `webhook-signature`, decoded. Entries of another length, which can
/// never match, are not kept.
enum ReceivedSignature {
    Hmac([u8; 32]),
    Ed25519(Signature),
}

fn parse_signatures(header: &str) -> Result<Vec<ReceivedSignature>, VerifyError> {
    let mut signatures = Vec::new();
    let mut entries = 0usize;
    for entry in header.split(' ').filter(|entry| !entry.is_empty()) {
        entries += 1;
        let (version, payload) = entry
            .split_once(',')
            .filter(|(version, payload)| !version.is_empty() && !payload.is_empty())
            .ok_or(VerifyError::MalformedSignature)?;
        let signature = match version {
            HMAC_VERSION => decode_signature::<32>(payload)?.map(ReceivedSignature::Hmac),
            ED25519_VERSION => {
                decode_signature::<64>(payload)?.map(|bytes| ReceivedSignature::Ed25519(Signature::from_bytes(&bytes)))
            }
            _ => continue,
        };
        signatures.extend(signature);
    }
    if entries == 0 {
        return Err(VerifyError::MalformedSignature);
    }
    Ok(signatures)
}

/// Decodes a padded standard base64 payload: `Ok(None)` when it is valid but not `N` bytes.
fn decode_signature<const N: usize>(payload: &str) -> Result<Option<[u8; N]>, VerifyError> {
    // A payload of the expected length decodes on the stack; any other (rare, hostile or
    // broken) is still checked for being base64, so that it is reported as malformed.
    if payload.len() == N.div_ceil(3) * 4 {
        // Room for whole final quads: the decoder counts 3 bytes per 4 characters.
        let mut buf = [0u8; 66];
        let n = BASE64.decode_slice(payload, &mut buf).map_err(|_| VerifyError::MalformedSignature)?;
        Ok(buf[..n].try_into().ok())
    } else {
        BASE64.decode(payload).map_err(|_| VerifyError::MalformedSignature)?;
        Ok(None)
    }
}

/// Unix seconds as the clients read them: digits only, no sign, no spaces.
pub(crate) fn parse_timestamp(s: &str) -> Option<i64> {
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

pub(crate) enum Skew {
    TooOld,
    InFuture,
}

/// Whether a unix `timestamp` lies within `tolerance` of `now`, either way, bounds included.
/// Whole seconds on both sides (sub-second parts dropped), and a clock before 1970 counts as
/// 1970, as in the clients; i128 so that no input can overflow.
pub(crate) fn check_timestamp(timestamp: i64, now: SystemTime, tolerance: Duration) -> Result<(), Skew> {
    let now = i128::from(unix_seconds(now).max(0));
    let timestamp = i128::from(timestamp);
    let tolerance = i128::from(tolerance.as_secs());
    if now - timestamp > tolerance {
        Err(Skew::TooOld)
    } else if timestamp - now > tolerance {
        Err(Skew::InFuture)
    } else {
        Ok(())
    }
}

/// Unix seconds of `now`, rounded down (negative before 1970).
pub(crate) fn unix_seconds(now: SystemTime) -> i64 {
    match now.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        Err(before) => {
            let before = before.duration();
            let secs = i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
            if before.subsec_nanos() > 0 { -secs - 1 } else { -secs }
        }
    }
}

fn update_signed_content(mac: &mut HmacSha256, msg_id: &str, ts: &[u8], body: &[u8]) {
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(ts);
    mac.update(b".");
    mac.update(body);
}

fn signed_content(msg_id: &str, ts: &[u8], body: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(msg_id.len() + ts.len() + body.len() + 2);
    content.extend_from_slice(msg_id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(ts);
    content.push(b'.');
    content.extend_from_slice(body);
    content
}

/// Decimal text of `timestamp` without allocating (20 bytes hold any i64).
fn format_timestamp(timestamp: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut rest = &mut buf[..];
    write!(rest, "{timestamp}").expect("an i64 fits in 20 bytes");
    let len = 20 - rest.len();
    &buf[..len]
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const MSG_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    /// The Standard Webhooks reference libraries' own test vector.
    const REFERENCE_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn at(secs: i64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    }

    fn hmac_key() -> DestinationKey {
        DestinationKey::parse(SECRET).unwrap()
    }

    fn headers(signature: &str) -> WebhookHeaders<'_> {
        WebhookHeaders { id: MSG_ID, timestamp: "1614265330", signature }
    }

    #[test]
    fn signs_like_the_reference_libraries() {
        assert_eq!(sign(&[hmac_key()], MSG_ID, TS, BODY), REFERENCE_SIGNATURE);
    }

    #[test]
    fn verifies_the_reference_vector() {
        let keys = [VerifyKey::parse(SECRET).unwrap()];
        verify(&keys, &headers(REFERENCE_SIGNATURE), BODY, at(TS), DEFAULT_TOLERANCE).unwrap();
        // The same secret without its prefix is base64-decoded the same way.
        let raw = [VerifyKey::parse(&SECRET["whsec_".len()..]).unwrap()];
        verify(&raw, &headers(REFERENCE_SIGNATURE), BODY, at(TS), DEFAULT_TOLERANCE).unwrap();
    }

    #[test]
    fn rotation_signs_with_every_key_and_any_key_verifies() {
        let old = hmac_key();
        let new = DestinationKey::generate(super::super::SignatureScheme::HmacSha256);
        let ed = DestinationKey::generate(super::super::SignatureScheme::Ed25519);
        let header = sign(&[old.clone(), new.clone(), ed.clone()], MSG_ID, TS, BODY);
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], REFERENCE_SIGNATURE);
        assert!(parts[1].starts_with("v1,") && parts[1].len() == 3 + 44);
        assert!(parts[2].starts_with("v1a,") && parts[2].len() == 4 + 88);

        for key in [&old, &new, &ed] {
            let keys = [VerifyKey::from(key)];
            verify(&keys, &headers(&header), BODY, at(TS), DEFAULT_TOLERANCE).unwrap();
        }
        let public = VerifyKey::parse(&ed.public_key().unwrap().to_string()).unwrap();
        let unrelated = VerifyKey::from(&DestinationKey::generate(super::super::SignatureScheme::HmacSha256));
        verify(&[unrelated.clone(), public], &headers(&header), BODY, at(TS), DEFAULT_TOLERANCE).unwrap();
        assert_eq!(
            verify(&[unrelated], &headers(&header), BODY, at(TS), DEFAULT_TOLERANCE),
            Err(VerifyError::SignatureMismatch)
        );
    }

    #[test]
    fn ed25519_signature_is_deterministic_and_checks_the_body() {
        let ed = DestinationKey::generate(super::super::SignatureScheme::Ed25519);
        let header = sign(std::slice::from_ref(&ed), MSG_ID, TS, BODY);
        assert_eq!(header, sign(std::slice::from_ref(&ed), MSG_ID, TS, BODY));
        let keys = [VerifyKey::from(&ed)];
        assert_eq!(
            verify(&keys, &headers(&header), b"{}", at(TS), DEFAULT_TOLERANCE),
            Err(VerifyError::SignatureMismatch)
        );
        // A v1a signature is not accepted under the v1 label, nor the reverse.
        let relabelled = header.replacen("v1a,", "v1,", 1);
        assert_eq!(
            verify(&keys, &headers(&relabelled), BODY, at(TS), DEFAULT_TOLERANCE),
            Err(VerifyError::SignatureMismatch)
        );
    }

    #[test]
    fn tampering_is_a_mismatch() {
        let keys = [VerifyKey::parse(SECRET).unwrap()];
        let check = |h: WebhookHeaders<'_>, body: &[u8]| verify(&keys, &h, body, at(TS), DEFAULT_TOLERANCE);
        let mismatch = Err(VerifyError::SignatureMismatch);
        assert_eq!(check(headers(REFERENCE_SIGNATURE), br#"{"test": 2432232315}"#), mismatch);
        let other_id = WebhookHeaders { id: "msg_other", ..headers(REFERENCE_SIGNATURE) };
        assert_eq!(check(other_id, BODY), mismatch);
        let other_ts = WebhookHeaders { timestamp: "1614265331", ..headers(REFERENCE_SIGNATURE) };
        assert_eq!(check(other_ts, BODY), mismatch);
        // The right signature under an unknown version, or valid base64 of the wrong length.
        assert_eq!(check(headers("v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="), BODY), mismatch);
        assert_eq!(check(headers("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ"), BODY), mismatch);
        assert_eq!(check(headers("v1a,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="), BODY), mismatch);
        // Unknown versions are skipped unread; a later good entry still counts.
        let mixed = format!("v2,!!! v1b,abc  {REFERENCE_SIGNATURE}");
        assert_eq!(check(headers(&mixed), BODY), Ok(()));
        // Unused low bits in the last base64 character are ignored (as in Go, Python, Node).
        assert_eq!(check(headers("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OF="), BODY), Ok(()));
        // No keys at all cannot match.
        assert_eq!(verify(&[], &headers(REFERENCE_SIGNATURE), BODY, at(TS), DEFAULT_TOLERANCE), mismatch);
    }

    #[test]
    fn malformed_headers_are_their_own_errors() {
        let keys = [VerifyKey::parse(SECRET).unwrap()];
        let check = |h: WebhookHeaders<'_>| verify(&keys, &h, BODY, at(TS), DEFAULT_TOLERANCE);
        assert_eq!(
            check(WebhookHeaders { id: "", ..headers(REFERENCE_SIGNATURE) }),
            Err(VerifyError::MissingHeader("webhook-id"))
        );
        assert_eq!(
            check(WebhookHeaders { timestamp: "", ..headers(REFERENCE_SIGNATURE) }),
            Err(VerifyError::MissingHeader("webhook-timestamp"))
        );
        assert_eq!(check(headers("")), Err(VerifyError::MissingHeader("webhook-signature")));
        for ts in
            ["16142653.30", "1614265330s", "0x60381cf2", " 1614265330", "+1614265330", "-1", "99999999999999999999"]
        {
            assert_eq!(
                check(WebhookHeaders { timestamp: ts, ..headers(REFERENCE_SIGNATURE) }),
                Err(VerifyError::MalformedTimestamp),
                "{ts}"
            );
        }
        for sig in [
            "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            "v1,",
            ",abc",
            "   ",
            "v1,!!!",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE",
            "v1a,@@@@",
            // One bad entry spoils the header, even beside the right signature.
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= junk",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=\tv2,x",
        ] {
            assert_eq!(check(headers(sig)), Err(VerifyError::MalformedSignature), "{sig:?}");
        }
    }

    #[test]
    fn timestamp_tolerance_is_inclusive_both_ways() {
        let keys = [VerifyKey::parse(SECRET).unwrap()];
        let tol = DEFAULT_TOLERANCE;
        let check = |now: SystemTime| verify(&keys, &headers(REFERENCE_SIGNATURE), BODY, now, tol);
        assert_eq!(check(at(TS + 300)), Ok(()));
        assert_eq!(check(at(TS - 300)), Ok(()));
        assert_eq!(check(at(TS + 301)), Err(VerifyError::TimestampTooOld));
        // Whole seconds, as the clients count.
        assert_eq!(check(at(TS + 300) + Duration::from_millis(999)), Ok(()));
        assert_eq!(check(at(TS - 301)), Err(VerifyError::TimestampInFuture));
        // The timestamp is judged after parsing the headers and before the signature.
        let stale = verify(&keys, &headers("v1,AAAA"), BODY, at(TS + 10_000), tol);
        assert_eq!(stale, Err(VerifyError::TimestampTooOld));
        let stale = verify(&keys, &headers("v1"), BODY, at(TS + 10_000), tol);
        assert_eq!(stale, Err(VerifyError::MalformedSignature));
        // Extreme values neither overflow nor pass.
        let h = WebhookHeaders { timestamp: "0", ..headers(REFERENCE_SIGNATURE) };
        assert_eq!(verify(&keys, &h, BODY, at(TS), tol), Err(VerifyError::TimestampTooOld));
        assert_eq!(verify(&keys, &h, BODY, at(TS), Duration::MAX), Err(VerifyError::SignatureMismatch));
        let h = WebhookHeaders { timestamp: "9223372036854775807", ..headers(REFERENCE_SIGNATURE) };
        assert_eq!(verify(&keys, &h, BODY, at(TS), tol), Err(VerifyError::TimestampInFuture));
    }

    #[test]
    fn body_is_signed_as_raw_bytes() {
        let key = hmac_key();
        let body = [0xff, 0x00, b'.', 0xfe];
        let header = sign(std::slice::from_ref(&key), MSG_ID, TS, &body);
        let mut mac = HmacSha256::new_from_slice(&BASE64.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap()).unwrap();
        mac.update(b"msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.\xff\x00.\xfe");
        assert_eq!(header, format!("v1,{}", BASE64.encode(mac.finalize().into_bytes())));
        verify(&[VerifyKey::from(&key)], &headers(&header), &body, at(TS), DEFAULT_TOLERANCE).unwrap();
    }

    #[test]
    fn timestamps_format_without_allocating() {
        let mut buf = [0u8; 20];
        assert_eq!(format_timestamp(0, &mut buf), b"0");
        assert_eq!(format_timestamp(i64::MIN, &mut buf), b"-9223372036854775808");
        assert_eq!(format_timestamp(TS, &mut buf), b"1614265330");
    }

    #[test]
    fn legacy_signature_is_hex_hmac_of_the_body() {
        let secret = SigningSecret::parse(SECRET).unwrap();
        let mut mac = HmacSha256::new_from_slice(secret.key_bytes()).unwrap();
        mac.update(BODY);
        let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(legacy_signature(&secret, BODY), expected);
        assert_eq!(legacy_signature(&secret, BODY).len(), 71);
    }

    #[test]
    fn verify_keys_parse_like_the_reference_libraries() {
        assert!(VerifyKey::parse("whsec_").is_err());
        assert!(VerifyKey::parse("").is_err());
        // Any decoded length is accepted for verification.
        assert!(VerifyKey::parse("whsec_c2hvcnQ=").is_ok());
        let err = VerifyKey::parse("whsec_not base64").unwrap_err();
        assert!(matches!(err, KeyError::InvalidBase64 { prefix: "whsec_", .. }), "{err:?}");
        assert_eq!(format!("{:?}", VerifyKey::parse(SECRET).unwrap()), "VerifyKey::Hmac([redacted])");
        let ed = super::super::Ed25519SigningKey::generate();
        assert_eq!(VerifyKey::parse(ed.expose()).unwrap_err(), KeyError::PrivateKeyForVerification);
        let public = VerifyKey::parse(&ed.public_key().to_string()).unwrap();
        assert_eq!(format!("{public:?}"), format!("VerifyKey::Ed25519({})", ed.public_key()));
    }
}

/// The shared vectors in `clients/testdata/webhooks.json`, which the Go, Python and TypeScript
/// helpers check too: this is what keeps all four byte-for-byte identical.
#[cfg(test)]
mod shared_vectors {
    use super::*;

    const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/testdata/webhooks.json");

    #[derive(serde::Deserialize)]
    struct File {
        vectors: Vec<Vector>,
    }

    #[derive(serde::Deserialize)]
    struct Vector {
        name: String,
        secrets: Vec<String>,
        signing_keys: Vec<String>,
        msg_id: String,
        timestamp: i64,
        body: String,
        signature: String,
        now: i64,
        tolerance_seconds: u64,
        valid: bool,
        error: Option<String>,
    }

    /// The header as `sign` would write it: its `v1`/`v1a` entries, single-spaced.
    fn canonical(header: &str) -> String {
        header.split(' ').filter(|e| e.starts_with("v1,") || e.starts_with("v1a,")).collect::<Vec<_>>().join(" ")
    }

    fn class(error: &VerifyError) -> &'static str {
        match error {
            VerifyError::MissingHeader(_) | VerifyError::MalformedTimestamp | VerifyError::MalformedSignature => {
                "malformed"
            }
            VerifyError::TimestampTooOld => "timestamp_too_old",
            VerifyError::TimestampInFuture => "timestamp_in_future",
            VerifyError::SignatureMismatch => "signature_mismatch",
        }
    }

    #[test]
    fn every_shared_vector_holds() {
        let text = std::fs::read_to_string(PATH).unwrap_or_else(|e| panic!("reading {PATH}: {e}"));
        let file: File = serde_json::from_str(&text).expect("webhooks.json matches the agreed format");
        assert!(!file.vectors.is_empty(), "no vectors in {PATH}");

        let mut failures = Vec::new();
        for v in &file.vectors {
            if let Err(why) = check(v) {
                failures.push(format!("{}: {why}", v.name));
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} vectors fail:\n{}",
            failures.len(),
            file.vectors.len(),
            failures.join("\n")
        );
    }

    fn check(v: &Vector) -> Result<(), String> {
        let signing_keys: Result<Vec<DestinationKey>, _> =
            v.signing_keys.iter().map(|k| DestinationKey::parse(k)).collect();
        if v.valid {
            // HMAC and Ed25519 (RFC 8032) are both deterministic, so `sign` must reproduce every
            // valid vector's header. A few of them dress the header up for the verifier (extra
            // spaces, an unknown version); `sign` must then give its `v1`/`v1a` entries.
            let signing_keys = signing_keys.map_err(|e| format!("signing key rejected: {e}"))?;
            let signed = sign(&signing_keys, &v.msg_id, v.timestamp, v.body.as_bytes());
            let expected = canonical(&v.signature);
            if signed != expected {
                return Err(format!("sign gave {signed:?}, vector has {:?}", v.signature));
            }
        }
        let keys = match VerifyKey::parse_all(v.secrets.iter().map(String::as_str)) {
            Ok(keys) => keys,
            Err(e) => return Err(format!("verify key rejected: {e}")),
        };
        let timestamp = v.timestamp.to_string();
        let headers = WebhookHeaders { id: &v.msg_id, timestamp: &timestamp, signature: &v.signature };
        let now = if v.now >= 0 {
            UNIX_EPOCH + Duration::from_secs(v.now.unsigned_abs())
        } else {
            UNIX_EPOCH - Duration::from_secs(v.now.unsigned_abs())
        };
        let outcome = verify(&keys, &headers, v.body.as_bytes(), now, Duration::from_secs(v.tolerance_seconds));
        match (v.valid, &outcome, v.error.as_deref()) {
            (true, Ok(()), None) => Ok(()),
            (false, Err(e), Some(expected)) if class(e) == expected => Ok(()),
            _ => Err(format!("verify gave {outcome:?}, vector says valid={} error={:?}", v.valid, v.error)),
        }
    }
}
