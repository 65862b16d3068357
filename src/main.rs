use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use loft::auth::{ApiKeySecret, Role};
use loft::config::{Cli, Command, KeysCommand, LogFormat};
use loft::ids::{ApiKeyId, ProjectId};
use loft::store::{NewApiKey, Store, StoreError};

/// jemalloc instead of glibc's malloc: request buffers are allocated on the runtime's workers
/// and freed on the writer thread after their batch commits, and glibc's arenas met in lock
/// waits and `malloc_consolidate` (≈ 19 % of the server's CPU under ingest, `perf`). With
/// jemalloc: ingest +7 %, PublishEvent +9 %, end-to-end delivered +20 %, idle RSS +2 MB
/// (BENCHMARKS.md). mimalloc, tried earlier, doubled the idle RSS.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Listen(args) => loft::cli::listen::run(args).await,
        Command::Tail(args) => loft::cli::tail::run(args).await,
        Command::Send(args) => loft::cli::send::run(args).await,
        command => run_server_command(command).await.map(|()| ExitCode::SUCCESS),
    }
}

async fn run_server_command(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(config) => {
            loft::telemetry::init_logging(if config.dev { LogFormat::Text } else { config.log_format });
            loft::serve::run(config).await
        }
        Command::Migrate(db) => {
            loft::telemetry::init_logging(LogFormat::Text);
            let store = Store::connect(&db.database_url).await?;
            store.migrate().await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Keys { command: KeysCommand::Create(args) } => {
            // The file may be busy with a running server's writes: retry a few times.
            let mut tries = 0;
            loop {
                match create_key(&args).await {
                    Err(e) if tries < 5 && is_busy(&e) => {
                        tries += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(200 * tries)).await;
                    }
                    other => return other,
                }
            }
        }
        Command::Listen(_) | Command::Tail(_) | Command::Send(_) => unreachable!("client commands run above"),
    }
}

fn is_busy(e: &anyhow::Error) -> bool {
    // Migration errors wrap the driver's error, so the message is checked too.
    matches!(e.downcast_ref::<StoreError>(), Some(StoreError::Unavailable(_)))
        || format!("{e:#}").contains("database is locked")
}

async fn create_key(args: &loft::config::CreateKeyArgs) -> anyhow::Result<()> {
    let role = Role::parse(&args.role.to_ascii_uppercase()).context("unknown role")?;
    let project = match (&args.project, role) {
        (None, Role::Admin) => None,
        (Some(_), Role::Admin) => anyhow::bail!("an ADMIN key belongs to no project; drop --project"),
        (None, _) => anyhow::bail!("a {} key needs --project prj_…", role.as_str()),
        (Some(p), _) => Some(p.parse::<ProjectId>().map_err(|e| anyhow::anyhow!("--project {e}"))?),
    };
    let store = Store::connect(&args.database.database_url).await?;
    store.migrate().await?;
    if let Some(p) = project {
        store.get_project(p).await.with_context(|| format!("project {p}"))?;
    }
    let secret = ApiKeySecret::generate();
    let (id, project) = (ApiKeyId::generate().to_string(), project.map(|p| p.to_string()));
    let mut tx = store.begin().await?;
    store
        .insert_api_key(
            &mut tx,
            &NewApiKey {
                id: &id,
                project_id: project.as_deref(),
                name: &args.name,
                role: role.as_str(),
                prefix: secret.display_prefix(),
                key_hash: &secret.hash(),
                expire_time: None,
                now: loft::timeutil::now_micros(),
            },
        )
        .await?;
    tx.commit().await?;
    println!("{id}\n{}", secret.expose());
    Ok(())
}
