//! Running a client command: the dispatch, what every command shares
//! (JSON arguments, printing, reporting an error with its exit code), and
//! `apps`. The instance commands are in `instances.rs`, the entity
//! commands in `entities.rs`.
//!
//! Output rules: stdout carries the result only (a table, an id, or with
//! `--json` exactly one JSON document); errors and notes go to stderr; a
//! progress line shows only when stderr is a terminal.

use std::io::{IsTerminal as _, Read as _, Write as _};

use serde_json::Value;

use super::args::{Connection, EntityCommand, RemoteCommand};
use super::table::{Table, plain, truncated};
use super::{Answer, Listing, Remote, RemoteError, entities, exit, instances};

/// Input the command refuses before asking the host (JSON that does not
/// parse, an unreadable `@file`): exit code [`exit::USAGE`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct BadInput(pub(super) String);

/// What a command needs besides its own arguments.
pub(super) struct Context {
    pub(super) remote: Remote,
    /// `--json`: print the API's JSON instead of text.
    pub(super) json: bool,
    /// Whether a person watches stderr (progress lines are for them only).
    pub(super) interactive: bool,
}

/// Runs `command` and returns the process's exit code (see `exit.rs`);
/// the error, if any, has been printed on stderr.
pub async fn run(command: RemoteCommand) -> i32 {
    let code = match execute(command).await {
        Ok(code) => code,
        Err(error) => {
            report(&error);
            exit_code(&error)
        }
    };
    // The caller exits the process at once, without running destructors.
    let _ = std::io::stdout().flush();
    code
}

async fn execute(command: RemoteCommand) -> anyhow::Result<i32> {
    let Connection { url, key, json } = command.connection().clone();
    let ctx = Context {
        remote: Remote::new(&url, key)?,
        json,
        interactive: std::io::stderr().is_terminal(),
    };
    match command {
        RemoteCommand::Start(args) => instances::start(&ctx, args).await,
        RemoteCommand::Status(args) => instances::status(&ctx, &args.id, args.history).await,
        RemoteCommand::List(args) => instances::list(&ctx, args).await,
        RemoteCommand::Raise(args) => instances::raise(&ctx, args).await,
        RemoteCommand::Terminate(args) => {
            let reason = args.reason.unwrap_or_default();
            instances::change(&ctx, &args.id, "terminate", &[("reason", &reason)]).await
        }
        RemoteCommand::Suspend(args) => instances::change(&ctx, &args.id, "suspend", &[]).await,
        RemoteCommand::Resume(args) => instances::change(&ctx, &args.id, "resume", &[]).await,
        RemoteCommand::Restart(args) => instances::restart(&ctx, &args.id, args.same_id).await,
        RemoteCommand::Purge(args) => instances::purge(&ctx, &args.id).await,
        RemoteCommand::Entity(EntityCommand::Signal(args)) => entities::signal(&ctx, args).await,
        RemoteCommand::Entity(EntityCommand::Get(args)) => {
            entities::get(&ctx, &args.name, &args.entity_key).await
        }
        RemoteCommand::Entity(EntityCommand::List(args)) => entities::list(&ctx, args).await,
        RemoteCommand::Apps(_) => apps(&ctx).await,
        RemoteCommand::Cluster(_) => cluster(&ctx).await,
    }
}

/// The exit code for an error: the host's answer decides for a
/// [`RemoteError`], refused input is a usage error, anything else (a
/// broken terminal, say) is a plain error.
fn exit_code(error: &anyhow::Error) -> i32 {
    if let Some(remote) = error.downcast_ref::<RemoteError>() {
        remote.exit_code()
    } else if error.is::<BadInput>() {
        exit::USAGE
    } else {
        exit::ERROR
    }
}

/// `error: MESSAGE` on stderr, with the host's details if it sent any.
fn report(error: &anyhow::Error) {
    let mut text = format!("error: {}", super::table::clean(&format!("{error:#}")));
    if let Some(RemoteError::Api(failure)) = error.downcast_ref::<RemoteError>()
        && let Some(details) = &failure.details
    {
        let details = super::table::clean(&details.to_string());
        text.push_str(&format!("\n  details: {details}"));
    }
    eprintln!("{text}");
}

/// Writes `text` and a line end to stdout. A closed pipe (`| head`) is not
/// an error worth a panic: the reader has what it wanted.
pub(super) fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let end: &[u8] = if text.ends_with('\n') { b"" } else { b"\n" };
    let _ = out
        .write_all(text.as_bytes())
        .and_then(|()| out.write_all(end));
}

/// Prints an answer that says only "done": the JSON (`null` if empty) or
/// `message`.
pub(super) fn accepted(ctx: &Context, answer: &Answer, message: &str) -> anyhow::Result<i32> {
    print(&if ctx.json {
        answer.raw_json()?
    } else {
        message.to_owned()
    });
    Ok(exit::SUCCESS)
}

/// Prints a listing of `what` (`instances`, `entities`): with `--json` one
/// array of everything fetched, else the table `table` makes of the items
/// (or `none` if there are none). A note on stderr says when `--top` left
/// some out.
pub(super) fn print_listing(
    ctx: &Context,
    listing: Listing,
    what: &str,
    none: &str,
    table: impl FnOnce(&[Value]) -> Table,
) {
    if listing.more {
        eprintln!(
            "(listed the first {}; the host has more {what}: raise --top)",
            listing.items.len()
        );
    }
    if ctx.json {
        print(&Value::Array(listing.items).to_string());
    } else if listing.items.is_empty() {
        print(none);
    } else {
        print(&table(&listing.items).render());
    }
}

/// A JSON argument as the body to send: JSON text, `@FILE` for a file's
/// contents, or `@-` for stdin; refused unless it parses. `what` names the
/// argument in the message.
pub(super) fn json_argument(what: &str, argument: &str) -> Result<String, BadInput> {
    let text = match argument.strip_prefix('@') {
        Some("-") => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| BadInput(format!("cannot read {what} from stdin: {e}")))?;
            text
        }
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| BadInput(format!("cannot read {what} from {path}: {e}")))?,
        None => argument.to_owned(),
    };
    serde_json::from_str::<serde::de::IgnoredAny>(&text)
        .map_err(|e| BadInput(format!("{what} is not valid JSON: {e}")))?;
    Ok(text)
}

/// Characters of a load error shown in the table; `--json` has it whole.
const ERROR_WIDTH: usize = 120;

/// `perdure apps`: the apps (digest, load time, function count), their
/// functions (kind and trigger), and the files that failed to load.
/// `perdure cluster`: a row per host, then who holds which partitions.
async fn cluster(ctx: &Context) -> anyhow::Result<i32> {
    let answer = ctx
        .remote
        .send(http::Method::GET, "/admin/cluster", None, None)
        .await?;
    if ctx.json {
        print(&answer.raw_json()?);
        return Ok(exit::SUCCESS);
    }
    let status = answer.json()?;
    if status["shared"] != Value::Bool(true) {
        print("this host has its database to itself (SQLite): no other hosts");
        return Ok(exit::SUCCESS);
    }
    let mut hosts = Table::new(&[
        "HOST",
        "ADDRESS",
        "ALIVE",
        "PARTITIONS",
        "ACTIVITIES",
        "LAST HEARTBEAT",
        "STARTED",
    ]);
    for host in status["hosts"].as_array().into_iter().flatten() {
        let mut id = plain(&host["id"]);
        if host["thisHost"] == Value::Bool(true) {
            id.push_str(" *");
        }
        hosts.row([
            id,
            plain(&host["address"]),
            if host["alive"] == Value::Bool(true) {
                "yes"
            } else {
                "no"
            }
            .to_owned(),
            plain(&host["partitions"]),
            plain(&host["activitiesLeased"]),
            plain(&host["lastHeartbeat"]),
            plain(&host["startedTime"]),
        ]);
    }
    let partitions = status["partitions"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    let free = partitions
        .iter()
        .filter(|p| p["owner"].is_null() || p["expired"] == Value::Bool(true))
        .count();
    print(&format!(
        "{}\n{} partitions, {free} free or expired; lease {} ms (* answered)",
        hosts.render().trim_end(),
        partitions.len(),
        plain(&status["leaseMs"]),
    ));
    Ok(exit::SUCCESS)
}

async fn apps(ctx: &Context) -> anyhow::Result<i32> {
    let answer = ctx
        .remote
        .send(http::Method::GET, "/admin/functions", None, None)
        .await?;
    if ctx.json {
        print(&answer.raw_json()?);
        return Ok(exit::SUCCESS);
    }
    let listing = answer.json()?;
    let Some(apps) = listing["apps"].as_array() else {
        return Err(answer.unexpected("no `apps` array").into());
    };
    let mut loaded = Table::new(&["APP", "DIGEST", "LOADED", "FUNCTIONS"]);
    let mut functions = Table::new(&["FUNCTION", "KIND", "APP", "TRIGGER"]);
    let mut failures = Table::new(&["FAILED APP", "TIME", "ERROR"]);
    for app in apps {
        let name = plain(&app["name"]);
        if app["digest"].is_string() {
            let count = app["functions"].as_array().map_or(0, Vec::len);
            let digest = plain(&app["digest"]);
            // sha256: and 12 hex digits tell versions apart.
            let short: String = digest.chars().take(19).collect();
            loaded.row([
                name.as_str(),
                &short,
                &plain(&app["loadedTime"]),
                &count.to_string(),
            ]);
        }
        for function in app["functions"].as_array().into_iter().flatten() {
            functions.row([
                plain(&function["name"]),
                plain(&function["kind"]),
                name.clone(),
                trigger(function),
            ]);
        }
        if let Some(error) = app.get("lastError") {
            failures.row([
                name.as_str(),
                &plain(&error["time"]),
                &truncated(&plain(&error["message"]), ERROR_WIDTH),
            ]);
        }
    }
    let mut sections = Vec::new();
    if loaded.is_empty() {
        sections.push("no apps are loaded\n".to_owned());
    } else {
        sections.push(loaded.render());
        sections.push(functions.render());
    }
    if !failures.is_empty() {
        sections.push(failures.render());
    }
    print(&sections.join("\n"));
    Ok(exit::SUCCESS)
}

/// How a function is reached: an HTTP function's methods, route and key
/// level; an entity's operations.
fn trigger(function: &Value) -> String {
    if let Some(http) = function.get("http") {
        let methods: Vec<String> = http["methods"]
            .as_array()
            .map(|m| m.iter().map(plain).collect())
            .unwrap_or_default();
        let methods = if methods.is_empty() {
            "any method".to_owned()
        } else {
            methods.join(",")
        };
        return format!(
            "{methods} /api/{} ({})",
            plain(&http["route"]),
            plain(&http["authLevel"])
        );
    }
    match function["operations"].as_array() {
        Some(ops) => format!(
            "operations: {}",
            ops.iter().map(plain).collect::<Vec<_>>().join(", ")
        ),
        None => String::new(),
    }
}
