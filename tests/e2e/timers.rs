//! Durable timers, event buffering, retries, sub-orchestrations, and
//! terminate/suspend/resume of waiting instances.

use std::time::Duration;

use perdure_records::InstanceId;
use perdure_tests::{TestHost, guests};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(30);

async fn probe_host() -> anyhow::Result<TestHost> {
    TestHost::start_with(&[("durable-probe.wasm", guests::DURABLE_PROBE)], |_| {}).await
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_due_while_the_host_was_down_fires_after_start() -> anyhow::Result<()> {
    let mut host = probe_host().await?;
    let id = host
        .start_instance("Sleeper", r#"{"delayMs": 400}"#)
        .await?;
    host.wait_for_status(&id, "the timer to be set", |s| {
        s["runtimeStatus"] == "Running"
    })
    .await?;
    let due = tokio::time::Instant::now() + Duration::from_millis(600);
    // Down until the timer is past due.
    host.restart_after(tokio::time::sleep_until(due)).await?;
    let status = host.wait_for_instance(&id, DEADLINE).await?;
    assert_eq!(status["runtimeStatus"], "Completed", "{status}");
    let fire_at = status["output"].as_u64().unwrap_or(u64::MAX);
    assert!(
        fire_at <= now_ms(),
        "completed before its due time: {status}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_buffered_and_delivered_in_order() -> anyhow::Result<()> {
    let host = probe_host().await?;
    let id = host
        .start_instance("CollectEvents", r#"{"name": "Step", "count": 3}"#)
        .await?;
    // All raised at once, most before the orchestrator waits; one of
    // another name is not taken.
    for (name, n) in [("Step", 1), ("Other", 9), ("Step", 2), ("Step", 3)] {
        let r = host.raise_event(&id, name, &n.to_string()).await?;
        assert_eq!(r.status, 202, "{}", r.text());
    }
    let status = host.wait_for_instance(&id, DEADLINE).await?;
    assert_eq!(status["output"], json!([1, 2, 3]), "{status}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_back_off_then_succeed_or_end_with_the_typed_error() -> anyhow::Result<()> {
    let host = probe_host().await?;
    let succeeds = host
        .start_instance(
            "RetryFlaky",
            r#"{"failTimes": 2, "maxAttempts": 5, "firstRetryMs": 50}"#,
        )
        .await?;
    let fails = host
        .start_instance(
            "RetryFlaky",
            r#"{"failTimes": 99, "maxAttempts": 3, "firstRetryMs": 100, "backoff": 3.0}"#,
        )
        .await?;
    let status = host.wait_for_instance(&succeeds, DEADLINE).await?;
    assert_eq!(
        status["output"],
        json!({ "succeededOnAttempt": 3 }),
        "{status}"
    );

    let status = host.wait_for_instance(&fails, DEADLINE).await?;
    assert_eq!(status["output"]["error"]["code"], "Application", "{status}");
    assert_eq!(
        status["output"]["error"]["message"], "attempt 3 failed on purpose",
        "the final error is the last attempt's: {status}"
    );
    // The failed attempts are in the history, backing off 100 ms, 300 ms.
    let history = host
        .engine()
        .history(&InstanceId::parse(&fails)?)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no history"))?;
    let attempts = &history.attempts;
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[0].retry_at_ms - attempts[0].failed_ms, 100);
    assert_eq!(attempts[1].retry_at_ms - attempts[1].failed_ms, 300);
    assert!(
        attempts[1].failed_ms >= attempts[0].retry_at_ms,
        "{attempts:?}"
    );
    let shown = host
        .get_admin(&format!(
            "/runtime/webhooks/durabletask/instances/{fails}?showHistory=true"
        ))
        .await?
        .json()?;
    let retries = shown["historyEvents"].as_array().map(|events| {
        events
            .iter()
            .filter(|e| e["EventType"] == "TaskRetrying")
            .count()
    });
    assert_eq!(retries, Some(2), "{shown}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_orchestrations_return_or_fail_typed_and_name_their_parent() -> anyhow::Result<()> {
    let host = probe_host().await?;
    let ok = host
        .start_instance("Parent", r#"{"fail": false, "childId": "child-ok"}"#)
        .await?;
    let failing = host.start_instance("Parent", r#"{"fail": true}"#).await?;
    let status = host.wait_for_instance(&ok, DEADLINE).await?;
    assert_eq!(
        status["output"],
        json!({ "child": "child done" }),
        "{status}"
    );
    let child = host
        .instance("child-ok")
        .await?
        .ok_or_else(|| anyhow::anyhow!("the child is gone"))?;
    assert_eq!(child["runtimeStatus"], "Completed", "{child}");
    assert_eq!(
        child["parentInstanceId"],
        Value::String(ok.clone()),
        "{child}"
    );

    let status = host.wait_for_instance(&failing, DEADLINE).await?;
    let error = &status["output"]["childError"];
    assert_eq!(error["code"], "Application", "{status}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("the child failed on purpose")),
        "{status}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_stops_a_waiting_instance_and_its_children() -> anyhow::Result<()> {
    let host = probe_host().await?;
    let parent = host
        .start_instance("ParentOfWaiter", r#""the-child""#)
        .await?;
    host.wait_for_status("the-child", "the child to wait", |s| {
        s["runtimeStatus"] == "Running"
    })
    .await?;
    let r = host
        .send_with_master_key(
            http::Method::POST,
            &format!("/runtime/webhooks/durabletask/instances/{parent}/terminate?reason=enough"),
            String::new(),
        )
        .await?;
    assert_eq!(r.status, 202, "{}", r.text());
    for id in [parent.as_str(), "the-child"] {
        let status = host.wait_for_instance(id, DEADLINE).await?;
        assert_eq!(status["runtimeStatus"], "Terminated", "{id}: {status}");
    }
    let r = host.raise_event("the-child", "Never", "1").await?;
    assert_eq!(r.status, 410, "{}", r.text());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_instance_keeps_an_event_until_resumed() -> anyhow::Result<()> {
    let host = probe_host().await?;
    let id = host
        .start_instance("CollectEvents", r#"{"name": "Go", "count": 1}"#)
        .await?;
    host.wait_for_status(&id, "the instance to wait", |s| {
        s["runtimeStatus"] == "Running"
    })
    .await?;
    let manage = |action: &str| format!("/runtime/webhooks/durabletask/instances/{id}/{action}");
    let r = host
        .send_with_master_key(http::Method::POST, &manage("suspend"), String::new())
        .await?;
    assert_eq!(r.status, 202, "{}", r.text());
    host.raise_event(&id, "Go", r#""now""#).await?;
    // Still suspended after the event was stored: the instance's status
    // is read after the raise was acknowledged.
    let status = host.instance(&id).await?.unwrap_or_default();
    assert_eq!(status["runtimeStatus"], "Suspended", "{status}");
    let r = host
        .send_with_master_key(http::Method::POST, &manage("resume"), String::new())
        .await?;
    assert_eq!(r.status, 202, "{}", r.text());
    let status = host.wait_for_instance(&id, DEADLINE).await?;
    assert_eq!(status["output"], json!(["now"]), "{status}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_generation_derives_its_own_child_ids_and_guids() -> anyhow::Result<()> {
    let host = probe_host().await?;
    let status = host
        .run_orchestration("Generations", r#"{"generations": 3}"#)
        .await?;
    assert_eq!(status["runtimeStatus"], "Completed", "{status}");
    let strings = |key: &str| -> Vec<String> {
        status["output"][key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    for key in ["guids", "children"] {
        let mut values = strings(key);
        assert_eq!(values.len(), 3, "{key}: {status}");
        values.sort();
        values.dedup();
        assert_eq!(values.len(), 3, "{key} repeat across generations: {status}");
    }
    // Every generation's child exists and has not finished: none was
    // refused for an id an earlier generation's child holds.
    for child in strings("children") {
        let child_status = host.instance(&child).await?;
        let runtime = child_status.as_ref().map(|s| s["runtimeStatus"].clone());
        assert!(
            matches!(
                runtime.as_ref().and_then(Value::as_str),
                Some("Pending" | "Running")
            ),
            "child {child}: {child_status:?}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_run_under_a_reused_id_derives_new_child_ids() -> anyhow::Result<()> {
    let host = probe_host().await?;
    let mut runs = Vec::new();
    for _ in 0..2 {
        let r = host
            .start_orchestration("Generations", Some("reused"), r#"{"generations": 1}"#)
            .await?;
        assert_eq!(r.status, 202, "{}", r.text());
        let status = host.wait_for_instance("reused", DEADLINE).await?;
        assert_eq!(status["runtimeStatus"], "Completed", "{status}");
        runs.push(status["output"].clone());
    }
    assert_ne!(runs[0]["children"], runs[1]["children"], "{runs:?}");
    assert_ne!(runs[0]["guids"], runs[1]["guids"], "{runs:?}");
    // The first run's child still waits; the second run's was created too.
    for run in &runs {
        let child = run["children"][0].as_str().unwrap_or_default();
        assert!(host.instance(child).await?.is_some(), "child {child}");
    }
    Ok(())
}

perdure_tests::also_on_postgres!(
    a_timer_due_while_the_host_was_down_fires_after_start,
    events_are_buffered_and_delivered_in_order,
    retries_back_off_then_succeed_or_end_with_the_typed_error,
    sub_orchestrations_return_or_fail_typed_and_name_their_parent,
    terminate_stops_a_waiting_instance_and_its_children,
    a_suspended_instance_keeps_an_event_until_resumed,
    each_generation_derives_its_own_child_ids_and_guids,
    a_new_run_under_a_reused_id_derives_new_child_ids,
);
