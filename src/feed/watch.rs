//! One `WatchEvents` stream: catch up from the log, then follow the hub's broadcast.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::{Cursor, FeedBatch, FeedHub, item, response};
use crate::api::Violations;
use crate::error::{ApiError, ApiResult};
use crate::ids::{DestinationId, SourceId};
use crate::proto::watch_events_response::Activity;
use crate::proto::{self as pb, ErrorReason};
use crate::routing::pattern::EventTypePattern;
use crate::store::{FeedRow, Store, StoreError};
use crate::timeutil::{Micros, from_timestamp, now_micros};

/// Items read from the log per query while catching up.
const PAGE: u32 = 256;
/// Items waiting for a slow client. When full the watcher simply stops reading; the hub's
/// ring moves on without it and it later catches up from the log.
const OUTBOX: usize = 32;
const MAX_EVENT_TYPES: usize = 100;
const MAX_IDS: usize = 100;

/// Which items a watcher wants. Lists match if any element does; empty lists match all.
#[derive(Debug, Default)]
pub struct Filter {
    sources: HashSet<String>,
    destinations: HashSet<String>,
    types: Vec<EventTypePattern>,
    kinds: HashSet<i32>,
}

impl Filter {
    fn matches(&self, row: &FeedRow, kind: pb::ActivityKind) -> bool {
        let within =
            |set: &HashSet<String>, v: &Option<String>| set.is_empty() || v.as_ref().is_some_and(|v| set.contains(v));
        (self.kinds.is_empty() || self.kinds.contains(&(kind as i32)))
            && within(&self.sources, &row.source_id)
            && within(&self.destinations, &row.destination_id)
            && (self.types.is_empty()
                || row.event_type.as_deref().is_some_and(|t| self.types.iter().any(|p| p.matches(t))))
    }
}

/// Where a watch starts.
#[derive(Debug)]
pub enum Start {
    After(String),
    Time(Micros),
    Now,
}

/// A checked `WatchEventsRequest`.
#[derive(Debug)]
pub struct WatchRequest {
    pub project: String,
    pub filter: Filter,
    pub start: Start,
    pub include_payload: bool,
}

impl WatchRequest {
    pub fn parse(project: String, r: &pb::WatchEventsRequest) -> ApiResult<WatchRequest> {
        use pb::watch_events_request::Start as S;
        let mut v = Violations::default();
        let mut filter = Filter::default();
        if r.source_ids.len() > MAX_IDS {
            v.invalid("source_ids", format!("at most {MAX_IDS}"));
        }
        for (i, id) in r.source_ids.iter().enumerate() {
            match id.parse::<SourceId>() {
                Ok(id) => _ = filter.sources.insert(id.to_string()),
                Err(e) => v.invalid(format!("source_ids[{i}]"), e),
            }
        }
        if r.destination_ids.len() > MAX_IDS {
            v.invalid("destination_ids", format!("at most {MAX_IDS}"));
        }
        for (i, id) in r.destination_ids.iter().enumerate() {
            match id.parse::<DestinationId>() {
                Ok(id) => _ = filter.destinations.insert(id.to_string()),
                Err(e) => v.invalid(format!("destination_ids[{i}]"), e),
            }
        }
        if r.event_types.len() > MAX_EVENT_TYPES {
            v.invalid("event_types", format!("at most {MAX_EVENT_TYPES}"));
        }
        for (i, p) in r.event_types.iter().enumerate() {
            match EventTypePattern::parse(p) {
                Ok(p) => filter.types.push(p),
                Err(e) => v.invalid(format!("event_types[{i}]"), e),
            }
        }
        for (i, k) in r.kinds.iter().enumerate() {
            match pb::ActivityKind::try_from(*k) {
                Ok(pb::ActivityKind::Unspecified) | Err(_) => {
                    v.invalid(format!("kinds[{i}]"), "is not an activity kind")
                }
                Ok(k) => _ = filter.kinds.insert(k as i32),
            }
        }
        let start = match &r.start {
            Some(S::AfterCursor(c)) if !c.is_empty() => Start::After(c.clone()),
            Some(S::StartTime(t)) => match from_timestamp(t) {
                Some(t) => Start::Time(t),
                None => {
                    v.invalid("start_time", "is not a valid timestamp");
                    Start::Now
                }
            },
            Some(S::AfterCursor(_)) | Some(S::FromNow(_)) | None => Start::Now,
        };
        v.finish()?;
        Ok(WatchRequest { project, filter, start, include_payload: r.include_payload })
    }
}

/// Where the watch begins, checked against what the log still holds.
async fn first_position(store: &Store, req: &WatchRequest) -> ApiResult<i64> {
    let horizon = store.feed_horizon().await?;
    let seq = match &req.start {
        Start::Now => return Ok(horizon),
        Start::Time(t) => match store.feed_seq_at(&req.project, *t).await? {
            Some(first) => return Ok(first - 1),
            None => return Ok(horizon),
        },
        Start::After(text) => Cursor::decode(text, &req.project)?.seq,
    };
    if seq > horizon {
        return Err(ApiError::invalid("after_cursor", ErrorReason::InvalidCursor, "is ahead of this server's feed"));
    }
    check_not_expired(store, seq, horizon).await?;
    Ok(seq)
}

/// A position is expired when items after it were deleted by the feed's retention. Deletion
/// takes the front of the log only, and numbers are contiguous, so comparing with the oldest
/// item kept is exact.
async fn check_not_expired(store: &Store, seq: i64, horizon: i64) -> ApiResult<()> {
    let expired = match store.feed_oldest().await? {
        Some(oldest) => seq + 1 < oldest,
        None => seq < horizon,
    };
    if expired {
        return Err(ApiError::OutOfRange {
            reason: ErrorReason::CursorExpired,
            message: "the feed no longer holds the items after this cursor (past its retention); \
                      restart from a start_time or from now"
                .into(),
        });
    }
    Ok(())
}

/// Opens a watch: the returned stream starts with a heartbeat carrying the starting cursor, so
/// even a watcher "from now" can resume from the moment it connected.
pub async fn watch(
    hub: &FeedHub,
    req: WatchRequest,
    heartbeat: Duration,
) -> ApiResult<ReceiverStream<Result<pb::WatchEventsResponse, Status>>> {
    // Subscribe before reading the log: whatever the hub broadcasts from now on is either in
    // the ring or was committed before our read of the log, which then sees it.
    let live = hub.subscribe();
    let position = first_position(hub.store(), &req).await?;
    let (tx, rx) = mpsc::channel(OUTBOX);
    let watcher = Watcher { store: hub.store().clone(), req, cursor: position, out: tx, sent: 0 };
    let shutdown = hub.shutdown.clone();
    tokio::spawn(async move {
        let out = watcher.out.clone();
        tokio::select! {
            _ = watcher.run(live, heartbeat) => {}
            _ = shutdown.cancelled() => {
                let _ = out.try_send(Err(Status::unavailable("the server is shutting down; resume from the last cursor")));
            }
        }
    });
    Ok(ReceiverStream::new(rx))
}

struct Watcher {
    store: Store,
    req: WatchRequest,
    cursor: i64,
    out: mpsc::Sender<Result<pb::WatchEventsResponse, Status>>,
    /// Messages sent so far; a heartbeat is due only after a quiet interval.
    sent: u64,
}

/// Why a watcher stops sending.
enum Stop {
    /// The client went away.
    Gone,
    Failed(ApiError),
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Stop::Failed(e.into())
    }
}

impl Watcher {
    async fn run(mut self, mut live: broadcast::Receiver<Arc<FeedBatch>>, heartbeat: Duration) {
        let result: Result<(), Stop> = async {
            self.heartbeat().await?;
            loop {
                self.catch_up().await?;
                self.follow(&mut live, heartbeat).await?;
            }
        }
        .await;
        if let Err(Stop::Failed(e)) = result {
            let _ = self.out.send(Err(e.into())).await;
        }
    }

    fn cursor(&self) -> Cursor {
        Cursor { project: self.req.project.clone(), seq: self.cursor }
    }

    async fn send(&mut self, message: pb::WatchEventsResponse) -> Result<(), Stop> {
        self.sent += 1;
        self.out.send(Ok(message)).await.map_err(|_| Stop::Gone)
    }

    async fn heartbeat(&mut self) -> Result<(), Stop> {
        self.send(response(&self.cursor(), now_micros(), Activity::Heartbeat(pb::Heartbeat {}))).await
    }

    /// Sends one item (if it is wanted) and moves past it.
    async fn deliver(&mut self, row: &FeedRow, kind: pb::ActivityKind, activity: &Activity) -> Result<(), Stop> {
        if row.project_id == self.req.project && self.req.filter.matches(row, kind) {
            let activity = if self.req.include_payload && carries_payload(kind) {
                // The broadcast holds items without bodies; this watcher wants them.
                match item(&self.store, row.clone(), true).await? {
                    Some(i) => i.activity,
                    None => activity.clone(),
                }
            } else {
                activity.clone()
            };
            self.cursor = row.seq;
            self.send(response(&self.cursor(), row.time, activity)).await?;
        }
        self.cursor = self.cursor.max(row.seq);
        Ok(())
    }

    /// Reads the log from the cursor to what is committed now.
    async fn catch_up(&mut self) -> Result<(), Stop> {
        loop {
            let horizon = self.store.feed_horizon().await?;
            check_not_expired(&self.store, self.cursor, horizon).await.map_err(Stop::Failed)?;
            let rows = self.store.feed_page(&self.req.project, self.cursor, horizon, PAGE).await?;
            let full = rows.len() == PAGE as usize;
            for row in rows {
                if let Some(i) = item(&self.store, row, false).await? {
                    self.deliver(&i.row, i.kind, &i.activity).await?;
                }
            }
            if !full {
                // Nothing else of this project up to the horizon.
                self.cursor = self.cursor.max(horizon);
                return Ok(());
            }
        }
    }

    /// Follows the broadcast until it no longer continues from the cursor.
    async fn follow(&mut self, live: &mut broadcast::Receiver<Arc<FeedBatch>>, every: Duration) -> Result<(), Stop> {
        let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            let batch = tokio::select! {
                b = live.recv() => b,
                _ = beat.tick() => {
                    self.heartbeat().await?;
                    continue;
                }
                _ = self.out.closed() => return Err(Stop::Gone),
            };
            let batch = match batch {
                Ok(b) => b,
                // Fell behind the ring: the log still has everything.
                Err(broadcast::error::RecvError::Lagged(_)) => return Ok(()),
                Err(broadcast::error::RecvError::Closed) => return Err(Stop::Gone),
            };
            if batch.upto <= self.cursor {
                continue;
            }
            if batch.after > self.cursor {
                return Ok(());
            }
            let sent_before = self.sent;
            for i in &batch.items {
                if i.row.seq > self.cursor {
                    self.deliver(&i.row, i.kind, &i.activity).await?;
                }
            }
            self.cursor = self.cursor.max(batch.upto);
            if self.sent != sent_before {
                beat.reset();
            }
        }
    }
}

fn carries_payload(kind: pb::ActivityKind) -> bool {
    matches!(kind, pb::ActivityKind::EventReceived | pb::ActivityKind::AttemptFinished)
}
