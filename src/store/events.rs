//! Events, their deliveries and activity, written together: one transaction per batch.

use super::args::Arg;
use super::multirow::{MultiRow, Rows, Statement, column_names, unnest_arrays};
use super::{StoreError, Tx, TxConn, on_pool, on_tx};
use crate::store::Store;
use crate::timeutil::Micros;

/// An event to store, with everything committed alongside it.
#[derive(Debug, Clone)]
pub struct EventWrite {
    pub event: NewEvent,
    pub deliveries: Vec<NewDelivery>,
    pub activities: Vec<NewActivity>,
}

#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: String,
    pub project_id: String,
    pub source_id: Option<String>,
    pub event_type: String,
    pub body: Vec<u8>,
    pub content_type: String,
    /// JSON of the inbound request; `None` for published events.
    pub request: Option<String>,
    /// `(scope, key, expire_time)`: a live key makes this write a duplicate of the first.
    pub idempotency: Option<(String, String, Micros)>,
    pub idempotency_key: Option<String>,
    /// JSON object of labels.
    pub labels: String,
    pub occur_time: Option<Micros>,
    pub receive_time: Micros,
    pub deliver_time: Option<Micros>,
}

#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub id: String,
    pub subscription_id: String,
    pub destination_id: String,
    /// `None` holds the delivery (paused source) until it is released.
    pub next_attempt_time: Option<Micros>,
    /// Set when this node leases the delivery as it is stored, to send it from memory.
    pub lease_until: Option<Micros>,
    pub body: Option<Vec<u8>>,
    pub content_type: Option<String>,
    pub forward_headers: bool,
    pub replay_of: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewActivity {
    pub kind: &'static str,
    pub source_id: Option<String>,
    pub destination_id: Option<String>,
    pub event_type: Option<String>,
    /// The encoded feed item.
    pub payload: Vec<u8>,
}

impl NewActivity {
    /// The payload of an item that names one resource: `{"<key>":"<id>"}` (ids need no
    /// escaping, so no JSON value is built for it).
    pub fn id_payload(key: &str, id: &str) -> Vec<u8> {
        format!(r#"{{"{key}":"{id}"}}"#).into_bytes()
    }
}

/// A feed item to insert: its project, the activity, and its time.
pub(super) type NewFeedItem<'a> = (&'a str, &'a NewActivity, Micros);

/// What became of one write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    Stored,
    /// The idempotency key was taken by this earlier event; nothing was written.
    Duplicate {
        event_id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct EventRecord {
    pub id: String,
    pub project_id: String,
    pub source_id: Option<String>,
    #[sqlx(rename = "type")]
    pub event_type: String,
    pub body: Vec<u8>,
    pub content_type: String,
    pub request: Option<String>,
    pub idempotency_key: Option<String>,
    pub labels: String,
    pub occur_time: Option<i64>,
    pub receive_time: i64,
    pub deliver_time: Option<i64>,
}

/// Delivery counts of one event, by state.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct DeliveryCounts {
    pub event_id: String,
    pub total: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub pending: i64,
}

/// Filters of `list_events`; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub source_id: Option<String>,
    /// Types equal to this…
    pub type_exact: Option<String>,
    /// …or starting with this (e.g. `invoice.`). Both `None`: any type.
    pub type_prefix: Option<String>,
    pub start_time: Option<Micros>,
    pub end_time: Option<Micros>,
    /// Substring of the body.
    pub search: Option<Vec<u8>>,
}

/// Takes an idempotency key (`$1` project, `$2` scope, `$3` key, `$4` event, `$5` expiry), or
/// takes over an expired one (`$6` now); a live key leaves the row as it is: no row affected.
pub(super) const TAKE_IDEMPOTENCY_KEY: &str = "INSERT INTO idempotency_keys (project_id, scope, key, event_id, expire_time) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (project_id, scope, key) DO UPDATE SET event_id = $4, expire_time = $5 \
     WHERE idempotency_keys.expire_time <= $6";
/// The event holding a live idempotency key (`$1` project, `$2` scope, `$3` key).
pub(super) const IDEMPOTENT_EVENT: &str =
    "SELECT event_id FROM idempotency_keys WHERE project_id = $1 AND scope = $2 AND key = $3";
/// Reserves `$1` feed sequence numbers; returns the last.
pub(super) const ALLOCATE_FEED_SEQ: &str =
    "UPDATE feed_sequence SET last_seq = last_seq + $1 WHERE id = 1 RETURNING last_seq";

pub(super) static EVENTS: MultiRow = MultiRow::new(
    "events (id, project_id, source_id, type, body, content_type, request, idempotency_key, labels, \
     occur_time, receive_time, deliver_time)",
    12,
);
pub(super) static DELIVERIES: MultiRow = MultiRow::new(
    "deliveries (id, project_id, event_id, subscription_id, destination_id, state, next_attempt_time, \
     lease_until, body, content_type, forward_headers, replay_of, create_time, update_time)",
    14,
);
pub(super) static FEED: MultiRow =
    MultiRow::new("feed (seq, project_id, kind, time, source_id, destination_id, event_type, payload)", 8);

/// The rows of the stored events.
pub(super) fn event_rows<'a>(stored: &[&'a EventWrite]) -> Vec<[Arg<'a>; 12]> {
    stored.iter().map(|w| event_row(&w.event)).collect()
}

/// The rows of the stored events' deliveries.
pub(super) fn delivery_rows<'a>(stored: &[&'a EventWrite], now: Micros) -> Vec<[Arg<'a>; 14]> {
    stored.iter().flat_map(|w| w.deliveries.iter().map(move |d| delivery_row(&w.event, d, now))).collect()
}

/// A row of [`EVENTS`].
fn event_row(e: &NewEvent) -> [Arg<'_>; 12] {
    [
        (&e.id).into(),
        (&e.project_id).into(),
        (&e.source_id).into(),
        (&e.event_type).into(),
        e.body.as_slice().into(),
        (&e.content_type).into(),
        (&e.request).into(),
        (&e.idempotency_key).into(),
        (&e.labels).into(),
        e.occur_time.into(),
        e.receive_time.into(),
        e.deliver_time.into(),
    ]
}

/// A row of [`DELIVERIES`]: a new delivery of `e`, created at `now`.
fn delivery_row<'a>(e: &'a NewEvent, d: &'a NewDelivery, now: Micros) -> [Arg<'a>; 14] {
    [
        (&d.id).into(),
        (&e.project_id).into(),
        (&e.id).into(),
        (&d.subscription_id).into(),
        (&d.destination_id).into(),
        "PENDING".into(),
        d.next_attempt_time.into(),
        d.lease_until.into(),
        (&d.body).into(),
        (&d.content_type).into(),
        d.forward_headers.into(),
        (&d.replay_of).into(),
        now.into(),
        now.into(),
    ]
}

/// The rows of [`FEED`] for `items`, numbered from `first` on.
pub(super) fn feed_rows<'a>(first: i64, items: &[NewFeedItem<'a>]) -> Vec<[Arg<'a>; 8]> {
    (first..)
        .zip(items)
        .map(|(seq, (project, a, time))| {
            [
                seq.into(),
                (*project).into(),
                a.kind.into(),
                (*time).into(),
                (&a.source_id).into(),
                (&a.destination_id).into(),
                (&a.event_type).into(),
                a.payload.as_slice().into(),
            ]
        })
        .collect()
}

/// The writes of `batch` whose outcome is [`WriteOutcome::Stored`].
pub(super) fn stored<'a>(batch: &'a [EventWrite], outcomes: &[WriteOutcome]) -> Vec<&'a EventWrite> {
    batch.iter().zip(outcomes).filter(|(_, o)| **o == WriteOutcome::Stored).map(|(w, _)| w).collect()
}

/// The feed items of stored writes: their activities, at their events' receive time.
pub(super) fn feed_items<'a>(stored: &[&'a EventWrite]) -> Vec<NewFeedItem<'a>> {
    stored
        .iter()
        .flat_map(|w| w.activities.iter().map(move |a| (w.event.project_id.as_str(), a, w.event.receive_time)))
        .collect()
}

/// Inserts `rows` into `table` inside `tx`, a few multi-row statements at a time.
pub(super) async fn insert_rows<const N: usize>(
    tx: &mut Tx,
    table: &'static MultiRow,
    rows: &[[Arg<'_>; N]],
) -> Result<(), StoreError> {
    tx.run(&Statement::Rows(Rows::new(table, rows))).await
}

macro_rules! select_events {
    ($rest:literal) => {
        concat!(
            "SELECT id, project_id, source_id, type, body, content_type, request, idempotency_key, labels, ",
            "occur_time, receive_time, deliver_time FROM events ",
            $rest
        )
    };
}

impl Store {
    /// Writes a batch in one transaction: the group commit (`writer.rs`, which also retries the
    /// writes of a batch that failed as a whole one by one).
    pub async fn write_events(&self, batch: &[EventWrite], now: Micros) -> Result<Vec<WriteOutcome>, StoreError> {
        if let super::Pool::Postgres(pool) = &self.writes
            && batch.iter().all(|w| w.event.idempotency.is_none())
            && self.write_events_at_once(pool, batch, now).await?
        {
            return Ok(vec![WriteOutcome::Stored; batch.len()]);
        }
        let mut tx = self.begin().await?;
        let mut outcomes = Vec::with_capacity(batch.len());
        for w in batch {
            outcomes.push(self.claim_idempotency(&mut tx, &w.event, now).await?);
        }
        let stored = stored(batch, &outcomes);
        self.insert_events(&mut tx, &stored, now).await?;
        self.append_feed_items(&mut tx, &feed_items(&stored)).await?;
        tx.commit().await?;
        Ok(outcomes)
    }

    /// PostgreSQL, a batch with no idempotency key (nothing to look up before writing): the
    /// events, their deliveries and their feed items in one statement, committed on its own;
    /// `false` (nothing written) when the batch has no feed items to number.
    ///
    /// In a transaction those are six round trips to the server (`BEGIN`, three inserts, the
    /// feed's sequence, `COMMIT`), each a wake-up of the server's process and then of the writer's
    /// thread, on a machine whose cores are busy answering HTTP; the batch's latency is what
    /// bounds ingest there. One statement keeps what the transaction guaranteed: all rows or none,
    /// and the sequence row locked until the commit, so feed order is commit order. The foreign
    /// keys of the deliveries are checked at the statement's end, when its events exist.
    async fn write_events_at_once(
        &self,
        pool: &sqlx::PgPool,
        batch: &[EventWrite],
        now: Micros,
    ) -> Result<bool, StoreError> {
        static WITH_DELIVERIES: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        static WITHOUT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let stored: Vec<&EventWrite> = batch.iter().collect();
        let events = event_rows(&stored);
        let deliveries = delivery_rows(&stored, now);
        let items = feed_items(&stored);
        // Numbered from 1; the statement adds what comes before them.
        let feed = feed_rows(1, &items);
        let (Some((_, events)), Some((_, feed))) =
            (Rows::new(&EVENTS, &events).columns(), Rows::new(&FEED, &feed).columns())
        else {
            return Ok(false);
        };
        let deliveries = Rows::new(&DELIVERIES, &deliveries).columns().map(|(_, c)| c);
        let cache = if deliveries.is_some() { &WITH_DELIVERIES } else { &WITHOUT };
        let sql = cache.get_or_init(|| {
            let next = &mut 1;
            let events_from = unnest_arrays(&events, next);
            let feed_from = unnest_arrays(&feed, next);
            let deliveries = deliveries.as_deref().map_or(String::new(), |d| {
                format!(", deliveries AS (INSERT INTO {} SELECT * FROM {})", DELIVERIES.head(), unnest_arrays(d, next))
            });
            let count = *next;
            format!(
                "WITH {reserve}, \
                 events AS (INSERT INTO {events_head} SELECT * FROM {events_from}){deliveries} \
                 INSERT INTO {feed_head} SELECT seq.last_seq - ${count} + v.column1, {rest} FROM seq, {feed_from} AS v({names})",
                reserve = super::dialect::reserve_feed_seq(count, count + 1),
                events_head = EVENTS.head(),
                feed_head = FEED.head(),
                rest = (2..=feed.len()).map(|i| format!("v.column{i}")).collect::<Vec<_>>().join(", "),
                names = column_names(feed.len()),
            )
        });
        let mut q = sqlx::query(sql.as_str());
        for column in events.into_iter().chain(feed).chain(deliveries.into_iter().flatten()) {
            q = column.bind(q);
        }
        q.bind(items.len() as i64).bind(&*self.node).execute(pool).await?;
        self.feed.notify();
        Ok(true)
    }

    /// Takes the event's idempotency key, unless a live one holds it.
    async fn claim_idempotency(&self, tx: &mut Tx, e: &NewEvent, now: Micros) -> Result<WriteOutcome, StoreError> {
        let Some((scope, key, expire)) = &e.idempotency else { return Ok(WriteOutcome::Stored) };
        // Insert, or take over an expired key; a live key leaves the row as it is.
        let taken = on_tx!(tx, c => sqlx::query(TAKE_IDEMPOTENCY_KEY)
            .bind(&e.project_id).bind(scope).bind(key).bind(&e.id).bind(expire).bind(now)
            .execute(c).await?.rows_affected());
        if taken == 1 {
            return Ok(WriteOutcome::Stored);
        }
        let first: (String,) = on_tx!(tx, c => sqlx::query_as(IDEMPOTENT_EVENT)
            .bind(&e.project_id).bind(scope).bind(key).fetch_one(c).await?);
        Ok(WriteOutcome::Duplicate { event_id: first.0 })
    }

    /// Inserts the events, then their deliveries: a few multi-row statements per batch.
    async fn insert_events(&self, tx: &mut Tx, stored: &[&EventWrite], now: Micros) -> Result<(), StoreError> {
        insert_rows(tx, &EVENTS, &event_rows(stored)).await?;
        insert_rows(tx, &DELIVERIES, &delivery_rows(stored, now)).await
    }

    /// Appends activity of one project to the feed, inside `tx`.
    pub async fn append_feed(
        &self,
        tx: &mut Tx,
        project: &str,
        activities: &[NewActivity],
        time: Micros,
    ) -> Result<(), StoreError> {
        let items: Vec<NewFeedItem<'_>> = activities.iter().map(|a| (project, a, time)).collect();
        self.append_feed_items(tx, &items).await
    }

    /// Appends feed items (of any projects), numbered in order, inside `tx`.
    pub(super) async fn append_feed_items(&self, tx: &mut Tx, items: &[NewFeedItem<'_>]) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        let first = self.allocate_feed_seq(tx, items.len() as i64).await?;
        self.insert_feed(tx, first, items).await
    }

    /// Releases the deliveries held for a paused source: due now.
    pub async fn release_held(&self, source_id: &str, now: Micros) -> Result<u64, StoreError> {
        Ok(on_pool!(&*self.writes().await, p => sqlx::query(
            "UPDATE deliveries SET next_attempt_time = $2, update_time = $2 WHERE state = 'PENDING' \
             AND next_attempt_time IS NULL AND event_id IN (SELECT id FROM events WHERE source_id = $1)")
            .bind(source_id).bind(now).execute(p).await?.rows_affected()))
    }

    /// Reserves `n` feed sequence numbers; returns the first. The counter row stays locked until
    /// the transaction ends, which is what makes sequence order commit order.
    async fn allocate_feed_seq(&self, tx: &mut Tx, n: i64) -> Result<i64, StoreError> {
        let sql = super::dialect::allocate_feed_seq(tx);
        let last: (i64,) = match &mut tx.conn {
            TxConn::Sqlite(c) => sqlx::query_as(sql).bind(n).fetch_one(&mut **c).await?,
            TxConn::Postgres(c) => sqlx::query_as(sql).bind(n).bind(&*self.node).fetch_one(&mut **c).await?,
        };
        tx.feed = Some(self.feed.clone());
        Ok(last.0 - n + 1)
    }

    /// Inserts feed items numbered from `first` on.
    async fn insert_feed(&self, tx: &mut Tx, first: i64, items: &[NewFeedItem<'_>]) -> Result<(), StoreError> {
        insert_rows(tx, &FEED, &feed_rows(first, items)).await
    }

    pub async fn get_event(&self, project: &str, id: &str) -> Result<EventRecord, StoreError> {
        let row: Option<EventRecord> = on_pool!(self.pool(), p => sqlx::query_as(select_events!("WHERE project_id = $1 AND id = $2"))
            .bind(project).bind(id).fetch_optional(p).await?);
        row.ok_or(StoreError::NotFound)
    }

    /// One page of events, newest first, before `before` (exclusive).
    pub async fn list_events(
        &self,
        project: &str,
        before: Option<&str>,
        limit: u32,
        f: &EventFilter,
    ) -> Result<Vec<EventRecord>, StoreError> {
        // `~` sorts after every id character, so it stands for "no upper bound".
        const SQL: &str = select_events!(
            "WHERE project_id = $1 AND id < $2 \
             AND (CAST($4 AS TEXT) IS NULL OR source_id = $4) \
             AND ((CAST($5 AS TEXT) IS NULL AND CAST($8 AS TEXT) IS NULL) OR type = $5 OR type LIKE $8 ESCAPE '\\') \
             AND (CAST($6 AS BIGINT) IS NULL OR receive_time >= $6) \
             AND (CAST($7 AS BIGINT) IS NULL OR receive_time < $7) \
             ORDER BY id DESC LIMIT $3"
        );
        let rows: Vec<EventRecord> = on_pool!(self.pool(), p => sqlx::query_as(SQL)
            .bind(project).bind(before.unwrap_or("~")).bind(i64::from(limit))
            .bind(&f.source_id).bind(&f.type_exact).bind(f.start_time).bind(f.end_time).bind(f.type_prefix.as_deref().map(like_prefix))
            .fetch_all(p).await?);
        Ok(match &f.search {
            // Body search filters after the fact: bodies are bytes, and a portable LIKE over
            // BLOB/BYTEA does not exist. The page may come back short; the token still advances.
            Some(needle) => rows
                .into_iter()
                .filter(|r| r.body.windows(needle.len().max(1)).any(|w| w == needle.as_slice()))
                .collect(),
            None => rows,
        })
    }

    /// Delivery counts of the given events.
    pub async fn delivery_counts(
        &self,
        project: &str,
        first: &str,
        last: &str,
    ) -> Result<Vec<DeliveryCounts>, StoreError> {
        const SQL: &str = "SELECT event_id, COUNT(*) AS total, \
             SUM(CASE WHEN state = 'SUCCEEDED' THEN 1 ELSE 0 END) AS succeeded, \
             SUM(CASE WHEN state = 'FAILED' THEN 1 ELSE 0 END) AS failed, \
             SUM(CASE WHEN state IN ('PENDING', 'RETRYING') THEN 1 ELSE 0 END) AS pending \
             FROM deliveries WHERE project_id = $1 AND event_id >= $2 AND event_id <= $3 GROUP BY event_id";
        Ok(on_pool!(self.pool(), p => sqlx::query_as(SQL).bind(project).bind(first).bind(last).fetch_all(p).await?))
    }
}

/// A LIKE pattern matching strings that start with `prefix` (`_` and `%` taken literally).
fn like_prefix(prefix: &str) -> String {
    let escaped = prefix.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("{escaped}%")
}
