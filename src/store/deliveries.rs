//! Deliveries: one event × one subscription's destination, with its schedule.

use super::{StoreError, on_pool};
use crate::store::Store;

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

impl Store {
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
