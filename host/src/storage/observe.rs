//! What operators read about the durable state as a whole: counts of
//! instances and of the queues.

use rusqlite::Connection;

use super::Backlog;
use crate::durable::model::RuntimeStatus;

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
