//! The instance commands: `start`, `status`, `list`, `raise`, `terminate`,
//! `suspend`, `resume`, `restart`, `purge`, over the durable management
//! API under `/runtime/webhooks/durabletask/`.

use http::Method;
use serde_json::{Map, Value};

use super::args::{ListArgs, RaiseArgs, StartArgs};
use super::commands::{Context, accepted, json_argument, print, print_listing};
use super::table::{Table, json, plain, truncated};
use super::wait::{self, Waited, status_of};
use super::{Answer, exit};
use crate::durable::BASE_PATH;
use crate::durable::urls::encode_component;

/// Characters of a history event's detail shown in the table; `--json`
/// has it whole.
const DETAIL_WIDTH: usize = 100;

/// `instances/{id}` under the durable API, `id` encoded.
fn instance_path(id: &str) -> String {
    format!("{BASE_PATH}/instances/{}", encode_component(id))
}

/// A query string from pairs, values encoded.
fn query(pairs: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.extend_pairs(pairs);
    query.finish()
}

/// `perdure start`: prints the new instance's id (`--json`: the host's
/// check-status payload), or with `--wait` its final status, exit code
/// as `perdure status`'s, or [`exit::TIMED_OUT`].
pub(super) async fn start(ctx: &Context, args: StartArgs) -> anyhow::Result<i32> {
    let input = args
        .input
        .as_deref()
        .map(|input| json_argument("--input", input))
        .transpose()?;
    let mut path = format!("{BASE_PATH}/orchestrators/{}", encode_component(&args.name));
    if let Some(id) = &args.id {
        path = format!("{path}/{}", encode_component(id));
    }
    let answer = ctx.remote.send(Method::POST, &path, input, None).await?;
    let started = answer.json()?;
    let Some(id) = started["id"].as_str() else {
        return Err(answer.unexpected("no instance `id` in the answer").into());
    };
    if !args.wait {
        print(&if ctx.json {
            answer.raw_json()?
        } else {
            id.to_owned()
        });
        return Ok(exit::SUCCESS);
    }
    match wait::until_finished(ctx, id, &instance_path(id), args.timeout).await? {
        Waited::Finished(answer) => show_status(ctx, &answer, false),
        Waited::TimedOut(answer) => {
            show_status(ctx, &answer, false)?;
            let secs = args.timeout.map_or(0.0, |t| t.as_secs_f64());
            eprintln!("gave up waiting after {secs}s; instance {id} is still running");
            Ok(exit::TIMED_OUT)
        }
        Waited::Interrupted => {
            eprintln!("stopped waiting; instance {id} is still running");
            Ok(exit::INTERRUPTED)
        }
    }
}

/// `perdure status`: the instance's fields, with `--history` its events.
pub(super) async fn status(ctx: &Context, id: &str, history: bool) -> anyhow::Result<i32> {
    let mut path = instance_path(id);
    if history {
        path.push('?');
        path.push_str(&query(&[
            ("showHistory", "true"),
            ("showHistoryOutput", "true"),
        ]));
    }
    let answer = ctx.remote.send(Method::GET, &path, None, None).await?;
    show_status(ctx, &answer, history)
}

/// Prints a status answer; its exit code is the instance's
/// ([`exit::for_status`]).
fn show_status(ctx: &Context, answer: &Answer, history: bool) -> anyhow::Result<i32> {
    let view = answer.json()?;
    let Some(status) = status_of(&view) else {
        return Err(answer.unexpected("no known `runtimeStatus`").into());
    };
    if ctx.json {
        print(&answer.raw_json()?);
        return Ok(exit::for_status(Some(status)));
    }
    let mut fields = Table::fields();
    fields.row(["Instance", &plain(&view["instanceId"])]);
    fields.row(["Name", &plain(&view["name"])]);
    fields.row(["Status", status.as_str()]);
    fields.row(["Created", &plain(&view["createdTime"])]);
    fields.row(["Updated", &plain(&view["lastUpdatedTime"])]);
    if let Some(parent) = view.get("parentInstanceId") {
        fields.row(["Parent", &plain(parent)]);
    }
    fields.row(["Input", &json(view.get("input"))]);
    fields.row(["Output", &json(view.get("output"))]);
    fields.row(["Custom status", &json(view.get("customStatus"))]);
    let mut text = fields.render();
    if history {
        text.push('\n');
        text.push_str(&history_table(&view["historyEvents"]).render());
    }
    print(&text);
    Ok(exit::for_status(Some(status)))
}

/// Keys a history event's table columns show; the rest are its detail.
const EVENT_COLUMNS: [&str; 5] = [
    "Timestamp",
    "EventType",
    "Name",
    "FunctionName",
    "TaskScheduledId",
];

fn history_table(events: &Value) -> Table {
    let mut table = Table::new(&["TIME", "EVENT", "NAME", "TASK", "DETAIL"]);
    for event in events.as_array().into_iter().flatten() {
        let name = event.get("Name").or_else(|| event.get("FunctionName"));
        let detail: Vec<String> = event
            .as_object()
            .into_iter()
            .flat_map(Map::iter)
            .filter(|(key, _)| !EVENT_COLUMNS.contains(&key.as_str()))
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        table.row([
            plain(&event["Timestamp"]),
            plain(&event["EventType"]),
            name.map(plain).unwrap_or_default(),
            plain(&event["TaskScheduledId"]),
            truncated(&detail.join(" "), DETAIL_WIDTH),
        ]);
    }
    table
}

/// `perdure list`: every instance the filter matches, up to `--top`,
/// following the host's continuation tokens.
pub(super) async fn list(ctx: &Context, args: ListArgs) -> anyhow::Result<i32> {
    let statuses: Vec<&str> = args.statuses.iter().map(|s| s.as_str()).collect();
    let statuses = statuses.join(",");
    let mut filter = Vec::new();
    if !statuses.is_empty() {
        filter.push(("runtimeStatus", statuses.as_str()));
    }
    let optional = [
        ("instanceIdPrefix", &args.prefix),
        ("name", &args.name),
        ("createdTimeFrom", &args.created_from),
        ("createdTimeTo", &args.created_to),
    ];
    for (name, value) in &optional {
        if let Some(value) = value {
            filter.push((name, value.as_str()));
        }
    }
    let path = format!("{BASE_PATH}/instances");
    let listing = ctx
        .remote
        .list_all(&path, &query(&filter), args.paging)
        .await?;
    let columns = [
        "instanceId",
        "name",
        "runtimeStatus",
        "createdTime",
        "lastUpdatedTime",
    ];
    print_listing(ctx, listing, "instances", "no instances match", |views| {
        let mut table = Table::new(&["INSTANCE", "NAME", "STATUS", "CREATED", "UPDATED"]);
        for view in views {
            table.row(columns.map(|key| plain(&view[key])));
        }
        table
    });
    Ok(exit::SUCCESS)
}

/// `perdure raise`: queues the event (its data `null` unless given).
pub(super) async fn raise(ctx: &Context, args: RaiseArgs) -> anyhow::Result<i32> {
    let data = match &args.data {
        Some(data) => json_argument("DATA", data)?,
        None => "null".to_owned(),
    };
    let path = format!(
        "{}/raiseEvent/{}",
        instance_path(&args.id),
        encode_component(&args.event)
    );
    let answer = ctx
        .remote
        .send(Method::POST, &path, Some(data), None)
        .await?;
    accepted(
        ctx,
        &answer,
        &format!("raised {} on instance {}", args.event, args.id),
    )
}

/// `perdure terminate|suspend|resume`: `POST instances/{id}/{action}`.
pub(super) async fn change(
    ctx: &Context,
    id: &str,
    action: &str,
    params: &[(&str, &str)],
) -> anyhow::Result<i32> {
    let mut path = format!("{}/{action}", instance_path(id));
    if !params.is_empty() {
        path = format!("{path}?{}", query(params));
    }
    let answer = ctx.remote.send(Method::POST, &path, None, None).await?;
    accepted(ctx, &answer, &format!("{action} of instance {id} accepted"))
}

/// `perdure restart`: prints the new instance's id (`--json`: the
/// check-status payload).
pub(super) async fn restart(ctx: &Context, id: &str, same_id: bool) -> anyhow::Result<i32> {
    let new_id = if same_id { "false" } else { "true" };
    let path = format!(
        "{}/restart?{}",
        instance_path(id),
        query(&[("restartWithNewInstanceId", new_id)])
    );
    let answer = ctx.remote.send(Method::POST, &path, None, None).await?;
    let started = answer.json()?;
    let Some(started_id) = started["id"].as_str() else {
        return Err(answer.unexpected("no instance `id` in the answer").into());
    };
    print(&if ctx.json {
        answer.raw_json()?
    } else {
        started_id.to_owned()
    });
    Ok(exit::SUCCESS)
}

/// `perdure purge`: `DELETE instances/{id}`.
pub(super) async fn purge(ctx: &Context, id: &str) -> anyhow::Result<i32> {
    let answer = ctx
        .remote
        .send(Method::DELETE, &instance_path(id), None, None)
        .await?;
    accepted(ctx, &answer, &format!("purged instance {id}"))
}
