//! Group commit: concurrent writes of one kind are batched into one transaction by a single
//! writer task, so durability costs one commit (one WAL append) per batch, not per write.
//!
//! Two kinds go through it: accepted events (ingest and `PublishEvent`, [`GroupWriter`]) and the
//! dispatcher's attempt results ([`AttemptWriter`]). Callers wait for their own outcome; a write
//! is acknowledged only after its batch committed. The queue is bounded: when the database falls
//! behind, callers wait instead of the server buffering without limit.

use std::future::Future;

use futures::FutureExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::direct::Direct;
use super::{AttemptResult, EventWrite, Store, StoreError, WriteOutcome};
use crate::domain::breaker;
use crate::timeutil::{Micros, now_micros};

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 512;
/// Writes waiting for the writer task before callers are held back.
const QUEUE: usize = 4096;

/// One kind of write and how a batch of them is committed.
pub trait Batch: Send + Sync + 'static {
    /// The `kind` label of the writer's metrics.
    const KIND: &'static str;
    type Write: Clone + Send + Sync + 'static;
    type Outcome: Clone + Send + 'static;

    /// Commits `batch` in one transaction; one outcome per write, in order.
    fn commit(
        store: &Store,
        batch: &[Self::Write],
        now: Micros,
    ) -> impl Future<Output = Result<Vec<Self::Outcome>, StoreError>> + Send;

    /// SQLite: the same commit, run synchronously through the writer's own connection.
    const DIRECT: Option<DirectCommit<Self>> = None;
}

/// A synchronous commit of a batch on SQLite (see `direct.rs`).
pub type DirectCommit<B> =
    fn(&mut Direct, &[<B as Batch>::Write], Micros) -> Result<Vec<<B as Batch>::Outcome>, StoreError>;

/// Accepted events with their deliveries and activity.
pub struct Events;

impl Batch for Events {
    const KIND: &'static str = "events";
    type Write = EventWrite;
    type Outcome = WriteOutcome;

    async fn commit(store: &Store, batch: &[EventWrite], now: Micros) -> Result<Vec<WriteOutcome>, StoreError> {
        store.write_events(batch, now).await
    }

    const DIRECT: Option<DirectCommit<Self>> = Some(Direct::write_events);
}

/// Attempt results; the outcome is what the breaker decided.
pub struct Attempts;

impl Batch for Attempts {
    const KIND: &'static str = "attempts";
    type Write = AttemptResult;
    type Outcome = breaker::Transition;

    async fn commit(
        store: &Store,
        batch: &[AttemptResult],
        now: Micros,
    ) -> Result<Vec<breaker::Transition>, StoreError> {
        store.record_attempts(batch, now).await
    }

    const DIRECT: Option<DirectCommit<Self>> = Some(Direct::record_attempts);
}

/// Commits `batch`, synchronously when the store and the kind allow it, else through sqlx; one
/// outcome per write.
pub(super) async fn commit<B: Batch>(
    store: &Store,
    batch: &[B::Write],
    now: Micros,
) -> Vec<Result<B::Outcome, StoreError>> {
    let (Some(direct), Some(commit)) = (store.direct(), B::DIRECT) else {
        return whole_or_each(batch, |b| B::commit(store, b, now)).await;
    };
    // Held for the whole commit: SQLite has one writer at a time.
    let _lock = store.write_lock().await;
    let mut direct = direct.lock().expect("direct connection poisoned");
    // Synchronous: the commits are ready at once, and the connection is not held across a wait.
    whole_or_each(batch, |b| std::future::ready(commit(&mut direct, b, now)))
        .now_or_never()
        .expect("a synchronous commit is ready at once")
}

/// Commits `batch` in one transaction; when that fails for another reason than an outage (one
/// bad row fails the whole statement, and aborts a PostgreSQL transaction), each write on its
/// own, so one write's error does not fail its neighbours.
async fn whole_or_each<'b, W, O, F>(batch: &'b [W], mut commit: impl FnMut(&'b [W]) -> F) -> Vec<Result<O, StoreError>>
where
    F: Future<Output = Result<Vec<O>, StoreError>>,
{
    match commit(batch).await {
        Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
        Err(e) if batch.len() == 1 => vec![Err(e)],
        Err(StoreError::Unavailable(e)) => batch.iter().map(|_| Err(StoreError::Unavailable(e.clone()))).collect(),
        Err(_) => {
            let mut out = Vec::with_capacity(batch.len());
            for w in batch {
                out.push(commit(std::slice::from_ref(w)).await.map(|mut o| o.remove(0)));
            }
            out
        }
    }
}

/// A hook whose `after` runs in the context of the main runtime (from the writer's thread).
struct OnRuntime<H>(H, tokio::runtime::Handle);

impl<B: Batch, H: CommitHook<B>> CommitHook<B> for OnRuntime<H> {
    type Taken = H::Taken;
    fn before(&self, batch: &mut [B::Write], now: Micros) -> Self::Taken {
        self.0.before(batch, now)
    }
    fn after(&self, batch: Vec<B::Write>, committed: &[Option<B::Outcome>], taken: Self::Taken) {
        let _main = self.1.enter();
        self.0.after(batch, committed, taken)
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

/// What runs around each batch's transaction, on the writer task: `before` may adjust the writes
/// (the dispatcher leases the fresh deliveries it will send from memory) and returns what it
/// took; `after` gets the writes, the outcome of each that committed (`None`: it failed) and
/// that. Both must be quick: the next batch waits for them.
pub trait CommitHook<B: Batch>: Send + 'static {
    type Taken: Send;
    fn before(&self, batch: &mut [B::Write], now: Micros) -> Self::Taken;
    fn after(&self, batch: Vec<B::Write>, committed: &[Option<B::Outcome>], taken: Self::Taken);
}

/// No hook.
impl<B: Batch> CommitHook<B> for () {
    type Taken = ();
    fn before(&self, _: &mut [B::Write], _: Micros) {}
    fn after(&self, _: Vec<B::Write>, _: &[Option<B::Outcome>], (): ()) {}
}

impl<B: Batch> Writer<B> {
    /// Starts the writer task; it ends when every clone is dropped, after committing what was
    /// queued.
    pub fn start(store: Store, hook: impl CommitHook<B>) -> (Self, JoinHandle<()>) {
        let (queue, rx) = mpsc::channel(QUEUE);
        // SQLite: the batches run synchronously on this thread and block it. PostgreSQL: they
        // run on a connection of the thread's own, whose round trips its runtime answers at
        // once (`Store::with_own_writer_connection`).
        let store = match store.with_own_writer_connection() {
            Some(own) => own,
            None if store.direct().is_some() && B::DIRECT.is_some() => store,
            None => return (Self { queue }, tokio::spawn(run::<B, _>(store, rx, hook))),
        };
        // A runtime of its own, so that the batches never hold up a worker of the main one nor
        // wait for one. The hook's work (sending fresh deliveries) is spawned on the main runtime.
        let main = tokio::runtime::Handle::current();
        let (done, finished) = oneshot::channel();
        std::thread::Builder::new()
            .name("loft-writer".into())
            .spawn(move || {
                let runtime =
                    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("writer runtime");
                runtime.block_on(run::<B, _>(store, rx, OnRuntime(hook, main)));
                let _ = done.send(());
            })
            .expect("spawning the writer thread");
        (Self { queue }, tokio::spawn(async move { finished.await.unwrap_or(()) }))
    }

    /// Stores `write` durably; returns once its transaction has committed.
    pub async fn write(&self, write: B::Write) -> Result<B::Outcome, StoreError> {
        let (reply, outcome) = oneshot::channel();
        self.queue.send((write, reply)).await.map_err(|_| StoreError::unavailable(sqlx::Error::PoolClosed))?;
        outcome.await.map_err(|_| StoreError::unavailable(sqlx::Error::PoolClosed))?
    }
}

async fn run<B: Batch, H: CommitHook<B>>(store: Store, mut rx: mpsc::Receiver<(B::Write, Reply<B>)>, hook: H) {
    let mut queued = Vec::with_capacity(MAX_BATCH);
    // Whatever arrived while the previous batch committed forms the next one: under load
    // batches grow by themselves, and a lone write is committed at once.
    while rx.recv_many(&mut queued, MAX_BATCH).await > 0 {
        let (mut batch, replies): (Vec<B::Write>, Vec<Reply<B>>) = queued.drain(..).unzip();
        let now = now_micros();
        let taken = hook.before(&mut batch, now);
        let outcomes = commit::<B>(&store, &batch, now).await;
        metrics::histogram!("loft_group_commit_writes", "kind" => B::KIND).record(batch.len() as f64);
        metrics::histogram!("loft_group_commit_seconds", "kind" => B::KIND).record((now_micros() - now) as f64 / 1e6);
        let mut committed = Vec::with_capacity(batch.len());
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            committed.push(outcome.as_ref().ok().cloned());
            let _ = reply.send(outcome);
        }
        hook.after(batch, &committed, taken);
    }
}
