//! What the dispatcher reads and writes: claiming due deliveries under a lease, loading what a
//! send needs, and recording an attempt's result with everything it changes, in one transaction.

use super::events::NewFeedItem;
use super::multirow::MultiRow;
use super::{NewActivity, StoreError, dialect, on_pool, on_tx};
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
    /// JSON: url, method, headers.
    pub request: String,
    pub request_body: Vec<u8>,
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

macro_rules! select_attempts {
    ($($rest:literal),+) => {
        concat!(
            "SELECT id, project_id, delivery_id, event_id, destination_id, number, outcome, status_code, error_kind, ",
            "error_message, request, request_body, response_headers, response_body, response_truncated, start_time, ",
            "duration_us FROM attempts ",
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
        match self.writes() {
            super::Pool::Sqlite(p) => {
                // A write: take the lock up front like every other SQLite writer; it also makes
                // the claim exclusive.
                let mut tx = p.begin_with("BEGIN IMMEDIATE").await?;
                claimed = sqlx::query_as(ordered).bind(lease_until).bind(now).fetch_all(&mut *tx).await?;
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
        let row: Option<DueDelivery> =
            on_pool!(self.pool(), p => sqlx::query_as(SQL).bind(id).bind(leased).fetch_optional(p).await?);
        row.ok_or(StoreError::NotFound)
    }

    /// Moves a lease we hold (`held`) to `until`; false when it is no longer ours.
    pub async fn extend_lease(&self, id: &str, held: Micros, until: Micros) -> Result<bool, StoreError> {
        let n = on_pool!(self.writes(), p => sqlx::query(
            "UPDATE deliveries SET lease_until = $3 WHERE id = $1 AND lease_until = $2 AND next_attempt_time IS NOT NULL")
            .bind(id).bind(held).bind(until).execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    /// Puts a delivery we hold (`held`) back in the queue, due at `until`, without an attempt
    /// (its retries are not spent): how an open circuit holds deliveries. `false` when the lease
    /// is no longer ours.
    pub async fn defer(&self, id: &str, held: Micros, until: Micros) -> Result<bool, StoreError> {
        let n = on_pool!(self.writes(), p => sqlx::query(
            "UPDATE deliveries SET next_attempt_time = $3, lease_until = NULL \
             WHERE id = $1 AND lease_until = $2 AND next_attempt_time IS NOT NULL")
            .bind(id).bind(held).bind(until).execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    /// Gives a lease back without an attempt (the destination went away or stopped).
    pub async fn release_lease(&self, id: &str, held: Micros) -> Result<(), StoreError> {
        on_pool!(self.writes(), p => sqlx::query("UPDATE deliveries SET lease_until = NULL WHERE id = $1 AND lease_until = $2")
            .bind(id).bind(held).execute(p).await.map(|_| ())?);
        Ok(())
    }

    /// Records attempts: for each, the attempt row, the delivery's new state, the destination's
    /// health and the feed items, together; a batch in one transaction (the dispatcher's group
    /// commit). A batch that fails as a whole is retried attempt by attempt, so one bad row does
    /// not fail the others. Returns what the breaker decided for each.
    pub async fn record_attempts(
        &self,
        batch: &[AttemptResult],
        now: Micros,
    ) -> Vec<Result<breaker::Transition, StoreError>> {
        match self.record_attempts_in_one(batch, now).await {
            Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
            Err(e) if batch.len() == 1 => vec![Err(e)],
            Err(_) => {
                let mut out = Vec::with_capacity(batch.len());
                for r in batch {
                    out.push(self.record_attempts_in_one(std::slice::from_ref(r), now).await.map(|mut o| o.remove(0)));
                }
                out
            }
        }
    }

    async fn record_attempts_in_one(
        &self,
        batch: &[AttemptResult],
        now: Micros,
    ) -> Result<Vec<breaker::Transition>, StoreError> {
        static ATTEMPTS: MultiRow = MultiRow::new(
            "attempts (id, project_id, delivery_id, event_id, destination_id, number, outcome, status_code, \
             error_kind, error_message, request, request_body, response_headers, response_body, response_truncated, \
             start_time, duration_us)",
            17,
        );
        let mut tx = self.begin().await?;
        let mut rest = batch;
        for (sql, n) in ATTEMPTS.plan(batch.len()) {
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            on_tx!(&mut tx, c => {
                let mut q = sqlx::query(sql);
                for r in chunk {
                    let a = &r.attempt;
                    q = q.bind(&a.id).bind(&a.project_id).bind(&a.delivery_id).bind(&a.event_id).bind(&a.destination_id)
                        .bind(a.number).bind(a.outcome).bind(a.status_code).bind(a.error_kind).bind(&a.error_message)
                        .bind(&a.request).bind(&a.request_body).bind(&a.response_headers).bind(&a.response_body)
                        .bind(a.response_truncated).bind(a.start_time).bind(a.duration_us);
                }
                q.execute(c).await.map(|_| ())?
            });
        }
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut feed: Vec<(&str, NewActivity)> = Vec::new();
        // A success after a success changes nothing more: one upsert per destination and run.
        let mut last_succeeded: Option<&str> = None;
        for r in batch {
            let a = &r.attempt;
            on_tx!(&mut tx, c => sqlx::query(
                // A delivery cancelled while its attempt was in flight stays cancelled (and, for an
                // ORDERED destination, its lease release lets the next one go).
                "UPDATE deliveries SET state = CASE WHEN state = 'CANCELLED' THEN state ELSE $2 END, attempt_count = $3, \
                 next_attempt_time = CASE WHEN state = 'CANCELLED' THEN NULL ELSE $4 END, lease_until = NULL, \
                 last_status_code = $5, last_error = $6, update_time = $7 WHERE id = $1")
                .bind(&a.delivery_id).bind(r.state).bind(a.number).bind(r.next_attempt_time).bind(a.status_code)
                .bind(&r.error_summary).bind(now)
                .execute(c).await.map(|_| ())?);
            let mut transitions = Vec::new();
            let mut outcome = breaker::Transition::None;
            match &r.health {
                HealthChange::Unchanged => {}
                HealthChange::Succeeded if last_succeeded == Some(a.destination_id.as_str()) => {}
                HealthChange::Succeeded => on_tx!(&mut tx, c => sqlx::query(
                    "INSERT INTO destination_health (destination_id, last_success_time) VALUES ($1, $2) \
                     ON CONFLICT (destination_id) DO UPDATE SET consecutive_failures = 0, failing_since = NULL, \
                     last_success_time = $2, circuit = 'CLOSED', circuit_retry_time = NULL")
                    .bind(&a.destination_id).bind(now).execute(c).await.map(|_| ())?),
                HealthChange::Failed { disable_after } => {
                    // The breaker's decision needs the current counters (including what earlier
                    // attempts of this batch changed); the write lock (SQLite) or the row lock
                    // taken by the read (PostgreSQL) keeps two nodes, or a concurrent pause, from
                    // being overwritten with stale ones.
                    let current = self.destination_health_in(&mut tx, &a.destination_id).await?;
                    let before = breaker::Health {
                        consecutive_failures: current.consecutive_failures,
                        failing_since: current.failing_since,
                        circuit_open: current.circuit == "OPEN",
                        circuit_retry_time: current.circuit_retry_time,
                        disabled: current.state == "DISABLED",
                    };
                    let (after, transition) = breaker::after_failure(&before, now, *disable_after);
                    let (state, reason) = if after.disabled {
                        ("DISABLED", transition_reason(&transition))
                    } else {
                        (current.state.as_str(), current.disabled_reason.clone())
                    };
                    on_tx!(&mut tx, c => sqlx::query(
                        "INSERT INTO destination_health (destination_id, state, disabled_reason, consecutive_failures, failing_since, \
                         last_failure_time, circuit, circuit_retry_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                         ON CONFLICT (destination_id) DO UPDATE SET state = $2, disabled_reason = $3, consecutive_failures = $4, \
                         failing_since = $5, last_failure_time = $6, circuit = $7, circuit_retry_time = $8")
                        .bind(&a.destination_id).bind(state).bind(&reason).bind(after.consecutive_failures).bind(after.failing_since)
                        .bind(now).bind(if after.circuit_open { "OPEN" } else { "CLOSED" }).bind(after.circuit_retry_time)
                        .execute(c).await.map(|_| ())?);
                    if transition != breaker::Transition::None {
                        let (state, circuit) = if after.disabled { ("DISABLED", "OPEN") } else { ("ACTIVE", "OPEN") };
                        let payload = serde_json::json!({
                            "destination_id": a.destination_id, "state": state, "circuit": circuit, "reason": transition_reason(&transition),
                        });
                        transitions.push(NewActivity {
                            kind: "DESTINATION_STATE_CHANGED",
                            source_id: None,
                            destination_id: Some(a.destination_id.clone()),
                            event_type: None,
                            payload: serde_json::to_vec(&payload).expect("JSON of strings"),
                        });
                    }
                    outcome = transition;
                }
                HealthChange::Disable(reason) => on_tx!(&mut tx, c => sqlx::query(
                    "INSERT INTO destination_health (destination_id, state, disabled_reason, consecutive_failures, failing_since, \
                     last_failure_time) VALUES ($1, 'DISABLED', $3, 1, $2, $2) ON CONFLICT (destination_id) DO UPDATE SET \
                     state = 'DISABLED', disabled_reason = $3, consecutive_failures = destination_health.consecutive_failures + 1, \
                     failing_since = COALESCE(destination_health.failing_since, $2), last_failure_time = $2")
                    .bind(&a.destination_id).bind(now).bind(reason).execute(c).await.map(|_| ())?),
            }
            last_succeeded = match r.health {
                HealthChange::Succeeded => Some(a.destination_id.as_str()),
                HealthChange::Unchanged => last_succeeded,
                _ => None,
            };
            feed.extend(r.activities.iter().cloned().chain(transitions).map(|act| (a.project_id.as_str(), act)));
            outcomes.push(outcome);
        }
        if !feed.is_empty() {
            let items: Vec<NewFeedItem<'_>> = feed.iter().map(|(p, act)| (*p, act, now)).collect();
            self.append_feed_items(&mut tx, &items).await?;
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    pub async fn get_attempt(&self, project: &str, id: &str) -> Result<AttemptRow, StoreError> {
        let row: Option<AttemptRow> = on_pool!(self.pool(), p => sqlx::query_as(select_attempts!("WHERE project_id = $1 AND id = $2"))
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
                select_attempts!(
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
        let n = on_pool!(self.writes(), p => sqlx::query(
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
        let n = on_pool!(self.writes(), p => sqlx::query(
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

fn transition_reason(t: &breaker::Transition) -> String {
    match t {
        breaker::Transition::None => String::new(),
        breaker::Transition::CircuitOpened { .. } => "circuit opened after consecutive failures".to_owned(),
        breaker::Transition::Disabled { reason } => reason.clone(),
    }
}
