//! `DeliveryService`: deliveries and their attempts. Retrying, cancelling and the attempt log
//! arrive with the dispatcher; until then those RPCs answer `UNIMPLEMENTED`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::paging::Page;
use super::{AppState, Violations, parse_id};
use crate::auth::Access;
use crate::error::ApiError;
use crate::ids::{DeliveryId, DestinationId, EventId, SubscriptionId};
use crate::proto::delivery_service_server::DeliveryService;
use crate::proto::{self as pb};
use crate::store::{DeliveryFilter, DeliveryRecord};
use crate::timeutil::to_timestamp;

pub struct Deliveries(pub Arc<AppState>);

fn not_yet(what: &str) -> Status {
    Status::unimplemented(format!("{what} is not implemented yet"))
}

fn state_of(s: &str) -> pb::DeliveryState {
    pb::DeliveryState::from_str_name(&format!("DELIVERY_STATE_{s}")).unwrap_or(pb::DeliveryState::Unspecified)
}

pub(super) fn delivery_proto(d: &DeliveryRecord) -> pb::Delivery {
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
        _: Request<pb::RetryDeliveryRequest>,
    ) -> Result<Response<pb::RetryDeliveryResponse>, Status> {
        Err(not_yet("RetryDelivery"))
    }

    async fn cancel_delivery(
        &self,
        _: Request<pb::CancelDeliveryRequest>,
    ) -> Result<Response<pb::CancelDeliveryResponse>, Status> {
        Err(not_yet("CancelDelivery"))
    }

    async fn get_attempt(&self, _: Request<pb::GetAttemptRequest>) -> Result<Response<pb::GetAttemptResponse>, Status> {
        Err(not_yet("GetAttempt"))
    }

    async fn list_attempts(
        &self,
        _: Request<pb::ListAttemptsRequest>,
    ) -> Result<Response<pb::ListAttemptsResponse>, Status> {
        Err(not_yet("ListAttempts"))
    }
}
