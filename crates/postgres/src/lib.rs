//! PostgreSQL storage: the same traits as the embedded SQLite default, on a
//! database server that several hosts can share.
//!
//! Architecture, as on SQLite but with several writers: every write of this
//! host goes to one of [`WRITERS`] writer tasks (by the instance or entity
//! it is for), each committing many per transaction (`writer.rs`); reads run on a
//! pool of connections, each with its own statement cache.
//!
//! Invariants:
//! - Only this crate (among the host's) touches tokio-postgres.
//! - A write is acknowledged only after its transaction committed, with
//!   `synchronous_commit` on (the server's default, which this crate never
//!   lowers for anything that cannot be recreated).
//! - The schema is versioned in `perdure_schema`; a host refuses a
//!   database of a newer version, and hosts that start together migrate
//!   one at a time (an advisory transaction lock).
//! - Several hosts share a database (`cluster.rs`): each holds a share of
//!   the partitions, fences every write transaction by their epochs, and
//!   leaves wake-ups for the owners of the others.

mod cluster;
mod connect;
mod durable;
mod entities;
pub mod lease;
mod observe;
mod tasks;
mod writer;

use std::sync::{Arc, Mutex};

use deadpool_postgres::{Object, Pool, Transaction};
use perdure_storage::placement::partition_of;
use perdure_storage::{CommitObserver, Storage, StorageError, StorageFuture, StoredKey};
use tokio::sync::mpsc;

pub use cluster::{ClusterOptions, default_host_id};
pub use connect::{is_postgres_url, redacted};
pub use writer::TxFuture;

use connect::{pg_error, pool_error};
use writer::Job;

/// Schema migrations, applied in order; `perdure_schema.version` records
/// the last one applied.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_partitions.sql"),
    include_str!("migrations/0003_wakeups.sql"),
    include_str!("migrations/0004_apps.sql"),
];

/// Writer tasks, each with a connection of its own: the writes of one
/// instance or entity go to one of them (by its key), so they commit in
/// order, and the writers' round trips overlap.
const WRITERS: usize = 4;

/// Connections in the pool: the writers', and reads at once. Reads wait
/// for a connection rather than opening more.
const POOL_SIZE: usize = 32;

/// The advisory lock key migrations take, so that hosts starting together
/// migrate one after another ("perdure" in ASCII, plus one).
const MIGRATION_LOCK: i64 = 0x0070_6572_6475_7266;

/// PostgreSQL storage for one database.
pub struct PgStorage {
    url: String,
    pool: Pool,
    /// One sender per writer; empty once closed.
    writers: Mutex<Vec<mpsc::UnboundedSender<Job>>>,
    writer_tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    cluster: Arc<cluster::Cluster>,
}

impl PgStorage {
    /// Connects to the database at `url`, creates or migrates its schema,
    /// and joins its hosts as a new one (see [`ClusterOptions`]). Errs with
    /// what to fix: a bad URL, a server that does not answer, or a
    /// database of a newer schema.
    pub async fn open(url: &str, commits: Arc<dyn CommitObserver>) -> Result<Self, StorageError> {
        Self::open_with(url, commits, ClusterOptions::default()).await
    }

    /// As [`Self::open`], joining the hosts as `options` says.
    pub async fn open_with(
        url: &str,
        commits: Arc<dyn CommitObserver>,
        options: ClusterOptions,
    ) -> Result<Self, StorageError> {
        let config = connect::parse(url)?;
        let pool = connect::pool(config.clone(), POOL_SIZE)?;
        let where_ = redacted(url);
        let mut first = pool
            .get()
            .await
            .map_err(|e| connect_error(&where_, pool_error(e)))?;
        migrate(&mut first).await?;
        drop(first);
        let cluster =
            cluster::Cluster::join(pool.clone(), connect::settled(config), options).await?;
        let mut senders = Vec::with_capacity(WRITERS);
        let mut writer_tasks = Vec::with_capacity(WRITERS);
        for _ in 0..WRITERS {
            let (sender, jobs) = mpsc::unbounded_channel();
            senders.push(sender);
            writer_tasks.push(tokio::spawn(writer::run(
                pool.clone(),
                jobs,
                commits.clone(),
                cluster.clone(),
            )));
        }
        Ok(Self {
            url: where_,
            pool,
            writers: Mutex::new(senders),
            writer_tasks: Mutex::new(writer_tasks),
            cluster,
        })
    }

    /// The database's URL, without its password.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs `f` in the next write batch; resolves once it has committed.
    /// `f` may run more than once (when another job of its batch failed,
    /// or the batch lost a race with another transaction), so it must act
    /// through the transaction only.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: for<'a> FnMut(&'a Transaction<'a>) -> TxFuture<'a, T> + Send + 'static,
    {
        self.write_on(0, f).await
    }

    /// As [`Self::write`], on the writer of instance or entity `key` (see
    /// `placement::instance_key`, `entity_key`): the writes of one
    /// instance or entity commit in the order they were made.
    pub(crate) fn write_for<T, F>(
        &self,
        key: &str,
        f: F,
    ) -> impl std::future::Future<Output = Result<T, StorageError>> + Send + use<'_, T, F>
    where
        T: Send + 'static,
        F: for<'a> FnMut(&'a Transaction<'a>) -> TxFuture<'a, T> + Send + 'static,
    {
        let lane = partition_of(key, WRITERS as u32) as usize;
        self.write_on(lane, f)
    }

    async fn write_on<T, F>(&self, lane: usize, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: for<'a> FnMut(&'a Transaction<'a>) -> TxFuture<'a, T> + Send + 'static,
    {
        let (job, answer) = Job::new(f);
        let sender = match self.writers.lock() {
            Ok(guard) => guard.get(lane).cloned(),
            Err(poisoned) => poisoned.into_inner().get(lane).cloned(),
        };
        sender
            .ok_or(StorageError::Closed)?
            .send(job)
            .map_err(|_| StorageError::Closed)?;
        answer.await.map_err(|_| StorageError::Closed)?
    }

    /// Runs `f` on a pooled connection.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        T: Send,
        F: for<'a> FnOnce(&'a deadpool_postgres::Client) -> TxFuture<'a, T> + Send,
    {
        let client = self.pool.get().await.map_err(pool_error)?;
        f(&client).await.map_err(pg_error)
    }

    /// Stops the writer after it has committed everything queued, then
    /// hands this host's partitions over.
    pub async fn close(&self) {
        if let Ok(mut writers) = self.writers.lock() {
            writers.clear();
        }
        let tasks: Vec<_> = self
            .writer_tasks
            .lock()
            .map(|mut t| t.drain(..).collect())
            .unwrap_or_default();
        for task in tasks {
            let _ = task.await;
        }
        // After the last write: the next owner of each partition starts
        // from everything this host committed.
        self.cluster.leave().await;
        self.pool.close();
    }
}

/// Tells the other hosts (at commit) that keys or apps changed.
async fn notify_shared(tx: &Transaction<'_>) -> Result<(), tokio_postgres::Error> {
    let notify = tx.prepare_cached("SELECT pg_notify($1, '')").await?;
    tx.execute(&notify, &[&cluster::SHARED_CHANNEL]).await?;
    Ok(())
}

/// A failure to connect, saying where and what to check.
fn connect_error(url: &str, e: StorageError) -> StorageError {
    match e {
        StorageError::Unavailable(why) => StorageError::Unavailable(format!(
            "cannot connect to {url}: {why}; check that the server runs, and the URL's host and port"
        )),
        StorageError::Database(why) => StorageError::Database(format!(
            "cannot use {url}: {why}; check the URL's user, password and database name (create the database first, e.g. createdb)"
        )),
        other => other,
    }
}

/// Applies the migrations this database lacks, one transaction each, under
/// [`MIGRATION_LOCK`].
async fn migrate(client: &mut Object) -> Result<(), StorageError> {
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_error)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS perdure_schema (version BIGINT NOT NULL)")
        .await
        .map_err(pg_error)?;
    let found: Option<i64> = tx
        .query_opt("SELECT version FROM perdure_schema", &[])
        .await
        .map_err(pg_error)?
        .map(|row| row.get(0));
    let version = found.unwrap_or(0);
    let supported = MIGRATIONS.len() as i64;
    if version > supported {
        return Err(StorageError::TooNew {
            found: version,
            supported,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.batch_execute(sql).await.map_err(pg_error)?;
        tracing::info!(version = index + 1, "migrated the PostgreSQL schema");
    }
    if found.is_none() {
        tx.execute(
            "INSERT INTO perdure_schema (version) VALUES ($1)",
            &[&supported],
        )
        .await
        .map_err(pg_error)?;
    } else {
        tx.execute("UPDATE perdure_schema SET version = $1", &[&supported])
            .await
            .map_err(pg_error)?;
    }
    tx.commit().await.map_err(pg_error)
}

impl Storage for PgStorage {
    fn setting(&self, key: &str) -> StorageFuture<'_, Option<String>> {
        let key = key.to_owned();
        Box::pin(self.read(move |client| {
            Box::pin(async move {
                let statement = client
                    .prepare_cached("SELECT value FROM settings WHERE key = $1")
                    .await?;
                client
                    .query_opt(&statement, &[&key])
                    .await?
                    .map(|row| row.try_get(0))
                    .transpose()
            })
        }))
    }

    fn init_setting(&self, key: &str, value: &str) -> StorageFuture<'_, String> {
        let key = key.to_owned();
        let value = value.to_owned();
        Box::pin(self.write(move |tx| {
            let (key, value) = (key.clone(), value.clone());
            Box::pin(async move {
                let insert = tx
                    .prepare_cached(
                        "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                    )
                    .await?;
                tx.execute(&insert, &[&key, &value]).await?;
                let select = tx
                    .prepare_cached("SELECT value FROM settings WHERE key = $1")
                    .await?;
                tx.query_one(&select, &[&key]).await?.try_get(0)
            })
        }))
    }

    fn insert_key(&self, key: StoredKey) -> StorageFuture<'_, ()> {
        Box::pin(self.write(move |tx| {
            let key = key.clone();
            Box::pin(async move {
                let insert = tx
                    .prepare_cached(
                        "INSERT INTO function_keys (id, name, function, hash, created_ms) VALUES ($1, $2, $3, $4, $5)",
                    )
                    .await?;
                tx.execute(
                    &insert,
                    &[&key.id, &key.name, &key.function, &&key.hash[..], &key.created_ms],
                )
                .await?;
                notify_shared(tx).await
            })
        }))
    }

    fn keys(&self) -> StorageFuture<'_, Vec<StoredKey>> {
        Box::pin(self.read(|client| {
            Box::pin(async move {
                let rows = client
                    .query(
                        "SELECT id, name, function, hash, created_ms FROM function_keys ORDER BY created_ms, id",
                        &[],
                    )
                    .await?;
                rows.iter()
                    .map(|row| {
                        let hash: Vec<u8> = row.try_get(3)?;
                        Ok(StoredKey {
                            id: row.try_get(0)?,
                            name: row.try_get(1)?,
                            function: row.try_get(2)?,
                            hash: hash.try_into().unwrap_or([0; 32]),
                            created_ms: row.try_get(4)?,
                        })
                    })
                    .collect()
            })
        }))
    }

    fn delete_key(&self, id: &str) -> StorageFuture<'_, bool> {
        let id = id.to_owned();
        Box::pin(self.write(move |tx| {
            let id = id.clone();
            Box::pin(async move {
                let delete = tx
                    .prepare_cached("DELETE FROM function_keys WHERE id = $1")
                    .await?;
                let deleted = tx.execute(&delete, &[&id]).await? > 0;
                if deleted {
                    notify_shared(tx).await?;
                }
                Ok(deleted)
            })
        }))
    }
}
