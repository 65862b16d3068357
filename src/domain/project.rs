//! Projects: the tenant boundary, and the settings every resource in it inherits.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::retry::RetryPolicy;

pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
pub const MIN_RETENTION: Duration = Duration::from_secs(3600);
pub const MAX_RETENTION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Publishing an event type that is not in the catalog fails (`UNKNOWN_EVENT_TYPE`).
    #[serde(default)]
    pub strict_event_types: bool,
    pub retention_secs: u64,
    /// Used by destinations that set no policy of their own.
    pub default_retry_policy: RetryPolicy,
}

impl Default for ProjectSpec {
    fn default() -> Self {
        Self {
            name: String::new(),
            description: String::new(),
            strict_event_types: false,
            retention_secs: DEFAULT_RETENTION.as_secs(),
            default_retry_policy: RetryPolicy::default(),
        }
    }
}

/// Retention must be between an hour and ten years; zero means the default.
pub fn parse_retention(d: Duration) -> Result<Duration, String> {
    if d.is_zero() {
        return Ok(DEFAULT_RETENTION);
    }
    if d < MIN_RETENTION || d > MAX_RETENTION {
        return Err("must be between 1 hour and 10 years".into());
    }
    Ok(d)
}
