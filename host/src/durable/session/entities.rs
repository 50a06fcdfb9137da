//! Orchestrator calls to entities: calls (two-way), signals (one-way),
//! and critical sections (lock, unlock). Each is journaled; the messages
//! they send are committed with the episode, never while replaying.
//!
//! Invariants:
//! - Which entities a session holds (or is acquiring) is derived from its
//!   own calls, so a replay rebuilds it.
//! - Locks are requested in one global order (entity name, then key), one
//!   entity after another, so two critical sections never wait on each
//!   other in a cycle.
//! - Inside a critical section, calls reach only the locked entities
//!   (signals may go anywhere), and no second lock is taken.

use super::{Fault, Session, TaskKind};
use crate::durable::entities::{SignalError, deliverable};
use crate::durable::journal::Call;
use perdure_records::GuestError;
use perdure_records::{EntityId, EntityOpKind, NewEntityOp};

impl Session {
    fn entity_message(&mut self, target: EntityId, kind: EntityOpKind, reply_task: Option<u64>) {
        self.scheduled.entity_ops.push(NewEntityOp {
            target,
            kind,
            sender: Some(self.record.id.clone()),
            reply_task,
        });
    }

    /// Why `operation` cannot reach `entity` as currently loaded, if it
    /// cannot. Registry state is not deterministic, so callers journal the
    /// answer as the task's completion.
    fn undeliverable(&self, entity: &EntityId, operation: Option<&str>) -> Option<GuestError> {
        let refusal = deliverable(self.shared.registry(), &entity.name, operation).err()?;
        let code = match refusal {
            SignalError::UnknownEntity(_) => "not-found",
            _ => "invalid-argument",
        };
        Some(GuestError::new(code, refusal.to_string()))
    }

    /// Schedules an operation on an entity; the task's result is the
    /// operation's result (`null` if it returned none).
    pub(crate) fn schedule_entity_call(
        &mut self,
        entity: EntityId,
        operation: String,
        input: Option<String>,
    ) -> Result<Result<u64, GuestError>, Fault> {
        if let Some(held) = &self.locks
            && !held.contains(&entity)
        {
            return Ok(Err(GuestError::new(
                "failed-precondition",
                format!(
                    "inside a critical section, only the locked entities can be called; {entity} is not locked"
                ),
            )));
        }
        let call = Call::schedule_entity_call(&entity, &operation, input.as_deref());
        let task = match self.replayed(&call)? {
            Some(_) => self.next_seq - 1,
            None => {
                let task = self.record(call, None);
                match self.undeliverable(&entity, Some(&operation)) {
                    Some(error) => self.scheduled.completions.push((task, Err(error))),
                    None => self.entity_message(
                        entity,
                        EntityOpKind::Operation { operation, input },
                        Some(task),
                    ),
                }
                task
            }
        };
        Ok(Ok(self.track(task, TaskKind::Work)))
    }

    /// Sends a one-way operation. A message for an entity that is not
    /// loaded (or an operation it lacks) fails when the entity processes
    /// it, and is logged there.
    pub(crate) fn signal_entity(
        &mut self,
        entity: EntityId,
        operation: String,
        input: Option<String>,
    ) -> Result<(), Fault> {
        let call = Call::signal_entity(&entity, &operation, input.as_deref());
        if self.replayed(&call)?.is_none() {
            self.record(call, None);
            self.entity_message(entity, EntityOpKind::Operation { operation, input }, None);
        }
        Ok(())
    }

    /// Starts a critical section on `entities`: returns the task that
    /// completes once all are locked, or `None` if there is nothing to lock.
    pub(crate) fn lock_entities(
        &mut self,
        mut entities: Vec<EntityId>,
    ) -> Result<Result<Option<u64>, GuestError>, Fault> {
        if self.locks.is_some() {
            return Ok(Err(GuestError::new(
                "failed-precondition",
                "this orchestration already holds locks; unlock them before locking again",
            )));
        }
        entities.sort();
        entities.dedup();
        let Some(first) = entities.first().cloned() else {
            return Ok(Ok(None));
        };
        let call = Call::lock_entities(&entities);
        let task = match self.replayed(&call)? {
            Some(_) => self.next_seq - 1,
            None => {
                let task = self.record(call, None);
                match entities.iter().find_map(|e| self.undeliverable(e, None)) {
                    Some(error) => self.scheduled.completions.push((task, Err(error))),
                    None => {
                        let rest = entities[1..].to_vec();
                        self.entity_message(first, EntityOpKind::Lock { rest }, Some(task));
                    }
                }
                task
            }
        };
        self.locks = Some(entities);
        Ok(Ok(Some(self.track(task, TaskKind::Work))))
    }

    /// The lock request failed (e.g. an entity is not loaded): nothing is
    /// held.
    pub(crate) fn lock_failed(&mut self) {
        self.locks = None;
    }

    /// Ends the critical section, if any.
    pub(crate) fn unlock_entities(&mut self) -> Result<(), Fault> {
        let Some(held) = self.locks.take() else {
            return Ok(());
        };
        let call = Call::unlock_entities();
        if self.replayed(&call)?.is_none() {
            self.record(call, None);
            for entity in held {
                self.entity_message(entity, EntityOpKind::Unlock, None);
            }
        }
        Ok(())
    }
}
