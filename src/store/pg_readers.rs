//! PostgreSQL: connections for the point reads of hot paths (`GetDestination`, a claimed
//! delivery with its event), kept outside sqlx's pool.
//!
//! The pool pings every connection as it comes back (`PoolConnection::return_to_pool`, not
//! optional in sqlx 0.9): one more round trip, and one more wake-up of the server process, per
//! query. For a lookup by primary key that the server executes in ≈ 15 µs
//! (`pg_stat_statements`), those wake-ups were a large part of both processes' CPU, and the
//! connection stayed out of the pool meanwhile. Here a connection goes back as soon as its
//! query has finished; one whose query failed or was abandoned half-way (the caller's future
//! dropped) is closed instead, since its protocol state is unknown. One idle for a while is
//! pinged before use, and a read that fails on a kept connection is tried once more on a new
//! one, so a server restart costs a reconnect, not a failed call.
//!
//! Reads that many callers make at once under load are also gathered into one query
//! ([`Batched`]).

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sqlx::postgres::{PgArguments, PgConnectOptions, PgRow};
use sqlx::{Connection, FromRow, PgConnection, Postgres};
use tokio::sync::{Semaphore, oneshot};

use super::destinations::DestinationRow;
use super::{PG_PING_IDLE, StoreError};

/// Point reads running at once at most; more wait for a connection.
const CONNECTIONS: usize = 16;
/// Batches of one [`Batched`] read running at once. More callers than this wait for a running
/// batch to finish and join the next, which is what makes batches form. Two keep one batch
/// being answered while the next is read; at c = 64 (`loft-bench --scenario unary`) 1, 2, 4 and
/// 8 gave ≈ 28 000–32 000, 26 000–31 000, 24 000–25 000 and 19 000–20 000 calls/s: more batches
/// are smaller ones, each a wake-up of a server process.
const BATCHES: usize = 2;
/// Most reads gathered into one query.
const MAX_BATCH: usize = 128;

pub struct PgReaders {
    options: PgConnectOptions,
    /// Each with the time it was put back.
    idle: Mutex<Vec<(PgConnection, Instant)>>,
    slots: Semaphore,
    /// `GetDestination`'s reads.
    pub(super) destinations: Batched<(String, String), DestinationRow>,
}

impl std::fmt::Debug for PgReaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgReaders").finish_non_exhaustive()
    }
}

impl PgReaders {
    /// Connections are opened on first use.
    pub fn new(options: PgConnectOptions) -> Self {
        Self {
            options,
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(CONNECTIONS),
            destinations: Batched::default(),
        }
    }

    /// Runs the query `make` builds on one of the connections; its first row, if any.
    pub async fn fetch_optional<'q, T>(
        &self,
        make: impl Fn() -> sqlx::query::QueryAs<'q, Postgres, T, PgArguments>,
    ) -> Result<Option<T>, StoreError>
    where
        T: for<'r> FromRow<'r, PgRow> + Send + Unpin,
    {
        Ok(self.fetch_all(make).await?.into_iter().next())
    }

    /// Runs the query `make` builds on one of the connections; its rows. A read that fails on a
    /// connection kept from earlier is tried once more on a new one: the server may have
    /// restarted since that connection was last used (it is pinged only after
    /// [`PG_PING_IDLE`]), and a read is safe to repeat.
    pub async fn fetch_all<'q, T>(
        &self,
        make: impl Fn() -> sqlx::query::QueryAs<'q, Postgres, T, PgArguments>,
    ) -> Result<Vec<T>, StoreError>
    where
        T: for<'r> FromRow<'r, PgRow> + Send + Unpin,
    {
        let _slot = self.slots.acquire().await.expect("semaphore never closed");
        let mut conn = match self.idle_connection().await {
            Some(mut conn) => match make().fetch_all(&mut conn).await {
                Ok(rows) => return Ok(self.put_back(conn, rows)),
                Err(_) => PgConnection::connect_with(&self.options).await?,
            },
            None => PgConnection::connect_with(&self.options).await?,
        };
        // Dropped (closed) unless the query finished: an error or a cancellation here leaves
        // the connection in an unknown state.
        let rows = make().fetch_all(&mut conn).await?;
        Ok(self.put_back(conn, rows))
    }

    fn put_back<T>(&self, conn: PgConnection, out: T) -> T {
        self.idle.lock().expect("readers poisoned").push((conn, Instant::now()));
        out
    }

    /// An idle connection that answers, if there is one.
    async fn idle_connection(&self) -> Option<PgConnection> {
        loop {
            let (mut conn, since) = self.idle.lock().expect("readers poisoned").pop()?;
            if since.elapsed() < PG_PING_IDLE || conn.ping().await.is_ok() {
                return Some(conn);
            }
        }
    }
}

type Answer<V> = oneshot::Sender<Result<Option<V>, StoreError>>;

/// Point reads of one kind by key, gathered into one query when they come at once.
///
/// At c = 64 a query per `GetDestination` meant a round trip, and a wake-up of a server
/// process, per call, on a server sharing the machine's cores with Loft: PostgreSQL answered
/// 41 % of what SQLite did (BENCHMARKS.md). Here a caller queues its key; the first one to find
/// a free place among [`BATCHES`] takes every key queued and reads them in one query, and hands
/// each waiter its row. A lone read runs at once, and a batch only holds reads asked before it
/// started, so every answer is as fresh as a query of its own would have been.
pub struct Batched<K, V> {
    queued: Mutex<Vec<(K, Answer<V>)>>,
    running: Semaphore,
}

impl<K, V> std::fmt::Debug for Batched<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batched").finish_non_exhaustive()
    }
}

impl<K, V> Default for Batched<K, V> {
    fn default() -> Self {
        Self { queued: Mutex::new(Vec::new()), running: Semaphore::new(BATCHES) }
    }
}

impl<K: Clone + Eq + Hash, V: Clone> Batched<K, V> {
    /// The row of `key`, read by `read` (every row of the keys it is given, each found again by
    /// `key_of`) together with whatever other reads are waiting.
    pub async fn read<F: Future<Output = Result<Vec<V>, StoreError>>>(
        &self,
        key: K,
        key_of: impl Fn(&V) -> K,
        read: impl Fn(Vec<K>) -> F,
    ) -> Result<Option<V>, StoreError> {
        loop {
            let (answer, mut answered) = oneshot::channel();
            self.queued.lock().expect("batch poisoned").push((key.clone(), answer));
            let place = tokio::select! {
                biased;
                got = &mut answered => match got {
                    Ok(row) => return row,
                    // The caller that took it gave up half-way (its future was dropped).
                    Err(_) => continue,
                },
                place = self.running.acquire() => place.expect("semaphore never closed"),
            };
            let batch: Vec<(K, Answer<V>)> = {
                let mut queued = self.queued.lock().expect("batch poisoned");
                let n = queued.len().min(MAX_BATCH);
                queued.drain(..n).collect()
            };
            if !batch.is_empty() {
                let mut seen = HashSet::new();
                let keys = batch.iter().filter(|(k, _)| seen.insert(k.clone())).map(|(k, _)| k.clone()).collect();
                match read(keys).await {
                    Ok(rows) => {
                        let rows: HashMap<K, V> = rows.into_iter().map(|v| (key_of(&v), v)).collect();
                        for (k, answer) in batch {
                            let _ = answer.send(Ok(rows.get(&k).cloned()));
                        }
                    }
                    Err(e) => {
                        let e = Arc::new(e);
                        for (_, answer) in batch {
                            let _ = answer.send(Err(StoreError::copy_of(&e)));
                        }
                    }
                }
            }
            drop(place);
            // Ours was in this batch, or in one another caller is reading.
            match answered.await {
                Ok(row) => return row,
                Err(_) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// Rows are `(key, key * 10)`; key 0 has none.
    fn rows(keys: &[u32]) -> Vec<(u32, u32)> {
        keys.iter().filter(|&&k| k != 0).map(|&k| (k, k * 10)).collect()
    }

    #[tokio::test]
    async fn reads_asked_together_share_a_query_and_each_gets_its_row() {
        let batched = Arc::new(Batched::<u32, (u32, u32)>::default());
        let queries = Arc::new(Mutex::new(Vec::<Vec<u32>>::new()));
        // The first queries wait until every reader has queued its key.
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let mut tasks = Vec::new();
        for i in 0..40u32 {
            let (batched, queries, gate) = (batched.clone(), queries.clone(), gate.clone());
            tasks.push(tokio::spawn(async move {
                let key = i % 10; // repeated keys, and key 0 without a row
                let row = batched
                    .read(
                        key,
                        |r| r.0,
                        |keys| {
                            let (queries, gate) = (queries.clone(), gate.clone());
                            async move {
                                queries.lock().unwrap().push(keys.clone());
                                gate.acquire().await.unwrap().forget();
                                Ok(rows(&keys))
                            }
                        },
                    )
                    .await;
                (key, row.unwrap())
            }));
        }
        while batched.queued.lock().unwrap().len() < 40 - BATCHES {
            tokio::task::yield_now().await;
        }
        gate.add_permits(1000);
        for t in tasks {
            let (key, row) = t.await.unwrap();
            assert_eq!(row, (key != 0).then_some((key, key * 10)), "key {key}");
        }
        let queries = queries.lock().unwrap();
        // The first BATCHES readers each took what was queued then (their own key); the rest
        // waited and were read together, every key once.
        assert!(queries.len() <= BATCHES + 2, "{} queries: {queries:?}", queries.len());
        for q in queries.iter() {
            let mut unique = q.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), q.len(), "a key asked twice in one query: {q:?}");
        }
    }

    #[tokio::test]
    async fn an_outage_reaches_every_waiter_as_an_outage() {
        let batched = Arc::new(Batched::<u32, (u32, u32)>::default());
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let mut tasks = Vec::new();
        for key in 1..=8u32 {
            let (batched, gate) = (batched.clone(), gate.clone());
            tasks.push(tokio::spawn(async move {
                batched
                    .read(
                        key,
                        |r| r.0,
                        |_| {
                            let gate = gate.clone();
                            async move {
                                gate.acquire().await.unwrap().forget();
                                Err(StoreError::unavailable(sqlx::Error::PoolTimedOut))
                            }
                        },
                    )
                    .await
            }));
        }
        while batched.queued.lock().unwrap().len() < 8 - BATCHES {
            tokio::task::yield_now().await;
        }
        gate.add_permits(100);
        for t in tasks {
            assert!(matches!(t.await.unwrap(), Err(StoreError::Unavailable(_))));
        }
    }

    #[tokio::test]
    async fn a_reader_whose_batch_was_dropped_half_way_reads_again() {
        let batched = Arc::new(Batched::<u32, (u32, u32)>::default());
        let calls = Arc::new(AtomicUsize::new(0));
        // The first BATCHES queries, and any with key 7, never finish.
        let read = |calls: Arc<AtomicUsize>| {
            move |keys: Vec<u32>| {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < BATCHES || keys.contains(&7) {
                        std::future::pending::<()>().await;
                    }
                    Ok(rows(&keys))
                }
            }
        };
        let spawn = |key: u32| {
            let (batched, calls) = (batched.clone(), calls.clone());
            tokio::spawn(async move { batched.read(key, |r| r.0, read(calls)).await })
        };
        let wait_for = |n: usize| {
            let calls = calls.clone();
            async move {
                while calls.load(Ordering::SeqCst) < n {
                    tokio::task::yield_now().await;
                }
            }
        };
        // Both places taken by reads that hang.
        let blockers: Vec<_> = (1..=BATCHES as u32).map(spawn).collect();
        wait_for(BATCHES).await;
        // 7 queues first, so it leads the next batch and takes 8 along.
        let leader = spawn(7);
        while batched.queued.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        let follower = spawn(8);
        while batched.queued.lock().unwrap().len() < 2 {
            tokio::task::yield_now().await;
        }
        blockers[0].abort();
        wait_for(BATCHES + 1).await;
        assert!(batched.queued.lock().unwrap().is_empty(), "7 took 8 along");
        // 7's caller gives up half-way: 8 must not wait for an answer that will never come.
        leader.abort();
        let row = tokio::time::timeout(Duration::from_secs(5), follower).await.expect("8 was stranded");
        assert_eq!(row.unwrap().unwrap(), Some((8, 80)));
        for b in blockers {
            b.abort();
        }
    }
}
