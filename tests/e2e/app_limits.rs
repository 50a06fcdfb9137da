//! An app's `[limits]` in `NAME.toml`: its own time limit, memory cap and
//! concurrency, within the host's; a limit above the host's is refused like
//! a broken module.

use std::sync::Arc;
use std::time::Duration;

use perdure_tests::{TestHost, eventually, guests};

const DEADLINE: Duration = Duration::from_secs(30);

/// The hostile guest under `limits`, on a host allowing 30 s and 64 MiB.
async fn limited_host(limits: &str) -> anyhow::Result<TestHost> {
    let host = TestHost::start_with(&[], |c| {
        c.sandbox.timeout = Duration::from_secs(30);
        c.sandbox.memory_bytes = 64 << 20;
    })
    .await?;
    host.deploy_configured("hostile", guests::HOSTILE, &format!("[limits]\n{limits}\n"))
        .await?;
    Ok(host)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apps_time_and_memory_limits_apply_to_its_invocations() -> anyhow::Result<()> {
    let host = limited_host("timeout_ms = 300\nmemory_mib = 16").await?;

    let r = host.get("/api/hostile/spin").await?;
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(r.error_code().as_deref(), Some("timeout"), "{}", r.text());
    assert!(
        r.error_message().contains("300ms"),
        "the app's limit: {}",
        r.text()
    );

    let r = host.get("/api/hostile/hog").await?;
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(
        r.error_code().as_deref(),
        Some("resource-exhausted"),
        "{}",
        r.text()
    );
    assert!(
        r.error_message().contains("16 MiB"),
        "the app's cap: {}",
        r.text()
    );

    // Without [limits], the same guest runs under the host's own.
    std::fs::write(host.functions_dir().join("hostile.toml"), "")?;
    eventually(DEADLINE, "the host's memory cap to apply", || async {
        let r = host.get("/api/hostile/hog").await?;
        Ok(r.error_message().contains("64 MiB").then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_concurrency_an_app_answers_429_until_a_slot_frees() -> anyhow::Result<()> {
    // The app's own time limit ends a holder whose client went away if the
    // host did not notice; the host's (30 s) is longer than the deadline.
    let host = Arc::new(limited_host("max_concurrency = 1\ntimeout_ms = 10000").await?);
    // Holds the app's one slot until the test drops it (the host stops an
    // invocation whose client went away). It asks again while one of the
    // probes below holds the slot.
    let holder = {
        let host = host.clone();
        tokio::spawn(async move {
            loop {
                let r = host.get("/api/hostile/spin").await?;
                if r.status != 429 {
                    return anyhow::Ok(r);
                }
            }
        })
    };
    let refused = eventually(DEADLINE, "a request past the limit to get 429", || async {
        let r = host.get("/api/hostile/trap").await?;
        Ok((r.status == 429).then_some(r))
    })
    .await?;
    assert_eq!(
        refused.error_code().as_deref(),
        Some("resource-exhausted"),
        "{}",
        refused.text()
    );
    assert!(
        refused.error_message().contains("max_concurrency of 1"),
        "{}",
        refused.text()
    );
    assert_eq!(
        refused
            .headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    holder.abort();
    eventually(DEADLINE, "the slot to be given back", || async {
        let r = host.get("/api/hostile/trap").await?;
        Ok((r.status == 500).then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_above_the_hosts_are_refused_and_the_previous_version_serves() -> anyhow::Result<()>
{
    let host = limited_host("timeout_ms = 1000").await?;
    std::fs::write(
        host.functions_dir().join("hostile.toml"),
        "[limits]\nmemory_mib = 65\n",
    )?;
    let failed = eventually(DEADLINE, "the refused limits to be reported", || async {
        Ok(host.app_status("hostile").await?.filter(|a| {
            a["lastError"]["message"]
                .as_str()
                .is_some_and(|e| e.contains("hostile.toml") && e.contains("memory_mib = 65"))
        }))
    })
    .await?;
    assert!(failed["digest"].is_string(), "still loaded: {failed}");
    // The version that loaded keeps its limits.
    let r = host.get("/api/hostile/spin").await?;
    assert!(r.error_message().contains("1s"), "{}", r.text());
    Ok(())
}
