//! Subscriptions: which events (source, type patterns, CEL filter) go to which destination,
//! optionally reshaped by a template.

use serde::{Deserialize, Serialize};

use crate::ids::{DestinationId, SourceId, TemplateId};
use crate::store::{Document, References, Table, document_table};

/// Most patterns one subscription may list.
pub const MAX_EVENT_TYPES: usize = 100;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SubscriptionSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Required: `None` only while a request is being parsed, never once stored.
    pub destination_id: Option<DestinationId>,
    /// `None`: events from any source and published events.
    #[serde(default)]
    pub source_id: Option<SourceId>,
    /// Event type patterns, each parsed when set; empty matches every type.
    #[serde(default)]
    pub event_types: Vec<String>,
    /// A CEL expression, compiled and checked when set.
    #[serde(default)]
    pub filter: Option<String>,
    #[serde(default)]
    pub transform: Option<Transform>,
    pub content_type: String,
    /// `None`: forward when there is no transform (see [`SubscriptionSpec::forwards_headers`]).
    #[serde(default)]
    pub forward_headers: Option<bool>,
    pub enabled: bool,
}

impl SubscriptionSpec {
    /// Whether relayed requests' original headers go along: by default only when the body is
    /// passed through untouched, so the receiver can still check the provider's signature.
    pub fn forwards_headers(&self) -> bool {
        self.forward_headers.unwrap_or(self.transform.is_none())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Transform {
    Template(TemplateId),
    /// A Jinja body, compiled when set.
    Inline(String),
}

impl Document for SubscriptionSpec {
    type Id = crate::ids::SubscriptionId;
    const TABLE: Table = document_table!(
        "subscriptions",
        filters: " AND (CAST($4 AS TEXT) IS NULL OR destination_id = $4) AND (CAST($5 AS TEXT) IS NULL OR source_id = $5) AND CAST($6 AS TEXT) IS NULL",
        refs
    );
    const HAS_REFERENCES: bool = true;

    fn references(&self) -> References {
        References {
            destination_id: self.destination_id.map(|d| d.to_string()),
            source_id: self.source_id.map(|s| s.to_string()),
            template_id: match &self.transform {
                Some(Transform::Template(t)) => Some(t.to_string()),
                _ => None,
            },
        }
    }
}
