//! Logs and metrics.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

use crate::config::LogFormat;

/// Installs the `tracing` subscriber (`RUST_LOG`, default `info`). Safe to call twice.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,h2=warn,tower=warn,hyper=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// The process-wide Prometheus recorder; installed once, shared by every server in the process
/// (tests start several).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed by an embedding program; then ours only
            // renders what it was given.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Refreshes the gauges of `/metrics` every few seconds (queue depth, deliveries in flight,
/// open circuits; labels carry no ids or URLs) and runs the recorder's upkeep.
pub async fn report_gauges(
    store: crate::store::Store,
    dispatcher: crate::delivery::dispatcher::Dispatcher,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let handle = metrics_handle();
    loop {
        // The recorder keeps every histogram sample until upkeep folds them into its buckets;
        // without this (the builder's own upkeep task comes only with `install`), memory would
        // grow with each delivery between scrapes, and forever when nobody scrapes.
        handle.run_upkeep();
        if let Ok((queued, open)) = store.queue_figures().await {
            metrics::gauge!("loft_queue_depth").set(queued as f64);
            metrics::gauge!("loft_circuits_open").set(open as f64);
        }
        metrics::gauge!("loft_deliveries_in_flight").set(dispatcher.in_flight() as f64);
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
