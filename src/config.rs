//! Command line and environment. Every `serve` flag has an env var (DESIGN §10).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::signing::SecretString;

#[derive(Debug, Parser)]
#[command(name = "loft", version, about = "Self-hosted webhook relay and delivery, controlled through gRPC")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: gRPC API, HTTP ingest/health/metrics, migrations, scheduler.
    Serve(ServeConfig),
    /// Apply database migrations and exit.
    Migrate(DatabaseArgs),
    /// Manage API keys directly in the database (bootstrap and recovery).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Forward a source's events to a local URL, as they arrive (for local development).
    #[command(long_about = LISTEN_ABOUT)]
    Listen(ListenArgs),
    /// Print the project's live activity feed.
    #[command(long_about = TAIL_ABOUT)]
    Tail(TailArgs),
    /// Sign a test webhook the way a provider would and post it to a URL.
    #[command(long_about = SEND_ABOUT)]
    Send(SendArgs),
}

const LISTEN_ABOUT: &str = "\
Forward a source's events to a local URL, as they arrive (for local development).

Follows WatchEvents with payloads for the given sources and re-sends each event to --forward-to:
the original method (POST for published events), the URL exactly as given with the original query
string appended (the sub-path after /in/{source_id} is not appended), the original headers except
hop-by-hop ones, Host and Content-Length, and the body byte for byte. With --secret, the original
signature headers are dropped and the request is signed afresh per Standard Webhooks (webhook-id
is the event id, webhook-timestamp now).

One line is printed per event: time, event id, type, local status, duration. Any HTTP answer of
the local server counts as forwarded; a connection failure is retried twice (after 1 s and 2 s),
then printed as an error and the event is skipped, so a stopped local server never holds the
stream up.

The cursor is saved after every event (atomically), so a restart neither repeats nor skips;
without a saved cursor, listening starts from now. A broken connection to Loft is retried with
backoff (capped at 10 s), resuming from the last cursor; a cursor past the feed's retention
restarts from now with a warning.";

const TAIL_ABOUT: &str = "\
Print the project's live activity feed.

One line per item: time, kind and the salient ids, statuses and reasons; heartbeats are hidden.
With --json, one JSON object per line: the WatchEventsResponse in the proto3 JSON mapping
(camelCase names), heartbeats included, so a script keeps a fresh cursor to resume with --after.
A broken connection is retried with backoff (capped at 10 s), resuming from the last cursor.";

const SEND_ABOUT: &str = "\
Sign a test webhook the way a provider would and post it to a URL (usually a source's ingest URL).

The body and the event type go where each provider puts them: standard-webhooks and stripe wrap
--data in their envelopes ({type, timestamp, data} and {id, object, type, created, data.object});
github, shopify and the generic schemes send --data as given, with the type in X-GitHub-Event,
X-Shopify-Topic or X-Event-Type. Prints the status and the response body; exits 1 on a non-2xx
answer.";

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print its secret once.
    Create(CreateKeyArgs),
}

#[derive(Debug, Args)]
pub struct CreateKeyArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// ADMIN, EDITOR, VIEWER or PUBLISHER.
    #[arg(long, value_parser = ["ADMIN", "EDITOR", "VIEWER", "PUBLISHER"], ignore_case = true)]
    pub role: String,
    /// The project of a non-admin key (`prj_…`).
    #[arg(long)]
    pub project: Option<String>,
    /// A name to recognise the key by.
    #[arg(long, default_value = "cli")]
    pub name: String,
}

/// Where the client commands (`listen`, `tail`) find the server, and as whom.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// The server's gRPC address (`https://…` uses TLS with the system's roots).
    #[arg(long, env = "LOFT_SERVER", default_value = "http://127.0.0.1:7400")]
    pub server: String,
    /// API key (VIEWER or above), sent as `authorization: Bearer …`.
    #[arg(long, env = "LOFT_API_KEY", hide_env_values = true, value_parser = secret)]
    pub api_key: Option<SecretString>,
    /// The project (`prj_…`); required with an ADMIN key, implied by a project key.
    #[arg(long, env = "LOFT_PROJECT")]
    pub project: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ListenArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// A source whose events to forward (`src_…`); repeat for several.
    #[arg(long = "source", required = true, value_name = "SOURCE")]
    pub sources: Vec<String>,
    /// The local URL to send each event to, e.g. `http://localhost:3000/hook`.
    #[arg(long, value_name = "URL")]
    pub forward_to: url::Url,
    /// Re-sign each request with this Standard Webhooks secret (`whsec_…`) instead of keeping
    /// the original signature headers.
    #[arg(long, env = "LOFT_LISTEN_SECRET", hide_env_values = true, value_parser = secret)]
    pub secret: Option<SecretString>,
    /// Where the resume cursor is kept. Default: a file per server, project and sources under
    /// `$XDG_STATE_HOME/loft/` (or `~/.local/state/loft/`).
    #[arg(long, value_name = "PATH")]
    pub cursor_file: Option<PathBuf>,
    /// Seconds to wait for the local server's answer.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
}

#[derive(Debug, Clone, Args)]
pub struct TailArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Only activity about events from this source (`src_…`); repeatable.
    #[arg(long = "source", value_name = "SOURCE")]
    pub sources: Vec<String>,
    /// Only activity about this destination (`dst_…`); repeatable.
    #[arg(long = "destination", value_name = "DESTINATION")]
    pub destinations: Vec<String>,
    /// Only activity about events whose type matches this pattern (`invoice.*`); repeatable.
    #[arg(long = "type", value_name = "PATTERN")]
    pub types: Vec<String>,
    /// Only this kind of activity; repeatable.
    #[arg(long = "kind", value_enum, value_name = "KIND")]
    pub kinds: Vec<ActivityKindArg>,
    /// Start after this cursor (from an earlier `--json` line) instead of from now.
    #[arg(long, value_name = "CURSOR")]
    pub after: Option<String>,
    /// One JSON object per line (proto3 JSON mapping), heartbeats included.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ActivityKindArg {
    EventReceived,
    AttemptFinished,
    DeliverySucceeded,
    DeliveryFailed,
    DestinationStateChanged,
    ResourceChanged,
}

#[derive(Debug, Clone, Args)]
pub struct SendArgs {
    /// Where to post, usually a source's ingest URL (`http://127.0.0.1:7401/in/src_…`).
    pub url: url::Url,
    /// How to sign, as that provider does.
    #[arg(long, value_enum)]
    pub scheme: SendScheme,
    /// The signing secret, as the source holds it (`whsec_…` for standard-webhooks and stripe).
    #[arg(long, env = "LOFT_SEND_SECRET", hide_env_values = true, value_parser = secret)]
    pub secret: SecretString,
    /// The header carrying the signature, for the generic hmac-sha256-* schemes.
    #[arg(long, value_name = "NAME")]
    pub signature_header: Option<String>,
    /// The event type.
    #[arg(long = "type", default_value = "loft.test")]
    pub event_type: String,
    /// The payload: JSON text, or `@path` to read it from a file.
    #[arg(long, default_value = "{}")]
    pub data: String,
    /// An extra request header, `Name: value`; repeatable.
    #[arg(long = "header", value_name = "NAME:VALUE")]
    pub headers: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SendScheme {
    StandardWebhooks,
    Github,
    Stripe,
    Shopify,
    HmacSha256Hex,
    HmacSha256Base64,
}

fn secret(value: &str) -> Result<SecretString, String> {
    if value.is_empty() { Err("must not be empty".to_owned()) } else { Ok(SecretString::new(value)) }
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// `sqlite://loft.db` (embedded, default) or `postgres://…`.
    #[arg(long, env = "LOFT_DATABASE_URL", default_value = "sqlite://loft.db")]
    pub database_url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Args)]
pub struct ServeConfig {
    /// gRPC listener (API, reflection, health, gRPC-Web).
    #[arg(long, env = "LOFT_GRPC_ADDR", default_value = "127.0.0.1:7400")]
    pub grpc_addr: SocketAddr,
    /// HTTP listener (ingest `/in/…`, `/healthz`, `/readyz`, `/metrics`).
    #[arg(long, env = "LOFT_HTTP_ADDR", default_value = "127.0.0.1:7401")]
    pub http_addr: SocketAddr,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Base64 of 32 bytes encrypting secrets at rest. Required with PostgreSQL; with SQLite a
    /// key file beside the database is created on first start when this is not set.
    #[arg(long, env = "LOFT_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<String>,
    /// The ADMIN key to create on first start, instead of a generated one.
    #[arg(long, env = "LOFT_BOOTSTRAP_ADMIN_KEY", hide_env_values = true)]
    pub bootstrap_admin_key: Option<String>,
    /// Public base URL of the HTTP listener, used to build sources' `ingest_url`.
    #[arg(long, env = "LOFT_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Allow `http://` destination URLs.
    #[arg(long, env = "LOFT_ALLOW_HTTP_DESTINATIONS")]
    pub allow_http_destinations: bool,
    /// Allow destinations on loopback, private, link-local and other internal addresses.
    #[arg(long, env = "LOFT_ALLOW_PRIVATE_DESTINATIONS")]
    pub allow_private_destinations: bool,
    /// Internal networks destinations may reach without `--allow-private-destinations`
    /// (comma-separated CIDRs).
    #[arg(long, env = "LOFT_ALLOW_DESTINATION_CIDRS", value_delimiter = ',')]
    pub allow_destination_cidrs: Vec<ipnet::IpNet>,
    /// Development mode: both allows above, readable logs.
    #[arg(long, env = "LOFT_DEV")]
    pub dev: bool,
    /// Largest accepted event body, in bytes (ingest answers 413 past it).
    #[arg(long, env = "LOFT_MAX_BODY_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub max_body_bytes: u64,
    /// Disable a destination whose attempts have failed continuously for this many seconds
    /// (default 3 days); resuming it re-enables it.
    #[arg(long, env = "LOFT_DISABLE_FAILING_DESTINATIONS_AFTER", default_value_t = 3 * 24 * 3600)]
    pub disable_failing_destinations_after: u64,
    /// Feed items older than this many seconds are deleted (default 7 days); a cursor older
    /// than that answers CURSOR_EXPIRED.
    #[arg(long, env = "LOFT_FEED_RETENTION", default_value_t = 7 * 24 * 3600)]
    pub feed_retention: u64,
    /// Seconds a quiet WatchEvents stream waits before sending a heartbeat with a fresh cursor.
    #[arg(long, env = "LOFT_FEED_HEARTBEAT_INTERVAL", default_value_t = 15)]
    pub feed_heartbeat_interval: u64,
    /// How often, in seconds, the retention job sweeps.
    #[arg(long, env = "LOFT_RETENTION_INTERVAL", default_value_t = 300)]
    pub retention_interval: u64,
    /// `text` or `json` log lines.
    #[arg(long, env = "LOFT_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl std::fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The master key and bootstrap key never reach a log line.
        f.debug_struct("ServeConfig")
            .field("grpc_addr", &self.grpc_addr)
            .field("http_addr", &self.http_addr)
            .field("database_url", &redact_url(&self.database.database_url))
            .field("public_url", &self.public_url)
            .field("allow_http_destinations", &self.allow_http_destinations)
            .field("allow_private_destinations", &self.allow_private_destinations)
            .field("allow_destination_cidrs", &self.allow_destination_cidrs)
            .field("dev", &self.dev)
            .finish_non_exhaustive()
    }
}

impl ServeConfig {
    /// Defaults suitable for tests: a database URL and loopback listeners on free ports.
    pub fn for_tests(database_url: &str) -> Self {
        // Heartbeats every second, so tests see them without waiting out the default.
        let cli = Cli::parse_from([
            "loft",
            "serve",
            "--database-url",
            database_url,
            "--dev",
            "--feed-heartbeat-interval",
            "1",
        ]);
        match cli.command {
            Command::Serve(c) => c,
            _ => unreachable!(),
        }
    }

    /// Where the SQLite master key file lives: beside the database file.
    pub fn sqlite_key_file(&self) -> Option<PathBuf> {
        let path = sqlite_path(&self.database.database_url)?;
        if path == ":memory:" {
            return None;
        }
        Some(PathBuf::from(format!("{path}.key")))
    }
}

/// The file path of a `sqlite:` URL, without query parameters.
pub fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    Some(rest.split('?').next().unwrap_or(rest))
}

/// A database URL with any password replaced, for logs.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("redacted"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}
