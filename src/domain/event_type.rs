//! The event type catalog: names, descriptions and payload schemas.

use serde::{Deserialize, Serialize};

use crate::routing::pattern::EventTypeName;
use crate::store::{Document, Table, document_table};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct EventTypeSpec {
    #[serde(default)]
    pub description: String,
    /// A JSON Schema that published payloads of this type must satisfy; compiled when set.
    #[serde(default)]
    pub schema: Option<serde_json::Value>,
    #[serde(default)]
    pub deprecated: bool,
}

impl Document for EventTypeSpec {
    type Id = EventTypeName;
    const TABLE: Table = document_table!("event_types");
}

/// Why a JSON Schema was refused.
pub fn check_json_schema(schema: &serde_json::Value) -> Result<(), String> {
    if !schema.is_object() && !schema.is_boolean() {
        return Err("must be a JSON Schema object".into());
    }
    jsonschema::validator_for(schema).map(|_| ()).map_err(|e| format!("invalid JSON Schema: {e}"))
}
