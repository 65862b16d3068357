//! Reading the feed log: the durable, ordered activity behind `WatchEvents`.
//!
//! Rows are appended by the transactions that make the activity happen (`events.rs`,
//! `dispatch.rs`, the API's resource changes). Their `seq` comes from the `feed_sequence`
//! counter row, updated inside those transactions. The row lock is held until commit, so a
//! transaction that allocated larger numbers cannot commit before one holding smaller numbers:
//! the committed sequence numbers are always a gap-free prefix `1..=horizon`, on one node or many
//! (the lock is in the database). A reader that has seen `N` therefore never meets a smaller
//! number later, and `horizon` (the counter's committed value) says how far everything is
//! visible. A rolled-back transaction rolls the counter back too, so numbers are contiguous.

use std::sync::Arc;

use tokio::sync::Notify;

use tokio_util::sync::CancellationToken;

use super::{Pool, StoreError, dialect, on_pool};
use crate::store::Store;
use crate::timeutil::Micros;

/// One item of the feed log.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct FeedRow {
    pub seq: i64,
    pub project_id: String,
    pub kind: String,
    pub time: i64,
    pub source_id: Option<String>,
    pub destination_id: Option<String>,
    pub event_type: Option<String>,
    /// JSON naming what the item is about (`{"event_id": …}`) or, for state changes and audit
    /// records, describing it whole.
    pub payload: Vec<u8>,
}

/// Wakes this node's feed after a transaction that appended to it commits.
#[derive(Debug, Clone, Default)]
pub struct FeedSignal(Arc<Notify>);

impl FeedSignal {
    pub fn notify(&self) {
        // One waiter (the feed's reader task); a permit is kept when it is busy, so no commit is
        // missed between two reads.
        self.0.notify_one();
    }

    pub async fn notified(&self) {
        self.0.notified().await
    }
}

macro_rules! select_feed {
    ($rest:literal) => {
        concat!("SELECT seq, project_id, kind, time, source_id, destination_id, event_type, payload FROM feed ", $rest)
    };
}

impl Store {
    /// The signal raised when a transaction that appended to the feed commits on this node.
    pub fn feed_signal(&self) -> &FeedSignal {
        &self.feed
    }

    /// The last committed sequence number: every item up to it is visible.
    pub async fn feed_horizon(&self) -> Result<i64, StoreError> {
        let row: (i64,) = on_pool!(self.pool(), p => sqlx::query_as("SELECT last_seq FROM feed_sequence WHERE id = 1")
            .fetch_one(p).await?);
        Ok(row.0)
    }

    /// The oldest item still kept (retention deletes from the front), if any.
    pub async fn feed_oldest(&self) -> Result<Option<i64>, StoreError> {
        let row: (Option<i64>,) =
            on_pool!(self.pool(), p => sqlx::query_as("SELECT MIN(seq) FROM feed").fetch_one(p).await?);
        Ok(row.0)
    }

    /// Items of every project in `(after, upto]`, in order, at most `limit`.
    pub async fn feed_range(&self, after: i64, upto: i64, limit: u32) -> Result<Vec<FeedRow>, StoreError> {
        Ok(
            on_pool!(self.pool(), p => sqlx::query_as(select_feed!("WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3"))
            .bind(after).bind(upto).bind(i64::from(limit)).fetch_all(p).await?),
        )
    }

    /// Items of one project in `(after, upto]`, in order, at most `limit`.
    pub async fn feed_page(
        &self,
        project: &str,
        after: i64,
        upto: i64,
        limit: u32,
    ) -> Result<Vec<FeedRow>, StoreError> {
        Ok(on_pool!(self.pool(), p => sqlx::query_as(select_feed!(
            "WHERE project_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4"))
            .bind(project).bind(after).bind(upto).bind(i64::from(limit)).fetch_all(p).await?))
    }

    /// The first item of `project` at or after `time`, if any.
    pub async fn feed_seq_at(&self, project: &str, time: Micros) -> Result<Option<i64>, StoreError> {
        let row: (Option<i64>,) = on_pool!(self.pool(), p => sqlx::query_as(
            "SELECT MIN(seq) FROM feed WHERE project_id = $1 AND time >= $2")
            .bind(project).bind(time).fetch_one(p).await?);
        Ok(row.0)
    }

    /// PostgreSQL: listens for the other nodes' commits (`dialect::allocate_feed_seq`) and wakes this
    /// node's feed and, through `on_wake`, its dispatcher. Reconnects after an outage; what was
    /// missed meanwhile is found by the feed's and the dispatcher's own polling.
    ///
    /// The node's own notifications are skipped: its commits wake its feed and dispatcher
    /// themselves, as on SQLite. Heeding them cost a claim (two round trips and a write) per
    /// commit: ≈ 1 000 empty claims a second at 1 000 events/s (`pg_stat_statements`).
    pub async fn follow_other_nodes(&self, on_wake: impl Fn(), shutdown: CancellationToken) {
        let Pool::Postgres(pool) = self.pool() else { return };
        loop {
            let listening = async {
                let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
                listener.listen(dialect::WAKE_CHANNEL).await?;
                // After a (re)connect something may have been missed: look once.
                self.feed.notify();
                on_wake();
                loop {
                    if listener.recv().await?.payload() == &*self.node {
                        continue;
                    }
                    self.feed.notify();
                    on_wake();
                }
            };
            let result: Result<(), sqlx::Error> = tokio::select! {
                r = listening => r,
                _ = shutdown.cancelled() => return,
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "listening for other nodes failed; retrying");
            }
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }
}
