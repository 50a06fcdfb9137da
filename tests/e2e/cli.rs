//! The client commands of the real CLI (`perdure-child start|status|list|
//! raise|terminate|suspend|resume|restart|purge|entity|apps`) against an
//! in-process host: their output as tables and as `--json`, and the exit
//! codes scripts rely on.

use std::time::Duration;

use anyhow::anyhow;
use perdure::remote::exit;
use perdure_tests::child::{self, CliRun};
use perdure_tests::{MASTER_KEY, TestHost, eventually, guests};
use serde_json::{Value, json};

const CHILD: &str = env!("CARGO_BIN_EXE_perdure-child");
const DEADLINE: Duration = Duration::from_secs(30);

/// Runs `perdure-child ARGS --url URL` (see [`child::cli_at`]).
async fn cli_at(url: &str, key: Option<&str>, args: &[&str]) -> anyhow::Result<CliRun> {
    child::cli_at(CHILD, url, key, args).await
}

/// The CLI against `host` with the master key.
async fn cli(host: &TestHost, args: &[&str]) -> anyhow::Result<CliRun> {
    cli_at(&host.url(""), Some(MASTER_KEY), args).await
}

/// The ids in a `list --json` answer, in order.
fn ids(listing: &Value) -> Vec<&str> {
    listing
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["instanceId"].as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_wait_status_list_and_purge() -> anyhow::Result<()> {
    let host = TestHost::start_with(&[("fan.wasm", guests::FAN_OUT_FAN_IN)], |_| {}).await?;
    let input = host.temp_dir().join("input.json");
    std::fs::write(&input, r#"{"count": 3}"#)?;
    let at_input = format!("@{}", input.display());

    let waited = cli(
        &host,
        &[
            "start",
            "FanOutFanInOrchestrator",
            "--id",
            "fan-1",
            "--input",
            &at_input,
            "--wait",
            "--timeout",
            "60",
            "--json",
        ],
    )
    .await?;
    assert_eq!(waited.code, exit::SUCCESS, "{waited:?}");
    assert_eq!(
        waited.stderr, "",
        "no progress line when stderr is no terminal"
    );
    let status = waited.json()?;
    assert_eq!(status["instanceId"], "fan-1");
    assert_eq!(status["runtimeStatus"], "Completed");
    assert_eq!(
        status["output"],
        json!(["Task1 completed", "Task2 completed", "Task3 completed"])
    );

    let table = cli(
        &host,
        &[
            "start",
            "FanOutFanInOrchestrator",
            "--id",
            "fan-2",
            "--input",
            r#"{"count":2}"#,
            "--wait",
            "--timeout",
            "60",
        ],
    )
    .await?;
    assert_eq!(table.code, exit::SUCCESS, "{table:?}");
    assert!(table.field("Status").ends_with("Completed"), "{table:?}");
    assert!(
        table
            .field("Output")
            .ends_with(r#"["Task1 completed","Task2 completed"]"#),
        "{table:?}"
    );

    let started = cli(
        &host,
        &["start", "FanOutFanInOrchestrator", "--id", "other-1"],
    )
    .await?;
    assert_eq!((started.code, started.stdout.as_str()), (0, "other-1\n"));
    host.wait_for_instance("other-1", DEADLINE).await?;

    let status = cli(&host, &["status", "fan-1"]).await?;
    assert_eq!(status.code, exit::SUCCESS, "{status:?}");
    assert_eq!(status.field("Instance"), "Instance       fan-1");
    assert!(status.field("Name").ends_with("FanOutFanInOrchestrator"));
    assert!(
        status.field("Input").ends_with(r#"{"count":3}"#),
        "{status:?}"
    );

    let history = cli(&host, &["status", "fan-1", "--history", "--json"])
        .await?
        .json()?;
    let events = history["historyEvents"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let scheduled = events
        .iter()
        .filter(|e| e["EventType"] == "TaskScheduled" && e["Name"] == "ProcessTask")
        .count();
    assert_eq!(scheduled, 3, "{history}");
    assert_eq!(
        events.last().map(|e| &e["EventType"]),
        Some(&json!("ExecutionCompleted"))
    );
    let history = cli(&host, &["status", "fan-1", "--history"]).await?;
    assert!(history.stdout.contains("TIME"), "{history:?}");
    let task_line = history
        .stdout
        .lines()
        .find(|l| l.contains("TaskCompleted"))
        .unwrap_or_default();
    assert!(task_line.contains(r#"Result="Task"#), "{history:?}");
    assert!(history.stdout.contains("ExecutionCompleted"), "{history:?}");

    let completed = cli(&host, &["list", "--status", "Completed", "--json"])
        .await?
        .json()?;
    assert_eq!(ids(&completed), ["fan-1", "fan-2", "other-1"]);
    let named = cli(
        &host,
        &["list", "--name", "FanOutFanInOrchestrator", "--json"],
    )
    .await?
    .json()?;
    assert_eq!(ids(&named), ["fan-1", "fan-2", "other-1"]);
    let unnamed = cli(&host, &["list", "--name", "NoSuchOrchestrator", "--json"])
        .await?
        .json()?;
    assert_eq!(ids(&unnamed), Vec::<String>::new());
    let prefixed = cli(
        &host,
        &[
            "list",
            "--status",
            "completed",
            "--prefix",
            "fan-",
            "--json",
        ],
    )
    .await?
    .json()?;
    assert_eq!(ids(&prefixed), ["fan-1", "fan-2"]);
    let failed = cli(
        &host,
        &[
            "list",
            "--status",
            "Failed",
            "--status",
            "Terminated",
            "--json",
        ],
    )
    .await?
    .json()?;
    assert_eq!(failed, json!([]));
    // One instance per request: the CLI follows the continuation tokens.
    let paged = cli(&host, &["list", "--page-size", "1", "--json"]).await?;
    assert_eq!(
        ids(&paged.json()?),
        ["fan-1", "fan-2", "other-1"],
        "{paged:?}"
    );
    assert_eq!(paged.stderr, "");
    let top = cli(&host, &["list", "--page-size", "1", "--top", "2", "--json"]).await?;
    assert_eq!(ids(&top.json()?), ["fan-1", "fan-2"]);
    assert!(
        top.stderr.contains("the host has more instances"),
        "{top:?}"
    );
    let listed = cli(&host, &["list", "--status", "Completed"]).await?;
    assert!(listed.stdout.starts_with("INSTANCE"), "{listed:?}");
    let other = listed.stdout.lines().find(|l| l.starts_with("other-1"));
    assert!(
        other.is_some_and(|l| l.contains("FanOutFanInOrchestrator") && l.contains("Completed")),
        "{listed:?}"
    );

    let purged = cli(&host, &["purge", "fan-2"]).await?;
    assert_eq!(
        (purged.code, purged.stdout.as_str()),
        (0, "purged instance fan-2\n")
    );
    let purged = cli(&host, &["purge", "fan-1", "--json"]).await?;
    assert_eq!(purged.json()?, json!({ "instancesDeleted": 1 }));
    let gone = cli(&host, &["status", "fan-2"]).await?;
    assert_eq!(gone.code, exit::NOT_FOUND, "{gone:?}");
    assert!(gone.stderr.contains("no instance fan-2"), "{gone:?}");
    assert_eq!(gone.stdout, "");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_tell_how_it_went() -> anyhow::Result<()> {
    let host = TestHost::start_with(
        &[
            ("orders.wasm", guests::ORDERS),
            ("approval.wasm", guests::APPROVAL),
        ],
        |_| {},
    )
    .await?;
    let declined = r#"{"id":"o-1","item":"book","quantity":2,"amount":5000.0,"customerEmail":"a@example.com"}"#;
    let failed = cli(
        &host,
        &[
            "start",
            "OrderWorkflow",
            "--id",
            "order-1",
            "--input",
            declined,
            "--wait",
            "--timeout",
            "60",
            "--json",
        ],
    )
    .await?;
    assert_eq!(failed.code, exit::FAILED, "{failed:?}");
    assert_eq!(failed.json()?["runtimeStatus"], "Failed");
    assert_eq!(cli(&host, &["status", "order-1"]).await?.code, exit::FAILED);

    let document = r#"{"document":"Q3 report"}"#;
    let slow = cli(
        &host,
        &[
            "start",
            "DocumentApprovalOrchestrator",
            "--id",
            "slow",
            "--input",
            document,
            "--wait",
            "--timeout",
            "0.3",
        ],
    )
    .await?;
    assert_eq!(slow.code, exit::TIMED_OUT, "{slow:?}");
    assert!(
        slow.stderr.contains("instance slow is still running"),
        "{slow:?}"
    );
    assert_eq!(slow.field("Instance"), "Instance       slow");

    let terminated = cli(&host, &["terminate", "slow", "--reason", "not needed"]).await?;
    assert_eq!(terminated.code, exit::SUCCESS, "{terminated:?}");
    assert_eq!(terminated.stdout, "terminate of instance slow accepted\n");
    let status = cli(&host, &["status", "slow", "--json"]).await?;
    assert_eq!(status.code, exit::TERMINATED, "{status:?}");
    assert_eq!(status.json()?["output"], "not needed");
    let again = cli(&host, &["terminate", "slow"]).await?;
    assert_eq!(again.code, exit::ERROR, "{again:?}");
    assert!(again.stderr.contains("already finished"), "{again:?}");

    let unknown = cli(&host, &["status", "no-such-instance"]).await?;
    assert_eq!(unknown.code, exit::NOT_FOUND, "{unknown:?}");

    let url = host.url("");
    let keyless = cli_at(&url, None, &["apps"]).await?;
    assert_eq!(keyless.code, exit::UNAUTHORIZED, "{keyless:?}");
    assert!(keyless.stderr.contains("master key"), "{keyless:?}");
    let wrong = cli_at(&url, None, &["status", "slow", "--key", "wrong-key"]).await?;
    assert_eq!(wrong.code, exit::UNAUTHORIZED, "{wrong:?}");
    assert!(
        !wrong.stderr.contains("wrong-key"),
        "the key is never printed"
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let unreachable = cli_at(&format!("http://{closed}"), Some(MASTER_KEY), &["apps"]).await?;
    assert_eq!(unreachable.code, exit::ERROR, "{unreachable:?}");
    assert!(
        unreachable.stderr.contains("cannot reach the host"),
        "{unreachable:?}"
    );
    assert!(!unreachable.stderr.contains(MASTER_KEY));

    let bad_json = cli(&host, &["start", "OrderWorkflow", "--input", "{nope"]).await?;
    assert_eq!(bad_json.code, exit::USAGE, "{bad_json:?}");
    assert!(
        bad_json.stderr.contains("--input is not valid JSON"),
        "{bad_json:?}"
    );
    let missing = cli(
        &host,
        &["start", "OrderWorkflow", "--input", "@/no/such/file"],
    )
    .await?;
    assert_eq!(missing.code, exit::USAGE, "{missing:?}");
    let no_orchestrator = cli(&host, &["start", "NoSuchOrchestrator"]).await?;
    assert_eq!(
        no_orchestrator.code,
        exit::USAGE,
        "the host's 400: {no_orchestrator:?}"
    );
    assert!(no_orchestrator.stderr.contains("NoSuchOrchestrator"));
    let usage = cli(&host, &["raise", "only-an-id"]).await?;
    assert_eq!(usage.code, exit::USAGE, "{usage:?}");

    let help = cli_at(&url, None, &["status", "--help"]).await?;
    assert_eq!(help.code, exit::SUCCESS);
    assert!(help.stdout.contains("Exit codes"), "{help:?}");
    for code in [
        exit::FAILED,
        exit::TERMINATED,
        exit::TIMED_OUT,
        exit::NOT_FOUND,
        exit::UNAUTHORIZED,
    ] {
        assert!(
            help.stdout.contains(&format!("\n    {code}  ")),
            "{code}: {help:?}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raise_suspend_resume_and_restart_drive_the_approval() -> anyhow::Result<()> {
    let host = TestHost::start_with(&[("approval.wasm", guests::APPROVAL)], |_| {}).await?;
    let document = r#"{"document":"Q3 report"}"#;
    let started = cli(
        &host,
        &[
            "start",
            "DocumentApprovalOrchestrator",
            "--id",
            "doc-1",
            "--input",
            document,
        ],
    )
    .await?;
    assert_eq!(started.stdout, "doc-1\n", "{started:?}");
    host.wait_for_status("doc-1", "the approval to wait", |s| {
        s["customStatus"]["waitingFor"] == "ApprovalEvent"
    })
    .await?;

    assert_eq!(cli(&host, &["suspend", "doc-1"]).await?.code, exit::SUCCESS);
    let suspended = cli(&host, &["status", "doc-1"]).await?;
    assert!(
        suspended.field("Status").ends_with("Suspended"),
        "{suspended:?}"
    );
    let resumed = cli(&host, &["resume", "doc-1", "--json"]).await?;
    assert_eq!(
        (resumed.code, resumed.json()?),
        (exit::SUCCESS, Value::Null)
    );
    let running = cli(&host, &["status", "doc-1", "--json"]).await?.json()?;
    assert_eq!(running["runtimeStatus"], "Running");
    assert_eq!(
        running["customStatus"],
        json!({ "waitingFor": "ApprovalEvent" })
    );

    let raised = cli(
        &host,
        &["raise", "doc-1", "ApprovalEvent", r#"{"approved": true}"#],
    )
    .await?;
    assert_eq!(raised.code, exit::SUCCESS, "{raised:?}");
    assert_eq!(raised.stdout, "raised ApprovalEvent on instance doc-1\n");
    host.wait_for_instance("doc-1", DEADLINE).await?;
    let approved = cli(&host, &["status", "doc-1", "--json"]).await?;
    assert_eq!(approved.code, exit::SUCCESS);
    let approved = approved.json()?;
    assert_eq!(approved["runtimeStatus"], "Completed");
    assert_eq!(approved["output"]["outcome"], "approved");
    assert_eq!(approved["output"]["result"], "Q3 report finalized");
    let late = cli(&host, &["raise", "doc-1", "ApprovalEvent"]).await?;
    assert_eq!(
        late.code,
        exit::ERROR,
        "410 for a finished instance: {late:?}"
    );

    let restarted = cli(&host, &["restart", "doc-1", "--json"]).await?;
    assert_eq!(restarted.code, exit::SUCCESS, "{restarted:?}");
    let new_id = restarted.json()?["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no id: {restarted:?}"))?;
    assert_ne!(new_id, "doc-1");
    let again = host
        .wait_for_status(&new_id, "the restarted approval to wait", |s| {
            s["customStatus"]["waitingFor"] == "ApprovalEvent"
        })
        .await?;
    assert_eq!(again["input"], json!({ "document": "Q3 report" }));
    let same = cli(&host, &["restart", "doc-1", "--same-id"]).await?;
    assert_eq!(
        (same.code, same.stdout.as_str()),
        (0, "doc-1\n"),
        "{same:?}"
    );
    for id in [new_id.as_str(), "doc-1"] {
        assert_eq!(cli(&host, &["terminate", id]).await?.code, exit::SUCCESS);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entity_signal_get_and_list() -> anyhow::Result<()> {
    let host = TestHost::start_with(&[("counter.wasm", guests::COUNTER)], |_| {}).await?;
    let signalled = cli(&host, &["entity", "signal", "Counter", "c1", "add", "5"]).await?;
    assert_eq!(signalled.code, exit::SUCCESS, "{signalled:?}");
    assert_eq!(signalled.stdout, "signalled add on entity Counter/c1\n");
    let signalled = cli(
        &host,
        &["entity", "signal", "Counter", "c1", "add", "5", "--json"],
    )
    .await?;
    assert_eq!(signalled.stdout, "null\n");
    assert_eq!(
        cli(&host, &["entity", "signal", "Counter", "c2", "add", "7"])
            .await?
            .code,
        exit::SUCCESS
    );
    for (key, count) in [("c1", "10"), ("c2", "7")] {
        eventually(DEADLINE, &format!("{key} to count {count}"), || async {
            let got = cli(&host, &["entity", "get", "Counter", key, "--json"]).await?;
            Ok((got.code == exit::SUCCESS && got.stdout.trim() == count).then_some(()))
        })
        .await?;
    }
    let shown = cli(&host, &["entity", "get", "Counter", "c1"]).await?;
    assert_eq!(shown.stdout, "10\n");

    let listed = cli(
        &host,
        &["entity", "list", "Counter", "--page-size", "1", "--json"],
    )
    .await?;
    let states: Vec<(Value, Value)> = listed
        .json()?
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| (e["entityId"]["key"].clone(), e["state"].clone()))
        .collect();
    assert_eq!(
        states,
        [(json!("c1"), json!(10)), (json!("c2"), json!(7))],
        "{listed:?}"
    );
    let table = cli(&host, &["entity", "list", "Counter"]).await?;
    assert!(table.stdout.starts_with("KEY"), "{table:?}");
    let c2 = table.stdout.lines().find(|l| l.starts_with("c2 "));
    assert!(c2.is_some_and(|l| l.ends_with(" 7")), "{table:?}");

    let none = cli(&host, &["entity", "get", "Counter", "never-signalled"]).await?;
    assert_eq!(none.code, exit::NOT_FOUND, "{none:?}");
    let bad_op = cli(
        &host,
        &["entity", "signal", "Counter", "c1", "multiply", "2"],
    )
    .await?;
    assert_eq!(bad_op.code, exit::USAGE, "{bad_op:?}");
    let bad_input = cli(&host, &["entity", "signal", "Counter", "c1", "add", "five"]).await?;
    assert_eq!(bad_input.code, exit::USAGE, "{bad_input:?}");
    assert!(bad_input.stderr.contains("INPUT is not valid JSON"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_shows_functions_and_load_errors() -> anyhow::Result<()> {
    let host = TestHost::start_with(
        &[
            ("greet.wasm", guests::GREET),
            ("counter.wasm", guests::COUNTER),
        ],
        |_| {},
    )
    .await?;
    host.deploy_bytes("broken.wasm", b"not a component")?;
    let listing = eventually(DEADLINE, "broken.wasm to fail to load", || async {
        let listing = cli(&host, &["apps", "--json"]).await?.json()?;
        let failed = listing["apps"].as_array().is_some_and(|apps| {
            apps.iter()
                .any(|a| a["name"] == "broken" && a["lastError"].is_object())
        });
        Ok(failed.then_some(listing))
    })
    .await?;
    let greet = listing["apps"]
        .as_array()
        .and_then(|apps| apps.iter().find(|a| a["name"] == "greet"))
        .ok_or_else(|| anyhow!("greet is not listed: {listing}"))?;
    assert!(
        greet["digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:"))
    );
    assert_eq!(greet["functions"][0]["name"], "GreetFunction");

    let table = cli(&host, &["apps"]).await?;
    assert_eq!(table.code, exit::SUCCESS, "{table:?}");
    let line = |start: &str| {
        table
            .stdout
            .lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(line("greet ").contains("sha256:"), "{table:?}");
    let greet_function = line("GreetFunction ");
    assert!(
        greet_function.contains("http") && greet_function.contains("GET,POST /api/greet"),
        "{table:?}"
    );
    assert!(
        line("Counter ").contains("operations: add, reset"),
        "{table:?}"
    );
    assert!(line("FAILED APP").contains("ERROR"), "{table:?}");
    assert!(line("broken ").len() > "broken ".len(), "{table:?}");
    Ok(())
}
