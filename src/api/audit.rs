//! Audit: every change made through the API appears in its project's feed as a
//! `resource_changed` item naming the key that made it. Written in the change's own
//! transaction where there is one, so the record exists exactly when the change does.

use crate::error::ApiResult;
use crate::ids::ApiKeyId;
use crate::store::{NewActivity, Store, Tx};
use crate::timeutil::now_micros;

/// What happened to the resource.
#[derive(Debug, Clone, Copy)]
pub enum Change<'a> {
    Created,
    /// The top-level fields that changed (secrets are named, never shown).
    Updated(&'a [&'a str]),
    Deleted,
}

/// The feed item of a change to `kind` (`"destination"`, `"event type"`) `id` by `actor`.
pub fn activity(kind: &str, id: &str, change: Change<'_>, actor: Option<&ApiKeyId>) -> NewActivity {
    let (action, fields): (&str, &[&str]) = match change {
        Change::Created => ("CREATED", &[]),
        Change::Updated(fields) => ("UPDATED", fields),
        Change::Deleted => ("DELETED", &[]),
    };
    let payload = serde_json::json!({
        "resource_type": crate::error::resource_type(kind),
        "resource_id": id,
        "action": action,
        "actor_key_id": actor.map(|k| k.to_string()).unwrap_or_default(),
        "changed_fields": fields,
    });
    NewActivity {
        kind: "RESOURCE_CHANGED",
        // So that watchers filtering on a source or destination see changes to it.
        source_id: (kind == "source").then(|| id.to_owned()),
        destination_id: (kind == "destination").then(|| id.to_owned()),
        event_type: None,
        payload: serde_json::to_vec(&payload).expect("JSON of strings"),
    }
}

/// Appends `items` to `project`'s feed inside `tx`.
pub async fn record(store: &Store, tx: &mut Tx, project: &str, items: &[NewActivity]) -> ApiResult<()> {
    store.append_feed(tx, project, items, now_micros()).await?;
    Ok(())
}

/// Appends `items` in a transaction of their own, for changes the store makes in one statement.
pub async fn record_alone(store: &Store, project: &str, items: &[NewActivity]) -> ApiResult<()> {
    let mut tx = store.begin().await?;
    record(store, &mut tx, project, items).await?;
    tx.commit().await?;
    Ok(())
}
