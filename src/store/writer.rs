//! Group commit: concurrent ingests and publishes are batched into one transaction by a single
//! writer task, so durability costs one commit (one WAL sync) per batch, not per event.
//!
//! Callers wait for their own outcome; a write is acknowledged only after its batch committed.
//! The queue is bounded: when the database falls behind, callers wait instead of the server
//! buffering without limit.

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{EventWrite, Store, StoreError, WriteOutcome};
use crate::timeutil::now_micros;

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 512;
/// Writes waiting for the writer task before callers are held back.
const QUEUE: usize = 4096;

type Reply = oneshot::Sender<Result<WriteOutcome, StoreError>>;

/// Hands writes to the writer task. Cheap to clone.
#[derive(Clone)]
pub struct GroupWriter {
    queue: mpsc::Sender<(EventWrite, Reply)>,
}

impl GroupWriter {
    /// Starts the writer task; it ends when every `GroupWriter` clone is dropped, after
    /// committing what was queued.
    pub fn start(
        store: Store,
        on_commit: impl Fn(&[(EventWrite, WriteOutcome)]) + Send + 'static,
    ) -> (Self, JoinHandle<()>) {
        let (queue, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(run(store, rx, on_commit));
        (Self { queue }, task)
    }

    /// Stores `write` durably; returns once its transaction has committed.
    pub async fn write(&self, write: EventWrite) -> Result<WriteOutcome, StoreError> {
        let (reply, outcome) = oneshot::channel();
        self.queue.send((write, reply)).await.map_err(|_| StoreError::Unavailable(sqlx::Error::PoolClosed))?;
        outcome.await.map_err(|_| StoreError::Unavailable(sqlx::Error::PoolClosed))?
    }
}

async fn run(
    store: Store,
    mut rx: mpsc::Receiver<(EventWrite, Reply)>,
    on_commit: impl Fn(&[(EventWrite, WriteOutcome)]),
) {
    let mut queued = Vec::with_capacity(MAX_BATCH);
    // Whatever arrived while the previous batch committed forms the next one: under load
    // batches grow by themselves, and a lone write is committed at once.
    while rx.recv_many(&mut queued, MAX_BATCH).await > 0 {
        let (batch, replies): (Vec<EventWrite>, Vec<Reply>) = queued.drain(..).unzip();
        let outcomes = store.write_events(&batch, now_micros()).await;
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
