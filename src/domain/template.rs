//! Reusable body templates (Jinja syntax, rendered by `routing::template`).

use serde::{Deserialize, Serialize};

use crate::ids::TemplateId;
use crate::store::{Document, Table, document_table};

pub const DEFAULT_CONTENT_TYPE: &str = "application/json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TemplateSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The template source; compiled when set, so a stored template always compiles.
    pub body: String,
    pub content_type: String,
}

impl Document for TemplateSpec {
    type Id = TemplateId;
    const TABLE: Table = document_table!("templates");
}

/// A media type: `type/subtype` with optional parameters, as `Content-Type` takes it.
pub fn parse_content_type(s: &str) -> Result<String, &'static str> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(DEFAULT_CONTENT_TYPE.to_owned());
    }
    let essence = s.split(';').next().unwrap_or("").trim();
    let valid = essence.split_once('/').is_some_and(|(t, st)| is_token(t) && is_token(st));
    if !valid || s.len() > 256 || http::HeaderValue::from_str(s).is_err() {
        return Err("must be a media type such as application/json");
    }
    Ok(s.to_owned())
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
}
