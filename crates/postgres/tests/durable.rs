//! `DurableStorage` on PostgreSQL, against a server: each test creates a
//! database of its own on the server of `PERDURE_TEST_POSTGRES_URL` and
//! drops it at the end; without the variable the tests pass with a notice.

use std::sync::Arc;

use perdure_postgres::PgStorage;
use perdure_records::{
    ContinueAsNew, EntityCommit, EntityId, EntityOpKind, Episode, GuestError, InboxBody,
    InstanceFilter, InstanceId, InstanceRecord, JournalEntry, LogLine, NewChild, NewEntityOp,
    NewTimer, NewWorkItem, OpDone, RetryPolicy, RuntimeStatus, StatusUpdate, now_ms,
};
use perdure_storage::{ChangeOutcome, CreateOutcome, DurableStorage, EventOutcome};

/// A database of the test's own.
struct Db {
    storage: PgStorage,
    admin: tokio_postgres::Client,
    name: String,
}

/// Opens a fresh database for `test`; `None` (and a notice) without
/// `PERDURE_TEST_POSTGRES_URL`.
async fn open(test: &str) -> anyhow::Result<Option<Db>> {
    let Ok(url) = std::env::var("PERDURE_TEST_POSTGRES_URL") else {
        eprintln!("skipping {test}: PERDURE_TEST_POSTGRES_URL is not set");
        return Ok(None);
    };
    let (admin, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let name = format!("perdure_{test}_{}_{nanos}", std::process::id());
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await?;
    let (base, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
    let authority = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority..].find('/') {
        Some(slash) => &base[..authority + slash],
        None => base,
    };
    let mut db_url = format!("{base}/{name}");
    if !query.is_empty() {
        db_url.push('?');
        db_url.push_str(query);
    }
    let storage = PgStorage::open(&db_url, Arc::new(())).await?;
    storage
        .put_component("d".into(), Arc::from(&b"wasm"[..]))
        .await?;
    Ok(Some(Db {
        storage,
        admin,
        name,
    }))
}

impl Db {
    async fn drop(self) -> anyhow::Result<()> {
        self.storage.close().await;
        self.admin
            .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .await?;
        Ok(())
    }
}

fn id(s: &str) -> InstanceId {
    InstanceId::parse(s).unwrap_or_else(|e| panic!("{e}"))
}

fn record(instance: &str, created_ms: i64) -> InstanceRecord {
    InstanceRecord {
        id: id(instance),
        name: "O".into(),
        app: "a".into(),
        digest: "d".into(),
        status: RuntimeStatus::Running,
        input: "null".into(),
        output: None,
        custom_status: None,
        parent_id: None,
        created_ms,
        updated_ms: created_ms,
        started_ms: created_ms,
        generation: 0,
    }
}

fn episode(instance: &InstanceId, status: RuntimeStatus) -> Episode {
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
            status,
            output: None,
            custom_status: None,
        },
        lease_ms: 60_000,
        logs: Vec::new(),
    }
}

fn work(task_id: u64, retry: Option<String>) -> NewWorkItem {
    NewWorkItem {
        task_id,
        name: "Act".into(),
        input: format!("{task_id}"),
        retry,
    }
}

fn line(message: &str) -> LogLine {
    LogLine {
        at_ms: 0,
        level: "info",
        function: "Act".into(),
        task_id: Some(0),
        attempt: Some(1),
        message: message.into(),
    }
}

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

fn entity(name: &str, key: &str) -> EntityId {
    EntityId::parse(name, key).unwrap_or_else(|e| panic!("{e}"))
}

fn op(
    target: &EntityId,
    kind: EntityOpKind,
    sender: Option<&InstanceId>,
    reply: Option<u64>,
) -> NewEntityOp {
    NewEntityOp {
        target: target.clone(),
        kind,
        sender: sender.cloned(),
        reply_task: reply,
    }
}

fn add(n: i64) -> EntityOpKind {
    EntityOpKind::Operation {
        operation: "add".into(),
        input: Some(n.to_string()),
    }
}

const FAR: i64 = 3_600_000;

#[tokio::test]
async fn instances_are_created_listed_changed_and_purged() -> anyhow::Result<()> {
    let Some(db) = open("instances").await? else {
        return Ok(());
    };
    let s = &db.storage;
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned();
    let created = s.create_instance(record("a1", 1), Some(tp.clone())).await?;
    assert_eq!(created, CreateOutcome::Created { generation: 0 });
    let again = s.create_instance(record("a1", 1), None).await?;
    assert_eq!(again, CreateOutcome::AlreadyRunning(RuntimeStatus::Running));
    assert_eq!(s.instance(&id("a1")).await?, Some(record("a1", 1)));
    let history = s.history(&id("a1")).await?.expect("a history");
    assert!(history.journal.is_empty() && history.inbox.is_empty());
    assert_eq!(history.arrival_floor, 0);
    let origin = s.trace_origin(&id("a1")).await?.expect("an origin");
    assert_eq!(origin.traceparent, Some((0, tp)));
    assert_eq!(s.instance(&id("nope")).await?, None);
    assert!(s.history(&id("nope")).await?.is_none());

    // Listing pages in (created, id) order, bytewise as on SQLite.
    for (instance, created_ms) in [("a2", 2), ("B3", 2), ("a4", 3)] {
        s.create_instance(record(instance, created_ms), None)
            .await?;
    }
    let mut seen = Vec::new();
    let mut continuation = None;
    loop {
        let page = s
            .list_instances(InstanceFilter::default(), 3, continuation)
            .await?;
        seen.extend(page.instances.iter().map(|r| r.id.to_string()));
        continuation = page.continuation;
        if continuation.is_none() {
            break;
        }
    }
    assert_eq!(seen, ["a1", "B3", "a2", "a4"]);
    let filter = InstanceFilter {
        id_prefix: Some("a".into()),
        statuses: vec![RuntimeStatus::Running, RuntimeStatus::Pending],
        created_from_ms: Some(2),
        ..InstanceFilter::default()
    };
    let page = s.list_instances(filter, usize::MAX, None).await?;
    let ids: Vec<String> = page.instances.iter().map(|r| r.id.to_string()).collect();
    assert_eq!(ids, ["a2", "a4"]);
    assert_eq!(s.unfinished_instances().await?.len(), 4);

    // Events reach unfinished instances only, in arrival order.
    let first = s.raise_event(&id("a1"), "go".into(), "1".into()).await?;
    let second = s.raise_event(&id("a1"), "go".into(), "2".into()).await?;
    let (EventOutcome::Delivered(first), EventOutcome::Delivered(second)) = (first, second) else {
        panic!("events were not delivered");
    };
    assert!(first.arrival < second.arrival);
    let inbox = s.history(&id("a1")).await?.expect("a history").inbox;
    assert_eq!(inbox, [first, second]);
    assert_eq!(
        s.raise_event(&id("nope"), "go".into(), "1".into()).await?,
        EventOutcome::NotFound
    );

    // Suspending, resuming and repinning.
    assert_eq!(s.set_suspended(&id("a1"), true).await?, ChangeOutcome::Done);
    let status = |r: Option<InstanceRecord>| r.map(|r| r.status);
    assert_eq!(
        status(s.instance(&id("a1")).await?),
        Some(RuntimeStatus::Suspended)
    );
    assert_eq!(
        s.set_suspended(&id("a1"), false).await?,
        ChangeOutcome::Done
    );
    assert_eq!(
        status(s.instance(&id("a1")).await?),
        Some(RuntimeStatus::Running)
    );
    s.put_component("e".into(), Arc::from(&b"v2"[..])).await?;
    assert_eq!(
        s.set_digest(&id("a1"), "e".into()).await?,
        ChangeOutcome::Done
    );
    assert_eq!(s.component("e").await?, Some(b"v2".to_vec()));
    assert_eq!(
        s.set_digest(&id("nope"), "e".into()).await?,
        ChangeOutcome::NotFound
    );

    // Terminating, reusing the id, purging.
    assert_eq!(
        s.purge(&id("a1")).await?,
        ChangeOutcome::NotFinished(RuntimeStatus::Running)
    );
    let (outcome, effects) = s.terminate(&id("a1"), "\"stop\"".into()).await?;
    assert_eq!(outcome, ChangeOutcome::Done);
    assert_eq!(effects.cancelled, [id("a1")]);
    assert_eq!(
        s.raise_event(&id("a1"), "go".into(), "3".into()).await?,
        EventOutcome::Finished(RuntimeStatus::Terminated)
    );
    let (outcome, _) = s.terminate(&id("a1"), "null".into()).await?;
    assert_eq!(outcome, ChangeOutcome::Finished(RuntimeStatus::Terminated));
    let reused = s.create_instance(record("a1", 5), None).await?;
    assert_eq!(reused, CreateOutcome::Created { generation: 1 });
    let history = s.history(&id("a1")).await?.expect("a history");
    assert!(history.inbox.is_empty(), "the old instance's inbox is gone");
    let origin = s.trace_origin(&id("a1")).await?.expect("an origin");
    assert_eq!((origin.generation, origin.traceparent), (1, None));
    s.terminate(&id("a1"), "null".into()).await?;
    assert_eq!(s.purge(&id("a1")).await?, ChangeOutcome::Done);
    assert!(s.history(&id("a1")).await?.is_none());
    assert_eq!(s.purge(&id("a1")).await?, ChangeOutcome::NotFound);
    s.terminate(&id("a2"), "null".into()).await?;
    s.terminate(&id("B3"), "null".into()).await?;
    let filter = InstanceFilter {
        id_prefix: Some("a".into()),
        ..InstanceFilter::default()
    };
    assert_eq!(s.purge_many(filter).await?, 1, "a4 is running");
    assert_eq!(s.purge_many(InstanceFilter::default()).await?, 1);
    db.drop().await
}

#[tokio::test]
async fn work_and_timers_are_answered_once() -> anyhow::Result<()> {
    let Some(db) = open("work").await? else {
        return Ok(());
    };
    let s = &db.storage;
    let i = id("i");
    s.create_instance(record("i", 1), None).await?;
    let fire_at = now_ms() + 1_000;
    let mut first = episode(&i, RuntimeStatus::Running);
    first.entries = vec![JournalEntry {
        seq: 0,
        kind: "schedule-activity".into(),
        request: "{}".into(),
        result: None,
        at_ms: 1,
    }];
    first.work = vec![work(0, None), work(2, None)];
    first.timers = vec![
        NewTimer {
            task_id: 1,
            fire_at_ms: fire_at,
        },
        NewTimer {
            task_id: 3,
            fire_at_ms: fire_at + 5,
        },
    ];
    first.cancelled_timers = vec![3];
    first.logs = vec![line("episode")];
    let effects = s.commit_episode(first).await?;
    assert_eq!(effects.work.len(), 2);
    let item = effects.work[0].clone();
    assert_eq!((item.task_id, item.attempt, item.generation), (0, 1, 0));
    assert_eq!((item.app.as_str(), item.digest.as_str()), ("a", "d"));
    assert!(effects.work[0].id < effects.work[1].id);
    assert_eq!(effects.next_timer_ms, Some(fire_at));
    assert_eq!(s.next_timer_due().await?, Some(fire_at));
    let backlog = s.backlog().await?;
    assert_eq!(
        (backlog.work_items, backlog.timers),
        (2, 1),
        "timer 3 is cancelled"
    );
    assert_eq!(backlog.count(RuntimeStatus::Running), 1);
    assert_eq!(s.history(&i).await?.expect("a history").journal.len(), 1);

    // A lease that has not expired is not claimed; an expired one is, with
    // one more attempt.
    assert!(s.claim_work(now_ms(), now_ms() + FAR, 10).await?.is_empty());
    let claimed = s.claim_work(now_ms() + FAR, now_ms() + 2 * FAR, 1).await?;
    assert_eq!(claimed.len(), 1);
    assert_eq!((claimed[0].id, claimed[0].attempt), (item.id, 2));

    // The first completion answers the task; a duplicate changes nothing.
    let done = s
        .complete_work(&item, Ok("42".into()), vec![line("ran")], 60_000)
        .await?;
    assert_eq!(done.messages.len(), 1);
    let (to, message) = &done.messages[0];
    assert_eq!(to, &i);
    assert_eq!(
        message.body,
        InboxBody::TaskCompleted {
            task_id: 0,
            outcome: Ok("42".into())
        }
    );
    let duplicate = s
        .complete_work(&item, Ok("43".into()), vec![line("again")], 60_000)
        .await?;
    assert_eq!(duplicate, Default::default());
    let logs = s.logs(&i, 0, 10).await?;
    let messages: Vec<&str> = logs.iter().map(|l| l.line.message.as_str()).collect();
    assert_eq!(messages, ["episode", "ran"]);
    assert_eq!(logs[1].line.attempt, Some(1));

    // Timers fire once, answering their task with null.
    assert_eq!(s.fire_timers(now_ms(), 60_000).await?, Default::default());
    let fired = s.fire_timers(fire_at + 10, 60_000).await?;
    assert_eq!(fired.messages.len(), 1);
    assert_eq!(
        fired.messages[0].1.body,
        InboxBody::TaskCompleted {
            task_id: 1,
            outcome: Ok("null".into())
        }
    );
    assert_eq!(
        s.fire_timers(fire_at + 10, 60_000).await?,
        Default::default()
    );
    assert_eq!(s.next_timer_due().await?, None);
    let inbox = s.history(&i).await?.expect("a history").inbox;
    assert_eq!(inbox.len(), 2);
    assert!(inbox[0].arrival < inbox[1].arrival);

    // Finishing drops the work still pending; later episodes are dropped.
    let mut last = episode(&i, RuntimeStatus::Completed);
    last.status.output = Some("\"done\"".into());
    last.work = vec![work(4, None)];
    let effects = s.commit_episode(last).await?;
    assert!(effects.work.is_empty(), "{effects:?}");
    let backlog = s.backlog().await?;
    assert_eq!((backlog.work_items, backlog.timers), (0, 0));
    assert_eq!(backlog.count(RuntimeStatus::Completed), 1);
    let mut late = episode(&i, RuntimeStatus::Running);
    late.work = vec![work(5, None)];
    assert_eq!(s.commit_episode(late).await?, Default::default());
    let record = s.instance(&i).await?.expect("a record");
    assert_eq!(record.status, RuntimeStatus::Completed);
    assert_eq!(record.output.as_deref(), Some("\"done\""));
    db.drop().await
}

#[tokio::test]
async fn failed_activities_are_retried_after_backoff() -> anyhow::Result<()> {
    let Some(db) = open("retries").await? else {
        return Ok(());
    };
    let s = &db.storage;
    let i = id("r");
    s.create_instance(record("r", 1), None).await?;
    let mut first = episode(&i, RuntimeStatus::Running);
    first.work = vec![work(0, retry(3))];
    let mut item = s.commit_episode(first).await?.work.remove(0);
    let failure = || Err(GuestError::new("application", "boom"));
    for attempt in 1..3 {
        let effects = s
            .complete_work(&item, failure(), Vec::new(), 60_000)
            .await?;
        assert!(effects.messages.is_empty(), "attempt {attempt} is retried");
        let due = effects.next_timer_ms.expect("a retry timer");
        // The item waits for its timer, not for its lease.
        assert!(s.claim_work(due, due, 10).await?.is_empty());
        let mut fired = s.fire_timers(due, 60_000).await?;
        assert_eq!(fired.work.len(), 1);
        item = fired.work.remove(0);
        assert_eq!(item.attempt, attempt + 1);
    }
    let history = s.history(&i).await?.expect("a history");
    let attempts: Vec<u32> = history.attempts.iter().map(|a| a.attempt).collect();
    assert_eq!(attempts, [1, 2]);
    assert_eq!(history.attempts[0].error.message, "boom");
    let effects = s
        .complete_work(&item, failure(), Vec::new(), 60_000)
        .await?;
    assert_eq!(effects.messages.len(), 1, "the last attempt fails the task");
    let InboxBody::TaskCompleted { outcome, .. } = &effects.messages[0].1.body else {
        panic!("not a completion");
    };
    assert_eq!(outcome.as_ref().err().map(|e| e.code), Some("application"));
    db.drop().await
}

#[tokio::test]
async fn children_answer_their_parent_restart_and_terminate_with_it() -> anyhow::Result<()> {
    let Some(db) = open("children").await? else {
        return Ok(());
    };
    let s = &db.storage;
    let parent = id("p");
    s.create_instance(record("p", 1), None).await?;
    let child = |task: u64, retry: Option<String>| NewChild {
        task_id: Some(task),
        id: parent.child(0, task),
        name: "C".into(),
        app: "a".into(),
        digest: "d".into(),
        input: "null".into(),
        retry,
    };
    let mut start = episode(&parent, RuntimeStatus::Running);
    start.children = vec![child(1, None), child(2, retry(2)), child(3, None)];
    let effects = s.commit_episode(start).await?;
    assert_eq!(effects.wake, [id("p:1"), id("p:2"), id("p:3")]);
    let record = s.instance(&id("p:1")).await?.expect("a child");
    assert_eq!(
        (record.status, record.parent_id.as_deref()),
        (RuntimeStatus::Pending, Some("p"))
    );

    // A child whose id is taken fails its task at once.
    let mut taken = episode(&parent, RuntimeStatus::Running);
    taken.children = vec![NewChild {
        task_id: Some(9),
        ..child(1, None)
    }];
    let effects = s.commit_episode(taken).await?;
    let InboxBody::TaskCompleted {
        task_id: 9,
        outcome: Err(e),
    } = &effects.messages[0].1.body
    else {
        panic!("not an already-exists answer: {effects:?}");
    };
    assert_eq!(e.code, "already-exists");

    // A failed child answers its parent's task with its error.
    let mut failed = episode(&id("p:1"), RuntimeStatus::Failed);
    let error = GuestError::new("application", "no");
    failed.status.output = Some(serde_json::to_string(&error)?);
    let effects = s.commit_episode(failed.clone()).await?;
    let InboxBody::TaskCompleted {
        task_id: 1,
        outcome: Err(e),
    } = &effects.messages[0].1.body
    else {
        panic!("not a failure answer: {effects:?}");
    };
    assert!(e.message.contains("failed: no"), "{}", e.message);

    // A child with a retry policy is restarted after backoff instead.
    failed.instance_id = id("p:2");
    let effects = s.commit_episode(failed).await?;
    assert!(effects.messages.is_empty());
    let due = effects.next_timer_ms.expect("a restart timer");
    let fired = s.fire_timers(due, 60_000).await?;
    assert_eq!(fired.wake, [id("p:2")]);
    let restarted = s.instance(&id("p:2")).await?.expect("a child");
    assert_eq!(
        (restarted.status, restarted.generation),
        (RuntimeStatus::Pending, 1)
    );
    let attempts = s.history(&parent).await?.expect("a history").attempts;
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].task_id, 2);

    // Terminating the parent terminates its unfinished children.
    let (outcome, effects) = s.terminate(&parent, "null".into()).await?;
    assert_eq!(outcome, ChangeOutcome::Done);
    let mut cancelled: Vec<String> = effects.cancelled.iter().map(|i| i.to_string()).collect();
    cancelled.sort();
    assert_eq!(cancelled, ["p", "p:2", "p:3"]);
    for instance in ["p:2", "p:3"] {
        let status = s.instance(&id(instance)).await?.map(|r| r.status);
        assert_eq!(status, Some(RuntimeStatus::Terminated), "{instance}");
    }
    assert_eq!(s.backlog().await?.timers, 0);
    db.drop().await
}

#[tokio::test]
async fn continue_as_new_floors_every_arrival_handed_out() -> anyhow::Result<()> {
    let Some(db) = open("generations").await? else {
        return Ok(());
    };
    let s = &db.storage;
    let a = id("a");
    s.create_instance(record("a", 1), None).await?;
    s.create_instance(record("b", 1), None).await?;
    let EventOutcome::Delivered(dropped) = s.raise_event(&a, "e".into(), "1".into()).await? else {
        panic!("not delivered");
    };
    let EventOutcome::Delivered(kept) = s.raise_event(&a, "e".into(), "2".into()).await? else {
        panic!("not delivered");
    };
    let mut schedule = episode(&a, RuntimeStatus::Running);
    schedule.work = vec![work(0, None)];
    let item = s.commit_episode(schedule).await?.work.remove(0);
    s.complete_work(&item, Ok("1".into()), Vec::new(), 60_000)
        .await?;
    // The largest arrival so far belongs to an instance that is then
    // purged: the floor must still cover it.
    let EventOutcome::Delivered(last) = s.raise_event(&id("b"), "e".into(), "3".into()).await?
    else {
        panic!("not delivered");
    };
    s.terminate(&id("b"), "null".into()).await?;
    s.purge(&id("b")).await?;
    let mut next = episode(&a, RuntimeStatus::Running);
    next.entries = vec![JournalEntry {
        seq: 0,
        kind: "k".into(),
        request: "{}".into(),
        result: None,
        at_ms: 1,
    }];
    next.work = vec![work(1, None)];
    next.continue_as_new = Some(ContinueAsNew {
        input: "\"next\"".into(),
        dropped_events: vec![dropped.arrival],
    });
    next.status.custom_status = Some("\"s\"".into());
    let effects = s.commit_episode(next).await?;
    assert!(effects.work.is_empty() && effects.next_timer_ms.is_none());
    let history = s.history(&a).await?.expect("a history");
    assert_eq!(history.arrival_floor, last.arrival);
    assert!(history.journal.is_empty());
    assert_eq!(
        history.inbox,
        [kept],
        "the task's answer and the dropped event are gone"
    );
    assert_eq!(history.record.status, RuntimeStatus::Pending);
    assert_eq!(history.record.generation, 1);
    assert_eq!(history.record.input, "\"next\"");
    assert_eq!(history.record.custom_status.as_deref(), Some("\"s\""));
    assert_eq!(s.backlog().await?.work_items, 0);
    db.drop().await
}

#[tokio::test]
async fn entities_queue_run_lock_and_release() -> anyhow::Result<()> {
    let Some(db) = open("entities").await? else {
        return Ok(());
    };
    let s = &db.storage;
    let caller = id("c");
    s.create_instance(record("c", 1), None).await?;
    let (a, b) = (entity("counter", "a"), entity("counter", "b"));
    let effects = s
        .send_to_entities(vec![op(&a, add(1), None, None), op(&b, add(2), None, None)])
        .await?;
    assert_eq!(effects.entities, [a.clone(), b.clone()]);
    assert_eq!(
        s.entities_with_messages(None, 10).await?,
        [a.clone(), b.clone()]
    );
    assert_eq!(
        s.entities_with_messages(Some(a.clone()), 10).await?,
        std::slice::from_ref(&b)
    );

    // A signal runs; a call answers its caller.
    let mut call = episode(&caller, RuntimeStatus::Running);
    call.entity_ops = vec![op(&a, add(5), Some(&caller), Some(7))];
    let effects = s.commit_episode(call).await?;
    assert_eq!(effects.entities, std::slice::from_ref(&a));
    let batch = s.entity_batch(&a, 10).await?;
    assert_eq!((batch.state, batch.ops.len()), (None, 2));
    assert!(batch.ops[0].id < batch.ops[1].id);
    let ran = |result: &str| OpDone::Ran {
        result: Ok(Some(result.into())),
        sends: Vec::new(),
    };
    let commit = EntityCommit {
        entity: a.clone(),
        state: Some("6".into()),
        done: vec![(batch.ops[0].id, ran("1")), (batch.ops[1].id, ran("6"))],
    };
    let effects = s.commit_entity_batch(commit.clone()).await?;
    assert_eq!(effects.messages.len(), 1);
    assert_eq!(
        effects.messages[0].1.body,
        InboxBody::TaskCompleted {
            task_id: 7,
            outcome: Ok("6".into())
        }
    );
    // Messages that are gone are skipped.
    let mut again = commit;
    again.state = Some("12".into());
    assert_eq!(s.commit_entity_batch(again).await?, Default::default());
    let stored = s.entity(&a).await?.expect("an entity");
    assert_eq!(
        (stored.state.as_deref(), stored.locked_by),
        (Some("6"), None)
    );

    // A lock passes from entity to entity in order, then answers.
    let mut lock = episode(&caller, RuntimeStatus::Running);
    let rest = vec![b.clone()];
    lock.entity_ops = vec![op(&a, EntityOpKind::Lock { rest }, Some(&caller), Some(8))];
    s.commit_episode(lock).await?;
    s.send_to_entities(vec![op(&a, add(1), Some(&id("other")), None)])
        .await?;
    let batch = s.entity_batch(&a, 10).await?;
    assert_eq!(batch.ops.len(), 2, "not locked yet: every message");
    let effects = s
        .commit_entity_batch(EntityCommit {
            entity: a.clone(),
            state: None,
            done: vec![(batch.ops[0].id, OpDone::Locked)],
        })
        .await?;
    assert_eq!(effects.entities, std::slice::from_ref(&b), "forwarded to b");
    let batch = s.entity_batch(&a, 10).await?;
    assert_eq!(batch.locked_by.as_deref(), Some("c"));
    assert!(
        batch.ops.is_empty(),
        "only the holder's messages while locked"
    );
    let batch = s.entity_batch(&b, 10).await?;
    let lock_op = batch.ops.iter().find(|o| o.sender.as_deref() == Some("c"));
    let lock_op = lock_op.expect("the forwarded lock");
    assert_eq!(lock_op.kind, EntityOpKind::Lock { rest: Vec::new() });
    let effects = s
        .commit_entity_batch(EntityCommit {
            entity: b.clone(),
            state: None,
            done: vec![(lock_op.id, OpDone::Locked)],
        })
        .await?;
    assert_eq!(
        effects.messages[0].1.body,
        InboxBody::TaskCompleted {
            task_id: 8,
            outcome: Ok("null".into())
        }
    );

    // Unlocking releases a; ending the holder releases b.
    s.send_to_entities(vec![op(&a, EntityOpKind::Unlock, Some(&caller), None)])
        .await?;
    let batch = s.entity_batch(&a, 10).await?;
    assert_eq!(batch.ops.len(), 1);
    s.commit_entity_batch(EntityCommit {
        entity: a.clone(),
        state: None,
        done: vec![(batch.ops[0].id, OpDone::Unlocked)],
    })
    .await?;
    assert_eq!(s.entity(&a).await?.expect("a").locked_by, None);
    assert_eq!(
        s.entity(&b).await?.expect("b").locked_by.as_deref(),
        Some("c")
    );
    let (_, effects) = s.terminate(&caller, "null".into()).await?;
    assert_eq!(effects.entities, std::slice::from_ref(&b));
    assert_eq!(s.entity(&b).await?, None, "no state and no lock: no row");

    // Listing pages by key.
    let page = s.list_entities("counter", 1, None).await?;
    assert_eq!(page.entities.len(), 1);
    assert_eq!(page.entities[0].id, a);
    assert_eq!(page.continuation, None, "b has no state");
    let backlog = s.backlog().await?;
    assert_eq!(
        backlog.entity_messages, 2,
        "b's signal and the other's call"
    );
    db.drop().await
}

#[tokio::test]
async fn a_failing_statement_fails_its_job_alone_with_its_own_error() -> anyhow::Result<()> {
    let Some(db) = open("failures").await? else {
        return Ok(());
    };
    let s = &db.storage;
    let i = id("f");
    s.create_instance(record("f", 1), None).await?;
    let entry = JournalEntry {
        seq: 0,
        kind: "k".into(),
        request: "{}".into(),
        result: None,
        at_ms: 1,
    };
    // The second entry repeats the first's seq: the pipeline's second
    // statement fails, and the third only because the first failure
    // aborted the transaction.
    let mut bad = episode(&i, RuntimeStatus::Running);
    bad.entries = vec![
        entry.clone(),
        entry.clone(),
        JournalEntry { seq: 1, ..entry },
    ];
    bad.work = vec![work(0, None)];
    let (failed, event) = tokio::join!(
        s.commit_episode(bad),
        s.raise_event(&i, "e".into(), "1".into())
    );
    let error = failed.expect_err("a duplicate journal entry").to_string();
    assert!(error.contains("23505"), "{error}");
    assert!(
        matches!(event?, EventOutcome::Delivered(_)),
        "the other job commits"
    );
    let history = s.history(&i).await?.expect("a history");
    assert!(history.journal.is_empty());
    assert_eq!(history.inbox.len(), 1);
    assert_eq!(s.backlog().await?.work_items, 0);
    db.drop().await
}
