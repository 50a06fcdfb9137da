//! What Perdure keeps in its database, as traits: [`Storage`] (settings
//! and keys) and [`DurableStorage`] (instances, journals, inboxes, work
//! items, timers, entities, component versions). The embedded SQLite
//! backend (`perdure-sqlite`) and the PostgreSQL backend
//! (`perdure-postgres`) implement them; the engine, the HTTP API and the
//! CLI see only these traits.
//!
//! Invariants every backend keeps: no blocking database call runs on
//! tokio's async threads; a write is acknowledged only after its
//! transaction committed; the records are `perdure-records`', so this
//! crate and the backends compile without the engine, the sandbox and
//! HTTP.

pub mod columns;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod failpoint;
pub mod placement;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use perdure_records::{
    Effects, EntityBatch, EntityCommit, EntityId, EntityPage, EntityRecord, Episode, History,
    InboxMessage, InstanceFilter, InstanceId, InstancePage, InstanceRecord, LogLine, NewEntityOp,
    RuntimeStatus, StoredLogLine, TaskOutcome, WorkItem,
};

/// Why a storage call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    /// The database refused or failed the statement (disk full, I/O error,
    /// constraint violation, ...).
    #[error("database error: {0}")]
    Database(String),
    /// The disk, or the database's configured maximum size, is full
    /// (`SQLITE_FULL`). Nothing was written; writes succeed again once
    /// there is room.
    #[error(
        "the database is full ({0}); new work is refused until there is room: free disk space, raise --max-db-size-mib or purge finished instances"
    )]
    Full(String),
    /// The database file or its directory cannot be written.
    #[error(
        "the database cannot be written ({0}); check the file's permissions and its file system"
    )]
    ReadOnly(String),
    /// Reading or writing the database file failed (`SQLITE_IOERR`): a
    /// failing disk, or a file made unwritable under the host.
    #[error(
        "the database file could not be read or written ({0}); check the disk, its file system and the file's permissions"
    )]
    Io(String),
    /// The database server cannot be reached, or dropped the connection
    /// (a restart, a failover, a network fault). A write that failed so may
    /// or may not have committed; every caller's retry is idempotent.
    #[error("the database server is unreachable ({0}); new work is refused until it answers again")]
    Unavailable(String),
    /// The writer thread has stopped (the host is shutting down).
    #[error("the database writer has stopped")]
    Closed,
    /// Another process (or another host in this one) has the database
    /// open; two writers would race on its instances and work items.
    #[error(
        "{db} is in use by another perdure (it holds the lock on {lock}); stop that one first, or give this one another --db"
    )]
    InUse { db: String, lock: String },
    /// The write belongs to a partition this host no longer holds: another
    /// host took it over (this one was paused or cut off past its lease).
    /// Nothing was written; the partition's new owner runs the instance or
    /// entity.
    #[error("partition {partition} moved to another host; the write is refused")]
    Moved { partition: i32 },
    /// The database belongs to a newer version of Perdure.
    #[error("the database schema version {found} is newer than this host supports ({supported})")]
    TooNew { found: i64, supported: i64 },
}

/// What a backend reports about each transaction it commits, for the
/// host's metrics.
pub trait CommitObserver: Send + Sync + 'static {
    /// A transaction of `jobs` writes committed; its `COMMIT` took
    /// `commit`.
    fn committed(&self, jobs: usize, commit: std::time::Duration);
}

/// Records nothing.
impl CommitObserver for () {
    fn committed(&self, _jobs: usize, _commit: std::time::Duration) {}
}

/// Guest log lines kept per instance; older ones are deleted as new ones
/// come (every backend).
pub const MAX_LOG_LINES_PER_INSTANCE: i64 = 5000;

/// Lines an instance may have past [`MAX_LOG_LINES_PER_INSTANCE`] before a
/// trim: trimming walks the instance's index, so it runs once per this
/// many lines, not at every append.
pub const LOG_TRIM_SLACK: i64 = 1000;

/// A boxed storage future; keeps [`Storage`] object-safe.
pub type StorageFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StorageError>> + Send + 'a>>;

/// A function key as stored: the hash, never the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub id: String,
    pub name: String,
    /// `None` for a host key (every function).
    pub function: Option<String>,
    pub hash: [u8; 32],
    pub created_ms: i64,
}

/// What the host keeps in its database.
pub trait Storage: Send + Sync + 'static {
    /// A host setting.
    fn setting(&self, key: &str) -> StorageFuture<'_, Option<String>>;

    /// Stores `value` under `key` unless the key exists; returns the value
    /// that is stored afterwards (so concurrent initialisers agree).
    fn init_setting(&self, key: &str, value: &str) -> StorageFuture<'_, String>;

    fn insert_key(&self, key: StoredKey) -> StorageFuture<'_, ()>;

    fn keys(&self) -> StorageFuture<'_, Vec<StoredKey>>;

    /// Deletes a key; false if there was none with this id.
    fn delete_key(&self, id: &str) -> StorageFuture<'_, bool>;
}

/// What creating an instance did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateOutcome {
    /// Written, in this generation of the id (0 unless the id was used by
    /// an instance that finished). Its journal, inbox and attempts are
    /// empty.
    Created { generation: u64 },
    /// An unfinished instance has this id; nothing was written.
    AlreadyRunning(RuntimeStatus),
}

/// What raising an event did.
#[derive(Debug, Clone, PartialEq)]
pub enum EventOutcome {
    Delivered(InboxMessage),
    NotFound,
    Finished(RuntimeStatus),
}

/// What a management operation on one instance did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOutcome {
    Done,
    NotFound,
    /// The operation needs an unfinished instance; this one has finished.
    Finished(RuntimeStatus),
    /// The operation needs a finished instance; this one has not.
    NotFinished(RuntimeStatus),
}

/// How much durable work is waiting, read at once (for metrics and the
/// dashboard).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Instances per status; statuses without instances are left out.
    pub instances: Vec<(RuntimeStatus, u64)>,
    /// Work items not yet completed, and when the oldest was created.
    pub work_items: u64,
    pub oldest_work_item_ms: Option<i64>,
    pub timers: u64,
    pub entity_messages: u64,
}

impl Backlog {
    /// Instances in `status`.
    pub fn count(&self, status: RuntimeStatus) -> u64 {
        self.instances
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n)
    }
}

/// What an instance's trace derives from (see the host's `traces`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceOrigin {
    pub parent_id: Option<String>,
    pub parent_task: Option<u64>,
    pub generation: u64,
    pub created_ms: i64,
    /// The `traceparent` it was started with, and the generation that
    /// applies to.
    pub traceparent: Option<(u64, String)>,
}

/// What the durable engine keeps: instances, their journals and inboxes,
/// work items, and the component versions instances are pinned to.
pub trait DurableStorage: Send + Sync + 'static {
    /// Which instances and entities this host runs, if the database is
    /// shared by several hosts; `None`: this host runs everything.
    fn placement(&self) -> Option<std::sync::Arc<dyn placement::Placement>> {
        None
    }

    /// Keeps a component version (no-op if it is kept already).
    fn put_component(&self, digest: String, bytes: Arc<[u8]>) -> StorageFuture<'_, ()>;

    fn component(&self, digest: &str) -> StorageFuture<'_, Option<Vec<u8>>>;

    /// Creates an instance, replacing a finished one with the same id;
    /// `traceparent` is the W3C trace context of the request that started
    /// it, if it carried one.
    fn create_instance(
        &self,
        record: InstanceRecord,
        traceparent: Option<String>,
    ) -> StorageFuture<'_, CreateOutcome>;

    /// Where an instance's trace comes from: its parent (and the task that
    /// started it), its generation, and the `traceparent` it was started
    /// with. `None` if the instance is gone.
    fn trace_origin(&self, id: &InstanceId) -> StorageFuture<'_, Option<TraceOrigin>>;

    fn instance(&self, id: &InstanceId) -> StorageFuture<'_, Option<InstanceRecord>>;

    /// Instances in creation order, `top` at most per page.
    fn list_instances(
        &self,
        filter: InstanceFilter,
        top: usize,
        continuation: Option<String>,
    ) -> StorageFuture<'_, InstancePage>;

    /// An instance with its journal and inbox, for replay.
    fn history(&self, id: &InstanceId) -> StorageFuture<'_, Option<History>>;

    /// Commits an episode: journal entries, work items (leased to this
    /// host), timers, children, and the instance's new status; when the
    /// instance ends, its parent's task is answered. Dropped (no effects)
    /// if the instance finished or was purged meanwhile.
    fn commit_episode(&self, episode: Episode) -> StorageFuture<'_, Effects>;

    /// Records a work item's outcome: answers its task in the instance's
    /// inbox and deletes the item, or, for a failure its retry policy
    /// allows to retry, records the attempt and sets a timer for the next
    /// one (leased `lease_ms` past it). Nothing if the item was completed
    /// already (a duplicate run) or its instance is gone.
    /// The run's log lines are stored with the outcome (and dropped with a
    /// duplicate run's).
    fn complete_work(
        &self,
        item: &WorkItem,
        outcome: TaskOutcome,
        logs: Vec<LogLine>,
        lease_ms: i64,
    ) -> StorageFuture<'_, Effects>;

    /// Up to `limit` log lines of an instance with ids past `after`,
    /// oldest first.
    fn logs(
        &self,
        id: &InstanceId,
        after: i64,
        limit: usize,
    ) -> StorageFuture<'_, Vec<StoredLogLine>>;

    /// When the earliest pending timer is due.
    fn next_timer_due(&self) -> StorageFuture<'_, Option<i64>>;

    /// Fires a batch of timers due by `now_ms`: answers timer tasks, leases
    /// work items whose retry is due (for `lease_ms`), restarts children.
    fn fire_timers(&self, now_ms: i64, lease_ms: i64) -> StorageFuture<'_, Effects>;

    fn raise_event(
        &self,
        id: &InstanceId,
        name: String,
        data: String,
    ) -> StorageFuture<'_, EventOutcome>;

    /// Marks an unfinished instance and its unfinished descendants
    /// terminated with `output`, drops their pending work and timers, and
    /// answers the parent's task if a parent awaits the instance.
    fn terminate(
        &self,
        id: &InstanceId,
        output: String,
    ) -> StorageFuture<'_, (ChangeOutcome, Effects)>;

    /// Pins an unfinished instance to another component version (which
    /// must be stored with [`Self::put_component`]).
    fn set_digest(&self, id: &InstanceId, digest: String) -> StorageFuture<'_, ChangeOutcome>;

    /// Suspends a pending or running instance (`true`), or resumes a
    /// suspended one (`false`). Suspending a suspended instance, or resuming
    /// one that is not suspended, changes nothing and is `Done`.
    fn set_suspended(&self, id: &InstanceId, suspended: bool) -> StorageFuture<'_, ChangeOutcome>;

    /// Deletes a finished instance and everything it owns.
    fn purge(&self, id: &InstanceId) -> StorageFuture<'_, ChangeOutcome>;

    /// Deletes the finished instances the filter selects; returns how many.
    fn purge_many(&self, filter: InstanceFilter) -> StorageFuture<'_, u64>;

    /// Pending and running instances, oldest first.
    fn unfinished_instances(&self) -> StorageFuture<'_, Vec<InstanceId>>;

    /// Leases (until `lease_until_ms`) up to `limit` work items whose lease
    /// expired by `expired_by_ms`, counting an attempt for each.
    fn claim_work(
        &self,
        expired_by_ms: i64,
        lease_until_ms: i64,
        limit: usize,
    ) -> StorageFuture<'_, Vec<WorkItem>>;

    /// Queues messages for entities (a client's signals), in order.
    fn send_to_entities(&self, ops: Vec<NewEntityOp>) -> StorageFuture<'_, Effects>;

    /// An entity's state and lock and up to `limit` messages it may process
    /// next (while it is locked, only the holder's).
    fn entity_batch(&self, id: &EntityId, limit: usize) -> StorageFuture<'_, EntityBatch>;

    /// Commits a processed batch: the entity's new state, each message's
    /// end (answers, forwarded locks, what operations sent), and deletes
    /// the messages. Messages that are gone are skipped.
    fn commit_entity_batch(&self, commit: EntityCommit) -> StorageFuture<'_, Effects>;

    /// An entity with state or a lock, if it exists.
    fn entity(&self, id: &EntityId) -> StorageFuture<'_, Option<EntityRecord>>;

    /// Entities of one entity function that have state, in key order.
    fn list_entities(
        &self,
        name: &str,
        top: usize,
        continuation: Option<String>,
    ) -> StorageFuture<'_, EntityPage>;

    /// Counts of instances by status and of the queues.
    fn backlog(&self) -> StorageFuture<'_, Backlog>;

    /// Up to `limit` entities with queued messages, in (name, key) order,
    /// after `after`.
    fn entities_with_messages(
        &self,
        after: Option<EntityId>,
        limit: usize,
    ) -> StorageFuture<'_, Vec<EntityId>>;
}
