//! Projects: the tenant boundary. Deleting one cascades to everything it owns (foreign keys).

use super::{StoreError, Tx, on_pool, on_tx};
use crate::ids::ProjectId;
use crate::store::Store;
use crate::timeutil::Micros;

/// A stored project; `spec` is the JSON of `domain::project::ProjectSpec`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProjectRecord {
    pub id: String,
    pub spec: String,
    pub create_time: i64,
    pub update_time: i64,
}

impl Store {
    pub async fn insert_project(&self, tx: &mut Tx, id: ProjectId, spec: &str, now: Micros) -> Result<(), StoreError> {
        on_tx!(tx, c => sqlx::query("INSERT INTO projects (id, spec, create_time, update_time) VALUES ($1, $2, $3, $3)")
            .bind(id.to_string()).bind(spec).bind(now).execute(c).await.map(|_| ())?);
        Ok(())
    }

    pub async fn get_project(&self, id: ProjectId) -> Result<ProjectRecord, StoreError> {
        let row: Option<ProjectRecord> = on_pool!(self.pool(), p => sqlx::query_as(
            "SELECT id, spec, create_time, update_time FROM projects WHERE id = $1")
            .bind(id.to_string()).fetch_optional(p).await?);
        row.ok_or(StoreError::NotFound)
    }

    pub async fn get_project_in(&self, tx: &mut Tx, id: ProjectId) -> Result<ProjectRecord, StoreError> {
        let row: Option<ProjectRecord> = on_tx!(tx, c => sqlx::query_as(
            "SELECT id, spec, create_time, update_time FROM projects WHERE id = $1")
            .bind(id.to_string()).fetch_optional(c).await?);
        row.ok_or(StoreError::NotFound)
    }

    /// Projects in id order after `after`; `only` restricts the page to one project (the caller's).
    pub async fn list_projects(
        &self,
        after: Option<&str>,
        limit: u32,
        only: Option<ProjectId>,
    ) -> Result<Vec<ProjectRecord>, StoreError> {
        let only = only.map(|p| p.to_string());
        Ok(on_pool!(self.pool(), p => sqlx::query_as(
            "SELECT id, spec, create_time, update_time FROM projects \
             WHERE id > $1 AND (CAST($2 AS TEXT) IS NULL OR id = $2) ORDER BY id LIMIT $3")
            .bind(after.unwrap_or("")).bind(&only).bind(i64::from(limit)).fetch_all(p).await?))
    }

    pub async fn update_project(&self, tx: &mut Tx, id: ProjectId, spec: &str, now: Micros) -> Result<(), StoreError> {
        let n = on_tx!(tx, c => sqlx::query("UPDATE projects SET spec = $2, update_time = $3 WHERE id = $1")
            .bind(id.to_string()).bind(spec).bind(now).execute(c).await?.rows_affected());
        if n == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }

    pub async fn delete_project(&self, tx: &mut Tx, id: ProjectId) -> Result<(), StoreError> {
        let id = id.to_string();
        // Subscriptions reference templates with RESTRICT; they go first so the cascade from the
        // project can remove the templates.
        on_tx!(tx, c => sqlx::query("DELETE FROM subscriptions WHERE project_id = $1").bind(&id).execute(c).await.map(|_| ())?);
        let n = on_tx!(tx, c => sqlx::query("DELETE FROM projects WHERE id = $1").bind(&id).execute(c).await?.rows_affected());
        if n == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }
}
