//! Creates what the scenarios need through the gRPC API, and checks whether HTTP ingest exists.
//!
//! One project; two sources — `bench-ingest` (routed nowhere: durable ingest alone) and
//! `bench-e2e` (routed to the receiver); one destination (the receiver); two subscriptions —
//! events of source `bench-e2e`, and published events of type `bench.delivered`. Published
//! events of type `bench.publish` match nothing, so `publish` measures durable publish alone.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use loft::proto::api_key_service_client::ApiKeyServiceClient;
use loft::proto::destination_service_client::DestinationServiceClient;
use loft::proto::event_service_client::EventServiceClient;
use loft::proto::project_service_client::ProjectServiceClient;
use loft::proto::source_service_client::SourceServiceClient;
use loft::proto::subscription_service_client::SubscriptionServiceClient;
use loft::proto::{
    ApiKey, ApiKeyRole, CreateApiKeyRequest, CreateDestinationRequest, CreateProjectRequest, CreateSourceRequest,
    CreateSubscriptionRequest, Destination, DestinationState, GetDestinationRequest, PauseDestinationRequest, Project,
    PublishEventRequest, RawPayload, ResumeDestinationRequest, Source, Subscription, publish_event_request,
};
use prost::Message;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use crate::util::{make_body, now_ns};

pub const PUBLISH_TYPE: &str = "bench.publish";
pub const DELIVERED_TYPE: &str = "bench.delivered";

pub struct Fixture {
    pub project_id: String,
    pub ingest_source: String,
    pub e2e_source: String,
    pub destination_id: String,
    /// HTTP ingest: `Ok(answer body)` when `POST /in/{source}` stored an event, else why not.
    pub ingest: Result<Bytes, String>,
    /// `authorization` for the scenarios: the admin key, or a project EDITOR key.
    pub auth: MetadataValue<Ascii>,
    /// A real `PublishEventResponse` and `GetDestinationResponse`, encoded, for the baseline.
    pub publish_response: Bytes,
    pub get_destination_response: Bytes,
}

pub async fn channel(addr: SocketAddr) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await?)
}

fn req<T>(auth: &MetadataValue<Ascii>, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert("authorization", auth.clone());
    r
}

/// Where the fixture is created and how.
pub struct FixtureOptions<'a> {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    /// The bootstrap ADMIN key.
    pub auth: &'a MetadataValue<Ascii>,
    pub receiver: SocketAddr,
    /// The destination's `max_in_flight`; 0 keeps the server's default.
    pub max_in_flight: u32,
    pub body_bytes: usize,
    /// Tags the probe bodies.
    pub probe_run: u32,
    /// Call the scenarios with a project EDITOR key instead of the ADMIN key.
    pub editor_key: bool,
}

/// Sets up the fixture on a freshly started server.
pub async fn create(o: FixtureOptions<'_>) -> anyhow::Result<Fixture> {
    let FixtureOptions { grpc, http, auth, receiver, max_in_flight, body_bytes, probe_run, editor_key } = o;
    let ch = channel(grpc).await.context("connecting to the gRPC listener")?;
    let project = ProjectServiceClient::new(ch.clone())
        .create_project(req(
            auth,
            CreateProjectRequest { project: Some(Project { name: "loft-bench".into(), ..Default::default() }) },
        ))
        .await
        .context("CreateProject")?
        .into_inner()
        .project
        .context("CreateProject returned no project")?;
    let project_id = project.id;

    let scenario_auth: MetadataValue<Ascii> = if editor_key {
        let secret = ApiKeyServiceClient::new(ch.clone())
            .create_api_key(req(
                auth,
                CreateApiKeyRequest {
                    api_key: Some(ApiKey {
                        project_id: project_id.clone(),
                        name: "loft-bench".into(),
                        role: ApiKeyRole::Editor as i32,
                        ..Default::default()
                    }),
                },
            ))
            .await
            .context("CreateApiKey (EDITOR)")?
            .into_inner()
            .secret;
        format!("Bearer {secret}").parse()?
    } else {
        auth.clone()
    };
    let auth = &scenario_auth;

    let mut sources = SourceServiceClient::new(ch.clone());
    let mut source_ids = Vec::new();
    for name in ["bench-ingest", "bench-e2e"] {
        let id = sources
            .create_source(req(
                auth,
                CreateSourceRequest {
                    project_id: project_id.clone(),
                    source: Some(Source { name: name.into(), ..Default::default() }),
                },
            ))
            .await
            .with_context(|| format!("CreateSource {name}"))?
            .into_inner()
            .source
            .context("CreateSource returned no source")?
            .id;
        source_ids.push(id);
    }
    let (ingest_source, e2e_source) = (source_ids[0].clone(), source_ids[1].clone());

    let destination_id = DestinationServiceClient::new(ch.clone())
        .create_destination(req(
            auth,
            CreateDestinationRequest {
                project_id: project_id.clone(),
                destination: Some(Destination {
                    name: "bench-receiver".into(),
                    url: format!("http://{receiver}/hook"),
                    max_in_flight,
                    ..Default::default()
                }),
            },
        ))
        .await
        .context("CreateDestination")?
        .into_inner()
        .destination
        .context("CreateDestination returned no destination")?
        .id;

    let mut subs = SubscriptionServiceClient::new(ch.clone());
    for sub in [
        Subscription { destination_id: destination_id.clone(), source_id: e2e_source.clone(), ..Default::default() },
        Subscription {
            destination_id: destination_id.clone(),
            event_types: vec![DELIVERED_TYPE.into()],
            ..Default::default()
        },
    ] {
        subs.create_subscription(req(
            auth,
            CreateSubscriptionRequest { project_id: project_id.clone(), subscription: Some(sub) },
        ))
        .await
        .context("CreateSubscription")?;
    }

    // Real answers for the baseline to repeat.
    let publish_response = EventServiceClient::new(ch.clone())
        .publish_event(req(
            auth,
            PublishEventRequest {
                project_id: project_id.clone(),
                r#type: PUBLISH_TYPE.into(),
                payload: Some(publish_event_request::Payload::Raw(RawPayload {
                    body: make_body(probe_run, 0, now_ns(), body_bytes),
                    content_type: "application/json".into(),
                })),
                ..Default::default()
            },
        ))
        .await
        .context("PublishEvent (probe)")?
        .into_inner()
        .encode_to_vec()
        .into();
    let get_destination_response = DestinationServiceClient::new(ch.clone())
        .get_destination(req(
            auth,
            GetDestinationRequest { project_id: project_id.clone(), destination_id: destination_id.clone() },
        ))
        .await
        .context("GetDestination (probe)")?
        .into_inner()
        .encode_to_vec()
        .into();

    let ingest = probe_ingest(http, &ingest_source, make_body(probe_run, 1, now_ns(), body_bytes)).await;
    Ok(Fixture {
        project_id,
        ingest_source,
        e2e_source,
        destination_id,
        ingest,
        auth: scenario_auth.clone(),
        publish_response,
        get_destination_response,
    })
}

/// `PauseDestination` (`pause`) or `ResumeDestination`; fails unless the destination answers in
/// the state asked for.
pub async fn set_paused(
    grpc: SocketAddr,
    auth: &MetadataValue<Ascii>,
    project_id: &str,
    destination_id: &str,
    pause: bool,
) -> anyhow::Result<()> {
    let mut client = DestinationServiceClient::new(channel(grpc).await?);
    let (project_id, destination_id) = (project_id.to_owned(), destination_id.to_owned());
    let (destination, call, want) = if pause {
        let r = client.pause_destination(req(auth, PauseDestinationRequest { project_id, destination_id })).await;
        (r.context("PauseDestination")?.into_inner().destination, "PauseDestination", DestinationState::Paused)
    } else {
        let r = client.resume_destination(req(auth, ResumeDestinationRequest { project_id, destination_id })).await;
        (r.context("ResumeDestination")?.into_inner().destination, "ResumeDestination", DestinationState::Active)
    };
    let state = destination.with_context(|| format!("{call} returned no destination"))?.state();
    anyhow::ensure!(state == want, "{call} left the destination {}", state.as_str_name());
    Ok(())
}

/// One `POST /in/{source}`: the answer body on 2xx, else why ingest cannot be measured.
async fn probe_ingest(http: SocketAddr, source: &str, body: Vec<u8>) -> Result<Bytes, String> {
    let client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = http::Request::post(format!("http://{http}/in/{source}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .map_err(|_| "POST /in/{source_id} timed out".to_string())?
        .map_err(|e| format!("POST /in/{{source_id}} failed: {e}"))?;
    let status = resp.status();
    let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    if status.is_success() {
        return Ok(body);
    }
    let snippet: String = String::from_utf8_lossy(&body).chars().take(120).collect();
    Err(if status == http::StatusCode::NOT_FOUND && body.is_empty() {
        "POST /in/{source_id} answered 404 with no body: no ingest route in this build".into()
    } else {
        format!("POST /in/{{source_id}} answered {status}: {snippet}")
    })
}
