//! SQLite implementation of [`DurableStorage`]: instances, journals,
//! inboxes, work items and component versions.
//!
//! Invariants: an episode (journal entries, work items, status) commits in
//! one job; a task completion inserts its inbox message and deletes its
//! work item in one job, and is ignored if the item is gone (a duplicate
//! run), so each task is answered once.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::entities;
use super::observe;
use super::tasks;
use crate::SqliteStorage;
use perdure_records::GuestError;
use perdure_records::now_ms;
use perdure_records::{
    Effects, Episode, History, InboxBody, InboxMessage, InstanceFilter, InstanceId, InstancePage,
    InstanceRecord, JournalEntry, LogLine, RuntimeStatus, StoredLogLine, TaskAttempt, TaskOutcome,
    WorkItem,
};
use perdure_records::{EntityBatch, EntityCommit, EntityId, EntityPage, EntityRecord, NewEntityOp};
use perdure_storage::{
    Backlog, ChangeOutcome, CreateOutcome, DurableStorage, EventOutcome, StorageFuture, TraceOrigin,
};

const INSTANCE_COLUMNS: &str = "id, name, app, digest, status, input, output, custom_status, parent_id, created_ms, updated_ms, COALESCE(started_ms, created_ms), generation";

fn bad_value(what: &str, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("unexpected {what} {value:?} in the database").into(),
    )
}

fn instance_from_row(row: &Row<'_>) -> rusqlite::Result<InstanceRecord> {
    let id: String = row.get(0)?;
    let status: String = row.get(4)?;
    Ok(InstanceRecord {
        id: InstanceId::parse(&id).map_err(|_| bad_value("instance id", &id))?,
        name: row.get(1)?,
        app: row.get(2)?,
        digest: row.get(3)?,
        status: RuntimeStatus::parse(&status).ok_or_else(|| bad_value("status", &status))?,
        input: row.get(5)?,
        output: row.get(6)?,
        custom_status: row.get(7)?,
        parent_id: row.get(8)?,
        created_ms: row.get(9)?,
        updated_ms: row.get(10)?,
        started_ms: row.get(11)?,
        generation: row.get::<_, i64>(12)?.max(0) as u64,
    })
}

fn load_instance(conn: &Connection, id: &str) -> rusqlite::Result<Option<InstanceRecord>> {
    conn.prepare_cached(&format!(
        "SELECT {INSTANCE_COLUMNS} FROM instances WHERE id = ?1"
    ))?
    .query_row([id], instance_from_row)
    .optional()
}

/// What an episode's commit needs of its instance: fewer columns than a
/// whole [`InstanceRecord`] (its input and output can be large), read on
/// the writer thread for every episode.
struct EpisodeOwner {
    status: RuntimeStatus,
    app: String,
    digest: String,
    generation: u64,
}

fn load_episode_owner(conn: &Connection, id: &str) -> rusqlite::Result<Option<EpisodeOwner>> {
    conn.prepare_cached("SELECT status, app, digest, generation FROM instances WHERE id = ?1")?
        .query_row([id], |row| {
            let status: String = row.get(0)?;
            Ok(EpisodeOwner {
                status: RuntimeStatus::parse(&status)
                    .ok_or_else(|| bad_value("status", &status))?,
                app: row.get(1)?,
                digest: row.get(2)?,
                generation: row.get::<_, i64>(3)?.max(0) as u64,
            })
        })
        .optional()
}

/// The instance if it exists and has not finished; otherwise what a
/// management operation on it reports.
fn load_unfinished(
    conn: &Connection,
    id: &InstanceId,
) -> rusqlite::Result<Result<InstanceRecord, ChangeOutcome>> {
    Ok(match load_instance(conn, id.as_str())? {
        None => Err(ChangeOutcome::NotFound),
        Some(record) if record.status.is_finished() => Err(ChangeOutcome::Finished(record.status)),
        Some(record) => Ok(record),
    })
}

fn inbox_from_row(row: &Row<'_>) -> rusqlite::Result<InboxMessage> {
    let arrival: i64 = row.get(0)?;
    let kind: String = row.get(1)?;
    let task_id: Option<i64> = row.get(2)?;
    let name: Option<String> = row.get(3)?;
    let ok: bool = row.get(4)?;
    let payload: String = row.get(5)?;
    let at_ms: i64 = row.get(6)?;
    let body = match (kind.as_str(), task_id) {
        ("task", Some(task_id)) => InboxBody::TaskCompleted {
            task_id: task_id as u64,
            outcome: if ok {
                Ok(payload)
            } else {
                Err(GuestError::from_stored(&payload))
            },
        },
        ("event", _) => InboxBody::Event {
            name: name.unwrap_or_default(),
            data: payload,
        },
        _ => return Err(bad_value("inbox kind", &kind)),
    };
    Ok(InboxMessage {
        arrival,
        at_ms,
        body,
    })
}

fn work_from_row(row: &Row<'_>) -> rusqlite::Result<WorkItem> {
    let instance: String = row.get(1)?;
    Ok(WorkItem {
        id: row.get(0)?,
        instance_id: InstanceId::parse(&instance)
            .map_err(|_| bad_value("instance id", &instance))?,
        task_id: row.get::<_, i64>(2)? as u64,
        app: row.get(3)?,
        digest: row.get(4)?,
        name: row.get(5)?,
        input: row.get(6)?,
        attempt: row.get(7)?,
        generation: row.get::<_, i64>(8)?.max(0) as u64,
    })
}

const WORK_COLUMNS: &str =
    "w.id, w.instance_id, w.task_id, i.app, i.digest, w.name, w.input, w.attempt, i.generation";

/// Leases up to `limit` items whose lease expired by `expired_by` until
/// `lease_until`, counting an attempt for each.
fn claim_expired(
    conn: &Connection,
    expired_by: i64,
    lease_until: i64,
    limit: usize,
) -> rusqlite::Result<Vec<WorkItem>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {WORK_COLUMNS} FROM work_items w JOIN instances i ON i.id = w.instance_id
         WHERE w.lease_until_ms <= ?1 ORDER BY w.id LIMIT ?2"
    ))?;
    let items: Vec<WorkItem> = stmt
        .query_map(params![expired_by, limit as i64], work_from_row)?
        .collect::<rusqlite::Result<_>>()?;
    let mut lease = conn.prepare_cached(
        "UPDATE work_items SET lease_until_ms = ?2, attempt = attempt + 1 WHERE id = ?1",
    )?;
    for item in &items {
        lease.execute(params![item.id, lease_until])?;
    }
    Ok(items
        .into_iter()
        .map(|mut item| {
            item.attempt += 1;
            item
        })
        .collect())
}

fn filter_sql(filter: &InstanceFilter, args: &mut Vec<rusqlite::types::Value>) -> String {
    use rusqlite::types::Value;
    let mut clauses = Vec::new();
    if !filter.statuses.is_empty() {
        let marks: Vec<String> = filter
            .statuses
            .iter()
            .map(|s| {
                args.push(Value::Text(s.as_str().to_owned()));
                format!("?{}", args.len())
            })
            .collect();
        clauses.push(format!("status IN ({})", marks.join(", ")));
    }
    if let Some(from) = filter.created_from_ms {
        args.push(Value::Integer(from));
        clauses.push(format!("created_ms >= ?{}", args.len()));
    }
    if let Some(to) = filter.created_to_ms {
        args.push(Value::Integer(to));
        clauses.push(format!("created_ms <= ?{}", args.len()));
    }
    if let Some(name) = &filter.name {
        args.push(Value::Text(name.clone()));
        clauses.push(format!("name = ?{}", args.len()));
    }
    if let Some(prefix) = &filter.id_prefix {
        args.push(Value::Text(prefix.clone()));
        clauses.push(format!("substr(id, 1, length(?{0})) = ?{0}", args.len()));
    }
    if clauses.is_empty() {
        "1".to_owned()
    } else {
        clauses.join(" AND ")
    }
}

/// Leases work item `id` for another attempt (a retry after backoff).
pub(super) fn claim_one(
    conn: &Connection,
    id: i64,
    lease_until: i64,
) -> rusqlite::Result<Option<WorkItem>> {
    let item = conn
        .prepare_cached(&format!(
            "SELECT {WORK_COLUMNS} FROM work_items w JOIN instances i ON i.id = w.instance_id
             WHERE w.id = ?1"
        ))?
        .query_row([id], work_from_row)
        .optional()?;
    let Some(mut item) = item else {
        return Ok(None);
    };
    conn.prepare_cached(
        "UPDATE work_items SET lease_until_ms = ?2, attempt = attempt + 1 WHERE id = ?1",
    )?
    .execute(params![id, lease_until])?;
    item.attempt += 1;
    Ok(Some(item))
}

/// Commits one episode (see [`DurableStorage::commit_episode`]).
fn commit(conn: &Connection, episode: Episode) -> rusqlite::Result<Effects> {
    let now = now_ms();
    let mut effects = Effects::default();
    let instance = &episode.instance_id;
    let id = instance.as_str();
    let Some(record) = load_episode_owner(conn, id)? else {
        // Purged while it ran: nothing to record.
        return Ok(effects);
    };
    if record.status.is_finished() {
        // Terminated while it ran: its last episode is dropped.
        return Ok(effects);
    }
    observe::append_logs(conn, id, &episode.logs)?;
    let mut journal = conn.prepare_cached(
        "INSERT INTO journal (instance_id, seq, kind, request, result, at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for entry in &episode.entries {
        journal.execute(params![
            id,
            entry.seq as i64,
            entry.kind,
            entry.request,
            entry.result,
            entry.at_ms
        ])?;
    }
    let mut work = conn.prepare_cached(
        "INSERT INTO work_items (instance_id, task_id, name, input, attempt, lease_until_ms, created_ms, retry)
         VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6, ?7)",
    )?;
    for new in episode.work {
        work.execute(params![
            id,
            new.task_id as i64,
            new.name,
            new.input,
            now + episode.lease_ms,
            now,
            new.retry
        ])?;
        effects.work.push(WorkItem {
            id: conn.last_insert_rowid(),
            instance_id: instance.clone(),
            task_id: new.task_id,
            app: record.app.clone(),
            digest: record.digest.clone(),
            name: new.name,
            input: new.input,
            attempt: 1,
            generation: record.generation,
        });
    }
    for timer in &episode.timers {
        let fires = tasks::Fires::Task(timer.task_id);
        tasks::insert_timer(conn, id, fires, timer.fire_at_ms, now, &mut effects)?;
    }
    for task in &episode.cancelled_timers {
        tasks::delete_timer(conn, id, *task)?;
    }
    tasks::start_children(conn, Some(instance), episode.children, now, &mut effects)?;
    super::entities::enqueue(conn, &episode.entity_ops, now, &mut effects)?;
    for (task, outcome) in episode.completions {
        tasks::complete(conn, instance, task, outcome, now, &mut effects)?;
    }
    let status = &episode.status;
    if let Some(next) = &episode.continue_as_new {
        let custom_status = status.custom_status.as_deref();
        tasks::continue_as_new(conn, id, next, custom_status, now, &mut effects)?;
        effects.work.clear();
        effects.messages.retain(|(target, _)| target != instance);
        effects.next_timer_ms = None;
        return Ok(effects);
    }
    // A suspension made while the episode ran outlives it.
    let new_status =
        if record.status == RuntimeStatus::Suspended && status.status == RuntimeStatus::Running {
            RuntimeStatus::Suspended
        } else {
            status.status
        };
    conn.prepare_cached(
        "UPDATE instances SET status = ?2, output = ?3, custom_status = ?4, updated_ms = ?5 WHERE id = ?1",
    )?
    .execute(params![
        id,
        new_status.as_str(),
        status.output,
        status.custom_status,
        now
    ])?;
    if status.status.is_finished() {
        tasks::on_instance_end(
            conn,
            id,
            status.status,
            status.output.as_deref(),
            now,
            &mut effects,
        )?;
        effects.work.clear();
        effects.messages.retain(|(target, _)| target != instance);
    }
    Ok(effects)
}

impl DurableStorage for SqliteStorage {
    fn put_component(&self, digest: String, bytes: std::sync::Arc<[u8]>) -> StorageFuture<'_, ()> {
        Box::pin(self.write(move |conn| {
            conn.execute(
                "INSERT INTO components (digest, bytes, created_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (digest) DO NOTHING",
                params![digest, &bytes[..], now_ms()],
            )
            .map(|_| ())
        }))
    }

    fn component(&self, digest: &str) -> StorageFuture<'_, Option<Vec<u8>>> {
        let digest = digest.to_owned();
        Box::pin(self.read(move |conn| {
            conn.query_row(
                "SELECT bytes FROM components WHERE digest = ?1",
                [&digest],
                |r| r.get(0),
            )
            .optional()
        }))
    }

    fn create_instance(
        &self,
        record: InstanceRecord,
        traceparent: Option<String>,
    ) -> StorageFuture<'_, CreateOutcome> {
        Box::pin(self.write(move |conn| {
            let generation = match tasks::free_id(conn, record.id.as_str())? {
                Ok(generation) => generation,
                Err(status) => return Ok(CreateOutcome::AlreadyRunning(status)),
            };
            conn.prepare_cached(
                "INSERT INTO instances (id, name, app, digest, status, input, output, custom_status,
                                        parent_id, created_ms, updated_ms, started_ms, generation)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?
            .execute(params![
                    record.id.as_str(),
                    record.name,
                    record.app,
                    record.digest,
                    record.status.as_str(),
                    record.input,
                    record.output,
                    record.custom_status,
                    record.parent_id,
                    record.created_ms,
                    record.updated_ms,
                    record.started_ms,
                generation as i64,
            ])?;
            observe::set_traceparent(conn, record.id.as_str(), generation, traceparent.as_deref())?;
            Ok(CreateOutcome::Created { generation })
        }))
    }

    fn instance(&self, id: &InstanceId) -> StorageFuture<'_, Option<InstanceRecord>> {
        let id = id.clone();
        Box::pin(self.read(move |conn| load_instance(conn, id.as_str())))
    }

    fn list_instances(
        &self,
        filter: InstanceFilter,
        top: usize,
        continuation: Option<String>,
    ) -> StorageFuture<'_, InstancePage> {
        Box::pin(self.read(move |conn| {
            let mut args = Vec::new();
            let mut sql = format!(
                "SELECT {INSTANCE_COLUMNS} FROM instances WHERE {}",
                filter_sql(&filter, &mut args)
            );
            if let Some((created, id)) = continuation.as_deref().and_then(|c| c.split_once(':')) {
                let created: i64 = created.parse().unwrap_or(i64::MIN);
                args.push(created.into());
                args.push(id.to_owned().into());
                sql.push_str(&format!(
                    " AND (created_ms, id) > (?{}, ?{})",
                    args.len() - 1,
                    args.len()
                ));
            }
            args.push((top as i64 + 1).into());
            sql.push_str(&format!(" ORDER BY created_ms, id LIMIT ?{}", args.len()));
            let mut stmt = conn.prepare(&sql)?;
            let mut instances: Vec<InstanceRecord> = stmt
                .query_map(rusqlite::params_from_iter(args), instance_from_row)?
                .collect::<rusqlite::Result<_>>()?;
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
        }))
    }

    fn history(&self, id: &InstanceId) -> StorageFuture<'_, Option<History>> {
        let id = id.clone();
        Box::pin(self.read(move |conn| {
            let Some(record) = load_instance(conn, id.as_str())? else {
                return Ok(None);
            };
            let mut stmt = conn.prepare_cached(
                "SELECT seq, kind, request, result, at_ms FROM journal WHERE instance_id = ?1 ORDER BY seq",
            )?;
            let journal = stmt
                .query_map([id.as_str()], |r| {
                    Ok(JournalEntry {
                        seq: r.get::<_, i64>(0)? as u64,
                        kind: r.get(1)?,
                        request: r.get(2)?,
                        result: r.get(3)?,
                        at_ms: r.get(4)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            let mut stmt = conn.prepare_cached(
                "SELECT arrival, kind, task_id, name, ok, payload, at_ms FROM inbox WHERE instance_id = ?1 ORDER BY arrival",
            )?;
            let inbox = stmt
                .query_map([id.as_str()], inbox_from_row)?
                .collect::<rusqlite::Result<_>>()?;
            let arrival_floor = conn
                .prepare_cached("SELECT arrival_floor FROM instances WHERE id = ?1")?
                .query_row([id.as_str()], |r| r.get(0))?;
            let attempts = conn
                .prepare_cached(
                    "SELECT task_id, attempt, error, failed_ms, retry_at_ms FROM task_attempts
                     WHERE instance_id = ?1 ORDER BY id",
                )?
                .query_map([id.as_str()], |r| {
                    Ok(TaskAttempt {
                        task_id: r.get::<_, i64>(0)? as u64,
                        attempt: r.get(1)?,
                        error: GuestError::from_stored(&r.get::<_, String>(2)?),
                        failed_ms: r.get(3)?,
                        retry_at_ms: r.get(4)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(Some(History {
                record,
                journal,
                inbox,
                arrival_floor,
                attempts,
            }))
        }))
    }

    fn commit_episode(&self, episode: Episode) -> StorageFuture<'_, Effects> {
        Box::pin(self.write(move |conn| commit(conn, episode.clone())))
    }

    fn complete_work(
        &self,
        item: &WorkItem,
        outcome: TaskOutcome,
        logs: Vec<LogLine>,
        lease_ms: i64,
    ) -> StorageFuture<'_, Effects> {
        let item = item.clone();
        Box::pin(self.write(move |conn| {
            let done = tasks::finish_work(conn, &item, outcome.clone(), now_ms(), lease_ms)?;
            if let Some(effects) = done {
                observe::append_logs(conn, item.instance_id.as_str(), &logs)?;
                return Ok(effects);
            }
            Ok(Effects::default())
        }))
    }

    fn logs(
        &self,
        id: &InstanceId,
        after: i64,
        limit: usize,
    ) -> StorageFuture<'_, Vec<StoredLogLine>> {
        let id = id.clone();
        Box::pin(self.read(move |conn| observe::logs(conn, id.as_str(), after, limit)))
    }

    fn trace_origin(&self, id: &InstanceId) -> StorageFuture<'_, Option<TraceOrigin>> {
        let id = id.clone();
        Box::pin(self.read(move |conn| observe::trace_origin(conn, id.as_str())))
    }

    fn backlog(&self) -> StorageFuture<'_, Backlog> {
        Box::pin(self.read(observe::backlog))
    }

    fn next_timer_due(&self) -> StorageFuture<'_, Option<i64>> {
        Box::pin(self.read(tasks::next_due))
    }

    fn fire_timers(&self, now_ms: i64, lease_ms: i64) -> StorageFuture<'_, Effects> {
        Box::pin(self.write(move |conn| tasks::fire_due(conn, now_ms, lease_ms)))
    }

    fn raise_event(
        &self,
        id: &InstanceId,
        name: String,
        data: String,
    ) -> StorageFuture<'_, EventOutcome> {
        let id = id.clone();
        Box::pin(self.write(move |conn| {
            let Some(record) = load_instance(conn, id.as_str())? else {
                return Ok(EventOutcome::NotFound);
            };
            if record.status.is_finished() {
                return Ok(EventOutcome::Finished(record.status));
            }
            let at_ms = now_ms();
            conn.prepare_cached(
                "INSERT INTO inbox (instance_id, kind, name, ok, payload, at_ms) VALUES (?1, 'event', ?2, 1, ?3, ?4)",
            )?
            .execute(params![id.as_str(), name, data, at_ms])?;
            Ok(EventOutcome::Delivered(InboxMessage {
                arrival: conn.last_insert_rowid(),
                at_ms,
                body: InboxBody::Event {
                    name: name.clone(),
                    data: data.clone(),
                },
            }))
        }))
    }

    fn terminate(
        &self,
        id: &InstanceId,
        output: String,
    ) -> StorageFuture<'_, (ChangeOutcome, Effects)> {
        let id = id.clone();
        Box::pin(self.write(move |conn| {
            if let Err(outcome) = load_unfinished(conn, &id)? {
                return Ok((outcome, Effects::default()));
            }
            let mut effects = Effects::default();
            tasks::terminate_tree(conn, &id, &output, now_ms(), &mut effects)?;
            Ok((ChangeOutcome::Done, effects))
        }))
    }

    fn set_digest(&self, id: &InstanceId, digest: String) -> StorageFuture<'_, ChangeOutcome> {
        let id = id.clone();
        Box::pin(self.write(move |conn| {
            if let Err(outcome) = load_unfinished(conn, &id)? {
                return Ok(outcome);
            }
            conn.execute(
                "UPDATE instances SET digest = ?2, updated_ms = ?3 WHERE id = ?1",
                params![id.as_str(), digest, now_ms()],
            )?;
            Ok(ChangeOutcome::Done)
        }))
    }

    fn set_suspended(&self, id: &InstanceId, suspended: bool) -> StorageFuture<'_, ChangeOutcome> {
        let id = id.clone();
        Box::pin(self.write(move |conn| {
            let record = match load_unfinished(conn, &id)? {
                Ok(record) => record,
                Err(outcome) => return Ok(outcome),
            };
            let (from, to): (&[&str], &str) = if suspended {
                (&["Pending", "Running"], "Suspended")
            } else {
                (&["Suspended"], "Running")
            };
            if from.contains(&record.status.as_str()) {
                conn.execute(
                    "UPDATE instances SET status = ?2, updated_ms = ?3 WHERE id = ?1",
                    params![id.as_str(), to, now_ms()],
                )?;
            }
            Ok(ChangeOutcome::Done)
        }))
    }

    fn purge(&self, id: &InstanceId) -> StorageFuture<'_, ChangeOutcome> {
        let id = id.clone();
        Box::pin(self.write(move |conn| {
            let Some(record) = load_instance(conn, id.as_str())? else {
                return Ok(ChangeOutcome::NotFound);
            };
            if !record.status.is_finished() {
                return Ok(ChangeOutcome::NotFinished(record.status));
            }
            conn.execute("DELETE FROM instances WHERE id = ?1", [id.as_str()])?;
            Ok(ChangeOutcome::Done)
        }))
    }

    fn purge_many(&self, filter: InstanceFilter) -> StorageFuture<'_, u64> {
        Box::pin(self.write(move |conn| {
            let mut args = Vec::new();
            let sql = format!(
                "DELETE FROM instances WHERE {} AND status IN ('Completed', 'Failed', 'Terminated')",
                filter_sql(&filter, &mut args)
            );
            conn.execute(&sql, rusqlite::params_from_iter(args))
                .map(|n| n as u64)
        }))
    }

    fn unfinished_instances(&self) -> StorageFuture<'_, Vec<InstanceId>> {
        Box::pin(self.read(|conn| {
            let mut stmt = conn.prepare(
                "SELECT id FROM instances WHERE status IN ('Pending', 'Running') ORDER BY created_ms",
            )?;
            let ids = stmt
                .query_map([], |r| r.get::<_, String>(0))?
                .filter_map(|id| id.map(|id| InstanceId::parse(&id).ok()).transpose())
                .collect::<rusqlite::Result<_>>()?;
            Ok(ids)
        }))
    }

    fn claim_work(
        &self,
        expired_by_ms: i64,
        lease_until_ms: i64,
        limit: usize,
    ) -> StorageFuture<'_, Vec<WorkItem>> {
        Box::pin(self.write(move |conn| claim_expired(conn, expired_by_ms, lease_until_ms, limit)))
    }

    fn send_to_entities(&self, ops: Vec<NewEntityOp>) -> StorageFuture<'_, Effects> {
        Box::pin(self.write(move |conn| {
            let mut effects = Effects::default();
            entities::enqueue(conn, &ops, now_ms(), &mut effects)?;
            Ok(effects)
        }))
    }

    fn entity_batch(&self, id: &EntityId, limit: usize) -> StorageFuture<'_, EntityBatch> {
        let id = id.clone();
        Box::pin(self.read(move |conn| entities::load_batch(conn, &id, limit)))
    }

    fn commit_entity_batch(&self, commit: EntityCommit) -> StorageFuture<'_, Effects> {
        Box::pin(self.write(move |conn| entities::commit_batch(conn, commit.clone(), now_ms())))
    }

    fn entity(&self, id: &EntityId) -> StorageFuture<'_, Option<EntityRecord>> {
        let id = id.clone();
        Box::pin(self.read(move |conn| entities::load_entity(conn, &id)))
    }

    fn list_entities(
        &self,
        name: &str,
        top: usize,
        continuation: Option<String>,
    ) -> StorageFuture<'_, EntityPage> {
        let name = name.to_owned();
        Box::pin(self.read(move |conn| entities::list(conn, &name, top, continuation.as_deref())))
    }

    fn entities_with_messages(
        &self,
        after: Option<EntityId>,
        limit: usize,
    ) -> StorageFuture<'_, Vec<EntityId>> {
        Box::pin(self.read(move |conn| entities::with_queued_ops(conn, after.as_ref(), limit)))
    }
}
