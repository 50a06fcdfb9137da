//! The durable engine: orchestration instances that survive crashes,
//! restarts and evictions because every host call they make is journaled
//! and replayed.
//!
//! - [`model`]: ids, statuses and the records storage keeps.
//! - [`journal`]: how calls and results are written and compared.
//! - `session`: one run of an orchestrator (replay, then live).
//! - `engine`: instance runs, activity dispatch, recovery.

mod client_calls;
mod cluster;
mod engine;
pub mod entities;
pub mod journal;

pub(crate) mod session;
pub(crate) mod spans;
pub mod timeline;
mod timers;
mod upgrade;
pub mod urls;

pub use upgrade::{UpgradeError, UpgradeOutcome};

pub use urls::{BASE_PATH, ManagementUrls, PlainResponse};

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

pub use engine::EngineConfig;
pub(crate) use engine::{LoadedOrchestrator, Shared, Signal};
use perdure_records::{InstanceFilter, InstanceId, InstancePage, InstanceRecord, RuntimeStatus};

use crate::keys::Keys;
use crate::registry::Registry;
use crate::time::now_ms;
use perdure_storage::{ChangeOutcome, CreateOutcome, DurableStorage, EventOutcome, StorageError};

/// Why an instance could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("no orchestrator named {0} is loaded")]
    UnknownOrchestrator(String),
    #[error("instance {0} already exists and is {status}", status = .1.as_str())]
    AlreadyRunning(InstanceId, RuntimeStatus),
    #[error("the input is not valid JSON: {0}")]
    InvalidInput(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The durable engine's public face: what the HTTP API and the durable
/// client call.
pub struct Engine {
    shared: Arc<Shared>,
    keys: Arc<Keys>,
    /// The last backlog read and when its query started: one query at a
    /// time, shared by the requests that arrived before it began.
    backlog: tokio::sync::Mutex<Option<(std::time::Instant, perdure_storage::Backlog)>>,
}

/// Work items claimed per sweep of expired leases.
const SWEEP_BATCH: usize = 1000;

/// Leases up to [`SWEEP_BATCH`] work items whose lease expired by
/// `expired_by` (see `DurableStorage::claim_work`) and runs them; returns
/// how many.
async fn claim_and_dispatch(shared: &Arc<Shared>, expired_by: i64) -> Result<usize, StorageError> {
    let lease_until = now_ms().saturating_add(shared.lease_ms());
    let items = shared
        .storage()
        .claim_work(expired_by, lease_until, SWEEP_BATCH)
        .await?;
    let count = items.len();
    shared.dispatch(items);
    Ok(count)
}

/// As [`claim_and_dispatch`], batch after batch until one comes back
/// short; returns how many in all.
pub(crate) async fn claim_all_and_dispatch(
    shared: &Arc<Shared>,
    expired_by: i64,
) -> Result<usize, StorageError> {
    let mut total = 0;
    loop {
        let count = claim_and_dispatch(shared, expired_by).await?;
        total += count;
        if count < SWEEP_BATCH {
            return Ok(total);
        }
    }
}

/// Runs again the work items whose lease expired (their run was lost with
/// a host, or outlived its lease), and, on a shared database, those of
/// hosts that died: one batch.
pub(crate) async fn sweep_expired(shared: &Arc<Shared>) {
    match claim_and_dispatch(shared, now_ms()).await {
        Ok(0) => {}
        Ok(count) => tracing::info!(count, "re-running activities whose run was lost"),
        Err(e) => tracing::error!("cannot sweep expired activity leases: {e}"),
    }
}

impl Engine {
    pub fn new(
        storage: Arc<dyn DurableStorage>,
        registry: Arc<Registry>,
        keys: Arc<Keys>,
        config: EngineConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            shared: Shared::new(storage, registry, config),
            keys,
            backlog: tokio::sync::Mutex::new(None),
        })
    }

    /// The orchestrator `name` as currently loaded.
    pub(crate) fn loaded_orchestrator(&self, name: &str) -> Option<LoadedOrchestrator> {
        self.shared.loaded_orchestrator(name)
    }

    /// The management URLs of an instance, carrying its instance key.
    pub fn management_urls(&self, base_url: &str, id: &InstanceId) -> ManagementUrls {
        ManagementUrls::new(base_url, id, &self.keys.instance_key(id.as_str()))
    }

    /// True if `key` may manage instance `id` (the master key, or the
    /// instance's own key).
    pub fn authorizes(&self, key: &str, id: &str) -> bool {
        self.keys.is_master(key) || self.keys.is_instance_key(id, key)
    }

    /// Resumes what a previous process left: every leased work item is
    /// taken over and run again, every unfinished instance is woken, timers
    /// that came due meanwhile fire. Then keeps firing timers and re-running
    /// work whose lease expires.
    pub async fn recover(self: &Arc<Self>) -> Result<(), StorageError> {
        let shared = &self.shared;
        let lease = shared.lease_ms();
        let rerun = claim_all_and_dispatch(shared, i64::MAX).await?;
        if rerun > 0 {
            tracing::info!(
                count = rerun,
                "re-running activities left by the previous run"
            );
        }
        // With several hosts on the database: only the instances and
        // entities of the partitions this host holds, and the others as
        // their partitions come and go.
        if let Some(events) = shared.placement().and_then(|p| p.take_events()) {
            tokio::spawn(cluster::follow(Arc::downgrade(shared), events));
        }
        let resumed = cluster::wake_unfinished(shared).await?;
        if resumed > 0 {
            tracing::info!(count = resumed, "resuming unfinished instances");
        }
        tokio::spawn(entities::resume(shared.clone()));
        tokio::spawn(timers::run(self.shared.clone()));
        tokio::spawn(cluster::resync(self.shared.clone()));
        let sweeper = Arc::downgrade(&self.shared);
        let period = Duration::from_millis((lease / 4).max(1) as u64);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(shared) = sweeper.upgrade() else {
                    return;
                };
                if shared.stopping.load(Ordering::Relaxed) {
                    return;
                }
                sweep_expired(&shared).await;
            }
        });
        Ok(())
    }

    /// Starts an orchestration. `input` must be JSON text.
    pub async fn start_new(
        &self,
        name: &str,
        id: Option<InstanceId>,
        input: String,
        parent: Option<InstanceId>,
    ) -> Result<InstanceId, StartError> {
        self.start_new_traced(name, id, input, parent, None).await
    }

    /// As [`Self::start_new`], in the trace of `traceparent` (the W3C
    /// header of the request that asked for it; an invalid one is ignored).
    pub async fn start_new_traced(
        &self,
        name: &str,
        id: Option<InstanceId>,
        input: String,
        parent: Option<InstanceId>,
        traceparent: Option<&str>,
    ) -> Result<InstanceId, StartError> {
        let traceparent = traceparent
            .and_then(crate::traces::TraceContext::parse)
            .map(|c| c.header());
        serde_json::from_str::<serde::de::IgnoredAny>(&input)
            .map_err(|e| StartError::InvalidInput(e.to_string()))?;
        let app = self
            .shared
            .loaded_orchestrator(name)
            .ok_or_else(|| StartError::UnknownOrchestrator(name.to_owned()))?;
        let digest = app.digest.clone();
        self.shared.keep_version(digest.clone(), app.bytes).await?;
        let id = id.unwrap_or_else(InstanceId::generate);
        let now = now_ms();
        let record = InstanceRecord {
            id: id.clone(),
            name: name.to_owned(),
            app: app.app,
            digest,
            status: RuntimeStatus::Pending,
            input,
            output: None,
            custom_status: None,
            parent_id: parent.map(|p| p.to_string()),
            created_ms: now,
            updated_ms: now,
            started_ms: now,
            generation: 0,
        };
        // A session that can start at once starts from the history it is
        // known to have, without reading it back. One queued for a slot
        // reads it when its turn comes, so that a mass start holds no
        // histories in memory.
        let fresh = self.shared.session_slot_free().then(|| record.clone());
        match self
            .shared
            .storage()
            .create_instance(record, traceparent)
            .await?
        {
            CreateOutcome::Created { generation } => {
                match fresh {
                    Some(record) => {
                        self.shared
                            .start_fresh(perdure_records::History::of_new(InstanceRecord {
                                generation,
                                ..record
                            }))
                    }
                    None => self.shared.deliver(&id, Signal::Wake),
                }
                Ok(id)
            }
            CreateOutcome::AlreadyRunning(status) => Err(StartError::AlreadyRunning(id, status)),
        }
    }

    pub async fn status(&self, id: &InstanceId) -> Result<Option<InstanceRecord>, StorageError> {
        self.shared.storage().instance(id).await
    }

    /// The instance with its journal and inbox.
    pub async fn history(
        &self,
        id: &InstanceId,
    ) -> Result<Option<perdure_records::History>, StorageError> {
        self.shared.storage().history(id).await
    }

    /// Counts of instances by status and of the durable queues.
    ///
    /// The counts scan their tables, so one query runs at a time: a caller
    /// that waited for one that started after it arrived takes its answer.
    pub async fn backlog(&self) -> Result<perdure_storage::Backlog, StorageError> {
        let arrived = std::time::Instant::now();
        let mut last = self.backlog.lock().await;
        if let Some((started, backlog)) = last.as_ref()
            && *started >= arrived
        {
            return Ok(backlog.clone());
        }
        let started = std::time::Instant::now();
        let backlog = self.shared.storage().backlog().await?;
        *last = Some((started, backlog.clone()));
        Ok(backlog)
    }

    /// Up to `limit` guest log lines of an instance past line id `after`.
    pub async fn logs(
        &self,
        id: &InstanceId,
        after: i64,
        limit: usize,
    ) -> Result<Vec<perdure_records::StoredLogLine>, StorageError> {
        self.shared.storage().logs(id, after, limit).await
    }

    /// The `traceparent` an activity's outbound requests carry (see
    /// `crate::traces`).
    pub(crate) async fn activity_traceparent(
        &self,
        info: &crate::sandbox::ActivityInfo,
    ) -> Option<String> {
        let id = InstanceId::parse(&info.instance_id).ok()?;
        self.shared
            .activity_traceparent(&id, info.generation, info.task_id, info.attempt)
            .await
            .ok()
            .flatten()
    }

    /// The hosts sharing the database and their partitions; `None` when
    /// this host has the database to itself (SQLite).
    pub async fn cluster(
        &self,
    ) -> Result<Option<perdure_storage::placement::ClusterStatus>, StorageError> {
        match self.shared.placement() {
            Some(placement) => Ok(Some(placement.status().await?)),
            None => Ok(None),
        }
    }

    /// What this host's partition leases did so far, on a shared database.
    pub fn placement_counters(&self) -> Option<perdure_storage::placement::PlacementCounters> {
        self.shared.placement().map(|p| p.counters())
    }

    /// Tells the other hosts of a shared database where this one serves.
    pub(crate) fn announce(&self, address: std::net::SocketAddr) {
        if let Some(placement) = self.shared.placement() {
            placement.announce(address.to_string());
        }
    }

    /// Instances held in memory by this host.
    pub fn hot_instances(&self) -> usize {
        self.shared.hot_count()
    }

    pub async fn list(
        &self,
        filter: InstanceFilter,
        top: usize,
        continuation: Option<String>,
    ) -> Result<InstancePage, StorageError> {
        self.shared
            .storage()
            .list_instances(filter, top, continuation)
            .await
    }

    /// Stores an event for the instance and wakes it.
    pub async fn raise_event(
        &self,
        id: &InstanceId,
        name: String,
        data: String,
    ) -> Result<EventOutcome, StorageError> {
        let outcome = self.shared.storage().raise_event(id, name, data).await?;
        if let EventOutcome::Delivered(message) = &outcome {
            self.shared
                .deliver(id, Signal::Message(Box::new(message.clone())));
        }
        Ok(outcome)
    }

    /// Ends an unfinished instance and its unfinished sub-orchestrations
    /// with `reason` as their output; their pending activities and timers
    /// are dropped and their sessions, if in memory, stop.
    pub async fn terminate(
        &self,
        id: &InstanceId,
        reason: &str,
    ) -> Result<ChangeOutcome, StorageError> {
        let output = serde_json::Value::String(reason.to_owned()).to_string();
        let (outcome, effects) = self.shared.storage().terminate(id, output).await?;
        self.shared.apply(effects);
        if outcome == ChangeOutcome::Done
            && self.shared.traces().enabled()
            && let Some(record) = self.shared.storage().instance(id).await?
        {
            self.shared.trace_instance(spans::GenerationEnd {
                id: id.clone(),
                generation: record.generation,
                name: record.name,
                started_ms: record.started_ms,
                status: RuntimeStatus::Terminated,
                error: Some(format!("terminated: {reason}")),
                history: None,
            });
        }
        Ok(outcome)
    }

    /// Suspends an unfinished instance: it answers no more awaits (events
    /// and results are kept) until resumed.
    pub async fn suspend(&self, id: &InstanceId) -> Result<ChangeOutcome, StorageError> {
        let outcome = self.shared.storage().set_suspended(id, true).await?;
        if outcome == ChangeOutcome::Done {
            self.shared.notify_if_hot(id, Signal::Suspend(true));
        }
        Ok(outcome)
    }

    /// Resumes a suspended instance.
    pub async fn resume(&self, id: &InstanceId) -> Result<ChangeOutcome, StorageError> {
        let outcome = self.shared.storage().set_suspended(id, false).await?;
        if outcome == ChangeOutcome::Done {
            self.shared.deliver(id, Signal::Suspend(false));
        }
        Ok(outcome)
    }

    /// Deletes a finished instance's history.
    pub async fn purge(&self, id: &InstanceId) -> Result<ChangeOutcome, StorageError> {
        self.shared.storage().purge(id).await
    }

    /// Waits until the instance finishes or `timeout` passes; returns its
    /// last status (`None` if there is no such instance).
    pub async fn wait_for_completion(
        &self,
        id: &InstanceId,
        timeout: Duration,
    ) -> Result<Option<InstanceRecord>, StorageError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut finished = self.shared.finished_events();
        // An instance another host runs ends there, unannounced here: it is
        // looked at again every `poll`, from 10 ms up to half a second.
        let shared_db = self.shared.placement().is_some();
        let mut poll = Duration::from_millis(10);
        loop {
            let record = self.status(id).await?;
            match record {
                Some(record) if !record.status.is_finished() => {
                    if tokio::time::Instant::now() >= deadline {
                        return Ok(Some(record));
                    }
                    let wake = if shared_db {
                        deadline.min(tokio::time::Instant::now() + poll)
                    } else {
                        deadline
                    };
                    poll = (poll * 2).min(Duration::from_millis(500));
                    let _ = tokio::time::timeout_at(wake, finished.changed()).await;
                }
                other => return Ok(other),
            }
        }
    }

    pub async fn purge_many(&self, filter: InstanceFilter) -> Result<u64, StorageError> {
        self.shared.storage().purge_many(filter).await
    }

    /// Moves an unfinished instance to its app's current version if its
    /// journal replays identically against it; otherwise it stays where it
    /// is and the error carries the nondeterminism report.
    pub async fn upgrade(&self, id: &InstanceId) -> Result<UpgradeOutcome, UpgradeError> {
        match self.shared.storage().instance(id).await? {
            None => return Err(UpgradeError::NotFound(id.clone())),
            Some(record) if record.status.is_finished() => {
                return Err(UpgradeError::Finished(id.clone(), record.status));
            }
            Some(_) => {}
        }
        let (request, answer) = upgrade::UpgradeRequest::new();
        self.shared.deliver(id, Signal::Upgrade(request));
        answer.await.map_err(|_| UpgradeError::Interrupted)?
    }

    /// Every unfinished instance of orchestrator `name`, oldest first.
    pub async fn unfinished_of(&self, name: &str) -> Result<Vec<InstanceId>, StorageError> {
        let filter = InstanceFilter {
            statuses: vec![
                RuntimeStatus::Pending,
                RuntimeStatus::Running,
                RuntimeStatus::Suspended,
            ],
            name: Some(name.to_owned()),
            ..InstanceFilter::default()
        };
        let mut ids = Vec::new();
        let mut continuation = None;
        loop {
            let page = self.list(filter.clone(), 1000, continuation).await?;
            ids.extend(page.instances.into_iter().map(|r| r.id));
            match page.continuation {
                Some(next) => continuation = Some(next),
                None => return Ok(ids),
            }
        }
    }

    /// Starts nothing new (sessions, activities) and waits, at most
    /// `deadline`, for the activities already running to finish and
    /// record their results. Returns whether they all did.
    pub async fn drain(&self, deadline: Duration) -> bool {
        self.shared.begin_stop();
        tokio::time::timeout(deadline, self.shared.activities_finished())
            .await
            .is_ok()
    }

    /// Stops running instances and activities; nothing more is written by
    /// them. Instances resume from their journals at the next start.
    pub fn stop(&self) {
        self.shared.stop();
    }
}
