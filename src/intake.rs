//! Taking events in — HTTP ingest and `PublishEvent` alike: check against the catalog, route,
//! and commit the event with its deliveries and activity in one group-committed transaction.
//! The caller acknowledges only after [`Intake::accept`] returns.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::ids::{DeliveryId, EventId, ProjectId, SourceId};
use crate::routing::router::{RouteInput, Router};
use crate::store::{
    EventRecord, EventWrite, GroupWriter, NewActivity, NewDelivery, NewEvent, StoreError, WriteOutcome,
};
use crate::timeutil::{Micros, from_micros, now_micros};

/// The request an inbound event arrived with, kept exactly.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InboundRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    /// In arrival order, duplicates kept.
    pub headers: Vec<(String, String)>,
    pub source_ip: String,
}

/// An event to accept.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub project: ProjectId,
    pub source_id: Option<SourceId>,
    pub event_type: String,
    pub body: Vec<u8>,
    pub content_type: String,
    /// `body` as JSON, parsed once by whichever step needs it first.
    pub json: BodyJson,
    pub request: Option<InboundRequest>,
    /// `(scope, key, window)`: a repeat within the window returns the first event.
    pub dedup: Option<(String, String, Micros)>,
    pub idempotency_key: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub occur_time: Option<Micros>,
    pub deliver_time: Option<Micros>,
    /// Captured but not delivered until released (a paused source).
    pub hold: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub event_id: String,
    /// The event existed already (idempotency key or dedup window); nothing was stored.
    pub duplicate: bool,
    pub deliveries_created: u32,
    /// The event as this call stored it (without its body), so an answer needs no read back;
    /// `None` for a duplicate.
    pub stored: Option<EventRecord>,
}

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("event type `{0}` is not in the project's catalog")]
    UnknownEventType(String),
    /// Where the payload breaks the event type's schema (JSON pointer and message).
    #[error("payload does not match the schema of `{event_type}`")]
    Schema { event_type: String, errors: Vec<(String, String)> },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The accept path. Cheap to clone.
#[derive(Clone)]
pub struct Intake {
    writer: GroupWriter,
    router: Router,
}

impl Intake {
    pub fn new(writer: GroupWriter, router: Router) -> Self {
        Self { writer, router }
    }

    pub fn router(&self) -> &Router {
        &self.router
    }

    pub async fn accept(&self, e: Incoming) -> Result<Accepted, IntakeError> {
        let table = self.router.routes(e.project).await?;
        match table.event_types.get(&e.event_type) {
            None if table.project.strict_event_types => return Err(IntakeError::UnknownEventType(e.event_type)),
            Some(Some(schema)) => {
                let errors: Vec<(String, String)> = match e.json.get(&e.body) {
                    Some(json) => schema
                        .iter_errors(json)
                        .take(10)
                        .map(|err| (err.instance_path().to_string(), err.to_string()))
                        .collect(),
                    None => vec![(String::new(), "payload is not JSON".to_owned())],
                };
                if !errors.is_empty() {
                    return Err(IntakeError::Schema { event_type: e.event_type, errors });
                }
            }
            _ => {}
        }

        let event_id = EventId::generate();
        let id = event_id.to_string();
        let receive_time = now_micros();
        // What filters and templates read of the event, made only when a route has one: most
        // events are routed by source and type alone.
        let inspects = table.inspects_content();
        let headers: BTreeMap<String, String> = match (&e.request, inspects) {
            (Some(r), true) => r
                .headers
                .iter()
                .rev() // so the first value of a repeated header is the one kept
                .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
                .collect(),
            _ => BTreeMap::new(),
        };
        let null = serde_json::Value::Null;
        let receive_rfc3339 = if inspects {
            chrono::DateTime::<chrono::Utc>::from(from_micros(receive_time)).to_rfc3339()
        } else {
            String::new()
        };
        let source = e.source_id.map(|s| s.to_string());
        let routed = table.route(&RouteInput {
            event_id: &id,
            event_type: &e.event_type,
            source_id: source.as_deref(),
            headers: &headers,
            body: if inspects { e.json.get(&e.body).unwrap_or(&null) } else { &null },
            labels: &e.labels,
            receive_time: &receive_rfc3339,
        });
        let due = (!e.hold).then(|| e.deliver_time.unwrap_or(receive_time).max(receive_time));
        let deliveries: Vec<NewDelivery> = routed
            .into_iter()
            .map(|r| NewDelivery {
                id: delivery_id(event_id, &r.subscription_id).to_string(),
                subscription_id: r.subscription_id,
                destination_id: r.destination_id,
                next_attempt_time: due,
                lease_until: None,
                body: r.body,
                content_type: r.content_type,
                forward_headers: r.forward_headers,
                replay_of: None,
            })
            .collect();
        let deliveries_created = deliveries.len() as u32;
        let activity = NewActivity {
            kind: "EVENT_RECEIVED",
            source_id: source.clone(),
            destination_id: None,
            event_type: Some(e.event_type.clone()),
            payload: NewActivity::id_payload("event_id", &id),
        };
        let write = EventWrite {
            event: NewEvent {
                id: id.clone(),
                project_id: e.project.to_string(),
                source_id: source,
                event_type: e.event_type,
                body: e.body,
                content_type: e.content_type,
                request: e.request.as_ref().map(|r| serde_json::to_string(r).expect("JSON of strings")),
                idempotency: e.dedup.map(|(scope, key, window)| (scope, key, receive_time + window)),
                idempotency_key: e.idempotency_key,
                labels: serde_json::to_string(&e.labels).expect("JSON of strings"),
                occur_time: e.occur_time,
                receive_time,
                deliver_time: e.deliver_time,
            },
            deliveries,
            activities: vec![activity],
        };
        let e = &write.event;
        let stored = EventRecord {
            id: e.id.clone(),
            project_id: e.project_id.clone(),
            source_id: e.source_id.clone(),
            event_type: e.event_type.clone(),
            body: Vec::new(),
            content_type: e.content_type.clone(),
            request: e.request.clone(),
            idempotency_key: e.idempotency_key.clone(),
            labels: e.labels.clone(),
            occur_time: e.occur_time,
            receive_time: e.receive_time,
            deliver_time: e.deliver_time,
        };
        match self.writer.write(write).await? {
            WriteOutcome::Stored => {
                Ok(Accepted { event_id: id, duplicate: false, deliveries_created, stored: Some(stored) })
            }
            WriteOutcome::Duplicate { event_id } => {
                Ok(Accepted { event_id, duplicate: true, deliveries_created: 0, stored: None })
            }
        }
    }
}

impl Intake {
    /// Stores a `TestDestination` event with one delivery to `destination`, held so that only
    /// the test sends it. Returns the event and delivery ids.
    pub async fn accept_test(
        &self,
        project: ProjectId,
        destination: &str,
        event_type: &str,
    ) -> Result<(String, String), IntakeError> {
        let event_id = EventId::generate();
        let id = event_id.to_string();
        let receive_time = now_micros();
        let body = serde_json::json!({ "type": event_type, "destination_id": destination, "event_id": id });
        let delivery = delivery_id(event_id, "test").to_string();
        let write = EventWrite {
            event: NewEvent {
                id: id.clone(),
                project_id: project.to_string(),
                source_id: None,
                event_type: event_type.to_owned(),
                body: serde_json::to_vec(&body).expect("JSON of strings"),
                content_type: "application/json".to_owned(),
                request: None,
                idempotency: None,
                idempotency_key: None,
                labels: "{}".to_owned(),
                occur_time: None,
                receive_time,
                deliver_time: None,
            },
            deliveries: vec![NewDelivery {
                id: delivery.clone(),
                subscription_id: String::new(),
                destination_id: destination.to_owned(),
                next_attempt_time: None,
                lease_until: None,
                body: None,
                content_type: None,
                forward_headers: false,
                replay_of: None,
            }],
            activities: Vec::new(),
        };
        self.writer.write(write).await?;
        Ok((id, delivery))
    }
}

/// The body as JSON when its content type says JSON (or says nothing) and it parses.
pub fn parse_json(content_type: &str, body: &[u8]) -> Option<serde_json::Value> {
    parse_if(json_like(content_type), body)
}

fn parse_if(json_like: bool, body: &[u8]) -> Option<serde_json::Value> {
    (json_like && !body.is_empty()).then(|| serde_json::from_slice(body).ok()).flatten()
}

/// Whether a content type says JSON (or says nothing).
fn json_like(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence.is_empty() || essence == "application/json" || essence.ends_with("+json") || essence == "text/json"
}

/// A body as JSON, parsed the first time something needs it (a schema, a JSON pointer, a filter
/// or a template) and kept for the next: most events are stored and routed without it (parsing
/// a 1 KiB body, twice, was ≈ 4 % of ingest's CPU).
#[derive(Debug, Clone)]
pub struct BodyJson {
    json_like: bool,
    parsed: std::sync::OnceLock<Option<serde_json::Value>>,
}

impl BodyJson {
    /// For a body that came with `content_type` (as sent, before any default was put in).
    pub fn new(content_type: &str) -> Self {
        Self { json_like: json_like(content_type), parsed: std::sync::OnceLock::new() }
    }

    /// `body` as JSON when its content type says JSON (or says nothing) and it parses.
    pub fn get(&self, body: &[u8]) -> Option<&serde_json::Value> {
        self.parsed.get_or_init(|| parse_if(self.json_like, body)).as_ref()
    }
}

/// The delivery id of an event × subscription pair: the event's time, then 80 bits of a hash of
/// the pair. The same pair always gets the same id, so a retried write can never make two.
pub fn delivery_id(event: EventId, subscription: &str) -> DeliveryId {
    let digest = Sha256::digest(format!("{event}/{subscription}").as_bytes());
    let mut random = [0u8; 16];
    random[6..].copy_from_slice(&digest[..10]);
    let random = u128::from_be_bytes(random);
    DeliveryId::from_ulid(ulid::Ulid::from_parts(event.ulid().timestamp_ms(), random))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_ids_are_deterministic_and_sort_with_their_event() {
        let e = EventId::generate();
        let a = delivery_id(e, "sub_A");
        assert_eq!(a, delivery_id(e, "sub_A"));
        assert_ne!(a, delivery_id(e, "sub_B"));
        assert_eq!(a.ulid().timestamp_ms(), e.ulid().timestamp_ms());
    }

    #[test]
    fn a_body_is_parsed_once_and_only_when_asked() {
        let body = br#"{"a":1}"#;
        let json = BodyJson::new("");
        assert!(json.parsed.get().is_none(), "nothing parsed before someone asks");
        let first = json.get(body).unwrap() as *const serde_json::Value;
        assert_eq!(json.get(body), Some(&serde_json::json!({"a": 1})));
        assert_eq!(json.get(body).unwrap() as *const serde_json::Value, first, "parsed once");
        assert_eq!(BodyJson::new("text/plain").get(body), None);
    }

    #[test]
    fn json_is_parsed_only_when_it_says_so() {
        assert_eq!(parse_json("application/json; charset=utf-8", br#"{"a":1}"#), Some(serde_json::json!({"a": 1})));
        assert_eq!(parse_json("application/vnd.x+json", b"[1]"), Some(serde_json::json!([1])));
        assert_eq!(parse_json("text/plain", br#"{"a":1}"#), None);
        assert_eq!(parse_json("application/json", b"{oops"), None);
    }
}
