//! The few statements whose SQL differs between SQLite and PostgreSQL.

use super::{Backend, StoreError, Tx, TxConn};

/// The PostgreSQL channel on which nodes tell each other that the feed grew and deliveries may
/// have come due.
pub const WAKE_CHANNEL: &str = "loft_wake";

/// Tells the other nodes, when `tx` commits, that there is new work: `NOTIFY` is transactional,
/// so they hear it only once the rows are visible (and never for a rollback); PostgreSQL folds
/// identical notifications of one transaction into one. SQLite has no other nodes.
pub async fn notify_nodes(tx: &mut Tx) -> Result<(), StoreError> {
    if let TxConn::Postgres(c) = &mut tx.conn {
        sqlx::query("SELECT pg_notify($1, '')").bind(WAKE_CHANNEL).execute(&mut **c).await?;
    }
    Ok(())
}

/// Leases up to `$3` due deliveries until `$1`, given the time `$2`; returns their ids.
///
/// Due: an attempt time that has come, no live lease, and a destination that is active with
/// no open circuit waiting out its cool-down (held deliveries stay untouched until then). On
/// PostgreSQL, `FOR UPDATE SKIP LOCKED` lets several nodes claim at once without waiting on or
/// taking each other's rows; SQLite has one writer, so the plain statement is already exclusive.
pub fn claim_due(backend: Backend) -> &'static str {
    macro_rules! claim {
        ($lock:literal) => {
            concat!(
                "UPDATE deliveries SET lease_until = $1 WHERE id IN (",
                "SELECT d.id FROM deliveries d WHERE d.next_attempt_time IS NOT NULL AND d.next_attempt_time <= $2 ",
                "AND (d.lease_until IS NULL OR d.lease_until < $2) ",
                "AND NOT EXISTS (SELECT 1 FROM destination_health h WHERE h.destination_id = d.destination_id ",
                "AND (h.state <> 'ACTIVE' OR (h.circuit = 'OPEN' AND h.circuit_retry_time > $2))) ",
                "ORDER BY d.next_attempt_time LIMIT $3",
                $lock,
                ") RETURNING id"
            )
        };
    }
    match backend {
        Backend::Sqlite => claim!(""),
        Backend::Postgres => claim!(" FOR UPDATE OF d SKIP LOCKED"),
    }
}
