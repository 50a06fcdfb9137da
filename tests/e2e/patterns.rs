//! The article's monitor and human-interaction patterns, end to end: the
//! `monitor` and `approval` examples against real HTTP, timers and events.

use std::time::Duration;

use perdure_tests::service::TestService;
use perdure_tests::{TestHost, eventually, guests};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(30);

fn checks(status: &Value) -> u64 {
    status["customStatus"]["checks"].as_u64().unwrap_or(0)
}

fn health(status: &Value) -> Option<&str> {
    status["customStatus"]["status"].as_str()
}

/// Deploys `monitor` allowed to reach `origin` (e.g. a test service's).
async fn monitor_host(origin: &str) -> anyhow::Result<TestHost> {
    let host = TestHost::start().await?;
    let config = format!("[outbound]\nallowed_hosts = [\"{origin}\"]\n");
    host.deploy_configured("monitor", guests::MONITOR, &config)
        .await?;
    Ok(host)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_follows_the_service_alerts_and_survives_a_restart() -> anyhow::Result<()> {
    let service = TestService::start().await?;
    let mut host = monitor_host(&service.origin()).await?;
    let input = json!({
        "url": format!("{}/health", service.origin()),
        "intervalSeconds": 0.02,
        "alertUrl": format!("{}/alert", service.origin()),
    });
    let id = host
        .start_instance("MonitorExternalServiceOrchestrator", &input.to_string())
        .await?;
    let up = host
        .wait_for_status(&id, "three checks up", |s| {
            health(s) == Some("up") && checks(s) >= 3
        })
        .await?;
    assert_eq!(service.alerts(), 0, "no alert while up: {up}");

    service.set_healthy(false);
    let down = host
        .wait_for_status(&id, "the monitor to see the service down", |s| {
            health(s) == Some("down")
        })
        .await?;
    eventually(DEADLINE, "two alerts", || async {
        Ok((service.alerts() >= 2).then_some(()))
    })
    .await?;
    service.set_healthy(true);
    let recovered = host
        .wait_for_status(&id, "the monitor to see the service up again", |s| {
            health(s) == Some("up") && checks(s) > checks(&down)
        })
        .await?;

    // Many generations later the journal is still one generation long.
    let history = host
        .engine()
        .history(&perdure_records::InstanceId::parse(&id)?)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no history"))?;
    assert!(checks(&recovered) >= 5, "{recovered}");
    assert!(
        history.journal.len() <= 12,
        "continue-as-new keeps the journal bounded; it has {} entries after {} checks",
        history.journal.len(),
        checks(&recovered)
    );
    assert_ne!(recovered["runtimeStatus"], "Completed");

    let before = checks(&recovered);
    host.restart().await?;
    host.wait_for_status(&id, "checks to go on after a restart", |s| {
        checks(s) > before + 2 && health(s) == Some("up")
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_http_to_a_host_not_allowed_is_denied() -> anyhow::Result<()> {
    let service = TestService::start().await?;
    // Allowed: another port of the same address only.
    let host = monitor_host("http://127.0.0.1:1").await?;
    let input = json!({ "url": format!("{}/health", service.origin()), "intervalSeconds": 60 });
    let id = host
        .start_instance("MonitorExternalServiceOrchestrator", &input.to_string())
        .await?;
    let status = host.wait_for_instance(&id, DEADLINE).await?;
    assert_eq!(status["runtimeStatus"], "Failed", "{status}");
    assert_eq!(status["output"]["code"], "permission-denied", "{status}");
    assert!(
        status["output"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("allowed_hosts")),
        "{status}"
    );
    assert_eq!(service.health_checks(), 0, "nothing was sent");

    // A broken configuration is reported like a broken module.
    std::fs::write(
        host.functions_dir().join("monitor.toml"),
        "[outbound]\nallowed = 1\n",
    )?;
    let failed = eventually(
        DEADLINE,
        "the broken configuration to be reported",
        || async {
            Ok(host.app_status("monitor").await?.filter(|a| {
                a["lastError"]["message"]
                    .as_str()
                    .is_some_and(|e| e.contains("monitor.toml"))
            }))
        },
    )
    .await?;
    assert!(
        failed["digest"].is_string(),
        "the previous version keeps serving: {failed}"
    );
    Ok(())
}

async fn approval_host() -> anyhow::Result<TestHost> {
    TestHost::start_with(&[("approval.wasm", guests::APPROVAL)], |_| {}).await
}

const APPROVAL: &str = "DocumentApprovalOrchestrator";

async fn waiting_for_approval(host: &TestHost, timeout_seconds: f64) -> anyhow::Result<String> {
    let input = json!({ "document": "Q3 report", "timeoutSeconds": timeout_seconds });
    let id = host.start_instance(APPROVAL, &input.to_string()).await?;
    host.wait_for_status(&id, "the approval to wait", |s| {
        s["customStatus"]["waitingFor"] == "ApprovalEvent"
    })
    .await?;
    Ok(id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_is_approved_rejected_or_escalated() -> anyhow::Result<()> {
    let host = approval_host().await?;
    let approved = waiting_for_approval(&host, 60.0).await?;
    let rejected = waiting_for_approval(&host, 60.0).await?;
    let escalated = waiting_for_approval(&host, 0.2).await?;
    let r = host
        .raise_event(&approved, "ApprovalEvent", r#"{"approved": true}"#)
        .await?;
    assert_eq!(r.status, 202, "{}", r.text());
    host.raise_event(&rejected, "ApprovalEvent", r#"{"approved": false}"#)
        .await?;
    for (id, outcome, result) in [
        (&approved, "approved", "Q3 report finalized"),
        (&rejected, "rejected", "Q3 report archived"),
        (&escalated, "escalated", "Q3 report escalated to a manager"),
    ] {
        let status = host.wait_for_instance(id, DEADLINE).await?;
        assert_eq!(status["runtimeStatus"], "Completed", "{status}");
        assert_eq!(status["output"]["outcome"], outcome, "{status}");
        assert_eq!(status["output"]["result"], result, "{status}");
    }
    // Finished: an event is refused as gone; unknown: not found.
    let r = host.raise_event(&approved, "ApprovalEvent", "{}").await?;
    assert_eq!(r.status, 410, "{}", r.text());
    let r = host
        .raise_event("no-such-instance", "ApprovalEvent", "{}")
        .await?;
    assert_eq!(r.status, 404, "{}", r.text());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_raised_before_the_wait_or_after_a_restart_is_delivered() -> anyhow::Result<()> {
    let mut host = approval_host().await?;
    // Raised while the instance is still pending: buffered until its wait.
    let early = host
        .start_instance(APPROVAL, r#"{"document": "early", "timeoutSeconds": 60}"#)
        .await?;
    let r = host
        .raise_event(&early, "ApprovalEvent", r#"{"approved": true}"#)
        .await?;
    assert_eq!(r.status, 202, "{}", r.text());
    let status = host.wait_for_instance(&early, DEADLINE).await?;
    assert_eq!(status["output"]["outcome"], "approved", "{status}");

    // Waiting across a restart (evicted, replayed), then raised.
    let waiting = waiting_for_approval(&host, 60.0).await?;
    host.restart().await?;
    host.raise_event(&waiting, "ApprovalEvent", r#"{"approved": false}"#)
        .await?;
    let status = host.wait_for_instance(&waiting, DEADLINE).await?;
    assert_eq!(status["output"]["outcome"], "rejected", "{status}");
    Ok(())
}

perdure_tests::also_on_postgres!(
    monitor_follows_the_service_alerts_and_survives_a_restart,
    approval_is_approved_rejected_or_escalated,
    an_event_raised_before_the_wait_or_after_a_restart_is_delivered,
);
