//! The dispatcher: claims due deliveries under a lease, sends them with per-destination
//! concurrency limits, judges the outcome and records it.
//!
//! The database is the source of truth. Fresh deliveries go straight from memory: as a batch of
//! accepted events commits, the dispatcher leases (in that same transaction) those it can start
//! at once, and sends them from the writes it already holds once the commit is done — no claim,
//! no read back ([`FreshDeliveries`]). Everything else is claimed: the rest of a batch wakes the
//! claim loop as soon as it commits, and a poll finds what came due later (retries, work of a
//! crashed node whose lease expired, deliveries held until `deliver_time`). A lease covers the
//! whole attempt, so another node never sends the delivery at the same time, and a node that
//! dies mid-attempt leaves a lease that simply expires.
//!
//! Claims are fair: each takes the head of every ORDERED destination that has nothing in flight,
//! and from every other destination at most what this node can start soon (its free
//! `max_in_flight` slots plus what the destination answers within [`PREFETCH_HORIZON`] at its
//! recent pace, and the rate-limit tokens it will have within [`PACE_HORIZON`]),
//! round-robin across destinations (see `store::dialect`). One destination's backlog, slow
//! receiver or rate limit thus never fills the node, and nothing claimed waits out its lease in
//! memory. A finished attempt wakes the claim loop when the database may hold more, so freed
//! slots are refilled at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::outcome::{Verdict, judge};
use super::sender::{AttemptRecord, OutboundRequest, REDACTED, Sender};
use crate::crypto::Cipher;
use crate::domain::breaker::Transition;
use crate::domain::destination::{self, DEFAULT_TIMEOUT_MS, DestinationAuth, DestinationSpec};
use crate::domain::headers::is_hop_by_hop;
use crate::domain::retry::RetryPolicy;
use crate::ids::{AttemptId, DestinationId, ProjectId};
use crate::intake::InboundRequest;
use crate::routing::router::Router;
use crate::signing::{DestinationKey, standard};
use crate::store::{
    AttemptResult, AttemptWriter, CommitHook, DueDelivery, EventBatch, EventWrite, HealthChange, NewActivity,
    NewAttempt, Store, StoreError, WriteOutcome,
};
use crate::timeutil::{Micros, now_micros, to_micros};

/// How long a claim holds a delivery. It covers an attempt that starts within a few seconds of
/// its claim and runs the default timeout, so the common attempt needs no lease write of its
/// own; one that waited longer (slots, rate limit) or has a longer timeout extends the lease to
/// its own timeout plus [`LEASE_MARGIN`] before it is sent.
const LEASE: Duration = Duration::from_millis(DEFAULT_TIMEOUT_MS + 15_000);
/// Time to record an attempt after its timeout.
const LEASE_MARGIN: Duration = Duration::from_secs(10);
/// Deliveries in flight on this node at most.
const MAX_IN_FLIGHT: usize = 512;
/// Deliveries claimed per query.
const CLAIM_BATCH: u32 = 256;
/// Deliveries taken of a destination beyond its free `max_in_flight` slots: what it answers
/// within this horizon at its recent pace, and at least one more round. Those are sent while
/// the next claim waits its turn at the writer (a few milliseconds under load); without them a
/// destination that answers quickly idles between claims. A slow destination thus holds one
/// extra round at most, a fast one enough to keep its slots busy.
const PREFETCH_HORIZON: Duration = Duration::from_millis(20);
/// Most deliveries taken of a destination, in multiples of its `max_in_flight`; they wait for
/// slots in memory, well inside their [`LEASE`].
const MAX_PREFETCH_ROUNDS: u32 = 16;
/// How long a destination's answers are counted to measure its pace.
const PACE_WINDOW: Duration = Duration::from_millis(100);
/// How many deliveries a claim may take of a destination whose settings this node has not
/// loaded yet; its first attempt loads them, and later claims follow them.
const UNKNOWN_CAP: u32 = 8;
/// A claim takes no more of a rate-limited destination than its tokens allow within this
/// horizon, well inside [`LEASE`].
const PACE_HORIZON: Duration = Duration::from_secs(5);
/// How often to look for deliveries that came due without a wake-up.
const POLL: Duration = Duration::from_millis(500);
/// How long a destination's settings are cached.
const DESTINATION_TTL: Duration = Duration::from_secs(2);

/// Wakes the dispatcher when deliveries were committed. Cheap to clone.
#[derive(Clone, Default)]
pub struct Wake(Arc<Notify>);

impl Wake {
    pub fn notify(&self) {
        self.0.notify_one();
    }
}

/// A destination ready to send to: its settings with the keys opened, and what this node knows
/// of it between reloads.
struct Target {
    spec: DestinationSpec,
    keys: Vec<DestinationKey>,
    /// The auth header and its value; the value is redacted in the attempt log.
    auth: Option<(String, String)>,
    live: Arc<Live>,
    /// Not paused nor disabled when loaded.
    active: bool,
    loaded: Instant,
    /// [`Dispatcher::forget`]'s count when loaded.
    generation: u64,
}

impl Target {
    fn ordered(&self) -> bool {
        self.spec.ordering == destination::Ordering::Ordered
    }

    /// How many more of its deliveries this node may take on now, given what it holds: free
    /// `max_in_flight` slots plus what it answers within [`PREFETCH_HORIZON`] (one round at
    /// least), and for a rate limit the tokens due within [`PACE_HORIZON`] that taken deliveries
    /// do not already wait for.
    fn cap(&self, held: Option<&Backlog>) -> u32 {
        let (claimed, unpaced) = held.map_or((0, 0), |b| (b.claimed, b.unpaced));
        let slots = self.spec.max_in_flight.max(1);
        let ahead = (self.live.answers_per_second() * PREFETCH_HORIZON.as_secs_f64()).ceil() as u32;
        let ahead = ahead.clamp(slots, slots.saturating_mul(MAX_PREFETCH_ROUNDS - 1));
        let mut cap = (slots + ahead).saturating_sub(claimed);
        if let Some(limit) = self.spec.rate_limit {
            let soon = self.live.tokens(limit) + f64::from(limit.per_second) * PACE_HORIZON.as_secs_f64();
            cap = cap.min((soon.floor() as u32).saturating_sub(unpaced));
        }
        cap
    }
}

/// Kept across reloads of a destination's settings.
struct Live {
    /// `max_in_flight` slots.
    slots: Semaphore,
    /// While the circuit is open: until when (µs). 0 when closed.
    open_until: AtomicI64,
    /// After the cool-down, one attempt probes; the others wait for its outcome.
    probing: AtomicBool,
    /// Token bucket of the destination's rate limit: tokens, and when last refilled.
    bucket: Mutex<(f64, Instant)>,
    /// How fast it answers.
    answers: Mutex<Answers>,
}

/// Answers counted over [`PACE_WINDOW`]s.
struct Answers {
    /// Start of the current window.
    since: Instant,
    /// In the current window.
    count: u32,
    /// Over the last full window.
    per_second: f64,
}

impl Default for Answers {
    fn default() -> Self {
        Self { since: Instant::now(), count: 0, per_second: 0.0 }
    }
}

impl Live {
    fn new(spec: &DestinationSpec) -> Self {
        Self {
            slots: Semaphore::new(spec.max_in_flight.max(1) as usize),
            open_until: AtomicI64::new(0),
            probing: AtomicBool::new(false),
            bucket: Mutex::new((f64::from(spec.rate_limit.map_or(0, |r| r.burst)), Instant::now())),
            answers: Mutex::default(),
        }
    }

    /// The destination answered an attempt.
    fn answered(&self) {
        let mut a = self.answers.lock().expect("answers poisoned");
        a.count += 1;
        let elapsed = a.since.elapsed();
        if elapsed >= PACE_WINDOW {
            *a = Answers { since: Instant::now(), count: 0, per_second: f64::from(a.count) / elapsed.as_secs_f64() };
        }
    }

    /// Answers per second lately: the last full window's pace, or the current window's when it
    /// is faster or the last one is stale.
    fn answers_per_second(&self) -> f64 {
        let a = self.answers.lock().expect("answers poisoned");
        let elapsed = a.since.elapsed();
        let current = f64::from(a.count) / elapsed.as_secs_f64().max(1e-3);
        if elapsed >= 2 * PACE_WINDOW { current } else { a.per_second.max(current) }
    }

    /// Tokens in the bucket now, without taking one.
    fn tokens(&self, limit: crate::domain::RateLimit) -> f64 {
        let b = self.bucket.lock().expect("bucket poisoned");
        let refill = b.1.elapsed().as_secs_f64() * f64::from(limit.per_second);
        (b.0 + refill).min(f64::from(limit.burst))
    }

    /// Waits until the rate limit lets one more request go (excess waits, never drops). The
    /// limit is per node (documented): each node paces its own attempts.
    async fn pace(&self, limit: Option<crate::domain::RateLimit>) {
        let Some(limit) = limit else { return };
        loop {
            let wait = {
                let mut b = self.bucket.lock().expect("bucket poisoned");
                let now = Instant::now();
                let refill = now.duration_since(b.1).as_secs_f64() * f64::from(limit.per_second);
                b.0 = (b.0 + refill).min(f64::from(limit.burst));
                b.1 = now;
                if b.0 >= 1.0 {
                    b.0 -= 1.0;
                    return;
                }
                Duration::from_secs_f64((1.0 - b.0) / f64::from(limit.per_second))
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// What this node has claimed of one destination and not finished.
#[derive(Default)]
struct Backlog {
    claimed: u32,
    /// Of those, still waiting for a rate-limit token.
    unpaced: u32,
}

type Backlogs = Arc<Mutex<HashMap<String, Backlog>>>;

/// One claimed delivery, counted in its destination's [`Backlog`] until it was answered (or,
/// for an ORDERED destination, until dropped after its result is recorded).
struct ClaimGuard {
    backlogs: Backlogs,
    destination: String,
    paced: bool,
    /// No longer counted.
    released: bool,
}

impl ClaimGuard {
    fn new(backlogs: &Backlogs, destination: &str) -> Self {
        Self::counted(backlogs, &mut backlogs.lock().expect("backlogs poisoned"), destination)
    }

    /// Counts the delivery in `all`, the locked `backlogs`.
    fn counted(backlogs: &Backlogs, all: &mut HashMap<String, Backlog>, destination: &str) -> Self {
        let b = all.entry(destination.to_owned()).or_default();
        b.claimed += 1;
        b.unpaced += 1;
        Self { backlogs: backlogs.clone(), destination: destination.to_owned(), paced: false, released: false }
    }

    /// The destination answered: the delivery no longer takes a place in its backlog, while its
    /// result is recorded (its lease keeps other claims off it meanwhile).
    fn release(&mut self) {
        if std::mem::replace(&mut self.released, true) {
            return;
        }
        let mut all = self.backlogs.lock().expect("backlogs poisoned");
        if let Some(b) = all.get_mut(&self.destination) {
            b.claimed = b.claimed.saturating_sub(1);
            if !self.paced {
                b.unpaced = b.unpaced.saturating_sub(1);
            }
            if b.claimed == 0 {
                all.remove(&self.destination);
            }
        }
    }

    /// The delivery got its rate-limit token.
    fn paced(&mut self) {
        if !std::mem::replace(&mut self.paced, true)
            && !self.released
            && let Some(b) = self.backlogs.lock().expect("backlogs poisoned").get_mut(&self.destination)
        {
            b.unpaced = b.unpaced.saturating_sub(1);
        }
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        self.release();
    }
}

#[derive(Clone)]
pub struct Dispatcher {
    store: Store,
    /// Attempt results are group-committed: concurrent attempts share one transaction.
    attempts: AttemptWriter,
    sender: Sender,
    cipher: Cipher,
    router: Router,
    wake: Wake,
    in_flight: Arc<Semaphore>,
    /// Locked before `backlogs` where both are held.
    targets: Arc<Mutex<HashMap<String, Arc<Target>>>>,
    /// Bumped by [`Dispatcher::forget`]: targets loaded before are reloaded before their next use.
    generation: Arc<AtomicU64>,
    backlogs: Backlogs,
    /// The database may hold deliveries due now that the last claim left (a destination was at
    /// its cap, the claim was full, or a commit could not hand everything over): a finished
    /// attempt then wakes the claim loop. Otherwise a finished attempt has nothing to refill
    /// and the claim, a write transaction, is spared.
    left_behind: Arc<AtomicBool>,
    /// A destination failing continuously this long is disabled.
    disable_after: Duration,
}

/// What an attempt starts from.
enum Work {
    /// Claimed from the database: read it first.
    Claimed(String),
    /// Handed over from memory by the commit that stored it.
    Fresh(Box<DueDelivery>),
}

impl Dispatcher {
    pub fn new(
        store: Store,
        sender: Sender,
        cipher: Cipher,
        router: Router,
        wake: Wake,
        disable_after: Duration,
    ) -> Self {
        let (attempts, _) = AttemptWriter::start(store.clone(), ());
        Self {
            disable_after,
            attempts,
            store,
            sender,
            cipher,
            router,
            wake,
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            targets: Arc::default(),
            generation: Arc::default(),
            backlogs: Arc::default(),
            left_behind: Arc::default(),
        }
    }

    /// Destination settings or state changed on this node: reload them before sending again
    /// (and before handing fresh deliveries over, which must not outrun a pause or a switch to
    /// ORDERED). Another node's changes are seen within [`DESTINATION_TTL`].
    pub fn forget(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The hook of the event writer that hands fresh deliveries over.
    pub fn fresh_deliveries(&self) -> FreshDeliveries {
        FreshDeliveries(self.clone())
    }

    /// Starts one attempt; `permit` is its place among the node's attempts in flight.
    fn spawn_attempt(&self, work: Work, guard: ClaimGuard, permit: OwnedSemaphorePermit) {
        let via = if matches!(work, Work::Fresh(_)) { "memory" } else { "claim" };
        metrics::counter!("loft_attempts_started_total", "via" => via).increment(1);
        let this = self.clone();
        tokio::spawn(async move {
            let destination = guard.destination.clone();
            this.attempt(work, guard).await;
            drop(permit);
            // A slot is free: refill it if the database holds more, or, for an ORDERED
            // destination, let the next one go.
            let ordered = this.targets.lock().expect("targets poisoned").get(&destination).is_none_or(|t| t.ordered());
            if ordered || this.left_behind.load(Ordering::Acquire) {
                this.wake.notify();
            }
        });
    }

    /// Claims and sends until `shutdown`; then waits for the attempts in flight to be recorded.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let room = self.in_flight.available_permits().min(CLAIM_BATCH as usize) as u32;
            let claimed = if room == 0 {
                self.left_behind.store(true, Ordering::Release);
                Vec::new()
            } else {
                let now = now_micros();
                let caps = self.caps();
                // Cleared before the claim reads, so a commit that leaves work after it is seen.
                self.left_behind.store(false, Ordering::Release);
                match self.store.claim_due(now, now + LEASE.as_micros() as i64, room, &caps, UNKNOWN_CAP).await {
                    Ok(claimed) => {
                        let found = if claimed.is_empty() { "none" } else { "some" };
                        metrics::counter!("loft_claims_total", "found" => found).increment(1);
                        if !claimed.is_empty() || caps.iter().any(|c| c.1 == 0) {
                            self.left_behind.store(true, Ordering::Release);
                        }
                        claimed
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "claiming due deliveries failed");
                        self.left_behind.store(true, Ordering::Release);
                        Vec::new()
                    }
                }
            };
            let full = claimed.len() as u32 == room && room > 0;
            for claim in claimed {
                let guard = ClaimGuard::new(&self.backlogs, &claim.destination_id);
                let permit = self.in_flight.clone().acquire_owned().await.expect("semaphore never closed");
                self.spawn_attempt(Work::Claimed(claim.id), guard, permit);
            }
            if full {
                continue;
            }
            tokio::select! {
                _ = self.wake.0.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        // Let attempts in flight finish and be recorded (their leases cover them otherwise).
        let _ = tokio::time::timeout(Duration::from_secs(10), self.in_flight.acquire_many(MAX_IN_FLIGHT as u32)).await;
    }

    /// How many more deliveries each destination this node knows of may claim now: free
    /// `max_in_flight` slots, and for a rate limit the tokens due within [`PACE_HORIZON`] that
    /// claimed deliveries do not already wait for. ORDERED destinations are claimed head by
    /// head, whatever their cap.
    fn caps(&self) -> Vec<(String, u32)> {
        // Lock order: `targets`, then `backlogs` (as the commit hook takes them).
        let targets = self.targets.lock().expect("targets poisoned");
        let backlogs = self.backlogs.lock().expect("backlogs poisoned");
        let mut caps = Vec::with_capacity(targets.len() + backlogs.len());
        for (destination, t) in targets.iter() {
            caps.push((destination.clone(), t.cap(backlogs.get(destination))));
        }
        for (destination, b) in backlogs.iter() {
            if !targets.contains_key(destination) {
                caps.push((destination.clone(), UNKNOWN_CAP.saturating_sub(b.claimed)));
            }
        }
        caps
    }

    /// Whether a loaded target may be used as it is.
    fn current(&self, t: &Target) -> bool {
        t.loaded.elapsed() < DESTINATION_TTL && t.generation == self.generation.load(Ordering::Acquire)
    }

    async fn target(&self, project: &str, destination: &str) -> Result<Option<Arc<Target>>, StoreError> {
        if let Some(t) = self.targets.lock().expect("targets poisoned").get(destination)
            && self.current(t)
        {
            return Ok(Some(t.clone()));
        }
        let generation = self.generation.load(Ordering::Acquire);
        let (Ok(project_id), Ok(id)) = (project.parse::<ProjectId>(), destination.parse::<DestinationId>()) else {
            return Ok(None);
        };
        let stored = match self.store.get_document::<DestinationSpec>(project_id, &id).await {
            Ok(d) => d,
            Err(StoreError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        let spec = stored.spec;
        let now = now_micros();
        let keys = spec
            .live_keys(now)
            .filter_map(|k| k.secret.open(&self.cipher).ok().and_then(|s| DestinationKey::parse(&s).ok()))
            .collect();
        let open = |s: &crate::domain::secret::SealedSecret| s.open(&self.cipher).unwrap_or_default();
        let auth = match &spec.auth {
            DestinationAuth::None => None,
            DestinationAuth::Bearer { token } => Some(("authorization".to_owned(), format!("Bearer {}", open(token)))),
            DestinationAuth::Basic { username, password } => Some((
                "authorization".to_owned(),
                format!("Basic {}", STANDARD.encode(format!("{username}:{}", open(password)))),
            )),
            DestinationAuth::Header { name, value } => Some((name.clone(), open(value))),
        };
        // Keep what an earlier load learnt, so a reload never doubles the concurrency nor
        // forgets an open circuit.
        let previous = self.targets.lock().expect("targets poisoned").get(destination).map(|t| t.live.clone());
        let fresh = previous.is_none();
        let live = previous.unwrap_or_else(|| Arc::new(Live::new(&spec)));
        // The database has the last word on the circuit (another node may have opened it, a
        // resume closes it); memory only spares a read per attempt between reloads.
        let health = self.store.destination_health(destination).await?;
        let open_until = if health.circuit == "OPEN" { health.circuit_retry_time.unwrap_or(0) } else { 0 };
        let mut targets = self.targets.lock().expect("targets poisoned");
        // Several attempts may have loaded the destination at once: the first one stored wins
        // the in-memory state, or two token buckets would let twice the rate through.
        let live = match targets.get(destination) {
            Some(t) if fresh => t.live.clone(),
            _ => live,
        };
        live.open_until.store(open_until, Ordering::Release);
        let active = health.state == "ACTIVE";
        let target = Arc::new(Target { spec, keys, auth, live, active, loaded: Instant::now(), generation });
        targets.insert(destination.to_owned(), target.clone());
        Ok(Some(target))
    }

    /// One attempt of one claimed delivery, recorded. Errors are logged: the lease then
    /// expires and the delivery is attempted again, so nothing is lost.
    async fn attempt(&self, work: Work, mut guard: ClaimGuard) {
        let id = match &work {
            Work::Claimed(id) => id.clone(),
            Work::Fresh(due) => due.id.clone(),
        };
        if let Err(e) = self.try_attempt(work, &mut guard).await {
            tracing::warn!(delivery = id, error = %e, "attempt not recorded; it will be retried when its lease expires");
        }
    }

    async fn try_attempt(&self, work: Work, guard: &mut ClaimGuard) -> Result<(), StoreError> {
        let due = match work {
            Work::Fresh(due) => *due,
            Work::Claimed(id) => match self.store.due_delivery(&id).await {
                Ok(d) => d,
                Err(StoreError::NotFound) => return Ok(()),
                Err(e) => return Err(e),
            },
        };
        let id = due.id.as_str();
        let Some(target) = self.target(&due.project_id, &due.destination_id).await? else {
            // The destination was deleted after the delivery was created.
            return self.record(&due, None, "destination no longer exists", None, false).await.map(|_| ());
        };
        let slot = target.live.slots.acquire().await.expect("semaphore never closed");
        let now = now_micros();
        // An open circuit holds the destination's deliveries (their retries are not spent):
        // defer them past the cool-down; after it, one probe goes and the others wait for it.
        let open_until = target.live.open_until.load(Ordering::Acquire);
        let mut probe = false;
        if open_until > 0 {
            // Deferred no longer than a settings reload: the database may have closed the
            // circuit meanwhile (a resume, another node's successful probe).
            let until = if now < open_until {
                Some(open_until.min(now + DESTINATION_TTL.as_micros() as i64))
            } else if target.live.probing.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_err() {
                Some(now + target.spec.timeout_ms as i64 * 1000 + 1_000_000)
            } else {
                probe = true;
                None
            };
            if let Some(until) = until {
                // Rescheduled rather than held under a lease, so a resume or RetryDelivery can
                // bring it forward at once.
                self.store.defer(id, due.lease_until, until).await?;
                return Ok(());
            }
        }
        let outcome = self.send_and_record(&due, &target, now, guard, slot).await;
        if probe {
            target.live.probing.store(false, Ordering::Release);
        }
        outcome
    }

    async fn send_and_record(
        &self,
        due: &DueDelivery,
        target: &Target,
        now: crate::timeutil::Micros,
        guard: &mut ClaimGuard,
        slot: tokio::sync::SemaphorePermit<'_>,
    ) -> Result<(), StoreError> {
        let id = due.id.as_str();
        target.live.pace(target.spec.rate_limit).await;
        guard.paced();
        let now = now_micros().max(now);
        // Waiting for a slot or the rate limit may have eaten into the lease: renew it for the
        // whole attempt.
        let needed = now + target.spec.timeout_ms as i64 * 1000 + LEASE_MARGIN.as_micros() as i64;
        if due.lease_until < needed && !self.store.extend_lease(id, due.lease_until, needed).await? {
            return Ok(()); // another node holds it now
        }
        let request = self.request(due, target);
        let record = self.sender.send(&request).await;
        target.live.answered();
        // `max_in_flight` counts requests to the destination: the slot is free once it answered,
        // while the result is recorded (the delivery's lease still covers it). An ORDERED
        // destination's next delivery waits for this result, so it keeps its place until then.
        drop(slot);
        if !target.ordered() {
            guard.release();
            if self.left_behind.load(Ordering::Acquire) {
                self.wake.notify();
            }
        }
        let policy = match &target.spec.retry_policy {
            Some(p) => p.clone(),
            None => self.project_policy(&due.project_id).await,
        };
        let number = due.attempt_count as u32 + 1;
        let verdict = judge(&record, number, &policy, SystemTime::now(), &mut rand::thread_rng());
        self.record(due, Some((&request, &record, target)), "", Some(verdict), false).await.map(|_| ())
    }

    /// `TestDestination`: one attempt of a delivery, now, past pause, rate limit and circuit,
    /// not retried and leaving the destination's health as it is. Returns the attempt's id.
    pub async fn test_send(&self, delivery: &str) -> Result<String, StoreError> {
        let due = self.store.delivery_with_event(delivery, false).await?;
        let target = self.target(&due.project_id, &due.destination_id).await?.ok_or(StoreError::NotFound)?;
        let request = self.request(&due, &target);
        let record = self.sender.send(&request).await;
        let ok = record.error.is_none() && record.status.is_some_and(|s| (200..300).contains(&s));
        let verdict = if ok { Verdict::Succeeded } else { Verdict::Fail };
        self.record(&due, Some((&request, &record, &target)), "", Some(verdict), true).await
    }

    /// Attempts in flight on this node.
    pub fn in_flight(&self) -> usize {
        MAX_IN_FLIGHT - self.in_flight.available_permits()
    }

    fn failed(&self) -> HealthChange {
        HealthChange::Failed { disable_after: self.disable_after }
    }

    async fn project_policy(&self, project: &str) -> RetryPolicy {
        match project.parse::<ProjectId>() {
            Ok(p) => self.router.routes(p).await.map(|t| t.project.default_retry_policy.clone()).unwrap_or_default(),
            Err(_) => RetryPolicy::default(),
        }
    }

    /// The signed request for one attempt.
    fn request(&self, due: &DueDelivery, target: &Target) -> OutboundRequest {
        let (body, content_type) = match &due.body {
            Some(b) => (b.clone(), due.content_type.clone().unwrap_or_else(|| "application/json".to_owned())),
            None => (due.event_body.clone(), due.event_content_type.clone()),
        };
        let timestamp =
            SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let mut ours: Vec<(String, String)> = vec![
            ("content-type".into(), content_type),
            ("webhook-id".into(), due.event_id.clone()),
            ("webhook-timestamp".into(), timestamp.to_string()),
            ("webhook-signature".into(), standard::sign(&target.keys, &due.event_id, timestamp, &body)),
            ("x-loft-event-type".into(), due.event_type.clone()),
            ("x-loft-delivery-id".into(), due.id.clone()),
            ("x-loft-attempt".into(), (due.attempt_count + 1).to_string()),
        ];
        if target.spec.legacy_signature
            && let Some(DestinationKey::Hmac(secret)) = target.keys.first()
        {
            ours.push(("x-loft-signature".into(), standard::legacy_signature(secret, &body)));
        }
        ours.extend(target.spec.headers.iter().cloned());
        if let Some(auth) = &target.auth {
            ours.push(auth.clone());
        }
        let mut headers = Vec::new();
        if due.forward_headers
            && let Some(req) = due.event_request.as_deref().and_then(|r| serde_json::from_str::<InboundRequest>(r).ok())
        {
            // The original headers go first, minus hop-by-hop ones, Host, the length (the body
            // is re-framed), Accept-Encoding (the sender stores responses as received, so it must
            // not invite compression) and any that Loft sets itself.
            headers.extend(req.headers.into_iter().filter(|(n, _)| {
                let lower = n.to_ascii_lowercase();
                !is_hop_by_hop(&lower)
                    && lower != "host"
                    && lower != "content-length"
                    && lower != "accept-encoding"
                    && !ours.iter().any(|(o, _)| o.eq_ignore_ascii_case(&lower))
            }));
        }
        headers.extend(ours);
        OutboundRequest {
            url: target.spec.url.clone(),
            method: target.spec.http_method.parse().unwrap_or(http::Method::POST),
            headers,
            body: body.into(),
            timeout: Duration::from_millis(target.spec.timeout_ms),
        }
    }

    /// Records an attempt (or, without one, fails the delivery with `reason`); returns its id.
    /// A `test` attempt leaves the destination's health as it is.
    async fn record(
        &self,
        due: &DueDelivery,
        sent: Option<(&OutboundRequest, &AttemptRecord, &Target)>,
        reason: &str,
        verdict: Option<Verdict>,
        test: bool,
    ) -> Result<String, StoreError> {
        let now = now_micros();
        let number = due.attempt_count + 1;
        let attempt_id = AttemptId::generate().to_string();
        let (attempt, verdict) = match sent {
            Some((req, rec, target)) => {
                (attempt_row(due, &attempt_id, number, req, rec, target), verdict.unwrap_or(Verdict::Fail))
            }
            None => (
                NewAttempt {
                    id: attempt_id.clone(),
                    project_id: due.project_id.clone(),
                    delivery_id: due.id.clone(),
                    event_id: due.event_id.clone(),
                    destination_id: due.destination_id.clone(),
                    number,
                    outcome: "FAILED",
                    status_code: None,
                    error_kind: None,
                    error_message: Some(reason.to_owned()),
                    request: "{}".into(),
                    response_headers: "[]".into(),
                    response_body: Vec::new(),
                    response_truncated: false,
                    start_time: now,
                    duration_us: 0,
                },
                Verdict::Fail,
            ),
        };
        let (state, next, health) = match &verdict {
            Verdict::Succeeded => ("SUCCEEDED", None, HealthChange::Succeeded),
            Verdict::Retry { after } => ("RETRYING", Some(now + after.as_micros() as i64), self.failed()),
            Verdict::Fail => ("FAILED", None, self.failed()),
            Verdict::FailAndDisable { reason } => ("FAILED", None, HealthChange::Disable(reason.clone())),
        };
        let error_summary = match (&attempt.error_message, attempt.status_code) {
            (Some(m), _) => m.clone(),
            (None, Some(code)) if !(200..300).contains(&code) => format!("HTTP {code}"),
            _ => String::new(),
        };
        let item = |kind: &'static str, payload: Vec<u8>| NewActivity {
            kind,
            source_id: due.event_source_id.clone(),
            destination_id: Some(due.destination_id.clone()),
            event_type: Some(due.event_type.clone()),
            payload,
        };
        let mut activities = vec![item("ATTEMPT_FINISHED", NewActivity::id_payload("attempt_id", &attempt_id))];
        match state {
            "SUCCEEDED" => activities.push(item("DELIVERY_SUCCEEDED", NewActivity::id_payload("delivery_id", &due.id))),
            "FAILED" => activities.push(item("DELIVERY_FAILED", NewActivity::id_payload("delivery_id", &due.id))),
            _ => {}
        }
        if let HealthChange::Disable(reason) = &health {
            // About the destination, not about this event.
            let only_destination = |a: NewActivity| NewActivity { source_id: None, event_type: None, ..a };
            activities.push(only_destination(item(
                "DESTINATION_STATE_CHANGED",
                serde_json::to_vec(&serde_json::json!({
                    "destination_id": due.destination_id, "state": "DISABLED", "circuit": "OPEN", "reason": reason,
                }))
                .expect("JSON of strings"),
            )));
        }
        let outcome = if state == "SUCCEEDED" { "success" } else { "failure" };
        metrics::counter!("loft_attempts_total", "outcome" => outcome).increment(1);
        if state == "SUCCEEDED" {
            let latency = (now - due.receive_time).max(0) as f64 / 1e6;
            metrics::histogram!("loft_delivery_latency_seconds").record(latency);
        }
        let health = if test { HealthChange::Unchanged } else { health };
        let result = AttemptResult { attempt, state, next_attempt_time: next, error_summary, health, activities };
        // The writer takes the result; what happens after depends on its health change.
        let health = result.health.clone();
        let transition = self.attempts.write(result).await?;
        if let Some((_, _, target)) = sent {
            match (&health, &transition) {
                (HealthChange::Succeeded, _) => target.live.open_until.store(0, Ordering::Release),
                (_, Transition::CircuitOpened { retry_time }) => {
                    metrics::counter!("loft_circuits_opened_total").increment(1);
                    target.live.open_until.store(*retry_time, Ordering::Release);
                }
                _ => {}
            }
        }
        if matches!(health, HealthChange::Disable(_)) || matches!(transition, Transition::Disabled { .. }) {
            self.targets.lock().expect("targets poisoned").remove(&due.destination_id);
        }
        if next.is_some() {
            // A short retry delay should not wait for the next poll.
            let wake = self.wake.clone();
            let delay = Duration::from_micros((next.unwrap_or(now) - now).max(0) as u64);
            if delay < POLL {
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    wake.notify();
                });
            }
        }
        Ok(attempt_id)
    }
}

/// The event writer's hook that sends fresh deliveries from memory (DESIGN §3).
///
/// Before a batch commits, each delivery due now whose destination this node has loaded (and
/// found active, UNORDERED, with a closed circuit) and can start at once (a free place among the
/// node's attempts, the destination's cap) is leased in the batch's own transaction. After the
/// commit, those of stored events are sent from the writes themselves; the others are released.
/// Whatever was not taken waits in the database for the claim loop, which the commit wakes. A
/// failed commit stores no lease; one that is lost with the node expires like any other.
pub struct FreshDeliveries(Dispatcher);

/// A delivery leased by [`FreshDeliveries::before`]: `(write, delivery)` indexes, its place in
/// flight and in its destination's backlog.
pub struct Taken(Vec<(usize, usize, ClaimGuard, OwnedSemaphorePermit)>);

impl CommitHook<EventBatch> for FreshDeliveries {
    type Taken = Taken;

    fn before(&self, batch: &mut [EventWrite], now: Micros) -> Taken {
        let d = &self.0;
        let mut taken = Vec::new();
        let targets = d.targets.lock().expect("targets poisoned");
        let mut backlogs = d.backlogs.lock().expect("backlogs poisoned");
        for (w, write) in batch.iter_mut().enumerate() {
            for (i, delivery) in write.deliveries.iter_mut().enumerate() {
                if delivery.next_attempt_time.is_none_or(|t| t > now) {
                    continue; // held, or not due yet
                }
                let Some(target) = targets.get(&delivery.destination_id) else { continue };
                let sendable =
                    target.active && !target.ordered() && target.live.open_until.load(Ordering::Acquire) == 0;
                if !sendable || !d.current(target) || target.cap(backlogs.get(&delivery.destination_id)) == 0 {
                    continue;
                }
                let Ok(permit) = d.in_flight.clone().try_acquire_owned() else { break };
                delivery.lease_until = Some(now + LEASE.as_micros() as i64);
                let guard = ClaimGuard::counted(&d.backlogs, &mut backlogs, &delivery.destination_id);
                taken.push((w, i, guard, permit));
            }
        }
        Taken(taken)
    }

    fn after(&self, batch: Vec<EventWrite>, committed: &[Option<WriteOutcome>], taken: Taken) {
        let d = &self.0;
        let stored = |w: usize| committed[w] == Some(WriteOutcome::Stored);
        let handed = taken.0.iter().filter(|t| stored(t.0)).count();
        let fresh =
            batch.iter().enumerate().filter(|(w, _)| stored(*w)).map(|(_, w)| w.deliveries.len()).sum::<usize>();
        // Leases of writes that did not commit were never stored: dropping releases them.
        for (w, i, guard, permit) in taken.0 {
            if stored(w) {
                d.spawn_attempt(Work::Fresh(Box::new(due_from(&batch[w], i))), guard, permit);
            }
        }
        if fresh > handed {
            d.left_behind.store(true, Ordering::Release);
            d.wake.notify();
        }
    }
}

/// A delivery as it was just stored, with its event: what a claim would have read back.
fn due_from(write: &EventWrite, i: usize) -> DueDelivery {
    let (e, d) = (&write.event, &write.deliveries[i]);
    DueDelivery {
        id: d.id.clone(),
        project_id: e.project_id.clone(),
        event_id: e.id.clone(),
        subscription_id: d.subscription_id.clone(),
        destination_id: d.destination_id.clone(),
        attempt_count: 0,
        lease_until: d.lease_until.unwrap_or_default(),
        body: d.body.clone(),
        content_type: d.content_type.clone(),
        forward_headers: d.forward_headers,
        event_type: e.event_type.clone(),
        event_source_id: e.source_id.clone(),
        event_body: e.body.clone(),
        event_content_type: e.content_type.clone(),
        event_request: e.request.clone(),
        receive_time: e.receive_time,
    }
}

/// The attempt log row: what was sent (credentials redacted) and what came back.
fn attempt_row(
    due: &DueDelivery,
    id: &str,
    number: i64,
    req: &OutboundRequest,
    rec: &AttemptRecord,
    target: &Target,
) -> NewAttempt {
    /// The attempt's `request` column (`api::deliveries` reads it back).
    #[derive(serde::Serialize)]
    struct Sent<'a> {
        url: &'a str,
        method: &'a str,
        headers: Vec<(&'a str, &'a str)>,
        body_size: usize,
    }
    // The headers as the sender recorded them: what went out, with anything that looks like a
    // credential redacted; the destination's own auth header is redacted whatever its name.
    let headers = rec
        .request_headers
        .iter()
        .map(|(n, v)| {
            let secret = target.auth.as_ref().is_some_and(|(a, _)| a.eq_ignore_ascii_case(n));
            (n.as_str(), if secret { REDACTED } else { v.as_str() })
        })
        .collect();
    let sent = Sent { url: &req.url, method: req.method.as_str(), headers, body_size: req.body.len() };
    let succeeded = rec.error.is_none() && rec.status.is_some_and(|s| (200..300).contains(&s));
    NewAttempt {
        id: id.to_owned(),
        project_id: due.project_id.clone(),
        delivery_id: due.id.clone(),
        event_id: due.event_id.clone(),
        destination_id: due.destination_id.clone(),
        number,
        outcome: if succeeded { "SUCCEEDED" } else { "FAILED" },
        status_code: rec.status.map(i64::from),
        error_kind: rec.error.as_ref().map(|e| e.kind.as_str()),
        error_message: rec.error.as_ref().map(|e| e.message.clone()),
        request: serde_json::to_string(&sent).expect("JSON of strings"),
        response_headers: serde_json::to_string(&rec.response_headers).expect("JSON of strings"),
        response_body: rec.response_body.clone(),
        response_truncated: rec.response_body_truncated,
        start_time: to_micros(rec.started),
        duration_us: rec.duration.as_micros() as i64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(max_in_flight: u32, answers: Answers) -> Target {
        let spec = DestinationSpec { max_in_flight, ..DestinationSpec::default() };
        let live = Arc::new(Live::new(&spec));
        *live.answers.lock().unwrap() = answers;
        Target { spec, keys: Vec::new(), auth: None, live, active: true, loaded: Instant::now(), generation: 0 }
    }

    fn ago(ms: u64) -> Instant {
        Instant::now() - Duration::from_millis(ms)
    }

    #[test]
    fn claims_ahead_by_how_fast_the_destination_answers() {
        let held = |claimed| Backlog { claimed, unpaced: 0 };
        // Not heard from yet: its slots and one more round.
        let t = target(16, Answers::default());
        assert_eq!(t.cap(None), 32);
        assert_eq!(t.cap(Some(&held(20))), 12);
        // Slow (20 answers/s): still one round ahead, not less.
        let t = target(16, Answers { since: ago(50), count: 1, per_second: 20.0 });
        assert_eq!(t.cap(None), 32);
        // 4 000 answers/s: 80 within the 20 ms horizon, beyond its 16 slots.
        let t = target(16, Answers { since: ago(50), count: 0, per_second: 4_000.0 });
        assert_eq!(t.cap(None), 16 + 80);
        assert_eq!(t.cap(Some(&held(90))), 6);
        // Faster than the last window in the current one: the current pace counts.
        let t = target(16, Answers { since: ago(50), count: 300, per_second: 100.0 });
        let cap = t.cap(None);
        assert!((16 + 100..=16 + 120).contains(&cap), "{cap}");
        // Very fast: at most MAX_PREFETCH_ROUNDS rounds in all.
        let t = target(16, Answers { since: ago(50), count: 0, per_second: 1e6 });
        assert_eq!(t.cap(None), 16 * MAX_PREFETCH_ROUNDS);
        // Fast long ago, quiet since: back to one round ahead.
        let t = target(16, Answers { since: ago(1_000), count: 0, per_second: 4_000.0 });
        assert_eq!(t.cap(None), 32);
    }

    #[test]
    fn a_window_of_answers_sets_the_pace() {
        let t = target(16, Answers { since: ago(200), count: 199, per_second: 0.0 });
        t.live.answered(); // the 200th answer closes a 200 ms window: 1 000/s
        let a = t.live.answers.lock().unwrap();
        assert_eq!(a.count, 0);
        assert!((900.0..=1_000.0).contains(&a.per_second), "{}", a.per_second);
    }
}
