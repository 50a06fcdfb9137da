//! Durable entities: small pieces of state addressed by `name@key`,
//! changed one operation at a time.

use std::fmt;

use serde::{Serialize, de::DeserializeOwned};

use crate::bindings::perdure::functions::{entity_context, types as wit};
use crate::error::{Error, Result};

/// An entity's address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EntityId {
    pub name: String,
    pub key: String,
}

impl EntityId {
    pub fn new(name: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            key: key.into(),
        }
    }
}

impl fmt::Display for EntityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.key)
    }
}

impl From<&EntityId> for wit::EntityId {
    fn from(id: &EntityId) -> Self {
        Self {
            name: id.name.clone(),
            key: id.key.clone(),
        }
    }
}

/// An entity's state type and its operations. A new entity starts from
/// `Default`; the state is stored as JSON between operations.
///
/// ```no_run
/// use perdure_sdk::prelude::*;
///
/// #[derive(Default, Serialize, Deserialize)]
/// struct Counter(i64);
///
/// impl Entity for Counter {
///     fn dispatch(&mut self, ctx: &mut EntityContext, op: &str, input: Option<Value>) -> Result<Option<Value>> {
///         match op {
///             "add" => { self.0 += ctx.input::<i64>(input)?; Ok(None) }
///             "get" => Ok(Some(json!(self.0))),
///             "delete" => { ctx.delete_state(); Ok(None) }
///             _ => Err(Error::invalid_argument(format!("unknown operation {op}"))),
///         }
///     }
/// }
/// ```
pub trait Entity: Serialize + DeserializeOwned + Default + 'static {
    /// Applies one operation. An error leaves the stored state unchanged.
    fn dispatch(
        &mut self,
        ctx: &mut EntityContext,
        operation: &str,
        input: Option<serde_json::Value>,
    ) -> Result<Option<serde_json::Value>>;
}

/// The entity an operation runs on, and what it may do besides changing
/// its state. Effects commit with the new state, exactly once.
#[derive(Debug)]
pub struct EntityContext {
    id: EntityId,
    existed: bool,
    deleted: bool,
}

impl EntityContext {
    pub(crate) fn new(id: EntityId, existed: bool) -> Self {
        Self {
            id,
            existed,
            deleted: false,
        }
    }

    pub fn id(&self) -> &EntityId {
        &self.id
    }

    /// False for the first operation on a new (or deleted) entity.
    pub fn has_state(&self) -> bool {
        self.existed
    }

    /// Deletes the entity once this operation completes.
    pub fn delete_state(&mut self) {
        self.deleted = true;
    }

    pub(crate) fn is_deleted(&self) -> bool {
        self.deleted
    }

    /// Parses an operation's input, failing clearly if there is none.
    pub fn input<T: DeserializeOwned>(&self, input: Option<serde_json::Value>) -> Result<T> {
        let value =
            input.ok_or_else(|| Error::invalid_argument("this operation needs an input"))?;
        serde_json::from_value(value).map_err(Error::from)
    }

    /// Sends a one-way operation to another entity.
    pub fn signal_entity<T: Serialize>(
        &self,
        entity: &EntityId,
        operation: &str,
        input: Option<&T>,
    ) -> Result<()> {
        let input = input.map(serde_json::to_string).transpose()?;
        entity_context::signal_entity(&entity.into(), operation, input.as_deref());
        Ok(())
    }

    /// Starts an orchestration; returns its instance id.
    pub fn start_orchestration<T: Serialize>(
        &self,
        name: &str,
        instance_id: Option<&str>,
        input: &T,
    ) -> Result<String> {
        let input = serde_json::to_string(input)?;
        Ok(entity_context::start_orchestration(
            name,
            instance_id,
            &input,
        ))
    }
}
