//! SQLite: the group commit runs synchronously, on the writer's own thread and connection.
//!
//! Through sqlx every statement is a round trip: the query goes to the connection's worker
//! thread, the answer comes back to a tokio worker, and the next statement only then leaves. A
//! batch is a dozen statements, and on a small machine each of those wake-ups waits for a core
//! that is busy answering HTTP; the writer spent most of a batch waiting rather than writing, and
//! ingest stalled at a fraction of what one core can store (BENCHMARKS.md). Here a batch is one
//! hand-off: the writer thread takes it and runs every statement itself, from cached prepared
//! statements.
//!
//! SQLite writes stay one at a time: while a batch runs, its writer holds the pool's single write
//! connection ([`super::Store::write_lock`]), which every other SQLite write goes through.
//!
//! Checkpoints (copying the WAL back into the database file, with two fsyncs) are taken off the
//! writers too. SQLite runs one in whichever commit finds the WAL past `wal_autocheckpoint`
//! pages — every few hundred milliseconds under load, each holding that commit, and every write
//! queued behind it, for 10–30 ms. [`Checkpointer`] runs them in the background instead, on a
//! connection of its own: PASSIVE ones, which never wait for nor block a writer or a reader. Those
//! cannot let the WAL start over while writes keep coming (the writer restarts it only once every
//! page is copied back), so once it has grown past [`RESTART_BYTES`] the checkpointer takes the
//! write lock for one RESTART checkpoint: it copies the few pages written since the last PASSIVE
//! one, and the next commit writes from the WAL's start again.

use std::collections::HashMap;
use std::ffi::CStr;
use std::path::Path;
use std::time::Duration;

use rusqlite::{CachedStatement, OpenFlags, Transaction, TransactionBehavior, ffi};

use super::args::{Arg, bind_numbered, numbered_in_order};
use super::destinations::HEALTH_OF;
use super::dispatch::{AttemptResult, AttemptWrites};
use super::events::{
    ALLOCATE_FEED_SEQ, DELIVERIES, EVENTS, EventWrite, FEED, IDEMPOTENT_EVENT, NewEvent, NewFeedItem,
    TAKE_IDEMPOTENCY_KEY, WriteOutcome, delivery_rows, event_rows, feed_items, feed_rows, stored,
};
use super::multirow::{MultiRow, Rows, Statement};
use super::wal_vfs;
use super::{DestinationHealth, FeedSignal, StoreError};
use crate::domain::breaker;
use crate::timeutil::Micros;

/// Prepared statements kept: each multi-row insert comes in a few sizes.
const STATEMENT_CACHE: usize = 64;
/// The page size of databases Loft creates (SQLite's default is 4 KiB; a database keeps the size
/// it was created with).
///
/// A commit writes every page it changed to the WAL in full, and a group commit at a moderate
/// rate holds one or two events: their rows and index entries touch some fifteen pages (the
/// event, its deliveries and their seven indexes, the feed), and an attempt's result a dozen
/// more. With 4 KiB pages that was ≈ 115 KB written per event at 1 000 events/s; the checkpoints'
/// fsyncs of that volume held the writer in disk waits for ≈ 20 ms every 200 ms, which made the
/// receive → delivered p99 (24–29 ms). With 1 KiB pages: 45 MB/s instead of 115–160, p99 8–10 ms,
/// and the same throughput under full load (`BENCHMARKS.md`).
pub const PAGE_SIZE: u32 = 1_024;
/// WAL size past which the checkpointer makes the WAL start over (SQLite's own checkpoint
/// threshold is 1 000 pages). Larger lets ingest run further between restarts, but a large WAL
/// slows every reader and writer that looks a page up in it (measured with 4 KiB pages: 32 MiB
/// took the receive → delivered p99 at 1 000 events/s from 25 to 40–55 ms).
pub const RESTART_BYTES: i64 = 4 << 20;
/// WAL pages past which a writing connection checkpoints by itself: only a safety net, should
/// the background checkpoints fall behind (64 MiB of 1 KiB pages, 256 MiB of 4 KiB ones; SQLite's
/// default is 1 000). Past it, every commit checkpoints — and syncs the database file — until the
/// checkpointer makes the WAL start over. Under full load the WAL grows by up to ≈ 14 000 pages
/// between two background checkpoints ([`RESTART_BYTES`] is the usual restart point, reached
/// within one interval), so at 16 384 pages the writers crossed it often: raising it took
/// ingest from ≈ 33 000 to ≈ 36 000/s and end-to-end from ≈ 10 000 to ≈ 11 000 delivered/s
/// (BENCHMARKS.md).
pub const AUTOCHECKPOINT_PAGES: u32 = 65_536;

/// The SQLite writer's own connection.
pub struct Direct {
    conn: rusqlite::Connection,
    feed: FeedSignal,
    /// Per statement text (its address: they are all `'static`), whether its parameters can be
    /// bound by position ([`numbered_in_order`]); checked once.
    in_order: HashMap<usize, bool>,
}

impl std::fmt::Debug for Direct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Direct").finish_non_exhaustive()
    }
}

impl Direct {
    /// Opens the database file the pools use (created and switched to WAL by them), with the
    /// same settings as theirs (see [`super::Store::connect`]).
    pub fn open(path: &Path, feed: FeedSignal) -> Result<Self, StoreError> {
        let conn = open(path, Some(wal_vfs::NAME))?;
        conn.pragma_update(None, "foreign_keys", true)?;
        conn.pragma_update(None, "wal_autocheckpoint", AUTOCHECKPOINT_PAGES)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // Plans never depend on bound values. Otherwise SQLite recompiles a cached statement
        // whenever a parameter it planned with changes — every `LIMIT $n` counts — and the
        // claim, the largest statement here, was parsed and planned again on every call
        // (5 % of the server's CPU in the end-to-end benchmark).
        conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
        Ok(Self { conn, feed, in_order: HashMap::new() })
    }

    /// [`super::Store::write_events`], synchronously.
    pub fn write_events(&mut self, batch: &[EventWrite], now: Micros) -> Result<Vec<WriteOutcome>, StoreError> {
        let mut tx = self.begin()?;
        let outcomes =
            batch.iter().map(|w| claim_idempotency(&mut tx, &w.event, now)).collect::<Result<Vec<_>, _>>()?;
        let stored = stored(batch, &outcomes);
        insert_rows(&mut tx, &EVENTS, &event_rows(&stored))?;
        insert_rows(&mut tx, &DELIVERIES, &delivery_rows(&stored, now))?;
        let appended = append_feed(&mut tx, &feed_items(&stored))?;
        tx.commit(appended)?;
        Ok(outcomes)
    }

    /// [`super::Store::record_attempts`], synchronously.
    pub fn record_attempts(
        &mut self,
        batch: &[AttemptResult],
        now: Micros,
    ) -> Result<Vec<breaker::Transition>, StoreError> {
        let mut tx = self.begin()?;
        let current =
            AttemptWrites::to_read(batch).into_iter().map(|id| health(&mut tx, id)).collect::<Result<Vec<_>, _>>()?;
        let writes = AttemptWrites::decide(batch, current, now);
        for statement in writes.statements() {
            tx.run(&statement)?;
        }
        let appended = append_feed(&mut tx, &writes.feed_items())?;
        tx.commit(appended)?;
        Ok(writes.outcomes)
    }

    /// Runs `write` in one transaction, committed when it returns `Ok`.
    pub fn write<T>(&mut self, write: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let mut tx = self.begin()?;
        let out = write(&mut tx)?;
        tx.commit(false)?;
        Ok(out)
    }

    /// A write transaction: takes SQLite's write lock at once rather than at its first write.
    fn begin(&mut self) -> Result<Tx<'_>, StoreError> {
        Ok(Tx {
            tx: self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?,
            in_order: &mut self.in_order,
            feed: self.feed.clone(),
        })
    }
}

/// A connection to the database file the pools use (they create it and switch it to WAL),
/// through `vfs` (see [`wal_vfs`]) or SQLite's default.
fn open(path: &Path, vfs: Option<&CStr>) -> Result<rusqlite::Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    let conn = match vfs {
        Some(vfs) => {
            wal_vfs::register().map_err(failure)?;
            rusqlite::Connection::open_with_flags_and_vfs(path, flags, vfs)?
        }
        None => rusqlite::Connection::open_with_flags(path, flags)?,
    };
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

/// Checkpoints the WAL in the background (see the module's documentation).
pub struct Checkpointer {
    conn: rusqlite::Connection,
    /// [`RESTART_BYTES`] in pages of this database, whose page size may predate [`PAGE_SIZE`].
    restart_pages: i64,
}

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpointer").finish_non_exhaustive()
    }
}

impl Checkpointer {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = open(path, None)?;
        let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
        Ok(Self { conn, restart_pages: RESTART_BYTES / page_size.max(512) })
    }

    /// Copies what it can of the WAL into the database file, waiting for no one; returns whether
    /// the WAL has grown past [`RESTART_BYTES`] (then [`Checkpointer::restart`] is due). Blocks on
    /// disk.
    ///
    /// A due restart holds every write while it runs, so its slow parts are done here first. A
    /// PASSIVE checkpoint that cannot catch up with the writer copies pages without syncing the
    /// database file (SQLite syncs it only when a checkpoint reaches the WAL's end), and the WAL
    /// itself is synced only by checkpoints; so the RESTART used to copy everything appended
    /// since the PASSIVE one began, then sync the WAL and all the megabytes copied before it:
    /// ≈ 15 ms of held writes every 200 ms under full load (`perf trace`,
    /// `loft_sqlite_wal_restart_seconds`). Here both files are synced, a second PASSIVE copies
    /// what was appended meanwhile and both are synced again, outside the write lock; the
    /// RESTART then finds a few milliseconds of frames: 3–6 ms held (BENCHMARKS.md).
    pub fn passive(&self) -> Result<bool, StoreError> {
        const PASSIVE: &str = "PRAGMA wal_checkpoint(PASSIVE)";
        if self.run(PASSIVE)?.1 < self.restart_pages {
            return Ok(false);
        }
        sync_files(&self.conn)?;
        self.run(PASSIVE)?;
        sync_files(&self.conn)?;
        Ok(true)
    }

    /// Copies all of the WAL, waiting for readers of older pages, so that the next commit starts
    /// it over; returns whether it could (else a reader held on too long, and a later one tries
    /// again). The caller holds the write lock. Blocks on disk.
    pub fn restart(&self) -> Result<bool, StoreError> {
        let (busy, wal, copied) = self.run("PRAGMA wal_checkpoint(RESTART)")?;
        if busy != 0 {
            tracing::debug!(wal, copied, "WAL restart waited too long for a reader; trying again later");
        }
        Ok(busy == 0)
    }

    fn run(&self, pragma: &str) -> rusqlite::Result<(i64, i64, i64)> {
        self.conn.query_row(pragma, [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
    }
}

/// Syncs the database file and the WAL through this connection's own open files (SQLite's
/// `xSync`, as its checkpoints do; a sync only makes written data durable sooner). Opening
/// another descriptor of the database file instead would be unsafe: closing it would drop
/// the process's POSIX locks on the file, SQLite's among them.
fn sync_files(conn: &rusqlite::Connection) -> Result<(), StoreError> {
    for op in [ffi::SQLITE_FCNTL_FILE_POINTER, ffi::SQLITE_FCNTL_JOURNAL_POINTER] {
        let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
        // SAFETY: `conn` is open, and used by one thread at a time (a connection is not `Sync`);
        // both opcodes write one `sqlite3_file` pointer, valid while the connection is open,
        // whose methods are null for a file it has not opened (a rollback journal outside a
        // transaction).
        let rc = unsafe {
            let rc = ffi::sqlite3_file_control(conn.handle(), c"main".as_ptr(), op, (&raw mut file).cast());
            match (rc, file.as_ref().and_then(|f| f.pMethods.as_ref()).and_then(|m| m.xSync)) {
                (ffi::SQLITE_OK, Some(sync)) => sync(file, ffi::SQLITE_SYNC_NORMAL),
                (rc, _) => rc,
            }
        };
        if rc != ffi::SQLITE_OK && rc != ffi::SQLITE_NOTFOUND {
            return Err(failure(rc).into());
        }
    }
    Ok(())
}

/// The error of an SQLite result code returned by a call rusqlite does not wrap.
fn failure(rc: std::ffi::c_int) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(ffi::Error::new(rc), None)
}

/// A transaction of the writer's connection.
pub struct Tx<'c> {
    tx: Transaction<'c>,
    in_order: &'c mut HashMap<usize, bool>,
    feed: FeedSignal,
}

impl Tx<'_> {
    /// Commits; with `appended` (it wrote feed items), then wakes the feed.
    fn commit(self, appended: bool) -> Result<(), StoreError> {
        self.tx.commit()?;
        // After the commit, never before: a reader woken earlier could miss the rows.
        if appended {
            self.feed.notify();
        }
        Ok(())
    }

    /// The rows of `sql`, a query of two text columns.
    pub fn pairs(&mut self, sql: &'static str, args: &[Arg<'_>]) -> Result<Vec<(String, String)>, StoreError> {
        let mut st = self.statement(sql, args)?;
        let mut rows = st.raw_query();
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push((r.get(0)?, r.get(1)?));
        }
        Ok(out)
    }

    /// The cached statement for `sql` with `args` bound.
    fn statement(&mut self, sql: &'static str, args: &[Arg<'_>]) -> rusqlite::Result<CachedStatement<'_>> {
        statement(&self.tx, self.in_order, sql, args)
    }

    /// Runs one statement of a batch's writes (rows in the fixed-size statements).
    fn run(&mut self, statement: &Statement<'_>) -> rusqlite::Result<()> {
        match statement {
            Statement::One(sql, args) => {
                self.statement(sql, args)?.raw_execute()?;
            }
            Statement::Rows(rows) => {
                for (sql, args) in rows.chunks() {
                    self.statement(sql, args)?.raw_execute()?;
                }
            }
        }
        Ok(())
    }
}

/// The cached statement of `conn` for `sql`, with `args` bound (`in_order`: what is known of
/// each statement's parameters, see [`numbered_in_order`]).
fn statement<'c>(
    conn: &'c rusqlite::Connection,
    in_order: &mut HashMap<usize, bool>,
    sql: &'static str,
    args: &[Arg<'_>],
) -> rusqlite::Result<CachedStatement<'c>> {
    let mut st = conn.prepare_cached(sql)?;
    let in_order = *in_order.entry(sql.as_ptr() as usize).or_insert_with(|| numbered_in_order(&st));
    bind_numbered(&mut st, args, in_order)?;
    Ok(st)
}

/// SQLite: read-only connections for the point reads of hot paths (`GetDestination`, a claimed
/// delivery with its event), run on the caller's thread.
///
/// Through sqlx a read is two hand-offs to the connection's thread and back, and a third as
/// the connection returns to the pool (sqlx pings it): for a lookup by primary key that SQLite
/// answers in microseconds, those wake-ups were most of the cost (`perf`: ≈ 35 % of the CPU of
/// `GetDestination`, against 6 % in SQLite itself). A WAL reader never waits for the writer, so
/// such a read does not hold up the async worker it runs on. Reads that may scan (lists,
/// searches) stay on the sqlx pool, off the workers.
pub struct Readers {
    path: std::path::PathBuf,
    idle: std::sync::Mutex<Vec<Reader>>,
}

/// Connections kept idle by [`Readers`]; more are opened while more read at once.
const IDLE_READERS: usize = 4;

struct Reader {
    conn: rusqlite::Connection,
    in_order: HashMap<usize, bool>,
}

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readers").finish_non_exhaustive()
    }
}

impl Readers {
    pub fn new(path: &Path) -> Self {
        Self { path: path.to_owned(), idle: std::sync::Mutex::new(Vec::new()) }
    }

    /// The first row of `sql` with `args`, mapped by `map`; `None` when there is none.
    pub fn row<T>(
        &self,
        sql: &'static str,
        args: &[Arg<'_>],
        map: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Option<T>, StoreError> {
        let idle = self.idle.lock().expect("readers poisoned").pop();
        let mut reader = match idle {
            Some(r) => r,
            None => {
                let conn = rusqlite::Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                conn.busy_timeout(Duration::from_secs(10))?;
                conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
                Reader { conn, in_order: HashMap::new() }
            }
        };
        let out = (|| {
            let mut st = statement(&reader.conn, &mut reader.in_order, sql, args)?;
            let mut rows = st.raw_query();
            rows.next()?.map(map).transpose()
        })();
        let mut idle = self.idle.lock().expect("readers poisoned");
        if idle.len() < IDLE_READERS {
            idle.push(reader);
        }
        Ok(out?)
    }
}

fn insert_rows<const N: usize>(
    tx: &mut Tx<'_>,
    table: &'static MultiRow,
    rows: &[[Arg<'_>; N]],
) -> Result<(), StoreError> {
    Ok(tx.run(&Statement::Rows(Rows::new(table, rows)))?)
}

/// Appends feed items, numbered in order; false when there were none.
fn append_feed(tx: &mut Tx<'_>, items: &[NewFeedItem<'_>]) -> Result<bool, StoreError> {
    if items.is_empty() {
        return Ok(false);
    }
    let n = items.len() as i64;
    let last: i64 = tx
        .statement(ALLOCATE_FEED_SEQ, &[n.into()])?
        .raw_query()
        .next()?
        .ok_or(rusqlite::Error::QueryReturnedNoRows)?
        .get(0)?;
    insert_rows(tx, &FEED, &feed_rows(last - n + 1, items))?;
    Ok(true)
}

/// A destination's health row; a destination without one is healthy.
fn health(tx: &mut Tx<'_>, destination_id: &str) -> Result<DestinationHealth, StoreError> {
    let mut st = tx.statement(HEALTH_OF, &[destination_id.into()])?;
    let mut rows = st.raw_query();
    let Some(r) = rows.next()? else { return Ok(DestinationHealth::healthy(destination_id)) };
    Ok(DestinationHealth {
        destination_id: r.get(0)?,
        state: r.get(1)?,
        disabled_reason: r.get(2)?,
        consecutive_failures: r.get(3)?,
        failing_since: r.get(4)?,
        last_success_time: r.get(5)?,
        last_failure_time: r.get(6)?,
        circuit: r.get(7)?,
        circuit_retry_time: r.get(8)?,
    })
}

/// [`super::Store`]'s `claim_idempotency`: the same statements.
fn claim_idempotency(tx: &mut Tx<'_>, e: &NewEvent, now: Micros) -> Result<WriteOutcome, StoreError> {
    let Some((scope, key, expire)) = &e.idempotency else { return Ok(WriteOutcome::Stored) };
    let key_args = [(&e.project_id).into(), scope.into(), key.into()];
    let take = [key_args[0], key_args[1], key_args[2], (&e.id).into(), (*expire).into(), now.into()];
    if tx.statement(TAKE_IDEMPOTENCY_KEY, &take)?.raw_execute()? == 1 {
        return Ok(WriteOutcome::Stored);
    }
    let event_id: String = tx
        .statement(IDEMPOTENT_EVENT, &key_args)?
        .raw_query()
        .next()?
        .ok_or(rusqlite::Error::QueryReturnedNoRows)?
        .get(0)?;
    Ok(WriteOutcome::Duplicate { event_id })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ProjectId;
    use crate::store::{NewActivity, Store};

    fn event(id: &str, project: &str, key: Option<&str>) -> EventWrite {
        EventWrite {
            event: NewEvent {
                id: id.into(),
                project_id: project.into(),
                source_id: None,
                event_type: "invoice.paid".into(),
                body: b"{}".to_vec(),
                content_type: "application/json".into(),
                request: None,
                idempotency: key.map(|k| (String::new(), k.to_owned(), i64::MAX)),
                idempotency_key: key.map(str::to_owned),
                labels: "{}".into(),
                occur_time: None,
                receive_time: 1,
                deliver_time: None,
            },
            deliveries: Vec::new(),
            activities: vec![NewActivity {
                kind: "EVENT_RECEIVED",
                source_id: None,
                destination_id: None,
                event_type: Some("invoice.paid".into()),
                payload: b"{}".to_vec(),
            }],
        }
    }

    async fn store_with_project(dir: &tempfile::TempDir) -> (Store, String) {
        let url = format!("sqlite://{}", dir.path().join("loft.db").display());
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        let project = ProjectId::generate();
        let mut tx = store.begin().await.unwrap();
        store.insert_project(&mut tx, project, "{}", 1).await.unwrap();
        tx.commit().await.unwrap();
        store.checkpoint().await.unwrap();
        (store, project.to_string())
    }

    /// Rows of `table` in the database file itself, ignoring the WAL.
    fn in_main_file(dir: &tempfile::TempDir, table: &str) -> i64 {
        let url = format!("file:{}?immutable=1", dir.path().join("loft.db").display());
        let conn =
            rusqlite::Connection::open_with_flags(url, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI)
                .unwrap();
        conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0)).unwrap()
    }

    #[tokio::test]
    async fn a_bad_write_fails_alone_and_keys_dedupe_within_a_batch() {
        let dir = tempfile::tempdir().unwrap();
        let (store, project) = store_with_project(&dir).await;
        let batch = [
            event("evt_1", &project, Some("k")),
            event("evt_2", "prj_missing", None),
            event("evt_3", &project, Some("k")),
            event("evt_4", &project, None),
        ];
        // Through the group commit, which retries a batch that failed as a whole write by write.
        let outcomes = crate::store::writer::commit::<crate::store::writer::Events>(&store, &batch, 10).await;
        assert_eq!(outcomes[0].as_ref().unwrap(), &WriteOutcome::Stored);
        assert!(matches!(outcomes[1], Err(StoreError::Reference)), "{:?}", outcomes[1]);
        assert_eq!(outcomes[2].as_ref().unwrap(), &WriteOutcome::Duplicate { event_id: "evt_1".into() });
        assert_eq!(outcomes[3].as_ref().unwrap(), &WriteOutcome::Stored);
        assert_eq!(store.get_event(&project, "evt_4").await.unwrap().event_type, "invoice.paid");
        assert!(matches!(store.get_event(&project, "evt_3").await, Err(StoreError::NotFound)));
        // One feed item per stored event, numbered without gaps.
        let feed = store.feed_range(0, i64::MAX, 10).await.unwrap();
        assert_eq!(feed.iter().map(|f| f.seq).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(store.feed_horizon().await.unwrap(), 2);
    }

    #[tokio::test]
    async fn a_batch_reaches_the_wal_in_one_write() {
        let dir = tempfile::tempdir().unwrap();
        let (store, project) = store_with_project(&dir).await;
        let direct = store.direct().unwrap();
        let batch =
            |from: usize| (from..from + 50).map(|i| event(&format!("evt_{i:03}"), &project, None)).collect::<Vec<_>>();
        // The first commit after a checkpoint may start the WAL over (its header is synced
        // on its own); the next one only appends.
        direct.lock().unwrap().write_events(&batch(0), 10).unwrap();
        let before = wal_vfs::tests::wal_writes();
        direct.lock().unwrap().write_events(&batch(50), 10).unwrap();
        // Fifty events with their feed rows: dozens of frames, two writes each without the VFS.
        assert_eq!(wal_vfs::tests::wal_writes() - before, 1);
        assert_eq!(store.feed_horizon().await.unwrap(), 100);
    }

    #[tokio::test]
    async fn checkpoints_move_the_wal_into_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let (store, project) = store_with_project(&dir).await;
        let batch: Vec<_> = (0..100).map(|i| event(&format!("evt_{i:03}"), &project, None)).collect();
        let outcomes = store.direct().unwrap().lock().unwrap().write_events(&batch, 10).unwrap();
        assert_eq!(outcomes.len(), 100);
        // Committed, but only in the WAL: no writer checkpoints by itself this early.
        assert_eq!(in_main_file(&dir, "events"), 0);
        store.checkpoint().await.unwrap();
        assert_eq!(in_main_file(&dir, "events"), 100);
    }

    /// Pages in the WAL as of its last commit (a PASSIVE checkpoint reports them).
    fn wal_pages(checkpointer: &Checkpointer) -> i64 {
        checkpointer.run("PRAGMA wal_checkpoint(PASSIVE)").unwrap().1
    }

    #[tokio::test]
    async fn the_wal_starts_over_once_past_its_size_in_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (store, project) = store_with_project(&dir).await;
        let path = dir.path().join("loft.db");
        let checkpointer = Checkpointer::open(&path).unwrap();
        let page_size: i64 = checkpointer.conn.pragma_query_value(None, "page_size", |r| r.get(0)).unwrap();
        assert_eq!(page_size, i64::from(PAGE_SIZE));
        assert_eq!(checkpointer.restart_pages, RESTART_BYTES / i64::from(PAGE_SIZE));
        // 5 MiB of events with no checkpoint in between (a quiet WAL that a checkpoint copied
        // entirely starts over by itself; under load there is always a commit in between).
        let written: i64 = 2_500;
        for start in (0..written).step_by(100) {
            let batch: Vec<_> = (start..start + 100)
                .map(|i| {
                    let mut write = event(&format!("evt_{i:05}"), &project, None);
                    write.event.body = vec![b'x'; 2048];
                    write
                })
                .collect();
            store.direct().unwrap().lock().unwrap().write_events(&batch, 10).unwrap();
        }
        assert!(checkpointer.passive().unwrap(), "{} pages", wal_pages(&checkpointer));
        assert!(checkpointer.restart().unwrap());
        // The next commit writes from the WAL's start again.
        store.direct().unwrap().lock().unwrap().write_events(&[event("evt_last", &project, None)], 10).unwrap();
        // `wal_pages` checkpoints too: the last event is in the file as well.
        assert!(wal_pages(&checkpointer) < 50, "{} pages", wal_pages(&checkpointer));
        assert_eq!(in_main_file(&dir, "events"), written + 1);
    }

    #[tokio::test]
    async fn the_files_synced_ahead_of_a_restart_are_the_connections_own() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, _) = store_with_project(&dir).await;
        // Through the WAL VFS, which counts the syncs that reach it: the database file and the WAL.
        let conn = open(&dir.path().join("loft.db"), Some(wal_vfs::NAME)).unwrap();
        let before = wal_vfs::tests::syncs();
        sync_files(&conn).unwrap();
        assert_eq!(wal_vfs::tests::syncs() - before, 2);
        // A journal that is not open (a rollback journal outside a transaction) is skipped.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
        let plain =
            rusqlite::Connection::open_with_flags_and_vfs(dir.path().join("plain.db"), flags, wal_vfs::NAME).unwrap();
        plain.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        let before = wal_vfs::tests::syncs();
        sync_files(&plain).unwrap();
        assert_eq!(wal_vfs::tests::syncs() - before, 1);
    }

    #[tokio::test]
    async fn a_database_keeps_the_page_size_it_was_created_with() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loft.db");
        // Created before Loft chose 1 KiB pages: SQLite's default, 4 KiB.
        let old = rusqlite::Connection::open(&path).unwrap();
        old.pragma_update(None, "page_size", 4096).unwrap();
        old.pragma_update(None, "journal_mode", "WAL").unwrap();
        old.execute_batch("CREATE TABLE before_loft (x INTEGER)").unwrap();
        drop(old);
        let (store, _) = store_with_project(&dir).await;
        let checkpointer = Checkpointer::open(&path).unwrap();
        let page_size: i64 = checkpointer.conn.pragma_query_value(None, "page_size", |r| r.get(0)).unwrap();
        assert_eq!(page_size, 4096);
        // The WAL starts over at the same size in bytes, not in pages.
        assert_eq!(checkpointer.restart_pages, RESTART_BYTES / 4096);
        store.checkpoint().await.unwrap();
    }
}
