//! The conformance suite: what every backend of [`Storage`] and
//! [`DurableStorage`] must do, as checks that run against any of them.
//!
//! Each check gets a backend over an empty database and fails with a
//! message naming what differed. The test suite runs every check against
//! SQLite and PostgreSQL (`tests/e2e/storage.rs`); a backend that passes
//! them all keeps the invariants the engine relies on (a task answered
//! once, work dispatched only after its commit, an ended instance's work
//! and timers gone with it, an entity operation applied once).
//!
//! The checks live by concern: `instances.rs` (creating, listing,
//! events, suspending, terminating, purging, continue-as-new), `tasks.rs`
//! (work items, timers, retries, children) and `entities.rs` (queues,
//! calls, locks); this module lists them all in [`DURABLE_CHECKS`] and
//! holds the helpers they share.
//!
//! Compiled only with the `conformance` feature, which only the test crate
//! enables.

mod entities;
mod instances;
mod tasks;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::{Context as _, ensure};
use perdure_records::{
    Episode, InboxBody, InboxMessage, InstanceId, InstanceRecord, JournalEntry, LogLine, NewChild,
    NewWorkItem, RetryPolicy, RuntimeStatus, StatusUpdate, TaskOutcome, WorkItem, now_ms,
};

use crate::{CreateOutcome, DurableStorage, EventOutcome, Storage, StoredKey};

/// What a check returns.
pub type CheckFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// A check of the suite: its name and how to run it on an empty database.
pub struct Check {
    pub name: &'static str,
    pub run: fn(Arc<dyn DurableStorage>) -> CheckFuture,
}

macro_rules! check {
    ($module:ident :: $name:ident) => {
        Check {
            name: stringify!($name),
            run: |storage| -> CheckFuture { Box::pin($module::$name(storage)) },
        }
    };
}

/// Every check of [`DurableStorage`], in a fixed order.
pub const DURABLE_CHECKS: &[Check] = &[
    check!(instances::instances_are_created_once),
    check!(instances::an_id_is_reused_once_its_instance_finished),
    check!(instances::events_reach_unfinished_instances_only),
    check!(instances::terminating_ends_an_instance_and_its_work),
    check!(instances::only_finished_instances_are_purged),
    check!(instances::listings_page_in_creation_order),
    check!(instances::continue_as_new_starts_a_clean_generation),
    check!(instances::suspension_outlives_a_running_episode),
    check!(instances::an_instance_keeps_its_newest_log_lines),
    check!(tasks::an_episode_commits_its_journal_work_and_timers),
    check!(tasks::a_task_is_answered_once),
    check!(tasks::expired_work_is_claimed_again),
    check!(tasks::timers_fire_once),
    check!(tasks::failed_activities_are_retried_after_backoff),
    check!(tasks::a_finished_instance_drops_its_work_and_later_episodes),
    check!(tasks::a_finished_child_answers_its_parent),
    check!(tasks::a_failed_child_restarts_after_backoff),
    check!(tasks::terminating_a_parent_terminates_its_children),
    check!(entities::an_entity_operation_applies_once),
    check!(entities::a_call_answers_its_caller),
    check!(entities::entities_with_messages_page_in_order),
    check!(entities::locks_pass_in_order_and_are_released),
];

/// The digest every instance of the suite is pinned to.
const DIGEST: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn id(text: &str) -> anyhow::Result<InstanceId> {
    Ok(InstanceId::parse(text)?)
}

/// A pending instance of orchestrator `Flow`, created at `created_ms`.
fn record(instance: &InstanceId, created_ms: i64) -> InstanceRecord {
    InstanceRecord {
        id: instance.clone(),
        name: "Flow".into(),
        app: "app".into(),
        digest: DIGEST.into(),
        status: RuntimeStatus::Pending,
        input: "1".into(),
        output: None,
        custom_status: None,
        parent_id: None,
        created_ms,
        updated_ms: created_ms,
        started_ms: created_ms,
        generation: 0,
    }
}

/// Stores the suite's component version and creates a pending instance.
async fn create(storage: &dyn DurableStorage, instance: &InstanceId) -> anyhow::Result<()> {
    storage
        .put_component(DIGEST.into(), Arc::from(&b"\0asm"[..]))
        .await?;
    let created = storage
        .create_instance(record(instance, now_ms()), None)
        .await?;
    ensure!(
        created == CreateOutcome::Created { generation: 0 },
        "creating {instance}: {created:?}"
    );
    Ok(())
}

/// An episode of `instance` that leaves it running and does nothing else.
pub fn episode(instance: &InstanceId) -> Episode {
    Episode {
        instance_id: instance.clone(),
        entries: Vec::new(),
        work: Vec::new(),
        timers: Vec::new(),
        cancelled_timers: Vec::new(),
        children: Vec::new(),
        entity_ops: Vec::new(),
        completions: Vec::new(),
        continue_as_new: None,
        status: StatusUpdate {
            status: RuntimeStatus::Running,
            output: None,
            custom_status: None,
        },
        lease_ms: 60_000,
        logs: Vec::new(),
    }
}

/// The last episode of `instance`: it ends `status`, with `output`.
fn ending(instance: &InstanceId, status: RuntimeStatus, output: &str) -> Episode {
    Episode {
        status: StatusUpdate {
            status,
            output: Some(output.into()),
            custom_status: None,
        },
        ..episode(instance)
    }
}

fn entry(seq: u64, kind: &str) -> JournalEntry {
    JournalEntry {
        seq,
        kind: kind.into(),
        request: format!("{{\"seq\":{seq}}}"),
        result: None,
        at_ms: 1_000 + seq as i64,
    }
}

fn activity(task_id: u64) -> NewWorkItem {
    NewWorkItem {
        task_id,
        name: "Act".into(),
        input: task_id.to_string(),
        retry: None,
    }
}

/// A retry policy of `max_attempts` attempts, a second apart (JSON).
fn retry(max_attempts: u32) -> Option<String> {
    let policy = RetryPolicy {
        max_attempts,
        first_retry_interval_ms: 1_000,
        backoff_coefficient: 1.0,
        max_retry_interval_ms: None,
        retry_timeout_ms: None,
    };
    Some(policy.to_json())
}

/// Child `Child` of `parent`, awaited by its task `task_id`.
fn child(parent: &InstanceId, task_id: u64) -> NewChild {
    NewChild {
        task_id: Some(task_id),
        id: parent.child(0, task_id),
        name: "Child".into(),
        app: "app".into(),
        digest: DIGEST.into(),
        input: task_id.to_string(),
        retry: None,
    }
}

/// A log line of activity task 0's first attempt.
fn line(message: &str) -> LogLine {
    LogLine {
        at_ms: 1,
        level: "info",
        function: "Act".into(),
        task_id: Some(0),
        attempt: Some(1),
        message: message.into(),
    }
}

/// An episode that schedules activity task 0; returns its work item.
async fn schedule_one(
    storage: &dyn DurableStorage,
    instance: &InstanceId,
    lease_ms: i64,
) -> anyhow::Result<WorkItem> {
    let mut scheduling = episode(instance);
    scheduling.entries = vec![entry(0, "schedule-activity")];
    scheduling.work = vec![activity(0)];
    scheduling.lease_ms = lease_ms;
    let effects = storage.commit_episode(scheduling).await?;
    ensure!(
        effects.work.len() == 1,
        "one work item dispatched, got {:?}",
        effects.work
    );
    Ok(effects.work[0].clone())
}

/// Claims every work item left, leased or not (to check that none is).
async fn leftover_work(storage: &dyn DurableStorage) -> anyhow::Result<Vec<WorkItem>> {
    let late = now_ms() + 3_600_000;
    Ok(storage.claim_work(late, late + 3_600_000, 100).await?)
}

/// Raises event `Approval` carrying `data`; the message it delivered.
async fn raise(
    storage: &dyn DurableStorage,
    instance: &InstanceId,
    data: &str,
) -> anyhow::Result<InboxMessage> {
    match storage
        .raise_event(instance, "Approval".into(), data.into())
        .await?
    {
        EventOutcome::Delivered(message) => Ok(message),
        other => anyhow::bail!("an event for {instance} is not delivered: {other:?}"),
    }
}

/// The task completions in `messages` addressed to `instance`.
fn completions(
    messages: &[(InstanceId, InboxMessage)],
    instance: &InstanceId,
) -> Vec<(u64, TaskOutcome)> {
    messages
        .iter()
        .filter(|(target, _)| target == instance)
        .filter_map(|(_, message)| match &message.body {
            InboxBody::TaskCompleted { task_id, outcome } => Some((*task_id, outcome.clone())),
            InboxBody::Event { .. } => None,
        })
        .collect()
}

async fn status(
    storage: &dyn DurableStorage,
    instance: &InstanceId,
) -> anyhow::Result<RuntimeStatus> {
    Ok(storage
        .instance(instance)
        .await?
        .with_context(|| format!("{instance} is gone"))?
        .status)
}

/// What every backend of [`Storage`] must do: settings kept first-writer-
/// wins, and keys stored, listed and deleted.
pub async fn settings_and_keys(storage: Arc<dyn Storage>) -> anyhow::Result<()> {
    ensure!(storage.setting("k").await?.is_none(), "no setting yet");
    ensure!(
        storage.init_setting("k", "first").await? == "first",
        "the first value"
    );
    ensure!(
        storage.init_setting("k", "second").await? == "first",
        "kept"
    );
    ensure!(
        storage.setting("k").await?.as_deref() == Some("first"),
        "read back"
    );
    let key = StoredKey {
        id: "k1".into(),
        name: "default".into(),
        function: Some("Greet".into()),
        hash: [7; 32],
        created_ms: 1,
    };
    storage.insert_key(key.clone()).await?;
    ensure!(storage.keys().await? == vec![key.clone()], "listed");
    ensure!(
        storage.insert_key(key.clone()).await.is_err(),
        "a key id is unique"
    );
    ensure!(storage.delete_key("k1").await?, "deleted");
    ensure!(!storage.delete_key("k1").await?, "deleting twice");
    ensure!(storage.keys().await?.is_empty(), "none left");
    Ok(())
}
