//! The engine: starts instances, runs each unfinished one in at most one
//! session at a time, dispatches the activities they schedule, and feeds
//! completions back.
//!
//! Invariants:
//! - An instance has a mailbox in `hot` exactly while one task runs it;
//!   whoever finds no mailbox starts that task ([`Shared::deliver`]).
//! - A session leaves `hot` only under the map's lock and with an empty
//!   mailbox, so no message is stranded.
//! - Work items are dispatched only after the commit that created (or
//!   leased) them; an activity's outcome is committed before its instance
//!   hears of it.

use std::collections::{HashMap, HashSet};
use std::str::FromStr as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};

use super::session::{Fault, Session};
use super::timers::TimerClock;
use crate::model::{Digest, FunctionKind};
use crate::registry::Registry;
use crate::sandbox::{ActivityInfo, AppCode, Caller, InstanceLog, InvocationError};
use perdure_records::GuestError;
use perdure_records::{
    Effects, History, InboxMessage, InstanceId, RuntimeStatus, TaskOutcome, WorkItem,
};
use perdure_storage::placement::Placement;
use perdure_storage::{DurableStorage, StorageError};

/// How the engine behaves; defaults suit one machine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// A waiting instance stays in memory this long before it is evicted;
    /// zero evicts every waiting instance at once.
    pub idle_eviction: Duration,
    /// Orchestrator instances in memory at once (running or waiting); past
    /// this, a session waiting for a slot makes one idle for 200 ms leave.
    /// Each holds a sandbox slot, whose pages stay resident for reuse, so
    /// this bounds memory; past a few dozen, more hot instances do not make
    /// a 2-core host faster (measured with the durable bench).
    pub max_hot_instances: usize,
    /// Activities running at once.
    pub max_activities: usize,
    /// How long a dispatched activity is leased before another attempt may
    /// take it.
    pub activity_lease: Duration,
    /// Entities running a batch of operations at once (each holds a
    /// sandbox slot while it does).
    pub max_entity_batches: usize,
    /// Where instances' and activities' spans go (nowhere by default).
    pub traces: crate::traces::Traces,
}

impl Default for EngineConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            idle_eviction: Duration::from_secs(30),
            max_hot_instances: 64,
            max_activities: cores * 8,
            activity_lease: Duration::from_secs(120),
            max_entity_batches: cores * 4,
            traces: crate::traces::Traces::disabled(),
        }
    }
}

/// What reaches a running session.
#[derive(Debug, Clone)]
pub(crate) enum Signal {
    /// Boxed: a queued instance's mailbox allocates room for 32 signals.
    Message(Box<InboxMessage>),
    /// Something changed (e.g. the instance was created): look again.
    Wake,
    /// A client suspended (`true`) or resumed (`false`) the instance.
    Suspend(bool),
    /// The instance was terminated: the session ends without writing.
    Cancel,
    /// Move the instance to its app's current version if its journal
    /// replays identically (see `upgrade.rs`).
    Upgrade(super::upgrade::UpgradeRequest),
}

pub(crate) use crate::sandbox::LoadedOrchestrator;

/// The engine's state, shared by its tasks.
pub(crate) struct Shared {
    storage: Arc<dyn DurableStorage>,
    /// The partitions this host holds, when hosts share the database.
    placement: Option<Arc<dyn Placement>>,
    registry: Arc<Registry>,
    config: EngineConfig,
    hot: Mutex<HashMap<InstanceId, mpsc::UnboundedSender<Signal>>>,
    /// Sandbox slots for orchestrators: a session holds one while its guest
    /// is instantiated (running or waiting in memory).
    session_slots: Arc<Semaphore>,
    /// Notified when a session waits for a slot: one idle session leaves.
    pressure: tokio::sync::Notify,
    /// Sessions waiting for a slot.
    slot_waiters: std::sync::atomic::AtomicUsize,
    activity_slots: Arc<Semaphore>,
    /// Work items queued or running in this process.
    in_flight: Mutex<HashSet<i64>>,
    /// Notified when `in_flight` empties while the engine stops.
    drained: tokio::sync::Notify,
    /// Digests known to be in the components table.
    stored_digests: Mutex<HashSet<String>>,
    /// Versions that are no longer the current file of their app.
    versions: Mutex<HashMap<String, AppCode>>,
    /// Counts instances that finished; waiters for completion watch it.
    finished: tokio::sync::watch::Sender<u64>,
    /// Wakes the timer task when an earlier timer is set.
    pub(crate) timers: TimerClock,
    /// Entities with a worker in this process.
    pub(crate) entity_workers: super::entities::EntityWorkers,
    /// Entity batches running at once.
    pub(crate) entity_slots: Semaphore,
    pub(crate) stopping: AtomicBool,
    /// Notified when a write failed without knowing whether it committed.
    pub(crate) uncertain: tokio::sync::Notify,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    pub(crate) fn new(
        storage: Arc<dyn DurableStorage>,
        registry: Arc<Registry>,
        config: EngineConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            placement: storage.placement(),
            storage,
            registry,
            activity_slots: Arc::new(Semaphore::new(config.max_activities.max(1))),
            entity_slots: Semaphore::new(config.max_entity_batches.max(1)),
            session_slots: Arc::new(Semaphore::new(config.max_hot_instances.max(1))),
            pressure: tokio::sync::Notify::new(),
            slot_waiters: std::sync::atomic::AtomicUsize::new(0),
            config,
            hot: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashSet::new()),
            drained: tokio::sync::Notify::new(),
            stored_digests: Mutex::new(HashSet::new()),
            versions: Mutex::new(HashMap::new()),
            finished: tokio::sync::watch::Sender::new(0),
            timers: TimerClock::default(),
            entity_workers: Default::default(),
            stopping: AtomicBool::new(false),
            uncertain: tokio::sync::Notify::new(),
        })
    }

    /// Whether this host runs the instance (holds its partition).
    pub(crate) fn owns_instance(&self, id: &InstanceId) -> bool {
        self.placement.as_ref().is_none_or(|p| p.owns_instance(id))
    }

    /// Whether this host runs the entity (holds its partition).
    pub(crate) fn owns_entity(&self, id: &perdure_records::EntityId) -> bool {
        self.placement.as_ref().is_none_or(|p| p.owns_entity(id))
    }

    pub(crate) fn placement(&self) -> Option<&Arc<dyn Placement>> {
        self.placement.as_ref()
    }

    /// Notes a failed write (`error`): if the database became unreachable,
    /// the write may have committed with its effects (activities to run,
    /// messages to deliver) lost here, so they are looked for again once
    /// it answers (see `super::cluster::resync`).
    pub(crate) fn write_failed(&self, error: &StorageError) {
        if matches!(error, StorageError::Unavailable(_)) {
            self.uncertain.notify_one();
        }
    }

    /// Whether the instance has a session in memory.
    pub(crate) fn is_hot(&self, id: &InstanceId) -> bool {
        lock(&self.hot).contains_key(id)
    }

    /// The instances with a session in memory.
    pub(crate) fn hot_ids(&self) -> Vec<InstanceId> {
        lock(&self.hot).keys().cloned().collect()
    }

    /// Sessions held in memory.
    pub(crate) fn hot_count(&self) -> usize {
        lock(&self.hot).len()
    }

    pub(crate) fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The orchestrator `name` as currently loaded.
    pub(crate) fn loaded_orchestrator(&self, name: &str) -> Option<LoadedOrchestrator> {
        let snapshot = self.registry.snapshot();
        let (app, _) = snapshot.function_of_kind(name, FunctionKind::Orchestrator)?;
        Some(LoadedOrchestrator {
            app: app.name.clone(),
            digest: app.digest.hex(),
            bytes: app.bytes.clone(),
        })
    }

    /// The first step of stopping: no session starts, no work item is
    /// dispatched, and queued activities do not start; running ones finish.
    pub(crate) fn begin_stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// Resolves once no activity is running (or queued to run).
    pub(crate) async fn activities_finished(&self) {
        loop {
            let drained = self.drained.notified();
            if lock(&self.in_flight).is_empty() {
                return;
            }
            drained.await;
        }
    }

    /// A work item is no longer running here.
    fn leave_in_flight(&self, item: i64) {
        let mut in_flight = lock(&self.in_flight);
        in_flight.remove(&item);
        if in_flight.is_empty() && self.stopping.load(Ordering::Relaxed) {
            self.drained.notify_waiters();
        }
    }

    /// Stops every session (their mailboxes close) and activity.
    pub(crate) fn stop(&self) {
        self.begin_stop();
        self.timers.stop();
        lock(&self.hot).clear();
        self.activity_slots.close();
        self.session_slots.close();
        self.entity_slots.close();
        // Ends the resync task (it sees `stopping`).
        self.uncertain.notify_one();
    }

    /// A sandbox slot for a session. If none is free, asks one idle session
    /// to leave and waits for the next slot (FIFO). `None` once the engine
    /// stops.
    async fn session_slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        match self.session_slots.clone().try_acquire_owned() {
            Ok(permit) => return Some(permit),
            Err(tokio::sync::TryAcquireError::Closed) => return None,
            Err(tokio::sync::TryAcquireError::NoPermits) => {}
        }
        self.slot_waiters.fetch_add(1, Ordering::SeqCst);
        self.pressure.notify_one();
        let permit = self.session_slots.clone().acquire_owned().await.ok();
        self.slot_waiters.fetch_sub(1, Ordering::SeqCst);
        permit
    }

    /// Resolves when a waiting session should give its slot to one that
    /// needs it: as soon as some session waits for a slot, after
    /// [`PRESSURE_MIN_IDLE`] unless the wait is `long`. A session waiting on
    /// quick work keeps its slot; one waiting on slow work, a timer or a
    /// person leaves.
    pub(crate) async fn slot_wanted(&self, long: bool) {
        if !long {
            tokio::time::sleep(PRESSURE_MIN_IDLE).await;
        }
        loop {
            let notified = self.pressure.notified();
            if self.slot_waiters.load(Ordering::SeqCst) > 0 {
                return;
            }
            notified.await;
        }
    }

    /// Passes a slot request on when this session could not leave.
    pub(crate) fn pass_on_pressure(&self) {
        if self.slot_waiters.load(Ordering::SeqCst) > 0 {
            self.pressure.notify_one();
        }
    }

    pub(crate) fn storage(&self) -> &Arc<dyn DurableStorage> {
        &self.storage
    }

    pub(crate) fn traces(&self) -> &crate::traces::Traces {
        &self.config.traces
    }

    pub(crate) fn lease_ms(&self) -> i64 {
        i64::try_from(self.config.activity_lease.as_millis()).unwrap_or(i64::MAX)
    }

    /// How long a waiting session may idle before it tries to leave.
    pub(crate) fn idle_limit(&self) -> Duration {
        self.config.idle_eviction
    }

    /// Removes `id` from memory unless a message is waiting (which is then
    /// handed back through the mailbox's own queue). True if it left.
    pub(crate) fn try_evict(
        &self,
        id: &InstanceId,
        mailbox: &mut mpsc::UnboundedReceiver<Signal>,
    ) -> bool {
        let mut hot = lock(&self.hot);
        if !mailbox.is_empty() {
            return false;
        }
        hot.remove(id);
        true
    }

    /// Tells completion waiters that some instance finished.
    pub(crate) fn announce_finished(&self) {
        self.finished.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes whenever an instance finishes.
    pub(crate) fn finished_events(&self) -> tokio::sync::watch::Receiver<u64> {
        self.finished.subscribe()
    }

    /// Sends `signal` to the instance's session if one runs.
    pub(crate) fn notify_if_hot(&self, id: &InstanceId, signal: Signal) {
        if let Some(mailbox) = lock(&self.hot).get(id) {
            let _ = mailbox.send(signal);
        }
    }

    /// Sends `signal` to the instance's session, starting one if none runs.
    pub(crate) fn deliver(self: &Arc<Self>, id: &InstanceId, signal: Signal) {
        self.deliver_or_start(id, signal, None);
    }

    /// Starts the session of an instance just created, from `history`
    /// (what creating it wrote) rather than reading it back. If a session
    /// of an earlier instance with this id is still in memory, it is woken
    /// instead, as [`Self::deliver`] would.
    pub(crate) fn start_fresh(self: &Arc<Self>, history: History) {
        let id = history.record.id.clone();
        self.deliver_or_start(&id, Signal::Wake, Some(history));
    }

    /// As [`Self::deliver`]; a session it starts begins from `fresh`.
    ///
    /// An instance of a partition another host holds is left to that host:
    /// the write that woke it left a wake-up for it (see
    /// `perdure_storage::placement`).
    fn deliver_or_start(self: &Arc<Self>, id: &InstanceId, signal: Signal, fresh: Option<History>) {
        if self.stopping.load(Ordering::Relaxed) || !self.owns_instance(id) {
            return;
        }
        let mut hot = lock(&self.hot);
        if let Some(mailbox) = hot.get(id)
            && mailbox.send(signal.clone()).is_ok()
        {
            return;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(signal);
        hot.insert(id.clone(), tx);
        drop(hot);
        tokio::spawn(run_instance(self.clone(), id.clone(), rx, fresh));
    }

    /// Whether a session could take a slot now.
    pub(crate) fn session_slot_free(&self) -> bool {
        self.session_slots.available_permits() > 0
    }

    /// Acts on what a storage write set in motion: dispatches work,
    /// delivers messages, wakes and stops instances, and tells the timer
    /// task about new timers.
    pub(crate) fn apply(self: &Arc<Self>, effects: Effects) {
        let Effects {
            work,
            messages,
            wake,
            cancelled,
            next_timer_ms,
            entities,
        } = effects;
        self.dispatch(work);
        for (id, message) in messages {
            self.deliver(&id, Signal::Message(Box::new(message)));
        }
        for id in wake {
            self.deliver(&id, Signal::Wake);
        }
        if !cancelled.is_empty() {
            for id in &cancelled {
                self.notify_if_hot(id, Signal::Cancel);
            }
            self.announce_finished();
        }
        if let Some(at) = next_timer_ms {
            self.timers.schedule(at);
        }
        for entity in entities {
            self.wake_entity(entity);
        }
    }

    /// Runs committed work items (each at most once at a time here).
    pub(crate) fn dispatch(self: &Arc<Self>, items: Vec<WorkItem>) {
        if items.is_empty() || self.stopping.load(Ordering::Relaxed) {
            return;
        }
        let mut in_flight = lock(&self.in_flight);
        for item in items {
            if in_flight.insert(item.id) {
                tokio::spawn(run_activity(self.clone(), item));
            }
        }
    }

    /// The code of an app version: the loaded one if current, else compiled
    /// from the stored bytes (and kept).
    pub(crate) async fn code_for(&self, app: &str, digest: &str) -> Result<AppCode, GuestError> {
        let snapshot = self.registry.snapshot();
        let current = snapshot.apps.get(app);
        if let Some(loaded) = current.filter(|loaded| loaded.digest.hex() == digest) {
            return Ok(loaded.code.clone());
        }
        // An older version runs under its app's current limits.
        let limits = current.map(|loaded| loaded.code.limits());
        let with_limits = |code: &AppCode| match limits {
            Some(limits) => code.with_limits(limits),
            None => code.clone(),
        };
        if let Some(code) = lock(&self.versions).get(digest) {
            return Ok(with_limits(code));
        }
        let parsed =
            Digest::from_str(digest).map_err(|e| GuestError::new("internal", e.to_string()))?;
        let bytes = self
            .storage
            .component(digest)
            .await
            .map_err(|e| GuestError::new("internal", e.to_string()))?
            .ok_or_else(|| {
                GuestError::new(
                    "not-found",
                    format!("version {digest} of app {app} is no longer stored"),
                )
            })?;
        let (code, _) = self
            .registry
            .compile(parsed, bytes.into())
            .await
            .map_err(|e| GuestError::new("internal", e.to_string()))?;
        lock(&self.versions).insert(digest.to_owned(), code.clone());
        Ok(with_limits(&code))
    }

    /// Stores a version's bytes once per process.
    pub(crate) async fn keep_version(
        &self,
        digest: String,
        bytes: Arc<[u8]>,
    ) -> Result<(), StorageError> {
        if lock(&self.stored_digests).contains(&digest) {
            return Ok(());
        }
        self.storage.put_component(digest.clone(), bytes).await?;
        lock(&self.stored_digests).insert(digest);
        Ok(())
    }
}

/// Runs an instance until it finishes, is evicted, or the host stops.
///
/// Instances queued for a slot are small tasks: the large future that runs
/// a session is boxed, so it is allocated only once the instance has a slot
/// (100,000 instances started at once queue in tens of MiB, not GiB).
async fn run_instance(
    shared: Arc<Shared>,
    id: InstanceId,
    mut mailbox: mpsc::UnboundedReceiver<Signal>,
    mut fresh: Option<History>,
) {
    loop {
        // The slot first: instances queued for one hold no history yet
        // (only a `fresh` one, started when a slot was free).
        let Some(slot) = shared.session_slot().await else {
            return;
        };
        match Box::pin(run_session(&shared, &id, mailbox, fresh.take())).await {
            Some(next) => mailbox = next,
            None => return,
        }
        drop(slot);
    }
}

/// One session of an instance, holding a slot: loads its history and runs
/// the orchestrator. Returns the mailbox if the instance must run again,
/// `None` once it left memory.
async fn run_session(
    shared: &Arc<Shared>,
    id: &InstanceId,
    mut mailbox: mpsc::UnboundedReceiver<Signal>,
    fresh: Option<History>,
) -> Option<mpsc::UnboundedReceiver<Signal>> {
    let history = match fresh {
        Some(history) => Ok(Some(history)),
        None => shared.storage.history(id).await,
    };
    let history = match history {
        Ok(history) => history,
        Err(e) => {
            tracing::error!(instance = %id, "cannot load the instance: {e}");
            leave(shared, id, &mut mailbox);
            wake_later(shared, id);
            return None;
        }
    };
    let Some(history) = history else {
        return (!leave(shared, id, &mut mailbox)).then_some(mailbox);
    };
    if history.record.status.is_finished() {
        return (!leave(shared, id, &mut mailbox)).then_some(mailbox);
    }
    // Signals already queued may repeat what the history holds; the
    // session ignores messages it has seen (by arrival).
    let code = shared
        .code_for(&history.record.app, &history.record.digest)
        .await;
    let session = Session::new(history, mailbox, shared.clone());
    let code = match code {
        Ok(code) => code,
        Err(e) => {
            let mut session = session;
            let _ = session.commit(Some(failed(&e))).await;
            return Some(session.into_mailbox());
        }
    };
    let (result, session) = Box::pin(session.run_in(shared.registry.sandbox(), &code)).await;
    let Some(mut session) = session else {
        tracing::error!(instance = %id, "the orchestrator's session was lost");
        lock(&shared.hot).remove(id);
        return None;
    };
    match session.take_fault() {
        Some(Fault::Evicted) | Some(Fault::Stopped) => return None,
        Some(Fault::Upgrading) => {
            if let Some(request) = session.take_upgrade() {
                Box::pin(super::upgrade::perform(shared, id, request)).await;
            }
            // Starts again from the journal, on whichever version the
            // instance is pinned to now.
            return Some(session.into_mailbox());
        }
        Some(Fault::Cancelled) => {
            mailbox = session.into_mailbox();
            return (!leave(shared, id, &mut mailbox)).then_some(mailbox);
        }
        None if matches!(result, Err(InvocationError::Overloaded)) => {
            // Every sandbox slot is taken by other work: try again
            // shortly rather than fail the instance.
            tokio::time::sleep(OVERLOAD_BACKOFF).await;
            return Some(session.into_mailbox());
        }
        Some(Fault::Storage(StorageError::Closed)) => {
            // The host is stopping; the instance resumes at the next start.
            lock(&shared.hot).remove(id);
            return None;
        }
        Some(Fault::Storage(StorageError::Moved { partition })) => {
            moved_away(shared, id, partition);
            return None;
        }
        Some(Fault::Storage(e)) => {
            shared.write_failed(&e);
            tracing::error!(instance = %id, "instance stopped on a storage error (retried in {STORAGE_RETRY:?}): {e}");
            return retry_later(shared, id);
        }
        Some(fault) => {
            let error = fault_error(&fault);
            tracing::warn!(instance = %id, "instance failed: {}", error.message);
            let _ = session.commit(Some(failed(&error))).await;
        }
        None => {
            let end = match result {
                Ok(Ok(output)) => match session.finish_replay() {
                    Ok(()) => session.returned(output),
                    Err(fault) => failed(&fault_error(&fault)),
                },
                Ok(Err(error)) => failed(&error),
                Err(e) => failed(&invocation_error(&e)),
            };
            if let Err(e) = session.commit(Some(end)).await {
                if let Fault::Storage(StorageError::Moved { partition }) = e {
                    moved_away(shared, id, partition);
                    return None;
                }
                if let Fault::Storage(e) = &e {
                    shared.write_failed(e);
                }
                tracing::error!(instance = %id, "cannot record the instance's end (retried in {STORAGE_RETRY:?}): {e}");
                return retry_later(shared, id);
            }
        }
    }
    Some(session.into_mailbox())
}

/// The end of a session whose partition another host took over: it
/// leaves memory, and that host runs the instance from its journal.
fn moved_away(shared: &Shared, id: &InstanceId, partition: i32) {
    tracing::info!(instance = %id, partition, "instance moved to another host");
    lock(&shared.hot).remove(id);
}

/// How long an instance whose write failed (a full disk, say) waits
/// before it runs again from its journal.
pub(crate) const STORAGE_RETRY: Duration = Duration::from_secs(1);

/// The end of a session whose write failed: it leaves memory and runs
/// again from its journal after [`STORAGE_RETRY`].
fn retry_later(shared: &Arc<Shared>, id: &InstanceId) -> Option<mpsc::UnboundedReceiver<Signal>> {
    lock(&shared.hot).remove(id);
    wake_later(shared, id);
    None
}

/// Runs the instance again from its journal after [`STORAGE_RETRY`]: what
/// it did since its last commit is lost with the failed write, and
/// nothing else would wake it.
fn wake_later(shared: &Arc<Shared>, id: &InstanceId) {
    let (shared, id) = (Arc::downgrade(shared), id.clone());
    tokio::spawn(async move {
        tokio::time::sleep(STORAGE_RETRY).await;
        if let Some(shared) = shared.upgrade() {
            shared.deliver(&id, Signal::Wake);
        }
    });
}

/// Leaves `hot` if nothing is waiting; false if a signal came meanwhile.
fn leave(shared: &Shared, id: &InstanceId, mailbox: &mut mpsc::UnboundedReceiver<Signal>) -> bool {
    let mut hot = lock(&shared.hot);
    let mut woken = false;
    while let Ok(signal) = mailbox.try_recv() {
        woken |= matches!(signal, Signal::Wake);
    }
    if woken {
        return false;
    }
    hot.remove(id);
    true
}

fn failed(error: &GuestError) -> (RuntimeStatus, String) {
    (
        RuntimeStatus::Failed,
        serde_json::to_string(error).unwrap_or_else(|_| "{}".into()),
    )
}

fn fault_error(fault: &Fault) -> GuestError {
    let mut error = match fault {
        Fault::Nondeterminism { .. } => GuestError::new("nondeterminism", fault.to_string()),
        _ => GuestError::new("failed-precondition", fault.to_string()),
    };
    if let Fault::Nondeterminism { seq, recorded, new } = fault {
        error.details = Some(serde_json::json!({ "seq": seq, "recorded": recorded, "new": new }));
    }
    error
}

/// How a sandbox failure reads as a task or instance error.
pub(crate) fn invocation_error(e: &InvocationError) -> GuestError {
    match e {
        InvocationError::Guest(error) => error.clone(),
        InvocationError::Timeout(_) => GuestError::new("timeout", e.to_string()),
        InvocationError::MemoryExhausted(_)
        | InvocationError::Overloaded
        | InvocationError::OutputTooLarge { .. } => {
            GuestError::new("resource-exhausted", e.to_string())
        }
        InvocationError::Trapped(_) => GuestError::new("trapped", e.to_string()),
    }
}

/// Runs one work item and commits its outcome.
///
/// Queued items wait for a slot as small tasks: the large future that runs
/// the sandbox is boxed, so it is allocated only once the item has a slot
/// (10,000 queued activities cost a few MiB, not hundreds).
async fn run_activity(shared: Arc<Shared>, item: WorkItem) {
    // The app's own limit first, so that an app at its limit waits without
    // holding a host-wide slot that other apps' activities could use.
    let app = shared.registry.snapshot().apps.get(&item.app).cloned();
    let app_permit = match &app {
        Some(app) => Some(app.invocation_permit().await),
        None => None,
    };
    let permit = shared.activity_slots.clone().acquire_owned().await.ok();
    match permit {
        Some(permit) if !shared.stopping.load(Ordering::Relaxed) => {
            Box::pin(run_leased_activity(shared, item, (permit, app_permit))).await;
        }
        // Stopping: it runs at the next start (its lease is taken back).
        _ => shared.leave_in_flight(item.id),
    }
}

async fn run_leased_activity<P>(shared: Arc<Shared>, item: WorkItem, permits: P) {
    let log = Arc::new(InstanceLog::new(
        &item.name,
        Some((item.task_id, item.attempt)),
    ));
    let started_ms = crate::time::now_ms();
    let outcome = execute_activity(&shared, &item, &log).await;
    if let Some(outcome) = &outcome {
        shared.trace_activity(&item, started_ms, outcome);
    }
    let mut logs = log.take();
    drop(permits);
    let Some(outcome) = outcome else {
        // Abandoned by a stopping host: it runs at the next start.
        shared.leave_in_flight(item.id);
        return;
    };
    // A failed write (a full disk, say) is tried again while the lease
    // lasts, so the activity need not run again once there is room.
    let lease = Duration::from_millis(shared.lease_ms().max(0) as u64);
    let give_up = std::time::Instant::now() + lease.saturating_sub(STORAGE_RETRY);
    loop {
        match shared
            .storage
            .complete_work(&item, outcome.clone(), logs.clone(), shared.lease_ms())
            .await
        {
            Ok(effects) => {
                shared.apply(effects);
                break;
            }
            Err(e)
                if !matches!(e, StorageError::Closed)
                    && !shared.stopping.load(Ordering::Relaxed)
                    && std::time::Instant::now() < give_up =>
            {
                shared.write_failed(&e);
                tracing::warn!(
                    item = item.id,
                    "cannot record an activity's outcome (retried in {STORAGE_RETRY:?}): {e}"
                );
                if matches!(e, StorageError::Full(_)) && !logs.is_empty() {
                    // The result matters; its log lines may be what does
                    // not fit.
                    tracing::warn!(
                        item = item.id,
                        lines = logs.len(),
                        "dropping the activity's log lines to make room for its result"
                    );
                    logs.clear();
                }
                tokio::time::sleep(STORAGE_RETRY).await;
            }
            Err(e) => {
                tracing::error!(
                    item = item.id,
                    "cannot record an activity's outcome (it runs again when its lease expires): {e}"
                );
                break;
            }
        }
    }
    shared.leave_in_flight(item.id);
}

/// Pause before retrying work that found every sandbox slot busy.
pub(crate) const OVERLOAD_BACKOFF: Duration = Duration::from_millis(20);

/// How long a session waits before it gives its slot to a session that
/// needs one: long enough that sessions waiting on quick activities keep
/// theirs (no replay), short enough that slots waiting on slow work or
/// people are reused at once.
pub(crate) const PRESSURE_MIN_IDLE: Duration = Duration::from_millis(200);

/// Runs an activity to its outcome; `None` if the host stopped while it
/// waited for a sandbox slot.
async fn execute_activity(
    shared: &Shared,
    item: &WorkItem,
    log: &Arc<InstanceLog>,
) -> Option<TaskOutcome> {
    let code = match shared.code_for(&item.app, &item.digest).await {
        Ok(code) => code,
        Err(e) => return Some(Err(e)),
    };
    let config = shared
        .registry
        .snapshot()
        .apps
        .get(&item.app)
        .map(|app| app.config.clone())
        .unwrap_or_default();
    let info = ActivityInfo {
        config,
        outbound: shared.registry.sandbox().outbound().clone(),
        name: item.name.clone(),
        instance_id: item.instance_id.to_string(),
        task_id: item.task_id,
        generation: item.generation,
        idempotency_key: item.idempotency_key(),
        attempt: item.attempt,
        log: log.clone(),
    };
    loop {
        let caller = Caller {
            app: item.app.as_str().into(),
            function: item.name.as_str().into(),
            kind: FunctionKind::Activity,
        };
        match shared
            .registry
            .sandbox()
            .run_activity(&code, caller, info.clone(), &item.input)
            .await
        {
            Ok(outcome) => return Some(outcome),
            Err(InvocationError::Overloaded) => {
                if shared.stopping.load(Ordering::Relaxed) {
                    return None;
                }
                tokio::time::sleep(OVERLOAD_BACKOFF).await;
            }
            Err(e) => return Some(Err(invocation_error(&e))),
        }
    }
}
