//! What clients (the HTTP API and guests' durable client) may do with
//! entities: signal them, read their state, list them.

use crate::durable::Engine;
use crate::model::FunctionKind;
use crate::registry::Registry;
use perdure_records::{EntityId, EntityOpKind, EntityPage, EntityRecord, NewEntityOp};
use perdure_storage::StorageError;

/// Why a signal was refused.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    #[error("no entity named {0} is loaded")]
    UnknownEntity(String),
    #[error("entity {name} has no operation {operation:?}; it has {known}")]
    UnknownOperation {
        name: String,
        operation: String,
        known: String,
    },
    #[error("the input is not valid JSON: {0}")]
    InvalidInput(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Whether a message for entity function `name` (running `operation`, if
/// it is an operation) can be delivered as the apps are loaded now.
pub(crate) fn deliverable(
    registry: &Registry,
    name: &str,
    operation: Option<&str>,
) -> Result<(), SignalError> {
    let snapshot = registry.snapshot();
    let (_, function) = snapshot
        .function_of_kind(name, FunctionKind::Entity)
        .ok_or_else(|| SignalError::UnknownEntity(name.to_owned()))?;
    match operation {
        Some(op) if !function.accepts(op) => Err(SignalError::UnknownOperation {
            name: name.to_owned(),
            operation: op.to_owned(),
            known: function.operations.join(", "),
        }),
        _ => Ok(()),
    }
}

impl Engine {
    /// Queues a one-way operation for an entity. The entity function must
    /// be loaded and accept the operation; the input must be JSON.
    pub async fn signal_entity(
        &self,
        id: EntityId,
        operation: &str,
        input: Option<String>,
    ) -> Result<(), SignalError> {
        deliverable(self.shared.registry(), &id.name, Some(operation))?;
        if let Some(input) = &input {
            serde_json::from_str::<serde::de::IgnoredAny>(input)
                .map_err(|e| SignalError::InvalidInput(e.to_string()))?;
        }
        let op = NewEntityOp {
            target: id,
            kind: EntityOpKind::Operation {
                operation: operation.to_owned(),
                input,
            },
            sender: None,
            reply_task: None,
        };
        let effects = self.shared.storage().send_to_entities(vec![op]).await?;
        self.shared.apply(effects);
        Ok(())
    }

    /// The entity's committed state and lock, if it has either.
    pub async fn entity(&self, id: &EntityId) -> Result<Option<EntityRecord>, StorageError> {
        self.shared.storage().entity(id).await
    }

    /// Entities of `name` with state, in key order.
    pub async fn list_entities(
        &self,
        name: &str,
        top: usize,
        continuation: Option<String>,
    ) -> Result<EntityPage, StorageError> {
        self.shared
            .storage()
            .list_entities(name, top, continuation)
            .await
    }
}
