//! Work items: inserting an episode's, and leasing them (expired leases,
//! and retries after backoff), each lease counting an attempt.

use deadpool_postgres::GenericClient;
use perdure_records::{Effects, InstanceId, NewWorkItem, WorkItem};
use tokio_postgres::{Error, Row};

use super::EpisodeOwner;
use super::columns::{Id, Param, U32, limit, pipeline};

/// The columns [`work_from_row`] reads (`w` work items, `i` instances).
macro_rules! work_columns {
    () => {
        "w.id, w.instance_id, w.task_id, i.app, i.digest, w.name, w.input, w.attempt, i.generation"
    };
}

fn work_from_row(row: &Row) -> Result<WorkItem, Error> {
    Ok(WorkItem {
        id: row.try_get(0)?,
        instance_id: row.try_get::<_, Id>(1)?.0,
        task_id: row.try_get::<_, i64>(2)? as u64,
        app: row.try_get(3)?,
        digest: row.try_get(4)?,
        name: row.try_get(5)?,
        input: row.try_get(6)?,
        attempt: row.try_get::<_, U32>(7)?.0,
        generation: row.try_get::<_, i64>(8)?.max(0) as u64,
    })
}

/// Leases up to `limit` items until `lease_until`, counting an attempt for
/// each, in id order: those whose lease expired by now; this host's (or
/// nobody's) whose lease expired by `expired_by` (at start-up, everything
/// its previous run left); and those of dead hosts, which hold no live
/// partition lease. Items another host is claiming are skipped.
pub(super) async fn claim_expired<C: GenericClient>(
    c: &C,
    expired_by: i64,
    lease_until: i64,
    limit: usize,
    now: i64,
) -> Result<Vec<WorkItem>, Error> {
    let claim = c
        .prepare_cached(concat!(
            "UPDATE work_items w SET lease_until_ms = $3, attempt = w.attempt + 1,
                                     claimed_by = current_setting('perdure.host', true)
             FROM instances i
             WHERE w.id IN (
                 SELECT id FROM work_items x
                 WHERE x.lease_until_ms <= $4
                    OR (x.lease_until_ms <= $1
                        AND (x.claimed_by IS NULL OR x.claimed_by = current_setting('perdure.host', true)))
                    OR (x.claimed_by <> current_setting('perdure.host', true)
                        AND NOT EXISTS (SELECT 1 FROM partitions p
                                        WHERE p.owner = x.claimed_by AND p.lease_until > now()))
                 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)
             AND i.id = w.instance_id RETURNING ",
            work_columns!()
        ))
        .await?;
    let rows = c
        .query(
            &claim,
            &[&expired_by, &self::limit(limit), &lease_until, &now],
        )
        .await?;
    let mut items = rows
        .iter()
        .map(work_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    items.sort_by_key(|item| item.id);
    Ok(items)
}

/// Leases work item `id` for another attempt (a retry after backoff).
pub(crate) async fn claim_one<C: GenericClient>(
    c: &C,
    id: i64,
    lease_until: i64,
) -> Result<Option<WorkItem>, Error> {
    let claim = c
        .prepare_cached(concat!(
            "UPDATE work_items w SET lease_until_ms = $2, attempt = w.attempt + 1,
                                     claimed_by = current_setting('perdure.host', true)
             FROM instances i
             WHERE w.id = $1 AND i.id = w.instance_id RETURNING ",
            work_columns!()
        ))
        .await?;
    c.query_opt(&claim, &[&id, &lease_until])
        .await?
        .as_ref()
        .map(work_from_row)
        .transpose()
}

/// Inserts an episode's work items, leased until `lease_until`, and adds
/// them to the effects to dispatch.
pub(super) async fn insert_work<C: GenericClient>(
    c: &C,
    instance: &InstanceId,
    owner: &EpisodeOwner,
    work: Vec<NewWorkItem>,
    now: i64,
    lease_until: i64,
    effects: &mut Effects,
) -> Result<(), Error> {
    if work.is_empty() {
        return Ok(());
    }
    let insert = c
        .prepare_cached(
            "INSERT INTO work_items (instance_id, task_id, name, input, attempt, lease_until_ms, created_ms, retry)
             VALUES ($1, $2, $3, $4, 1, $5, $6, $7) RETURNING id",
        )
        .await?;
    let id = instance.as_str();
    let tasks: Vec<i64> = work.iter().map(|w| w.task_id as i64).collect();
    let rows: Vec<[Param<'_>; 7]> = work
        .iter()
        .zip(&tasks)
        .map(|(w, task)| {
            [
                &id as Param<'_>,
                task,
                &w.name,
                &w.input,
                &lease_until,
                &now,
                &w.retry,
            ]
        })
        .collect();
    let inserted = pipeline(rows.iter().map(|row| c.query_one(&insert, &row[..]))).await?;
    for (new, row) in work.into_iter().zip(inserted) {
        effects.work.push(WorkItem {
            id: row.try_get(0)?,
            instance_id: instance.clone(),
            task_id: new.task_id,
            app: owner.app.clone(),
            digest: owner.digest.clone(),
            name: new.name,
            input: new.input,
            attempt: 1,
            generation: owner.generation,
        });
    }
    Ok(())
}
