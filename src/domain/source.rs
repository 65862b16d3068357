//! Sources: inbound HTTP endpoints (`/in/{source_id}`) with their auth, limits and parsing rules.

use serde::{Deserialize, Serialize};

use super::RateLimit;
use super::secret::SealedSecret;
use crate::ids::SourceId;
use crate::store::{Document, Table, document_table};

pub const DEFAULT_MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub auth: SourceAuth,
    #[serde(default)]
    pub event_type_from: Option<EventTypeFrom>,
    #[serde(default)]
    pub dedup: Option<Dedup>,
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    pub max_body_bytes: u64,
    /// Upper-case HTTP methods; never empty.
    pub allowed_methods: Vec<String>,
    #[serde(default)]
    pub json_schema: Option<serde_json::Value>,
    #[serde(default)]
    pub response: Option<SourceResponse>,
    #[serde(default)]
    pub paused: bool,
}

impl Default for SourceSpec {
    fn default() -> Self {
        Self {
            name: String::new(),
            description: String::new(),
            auth: SourceAuth::None,
            event_type_from: None,
            dedup: None,
            rate_limit: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            allowed_methods: vec!["POST".to_owned()],
            json_schema: None,
            response: None,
            paused: false,
        }
    }
}

impl Document for SourceSpec {
    type Id = SourceId;
    const TABLE: Table = document_table!("sources");
}

/// How a sender proves itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceAuth {
    None,
    Basic {
        username: String,
        password: SealedSecret,
    },
    /// A static key in a named header.
    ApiKey {
        header: String,
        key: SealedSecret,
    },
    /// The provider's HMAC signature.
    Signature {
        scheme: SignatureScheme,
        secret: SealedSecret,
        header: Option<String>,
        tolerance_secs: u64,
    },
}

impl SourceAuth {
    /// The secret `RotateSourceSecret` replaces, if this method has one.
    pub fn secret_mut(&mut self) -> Option<&mut SealedSecret> {
        match self {
            SourceAuth::None => None,
            SourceAuth::Basic { password, .. } => Some(password),
            SourceAuth::ApiKey { key, .. } => Some(key),
            SourceAuth::Signature { secret, .. } => Some(secret),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SignatureScheme {
    StandardWebhooks,
    Github,
    Stripe,
    Shopify,
    HmacSha256Hex,
    HmacSha256Base64,
}

impl SignatureScheme {
    /// Whether the scheme names its own header; the generic ones need `header`.
    pub fn needs_header(self) -> bool {
        matches!(self, SignatureScheme::HmacSha256Hex | SignatureScheme::HmacSha256Base64)
    }
}

/// Where an inbound request's event type comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum EventTypeFrom {
    Static(String),
    Header(String),
    JsonPointer(String),
}

/// Requests whose key was seen within `window_secs` are acknowledged but not stored again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dedup {
    pub key: DedupKey,
    pub window_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum DedupKey {
    Header(String),
    JsonPointer(String),
}

/// What the sender is answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceResponse {
    pub status_code: u16,
    pub content_type: String,
    pub body: String,
}

/// An HTTP header name, lower-cased.
pub fn parse_header_name(s: &str) -> Result<String, &'static str> {
    let name = http::HeaderName::from_bytes(s.trim().as_bytes()).map_err(|_| "must be a valid HTTP header name")?;
    Ok(name.as_str().to_owned())
}

/// A JSON pointer (RFC 6901): empty, or `/`-separated reference tokens.
pub fn parse_json_pointer(s: &str) -> Result<String, &'static str> {
    if !s.is_empty() && !s.starts_with('/') {
        return Err("must be a JSON pointer starting with `/`, e.g. /type");
    }
    let bad_escape = s.split('/').any(|token| {
        let mut chars = token.chars();
        while let Some(c) = chars.next() {
            if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
                return true;
            }
        }
        false
    });
    if bad_escape {
        return Err("`~` must be followed by 0 or 1 in a JSON pointer");
    }
    Ok(s.to_owned())
}

/// An upper-case HTTP method token.
pub fn parse_method(s: &str) -> Result<String, &'static str> {
    let m = s.trim().to_ascii_uppercase();
    match m.as_str() {
        "POST" | "PUT" | "PATCH" | "GET" | "DELETE" => Ok(m),
        _ => Err("must be one of POST, PUT, PATCH, GET, DELETE"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_pointers() {
        assert!(parse_json_pointer("/type").is_ok());
        assert!(parse_json_pointer("/a~1b/c~0").is_ok());
        assert!(parse_json_pointer("type").is_err());
        assert!(parse_json_pointer("/a~2").is_err());
    }

    #[test]
    fn header_names_are_lower_cased() {
        assert_eq!(parse_header_name("X-GitHub-Event").unwrap(), "x-github-event");
        assert!(parse_header_name("bad header").is_err());
    }
}
