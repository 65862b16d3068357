//! The integration-test harness: a real `loft serve` on free loopback ports, with a fresh
//! database per test (a new SQLite file, or a new PostgreSQL database on the server that
//! `scripts/test` starts), and typed gRPC clients authenticated with a given key.

#![allow(dead_code)]

use std::sync::{Arc, Mutex, OnceLock};

use loft::config::ServeConfig;
use loft::proto::api_key_service_client::ApiKeyServiceClient;
use loft::proto::delivery_service_client::DeliveryServiceClient;
use loft::proto::destination_service_client::DestinationServiceClient;
use loft::proto::event_service_client::EventServiceClient;
use loft::proto::event_type_service_client::EventTypeServiceClient;
use loft::proto::project_service_client::ProjectServiceClient;
use loft::proto::source_service_client::SourceServiceClient;
use loft::proto::subscription_service_client::SubscriptionServiceClient;
use loft::proto::template_service_client::TemplateServiceClient;
use loft::serve::Running;
use tokio::net::TcpListener;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

pub mod receiver;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each named test (an `async fn(TestServer)`) once per backend: `sqlite::name` and
/// `postgres::name`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::common::TestServer::start(super::common::Backend::Sqlite).await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::common::TestServer::start(super::common::Backend::Postgres).await).await
                }
            )*
        }
    };
}

/// A fixed admin key every test server is bootstrapped with.
pub const ADMIN_KEY: &str = "loft_TestAdminKey00000000000000000000";

/// The master key of PostgreSQL test servers (SQLite ones use a key file).
pub const TEST_MASTER_KEY: &str = "bG9mdC10ZXN0LW1hc3Rlci1rZXktMzItYnl0ZXMhISE=";

/// Everything the server logged in this test process, to check no secret ever appears.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&LOGS.get_or_init(Default::default).lock().unwrap()).into_owned()
}

static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // LOFT_TEST_LOG=1 also shows the server's logs, for debugging a failing test.
        if std::env::var_os("LOFT_TEST_LOG").is_some() {
            let _ = std::io::stderr().write_all(buf);
        }
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn install_log_capture() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let buffer = LOGS.get_or_init(Default::default).clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug,h2=info,hyper=info,tower=info,sqlx=info"))
            .with_writer(move || LogWriter(buffer.clone()))
            .with_ansi(false)
            .try_init();
    });
}

pub struct TestServer {
    pub backend: Backend,
    pub running: Option<Running>,
    pub database_url: String,
    pub config: ServeConfig,
    _dir: tempfile::TempDir,
}

/// A fresh database URL for `backend`, with the directory that holds SQLite files.
pub async fn fresh_database(backend: Backend) -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.path().join("loft.db").display()),
        Backend::Postgres => {
            let admin = std::env::var("LOFT_TEST_POSTGRES_URL")
                .expect("LOFT_TEST_POSTGRES_URL is not set: run the suite with scripts/test, which starts PostgreSQL");
            let name = format!("loft_test_{}", ulid::Ulid::new().to_string().to_lowercase());
            let mut conn =
                <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await.expect("connect to test PostgreSQL");
            sqlx::Executor::execute(&mut conn, sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .await
                .expect("create database");
            let base = admin.rsplit_once('/').expect("database url has a path").0;
            format!("{base}/{name}")
        }
    };
    (url, dir)
}

impl TestServer {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    /// Starts with the test defaults (`--dev`, bootstrap key [`ADMIN_KEY`]) adjusted by `tune`.
    pub async fn start_with(backend: Backend, tune: impl FnOnce(&mut ServeConfig)) -> Self {
        install_log_capture();
        let (url, dir) = fresh_database(backend).await;
        let mut config = ServeConfig::for_tests(&url);
        config.bootstrap_admin_key = Some(ADMIN_KEY.to_owned());
        if backend == Backend::Postgres {
            config.master_key = Some(TEST_MASTER_KEY.to_owned());
        }
        tune(&mut config);
        let running = start_on_free_ports(config.clone()).await;
        Self { backend, running: Some(running), database_url: url, config, _dir: dir }
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("server is running")
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.running().grpc_addr)
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.running().http_addr)
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.grpc_url()).unwrap().connect().await.expect("connect to gRPC")
    }

    /// Clients that send `authorization: Bearer <key>`.
    pub async fn clients(&self, key: &str) -> Clients {
        Clients::new(self.channel().await, key)
    }

    pub async fn admin(&self) -> Clients {
        self.clients(ADMIN_KEY).await
    }

    /// Stops the server (keeping the database) and starts it again on new ports.
    pub async fn restart(&mut self) {
        self.running.take().expect("running").shutdown().await;
        self.running = Some(start_on_free_ports(self.config.clone()).await);
    }
}

pub async fn start_on_free_ports(config: ServeConfig) -> Running {
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    loft::serve::start(config, grpc, http).await.expect("server starts")
}

#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

pub type Authed = InterceptedService<Channel, Bearer>;

/// One client per service over one channel.
#[derive(Clone)]
pub struct Clients {
    pub projects: ProjectServiceClient<Authed>,
    pub keys: ApiKeyServiceClient<Authed>,
    pub sources: SourceServiceClient<Authed>,
    pub destinations: DestinationServiceClient<Authed>,
    pub subscriptions: SubscriptionServiceClient<Authed>,
    pub event_types: EventTypeServiceClient<Authed>,
    pub templates: TemplateServiceClient<Authed>,
    pub events: EventServiceClient<Authed>,
    pub deliveries: DeliveryServiceClient<Authed>,
}

impl Clients {
    /// `key` "" sends no authorization header at all.
    pub fn new(channel: Channel, key: &str) -> Self {
        let bearer = Bearer((!key.is_empty()).then(|| format!("Bearer {key}").parse().expect("ascii key")));
        let svc = || InterceptedService::new(channel.clone(), bearer.clone());
        Self {
            projects: ProjectServiceClient::new(svc()),
            keys: ApiKeyServiceClient::new(svc()),
            sources: SourceServiceClient::new(svc()),
            destinations: DestinationServiceClient::new(svc()),
            subscriptions: SubscriptionServiceClient::new(svc()),
            event_types: EventTypeServiceClient::new(svc()),
            templates: TemplateServiceClient::new(svc()),
            events: EventServiceClient::new(svc()),
            deliveries: DeliveryServiceClient::new(svc()),
        }
    }
}

/// Asserts a failed call's code and `ErrorInfo.reason`; returns the status for more checks.
#[track_caller]
pub fn assert_error<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, reason: &str) -> Status {
    let status = match result {
        Ok(v) => panic!("expected {code:?}/{reason}, got success: {v:?}"),
        Err(s) => s,
    };
    assert_eq!(status.code(), code, "code of {status:?}");
    let info = status.get_error_details().error_info().cloned().unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.reason, reason, "reason of {status:?}");
    assert_eq!(info.domain, "loft.v1");
    status
}

/// The field paths of a status's `BadRequest` violations.
pub fn violation_fields(status: &Status) -> Vec<String> {
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

/// `loft serve` as a real child process (for `kill -9` and for measuring its memory).
pub struct ChildServer {
    child: std::process::Child,
    pub grpc: String,
    pub http: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl ChildServer {
    /// Starts on free ports and waits until it is ready.
    pub async fn spawn(database_url: &str) -> Self {
        // The readiness probe below uses reqwest, which needs rustls' provider.
        loft::delivery::sender::install_crypto_provider();
        let (grpc_port, http_port) = (free_port(), free_port());
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_loft"))
            .args(["serve", "--dev", "--database-url", database_url])
            .args(["--grpc-addr", &format!("127.0.0.1:{grpc_port}"), "--http-addr", &format!("127.0.0.1:{http_port}")])
            .env("LOFT_BOOTSTRAP_ADMIN_KEY", ADMIN_KEY)
            .env("LOFT_MASTER_KEY", TEST_MASTER_KEY)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("spawn loft serve");
        let http = format!("http://127.0.0.1:{http_port}");
        let ready = format!("{http}/readyz");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !reqwest::get(&ready).await.is_ok_and(|r| r.status() == 200) {
            assert!(std::time::Instant::now() < deadline, "server did not become ready");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Self { child, grpc: format!("http://127.0.0.1:{grpc_port}"), http }
    }

    pub async fn clients(&self, key: &str) -> Clients {
        let channel = Channel::from_shared(self.grpc.clone()).unwrap().connect().await.unwrap();
        Clients::new(channel, key)
    }

    /// Resident memory of the process, from /proc.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("proc status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS");
        kib * 1024
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A new project and an EDITOR key confined to it, with clients that use the key.
pub struct EditorProject {
    pub project: String,
    pub key_id: String,
    pub secret: String,
    pub clients: Clients,
}

/// Creates a project named `name`; returns its id.
pub async fn create_project(c: &Clients, name: &str) -> String {
    let project = loft::proto::Project { name: name.into(), ..Default::default() };
    let mut projects = c.projects.clone();
    let created = projects.create_project(loft::proto::CreateProjectRequest { project: Some(project) }).await;
    created.unwrap().into_inner().project.unwrap().id
}

/// Creates `destination` in `project_id` (empty: the key's project) and a subscription that
/// routes every event to it; returns the destination as created.
pub async fn route_to(
    c: &Clients,
    project_id: &str,
    destination: loft::proto::Destination,
) -> loft::proto::Destination {
    route_some_to(c, project_id, destination, loft::proto::Subscription::default()).await
}

/// [`route_to`] through `subscription` (its source, types or filter), which gets the
/// destination's id.
pub async fn route_some_to(
    c: &Clients,
    project_id: &str,
    destination: loft::proto::Destination,
    subscription: loft::proto::Subscription,
) -> loft::proto::Destination {
    let mut destinations = c.destinations.clone();
    let request =
        loft::proto::CreateDestinationRequest { project_id: project_id.to_owned(), destination: Some(destination) };
    let created = destinations.create_destination(request).await.unwrap().into_inner().destination.unwrap();
    let subscription = loft::proto::Subscription { destination_id: created.id.clone(), ..subscription };
    let request =
        loft::proto::CreateSubscriptionRequest { project_id: project_id.to_owned(), subscription: Some(subscription) };
    c.subscriptions.clone().create_subscription(request).await.unwrap();
    created
}

pub async fn editor_project(server: &TestServer, name: &str) -> EditorProject {
    let admin = server.admin().await;
    let project = create_project(&admin, name).await;
    let mut keys = admin.keys;
    let key = loft::proto::ApiKey {
        project_id: project.clone(),
        role: loft::proto::ApiKeyRole::Editor as i32,
        ..Default::default()
    };
    let created = keys.create_api_key(loft::proto::CreateApiKeyRequest { api_key: Some(key) });
    let created = created.await.unwrap().into_inner();
    let clients = server.clients(&created.secret).await;
    EditorProject { project, key_id: created.api_key.unwrap().id, secret: created.secret, clients }
}
