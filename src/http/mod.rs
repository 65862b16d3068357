//! The HTTP listener: ingest (`/in/{source_id}`, with the delivery engine), `/healthz`,
//! `/readyz` and `/metrics`.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{any, get};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::ingest::{Ingest, ingest_root, ingest_sub};
use crate::store::Store;

#[derive(Clone)]
struct HttpState {
    store: Store,
    metrics: PrometheusHandle,
}

pub fn router(store: Store, metrics: PrometheusHandle, ingest: Ingest) -> Router {
    let inbound = Router::new()
        .route("/in/{source_id}", any(ingest_root))
        .route("/in/{source_id}/{*path}", any(ingest_sub))
        .with_state(ingest);
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .with_state(HttpState { store, metrics })
        .merge(inbound)
}

/// Ready while the database answers.
async fn readyz(State(s): State<HttpState>) -> impl IntoResponse {
    match s.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready\n"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n"),
    }
}

async fn render_metrics(State(s): State<HttpState>) -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.metrics.render())
}
