//! Configuration resources (sources, destinations, subscriptions, event types, templates) share
//! one shape: an id, the owning project, a JSON `spec`, and two times. This module stores any of
//! them; the resource modules only say which table and how their spec looks.

use std::fmt::Display;
use std::str::FromStr;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{StoreError, Tx, on_pool, on_tx};
use crate::ids::ProjectId;
use crate::store::Store;
use crate::timeutil::Micros;

/// The statements for one document table. Built by [`document_table!`] so that every statement
/// is a `&'static str` checked once, never formatted at run time.
pub struct Table {
    pub get: &'static str,
    pub list: &'static str,
    pub insert: &'static str,
    pub update: &'static str,
    pub delete: &'static str,
}

/// Statements for a document table. Every list statement takes the three optional filters of
/// [`DocumentFilter`] as `$4`–`$6` (a NULL parameter matches every row); a table states with
/// `filters` how it applies them, and the default accepts none. `refs` adds the
/// subscription-style reference columns to inserts and updates.
macro_rules! document_table {
    ($table:literal) => {
        $crate::store::document_table!($table, filters: " AND CAST($4 AS TEXT) IS NULL AND CAST($5 AS TEXT) IS NULL AND CAST($6 AS TEXT) IS NULL")
    };
    ($table:literal, filters: $filters:literal) => {
        $crate::store::Table {
            get: concat!("SELECT id, project_id, spec, create_time, update_time FROM ", $table,
                " WHERE project_id = $1 AND id = $2"),
            list: concat!("SELECT id, project_id, spec, create_time, update_time FROM ", $table,
                " WHERE project_id = $1 AND id > $2", $filters, " ORDER BY id LIMIT $3"),
            insert: concat!("INSERT INTO ", $table,
                " (id, project_id, spec, create_time, update_time) VALUES ($1, $2, $3, $4, $4)"),
            update: concat!("UPDATE ", $table, " SET spec = $3, update_time = $4 WHERE id = $1 AND project_id = $2"),
            delete: concat!("DELETE FROM ", $table, " WHERE project_id = $1 AND id = $2"),
        }
    };
    ($table:literal, filters: $filters:literal, refs) => {
        $crate::store::Table {
            insert: concat!("INSERT INTO ", $table,
                " (id, project_id, spec, create_time, update_time, destination_id, source_id, template_id)",
                " VALUES ($1, $2, $3, $4, $4, $5, $6, $7)"),
            update: concat!("UPDATE ", $table,
                " SET spec = $3, update_time = $4, destination_id = $5, source_id = $6, template_id = $7",
                " WHERE id = $1 AND project_id = $2"),
            ..$crate::store::document_table!($table, filters: $filters)
        }
    };
}
pub(crate) use document_table;

/// Ids of other resources a document points at, kept in columns so the database enforces them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct References {
    pub destination_id: Option<String>,
    pub source_id: Option<String>,
    pub template_id: Option<String>,
}

/// A configuration resource's settings, as stored.
pub trait Document: Serialize + DeserializeOwned + Send + Sync + Unpin + 'static {
    type Id: Display + FromStr + Clone + Send + Sync;
    const TABLE: Table;
    /// Whether `TABLE` has the reference columns (see [`References`]).
    const HAS_REFERENCES: bool = false;

    fn references(&self) -> References {
        References::default()
    }
}

/// A document with its identity and times.
#[derive(Debug, Clone)]
pub struct Stored<D: Document> {
    pub id: D::Id,
    pub project_id: ProjectId,
    pub spec: D,
    pub create_time: Micros,
    pub update_time: Micros,
}

/// Optional list filters; each table applies those that mean something for it.
#[derive(Debug, Default, Clone)]
pub struct DocumentFilter {
    pub destination_id: Option<String>,
    pub source_id: Option<String>,
    /// A destination state (`ACTIVE`, `PAUSED`, `DISABLED`).
    pub state: Option<String>,
}

#[derive(sqlx::FromRow, Clone)]
pub(super) struct DocumentRow {
    pub(super) id: String,
    pub(super) project_id: String,
    spec: String,
    create_time: i64,
    update_time: i64,
}

impl DocumentRow {
    /// The row from the first five columns of a rusqlite row, in the order of the struct.
    pub(super) fn from_columns(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: r.get(0)?,
            project_id: r.get(1)?,
            spec: r.get(2)?,
            create_time: r.get(3)?,
            update_time: r.get(4)?,
        })
    }

    pub(super) fn decode<D: Document>(self) -> Result<Stored<D>, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("{what} of a stored {}", std::any::type_name::<D>()));
        Ok(Stored {
            id: self.id.parse().map_err(|_| corrupt("id"))?,
            project_id: self.project_id.parse().map_err(|_| corrupt("project id"))?,
            spec: serde_json::from_str(&self.spec)?,
            create_time: self.create_time,
            update_time: self.update_time,
        })
    }
}

impl Store {
    pub async fn get_document<D: Document>(&self, project: ProjectId, id: &D::Id) -> Result<Stored<D>, StoreError> {
        let (project, id) = (project.to_string(), id.to_string());
        let row: Option<DocumentRow> = on_pool!(self.pool(), p => sqlx::query_as(D::TABLE.get)
            .bind(&project).bind(&id).fetch_optional(p).await?);
        row.ok_or(StoreError::NotFound)?.decode()
    }

    /// One page in id (creation) order, starting after `after` (exclusive).
    pub async fn list_documents<D: Document>(
        &self,
        project: ProjectId,
        after: Option<&str>,
        limit: u32,
        filter: &DocumentFilter,
    ) -> Result<Vec<Stored<D>>, StoreError> {
        let project = project.to_string();
        let after = after.unwrap_or("");
        let rows: Vec<DocumentRow> = on_pool!(self.pool(), p => sqlx::query_as(D::TABLE.list)
            .bind(&project).bind(after).bind(i64::from(limit))
            .bind(&filter.destination_id).bind(&filter.source_id).bind(&filter.state)
            .fetch_all(p).await?);
        rows.into_iter().map(DocumentRow::decode).collect()
    }

    pub async fn insert_document<D: Document>(&self, tx: &mut Tx, doc: &Stored<D>) -> Result<(), StoreError> {
        self.write_document(tx, D::TABLE.insert, doc, doc.create_time).await
    }

    /// Replaces the spec; `NotFound` when the document does not exist in that project.
    pub async fn update_document<D: Document>(&self, tx: &mut Tx, doc: &Stored<D>) -> Result<(), StoreError> {
        self.write_document(tx, D::TABLE.update, doc, doc.update_time).await
    }

    async fn write_document<D: Document>(
        &self,
        tx: &mut Tx,
        sql: &'static str,
        doc: &Stored<D>,
        time: Micros,
    ) -> Result<(), StoreError> {
        let (id, project, spec) = (doc.id.to_string(), doc.project_id.to_string(), serde_json::to_string(&doc.spec)?);
        let done = if D::HAS_REFERENCES {
            let r = doc.spec.references();
            on_tx!(tx, c => sqlx::query(sql).bind(&id).bind(&project).bind(&spec).bind(time)
                .bind(&r.destination_id).bind(&r.source_id).bind(&r.template_id)
                .execute(c).await?.rows_affected())
        } else {
            on_tx!(tx, c => sqlx::query(sql).bind(&id).bind(&project).bind(&spec).bind(time)
                .execute(c).await?.rows_affected())
        };
        if done == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }

    /// Deletes; `NotFound` when absent, `Reference` when something still depends on it.
    pub async fn delete_document<D: Document>(
        &self,
        tx: &mut Tx,
        project: ProjectId,
        id: &D::Id,
    ) -> Result<(), StoreError> {
        let (project, id) = (project.to_string(), id.to_string());
        let done =
            on_tx!(tx, c => sqlx::query(D::TABLE.delete).bind(&project).bind(&id).execute(c).await?.rows_affected());
        if done == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }

    /// A source by id alone: ingest knows the source, not yet its project.
    pub async fn source_by_id(&self, id: &str) -> Result<Stored<crate::domain::source::SourceSpec>, StoreError> {
        let row: Option<DocumentRow> = on_pool!(self.pool(), p => sqlx::query_as(
            "SELECT id, project_id, spec, create_time, update_time FROM sources WHERE id = $1")
            .bind(id).fetch_optional(p).await?);
        row.ok_or(StoreError::NotFound)?.decode()
    }

    /// Reads inside a write transaction, so a check and the write that depends on it agree.
    pub async fn get_document_in<D: Document>(
        &self,
        tx: &mut Tx,
        project: ProjectId,
        id: &D::Id,
    ) -> Result<Stored<D>, StoreError> {
        let (project, id) = (project.to_string(), id.to_string());
        let row: Option<DocumentRow> = on_tx!(tx, c => sqlx::query_as(D::TABLE.get)
            .bind(&project).bind(&id).fetch_optional(c).await?);
        row.ok_or(StoreError::NotFound)?.decode()
    }
}
