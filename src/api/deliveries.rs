//! `DeliveryService`: deliveries, their attempt log, and retrying or cancelling one.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::paging::Page;
use super::{AppState, Violations, parse_id};
use crate::auth::Access;
use crate::error::ApiError;
use crate::ids::{AttemptId, DeliveryId, DestinationId, EventId, SubscriptionId};
use crate::proto::ErrorReason;
use crate::proto::delivery_service_server::DeliveryService;
use crate::proto::{self as pb};
use crate::store::{AttemptFilter, AttemptOrder, AttemptRow, DeliveryFilter, DeliveryRecord, StoreError};
use crate::timeutil::{from_timestamp, now_micros, to_duration, to_timestamp};

pub struct Deliveries(pub Arc<AppState>);

fn state_of(s: &str) -> pb::DeliveryState {
    pb::DeliveryState::from_str_name(&format!("DELIVERY_STATE_{s}")).unwrap_or(pb::DeliveryState::Unspecified)
}

pub(crate) fn delivery_proto(d: &DeliveryRecord) -> pb::Delivery {
    pb::Delivery {
        id: d.id.clone(),
        project_id: d.project_id.clone(),
        event_id: d.event_id.clone(),
        subscription_id: d.subscription_id.clone(),
        destination_id: d.destination_id.clone(),
        state: state_of(&d.state) as i32,
        attempt_count: d.attempt_count as u32,
        next_attempt_time: d.next_attempt_time.map(to_timestamp),
        last_status_code: d.last_status_code.unwrap_or(0) as u32,
        last_error: d.last_error.clone(),
        replay_of: d.replay_of.clone().unwrap_or_default(),
        create_time: Some(to_timestamp(d.create_time)),
        update_time: Some(to_timestamp(d.update_time)),
    }
}

#[tonic::async_trait]
impl DeliveryService for Deliveries {
    async fn get_delivery(
        &self,
        req: Request<pb::GetDeliveryRequest>,
    ) -> Result<Response<pb::GetDeliveryResponse>, Status> {
        let r = req.get_ref();
        let cx = self.0.cx(&req, &r.project_id, Access::Read).await?;
        let id: DeliveryId = parse_id("delivery_id", &r.delivery_id)?;
        let d = self
            .0
            .store
            .get_delivery(&cx.project.to_string(), &id.to_string())
            .await
            .map_err(|e| ApiError::from_store(e, "delivery", id.to_string()))?;
        Ok(Response::new(pb::GetDeliveryResponse { delivery: Some(delivery_proto(&d)) }))
    }

    async fn list_deliveries(
        &self,
        req: Request<pb::ListDeliveriesRequest>,
    ) -> Result<Response<pb::ListDeliveriesResponse>, Status> {
        let r = req.get_ref();
        let cx = self.0.cx(&req, &r.project_id, Access::Read).await?;
        let page = Page::parse(r.page_size, &r.page_token)?;
        let mut v = Violations::default();
        let mut id = |field: &str, value: &str, parse: fn(&str) -> Result<String, crate::ids::IdError>| {
            (!value.is_empty()).then(|| parse(value).map_err(|e| v.invalid(field, e)).ok()).flatten()
        };
        let filter = DeliveryFilter {
            event_id: id("event_id", &r.event_id, |s| s.parse::<EventId>().map(|i| i.to_string())),
            destination_id: id("destination_id", &r.destination_id, |s| {
                s.parse::<DestinationId>().map(|i| i.to_string())
            }),
            subscription_id: id("subscription_id", &r.subscription_id, |s| {
                s.parse::<SubscriptionId>().map(|i| i.to_string())
            }),
            state: match pb::DeliveryState::try_from(r.state) {
                Ok(pb::DeliveryState::Unspecified) => None,
                Ok(s) => Some(s.as_str_name().trim_start_matches("DELIVERY_STATE_").to_owned()),
                Err(_) => {
                    v.invalid("state", "unknown state");
                    None
                }
            },
        };
        v.finish()?;
        let mut rows = self
            .0
            .store
            .list_deliveries(&cx.project.to_string(), page.after(), page.fetch(), &filter)
            .await
            .map_err(ApiError::from)?;
        let next_page_token = page.finish(&mut rows, |d| d.id.clone());
        Ok(Response::new(pb::ListDeliveriesResponse {
            deliveries: rows.iter().map(delivery_proto).collect(),
            next_page_token,
        }))
    }

    async fn retry_delivery(
        &self,
        req: Request<pb::RetryDeliveryRequest>,
    ) -> Result<Response<pb::RetryDeliveryResponse>, Status> {
        let r = req.get_ref();
        let cx = self.0.cx(&req, &r.project_id, Access::Write).await?;
        let id: DeliveryId = parse_id("delivery_id", &r.delivery_id)?;
        let project = cx.project.to_string();
        self.0.store.retry_delivery(&project, &id.to_string(), now_micros()).await.map_err(|e| match e {
            StoreError::AlreadyExists => ApiError::FailedPrecondition {
                reason: ErrorReason::DeliveryStateConflict,
                message: format!("delivery {id} has an attempt in flight"),
            },
            e => ApiError::from_store(e, "delivery", id.to_string()),
        })?;
        self.0.wake.notify();
        let d = self.0.store.get_delivery(&project, &id.to_string()).await.map_err(ApiError::from)?;
        Ok(Response::new(pb::RetryDeliveryResponse { delivery: Some(delivery_proto(&d)) }))
    }

    async fn cancel_delivery(
        &self,
        req: Request<pb::CancelDeliveryRequest>,
    ) -> Result<Response<pb::CancelDeliveryResponse>, Status> {
        let r = req.get_ref();
        let cx = self.0.cx(&req, &r.project_id, Access::Write).await?;
        let id: DeliveryId = parse_id("delivery_id", &r.delivery_id)?;
        let project = cx.project.to_string();
        self.0.store.cancel_delivery(&project, &id.to_string(), now_micros()).await.map_err(|e| match e {
            StoreError::AlreadyExists => ApiError::FailedPrecondition {
                reason: ErrorReason::DeliveryStateConflict,
                message: format!("delivery {id} has already finished"),
            },
            e => ApiError::from_store(e, "delivery", id.to_string()),
        })?;
        let d = self.0.store.get_delivery(&project, &id.to_string()).await.map_err(ApiError::from)?;
        Ok(Response::new(pb::CancelDeliveryResponse { delivery: Some(delivery_proto(&d)) }))
    }

    async fn get_attempt(
        &self,
        req: Request<pb::GetAttemptRequest>,
    ) -> Result<Response<pb::GetAttemptResponse>, Status> {
        let r = req.get_ref();
        let cx = self.0.cx(&req, &r.project_id, Access::Read).await?;
        let id: AttemptId = parse_id("attempt_id", &r.attempt_id)?;
        let a = self
            .0
            .store
            .get_attempt(&cx.project.to_string(), &id.to_string())
            .await
            .map_err(|e| ApiError::from_store(e, "attempt", id.to_string()))?;
        Ok(Response::new(pb::GetAttemptResponse { attempt: Some(attempt_proto(&a, true)) }))
    }

    async fn list_attempts(
        &self,
        req: Request<pb::ListAttemptsRequest>,
    ) -> Result<Response<pb::ListAttemptsResponse>, Status> {
        let r = req.get_ref();
        let cx = self.0.cx(&req, &r.project_id, Access::Read).await?;
        let page = Page::parse(r.page_size, &r.page_token)?;
        let mut v = Violations::default();
        let mut id = |field: &str, value: &str, parse: fn(&str) -> Result<String, crate::ids::IdError>| {
            (!value.is_empty()).then(|| parse(value).map_err(|e| v.invalid(field, e)).ok()).flatten()
        };
        let delivery_id = id("delivery_id", &r.delivery_id, |s| s.parse::<DeliveryId>().map(|i| i.to_string()));
        let event_id = id("event_id", &r.event_id, |s| s.parse::<EventId>().map(|i| i.to_string()));
        let destination_id =
            id("destination_id", &r.destination_id, |s| s.parse::<DestinationId>().map(|i| i.to_string()));
        let time = |t: &Option<prost_types::Timestamp>, field: &str, v: &mut Violations| match t
            .as_ref()
            .map(from_timestamp)
        {
            Some(None) => {
                v.invalid(field, "is not a valid timestamp");
                None
            }
            other => other.flatten(),
        };
        let filter = AttemptFilter {
            delivery_id,
            event_id,
            destination_id,
            outcome: match pb::AttemptOutcome::try_from(r.outcome) {
                Ok(pb::AttemptOutcome::Succeeded) => Some("SUCCEEDED".to_owned()),
                Ok(pb::AttemptOutcome::Failed) => Some("FAILED".to_owned()),
                _ => None,
            },
            start_time: time(&r.start_time, "start_time", &mut v),
            end_time: time(&r.end_time, "end_time", &mut v),
        };
        let order = match pb::AttemptOrder::try_from(r.order_by) {
            Ok(pb::AttemptOrder::Oldest) => AttemptOrder::Oldest,
            Ok(pb::AttemptOrder::Duration) => AttemptOrder::Duration,
            Ok(pb::AttemptOrder::StatusCode) => AttemptOrder::StatusCode,
            _ => AttemptOrder::Newest,
        };
        // The token's position is `key:id`; a token from another order does not parse as one.
        let after = match page.after() {
            None => None,
            Some(pos) => match pos.split_once(':').and_then(|(k, id)| Some((k.parse::<i64>().ok()?, id))) {
                Some(p) => Some(p),
                None => {
                    v.add("page_token", ErrorReason::InvalidPageToken, "is not a page token returned by this method");
                    None
                }
            },
        };
        v.finish()?;
        let project = cx.project.to_string();
        let mut rows =
            self.0.store.list_attempts(&project, order, after, page.fetch(), &filter).await.map_err(ApiError::from)?;
        let next_page_token = page.finish(&mut rows, |a| {
            let key = match order {
                AttemptOrder::Duration => a.duration_us,
                AttemptOrder::StatusCode => a.status_code.unwrap_or(1000),
                _ => 0,
            };
            format!("{key}:{}", a.id)
        });
        // Lists leave bodies out; GetAttempt has them.
        Ok(Response::new(pb::ListAttemptsResponse {
            attempts: rows.iter().map(|a| attempt_proto(a, false)).collect(),
            next_page_token,
        }))
    }
}

fn headers_proto(json: &str) -> Vec<pb::Header> {
    serde_json::from_str::<Vec<(String, String)>>(json)
        .unwrap_or_default()
        .into_iter()
        .map(|(name, value)| pb::Header { name, value })
        .collect()
}

pub(crate) fn attempt_proto(a: &AttemptRow, bodies: bool) -> pb::Attempt {
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct Sent {
        url: String,
        method: String,
        headers: Vec<(String, String)>,
        body_size: u64,
    }
    let sent: Sent = serde_json::from_str(&a.request).unwrap_or_default();
    let error = a.error_kind.as_deref().map(|kind| pb::AttemptError {
        kind: pb::AttemptErrorKind::from_str_name(&format!("ATTEMPT_ERROR_KIND_{kind}"))
            .unwrap_or(pb::AttemptErrorKind::Unspecified) as i32,
        message: a.error_message.clone().unwrap_or_default(),
    });
    let error = error.or_else(|| match (a.status_code, &a.error_message) {
        (Some(code), _) if !(200..300).contains(&code) => {
            Some(pb::AttemptError { kind: pb::AttemptErrorKind::HttpStatus as i32, message: format!("HTTP {code}") })
        }
        (None, Some(message)) => {
            Some(pb::AttemptError { kind: pb::AttemptErrorKind::Unspecified as i32, message: message.clone() })
        }
        _ => None,
    });
    pb::Attempt {
        id: a.id.clone(),
        project_id: a.project_id.clone(),
        delivery_id: a.delivery_id.clone(),
        event_id: a.event_id.clone(),
        destination_id: a.destination_id.clone(),
        number: a.number as u32,
        request: Some(pb::AttemptRequest {
            url: sent.url,
            method: sent.method,
            headers: sent.headers.into_iter().map(|(name, value)| pb::Header { name, value }).collect(),
            // Nothing sent (the destination was gone): the delivery's body was not either.
            body: if bodies && sent.body_size > 0 { a.request_body.clone() } else { Vec::new() },
            body_truncated: (a.request_body.len() as u64) < sent.body_size,
            body_size: sent.body_size,
        }),
        response: a.status_code.map(|code| pb::AttemptResponse {
            status_code: code as u32,
            headers: headers_proto(&a.response_headers),
            body: if bodies { a.response_body.clone() } else { Vec::new() },
            body_truncated: a.response_truncated,
        }),
        error,
        outcome: if a.outcome == "SUCCEEDED" { pb::AttemptOutcome::Succeeded } else { pb::AttemptOutcome::Failed }
            as i32,
        start_time: Some(to_timestamp(a.start_time)),
        duration: Some(to_duration(std::time::Duration::from_micros(a.duration_us.max(0) as u64))),
    }
}
