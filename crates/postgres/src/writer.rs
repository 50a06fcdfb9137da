//! The writer: one task that commits every write of this host, many per
//! transaction (group commit), as the SQLite writer does.
//!
//! Each commit costs an fsync on the server (3.7 ms on the machine this
//! was written on), so committing writes one by one caps a host near 270
//! writes a second on one connection; the writer takes every job queued
//! while the previous commit ran and commits them together.
//!
//! No savepoints: a PostgreSQL transaction is dead after any error, and a
//! savepoint per job would cost two round trips each. A job that fails
//! instead aborts the transaction, is answered with its error alone, and
//! the others run again in a new transaction (jobs are `FnMut` and act
//! through the transaction only, so running again is safe). A deadlock or
//! a serialization failure runs the whole batch again; a lost connection
//! fails the batch with [`StorageError::Unavailable`] (it may or may not
//! have committed; every caller's retry is idempotent).
//!
//! Every transaction is fenced first (`Cluster::fence`): the partitions its
//! jobs may write as owner are fixed before the first job runs.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use deadpool_postgres::{Object, Pool, Transaction};
use perdure_storage::failpoint::{self, Point};
use perdure_storage::{CommitObserver, StorageError};
use tokio::sync::{mpsc, oneshot};

use crate::cluster::Cluster;
use crate::connect::{is_conflict, pg_error, pool_error};

/// A future that borrows the transaction it runs in.
pub type TxFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, tokio_postgres::Error>> + Send + 'a>>;

type JobRun = dyn for<'a> FnMut(&'a Transaction<'a>) -> TxFuture<'a, ()> + Send;

/// A write and whom to tell how it ended.
pub(crate) struct Job {
    run: Box<JobRun>,
    finish: Box<dyn FnOnce(Result<(), StorageError>) + Send>,
}

/// Jobs taken into one transaction at most.
const MAX_BATCH: usize = 1024;

/// Times a batch runs again after losing a race with another transaction
/// (a deadlock or a serialization failure) before its jobs fail.
const MAX_CONFLICT_RERUNS: usize = 8;

impl Job {
    /// A job running `f`, and the receiver of its result once committed.
    pub(crate) fn new<T, F>(mut f: F) -> (Self, oneshot::Receiver<Result<T, StorageError>>)
    where
        T: Send + 'static,
        F: for<'a> FnMut(&'a Transaction<'a>) -> TxFuture<'a, T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let slot: Arc<Mutex<Option<T>>> = Arc::new(Mutex::new(None));
        let result_slot = slot.clone();
        let job = Self {
            run: Box::new(move |tx| {
                let run = f(tx);
                let result_slot = result_slot.clone();
                Box::pin(async move {
                    let value = run.await?;
                    if let Ok(mut slot) = result_slot.lock() {
                        *slot = Some(value);
                    }
                    Ok(())
                })
            }),
            finish: Box::new(move |committed| {
                let result = committed.and_then(|()| {
                    slot.lock()
                        .ok()
                        .and_then(|mut s| s.take())
                        .ok_or_else(|| StorageError::Database("the write did not run".into()))
                });
                let _ = reply.send(result);
            }),
        };
        (job, answer)
    }
}

/// Runs the writer until every sender is gone, then returns once what was
/// queued has committed.
pub(crate) async fn run(
    pool: Pool,
    jobs: mpsc::UnboundedReceiver<Job>,
    commits: Arc<dyn CommitObserver>,
    cluster: Arc<Cluster>,
) {
    crate::cluster::FENCED
        .scope(
            Default::default(),
            run_in_scope(pool, jobs, commits, cluster),
        )
        .await;
}

async fn run_in_scope(
    pool: Pool,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    commits: Arc<dyn CommitObserver>,
    cluster: Arc<Cluster>,
) {
    let mut connection: Option<Object> = None;
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let client = match connection.take() {
            Some(client) if !client.is_closed() => client,
            _ => match pool.get().await {
                Ok(client) => client,
                Err(e) => {
                    let e = pool_error(e);
                    tracing::error!(jobs = batch.len(), "database write failed: {e}");
                    for job in batch {
                        (job.finish)(Err(e.clone()));
                    }
                    continue;
                }
            },
        };
        let mut client = client;
        for (finish, outcome) in run_batch(&mut client, batch, &*commits, &cluster).await {
            finish(outcome);
        }
        connection = Some(client);
    }
}

type Finisher = Box<dyn FnOnce(Result<(), StorageError>) + Send>;

/// Runs a batch in one transaction; returns every job's finisher with the
/// outcome of its write.
async fn run_batch(
    client: &mut Object,
    batch: Vec<Job>,
    commits: &dyn CommitObserver,
    cluster: &Cluster,
) -> Vec<(Finisher, Result<(), StorageError>)> {
    let mut done = Vec::with_capacity(batch.len());
    let mut pending = batch;
    let mut conflicts = 0;
    while !pending.is_empty() {
        let failure = match attempt(client, &mut pending, commits, cluster).await {
            Ok(()) => {
                done.extend(pending.drain(..).map(|job| (job.finish, Ok(()))));
                break;
            }
            Err(failure) => failure,
        };
        match failure {
            Failure::Job(_, e) | Failure::Transaction(e)
                if is_conflict(&e) && conflicts < MAX_CONFLICT_RERUNS =>
            {
                conflicts += 1;
                tracing::debug!(
                    jobs = pending.len(),
                    "write batch conflicted, running it again: {e}"
                );
            }
            Failure::Job(index, e) => {
                let e = pg_error(e);
                if matches!(e, StorageError::Unavailable(_)) {
                    tracing::error!(jobs = pending.len(), "database write failed: {e}");
                    done.extend(pending.drain(..).map(|job| (job.finish, Err(e.clone()))));
                } else {
                    tracing::error!(
                        others = pending.len() - 1,
                        "database write failed (the others run again): {e}"
                    );
                    done.push((pending.remove(index).finish, Err(e)));
                }
            }
            Failure::Transaction(e) => {
                let e = pg_error(e);
                tracing::error!(jobs = pending.len(), "database commit failed: {e}");
                done.extend(pending.drain(..).map(|job| (job.finish, Err(e.clone()))));
            }
        }
    }
    done
}

/// Why a batch's transaction did not commit.
enum Failure {
    /// The job at this index failed (and aborted the transaction).
    Job(usize, tokio_postgres::Error),
    /// Beginning or committing the transaction failed.
    Transaction(tokio_postgres::Error),
}

/// Runs every job of the batch in one transaction and commits it.
async fn attempt(
    client: &mut Object,
    pending: &mut [Job],
    commits: &dyn CommitObserver,
    cluster: &Cluster,
) -> Result<(), Failure> {
    let tx = client.transaction().await.map_err(Failure::Transaction)?;
    cluster.fence(&tx).await.map_err(Failure::Transaction)?;
    for (index, job) in pending.iter_mut().enumerate() {
        (job.run)(&tx).await.map_err(|e| Failure::Job(index, e))?;
    }
    failpoint::hit(Point::BeforeCommit);
    let started = Instant::now();
    tx.commit().await.map_err(Failure::Transaction)?;
    commits.committed(pending.len(), started.elapsed());
    failpoint::hit(Point::AfterCommit);
    Ok(())
}
