//! The embedded SQLite default: one writer thread that batches transactions
//! (group commit), and reader connections used from the blocking pool.
//!
//! Invariants: only this crate (among the host's) touches rusqlite; every
//! blocking database call runs on the writer thread or a blocking-pool
//! thread, never on tokio's async threads; a write is acknowledged only
//! after its transaction committed.
//!
//! Durability: WAL with `synchronous=FULL`, so an acknowledged write is on
//! disk. Group commit, not weaker syncing, is what keeps it fast: the writer
//! takes every job queued while the previous commit was syncing and commits
//! them together, each in its own savepoint so one failing job does not
//! fail the others.
//!
//! Checkpoints stay SQLite's automatic ones, run by the writer after the
//! commit that grew the WAL past [`WAL_CHECKPOINT_PAGES`]. A passive
//! checkpoint on a thread of its own was measured slower (the durable
//! bench's hello chains: 7,100-7,800 activities/s against 8,800-9,400): it
//! competed with the writer for the disk and the WAL grew longer between
//! resets.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::oneshot;

use perdure_storage::failpoint::{self, Point};
use perdure_storage::{CommitObserver, Storage, StorageError, StorageFuture, StoredKey};

mod durable;
mod entities;
mod observe;
mod tasks;

/// A rusqlite error as the storage traits name it.
fn db_error(e: rusqlite::Error) -> StorageError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DiskFull) => StorageError::Full(e.to_string()),
        Some(rusqlite::ErrorCode::ReadOnly) => StorageError::ReadOnly(e.to_string()),
        Some(rusqlite::ErrorCode::SystemIoFailure) => StorageError::Io(e.to_string()),
        _ => StorageError::Database(e.to_string()),
    }
}

/// Schema migrations, applied in order; `PRAGMA user_version` records the
/// last one applied.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_durable.sql"),
    include_str!("migrations/0003_timers_events_children.sql"),
    include_str!("migrations/0004_entities.sql"),
    include_str!("migrations/0005_generations.sql"),
    include_str!("migrations/0006_guest_logs.sql"),
    include_str!("migrations/0007_traces.sql"),
];

/// Page cache of each reader connection, in KiB (as a negative
/// `cache_size`); SQLite's default is 2,000 KiB per connection, which for
/// [`MAX_READERS`] connections is most of a small host's memory.
const READER_CACHE_KIB: i64 = -512;

/// WAL pages after which the writer checkpoints (SQLite's default is
/// 1,000). The same hot pages (instances, work items, their indexes) are
/// written by nearly every commit, so a longer WAL copies each of them
/// back to the database fewer times: with 1,000 the checkpoints took a
/// sixth of the writer's CPU time, and the durable bench's hello chains
/// ran 8,600-9,100 activities/s (median of 7 bursts, three alternating
/// runs) against 10,000-10,100 with 4,000 and 10,600 with 8,000. 16,000
/// was no faster. The WAL file grows to about 32 MiB at 4 KiB pages.
const WAL_CHECKPOINT_PAGES: i64 = 8_000;

/// Jobs taken into one transaction at most.
const MAX_BATCH: usize = 1024;

/// Reads that run at once, and so reader connections (each with its own
/// page cache) and blocking threads held for reads. Without a bound, a
/// burst of reads grows both by hundreds.
const MAX_READERS: usize = 32;

/// The body of a write; it may run more than once (see [`run_batch`]).
type JobRun = dyn FnMut(&Connection) -> Result<(), StorageError> + Send;

/// A write: `run` executes inside its own savepoint and says whether it
/// succeeded (to keep or roll back the savepoint) or why not; `finish` is
/// called with the outcome of the batch's commit.
struct Job {
    run: Box<JobRun>,
    finish: Box<dyn FnOnce(Result<(), StorageError>) + Send>,
}

/// SQLite storage for one database file.
///
/// Invariant: one `SqliteStorage` at a time owns a database file, across
/// processes: it holds an exclusive lock on `<db>.lock` from `open` to
/// `close` (the OS releases it if the process dies).
pub struct SqliteStorage {
    path: PathBuf,
    owner: Mutex<Option<std::fs::File>>,
    writer: Mutex<Option<mpsc::Sender<Job>>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    read_slots: Arc<tokio::sync::Semaphore>,
    writer_thread: Mutex<Option<thread::JoinHandle<()>>>,
}

/// Prepared statements each connection keeps. The writer alone runs more
/// than rusqlite's default of 16 distinct statements, and a statement
/// evicted from the cache is parsed again on its next use. (Raising it
/// alone did not move the durable bench; the re-parsing it showed was
/// QPSG's, below.)
const STATEMENT_CACHE: usize = 256;

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // A fixed plan per statement. Otherwise SQLite marks statements whose
    // plan might depend on a bound value (e.g. against the partial
    // indexes) to be prepared again after their bindings are cleared,
    // which the statement cache does on every return: every cached read
    // of an instance's history was parsed again (measured: 8% of the CPU
    // time of the durable bench's hello chains). Every query here is a
    // lookup by key whose best plan does not depend on the value.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(())
}

/// Takes the exclusive lock on `<db>.lock`, or says who has it. Only
/// this advisory lock is used: SQLite's own locks are per transaction and
/// would let two hosts take turns writing the same instances.
fn lock_owner(db: &Path) -> Result<std::fs::File, StorageError> {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    let lock = PathBuf::from(name);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .map_err(|e| StorageError::Database(format!("cannot open {}: {e}", lock.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StorageError::InUse {
            db: db.display().to_string(),
            lock: lock.display().to_string(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(StorageError::Database(format!(
            "cannot lock {}: {e}",
            lock.display()
        ))),
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StorageError> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(db_error)?;
    let supported = MIGRATIONS.len() as i64;
    if version > supported {
        return Err(StorageError::TooNew {
            found: version,
            supported,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction().map_err(db_error)?;
        tx.execute_batch(sql).map_err(db_error)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)
            .map_err(db_error)?;
        tx.commit().map_err(db_error)?;
    }
    Ok(())
}

impl SqliteStorage {
    /// Opens (creating and migrating if needed) the database. Blocking.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        Self::open_with(path, None, Arc::new(()))
    }

    /// As [`Self::open`], with writes that would grow the database past
    /// `max_bytes` refused as [`StorageError::Full`] (as a full disk is),
    /// and the writer's batch sizes and commit times recorded in
    /// `commits`.
    pub fn open_with(
        path: &Path,
        max_bytes: Option<u64>,
        commits: Arc<dyn CommitObserver>,
    ) -> Result<Self, StorageError> {
        let owner = lock_owner(path)?;
        let mut conn = Connection::open(path).map_err(db_error)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(db_error)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StorageError::Database(format!(
                "cannot enable WAL on {} (journal mode is {mode})",
                path.display()
            )));
        }
        configure(&conn).map_err(db_error)?;
        // Only the writer writes, so only its connection checkpoints.
        conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)
            .map_err(db_error)?;
        migrate(&mut conn)?;
        if let Some(max_bytes) = max_bytes {
            let page_size: i64 = conn
                .pragma_query_value(None, "page_size", |r| r.get(0))
                .map_err(db_error)?;
            let pages = (max_bytes / page_size.max(512) as u64).max(1);
            // Set after the migrations, so a limit below the schema's size
            // refuses new work rather than the start.
            conn.pragma_update(None, "max_page_count", pages as i64)
                .map_err(db_error)?;
        }
        let (tx, rx) = mpsc::channel::<Job>();
        let handle = thread::Builder::new()
            .name("perdure-db-writer".into())
            .spawn(move || write_loop(conn, rx, &*commits))
            .map_err(|e| StorageError::Database(format!("cannot start the writer thread: {e}")))?;
        Ok(Self {
            path: path.to_path_buf(),
            owner: Mutex::new(Some(owner)),
            writer: Mutex::new(Some(tx)),
            readers: Arc::new(Mutex::new(Vec::new())),
            read_slots: Arc::new(tokio::sync::Semaphore::new(MAX_READERS)),
            writer_thread: Mutex::new(Some(handle)),
        })
    }

    /// Runs `f` in the next write batch; resolves once it has committed.
    /// `f` may run more than once (when another job of its batch made
    /// SQLite roll the transaction back, the batch runs again without it),
    /// so it must act through the connection only.
    pub async fn write<T, F>(&self, mut f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let slot = Arc::new(Mutex::new(None));
        let result_slot = slot.clone();
        let job = Job {
            run: Box::new(move |conn| {
                let result = f(conn).map_err(db_error);
                let outcome = result.as_ref().map(|_| ()).map_err(Clone::clone);
                if let Ok(mut slot) = result_slot.lock() {
                    *slot = Some(result);
                }
                outcome
            }),
            finish: Box::new(move |committed| {
                let result = slot
                    .lock()
                    .ok()
                    .and_then(|mut s| s.take())
                    .unwrap_or_else(|| Err(StorageError::Database("the write did not run".into())));
                let _ = reply.send(committed.and(result));
            }),
        };
        let sender = match self.writer.lock() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        sender
            .ok_or(StorageError::Closed)?
            .send(job)
            .map_err(|_| StorageError::Closed)?;
        answer.await.map_err(|_| StorageError::Closed)?
    }

    /// Runs `f` on a reader connection on the blocking pool.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        let path = self.path.clone();
        let _slot = self
            .read_slots
            .acquire()
            .await
            .map_err(|_| StorageError::Closed)?;
        tokio::task::spawn_blocking(move || {
            let pooled = readers.lock().ok().and_then(|mut pool| pool.pop());
            let conn = match pooled {
                Some(conn) => conn,
                None => {
                    let conn = Connection::open_with_flags(
                        &path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )
                    .map_err(db_error)?;
                    configure(&conn).map_err(db_error)?;
                    // Readers are many and their reads small (one
                    // instance's rows); the OS page cache holds the file.
                    conn.pragma_update(None, "cache_size", READER_CACHE_KIB)
                        .map_err(db_error)?;
                    conn
                }
            };
            let result = f(&conn).map_err(db_error);
            if let Ok(mut pool) = readers.lock() {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StorageError::Database(format!("reader task failed: {e}")))?
    }

    /// Stops the writer after it has committed everything queued. Blocking.
    pub fn close(&self) {
        if let Ok(mut writer) = self.writer.lock() {
            writer.take();
        }
        let handle = self.writer_thread.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            let _ = handle.join();
        }
        // Everything is committed: another host may take the database.
        if let Ok(mut owner) = self.owner.lock() {
            owner.take();
        }
    }
}

impl Drop for SqliteStorage {
    fn drop(&mut self) {
        self.close();
    }
}

fn write_loop(mut conn: Connection, jobs: mpsc::Receiver<Job>, commits: &dyn CommitObserver) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        for (finish, outcome) in run_batch(&mut conn, batch, commits) {
            finish(outcome);
        }
    }
}

type Finisher = Box<dyn FnOnce(Result<(), StorageError>) + Send>;

/// Times a batch runs again without the job that made SQLite roll its
/// transaction back, before the rest fail too.
const MAX_BATCH_RERUNS: usize = 3;

/// Runs a batch in one transaction; returns every job's finisher with the
/// outcome of its write.
///
/// A job that fails is rolled back alone (its savepoint). If SQLite rolls
/// the whole transaction back instead, as it may on `SQLITE_FULL`, I/O
/// errors or lack of memory, that job fails and the others run again in a
/// new transaction: on a full disk, a purge queued behind a failed insert
/// still frees its space.
fn run_batch(
    conn: &mut Connection,
    batch: Vec<Job>,
    commits: &dyn CommitObserver,
) -> Vec<(Finisher, Result<(), StorageError>)> {
    let mut done = Vec::with_capacity(batch.len());
    let mut pending = batch;
    let mut reruns = 0;
    while !pending.is_empty() {
        // Which job failed the batch (none: the transaction itself), and why.
        let (failed_job, e) = match conn.transaction() {
            Err(e) => (None, db_error(e)),
            Ok(tx) => {
                let failure = pending
                    .iter_mut()
                    .enumerate()
                    .find_map(|(i, job)| run_in_savepoint(&tx, &mut job.run).err().map(|e| (i, e)));
                let Some((index, e)) = failure else {
                    failpoint::hit(Point::BeforeCommit);
                    let started = std::time::Instant::now();
                    let committed = tx.commit().map_err(db_error);
                    commits.committed(pending.len(), started.elapsed());
                    failpoint::hit(Point::AfterCommit);
                    if let Err(e) = &committed {
                        tracing::error!(jobs = pending.len(), "database commit failed: {e}");
                    }
                    done.extend(pending.drain(..).map(|job| (job.finish, committed.clone())));
                    break;
                };
                (Some(index), e)
            }
        };
        match failed_job {
            Some(index) if reruns < MAX_BATCH_RERUNS => {
                tracing::error!(
                    others = pending.len() - 1,
                    "database write failed (the others run again): {e}"
                );
                reruns += 1;
                done.push((pending.remove(index).finish, Err(e)));
            }
            _ => {
                tracing::error!(jobs = pending.len(), "database write failed: {e}");
                done.extend(pending.drain(..).map(|job| (job.finish, Err(e.clone()))));
            }
        }
    }
    done
}

/// Runs one job in its own savepoint: a job that fails is rolled back
/// alone. Errs if the job could not be isolated: SQLite rolled the whole
/// transaction back (the job's own error), or a savepoint failed.
fn run_in_savepoint(conn: &Connection, run: &mut JobRun) -> Result<(), StorageError> {
    // Cached statements: the writer runs these for every job.
    let exec = |sql| {
        conn.prepare_cached(sql)
            .and_then(|mut statement| statement.execute([]))
            .map_err(db_error)
    };
    exec("SAVEPOINT job")?;
    if let Err(e) = run(conn) {
        if conn.is_autocommit() {
            return Err(e);
        }
        exec("ROLLBACK TO job")?;
    }
    exec("RELEASE job")?;
    Ok(())
}

impl Storage for SqliteStorage {
    fn setting(&self, key: &str) -> StorageFuture<'_, Option<String>> {
        let key = key.to_owned();
        Box::pin(self.read(move |conn| {
            conn.query_row("SELECT value FROM settings WHERE key = ?1", [&key], |r| {
                r.get(0)
            })
            .optional()
        }))
    }

    fn init_setting(&self, key: &str, value: &str) -> StorageFuture<'_, String> {
        let key = key.to_owned();
        let value = value.to_owned();
        Box::pin(self.write(move |conn| {
            conn.execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
                params![key, value],
            )?;
            conn.query_row("SELECT value FROM settings WHERE key = ?1", [&key], |r| {
                r.get(0)
            })
        }))
    }

    fn insert_key(&self, key: StoredKey) -> StorageFuture<'_, ()> {
        Box::pin(self.write(move |conn| {
            conn.execute(
                "INSERT INTO function_keys (id, name, function, hash, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![key.id, key.name, key.function, &key.hash[..], key.created_ms],
            )
            .map(|_| ())
        }))
    }

    fn keys(&self) -> StorageFuture<'_, Vec<StoredKey>> {
        Box::pin(self.read(|conn| {
            let mut stmt = conn.prepare(
                "SELECT id, name, function, hash, created_ms FROM function_keys ORDER BY created_ms, id",
            )?;
            let rows = stmt.query_map([], |r| {
                let hash: Vec<u8> = r.get(3)?;
                Ok(StoredKey {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    function: r.get(2)?,
                    hash: hash.try_into().unwrap_or([0; 32]),
                    created_ms: r.get(4)?,
                })
            })?;
            rows.collect()
        }))
    }

    fn delete_key(&self, id: &str) -> StorageFuture<'_, bool> {
        let id = id.to_owned();
        Box::pin(self.write(move |conn| {
            conn.execute("DELETE FROM function_keys WHERE id = ?1", [&id])
                .map(|n| n > 0)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> anyhow::Result<(tempfile::TempDir, SqliteStorage)> {
        let dir = tempfile::tempdir()?;
        let storage = SqliteStorage::open(&dir.path().join("t.db"))?;
        Ok((dir, storage))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_write_does_not_fail_its_batch() -> anyhow::Result<()> {
        let (_dir, storage) = open()?;
        let storage = Arc::new(storage);
        let mut writes = Vec::new();
        for i in 0..200 {
            let storage = storage.clone();
            writes.push(tokio::spawn(async move {
                let value = i.to_string();
                storage
                    .write(move |conn| {
                        if i % 10 == 0 {
                            // Fails after writing: its savepoint must roll back.
                            conn.execute("INSERT INTO settings VALUES (?1, ?1)", [&value])?;
                            conn.execute("INSERT INTO no_such_table VALUES (1)", [])?;
                        }
                        conn.execute("INSERT INTO settings VALUES (?1, ?1)", [&value])
                    })
                    .await
            }));
        }
        for (i, write) in writes.into_iter().enumerate() {
            let outcome = write.await?;
            assert_eq!(outcome.is_err(), i % 10 == 0, "write {i}: {outcome:?}");
        }
        let rows: i64 = storage
            .read(|conn| conn.query_row("SELECT count(*) FROM settings", [], |r| r.get(0)))
            .await?;
        assert_eq!(rows, 180, "exactly the successful writes are stored");
        Ok(())
    }

    #[tokio::test]
    async fn settings_survive_a_reopen_and_migrations_run_once() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("t.db");
        {
            let storage = SqliteStorage::open(&path)?;
            assert_eq!(storage.init_setting("k", "first").await?, "first");
            assert_eq!(storage.init_setting("k", "second").await?, "first");
            storage.close();
        }
        let storage = SqliteStorage::open(&path)?;
        assert_eq!(storage.setting("k").await?.as_deref(), Some("first"));
        Ok(())
    }

    #[test]
    fn a_database_has_one_owner_until_it_is_closed() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("t.db");
        let first = SqliteStorage::open(&path)?;
        let second = SqliteStorage::open(&path);
        assert!(
            matches!(&second, Err(StorageError::InUse { .. })),
            "{:?}",
            second.err()
        );
        first.close();
        SqliteStorage::open(&path)?;
        Ok(())
    }

    #[test]
    fn a_newer_schema_is_refused() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("t.db");
        Connection::open(&path)?.pragma_update(None, "user_version", 99)?;
        assert!(matches!(
            SqliteStorage::open(&path),
            Err(StorageError::TooNew { found: 99, .. })
        ));
        Ok(())
    }
}
