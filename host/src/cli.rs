//! The `perdure` command line. It lives in the library so that the test
//! suite can run exactly this code as a child process (and kill it).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::keys::MasterKeySource;
use crate::{Host, HostConfig, HttpLimits, SandboxLimits};
use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Perdure hosts durable serverless functions written as WebAssembly
/// components: drop a `.wasm` function app into the functions folder and its
/// HTTP functions are served under /api/ at once.
#[derive(Parser)]
#[command(name = "perdure", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the function apps of a folder, reloading them as files change.
    Serve(ServeArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// The watched folder of function apps (`*.wasm` components). Created if
    /// missing.
    #[arg(long, default_value = "./functions", value_name = "DIR")]
    functions: PathBuf,

    /// The SQLite database file (created if missing). Compiled code is
    /// cached beside it in `<db>.cache/` unless --cache-dir says otherwise.
    #[arg(long, default_value = "./perdure.db", value_name = "PATH")]
    db: PathBuf,

    /// Where compiled code is cached by digest, so restarts do not
    /// recompile.
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,

    /// Address and port to listen on.
    #[arg(long, default_value = "127.0.0.1:7071", value_name = "ADDR")]
    listen: SocketAddr,

    /// The master key: admin API, admin-level functions, and every
    /// function. Without one, a key is generated on first start, kept in
    /// the database and printed at start-up.
    #[arg(
        long,
        env = "PERDURE_MASTER_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    master_key: Option<String>,

    /// Linear memory one invocation may use, in MiB.
    #[arg(long, default_value_t = 128, value_name = "MIB")]
    memory_limit_mib: usize,

    /// Wall-clock time one invocation may take, in seconds.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    timeout_secs: u64,

    /// Instances that may run at once; past this, requests get 503.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    max_instances: u32,

    /// Largest request body accepted, in bytes; larger ones get 413.
    #[arg(long, default_value_t = 4 << 20, value_name = "BYTES")]
    max_body_bytes: usize,
}

/// Parses the command line and runs it; the whole of `perdure`'s `main`.
pub fn run() -> anyhow::Result<()> {
    use std::io::IsTerminal as _;
    // Logs go to stderr (stdout carries the generated master key); colour
    // only for a person at a terminal.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("PERDURE_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = HostConfig::new(&args.functions, &args.db);
    config.cache_dir = args.cache_dir;
    config.listen = args.listen;
    config.master_key = args.master_key.filter(|k| !k.is_empty());
    config.sandbox = SandboxLimits {
        memory_bytes: args.memory_limit_mib << 20,
        timeout: Duration::from_secs(args.timeout_secs),
        max_instances: args.max_instances,
        ..SandboxLimits::default()
    };
    config.http = HttpLimits {
        max_body_bytes: args.max_body_bytes,
        ..HttpLimits::default()
    };
    let host = Host::start(config)
        .await
        .context("perdure could not start")?;
    let addr = host.local_addr();
    match (host.master_key_source(), host.generated_master_key()) {
        (MasterKeySource::Configured, _) => {}
        (source, Some(key)) => {
            let origin = if source == MasterKeySource::Generated {
                "generated and stored in the database"
            } else {
                "stored in the database"
            };
            // On stdout, for the operator; never in the log.
            println!("master key ({origin}; set --master-key to choose one): {key}");
        }
        (_, None) => {}
    }
    tracing::info!(
        %addr,
        functions = %args.functions.display(),
        db = %args.db.display(),
        apps = host.registry().snapshot().apps.len(),
        "perdure is ready: functions at http://{addr}/api/"
    );
    wait_for_signal().await;
    tracing::info!("shutting down");
    host.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
