//! The durable management API: every route, and bad input to each.

use std::time::Duration;

use http::Method;
use perdure_tests::{DURABLE, TestHost, eventually, guests};
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(30);

async fn probe_host() -> anyhow::Result<TestHost> {
    TestHost::start_with(&[("durable-probe.wasm", guests::DURABLE_PROBE)], |_| {}).await
}

/// An instance that stays Running for a long time (its one activity sleeps
/// 20 s).
const STALLED: &str = r#"{"steps": 1, "sleepMs": 20000}"#;

async fn send(
    host: &TestHost,
    method: Method,
    path: &str,
    body: &str,
) -> anyhow::Result<perdure_tests::TestResponse> {
    host.send_with_master_key(method, path, body.to_owned())
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_refuses_bad_input_and_writes_nothing() -> anyhow::Result<()> {
    let host = probe_host().await?;
    let r = host
        .start_orchestration("NoSuchOrchestrator", None, "{}")
        .await?;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("NoSuchOrchestrator"), "{}", r.text());
    let r = host.start_orchestration("Nap", None, "{}").await?;
    assert_eq!(
        r.status,
        400,
        "an activity is not an orchestrator: {}",
        r.text()
    );
    let r = host
        .start_orchestration("SleepyChain", None, "{not json")
        .await?;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.error_code().as_deref(), Some("invalid-argument"));
    let r = host.start_orchestration("SleepyChain", None, "{}").await?;
    assert_eq!(
        r.status, 202,
        "valid JSON of the wrong shape is the orchestrator's to refuse"
    );
    let r = host
        .request(
            Method::POST,
            &format!("{DURABLE}/orchestrators/SleepyChain"),
            &[],
            "{}",
        )
        .await?;
    assert_eq!(r.status, 401, "starting needs the master key");
    let r = host
        .start_orchestration("SleepyChain", Some("a%23b"), "{}")
        .await?;
    assert_eq!(r.status, 400, "'#' is not allowed in ids: {}", r.text());

    let listed = host
        .get_admin(&format!("{DURABLE}/instances"))
        .await?
        .json()?;
    assert_eq!(
        listed.as_array().map(Vec::len),
        Some(1),
        "only the valid start wrote: {listed}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_id_cannot_be_reused_but_a_finished_one_can() -> anyhow::Result<()> {
    let host = probe_host().await?;
    let r = host
        .start_orchestration("SleepyChain", Some("fixed"), STALLED)
        .await?;
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json()?["id"], "fixed");
    let again = host
        .start_orchestration("SleepyChain", Some("fixed"), STALLED)
        .await?;
    assert_eq!(again.status, 409, "{}", again.text());
    assert!(again.text().contains("fixed"));

    let r = send(
        &host,
        Method::POST,
        &format!("{DURABLE}/instances/fixed/terminate?reason=enough"),
        "",
    )
    .await?;
    assert_eq!(r.status, 202, "{}", r.text());
    let status = host.wait_for_instance("fixed", DEADLINE).await?;
    assert_eq!(status["runtimeStatus"], "Terminated");
    assert_eq!(status["output"], "enough");

    let r = host
        .start_orchestration(
            "SleepyChain",
            Some("fixed"),
            r#"{"steps": 2, "sleepMs": 1}"#,
        )
        .await?;
    assert_eq!(r.status, 202, "{}", r.text());
    let status = host.wait_for_instance("fixed", DEADLINE).await?;
    assert_eq!(status["runtimeStatus"], "Completed", "{status}");
    assert_eq!(status["output"], 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_routes_answer_404_410_and_400() -> anyhow::Result<()> {
    let host = probe_host().await?;
    let missing = format!("{DURABLE}/instances/missing");
    assert_eq!(host.get_admin(&missing).await?.status, 404);
    for action in ["terminate", "suspend", "resume", "restart", "raiseEvent/go"] {
        let r = send(&host, Method::POST, &format!("{missing}/{action}"), "{}").await?;
        assert_eq!(r.status, 404, "{action}: {}", r.text());
        assert_eq!(r.error_code().as_deref(), Some("not-found"));
    }
    assert_eq!(send(&host, Method::DELETE, &missing, "").await?.status, 404);
    assert_eq!(
        send(&host, Method::POST, &format!("{missing}/explode"), "")
            .await?
            .status,
        404
    );

    let done = host
        .run_orchestration("SleepyChain", r#"{"steps": 1, "sleepMs": 1}"#)
        .await?;
    let id = done["instanceId"].as_str().unwrap_or_default().to_owned();
    let instance = format!("{DURABLE}/instances/{id}");
    for action in ["terminate", "suspend", "resume", "raiseEvent/go"] {
        let r = send(&host, Method::POST, &format!("{instance}/{action}"), "{}").await?;
        assert_eq!(
            r.status,
            410,
            "{action} on a finished instance: {}",
            r.text()
        );
    }

    let running = host.start_instance("SleepyChain", STALLED).await?;
    let running_path = format!("{DURABLE}/instances/{running}");
    let r = send(
        &host,
        Method::POST,
        &format!("{running_path}/raiseEvent/go"),
        "{oops",
    )
    .await?;
    assert_eq!(r.status, 400, "{}", r.text());
    for (name, why) in [
        ("x".repeat(257), "limit is 256"),
        ("a%01b".to_owned(), "control character"),
    ] {
        let r = send(
            &host,
            Method::POST,
            &format!("{running_path}/raiseEvent/{name}"),
            "1",
        )
        .await?;
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(r.text().contains(why), "{}", r.text());
    }
    let r = send(
        &host,
        Method::POST,
        &format!("{running_path}/raiseEvent/go"),
        r#"{"ok":1}"#,
    )
    .await?;
    assert_eq!(r.status, 202, "{}", r.text());
    let r = send(&host, Method::DELETE, &running_path, "").await?;
    assert_eq!(
        r.status,
        409,
        "a running instance is not purged: {}",
        r.text()
    );
    let r = host
        .get_admin(&format!("{running_path}?showHistory=maybe"))
        .await?;
    assert_eq!(r.status, 400, "{}", r.text());
    let r = host.get(&running_path).await?;
    assert_eq!(r.status, 401, "status needs a key");

    // Purge: gone afterwards.
    let r = send(&host, Method::DELETE, &instance, "").await?;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()?, json!({"instancesDeleted": 1}));
    assert_eq!(host.get_admin(&instance).await?.status, 404);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_history_and_202_while_running() -> anyhow::Result<()> {
    let host = probe_host().await?;
    let running = host.start_instance("SleepyChain", STALLED).await?;
    let r = host
        .get_admin(&format!("{DURABLE}/instances/{running}"))
        .await?;
    assert_eq!(r.status, 202, "{}", r.text());
    assert!(r.headers.contains_key("location"));
    assert_eq!(r.headers["retry-after"], "10");

    let done = host
        .run_orchestration("SleepyChain", r#"{"steps": 2, "sleepMs": 1}"#)
        .await?;
    let id = done["instanceId"].as_str().unwrap_or_default();
    assert_eq!(done["input"], json!({"steps": 2, "sleepMs": 1}));
    let r = host
        .get_admin(&format!(
            "{DURABLE}/instances/{id}?showHistory=true&showHistoryOutput=true&showInput=false"
        ))
        .await?;
    assert_eq!(r.status, 200);
    let status = r.json()?;
    assert!(status.get("input").is_none(), "{status}");
    let kinds: Vec<&str> = status["historyEvents"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter_map(|e| e["EventType"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        kinds,
        [
            "ExecutionStarted",
            "TaskScheduled",
            "TaskCompleted",
            "TaskScheduled",
            "TaskCompleted",
            "ExecutionCompleted"
        ],
        "{status}"
    );
    assert_eq!(status["historyEvents"][2]["Result"], 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_holds_an_instance_until_resumed() -> anyhow::Result<()> {
    let host = probe_host().await?;
    let id = host
        .start_instance("SleepyChain", r#"{"steps": 3, "sleepMs": 200}"#)
        .await?;
    let path = format!("{DURABLE}/instances/{id}");
    assert_eq!(
        send(&host, Method::POST, &format!("{path}/suspend"), "")
            .await?
            .status,
        202
    );
    let suspended = host.instance(&id).await?.unwrap_or_default();
    assert_eq!(suspended["runtimeStatus"], "Suspended", "{suspended}");
    // The first step's result arrives, but the instance does not move on
    // while suspended: its schedule stays at one activity.
    eventually(DEADLINE, "the first nap to be recorded", || async {
        let r = host
            .get_admin(&format!("{path}?showHistory=true"))
            .await?
            .json()?;
        let completed = r["historyEvents"]
            .as_array()
            .map(|e| {
                e.iter()
                    .filter(|e| e["EventType"] == "TaskCompleted")
                    .count()
            })
            .unwrap_or(0);
        Ok((completed == 1).then_some(()))
    })
    .await?;
    let r = host
        .get_admin(&format!("{path}?showHistory=true"))
        .await?
        .json()?;
    let scheduled = r["historyEvents"].as_array().map(|e| {
        e.iter()
            .filter(|e| e["EventType"] == "TaskScheduled")
            .count()
    });
    assert_eq!(scheduled, Some(1), "{r}");
    assert_eq!(r["runtimeStatus"], "Suspended");

    assert_eq!(
        send(&host, Method::POST, &format!("{path}/resume"), "")
            .await?
            .status,
        202
    );
    let status = host.wait_for_instance(&id, DEADLINE).await?;
    assert_eq!(status["runtimeStatus"], "Completed", "{status}");
    assert_eq!(status["output"], 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_runs_again_with_the_same_input() -> anyhow::Result<()> {
    let host = probe_host().await?;
    let first = host
        .run_orchestration("SleepyChain", r#"{"steps": 2, "sleepMs": 1}"#)
        .await?;
    let id = first["instanceId"].as_str().unwrap_or_default();
    let r = send(
        &host,
        Method::POST,
        &format!("{DURABLE}/instances/{id}/restart"),
        "",
    )
    .await?;
    assert_eq!(r.status, 202, "{}", r.text());
    let new_id = r.json()?["id"].as_str().unwrap_or_default().to_owned();
    assert_ne!(new_id, id);
    let second = host.wait_for_instance(&new_id, DEADLINE).await?;
    assert_eq!(second["output"], 2);
    assert_eq!(second["input"], first["input"]);

    let r = send(
        &host,
        Method::POST,
        &format!("{DURABLE}/instances/{id}/restart?restartWithNewInstanceId=false"),
        "",
    )
    .await?;
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json()?["id"], id);
    let again = host.wait_for_instance(id, DEADLINE).await?;
    assert_eq!(again["runtimeStatus"], "Completed");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_pages_and_bulk_purges() -> anyhow::Result<()> {
    let host = probe_host().await?;
    for i in 0..5 {
        let r = host
            .start_orchestration(
                "SleepyChain",
                Some(&format!("batch-{i}")),
                r#"{"steps": 1, "sleepMs": 1}"#,
            )
            .await?;
        assert_eq!(r.status, 202);
    }
    let stalled = host.start_instance("SleepyChain", STALLED).await?;
    for i in 0..5 {
        host.wait_for_instance(&format!("batch-{i}"), DEADLINE)
            .await?;
    }

    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut headers = vec![("x-functions-key", perdure_tests::MASTER_KEY)];
        if let Some(token) = &token {
            headers.push(("x-ms-continuation-token", token.as_str()));
        }
        let r = host
            .request(
                Method::GET,
                &format!("{DURABLE}/instances?instanceIdPrefix=batch-&top=2"),
                &headers,
                "",
            )
            .await?;
        assert_eq!(r.status, 200, "{}", r.text());
        let page = r.json()?;
        let page = page.as_array().cloned().unwrap_or_default();
        assert!(page.len() <= 2);
        seen.extend(
            page.iter()
                .filter_map(|s| s["instanceId"].as_str().map(str::to_owned)),
        );
        token = r
            .headers
            .get("x-ms-continuation-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        (0..5).map(|i| format!("batch-{i}")).collect::<Vec<_>>()
    );

    let running = host
        .get_admin(&format!(
            "{DURABLE}/instances?runtimeStatus=Running,Pending"
        ))
        .await?
        .json()?;
    assert_eq!(running.as_array().map(Vec::len), Some(1), "{running}");
    assert_eq!(running[0]["instanceId"], stalled.as_str());
    for bad in [
        "runtimeStatus=Sleeping",
        "createdTimeFrom=yesterday",
        "top=0",
        "top=x",
    ] {
        let r = host
            .get_admin(&format!("{DURABLE}/instances?{bad}"))
            .await?;
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
    }

    let r = send(&host, Method::DELETE, &format!("{DURABLE}/instances"), "").await?;
    assert_eq!(r.status, 400, "a bulk purge needs createdTimeFrom");
    let r = send(
        &host,
        Method::DELETE,
        &format!(
            "{DURABLE}/instances?createdTimeFrom=2000-01-01T00:00:00Z&runtimeStatus=Completed"
        ),
        "",
    )
    .await?;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()?, json!({"instancesDeleted": 5}));
    let left = host
        .get_admin(&format!("{DURABLE}/instances"))
        .await?
        .json()?;
    assert_eq!(
        left.as_array().map(Vec::len),
        Some(1),
        "the running one stays: {left}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_completion_answers_200_with_the_output() -> anyhow::Result<()> {
    let host = probe_host().await?;
    let r = host
        .start_orchestration("SleepyChain", None, r#"{"steps": 2, "sleepMs": 1}"#)
        .await?;
    assert_eq!(r.status, 202);
    let path = format!("{DURABLE}/orchestrators/SleepyChain?timeout=20&pollingInterval=1");
    let r = send(&host, Method::POST, &path, r#"{"steps": 2, "sleepMs": 1}"#).await?;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()?, json!(2));
    let r = send(
        &host,
        Method::POST,
        &format!("{DURABLE}/orchestrators/SleepyChain?timeout=0"),
        STALLED,
    )
    .await?;
    assert_eq!(
        r.status,
        202,
        "not finished within the timeout: {}",
        r.text()
    );
    let r = send(
        &host,
        Method::POST,
        &format!("{DURABLE}/orchestrators/SleepyChain?timeout=soon"),
        "{}",
    )
    .await?;
    assert_eq!(r.status, 400);
    Ok(())
}

/// Text that would change a statement if it were pasted into SQL is only
/// ever a bound value: it filters nothing, deletes nothing, and is stored
/// as given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_in_request_text_is_only_ever_a_value() -> anyhow::Result<()> {
    let host = probe_host().await?;
    for id in ["alpha-1", "alpha-2"] {
        let r = host
            .start_orchestration("SleepyChain", Some(id), STALLED)
            .await?;
        assert_eq!(r.status, 202, "{}", r.text());
    }
    let list = |prefix: &'static str| {
        let host = &host;
        async move {
            let path = format!(
                "{DURABLE}/instances?instanceIdPrefix={}",
                percent_encoding::utf8_percent_encode(prefix, percent_encoding::NON_ALPHANUMERIC)
            );
            let r = send(host, Method::GET, &path, "").await?;
            anyhow::ensure!(r.status == 200, "{}", r.text());
            Ok::<_, anyhow::Error>(r.json()?.as_array().map_or(0, Vec::len))
        }
    };
    assert_eq!(list("x' OR '1'='1").await?, 0);
    assert_eq!(list("%").await?, 0, "a LIKE wildcard is a plain character");
    assert_eq!(list("alpha").await?, 2);

    let event = "x'); DELETE FROM instances; --";
    let path = format!(
        "{DURABLE}/instances/alpha-1/raiseEvent/{}",
        percent_encoding::utf8_percent_encode(event, percent_encoding::NON_ALPHANUMERIC)
    );
    let r = send(&host, Method::POST, &path, "1").await?;
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(list("alpha").await?, 2);
    let status = send(
        &host,
        Method::GET,
        &format!("{DURABLE}/instances/alpha-1?showHistory=true"),
        "",
    )
    .await?;
    assert!(
        status.text().contains("DELETE FROM instances"),
        "{}",
        status.text()
    );
    Ok(())
}

perdure_tests::also_on_postgres!(
    starting_refuses_bad_input_and_writes_nothing,
    a_running_id_cannot_be_reused_but_a_finished_one_can,
    instance_routes_answer_404_410_and_400,
    status_shows_history_and_202_while_running,
    suspend_holds_an_instance_until_resumed,
    restart_runs_again_with_the_same_input,
    list_filters_pages_and_bulk_purges,
    waiting_for_completion_answers_200_with_the_output,
    sql_in_request_text_is_only_ever_a_value,
);
