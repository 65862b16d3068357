//! `loft-bench`: the load harness of DESIGN §12.
//!
//! Starts `loft serve` (a release build it does not make itself) on free loopback ports with a
//! fresh database per backend, a receiver for its deliveries and a bare-hyper baseline in this
//! process, drives ingest over HTTP and `PublishEvent`/`GetDestination` over gRPC, and reports
//! every figure next to the baseline measured in the same invocation and its target.
//!
//! ```text
//! cargo build --release --bin loft
//! cargo run --release -p loft-bench -- --backend both --scenario all --duration 15s --json bench/results.json
//! cargo run --release -p loft-bench -- --backend both --scenario backlog --no-baseline --json bench/results/backlog.json
//! ```

mod load;
mod loft_proc;
mod report;
mod run;
mod servers;
mod setup;
mod util;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::util::parse_duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    Sqlite,
    Postgres,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Durable HTTP ingest, closed loop: acknowledged/s and ack latency.
    Ingest,
    /// Durable `PublishEvent` over gRPC, closed loop.
    Publish,
    /// HTTP ingest routed to one destination: delivered/s at the receiver.
    E2e,
    /// Open loop at `--rate` over HTTP ingest: receive → delivered percentiles.
    Latency,
    /// `GetDestination` over gRPC, closed loop: calls/s.
    Unary,
    /// Like `e2e`, publishing over gRPC instead of HTTP ingest.
    E2ePublish,
    /// Like `latency`, publishing over gRPC instead of HTTP ingest.
    LatencyPublish,
    /// `--backlog-events` published to a paused destination, then drained on resume, on a server
    /// of its own: publish and drain rates, and RSS throughout (§12: flat, ≤ 250 MB).
    Backlog,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Ingest => "ingest",
            Scenario::Publish => "publish",
            Scenario::E2e => "e2e",
            Scenario::Latency => "latency",
            Scenario::Unary => "unary",
            Scenario::E2ePublish => "e2e-publish",
            Scenario::LatencyPublish => "latency-publish",
            Scenario::Backlog => "backlog",
        }
    }

    fn parse_list(s: &str) -> Result<Vec<Scenario>, String> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "all" => {
                    out.extend([Scenario::Ingest, Scenario::Publish, Scenario::E2e, Scenario::Latency, Scenario::Unary])
                }
                "ingest" => out.push(Scenario::Ingest),
                "publish" => out.push(Scenario::Publish),
                "e2e" => out.push(Scenario::E2e),
                "latency" => out.push(Scenario::Latency),
                "unary" => out.push(Scenario::Unary),
                "e2e-publish" => out.push(Scenario::E2ePublish),
                "latency-publish" => out.push(Scenario::LatencyPublish),
                "backlog" => out.push(Scenario::Backlog),
                other => {
                    return Err(format!(
                        "unknown scenario `{other}` (ingest, publish, e2e, latency, unary, e2e-publish, latency-publish, backlog, all)"
                    ));
                }
            }
        }
        // Run order: those that leave nothing to deliver first; those that leave a backlog last;
        // `backlog`, the longest by far and on a server of its own, at the very end.
        out.sort();
        out.dedup();
        out.sort_by_key(|s| match s {
            Scenario::Unary => 0,
            Scenario::Publish => 1,
            Scenario::Ingest => 2,
            Scenario::Latency => 3,
            Scenario::LatencyPublish => 4,
            Scenario::E2e => 5,
            Scenario::E2ePublish => 6,
            Scenario::Backlog => 7,
        });
        Ok(out)
    }
}

/// Load harness for Loft (DESIGN §12). Build the server first: `cargo build --release --bin loft`.
#[derive(Debug, Clone, Parser)]
#[command(name = "loft-bench", version)]
pub struct Args {
    /// Which database backends to measure.
    #[arg(long, value_enum, default_value = "both")]
    pub backend: BackendArg,
    /// Comma-separated: ingest, publish, e2e, latency, unary, e2e-publish, latency-publish,
    /// backlog, or all (= ingest,publish,e2e,latency,unary; backlog runs only when named).
    #[arg(long, default_value = "all")]
    pub scenario: String,
    /// Closed-loop workers (HTTP: one keep-alive connection each).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Measured time of each scenario and each baseline (after the warmup).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Unmeasured load before each closed-loop measurement.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Open-loop rate of the latency scenarios, events per second.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Request body size in bytes.
    #[arg(long, default_value_t = 1024)]
    pub body_bytes: usize,
    /// The server binary (not built by the harness).
    #[arg(long, default_value = "target/release/loft")]
    pub loft_bin: PathBuf,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Repeat baseline and scenarios this many times (fresh databases each time) and report
    /// medians.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// gRPC channels (HTTP/2 connections) the gRPC workers are spread over.
    #[arg(long, default_value_t = 4)]
    pub grpc_channels: usize,
    /// The destination's `max_in_flight`; 0 keeps the server's default.
    #[arg(long, default_value_t = 0)]
    pub max_in_flight: u32,
    /// Longest wait, after a delivering scenario, for what was acknowledged to arrive.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// `backlog`: events published to the paused destination before it is resumed.
    #[arg(long, default_value_t = 1_000_000)]
    pub backlog_events: u64,
    /// `backlog`: longest the fill may take (past it the scenario fails), and again the drain
    /// (past it the events not delivered are reported).
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    pub backlog_timeout: Duration,
    /// A PostgreSQL server to create fresh databases on; by default the harness starts a
    /// throwaway cluster with `scripts/pg-start`.
    #[arg(long)]
    pub pg_url: Option<String>,
    /// For the throwaway cluster: `on` sets fsync, synchronous_commit and full_page_writes on
    /// (PostgreSQL's defaults; `scripts/pg-start` turns them off for tests), `off` leaves them off.
    #[arg(long, default_value = "on", value_parser = ["on", "off"])]
    pub pg_sync: String,
    /// Where `pg-start` and `pg-stop` live.
    #[arg(long, default_value = "scripts")]
    pub scripts_dir: PathBuf,
    /// Worker threads of the load generator's runtime.
    #[arg(long, default_value_t = 2)]
    pub gen_threads: usize,
    /// Worker threads of the receiver's runtime.
    #[arg(long, default_value_t = 1)]
    pub receiver_threads: usize,
    /// Worker threads of the baseline server's runtime (Loft's runtime has one per core).
    #[arg(long, default_value_t = 2)]
    pub baseline_threads: usize,
    /// The key the scenarios call with: `admin` (the bootstrap ADMIN key, which must name the
    /// project on every call) or `editor` (a project EDITOR key created by the harness, as a
    /// service would hold).
    #[arg(long, default_value = "admin", value_parser = ["admin", "editor"])]
    pub key: String,
    /// Skip the baselines (figures then have no ratio).
    #[arg(long)]
    pub no_baseline: bool,
    /// Run nothing: read these `--json` reports (one per invocation, e.g. three runs of the same
    /// command), and print (and with `--json`, write) the median of each figure.
    #[arg(long, num_args = 1.., value_name = "REPORT.json")]
    pub merge: Vec<PathBuf>,
}

impl Args {
    /// The scenarios asked for, in run order.
    pub fn scenarios(&self) -> Vec<Scenario> {
        Scenario::parse_list(&self.scenario).unwrap_or_default()
    }

    pub fn backends(&self) -> Vec<loft_proc::Backend> {
        match self.backend {
            BackendArg::Sqlite => vec![loft_proc::Backend::Sqlite],
            BackendArg::Postgres => vec![loft_proc::Backend::Postgres],
            BackendArg::Both => vec![loft_proc::Backend::Sqlite, loft_proc::Backend::Postgres],
        }
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if !args.merge.is_empty() {
        return match run::merge_files(&args.merge, args.json.as_deref()) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("loft-bench: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    if let Err(e) = Scenario::parse_list(&args.scenario) {
        eprintln!("loft-bench: --scenario: {e}");
        return std::process::ExitCode::from(2);
    }
    if args.scenarios().is_empty()
        || args.concurrency == 0
        || args.repeat == 0
        || args.grpc_channels == 0
        || (args.scenarios().contains(&Scenario::Backlog) && args.backlog_events == 0)
    {
        eprintln!(
            "loft-bench: nothing to do (check --scenario, --concurrency, --repeat, --grpc-channels, --backlog-events)"
        );
        return std::process::ExitCode::from(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.gen_threads.max(1))
        .thread_name("bench-gen")
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(async {
        tokio::select! {
            r = run::run(args) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted; servers stopped, temporary files removed")),
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loft-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Scenario;

    #[test]
    fn backlog_runs_only_when_named_and_last() {
        assert!(!Scenario::parse_list("all").unwrap().contains(&Scenario::Backlog));
        let list = Scenario::parse_list("backlog,e2e-publish,all").unwrap();
        assert_eq!(list.last(), Some(&Scenario::Backlog));
        assert_eq!(list.iter().filter(|s| **s == Scenario::Backlog).count(), 1);
    }
}
