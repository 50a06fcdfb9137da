//! Entity workers: an entity with queued messages gets one task, which
//! reads a batch of them, runs the operations through the sandbox, and
//! commits the new state with the end of every message in one write; then
//! reads again until the queue is empty.
//!
//! Invariants:
//! - At most one worker per entity in this process (the `hot` map), so an
//!   entity's operations run one at a time, in arrival order.
//! - A worker leaves `hot` only under the map's lock and after a read that
//!   found nothing to do with no wake since; a message committed before a
//!   wake is therefore always read by some worker.
//! - Idle entities have no task and no memory: only rows.

mod api;

pub use api::SignalError;
pub(crate) use api::deliverable;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use perdure_records::{EntityBatch, EntityCommit, EntityId, EntityOpKind, EntitySend, OpDone};
use perdure_storage::StorageError;

use super::engine::{Shared, invocation_error};
use crate::model::FunctionKind;
use crate::sandbox::{BatchOutcome, InvocationError, OperationCall};
use perdure_records::GuestError;

/// Messages read (and committed) per batch.
const BATCH: usize = 256;

/// The entities that have a worker in this process. The flag says that a
/// message came after the worker last read its queue.
#[derive(Default)]
pub(crate) struct EntityWorkers {
    hot: Mutex<HashMap<EntityId, bool>>,
    /// Notified whenever a worker leaves.
    left: tokio::sync::Notify,
}

/// Entities resumed at start-up are woken a page at a time, while fewer
/// than this many workers run: a million queued entities must not become
/// a million tasks at once.
const RESUME_PAGE: usize = 1000;

impl EntityWorkers {
    fn hot(&self) -> std::sync::MutexGuard<'_, HashMap<EntityId, bool>> {
        self.hot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Called before a worker reads its queue.
    fn reading(&self, id: &EntityId) {
        if let Some(woken) = self.hot().get_mut(id) {
            *woken = false;
        }
    }

    /// The worker found nothing to do: it leaves unless woken meanwhile.
    fn try_leave(&self, id: &EntityId) -> bool {
        let mut hot = self.hot();
        if hot.get(id).copied().unwrap_or(false) {
            return false;
        }
        hot.remove(id);
        drop(hot);
        self.left.notify_waiters();
        true
    }

    fn leave(&self, id: &EntityId) {
        self.hot().remove(id);
        self.left.notify_waiters();
    }

    /// Waits until fewer than `limit` workers run.
    async fn fewer_than(&self, limit: usize) {
        loop {
            let left = self.left.notified();
            if self.hot().len() < limit {
                return;
            }
            left.await;
        }
    }
}

/// Wakes every entity with queued messages (after a restart), a page at a
/// time.
pub(crate) async fn resume(shared: Arc<Shared>) {
    let mut after = None;
    let mut resumed = 0usize;
    loop {
        shared.entity_workers.fewer_than(RESUME_PAGE).await;
        let page = match shared
            .storage()
            .entities_with_messages(after.take(), RESUME_PAGE)
            .await
        {
            Ok(page) => page,
            Err(e) => {
                tracing::error!("cannot list entities with queued operations: {e}");
                return;
            }
        };
        let Some(last) = page.last().cloned() else {
            break;
        };
        for id in page {
            if shared.owns_entity(&id) {
                resumed += 1;
                shared.wake_entity(id);
            }
        }
        after = Some(last);
    }
    if resumed > 0 {
        tracing::info!(count = resumed, "resumed entities with queued operations");
    }
}

impl Shared {
    /// Makes sure a worker will read `id`'s queue.
    pub(crate) fn wake_entity(self: &Arc<Self>, id: EntityId) {
        // Another host's entity: the write that woke it left it a wake-up.
        if self.stopping.load(Ordering::Relaxed) || !self.owns_entity(&id) {
            return;
        }
        let mut hot = self.entity_workers.hot();
        if let Some(woken) = hot.get_mut(&id) {
            *woken = true;
            return;
        }
        hot.insert(id.clone(), false);
        drop(hot);
        tokio::spawn(run_worker(self.clone(), id));
    }
}

/// One step of a batch, in queue order.
enum Step {
    Run(i64, OperationCall),
    Lock(i64),
    Unlock(i64),
}

/// What a batch does: the messages the entity may process now, in order.
/// While it is locked only the holder's messages run; a lock granted in
/// the batch holds back the other senders' later messages; the batch ends
/// at an unlock (held-back messages come first in the next one).
fn plan(batch: &EntityBatch) -> Vec<Step> {
    let mut holder = batch.locked_by.clone();
    let mut steps = Vec::new();
    for op in &batch.ops {
        if holder.is_some() && op.sender != holder {
            continue;
        }
        match &op.kind {
            EntityOpKind::Operation { operation, input } => steps.push(Step::Run(
                op.id,
                OperationCall {
                    operation: operation.clone(),
                    input: input.clone(),
                },
            )),
            EntityOpKind::Lock { .. } if op.sender.is_some() => {
                holder = op.sender.clone();
                steps.push(Step::Lock(op.id));
            }
            EntityOpKind::Lock { .. } => steps.push(Step::Unlock(op.id)),
            EntityOpKind::Unlock => {
                steps.push(Step::Unlock(op.id));
                if holder.is_some() && holder == op.sender {
                    break;
                }
            }
        }
    }
    steps
}

async fn run_worker(shared: Arc<Shared>, id: EntityId) {
    let workers = &shared.entity_workers;
    loop {
        if shared.stopping.load(Ordering::Relaxed) {
            workers.leave(&id);
            return;
        }
        workers.reading(&id);
        let batch = match shared.storage().entity_batch(&id, BATCH).await {
            Ok(batch) => batch,
            Err(e) => {
                tracing::error!(entity = %id, "cannot read the entity's queue: {e}");
                workers.leave(&id);
                return;
            }
        };
        let steps = plan(&batch);
        if steps.is_empty() {
            if workers.try_leave(&id) {
                return;
            }
            continue;
        }
        let Ok(_slot) = shared.entity_slots.acquire().await else {
            workers.leave(&id);
            return;
        };
        let (commit, complete) = Box::pin(execute(&shared, &id, batch.state, steps)).await;
        if let Err(e) = keep_started_versions(&shared, &commit).await {
            tracing::error!(entity = %id, "cannot store the version of an orchestration an entity starts: {e}");
            workers.leave(&id);
            return;
        }
        match shared.storage().commit_entity_batch(commit).await {
            Ok(effects) => shared.apply(effects),
            Err(StorageError::Moved { partition }) => {
                // The new owner of its partition runs the messages.
                tracing::info!(entity = %id, partition, "entity moved to another host");
                workers.leave(&id);
                return;
            }
            Err(e) => {
                shared.write_failed(&e);
                // The messages stay queued; the next wake or start-up runs
                // them again.
                tracing::error!(entity = %id, "cannot record the entity's operations: {e}");
                workers.leave(&id);
                return;
            }
        }
        if !complete {
            // Every sandbox slot was busy: the rest waits a moment.
            tokio::time::sleep(super::engine::OVERLOAD_BACKOFF).await;
        }
    }
}

/// Runs a batch's operations; returns what to commit, and false if the
/// sandbox was full and only a prefix of the steps ran.
async fn execute(
    shared: &Shared,
    id: &EntityId,
    state: Option<String>,
    steps: Vec<Step>,
) -> (EntityCommit, bool) {
    let calls: Vec<OperationCall> = steps
        .iter()
        .filter_map(|step| match step {
            Step::Run(_, call) => Some(call.clone()),
            _ => None,
        })
        .collect();
    let BatchOutcome {
        state: new_state,
        outcomes,
    } = if calls.is_empty() {
        BatchOutcome {
            state: state.clone(),
            outcomes: Vec::new(),
        }
    } else {
        let snapshot = shared.registry().snapshot();
        let loaded = snapshot
            .function_of_kind(&id.name, FunctionKind::Entity)
            .map(|(app, _)| (app.name.clone(), app.code.clone()));
        drop(snapshot);
        match loaded {
            Some((app, code)) => {
                shared
                    .registry()
                    .sandbox()
                    .run_entity_operations(&code, &app, id, state.clone(), calls)
                    .await
            }
            None => BatchOutcome {
                state: state.clone(),
                outcomes: calls
                    .iter()
                    .map(|_| crate::sandbox::OperationOutcome {
                        result: Err(InvocationError::Guest(GuestError::new(
                            "not-found",
                            SignalError::UnknownEntity(id.name.clone()).to_string(),
                        ))),
                        sends: Vec::new(),
                    })
                    .collect(),
            },
        }
    };
    let mut outcomes = outcomes.into_iter();
    let mut done = Vec::with_capacity(steps.len());
    let mut complete = true;
    for step in steps {
        match step {
            Step::Run(op, _) => match outcomes.next() {
                Some(outcome) => done.push((
                    op,
                    OpDone::Ran {
                        result: outcome.result.map_err(|e| invocation_error(&e)),
                        sends: outcome.sends,
                    },
                )),
                None => {
                    complete = false;
                    break;
                }
            },
            Step::Lock(op) => done.push((op, OpDone::Locked)),
            Step::Unlock(op) => done.push((op, OpDone::Unlocked)),
        }
    }
    let commit = EntityCommit {
        entity: id.clone(),
        state: new_state,
        done,
    };
    (commit, complete)
}

/// Stores the versions of orchestrations that operations start, so the
/// new instances can run on them.
async fn keep_started_versions(
    shared: &Shared,
    commit: &EntityCommit,
) -> Result<(), perdure_storage::StorageError> {
    for (_, done) in &commit.done {
        if let OpDone::Ran { sends, .. } = done {
            for send in sends {
                if let EntitySend::Start { child, bytes } = send {
                    shared
                        .keep_version(child.digest.clone(), bytes.clone())
                        .await?;
                }
            }
        }
    }
    Ok(())
}
