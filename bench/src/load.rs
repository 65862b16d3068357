//! Load generators: closed loop (C workers, each waiting for its answer before the next request)
//! and open loop (a fixed rate, whatever the answers do). The same code drives Loft and the
//! baseline; only the address changes.
//!
//! HTTP: one HTTP/1.1 keep-alive connection per closed-loop worker (hyper's connection API), a
//! pooled client for the open loop. gRPC: a few tonic channels (HTTP/2 connections), workers
//! spread over them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{Request, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use loft::proto::destination_service_client::DestinationServiceClient;
use loft::proto::event_service_client::EventServiceClient;
use loft::proto::{GetDestinationRequest, PublishEventRequest, RawPayload, publish_event_request};
use tokio::net::TcpStream;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use crate::util::{make_body, new_hist, now_ns, record};

/// Longest a single request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Open loop: requests in flight at most; past it a tick is counted as `dropped`.
const OPEN_MAX_IN_FLIGHT: u64 = 20_000;

/// What to call.
#[derive(Clone)]
pub enum Target {
    /// `POST http://addr{path}` with a JSON body.
    Http { addr: SocketAddr, path: String },
    /// `EventService/PublishEvent` with a raw JSON payload.
    Publish {
        channels: Vec<Channel>,
        auth: MetadataValue<tonic::metadata::Ascii>,
        project_id: String,
        event_type: String,
    },
    /// `DestinationService/GetDestination`.
    GetDestination {
        channels: Vec<Channel>,
        auth: MetadataValue<tonic::metadata::Ascii>,
        project_id: String,
        destination_id: String,
    },
}

/// Makes numbered bodies for one run tag.
pub struct Bodies {
    pub run: u32,
    pub size: usize,
    seq: AtomicU64,
}

impl Bodies {
    pub fn new(run: u32, size: usize) -> Arc<Self> {
        Arc::new(Self { run, size, seq: AtomicU64::new(0) })
    }

    fn next(&self) -> Vec<u8> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        make_body(self.run, seq, now_ns(), self.size)
    }
}

/// Counts of one load run.
#[derive(Debug, Clone)]
pub struct LoadStats {
    /// 2xx / OK answers to requests started and finished inside the measured window.
    pub ok: u64,
    /// 2xx / OK answers at any time (warmup and the tail included): what must be delivered.
    pub ok_all: u64,
    /// Errors by kind (status, gRPC code, transport error), inside the window.
    pub errors: BTreeMap<String, u64>,
    /// Errors during warmup.
    pub warmup_errors: u64,
    /// Latency of the counted answers (from the request's start; in the open loop from its
    /// scheduled time, so a stalled server is not hidden).
    pub latency: Histogram<u64>,
    /// The measured window.
    pub window: Duration,
    /// Open loop: requests scheduled, and not sent because too many were in flight.
    pub scheduled: u64,
    pub dropped: u64,
}

impl LoadStats {
    fn new(window: Duration) -> Self {
        Self {
            ok: 0,
            ok_all: 0,
            errors: BTreeMap::new(),
            warmup_errors: 0,
            latency: new_hist(),
            window,
            scheduled: 0,
            dropped: 0,
        }
    }

    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.window.as_secs_f64()
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    fn merge(&mut self, o: LoadStats) {
        self.ok += o.ok;
        self.ok_all += o.ok_all;
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.warmup_errors += o.warmup_errors;
        let _ = self.latency.add(&o.latency);
        self.scheduled += o.scheduled;
        self.dropped += o.dropped;
    }

    fn error(&mut self, counted: bool, kind: String) {
        if counted {
            *self.errors.entry(kind).or_default() += 1;
        } else {
            self.warmup_errors += 1;
        }
    }
}

fn short(e: impl std::fmt::Display) -> String {
    let s = e.to_string();
    let s = s.lines().next().unwrap_or("").to_owned();
    if s.len() > 100 { format!("{}…", &s[..s.floor_char_boundary(100)]) } else { s }
}

async fn http1_connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// One closed-loop worker's connection or client.
enum Caller {
    Http {
        addr: SocketAddr,
        path: String,
        host: String,
        conn: Option<SendRequest<Full<Bytes>>>,
    },
    Publish {
        client: EventServiceClient<Channel>,
        auth: MetadataValue<tonic::metadata::Ascii>,
        project_id: String,
        event_type: String,
    },
    Get {
        client: DestinationServiceClient<Channel>,
        auth: MetadataValue<tonic::metadata::Ascii>,
        project_id: String,
        destination_id: String,
    },
}

impl Caller {
    fn new(target: &Target, worker: usize) -> Self {
        match target {
            Target::Http { addr, path } => {
                Caller::Http { addr: *addr, path: path.clone(), host: addr.to_string(), conn: None }
            }
            Target::Publish { channels, auth, project_id, event_type } => Caller::Publish {
                client: EventServiceClient::new(channels[worker % channels.len()].clone())
                    .max_decoding_message_size(64 << 20),
                auth: auth.clone(),
                project_id: project_id.clone(),
                event_type: event_type.clone(),
            },
            Target::GetDestination { channels, auth, project_id, destination_id } => Caller::Get {
                client: DestinationServiceClient::new(channels[worker % channels.len()].clone()),
                auth: auth.clone(),
                project_id: project_id.clone(),
                destination_id: destination_id.clone(),
            },
        }
    }

    /// One call; `Err(kind)` for anything but 2xx / OK.
    async fn call(&mut self, bodies: &Bodies) -> Result<(), String> {
        match self {
            Caller::Http { addr, path, host, conn } => {
                if conn.is_none() {
                    *conn = Some(http1_connect(*addr).await.map_err(|e| format!("connect: {}", short(e)))?);
                }
                let sender = conn.as_mut().expect("connected");
                if sender.ready().await.is_err() {
                    *conn = None;
                    return Err("connection closed".into());
                }
                let req = Request::post(path.as_str())
                    .header(header::HOST, host.as_str())
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Full::new(Bytes::from(bodies.next())))
                    .expect("valid request");
                let result = async {
                    let resp = sender.send_request(req).await?;
                    let status = resp.status();
                    resp.into_body().collect().await?;
                    Ok::<_, hyper::Error>(status)
                }
                .await;
                match result {
                    Ok(s) if s.is_success() => Ok(()),
                    Ok(s) => Err(format!("HTTP {}", s.as_u16())),
                    Err(e) => {
                        *conn = None;
                        Err(format!("http: {}", short(e)))
                    }
                }
            }
            Caller::Publish { client, auth, project_id, event_type } => {
                let mut req = tonic::Request::new(PublishEventRequest {
                    project_id: project_id.clone(),
                    r#type: event_type.clone(),
                    payload: Some(publish_event_request::Payload::Raw(RawPayload {
                        body: bodies.next(),
                        content_type: "application/json".into(),
                    })),
                    ..Default::default()
                });
                req.metadata_mut().insert("authorization", auth.clone());
                client.publish_event(req).await.map(|_| ()).map_err(|s| format!("gRPC {:?}", s.code()))
            }
            Caller::Get { client, auth, project_id, destination_id } => {
                let mut req = tonic::Request::new(GetDestinationRequest {
                    project_id: project_id.clone(),
                    destination_id: destination_id.clone(),
                });
                req.metadata_mut().insert("authorization", auth.clone());
                client.get_destination(req).await.map(|_| ()).map_err(|s| format!("gRPC {:?}", s.code()))
            }
        }
    }
}

/// The phases of a closed-loop run.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Answers count from here (warmup before).
    pub measure_from: Instant,
    pub end: Instant,
}

impl Window {
    pub fn after(warmup: Duration, duration: Duration) -> Self {
        let start = Instant::now();
        Self { measure_from: start + warmup, end: start + warmup + duration }
    }
}

/// `concurrency` workers call `target` back to back until `window.end`.
pub async fn closed_loop(target: Target, bodies: Arc<Bodies>, concurrency: usize, window: Window) -> LoadStats {
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..concurrency {
        let mut caller = Caller::new(&target, w);
        let bodies = bodies.clone();
        tasks.spawn(async move {
            let mut stats = LoadStats::new(window.end - window.measure_from);
            while Instant::now() < window.end {
                let t0 = Instant::now();
                let result = tokio::time::timeout(REQUEST_TIMEOUT, caller.call(&bodies)).await;
                let t1 = Instant::now();
                let counted = t0 >= window.measure_from && t1 <= window.end;
                match result {
                    Ok(Ok(())) => {
                        stats.ok_all += 1;
                        if counted {
                            stats.ok += 1;
                            record(&mut stats.latency, t1 - t0);
                        }
                    }
                    Ok(Err(kind)) => {
                        let transport = kind.starts_with("connect") || kind.starts_with("http:");
                        stats.error(counted || t0 >= window.measure_from, kind);
                        if transport {
                            // Do not spin on a server that refuses connections.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                    Err(_) => {
                        if let Caller::Http { conn, .. } = &mut caller {
                            *conn = None;
                        }
                        stats.error(counted || t0 >= window.measure_from, "timeout".into());
                    }
                }
            }
            stats
        });
    }
    let mut total = LoadStats::new(window.end - window.measure_from);
    while let Some(r) = tasks.join_next().await {
        if let Ok(s) = r {
            total.merge(s);
        }
    }
    total
}

/// `concurrency` workers call `target` back to back until exactly `n` calls have succeeded, or
/// `deadline`. A failed call is retried: its worker gives its ticket back. `acked` counts the
/// successes as they come (for progress); the window is the time the run took.
pub async fn closed_loop_until(
    target: Target,
    bodies: Arc<Bodies>,
    concurrency: usize,
    n: u64,
    deadline: Instant,
    acked: Arc<AtomicU64>,
) -> LoadStats {
    let start = Instant::now();
    // Tickets taken: calls that succeeded plus calls in flight. Never more than `n`, so no call
    // is made that could take the count past it.
    let taken = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..concurrency {
        let mut caller = Caller::new(&target, w);
        let (bodies, taken, acked) = (bodies.clone(), taken.clone(), acked.clone());
        tasks.spawn(async move {
            let mut stats = LoadStats::new(Duration::ZERO);
            while Instant::now() < deadline
                && taken.fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| (t < n).then_some(t + 1)).is_ok()
            {
                let t0 = Instant::now();
                let result = tokio::time::timeout(REQUEST_TIMEOUT, caller.call(&bodies)).await;
                if let Ok(Ok(())) = result {
                    stats.ok += 1;
                    stats.ok_all += 1;
                    acked.fetch_add(1, Ordering::Relaxed);
                    record(&mut stats.latency, t0.elapsed());
                    continue;
                }
                taken.fetch_sub(1, Ordering::AcqRel);
                let kind = match result {
                    Ok(Err(kind)) => kind,
                    _ => {
                        if let Caller::Http { conn, .. } = &mut caller {
                            *conn = None;
                        }
                        "timeout".into()
                    }
                };
                stats.error(true, kind);
                // Every failure is retried: do not spin on a server that keeps refusing.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            stats
        });
    }
    let mut total = LoadStats::new(Duration::ZERO);
    while let Some(r) = tasks.join_next().await {
        if let Ok(s) = r {
            total.merge(s);
        }
    }
    total.window = start.elapsed();
    total
}

/// Open loop: `rate` requests per second for `duration`, each on its own task, whatever the
/// answers do. Latency is measured from each request's scheduled time. Waits for the requests
/// in flight (up to the request timeout) before returning.
pub async fn open_loop(target: Target, bodies: Arc<Bodies>, rate: f64, duration: Duration) -> LoadStats {
    let http_client = match &target {
        Target::Http { .. } => {
            let mut c = HttpConnector::new();
            c.set_nodelay(true);
            Some(Client::builder(TokioExecutor::new()).pool_max_idle_per_host(1024).build::<_, Full<Bytes>>(c))
        }
        _ => None,
    };
    let in_flight = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + duration;
    let mut stats = LoadStats::new(duration);
    let mut tasks = tokio::task::JoinSet::new();
    let mut sent: u64 = 0;
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut worker = 0usize;
    loop {
        ticker.tick().await;
        let now = Instant::now();
        let due = ((now.min(end) - start).as_secs_f64() * rate) as u64;
        while sent < due {
            let intended = start + Duration::from_secs_f64(sent as f64 / rate);
            sent += 1;
            stats.scheduled += 1;
            if in_flight.load(Ordering::Relaxed) >= OPEN_MAX_IN_FLIGHT {
                stats.dropped += 1;
                continue;
            }
            in_flight.fetch_add(1, Ordering::Relaxed);
            let in_flight = in_flight.clone();
            let bodies = bodies.clone();
            worker += 1;
            let call: std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>> = match (&target, &http_client)
            {
                (Target::Http { addr, path }, Some(client)) => {
                    let client = client.clone();
                    let uri = format!("http://{addr}{path}");
                    Box::pin(async move {
                        let req = Request::post(uri)
                            .header(header::CONTENT_TYPE, "application/json")
                            .body(Full::new(Bytes::from(bodies.next())))
                            .expect("valid request");
                        let resp = client.request(req).await.map_err(|e| format!("http: {}", short(e)))?;
                        let status = resp.status();
                        resp.into_body().collect().await.map_err(|e| format!("http: {}", short(e)))?;
                        if status.is_success() { Ok(()) } else { Err(format!("HTTP {}", status.as_u16())) }
                    })
                }
                _ => {
                    let mut caller = Caller::new(&target, worker);
                    Box::pin(async move { caller.call(&bodies).await })
                }
            };
            tasks.spawn(async move {
                let r = tokio::time::timeout(REQUEST_TIMEOUT, call).await;
                in_flight.fetch_sub(1, Ordering::Relaxed);
                (intended, Instant::now(), r)
            });
        }
        // Collect what finished, so the set does not grow without bound.
        while let Some(r) = tasks.try_join_next() {
            take(&mut stats, r);
        }
        if now >= end {
            break;
        }
    }
    while let Some(r) = tasks.join_next().await {
        take(&mut stats, r);
    }
    stats
}

type OpenOutcome = (Instant, Instant, Result<Result<(), String>, tokio::time::error::Elapsed>);

fn take(stats: &mut LoadStats, r: Result<OpenOutcome, tokio::task::JoinError>) {
    match r {
        Ok((intended, done, Ok(Ok(())))) => {
            stats.ok += 1;
            stats.ok_all += 1;
            record(&mut stats.latency, done.saturating_duration_since(intended));
        }
        Ok((_, _, Ok(Err(kind)))) => stats.error(true, kind),
        Ok((_, _, Err(_))) => stats.error(true, "timeout".into()),
        Err(e) => stats.error(true, format!("task: {}", short(e))),
    }
}
