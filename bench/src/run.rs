//! The invocation: baselines, then for each backend a fresh server, the fixture and the
//! scenarios; repeated `--repeat` times; then the table and the JSON report.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use serde_json::json;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

use crate::load::{Bodies, LoadStats, Target as LoadTarget, Window, closed_loop, closed_loop_until, open_loop};
use crate::loft_proc::{Backend, LoftServer, Postgres};
use crate::report::{Figure, ScenarioResult, Target, group_thousands, merge_runs, table};
use crate::servers::{Canned, ReceiverStats, start_baseline, start_receiver};
use crate::setup::{self, DELIVERED_TYPE, Fixture, PUBLISH_TYPE};
use crate::util::{cpu_time, machine_busy, max_ms, mb, proc_status_bytes, q_ms, reset_peak_rss, tree_cpu_time};
use crate::{Args, Scenario};

/// The bootstrap ADMIN key of every server the harness starts (`loft_` + 32 base62).
const ADMIN_KEY: &str = "loft_LoftBench0123456789abcdefghijKLM";
/// The master key (base64 of the bytes 1..=32).
const MASTER_KEY: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";

/// A tokio runtime for a server in this process, shut down without blocking when dropped.
struct BgRuntime(Option<tokio::runtime::Runtime>);

impl BgRuntime {
    fn new(threads: usize, name: &str) -> anyhow::Result<Self> {
        Ok(Self(Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads.max(1))
                .thread_name(name)
                .enable_all()
                .build()?,
        )))
    }

    fn rt(&self) -> &tokio::runtime::Runtime {
        self.0.as_ref().expect("runtime alive")
    }
}

impl Drop for BgRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// rustc/cargo processes running now (another build skews every figure on 2 cores).
fn concurrent_builds() -> Vec<String> {
    let mut found = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            let comm = comm.trim();
            if comm == "rustc" || comm == "cargo" {
                found.push(format!("{} ({comm})", e.file_name().to_string_lossy()));
            }
        }
    }
    found
}

fn machine() -> serde_json::Value {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let meminfo = read("/proc/meminfo");
    let mem_total_kb = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:")?.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split(':').nth(1).map(|s| s.trim().to_owned()));
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": cpu,
        "mem_total_mb": mem_total_kb.map(|k| k / 1024),
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
    })
}

fn git_revision() -> Option<String> {
    let out = std::process::Command::new("git").args(["rev-parse", "--short", "HEAD"]).output().ok()?;
    let rev = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    let dirty = std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .is_some_and(|o| !o.stdout.is_empty());
    Some(if dirty { format!("{rev} (+ uncommitted changes)") } else { rev })
}

/// CPU time of Loft, of this process and of PostgreSQL at one instant.
#[derive(Clone, Copy)]
struct Usage {
    at: Instant,
    loft: Duration,
    harness: Duration,
    db: Duration,
    machine: Duration,
}

fn usage(loft_pid: u32, postmaster: Option<u32>) -> Usage {
    Usage {
        at: Instant::now(),
        loft: cpu_time(&loft_pid.to_string()).unwrap_or_default(),
        harness: cpu_time("self").unwrap_or_default(),
        db: postmaster.map(tree_cpu_time).unwrap_or_default(),
        machine: machine_busy(),
    }
}

/// Cores used between two instants.
#[derive(Debug, Clone, Copy, Default)]
struct Cores {
    loft: f64,
    harness: f64,
    db: f64,
    /// The machine's busy time minus the three above: other processes (builds, tests) — noise.
    other: f64,
}

fn cores(a: Usage, b: Usage) -> Cores {
    let wall = (b.at - a.at).as_secs_f64().max(1e-9);
    let per = |x: Duration, y: Duration| y.saturating_sub(x).as_secs_f64() / wall;
    let (loft, harness, db) = (per(a.loft, b.loft), per(a.harness, b.harness), per(a.db, b.db));
    let machine = per(a.machine, b.machine);
    Cores { loft, harness, db, other: (machine - loft - harness - db).max(0.0) }
}

/// Worst "other" CPU seen in any measurement of this invocation (in hundredths of a core).
static NOISE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn note_noise(c: &Cores) {
    NOISE.fetch_max((c.other * 100.0).round() as u64, Ordering::Relaxed);
}

fn cores_json(c: &Cores) -> serde_json::Value {
    json!({"loft": c.loft, "harness": c.harness, "postgres": c.db, "other": c.other})
}

/// What the baselines measured in this repetition.
#[derive(Default)]
struct Baselines {
    http: Option<LoadStats>,
    publish: Option<LoadStats>,
    unary: Option<LoadStats>,
    http_open: Option<LoadStats>,
    publish_open: Option<LoadStats>,
}

fn rate(s: &Option<LoadStats>) -> Option<f64> {
    s.as_ref().map(LoadStats::rate)
}

fn p(s: &Option<LoadStats>, q: f64) -> Option<f64> {
    s.as_ref().and_then(|s| q_ms(&s.latency, q))
}

/// Everything a scenario needs.
struct Ctx<'a> {
    args: &'a Args,
    backend: Backend,
    server: &'a mut LoftServer,
    fixture: &'a Fixture,
    auth: MetadataValue<Ascii>,
    channels: Vec<Channel>,
    receiver: Arc<ReceiverStats>,
    base: &'a Baselines,
    postmaster: Option<u32>,
    runs: &'a AtomicU32,
}

impl Ctx<'_> {
    fn next_run(&self) -> u32 {
        self.runs.fetch_add(1, Ordering::Relaxed)
    }

    fn http_target(&self, source: &str) -> LoadTarget {
        LoadTarget::Http { addr: self.server.http_addr, path: format!("/in/{source}") }
    }

    fn publish_target(&self, event_type: &str) -> LoadTarget {
        LoadTarget::Publish {
            channels: self.channels.clone(),
            auth: self.auth.clone(),
            project_id: self.fixture.project_id.clone(),
            event_type: event_type.into(),
        }
    }

    fn sqlite(&self) -> bool {
        self.backend == Backend::Sqlite
    }

    /// A closed-loop run with CPU and receiver counts taken at the window's edges.
    async fn closed(&mut self, target: LoadTarget, run: u32) -> anyhow::Result<Measured> {
        let peak_reset = reset_peak_rss(self.server.pid);
        let window = Window::after(self.args.warmup, self.args.duration);
        let bodies = Bodies::new(run, self.args.body_bytes);
        let load = tokio::spawn(closed_loop(target, bodies, self.args.concurrency, window));
        tokio::time::sleep_until(window.measure_from.into()).await;
        let (u0, r0) = (usage(self.server.pid, self.postmaster), self.receiver.distinct(run));
        tokio::time::sleep_until(window.end.into()).await;
        let (u1, r1) = (usage(self.server.pid, self.postmaster), self.receiver.distinct(run));
        let stats = load.await.context("load generator panicked")?;
        Ok(Measured {
            stats,
            cores: cores(u0, u1),
            delivered_in_window: r1.saturating_sub(r0),
            peak_rss: proc_status_bytes(self.server.pid, "VmHWM"),
            peak_reset,
        })
    }

    /// Waits until the receiver has every acknowledged event of `run`, or the drain timeout.
    /// Returns (seconds waited, acknowledged but not delivered).
    async fn drain(&self, run: u32, acked: u64) -> (f64, u64) {
        let t0 = Instant::now();
        loop {
            let got = self.receiver.distinct(run);
            if got >= acked || t0.elapsed() >= self.args.drain_timeout {
                return (t0.elapsed().as_secs_f64(), acked.saturating_sub(got));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The figures every scenario ends with: errors, peak RSS, CPU split.
    fn common(&self, r: &mut ScenarioResult, m: &Measured) {
        r.figures.push(Figure::new("errors", "count", Some(m.stats.error_count() as f64)));
        r.figures.push(Figure::new("peak RSS", "MB", m.peak_rss.map(mb)).note(if m.peak_reset {
            "during this scenario"
        } else {
            "since start (peak reset refused)"
        }));
        r.figures.push(Figure::new("CPU loft", "cores", Some(m.cores.loft)));
        r.figures.push(Figure::new("CPU harness", "cores", Some(m.cores.harness)).note("generator + receiver"));
        if !self.sqlite() {
            r.figures.push(Figure::new("CPU postgres", "cores", Some(m.cores.db)));
        }
        r.figures.push(Figure::new("CPU other", "cores", Some(m.cores.other)).note("other processes: noise"));
        note_noise(&m.cores);
    }

    fn details(&self, run: u32, m: &Measured) -> serde_json::Value {
        json!({
            "run_tag": run,
            "ok_in_window": m.stats.ok,
            "ok_total": m.stats.ok_all,
            "errors": m.stats.errors,
            "warmup_errors": m.stats.warmup_errors,
            "window_s": m.stats.window.as_secs_f64(),
            "delivered_in_window": m.delivered_in_window,
            "cpu_cores": cores_json(&m.cores),
            "peak_rss_bytes": m.peak_rss,
            "latency_ms": latency_json(&m.stats.latency),
        })
    }
}

fn latency_json(h: &hdrhistogram::Histogram<u64>) -> serde_json::Value {
    json!({
        "count": h.len(),
        "p50": q_ms(h, 0.50), "p90": q_ms(h, 0.90), "p99": q_ms(h, 0.99), "p999": q_ms(h, 0.999),
        "max": max_ms(h),
    })
}

struct Measured {
    stats: LoadStats,
    cores: Cores,
    delivered_in_window: u64,
    peak_rss: Option<u64>,
    peak_reset: bool,
}

/// Target of a throughput figure: `sqlite` as DESIGN §12 says, PostgreSQL at half of it.
fn ratio_target(sqlite: bool, x: f64) -> (Target, String) {
    if sqlite {
        (Target::RatioAtLeast(x), format!("≥ {:.0} % of baseline", x * 100.0))
    } else {
        (Target::RatioAtLeast(x / 2.0), format!("≥ 50 % of SQLite (≈ {:.1} % of baseline)", x * 50.0))
    }
}

async fn scenario(ctx: &mut Ctx<'_>, s: Scenario) -> anyhow::Result<ScenarioResult> {
    let backend = ctx.backend.name();
    let name = s.name();
    let via_ingest = matches!(s, Scenario::Ingest | Scenario::E2e | Scenario::Latency);
    if via_ingest && let Err(reason) = &ctx.fixture.ingest {
        return Ok(ScenarioResult::not_run(backend, name, reason));
    }
    let mut r = ScenarioResult::new(backend, name);
    let run = ctx.next_run();
    match s {
        Scenario::Ingest | Scenario::Publish | Scenario::Unary => {
            let (target, base, unit_name) = match s {
                Scenario::Ingest => (ctx.http_target(&ctx.fixture.ingest_source.clone()), &ctx.base.http, "acked/s"),
                Scenario::Publish => (ctx.publish_target(PUBLISH_TYPE), &ctx.base.publish, "acked/s"),
                _ => (
                    LoadTarget::GetDestination {
                        channels: ctx.channels.clone(),
                        auth: ctx.auth.clone(),
                        project_id: ctx.fixture.project_id.clone(),
                        destination_id: ctx.fixture.destination_id.clone(),
                    },
                    &ctx.base.unary,
                    "calls/s",
                ),
            };
            let (base_rate, base_p50, base_p99) = (rate(base), p(base, 0.5), p(base, 0.99));
            let m = ctx.closed(target, run).await?;
            let mut fig = Figure::new(unit_name, "/s", Some(m.stats.rate())).vs(base_rate);
            fig = match s {
                Scenario::Ingest => {
                    let (t, text) = ratio_target(ctx.sqlite(), 0.60);
                    fig.target(t, text)
                }
                Scenario::Unary if ctx.sqlite() => fig.target(Target::AtLeast(15_000.0), "≥ 15 000 /s"),
                Scenario::Unary => fig.target(Target::AtLeast(7_500.0), "≥ 50 % of SQLite (≈ 7 500 /s)"),
                _ => fig.note("no §12 figure (same commit path as ingest, §3)"),
            };
            r.figures.push(fig);
            r.figures.push(Figure::new("latency p50", "ms", q_ms(&m.stats.latency, 0.5)).vs(base_p50));
            r.figures.push(Figure::new("latency p99", "ms", q_ms(&m.stats.latency, 0.99)).vs(base_p99));
            ctx.common(&mut r, &m);
            r.details.push(ctx.details(run, &m));
        }
        Scenario::E2e | Scenario::E2ePublish => {
            let (target, base) = if s == Scenario::E2e {
                (ctx.http_target(&ctx.fixture.e2e_source.clone()), &ctx.base.http)
            } else {
                (ctx.publish_target(DELIVERED_TYPE), &ctx.base.publish)
            };
            let base_rate = rate(base);
            let corrupt0 = ctx.receiver.corrupt.load(Ordering::Relaxed);
            let m = ctx.closed(target, run).await?;
            let at_end = ctx.receiver.distinct(run);
            let (drain_s, undelivered) = ctx.drain(run, m.stats.ok_all).await;
            let (received, distinct, hist) = ctx.receiver.snapshot(run);
            let delivered_rate = m.delivered_in_window as f64 / m.stats.window.as_secs_f64();
            let (t, text) = ratio_target(ctx.sqlite(), 0.35);
            let text =
                if s == Scenario::E2e { text } else { format!("{text} (§12 names ingest; gRPC baseline here)") };
            r.figures.push(Figure::new("delivered/s", "/s", Some(delivered_rate)).vs(base_rate).target(t, text));
            r.figures.push(Figure::new("acked/s", "/s", Some(m.stats.rate())).vs(base_rate));
            r.figures.push(Figure::new(
                "backlog at end of load",
                "count",
                Some(m.stats.ok_all.saturating_sub(at_end) as f64),
            ));
            r.figures.push(Figure::new("drain time", "s", Some(drain_s)));
            r.figures.push(
                Figure::new("acked, not delivered", "count", Some(undelivered as f64))
                    .note(format!("after ≤ {:?} drain", ctx.args.drain_timeout)),
            );
            r.figures.push(Figure::new("ack latency p50", "ms", q_ms(&m.stats.latency, 0.5)).vs(p(base, 0.5)));
            r.figures.push(Figure::new("ack latency p99", "ms", q_ms(&m.stats.latency, 0.99)).vs(p(base, 0.99)));
            r.figures.push(Figure::new("receive→delivered p50", "ms", q_ms(&hist, 0.5)).note("saturated; see latency"));
            r.figures.push(Figure::new("receive→delivered p99", "ms", q_ms(&hist, 0.99)));
            ctx.common(&mut r, &m);
            let mut d = ctx.details(run, &m);
            d["received"] = json!(received);
            d["duplicates"] = json!(received - distinct);
            d["corrupt_bodies"] = json!(ctx.receiver.corrupt.load(Ordering::Relaxed) - corrupt0);
            d["receive_to_delivered_ms"] = latency_json(&hist);
            r.details.push(d);
        }
        Scenario::Latency | Scenario::LatencyPublish => {
            let (target, base) = if s == Scenario::Latency {
                (ctx.http_target(&ctx.fixture.e2e_source.clone()), &ctx.base.http_open)
            } else {
                (ctx.publish_target(DELIVERED_TYPE), &ctx.base.publish_open)
            };
            let peak_reset = reset_peak_rss(ctx.server.pid);
            let corrupt0 = ctx.receiver.corrupt.load(Ordering::Relaxed);
            let u0 = usage(ctx.server.pid, ctx.postmaster);
            let stats =
                open_loop(target, Bodies::new(run, ctx.args.body_bytes), ctx.args.rate, ctx.args.duration).await;
            let u1 = usage(ctx.server.pid, ctx.postmaster);
            let (drain_s, undelivered) = ctx.drain(run, stats.ok_all).await;
            let (received, distinct, hist) = ctx.receiver.snapshot(run);
            let m = Measured {
                cores: cores(u0, u1),
                delivered_in_window: distinct,
                peak_rss: proc_status_bytes(ctx.server.pid, "VmHWM"),
                peak_reset,
                stats,
            };
            r.figures.push(
                Figure::new("receive→delivered p50", "ms", q_ms(&hist, 0.5)).target(Target::AtMost(5.0), "≤ 5 ms"),
            );
            r.figures.push(
                Figure::new("receive→delivered p99", "ms", q_ms(&hist, 0.99)).target(Target::AtMost(25.0), "≤ 25 ms"),
            );
            r.figures.push(Figure::new("receive→delivered max", "ms", max_ms(&hist)));
            r.figures
                .push(Figure::new("acked/s", "/s", Some(m.stats.rate())).note(format!("offered {} /s", ctx.args.rate)));
            r.figures.push(Figure::new("ack latency p50", "ms", q_ms(&m.stats.latency, 0.5)).vs(p(base, 0.5)));
            r.figures.push(Figure::new("ack latency p99", "ms", q_ms(&m.stats.latency, 0.99)).vs(p(base, 0.99)));
            r.figures.push(
                Figure::new("acked, not delivered", "count", Some(undelivered as f64))
                    .note(format!("after ≤ {:?} drain", ctx.args.drain_timeout)),
            );
            ctx.common(&mut r, &m);
            let mut d = ctx.details(run, &m);
            d["scheduled"] = json!(m.stats.scheduled);
            d["dropped_by_generator"] = json!(m.stats.dropped);
            d["received"] = json!(received);
            d["duplicates"] = json!(received - distinct);
            d["drain_s"] = json!(drain_s);
            d["corrupt_bodies"] = json!(ctx.receiver.corrupt.load(Ordering::Relaxed) - corrupt0);
            d["receive_to_delivered_ms"] = latency_json(&hist);
            r.details.push(d);
        }
        // Its own server, not the one the other scenarios share: see `backlog`.
        Scenario::Backlog => bail!("backlog is not run through `scenario`"),
    }
    Ok(r)
}

/// How often `backlog` samples the server's RSS.
const RSS_EVERY: Duration = Duration::from_millis(500);
/// Points kept of each RSS series in the report: one every ~5 % of the phase.
const SERIES_POINTS: usize = 21;
/// How long `backlog` leaves the full, paused destination alone before resuming it: what a held
/// backlog costs at rest (the dispatcher's claim polls, the queue-depth gauge's count every 5 s).
const PAUSED_IDLE: Duration = Duration::from_secs(10);
/// Progress lines of the long `backlog` phases, so a 30-minute run is not silent.
const PROGRESS_EVERY: Duration = Duration::from_secs(15);

/// What `backlog` needs. It starts a server of its own: the other scenarios leave RSS, a
/// backlog and rows behind that would blur a flat-RSS figure.
struct BacklogRun<'a> {
    args: &'a Args,
    backend: Backend,
    bin: &'a Path,
    db_url: String,
    log: PathBuf,
    receiver_addr: SocketAddr,
    receiver: Arc<ReceiverStats>,
    /// The bootstrap ADMIN key.
    admin: &'a MetadataValue<Ascii>,
    runs: &'a AtomicU32,
    postmaster: Option<u32>,
    /// The gRPC `PublishEvent` baseline of this repetition, when one was measured.
    base_publish: Option<f64>,
}

/// One RSS sample: seconds into the phase, events acknowledged (fill) or delivered (drain).
#[derive(Clone, Copy)]
struct RssSample {
    t: f64,
    count: u64,
    rss: Option<u64>,
    /// The heap's part of it: file pages (SQLite's files, the binary) come and go with the page
    /// cache, so a growing `rss` with a flat `anon` is not a leak.
    anon: Option<u64>,
}

/// The server exited (a zombie has no `VmRSS` either).
fn gone(pid: u32) -> bool {
    proc_status_bytes(pid, "VmRSS").is_none()
}

/// Samples `pid`'s RSS every [`RSS_EVERY`] from `start` until `done(count())`; checks every
/// 20 ms, so the time returned is that close to when `done` first held.
async fn watch(
    pid: u32,
    phase: &str,
    n: u64,
    start: Instant,
    count: impl Fn() -> u64,
    mut done: impl FnMut(u64) -> bool,
) -> (Vec<RssSample>, Duration) {
    let mut samples = Vec::new();
    let (mut next_sample, mut next_progress) = (start, start + PROGRESS_EVERY);
    loop {
        let now = Instant::now();
        let c = count();
        let finished = done(c);
        if now >= next_sample || finished {
            samples.push(RssSample {
                t: (now - start).as_secs_f64(),
                count: c,
                rss: proc_status_bytes(pid, "VmRSS"),
                anon: proc_status_bytes(pid, "RssAnon"),
            });
            next_sample = (next_sample + RSS_EVERY).max(now);
        }
        if finished {
            return (samples, now - start);
        }
        if now >= next_progress {
            let rss = proc_status_bytes(pid, "VmRSS").map_or(0.0, mb);
            eprintln!(
                "loft-bench:   {phase} {} of {} after {:.0} s, RSS {rss:.1} MB",
                group_thousands(c as i64),
                group_thousands(n as i64),
                (now - start).as_secs_f64()
            );
            next_progress += PROGRESS_EVERY;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A few evenly spaced samples (the samples are evenly spaced in time), the first and the last
/// among them.
fn series_json(samples: &[RssSample]) -> serde_json::Value {
    let Some(last) = samples.len().checked_sub(1) else { return json!([]) };
    let mut picked: Vec<usize> = (0..SERIES_POINTS).map(|k| k * last / (SERIES_POINTS - 1)).collect();
    picked.dedup();
    picked
        .into_iter()
        .map(|i| {
            let s = samples[i];
            json!({"t_s": s.t, "count": s.count, "rss_bytes": s.rss, "rss_anon_bytes": s.anon})
        })
        .collect()
}

/// `backlog`: a fresh server, its destination paused, `--backlog-events` published to it
/// (closed loop, until exactly that many are acknowledged), a pause at rest, then the
/// destination resumed and drained into the receiver, RSS sampled throughout.
async fn backlog(b: BacklogRun<'_>) -> anyhow::Result<ScenarioResult> {
    let (args, n, c) = (b.args, b.args.backlog_events, b.args.concurrency);
    let mut server = LoftServer::start(b.bin, &b.db_url, Some(MASTER_KEY), ADMIN_KEY, b.log).await?;
    let pid = server.pid;
    eprintln!("loft-bench:   backlog: loft serve pid {pid} on a fresh {} database", b.backend.name());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = proc_status_bytes(pid, "VmRSS");
    let fixture = setup::create(setup::FixtureOptions {
        grpc: server.grpc_addr,
        http: server.http_addr,
        auth: b.admin,
        receiver: b.receiver_addr,
        max_in_flight: args.max_in_flight,
        body_bytes: args.body_bytes,
        probe_run: b.runs.fetch_add(1, Ordering::Relaxed),
        editor_key: args.key == "editor",
    })
    .await
    .with_context(|| format!("setting up the fixture; loft log:\n{}", server.log_tail(20)))?;
    let (project, destination) = (fixture.project_id.as_str(), fixture.destination_id.as_str());
    setup::set_paused(server.grpc_addr, &fixture.auth, project, destination, true).await?;
    let mut channels = Vec::new();
    for _ in 0..args.grpc_channels {
        channels.push(setup::channel(server.grpc_addr).await?);
    }
    let target = LoadTarget::Publish {
        channels,
        auth: fixture.auth.clone(),
        project_id: project.to_owned(),
        event_type: DELIVERED_TYPE.into(),
    };
    let run = b.runs.fetch_add(1, Ordering::Relaxed);
    let corrupt0 = b.receiver.corrupt.load(Ordering::Relaxed);

    eprintln!("loft-bench:   backlog: publishing {} events to the paused destination", group_thousands(n as i64));
    let fill_reset = reset_peak_rss(pid);
    let acked = Arc::new(AtomicU64::new(0));
    let u0 = usage(pid, b.postmaster);
    let start = Instant::now();
    let bodies = Bodies::new(run, args.body_bytes);
    let load = tokio::spawn(closed_loop_until(target, bodies, c, n, start + args.backlog_timeout, acked.clone()));
    let (fill_series, _) =
        watch(pid, "published", n, start, || acked.load(Ordering::Relaxed), |_| load.is_finished() || gone(pid)).await;
    if !load.is_finished() {
        load.abort();
        bail!("loft serve died during the fill; log:\n{}", server.log_tail(30));
    }
    let fill = load.await.context("load generator panicked")?;
    let u1 = usage(pid, b.postmaster);
    let fill_peak = proc_status_bytes(pid, "VmHWM");
    if fill.ok_all < n {
        bail!(
            "the fill stopped at {} of {n} events acknowledged after {:.0} s (--backlog-timeout {:?}); errors: {:?}",
            fill.ok_all,
            fill.window.as_secs_f64(),
            args.backlog_timeout,
            fill.errors
        );
    }

    // At rest, paused, with the whole backlog held.
    let u2 = usage(pid, b.postmaster);
    tokio::time::sleep(PAUSED_IDLE).await;
    let u3 = usage(pid, b.postmaster);
    let delivered_paused = b.receiver.distinct(run);

    eprintln!("loft-bench:   backlog: resuming the destination");
    let drain_reset = reset_peak_rss(pid);
    let rss_start = proc_status_bytes(pid, "VmRSS");
    let u4 = usage(pid, b.postmaster);
    let start = Instant::now();
    setup::set_paused(server.grpc_addr, &fixture.auth, project, destination, false).await?;
    let (drain_series, drain_time) = watch(
        pid,
        "delivered",
        n,
        start,
        || b.receiver.distinct(run),
        |got| got >= n || start.elapsed() >= args.backlog_timeout || gone(pid),
    )
    .await;
    let u5 = usage(pid, b.postmaster);
    if !server.alive() {
        bail!("loft serve died during the drain; log:\n{}", server.log_tail(30));
    }
    let rss_end = proc_status_bytes(pid, "VmRSS");
    let sampled_peak = drain_series.iter().filter_map(|s| s.rss).max();
    // The kernel's high-water mark also sees a peak between two samples.
    let drain_peak = if drain_reset { proc_status_bytes(pid, "VmHWM").max(sampled_peak) } else { sampled_peak };
    let (received, distinct, _) = b.receiver.snapshot(run);
    let delivered = distinct.min(n);
    let drain_s = drain_time.as_secs_f64();
    server.stop();
    let complaints = log_complaints(&server.log);

    let (fill_cores, paused_cores, drain_cores) = (cores(u0, u1), cores(u2, u3), cores(u4, u5));
    for phase in [&fill_cores, &paused_cores, &drain_cores] {
        note_noise(phase);
    }
    let pg = b.backend == Backend::Postgres;
    let events = group_thousands(n as i64);
    let mut r = ScenarioResult::new(b.backend.name(), Scenario::Backlog.name());
    r.figures.push(
        Figure::new("published/s", "/s", Some(fill.rate()))
            .vs(b.base_publish)
            .note(format!("{events} events, closed loop c={c}, destination paused")),
    );
    r.figures.push(Figure::new("publish latency p50", "ms", q_ms(&fill.latency, 0.5)));
    r.figures.push(Figure::new("publish latency p99", "ms", q_ms(&fill.latency, 0.99)));
    r.figures.push(Figure::new("publish errors", "count", Some(fill.error_count() as f64)).note("each retried"));
    r.figures.push(Figure::new("fill time", "s", Some(fill.window.as_secs_f64())));
    r.figures.push(Figure::new("peak RSS (fill)", "MB", fill_peak.map(mb)).note(if fill_reset {
        "during the fill"
    } else {
        "since start (peak reset refused)"
    }));
    r.figures.push(Figure::new("CPU loft (fill)", "cores", Some(fill_cores.loft)));
    if pg {
        r.figures.push(Figure::new("CPU postgres (fill)", "cores", Some(fill_cores.db)));
    }
    r.figures.push(Figure::new("delivered while paused", "count", Some(delivered_paused as f64)).note("expected 0"));
    r.figures.push(
        Figure::new("CPU loft (paused, at rest)", "cores", Some(paused_cores.loft))
            .note(format!("{events} held, no load, {PAUSED_IDLE:?}")),
    );
    if pg {
        r.figures.push(Figure::new("CPU postgres (paused, at rest)", "cores", Some(paused_cores.db)));
    }
    let in_flight = match args.max_in_flight {
        0 => "the server's default max_in_flight".to_owned(),
        m => format!("max_in_flight {m}"),
    };
    r.figures.push(
        Figure::new("delivered/s", "/s", Some(delivered as f64 / drain_s.max(1e-9)))
            .note(format!("drain after resume, {in_flight}")),
    );
    r.figures.push(Figure::new("drain time", "s", Some(drain_s)));
    r.figures.push(
        Figure::new("not delivered", "count", Some(n.saturating_sub(distinct) as f64))
            .note(format!("after ≤ {:?} drain", args.backlog_timeout)),
    );
    r.figures.push(Figure::new("RSS at drain start", "MB", rss_start.map(mb)));
    let target_text = if n == 1_000_000 {
        "≤ 250 MB, flat".to_owned()
    } else {
        format!("≤ 250 MB, flat (§12 names 1 000 000 events; {events} here)")
    };
    r.figures
        .push(Figure::new("peak RSS (drain)", "MB", drain_peak.map(mb)).target(Target::AtMost(250.0), target_text));
    r.figures.push(Figure::new("RSS at drain end", "MB", rss_end.map(mb)));
    let growth = rss_start.zip(rss_end).map(|(a, z)| mb(z) - mb(a));
    r.figures.push(Figure::new("RSS growth over drain", "MB", growth).note("end − start"));
    r.figures.push(Figure::new("CPU loft (drain)", "cores", Some(drain_cores.loft)));
    r.figures.push(Figure::new("CPU harness (drain)", "cores", Some(drain_cores.harness)).note("receiver"));
    if pg {
        r.figures.push(Figure::new("CPU postgres (drain)", "cores", Some(drain_cores.db)));
    }
    let other = fill_cores.other.max(paused_cores.other).max(drain_cores.other);
    r.figures.push(Figure::new("CPU other", "cores", Some(other)).note("other processes, worst phase: noise"));
    r.details.push(json!({
        "run_tag": run,
        "events": n,
        "idle_rss_bytes": idle_rss,
        "peak_rss_bytes": fill_peak.max(drain_peak),
        "fill": {
            "acked": fill.ok_all,
            "errors": fill.errors,
            "window_s": fill.window.as_secs_f64(),
            "rate": fill.rate(),
            "latency_ms": latency_json(&fill.latency),
            "peak_rss_bytes": fill_peak,
            "peak_reset": fill_reset,
            "cpu_cores": cores_json(&fill_cores),
            "rss_samples": fill_series.len(),
            "rss_series": series_json(&fill_series),
        },
        "paused": {
            "at_rest_s": PAUSED_IDLE.as_secs_f64(),
            "delivered": delivered_paused,
            "cpu_cores": cores_json(&paused_cores),
        },
        "drain": {
            "delivered": distinct,
            "received": received,
            "duplicates": received - distinct,
            "not_delivered": n.saturating_sub(distinct),
            "drain_s": drain_s,
            "rate": delivered as f64 / drain_s.max(1e-9),
            "rss_start_bytes": rss_start,
            "rss_end_bytes": rss_end,
            "peak_rss_bytes": drain_peak,
            "peak_rss_sampled_bytes": sampled_peak,
            "peak_reset": drain_reset,
            "cpu_cores": cores_json(&drain_cores),
            "corrupt_bodies": b.receiver.corrupt.load(Ordering::Relaxed) - corrupt0,
            "rss_samples": drain_series.len(),
            "rss_series": series_json(&drain_series),
        },
        "server_log_warnings": complaints.len(),
        "server_log_sample": complaints.iter().take(10).collect::<Vec<_>>(),
    }));
    Ok(r)
}

/// The database of one `loft serve` start: a SQLite file in the invocation's directory, or a
/// database on the PostgreSQL server.
struct RunDatabase {
    backend: Backend,
    sqlite_file: PathBuf,
    pg_name: String,
}

impl RunDatabase {
    fn new(backend: Backend, dir: &Path, name: &str) -> Self {
        let pg_name = format!("loft_bench_{}_{name}", std::process::id());
        Self { backend, sqlite_file: dir.join(format!("{name}.db")), pg_name }
    }

    /// Creates it (PostgreSQL; SQLite creates its file itself) and gives its URL.
    fn create(&self, pg: &mut Option<Postgres>) -> anyhow::Result<String> {
        match self.backend {
            Backend::Sqlite => Ok(format!("sqlite://{}", self.sqlite_file.display())),
            Backend::Postgres => pg.as_mut().expect("postgres started").fresh_database(&self.pg_name),
        }
    }

    /// Once its server stopped: the next run starts without this one's data (see
    /// `Postgres::drop_database`). SQLite's WAL and shared-memory files go with the database.
    fn discard(&self, pg: &mut Option<Postgres>) {
        match self.backend {
            Backend::Sqlite => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut path = self.sqlite_file.as_os_str().to_owned();
                    path.push(suffix);
                    let _ = std::fs::remove_file(path);
                }
            }
            Backend::Postgres => pg.as_mut().expect("postgres started").drop_database(&self.pg_name),
        }
    }
}

/// The WARN and ERROR lines of a server's log: what it complained about under load.
fn log_complaints(log: &Path) -> Vec<String> {
    let log = std::fs::read_to_string(log).unwrap_or_default();
    log.lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).map(str::to_owned).collect()
}

/// A baseline result as a table row.
fn baseline_row(name: &str, s: &LoadStats, c: Cores) -> ScenarioResult {
    note_noise(&c);
    let mut r = ScenarioResult::new("baseline", name);
    r.figures.push(Figure::new("answered/s", "/s", Some(s.rate())));
    r.figures.push(Figure::new("latency p50", "ms", q_ms(&s.latency, 0.5)));
    r.figures.push(Figure::new("latency p99", "ms", q_ms(&s.latency, 0.99)));
    r.figures.push(Figure::new("errors", "count", Some(s.error_count() as f64)));
    r.figures.push(Figure::new("CPU harness", "cores", Some(c.harness)).note("generator + bare server"));
    r.figures.push(Figure::new("CPU other", "cores", Some(c.other)).note("other processes: noise"));
    r.details.push(json!({
        "ok_in_window": s.ok, "errors": s.errors, "window_s": s.window.as_secs_f64(),
        "latency_ms": latency_json(&s.latency),
    }));
    r
}

/// Runs the baselines the chosen scenarios need against the bare server at `addr`.
async fn baselines(
    args: &Args,
    addr: std::net::SocketAddr,
    fixture: &Fixture,
    auth: &MetadataValue<Ascii>,
    runs: &AtomicU32,
    idle_loft: u32,
) -> anyhow::Result<(Baselines, Vec<ScenarioResult>)> {
    let sc = args.scenarios();
    let has = |s: Scenario| sc.contains(&s);
    let mut b = Baselines::default();
    let mut rows = Vec::new();
    let mut channels = Vec::new();
    for _ in 0..args.grpc_channels {
        channels.push(setup::channel(addr).await?);
    }
    let publish = LoadTarget::Publish {
        channels: channels.clone(),
        auth: auth.clone(),
        project_id: fixture.project_id.clone(),
        event_type: PUBLISH_TYPE.into(),
    };
    let c = args.concurrency;
    let closed = async |target: LoadTarget| {
        let window = Window::after(args.warmup, args.duration);
        let run = runs.fetch_add(1, Ordering::Relaxed);
        let load = tokio::spawn(closed_loop(target, Bodies::new(run, args.body_bytes), c, window));
        tokio::time::sleep_until(window.measure_from.into()).await;
        let u0 = usage(idle_loft, None);
        tokio::time::sleep_until(window.end.into()).await;
        let u1 = usage(idle_loft, None);
        let stats = load.await.context("baseline generator panicked")?;
        anyhow::Ok((stats, cores(u0, u1)))
    };
    if has(Scenario::Ingest) || has(Scenario::E2e) {
        let (s, h) = closed(LoadTarget::Http { addr, path: format!("/in/{}", fixture.ingest_source) }).await?;
        rows.push(baseline_row(&format!("HTTP POST c={c}"), &s, h));
        b.http = Some(s);
    }
    if has(Scenario::Publish) || has(Scenario::E2ePublish) {
        let (s, h) = closed(publish.clone()).await?;
        rows.push(baseline_row(&format!("gRPC PublishEvent c={c}"), &s, h));
        b.publish = Some(s);
    }
    if has(Scenario::Unary) {
        let (s, h) = closed(LoadTarget::GetDestination {
            channels: channels.clone(),
            auth: auth.clone(),
            project_id: fixture.project_id.clone(),
            destination_id: fixture.destination_id.clone(),
        })
        .await?;
        rows.push(baseline_row(&format!("gRPC GetDestination c={c}"), &s, h));
        b.unary = Some(s);
    }
    // Open loop: the generator's own floor for ack latency at the latency scenarios' rate.
    let open_for = args.duration.min(Duration::from_secs(5));
    let open = async |target: LoadTarget| {
        let run = runs.fetch_add(1, Ordering::Relaxed);
        let u0 = usage(idle_loft, None);
        let s = open_loop(target, Bodies::new(run, args.body_bytes), args.rate, open_for).await;
        (s, cores(u0, usage(idle_loft, None)))
    };
    if has(Scenario::Latency) {
        let (s, h) = open(LoadTarget::Http { addr, path: format!("/in/{}", fixture.ingest_source) }).await;
        rows.push(baseline_row(&format!("HTTP POST open {}/s", args.rate), &s, h));
        b.http_open = Some(s);
    }
    if has(Scenario::LatencyPublish) {
        let (s, h) = open(publish).await;
        rows.push(baseline_row(&format!("gRPC PublishEvent open {}/s", args.rate), &s, h));
        b.publish_open = Some(s);
    }
    Ok((b, rows))
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    if !args.loft_bin.is_file() {
        bail!(
            "{} not found: build the server first with `cargo build --release --bin loft` (or pass --loft-bin)",
            args.loft_bin.display()
        );
    }
    let bin = args.loft_bin.canonicalize()?;
    let builds_at_start = concurrent_builds();
    if !builds_at_start.is_empty() {
        eprintln!(
            "loft-bench: WARNING: {} rustc/cargo process(es) running; figures will be skewed",
            builds_at_start.len()
        );
    }
    // Once a second: is a build running? (It would skew the figures; the report says so.)
    let build_samples = Arc::new((std::sync::atomic::AtomicU64::new(0), std::sync::atomic::AtomicU64::new(0)));
    let sampler = {
        let s = build_samples.clone();
        tokio::spawn(async move {
            loop {
                s.0.fetch_add(1, Ordering::Relaxed);
                if !concurrent_builds().is_empty() {
                    s.1.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let scenarios = args.scenarios();
    let backends = args.backends();
    eprintln!(
        "loft-bench: backends {}, scenarios {}, c={}, {:?} each (+{:?} warmup), {} B bodies, {} repetition(s)",
        backends.iter().map(|b| b.name()).collect::<Vec<_>>().join("+"),
        scenarios.iter().map(|s| s.name()).collect::<Vec<_>>().join(","),
        args.concurrency,
        args.duration,
        args.warmup,
        args.body_bytes,
        args.repeat,
    );

    // Drop order matters: servers before the cluster before the directory (reverse of here).
    let tmp = tempfile::Builder::new().prefix("loft-bench-").tempdir()?;
    // The PostgreSQL cluster runs as `postgres` and must reach its directory under ours.
    std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let recv_rt = BgRuntime::new(args.receiver_threads, "bench-recv")?;
    let base_rt = BgRuntime::new(args.baseline_threads, "bench-base")?;
    let (receiver_addr, receiver) = start_receiver(recv_rt.rt(), args.body_bytes)?;

    let mut pg = if backends.contains(&Backend::Postgres) {
        Some(match &args.pg_url {
            Some(url) => Postgres::external(url),
            None => Postgres::start_cluster(&args.scripts_dir, &tmp.path().join("pg"), args.pg_sync == "on")
                .context("starting PostgreSQL with scripts/pg-start")?,
        })
    } else {
        None
    };
    let pg_settings = pg.as_ref().map(|p| p.settings());

    let auth: MetadataValue<Ascii> = format!("Bearer {ADMIN_KEY}").parse()?;
    let runs = AtomicU32::new(1);
    let mut baseline_addr = None;
    let mut all_runs: Vec<Vec<ScenarioResult>> = Vec::new();
    let mut idle: Vec<serde_json::Value> = Vec::new();

    for rep in 0..args.repeat {
        let mut this_run = Vec::new();
        // Measured with the first backend, used by every backend of this repetition.
        let mut base = Baselines::default();
        for (bi, &backend) in backends.iter().enumerate() {
            let database = RunDatabase::new(backend, tmp.path(), &format!("run{rep}"));
            let db_url = database.create(&mut pg)?;
            // Given on SQLite too, so the server does not write (and warn about) a key file.
            let master = Some(MASTER_KEY);
            let log = tmp.path().join(format!("loft-{}-{rep}.log", backend.name()));
            eprintln!("loft-bench: [{}/{}] starting loft serve on {}", rep + 1, args.repeat, backend.name());
            let mut server = LoftServer::start(&bin, &db_url, master, ADMIN_KEY, log).await?;
            eprintln!(
                "loft-bench: loft serve pid {} (gRPC {}, HTTP {})",
                server.pid, server.grpc_addr, server.http_addr
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
            let idle_rss = proc_status_bytes(server.pid, "VmRSS");
            let probe = runs.fetch_add(1, Ordering::Relaxed);
            let fixture = setup::create(setup::FixtureOptions {
                grpc: server.grpc_addr,
                http: server.http_addr,
                auth: &auth,
                receiver: receiver_addr,
                max_in_flight: args.max_in_flight,
                body_bytes: args.body_bytes,
                probe_run: probe,
                editor_key: args.key == "editor",
            })
            .await
            .with_context(|| format!("setting up the fixture; loft log:\n{}", server.log_tail(20)))?;
            if let Err(reason) = &fixture.ingest {
                eprintln!("loft-bench: HTTP ingest unavailable: {reason}");
            }

            // The baselines: once per repetition, while the first backend's server idles (its
            // real answers are what the bare server repeats).
            if bi == 0 && !args.no_baseline {
                let addr = match baseline_addr {
                    Some(a) => a,
                    None => {
                        let canned = Canned {
                            ingest: fixture.ingest.clone().unwrap_or_else(|_| {
                                Bytes::from_static(b"{\"event_id\":\"evt_01KBENCHBASELINE0000000000\"}")
                            }),
                            publish: fixture.publish_response.clone(),
                            get_destination: fixture.get_destination_response.clone(),
                        };
                        let a = start_baseline(base_rt.rt(), canned)?;
                        baseline_addr = Some(a);
                        a
                    }
                };
                eprintln!("loft-bench: [{}/{}] baselines (bare hyper)", rep + 1, args.repeat);
                let (b, rows) = baselines(&args, addr, &fixture, &fixture.auth, &runs, server.pid).await?;
                base = b;
                this_run.extend(rows);
            }

            let mut channels = Vec::new();
            for _ in 0..args.grpc_channels {
                channels.push(setup::channel(server.grpc_addr).await?);
            }
            let postmaster = pg.as_ref().and_then(|p| p.postmaster);
            let mut peak_overall: Option<u64> = None;
            {
                let mut ctx = Ctx {
                    args: &args,
                    backend,
                    server: &mut server,
                    fixture: &fixture,
                    auth: fixture.auth.clone(),
                    channels,
                    receiver: receiver.clone(),
                    base: &base,
                    postmaster,
                    runs: &runs,
                };
                for &s in scenarios.iter().filter(|s| **s != Scenario::Backlog) {
                    eprintln!("loft-bench: [{}/{}] {} {}", rep + 1, args.repeat, backend.name(), s.name());
                    let result = match scenario(&mut ctx, s).await {
                        Ok(r) => r,
                        Err(e) => ScenarioResult::failed(backend.name(), s.name(), format!("{e:#}")),
                    };
                    if let Some(peak) = result.details.first().and_then(|d| d["peak_rss_bytes"].as_u64()) {
                        peak_overall = Some(peak_overall.unwrap_or(0).max(peak));
                    }
                    this_run.push(result);
                    if !ctx.server.alive() {
                        let tail = ctx.server.log_tail(30);
                        this_run.push(ScenarioResult::failed(
                            backend.name(),
                            "server",
                            format!("loft serve died during {}; log:\n{tail}", s.name()),
                        ));
                        break;
                    }
                }
            }
            let mut mem = ScenarioResult::new(backend.name(), "memory");
            mem.figures.push(
                Figure::new("idle RSS after start", "MB", idle_rss.map(mb)).target(Target::AtMost(40.0), "≤ 40 MB"),
            );
            let backlog_too = scenarios.contains(&Scenario::Backlog);
            mem.figures.push(Figure::new("peak RSS under load", "MB", peak_overall.map(mb)).note(if backlog_too {
                "§12's ≤ 250 MB is for a backlog: see backlog"
            } else {
                "§12's ≤ 250 MB is for a 1 000 000-event backlog: not measured"
            }));
            mem.details.push(json!({"idle_rss_bytes": idle_rss, "peak_rss_bytes": peak_overall}));
            this_run.push(mem);
            idle.push(json!({"backend": backend.name(), "repetition": rep, "idle_rss_bytes": idle_rss}));
            server.stop();
            database.discard(&mut pg);
            // What the server complained about under load belongs in the report.
            let complaints = log_complaints(&server.log);
            if !complaints.is_empty() {
                eprintln!(
                    "loft-bench: the {} server logged {} warning/error line(s), e.g.:\n  {}",
                    backend.name(),
                    complaints.len(),
                    complaints[..complaints.len().min(3)].join("\n  ")
                );
            }
            if let Some(m) = this_run.iter_mut().rev().find(|r| r.scenario == "memory" && r.backend == backend.name()) {
                m.details.push(json!({
                    "server_log_warnings": complaints.len(),
                    "server_log_sample": complaints.iter().take(10).collect::<Vec<_>>(),
                }));
            }

            if backlog_too {
                let database = RunDatabase::new(backend, tmp.path(), &format!("run{rep}_backlog"));
                let db_url = database.create(&mut pg)?;
                eprintln!("loft-bench: [{}/{}] {} backlog", rep + 1, args.repeat, backend.name());
                let result = backlog(BacklogRun {
                    args: &args,
                    backend,
                    bin: &bin,
                    db_url,
                    log: tmp.path().join(format!("loft-{}-{rep}-backlog.log", backend.name())),
                    receiver_addr,
                    receiver: receiver.clone(),
                    admin: &auth,
                    runs: &runs,
                    postmaster,
                    base_publish: rate(&base.publish),
                })
                .await;
                this_run.push(result.unwrap_or_else(|e| {
                    ScenarioResult::failed(backend.name(), Scenario::Backlog.name(), format!("{e:#}"))
                }));
                database.discard(&mut pg);
            }
        }
        all_runs.push(this_run);
    }

    let mut results = merge_runs(all_runs);
    compare_backends(&mut results);
    let out = table(&results);
    println!("{out}");
    sampler.abort();
    let builds_at_end = concurrent_builds();
    let (samples, with_build) = (build_samples.0.load(Ordering::Relaxed), build_samples.1.load(Ordering::Relaxed));
    let noise = NOISE.load(Ordering::Relaxed) as f64 / 100.0;
    if noise > 0.25 {
        eprintln!(
            "loft-bench: WARNING: other processes used up to {noise:.2} cores during a measurement; figures are skewed"
        );
    }
    if with_build > 0 {
        eprintln!(
            "loft-bench: WARNING: rustc/cargo ran during {with_build} of {samples} one-second samples; figures are skewed"
        );
    }
    if let Some(path) = &args.json {
        let report = json!({
            "harness": "loft-bench",
            "command": std::env::args().collect::<Vec<_>>().join(" "),
            "loft_bin": bin,
            "loft_bin_modified": std::fs::metadata(&bin).and_then(|m| m.modified()).ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_secs()),
            "cwd_git_revision": git_revision(),
            "machine": machine(),
            "config": {
                "backends": backends, "scenarios": scenarios, "concurrency": args.concurrency,
                "duration_s": args.duration.as_secs_f64(), "warmup_s": args.warmup.as_secs_f64(),
                "rate": args.rate, "body_bytes": args.body_bytes, "repeat": args.repeat,
                "grpc_channels": args.grpc_channels, "max_in_flight": args.max_in_flight,
                "gen_threads": args.gen_threads, "receiver_threads": args.receiver_threads,
                "baseline_threads": args.baseline_threads, "key": args.key,
                "backlog_events": args.backlog_events, "backlog_timeout_s": args.backlog_timeout.as_secs_f64(),
                "postgres": pg_settings,
            },
            "noise": {
                "max_other_cores": noise,
                "quiet": with_build == 0 && noise <= 0.25,
            },
            "concurrent_builds": {
                "at_start": builds_at_start, "at_end": builds_at_end,
                "samples": samples, "samples_with_build": with_build,
            },
            "receiver": {
                "total": receiver.total.load(Ordering::Relaxed),
                "corrupt_bodies": receiver.corrupt.load(Ordering::Relaxed),
                "missing_headers": receiver.missing_headers.load(Ordering::Relaxed),
            },
            "results": results,
        });
        write_json(path, &report)?;
        eprintln!("loft-bench: wrote {}", path.display());
    }
    drop(pg);
    drop(tmp);
    Ok(())
}

/// DESIGN §12: PostgreSQL, one node, ≥ 50 % of the SQLite figures.
fn compare_backends(results: &mut [ScenarioResult]) {
    let sqlite: Vec<(String, String, f64)> = results
        .iter()
        .filter(|r| r.backend == "sqlite")
        .flat_map(|r| {
            r.figures
                .iter()
                .filter(|f| f.unit == "/s")
                .filter_map(|f| Some((r.scenario.clone(), f.name.clone(), f.value?)))
                .collect::<Vec<_>>()
        })
        .collect();
    for r in results.iter_mut().filter(|r| r.backend == "postgres") {
        let mut extra = Vec::new();
        for f in &r.figures {
            if f.unit != "/s" {
                continue;
            }
            if let Some((_, _, s)) = sqlite.iter().find(|(sc, n, _)| *sc == r.scenario && *n == f.name)
                && let Some(v) = f.value
            {
                extra.push(
                    Figure::new(format!("{} ÷ SQLite", f.name), "ratio", Some(v / s))
                        .target(Target::AtLeast(0.5), "≥ 0.50 (PostgreSQL ≥ 50 % of SQLite)"),
                );
            }
        }
        r.figures.extend(extra);
    }
}

/// `--merge`: the medians of several reports, each taken as one repetition.
pub fn merge_files(files: &[std::path::PathBuf], out: Option<&Path>) -> anyhow::Result<()> {
    let mut runs = Vec::new();
    let mut sources = Vec::new();
    for f in files {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(f).with_context(|| format!("reading {}", f.display()))?)
                .with_context(|| format!("parsing {}", f.display()))?;
        let mut results: Vec<ScenarioResult> =
            serde_json::from_value(v["results"].clone()).with_context(|| format!("results of {}", f.display()))?;
        // Cross-backend ratios are recomputed from the medians.
        for r in &mut results {
            r.figures.retain(|f| f.unit != "ratio");
        }
        runs.push(results);
        sources.push(json!({
            "file": f, "command": v["command"], "machine": v["machine"], "config": v["config"],
            "concurrent_builds": v["concurrent_builds"], "receiver": v["receiver"],
        }));
    }
    let mut results = merge_runs(runs);
    compare_backends(&mut results);
    println!("{}", table(&results));
    if let Some(path) = out {
        write_json(path, &json!({ "harness": "loft-bench --merge", "merged_from": sources, "results": results }))?;
        eprintln!("loft-bench: wrote {}", path.display());
    }
    Ok(())
}

fn write_json(path: &Path, v: &serde_json::Value) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(v)? + "\n")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_series_keeps_a_few_evenly_spaced_points_with_both_ends() {
        let samples: Vec<RssSample> =
            (0..100).map(|i| RssSample { t: i as f64 * 0.5, count: i, rss: Some(i * 1000), anon: None }).collect();
        let series = series_json(&samples);
        let points = series.as_array().unwrap();
        assert_eq!(points.len(), SERIES_POINTS);
        assert_eq!(points[0]["count"], 0);
        assert_eq!(points[SERIES_POINTS - 1]["count"], 99);
        assert_eq!(series_json(&samples[..3]).as_array().unwrap().len(), 3);
        assert_eq!(series_json(&[]), json!([]));
    }
}
