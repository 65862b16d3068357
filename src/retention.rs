//! The retention job: events (with their deliveries and attempts) older than their project's
//! retention, feed items older than the feed retention, and expired idempotency keys are
//! deleted in small batches.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::domain::project::ProjectSpec;
use crate::store::{Store, StoreError};
use crate::timeutil::{Micros, now_micros};

/// Rows deleted per statement.
const BATCH: u32 = 500;
pub const DEFAULT_FEED_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// What one sweep deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub events: u64,
    pub feed_items: u64,
    pub keys: u64,
}

/// One pass over every project, as of `now`.
pub async fn sweep(store: &Store, now: Micros, feed_retention: Duration) -> Result<Swept, StoreError> {
    let mut swept = Swept::default();
    let mut after: Option<String> = None;
    loop {
        let projects = store.list_projects(after.as_deref(), 100, None).await?;
        for p in &projects {
            let spec: ProjectSpec = serde_json::from_str(&p.spec)?;
            let before = now - Duration::from_secs(spec.retention_secs).as_micros() as i64;
            loop {
                let n = store.delete_events_before(&p.id, before, BATCH).await?;
                swept.events += n;
                if n < u64::from(BATCH) {
                    break;
                }
                // Let other writers in between batches.
                tokio::task::yield_now().await;
            }
        }
        match projects.last() {
            Some(last) if projects.len() == 100 => after = Some(last.id.clone()),
            _ => break,
        }
    }
    let feed_before = now - feed_retention.as_micros() as i64;
    loop {
        let n = store.delete_feed_before(feed_before, BATCH).await?;
        swept.feed_items += n;
        if n < u64::from(BATCH) {
            break;
        }
    }
    loop {
        let n = store.delete_expired_keys(now, BATCH).await?;
        swept.keys += n;
        if n < u64::from(BATCH) {
            break;
        }
    }
    Ok(swept)
}

/// Sweeps every `interval` until `shutdown`.
pub async fn run(store: Store, interval: Duration, feed_retention: Duration, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.cancelled() => return,
        }
        match sweep(&store, now_micros(), feed_retention).await {
            Ok(s) if s != Swept::default() => {
                tracing::info!(events = s.events, feed_items = s.feed_items, keys = s.keys, "retention sweep")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention sweep failed; retrying next interval"),
        }
    }
}
