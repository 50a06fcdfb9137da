//! The client commands' command line (clap derive). `cli.rs` flattens
//! [`RemoteCommand`] into `perdure`'s own list, so each is a top-level
//! command (`perdure start`, `perdure entity get`, ...).

use std::time::Duration;

use clap::{Args, Subcommand};

use super::exit;
use perdure_records::RuntimeStatus;

/// How to reach the host and how to print its answers; every client
/// command takes these.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Connection and output")]
pub struct Connection {
    /// The host's base URL (http or https; a path prefix is kept).
    #[arg(
        long,
        env = "PERDURE_URL",
        default_value = "http://127.0.0.1:7071",
        value_name = "URL"
    )]
    pub url: String,
    /// The master key, sent in the x-functions-key header (never in the
    /// URL, never printed). Prefer the environment variable: arguments
    /// show in `ps`.
    #[arg(
        long,
        env = "PERDURE_MASTER_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub key: Option<String>,
    /// Print the JSON the API answered, exactly one document on stdout
    /// (`null` where the API answers with no body), instead of text.
    #[arg(long)]
    pub json: bool,
}

/// How much of a listing to fetch (`list`, `entity list`).
#[derive(Debug, Clone, Copy, Args)]
pub struct Paging {
    /// List at most N (default: all of them).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub top: Option<u32>,
    /// Ask the host for at most N per request (1 to 1000, the host's
    /// largest page).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u32).range(1..=1000)
    )]
    pub page_size: u32,
}

/// The client commands.
#[derive(Debug, Subcommand)]
pub enum RemoteCommand {
    /// Start an orchestration instance; print its id (or, with --wait, its
    /// final status).
    #[command(after_help = exit::help())]
    Start(StartArgs),
    /// Show an instance's status, input, output and custom status.
    #[command(after_help = exit::help())]
    Status(StatusArgs),
    /// List instances, oldest first, following the host's pages.
    #[command(after_help = exit::help())]
    List(ListArgs),
    /// Raise an external event on an instance.
    #[command(after_help = exit::help())]
    Raise(RaiseArgs),
    /// Terminate an instance.
    #[command(after_help = exit::help())]
    Terminate(TerminateArgs),
    /// Suspend an instance: it runs nothing until it is resumed.
    #[command(after_help = exit::help())]
    Suspend(InstanceArgs),
    /// Resume a suspended instance.
    #[command(after_help = exit::help())]
    Resume(InstanceArgs),
    /// Start an instance's orchestrator again with the same input; print
    /// the new instance's id.
    #[command(after_help = exit::help())]
    Restart(RestartArgs),
    /// Delete a finished instance and its history.
    #[command(after_help = exit::help())]
    Purge(InstanceArgs),
    /// Signal, read and list durable entities.
    #[command(subcommand)]
    Entity(EntityCommand),
    /// List the loaded apps, their functions and their load errors.
    #[command(after_help = exit::help())]
    Apps(AppsArgs),
    /// Show the hosts sharing the database, their partitions and the
    /// activities each has leased.
    #[command(after_help = exit::help())]
    Cluster(AppsArgs),
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// The orchestrator function's name.
    pub name: String,
    /// The instance id; the host makes one up if it is not given.
    #[arg(long)]
    pub id: Option<String>,
    /// The input: JSON text, @FILE for a file's contents, @- for stdin.
    #[arg(long, value_name = "JSON|@FILE")]
    pub input: Option<String>,
    /// Wait until the instance finishes, then print its status; the exit
    /// code says how it ended. A progress line shows on stderr when it is
    /// a terminal.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after SECS seconds (fractions allowed).
    /// Without it, --wait waits until the instance finishes.
    #[arg(long, requires = "wait", value_name = "SECS", value_parser = seconds)]
    pub timeout: Option<Duration>,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The instance id.
    pub id: String,
    /// Also show the history events, with their inputs and results.
    #[arg(long)]
    pub history: bool,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only instances in this runtime status (repeat for several):
    /// Pending, Running, Completed, Failed, Terminated, Suspended,
    /// ContinuedAsNew.
    #[arg(long = "status", value_name = "STATUS", value_parser = runtime_status)]
    pub statuses: Vec<RuntimeStatus>,
    /// Only instances whose id starts with PREFIX.
    #[arg(long, value_name = "PREFIX")]
    pub prefix: Option<String>,
    /// Only instances of this orchestrator (its exact name).
    #[arg(long, value_name = "ORCHESTRATOR")]
    pub name: Option<String>,
    /// Only instances created at or after TIME (e.g. 2026-01-31T12:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub created_from: Option<String>,
    /// Only instances created at or before TIME.
    #[arg(long, value_name = "TIME")]
    pub created_to: Option<String>,
    #[command(flatten)]
    pub paging: Paging,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Debug, Args)]
pub struct RaiseArgs {
    /// The instance id.
    pub id: String,
    /// The event's name.
    pub event: String,
    /// The event's data: JSON text, @FILE or @- (default null).
    #[arg(value_name = "DATA")]
    pub data: Option<String>,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Debug, Args)]
pub struct TerminateArgs {
    /// The instance id.
    pub id: String,
    /// Why, recorded as the instance's output.
    #[arg(long)]
    pub reason: Option<String>,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Debug, Args)]
pub struct InstanceArgs {
    /// The instance id.
    pub id: String,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Debug, Args)]
pub struct RestartArgs {
    /// The instance id.
    pub id: String,
    /// Run again under the same id (it must have finished) instead of a
    /// new one.
    #[arg(long)]
    pub same_id: bool,
    #[command(flatten)]
    pub connection: Connection,
}

/// `perdure entity ...`.
#[derive(Debug, Subcommand)]
pub enum EntityCommand {
    /// Queue an operation on an entity (it runs soon after, in order).
    #[command(after_help = exit::help())]
    Signal(SignalArgs),
    /// Print an entity's state.
    #[command(after_help = exit::help())]
    Get(EntityArgs),
    /// List the entities of a name that have state, in key order.
    #[command(after_help = exit::help())]
    List(EntityListArgs),
}

#[derive(Debug, Args)]
pub struct SignalArgs {
    /// The entity function's name.
    pub name: String,
    /// The entity's key.
    #[arg(value_name = "KEY")]
    pub entity_key: String,
    /// The operation.
    pub operation: String,
    /// The operation's input: JSON text, @FILE or @- (default none).
    #[arg(value_name = "INPUT")]
    pub input: Option<String>,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Debug, Args)]
pub struct EntityArgs {
    /// The entity function's name.
    pub name: String,
    /// The entity's key.
    #[arg(value_name = "KEY")]
    pub entity_key: String,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Debug, Args)]
pub struct EntityListArgs {
    /// The entity function's name.
    pub name: String,
    #[command(flatten)]
    pub paging: Paging,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Debug, Args)]
pub struct AppsArgs {
    #[command(flatten)]
    pub connection: Connection,
}

impl RemoteCommand {
    /// The connection flags of whichever command this is.
    pub fn connection(&self) -> &Connection {
        match self {
            Self::Start(a) => &a.connection,
            Self::Status(a) => &a.connection,
            Self::List(a) => &a.connection,
            Self::Raise(a) => &a.connection,
            Self::Terminate(a) => &a.connection,
            Self::Suspend(a) | Self::Resume(a) | Self::Purge(a) => &a.connection,
            Self::Restart(a) => &a.connection,
            Self::Entity(EntityCommand::Signal(a)) => &a.connection,
            Self::Entity(EntityCommand::Get(a)) => &a.connection,
            Self::Entity(EntityCommand::List(a)) => &a.connection,
            Self::Apps(a) | Self::Cluster(a) => &a.connection,
        }
    }
}

/// A runtime status name, any case.
fn runtime_status(text: &str) -> Result<RuntimeStatus, String> {
    RuntimeStatus::parse(text).ok_or_else(|| {
        let known: Vec<&str> = RuntimeStatus::ALL.iter().map(|s| s.as_str()).collect();
        format!("use one of {}", known.join(", "))
    })
}

/// A non-negative, finite number of seconds.
fn seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| format!("{text:?} is not a number of seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_seconds_parse() {
        assert_eq!(runtime_status("completed"), Ok(RuntimeStatus::Completed));
        assert!(runtime_status("done").is_err());
        assert_eq!(seconds("1.5"), Ok(Duration::from_millis(1500)));
        for bad in ["-1", "NaN", "inf", "soon"] {
            assert!(seconds(bad).is_err(), "{bad}");
        }
    }
}
