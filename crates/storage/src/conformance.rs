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
//! Compiled only with the `conformance` feature, which only the test crate
//! enables.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::{Context as _, ensure};
use perdure_records::{
    ContinueAsNew, EntityCommit, EntityId, EntityOpKind, Episode, InboxBody, InboxMessage,
    InstanceFilter, InstanceId, InstanceRecord, JournalEntry, NewChild, NewEntityOp, NewTimer,
    NewWorkItem, OpDone, RuntimeStatus, StatusUpdate, WorkItem, now_ms,
};

use crate::{ChangeOutcome, CreateOutcome, DurableStorage, EventOutcome, Storage, StoredKey};

/// What a check returns.
pub type CheckFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// A check of the suite: its name and how to run it on an empty database.
pub struct Check {
    pub name: &'static str,
    pub run: fn(Arc<dyn DurableStorage>) -> CheckFuture,
}

macro_rules! check {
    ($name:ident) => {
        Check {
            name: stringify!($name),
            run: |storage| -> CheckFuture { Box::pin($name(storage)) },
        }
    };
}

/// Every check of [`DurableStorage`], in a fixed order.
pub const DURABLE_CHECKS: &[Check] = &[
    check!(instances_are_created_once),
    check!(an_episode_commits_its_journal_work_and_timers),
    check!(a_task_is_answered_once),
    check!(expired_work_is_claimed_again),
    check!(timers_fire_once),
    check!(events_reach_unfinished_instances_only),
    check!(terminating_ends_an_instance_and_its_work),
    check!(only_finished_instances_are_purged),
    check!(listings_page_in_creation_order),
    check!(a_finished_child_answers_its_parent),
    check!(continue_as_new_starts_a_clean_generation),
    check!(suspension_outlives_a_running_episode),
    check!(an_entity_operation_applies_once),
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
fn episode(instance: &InstanceId) -> Episode {
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

/// The task completions in `messages` addressed to `instance`.
fn completions(
    messages: &[(InstanceId, InboxMessage)],
    instance: &InstanceId,
) -> Vec<(u64, Result<String, String>)> {
    messages
        .iter()
        .filter(|(target, _)| target == instance)
        .filter_map(|(_, message)| match &message.body {
            InboxBody::TaskCompleted { task_id, outcome } => {
                Some((*task_id, outcome.clone().map_err(|e| e.message.clone())))
            }
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

async fn instances_are_created_once(storage: Arc<dyn DurableStorage>) -> anyhow::Result<()> {
    let a = id("a")?;
    ensure!(
        storage.instance(&a).await?.is_none(),
        "an unknown id has no instance"
    );
    ensure!(
        storage.history(&a).await?.is_none(),
        "an unknown id has no history"
    );
    create(&*storage, &a).await?;
    let again = storage.create_instance(record(&a, now_ms()), None).await?;
    ensure!(
        again == CreateOutcome::AlreadyRunning(RuntimeStatus::Pending),
        "a second create of a pending id: {again:?}"
    );
    let stored = storage
        .instance(&a)
        .await?
        .context("the created instance")?;
    ensure!(
        (
            stored.name.as_str(),
            stored.app.as_str(),
            stored.digest.as_str(),
            stored.input.as_str()
        ) == ("Flow", "app", DIGEST, "1"),
        "stored as created: {stored:?}"
    );
    let history = storage.history(&a).await?.context("its history")?;
    ensure!(
        history.journal.is_empty() && history.inbox.is_empty(),
        "a new instance's history is empty: {history:?}"
    );
    ensure!(
        storage.component(DIGEST).await?.as_deref() == Some(&b"\0asm"[..]),
        "the component's bytes are kept"
    );
    Ok(())
}

async fn an_episode_commits_its_journal_work_and_timers(
    storage: Arc<dyn DurableStorage>,
) -> anyhow::Result<()> {
    let a = id("a")?;
    create(&*storage, &a).await?;
    let fire_at = now_ms() + 3_600_000;
    let mut first = episode(&a);
    first.entries = vec![entry(0, "schedule-activity"), entry(1, "create-timer")];
    first.work = vec![activity(0)];
    first.timers = vec![NewTimer {
        task_id: 1,
        fire_at_ms: fire_at,
    }];
    let effects = storage.commit_episode(first.clone()).await?;
    let [item] = &effects.work[..] else {
        anyhow::bail!("one work item dispatched, got {:?}", effects.work);
    };
    ensure!(
        (
            item.task_id,
            item.attempt,
            item.generation,
            item.name.as_str(),
            item.app.as_str()
        ) == (0, 1, 0, "Act", "app")
            && item.instance_id == a
            && item.digest == DIGEST,
        "the dispatched item: {item:?}"
    );
    ensure!(
        effects.next_timer_ms == Some(fire_at),
        "the new timer: {:?}",
        effects.next_timer_ms
    );
    ensure!(
        storage.next_timer_due().await? == Some(fire_at),
        "the earliest timer is stored"
    );
    let history = storage.history(&a).await?.context("its history")?;
    ensure!(
        history.journal == first.entries,
        "the journal as committed: {:?}",
        history.journal
    );
    ensure!(history.record.status == RuntimeStatus::Running, "running");
    Ok(())
}

async fn a_task_is_answered_once(storage: Arc<dyn DurableStorage>) -> anyhow::Result<()> {
    let a = id("a")?;
    create(&*storage, &a).await?;
    let item = schedule_one(&*storage, &a, 60_000).await?;
    let effects = storage
        .complete_work(&item, Ok("42".into()), Vec::new(), 60_000)
        .await?;
    ensure!(
        completions(&effects.messages, &a) == vec![(0, Ok("42".into()))],
        "the completion is delivered: {:?}",
        effects.messages
    );
    let duplicate = storage
        .complete_work(&item, Ok("43".into()), Vec::new(), 60_000)
        .await?;
    ensure!(
        duplicate.messages.is_empty(),
        "a duplicate run answers nothing: {:?}",
        duplicate.messages
    );
    let history = storage.history(&a).await?.context("its history")?;
    let answers: Vec<_> = history.inbox.iter().map(|m| m.body.clone()).collect();
    ensure!(
        answers
            == vec![InboxBody::TaskCompleted {
                task_id: 0,
                outcome: Ok("42".into())
            }],
        "one answer in the inbox: {answers:?}"
    );
    ensure!(
        storage
            .claim_work(now_ms() + 3_600_000, now_ms() + 7_200_000, 10)
            .await?
            .is_empty(),
        "a completed item is gone"
    );
    Ok(())
}

async fn expired_work_is_claimed_again(storage: Arc<dyn DurableStorage>) -> anyhow::Result<()> {
    let a = id("a")?;
    create(&*storage, &a).await?;
    let before = now_ms();
    schedule_one(&*storage, &a, 1_000).await?;
    ensure!(
        storage
            .claim_work(before, before + 60_000, 10)
            .await?
            .is_empty(),
        "a leased item is not claimed before its lease ends"
    );
    let late = now_ms() + 10_000;
    let claimed = storage.claim_work(late, late + 60_000, 10).await?;
    ensure!(
        claimed.len() == 1 && claimed[0].attempt == 2 && claimed[0].task_id == 0,
        "an expired item is claimed, its attempt counted: {claimed:?}"
    );
    ensure!(
        storage
            .claim_work(late, late + 60_000, 10)
            .await?
            .is_empty(),
        "a claimed item is leased again"
    );
    Ok(())
}

async fn timers_fire_once(storage: Arc<dyn DurableStorage>) -> anyhow::Result<()> {
    let a = id("a")?;
    create(&*storage, &a).await?;
    let mut waiting = episode(&a);
    waiting.entries = vec![entry(0, "create-timer")];
    waiting.timers = vec![NewTimer {
        task_id: 0,
        fire_at_ms: now_ms() - 1,
    }];
    storage.commit_episode(waiting).await?;
    let fired = storage.fire_timers(now_ms(), 60_000).await?;
    let answered = completions(&fired.messages, &a);
    ensure!(
        answered.len() == 1 && answered[0].0 == 0 && answered[0].1.is_ok(),
        "the due timer answers its task: {:?}",
        fired.messages
    );
    let again = storage.fire_timers(now_ms(), 60_000).await?;
    ensure!(
        again.messages.is_empty(),
        "a timer fires once: {:?}",
        again.messages
    );
    ensure!(
        storage.next_timer_due().await?.is_none(),
        "no timer is left"
    );
    Ok(())
}

async fn events_reach_unfinished_instances_only(
    storage: Arc<dyn DurableStorage>,
) -> anyhow::Result<()> {
    let a = id("a")?;
    let raised = storage
        .raise_event(&a, "Approval".into(), "true".into())
        .await?;
    ensure!(raised == EventOutcome::NotFound, "no instance: {raised:?}");
    create(&*storage, &a).await?;
    let raised = storage
        .raise_event(&a, "Approval".into(), "true".into())
        .await?;
    let EventOutcome::Delivered(message) = raised else {
        anyhow::bail!("delivered to a pending instance: {raised:?}");
    };
    ensure!(
        message.body
            == InboxBody::Event {
                name: "Approval".into(),
                data: "true".into()
            },
        "the event as raised: {message:?}"
    );
    let history = storage.history(&a).await?.context("its history")?;
    ensure!(
        history.inbox == vec![message],
        "in the inbox: {:?}",
        history.inbox
    );
    storage.terminate(&a, "null".into()).await?;
    let raised = storage
        .raise_event(&a, "Approval".into(), "true".into())
        .await?;
    ensure!(
        raised == EventOutcome::Finished(RuntimeStatus::Terminated),
        "not delivered to a terminated instance: {raised:?}"
    );
    Ok(())
}

async fn terminating_ends_an_instance_and_its_work(
    storage: Arc<dyn DurableStorage>,
) -> anyhow::Result<()> {
    let a = id("a")?;
    let (outcome, _) = storage.terminate(&a, "null".into()).await?;
    ensure!(
        outcome == ChangeOutcome::NotFound,
        "no instance: {outcome:?}"
    );
    create(&*storage, &a).await?;
    let mut busy = episode(&a);
    busy.entries = vec![entry(0, "schedule-activity"), entry(1, "create-timer")];
    busy.work = vec![activity(0)];
    busy.timers = vec![NewTimer {
        task_id: 1,
        fire_at_ms: now_ms() + 60_000,
    }];
    let item = storage
        .commit_episode(busy)
        .await?
        .work
        .pop()
        .context("its work item")?;
    let (outcome, effects) = storage.terminate(&a, "\"stop\"".into()).await?;
    ensure!(outcome == ChangeOutcome::Done, "terminated: {outcome:?}");
    ensure!(
        effects.cancelled.contains(&a),
        "reported cancelled: {effects:?}"
    );
    let stored = storage.instance(&a).await?.context("the instance")?;
    ensure!(
        stored.status == RuntimeStatus::Terminated && stored.output.as_deref() == Some("\"stop\""),
        "terminated with its reason: {stored:?}"
    );
    ensure!(
        storage.next_timer_due().await?.is_none(),
        "its timer is gone"
    );
    ensure!(
        storage
            .claim_work(now_ms() + 3_600_000, now_ms() + 7_200_000, 10)
            .await?
            .is_empty(),
        "its work item is gone"
    );
    let late = storage
        .complete_work(&item, Ok("1".into()), Vec::new(), 60_000)
        .await?;
    ensure!(
        late.messages.is_empty(),
        "a late result answers nothing: {late:?}"
    );
    let (again, _) = storage.terminate(&a, "null".into()).await?;
    ensure!(
        again == ChangeOutcome::Finished(RuntimeStatus::Terminated),
        "terminating twice: {again:?}"
    );
    Ok(())
}

async fn only_finished_instances_are_purged(
    storage: Arc<dyn DurableStorage>,
) -> anyhow::Result<()> {
    let (a, b, c) = (id("a")?, id("b")?, id("c")?);
    for instance in [&a, &b, &c] {
        create(&*storage, instance).await?;
    }
    let early = storage.purge(&a).await?;
    ensure!(
        early == ChangeOutcome::NotFinished(RuntimeStatus::Pending),
        "a pending instance is kept: {early:?}"
    );
    storage.terminate(&a, "null".into()).await?;
    ensure!(
        storage.purge(&a).await? == ChangeOutcome::Done,
        "purged once finished"
    );
    ensure!(storage.instance(&a).await?.is_none(), "gone");
    ensure!(
        storage.purge(&a).await? == ChangeOutcome::NotFound,
        "purging twice"
    );
    storage.terminate(&b, "null".into()).await?;
    let purged = storage
        .purge_many(InstanceFilter {
            statuses: vec![RuntimeStatus::Terminated, RuntimeStatus::Pending],
            ..InstanceFilter::default()
        })
        .await?;
    ensure!(
        purged == 1,
        "only the finished instance is purged: {purged}"
    );
    ensure!(
        storage.instance(&c).await?.is_some(),
        "the pending one is kept"
    );
    Ok(())
}

async fn listings_page_in_creation_order(storage: Arc<dyn DurableStorage>) -> anyhow::Result<()> {
    storage
        .put_component(DIGEST.into(), Arc::from(&b"\0asm"[..]))
        .await?;
    let start = now_ms();
    let ids: Vec<InstanceId> = (0..5)
        .map(|i| id(&format!("i{i}")))
        .collect::<Result<_, _>>()?;
    for (i, instance) in ids.iter().enumerate() {
        storage
            .create_instance(record(instance, start + i as i64), None)
            .await?;
    }
    let mut listed = Vec::new();
    let mut continuation = None;
    for page in 0.. {
        ensure!(page < 5, "the listing ends");
        let next = storage
            .list_instances(InstanceFilter::default(), 2, continuation)
            .await?;
        ensure!(next.instances.len() <= 2, "at most `top` per page");
        listed.extend(next.instances.into_iter().map(|r| r.id));
        continuation = next.continuation;
        if continuation.is_none() {
            break;
        }
    }
    ensure!(
        listed == ids,
        "every instance once, in creation order: {listed:?}"
    );
    storage.terminate(&ids[1], "null".into()).await?;
    let terminated = storage
        .list_instances(
            InstanceFilter {
                statuses: vec![RuntimeStatus::Terminated],
                ..InstanceFilter::default()
            },
            10,
            None,
        )
        .await?;
    ensure!(
        terminated.instances.iter().map(|r| &r.id).eq([&ids[1]]),
        "filtered by status: {:?}",
        terminated.instances
    );
    let prefixed = storage
        .list_instances(
            InstanceFilter {
                id_prefix: Some("i3".into()),
                ..InstanceFilter::default()
            },
            10,
            None,
        )
        .await?;
    ensure!(
        prefixed.instances.iter().map(|r| &r.id).eq([&ids[3]]),
        "filtered by id prefix: {:?}",
        prefixed.instances
    );
    let unfinished = storage.unfinished_instances().await?;
    ensure!(
        unfinished.len() == 4 && !unfinished.contains(&ids[1]),
        "the unfinished ones: {unfinished:?}"
    );
    Ok(())
}

async fn a_finished_child_answers_its_parent(
    storage: Arc<dyn DurableStorage>,
) -> anyhow::Result<()> {
    let parent = id("parent")?;
    create(&*storage, &parent).await?;
    let child = parent.child(0, 0);
    let mut starting = episode(&parent);
    starting.entries = vec![entry(0, "start-child")];
    starting.children = vec![NewChild {
        task_id: Some(0),
        id: child.clone(),
        name: "Child".into(),
        app: "app".into(),
        digest: DIGEST.into(),
        input: "2".into(),
        retry: None,
    }];
    let effects = storage.commit_episode(starting).await?;
    ensure!(
        effects.wake.contains(&child),
        "the child is woken: {effects:?}"
    );
    let stored = storage.instance(&child).await?.context("the child")?;
    ensure!(
        stored.parent_id.as_deref() == Some("parent") && stored.input == "2",
        "the child as started: {stored:?}"
    );
    let mut ending = episode(&child);
    ending.status = StatusUpdate {
        status: RuntimeStatus::Completed,
        output: Some("\"done\"".into()),
        custom_status: None,
    };
    let effects = storage.commit_episode(ending).await?;
    ensure!(
        completions(&effects.messages, &parent) == vec![(0, Ok("\"done\"".into()))],
        "the parent's task is answered: {:?}",
        effects.messages
    );
    ensure!(
        status(&*storage, &child).await? == RuntimeStatus::Completed,
        "the child completed"
    );
    Ok(())
}

async fn continue_as_new_starts_a_clean_generation(
    storage: Arc<dyn DurableStorage>,
) -> anyhow::Result<()> {
    let a = id("a")?;
    create(&*storage, &a).await?;
    schedule_one(&*storage, &a, 60_000).await?;
    let mut next = episode(&a);
    next.entries = vec![entry(1, "continue-as-new")];
    next.continue_as_new = Some(ContinueAsNew {
        input: "2".into(),
        dropped_events: Vec::new(),
    });
    let effects = storage.commit_episode(next).await?;
    ensure!(
        effects.work.is_empty(),
        "nothing of the old generation is dispatched"
    );
    let history = storage.history(&a).await?.context("its history")?;
    ensure!(
        history.journal.is_empty()
            && history.record.generation == 1
            && history.record.input == "2"
            && !history.record.status.is_finished(),
        "a new generation on the new input: {history:?}"
    );
    ensure!(
        storage
            .claim_work(now_ms() + 3_600_000, now_ms() + 7_200_000, 10)
            .await?
            .is_empty(),
        "the old generation's work is gone"
    );
    Ok(())
}

async fn suspension_outlives_a_running_episode(
    storage: Arc<dyn DurableStorage>,
) -> anyhow::Result<()> {
    let a = id("a")?;
    create(&*storage, &a).await?;
    storage.commit_episode(episode(&a)).await?;
    ensure!(
        storage.set_suspended(&a, true).await? == ChangeOutcome::Done,
        "suspended"
    );
    storage.commit_episode(episode(&a)).await?;
    ensure!(
        status(&*storage, &a).await? == RuntimeStatus::Suspended,
        "an episode that ran meanwhile does not resume it"
    );
    ensure!(
        storage.set_suspended(&a, false).await? == ChangeOutcome::Done,
        "resumed"
    );
    ensure!(
        status(&*storage, &a).await? == RuntimeStatus::Running,
        "running again"
    );
    ensure!(
        storage.set_digest(&a, DIGEST.into()).await? == ChangeOutcome::Done,
        "repinned"
    );
    Ok(())
}

async fn an_entity_operation_applies_once(storage: Arc<dyn DurableStorage>) -> anyhow::Result<()> {
    let counter = EntityId::parse("Counter", "c1")?;
    let add = |input: &str| NewEntityOp {
        target: counter.clone(),
        kind: EntityOpKind::Operation {
            operation: "add".into(),
            input: Some(input.into()),
        },
        sender: None,
        reply_task: None,
    };
    let effects = storage.send_to_entities(vec![add("1"), add("2")]).await?;
    ensure!(
        effects.entities.contains(&counter),
        "the entity is woken: {effects:?}"
    );
    let waiting = storage.entities_with_messages(None, 10).await?;
    ensure!(
        waiting == vec![counter.clone()],
        "it has messages: {waiting:?}"
    );
    let batch = storage.entity_batch(&counter, 10).await?;
    ensure!(
        batch.state.is_none() && batch.ops.len() == 2,
        "both messages, in order: {batch:?}"
    );
    let first = batch.ops[0].id;
    let ran = || OpDone::Ran {
        result: Ok(None),
        sends: Vec::new(),
    };
    storage
        .commit_entity_batch(EntityCommit {
            entity: counter.clone(),
            state: Some("1".into()),
            done: vec![(first, ran())],
        })
        .await?;
    let stored = storage.entity(&counter).await?.context("the entity")?;
    ensure!(
        stored.state.as_deref() == Some("1"),
        "its state: {stored:?}"
    );
    storage
        .commit_entity_batch(EntityCommit {
            entity: counter.clone(),
            state: Some("100".into()),
            done: vec![(first, ran())],
        })
        .await?;
    let stored = storage.entity(&counter).await?.context("the entity")?;
    ensure!(
        stored.state.as_deref() == Some("1"),
        "an operation that was applied is not applied again: {stored:?}"
    );
    let rest = storage.entity_batch(&counter, 10).await?;
    ensure!(
        rest.state.as_deref() == Some("1") && rest.ops.len() == 1 && rest.ops[0].id != first,
        "the second message is left: {rest:?}"
    );
    let listed = storage.list_entities("Counter", 10, None).await?;
    ensure!(
        listed.entities.iter().map(|e| &e.id).eq([&counter]),
        "listed: {listed:?}"
    );
    Ok(())
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
