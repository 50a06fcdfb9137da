//! A PostgreSQL server that crashes and comes back under a running host:
//! while it is down the host answers new work with 503 and `Retry-After`,
//! it reconnects by itself, and nothing it acknowledged is lost.

use std::time::Duration;

use perdure::Database;
use perdure_tests::postgres::PgServer;
use perdure_tests::{TestHost, eventually, guests};

const INSTANCES: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_crash_is_an_outage_not_a_loss() -> anyhow::Result<()> {
    // A server of its own: this test crashes it.
    let Some(server) = PgServer::start_new().await? else {
        return Ok(());
    };
    let db = server.create_database().await?;
    let url = db.url().to_owned();
    let host = TestHost::start_with(&[("durable-probe.wasm", guests::DURABLE_PROBE)], |c| {
        c.db = Database::Postgres(url);
    })
    .await?;
    // About a second of work each, so the crash lands in the middle of it.
    let input = r#"{"steps": 4, "sleepMs": 250}"#;
    let mut ids = Vec::with_capacity(INSTANCES);
    for _ in 0..INSTANCES {
        ids.push(host.start_instance("SleepyChain", input).await?);
    }

    server.stop_immediate().await?;
    let refused = eventually(Duration::from_secs(30), "new work refused", || async {
        let r = host.start_orchestration("SleepyChain", None, input).await?;
        Ok((r.status != 202).then_some(r))
    })
    .await?;
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(
        refused.headers.contains_key(http::header::RETRY_AFTER),
        "{:?}",
        refused.headers
    );
    assert!(
        refused.error_message().contains("unreachable"),
        "says why: {}",
        refused.text()
    );

    server.start().await?;
    for id in &ids {
        let status = host
            .wait_for_status(id, "completed after the outage", |s| {
                s["runtimeStatus"] == "Completed"
            })
            .await?;
        assert_eq!(status["output"], 4, "{id}: {status}");
    }
    let r = host.start_orchestration("SleepyChain", None, input).await?;
    assert_eq!(r.status, 202, "new work is taken again: {}", r.text());
    Ok(())
}
