//! API keys. Only a SHA-256 hash of the secret and a display prefix are stored.

use super::{StoreError, Tx, on_pool, on_tx};
use crate::store::Store;
use crate::timeutil::Micros;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiKeyRecord {
    pub id: String,
    pub project_id: Option<String>,
    pub name: String,
    pub role: String,
    pub prefix: String,
    pub create_time: i64,
    pub update_time: i64,
    pub last_used_time: Option<i64>,
    pub expire_time: Option<i64>,
    pub revoke_time: Option<i64>,
}

/// What creating a key stores.
#[derive(Debug, Clone)]
pub struct NewApiKey<'a> {
    pub id: &'a str,
    pub project_id: Option<&'a str>,
    pub name: &'a str,
    pub role: &'a str,
    pub prefix: &'a str,
    pub key_hash: &'a str,
    pub expire_time: Option<Micros>,
    pub now: Micros,
}

/// A `SELECT` of every [`ApiKeyRecord`] column, followed by the rest of the statement.
macro_rules! select_keys {
    ($rest:literal) => {
        concat!(
            "SELECT id, project_id, name, role, prefix, create_time, update_time, last_used_time, expire_time, revoke_time FROM api_keys ",
            $rest
        )
    };
}

impl Store {
    pub async fn insert_api_key(&self, tx: &mut Tx, k: &NewApiKey<'_>) -> Result<(), StoreError> {
        on_tx!(tx, c => sqlx::query(
            "INSERT INTO api_keys (id, project_id, name, role, prefix, key_hash, create_time, update_time, expire_time) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8)")
            .bind(k.id).bind(k.project_id).bind(k.name).bind(k.role).bind(k.prefix).bind(k.key_hash)
            .bind(k.now).bind(k.expire_time).execute(c).await.map(|_| ())?);
        Ok(())
    }

    /// Inserts the bootstrap key only while no key exists at all, so that several nodes starting
    /// together on one empty database create one admin key between them.
    pub async fn insert_first_api_key(&self, k: &NewApiKey<'_>) -> Result<bool, StoreError> {
        let n = on_pool!(&*self.writes().await, p => sqlx::query(
            "INSERT INTO api_keys (id, project_id, name, role, prefix, key_hash, create_time, update_time, expire_time) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $7, $8 WHERE NOT EXISTS (SELECT 1 FROM api_keys)")
            .bind(k.id).bind(k.project_id).bind(k.name).bind(k.role).bind(k.prefix).bind(k.key_hash)
            .bind(k.now).bind(k.expire_time).execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    pub async fn api_key_by_hash(&self, key_hash: &str) -> Result<ApiKeyRecord, StoreError> {
        const SQL: &str = select_keys!("WHERE key_hash = $1");
        let row: Option<ApiKeyRecord> =
            on_pool!(self.pool(), p => sqlx::query_as(SQL).bind(key_hash).fetch_optional(p).await?);
        row.ok_or(StoreError::NotFound)
    }

    /// A key by id; with `project`, only if it belongs to that project.
    pub async fn get_api_key(&self, id: &str, project: Option<&str>) -> Result<ApiKeyRecord, StoreError> {
        const SQL: &str = select_keys!("WHERE id = $1 AND (CAST($2 AS TEXT) IS NULL OR project_id = $2)");
        let row: Option<ApiKeyRecord> =
            on_pool!(self.pool(), p => sqlx::query_as(SQL).bind(id).bind(project).fetch_optional(p).await?);
        row.ok_or(StoreError::NotFound)
    }

    pub async fn list_api_keys(
        &self,
        project: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ApiKeyRecord>, StoreError> {
        const SQL: &str =
            select_keys!("WHERE id > $1 AND (CAST($2 AS TEXT) IS NULL OR project_id = $2) ORDER BY id LIMIT $3");
        Ok(
            on_pool!(self.pool(), p => sqlx::query_as(SQL).bind(after.unwrap_or("")).bind(project).bind(i64::from(limit)).fetch_all(p).await?),
        )
    }

    pub async fn rename_api_key(
        &self,
        id: &str,
        project: Option<&str>,
        name: &str,
        now: Micros,
    ) -> Result<(), StoreError> {
        let n = on_pool!(&*self.writes().await, p => sqlx::query(
            "UPDATE api_keys SET name = $3, update_time = $4 WHERE id = $1 AND (CAST($2 AS TEXT) IS NULL OR project_id = $2)")
            .bind(id).bind(project).bind(name).bind(now).execute(p).await?.rows_affected());
        if n == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }

    /// Sets the revoke time once; revoking again keeps the first time.
    pub async fn revoke_api_key(&self, id: &str, project: Option<&str>, now: Micros) -> Result<(), StoreError> {
        let n = on_pool!(&*self.writes().await, p => sqlx::query(
            "UPDATE api_keys SET revoke_time = COALESCE(revoke_time, $3), update_time = $3 \
             WHERE id = $1 AND (CAST($2 AS TEXT) IS NULL OR project_id = $2)")
            .bind(id).bind(project).bind(now).execute(p).await?.rows_affected());
        if n == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }

    pub async fn delete_api_key(&self, id: &str, project: Option<&str>) -> Result<(), StoreError> {
        let n = on_pool!(&*self.writes().await, p => sqlx::query(
            "DELETE FROM api_keys WHERE id = $1 AND (CAST($2 AS TEXT) IS NULL OR project_id = $2)")
            .bind(id).bind(project).execute(p).await?.rows_affected());
        if n == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }

    /// Records use; callers throttle this so a busy key does not write on every request.
    pub async fn touch_api_key(&self, id: &str, now: Micros) -> Result<(), StoreError> {
        on_pool!(&*self.writes().await, p => sqlx::query("UPDATE api_keys SET last_used_time = $2 WHERE id = $1")
            .bind(id).bind(now).execute(p).await.map(|_| ())?);
        Ok(())
    }
}
