//! Orchestrations end to end: the examples' results over the HTTP API,
//! fan-out/fan-in, activity failures, deterministic replay, eviction.

use std::time::Duration;

use http::Method;
use perdure_tests::{DURABLE, MASTER_KEY, TestHost, guests};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(30);

fn order(overrides: Value) -> String {
    let mut order = json!({
        "id": "o-1",
        "item": "book",
        "quantity": 2,
        "amount": 30.0,
        "customerEmail": "a@example.com",
    });
    if let (Some(order), Some(changes)) = (order.as_object_mut(), overrides.as_object()) {
        for (k, v) in changes {
            order.insert(k.clone(), v.clone());
        }
    }
    order.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_order_takes_every_branch() -> anyhow::Result<()> {
    let host = TestHost::start_with(&[("orders.wasm", guests::ORDERS)], |_| {}).await?;
    let cases = [
        (json!({}), "Order processed successfully!", Value::Null),
        (
            json!({"quantity": 0}),
            "Order processing failed.",
            json!("validation"),
        ),
        (
            json!({"item": "out-of-stock"}),
            "Order processing failed.",
            json!("inventory"),
        ),
        (
            json!({"amount": 2000.0}),
            "Order processing failed.",
            json!("payment"),
        ),
    ];
    for (changes, output, failed_step) in cases {
        let status = host
            .run_orchestration("ProcessOrderOrchestrator", &order(changes.clone()))
            .await?;
        assert_eq!(status["runtimeStatus"], "Completed", "{changes}: {status}");
        assert_eq!(status["output"], output, "{changes}: {status}");
        assert_eq!(
            status["customStatus"]["failedStep"], failed_step,
            "{status}"
        );
        assert_eq!(status["name"], "ProcessOrderOrchestrator");
        assert!(
            status["createdTime"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z'))
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_workflow_chains_outputs_and_fails_on_an_unhandled_error() -> anyhow::Result<()> {
    let host = TestHost::start_with(&[("orders.wasm", guests::ORDERS)], |_| {}).await?;
    let status = host
        .run_orchestration("OrderWorkflow", &order(json!({})))
        .await?;
    assert_eq!(status["runtimeStatus"], "Completed", "{status}");
    assert_eq!(status["output"], "Confirmation sent to a@example.com");

    // ChargePayment declines; the workflow does not handle it.
    let status = host
        .run_orchestration("OrderWorkflow", &order(json!({"amount": 5000.0})))
        .await?;
    assert_eq!(status["runtimeStatus"], "Failed", "{status}");
    assert_eq!(status["output"]["code"], "application", "{status}");
    assert!(
        status["output"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("declined")),
        "{status}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_fan_in_returns_results_in_order() -> anyhow::Result<()> {
    let host =
        TestHost::start_with(&[("fan-out-fan-in.wasm", guests::FAN_OUT_FAN_IN)], |_| {}).await?;
    let status = host
        .run_orchestration("FanOutFanInOrchestrator", "")
        .await?;
    assert_eq!(status["runtimeStatus"], "Completed", "{status}");
    assert_eq!(
        status["output"],
        json!(["Task1 completed", "Task2 completed", "Task3 completed"])
    );

    let status = host
        .run_orchestration("FanOutFanInOrchestrator", r#"{"count": 1000}"#)
        .await?;
    assert_eq!(status["runtimeStatus"], "Completed");
    let results = status["output"].as_array().cloned().unwrap_or_default();
    assert_eq!(results.len(), 1000);
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result, &json!(format!("Task{} completed", i + 1)));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activity_error_is_handled_or_fails_the_instance() -> anyhow::Result<()> {
    let host =
        TestHost::start_with(&[("durable-probe.wasm", guests::DURABLE_PROBE)], |_| {}).await?;
    let status = host
        .run_orchestration("HandlesFailure", r#""card expired""#)
        .await?;
    assert_eq!(status["runtimeStatus"], "Completed", "{status}");
    assert_eq!(status["output"], "handled Application: card expired");

    let status = host
        .run_orchestration("FailsUnhandled", r#""card expired""#)
        .await?;
    assert_eq!(status["runtimeStatus"], "Failed", "{status}");
    assert_eq!(status["output"]["code"], "application");
    assert_eq!(status["output"]["message"], "card expired");
    assert_eq!(status["output"]["details"], json!({"retryable": false}));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_http_answers_202_and_its_urls_work_with_the_instance_key() -> anyhow::Result<()> {
    let host = TestHost::start_with(&[("async-http.wasm", guests::ASYNC_HTTP)], |_| {}).await?;
    let started = host
        .request(
            Method::POST,
            "/api/process",
            &[("x-functions-key", MASTER_KEY)],
            r#"{"steps": 4}"#,
        )
        .await?;
    assert_eq!(started.status, 202, "{}", started.text());
    assert_eq!(started.headers["retry-after"], "10");
    let payload = started.json()?;
    let status_url = payload["statusQueryGetUri"].as_str().unwrap_or_default();
    assert_eq!(started.headers["location"], status_url);
    for url in [
        "sendEventPostUri",
        "terminatePostUri",
        "purgeHistoryDeleteUri",
        "restartPostUri",
        "suspendPostUri",
        "resumePostUri",
    ] {
        assert!(
            payload[url].as_str().is_some_and(|u| u.contains("code=")),
            "{url}: {payload}"
        );
    }
    assert!(
        !status_url.contains(MASTER_KEY),
        "the master key must not leak: {status_url}"
    );

    // The status URL works as given: no master key.
    let path = status_url
        .split_once("/runtime/")
        .map(|(_, rest)| format!("/runtime/{rest}"))
        .unwrap_or_default();
    let done = perdure_tests::eventually(DEADLINE, "the instance to complete", || async {
        let r = host.get(&path).await?;
        Ok((r.status == 200).then_some(r))
    })
    .await?;
    let status = done.json()?;
    assert_eq!(status["runtimeStatus"], "Completed", "{status}");
    assert_eq!(status["output"]["steps"].as_array().map(Vec::len), Some(4));
    assert_eq!(
        status["customStatus"],
        json!({"completedSteps": 4, "totalSteps": 4})
    );

    // That key opens this instance only.
    let key = path.split("code=").nth(1).unwrap_or_default();
    let other = host
        .start_instance("LongRunningOrchestration", "{}")
        .await?;
    let r = host
        .get(&format!("{DURABLE}/instances/{other}?code={key}"))
        .await?;
    assert_eq!(r.status, 401, "{}", r.text());
    let r = host
        .request(
            Method::POST,
            &format!("{DURABLE}/orchestrators/LongRunningOrchestration"),
            &[("x-functions-key", key)],
            "{}",
        )
        .await?;
    assert_eq!(r.status, 401, "an instance key cannot start orchestrations");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_guids_and_hash_seeds_replay_identically() -> anyhow::Result<()> {
    // Every session is evicted as soon as it waits, so the second half of
    // ClockProbe runs in a new store that replays the first half.
    let host = TestHost::start_with(&[("durable-probe.wasm", guests::DURABLE_PROBE)], |c| {
        c.durable.idle_eviction = Duration::ZERO;
    })
    .await?;
    let status = host.run_orchestration("ClockProbe", "null").await?;
    // A replay that observed anything else would have failed with a
    // nondeterminism error: the first observation is an activity's input.
    assert_eq!(status["runtimeStatus"], "Completed", "{status}");
    let output = &status["output"];
    let (before, after) = (&output["before"], &output["after"]);
    assert_eq!(before, &output["echoed"]);
    assert_ne!(before["guid"], after["guid"]);
    assert!(before["now"].as_u64() <= after["now"].as_u64());
    assert_eq!(
        before["wall"], before["now"],
        "WASI wall clock is orchestration time"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_instances_complete_with_a_tiny_hot_cap() -> anyhow::Result<()> {
    let host = TestHost::start_with(&[("orders.wasm", guests::ORDERS)], |c| {
        c.durable.max_hot_instances = 2;
    })
    .await?;
    let mut ids = Vec::new();
    for i in 0..40 {
        let input = order(json!({ "id": format!("o-{i}") }));
        ids.push(host.start_instance("OrderWorkflow", &input).await?);
    }
    for id in &ids {
        let status = host.wait_for_instance(id, DEADLINE).await?;
        assert_eq!(status["runtimeStatus"], "Completed", "{id}: {status}");
        assert_eq!(status["output"], "Confirmation sent to a@example.com");
    }
    Ok(())
}

perdure_tests::also_on_postgres!(
    process_order_takes_every_branch,
    order_workflow_chains_outputs_and_fails_on_an_unhandled_error,
    fan_out_fan_in_returns_results_in_order,
    an_activity_error_is_handled_or_fails_the_instance,
    async_http_answers_202_and_its_urls_work_with_the_instance_key,
    time_guids_and_hash_seeds_replay_identically,
    many_instances_complete_with_a_tiny_hot_cap,
);
