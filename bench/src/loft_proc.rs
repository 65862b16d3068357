//! The `loft serve` child process (and a throwaway PostgreSQL cluster for it): started on free
//! loopback ports with a fresh database in a temporary directory, stopped by pid — on success,
//! on error and on ctrl-c alike (the guards stop them when dropped).

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::util::free_addr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Sends `sig` to `pid`.
fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) with a pid we started ourselves.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// A throwaway PostgreSQL cluster started with `scripts/pg-start`, or a fresh database on a
/// server given by URL.
pub struct Postgres {
    pub url: String,
    /// The cluster directory when we started the cluster (stopped with `scripts/pg-stop`).
    cluster: Option<(PathBuf, PathBuf)>,
    /// Databases created and not dropped yet (dropped at the end at the latest).
    created: Vec<String>,
    /// The postmaster's pid, to measure the database's CPU time.
    pub postmaster: Option<u32>,
}

impl Postgres {
    /// Starts a cluster under `dir` (must not exist). `durable` turns fsync and synchronous
    /// commit back on (`scripts/pg-start` turns them off for tests).
    pub fn start_cluster(scripts: &Path, dir: &Path, durable: bool) -> anyhow::Result<Self> {
        let out = Command::new(scripts.join("pg-start"))
            .arg(dir)
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("running {}", scripts.join("pg-start").display()))?;
        if !out.status.success() {
            bail!("scripts/pg-start failed ({})", out.status);
        }
        let url = String::from_utf8(out.stdout)?.trim().to_owned();
        let mut pg = Postgres {
            url: url.clone(),
            cluster: Some((scripts.to_owned(), dir.to_owned())),
            created: Vec::new(),
            postmaster: None,
        };
        pg.postmaster = std::fs::read_to_string(dir.join("data/postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next()?.trim().parse().ok());
        let sync = if durable { "on" } else { "off" };
        psql(
            &url,
            &[
                &format!("ALTER SYSTEM SET fsync = {sync}"),
                &format!("ALTER SYSTEM SET synchronous_commit = {sync}"),
                &format!("ALTER SYSTEM SET full_page_writes = {sync}"),
                "SELECT pg_reload_conf()",
            ],
        )?;
        Ok(pg)
    }

    /// An existing server, given by URL: fresh databases are created on it, and dropped at the
    /// end.
    pub fn external(url: &str) -> Self {
        Postgres { url: url.to_owned(), cluster: None, created: Vec::new(), postmaster: None }
    }

    /// `fsync` and `synchronous_commit` as the server reports them.
    pub fn settings(&self) -> String {
        let q = |s: &str| {
            Command::new("psql")
                .args([self.url.as_str(), "-XAtqc", &format!("SHOW {s}")])
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .unwrap_or_default()
        };
        format!("fsync={} synchronous_commit={}", q("fsync"), q("synchronous_commit"))
    }

    /// A URL naming a fresh database for one `loft serve` start.
    pub fn fresh_database(&mut self, name: &str) -> anyhow::Result<String> {
        psql(&self.url, &[&format!("CREATE DATABASE {name}")])?;
        self.created.push(name.to_owned());
        url_with_db(&self.url, name)
    }

    /// Drops a database of [`Postgres::fresh_database`] once its server stopped, so that the next
    /// repetition starts on a server with none of this one's work left: the drop checkpoints
    /// (PostgreSQL flushes every dirty buffer before it removes the files), where otherwise the
    /// next run would pay for flushing this one's writes, and autovacuum has no old tables to
    /// visit meanwhile. It also bounds the disk a long invocation takes.
    pub fn drop_database(&mut self, name: &str) {
        let _ = psql(&self.url, &[&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")]);
        self.created.retain(|c| c != name);
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        for db in std::mem::take(&mut self.created) {
            let _ = psql(&self.url, &[&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")]);
        }
        if let Some((scripts, dir)) = self.cluster.take() {
            let _ = Command::new(scripts.join("pg-stop")).arg(&dir).stdout(Stdio::null()).status();
        }
    }
}

fn url_with_db(url: &str, db: &str) -> anyhow::Result<String> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").context("database url without scheme")? + 3;
    let path_start = base[scheme_end..].find('/').map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{db}", &base[..path_start]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Ok(out)
}

fn psql(url: &str, statements: &[&str]) -> anyhow::Result<()> {
    let mut cmd = Command::new("psql");
    cmd.arg(url).args(["-X", "-q", "-v", "ON_ERROR_STOP=1"]);
    for s in statements {
        cmd.args(["-c", s]);
    }
    let out = cmd.output().context("running psql")?;
    if !out.status.success() {
        bail!("psql failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// A running `loft serve`.
pub struct LoftServer {
    child: Option<Child>,
    pub pid: u32,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub log: PathBuf,
}

impl LoftServer {
    /// Starts `bin serve --dev` with its output in `log`, and waits for `/readyz`.
    pub async fn start(
        bin: &Path,
        database_url: &str,
        master_key: Option<&str>,
        admin_key: &str,
        log: PathBuf,
    ) -> anyhow::Result<Self> {
        let (grpc_addr, http_addr) = (free_addr()?, free_addr()?);
        let out = File::create(&log)?;
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .arg("--dev")
            .args(["--database-url", database_url])
            .args(["--grpc-addr", &grpc_addr.to_string()])
            .args(["--http-addr", &http_addr.to_string()])
            .env("LOFT_BOOTSTRAP_ADMIN_KEY", admin_key)
            .env_remove("LOFT_MASTER_KEY")
            .env_remove("LOFT_DATABASE_URL")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        if let Some(k) = master_key {
            cmd.env("LOFT_MASTER_KEY", k);
        }
        let child = cmd.spawn().with_context(|| format!("starting {}", bin.display()))?;
        let mut server = LoftServer { pid: child.id(), child: Some(child), grpc_addr, http_addr, log };
        server.wait_ready(Duration::from_secs(30)).await?;
        Ok(server)
    }

    async fn wait_ready(&mut self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        let url = format!("http://{}/readyz", self.http_addr);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("loft serve exited during start ({status}); log:\n{}", self.log_tail(30));
            }
            if http_get_status(&url).await == Some(200) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("loft serve not ready after {limit:?}; log:\n{}", self.log_tail(30));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last `n` lines of the server's log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Still running?
    pub fn alive(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGTERM, then SIGKILL after 5 s; reaps the child.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        signal(self.pid, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        signal(self.pid, libc::SIGKILL);
        let _ = child.wait();
    }
}

impl Drop for LoftServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Status of a plain GET, or `None` when the server does not answer.
pub async fn http_get_status(url: &str) -> Option<u16> {
    use http_body_util::{BodyExt, Empty};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<bytes::Bytes>>();
    let resp = tokio::time::timeout(Duration::from_secs(2), client.get(url.parse().ok()?)).await.ok()?.ok()?;
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    Some(status)
}
