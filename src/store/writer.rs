//! Group commit: concurrent writes of one kind are batched into one transaction by a single
//! writer task, so durability costs one commit (one WAL append) per batch, not per write.
//!
//! Two kinds go through it: accepted events (ingest and `PublishEvent`, [`GroupWriter`]) and the
//! dispatcher's attempt results ([`AttemptWriter`]). Callers wait for their own outcome; a write
//! is acknowledged only after its batch committed. The queue is bounded: when the database falls
//! behind, callers wait instead of the server buffering without limit.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{AttemptResult, EventWrite, Store, StoreError, WriteOutcome};
use crate::domain::breaker;
use crate::timeutil::{Micros, now_micros};

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 512;
/// Writes waiting for the writer task before callers are held back.
const QUEUE: usize = 4096;

/// One kind of write and how a batch of them is committed.
pub trait Batch: Send + Sync + 'static {
    type Write: Clone + Send + Sync + 'static;
    type Outcome: Clone + Send + 'static;

    /// Commits `batch` (one transaction when it can); one outcome per write, in order.
    fn commit(
        store: &Store,
        batch: &[Self::Write],
        now: Micros,
    ) -> impl Future<Output = Vec<Result<Self::Outcome, StoreError>>> + Send;
}

/// Accepted events with their deliveries and activity.
pub struct Events;

impl Batch for Events {
    type Write = EventWrite;
    type Outcome = WriteOutcome;

    async fn commit(store: &Store, batch: &[EventWrite], now: Micros) -> Vec<Result<WriteOutcome, StoreError>> {
        store.write_events(batch, now).await
    }
}

/// Attempt results; the outcome is what the breaker decided.
pub struct Attempts;

impl Batch for Attempts {
    type Write = AttemptResult;
    type Outcome = breaker::Transition;

    async fn commit(
        store: &Store,
        batch: &[AttemptResult],
        now: Micros,
    ) -> Vec<Result<breaker::Transition, StoreError>> {
        store.record_attempts(batch, now).await
    }
}

type Reply<B> = oneshot::Sender<Result<<B as Batch>::Outcome, StoreError>>;

/// Hands writes to the writer task. Cheap to clone.
pub struct Writer<B: Batch> {
    queue: mpsc::Sender<(B::Write, Reply<B>)>,
}

/// The writer of accepted events.
pub type GroupWriter = Writer<Events>;
/// The writer of attempt results.
pub type AttemptWriter = Writer<Attempts>;

impl<B: Batch> Clone for Writer<B> {
    fn clone(&self) -> Self {
        Self { queue: self.queue.clone() }
    }
}

impl<B: Batch> Writer<B> {
    /// Starts the writer task; it ends when every clone is dropped, after committing what was
    /// queued. `on_commit` runs after each committed batch with what it committed.
    pub fn start(
        store: Store,
        on_commit: impl Fn(&[(B::Write, B::Outcome)]) + Send + 'static,
    ) -> (Self, JoinHandle<()>) {
        let (queue, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(run::<B>(store, rx, on_commit));
        (Self { queue }, task)
    }

    /// Stores `write` durably; returns once its transaction has committed.
    pub async fn write(&self, write: B::Write) -> Result<B::Outcome, StoreError> {
        let (reply, outcome) = oneshot::channel();
        self.queue.send((write, reply)).await.map_err(|_| StoreError::Unavailable(sqlx::Error::PoolClosed))?;
        outcome.await.map_err(|_| StoreError::Unavailable(sqlx::Error::PoolClosed))?
    }
}

async fn run<B: Batch>(
    store: Store,
    mut rx: mpsc::Receiver<(B::Write, Reply<B>)>,
    on_commit: impl Fn(&[(B::Write, B::Outcome)]),
) {
    let mut queued = Vec::with_capacity(MAX_BATCH);
    // Whatever arrived while the previous batch committed forms the next one: under load
    // batches grow by themselves, and a lone write is committed at once.
    while rx.recv_many(&mut queued, MAX_BATCH).await > 0 {
        let (batch, replies): (Vec<B::Write>, Vec<Reply<B>>) = queued.drain(..).unzip();
        let outcomes = B::commit(&store, &batch, now_micros()).await;
        let mut committed = Vec::with_capacity(batch.len());
        for ((write, reply), outcome) in batch.into_iter().zip(replies).zip(outcomes) {
            if let Ok(o) = &outcome {
                committed.push((write, o.clone()));
            }
            let _ = reply.send(outcome);
        }
        if !committed.is_empty() {
            on_commit(&committed);
        }
    }
}
