//! Durable entities in SQLite: their state, their operation queues, and the
//! locks orchestrations hold on them.
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

use rusqlite::{Connection, OptionalExtension, params};

use super::tasks;
use perdure_records::{Effects, InstanceId};
use perdure_records::{
    EntityBatch, EntityCommit, EntityId, EntityOp, EntityOpKind, EntityPage, EntityRecord,
    EntitySend, NewEntityOp, OpDone,
};
use perdure_storage::columns::{kind_columns, kind_from_columns};

/// Queues messages for entities (in order) and marks the entities to wake.
pub(super) fn enqueue(
    conn: &Connection,
    ops: &[NewEntityOp],
    now: i64,
    effects: &mut Effects,
) -> rusqlite::Result<()> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO entity_ops (name, key, kind, operation, input, sender, reply_task, locks, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for op in ops {
        let (kind, operation, input, locks) = kind_columns(&op.kind);
        insert.execute(params![
            op.target.name,
            op.target.key,
            kind,
            operation,
            input,
            op.sender.as_ref().map(InstanceId::as_str),
            op.reply_task.map(|t| t as i64),
            locks,
            now
        ])?;
        if !effects.entities.contains(&op.target) {
            effects.entities.push(op.target.clone());
        }
    }
    Ok(())
}

/// The entity's state and lock, and up to `limit` messages it may process
/// next: the oldest ones, or while it is locked the holder's oldest ones.
pub(super) fn load_batch(
    conn: &Connection,
    id: &EntityId,
    limit: usize,
) -> rusqlite::Result<EntityBatch> {
    let row: Option<(Option<String>, Option<String>)> = conn
        .prepare_cached("SELECT state, locked_by FROM entities WHERE name = ?1 AND key = ?2")?
        .query_row(params![id.name, id.key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (state, locked_by) = row.unwrap_or_default();
    let mut stmt = conn.prepare_cached(
        "SELECT id, kind, operation, input, locks, sender FROM entity_ops
         WHERE name = ?1 AND key = ?2 AND (?3 IS NULL OR sender = ?3)
         ORDER BY id LIMIT ?4",
    )?;
    let rows = stmt.query_map(params![id.name, id.key, locked_by, limit as i64], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
        ))
    })?;
    let mut ops = Vec::new();
    for row in rows {
        let (op_id, kind, operation, input, locks, sender) = row?;
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

/// Deletes a processed message; returns its routing, or `None` if the
/// message is gone.
fn take_op(conn: &Connection, op: i64) -> rusqlite::Result<Option<Routing>> {
    conn.prepare_cached("DELETE FROM entity_ops WHERE id = ?1 RETURNING sender, reply_task, locks")?
        .query_row([op], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()
}

fn set_lock(
    conn: &Connection,
    id: &EntityId,
    holder: Option<&str>,
    now: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO entities (name, key, state, locked_by, last_op_ms) VALUES (?1, ?2, NULL, ?3, ?4)
         ON CONFLICT (name, key) DO UPDATE SET locked_by = excluded.locked_by",
    )?
    .execute(params![id.name, id.key, holder, now])?;
    Ok(())
}

/// Commits a processed batch; see the module's invariants.
pub(super) fn commit_batch(
    conn: &Connection,
    commit: EntityCommit,
    now: i64,
) -> rusqlite::Result<Effects> {
    let mut effects = Effects::default();
    let entity = &commit.entity;
    let mut ran = false;
    for (op, done) in commit.done {
        let Some((sender, reply_task, locks)) = take_op(conn, op)? else {
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
                                enqueue(conn, std::slice::from_ref(&signal), now, &mut effects)?;
                            }
                            EntitySend::Start { child, .. } => {
                                tasks::start_children(conn, None, vec![child], now, &mut effects)?;
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
                    tasks::complete(conn, sender, task as u64, outcome, now, &mut effects)?;
                }
            }
            OpDone::Locked => {
                let Some(holder) = &sender else { continue };
                set_lock(conn, entity, Some(holder.as_str()), now)?;
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
                        enqueue(conn, &[forward], now, &mut effects)?;
                    }
                    None => {
                        if let Some(task) = reply_task {
                            tasks::complete(
                                conn,
                                holder,
                                task as u64,
                                Ok("null".into()),
                                now,
                                &mut effects,
                            )?;
                        }
                    }
                }
            }
            OpDone::Unlocked => {
                let Some(holder) = &sender else { continue };
                conn.prepare_cached(
                    "UPDATE entities SET locked_by = NULL WHERE name = ?1 AND key = ?2 AND locked_by = ?3",
                )?
                .execute(params![entity.name, entity.key, holder.as_str()])?;
            }
        }
    }
    if ran {
        conn.prepare_cached(
            "INSERT INTO entities (name, key, state, locked_by, last_op_ms) VALUES (?1, ?2, ?3, NULL, ?4)
             ON CONFLICT (name, key) DO UPDATE SET state = excluded.state, last_op_ms = excluded.last_op_ms",
        )?
        .execute(params![entity.name, entity.key, commit.state, now])?;
    }
    drop_if_empty(conn, &entity.name, &entity.key)?;
    Ok(effects)
}

/// Releases what instance `id` holds or awaits from entities, when it (or
/// its generation) ends: its locks, its lock requests in flight, and the
/// answers its calls would get (the calls themselves still run).
pub(super) fn release_instance(
    conn: &Connection,
    id: &str,
    effects: &mut Effects,
) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM entity_ops WHERE sender = ?1 AND kind = 'lock'")?
        .execute([id])?;
    conn.prepare_cached(
        "UPDATE entity_ops SET reply_task = NULL WHERE sender = ?1 AND reply_task IS NOT NULL",
    )?
    .execute([id])?;
    let released: Vec<(String, String)> = conn
        .prepare_cached(
            "UPDATE entities SET locked_by = NULL WHERE locked_by = ?1 RETURNING name, key",
        )?
        .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (name, key) in released {
        drop_if_empty(conn, &name, &key)?;
        if let Ok(entity) = EntityId::parse(&name, &key) {
            effects.entities.push(entity);
        }
    }
    Ok(())
}

/// Deletes the entity's row if it has neither state nor a lock.
fn drop_if_empty(conn: &Connection, name: &str, key: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "DELETE FROM entities WHERE name = ?1 AND key = ?2 AND state IS NULL AND locked_by IS NULL",
    )?
    .execute(params![name, key])?;
    Ok(())
}

fn record_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Option<EntityRecord>> {
    let name: String = r.get(0)?;
    let key: String = r.get(1)?;
    Ok(EntityId::parse(&name, &key).ok().map(|id| EntityRecord {
        id,
        state: r.get(2).ok().flatten(),
        locked_by: r.get(3).ok().flatten(),
        last_op_ms: r.get(4).unwrap_or_default(),
    }))
}

pub(super) fn load_entity(
    conn: &Connection,
    id: &EntityId,
) -> rusqlite::Result<Option<EntityRecord>> {
    Ok(conn
        .prepare_cached(
            "SELECT name, key, state, locked_by, last_op_ms FROM entities WHERE name = ?1 AND key = ?2",
        )?
        .query_row(params![id.name, id.key], record_from_row)
        .optional()?
        .flatten())
}

/// Entities named `name` that have state, in key order, `top` at most per
/// page; `after` is the last key of the previous page.
pub(super) fn list(
    conn: &Connection,
    name: &str,
    top: usize,
    after: Option<&str>,
) -> rusqlite::Result<EntityPage> {
    let mut stmt = conn.prepare_cached(
        "SELECT name, key, state, locked_by, last_op_ms FROM entities
         WHERE name = ?1 AND key > ?2 AND state IS NOT NULL ORDER BY key LIMIT ?3",
    )?;
    let mut entities: Vec<EntityRecord> = stmt
        .query_map(
            params![name, after.unwrap_or(""), (top as i64).saturating_add(1)],
            record_from_row,
        )?
        .filter_map(Result::transpose)
        .collect::<rusqlite::Result<_>>()?;
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
pub(super) fn with_queued_ops(
    conn: &Connection,
    after: Option<&EntityId>,
    limit: usize,
) -> rusqlite::Result<Vec<EntityId>> {
    let (name, key) = after.map_or(("", ""), |e| (e.name.as_str(), e.key.as_str()));
    let pairs: Vec<(String, String)> = conn
        .prepare_cached(
            "SELECT DISTINCT name, key FROM entity_ops WHERE (name, key) > (?1, ?2)
             ORDER BY name, key LIMIT ?3",
        )?
        .query_map(params![name, key, limit as i64], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(pairs
        .iter()
        .filter_map(|(name, key)| EntityId::parse(name, key).ok())
        .collect())
}
