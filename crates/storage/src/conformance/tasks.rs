//! Checks of tasks: work items, timers, retries after backoff, and
//! children (sub-orchestrations), from the episode that schedules them to
//! the answer in their instance's inbox.

use std::sync::Arc;

use anyhow::{Context as _, ensure};
use perdure_records::{
    Effects, GuestError, InboxBody, NewChild, NewTimer, NewWorkItem, RuntimeStatus, now_ms,
};

use super::{
    DIGEST, activity, child, completions, create, ending, entry, episode, id, leftover_work, line,
    retry, schedule_one, status,
};
use crate::{ChangeOutcome, DurableStorage};

/// A child's failure, as its last episode stores it: a [`GuestError`]'s
/// JSON.
const CHILD_FAILURE: &str = r#"{"code":"application","message":"no"}"#;

pub(super) async fn an_episode_commits_its_journal_work_and_timers(
    storage: Arc<dyn DurableStorage>,
) -> anyhow::Result<()> {
    let a = id("a")?;
    create(&*storage, &a).await?;
    let fire_at = now_ms() + 3_600_000;
    let mut first = episode(&a);
    first.entries = vec![entry(0, "schedule-activity"), entry(1, "create-timer")];
    first.work = vec![activity(0), activity(2)];
    // Timer 3 is cancelled by the episode that creates it.
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
    let effects = storage.commit_episode(first.clone()).await?;
    let [item, second] = &effects.work[..] else {
        anyhow::bail!("two work items dispatched, got {:?}", effects.work);
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
        second.task_id == 2 && item.id < second.id,
        "the items in the episode's order: {:?}",
        effects.work
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
    let backlog = storage.backlog().await?;
    ensure!(
        (
            backlog.work_items,
            backlog.timers,
            backlog.count(RuntimeStatus::Running)
        ) == (2, 1, 1),
        "two work items, one timer (the other is cancelled), one running instance: {backlog:?}"
    );
    let history = storage.history(&a).await?.context("its history")?;
    ensure!(
        history.journal == first.entries,
        "the journal as committed: {:?}",
        history.journal
    );
    ensure!(history.record.status == RuntimeStatus::Running, "running");
    let logs: Vec<_> = storage
        .logs(&a, 0, 10)
        .await?
        .into_iter()
        .map(|l| l.line)
        .collect();
    ensure!(
        logs == first.logs,
        "the episode's log lines are kept: {logs:?}"
    );
    Ok(())
}

pub(super) async fn a_task_is_answered_once(
    storage: Arc<dyn DurableStorage>,
) -> anyhow::Result<()> {
    let a = id("a")?;
    create(&*storage, &a).await?;
    let item = schedule_one(&*storage, &a, 60_000).await?;
    let effects = storage
        .complete_work(&item, Ok("42".into()), vec![line("ran")], 60_000)
        .await?;
    ensure!(
        completions(&effects.messages, &a) == vec![(0, Ok("42".into()))]
            && effects.messages.len() == 1,
        "the completion is delivered: {:?}",
        effects.messages
    );
    let duplicate = storage
        .complete_work(&item, Ok("43".into()), vec![line("again")], 60_000)
        .await?;
    ensure!(
        duplicate == Effects::default(),
        "a duplicate run answers nothing: {duplicate:?}"
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
    let logs: Vec<_> = storage
        .logs(&a, 0, 10)
        .await?
        .into_iter()
        .map(|l| l.line)
        .collect();
    ensure!(
        logs == vec![line("ran")],
        "the run's log lines are kept, the duplicate's dropped: {logs:?}"
    );
    ensure!(
        leftover_work(&*storage).await?.is_empty(),
        "a completed item is gone"
    );
    Ok(())
}

pub(super) async fn expired_work_is_claimed_again(
    storage: Arc<dyn DurableStorage>,
) -> anyhow::Result<()> {
    let a = id("a")?;
    create(&*storage, &a).await?;
    let before = now_ms();
    let first = schedule_one(&*storage, &a, 1_000).await?;
    let mut more = episode(&a);
    more.entries = vec![entry(1, "schedule-activity")];
    more.work = vec![activity(1)];
    more.lease_ms = 1_000;
    storage.commit_episode(more).await?;
    ensure!(
        storage
            .claim_work(before, before + 60_000, 10)
            .await?
            .is_empty(),
        "a leased item is not claimed before its lease ends"
    );
    let late = now_ms() + 10_000;
    let claimed = storage.claim_work(late, late + 60_000, 1).await?;
    ensure!(
        claimed.len() == 1
            && claimed[0].id == first.id
            && claimed[0].attempt == 2
            && claimed[0].task_id == 0,
        "the oldest expired item is claimed, `limit` at most, its attempt counted: {claimed:?}"
    );
    let rest = storage.claim_work(late, late + 60_000, 10).await?;
    ensure!(
        rest.len() == 1 && rest[0].task_id == 1 && rest[0].attempt == 2,
        "then the other one: {rest:?}"
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

pub(super) async fn timers_fire_once(storage: Arc<dyn DurableStorage>) -> anyhow::Result<()> {
    let a = id("a")?;
    create(&*storage, &a).await?;
    let fire_at = now_ms() + 60_000;
    let mut waiting = episode(&a);
    waiting.entries = vec![entry(0, "create-timer")];
    waiting.timers = vec![NewTimer {
        task_id: 0,
        fire_at_ms: fire_at,
    }];
    storage.commit_episode(waiting).await?;
    let early = storage.fire_timers(fire_at - 1, 60_000).await?;
    ensure!(
        early == Effects::default(),
        "a timer does not fire before it is due: {early:?}"
    );
    let fired = storage.fire_timers(fire_at, 60_000).await?;
    ensure!(
        completions(&fired.messages, &a) == vec![(0, Ok("null".into()))]
            && fired.messages.len() == 1,
        "the due timer answers its task with null: {:?}",
        fired.messages
    );
    let again = storage.fire_timers(fire_at, 60_000).await?;
    ensure!(
        again.messages.is_empty(),
        "a timer fires once: {:?}",
        again.messages
    );
    ensure!(
        storage.next_timer_due().await?.is_none(),
        "no timer is left"
    );
    let history = storage.history(&a).await?.context("its history")?;
    ensure!(
        history.inbox.len() == 1,
        "one answer in the inbox: {:?}",
        history.inbox
    );
    Ok(())
}

pub(super) async fn failed_activities_are_retried_after_backoff(
    storage: Arc<dyn DurableStorage>,
) -> anyhow::Result<()> {
    let a = id("a")?;
    create(&*storage, &a).await?;
    let mut scheduling = episode(&a);
    scheduling.entries = vec![entry(0, "schedule-activity")];
    scheduling.work = vec![NewWorkItem {
        retry: retry(3),
        ..activity(0)
    }];
    let mut item = storage
        .commit_episode(scheduling)
        .await?
        .work
        .pop()
        .context("its work item")?;
    let failure = || Err(GuestError::new("application", "boom"));
    for attempt in 1..3 {
        let effects = storage
            .complete_work(&item, failure(), Vec::new(), 60_000)
            .await?;
        ensure!(
            effects.messages.is_empty(),
            "failed attempt {attempt} of 3 is retried, not answered: {effects:?}"
        );
        let due = effects
            .next_timer_ms
            .with_context(|| format!("a timer for attempt {}: {effects:?}", attempt + 1))?;
        ensure!(
            storage.claim_work(due, due, 10).await?.is_empty(),
            "the item waits for its timer, not for its lease"
        );
        let fired = storage.fire_timers(due, 60_000).await?;
        let [next] = &fired.work[..] else {
            anyhow::bail!("the timer dispatches the item again: {fired:?}");
        };
        ensure!(
            next.id == item.id && next.attempt == attempt + 1,
            "attempt {} of the item {item:?}: {next:?}",
            attempt + 1
        );
        item = next.clone();
    }
    let history = storage.history(&a).await?.context("its history")?;
    let attempts: Vec<_> = history
        .attempts
        .iter()
        .map(|t| (t.task_id, t.attempt, t.error.code, t.error.message.as_str()))
        .collect();
    ensure!(
        attempts == [(0, 1, "application", "boom"), (0, 2, "application", "boom")],
        "the failed attempts are recorded: {attempts:?}"
    );
    ensure!(
        history.inbox.is_empty(),
        "the task is not answered yet: {:?}",
        history.inbox
    );
    let effects = storage
        .complete_work(&item, failure(), Vec::new(), 60_000)
        .await?;
    let answered = completions(&effects.messages, &a);
    ensure!(
        matches!(&answered[..], [(0, Err(e))] if (e.code, e.message.as_str()) == ("application", "boom")),
        "the last attempt's failure answers the task: {answered:?}"
    );
    ensure!(
        leftover_work(&*storage).await?.is_empty() && storage.next_timer_due().await?.is_none(),
        "nothing of the task is left"
    );
    Ok(())
}

pub(super) async fn a_finished_instance_drops_its_work_and_later_episodes(
    storage: Arc<dyn DurableStorage>,
) -> anyhow::Result<()> {
    let a = id("a")?;
    create(&*storage, &a).await?;
    let mut busy = episode(&a);
    busy.entries = vec![entry(0, "schedule-activity"), entry(1, "create-timer")];
    busy.work = vec![activity(0)];
    busy.timers = vec![NewTimer {
        task_id: 1,
        fire_at_ms: now_ms() + 60_000,
    }];
    storage.commit_episode(busy.clone()).await?;
    let mut last = ending(&a, RuntimeStatus::Completed, "\"done\"");
    last.entries = vec![entry(2, "schedule-activity")];
    last.work = vec![activity(2)];
    let effects = storage.commit_episode(last).await?;
    ensure!(
        effects.work.is_empty(),
        "the ending episode dispatches nothing: {effects:?}"
    );
    let backlog = storage.backlog().await?;
    ensure!(
        (
            backlog.work_items,
            backlog.timers,
            backlog.count(RuntimeStatus::Completed),
            backlog.count(RuntimeStatus::Running)
        ) == (0, 0, 1, 0),
        "its work and timers are gone, and it is completed: {backlog:?}"
    );
    let mut late = episode(&a);
    late.entries = vec![entry(3, "schedule-activity")];
    late.work = vec![activity(3)];
    let effects = storage.commit_episode(late).await?;
    ensure!(
        effects == Effects::default(),
        "an episode after the end is dropped: {effects:?}"
    );
    let history = storage.history(&a).await?.context("its history")?;
    ensure!(
        history.record.status == RuntimeStatus::Completed
            && history.record.output.as_deref() == Some("\"done\""),
        "completed with its output: {:?}",
        history.record
    );
    ensure!(
        history.journal.len() == 3 && history.journal[..2] == busy.entries,
        "the dropped episode's entries are not journaled: {:?}",
        history.journal
    );
    ensure!(
        leftover_work(&*storage).await?.is_empty(),
        "no work is left"
    );
    Ok(())
}

pub(super) async fn a_finished_child_answers_its_parent(
    storage: Arc<dyn DurableStorage>,
) -> anyhow::Result<()> {
    let parent = id("parent")?;
    create(&*storage, &parent).await?;
    let (done, failing) = (parent.child(0, 0), parent.child(0, 1));
    let mut starting = episode(&parent);
    starting.entries = vec![entry(0, "start-child"), entry(1, "start-child")];
    starting.children = vec![child(&parent, 0), child(&parent, 1)];
    let effects = storage.commit_episode(starting).await?;
    ensure!(
        effects.wake == vec![done.clone(), failing.clone()],
        "the children are woken: {effects:?}"
    );
    let stored = storage.instance(&done).await?.context("the child")?;
    ensure!(
        (
            stored.status,
            stored.parent_id.as_deref(),
            stored.name.as_str(),
            stored.input.as_str(),
            stored.generation
        ) == (RuntimeStatus::Pending, Some("parent"), "Child", "0", 0),
        "the child as started: {stored:?}"
    );

    let mut taken = episode(&parent);
    taken.entries = vec![entry(2, "start-child")];
    taken.children = vec![NewChild {
        task_id: Some(2),
        ..child(&parent, 0)
    }];
    let effects = storage.commit_episode(taken).await?;
    let answered = completions(&effects.messages, &parent);
    ensure!(
        matches!(&answered[..], [(2, Err(e))] if e.code == "already-exists")
            && effects.wake.is_empty(),
        "a child whose id an unfinished instance holds fails its task at once: {effects:?}"
    );

    let effects = storage
        .commit_episode(ending(&done, RuntimeStatus::Completed, "\"done\""))
        .await?;
    ensure!(
        completions(&effects.messages, &parent) == vec![(0, Ok("\"done\"".into()))],
        "a completed child answers its parent's task with its output: {:?}",
        effects.messages
    );
    let effects = storage
        .commit_episode(ending(&failing, RuntimeStatus::Failed, CHILD_FAILURE))
        .await?;
    let answered = completions(&effects.messages, &parent);
    ensure!(
        matches!(&answered[..], [(1, Err(e))] if e.message.contains("failed: no")),
        "a failed child answers its parent's task with its error: {answered:?}"
    );
    ensure!(
        status(&*storage, &done).await? == RuntimeStatus::Completed
            && status(&*storage, &failing).await? == RuntimeStatus::Failed,
        "the children ended"
    );
    Ok(())
}

pub(super) async fn a_failed_child_restarts_after_backoff(
    storage: Arc<dyn DurableStorage>,
) -> anyhow::Result<()> {
    let parent = id("parent")?;
    create(&*storage, &parent).await?;
    let kid = parent.child(0, 0);
    let mut starting = episode(&parent);
    starting.entries = vec![entry(0, "start-child")];
    starting.children = vec![NewChild {
        retry: retry(2),
        ..child(&parent, 0)
    }];
    storage.commit_episode(starting).await?;
    let mut failed = ending(&kid, RuntimeStatus::Failed, CHILD_FAILURE);
    failed.entries = vec![entry(0, "schedule-activity")];
    let effects = storage.commit_episode(failed).await?;
    ensure!(
        effects.messages.is_empty(),
        "the parent's task is not answered while a retry is due: {effects:?}"
    );
    let due = effects
        .next_timer_ms
        .with_context(|| format!("a timer for the restart: {effects:?}"))?;
    ensure!(
        status(&*storage, &kid).await? == RuntimeStatus::Failed,
        "failed until it restarts"
    );
    let fired = storage.fire_timers(due, 60_000).await?;
    ensure!(
        fired.wake == vec![kid.clone()],
        "the child is woken when its restart is due: {fired:?}"
    );
    let history = storage.history(&kid).await?.context("the child")?;
    let record = &history.record;
    ensure!(
        (record.status, record.generation, record.input.as_str())
            == (RuntimeStatus::Pending, 1, "0")
            && history.journal.is_empty()
            && history.inbox.is_empty(),
        "restarted on its input, in a new generation, with an empty history: {history:?}"
    );
    let attempts = storage
        .history(&parent)
        .await?
        .context("the parent")?
        .attempts;
    ensure!(
        matches!(&attempts[..], [t] if (t.task_id, t.attempt) == (0, 1)),
        "the parent's task records the failed attempt: {attempts:?}"
    );
    let effects = storage
        .commit_episode(ending(&kid, RuntimeStatus::Failed, CHILD_FAILURE))
        .await?;
    let answered = completions(&effects.messages, &parent);
    ensure!(
        matches!(&answered[..], [(0, Err(e))] if e.message.contains("failed: no")),
        "the last attempt's failure answers the parent's task: {answered:?}"
    );
    Ok(())
}

pub(super) async fn terminating_a_parent_terminates_its_children(
    storage: Arc<dyn DurableStorage>,
) -> anyhow::Result<()> {
    let parent = id("parent")?;
    create(&*storage, &parent).await?;
    let kids: Vec<_> = (0..3).map(|task| parent.child(0, task)).collect();
    let grandchild = kids[1].child(0, 0);
    let mut starting = episode(&parent);
    starting.children = (0..3).map(|task| child(&parent, task)).collect();
    storage.commit_episode(starting).await?;
    storage
        .commit_episode(ending(&kids[0], RuntimeStatus::Completed, "null"))
        .await?;
    let mut busy = episode(&kids[1]);
    busy.children = vec![child(&kids[1], 0)];
    busy.work = vec![activity(1)];
    busy.timers = vec![NewTimer {
        task_id: 2,
        fire_at_ms: now_ms() + 60_000,
    }];
    storage.commit_episode(busy).await?;
    let (outcome, effects) = storage.terminate(&parent, "\"stop\"".into()).await?;
    ensure!(outcome == ChangeOutcome::Done, "terminated: {outcome:?}");
    let mut cancelled: Vec<&str> = effects.cancelled.iter().map(|i| i.as_str()).collect();
    cancelled.sort_unstable();
    ensure!(
        cancelled == ["parent", "parent:1", "parent:1:0", "parent:2"],
        "it and its unfinished descendants are reported cancelled: {cancelled:?}"
    );
    for instance in [&kids[1], &kids[2], &grandchild] {
        let ended = status(&*storage, instance).await?;
        ensure!(
            ended == RuntimeStatus::Terminated,
            "{instance} is terminated: {ended:?}"
        );
    }
    ensure!(
        status(&*storage, &kids[0]).await? == RuntimeStatus::Completed,
        "a finished child is left as it was"
    );
    let backlog = storage.backlog().await?;
    ensure!(
        (backlog.work_items, backlog.timers) == (0, 0),
        "the children's work and timers are gone: {backlog:?}"
    );
    Ok(())
}
