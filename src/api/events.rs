//! `EventService`. Publishing, event reads, replay and the live feed arrive with the delivery
//! engine and the feed; until then they answer `UNIMPLEMENTED`.

use std::pin::Pin;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::AppState;
use crate::proto::event_service_server::EventService;
use crate::proto::{self as pb};

pub struct Events(#[allow(dead_code)] pub Arc<AppState>);

fn not_yet(what: &str) -> Status {
    Status::unimplemented(format!("{what} is not implemented yet"))
}

#[tonic::async_trait]
impl EventService for Events {
    async fn publish_event(
        &self,
        _: Request<pb::PublishEventRequest>,
    ) -> Result<Response<pb::PublishEventResponse>, Status> {
        Err(not_yet("PublishEvent"))
    }

    async fn get_event(&self, _: Request<pb::GetEventRequest>) -> Result<Response<pb::GetEventResponse>, Status> {
        Err(not_yet("GetEvent"))
    }

    async fn list_events(&self, _: Request<pb::ListEventsRequest>) -> Result<Response<pb::ListEventsResponse>, Status> {
        Err(not_yet("ListEvents"))
    }

    async fn replay_event(
        &self,
        _: Request<pb::ReplayEventRequest>,
    ) -> Result<Response<pb::ReplayEventResponse>, Status> {
        Err(not_yet("ReplayEvent"))
    }

    async fn recover_destination(
        &self,
        _: Request<pb::RecoverDestinationRequest>,
    ) -> Result<Response<pb::RecoverDestinationResponse>, Status> {
        Err(not_yet("RecoverDestination"))
    }

    type WatchEventsStream =
        Pin<Box<dyn futures::Stream<Item = Result<pb::WatchEventsResponse, Status>> + Send + 'static>>;

    async fn watch_events(
        &self,
        _: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        Err(not_yet("WatchEvents"))
    }
}
