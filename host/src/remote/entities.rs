//! The entity commands: `entity signal`, `entity get`, `entity list`, over
//! `/runtime/webhooks/durabletask/entities/`.

use http::Method;

use super::args::{EntityListArgs, SignalArgs};
use super::commands::{Context, accepted, json_argument, print, print_listing};
use super::exit;
use super::table::{Table, plain};
use crate::durable::BASE_PATH;
use crate::durable::urls::encode_component;

/// `entities/{name}[/{key}]` under the durable API, encoded.
fn entity_path(name: &str, key: Option<&str>) -> String {
    let mut path = format!("{BASE_PATH}/entities/{}", encode_component(name));
    if let Some(key) = key {
        path = format!("{path}/{}", encode_component(key));
    }
    path
}

/// `perdure entity signal`: `POST entities/{name}/{key}?op=OPERATION` with
/// the input as the body. The operation runs after the answer; `entity
/// get` shows its effect once it has.
pub(super) async fn signal(ctx: &Context, args: SignalArgs) -> anyhow::Result<i32> {
    let input = args
        .input
        .as_deref()
        .map(|input| json_argument("INPUT", input))
        .transpose()?;
    let op: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("op", &args.operation)
        .finish();
    let path = format!("{}?{op}", entity_path(&args.name, Some(&args.entity_key)));
    let answer = ctx.remote.send(Method::POST, &path, input, None).await?;
    accepted(
        ctx,
        &answer,
        &format!(
            "signalled {} on entity {}/{}",
            args.operation, args.name, args.entity_key
        ),
    )
}

/// `perdure entity get`: the state, pretty-printed (`--json`: as stored).
pub(super) async fn get(ctx: &Context, name: &str, key: &str) -> anyhow::Result<i32> {
    let answer = ctx
        .remote
        .send(Method::GET, &entity_path(name, Some(key)), None, None)
        .await?;
    let state = answer.json()?;
    print(&if ctx.json {
        answer.raw_json()?
    } else {
        serde_json::to_string_pretty(&state)?
    });
    Ok(exit::SUCCESS)
}

/// `perdure entity list`: every entity of `name` that has state, with it.
pub(super) async fn list(ctx: &Context, args: EntityListArgs) -> anyhow::Result<i32> {
    let listing = ctx
        .remote
        .list_all(
            &entity_path(&args.name, None),
            "fetchState=true",
            args.paging,
        )
        .await?;
    let none = format!("no {} entity has state", args.name);
    print_listing(ctx, listing, "entities", &none, |entities| {
        let mut table = Table::new(&["KEY", "LAST OPERATION", "STATE"]);
        for entity in entities {
            table.row([
                plain(&entity["entityId"]["key"]),
                plain(&entity["lastOperationTime"]),
                entity["state"].to_string(),
            ]);
        }
        table
    });
    Ok(exit::SUCCESS)
}
