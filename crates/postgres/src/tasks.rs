//! What happens around a task in PostgreSQL beyond the episode that
//! scheduled it: completions, durable timers, retries after backoff,
//! children (sub-orchestrations) and the ends of instances (finish,
//! terminate, continue-as-new).
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
//! - A new generation's arrival floor is the last arrival the inbox's
//!   sequence handed out, whether or not its row still exists (as SQLite's
//!   `sqlite_sequence`).

use deadpool_postgres::GenericClient;
use perdure_records::{
    ContinueAsNew, Effects, GuestError, InboxBody, InboxMessage, InstanceId, NewChild,
    RuntimeStatus, TaskOutcome, WorkItem,
};
use perdure_storage::columns::{child_error, outcome_columns, retry_delay};
use tokio_postgres::Error;

use crate::durable::{Id, Param, U32, claim_one, limit, pipeline};

/// Timers fired per write.
pub(crate) const FIRE_BATCH: usize = 1000;

/// The status of instance `id`, if it exists (and is a known one).
async fn status_of<C: GenericClient>(c: &C, id: &str) -> Result<Option<RuntimeStatus>, Error> {
    let select = c
        .prepare_cached("SELECT status FROM instances WHERE id = $1")
        .await?;
    let status: Option<String> = c
        .query_opt(&select, &[&id])
        .await?
        .map(|row| row.try_get(0))
        .transpose()?;
    Ok(status.as_deref().and_then(RuntimeStatus::parse))
}

/// Makes `id` free for a new instance: a finished instance with that id is
/// deleted with its history (ids of finished instances may be reused). An
/// unfinished one keeps it: its status is the error and nothing changes.
/// Returns the generation the new instance starts at: one past the
/// deleted one's, so that it derives other child ids and guids than the
/// run it replaces (whose children may still run).
pub(crate) async fn free_id<C: GenericClient>(
    c: &C,
    id: &str,
) -> Result<Result<u64, RuntimeStatus>, Error> {
    let select = c
        .prepare_cached("SELECT status, generation FROM instances WHERE id = $1")
        .await?;
    let Some(row) = c.query_opt(&select, &[&id]).await? else {
        return Ok(Ok(0));
    };
    let status: &str = row.try_get(0)?;
    let generation: i64 = row.try_get(1)?;
    match RuntimeStatus::parse(status) {
        Some(status) if !status.is_finished() => Ok(Err(status)),
        _ => {
            let delete = c
                .prepare_cached("DELETE FROM instances WHERE id = $1")
                .await?;
            c.execute(&delete, &[&id]).await?;
            Ok(Ok(generation.max(0) as u64 + 1))
        }
    }
}

/// A task to answer: its instance, the task, and the outcome.
pub(crate) type Completion = (InstanceId, u64, TaskOutcome);

/// Answers tasks (an inbox row each, in the order given, one pipeline) and
/// queues the messages for delivery; a task answered already, or of an
/// instance that is gone, is skipped.
///
/// Each row is inserted under a lock on its instance's row, taken before
/// its arrival is drawn: arrivals of one instance then commit in their
/// order even when several hosts write to its inbox, so its owner never
/// reads a later arrival before an earlier one. [`crate::durable`]'s
/// events do the same.
pub(crate) async fn complete_all<C: GenericClient>(
    c: &C,
    completions: Vec<Completion>,
    now: i64,
    effects: &mut Effects,
) -> Result<(), Error> {
    if completions.is_empty() {
        return Ok(());
    }
    let insert = c
        .prepare_cached(
            "INSERT INTO inbox (instance_id, kind, task_id, ok, payload, at_ms)
             SELECT id, 'task', $2, $3, $4, $5 FROM instances WHERE id = $1 FOR NO KEY UPDATE
             ON CONFLICT DO NOTHING RETURNING arrival",
        )
        .await?;
    let columns: Vec<(&str, i64, bool, String)> = completions
        .iter()
        .map(|(instance, task, outcome)| {
            let (ok, payload) = outcome_columns(outcome);
            (instance.as_str(), *task as i64, ok, payload)
        })
        .collect();
    let rows: Vec<[Param<'_>; 5]> = columns
        .iter()
        .map(|(instance, task, ok, payload)| [instance as Param<'_>, task, ok, payload, &now])
        .collect();
    let inserted = pipeline(rows.iter().map(|row| c.query_opt(&insert, &row[..]))).await?;
    for ((instance, task_id, outcome), row) in completions.into_iter().zip(inserted) {
        // No row: answered already, or the instance is gone.
        let Some(row) = row else { continue };
        let message = InboxMessage {
            arrival: row.try_get(0)?,
            at_ms: now,
            body: InboxBody::TaskCompleted { task_id, outcome },
        };
        effects.messages.push((instance, message));
    }
    Ok(())
}

/// Answers a task and queues the message for delivery.
pub(crate) async fn complete<C: GenericClient>(
    c: &C,
    instance: &InstanceId,
    task_id: u64,
    outcome: TaskOutcome,
    now: i64,
    effects: &mut Effects,
) -> Result<(), Error> {
    complete_all(c, vec![(instance.clone(), task_id, outcome)], now, effects).await
}

/// What a timer does when it fires.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Fires {
    /// Completes this task of the instance.
    Task(u64),
    /// Runs this work item (of this task) again.
    Retry { task: u64, work_item: i64 },
    /// Runs the failed instance again.
    Restart,
}

/// Sets timers of `instance` (what each does, and when), one pipeline.
pub(crate) async fn insert_timers<C: GenericClient>(
    c: &C,
    instance: &str,
    timers: &[(Fires, i64)],
    now: i64,
    effects: &mut Effects,
) -> Result<(), Error> {
    if timers.is_empty() {
        return Ok(());
    }
    let insert = c
        .prepare_cached(
            "INSERT INTO timers (instance_id, kind, task_id, work_item, fire_at_ms, created_ms)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .await?;
    let columns: Vec<(&str, Option<i64>, Option<i64>, i64)> = timers
        .iter()
        .map(|(fires, fire_at_ms)| {
            let (kind, task_id, work_item) = match *fires {
                Fires::Task(task) => ("timer", Some(task), None),
                Fires::Retry { task, work_item } => ("retry", Some(task), Some(work_item)),
                Fires::Restart => ("restart", None, None),
            };
            (kind, task_id.map(|t| t as i64), work_item, *fire_at_ms)
        })
        .collect();
    let rows: Vec<[Param<'_>; 6]> = columns
        .iter()
        .map(|(kind, task_id, work_item, fire_at_ms)| {
            [
                &instance as Param<'_>,
                kind,
                task_id,
                work_item,
                fire_at_ms,
                &now,
            ]
        })
        .collect();
    pipeline(rows.iter().map(|row| c.execute(&insert, &row[..]))).await?;
    for (_, fire_at_ms) in timers {
        effects.timer(*fire_at_ms);
    }
    Ok(())
}

/// Sets one timer of `instance`.
pub(crate) async fn insert_timer<C: GenericClient>(
    c: &C,
    instance: &str,
    fires: Fires,
    fire_at_ms: i64,
    now: i64,
    effects: &mut Effects,
) -> Result<(), Error> {
    insert_timers(c, instance, &[(fires, fire_at_ms)], now, effects).await
}

/// Deletes the timers of these tasks of `instance`.
pub(crate) async fn delete_timers<C: GenericClient>(
    c: &C,
    instance: &str,
    tasks: &[u64],
) -> Result<(), Error> {
    if tasks.is_empty() {
        return Ok(());
    }
    let delete = c
        .prepare_cached("DELETE FROM timers WHERE instance_id = $1 AND task_id = ANY($2)")
        .await?;
    let tasks: Vec<i64> = tasks.iter().map(|t| *t as i64).collect();
    c.execute(&delete, &[&instance, &tasks]).await?;
    Ok(())
}

/// Records a failed attempt of a retrying task and when the next is due.
async fn record_attempt<C: GenericClient>(
    c: &C,
    instance: &str,
    task_id: u64,
    attempt: u32,
    error: &GuestError,
    now: i64,
    retry_at: i64,
) -> Result<(), Error> {
    let insert = c
        .prepare_cached(
            "INSERT INTO task_attempts (instance_id, task_id, attempt, error, failed_ms, retry_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .await?;
    let error = serde_json::to_string(error).unwrap_or_else(|_| "{}".to_owned());
    c.execute(
        &insert,
        &[
            &instance,
            &(task_id as i64),
            &i64::from(attempt),
            &error,
            &now,
            &retry_at,
        ],
    )
    .await?;
    Ok(())
}

/// Ends a work item with `outcome`: answers its task, or, for a failure
/// its retry policy allows to retry, schedules the next attempt. `None` if
/// the item was gone (completed by a duplicate run, or its instance ended).
pub(crate) async fn finish_work<C: GenericClient>(
    c: &C,
    item: &WorkItem,
    outcome: TaskOutcome,
    now: i64,
    lease_ms: i64,
) -> Result<Option<Effects>, Error> {
    let mut effects = Effects::default();
    let select = c
        .prepare_cached("SELECT retry, failures, created_ms FROM work_items WHERE id = $1")
        .await?;
    let Some(row) = c.query_opt(&select, &[&item.id]).await? else {
        // Completed already (a duplicate run) or its instance ended.
        return Ok(None);
    };
    let policy: Option<String> = row.try_get(0)?;
    let failures = row.try_get::<_, U32>(1)?.0;
    let created_ms: i64 = row.try_get(2)?;
    let instance = item.instance_id.as_str();
    if let Err(error) = &outcome {
        let failures = failures + 1;
        if let Some(delay) = retry_delay(policy.as_deref(), failures, created_ms, now) {
            let retry_at = now.saturating_add(delay);
            let update = c
                .prepare_cached(
                    "UPDATE work_items SET failures = $2, lease_until_ms = $3 WHERE id = $1",
                )
                .await?;
            // The lease outlasts the wait, so the lease sweeper leaves the
            // item to its timer.
            let lease_until = retry_at.saturating_add(lease_ms);
            let fires = Fires::Retry {
                task: item.task_id,
                work_item: item.id,
            };
            let failed = i64::from(failures);
            let leased: [Param<'_>; 3] = [&item.id, &failed, &lease_until];
            tokio::try_join!(
                biased;
                record_attempt(c, instance, item.task_id, failures, error, now, retry_at),
                c.execute(&update, &leased),
                insert_timer(c, instance, fires, retry_at, now, &mut effects),
            )?;
            return Ok(Some(effects));
        }
    }
    let delete = c
        .prepare_cached("DELETE FROM work_items WHERE id = $1")
        .await?;
    let by_id: [Param<'_>; 1] = [&item.id];
    tokio::try_join!(
        biased;
        c.execute(&delete, &by_id),
        complete(c, &item.instance_id, item.task_id, outcome, now, &mut effects),
    )?;
    Ok(Some(effects))
}

/// Creates the children an episode starts. A child whose id is taken by an
/// unfinished instance is not created; its task fails with
/// `already-exists`.
pub(crate) async fn start_children<C: GenericClient>(
    c: &C,
    parent: Option<&InstanceId>,
    children: Vec<NewChild>,
    now: i64,
    effects: &mut Effects,
) -> Result<(), Error> {
    for child in children {
        let Ok(generation) = free_id(c, child.id.as_str()).await? else {
            if let (Some(parent), Some(task)) = (parent, child.task_id) {
                let error = GuestError::new(
                    "already-exists",
                    format!("instance {} already exists and has not finished", child.id),
                );
                complete(c, parent, task, Err(error), now, effects).await?;
            }
            continue;
        };
        let insert = c
            .prepare_cached(
                "INSERT INTO instances (id, name, app, digest, status, input, parent_id, parent_task,
                                        retry, created_ms, updated_ms, started_ms, generation)
                 VALUES ($1, $2, $3, $4, 'Pending', $5, $6, $7, $8, $9, $9, $9, $10)",
            )
            .await?;
        c.execute(
            &insert,
            &[
                &child.id.as_str(),
                &child.name,
                &child.app,
                &child.digest,
                &child.input,
                &parent.map(InstanceId::as_str),
                &child.task_id.map(|t| t as i64),
                &child.retry,
                &now,
                &(generation as i64),
            ],
        )
        .await?;
        effects.wake.push(child.id);
    }
    Ok(())
}

/// Deletes what an ended generation of an instance left running, and
/// releases the entities it holds.
async fn drop_pending<C: GenericClient>(
    c: &C,
    id: &str,
    effects: &mut Effects,
) -> Result<(), Error> {
    let work = c
        .prepare_cached("DELETE FROM work_items WHERE instance_id = $1")
        .await?;
    let timers = c
        .prepare_cached("DELETE FROM timers WHERE instance_id = $1")
        .await?;
    let by_id: [Param<'_>; 1] = [&id];
    tokio::try_join!(
        biased;
        c.execute(&work, &by_id),
        c.execute(&timers, &by_id),
        crate::entities::release_instance(c, id, effects),
    )?;
    Ok(())
}

/// Called when instance `id` ends with `status`: if it is a child awaited
/// by its parent, answers the parent's task, or restarts the child after
/// backoff if it failed and its retry policy allows another attempt.
pub(crate) async fn on_instance_end<C: GenericClient>(
    c: &C,
    id: &str,
    status: RuntimeStatus,
    output: Option<&str>,
    now: i64,
    effects: &mut Effects,
) -> Result<(), Error> {
    // The child's row and its parent's status, read with the deletes
    // (which change neither).
    let select = c
        .prepare_cached(
            "SELECT c.name, c.parent_id, c.parent_task, c.retry, c.failures, c.created_ms, p.status
             FROM instances c LEFT JOIN instances p ON p.id = c.parent_id WHERE c.id = $1",
        )
        .await?;
    let by_id: [Param<'_>; 1] = [&id];
    let (_, row) = tokio::try_join!(
        biased;
        drop_pending(c, id, effects),
        c.query_opt(&select, &by_id),
    )?;
    let Some(row) = row else {
        return Ok(());
    };
    let name: String = row.try_get(0)?;
    let parent: Option<String> = row.try_get(1)?;
    let task: Option<i64> = row.try_get(2)?;
    let policy: Option<String> = row.try_get(3)?;
    let failures = row.try_get::<_, U32>(4)?.0;
    let created_ms: i64 = row.try_get(5)?;
    let parent_status: Option<String> = row.try_get(6)?;
    let (Some(parent), Some(task)) = (parent, task) else {
        return Ok(());
    };
    let Ok(parent) = InstanceId::parse(&parent) else {
        return Ok(());
    };
    let parent_waits = parent_status
        .as_deref()
        .and_then(RuntimeStatus::parse)
        .is_some_and(|s| !s.is_finished());
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
            let update = c
                .prepare_cached("UPDATE instances SET failures = $2 WHERE id = $1")
                .await?;
            let failed = i64::from(failures);
            let counted: [Param<'_>; 2] = [&id, &failed];
            tokio::try_join!(
                biased;
                record_attempt(c, parent.as_str(), task, failures, error, now, retry_at),
                c.execute(&update, &counted),
                insert_timer(c, id, Fires::Restart, retry_at, now, effects),
            )?;
            return Ok(());
        }
    }
    complete(c, &parent, task, outcome, now, effects).await
}

/// Empties what the current generation of `id` recorded (journal, failed
/// attempts) and makes it Pending again, starting now; messages that
/// arrived before now belong to the old generation unless kept in its
/// inbox (its arrival floor is the last arrival handed out so far).
/// Callers delete the inbox rows that do not carry over.
async fn begin_generation<C: GenericClient>(
    c: &C,
    id: &str,
    now: i64,
    effects: &mut Effects,
) -> Result<(), Error> {
    let journal = c
        .prepare_cached("DELETE FROM journal WHERE instance_id = $1")
        .await?;
    let attempts = c
        .prepare_cached("DELETE FROM task_attempts WHERE instance_id = $1")
        .await?;
    let update = c
        .prepare_cached(
            "UPDATE instances SET status = 'Pending', output = NULL, updated_ms = $2, started_ms = $2,
                 arrival_floor = (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM inbox_arrival_seq),
                 generation = generation + 1
             WHERE id = $1",
        )
        .await?;
    let by_id: [Param<'_>; 1] = [&id];
    let started: [Param<'_>; 2] = [&id, &now];
    tokio::try_join!(
        biased;
        drop_pending(c, id, effects),
        c.execute(&journal, &by_id),
        c.execute(&attempts, &by_id),
        c.execute(&update, &started),
    )?;
    Ok(())
}

/// Starts a new generation of `id` on `input`: empties its journal, its
/// answered tasks and the dropped events, and detaches its children.
pub(crate) async fn continue_as_new<C: GenericClient>(
    c: &C,
    id: &str,
    next: &ContinueAsNew,
    custom_status: Option<&str>,
    now: i64,
    effects: &mut Effects,
) -> Result<(), Error> {
    let tasks = c
        .prepare_cached("DELETE FROM inbox WHERE instance_id = $1 AND kind = 'task'")
        .await?;
    let events = c
        .prepare_cached("DELETE FROM inbox WHERE arrival = ANY($1) AND instance_id = $2")
        .await?;
    let detach = c
        .prepare_cached("UPDATE instances SET parent_task = NULL WHERE parent_id = $1")
        .await?;
    let update = c
        .prepare_cached("UPDATE instances SET input = $2, custom_status = $3 WHERE id = $1")
        .await?;
    let by_id: [Param<'_>; 1] = [&id];
    let dropped: [Param<'_>; 2] = [&next.dropped_events, &id];
    let input: [Param<'_>; 3] = [&id, &next.input, &custom_status];
    tokio::try_join!(
        biased;
        begin_generation(c, id, now, effects),
        c.execute(&tasks, &by_id),
        c.execute(&events, &dropped),
        c.execute(&detach, &by_id),
        c.execute(&update, &input),
    )?;
    Ok(())
}

/// Runs a failed child again: same id and input, empty history.
async fn restart<C: GenericClient>(
    c: &C,
    id: &str,
    now: i64,
    effects: &mut Effects,
) -> Result<(), Error> {
    if status_of(c, id).await? != Some(RuntimeStatus::Failed) {
        return Ok(());
    }
    let inbox = c
        .prepare_cached("DELETE FROM inbox WHERE instance_id = $1")
        .await?;
    let update = c
        .prepare_cached("UPDATE instances SET custom_status = NULL WHERE id = $1")
        .await?;
    let by_id: [Param<'_>; 1] = [&id];
    tokio::try_join!(
        biased;
        begin_generation(c, id, now, effects),
        c.execute(&inbox, &by_id),
        c.execute(&update, &by_id),
    )?;
    if let Ok(id) = InstanceId::parse(id) {
        effects.wake.push(id);
    }
    Ok(())
}

/// The earliest pending timer.
pub(crate) async fn next_due<C: GenericClient>(c: &C) -> Result<Option<i64>, Error> {
    let select = c
        .prepare_cached("SELECT MIN(fire_at_ms) FROM timers")
        .await?;
    c.query_one(&select, &[]).await?.try_get(0)
}

/// A due timer, deleted: id, instance, kind, task, work item.
type Due = (i64, String, String, Option<i64>, Option<i64>);

/// Fires up to [`FIRE_BATCH`] timers due by `now`, in due order.
pub(crate) async fn fire_due<C: GenericClient>(
    c: &C,
    now: i64,
    lease_ms: i64,
) -> Result<Effects, Error> {
    // Deleted all at once: firing one timer never reads another. Timers
    // another host is firing are skipped, not waited for.
    let take = c
        .prepare_cached(
            "DELETE FROM timers WHERE id IN
                 (SELECT id FROM timers WHERE fire_at_ms <= $1 ORDER BY fire_at_ms, id LIMIT $2
                  FOR UPDATE SKIP LOCKED)
             RETURNING fire_at_ms, id, instance_id, kind, task_id, work_item",
        )
        .await?;
    let rows = c.query(&take, &[&now, &limit(FIRE_BATCH)]).await?;
    let mut due: Vec<(i64, Due)> = rows
        .iter()
        .map(|r| {
            let due = (
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
                r.try_get(4)?,
                r.try_get(5)?,
            );
            Ok((r.try_get(0)?, due))
        })
        .collect::<Result<_, Error>>()?;
    due.sort_by_key(|(fire_at_ms, due)| (*fire_at_ms, due.0));
    let mut effects = Effects::default();
    // Timer tasks answered in one pipeline, up to the next timer of
    // another kind (a restart deletes its instance's inbox, so it must
    // come after the answers before it).
    let mut answers: Vec<Completion> = Vec::new();
    for (_, (timer, instance, kind, task_id, work_item)) in due {
        match (kind.as_str(), task_id, work_item) {
            ("timer", Some(task), _) => {
                if let Ok(instance) = InstanceId::parse(&instance) {
                    answers.push((instance, task as u64, Ok("null".into())));
                }
            }
            ("retry", _, Some(item)) => {
                complete_all(c, std::mem::take(&mut answers), now, &mut effects).await?;
                if let Some(item) = claim_one(c, item, now.saturating_add(lease_ms)).await? {
                    effects.work.push(item);
                }
            }
            ("restart", _, _) => {
                complete_all(c, std::mem::take(&mut answers), now, &mut effects).await?;
                restart(c, &instance, now, &mut effects).await?;
            }
            _ => tracing::warn!(timer, kind, "dropping a timer of unknown kind"),
        }
    }
    complete_all(c, answers, now, &mut effects).await?;
    Ok(effects)
}

/// Terminates `id` and its unfinished descendants; answers the parent of
/// `id` if it awaits it.
pub(crate) async fn terminate_tree<C: GenericClient>(
    c: &C,
    id: &InstanceId,
    output: &str,
    now: i64,
    effects: &mut Effects,
) -> Result<(), Error> {
    let update = c
        .prepare_cached(
            "UPDATE instances SET status = 'Terminated', output = $2, updated_ms = $3 WHERE id = $1",
        )
        .await?;
    let children = c
        .prepare_cached(
            "SELECT id FROM instances WHERE parent_id = $1
             AND status NOT IN ('Completed', 'Failed', 'Terminated')",
        )
        .await?;
    let mut stack = vec![id.clone()];
    while let Some(next) = stack.pop() {
        c.execute(&update, &[&next.as_str(), &output, &now]).await?;
        if &next == id {
            let status = RuntimeStatus::Terminated;
            on_instance_end(c, next.as_str(), status, Some(output), now, effects).await?;
        } else {
            drop_pending(c, next.as_str(), effects).await?;
        }
        for row in c.query(&children, &[&next.as_str()]).await? {
            // Ids that do not parse are left alone, as on SQLite.
            if let Ok(child) = row.try_get::<_, Id>(0) {
                stack.push(child.0);
            }
        }
        effects.cancelled.push(next);
    }
    Ok(())
}
