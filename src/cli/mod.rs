//! The client commands of the binary (DESIGN §10): `listen` and `tail` follow `WatchEvents` on a
//! running server, `send` posts a signed test webhook. Transport only: they call the public
//! gRPC and HTTP APIs like any other client, and print; nothing here touches the database.
//!
//! Output: items go to stdout, one line each; notices (connected, reconnecting, warnings) go to
//! stderr. Neither ever carries an API key, a secret or a body.

pub mod listen;
pub mod send;
pub mod tail;

use std::time::Duration;

use rand::Rng as _;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Status, Streaming};
use tonic_types::StatusExt as _;

use crate::config::ServerArgs;
use crate::proto::event_service_client::EventServiceClient;
use crate::proto::watch_events_request::Start;
use crate::proto::watch_events_response::Activity;
use crate::proto::{ErrorReason, WatchEventsRequest, WatchEventsResponse};

/// A quiet stream still carries a heartbeat every 15 s (by default); this long without any
/// message means the link is dead even if TCP has not noticed.
const SILENCE_LIMIT: Duration = Duration::from_secs(60);

/// Adds `authorization: Bearer …` to every call.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

pub type EventClient = EventServiceClient<InterceptedService<Channel, Bearer>>;

/// A lazily connected client: the channel (re)connects on each call, so a server that is not up
/// yet, or restarts, is just a failed call to retry.
pub fn event_client(server: &ServerArgs) -> anyhow::Result<EventClient> {
    let mut endpoint = Endpoint::from_shared(server.server.clone())
        .map_err(|e| anyhow::anyhow!("--server {:?}: {e}", server.server))?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10));
    if server.server.starts_with("https://") {
        crate::delivery::sender::install_crypto_provider();
        endpoint = endpoint.tls_config(ClientTlsConfig::new().with_native_roots())?;
    }
    let bearer = match &server.api_key {
        Some(key) => Some(
            format!("Bearer {}", key.expose())
                .parse()
                .map_err(|_| anyhow::anyhow!("--api-key holds characters a header cannot carry"))?,
        ),
        None => None,
    };
    // Payloads can be as large as the server's body limit (10 MiB by default) plus metadata.
    Ok(EventServiceClient::with_interceptor(endpoint.connect_lazy(), Bearer(bearer))
        .max_decoding_message_size(64 * 1024 * 1024))
}

/// Exponential backoff with jitter, capped.
pub struct Backoff {
    next: Duration,
    first: Duration,
    cap: Duration,
}

impl Backoff {
    pub fn new(first: Duration, cap: Duration) -> Self {
        Self { next: first, first, cap }
    }

    /// The delay to wait now; the following one doubles, up to the cap.
    pub fn step(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.cap);
        // ±20 %, so clients cut off together do not come back together.
        base.mul_f64(rand::thread_rng().gen_range(0.8..1.2)).min(self.cap)
    }

    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

/// Why following the feed stopped for good.
#[derive(Debug, thiserror::Error)]
#[error("{}: {}", describe_code(.0.code()), .0.message())]
pub struct Fatal(pub Status);

/// Follows `WatchEvents` across disconnects: each [`Follower::next`] returns the next item, and
/// a broken stream is reopened after the last item returned, so nothing is skipped or repeated.
/// The caller finishes with an item before asking for the next, which is what makes "the last
/// item returned" a safe resume point.
pub struct Follower {
    client: EventClient,
    server: String,
    request: WatchEventsRequest,
    cursor: Option<String>,
    stream: Option<Streaming<WatchEventsResponse>>,
    backoff: Backoff,
    /// Whether the current stream has delivered its opening heartbeat.
    opened: bool,
}

impl Follower {
    /// `request.start` is ignored: the stream starts after `cursor`, or from now without one.
    pub fn new(server: &ServerArgs, request: WatchEventsRequest, cursor: Option<String>) -> anyhow::Result<Self> {
        Ok(Self {
            client: event_client(server)?,
            server: server.server.clone(),
            request,
            cursor,
            stream: None,
            backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(10)),
            opened: false,
        })
    }

    /// The cursor of the last item returned (or the one given at start).
    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }

    pub async fn next(&mut self) -> Result<WatchEventsResponse, Fatal> {
        loop {
            let stream = match &mut self.stream {
                Some(stream) => stream,
                None => {
                    self.open().await?;
                    continue;
                }
            };
            let failure = match tokio::time::timeout(SILENCE_LIMIT, stream.message()).await {
                Ok(Ok(Some(item))) => {
                    if !self.opened {
                        // The stream opens with a heartbeat: from here on it is live.
                        self.opened = true;
                        self.backoff.reset();
                        eprintln!("Connected to {}.", self.server);
                    }
                    self.cursor = Some(item.cursor.clone());
                    return Ok(item);
                }
                Ok(Ok(None)) => "the server ended the stream".to_owned(),
                Ok(Err(status)) if is_transient(&status) => describe(&status),
                Ok(Err(status)) => return Err(Fatal(status)),
                Err(_) => format!("no message for {} s", SILENCE_LIMIT.as_secs()),
            };
            self.stream = None;
            self.pause(&failure).await;
        }
    }

    async fn open(&mut self) -> Result<(), Fatal> {
        loop {
            let mut request = self.request.clone();
            request.start = Some(match &self.cursor {
                Some(cursor) => Start::AfterCursor(cursor.clone()),
                None => Start::FromNow(true),
            });
            match self.client.watch_events(request).await {
                Ok(response) => {
                    self.stream = Some(response.into_inner());
                    self.opened = false;
                    return Ok(());
                }
                Err(status) if is_cursor_expired(&status) => {
                    eprintln!("warning: the saved cursor is older than the feed's retention; starting from now");
                    self.cursor = None;
                }
                Err(status) if is_transient(&status) => self.pause(&describe(&status)).await,
                Err(status) => return Err(Fatal(status)),
            }
        }
    }

    async fn pause(&mut self, why: &str) {
        let delay = self.backoff.step();
        eprintln!("connection to Loft lost ({why}); reconnecting in {:.1} s", delay.as_secs_f64());
        tokio::time::sleep(delay).await;
    }
}

/// Worth retrying: the server or the link is down or overloaded, not the request wrong.
fn is_transient(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable
            | Code::Unknown
            | Code::Internal
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::Cancelled
    )
}

fn is_cursor_expired(status: &Status) -> bool {
    status.code() == Code::OutOfRange
        && status
            .get_error_details()
            .error_info()
            .is_some_and(|i| i.reason == crate::error::reason_name(ErrorReason::CursorExpired))
}

fn describe(status: &Status) -> String {
    if status.message().is_empty() {
        describe_code(status.code()).to_owned()
    } else {
        format!("{}: {}", describe_code(status.code()), status.message())
    }
}

fn describe_code(code: Code) -> &'static str {
    match code {
        Code::Unauthenticated => "not authenticated (check --api-key / LOFT_API_KEY)",
        Code::PermissionDenied => "permission denied",
        Code::InvalidArgument => "invalid request",
        Code::NotFound => "not found",
        Code::Unavailable => "server unavailable",
        _ => code.description(),
    }
}

/// `2025-01-02T03:04:05.678Z` for a response's `time`.
pub fn format_time(time: Option<&prost_types::Timestamp>) -> String {
    time.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| "-".repeat(24))
}

/// Whether an item is a heartbeat.
pub fn is_heartbeat(item: &WatchEventsResponse) -> bool {
    matches!(item.activity, Some(Activity::Heartbeat(_)))
}

/// Resolves once the user asks the command to stop (Ctrl-C or SIGTERM).
pub async fn stop_requested() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("install a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
