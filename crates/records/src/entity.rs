//! The records of durable entities: ids, queued operations, batches and
//! what a processed batch commits. Storage reads and writes these; the
//! entity workers, the orchestration sessions and the HTTP API speak them.

use std::fmt;

use serde::Serialize;

use crate::GuestError;
use crate::instance::{InstanceId, NewChild};

/// An entity's address: its entity function's name and a key. The name
/// follows the function-name rule; the key is 1 to 256 printable
/// characters, none of them `/`, `\\`, `?` or `#` (keys appear in URL
/// paths).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct EntityId {
    pub name: String,
    pub key: String,
}

/// Why a name and key are not an entity id.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EntityIdError {
    #[error("entity name {0:?} is not valid: use 1-128 letters, digits, '_', '-' or '.'")]
    Name(String),
    #[error(
        "entity key {0:?} is not valid: use 1-256 printable characters without '/', '\\', '?' or '#'"
    )]
    Key(String),
}

impl EntityId {
    pub const MAX_KEY_LEN: usize = 256;

    pub fn parse(name: &str, key: &str) -> Result<Self, EntityIdError> {
        if !crate::is_plain_name(name) {
            return Err(EntityIdError::Name(name.chars().take(200).collect()));
        }
        let key_ok = !key.is_empty()
            && key.len() <= Self::MAX_KEY_LEN
            && key
                .chars()
                .all(|c| !c.is_control() && !matches!(c, '/' | '\\' | '?' | '#'));
        if !key_ok {
            return Err(EntityIdError::Key(key.chars().take(300).collect()));
        }
        Ok(Self {
            name: name.to_owned(),
            key: key.to_owned(),
        })
    }
}

impl fmt::Display for EntityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.key)
    }
}

/// What a queued message asks of its entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntityOpKind {
    /// Run an operation.
    Operation {
        operation: String,
        /// JSON text.
        input: Option<String>,
    },
    /// Lock the entity for the sender, then pass the request on to `rest`
    /// (in lock order), or answer the sender once `rest` is empty.
    Lock { rest: Vec<EntityId> },
    /// Release the entity if the sender holds it.
    Unlock,
}

/// A message for an entity, to be queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntityOp {
    pub target: EntityId,
    pub kind: EntityOpKind,
    /// The orchestration that sent it (calls, locks and unlocks name one;
    /// signals may).
    pub sender: Option<InstanceId>,
    /// The sender's task that awaits the answer (a call or a lock).
    pub reply_task: Option<u64>,
}

/// A queued message, as read for processing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityOp {
    /// Position in the database-wide arrival order.
    pub id: i64,
    pub kind: EntityOpKind,
    pub sender: Option<String>,
}

/// An entity's stored state and the next messages it may process.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EntityBatch {
    /// JSON text; `None` if the entity has no state.
    pub state: Option<String>,
    /// The instance whose critical section holds the entity.
    pub locked_by: Option<String>,
    /// In arrival order; while the entity is locked, only the holder's.
    pub ops: Vec<EntityOp>,
}

/// How one processed message ended.
#[derive(Debug, Clone, PartialEq)]
pub enum OpDone {
    /// The operation ran: its result (for a caller) and what it sent. A
    /// failed operation sent nothing and changed nothing.
    Ran {
        result: Result<Option<String>, GuestError>,
        sends: Vec<EntitySend>,
    },
    /// The lock was granted to the sender.
    Locked,
    /// The sender released the lock (or did not hold it).
    Unlocked,
}

/// Something an operation sent, committed only if it succeeded.
#[derive(Debug, Clone, PartialEq)]
pub enum EntitySend {
    Signal(NewEntityOp),
    /// An orchestration to start, with its version's bytes (stored before
    /// the commit, as for any instance).
    Start {
        child: NewChild,
        bytes: std::sync::Arc<[u8]>,
    },
}

/// What processing a batch commits in one transaction: the entity's state
/// after the last operation that ran, and each message's end.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityCommit {
    pub entity: EntityId,
    /// Written only if some operation ran.
    pub state: Option<String>,
    pub done: Vec<(i64, OpDone)>,
}

/// An entity as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityRecord {
    pub id: EntityId,
    pub state: Option<String>,
    pub locked_by: Option<String>,
    pub last_op_ms: i64,
}

/// One page of an entity listing and where the next one starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityPage {
    pub entities: Vec<EntityRecord>,
    /// Opaque; pass it back to get the next page.
    pub continuation: Option<String>,
}
