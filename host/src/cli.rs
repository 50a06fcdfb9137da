//! The `perdure` command line. It lives in the library so that the test
//! suite can run exactly this code as a child process (and kill it).
//!
//! `serve` runs a host; the other commands are clients of a running host's
//! HTTP API (`remote/`). This file only wires them to clap.

use crate::Host;
use crate::keys::MasterKeySource;
use crate::settings::ServeSettings;
use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Perdure hosts durable serverless functions written as WebAssembly
/// components: drop a `.wasm` function app into the functions folder and its
/// HTTP functions are served under /api/ at once.
#[derive(Parser)]
#[command(
    name = "perdure",
    version,
    about,
    long_about = None,
    after_help = crate::remote::exit::help()
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the function apps of a folder, reloading them as files change.
    Serve(Box<ServeSettings>),
    #[command(flatten)]
    Remote(crate::remote::RemoteCommand),
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
    // After the log is set up (a refusal is logged), before the runtime's
    // threads exist (so that they share arenas too).
    crate::memory::limit_malloc_arenas();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve(*args)),
        // The exit code is the command's result (see `remote/exit.rs`).
        Command::Remote(command) => {
            std::process::exit(runtime.block_on(crate::remote::run(command)))
        }
    }
}

async fn serve(settings: ServeSettings) -> anyhow::Result<()> {
    perdure_storage::failpoint::arm();
    let settings = tokio::task::spawn_blocking(move || settings.with_file())
        .await
        .context("cannot read the settings")??;
    let config = settings.host_config();
    let (functions, db) = (config.functions_dir.clone(), config.db.clone());
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
    let dashboard = host
        .dashboard_addr()
        .map_or_else(|| "off".to_owned(), |at| format!("http://{at}/"));
    tracing::info!(
        %addr,
        dashboard,
        functions = %functions.display(),
        db = %db,
        apps = host.registry().snapshot().apps.len(),
        "perdure is ready: functions at http://{addr}/api/"
    );
    wait_for_signal().await;
    let stopping = std::time::Instant::now();
    tracing::info!("shutting down");
    host.shutdown().await;
    tracing::info!(
        ms = stopping.elapsed().as_millis() as u64,
        "perdure stopped; unfinished instances resume at the next start"
    );
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    /// Clap's own consistency checks (unique argument names, valid
    /// `requires`), which it otherwise makes only when a command is parsed.
    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
