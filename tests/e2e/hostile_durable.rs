//! Hostile durable functions are contained: an orchestrator that never
//! yields is stopped at the deadline and fails; an activity's enormous
//! result fails that call (the orchestrator sees the error) instead of
//! reaching the database; an entity that fails every operation changes
//! nothing. Other functions keep answering throughout.

use std::time::Duration;

use http::Method;
use perdure_tests::DURABLE;

use crate::sandbox::{greet_still_answers, hostile_host};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orchestrator_that_never_yields_fails_at_the_deadline() -> anyhow::Result<()> {
    let host = hostile_host().await?;
    let id = host.start_instance("NeverYields", "null").await?;
    greet_still_answers(&host).await?;
    let done = host.wait_for_instance(&id, Duration::from_secs(30)).await?;
    assert_eq!(done["runtimeStatus"], "Failed", "{done}");
    let output = done["output"].to_string();
    assert!(output.contains("timeout"), "{output}");
    greet_still_answers(&host).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enormous_activity_result_fails_the_call_not_the_host() -> anyhow::Result<()> {
    let host = hostile_host().await?;
    let done = host.run_orchestration("CallsHugeResult", "2").await?;
    assert_eq!(done["runtimeStatus"], "Failed", "{done}");
    let output = done["output"].to_string();
    assert!(output.contains("resource-exhausted"), "{output}");
    assert!(
        output.contains("larger than the limit of 1048576 bytes"),
        "{output}"
    );
    // Under the limit, the same call works.
    let done = host.run_orchestration("CallsHugeResult", "0").await?;
    assert_eq!(done["runtimeStatus"], "Completed", "{done}");
    greet_still_answers(&host).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entity_that_fails_every_operation_changes_nothing() -> anyhow::Result<()> {
    let host = hostile_host().await?;
    let path = format!("{DURABLE}/entities/Grumpy/g1");
    for _ in 0..20 {
        let r = host
            .send_with_master_key(Method::POST, &format!("{path}?op=poke"), "1")
            .await?;
        assert_eq!(r.status, 202, "{}", r.text());
    }
    greet_still_answers(&host).await?;
    // Every signal is processed (its queue drains) and none left state.
    let db = rusqlite::Connection::open_with_flags(
        host.temp_dir().join("perdure.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    perdure_tests::eventually(Duration::from_secs(30), "the signals to drain", || async {
        let queued: i64 = db.query_row(
            "SELECT COUNT(*) FROM entity_ops WHERE name = 'Grumpy'",
            [],
            |r| r.get(0),
        )?;
        Ok((queued == 0).then_some(()))
    })
    .await?;
    let r = host.get_admin(&path).await?;
    assert_eq!(r.status, 404, "{}", r.text());
    greet_still_answers(&host).await
}
