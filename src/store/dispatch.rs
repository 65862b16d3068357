//! What the dispatcher reads and writes: claiming due deliveries under a lease, loading what a
//! send needs, and recording an attempt's result with everything it changes, in one transaction.

use super::args::Arg;
use super::events::NewFeedItem;
use super::multirow::{MultiRow, Rows, Statement};
use super::{DestinationHealth, NewActivity, PointReaders, StoreError, dialect, on_pool};
use crate::domain::breaker;
use crate::store::Store;
use crate::timeutil::Micros;

/// A delivery leased by a claim.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Claimed {
    pub id: String,
    pub destination_id: String,
}

/// A claimed delivery with its event: everything needed to build the request.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DueDelivery {
    pub id: String,
    pub project_id: String,
    pub event_id: String,
    pub subscription_id: String,
    pub destination_id: String,
    pub attempt_count: i64,
    pub lease_until: i64,
    /// The transformed body, when a template reshaped the event.
    pub body: Option<Vec<u8>>,
    pub content_type: Option<String>,
    pub forward_headers: bool,
    pub event_type: String,
    pub event_source_id: Option<String>,
    pub event_body: Vec<u8>,
    pub event_content_type: String,
    pub event_request: Option<String>,
    pub receive_time: i64,
}

/// One finished attempt and what it changes.
#[derive(Debug, Clone)]
pub struct AttemptResult {
    pub attempt: NewAttempt,
    /// The delivery's state afterwards: `SUCCEEDED`, `RETRYING` or `FAILED`.
    pub state: &'static str,
    pub next_attempt_time: Option<Micros>,
    pub error_summary: String,
    pub health: HealthChange,
    pub activities: Vec<NewActivity>,
}

#[derive(Debug, Clone)]
pub struct NewAttempt {
    pub id: String,
    pub project_id: String,
    pub delivery_id: String,
    pub event_id: String,
    pub destination_id: String,
    pub number: i64,
    pub outcome: &'static str,
    pub status_code: Option<i64>,
    pub error_kind: Option<&'static str>,
    pub error_message: Option<String>,
    /// JSON: url, method, headers, body size. The body is not stored again: it is the
    /// delivery's (`sent_body!`).
    pub request: String,
    /// JSON list of [name, value].
    pub response_headers: String,
    pub response_body: Vec<u8>,
    pub response_truncated: bool,
    pub start_time: Micros,
    pub duration_us: i64,
}

/// How an attempt moves its destination's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthChange {
    /// A test send (`TestDestination`): the destination's health is left as it is.
    Unchanged,
    Succeeded,
    /// Counted by the breaker; failing for `disable_after` disables the destination.
    Failed {
        disable_after: std::time::Duration,
    },
    /// `410 Gone`: the destination is disabled, with this reason.
    Disable(String),
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AttemptRow {
    pub id: String,
    pub project_id: String,
    pub delivery_id: String,
    pub event_id: String,
    pub destination_id: String,
    pub number: i64,
    pub outcome: String,
    pub status_code: Option<i64>,
    pub error_kind: Option<String>,
    pub error_message: Option<String>,
    pub request: String,
    pub request_body: Vec<u8>,
    pub response_headers: String,
    pub response_body: Vec<u8>,
    pub response_truncated: bool,
    pub start_time: i64,
    pub duration_us: i64,
}

/// The order of `list_attempts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOrder {
    Newest,
    Oldest,
    /// Longest first.
    Duration,
    /// Highest status first; attempts without one (network errors) before all.
    StatusCode,
}

/// Filters of `list_attempts`.
#[derive(Debug, Clone, Default)]
pub struct AttemptFilter {
    pub delivery_id: Option<String>,
    pub event_id: Option<String>,
    pub destination_id: Option<String>,
    pub outcome: Option<String>,
    pub start_time: Option<Micros>,
    pub end_time: Option<Micros>,
}

/// The body an attempt sent, as far as the attempt log keeps it (its first 64 KiB, the cut the
/// response body gets too): the delivery's own body (a template's output) or else its event's —
/// exactly what was signed and sent, which never changes after the delivery is created.
/// Attempts store none themselves (their `request_body` is empty; rows written before hold
/// their copy, which is used as it is): under load a second copy of every body was a
/// twentieth of the end-to-end throughput and, with retries, most of the attempt log's size.
/// Attempts go with their event and delivery (foreign keys), so the body is there as long as
/// the attempt is. Whether anything was sent at all is the request's `body_size`.
macro_rules! sent_body {
    () => {
        "CASE WHEN length(request_body) > 0 THEN request_body ELSE COALESCE((SELECT substr(COALESCE(d.body, e.body), 1, 65536) \
         FROM deliveries d JOIN events e ON e.id = d.event_id WHERE d.id = attempts.delivery_id), request_body) END"
    };
}
/// An attempt's columns with `$body` for its request body, then `$rest`.
macro_rules! select_attempts {
    (body: $body:expr, $($rest:literal),+) => {
        concat!(
            "SELECT id, project_id, delivery_id, event_id, destination_id, number, outcome, status_code, error_kind, ",
            "error_message, request, ", $body, " AS request_body, response_headers, response_body, response_truncated, ",
            "start_time, duration_us FROM attempts ",
            $($rest),+
        )
    };
}

impl Store {
    /// Leases due deliveries until `lease_until`, at most `limit`: the head of each ORDERED
    /// destination with nothing in flight, then UNORDERED destinations' deliveries round-robin,
    /// each destination up to its cap (`caps`, else `default_cap`). See [`dialect`].
    pub async fn claim_due(
        &self,
        now: Micros,
        lease_until: Micros,
        limit: u32,
        caps: &[(String, u32)],
        default_cap: u32,
    ) -> Result<Vec<Claimed>, StoreError> {
        let backend = self.backend();
        let caps_json = serde_json::Value::Object(caps.iter().map(|(d, n)| (d.clone(), (*n).into())).collect());
        let caps_json = caps_json.to_string();
        let per_destination = caps.iter().map(|c| c.1).chain([default_cap]).max().unwrap_or(0).min(limit);
        let unordered = dialect::claim_unordered(backend);
        let ordered = dialect::claim_ordered(backend);
        let mut claimed: Vec<Claimed>;
        match &self.writes {
            super::Pool::Sqlite(_) => {
                // Exclusive: it runs under the write lock.
                let claim = move |tx: &mut super::direct::Tx<'_>| {
                    let mut claimed = tx.pairs(ordered, &[lease_until.into(), now.into()])?;
                    let room = limit.saturating_sub(claimed.len() as u32);
                    if room > 0 {
                        let args = [
                            lease_until.into(),
                            now.into(),
                            i64::from(room).into(),
                            caps_json.as_str().into(),
                            i64::from(default_cap).into(),
                            i64::from(per_destination).into(),
                        ];
                        claimed.extend(tx.pairs(unordered, &args)?);
                    }
                    Ok(claimed)
                };
                let pairs = self.on_direct(move |d| d.write(claim)).await.expect("SQLite writes directly")?;
                claimed = pairs.into_iter().map(|(id, destination_id)| Claimed { id, destination_id }).collect();
            }
            super::Pool::Postgres(p) => {
                let mut tx = p.begin().await?;
                let locked: Vec<(String,)> = sqlx::query_as(dialect::LOCK_ORDERED).fetch_all(&mut *tx).await?;
                let locked: Vec<String> = locked.into_iter().map(|r| r.0).collect();
                claimed = if locked.is_empty() {
                    Vec::new()
                } else {
                    sqlx::query_as(ordered).bind(lease_until).bind(now).bind(&locked).fetch_all(&mut *tx).await?
                };
                let room = limit.saturating_sub(claimed.len() as u32);
                if room > 0 {
                    let more: Vec<Claimed> = sqlx::query_as(unordered)
                        .bind(lease_until)
                        .bind(now)
                        .bind(i64::from(room))
                        .bind(&caps_json)
                        .bind(i64::from(default_cap))
                        .bind(i64::from(per_destination))
                        .fetch_all(&mut *tx)
                        .await?;
                    claimed.extend(more);
                }
                tx.commit().await?;
            }
        }
        Ok(claimed)
    }

    /// A claimed delivery with its event; `NotFound` once it is no longer leased.
    pub async fn due_delivery(&self, id: &str) -> Result<DueDelivery, StoreError> {
        self.delivery_with_event(id, true).await
    }

    /// A delivery with its event; with `leased`, only while it holds a lease.
    pub async fn delivery_with_event(&self, id: &str, leased: bool) -> Result<DueDelivery, StoreError> {
        const SQL: &str = "SELECT d.id, d.project_id, d.event_id, d.subscription_id, d.destination_id, d.attempt_count, \
             COALESCE(d.lease_until, 0) AS lease_until, d.body, d.content_type, d.forward_headers, e.type AS event_type, \
             e.source_id AS event_source_id, e.body AS event_body, e.content_type AS event_content_type, e.request AS event_request, e.receive_time \
             FROM deliveries d JOIN events e ON e.id = d.event_id WHERE d.id = $1 AND (d.lease_until IS NOT NULL OR NOT $2)";
        let row: Option<DueDelivery> = match self.readers() {
            PointReaders::Sqlite(r) => r.row(SQL, &[id.into(), leased.into()], |r| {
                Ok(DueDelivery {
                    id: r.get(0)?,
                    project_id: r.get(1)?,
                    event_id: r.get(2)?,
                    subscription_id: r.get(3)?,
                    destination_id: r.get(4)?,
                    attempt_count: r.get(5)?,
                    lease_until: r.get(6)?,
                    body: r.get(7)?,
                    content_type: r.get(8)?,
                    forward_headers: r.get(9)?,
                    event_type: r.get(10)?,
                    event_source_id: r.get(11)?,
                    event_body: r.get(12)?,
                    event_content_type: r.get(13)?,
                    event_request: r.get(14)?,
                    receive_time: r.get(15)?,
                })
            })?,
            PointReaders::Postgres(r) => r.fetch_optional(|| sqlx::query_as(SQL).bind(id).bind(leased)).await?,
        };
        row.ok_or(StoreError::NotFound)
    }

    /// Moves a lease we hold (`held`) to `until`; false when it is no longer ours.
    pub async fn extend_lease(&self, id: &str, held: Micros, until: Micros) -> Result<bool, StoreError> {
        let n = on_pool!(&*self.writes().await, p => sqlx::query(
            "UPDATE deliveries SET lease_until = $3 WHERE id = $1 AND lease_until = $2 AND next_attempt_time IS NOT NULL")
            .bind(id).bind(held).bind(until).execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    /// Puts a delivery we hold (`held`) back in the queue, due at `until`, without an attempt
    /// (its retries are not spent): how an open circuit holds deliveries. `false` when the lease
    /// is no longer ours.
    pub async fn defer(&self, id: &str, held: Micros, until: Micros) -> Result<bool, StoreError> {
        let n = on_pool!(&*self.writes().await, p => sqlx::query(
            "UPDATE deliveries SET next_attempt_time = $3, lease_until = NULL \
             WHERE id = $1 AND lease_until = $2 AND next_attempt_time IS NOT NULL")
            .bind(id).bind(held).bind(until).execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    /// Gives a lease back without an attempt (the destination went away or stopped).
    pub async fn release_lease(&self, id: &str, held: Micros) -> Result<(), StoreError> {
        on_pool!(&*self.writes().await, p => sqlx::query("UPDATE deliveries SET lease_until = NULL WHERE id = $1 AND lease_until = $2")
            .bind(id).bind(held).execute(p).await.map(|_| ())?);
        Ok(())
    }

    /// Records attempts: for each, the attempt row, the delivery's new state, the destination's
    /// health and the feed items, together; a batch in one transaction (the dispatcher's group
    /// commit, `writer.rs`). Returns what the breaker decided for each.
    pub async fn record_attempts(
        &self,
        batch: &[AttemptResult],
        now: Micros,
    ) -> Result<Vec<breaker::Transition>, StoreError> {
        let mut tx = self.begin().await?;
        let mut current = Vec::new();
        for id in AttemptWrites::to_read(batch) {
            current.push(self.destination_health_in(&mut tx, id).await?);
        }
        let writes = AttemptWrites::decide(batch, current, now);
        for statement in writes.statements() {
            tx.run(&statement).await?;
        }
        self.append_feed_items(&mut tx, &writes.feed_items()).await?;
        tx.commit().await?;
        Ok(writes.outcomes)
    }

    pub async fn get_attempt(&self, project: &str, id: &str) -> Result<AttemptRow, StoreError> {
        let row: Option<AttemptRow> = on_pool!(self.pool(), p => sqlx::query_as(select_attempts!(body: sent_body!(), "WHERE project_id = $1 AND id = $2"))
            .bind(project).bind(id).fetch_optional(p).await?);
        row.ok_or(StoreError::NotFound)
    }

    /// One page of attempts in `order`, after the position `after` of the previous page.
    pub async fn list_attempts(
        &self,
        project: &str,
        order: AttemptOrder,
        after: Option<(i64, &str)>,
        limit: u32,
        f: &AttemptFilter,
    ) -> Result<Vec<AttemptRow>, StoreError> {
        macro_rules! list {
            ($position:literal, $order:literal) => {
                // Lists leave bodies out.
                select_attempts!(
                    body: "substr(request_body, 1, 0)",
                    "WHERE project_id = $1 \
                     AND (CAST($4 AS TEXT) IS NULL OR delivery_id = $4) \
                     AND (CAST($5 AS TEXT) IS NULL OR event_id = $5) \
                     AND (CAST($6 AS TEXT) IS NULL OR destination_id = $6) \
                     AND (CAST($7 AS TEXT) IS NULL OR outcome = $7) \
                     AND (CAST($8 AS BIGINT) IS NULL OR start_time >= $8) \
                     AND (CAST($9 AS BIGINT) IS NULL OR start_time < $9) AND ",
                    $position,
                    " ORDER BY ",
                    $order,
                    " LIMIT $3"
                )
            };
        }
        // Keyset positions: `$10` is the sort key and `$2` the id of the last row seen; ids
        // break ties, so no row repeats or goes missing across pages.
        let (sql, key, id): (&'static str, i64, &str) = match (order, after) {
            (AttemptOrder::Newest, a) => {
                (list!("id < $2 AND CAST($10 AS BIGINT) IS NOT NULL", "id DESC"), 0, a.map_or("~", |a| a.1))
            }
            (AttemptOrder::Oldest, a) => {
                (list!("id > $2 AND CAST($10 AS BIGINT) IS NOT NULL", "id ASC"), 0, a.map_or("", |a| a.1))
            }
            (AttemptOrder::Duration, a) => {
                let (k, i) = a.unwrap_or((i64::MAX, "~"));
                (list!("(duration_us, id) < ($10, $2)", "duration_us DESC, id DESC"), k, i)
            }
            (AttemptOrder::StatusCode, a) => {
                let (k, i) = a.unwrap_or((i64::MAX, "~"));
                (
                    list!("(COALESCE(status_code, 1000), id) < ($10, $2)", "COALESCE(status_code, 1000) DESC, id DESC"),
                    k,
                    i,
                )
            }
        };
        Ok(on_pool!(self.pool(), p => sqlx::query_as(sql)
            .bind(project).bind(id).bind(i64::from(limit))
            .bind(&f.delivery_id).bind(&f.event_id).bind(&f.destination_id).bind(&f.outcome).bind(f.start_time).bind(f.end_time)
            .bind(key)
            .fetch_all(p).await?))
    }

    /// Makes a delivery due now; `NotFound` when absent, `AlreadyExists` while an attempt is in
    /// flight (it holds a live lease).
    pub async fn retry_delivery(&self, project: &str, id: &str, now: Micros) -> Result<(), StoreError> {
        let n = on_pool!(&*self.writes().await, p => sqlx::query(
            "UPDATE deliveries SET next_attempt_time = $3, lease_until = NULL, update_time = $3, \
             state = CASE WHEN attempt_count > 0 THEN 'RETRYING' ELSE 'PENDING' END \
             WHERE project_id = $1 AND id = $2 AND NOT (lease_until IS NOT NULL AND lease_until > $3 AND next_attempt_time IS NOT NULL)")
            .bind(project).bind(id).bind(now).execute(p).await?.rows_affected());
        if n == 1 {
            return Ok(());
        }
        self.get_delivery(project, id).await?;
        Err(StoreError::AlreadyExists)
    }

    /// Cancels a pending or retrying delivery; `AlreadyExists` when it has finished already.
    pub async fn cancel_delivery(&self, project: &str, id: &str, now: Micros) -> Result<(), StoreError> {
        let n = on_pool!(&*self.writes().await, p => sqlx::query(
            // The lease stays: an attempt may still be in flight, and an ORDERED destination's next
            // delivery waits for it.
            "UPDATE deliveries SET state = 'CANCELLED', next_attempt_time = NULL, update_time = $3 \
             WHERE project_id = $1 AND id = $2 AND state IN ('PENDING', 'RETRYING')")
            .bind(project).bind(id).bind(now).execute(p).await?.rows_affected());
        if n == 1 {
            return Ok(());
        }
        self.get_delivery(project, id).await?;
        Err(StoreError::AlreadyExists)
    }
}

/// Attempt rows.
pub(super) static ATTEMPTS: MultiRow = MultiRow::new(
    "attempts (id, project_id, delivery_id, event_id, destination_id, number, outcome, status_code, \
     error_kind, error_message, request, request_body, response_headers, response_body, response_truncated, \
     start_time, duration_us)",
    17,
);
/// Each delivery's state after its attempt (`column1` id, then state, attempt count, next attempt
/// time, status code, error, update time). A delivery cancelled while its attempt was in flight
/// stays cancelled (and, for an ORDERED destination, its lease release lets the next one go).
pub(super) static FINISH_DELIVERIES: MultiRow = MultiRow::update(
    "UPDATE deliveries SET state = CASE WHEN deliveries.state = 'CANCELLED' THEN deliveries.state ELSE v.column2 END, \
     attempt_count = v.column3, \
     next_attempt_time = CASE WHEN deliveries.state = 'CANCELLED' THEN NULL ELSE v.column4 END, lease_until = NULL, \
     last_status_code = v.column5, last_error = v.column6, update_time = v.column7 FROM",
    7,
    "WHERE deliveries.id = v.column1",
);
/// A destination's health after a success (`$1` destination, `$2` now), written without reading
/// it: its state (a pause, a disable) is left as it is.
const HEALTH_SUCCEEDED: &str = "INSERT INTO destination_health (destination_id, last_success_time) VALUES ($1, $2) \
     ON CONFLICT (destination_id) DO UPDATE SET consecutive_failures = 0, failing_since = NULL, \
     last_success_time = $2, circuit = 'CLOSED', circuit_retry_time = NULL";
/// A destination's whole health row, as decided from the one read in the same transaction.
const HEALTH_DECIDED: &str = "INSERT INTO destination_health (destination_id, state, disabled_reason, \
     consecutive_failures, failing_since, last_success_time, last_failure_time, circuit, circuit_retry_time) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (destination_id) DO UPDATE SET state = $2, \
     disabled_reason = $3, consecutive_failures = $4, failing_since = $5, last_success_time = $6, \
     last_failure_time = $7, circuit = $8, circuit_retry_time = $9";

/// Everything recording a batch of attempts writes, decided before any of it is written, so that
/// both drivers (sqlx, and the SQLite writer's own connection) run the same statements.
///
/// The breaker needs a destination's current counters only when one of its attempts failed: those
/// destinations' health rows are read first ([`AttemptWrites::to_read`], inside the transaction,
/// which holds SQLite's write lock or, on PostgreSQL, the rows' locks), the batch's attempts are
/// applied to them in order, and each is written once. A destination that only succeeded is reset
/// without a read.
pub(super) struct AttemptWrites<'a> {
    batch: &'a [AttemptResult],
    now: Micros,
    decided: Vec<DestinationHealth>,
    succeeded: Vec<&'a str>,
    feed: Vec<(&'a str, NewActivity)>,
    /// What the breaker decided for each attempt, in order.
    pub outcomes: Vec<breaker::Transition>,
}

impl<'a> AttemptWrites<'a> {
    /// The destinations whose health rows decide the batch, sorted (the order PostgreSQL locks
    /// them in, the same on every node).
    pub(super) fn to_read(batch: &[AttemptResult]) -> Vec<&str> {
        let mut ids: Vec<&str> = batch
            .iter()
            .filter(|r| matches!(r.health, HealthChange::Failed { .. } | HealthChange::Disable(_)))
            .map(|r| r.attempt.destination_id.as_str())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Applies the batch to `current`, the health rows of [`Self::to_read`].
    pub(super) fn decide(batch: &'a [AttemptResult], mut current: Vec<DestinationHealth>, now: Micros) -> Self {
        let mut succeeded: Vec<&str> = Vec::new();
        let mut feed = Vec::new();
        let mut outcomes = Vec::with_capacity(batch.len());
        for r in batch {
            let a = &r.attempt;
            let read = matches!(r.health, HealthChange::Failed { .. } | HealthChange::Disable(_));
            let health = health_of(&mut current, &a.destination_id, read);
            let mut changed = None;
            let outcome = match (&r.health, health) {
                (HealthChange::Unchanged, _) => breaker::Transition::None,
                (HealthChange::Succeeded, Some(h)) => {
                    h.succeeded(now);
                    breaker::Transition::None
                }
                (HealthChange::Succeeded, None) => {
                    if !succeeded.contains(&a.destination_id.as_str()) {
                        succeeded.push(&a.destination_id);
                    }
                    breaker::Transition::None
                }
                (HealthChange::Failed { disable_after }, Some(h)) => {
                    let transition = h.failed(now, *disable_after);
                    if transition != breaker::Transition::None {
                        changed = Some(state_changed(h, &transition));
                    }
                    transition
                }
                (HealthChange::Disable(reason), Some(h)) => {
                    h.disable(reason, now);
                    breaker::Transition::None
                }
                // `health_of` gives these a row.
                (HealthChange::Failed { .. } | HealthChange::Disable(_), None) => breaker::Transition::None,
            };
            feed.extend(r.activities.iter().cloned().chain(changed).map(|act| (a.project_id.as_str(), act)));
            outcomes.push(outcome);
        }
        Self { batch, now, decided: current, succeeded, feed, outcomes }
    }

    /// The statements, in order: the attempt rows, the deliveries' new states, the health rows.
    pub(super) fn statements(&self) -> Vec<Statement<'_>> {
        let attempts: Vec<_> = self.batch.iter().map(|r| attempt_row(&r.attempt)).collect();
        // One row per delivery (the last attempt's, should a batch hold two of one delivery):
        // an UPDATE … FROM gives no order among rows matching the same delivery.
        let mut finished: Vec<&AttemptResult> = Vec::with_capacity(self.batch.len());
        for r in self.batch {
            match finished.iter_mut().find(|f| f.attempt.delivery_id == r.attempt.delivery_id) {
                Some(f) => *f = r,
                None => finished.push(r),
            }
        }
        let deliveries: Vec<_> = finished.iter().map(|r| finish_row(r, self.now)).collect();
        let mut out = vec![
            Statement::Rows(Rows::new(&ATTEMPTS, &attempts)),
            Statement::Rows(Rows::new(&FINISH_DELIVERIES, &deliveries)),
        ];
        out.extend(self.decided.iter().map(|h| Statement::One(HEALTH_DECIDED, health_row(h).to_vec())));
        out.extend(self.succeeded.iter().map(|d| Statement::One(HEALTH_SUCCEEDED, vec![(*d).into(), self.now.into()])));
        out
    }

    /// The feed items: each attempt's activities, then the state change it caused.
    pub(super) fn feed_items(&self) -> Vec<NewFeedItem<'_>> {
        self.feed.iter().map(|(p, act)| (*p, act, self.now)).collect()
    }
}

/// The health row of `destination_id` among those read; with `read`, one there must be (the
/// caller read every one of [`AttemptWrites::to_read`]; one it did not is decided as if it had
/// no health row yet).
fn health_of<'h>(
    current: &'h mut Vec<DestinationHealth>,
    destination_id: &str,
    read: bool,
) -> Option<&'h mut DestinationHealth> {
    let i = match current.iter().position(|h| h.destination_id == destination_id) {
        Some(i) => i,
        None if read => {
            debug_assert!(false, "health of {destination_id} not read");
            current.push(DestinationHealth::healthy(destination_id));
            current.len() - 1
        }
        None => return None,
    };
    Some(&mut current[i])
}

impl DestinationHealth {
    fn succeeded(&mut self, now: Micros) {
        self.consecutive_failures = 0;
        self.failing_since = None;
        self.last_success_time = Some(now);
        self.circuit = "CLOSED".to_owned();
        self.circuit_retry_time = None;
    }

    /// Counts a failure; the breaker decides whether the circuit opens or the destination is
    /// disabled.
    fn failed(&mut self, now: Micros, disable_after: std::time::Duration) -> breaker::Transition {
        let before = breaker::Health {
            consecutive_failures: self.consecutive_failures,
            failing_since: self.failing_since,
            circuit_open: self.circuit == "OPEN",
            circuit_retry_time: self.circuit_retry_time,
            disabled: self.state == "DISABLED",
        };
        let (after, transition) = breaker::after_failure(&before, now, disable_after);
        if after.disabled {
            self.state = "DISABLED".to_owned();
            self.disabled_reason = transition_reason(&transition);
        }
        self.consecutive_failures = after.consecutive_failures;
        self.failing_since = after.failing_since;
        self.last_failure_time = Some(now);
        self.circuit = if after.circuit_open { "OPEN" } else { "CLOSED" }.to_owned();
        self.circuit_retry_time = after.circuit_retry_time;
        transition
    }

    /// `410 Gone`: disabled at once, with `reason`.
    fn disable(&mut self, reason: &str, now: Micros) {
        self.state = "DISABLED".to_owned();
        self.disabled_reason = reason.to_owned();
        self.consecutive_failures += 1;
        self.failing_since = Some(self.failing_since.unwrap_or(now));
        self.last_failure_time = Some(now);
    }
}

/// A row of [`ATTEMPTS`].
fn attempt_row(a: &NewAttempt) -> [Arg<'_>; 17] {
    [
        (&a.id).into(),
        (&a.project_id).into(),
        (&a.delivery_id).into(),
        (&a.event_id).into(),
        (&a.destination_id).into(),
        a.number.into(),
        a.outcome.into(),
        a.status_code.into(),
        Arg::Text(a.error_kind),
        (&a.error_message).into(),
        (&a.request).into(),
        b"".as_slice().into(), // request_body: see `sent_body!`
        (&a.response_headers).into(),
        a.response_body.as_slice().into(),
        a.response_truncated.into(),
        a.start_time.into(),
        a.duration_us.into(),
    ]
}

/// A row of [`FINISH_DELIVERIES`].
fn finish_row(r: &AttemptResult, now: Micros) -> [Arg<'_>; 7] {
    [
        (&r.attempt.delivery_id).into(),
        r.state.into(),
        r.attempt.number.into(),
        r.next_attempt_time.into(),
        r.attempt.status_code.into(),
        (&r.error_summary).into(),
        now.into(),
    ]
}

/// The arguments of [`HEALTH_DECIDED`].
fn health_row(h: &DestinationHealth) -> [Arg<'_>; 9] {
    [
        (&h.destination_id).into(),
        (&h.state).into(),
        (&h.disabled_reason).into(),
        h.consecutive_failures.into(),
        h.failing_since.into(),
        h.last_success_time.into(),
        h.last_failure_time.into(),
        (&h.circuit).into(),
        h.circuit_retry_time.into(),
    ]
}

/// The feed item of a breaker transition that left the destination with health `h`.
fn state_changed(h: &DestinationHealth, t: &breaker::Transition) -> NewActivity {
    let state = if h.state == "DISABLED" { "DISABLED" } else { "ACTIVE" };
    let payload = serde_json::json!({
        "destination_id": h.destination_id, "state": state, "circuit": "OPEN", "reason": transition_reason(t),
    });
    NewActivity {
        kind: "DESTINATION_STATE_CHANGED",
        source_id: None,
        destination_id: Some(h.destination_id.clone()),
        event_type: None,
        payload: serde_json::to_vec(&payload).expect("JSON of strings"),
    }
}

fn transition_reason(t: &breaker::Transition) -> String {
    match t {
        breaker::Transition::None => String::new(),
        breaker::Transition::CircuitOpened { .. } => "circuit opened after consecutive failures".to_owned(),
        breaker::Transition::Disabled { reason } => reason.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::args::Column;

    fn result(n: i64, destination: &str, health: HealthChange) -> AttemptResult {
        AttemptResult {
            attempt: NewAttempt {
                id: format!("att_{destination}_{n}"),
                project_id: "prj_1".into(),
                delivery_id: format!("dlv_{destination}_{n}"),
                event_id: "evt_1".into(),
                destination_id: destination.into(),
                number: 1,
                outcome: if health == HealthChange::Succeeded { "SUCCEEDED" } else { "FAILED" },
                status_code: Some(500),
                error_kind: None,
                error_message: None,
                request: "{}".into(),
                response_headers: "[]".into(),
                response_body: Vec::new(),
                response_truncated: false,
                start_time: 0,
                duration_us: 1,
            },
            state: "RETRYING",
            next_attempt_time: Some(5),
            error_summary: String::new(),
            health,
            activities: Vec::new(),
        }
    }

    const FAILED: HealthChange = HealthChange::Failed { disable_after: breaker::DEFAULT_DISABLE_AFTER };

    #[test]
    fn a_batch_is_decided_in_order_from_the_health_read() {
        // dst_a: 8 failures already; two more in this batch open the circuit at the second,
        // and a success after them closes it again. dst_b only succeeds: not read.
        let mut batch = vec![result(0, "dst_b", HealthChange::Succeeded), result(1, "dst_a", FAILED)];
        batch.push(result(2, "dst_a", FAILED));
        batch.push(result(3, "dst_b", HealthChange::Succeeded));
        assert_eq!(AttemptWrites::to_read(&batch), ["dst_a"]);
        let now = 1_000_000;
        let mut a = DestinationHealth::healthy("dst_a");
        a.consecutive_failures = 8;
        a.failing_since = Some(10);
        let writes = AttemptWrites::decide(&batch, vec![a], now);
        let retry_time = now + breaker::FIRST_COOL_DOWN.as_micros() as i64;
        assert_eq!(
            writes.outcomes,
            [
                breaker::Transition::None,
                breaker::Transition::None,
                breaker::Transition::CircuitOpened { retry_time },
                breaker::Transition::None,
            ]
        );
        assert_eq!(writes.decided.len(), 1);
        let a = &writes.decided[0];
        assert_eq!((a.consecutive_failures, a.failing_since, a.circuit.as_str()), (10, Some(10), "OPEN"));
        assert_eq!(a.circuit_retry_time, Some(retry_time));
        assert_eq!(writes.succeeded, ["dst_b"]);
        let feed = writes.feed_items();
        assert_eq!(feed.len(), 1);
        assert_eq!(feed[0].1.kind, "DESTINATION_STATE_CHANGED");
        assert_eq!(feed[0].1.destination_id.as_deref(), Some("dst_a"));
        // Four attempt rows and four deliveries in one statement each (on SQLite one of four
        // rows, on PostgreSQL one of four-element arrays), then the two health rows.
        let statements = writes.statements();
        assert_eq!(statements.len(), 4);
        type Forms<'a> = (Vec<(&'static str, usize)>, Option<(&'static str, Vec<Column<'a>>)>);
        fn rows<'a>(s: &Statement<'a>) -> Forms<'a> {
            match s {
                Statement::Rows(r) => (r.chunks().map(|(sql, args)| (sql, args.len())).collect(), r.columns()),
                Statement::One(sql, _) => panic!("{sql}: not rows"),
            }
        }
        let (sqlite, pg) = rows(&statements[0]);
        let (pg, columns) = pg.unwrap();
        assert_eq!(sqlite.len(), 1);
        assert!(sqlite[0].0.starts_with("INSERT INTO attempts") && sqlite[0].1 == 4 * 17, "{sqlite:?}");
        assert!(
            pg.starts_with("INSERT INTO attempts (id, ") && pg.contains(" SELECT * FROM UNNEST($1::text[], "),
            "{pg}"
        );
        assert_eq!(columns.len(), 17);
        let ids = ["att_dst_b_0", "att_dst_a_1", "att_dst_a_2", "att_dst_b_3"].map(Some);
        assert!(matches!(&columns[0], Column::Text(c) if c == &ids), "{:?}", columns[0]);
        assert!(matches!(&columns[7], Column::Int(c) if c == &[Some(500); 4]), "{:?}", columns[7]);
        // The deliveries' updates join the rows: VALUES on SQLite, arrays on PostgreSQL, planned
        // for the rows at hand (see `Rows::planned_each_time`).
        let (sqlite, pg) = rows(&statements[1]);
        assert!(sqlite[0].0.starts_with("UPDATE deliveries") && sqlite[0].1 == 4 * 7, "{sqlite:?}");
        assert!(sqlite[0].0.ends_with(") AS v WHERE deliveries.id = v.column1"), "{sqlite:?}");
        let (pg, columns) = pg.unwrap();
        assert!(
            pg.starts_with("UPDATE deliveries SET state = ")
                && pg.ends_with(
                    " FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::int8[], $5::int8[], $6::text[], $7::int8[]) \
                     AS v(column1, column2, column3, column4, column5, column6, column7) WHERE deliveries.id = v.column1"
                ),
            "{pg}"
        );
        let ids = ["dlv_dst_b_0", "dlv_dst_a_1", "dlv_dst_a_2", "dlv_dst_b_3"].map(Some);
        assert!(matches!(&columns[0], Column::Text(c) if c == &ids), "{:?}", columns[0]);
        let Statement::Rows(finished) = &statements[1] else { unreachable!() };
        assert!(finished.planned_each_time());
        let Statement::Rows(attempts) = &statements[0] else { unreachable!() };
        assert!(!attempts.planned_each_time());
        let singles: Vec<&str> = statements[2..]
            .iter()
            .map(|s| match s {
                Statement::One(sql, _) => *sql,
                Statement::Rows(_) => panic!("rows"),
            })
            .collect();
        assert_eq!(singles, [HEALTH_DECIDED, HEALTH_SUCCEEDED]);
    }

    #[test]
    fn gone_disables_and_a_later_success_keeps_it_disabled() {
        let batch =
            [result(1, "dst_a", HealthChange::Disable("410 Gone".into())), result(2, "dst_a", HealthChange::Succeeded)];
        let writes = AttemptWrites::decide(&batch, vec![DestinationHealth::healthy("dst_a")], 7);
        let a = &writes.decided[0];
        assert_eq!((a.state.as_str(), a.disabled_reason.as_str()), ("DISABLED", "410 Gone"));
        assert_eq!((a.consecutive_failures, a.last_failure_time, a.last_success_time), (0, Some(7), Some(7)));
        assert!(writes.succeeded.is_empty());
    }
}
