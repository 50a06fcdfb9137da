//! What happens around a task in SQLite beyond the episode that scheduled
//! it: completions, durable timers, retries after backoff, children
//! (sub-orchestrations) and the ends of instances (finish, terminate,
//! continue-as-new).
//!
//! Invariants:
//! - A task is answered at most once: its completion is one inbox row
//!   (unique per instance and task), written in the same transaction that
//!   ends the task (deletes its work item or timer, finishes its child).
//! - A failure of a task with a retry policy that allows another attempt is
//!   not answered: a failed-attempt row and a timer for the next attempt
//!   are written instead.
//! - Ending an instance (finish, terminate, continue-as-new) deletes its
//!   work items and timers in the same transaction, so nothing of an ended
//!   generation fires or completes later.

use rusqlite::{Connection, OptionalExtension, params};

use super::durable::claim_one;
use perdure_records::GuestError;
use perdure_records::{
    ContinueAsNew, Effects, InboxBody, InboxMessage, InstanceId, NewChild, RuntimeStatus,
    TaskOutcome, WorkItem,
};
use perdure_storage::columns::{child_error, outcome_columns, retry_delay};

/// Timers fired per write.
pub(super) const FIRE_BATCH: usize = 1000;

/// The status of instance `id`, if it exists.
fn status_of(conn: &Connection, id: &str) -> rusqlite::Result<Option<RuntimeStatus>> {
    let status: Option<String> = conn
        .prepare_cached("SELECT status FROM instances WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    Ok(status.as_deref().and_then(RuntimeStatus::parse))
}

/// Makes `id` free for a new instance: a finished instance with that id is
/// deleted with its history (ids of finished instances may be reused). An
/// unfinished one keeps it: its status is the error and nothing changes.
/// Returns the generation the new instance starts at: one past the
/// deleted one's, so that it derives other child ids and guids than the
/// run it replaces (whose children may still run).
pub(super) fn free_id(conn: &Connection, id: &str) -> rusqlite::Result<Result<u64, RuntimeStatus>> {
    let found: Option<(String, i64)> = conn
        .prepare_cached("SELECT status, generation FROM instances WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((status, generation)) = found else {
        return Ok(Ok(0));
    };
    match RuntimeStatus::parse(&status) {
        Some(status) if !status.is_finished() => Ok(Err(status)),
        _ => {
            conn.prepare_cached("DELETE FROM instances WHERE id = ?1")?
                .execute([id])?;
            Ok(Ok(generation.max(0) as u64 + 1))
        }
    }
}

/// Answers task `task_id` of `instance` (an inbox row); `None` if it was
/// answered already.
fn insert_completion(
    conn: &Connection,
    instance: &InstanceId,
    task_id: u64,
    outcome: TaskOutcome,
    now: i64,
) -> rusqlite::Result<Option<InboxMessage>> {
    let (ok, payload) = outcome_columns(&outcome);
    let inserted = conn
        .prepare_cached(
            "INSERT INTO inbox (instance_id, kind, task_id, ok, payload, at_ms)
             VALUES (?1, 'task', ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
        )?
        .execute(params![instance.as_str(), task_id as i64, ok, payload, now])?;
    if inserted == 0 {
        return Ok(None);
    }
    Ok(Some(InboxMessage {
        arrival: conn.last_insert_rowid(),
        at_ms: now,
        body: InboxBody::TaskCompleted { task_id, outcome },
    }))
}

/// Answers a task and queues the message for delivery.
pub(super) fn complete(
    conn: &Connection,
    instance: &InstanceId,
    task_id: u64,
    outcome: TaskOutcome,
    now: i64,
    effects: &mut Effects,
) -> rusqlite::Result<()> {
    if let Some(message) = insert_completion(conn, instance, task_id, outcome, now)? {
        effects.messages.push((instance.clone(), message));
    }
    Ok(())
}

/// What a timer does when it fires.
#[derive(Debug, Clone, Copy)]
pub(super) enum Fires {
    /// Completes this task of the instance.
    Task(u64),
    /// Runs this work item (of this task) again.
    Retry { task: u64, work_item: i64 },
    /// Runs the failed instance again.
    Restart,
}

pub(super) fn insert_timer(
    conn: &Connection,
    instance: &str,
    fires: Fires,
    fire_at_ms: i64,
    now: i64,
    effects: &mut Effects,
) -> rusqlite::Result<()> {
    let (kind, task_id, work_item) = match fires {
        Fires::Task(task) => ("timer", Some(task), None),
        Fires::Retry { task, work_item } => ("retry", Some(task), Some(work_item)),
        Fires::Restart => ("restart", None, None),
    };
    conn.prepare_cached(
        "INSERT INTO timers (instance_id, kind, task_id, work_item, fire_at_ms, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        instance,
        kind,
        task_id.map(|t| t as i64),
        work_item,
        fire_at_ms,
        now
    ])?;
    effects.timer(fire_at_ms);
    Ok(())
}

pub(super) fn delete_timer(
    conn: &Connection,
    instance: &str,
    task_id: u64,
) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM timers WHERE instance_id = ?1 AND task_id = ?2")?
        .execute(params![instance, task_id as i64])?;
    Ok(())
}

/// Records a failed attempt of a retrying task and when the next is due.
fn record_attempt(
    conn: &Connection,
    instance: &str,
    task_id: u64,
    attempt: u32,
    error: &GuestError,
    now: i64,
    retry_at: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO task_attempts (instance_id, task_id, attempt, error, failed_ms, retry_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        instance,
        task_id as i64,
        attempt,
        serde_json::to_string(error).unwrap_or_else(|_| "{}".to_owned()),
        now,
        retry_at
    ])?;
    Ok(())
}

/// Ends a work item with `outcome`: answers its task, or, for a failure
/// its retry policy allows to retry, schedules the next attempt. `None` if
/// the item was gone (completed by a duplicate run, or its instance ended).
pub(super) fn finish_work(
    conn: &Connection,
    item: &WorkItem,
    outcome: TaskOutcome,
    now: i64,
    lease_ms: i64,
) -> rusqlite::Result<Option<Effects>> {
    let mut effects = Effects::default();
    let row: Option<(Option<String>, u32, i64)> = conn
        .prepare_cached("SELECT retry, failures, created_ms FROM work_items WHERE id = ?1")?
        .query_row([item.id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((policy, failures, created_ms)) = row else {
        // Completed already (a duplicate run) or its instance ended.
        return Ok(None);
    };
    if let Err(error) = &outcome {
        let failures = failures + 1;
        if let Some(delay) = retry_delay(policy.as_deref(), failures, created_ms, now) {
            let retry_at = now.saturating_add(delay);
            record_attempt(
                conn,
                item.instance_id.as_str(),
                item.task_id,
                failures,
                error,
                now,
                retry_at,
            )?;
            // The lease outlasts the wait, so the lease sweeper leaves the
            // item to its timer.
            conn.prepare_cached(
                "UPDATE work_items SET failures = ?2, lease_until_ms = ?3 WHERE id = ?1",
            )?
            .execute(params![
                item.id,
                failures,
                retry_at.saturating_add(lease_ms)
            ])?;
            let instance = item.instance_id.as_str();
            let fires = Fires::Retry {
                task: item.task_id,
                work_item: item.id,
            };
            insert_timer(conn, instance, fires, retry_at, now, &mut effects)?;
            return Ok(Some(effects));
        }
    }
    conn.prepare_cached("DELETE FROM work_items WHERE id = ?1")?
        .execute([item.id])?;
    complete(
        conn,
        &item.instance_id,
        item.task_id,
        outcome,
        now,
        &mut effects,
    )?;
    Ok(Some(effects))
}

/// Creates the children an episode starts. A child whose id is taken by an
/// unfinished instance is not created; its task fails with
/// `already-exists`.
pub(super) fn start_children(
    conn: &Connection,
    parent: Option<&InstanceId>,
    children: Vec<NewChild>,
    now: i64,
    effects: &mut Effects,
) -> rusqlite::Result<()> {
    for child in children {
        let Ok(generation) = free_id(conn, child.id.as_str())? else {
            if let (Some(parent), Some(task)) = (parent, child.task_id) {
                let error = GuestError::new(
                    "already-exists",
                    format!("instance {} already exists and has not finished", child.id),
                );
                complete(conn, parent, task, Err(error), now, effects)?;
            }
            continue;
        };
        conn.prepare_cached(
            "INSERT INTO instances (id, name, app, digest, status, input, parent_id, parent_task,
                                    retry, created_ms, updated_ms, started_ms, generation)
             VALUES (?1, ?2, ?3, ?4, 'Pending', ?5, ?6, ?7, ?8, ?9, ?9, ?9, ?10)",
        )?
        .execute(params![
            child.id.as_str(),
            child.name,
            child.app,
            child.digest,
            child.input,
            parent.map(InstanceId::as_str),
            child.task_id.map(|t| t as i64),
            child.retry,
            now,
            generation as i64
        ])?;
        effects.wake.push(child.id);
    }
    Ok(())
}

/// Deletes what an ended generation of an instance left running, and
/// releases the entities it holds.
fn drop_pending(conn: &Connection, id: &str, effects: &mut Effects) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM work_items WHERE instance_id = ?1")?
        .execute([id])?;
    conn.prepare_cached("DELETE FROM timers WHERE instance_id = ?1")?
        .execute([id])?;
    super::entities::release_instance(conn, id, effects)
}

/// Called when instance `id` ends with `status`: if it is a child awaited
/// by its parent, answers the parent's task, or restarts the child after
/// backoff if it failed and its retry policy allows another attempt.
pub(super) fn on_instance_end(
    conn: &Connection,
    id: &str,
    status: RuntimeStatus,
    output: Option<&str>,
    now: i64,
    effects: &mut Effects,
) -> rusqlite::Result<()> {
    drop_pending(conn, id, effects)?;
    type Row = (
        String,
        Option<String>,
        Option<i64>,
        Option<String>,
        u32,
        i64,
    );
    let row: Option<Row> = conn
        .prepare_cached(
            "SELECT name, parent_id, parent_task, retry, failures, created_ms FROM instances WHERE id = ?1",
        )?
        .query_row([id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
        })
        .optional()?;
    let Some((name, Some(parent), Some(task), policy, failures, created_ms)) = row else {
        return Ok(());
    };
    let Ok(parent) = InstanceId::parse(&parent) else {
        return Ok(());
    };
    let parent_waits = status_of(conn, parent.as_str())?.is_some_and(|s| !s.is_finished());
    if !parent_waits {
        return Ok(());
    }
    let task = task as u64;
    let outcome = match status {
        RuntimeStatus::Completed => Ok(output.unwrap_or("null").to_owned()),
        _ => Err(child_error(id, &name, status, output)),
    };
    if let Err(error) = &outcome
        && status == RuntimeStatus::Failed
    {
        let failures = failures + 1;
        if let Some(delay) = retry_delay(policy.as_deref(), failures, created_ms, now) {
            let retry_at = now.saturating_add(delay);
            record_attempt(conn, parent.as_str(), task, failures, error, now, retry_at)?;
            conn.prepare_cached("UPDATE instances SET failures = ?2 WHERE id = ?1")?
                .execute(params![id, failures])?;
            return insert_timer(conn, id, Fires::Restart, retry_at, now, effects);
        }
    }
    complete(conn, &parent, task, outcome, now, effects)
}

/// The largest inbox arrival handed out so far.
fn last_arrival(conn: &Connection) -> rusqlite::Result<i64> {
    Ok(conn
        .prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'inbox'")?
        .query_row([], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

/// Empties what the current generation of `id` recorded (journal, failed
/// attempts) and makes it Pending again, starting now; messages that
/// arrived before now belong to the old generation unless kept in its
/// inbox. Callers delete the inbox rows that do not carry over.
fn begin_generation(
    conn: &Connection,
    id: &str,
    now: i64,
    effects: &mut Effects,
) -> rusqlite::Result<()> {
    drop_pending(conn, id, effects)?;
    conn.prepare_cached("DELETE FROM journal WHERE instance_id = ?1")?
        .execute([id])?;
    conn.prepare_cached("DELETE FROM task_attempts WHERE instance_id = ?1")?
        .execute([id])?;
    conn.prepare_cached(
        "UPDATE instances SET status = 'Pending', output = NULL, updated_ms = ?2,
             started_ms = ?2, arrival_floor = ?3, generation = generation + 1 WHERE id = ?1",
    )?
    .execute(params![id, now, last_arrival(conn)?])?;
    Ok(())
}

/// Starts a new generation of `id` on `input`: empties its journal, its
/// answered tasks and the dropped events, and detaches its children.
pub(super) fn continue_as_new(
    conn: &Connection,
    id: &str,
    next: &ContinueAsNew,
    custom_status: Option<&str>,
    now: i64,
    effects: &mut Effects,
) -> rusqlite::Result<()> {
    begin_generation(conn, id, now, effects)?;
    conn.prepare_cached("DELETE FROM inbox WHERE instance_id = ?1 AND kind = 'task'")?
        .execute([id])?;
    let mut drop_event =
        conn.prepare_cached("DELETE FROM inbox WHERE arrival = ?1 AND instance_id = ?2")?;
    for arrival in &next.dropped_events {
        drop_event.execute(params![arrival, id])?;
    }
    conn.prepare_cached("UPDATE instances SET parent_task = NULL WHERE parent_id = ?1")?
        .execute([id])?;
    conn.prepare_cached("UPDATE instances SET input = ?2, custom_status = ?3 WHERE id = ?1")?
        .execute(params![id, next.input, custom_status])?;
    Ok(())
}

/// Runs a failed child again: same id and input, empty history.
fn restart(conn: &Connection, id: &str, now: i64, effects: &mut Effects) -> rusqlite::Result<()> {
    if status_of(conn, id)? != Some(RuntimeStatus::Failed) {
        return Ok(());
    }
    begin_generation(conn, id, now, effects)?;
    conn.prepare_cached("DELETE FROM inbox WHERE instance_id = ?1")?
        .execute([id])?;
    conn.prepare_cached("UPDATE instances SET custom_status = NULL WHERE id = ?1")?
        .execute([id])?;
    if let Ok(id) = InstanceId::parse(id) {
        effects.wake.push(id);
    }
    Ok(())
}

/// The earliest pending timer.
pub(super) fn next_due(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT MIN(fire_at_ms) FROM timers")?
        .query_row([], |r| r.get(0))
}

/// Fires up to [`FIRE_BATCH`] timers due by `now`.
pub(super) fn fire_due(conn: &Connection, now: i64, lease_ms: i64) -> rusqlite::Result<Effects> {
    type Due = (i64, String, String, Option<i64>, Option<i64>);
    let due: Vec<Due> = conn
        .prepare_cached(
            "SELECT id, instance_id, kind, task_id, work_item FROM timers
             WHERE fire_at_ms <= ?1 ORDER BY fire_at_ms, id LIMIT ?2",
        )?
        .query_map(params![now, FIRE_BATCH as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut effects = Effects::default();
    let mut delete = conn.prepare_cached("DELETE FROM timers WHERE id = ?1")?;
    for (timer, instance, kind, task_id, work_item) in due {
        delete.execute([timer])?;
        match (kind.as_str(), task_id, work_item) {
            ("timer", Some(task), _) => {
                if let Ok(instance) = InstanceId::parse(&instance) {
                    complete(
                        conn,
                        &instance,
                        task as u64,
                        Ok("null".into()),
                        now,
                        &mut effects,
                    )?;
                }
            }
            ("retry", _, Some(item)) => {
                if let Some(item) = claim_one(conn, item, now.saturating_add(lease_ms))? {
                    effects.work.push(item);
                }
            }
            ("restart", _, _) => restart(conn, &instance, now, &mut effects)?,
            _ => tracing::warn!(timer, kind, "dropping a timer of unknown kind"),
        }
    }
    Ok(effects)
}

/// Terminates `id` and its unfinished descendants; answers the parent of
/// `id` if it awaits it.
pub(super) fn terminate_tree(
    conn: &Connection,
    id: &InstanceId,
    output: &str,
    now: i64,
    effects: &mut Effects,
) -> rusqlite::Result<()> {
    let mut stack = vec![id.clone()];
    while let Some(next) = stack.pop() {
        conn.prepare_cached(
            "UPDATE instances SET status = 'Terminated', output = ?2, updated_ms = ?3 WHERE id = ?1",
        )?
        .execute(params![next.as_str(), output, now])?;
        if &next == id {
            on_instance_end(
                conn,
                next.as_str(),
                RuntimeStatus::Terminated,
                Some(output),
                now,
                effects,
            )?;
        } else {
            drop_pending(conn, next.as_str(), effects)?;
        }
        let children: Vec<String> = conn
            .prepare_cached(
                "SELECT id FROM instances WHERE parent_id = ?1
                 AND status NOT IN ('Completed', 'Failed', 'Terminated')",
            )?
            .query_map([next.as_str()], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        stack.extend(children.iter().filter_map(|c| InstanceId::parse(c).ok()));
        effects.cancelled.push(next);
    }
    Ok(())
}
