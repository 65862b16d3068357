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

use std::sync::Mutex;
use std::time::Instant;

use sqlx::postgres::{PgArguments, PgConnectOptions, PgRow};
use sqlx::{Connection, FromRow, PgConnection, Postgres};
use tokio::sync::Semaphore;

use super::{PG_PING_IDLE, StoreError};

/// Point reads running at once at most; more wait for a connection.
const CONNECTIONS: usize = 16;

pub struct PgReaders {
    options: PgConnectOptions,
    /// Each with the time it was put back.
    idle: Mutex<Vec<(PgConnection, Instant)>>,
    slots: Semaphore,
}

impl std::fmt::Debug for PgReaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgReaders").finish_non_exhaustive()
    }
}

impl PgReaders {
    /// Connections are opened on first use.
    pub fn new(options: PgConnectOptions) -> Self {
        Self { options, idle: Mutex::new(Vec::new()), slots: Semaphore::new(CONNECTIONS) }
    }

    /// Runs the query `make` builds on one of the connections; its first row, if any. A read
    /// that fails on a connection kept from earlier is tried once more on a new one: the server
    /// may have restarted since that connection was last used (it is pinged only after
    /// [`PG_PING_IDLE`]), and a read is safe to repeat.
    pub async fn fetch_optional<'q, T>(
        &self,
        make: impl Fn() -> sqlx::query::QueryAs<'q, Postgres, T, PgArguments>,
    ) -> Result<Option<T>, StoreError>
    where
        T: for<'r> FromRow<'r, PgRow> + Send + Unpin,
    {
        let _slot = self.slots.acquire().await.expect("semaphore never closed");
        let mut conn = match self.idle_connection().await {
            Some(mut conn) => match make().fetch_optional(&mut conn).await {
                Ok(row) => return Ok(self.put_back(conn, row)),
                Err(_) => PgConnection::connect_with(&self.options).await?,
            },
            None => PgConnection::connect_with(&self.options).await?,
        };
        // Dropped (closed) unless the query finished: an error or a cancellation here leaves
        // the connection in an unknown state.
        let row = make().fetch_optional(&mut conn).await?;
        Ok(self.put_back(conn, row))
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
