//! The storage conformance suite (`perdure_storage::conformance`) against
//! every backend: each check on a fresh, empty database.

use std::sync::Arc;

use perdure_postgres::PgStorage;
use perdure_sqlite::SqliteStorage;
use perdure_storage::DurableStorage;
use perdure_storage::conformance::{DURABLE_CHECKS, settings_and_keys};
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
