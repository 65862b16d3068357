//! Deliveries: one event × one subscription's destination, with its schedule.

use super::{StoreError, on_pool, on_tx};
use crate::store::Store;
use crate::timeutil::Micros;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DeliveryRecord {
    pub id: String,
    pub project_id: String,
    pub event_id: String,
    pub subscription_id: String,
    pub destination_id: String,
    pub state: String,
    pub attempt_count: i64,
    pub next_attempt_time: Option<i64>,
    pub last_status_code: Option<i64>,
    pub last_error: String,
    pub replay_of: Option<String>,
    pub create_time: i64,
    pub update_time: i64,
}

/// Filters of `list_deliveries`; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub event_id: Option<String>,
    pub destination_id: Option<String>,
    pub subscription_id: Option<String>,
    pub state: Option<String>,
}

macro_rules! select_deliveries {
    ($rest:literal) => {
        concat!(
            "SELECT id, project_id, event_id, subscription_id, destination_id, state, attempt_count, next_attempt_time, ",
            "last_status_code, last_error, replay_of, create_time, update_time FROM deliveries ",
            $rest
        )
    };
}

/// An original delivery to copy for a replay.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Original {
    id: String,
    subscription_id: String,
    destination_id: String,
    body: Option<Vec<u8>>,
    content_type: Option<String>,
    forward_headers: bool,
}

impl Store {
    /// New deliveries of an event, one per original delivery (to `destination` only, when
    /// given), each linked to the original; `new_id` names them. Returns the new deliveries.
    pub async fn replay_event(
        &self,
        project: &str,
        event: &str,
        destination: Option<&str>,
        now: Micros,
        mut new_id: impl FnMut() -> String,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let mut tx = self.begin().await?;
        let originals: Vec<Original> = on_tx!(&mut tx, c => sqlx::query_as(
            "SELECT id, subscription_id, destination_id, body, content_type, forward_headers FROM deliveries \
             WHERE project_id = $1 AND event_id = $2 AND replay_of IS NULL AND (CAST($3 AS TEXT) IS NULL OR destination_id = $3) \
             ORDER BY id")
            .bind(project).bind(event).bind(destination).fetch_all(c).await?);
        let mut ids = Vec::with_capacity(originals.len());
        for o in &originals {
            let id = new_id();
            on_tx!(&mut tx, c => sqlx::query(
                "INSERT INTO deliveries (id, project_id, event_id, subscription_id, destination_id, state, next_attempt_time, \
                 body, content_type, forward_headers, replay_of, create_time, update_time) \
                 VALUES ($1, $2, $3, $4, $5, 'PENDING', $6, $7, $8, $9, $10, $6, $6)")
                .bind(&id).bind(project).bind(event).bind(&o.subscription_id).bind(&o.destination_id).bind(now)
                .bind(&o.body).bind(&o.content_type).bind(o.forward_headers).bind(&o.id)
                .execute(c).await.map(|_| ())?);
            ids.push(id);
        }
        tx.commit().await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.get_delivery(project, &id).await?);
        }
        Ok(out)
    }

    /// Re-arms a destination's failed deliveries created at or after `since`: due now, for one
    /// more attempt each. Returns how many.
    pub async fn recover_destination(
        &self,
        project: &str,
        destination: &str,
        since: Micros,
        now: Micros,
    ) -> Result<u64, StoreError> {
        Ok(on_pool!(&*self.writes().await, p => sqlx::query(
            "UPDATE deliveries SET state = 'RETRYING', next_attempt_time = $4, lease_until = NULL, update_time = $4 \
             WHERE project_id = $1 AND destination_id = $2 AND state = 'FAILED' AND create_time >= $3")
            .bind(project).bind(destination).bind(since).bind(now).execute(p).await?.rows_affected()))
    }

    pub async fn get_delivery(&self, project: &str, id: &str) -> Result<DeliveryRecord, StoreError> {
        let row: Option<DeliveryRecord> = on_pool!(self.pool(), p => sqlx::query_as(select_deliveries!("WHERE project_id = $1 AND id = $2"))
            .bind(project).bind(id).fetch_optional(p).await?);
        row.ok_or(StoreError::NotFound)
    }

    /// One page, newest first, before `before` (exclusive).
    pub async fn list_deliveries(
        &self,
        project: &str,
        before: Option<&str>,
        limit: u32,
        f: &DeliveryFilter,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        const SQL: &str = select_deliveries!(
            "WHERE project_id = $1 AND id < $2 \
             AND (CAST($4 AS TEXT) IS NULL OR event_id = $4) \
             AND (CAST($5 AS TEXT) IS NULL OR destination_id = $5) \
             AND (CAST($6 AS TEXT) IS NULL OR subscription_id = $6) \
             AND (CAST($7 AS TEXT) IS NULL OR state = $7) \
             ORDER BY id DESC LIMIT $3"
        );
        Ok(on_pool!(self.pool(), p => sqlx::query_as(SQL)
            .bind(project).bind(before.unwrap_or("~")).bind(i64::from(limit))
            .bind(&f.event_id).bind(&f.destination_id).bind(&f.subscription_id).bind(&f.state)
            .fetch_all(p).await?))
    }
}
