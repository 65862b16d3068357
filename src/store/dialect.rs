//! The few statements whose SQL differs between SQLite and PostgreSQL.
//!
//! The claim of due deliveries is the main one. It goes destination by destination rather than
//! by time alone, so that one destination's backlog never fills a claim:
//!
//! - `queues` lists the destinations that have unfinished deliveries, one index probe each (a
//!   loose scan of `deliveries_queue`), so idle destinations and finished deliveries cost nothing.
//! - An UNORDERED destination gives up to its cap of due deliveries (what this node can start
//!   soon: free `max_in_flight` slots, rate-limit tokens); the claim then takes them round-robin
//!   (the first of every destination, then the second...) up to the node's room.
//! - An ORDERED destination gives its head, the first unfinished delivery in creation order,
//!   and only while none of its deliveries holds a live lease: one in flight at a time, and a
//!   head waiting for its retry blocks the rest. A delivery held before its first attempt
//!   (`deliver_time`) takes its place in the queue once it comes due.
//!
//! Due means: an attempt time that has come, no live lease, and a destination that is active with
//! no open circuit waiting out its cool-down (held deliveries stay untouched until then).

use super::events::ALLOCATE_FEED_SEQ;
use super::{Backend, StoreError, Tx, TxConn};

/// The PostgreSQL channel on which nodes tell each other that the feed grew and deliveries may
/// have come due.
pub const WAKE_CHANNEL: &str = "loft_wake";

/// Reserves `$1` feed sequence numbers in `tx` and returns the last. On PostgreSQL the same
/// statement tells the other nodes, when `tx` commits, that there is new work: `NOTIFY` is
/// transactional, so they hear it only once the rows are visible (and never for a rollback), and
/// PostgreSQL folds identical notifications of one transaction into one. The payload, `$2`, names
/// the sending node, which hears its own notifications too and skips them (its own commits wake
/// its dispatcher and feed directly). SQLite has no other nodes.
pub fn allocate_feed_seq(tx: &Tx) -> &'static str {
    match tx.conn {
        TxConn::Sqlite(_) => ALLOCATE_FEED_SEQ,
        TxConn::Postgres(_) => {
            static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
            SQL.get_or_init(|| format!("WITH {} SELECT last_seq FROM seq", reserve_feed_seq(1, 2)))
        }
    }
}

/// PostgreSQL: the common table expressions of [`allocate_feed_seq`] — `wake`, the
/// notification, and `seq`, whose `last_seq` is the last number reserved — with the count of
/// numbers as parameter `$count` and the node's name as `$node`, for a statement that goes on to
/// use them (a batch of events written in one statement, `events.rs`).
pub fn reserve_feed_seq(count: usize, node: usize) -> String {
    format!(
        "wake AS (SELECT pg_notify('{WAKE_CHANNEL}', ${node})), \
         seq AS (UPDATE feed_sequence SET last_seq = last_seq + ${count} FROM wake WHERE id = 1 RETURNING last_seq)"
    )
}

/// Locks a destination's health row for the rest of `tx` (creating it when missing), so that a
/// read-decide-write of it (the breaker after a failure, a pause) sees every earlier commit: under
/// PostgreSQL's READ COMMITTED a plain read could miss a pause or another node's failure that
/// commits before this transaction's write, which would then overwrite it. SQLite's one writer
/// already runs these transactions one after another.
pub async fn lock_destination_health(tx: &mut Tx, destination_id: &str) -> Result<(), StoreError> {
    if let TxConn::Postgres(c) = &mut tx.conn {
        sqlx::query(
            "INSERT INTO destination_health (destination_id) VALUES ($1) ON CONFLICT (destination_id) DO NOTHING",
        )
        .bind(destination_id)
        .execute(&mut **c)
        .await?;
        sqlx::query("SELECT 1 FROM destination_health WHERE destination_id = $1 FOR UPDATE")
            .bind(destination_id)
            .execute(&mut **c)
            .await?;
    }
    Ok(())
}

/// Destinations with unfinished deliveries, as the CTE `queues(destination_id)`; the last row
/// is NULL.
macro_rules! with_queues {
    ($($rest:expr),+ $(,)?) => {
        concat!(
            "WITH RECURSIVE queues(destination_id) AS (",
            "SELECT (SELECT destination_id FROM deliveries WHERE next_attempt_time IS NOT NULL ORDER BY destination_id LIMIT 1) ",
            "UNION ALL SELECT (SELECT d.destination_id FROM deliveries d WHERE d.next_attempt_time IS NOT NULL ",
            "AND d.destination_id > q.destination_id ORDER BY d.destination_id LIMIT 1) ",
            "FROM queues q WHERE q.destination_id IS NOT NULL) ",
            $($rest),+
        )
    };
}

/// The destination `$alias` may be sent to now: active, and no open circuit in its cool-down.
macro_rules! sendable {
    ($alias:literal) => {
        concat!(
            "NOT EXISTS (SELECT 1 FROM destination_health h WHERE h.destination_id = ",
            $alias,
            " AND (h.state <> 'ACTIVE' OR (h.circuit = 'OPEN' AND h.circuit_retry_time > $2)))"
        )
    };
}

/// Leases up to `$3` due deliveries of UNORDERED destinations until `$1`, given the time `$2`,
/// at most `$6` per destination and each destination's cap: its entry in the JSON object `$4`,
/// else `$5`. Returns their ids and destinations.
///
/// On PostgreSQL, `FOR UPDATE SKIP LOCKED` lets several nodes claim at once without waiting on
/// or taking each other's rows; SQLite has one writer, so the plain statement is already
/// exclusive.
pub fn claim_unordered(backend: Backend) -> &'static str {
    macro_rules! claim {
        ($cap:expr, $unordered:expr, $pick:expr) => {
            with_queues!(
                "UPDATE deliveries SET lease_until = $1 WHERE id IN (SELECT x.id FROM (",
                "SELECT d.id, d.next_attempt_time, q.cap, ",
                "ROW_NUMBER() OVER (PARTITION BY q.destination_id ORDER BY d.next_attempt_time, d.id) AS rn ",
                "FROM (SELECT destination_id, ",
                $cap,
                " AS cap FROM queues WHERE destination_id IS NOT NULL) q ",
                $pick,
                " WHERE q.cap > 0 AND ",
                sendable!("q.destination_id"),
                " AND NOT EXISTS (SELECT 1 FROM destinations o WHERE o.id = q.destination_id AND ",
                $unordered,
                ")) x WHERE x.rn <= x.cap ORDER BY x.rn, x.next_attempt_time LIMIT $3) RETURNING id, destination_id"
            )
        };
    }
    macro_rules! due {
        ($alias:literal) => {
            concat!(
                $alias,
                ".destination_id = q.destination_id AND ",
                $alias,
                ".next_attempt_time IS NOT NULL AND ",
                $alias,
                ".next_attempt_time <= $2 AND (",
                $alias,
                ".lease_until IS NULL OR ",
                $alias,
                ".lease_until < $2) ORDER BY ",
                $alias,
                ".next_attempt_time LIMIT $6"
            )
        };
    }
    match backend {
        Backend::Sqlite => claim!(
            "COALESCE(json_extract($4, '$.\"' || destination_id || '\"'), $5)",
            "json_extract(o.spec, '$.ordering') = 'ORDERED'",
            concat!("JOIN deliveries d ON d.id IN (SELECT u.id FROM deliveries u WHERE ", due!("u"), ")")
        ),
        Backend::Postgres => claim!(
            "COALESCE(($4::jsonb ->> destination_id)::bigint, $5)",
            "(o.spec::jsonb ->> 'ordering') = 'ORDERED'",
            concat!(
                "CROSS JOIN LATERAL (SELECT u.id, u.next_attempt_time FROM deliveries u WHERE ",
                due!("u"),
                " FOR UPDATE OF u SKIP LOCKED) d"
            )
        ),
    }
}

/// PostgreSQL only: locks the ORDERED destinations with unfinished deliveries that no other node
/// is claiming for right now (`SKIP LOCKED`); returns their ids. The lock is held to the end of
/// the claim's transaction, and [`claim_ordered`] runs after it in a statement of its own, so it
/// sees the leases of every claim before it: two nodes never lease two deliveries of one ORDERED
/// destination, even when a delivery that sorts earlier commits late.
pub const LOCK_ORDERED: &str = with_queues!(
    "SELECT o.id FROM destinations o WHERE o.id IN (SELECT destination_id FROM queues) ",
    "AND (o.spec::jsonb ->> 'ordering') = 'ORDERED' FOR NO KEY UPDATE OF o SKIP LOCKED"
);

/// Leases the due head of every ORDERED destination (on PostgreSQL: of those in the array `$3`,
/// locked by [`LOCK_ORDERED`]) whose deliveries hold no live lease, until `$1`, given the time
/// `$2`. Returns their ids and destinations.
pub fn claim_ordered(backend: Backend) -> &'static str {
    macro_rules! claim {
        ($ordered:expr) => {
            with_queues!(
                "UPDATE deliveries SET lease_until = $1 WHERE id IN (",
                "SELECT (SELECT f.id FROM deliveries f WHERE f.destination_id = o.id AND f.next_attempt_time IS NOT NULL ",
                "AND (f.attempt_count > 0 OR f.next_attempt_time <= $2) ORDER BY f.create_time, f.id LIMIT 1) ",
                "FROM destinations o WHERE ",
                $ordered,
                " AND ",
                sendable!("o.id"),
                ") AND next_attempt_time IS NOT NULL AND next_attempt_time <= $2 ",
                "AND (lease_until IS NULL OR lease_until < $2) ",
                "AND NOT EXISTS (SELECT 1 FROM deliveries l WHERE l.destination_id = deliveries.destination_id ",
                "AND l.lease_until >= $2) RETURNING id, destination_id"
            )
        };
    }
    match backend {
        Backend::Sqlite => {
            claim!("o.id IN (SELECT destination_id FROM queues) AND json_extract(o.spec, '$.ordering') = 'ORDERED'")
        }
        Backend::Postgres => claim!("o.id = ANY($3)"),
    }
}
