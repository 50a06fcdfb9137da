//! What operators read from PostgreSQL: counts of instances and of the
//! queues, the instances' guest log lines, and where their traces come
//! from.
//!
//! Invariants: an instance keeps at most [`MAX_LINES_PER_INSTANCE`] log
//! lines past its last trim plus [`TRIM_SLACK`]; lines of an instance that
//! is gone are not stored; a line's id grows with every line, in the order
//! the lines were logged.

use deadpool_postgres::GenericClient;
use perdure_records::{LogLine, RuntimeStatus, StoredLogLine};
use perdure_storage::{Backlog, TraceOrigin};
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

/// Log lines kept per instance; older ones are deleted as new ones come.
pub(crate) const MAX_LINES_PER_INSTANCE: i64 = 5000;
/// Lines an instance may have past [`MAX_LINES_PER_INSTANCE`] before a
/// trim: trimming walks the instance's index, so it runs once per this
/// many lines, not at every append.
const TRIM_SLACK: i64 = 1000;

/// Stores an instance's log lines (nothing if the instance is gone) and
/// keeps only its newest [`MAX_LINES_PER_INSTANCE`]. The inserts and the
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
    if stored.is_some_and(|n| n > MAX_LINES_PER_INSTANCE + TRIM_SLACK) {
        let trim = c
            .prepare_cached(
                "DELETE FROM guest_logs WHERE instance_id = $1 AND id <=
                 (SELECT id FROM guest_logs WHERE instance_id = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)",
            )
            .await?;
        let reset = c
            .prepare_cached("UPDATE instances SET log_lines = $2 WHERE id = $1")
            .await?;
        let kept: [Param<'_>; 2] = [&instance_id, &MAX_LINES_PER_INSTANCE];
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

/// The static name of a stored level (unknown ones read as `info`).
fn level_name(level: &str) -> &'static str {
    [
        "trace", "debug", "info", "warn", "error", "stdout", "stderr",
    ]
    .into_iter()
    .find(|l| *l == level)
    .unwrap_or("info")
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use perdure_records::{InstanceId, InstanceRecord};
    use perdure_storage::DurableStorage;

    use super::*;
    use crate::PgStorage;

    fn line(i: usize) -> LogLine {
        LogLine {
            at_ms: 0,
            level: "info",
            function: "F".into(),
            task_id: None,
            attempt: None,
            message: format!("line {i}"),
        }
    }

    /// A fresh database on the server of `PERDURE_TEST_POSTGRES_URL`, with
    /// a connection to drop it afterwards; `None` (and a notice) without
    /// the variable.
    async fn scratch(
        test: &str,
    ) -> anyhow::Result<Option<(String, tokio_postgres::Client, String)>> {
        let Ok(url) = std::env::var("PERDURE_TEST_POSTGRES_URL") else {
            eprintln!("skipping {test}: PERDURE_TEST_POSTGRES_URL is not set");
            return Ok(None);
        };
        let (admin, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        let name = format!("perdure_{test}_{}_{nanos}", std::process::id());
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await?;
        let (base, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
        let authority = base.find("://").map_or(0, |i| i + 3);
        let base = match base[authority..].find('/') {
            Some(slash) => &base[..authority + slash],
            None => base,
        };
        let mut db_url = format!("{base}/{name}");
        if !query.is_empty() {
            db_url.push('?');
            db_url.push_str(query);
        }
        Ok(Some((db_url, admin, name)))
    }

    #[tokio::test]
    async fn an_instance_keeps_its_newest_lines_and_trims_in_steps() -> anyhow::Result<()> {
        let Some((url, admin, name)) = scratch("observe_trim").await? else {
            return Ok(());
        };
        let storage = PgStorage::open(&url, Arc::new(())).await?;
        storage
            .put_component("d".into(), Arc::from(&b"wasm"[..]))
            .await?;
        let id = InstanceId::parse("i1")?;
        let record = InstanceRecord {
            id: id.clone(),
            name: "O".into(),
            app: "a".into(),
            digest: "d".into(),
            status: RuntimeStatus::Running,
            input: "null".into(),
            output: None,
            custom_status: None,
            parent_id: None,
            created_ms: 0,
            updated_ms: 0,
            started_ms: 0,
            generation: 0,
        };
        storage.create_instance(record, None).await?;
        let total = 7_000;
        for batch in (0..total).collect::<Vec<_>>().chunks(100) {
            let lines: Vec<LogLine> = batch.iter().map(|i| line(*i)).collect();
            storage
                .write(move |tx| {
                    let lines = lines.clone();
                    Box::pin(async move { append_logs(tx, "i1", &lines).await })
                })
                .await?;
        }
        let kept = storage.logs(&id, 0, usize::MAX).await?;
        let count = kept.len() as i64;
        assert!(
            (MAX_LINES_PER_INSTANCE..=MAX_LINES_PER_INSTANCE + TRIM_SLACK).contains(&count),
            "{count} lines kept"
        );
        assert_eq!(
            kept.last().map(|l| l.line.message.as_str()),
            Some("line 6999")
        );
        // Ids follow the order the lines were logged in.
        let in_order = kept.windows(2).all(|w| {
            let number = |l: &StoredLogLine| l.line.message[5..].parse::<usize>().ok();
            w[0].id < w[1].id && number(&w[0]) < number(&w[1])
        });
        assert!(in_order, "lines are out of order");
        // An instance that is gone gets no lines.
        storage
            .write(|tx| Box::pin(async move { append_logs(tx, "gone", &[line(0)]).await }))
            .await?;
        let gone = InstanceId::parse("gone")?;
        assert!(storage.logs(&gone, 0, 10).await?.is_empty());
        storage.close().await;
        admin
            .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .await?;
        Ok(())
    }
}
