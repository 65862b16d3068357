//! Domain types: what a resource is, built only through parsers that reject bad input with a
//! precise message. Past the transport edge nothing is checked again.

pub mod breaker;
pub mod destination;
pub mod event_type;
pub mod headers;
pub mod project;
pub mod retry;
pub mod secret;
pub mod source;
pub mod subscription;
pub mod template;
pub mod url_policy;

/// Longest accepted `name`/`description`.
pub const MAX_NAME_LEN: usize = 256;
pub const MAX_DESCRIPTION_LEN: usize = 4096;

/// Why a free-text field was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("is required")]
    Required,
    #[error("must be at most {0} characters")]
    TooLong(usize),
    #[error("must not contain control characters")]
    Control,
}

/// A name: trimmed, single-line, at most [`MAX_NAME_LEN`] characters; `required` refuses empty.
pub fn parse_name(s: &str, required: bool) -> Result<String, TextError> {
    let s = s.trim();
    if s.is_empty() && required {
        return Err(TextError::Required);
    }
    if s.chars().count() > MAX_NAME_LEN {
        return Err(TextError::TooLong(MAX_NAME_LEN));
    }
    if s.chars().any(char::is_control) {
        return Err(TextError::Control);
    }
    Ok(s.to_owned())
}

pub fn parse_description(s: &str) -> Result<String, TextError> {
    if s.chars().count() > MAX_DESCRIPTION_LEN {
        return Err(TextError::TooLong(MAX_DESCRIPTION_LEN));
    }
    Ok(s.to_owned())
}

/// A per-second token bucket: `per_second` sustained, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

impl RateLimit {
    /// `None` when unset (both zero). A burst of zero defaults to `per_second`.
    pub fn parse(per_second: u32, burst: u32) -> Result<Option<Self>, &'static str> {
        match (per_second, burst) {
            (0, 0) => Ok(None),
            (0, _) => Err("per_second must be positive when burst is set"),
            (p, _) if p > 1_000_000 => Err("per_second must be at most 1000000"),
            (p, 0) => Ok(Some(Self { per_second: p, burst: p })),
            (_, b) if b > 1_000_000 => Err("burst must be at most 1000000"),
            (p, b) => Ok(Some(Self { per_second: p, burst: b })),
        }
    }
}
