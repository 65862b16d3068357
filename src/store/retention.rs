//! Deleting what is past its retention, in small batches so a sweep never holds a long lock.

use super::{StoreError, on_pool};
use crate::store::Store;
use crate::timeutil::Micros;

impl Store {
    /// Deliveries waiting to be attempted (due or scheduled), and destinations with an open
    /// circuit: gauges for `/metrics`.
    pub async fn queue_figures(&self) -> Result<(i64, i64), StoreError> {
        let queued: (i64,) = on_pool!(self.pool(), p => sqlx::query_as(
            "SELECT COUNT(*) FROM deliveries WHERE next_attempt_time IS NOT NULL").fetch_one(p).await?);
        let open: (i64,) = on_pool!(self.pool(), p => sqlx::query_as(
            "SELECT COUNT(*) FROM destination_health WHERE circuit = 'OPEN'").fetch_one(p).await?);
        Ok((queued.0, open.0))
    }

    /// Deletes up to `limit` of a project's events received before `before`; their deliveries
    /// and attempts go with them (foreign keys). Returns how many events.
    pub async fn delete_events_before(&self, project: &str, before: Micros, limit: u32) -> Result<u64, StoreError> {
        Ok(on_pool!(&*self.writes().await, p => sqlx::query(
            "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE project_id = $1 AND receive_time < $2 ORDER BY id LIMIT $3)")
            .bind(project).bind(before).bind(i64::from(limit)).execute(p).await?.rows_affected()))
    }

    /// Deletes up to `limit` feed items older than `before`, from the front of the log only:
    /// a watcher's cursor is expired exactly when it lies before the oldest item kept.
    pub async fn delete_feed_before(&self, before: Micros, limit: u32) -> Result<u64, StoreError> {
        Ok(on_pool!(&*self.writes().await, p => sqlx::query(
            "DELETE FROM feed WHERE seq IN (SELECT seq FROM feed WHERE seq < \
             (SELECT COALESCE(MIN(seq), 9223372036854775807) FROM feed WHERE time >= $1) ORDER BY seq LIMIT $2)")
            .bind(before).bind(i64::from(limit)).execute(p).await?.rows_affected()))
    }

    /// Deletes up to `limit` idempotency and dedup keys whose window has passed.
    pub async fn delete_expired_keys(&self, now: Micros, limit: u32) -> Result<u64, StoreError> {
        Ok(on_pool!(&*self.writes().await, p => sqlx::query(
            "DELETE FROM idempotency_keys WHERE (project_id, scope, key) IN \
             (SELECT project_id, scope, key FROM idempotency_keys WHERE expire_time <= $1 LIMIT $2)")
            .bind(now).bind(i64::from(limit)).execute(p).await?.rows_affected()))
    }
}
