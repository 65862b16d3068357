//! Persistence: one store API over SQLite and PostgreSQL.
//!
//! Queries are written once, in SQL both dialects accept (`$n` placeholders, `CAST(… AS TEXT)`,
//! `ON CONFLICT`, `RETURNING`), and run on whichever pool is configured through [`on_pool!`],
//! which expands the same code once per backend so each is compiled against its own driver.
//! The few real dialect differences live in `dialect.rs`.

mod api_keys;
mod args;
mod deliveries;
mod destinations;
mod dialect;
mod direct;
mod dispatch;
mod documents;
mod events;
mod feed;
mod multirow;
mod pg_readers;
mod projects;
mod retention;
mod wal_vfs;
mod writer;

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, PgPool, SqlitePool};

pub use api_keys::{ApiKeyRecord, NewApiKey};
pub use deliveries::{DeliveryFilter, DeliveryRecord};
pub use destinations::DestinationHealth;
use direct::{Checkpointer, Direct, Readers};
pub use dispatch::{
    AttemptFilter, AttemptOrder, AttemptResult, AttemptRow, Claimed, DueDelivery, HealthChange, NewAttempt,
};
pub(crate) use documents::document_table;
pub use documents::{Document, DocumentFilter, References, Stored, Table};
pub use events::{
    DeliveryCounts, EventFilter, EventRecord, EventWrite, NewActivity, NewDelivery, NewEvent, WriteOutcome,
};
pub use feed::{FeedRow, FeedSignal};
use pg_readers::PgReaders;
pub use projects::ProjectRecord;
pub use writer::{AttemptWriter, CommitHook, Events as EventBatch, GroupWriter};

/// Runs `$body` with `$p` bound to the configured pool, once per backend.
macro_rules! on_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            $crate::store::Pool::Sqlite($p) => $body,
            $crate::store::Pool::Postgres($p) => $body,
        }
    };
}
/// Runs `$body` with `$c` bound to the open transaction's connection, once per backend.
macro_rules! on_tx {
    ($tx:expr, $c:ident => $body:expr) => {
        match &mut ($tx).conn {
            $crate::store::TxConn::Sqlite(t) => {
                let $c = &mut **t;
                $body
            }
            $crate::store::TxConn::Postgres(t) => {
                let $c = &mut **t;
                $body
            }
        }
    };
}
pub(crate) use {on_pool, on_tx};

#[derive(Clone, Debug)]
pub enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// An open write transaction.
pub struct Tx {
    conn: TxConn,
    /// Set once the transaction appended to the feed: its commit wakes this node's feed.
    feed: Option<FeedSignal>,
    /// SQLite: the write lock, until the transaction ends.
    _lock: Option<tokio::sync::OwnedMutexGuard<()>>,
}

/// The write pool, holding the write lock (SQLite) while it is in use.
pub(crate) struct Writes<'s> {
    pool: &'s Pool,
    _lock: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl std::ops::Deref for Writes<'_> {
    type Target = Pool;
    fn deref(&self) -> &Pool {
        self.pool
    }
}

pub enum TxConn {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl Tx {
    /// Runs `sql` with `args` (see [`args::Arg`]); returns the rows it changed.
    pub(super) async fn execute(&mut self, sql: &'static str, args: &[args::Arg<'_>]) -> Result<u64, StoreError> {
        Ok(on_tx!(self, c => {
            let mut q = sqlx::query(sql);
            for arg in args {
                q = args::bind(q, *arg);
            }
            q.execute(c).await?.rows_affected()
        }))
    }

    /// Runs one statement of a batch's writes: on SQLite the rows go in the fixed-size
    /// statements; on PostgreSQL all of them in one statement (see `multirow.rs`).
    pub(super) async fn run(&mut self, statement: &multirow::Statement<'_>) -> Result<(), StoreError> {
        match (statement, &mut self.conn) {
            (multirow::Statement::One(sql, args), _) => {
                self.execute(sql, args).await?;
            }
            (multirow::Statement::Rows(rows), TxConn::Postgres(t)) => {
                if let Some((sql, columns)) = rows.columns() {
                    let mut q = sqlx::query(sql).persistent(!rows.planned_each_time());
                    for column in columns {
                        q = column.bind(q);
                    }
                    q.execute(&mut **t).await?;
                }
            }
            (multirow::Statement::Rows(rows), _) => {
                for (sql, args) in rows.chunks() {
                    self.execute(sql, args).await?;
                }
            }
        }
        Ok(())
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        match self.conn {
            TxConn::Sqlite(t) => t.commit().await?,
            TxConn::Postgres(t) => t.commit().await?,
        }
        drop(self._lock);
        // After the commit, never before: a reader woken earlier could miss the rows.
        if let Some(signal) = self.feed {
            signal.notify();
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Errors of the persistence layer. The API maps them in `crate::error`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("already exists")]
    AlreadyExists,
    /// A foreign key blocked the change: the row is still referenced, or references nothing.
    #[error("referenced by or referencing another resource")]
    Reference,
    #[error("database unavailable: {0}")]
    Unavailable(#[source] Arc<dyn std::error::Error + Send + Sync>),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// An error of the SQLite writer's own connection (`direct.rs`).
    #[error("database error: {0}")]
    Sqlite(#[source] rusqlite::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database url (use sqlite://… or postgres://…)")]
    UnsupportedUrl,
    /// One error met on behalf of several callers (the waiters of a batched read).
    #[error(transparent)]
    Shared(Arc<StoreError>),
}

impl StoreError {
    /// A copy of `e` for one of the callers it was met for: an outage stays an outage and a
    /// missing row a missing row, so callers map it as they would their own.
    pub(crate) fn copy_of(e: &Arc<StoreError>) -> StoreError {
        match &**e {
            StoreError::Unavailable(cause) => StoreError::Unavailable(cause.clone()),
            StoreError::NotFound => StoreError::NotFound,
            StoreError::Shared(inner) => StoreError::copy_of(inner),
            _ => StoreError::Shared(e.clone()),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::AlreadyExists,
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::Reference,
            // SQLite's "database is locked" (SQLITE_BUSY and its extended codes) outlasting the
            // busy timeout: another writer holds the file. Retryable, like an outage.
            sqlx::Error::Database(db) if db.code().is_some_and(|c| c == "5" || c == "517" || c == "261") => {
                StoreError::unavailable(e)
            }
            // SQLite reports an `ON DELETE RESTRICT` refusal as SQLITE_CONSTRAINT_TRIGGER (1811),
            // which sqlx does not classify as a foreign key violation.
            sqlx::Error::Database(db) if db.code().as_deref() == Some("1811") => StoreError::Reference,
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_) => StoreError::unavailable(e),
            // PostgreSQL answers "57P01 admin_shutdown" and friends while it restarts.
            sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("57") || c.starts_with("08")) => {
                StoreError::unavailable(e)
            }
            _ => StoreError::Database(e),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ffi::{
            ErrorCode, SQLITE_CONSTRAINT_FOREIGNKEY, SQLITE_CONSTRAINT_PRIMARYKEY, SQLITE_CONSTRAINT_TRIGGER,
            SQLITE_CONSTRAINT_UNIQUE,
        };
        let Some(code) = e.sqlite_error() else { return StoreError::Sqlite(e) };
        match (code.code, code.extended_code) {
            (ErrorCode::ConstraintViolation, SQLITE_CONSTRAINT_UNIQUE | SQLITE_CONSTRAINT_PRIMARYKEY) => {
                StoreError::AlreadyExists
            }
            // As for sqlx above: `ON DELETE RESTRICT` answers SQLITE_CONSTRAINT_TRIGGER.
            (ErrorCode::ConstraintViolation, SQLITE_CONSTRAINT_FOREIGNKEY | SQLITE_CONSTRAINT_TRIGGER) => {
                StoreError::Reference
            }
            (
                ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::SystemIoFailure
                | ErrorCode::DiskFull
                | ErrorCode::CannotOpen,
                _,
            ) => StoreError::unavailable(e),
            _ => StoreError::Sqlite(e),
        }
    }
}

impl StoreError {
    pub fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Unavailable(Arc::new(e))
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

/// The persistence API. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    /// Reads; on PostgreSQL, writes too.
    pool: Pool,
    feed: FeedSignal,
    /// Writes. On SQLite one connection, so writers queue in the pool (fair, in order) instead
    /// of meeting in SQLite's busy handler, which sleeps for milliseconds on every conflict and
    /// fails a write whose read snapshot went stale (`SQLITE_BUSY_SNAPSHOT`). On PostgreSQL the
    /// same pool as `pool`.
    writes: Pool,
    /// SQLite: the group commit's own connection (`direct.rs`), used while holding `write_lock`.
    direct: Option<Arc<Mutex<Direct>>>,
    /// SQLite: held by whoever writes, through `writes` or `direct`, so that writers queue here
    /// (fairly, in order) instead of in SQLite's busy handler. Not the write pool's connection
    /// itself: sqlx pings a connection on its way back to the pool, a round trip to its thread
    /// before the next writer may start (measured: ≈ 5 ms of every 9 ms lock cycle under load).
    write_lock: Arc<tokio::sync::Mutex<()>>,
    /// SQLite: the background checkpoints' connection.
    checkpointer: Option<Arc<Mutex<Checkpointer>>>,
    /// Connections for point reads on hot paths, outside the sqlx pools.
    readers: PointReaders,
    /// PostgreSQL: this node's name in the wake-ups its commits send the other nodes
    /// (`dialect::allocate_feed_seq`), so that it can tell its own apart and not wake itself.
    node: Arc<str>,
}

/// Connections for the point reads of hot paths, each backend's own (see `direct.rs` and
/// `pg_readers.rs`).
#[derive(Clone, Debug)]
pub(crate) enum PointReaders {
    Sqlite(Arc<Readers>),
    Postgres(Arc<PgReaders>),
}

/// Connections of the SQLite read pool: readers never block each other nor the writer (WAL).
const SQLITE_READERS: u32 = 4;
/// Connections to PostgreSQL per node.
const PG_CONNECTIONS: u32 = 16;
/// A PostgreSQL connection idle at least this long is pinged before it is used again (pooled
/// ones and `pg_readers.rs`'s alike).
const PG_PING_IDLE: Duration = Duration::from_secs(1);

/// The options of a PostgreSQL pool of `connections`.
fn pg_pool(connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(Duration::from_secs(5))
        // sqlx pings a connection as it comes back to the pool and, by default, again before each
        // use: two extra round trips around every query. A connection that was fine a moment ago
        // is used as is; one idle for a while (the server may have restarted meanwhile) is pinged
        // first, so it is replaced instead of failing a call.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PG_PING_IDLE {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}

impl Store {
    /// Connects to `sqlite://path` (created when missing) or `postgres://…` / `postgresql://…`.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|_| StoreError::UnsupportedUrl)?
                .create_if_missing(true)
                // Only a new file takes it (see `direct::PAGE_SIZE`).
                .page_size(direct::PAGE_SIZE)
                .journal_mode(SqliteJournalMode::Wal)
                // With WAL, NORMAL makes a commit durable against a crash of the process (the
                // WAL write has reached the OS) without an fsync per transaction; only a power
                // loss can take the last commits back. FULL would cost one fsync per group commit.
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                // Another process (`loft keys create`) may hold the write lock for a moment.
                .busy_timeout(Duration::from_secs(10))
                // Checkpoints run in the background (`direct.rs`), not inside a writer's commit.
                .pragma("wal_autocheckpoint", direct::AUTOCHECKPOINT_PAGES.to_string());
            // The writer first: it creates the file and switches it to WAL.
            let writes = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                // A local file has no connection to lose: a ping before each use would only be
                // one more round trip to the connection's thread (the pool still pings as a
                // connection comes back, off the caller's path).
                .test_before_acquire(false)
                .connect_with(options.clone())
                .await
                .map_err(StoreError::from)?;
            // Read-only, so a write that forgot `writes()` fails loudly instead of contending.
            let reads = SqlitePoolOptions::new()
                .max_connections(SQLITE_READERS)
                .min_connections(1)
                .test_before_acquire(false)
                .connect_with(options.clone().create_if_missing(false).read_only(true))
                .await
                .map_err(StoreError::from)?;
            let feed = FeedSignal::default();
            let direct = Direct::open(options.get_filename(), feed.clone())?;
            Ok(Self {
                pool: Pool::Sqlite(reads),
                writes: Pool::Sqlite(writes),
                feed,
                direct: Some(Arc::new(Mutex::new(direct))),
                checkpointer: Some(Arc::new(Mutex::new(Checkpointer::open(options.get_filename())?))),
                write_lock: Arc::default(),
                readers: PointReaders::Sqlite(Arc::new(Readers::new(options.get_filename()))),
                node: Arc::from(ulid::Ulid::new().to_string()),
            })
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url).map_err(|_| StoreError::UnsupportedUrl)?;
            let pool = pg_pool(PG_CONNECTIONS).connect_with(options.clone()).await.map_err(StoreError::from)?;
            let pool = Pool::Postgres(pool);
            Ok(Self {
                writes: pool.clone(),
                pool,
                feed: FeedSignal::default(),
                direct: None,
                checkpointer: None,
                write_lock: Arc::default(),
                readers: PointReaders::Postgres(Arc::new(PgReaders::new(options))),
                node: Arc::from(ulid::Ulid::new().to_string()),
            })
        } else {
            Err(StoreError::UnsupportedUrl)
        }
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// The pool to read from.
    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The pool to write through (statements outside [`Store::begin`]), with the write lock on
    /// SQLite.
    pub(crate) async fn writes(&self) -> Writes<'_> {
        Writes { pool: &self.writes, _lock: self.write_lock().await }
    }

    /// Connections for point reads on hot paths (SQLite: used on the caller's thread).
    pub(crate) fn readers(&self) -> &PointReaders {
        &self.readers
    }

    /// SQLite: the group commit's own connection; lock it only while holding [`Store::write_lock`].
    pub(crate) fn direct(&self) -> Option<&Mutex<Direct>> {
        self.direct.as_deref()
    }

    /// SQLite: the write lock, held by whoever writes; `None` on PostgreSQL, whose writers need
    /// none.
    pub(crate) async fn write_lock(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match &self.writes {
            Pool::Sqlite(_) => Some(self.write_lock.clone().lock_owned().await),
            Pool::Postgres(_) => None,
        }
    }

    /// SQLite: runs `write` on the writer's own connection under the write lock, on a blocking
    /// thread (no async worker waits on the disk): a write of several statements costs one
    /// hand-off instead of a round trip to sqlx's connection thread per statement, and shares
    /// the group commit's page cache. `None` on PostgreSQL.
    pub(crate) async fn on_direct<T: Send + 'static>(
        &self,
        write: impl FnOnce(&mut Direct) -> Result<T, StoreError> + Send + 'static,
    ) -> Option<Result<T, StoreError>> {
        let direct = self.direct.clone()?;
        let lock = self.write_lock().await;
        let done = tokio::task::spawn_blocking(move || {
            let out = write(&mut direct.lock().expect("direct connection poisoned"));
            drop(lock);
            out
        });
        Some(done.await.map_err(StoreError::unavailable).and_then(|r| r))
    }

    /// SQLite: checkpoints the WAL in the background, and makes it start over once it has grown
    /// (see `direct.rs`). PostgreSQL: nothing.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        let Some(checkpointer) = self.checkpointer.clone() else { return Ok(()) };
        let run = |f: fn(&Checkpointer) -> Result<bool, StoreError>| {
            let checkpointer = checkpointer.clone();
            tokio::task::spawn_blocking(move || f(&checkpointer.lock().expect("checkpointer poisoned")))
        };
        if run(Checkpointer::passive).await.map_err(StoreError::unavailable)?? {
            let lock = self.write_lock().await;
            let held = std::time::Instant::now();
            let restarted = run(Checkpointer::restart).await;
            drop(lock);
            // How long every write waited for it.
            metrics::histogram!("loft_sqlite_wal_restart_seconds").record(held.elapsed().as_secs_f64());
            restarted.map_err(StoreError::unavailable)??;
        }
        Ok(())
    }

    /// Applies the backend's migrations (`migrations/<backend>/`), embedded at build time.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.writes {
            Pool::Sqlite(p) => sqlx::migrate!("migrations/sqlite").run(p).await?,
            Pool::Postgres(p) => sqlx::migrate!("migrations/postgres").run(p).await?,
        }
        Ok(())
    }

    /// Whether the database answers; drives readiness and gRPC health.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(&self.pool, p => sqlx::query("SELECT 1").execute(p).await.map(|_| ())?);
        Ok(())
    }

    /// PostgreSQL: this store, with transactions ([`Store::begin`]) on a connection of their own,
    /// opened (when first used) from the calling runtime: the group commit's own thread (see
    /// `writer.rs`). Its socket is then driven by that thread's runtime, so each of a batch's
    /// round trips is answered at once instead of queueing behind the HTTP and gRPC tasks on the
    /// main runtime's workers. `None` on SQLite.
    pub(crate) fn with_own_writer_connection(&self) -> Option<Store> {
        let Pool::Postgres(pool) = &self.writes else { return None };
        let own = pg_pool(1).connect_lazy_with((*pool.connect_options()).clone());
        Some(Store { writes: Pool::Postgres(own), ..self.clone() })
    }

    /// Starts a write transaction. On SQLite it takes the write lock up front (`BEGIN
    /// IMMEDIATE`), so two writers never deadlock upgrading read locks.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        let lock = self.write_lock().await;
        let conn = match &self.writes {
            Pool::Sqlite(p) => TxConn::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
            Pool::Postgres(p) => TxConn::Postgres(p.begin().await?),
        };
        Ok(Tx { conn, feed: None, _lock: lock })
    }

    pub async fn close(&self) {
        on_pool!(&self.pool, p => p.close().await);
        on_pool!(&self.writes, p => p.close().await)
    }
}
