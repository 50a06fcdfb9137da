//! Durable entities in PostgreSQL: their state, their operation queues,
//! and the locks orchestrations hold on them.
//!
//! Invariants:
//! - A message's row is deleted in the transaction that stores what it
//!   did (the entity's new state, the answer to its caller, what it
//!   sent), so each operation takes effect exactly once.
//! - A processed batch changes an entity's lock only through the lock and
//!   unlock messages it processed, and a lock is granted only while the
//!   lock message still exists: ending an instance (or a generation)
//!   deletes its lock messages and releases its locks in one transaction,
//!   so a lock never outlives its holder.
//! - An entity without state and without a lock has no row.
//! - Messages are queued in order: an entity's messages get ids in the
//!   order they were sent, and it processes them in id order.

use std::collections::HashMap;

use deadpool_postgres::GenericClient;
use perdure_records::{
    Effects, EntityBatch, EntityCommit, EntityId, EntityOp, EntityOpKind, EntityPage, EntityRecord,
    EntitySend, InstanceId, NewEntityOp, OpDone,
};
use perdure_storage::columns::{kind_columns, kind_from_columns};
use tokio_postgres::{Error, Row};

use crate::durable::{Param, limit, pipeline};
use crate::tasks;

/// Queues messages for entities (in order, one pipeline) and marks the
/// entities to wake.
pub(crate) async fn enqueue<C: GenericClient>(
    c: &C,
    ops: &[NewEntityOp],
    now: i64,
    effects: &mut Effects,
) -> Result<(), Error> {
    if ops.is_empty() {
        return Ok(());
    }
    let insert = c
        .prepare_cached(
            "INSERT INTO entity_ops (name, key, kind, operation, input, sender, reply_task, locks, created_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .await?;
    type Columns<'a> = (
        (
            &'static str,
            Option<&'a str>,
            Option<&'a str>,
            Option<String>,
        ),
        Option<&'a str>,
        Option<i64>,
    );
    let columns: Vec<Columns<'_>> = ops
        .iter()
        .map(|op| {
            let sender = op.sender.as_ref().map(InstanceId::as_str);
            (
                kind_columns(&op.kind),
                sender,
                op.reply_task.map(|t| t as i64),
            )
        })
        .collect();
    let rows: Vec<[Param<'_>; 9]> = ops
        .iter()
        .zip(&columns)
        .map(
            |(op, ((kind, operation, input, locks), sender, reply_task))| {
                [
                    &op.target.name as Param<'_>,
                    &op.target.key,
                    kind,
                    operation,
                    input,
                    sender,
                    reply_task,
                    locks,
                    &now,
                ]
            },
        )
        .collect();
    pipeline(rows.iter().map(|row| c.execute(&insert, &row[..]))).await?;
    for op in ops {
        if !effects.entities.contains(&op.target) {
            effects.entities.push(op.target.clone());
        }
    }
    Ok(())
}

/// The entity's state and lock, and up to `limit` messages it may process
/// next: the oldest ones, or while it is locked the holder's oldest ones.
pub(crate) async fn load_batch<C: GenericClient>(
    c: &C,
    id: &EntityId,
    limit: usize,
) -> Result<EntityBatch, Error> {
    let entity = c
        .prepare_cached("SELECT state, locked_by FROM entities WHERE name = $1 AND key = $2")
        .await?;
    let select = c
        .prepare_cached(
            "SELECT id, kind, operation, input, locks, sender FROM entity_ops
             WHERE name = $1 AND key = $2 AND ($3::TEXT IS NULL OR sender = $3)
             ORDER BY id LIMIT $4",
        )
        .await?;
    // The messages are read after the lock, with the lock read: the batch
    // is the holder's even if the lock changes meanwhile.
    let (state, locked_by): (Option<String>, Option<String>) =
        match c.query_opt(&entity, &[&id.name, &id.key]).await? {
            Some(row) => (row.try_get(0)?, row.try_get(1)?),
            None => (None, None),
        };
    let rows = c
        .query(
            &select,
            &[&id.name, &id.key, &locked_by, &self::limit(limit)],
        )
        .await?;
    let mut ops = Vec::new();
    for row in &rows {
        let op_id: i64 = row.try_get(0)?;
        let kind: String = row.try_get(1)?;
        let (operation, input, locks) = (row.try_get(2)?, row.try_get(3)?, row.try_get(4)?);
        let sender: Option<String> = row.try_get(5)?;
        match kind_from_columns(&kind, operation, input, locks) {
            Some(kind) => ops.push(EntityOp {
                id: op_id,
                kind,
                sender,
            }),
            None => {
                tracing::warn!(entity = %id, op = op_id, kind, "skipping an unreadable entity message")
            }
        }
    }
    Ok(EntityBatch {
        state,
        locked_by,
        ops,
    })
}

/// A processed message's routing columns: sender, reply task, locks.
type Routing = (Option<String>, Option<i64>, Option<String>);

/// Deletes processed messages; returns the routing of each by id (those
/// that are gone are missing). Deleted at once: processing one message
/// never reads another.
async fn take_ops<C: GenericClient>(c: &C, ops: &[i64]) -> Result<HashMap<i64, Routing>, Error> {
    let delete = c
        .prepare_cached(
            "DELETE FROM entity_ops WHERE id = ANY($1) RETURNING id, sender, reply_task, locks",
        )
        .await?;
    c.query(&delete, &[&ops])
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?, r.try_get(3)?))))
        .collect()
}

async fn set_lock<C: GenericClient>(
    c: &C,
    id: &EntityId,
    holder: Option<&str>,
    now: i64,
) -> Result<(), Error> {
    let upsert = c
        .prepare_cached(
            "INSERT INTO entities (name, key, state, locked_by, last_op_ms) VALUES ($1, $2, NULL, $3, $4)
             ON CONFLICT (name, key) DO UPDATE SET locked_by = EXCLUDED.locked_by",
        )
        .await?;
    c.execute(&upsert, &[&id.name, &id.key, &holder, &now])
        .await?;
    Ok(())
}

/// Commits a processed batch; see the module's invariants.
pub(crate) async fn commit_batch<C: GenericClient>(
    c: &C,
    commit: EntityCommit,
    now: i64,
) -> Result<Effects, Error> {
    let mut effects = Effects::default();
    let entity = &commit.entity;
    let mut ran = false;
    let ids: Vec<i64> = commit.done.iter().map(|(op, _)| *op).collect();
    let mut taken = take_ops(c, &ids).await?;
    for (op, done) in commit.done {
        let Some((sender, reply_task, locks)) = taken.remove(&op) else {
            continue;
        };
        let sender = sender.and_then(|s| InstanceId::parse(&s).ok());
        match done {
            OpDone::Ran { result, sends } => {
                ran = true;
                if result.is_ok() {
                    for send in sends {
                        match send {
                            EntitySend::Signal(signal) => {
                                enqueue(c, std::slice::from_ref(&signal), now, &mut effects)
                                    .await?;
                            }
                            EntitySend::Start { child, .. } => {
                                tasks::start_children(c, None, vec![child], now, &mut effects)
                                    .await?;
                            }
                        }
                    }
                } else if reply_task.is_none()
                    && let Err(error) = &result
                {
                    tracing::warn!(entity = %entity, op, "a signalled operation failed: {}", error.message);
                }
                if let (Some(sender), Some(task)) = (&sender, reply_task) {
                    let outcome = result.map(|output| output.unwrap_or_else(|| "null".to_owned()));
                    tasks::complete(c, sender, task as u64, outcome, now, &mut effects).await?;
                }
            }
            OpDone::Locked => {
                let Some(holder) = &sender else { continue };
                set_lock(c, entity, Some(holder.as_str()), now).await?;
                let rest = kind_from_columns("lock", None, None, locks)
                    .and_then(|kind| match kind {
                        EntityOpKind::Lock { rest } => Some(rest),
                        _ => None,
                    })
                    .unwrap_or_default();
                match rest.split_first() {
                    Some((next, rest)) => {
                        let forward = NewEntityOp {
                            target: next.clone(),
                            kind: EntityOpKind::Lock {
                                rest: rest.to_vec(),
                            },
                            sender: Some(holder.clone()),
                            reply_task: reply_task.map(|t| t as u64),
                        };
                        enqueue(c, &[forward], now, &mut effects).await?;
                    }
                    None => {
                        if let Some(task) = reply_task {
                            let outcome = Ok("null".into());
                            tasks::complete(c, holder, task as u64, outcome, now, &mut effects)
                                .await?;
                        }
                    }
                }
            }
            OpDone::Unlocked => {
                let Some(holder) = &sender else { continue };
                let unlock = c
                    .prepare_cached(
                        "UPDATE entities SET locked_by = NULL WHERE name = $1 AND key = $2 AND locked_by = $3",
                    )
                    .await?;
                c.execute(&unlock, &[&entity.name, &entity.key, &holder.as_str()])
                    .await?;
            }
        }
    }
    if ran {
        let upsert = c
            .prepare_cached(
                "INSERT INTO entities (name, key, state, locked_by, last_op_ms) VALUES ($1, $2, $3, NULL, $4)
                 ON CONFLICT (name, key) DO UPDATE SET state = EXCLUDED.state, last_op_ms = EXCLUDED.last_op_ms",
            )
            .await?;
        c.execute(&upsert, &[&entity.name, &entity.key, &commit.state, &now])
            .await?;
    }
    drop_if_empty(c, &entity.name, &entity.key).await?;
    Ok(effects)
}

/// Releases what instance `id` holds or awaits from entities, when it (or
/// its generation) ends: its locks, its lock requests in flight, and the
/// answers its calls would get (the calls themselves still run).
pub(crate) async fn release_instance<C: GenericClient>(
    c: &C,
    id: &str,
    effects: &mut Effects,
) -> Result<(), Error> {
    let locks = c
        .prepare_cached("DELETE FROM entity_ops WHERE sender = $1 AND kind = 'lock'")
        .await?;
    let replies = c
        .prepare_cached(
            "UPDATE entity_ops SET reply_task = NULL WHERE sender = $1 AND reply_task IS NOT NULL",
        )
        .await?;
    let release = c
        .prepare_cached(
            "UPDATE entities SET locked_by = NULL WHERE locked_by = $1 RETURNING name, key",
        )
        .await?;
    let by_id: [Param<'_>; 1] = [&id];
    let (_, _, released) = tokio::try_join!(
        biased;
        c.execute(&locks, &by_id),
        c.execute(&replies, &by_id),
        c.query(&release, &by_id),
    )?;
    if released.is_empty() {
        return Ok(());
    }
    let released: Vec<(String, String)> = released
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, Error>>()?;
    let drop = c.prepare_cached(DROP_IF_EMPTY).await?;
    let rows: Vec<[Param<'_>; 2]> = released
        .iter()
        .map(|(name, key)| [name as Param<'_>, key])
        .collect();
    pipeline(rows.iter().map(|row| c.execute(&drop, &row[..]))).await?;
    for (name, key) in released {
        if let Ok(entity) = EntityId::parse(&name, &key) {
            effects.entities.push(entity);
        }
    }
    Ok(())
}

const DROP_IF_EMPTY: &str =
    "DELETE FROM entities WHERE name = $1 AND key = $2 AND state IS NULL AND locked_by IS NULL";

/// Deletes the entity's row if it has neither state nor a lock.
async fn drop_if_empty<C: GenericClient>(c: &C, name: &str, key: &str) -> Result<(), Error> {
    let drop = c.prepare_cached(DROP_IF_EMPTY).await?;
    c.execute(&drop, &[&name, &key]).await?;
    Ok(())
}

/// An entity as the API shows it; `None` if its name or key is not valid.
/// Its other columns are read leniently, as on SQLite.
fn record_from_row(r: &Row) -> Result<Option<EntityRecord>, Error> {
    let name: &str = r.try_get(0)?;
    let key: &str = r.try_get(1)?;
    Ok(EntityId::parse(name, key).ok().map(|id| EntityRecord {
        id,
        state: r.try_get(2).ok().flatten(),
        locked_by: r.try_get(3).ok().flatten(),
        last_op_ms: r.try_get(4).unwrap_or_default(),
    }))
}

pub(crate) async fn load_entity<C: GenericClient>(
    c: &C,
    id: &EntityId,
) -> Result<Option<EntityRecord>, Error> {
    let select = c
        .prepare_cached(
            "SELECT name, key, state, locked_by, last_op_ms FROM entities WHERE name = $1 AND key = $2",
        )
        .await?;
    match c.query_opt(&select, &[&id.name, &id.key]).await? {
        Some(row) => record_from_row(&row),
        None => Ok(None),
    }
}

/// Entities named `name` that have state, in key order, `top` at most per
/// page; `after` is the last key of the previous page.
pub(crate) async fn list<C: GenericClient>(
    c: &C,
    name: &str,
    top: usize,
    after: Option<&str>,
) -> Result<EntityPage, Error> {
    let select = c
        .prepare_cached(
            "SELECT name, key, state, locked_by, last_op_ms FROM entities
             WHERE name = $1 AND key > $2 AND state IS NOT NULL ORDER BY key LIMIT $3",
        )
        .await?;
    let rows = c
        .query(
            &select,
            &[&name, &after.unwrap_or(""), &limit(top).saturating_add(1)],
        )
        .await?;
    let mut entities = Vec::with_capacity(rows.len());
    for row in &rows {
        if let Some(record) = record_from_row(row)? {
            entities.push(record);
        }
    }
    let continuation = if entities.len() > top {
        entities.truncate(top);
        entities.last().map(|last| last.id.key.clone())
    } else {
        None
    };
    Ok(EntityPage {
        entities,
        continuation,
    })
}

/// Up to `limit` entities with queued messages after `after`, in (name,
/// key) order (to resume them after a start, a page at a time).
pub(crate) async fn with_queued_ops<C: GenericClient>(
    c: &C,
    after: Option<&EntityId>,
    limit: usize,
) -> Result<Vec<EntityId>, Error> {
    let (name, key) = after.map_or(("", ""), |e| (e.name.as_str(), e.key.as_str()));
    let select = c
        .prepare_cached(
            "SELECT DISTINCT name, key FROM entity_ops WHERE (name, key) > ($1, $2)
             ORDER BY name, key LIMIT $3",
        )
        .await?;
    let rows = c
        .query(&select, &[&name, &key, &self::limit(limit)])
        .await?;
    let mut entities = Vec::with_capacity(rows.len());
    for row in &rows {
        if let Ok(entity) = EntityId::parse(row.try_get(0)?, row.try_get(1)?) {
            entities.push(entity);
        }
    }
    Ok(entities)
}
