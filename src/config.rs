//! Command line and environment. Every `serve` flag has an env var (DESIGN §10).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
}

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
