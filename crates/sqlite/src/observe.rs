//! What operators read: counts of instances and of the queues, and the
//! instances' guest log lines.

use rusqlite::{Connection, OptionalExtension as _, params};

use perdure_records::{LogLine, RuntimeStatus, StoredLogLine};
use perdure_storage::columns::level_name;
use perdure_storage::{Backlog, LOG_TRIM_SLACK, MAX_LOG_LINES_PER_INSTANCE, TraceOrigin};

/// Counts of instances by status (from the `instances_by_status` index)
/// and of the work-item, timer and entity-message queues.
pub(super) fn backlog(conn: &Connection) -> rusqlite::Result<Backlog> {
    let mut by_status =
        conn.prepare_cached("SELECT status, COUNT(*) FROM instances GROUP BY status")?;
    let instances = by_status
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
        })?
        .filter_map(|row| match row {
            Ok((status, n)) => RuntimeStatus::parse(&status).map(|s| Ok((s, n.max(0) as u64))),
            Err(e) => Some(Err(e)),
        })
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let (work_items, oldest_work_item_ms) = conn
        .prepare_cached("SELECT COUNT(*), MIN(created_ms) FROM work_items")?
        .query_row([], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, Option<i64>>(1)?))
        })?;
    let count = |sql: &str| -> rusqlite::Result<u64> {
        conn.prepare_cached(sql)?
            .query_row([], |row| row.get::<_, i64>(0))
            .map(|n| n.max(0) as u64)
    };
    Ok(Backlog {
        instances,
        work_items: work_items.max(0) as u64,
        oldest_work_item_ms,
        timers: count("SELECT COUNT(*) FROM timers")?,
        entity_messages: count("SELECT COUNT(*) FROM entity_ops")?,
    })
}

/// Stores an instance's log lines (nothing if the instance is gone) and
/// keeps only its newest [`MAX_LOG_LINES_PER_INSTANCE`].
pub(super) fn append_logs(
    conn: &Connection,
    instance_id: &str,
    lines: &[LogLine],
) -> rusqlite::Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut insert = conn.prepare_cached(
        "INSERT INTO guest_logs (instance_id, at_ms, level, function, task_id, attempt, message)
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 WHERE EXISTS (SELECT 1 FROM instances WHERE id = ?1)",
    )?;
    for line in lines {
        insert.execute(params![
            instance_id,
            line.at_ms,
            line.level,
            line.function,
            line.task_id.map(|t| t as i64),
            line.attempt,
            line.message
        ])?;
    }
    let stored: Option<i64> = conn
        .prepare_cached(
            "UPDATE instances SET log_lines = log_lines + ?2 WHERE id = ?1 RETURNING log_lines",
        )?
        .query_row(params![instance_id, lines.len() as i64], |row| row.get(0))
        .optional()?;
    if stored.is_some_and(|n| n > MAX_LOG_LINES_PER_INSTANCE + LOG_TRIM_SLACK) {
        conn.prepare_cached(
            "DELETE FROM guest_logs WHERE instance_id = ?1 AND id <=
             (SELECT id FROM guest_logs WHERE instance_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
        )?
        .execute(params![instance_id, MAX_LOG_LINES_PER_INSTANCE])?;
        conn.prepare_cached("UPDATE instances SET log_lines = ?2 WHERE id = ?1")?
            .execute(params![instance_id, MAX_LOG_LINES_PER_INSTANCE])?;
    }
    Ok(())
}

/// Up to `limit` lines of an instance after id `after`, oldest first.
pub(super) fn logs(
    conn: &Connection,
    instance_id: &str,
    after: i64,
    limit: usize,
) -> rusqlite::Result<Vec<StoredLogLine>> {
    let mut select = conn.prepare_cached(
        "SELECT id, at_ms, level, function, task_id, attempt, message FROM guest_logs
         WHERE instance_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
    )?;
    let rows = select.query_map(params![instance_id, after, limit as i64], |row| {
        let level: String = row.get(2)?;
        Ok(StoredLogLine {
            id: row.get(0)?,
            line: LogLine {
                at_ms: row.get(1)?,
                level: level_name(&level),
                function: row.get(3)?,
                task_id: row.get::<_, Option<i64>>(4)?.map(|t| t.max(0) as u64),
                attempt: row.get(5)?,
                message: row.get(6)?,
            },
        })
    })?;
    rows.collect()
}

/// Keeps (or, with `None`, forgets) the traceparent an instance was
/// started with.
pub(super) fn set_traceparent(
    conn: &Connection,
    instance_id: &str,
    generation: u64,
    traceparent: Option<&str>,
) -> rusqlite::Result<()> {
    match traceparent {
        Some(header) => conn
            .prepare_cached(
                "INSERT OR REPLACE INTO instance_traces (instance_id, generation, traceparent)
                 VALUES (?1, ?2, ?3)",
            )?
            .execute(params![instance_id, generation as i64, header])?,
        None => conn
            .prepare_cached("DELETE FROM instance_traces WHERE instance_id = ?1")?
            .execute([instance_id])?,
    };
    Ok(())
}

/// An instance's parent, parent task, generation and traceparent.
pub(super) fn trace_origin(
    conn: &Connection,
    instance_id: &str,
) -> rusqlite::Result<Option<TraceOrigin>> {
    conn.prepare_cached(
        "SELECT i.parent_id, i.parent_task, i.generation, i.created_ms, t.generation, t.traceparent
         FROM instances i LEFT JOIN instance_traces t ON t.instance_id = i.id WHERE i.id = ?1",
    )?
    .query_row([instance_id], |row| {
        Ok(TraceOrigin {
            parent_id: row.get(0)?,
            parent_task: row.get::<_, Option<i64>>(1)?.map(|t| t.max(0) as u64),
            generation: row.get::<_, i64>(2)?.max(0) as u64,
            created_ms: row.get(3)?,
            traceparent: row
                .get::<_, Option<i64>>(4)?
                .zip(row.get::<_, Option<String>>(5)?)
                .map(|(generation, header)| (generation.max(0) as u64, header)),
        })
    })
    .optional()
}
