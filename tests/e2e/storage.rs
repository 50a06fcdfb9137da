//! The storage conformance suite (`perdure_storage::conformance`) against
//! every backend: each check on a fresh, empty database; and what only
//! one backend does.

use std::sync::Arc;

use anyhow::Context as _;
use perdure_postgres::PgStorage;
use perdure_records::{
    Episode, InstanceId, InstanceRecord, JournalEntry, NewWorkItem, RuntimeStatus,
};
use perdure_sqlite::SqliteStorage;
use perdure_storage::conformance::{DURABLE_CHECKS, episode, settings_and_keys};
use perdure_storage::{CreateOutcome, DurableStorage, EventOutcome};
use perdure_tests::postgres::PgServer;

/// Runs every check, each on a database `open` makes; fails naming every
/// check that failed.
async fn run_all<F, Fut>(backend: &str, mut open: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Arc<dyn DurableStorage>>>,
{
    let mut failed = Vec::new();
    for check in DURABLE_CHECKS {
        let storage = open().await?;
        if let Err(e) = (check.run)(storage).await {
            failed.push(format!("{}: {e:#}", check.name));
        }
    }
    anyhow::ensure!(
        failed.is_empty(),
        "{backend} fails {} of {} checks:\n{}",
        failed.len(),
        DURABLE_CHECKS.len(),
        failed.join("\n")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_conforms() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut n = 0;
    run_all("SQLite", || {
        n += 1;
        let path = dir.path().join(format!("{n}.db"));
        async move {
            let storage: Arc<dyn DurableStorage> = Arc::new(SqliteStorage::open(&path)?);
            Ok(storage)
        }
    })
    .await?;
    settings_and_keys(Arc::new(SqliteStorage::open(&dir.path().join("keys.db"))?)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_conforms() -> anyhow::Result<()> {
    let Some(server) = PgServer::shared().await? else {
        return Ok(());
    };
    // Each check's database lives until the end (dropping one drops it).
    let databases = std::sync::Mutex::new(Vec::new());
    run_all("PostgreSQL", || async {
        let db = server.create_database().await?;
        let storage: Arc<dyn DurableStorage> =
            Arc::new(PgStorage::open(db.url(), Arc::new(())).await?);
        databases
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .push(db);
        Ok(storage)
    })
    .await?;
    let db = server.create_database().await?;
    settings_and_keys(Arc::new(PgStorage::open(db.url(), Arc::new(())).await?)).await
}

/// PostgreSQL commits a batch of writes in one transaction: a statement
/// that fails (a journal entry whose seq is taken, a unique violation)
/// fails its own write with its own error, and the other writes of its
/// batch commit all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_fails_a_failing_write_alone_with_its_own_error() -> anyhow::Result<()> {
    let Some(server) = PgServer::shared().await? else {
        return Ok(());
    };
    let db = server.create_database().await?;
    let storage = PgStorage::open(db.url(), Arc::new(())).await?;
    storage
        .put_component("d".into(), Arc::from(&b"wasm"[..]))
        .await?;
    let f = InstanceId::parse("f")?;
    let created = storage
        .create_instance(
            InstanceRecord {
                id: f.clone(),
                name: "O".into(),
                app: "a".into(),
                digest: "d".into(),
                status: RuntimeStatus::Running,
                input: "null".into(),
                output: None,
                custom_status: None,
                parent_id: None,
                created_ms: 1,
                updated_ms: 1,
                started_ms: 1,
                generation: 0,
            },
            None,
        )
        .await?;
    anyhow::ensure!(
        created == CreateOutcome::Created { generation: 0 },
        "{created:?}"
    );
    let entry = JournalEntry {
        seq: 0,
        kind: "k".into(),
        request: "{}".into(),
        result: None,
        at_ms: 1,
    };
    // The second entry repeats the first's seq: the write's second
    // statement fails, and the third only because the first failure
    // aborted the transaction.
    let bad = Episode {
        instance_id: f.clone(),
        entries: vec![
            entry.clone(),
            entry.clone(),
            JournalEntry { seq: 1, ..entry },
        ],
        work: vec![NewWorkItem {
            task_id: 0,
            name: "Act".into(),
            input: "0".into(),
            retry: None,
        }],
        ..episode(&f)
    };
    let (failed, event) = tokio::join!(
        storage.commit_episode(bad),
        storage.raise_event(&f, "e".into(), "1".into())
    );
    let error = match failed {
        Ok(effects) => anyhow::bail!("a duplicate journal entry is committed: {effects:?}"),
        Err(e) => e.to_string(),
    };
    anyhow::ensure!(
        error.contains("23505"),
        "the failing write gets its own error (a unique violation): {error}"
    );
    let event = event?;
    anyhow::ensure!(
        matches!(event, EventOutcome::Delivered(_)),
        "the other write commits: {event:?}"
    );
    let history = storage.history(&f).await?.context("its history")?;
    anyhow::ensure!(
        history.journal.is_empty() && history.inbox.len() == 1,
        "nothing of the failed write, all of the other: {history:?}"
    );
    let backlog = storage.backlog().await?;
    anyhow::ensure!(
        backlog.work_items == 0,
        "the failed write's work item is not kept: {backlog:?}"
    );
    storage.close().await;
    Ok(())
}
