//! PostgreSQL implementation of [`DurableStorage`]: instances, journals,
//! inboxes, work items and component versions.
//!
//! Invariants: an episode (journal entries, work items, status) commits in
//! one job; a task completion inserts its inbox message and deletes its
//! work item in one job, and is ignored if the item is gone (a duplicate
//! run), so each task is answered once. Every inbox row is inserted by a
//! write job, and the writer commits one transaction at a time, so inbox
//! arrivals grow in commit order.
//!
//! Round trips: statements that do not depend on each other's results are
//! pipelined (sent together, run by the server in the order sent), so a
//! job costs a round trip per dependent step, not per statement.
//! `columns` reads stored values and pipelines statements; `work` inserts
//! and leases work items.

mod columns;
mod work;

use std::sync::Arc;

use deadpool_postgres::GenericClient;
use perdure_records::{
    Effects, EntityBatch, EntityCommit, EntityId, EntityPage, EntityRecord, Episode, GuestError,
    History, InboxBody, InboxMessage, InstanceFilter, InstanceId, InstancePage, InstanceRecord,
    JournalEntry, LogLine, NewEntityOp, RuntimeStatus, StoredLogLine, TaskAttempt, TaskOutcome,
    WorkItem, now_ms,
};
use perdure_storage::{
    Backlog, ChangeOutcome, CreateOutcome, DurableStorage, EventOutcome, StorageFuture, TraceOrigin,
};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Error, Row};

pub(crate) use columns::{Id, Param, U32, limit, pipeline};
pub(crate) use work::claim_one;

use crate::{PgStorage, entities, observe, tasks};
use columns::{Status, inbox_from_row};
use perdure_storage::placement::{Placement, entity_key, instance_key};
use work::{claim_expired, insert_work};

/// The columns [`instance_from_row`] reads, as a literal for `concat!`.
macro_rules! instance_columns {
    () => {
        "id, name, app, digest, status, input, output, custom_status, parent_id, created_ms, updated_ms, COALESCE(started_ms, created_ms), generation"
    };
}

fn instance_from_row(row: &Row) -> Result<InstanceRecord, Error> {
    Ok(InstanceRecord {
        id: row.try_get::<_, Id>(0)?.0,
        name: row.try_get(1)?,
        app: row.try_get(2)?,
        digest: row.try_get(3)?,
        status: row.try_get::<_, Status>(4)?.0,
        input: row.try_get(5)?,
        output: row.try_get(6)?,
        custom_status: row.try_get(7)?,
        parent_id: row.try_get(8)?,
        created_ms: row.try_get(9)?,
        updated_ms: row.try_get(10)?,
        started_ms: row.try_get(11)?,
        generation: row.try_get::<_, i64>(12)?.max(0) as u64,
    })
}

async fn load_instance<C: GenericClient>(c: &C, id: &str) -> Result<Option<InstanceRecord>, Error> {
    let select = c
        .prepare_cached(concat!(
            "SELECT ",
            instance_columns!(),
            " FROM instances WHERE id = $1"
        ))
        .await?;
    c.query_opt(&select, &[&id])
        .await?
        .as_ref()
        .map(instance_from_row)
        .transpose()
}

/// What an episode's commit needs of its instance: fewer columns than a
/// whole [`InstanceRecord`] (its input and output can be large), read by
/// the writer for every episode.
struct EpisodeOwner {
    status: RuntimeStatus,
    app: String,
    digest: String,
    generation: u64,
}

async fn load_episode_owner<C: GenericClient>(
    c: &C,
    id: &str,
) -> Result<Option<EpisodeOwner>, Error> {
    let select = c
        .prepare_cached("SELECT status, app, digest, generation FROM instances WHERE id = $1")
        .await?;
    let Some(row) = c.query_opt(&select, &[&id]).await? else {
        return Ok(None);
    };
    Ok(Some(EpisodeOwner {
        status: row.try_get::<_, Status>(0)?.0,
        app: row.try_get(1)?,
        digest: row.try_get(2)?,
        generation: row.try_get::<_, i64>(3)?.max(0) as u64,
    }))
}

/// The instance if it exists and has not finished; otherwise what a
/// management operation on it reports.
async fn load_unfinished<C: GenericClient>(
    c: &C,
    id: &InstanceId,
) -> Result<Result<InstanceRecord, ChangeOutcome>, Error> {
    Ok(match load_instance(c, id.as_str()).await? {
        None => Err(ChangeOutcome::NotFound),
        Some(record) if record.status.is_finished() => Err(ChangeOutcome::Finished(record.status)),
        Some(record) => Ok(record),
    })
}

/// Parameters of a dynamic statement, owned.
type Args = Vec<Box<dyn ToSql + Sync + Send>>;

/// The `WHERE` condition `filter` selects; pushes its parameters to `args`.
fn filter_sql(filter: &InstanceFilter, args: &mut Args) -> String {
    let mut clauses = Vec::new();
    if !filter.statuses.is_empty() {
        let statuses: Vec<String> = filter
            .statuses
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect();
        args.push(Box::new(statuses));
        clauses.push(format!("status = ANY(${})", args.len()));
    }
    if let Some(from) = filter.created_from_ms {
        args.push(Box::new(from));
        clauses.push(format!("created_ms >= ${}", args.len()));
    }
    if let Some(to) = filter.created_to_ms {
        args.push(Box::new(to));
        clauses.push(format!("created_ms <= ${}", args.len()));
    }
    if let Some(name) = &filter.name {
        args.push(Box::new(name.clone()));
        clauses.push(format!("name = ${}", args.len()));
    }
    if let Some(prefix) = &filter.id_prefix {
        args.push(Box::new(prefix.clone()));
        clauses.push(format!("starts_with(id, ${})", args.len()));
    }
    if clauses.is_empty() {
        "TRUE".to_owned()
    } else {
        clauses.join(" AND ")
    }
}

/// `args` as the slice tokio-postgres takes.
fn params(args: &Args) -> Vec<Param<'_>> {
    args.iter().map(|a| &**a as Param<'_>).collect()
}

/// Appends an episode's journal entries.
async fn insert_journal<C: GenericClient>(
    c: &C,
    id: &str,
    entries: &[JournalEntry],
) -> Result<(), Error> {
    if entries.is_empty() {
        return Ok(());
    }
    let insert = c
        .prepare_cached(
            "INSERT INTO journal (instance_id, seq, kind, request, result, at_ms) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .await?;
    let seqs: Vec<i64> = entries.iter().map(|e| e.seq as i64).collect();
    let rows: Vec<[Param<'_>; 6]> = entries
        .iter()
        .zip(&seqs)
        .map(|(e, seq)| {
            [
                &id as Param<'_>,
                seq,
                &e.kind,
                &e.request,
                &e.result,
                &e.at_ms,
            ]
        })
        .collect();
    pipeline(rows.iter().map(|row| c.execute(&insert, &row[..]))).await?;
    Ok(())
}

/// Commits one episode (see [`DurableStorage::commit_episode`]).
async fn commit<C: GenericClient>(c: &C, episode: Episode) -> Result<Effects, Error> {
    let now = now_ms();
    let mut effects = Effects::default();
    let instance = &episode.instance_id;
    let id = instance.as_str();
    let Some(owner) = load_episode_owner(c, id).await? else {
        // Purged while it ran: nothing to record.
        return Ok(effects);
    };
    if owner.status.is_finished() {
        // Terminated while it ran: its last episode is dropped.
        return Ok(effects);
    }
    observe::append_logs(c, id, &episode.logs).await?;
    insert_journal(c, id, &episode.entries).await?;
    let lease_until = now.saturating_add(episode.lease_ms);
    insert_work(
        c,
        instance,
        &owner,
        episode.work,
        now,
        lease_until,
        &mut effects,
    )
    .await?;
    let timers: Vec<(tasks::Fires, i64)> = episode
        .timers
        .iter()
        .map(|t| (tasks::Fires::Task(t.task_id), t.fire_at_ms))
        .collect();
    tasks::insert_timers(c, id, &timers, now, &mut effects).await?;
    // After the inserts: an episode may set a timer and cancel it.
    tasks::delete_timers(c, id, &episode.cancelled_timers).await?;
    tasks::start_children(c, Some(instance), episode.children, now, &mut effects).await?;
    entities::enqueue(c, &episode.entity_ops, now, &mut effects).await?;
    let completions = episode
        .completions
        .into_iter()
        .map(|(task, outcome)| (instance.clone(), task, outcome))
        .collect();
    tasks::complete_all(c, completions, now, &mut effects).await?;
    let status = &episode.status;
    if let Some(next) = &episode.continue_as_new {
        let custom_status = status.custom_status.as_deref();
        tasks::continue_as_new(c, id, next, custom_status, now, &mut effects).await?;
        effects.work.clear();
        effects.messages.retain(|(target, _)| target != instance);
        effects.next_timer_ms = None;
        return Ok(effects);
    }
    // A suspension made while the episode ran outlives it.
    let new_status =
        if owner.status == RuntimeStatus::Suspended && status.status == RuntimeStatus::Running {
            RuntimeStatus::Suspended
        } else {
            status.status
        };
    let update = c
        .prepare_cached(
            "UPDATE instances SET status = $2, output = $3, custom_status = $4, updated_ms = $5 WHERE id = $1",
        )
        .await?;
    c.execute(
        &update,
        &[
            &id,
            &new_status.as_str(),
            &status.output,
            &status.custom_status,
            &now,
        ],
    )
    .await?;
    if status.status.is_finished() {
        let output = status.output.as_deref();
        tasks::on_instance_end(c, id, status.status, output, now, &mut effects).await?;
        effects.work.clear();
        effects.messages.retain(|(target, _)| target != instance);
    }
    Ok(effects)
}

/// An instance's journal, inbox, arrival floor and failed attempts, read
/// in that order after its record (one pipeline).
async fn history<C: GenericClient>(c: &C, id: &str) -> Result<Option<History>, Error> {
    let journal = c
        .prepare_cached(
            "SELECT seq, kind, request, result, at_ms FROM journal WHERE instance_id = $1 ORDER BY seq",
        )
        .await?;
    let inbox = c
        .prepare_cached(
            "SELECT arrival, kind, task_id, name, ok, payload, at_ms FROM inbox WHERE instance_id = $1 ORDER BY arrival",
        )
        .await?;
    let floor = c
        .prepare_cached("SELECT arrival_floor FROM instances WHERE id = $1")
        .await?;
    let attempts = c
        .prepare_cached(
            "SELECT task_id, attempt, error, failed_ms, retry_at_ms FROM task_attempts
             WHERE instance_id = $1 ORDER BY id",
        )
        .await?;
    let by_id: [Param<'_>; 1] = [&id];
    let (record, journal, inbox, floor, attempts) = tokio::try_join!(
        biased;
        load_instance(c, id),
        c.query(&journal, &by_id),
        c.query(&inbox, &by_id),
        c.query_opt(&floor, &by_id),
        c.query(&attempts, &by_id),
    )?;
    let Some(record) = record else {
        return Ok(None);
    };
    let journal = journal
        .iter()
        .map(|r| {
            Ok(JournalEntry {
                seq: r.try_get::<_, i64>(0)? as u64,
                kind: r.try_get(1)?,
                request: r.try_get(2)?,
                result: r.try_get(3)?,
                at_ms: r.try_get(4)?,
            })
        })
        .collect::<Result<_, Error>>()?;
    let inbox = inbox.iter().map(inbox_from_row).collect::<Result<_, _>>()?;
    let Some(floor) = floor else {
        // Purged between the statements.
        return Ok(None);
    };
    let attempts = attempts
        .iter()
        .map(|r| {
            Ok(TaskAttempt {
                task_id: r.try_get::<_, i64>(0)? as u64,
                attempt: r.try_get::<_, U32>(1)?.0,
                error: GuestError::from_stored(r.try_get(2)?),
                failed_ms: r.try_get(3)?,
                retry_at_ms: r.try_get(4)?,
            })
        })
        .collect::<Result<_, Error>>()?;
    Ok(Some(History {
        record,
        journal,
        inbox,
        arrival_floor: floor.try_get(0)?,
        attempts,
    }))
}

/// One page of instances in creation order.
async fn list_instances<C: GenericClient>(
    c: &C,
    filter: &InstanceFilter,
    top: usize,
    continuation: Option<&str>,
) -> Result<InstancePage, Error> {
    let mut args = Args::new();
    let mut sql = format!(
        concat!("SELECT ", instance_columns!(), " FROM instances WHERE {}"),
        filter_sql(filter, &mut args)
    );
    if let Some((created, id)) = continuation.and_then(|c| c.split_once(':')) {
        let created: i64 = created.parse().unwrap_or(i64::MIN);
        args.push(Box::new(created));
        args.push(Box::new(id.to_owned()));
        let n = args.len();
        sql.push_str(&format!(" AND (created_ms, id) > (${}, ${n})", n - 1));
    }
    args.push(Box::new(limit(top).saturating_add(1)));
    sql.push_str(&format!(" ORDER BY created_ms, id LIMIT ${}", args.len()));
    let rows = c.query(sql.as_str(), &params(&args)).await?;
    let mut instances = rows
        .iter()
        .map(instance_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let continuation = if instances.len() > top {
        instances.truncate(top);
        instances
            .last()
            .map(|last| format!("{}:{}", last.created_ms, last.id))
    } else {
        None
    };
    Ok(InstancePage {
        instances,
        continuation,
    })
}

async fn raise_event<C: GenericClient>(
    c: &C,
    id: &InstanceId,
    name: &str,
    data: &str,
) -> Result<EventOutcome, Error> {
    let Some(record) = load_instance(c, id.as_str()).await? else {
        return Ok(EventOutcome::NotFound);
    };
    if record.status.is_finished() {
        return Ok(EventOutcome::Finished(record.status));
    }
    let at_ms = now_ms();
    let insert = c
        .prepare_cached(
            "INSERT INTO inbox (instance_id, kind, name, ok, payload, at_ms)
             SELECT id, 'event', $2, TRUE, $3, $4 FROM instances WHERE id = $1 FOR NO KEY UPDATE
             RETURNING arrival",
        )
        .await?;
    // Under the instance's row lock, as `tasks::complete_all`'s answers.
    let Some(row) = c
        .query_opt(&insert, &[&id.as_str(), &name, &data, &at_ms])
        .await?
    else {
        return Ok(EventOutcome::NotFound);
    };
    Ok(EventOutcome::Delivered(InboxMessage {
        arrival: row.try_get(0)?,
        at_ms,
        body: InboxBody::Event {
            name: name.to_owned(),
            data: data.to_owned(),
        },
    }))
}

async fn set_suspended<C: GenericClient>(
    c: &C,
    id: &InstanceId,
    suspended: bool,
) -> Result<ChangeOutcome, Error> {
    let record = match load_unfinished(c, id).await? {
        Ok(record) => record,
        Err(outcome) => return Ok(outcome),
    };
    let (from, to): (&[&str], &str) = if suspended {
        (&["Pending", "Running"], "Suspended")
    } else {
        (&["Suspended"], "Running")
    };
    if from.contains(&record.status.as_str()) {
        let update = c
            .prepare_cached("UPDATE instances SET status = $2, updated_ms = $3 WHERE id = $1")
            .await?;
        c.execute(&update, &[&id.as_str(), &to, &now_ms()]).await?;
    }
    Ok(ChangeOutcome::Done)
}

async fn purge<C: GenericClient>(c: &C, id: &InstanceId) -> Result<ChangeOutcome, Error> {
    let Some(record) = load_instance(c, id.as_str()).await? else {
        return Ok(ChangeOutcome::NotFound);
    };
    if !record.status.is_finished() {
        return Ok(ChangeOutcome::NotFinished(record.status));
    }
    let delete = c
        .prepare_cached("DELETE FROM instances WHERE id = $1")
        .await?;
    c.execute(&delete, &[&id.as_str()]).await?;
    Ok(ChangeOutcome::Done)
}

impl DurableStorage for PgStorage {
    fn placement(&self) -> Option<Arc<dyn Placement>> {
        Some(self.cluster.clone())
    }

    fn put_component(&self, digest: String, bytes: Arc<[u8]>) -> StorageFuture<'_, ()> {
        Box::pin(self.write(move |tx| {
            let (digest, bytes) = (digest.clone(), bytes.clone());
            Box::pin(async move {
                let insert = tx
                    .prepare_cached(
                        "INSERT INTO components (digest, bytes, created_ms) VALUES ($1, $2, $3)
                         ON CONFLICT (digest) DO NOTHING",
                    )
                    .await?;
                tx.execute(&insert, &[&digest, &&bytes[..], &now_ms()])
                    .await?;
                Ok(())
            })
        }))
    }

    fn component(&self, digest: &str) -> StorageFuture<'_, Option<Vec<u8>>> {
        let digest = digest.to_owned();
        Box::pin(self.read(move |client| {
            Box::pin(async move {
                let select = client
                    .prepare_cached("SELECT bytes FROM components WHERE digest = $1")
                    .await?;
                client
                    .query_opt(&select, &[&digest])
                    .await?
                    .map(|row| row.try_get(0))
                    .transpose()
            })
        }))
    }

    fn create_instance(
        &self,
        record: InstanceRecord,
        traceparent: Option<String>,
    ) -> StorageFuture<'_, CreateOutcome> {
        let cluster = self.cluster.clone();
        let lane_key = record.id.as_str().to_owned();
        Box::pin(self.write_for(&lane_key, move |tx| {
            let (record, traceparent, cluster) =
                (record.clone(), traceparent.clone(), cluster.clone());
            Box::pin(async move {
                let id = record.id.as_str();
                let generation = match tasks::free_id(tx, id).await? {
                    Ok(generation) => generation,
                    Err(status) => return Ok(CreateOutcome::AlreadyRunning(status)),
                };
                let insert = tx
                    .prepare_cached(
                        "INSERT INTO instances (id, name, app, digest, status, input, output, custom_status,
                                                parent_id, created_ms, updated_ms, started_ms, generation)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                    )
                    .await?;
                let (status, stored_generation) = (record.status.as_str(), generation as i64);
                let columns: [Param<'_>; 13] = [
                    &id,
                    &record.name,
                    &record.app,
                    &record.digest,
                    &status,
                    &record.input,
                    &record.output,
                    &record.custom_status,
                    &record.parent_id,
                    &record.created_ms,
                    &record.updated_ms,
                    &record.started_ms,
                    &stored_generation,
                ];
                let trace = observe::set_traceparent(tx, id, generation, traceparent.as_deref());
                tokio::try_join!(biased; tx.execute(&insert, &columns), trace)?;
                cluster.route(tx, [&record.id], []).await?;
                Ok(CreateOutcome::Created { generation })
            })
        }))
    }

    fn instance(&self, id: &InstanceId) -> StorageFuture<'_, Option<InstanceRecord>> {
        let id = id.clone();
        Box::pin(
            self.read(move |client| {
                Box::pin(async move { load_instance(client, id.as_str()).await })
            }),
        )
    }

    fn list_instances(
        &self,
        filter: InstanceFilter,
        top: usize,
        continuation: Option<String>,
    ) -> StorageFuture<'_, InstancePage> {
        Box::pin(self.read(move |client| {
            Box::pin(
                async move { list_instances(client, &filter, top, continuation.as_deref()).await },
            )
        }))
    }

    fn history(&self, id: &InstanceId) -> StorageFuture<'_, Option<History>> {
        let id = id.clone();
        Box::pin(
            self.read(move |client| Box::pin(async move { history(client, id.as_str()).await })),
        )
    }

    fn commit_episode(&self, episode: Episode) -> StorageFuture<'_, Effects> {
        let cluster = self.cluster.clone();
        let lane_key = episode.instance_id.as_str().to_owned();
        let written = self.write_for(&lane_key, move |tx| {
            let (episode, cluster) = (episode.clone(), cluster.clone());
            Box::pin(async move {
                if let Err(moved) = cluster.check(instance_key(&episode.instance_id)) {
                    return Ok(Err(moved));
                }
                let effects = commit(tx, episode).await?;
                cluster.route_effects(tx, &effects).await?;
                Ok(Ok(effects))
            })
        });
        Box::pin(async move { written.await? })
    }

    fn complete_work(
        &self,
        item: &WorkItem,
        outcome: TaskOutcome,
        logs: Vec<LogLine>,
        lease_ms: i64,
    ) -> StorageFuture<'_, Effects> {
        let (item, cluster) = (item.clone(), self.cluster.clone());
        let lane_key = item.instance_id.as_str().to_owned();
        Box::pin(self.write_for(&lane_key, move |tx| {
            let (item, outcome, logs) = (item.clone(), outcome.clone(), logs.clone());
            let cluster = cluster.clone();
            Box::pin(async move {
                let done = tasks::finish_work(tx, &item, outcome, now_ms(), lease_ms).await?;
                if let Some(effects) = done {
                    observe::append_logs(tx, item.instance_id.as_str(), &logs).await?;
                    cluster.route_effects(tx, &effects).await?;
                    return Ok(effects);
                }
                Ok(Effects::default())
            })
        }))
    }

    fn logs(
        &self,
        id: &InstanceId,
        after: i64,
        limit: usize,
    ) -> StorageFuture<'_, Vec<StoredLogLine>> {
        let id = id.clone();
        Box::pin(self.read(move |client| {
            Box::pin(async move { observe::logs(client, id.as_str(), after, limit).await })
        }))
    }

    fn trace_origin(&self, id: &InstanceId) -> StorageFuture<'_, Option<TraceOrigin>> {
        let id = id.clone();
        Box::pin(self.read(move |client| {
            Box::pin(async move { observe::trace_origin(client, id.as_str()).await })
        }))
    }

    fn backlog(&self) -> StorageFuture<'_, Backlog> {
        Box::pin(self.read(|client| Box::pin(async move { observe::backlog(client).await })))
    }

    fn next_timer_due(&self) -> StorageFuture<'_, Option<i64>> {
        Box::pin(self.read(|client| Box::pin(async move { tasks::next_due(client).await })))
    }

    fn fire_timers(&self, now_ms: i64, lease_ms: i64) -> StorageFuture<'_, Effects> {
        let cluster = self.cluster.clone();
        Box::pin(self.write(move |tx| {
            let cluster = cluster.clone();
            Box::pin(async move {
                let effects = tasks::fire_due(tx, now_ms, lease_ms).await?;
                cluster.route_effects(tx, &effects).await?;
                Ok(effects)
            })
        }))
    }

    fn raise_event(
        &self,
        id: &InstanceId,
        name: String,
        data: String,
    ) -> StorageFuture<'_, EventOutcome> {
        let (id, cluster) = (id.clone(), self.cluster.clone());
        let lane_key = id.as_str().to_owned();
        Box::pin(self.write_for(&lane_key, move |tx| {
            let (id, name, data) = (id.clone(), name.clone(), data.clone());
            let cluster = cluster.clone();
            Box::pin(async move {
                let outcome = raise_event(tx, &id, &name, &data).await?;
                if let EventOutcome::Delivered(_) = outcome {
                    cluster.route(tx, [&id], []).await?;
                }
                Ok(outcome)
            })
        }))
    }

    fn terminate(
        &self,
        id: &InstanceId,
        output: String,
    ) -> StorageFuture<'_, (ChangeOutcome, Effects)> {
        let (id, cluster) = (id.clone(), self.cluster.clone());
        let lane_key = id.as_str().to_owned();
        Box::pin(self.write_for(&lane_key, move |tx| {
            let (id, output, cluster) = (id.clone(), output.clone(), cluster.clone());
            Box::pin(async move {
                if let Err(outcome) = load_unfinished(tx, &id).await? {
                    return Ok((outcome, Effects::default()));
                }
                let mut effects = Effects::default();
                tasks::terminate_tree(tx, &id, &output, now_ms(), &mut effects).await?;
                cluster.route_effects(tx, &effects).await?;
                Ok((ChangeOutcome::Done, effects))
            })
        }))
    }

    fn set_digest(&self, id: &InstanceId, digest: String) -> StorageFuture<'_, ChangeOutcome> {
        let id = id.clone();
        let lane_key = id.as_str().to_owned();
        Box::pin(self.write_for(&lane_key, move |tx| {
            let (id, digest) = (id.clone(), digest.clone());
            Box::pin(async move {
                if let Err(outcome) = load_unfinished(tx, &id).await? {
                    return Ok(outcome);
                }
                let update = tx
                    .prepare_cached(
                        "UPDATE instances SET digest = $2, updated_ms = $3 WHERE id = $1",
                    )
                    .await?;
                tx.execute(&update, &[&id.as_str(), &digest, &now_ms()])
                    .await?;
                Ok(ChangeOutcome::Done)
            })
        }))
    }

    fn set_suspended(&self, id: &InstanceId, suspended: bool) -> StorageFuture<'_, ChangeOutcome> {
        let (id, cluster) = (id.clone(), self.cluster.clone());
        let lane_key = id.as_str().to_owned();
        Box::pin(self.write_for(&lane_key, move |tx| {
            let (id, cluster) = (id.clone(), cluster.clone());
            Box::pin(async move {
                let outcome = set_suspended(tx, &id, suspended).await?;
                if outcome == ChangeOutcome::Done {
                    cluster.route(tx, [&id], []).await?;
                }
                Ok(outcome)
            })
        }))
    }

    fn purge(&self, id: &InstanceId) -> StorageFuture<'_, ChangeOutcome> {
        let id = id.clone();
        let lane_key = id.as_str().to_owned();
        Box::pin(self.write_for(&lane_key, move |tx| {
            let id = id.clone();
            Box::pin(async move { purge(tx, &id).await })
        }))
    }

    fn purge_many(&self, filter: InstanceFilter) -> StorageFuture<'_, u64> {
        Box::pin(self.write(move |tx| {
            let filter = filter.clone();
            Box::pin(async move {
                let mut args = Args::new();
                let sql = format!(
                    "DELETE FROM instances WHERE {} AND status IN ('Completed', 'Failed', 'Terminated')",
                    filter_sql(&filter, &mut args)
                );
                tx.execute(sql.as_str(), &params(&args)).await
            })
        }))
    }

    fn unfinished_instances(&self) -> StorageFuture<'_, Vec<InstanceId>> {
        Box::pin(self.read(|client| {
            Box::pin(async move {
                let select = client
                    .prepare_cached(
                        "SELECT id FROM instances WHERE status IN ('Pending', 'Running') ORDER BY created_ms",
                    )
                    .await?;
                let rows = client.query(&select, &[]).await?;
                let mut ids = Vec::with_capacity(rows.len());
                for row in &rows {
                    if let Ok(id) = InstanceId::parse(row.try_get(0)?) {
                        ids.push(id);
                    }
                }
                Ok(ids)
            })
        }))
    }

    fn claim_work(
        &self,
        expired_by_ms: i64,
        lease_until_ms: i64,
        limit: usize,
    ) -> StorageFuture<'_, Vec<WorkItem>> {
        Box::pin(self.write(move |tx| {
            Box::pin(async move {
                claim_expired(tx, expired_by_ms, lease_until_ms, limit, now_ms()).await
            })
        }))
    }

    fn send_to_entities(&self, ops: Vec<NewEntityOp>) -> StorageFuture<'_, Effects> {
        let cluster = self.cluster.clone();
        let lane_key: String = ops
            .first()
            .map(|op| entity_key(&op.target))
            .unwrap_or_default();
        Box::pin(self.write_for(&lane_key, move |tx| {
            let (ops, cluster) = (ops.clone(), cluster.clone());
            Box::pin(async move {
                let mut effects = Effects::default();
                entities::enqueue(tx, &ops, now_ms(), &mut effects).await?;
                cluster.route_effects(tx, &effects).await?;
                Ok(effects)
            })
        }))
    }

    fn entity_batch(&self, id: &EntityId, limit: usize) -> StorageFuture<'_, EntityBatch> {
        let id = id.clone();
        Box::pin(self.read(move |client| {
            Box::pin(async move { entities::load_batch(client, &id, limit).await })
        }))
    }

    fn commit_entity_batch(&self, commit: EntityCommit) -> StorageFuture<'_, Effects> {
        let cluster = self.cluster.clone();
        let lane_key: String = entity_key(&commit.entity);
        let written = self.write_for(&lane_key, move |tx| {
            let (commit, cluster) = (commit.clone(), cluster.clone());
            Box::pin(async move {
                if let Err(moved) = cluster.check(&entity_key(&commit.entity)) {
                    return Ok(Err(moved));
                }
                let effects = entities::commit_batch(tx, commit, now_ms()).await?;
                cluster.route_effects(tx, &effects).await?;
                Ok(Ok(effects))
            })
        });
        Box::pin(async move { written.await? })
    }

    fn entity(&self, id: &EntityId) -> StorageFuture<'_, Option<EntityRecord>> {
        let id = id.clone();
        Box::pin(
            self.read(move |client| {
                Box::pin(async move { entities::load_entity(client, &id).await })
            }),
        )
    }

    fn list_entities(
        &self,
        name: &str,
        top: usize,
        continuation: Option<String>,
    ) -> StorageFuture<'_, EntityPage> {
        let name = name.to_owned();
        Box::pin(self.read(move |client| {
            Box::pin(
                async move { entities::list(client, &name, top, continuation.as_deref()).await },
            )
        }))
    }

    fn entities_with_messages(
        &self,
        after: Option<EntityId>,
        limit: usize,
    ) -> StorageFuture<'_, Vec<EntityId>> {
        Box::pin(self.read(move |client| {
            Box::pin(async move { entities::with_queued_ops(client, after.as_ref(), limit).await })
        }))
    }
}
