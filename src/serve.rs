//! The composition root: config → store → services → listeners, in one function.
//!
//! `loft serve` and the integration tests both call [`start`], the tests with listeners bound to
//! `127.0.0.1:0`; they get back a [`Running`] server with its addresses and a shutdown handle.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

use crate::api::{self, AppState};
use crate::auth::{ApiKeySecret, Authenticator, Role};
use crate::config::ServeConfig;
use crate::crypto::Cipher;
use crate::delivery::dispatcher::{Dispatcher, Wake};
use crate::delivery::sender::Sender;
use crate::domain::url_policy::UrlPolicy;
use crate::feed::FeedHub;
use crate::ids::ApiKeyId;
use crate::ingest::Ingest;
use crate::intake::Intake;
use crate::routing::router::Router;
use crate::store::{Backend, GroupWriter, NewApiKey, Store};
use crate::timeutil::now_micros;

/// How often the database is pinged to drive health and readiness.
const HEALTH_INTERVAL: Duration = Duration::from_secs(1);
/// gRPC messages may carry bodies up to the body limit plus envelope.
const GRPC_MESSAGE_SLACK: usize = 1024 * 1024;

/// A started server.
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub store: Store,
    /// The generated bootstrap ADMIN key, when this start created one.
    pub bootstrap_key: Option<String>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish, and closes the database.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        self.store.close().await;
    }

    /// A token that stops the server when cancelled (SIGTERM/SIGINT in `loft serve`).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// Opens the store, migrates, bootstraps, and serves on the given listeners.
pub async fn start(config: ServeConfig, grpc: TcpListener, http: TcpListener) -> anyhow::Result<Running> {
    let store = Store::connect(&config.database.database_url)
        .await
        .with_context(|| format!("connecting to {}", crate::config::redact_url(&config.database.database_url)))?;
    store.migrate().await.context("applying migrations")?;
    let cipher = master_key(&config, store.backend())?;
    let bootstrap_key = bootstrap_admin_key(&store, config.bootstrap_admin_key.as_deref()).await?;

    let dev = config.dev;
    let http_addr = http.local_addr()?;
    let public_url = config.public_url.clone().unwrap_or_else(|| format!("http://{http_addr}"));
    let router = Router::new(store.clone());
    let wake = Wake::default();
    let url_policy = UrlPolicy {
        allow_http: config.allow_http_destinations || dev,
        allow_private: config.allow_private_destinations || dev,
        allowed_cidrs: config.allow_destination_cidrs.clone(),
    };
    let sender = Sender::new(url_policy.clone(), format!("Loft/{}", env!("CARGO_PKG_VERSION")))?;
    let disable_after = Duration::from_secs(config.disable_failing_destinations_after);
    let dispatcher =
        Dispatcher::new(store.clone(), sender, cipher.clone(), router.clone(), wake.clone(), disable_after);
    // Fresh deliveries go to the dispatcher the moment their transaction commits.
    let (writer, writer_task) = GroupWriter::start(store.clone(), dispatcher.fresh_deliveries());
    let intake = Intake::new(writer, router);
    let ingest = Ingest::new(store.clone(), cipher.clone(), intake.clone());
    let shutdown = CancellationToken::new();
    let feed = FeedHub::new(store.clone(), shutdown.clone());
    let state = Arc::new(AppState {
        store: store.clone(),
        auth: Authenticator::new(store.clone()),
        cipher,
        url_policy,
        public_url: public_url.trim_end_matches('/').to_owned(),
        max_body_bytes: config.max_body_bytes,
        intake,
        ingest: ingest.clone(),
        wake: wake.clone(),
        dispatcher: dispatcher.clone(),
        feed: feed.clone(),
        heartbeat: Duration::from_secs(config.feed_heartbeat_interval.max(1)),
    });

    let grpc_addr = grpc.local_addr()?;
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let max_message = config.max_body_bytes as usize + GRPC_MESSAGE_SLACK;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let (reflection_v1, reflection_v1alpha) = (reflection().build_v1()?, reflection().build_v1alpha()?);
    // Browsers call through gRPC-Web; they need CORS and to read the grpc-* trailers.
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::mirror_request())
        .allow_headers(AllowHeaders::mirror_request())
        .allow_methods([http::Method::POST, http::Method::OPTIONS])
        .expose_headers(["grpc-status", "grpc-message", "grpc-status-details-bin"].map(http::HeaderName::from_static))
        .max_age(Duration::from_secs(3600));
    let routes = api::routes(state.clone(), max_message)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    let grpc_server = tonic::transport::Server::builder()
        .accept_http1(true)
        .layer(cors)
        .layer(tonic_web::GrpcWebLayer::new())
        .add_routes(routes)
        // Answers go out at once (`TCP_NODELAY`): tonic sets it only on listeners it binds
        // itself. With Nagle's algorithm on, an answer written while an earlier one was still
        // unacknowledged waited for the client's delayed ACK — 40 ms on Linux, the p99 of
        // GetDestination at c = 64 on PostgreSQL, whose answers finish at different times.
        .serve_with_incoming_shutdown(
            TcpIncoming::from(grpc).with_nodelay(Some(true)),
            shutdown.clone().cancelled_owned(),
        );

    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = grpc_server.await {
            tracing::error!(error = %e, "gRPC server stopped");
        }
    }));

    let router = crate::http::router(store.clone(), crate::telemetry::metrics_handle(), ingest);
    let http_shutdown = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        // As for gRPC: answers go out at once.
        let http = http.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "could not set TCP_NODELAY");
            }
        });
        let served = axum::serve(http, router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(http_shutdown.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    }));

    // Known before the first request is answered, so a health check never finds a service
    // unregistered.
    let up = database_answers(&store).await;
    set_health(&health_reporter, up).await;
    tasks.push(tokio::spawn(watch_health(store.clone(), health_reporter, up, shutdown.clone())));
    tasks.push(tokio::spawn(crate::telemetry::report_gauges(store.clone(), dispatcher.clone(), shutdown.clone())));
    tasks.push(tokio::spawn(dispatcher.run(shutdown.clone())));
    tasks.push(tokio::spawn(feed.run()));
    if store.backend() == Backend::Postgres {
        // Other nodes' commits: their NOTIFY wakes this node's feed and dispatcher.
        let (store, wake, stop) = (store.clone(), wake.clone(), shutdown.clone());
        tasks.push(tokio::spawn(async move { store.follow_other_nodes(|| wake.notify(), stop).await }));
    }
    if store.backend() == Backend::Sqlite {
        tasks.push(tokio::spawn(checkpoints(store.clone(), shutdown.clone())));
    }
    tasks.push(tokio::spawn(crate::retention::run(
        store.clone(),
        Duration::from_secs(config.retention_interval.max(1)),
        Duration::from_secs(config.feed_retention),
        shutdown.clone(),
    )));
    // Last: once the listeners have stopped and dropped their handles, the writer commits what
    // is queued and ends.
    tasks.push(tokio::spawn(async move {
        let _ = writer_task.await;
    }));

    tracing::info!(%grpc_addr, %http_addr, backend = ?store.backend(), "loft serving");
    Ok(Running { grpc_addr, http_addr, store, bootstrap_key, shutdown, tasks })
}

/// How often SQLite's WAL is checkpointed in the background: under full load the WAL grows by a
/// few MiB in this time.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(200);

/// SQLite: checkpoints the WAL every [`CHECKPOINT_INTERVAL`] until `shutdown`.
async fn checkpoints(store: Store, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(CHECKPOINT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        if let Err(e) = store.checkpoint().await {
            tracing::warn!(error = %e, "checkpoint failed");
        }
    }
}

/// `loft serve`: binds the configured addresses and runs until SIGTERM or SIGINT.
pub async fn run(config: ServeConfig) -> anyhow::Result<()> {
    let grpc = TcpListener::bind(config.grpc_addr).await.with_context(|| format!("binding {}", config.grpc_addr))?;
    let http = TcpListener::bind(config.http_addr).await.with_context(|| format!("binding {}", config.http_addr))?;
    let running = start(config, grpc, http).await?;
    if let Some(key) = &running.bootstrap_key {
        // Printed once, to the terminal only: it is the one way to learn the generated key.
        println!("Created the first ADMIN API key. It is shown only this once:\n\n    {key}\n");
    }
    shutdown_signal().await;
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

async fn database_answers(store: &Store) -> bool {
    tokio::time::timeout(Duration::from_secs(2), store.ping()).await.is_ok_and(|r| r.is_ok())
}

async fn set_health(reporter: &tonic_health::server::HealthReporter, up: bool) {
    let status = if up { tonic_health::ServingStatus::Serving } else { tonic_health::ServingStatus::NotServing };
    for name in std::iter::once("").chain(api::SERVICE_NAMES.iter().copied()) {
        reporter.set_service_status(name, status).await;
    }
}

/// Keeps `grpc.health.v1` in step with the database: `NOT_SERVING` while it does not answer.
async fn watch_health(
    store: Store,
    reporter: tonic_health::server::HealthReporter,
    mut serving: bool,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(HEALTH_INTERVAL) => {}
            _ = shutdown.cancelled() => return,
        }
        let up = database_answers(&store).await;
        if up != serving {
            set_health(&reporter, up).await;
            tracing::warn!(serving = up, "database availability changed");
            serving = up;
        }
    }
}

/// The master key: `LOFT_MASTER_KEY`, or on SQLite a key file beside the database.
fn master_key(config: &ServeConfig, backend: Backend) -> anyhow::Result<Cipher> {
    if let Some(key) = &config.master_key {
        return Ok(Cipher::from_base64(key)?);
    }
    match (backend, config.sqlite_key_file()) {
        (Backend::Sqlite, Some(path)) => {
            let (cipher, created) = Cipher::load_or_create_file(&path)?;
            if created {
                tracing::warn!(path = %path.display(), "created a new master key file; secrets in the database cannot be read without it, so back it up or set LOFT_MASTER_KEY");
            }
            Ok(cipher)
        }
        (Backend::Sqlite, None) => {
            tracing::warn!("in-memory database without LOFT_MASTER_KEY: using a throwaway master key");
            let key: [u8; 32] = rand::random();
            Ok(Cipher::from_base64(&base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key))?)
        }
        (Backend::Postgres, _) => {
            anyhow::bail!(
                "LOFT_MASTER_KEY is required with PostgreSQL (every node must share it): base64 of 32 random bytes"
            )
        }
    }
}

/// Creates the first ADMIN key on an empty key table: the given one, or a generated one that is
/// returned so it can be printed once.
async fn bootstrap_admin_key(store: &Store, given: Option<&str>) -> anyhow::Result<Option<String>> {
    let secret = match given {
        Some(k) => ApiKeySecret::parse(k).context("LOFT_BOOTSTRAP_ADMIN_KEY")?,
        None => ApiKeySecret::generate(),
    };
    let id = ApiKeyId::generate().to_string();
    let hash = secret.hash();
    let created = store
        .insert_first_api_key(&NewApiKey {
            id: &id,
            project_id: None,
            name: "bootstrap",
            role: Role::Admin.as_str(),
            prefix: secret.display_prefix(),
            key_hash: &hash,
            expire_time: None,
            now: now_micros(),
        })
        .await?;
    Ok(match (created, given) {
        (true, None) => Some(secret.expose().to_owned()),
        _ => None,
    })
}
