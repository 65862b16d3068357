//! `DeliveryService`. Arrives with the delivery engine; until then it answers `UNIMPLEMENTED`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::AppState;
use crate::proto::delivery_service_server::DeliveryService;
use crate::proto::{self as pb};

pub struct Deliveries(#[allow(dead_code)] pub Arc<AppState>);

fn not_yet(what: &str) -> Status {
    Status::unimplemented(format!("{what} is not implemented yet"))
}

#[tonic::async_trait]
impl DeliveryService for Deliveries {
    async fn get_delivery(
        &self,
        _: Request<pb::GetDeliveryRequest>,
    ) -> Result<Response<pb::GetDeliveryResponse>, Status> {
        Err(not_yet("GetDelivery"))
    }

    async fn list_deliveries(
        &self,
        _: Request<pb::ListDeliveriesRequest>,
    ) -> Result<Response<pb::ListDeliveriesResponse>, Status> {
        Err(not_yet("ListDeliveries"))
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
