//! The live feed behind `WatchEvents`.
//!
//! The feed is a log in the database (`store/feed.rs` explains why its order is commit order);
//! memory only signals that there is more. One reader task per node (the [`FeedHub`]) follows the
//! log: woken by this node's commits and, on PostgreSQL, by the other nodes' `NOTIFY`, it reads
//! the new items once, turns them into messages once, and broadcasts them in batches that say
//! exactly which span of sequence numbers they cover. Each watcher (`watch.rs`) reads its past
//! from the log, then follows the broadcast; whenever a batch does not start where the watcher
//! stands (it subscribed late, or fell behind and the bounded ring dropped batches), it goes back
//! to the log. So there is no gap and no duplicate across the switch, writers never wait for
//! watchers, and memory is the ring plus a few items per watcher.

mod cursor;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub use cursor::Cursor;
pub use watch::{Filter, Start, WatchRequest, watch};

use crate::proto as pb;
use crate::proto::watch_events_response::Activity;
use crate::store::{DeliveryCounts, FeedRow, Store, StoreError};
use crate::timeutil::{Micros, to_timestamp};

/// Batches kept for watchers that are a little behind. A watcher further behind reads the log.
const RING_BATCHES: usize = 64;
/// Most items read and broadcast at once.
const BATCH_ITEMS: u32 = 256;
/// How often the reader looks at the log without a signal (a missed `NOTIFY`, say).
const POLL: Duration = Duration::from_secs(1);

/// One item of the feed, as watchers receive it (without bodies).
#[derive(Debug)]
pub struct FeedItem {
    pub row: FeedRow,
    pub kind: pb::ActivityKind,
    pub activity: Activity,
}

/// The items with sequence numbers in `(after, upto]`, all projects, in order.
#[derive(Debug)]
pub struct FeedBatch {
    pub after: i64,
    pub upto: i64,
    pub items: Vec<FeedItem>,
}

/// This node's reader of the feed log. Cheap to clone.
#[derive(Clone)]
pub struct FeedHub {
    store: Store,
    batches: broadcast::Sender<Arc<FeedBatch>>,
    /// Ends every watch: a graceful shutdown waits for open streams, and watches never end
    /// by themselves.
    shutdown: CancellationToken,
}

impl FeedHub {
    pub fn new(store: Store, shutdown: CancellationToken) -> Self {
        let (batches, _) = broadcast::channel(RING_BATCHES);
        Self { store, batches, shutdown }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<FeedBatch>> {
        self.batches.subscribe()
    }

    /// Follows the log until shutdown.
    pub async fn run(self) {
        let shutdown = self.shutdown.clone();
        // How far the broadcast has gone; unknown while nobody listens (nothing is read then,
        // so commits cost no feed reads when nobody watches).
        let mut position: Option<i64> = None;
        loop {
            tokio::select! {
                _ = self.store.feed_signal().notified() => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.cancelled() => return,
            }
            if self.batches.receiver_count() == 0 {
                position = None;
                continue;
            }
            if let Err(e) = self.advance(&mut position).await {
                tracing::warn!(error = %e, "reading the feed failed; retrying");
            }
        }
    }

    /// Broadcasts everything committed since `position`.
    async fn advance(&self, position: &mut Option<i64>) -> Result<(), StoreError> {
        loop {
            let horizon = self.store.feed_horizon().await?;
            // A new start broadcasts from the present; watchers that need older items see
            // that the first batch does not start at their cursor and read them from the log.
            let after = match *position {
                Some(after) => after,
                None => {
                    // That first batch is sent now, empty: a watcher that caught up from the log
                    // before items committed while nobody listened sees that it does not start
                    // at its cursor and reads them from the log, instead of waiting for a later
                    // commit to notice them (a lone event would never arrive).
                    let _ = self.batches.send(Arc::new(FeedBatch { after: horizon, upto: horizon, items: Vec::new() }));
                    *position = Some(horizon);
                    horizon
                }
            };
            if horizon <= after {
                return Ok(());
            }
            let rows = self.store.feed_range(after, horizon, BATCH_ITEMS).await?;
            let upto = match rows.last() {
                Some(last) if rows.len() == BATCH_ITEMS as usize => last.seq,
                _ => horizon,
            };
            let mut items = Vec::with_capacity(rows.len());
            for row in rows {
                items.extend(item(&self.store, row, false).await?);
            }
            // No receiver left is fine: the next one starts from the log.
            let _ = self.batches.send(Arc::new(FeedBatch { after, upto, items }));
            *position = Some(upto);
        }
    }
}

fn kind_of(kind: &str) -> pb::ActivityKind {
    pb::ActivityKind::from_str_name(&format!("ACTIVITY_KIND_{kind}")).unwrap_or(pb::ActivityKind::Unspecified)
}

/// A feed row as a message; with `payload`, carrying the event's and the attempt's bodies.
/// `None` for a kind this version does not know (written by a newer node): skipped.
pub async fn item(store: &Store, row: FeedRow, payload: bool) -> Result<Option<FeedItem>, StoreError> {
    let kind = kind_of(&row.kind);
    if kind == pb::ActivityKind::Unspecified {
        tracing::warn!(seq = row.seq, kind = %row.kind, "skipping a feed item of an unknown kind");
        return Ok(None);
    }
    let activity = activity(store, &row, kind, payload).await?;
    Ok(Some(FeedItem { row, kind, activity }))
}

/// What a feed row's JSON payload may hold.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct Payload {
    event_id: String,
    attempt_id: String,
    delivery_id: String,
    destination_id: String,
    state: String,
    circuit: String,
    reason: String,
    resource_type: String,
    resource_id: String,
    action: String,
    actor_key_id: String,
    changed_fields: Vec<String>,
}

/// Loads what the row names. The event, attempt or delivery may have been deleted by the
/// project's retention while the feed item is kept longer: the item then carries the ids alone.
async fn activity(store: &Store, row: &FeedRow, kind: pb::ActivityKind, full: bool) -> Result<Activity, StoreError> {
    use pb::ActivityKind as K;
    let p: Payload = serde_json::from_slice(&row.payload)?;
    let project = row.project_id.as_str();
    Ok(match kind {
        K::EventReceived => {
            let event = match found(store.get_event(project, &p.event_id).await)? {
                Some(record) => {
                    let counts = store.delivery_counts(project, &record.id, &record.id).await?;
                    let counts = counts.into_iter().next().unwrap_or_else(DeliveryCounts::default);
                    crate::api::event_proto(&record, &counts, full)
                }
                None => pb::Event {
                    id: p.event_id,
                    project_id: row.project_id.clone(),
                    source_id: row.source_id.clone().unwrap_or_default(),
                    r#type: row.event_type.clone().unwrap_or_default(),
                    ..Default::default()
                },
            };
            Activity::EventReceived(pb::EventReceived { event: Some(event) })
        }
        K::AttemptFinished => {
            let attempt = match found(store.get_attempt(project, &p.attempt_id).await)? {
                Some(a) => crate::api::attempt_proto(&a, full),
                None => pb::Attempt {
                    id: p.attempt_id,
                    project_id: row.project_id.clone(),
                    destination_id: row.destination_id.clone().unwrap_or_default(),
                    ..Default::default()
                },
            };
            Activity::AttemptFinished(pb::AttemptFinished { attempt: Some(attempt) })
        }
        K::DeliverySucceeded | K::DeliveryFailed => {
            let mut delivery = match found(store.get_delivery(project, &p.delivery_id).await)? {
                Some(d) => crate::api::delivery_proto(&d),
                None => pb::Delivery {
                    id: p.delivery_id,
                    project_id: row.project_id.clone(),
                    destination_id: row.destination_id.clone().unwrap_or_default(),
                    ..Default::default()
                },
            };
            // The state the item reports, even if the delivery was retried since.
            if kind == K::DeliverySucceeded {
                delivery.state = pb::DeliveryState::Succeeded as i32;
                Activity::DeliverySucceeded(pb::DeliverySucceeded { delivery: Some(delivery) })
            } else {
                delivery.state = pb::DeliveryState::Failed as i32;
                Activity::DeliveryFailed(pb::DeliveryFailed { delivery: Some(delivery) })
            }
        }
        K::DestinationStateChanged => Activity::DestinationStateChanged(pb::DestinationStateChanged {
            destination_id: p.destination_id,
            state: pb::DestinationState::from_str_name(&format!("DESTINATION_STATE_{}", p.state))
                .unwrap_or(pb::DestinationState::Unspecified) as i32,
            circuit: pb::CircuitState::from_str_name(&format!("CIRCUIT_STATE_{}", p.circuit))
                .unwrap_or(pb::CircuitState::Unspecified) as i32,
            reason: p.reason,
        }),
        K::ResourceChanged => Activity::ResourceChanged(pb::ResourceChanged {
            resource_type: p.resource_type,
            resource_id: p.resource_id,
            action: pb::ChangeAction::from_str_name(&format!("CHANGE_ACTION_{}", p.action))
                .unwrap_or(pb::ChangeAction::Unspecified) as i32,
            actor_key_id: p.actor_key_id,
            changed_fields: p.changed_fields,
        }),
        K::Unspecified => unreachable!("unknown kinds are skipped by `item`"),
    })
}

/// The message of one item, with its cursor.
pub fn response(cursor: &Cursor, time: Micros, activity: Activity) -> pb::WatchEventsResponse {
    pb::WatchEventsResponse { cursor: cursor.encode(), time: Some(to_timestamp(time)), activity: Some(activity) }
}

/// A lookup whose row may be gone.
fn found<T>(r: Result<T, StoreError>) -> Result<Option<T>, StoreError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}
