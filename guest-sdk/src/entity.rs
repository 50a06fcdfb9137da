//! Durable entities: small pieces of state addressed by `name@key`,
//! changed one operation at a time.

use std::fmt;

use serde::{Serialize, de::DeserializeOwned};

use crate::bindings::exports::perdure::functions::app::{EntityRequest, EntityResponse};
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
/// impl Counter {
///     fn add(&mut self, amount: i64) -> Result<()> {
///         self.0 += amount;
///         Ok(())
///     }
/// }
///
/// impl Entity for Counter {
///     fn operations() -> Operations<Self> {
///         Operations::new()
///             .op("add", Counter::add)
///             .op("reset", |c: &mut Counter, ()| { c.0 = 0; Ok(()) })
///             .read("get", |c: &Counter| c.0)
///             .delete("delete")
///     }
/// }
/// ```
pub trait Entity: Serialize + DeserializeOwned + Default + 'static {
    /// The operations the entity accepts, by name. The host refuses any
    /// other operation before it is queued.
    fn operations() -> Operations<Self>;
}

type Run<E> =
    Box<dyn Fn(&mut E, &mut EntityContext, Option<&str>) -> Result<Option<String>> + Send + Sync>;

/// One operation: whether it may change the state, and how it runs.
struct Operation<E> {
    name: String,
    read_only: bool,
    run: Run<E>,
}

/// The operations of an entity type, built once per app.
pub struct Operations<E> {
    list: Vec<Operation<E>>,
}

impl<E: Entity> Default for Operations<E> {
    fn default() -> Self {
        Self::new()
    }
}

/// Decodes an operation's input; no input reads as JSON `null`, so `()` and
/// `Option<T>` inputs may be left out.
fn decode_input<I: DeserializeOwned>(operation: &str, input: Option<&str>) -> Result<I> {
    serde_json::from_str(input.unwrap_or("null")).map_err(|e| {
        let what = if input.is_some() {
            "does not accept this input"
        } else {
            "needs an input"
        };
        Error::invalid_argument(format!("operation {operation} {what}: {e}"))
    })
}

/// Encodes an operation's result; `null` (e.g. from `()`) is no result.
fn encode_result<O: Serialize>(output: &O) -> Result<Option<String>> {
    let json = serde_json::to_string(output)?;
    Ok((json != "null").then_some(json))
}

impl<E: Entity> Operations<E> {
    pub fn new() -> Self {
        Self { list: Vec::new() }
    }

    fn push(mut self, name: impl Into<String>, read_only: bool, run: Run<E>) -> Self {
        self.list.push(Operation {
            name: name.into(),
            read_only,
            run,
        });
        self
    }

    /// An operation that may change the state. Its input `I` is parsed from
    /// JSON (use `()` for none); its result `O` is returned to a caller.
    pub fn op<I, O, F>(self, name: impl Into<String>, f: F) -> Self
    where
        I: DeserializeOwned,
        O: Serialize,
        F: Fn(&mut E, I) -> Result<O> + Send + Sync + 'static,
    {
        let name = name.into();
        let op = name.clone();
        self.push(
            name,
            false,
            Box::new(move |state, _, input| encode_result(&f(state, decode_input(&op, input)?)?)),
        )
    }

    /// An operation that also uses its [`EntityContext`] (to signal other
    /// entities, start orchestrations or delete itself).
    pub fn op_with_context<I, O, F>(self, name: impl Into<String>, f: F) -> Self
    where
        I: DeserializeOwned,
        O: Serialize,
        F: Fn(&mut E, I, &mut EntityContext) -> Result<O> + Send + Sync + 'static,
    {
        let name = name.into();
        let op = name.clone();
        self.push(
            name,
            false,
            Box::new(move |state, ctx, input| {
                encode_result(&f(state, decode_input(&op, input)?, ctx)?)
            }),
        )
    }

    /// An operation that only reads: it never creates, changes or deletes
    /// the entity.
    pub fn read<O, F>(self, name: impl Into<String>, f: F) -> Self
    where
        O: Serialize,
        F: Fn(&E) -> O + Send + Sync + 'static,
    {
        self.push(
            name,
            true,
            Box::new(move |state, _, _| encode_result(&f(state))),
        )
    }

    /// An operation that deletes the entity (its next operation starts from
    /// `Default` again).
    pub fn delete(self, name: impl Into<String>) -> Self {
        self.push(
            name,
            false,
            Box::new(|_, ctx, _| {
                ctx.delete_state();
                Ok(None)
            }),
        )
    }

    pub(crate) fn names(&self) -> Vec<String> {
        self.list.iter().map(|o| o.name.clone()).collect()
    }

    /// Applies `request` to the entity named `name`.
    pub(crate) fn apply(&self, name: &str, request: EntityRequest) -> Result<EntityResponse> {
        let operation = self
            .list
            .iter()
            .find(|o| o.name == request.operation)
            .ok_or_else(|| {
                Error::new(
                    crate::ErrorCode::NotFound,
                    format!(
                        "entity {name} has no operation {:?}; it has {}",
                        request.operation,
                        self.names().join(", ")
                    ),
                )
            })?;
        let mut state: E = match &request.state {
            Some(json) => serde_json::from_str(json).map_err(|e| {
                Error::new(
                    crate::ErrorCode::Internal,
                    format!(
                        "stored state of entity {name}@{} does not parse: {e}",
                        request.key
                    ),
                )
            })?,
            None => E::default(),
        };
        let mut ctx =
            EntityContext::new(EntityId::new(name, &request.key), request.state.is_some());
        let output = (operation.run)(&mut state, &mut ctx, request.input.as_deref())?;
        let state = if ctx.is_deleted() {
            None
        } else if operation.read_only {
            request.state
        } else {
            Some(serde_json::to_string(&state)?)
        };
        Ok(EntityResponse { state, output })
    }
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
