//! Destinations: outbound HTTP targets with their signing keys, auth and delivery settings.

use serde::{Deserialize, Serialize};

use super::RateLimit;
use super::retry::RetryPolicy;
use super::secret::SealedSecret;
use crate::ids::DestinationId;
use crate::store::{Document, Table, document_table};
use crate::timeutil::Micros;

pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
pub const MAX_TIMEOUT_MS: u64 = 120_000;
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 16;
pub const MAX_IN_FLIGHT: u32 = 1000;
/// How long a rotated-out signing key keeps signing, unless the rotation says otherwise.
pub const DEFAULT_ROTATION_GRACE_SECS: u64 = 24 * 3600;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DestinationSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Checked against the URL policy when set, and again at connect time.
    pub url: String,
    pub http_method: String,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    pub auth: DestinationAuth,
    pub signature_scheme: SignatureAlgorithm,
    /// The current signing key first, then keys rotated out that still sign until they expire.
    pub keys: Vec<SigningKey>,
    /// `whpk_…` for Ed25519 destinations: receivers verify with it, sharing no secret.
    #[serde(default)]
    pub public_key: Option<String>,
    #[serde(default)]
    pub legacy_signature: bool,
    pub timeout_ms: u64,
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    pub max_in_flight: u32,
    /// `None`: the project's default.
    #[serde(default)]
    pub retry_policy: Option<RetryPolicy>,
    pub ordering: Ordering,
}

impl Default for DestinationSpec {
    fn default() -> Self {
        Self {
            name: String::new(),
            description: String::new(),
            url: String::new(),
            http_method: "POST".to_owned(),
            headers: Vec::new(),
            auth: DestinationAuth::None,
            signature_scheme: SignatureAlgorithm::HmacSha256,
            keys: Vec::new(),
            public_key: None,
            legacy_signature: false,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            rate_limit: None,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            retry_policy: None,
            ordering: Ordering::Unordered,
        }
    }
}

impl Document for DestinationSpec {
    type Id = DestinationId;
    // A destination without a health row is ACTIVE.
    const TABLE: Table = document_table!(
        "destinations",
        filters: " AND CAST($4 AS TEXT) IS NULL AND CAST($5 AS TEXT) IS NULL AND (CAST($6 AS TEXT) IS NULL OR COALESCE((SELECT h.state FROM destination_health h WHERE h.destination_id = destinations.id), 'ACTIVE') = $6)"
    );
}

impl DestinationSpec {
    /// Keys that still sign at `now`: the current one and unexpired previous ones.
    pub fn live_keys(&self, now: Micros) -> impl Iterator<Item = &SigningKey> {
        self.keys.iter().filter(move |k| k.expire_time.is_none_or(|t| t > now))
    }
}

/// A signing key at rest. The current key has no expiry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SigningKey {
    pub secret: SealedSecret,
    #[serde(default)]
    pub expire_time: Option<Micros>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SignatureAlgorithm {
    /// `v1`: HMAC-SHA256 with a `whsec_` secret.
    HmacSha256,
    /// `v1a`: Ed25519 with a `whsk_` key.
    Ed25519,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Ordering {
    Unordered,
    /// One delivery in flight at a time, in event order; a failing head blocks the rest.
    Ordered,
}

/// Credentials sent with each delivery; encrypted at rest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DestinationAuth {
    None,
    Bearer { token: SealedSecret },
    Basic { username: String, password: SealedSecret },
    Header { name: String, value: SealedSecret },
}

/// The engine's view of a destination: state, circuit and health counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DestinationState {
    Active,
    Paused,
    Disabled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

/// An outbound HTTP method.
pub fn parse_method(s: &str) -> Result<String, &'static str> {
    match s.trim().to_ascii_uppercase().as_str() {
        "" | "POST" => Ok("POST".to_owned()),
        m @ ("PUT" | "PATCH") => Ok(m.to_owned()),
        _ => Err("must be POST, PUT or PATCH"),
    }
}
