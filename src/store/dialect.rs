//! The few statements whose SQL differs between SQLite and PostgreSQL.

use super::Backend;

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
