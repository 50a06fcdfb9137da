//! What operators read from PostgreSQL: counts of instances and of the
//! queues, the instances' guest log lines, and where their traces come
//! from.
//!
//! Invariants: an instance keeps at most [`MAX_LOG_LINES_PER_INSTANCE`] log
//! lines past its last trim plus [`LOG_TRIM_SLACK`]; lines of an instance that
//! is gone are not stored; a line's id grows with every line, in the order
//! the lines were logged.

use deadpool_postgres::GenericClient;
use perdure_records::{LogLine, RuntimeStatus, StoredLogLine};
use perdure_storage::columns::level_name;
use perdure_storage::{Backlog, LOG_TRIM_SLACK, MAX_LOG_LINES_PER_INSTANCE, TraceOrigin};
use tokio_postgres::Error;

use crate::durable::{Param, U32, limit, pipeline};

/// Counts of instances by status (from the `instances_by_status` index)
/// and of the work-item, timer and entity-message queues, one pipeline.
pub(crate) async fn backlog<C: GenericClient>(c: &C) -> Result<Backlog, Error> {
    let by_status = c
        .prepare_cached("SELECT status, COUNT(*) FROM instances GROUP BY status")
        .await?;
    let work = c
        .prepare_cached("SELECT COUNT(*), MIN(created_ms) FROM work_items")
        .await?;
    let timers = c.prepare_cached("SELECT COUNT(*) FROM timers").await?;
    let messages = c.prepare_cached("SELECT COUNT(*) FROM entity_ops").await?;
    let (by_status, work, timers, messages) = tokio::try_join!(
        biased;
        c.query(&by_status, &[]),
        c.query_one(&work, &[]),
        c.query_one(&timers, &[]),
        c.query_one(&messages, &[]),
    )?;
    let mut instances = Vec::with_capacity(by_status.len());
    for row in &by_status {
        let status: &str = row.try_get(0)?;
        let n: i64 = row.try_get(1)?;
        // Unknown statuses are left out, as on SQLite.
        if let Some(status) = RuntimeStatus::parse(status) {
            instances.push((status, n.max(0) as u64));
        }
    }
    let count = |n: i64| n.max(0) as u64;
    Ok(Backlog {
        instances,
        work_items: count(work.try_get(0)?),
        oldest_work_item_ms: work.try_get(1)?,
        timers: count(timers.try_get(0)?),
        entity_messages: count(messages.try_get(0)?),
    })
}

/// Stores an instance's log lines (nothing if the instance is gone) and
/// keeps only its newest [`MAX_LOG_LINES_PER_INSTANCE`]. The inserts and the
/// count run in one pipeline, in order, so ids follow the lines' order.
pub(crate) async fn append_logs<C: GenericClient>(
    c: &C,
    instance_id: &str,
    lines: &[LogLine],
) -> Result<(), Error> {
    if lines.is_empty() {
        return Ok(());
    }
    let insert = c
        .prepare_cached(
            "INSERT INTO guest_logs (instance_id, at_ms, level, function, task_id, attempt, message)
             SELECT $1::TEXT, $2::BIGINT, $3::TEXT, $4::TEXT, $5::BIGINT, $6::BIGINT, $7::TEXT
             WHERE EXISTS (SELECT 1 FROM instances WHERE id = $1)",
        )
        .await?;
    let count = c
        .prepare_cached(
            "UPDATE instances SET log_lines = log_lines + $2 WHERE id = $1 RETURNING log_lines",
        )
        .await?;
    let columns: Vec<(Option<i64>, Option<i64>)> = lines
        .iter()
        .map(|l| (l.task_id.map(|t| t as i64), l.attempt.map(i64::from)))
        .collect();
    let rows: Vec<[Param<'_>; 7]> = lines
        .iter()
        .zip(&columns)
        .map(|(line, (task_id, attempt))| {
            [
                &instance_id as Param<'_>,
                &line.at_ms,
                &line.level,
                &line.function,
                task_id,
                attempt,
                &line.message,
            ]
        })
        .collect();
    let added = lines.len() as i64;
    let counted: [Param<'_>; 2] = [&instance_id, &added];
    let (_, stored) = tokio::try_join!(
        biased;
        pipeline(rows.iter().map(|row| c.execute(&insert, &row[..]))),
        c.query_opt(&count, &counted),
    )?;
    let stored: Option<i64> = stored.map(|row| row.try_get(0)).transpose()?;
    if stored.is_some_and(|n| n > MAX_LOG_LINES_PER_INSTANCE + LOG_TRIM_SLACK) {
        let trim = c
            .prepare_cached(
                "DELETE FROM guest_logs WHERE instance_id = $1 AND id <=
                 (SELECT id FROM guest_logs WHERE instance_id = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)",
            )
            .await?;
        let reset = c
            .prepare_cached("UPDATE instances SET log_lines = $2 WHERE id = $1")
            .await?;
        let kept: [Param<'_>; 2] = [&instance_id, &MAX_LOG_LINES_PER_INSTANCE];
        tokio::try_join!(
            biased;
            c.execute(&trim, &kept),
            c.execute(&reset, &kept),
        )?;
    }
    Ok(())
}

/// Up to `limit` lines of an instance after id `after`, oldest first.
pub(crate) async fn logs<C: GenericClient>(
    c: &C,
    instance_id: &str,
    after: i64,
    limit: usize,
) -> Result<Vec<StoredLogLine>, Error> {
    let select = c
        .prepare_cached(
            "SELECT id, at_ms, level, function, task_id, attempt, message FROM guest_logs
             WHERE instance_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .await?;
    let rows = c
        .query(&select, &[&instance_id, &after, &self::limit(limit)])
        .await?;
    rows.iter()
        .map(|row| {
            Ok(StoredLogLine {
                id: row.try_get(0)?,
                line: LogLine {
                    at_ms: row.try_get(1)?,
                    level: level_name(row.try_get(2)?),
                    function: row.try_get(3)?,
                    task_id: row.try_get::<_, Option<i64>>(4)?.map(|t| t.max(0) as u64),
                    attempt: row.try_get::<_, Option<U32>>(5)?.map(|a| a.0),
                    message: row.try_get(6)?,
                },
            })
        })
        .collect()
}

/// Keeps (or, with `None`, forgets) the traceparent an instance was
/// started with.
pub(crate) async fn set_traceparent<C: GenericClient>(
    c: &C,
    instance_id: &str,
    generation: u64,
    traceparent: Option<&str>,
) -> Result<(), Error> {
    match traceparent {
        Some(header) => {
            let upsert = c
                .prepare_cached(
                    "INSERT INTO instance_traces (instance_id, generation, traceparent) VALUES ($1, $2, $3)
                     ON CONFLICT (instance_id) DO UPDATE
                     SET generation = EXCLUDED.generation, traceparent = EXCLUDED.traceparent",
                )
                .await?;
            c.execute(&upsert, &[&instance_id, &(generation as i64), &header])
                .await?
        }
        None => {
            let delete = c
                .prepare_cached("DELETE FROM instance_traces WHERE instance_id = $1")
                .await?;
            c.execute(&delete, &[&instance_id]).await?
        }
    };
    Ok(())
}

/// An instance's parent, parent task, generation and traceparent.
pub(crate) async fn trace_origin<C: GenericClient>(
    c: &C,
    instance_id: &str,
) -> Result<Option<TraceOrigin>, Error> {
    let select = c
        .prepare_cached(
            "SELECT i.parent_id, i.parent_task, i.generation, i.created_ms, t.generation, t.traceparent
             FROM instances i LEFT JOIN instance_traces t ON t.instance_id = i.id WHERE i.id = $1",
        )
        .await?;
    let Some(row) = c.query_opt(&select, &[&instance_id]).await? else {
        return Ok(None);
    };
    Ok(Some(TraceOrigin {
        parent_id: row.try_get(0)?,
        parent_task: row.try_get::<_, Option<i64>>(1)?.map(|t| t.max(0) as u64),
        generation: row.try_get::<_, i64>(2)?.max(0) as u64,
        created_ms: row.try_get(3)?,
        traceparent: row
            .try_get::<_, Option<i64>>(4)?
            .zip(row.try_get::<_, Option<String>>(5)?)
            .map(|(generation, header)| (generation.max(0) as u64, header)),
    }))
}
