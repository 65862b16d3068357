//! What the delivery engine knows of a destination: state, circuit, failure counters. A
//! destination without a row is active and healthy.

use std::collections::HashMap;

use super::documents::DocumentRow;
use super::{PointReaders, StoreError, Tx, on_pool, on_tx};
use crate::domain::destination::DestinationSpec;
use crate::ids::{DestinationId, ProjectId};
use crate::store::{Store, Stored};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DestinationHealth {
    pub destination_id: String,
    /// `ACTIVE`, `PAUSED` or `DISABLED`.
    pub state: String,
    pub disabled_reason: String,
    pub consecutive_failures: i64,
    pub failing_since: Option<i64>,
    pub last_success_time: Option<i64>,
    pub last_failure_time: Option<i64>,
    /// `CLOSED`, `OPEN` or `HALF_OPEN`.
    pub circuit: String,
    pub circuit_retry_time: Option<i64>,
}

impl DestinationHealth {
    pub fn healthy(destination_id: &str) -> Self {
        Self {
            destination_id: destination_id.to_owned(),
            state: "ACTIVE".to_owned(),
            disabled_reason: String::new(),
            consecutive_failures: 0,
            failing_since: None,
            last_success_time: None,
            last_failure_time: None,
            circuit: "CLOSED".to_owned(),
            circuit_retry_time: None,
        }
    }
}

macro_rules! select_health {
    ($rest:literal) => {
        concat!(
            "SELECT destination_id, state, disabled_reason, consecutive_failures, failing_since, last_success_time, ",
            "last_failure_time, circuit, circuit_retry_time FROM destination_health ",
            $rest
        )
    };
}

/// A destination's health row (`$1`), in the columns of [`DestinationHealth`].
pub(super) const HEALTH_OF: &str = select_health!("WHERE destination_id = $1");

/// A destination document and its health row, if it has one, read together.
#[derive(sqlx::FromRow, Clone)]
pub(super) struct DestinationRow {
    #[sqlx(flatten)]
    document: DocumentRow,
    state: Option<String>,
    disabled_reason: Option<String>,
    consecutive_failures: Option<i64>,
    failing_since: Option<i64>,
    last_success_time: Option<i64>,
    last_failure_time: Option<i64>,
    circuit: Option<String>,
    circuit_retry_time: Option<i64>,
}

impl Store {
    /// A destination with its health, in one read (`GetDestination`).
    pub async fn destination_with_health(
        &self,
        project: ProjectId,
        id: &DestinationId,
    ) -> Result<(Stored<DestinationSpec>, DestinationHealth), StoreError> {
        macro_rules! select {
            ($where:literal) => {
                concat!(
                    "SELECT d.id, d.project_id, d.spec, d.create_time, d.update_time, h.state, h.disabled_reason, \
                     h.consecutive_failures, h.failing_since, h.last_success_time, h.last_failure_time, h.circuit, \
                     h.circuit_retry_time FROM destinations d LEFT JOIN destination_health h ON h.destination_id = d.id ",
                    $where
                )
            };
        }
        const SQL: &str = select!("WHERE d.project_id = $1 AND d.id = $2");
        // Several at once (PostgreSQL, `pg_readers::Batched`): each `(project, id)` pair.
        const BATCH: &str = select!(
            "JOIN UNNEST(CAST($1 AS TEXT[]), CAST($2 AS TEXT[])) AS k (project_id, id) \
             ON d.project_id = k.project_id AND d.id = k.id"
        );
        let (project, id) = (project.to_string(), id.to_string());
        let row: Option<DestinationRow> = match self.readers() {
            PointReaders::Sqlite(r) => r.row(SQL, &[project.as_str().into(), id.as_str().into()], |r| {
                Ok(DestinationRow {
                    document: DocumentRow::from_columns(r)?,
                    state: r.get(5)?,
                    disabled_reason: r.get(6)?,
                    consecutive_failures: r.get(7)?,
                    failing_since: r.get(8)?,
                    last_success_time: r.get(9)?,
                    last_failure_time: r.get(10)?,
                    circuit: r.get(11)?,
                    circuit_retry_time: r.get(12)?,
                })
            })?,
            PointReaders::Postgres(r) => {
                let key_of = |row: &DestinationRow| (row.document.project_id.clone(), row.document.id.clone());
                let read = |keys: Vec<(String, String)>| async move {
                    let (projects, ids): (Vec<String>, Vec<String>) = keys.into_iter().unzip();
                    r.fetch_all(|| sqlx::query_as(BATCH).bind(&projects).bind(&ids)).await
                };
                r.destinations.read((project, id.clone()), key_of, read).await?
            }
        };
        let row = row.ok_or(StoreError::NotFound)?;
        let health = match row.state {
            None => DestinationHealth::healthy(&id),
            Some(state) => DestinationHealth {
                destination_id: id,
                state,
                disabled_reason: row.disabled_reason.unwrap_or_default(),
                consecutive_failures: row.consecutive_failures.unwrap_or_default(),
                failing_since: row.failing_since,
                last_success_time: row.last_success_time,
                last_failure_time: row.last_failure_time,
                circuit: row.circuit.unwrap_or_else(|| "CLOSED".to_owned()),
                circuit_retry_time: row.circuit_retry_time,
            },
        };
        Ok((row.document.decode()?, health))
    }

    pub async fn destination_health(&self, destination_id: &str) -> Result<DestinationHealth, StoreError> {
        let row: Option<DestinationHealth> = on_pool!(self.pool(), p => sqlx::query_as(select_health!("WHERE destination_id = $1"))
            .bind(destination_id).fetch_optional(p).await?);
        Ok(row.unwrap_or_else(|| DestinationHealth::healthy(destination_id)))
    }

    /// Health of a project's destinations with ids in `(after, last]`: one list page.
    pub async fn destination_health_range(
        &self,
        project: &str,
        after: Option<&str>,
        last: &str,
    ) -> Result<HashMap<String, DestinationHealth>, StoreError> {
        let rows: Vec<DestinationHealth> = on_pool!(self.pool(), p => sqlx::query_as(select_health!(
            "WHERE destination_id IN (SELECT id FROM destinations WHERE project_id = $1 AND id > $2 AND id <= $3)"))
            .bind(project).bind(after.unwrap_or("")).bind(last).fetch_all(p).await?);
        Ok(rows.into_iter().map(|h| (h.destination_id.clone(), h)).collect())
    }

    /// Sets the state a user chose (pause, resume). Resuming also forgets failures, so that a
    /// re-enabled destination starts with a closed circuit.
    pub async fn set_destination_state(
        &self,
        tx: &mut Tx,
        destination_id: &str,
        state: &str,
        reason: &str,
        reset: bool,
    ) -> Result<(), StoreError> {
        on_tx!(tx, c => sqlx::query(
            "INSERT INTO destination_health (destination_id, state, disabled_reason) VALUES ($1, $2, $3) \
             ON CONFLICT (destination_id) DO UPDATE SET state = $2, disabled_reason = $3, \
             consecutive_failures = CASE WHEN $4 THEN 0 ELSE destination_health.consecutive_failures END, \
             failing_since = CASE WHEN $4 THEN NULL ELSE destination_health.failing_since END, \
             circuit = CASE WHEN $4 THEN 'CLOSED' ELSE destination_health.circuit END, \
             circuit_retry_time = CASE WHEN $4 THEN NULL ELSE destination_health.circuit_retry_time END")
            .bind(destination_id).bind(state).bind(reason).bind(reset).execute(c).await.map(|_| ())?);
        Ok(())
    }

    /// The destination's health as of now, locked until `tx` ends: what is decided from it and
    /// written back in `tx` cannot overwrite a concurrent change.
    pub async fn destination_health_in(
        &self,
        tx: &mut Tx,
        destination_id: &str,
    ) -> Result<DestinationHealth, StoreError> {
        super::dialect::lock_destination_health(tx, destination_id).await?;
        let row: Option<DestinationHealth> = on_tx!(tx, c => sqlx::query_as(HEALTH_OF)
            .bind(destination_id).fetch_optional(c).await?);
        Ok(row.unwrap_or_else(|| DestinationHealth::healthy(destination_id)))
    }
}
