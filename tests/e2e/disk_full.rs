//! Disk trouble is an error, not corruption: a database at its size limit
//! (`--max-db-size-mib`, refused as a full disk is, `SQLITE_FULL`) answers
//! new work with 503 and `Retry-After` while the host keeps serving; once
//! purging makes room, the instances it had accepted complete and new work
//! is accepted again; `PRAGMA integrity_check` is clean afterwards.

use std::time::Duration;

use http::Method;
use perdure_tests::{DURABLE, TestHost, guests};

/// Finished instances whose purge makes room later.
const OLD_INSTANCES: usize = 20;
/// At most this many starts to fill the database.
const FILL_ATTEMPTS: usize = 200;

fn padded_input(steps: u32) -> String {
    format!(
        r#"{{"steps": {steps}, "sleepMs": 1, "pad": "{}"}}"#,
        "x".repeat(16 << 10)
    )
}

fn database_bytes(host: &TestHost) -> anyhow::Result<u64> {
    let db = rusqlite::Connection::open_with_flags(
        host.temp_dir().join("perdure.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let pages: i64 = db.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let page_size: i64 = db.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    Ok((pages * page_size).max(0) as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_database_refuses_new_work_with_503_and_resumes_when_there_is_room()
-> anyhow::Result<()> {
    let mut host = TestHost::start_with(
        &[
            ("durable-probe.wasm", guests::DURABLE_PROBE),
            ("greet.wasm", guests::GREET),
        ],
        |_| {},
    )
    .await?;
    let mut last_old = String::new();
    for _ in 0..OLD_INSTANCES {
        let done = host
            .run_orchestration("SleepyChain", &padded_input(1))
            .await?;
        assert_eq!(done["runtimeStatus"], "Completed", "{done}");
        last_old = done["createdTime"].as_str().unwrap_or_default().to_owned();
    }
    // Room for a few more instances, not for many.
    let limit = database_bytes(&host)? + (128 << 10);
    host.config_mut().max_db_bytes = Some(limit);
    host.restart().await?;

    let mut accepted = Vec::new();
    let refusal = loop {
        anyhow::ensure!(
            accepted.len() < FILL_ATTEMPTS,
            "{FILL_ATTEMPTS} starts fitted under a limit of {limit} bytes"
        );
        let r = host
            .start_orchestration("SleepyChain", None, &padded_input(3))
            .await?;
        match r.status {
            202 => accepted.push(r.json()?["id"].as_str().unwrap_or_default().to_owned()),
            _ => break r,
        }
    };
    assert_eq!(refusal.status, 503, "{}", refusal.text());
    assert!(
        refusal.error_message().contains("database is full"),
        "{}",
        refusal.text()
    );
    assert!(refusal.headers.contains_key("retry-after"));

    // Still serving: functions, reads, the admin API.
    let greet = host.get_admin("/api/greet?name=Ada").await?;
    assert_eq!(greet.status, 200, "{}", greet.text());
    if let Some(id) = accepted.first() {
        assert!(host.instance(id).await?.is_some());
    }
    assert_eq!(host.get_admin("/admin/health").await?.status, 200);

    // Room returns: the old finished instances are purged.
    let purged = host
        .send_with_master_key(
            Method::DELETE,
            &format!(
                "{DURABLE}/instances?runtimeStatus=Completed&createdTimeFrom=1970-01-01T00:00:00Z&createdTimeTo={last_old}"
            ),
            "",
        )
        .await?;
    assert_eq!(purged.status, 200, "{}", purged.text());
    let deleted = purged.json()?["instancesDeleted"].as_u64().unwrap_or(0);
    assert!(deleted >= 1, "{}", purged.text());
    for id in &accepted {
        let done = host.wait_for_instance(id, Duration::from_secs(60)).await?;
        assert_eq!(done["runtimeStatus"], "Completed", "{id}: {done}");
        assert_eq!(done["output"], 3, "{id}: {done}");
    }
    let again = host
        .start_orchestration("SleepyChain", None, &padded_input(1))
        .await?;
    assert_eq!(again.status, 202, "{}", again.text());
    println!(
        "limit {limit} bytes: {} starts accepted before the 503; all completed after the purge",
        accepted.len()
    );

    let db = rusqlite::Connection::open_with_flags(
        host.temp_dir().join("perdure.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let integrity: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    assert_eq!(integrity, "ok");
    drop(db);
    host.shutdown().await;
    Ok(())
}
