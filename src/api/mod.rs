//! The gRPC transport: decode request → authorize → call domain/store → encode response.
//!
//! Configuration resources share one flow (`resource.rs`); each resource's file says only how
//! its proto message maps to its domain spec.

mod api_keys;
mod audit;
mod convert;
mod deliveries;
mod destinations;
mod event_types;
mod events;
mod paging;
mod projects;
mod resource;
mod sources;
mod subscriptions;
mod templates;

use std::sync::Arc;

use crate::auth::{Access, Authenticator};
use crate::crypto::Cipher;
use crate::delivery::dispatcher::{Dispatcher, Wake};
use crate::domain::url_policy::UrlPolicy;
use crate::error::{ApiError, FieldViolation};
use crate::ingest::Ingest;
use crate::intake::Intake;
use crate::proto::ErrorReason;
use crate::proto::api_key_service_server::ApiKeyServiceServer;
use crate::proto::delivery_service_server::DeliveryServiceServer;
use crate::proto::destination_service_server::DestinationServiceServer;
use crate::proto::event_service_server::EventServiceServer;
use crate::proto::event_type_service_server::EventTypeServiceServer;
use crate::proto::project_service_server::ProjectServiceServer;
use crate::proto::source_service_server::SourceServiceServer;
use crate::proto::subscription_service_server::SubscriptionServiceServer;
use crate::proto::template_service_server::TemplateServiceServer;
use crate::store::Store;
use resource::Cx;

pub(crate) use deliveries::{attempt_proto, delivery_proto};
pub(crate) use events::event_proto;

/// What every service needs.
pub struct AppState {
    pub store: Store,
    pub auth: Authenticator,
    pub cipher: Cipher,
    pub url_policy: UrlPolicy,
    /// Base of sources' `ingest_url`, without a trailing slash.
    pub public_url: String,
    pub max_body_bytes: u64,
    /// The accept path shared with HTTP ingest.
    pub intake: Intake,
    /// HTTP ingest, whose source cache follows changes made here.
    pub ingest: Ingest,
    /// Tells the dispatcher that deliveries came due (retry now).
    pub wake: Wake,
    /// For `TestDestination`'s synchronous attempt.
    pub dispatcher: Dispatcher,
    /// The live feed of `WatchEvents`.
    pub feed: crate::feed::FeedHub,
    /// How long a quiet `WatchEvents` stream waits before sending a heartbeat.
    pub heartbeat: std::time::Duration,
}

impl AppState {
    /// Authenticates the caller and resolves the project a project-scoped request acts on.
    pub async fn cx<T>(&self, req: &tonic::Request<T>, project: &str, access: Access) -> Result<Cx<'_>, ApiError> {
        let scope = self.auth.scope(req, project, access).await?;
        Ok(Cx { state: self, project: scope.project, principal: scope.principal, creating: false })
    }
}

/// The fully qualified names of Loft's services, for health reporting.
pub const SERVICE_NAMES: &[&str] = &[
    "loft.v1.ProjectService",
    "loft.v1.ApiKeyService",
    "loft.v1.SourceService",
    "loft.v1.DestinationService",
    "loft.v1.SubscriptionService",
    "loft.v1.EventTypeService",
    "loft.v1.TemplateService",
    "loft.v1.EventService",
    "loft.v1.DeliveryService",
];

/// Every Loft service, with message limits raised to fit the largest accepted body.
pub fn routes(state: Arc<AppState>, max_message: usize) -> tonic::service::Routes {
    macro_rules! service {
        ($server:ident, $svc:expr) => {
            $server::new($svc).max_decoding_message_size(max_message).max_encoding_message_size(max_message)
        };
    }
    tonic::service::Routes::default()
        .add_service(service!(ProjectServiceServer, projects::Projects(state.clone())))
        .add_service(service!(ApiKeyServiceServer, api_keys::ApiKeys(state.clone())))
        .add_service(service!(SourceServiceServer, sources::Sources(state.clone())))
        .add_service(service!(DestinationServiceServer, destinations::Destinations(state.clone())))
        .add_service(service!(SubscriptionServiceServer, subscriptions::Subscriptions(state.clone())))
        .add_service(service!(EventTypeServiceServer, event_types::EventTypes(state.clone())))
        .add_service(service!(TemplateServiceServer, templates::Templates(state.clone())))
        .add_service(service!(EventServiceServer, events::Events(state.clone())))
        .add_service(service!(DeliveryServiceServer, deliveries::Deliveries(state)))
}

/// Collects every invalid field of a request, so one answer lists them all.
#[derive(Debug, Default)]
pub struct Violations {
    reason: Option<ErrorReason>,
    items: Vec<FieldViolation>,
}

impl Violations {
    pub fn add(&mut self, field: impl Into<String>, reason: ErrorReason, description: impl std::fmt::Display) {
        // The ErrorInfo carries one reason: the first specific one wins over the generic one.
        if self.reason.is_none_or(|r| r == ErrorReason::InvalidArgument) {
            self.reason = Some(reason);
        }
        self.items.push(FieldViolation { field: field.into(), description: description.to_string() });
    }

    /// Shorthand for a generic invalid value.
    pub fn invalid(&mut self, field: impl Into<String>, description: impl std::fmt::Display) {
        self.add(field, ErrorReason::InvalidArgument, description)
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn finish(self) -> Result<(), ApiError> {
        if self.items.is_empty() {
            return Ok(());
        }
        Err(ApiError::InvalidArgument {
            reason: self.reason.unwrap_or(ErrorReason::InvalidArgument),
            violations: self.items,
        })
    }
}

/// Parses a prefixed id from a request field.
pub fn parse_id<T: std::str::FromStr<Err = crate::ids::IdError>>(field: &str, value: &str) -> Result<T, ApiError> {
    value.parse().map_err(|e| ApiError::invalid(field, ErrorReason::InvalidArgument, format!("{e}")))
}
