//! `EventService`: publishing, reading and replaying events, and the live feed (`feed/`).

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert::{json_to_value, value_to_json};
use super::paging::Page;
use super::{AppState, Violations, parse_id};
use crate::auth::Access;
use crate::error::{ApiError, ApiResult};
use crate::feed::WatchRequest;
use crate::ids::{DeliveryId, DestinationId, EventId, SourceId};
use crate::intake::{BodyJson, InboundRequest, Incoming, IntakeError, parse_json};
use crate::proto::event_service_server::EventService;
use crate::proto::{self as pb, ErrorReason};
use crate::routing::pattern::{EventTypeName, EventTypePattern};
use crate::store::{DeliveryCounts, EventFilter, EventRecord};
use crate::timeutil::{from_timestamp, now_micros, to_timestamp};

pub struct Events(pub Arc<AppState>);

/// How far ahead `deliver_time` may hold an event.
const MAX_HOLD_MICROS: i64 = 30 * 24 * 3600 * 1_000_000;
/// A repeated idempotency key within this window returns the first event.
const IDEMPOTENCY_WINDOW_MICROS: i64 = 24 * 3600 * 1_000_000;
const MAX_IDEMPOTENCY_KEY: usize = 256;
const MAX_LABELS: usize = 32;

/// Checks a publish request and turns it into an event to accept.
fn incoming(state: &AppState, project: crate::ids::ProjectId, r: &pb::PublishEventRequest) -> ApiResult<Incoming> {
    use pb::publish_event_request::Payload;
    let mut v = Violations::default();
    if let Err(e) = EventTypeName::parse(&r.r#type) {
        v.invalid("type", e);
    }
    let (body, content_type) = match &r.payload {
        Some(Payload::Json(value)) => {
            (serde_json::to_vec(&value_to_json(value)).expect("JSON serializes"), "application/json".to_owned())
        }
        Some(Payload::Raw(raw)) => {
            let ct = if raw.content_type.is_empty() {
                "application/octet-stream".to_owned()
            } else {
                raw.content_type.clone()
            };
            if http::HeaderValue::from_str(&ct).is_err() {
                v.invalid("raw.content_type", "must be a valid Content-Type value");
            }
            (raw.body.clone(), ct)
        }
        None => {
            v.invalid("payload", "set json or raw");
            (Vec::new(), String::new())
        }
    };
    if body.len() as u64 > state.max_body_bytes {
        v.add(
            "payload",
            ErrorReason::PayloadTooLarge,
            format!("is {} bytes; the limit is {}", body.len(), state.max_body_bytes),
        );
    }
    if r.idempotency_key.len() > MAX_IDEMPOTENCY_KEY {
        v.invalid("idempotency_key", format!("must be at most {MAX_IDEMPOTENCY_KEY} bytes"));
    }
    if r.labels.len() > MAX_LABELS {
        v.invalid("labels", format!("at most {MAX_LABELS} labels"));
    }
    for (k, val) in &r.labels {
        let key_ok =
            !k.is_empty() && k.len() <= 64 && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !key_ok {
            v.invalid(format!("labels[{k:?}]"), "keys are 1–64 letters, digits, `_`, `.` or `-`");
        } else if val.len() > 256 {
            v.invalid(format!("labels[{k:?}]"), "values are at most 256 bytes");
        }
    }
    let now = now_micros();
    let occur_time = match r.occur_time.as_ref().map(from_timestamp) {
        None => None,
        Some(Some(t)) => Some(t),
        Some(None) => {
            v.invalid("occur_time", "is not a valid timestamp");
            None
        }
    };
    let deliver_time = match r.deliver_time.as_ref().map(from_timestamp) {
        None => None,
        Some(Some(t)) if t <= now + MAX_HOLD_MICROS => Some(t),
        Some(_) => {
            v.invalid("deliver_time", "must be a valid time at most 30 days ahead");
            None
        }
    };
    v.finish()?;
    let idempotency_key = (!r.idempotency_key.is_empty()).then(|| r.idempotency_key.clone());
    Ok(Incoming {
        project,
        source_id: None,
        event_type: r.r#type.clone(),
        json: BodyJson::new(&content_type),
        body,
        content_type,
        request: None,
        dedup: idempotency_key.clone().map(|k| (String::new(), k, IDEMPOTENCY_WINDOW_MICROS)),
        idempotency_key,
        labels: r.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<BTreeMap<_, _>>(),
        occur_time,
        deliver_time,
        hold: false,
    })
}

pub(super) fn intake_error(e: IntakeError) -> ApiError {
    match e {
        IntakeError::UnknownEventType(t) => ApiError::FailedPrecondition {
            reason: ErrorReason::UnknownEventType,
            message: format!(
                "event type `{t}` is not in the project's catalog, and the project has strict_event_types set"
            ),
        },
        IntakeError::Schema { event_type, errors } => ApiError::InvalidArgument {
            reason: ErrorReason::SchemaValidationFailed,
            violations: errors
                .into_iter()
                .map(|(path, message)| crate::error::FieldViolation {
                    field: format!("payload{path}"),
                    description: format!("does not match the schema of `{event_type}`: {message}"),
                })
                .collect(),
        },
        IntakeError::Store(e) => e.into(),
    }
}

/// An event's status, from its deliveries' states.
fn status_of(c: &DeliveryCounts) -> pb::EventStatus {
    if c.total == 0 {
        pb::EventStatus::NoRoute
    } else if c.pending > 0 {
        pb::EventStatus::Pending
    } else if c.failed > 0 {
        pb::EventStatus::Failed
    } else {
        pb::EventStatus::Delivered
    }
}

pub(crate) fn event_proto(r: &EventRecord, counts: &DeliveryCounts, full: bool) -> pb::Event {
    let request: Option<InboundRequest> = r.request.as_deref().and_then(|j| serde_json::from_str(j).ok());
    let request = request.unwrap_or(InboundRequest {
        method: String::new(),
        path: String::new(),
        query: String::new(),
        headers: Vec::new(),
        source_ip: String::new(),
    });
    let labels: std::collections::HashMap<String, String> = serde_json::from_str(&r.labels).unwrap_or_default();
    pb::Event {
        id: r.id.clone(),
        project_id: r.project_id.clone(),
        source_id: r.source_id.clone().unwrap_or_default(),
        r#type: r.event_type.clone(),
        body: if full { r.body.clone() } else { Vec::new() },
        content_type: r.content_type.clone(),
        json: if full { parse_json(&r.content_type, &r.body).as_ref().map(json_to_value) } else { None },
        method: request.method,
        path: request.path,
        query: request.query,
        headers: if full {
            request.headers.into_iter().map(|(name, value)| pb::Header { name, value }).collect()
        } else {
            Vec::new()
        },
        source_ip: request.source_ip,
        idempotency_key: r.idempotency_key.clone().unwrap_or_default(),
        labels,
        occur_time: r.occur_time.map(to_timestamp),
        receive_time: Some(to_timestamp(r.receive_time)),
        deliver_time: r.deliver_time.map(to_timestamp),
        status: status_of(counts) as i32,
        deliveries_total: counts.total as u32,
        deliveries_succeeded: counts.succeeded as u32,
        deliveries_failed: counts.failed as u32,
        deliveries_pending: counts.pending as u32,
        body_size: r.body.len() as u64,
    }
}

impl Events {
    async fn load_event(&self, project: &str, id: &str, full: bool) -> ApiResult<pb::Event> {
        let record = self.0.store.get_event(project, id).await.map_err(|e| ApiError::from_store(e, "event", id))?;
        let counts = self.0.store.delivery_counts(project, id, id).await?.into_iter().next().unwrap_or_default();
        Ok(event_proto(&record, &counts, full))
    }
}

#[tonic::async_trait]
impl EventService for Events {
    async fn publish_event(
        &self,
        req: Request<pb::PublishEventRequest>,
    ) -> Result<Response<pb::PublishEventResponse>, Status> {
        let r = req.get_ref();
        let cx = self.0.cx(&req, &r.project_id, Access::Publish).await?;
        let incoming = incoming(&self.0, cx.project, r)?;
        let accepted = self.0.intake.accept(incoming).await.map_err(intake_error)?;
        metrics::counter!("loft_events_published_total", "outcome" => if accepted.duplicate { "duplicate" } else { "stored" }).increment(1);
        let event = match &accepted.stored {
            // Just committed: its deliveries are all still pending as far as this answer knows.
            Some(record) => {
                let n = i64::from(accepted.deliveries_created);
                let counts = DeliveryCounts { event_id: record.id.clone(), total: n, pending: n, ..Default::default() };
                event_proto(record, &counts, false)
            }
            None => self.load_event(&cx.project.to_string(), &accepted.event_id, false).await?,
        };
        Ok(Response::new(pb::PublishEventResponse {
            event: Some(event),
            deliveries_created: accepted.deliveries_created,
            duplicate: accepted.duplicate,
        }))
    }

    async fn get_event(&self, req: Request<pb::GetEventRequest>) -> Result<Response<pb::GetEventResponse>, Status> {
        let r = req.get_ref();
        let cx = self.0.cx(&req, &r.project_id, Access::Read).await?;
        let id: EventId = parse_id("event_id", &r.event_id)?;
        // GetEvent defaults to the full view.
        let full = r.view != pb::EventView::Basic as i32;
        Ok(Response::new(pb::GetEventResponse {
            event: Some(self.load_event(&cx.project.to_string(), &id.to_string(), full).await?),
        }))
    }

    async fn list_events(
        &self,
        req: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let r = req.get_ref();
        let cx = self.0.cx(&req, &r.project_id, Access::Read).await?;
        let page = Page::parse(r.page_size, &r.page_token)?;
        let mut v = Violations::default();
        let source_id = (!r.source_id.is_empty())
            .then(|| r.source_id.parse::<SourceId>().map_err(|e| v.invalid("source_id", e)).ok())
            .flatten();
        // `a.*` matches names under `a.`; a bare `a` matches `a` and names under it.
        let (type_exact, type_prefix) = if r.r#type.is_empty() {
            (None, None)
        } else {
            match EventTypePattern::parse(&r.r#type) {
                Ok(p) if p.is_all() => (None, None),
                Ok(_) => match r.r#type.strip_suffix('*') {
                    Some(prefix) => (None, Some(prefix.to_owned())),
                    None => (Some(r.r#type.clone()), Some(format!("{}.", r.r#type))),
                },
                Err(e) => {
                    v.invalid("type", e);
                    (None, None)
                }
            }
        };
        let time = |t: &Option<prost_types::Timestamp>, field: &str, v: &mut Violations| match t
            .as_ref()
            .map(from_timestamp)
        {
            None => None,
            Some(Some(t)) => Some(t),
            Some(None) => {
                v.invalid(field, "is not a valid timestamp");
                None
            }
        };
        let (start_time, end_time) = (time(&r.start_time, "start_time", &mut v), time(&r.end_time, "end_time", &mut v));
        let status = pb::EventStatus::try_from(r.status).unwrap_or(pb::EventStatus::Unspecified);
        v.finish()?;
        let filter = EventFilter {
            source_id: source_id.map(|s| s.to_string()),
            type_exact,
            type_prefix,
            start_time,
            end_time,
            search: (!r.search.is_empty()).then(|| r.search.as_bytes().to_vec()),
        };
        let project = cx.project.to_string();
        let mut rows =
            self.0.store.list_events(&project, page.after(), page.fetch(), &filter).await.map_err(ApiError::from)?;
        let next_page_token = page.finish(&mut rows, |e| e.id.clone());
        let counts = match (rows.last(), rows.first()) {
            (Some(oldest), Some(newest)) => {
                self.0.store.delivery_counts(&project, &oldest.id, &newest.id).await.map_err(ApiError::from)?
            }
            _ => Vec::new(),
        };
        let counts: std::collections::HashMap<_, _> = counts.into_iter().map(|c| (c.event_id.clone(), c)).collect();
        let full = r.view == pb::EventView::Full as i32;
        let events = rows
            .iter()
            .map(|e| event_proto(e, counts.get(&e.id).unwrap_or(&DeliveryCounts::default()), full))
            .filter(|e| status == pb::EventStatus::Unspecified || e.status == status as i32)
            .collect();
        Ok(Response::new(pb::ListEventsResponse { events, next_page_token }))
    }

    async fn replay_event(
        &self,
        req: Request<pb::ReplayEventRequest>,
    ) -> Result<Response<pb::ReplayEventResponse>, Status> {
        let r = req.get_ref();
        let cx = self.0.cx(&req, &r.project_id, Access::Write).await?;
        let event: EventId = parse_id("event_id", &r.event_id)?;
        let destination = (!r.destination_id.is_empty())
            .then(|| parse_id::<DestinationId>("destination_id", &r.destination_id))
            .transpose()?;
        let project = cx.project.to_string();
        self.0
            .store
            .get_event(&project, &event.to_string())
            .await
            .map_err(|e| ApiError::from_store(e, "event", event.to_string()))?;
        let dst = destination.map(|d| d.to_string());
        let replayed = self
            .0
            .store
            .replay_event(&project, &event.to_string(), dst.as_deref(), now_micros(), || {
                DeliveryId::generate().to_string()
            })
            .await
            .map_err(ApiError::from)?;
        if replayed.is_empty() {
            return Err(match dst {
                Some(d) => ApiError::not_found("destination", format!("{d} (no delivery of event {event} went there)")),
                None => ApiError::FailedPrecondition {
                    reason: ErrorReason::DeliveryStateConflict,
                    message: format!("event {event} matched no subscription; there is nothing to replay"),
                },
            }
            .into());
        }
        self.0.wake.notify();
        Ok(Response::new(pb::ReplayEventResponse {
            deliveries: replayed.iter().map(super::deliveries::delivery_proto).collect(),
        }))
    }

    async fn recover_destination(
        &self,
        req: Request<pb::RecoverDestinationRequest>,
    ) -> Result<Response<pb::RecoverDestinationResponse>, Status> {
        let r = req.get_ref();
        let cx = self.0.cx(&req, &r.project_id, Access::Write).await?;
        let id: DestinationId = parse_id("destination_id", &r.destination_id)?;
        let since = match r.start_time.as_ref().map(from_timestamp) {
            Some(Some(t)) => t,
            Some(None) => {
                return Err(
                    ApiError::invalid("start_time", ErrorReason::InvalidArgument, "is not a valid timestamp").into()
                );
            }
            None => return Err(ApiError::invalid("start_time", ErrorReason::InvalidArgument, "is required").into()),
        };
        cx.state
            .store
            .get_document::<crate::domain::destination::DestinationSpec>(cx.project, &id)
            .await
            .map_err(|e| ApiError::from_store(e, "destination", id.to_string()))?;
        let n = self
            .0
            .store
            .recover_destination(&cx.project.to_string(), &id.to_string(), since, now_micros())
            .await
            .map_err(ApiError::from)?;
        self.0.wake.notify();
        Ok(Response::new(pb::RecoverDestinationResponse { deliveries_recovered: n as u32 }))
    }

    type WatchEventsStream =
        Pin<Box<dyn futures::Stream<Item = Result<pb::WatchEventsResponse, Status>> + Send + 'static>>;

    async fn watch_events(
        &self,
        req: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let r = req.get_ref();
        let cx = self.0.cx(&req, &r.project_id, Access::Read).await?;
        let watch = WatchRequest::parse(cx.project.to_string(), r)?;
        let stream = crate::feed::watch(&self.0.feed, watch, self.0.heartbeat).await?;
        Ok(Response::new(Box::pin(stream)))
    }
}
