//! Checks of an instance's life: creating, listing, events, suspending,
//! repinning, terminating, purging, reusing its id, continue-as-new.

use std::sync::Arc;

use anyhow::{Context as _, ensure};
use perdure_records::{
    ContinueAsNew, InboxBody, InstanceFilter, InstanceId, NewTimer, RuntimeStatus, now_ms,
};

use super::{
    DIGEST, activity, create, entry, episode, id, leftover_work, raise, record, schedule_one,
    status,
};
use crate::{ChangeOutcome, CreateOutcome, DurableStorage, EventOutcome};

/// The W3C trace context instances of these checks are started with.
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

pub(super) async fn instances_are_created_once(
    storage: Arc<dyn DurableStorage>,
) -> anyhow::Result<()> {
    let a = id("a")?;
    ensure!(
        storage.instance(&a).await?.is_none(),
        "an unknown id has no instance"
    );
    ensure!(
        storage.history(&a).await?.is_none(),
        "an unknown id has no history"
    );
    ensure!(
        storage.trace_origin(&a).await?.is_none(),
        "an unknown id has no trace origin"
    );
    storage
        .put_component(DIGEST.into(), Arc::from(&b"\0asm"[..]))
        .await?;
    let created = record(&a, now_ms());
    let outcome = storage
        .create_instance(created.clone(), Some(TRACEPARENT.into()))
        .await?;
    ensure!(
        outcome == CreateOutcome::Created { generation: 0 },
        "creating {a}: {outcome:?}"
    );
    let again = storage.create_instance(record(&a, now_ms()), None).await?;
    ensure!(
        again == CreateOutcome::AlreadyRunning(RuntimeStatus::Pending),
        "a second create of a pending id: {again:?}"
    );
    let stored = storage.instance(&a).await?;
    ensure!(
        stored.as_ref() == Some(&created),
        "stored as created: {stored:?}"
    );
    let history = storage.history(&a).await?.context("its history")?;
    ensure!(
        history.journal.is_empty()
            && history.inbox.is_empty()
            && history.attempts.is_empty()
            && history.arrival_floor == 0,
        "a new instance's history is empty: {history:?}"
    );
    let origin = storage
        .trace_origin(&a)
        .await?
        .context("its trace origin")?;
    ensure!(
        origin.generation == 0
            && origin.created_ms == created.created_ms
            && origin.parent_id.is_none()
            && origin.traceparent == Some((0, TRACEPARENT.into())),
        "the trace context it was started with: {origin:?}"
    );
    ensure!(
        storage.component(DIGEST).await?.as_deref() == Some(&b"\0asm"[..]),
        "the component's bytes are kept"
    );
    Ok(())
}

pub(super) async fn an_id_is_reused_once_its_instance_finished(
    storage: Arc<dyn DurableStorage>,
) -> anyhow::Result<()> {
    let a = id("a")?;
    storage
        .put_component(DIGEST.into(), Arc::from(&b"\0asm"[..]))
        .await?;
    storage
        .create_instance(record(&a, now_ms()), Some(TRACEPARENT.into()))
        .await?;
    raise(&*storage, &a, "1").await?;
    schedule_one(&*storage, &a, 60_000).await?;
    storage.terminate(&a, "null".into()).await?;
    let reused = storage.create_instance(record(&a, now_ms()), None).await?;
    ensure!(
        reused == CreateOutcome::Created { generation: 1 },
        "a finished instance's id is reused, in the next generation: {reused:?}"
    );
    let history = storage.history(&a).await?.context("its history")?;
    ensure!(
        history.journal.is_empty()
            && history.inbox.is_empty()
            && history.record.status == RuntimeStatus::Pending
            && history.record.generation == 1,
        "nothing of the old instance is left: {history:?}"
    );
    let origin = storage
        .trace_origin(&a)
        .await?
        .context("its trace origin")?;
    ensure!(
        (origin.generation, origin.traceparent.as_ref()) == (1, None),
        "the old instance's trace context is gone: {origin:?}"
    );
    ensure!(
        leftover_work(&*storage).await?.is_empty(),
        "the old instance's work is gone"
    );
    Ok(())
}

pub(super) async fn events_reach_unfinished_instances_only(
    storage: Arc<dyn DurableStorage>,
) -> anyhow::Result<()> {
    let a = id("a")?;
    let raised = storage
        .raise_event(&a, "Approval".into(), "true".into())
        .await?;
    ensure!(raised == EventOutcome::NotFound, "no instance: {raised:?}");
    create(&*storage, &a).await?;
    let first = raise(&*storage, &a, "true").await?;
    ensure!(
        first.body
            == InboxBody::Event {
                name: "Approval".into(),
                data: "true".into()
            },
        "the event as raised: {first:?}"
    );
    let second = raise(&*storage, &a, "false").await?;
    ensure!(
        first.arrival < second.arrival,
        "arrivals grow: {} then {}",
        first.arrival,
        second.arrival
    );
    let history = storage.history(&a).await?.context("its history")?;
    ensure!(
        history.inbox == vec![first, second],
        "in the inbox, in arrival order: {:?}",
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

pub(super) async fn terminating_ends_an_instance_and_its_work(
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
        effects.cancelled == vec![a.clone()],
        "it alone is reported cancelled: {effects:?}"
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
        leftover_work(&*storage).await?.is_empty(),
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

pub(super) async fn only_finished_instances_are_purged(
    storage: Arc<dyn DurableStorage>,
) -> anyhow::Result<()> {
    let (a, b1, b2, c) = (id("a")?, id("b1")?, id("b2")?, id("c")?);
    for instance in [&a, &b1, &b2, &c] {
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
    ensure!(
        storage.instance(&a).await?.is_none() && storage.history(&a).await?.is_none(),
        "gone, with its history"
    );
    ensure!(
        storage.purge(&a).await? == ChangeOutcome::NotFound,
        "purging twice"
    );
    storage.terminate(&b1, "null".into()).await?;
    storage.terminate(&c, "null".into()).await?;
    let purged = storage
        .purge_many(InstanceFilter {
            id_prefix: Some("b".into()),
            ..InstanceFilter::default()
        })
        .await?;
    ensure!(
        purged == 1,
        "of the filter's, only the finished instance is purged: {purged}"
    );
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
        storage.instance(&b1).await?.is_none() && storage.instance(&c).await?.is_none(),
        "the finished ones are gone"
    );
    ensure!(
        storage.instance(&b2).await?.is_some(),
        "the pending one is kept"
    );
    Ok(())
}

pub(super) async fn listings_page_in_creation_order(
    storage: Arc<dyn DurableStorage>,
) -> anyhow::Result<()> {
    storage
        .put_component(DIGEST.into(), Arc::from(&b"\0asm"[..]))
        .await?;
    let start = now_ms();
    // Two are created in the same millisecond: they list in id order,
    // bytewise ("I1" before "i2").
    for (text, after) in [("i0", 0), ("i2", 1), ("I1", 1), ("i3", 2), ("i4", 3)] {
        storage
            .create_instance(record(&id(text)?, start + after), None)
            .await?;
    }
    let ids: Vec<InstanceId> = ["i0", "I1", "i2", "i3", "i4"]
        .into_iter()
        .map(id)
        .collect::<Result<_, _>>()?;
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
        "every instance once, in creation order, then id order: {listed:?}"
    );
    storage.terminate(&ids[1], "null".into()).await?;
    let backend = &*storage;
    let list = |filter| async move {
        let page = backend.list_instances(filter, 10, None).await?;
        anyhow::Ok(page.instances.into_iter().map(|r| r.id).collect::<Vec<_>>())
    };
    let terminated = list(InstanceFilter {
        statuses: vec![RuntimeStatus::Terminated],
        ..InstanceFilter::default()
    })
    .await?;
    ensure!(
        terminated == ids[1..2],
        "filtered by status: {terminated:?}"
    );
    let prefixed = list(InstanceFilter {
        id_prefix: Some("i3".into()),
        ..InstanceFilter::default()
    })
    .await?;
    ensure!(prefixed == ids[3..4], "filtered by id prefix: {prefixed:?}");
    let filtered = list(InstanceFilter {
        statuses: vec![RuntimeStatus::Pending, RuntimeStatus::Running],
        created_from_ms: Some(start + 1),
        created_to_ms: Some(start + 2),
        id_prefix: Some("i".into()),
        name: Some("Flow".into()),
    })
    .await?;
    ensure!(
        filtered == ids[2..4],
        "filtered by status, creation time, id prefix and name at once: {filtered:?}"
    );
    let named = list(InstanceFilter {
        name: Some("Other".into()),
        ..InstanceFilter::default()
    })
    .await?;
    ensure!(named.is_empty(), "filtered by name: {named:?}");
    let unfinished = storage.unfinished_instances().await?;
    ensure!(
        unfinished.len() == 4 && !unfinished.contains(&ids[1]),
        "the unfinished ones: {unfinished:?}"
    );
    Ok(())
}

pub(super) async fn continue_as_new_starts_a_clean_generation(
    storage: Arc<dyn DurableStorage>,
) -> anyhow::Result<()> {
    let (a, b) = (id("a")?, id("b")?);
    create(&*storage, &a).await?;
    create(&*storage, &b).await?;
    let dropped = raise(&*storage, &a, "1").await?;
    let kept = raise(&*storage, &a, "2").await?;
    let item = schedule_one(&*storage, &a, 60_000).await?;
    storage
        .complete_work(&item, Ok("1".into()), Vec::new(), 60_000)
        .await?;
    // The last arrival handed out is another instance's, purged since:
    // the new generation's floor covers it all the same.
    let last = raise(&*storage, &b, "3").await?;
    storage.terminate(&b, "null".into()).await?;
    ensure!(
        storage.purge(&b).await? == ChangeOutcome::Done,
        "{b} purged"
    );
    let mut next = episode(&a);
    next.entries = vec![entry(1, "schedule-activity"), entry(2, "continue-as-new")];
    next.work = vec![activity(1)];
    next.timers = vec![NewTimer {
        task_id: 3,
        fire_at_ms: now_ms() + 60_000,
    }];
    next.continue_as_new = Some(ContinueAsNew {
        input: "2".into(),
        dropped_events: vec![dropped.arrival],
    });
    next.status.custom_status = Some("\"s\"".into());
    let effects = storage.commit_episode(next).await?;
    ensure!(
        effects.work.is_empty() && effects.next_timer_ms.is_none(),
        "nothing of the old generation is dispatched or timed: {effects:?}"
    );
    let history = storage.history(&a).await?.context("its history")?;
    let record = &history.record;
    ensure!(
        history.journal.is_empty()
            && record.generation == 1
            && record.input == "2"
            && record.status == RuntimeStatus::Pending
            && record.custom_status.as_deref() == Some("\"s\""),
        "a new generation on the new input, with its custom status: {history:?}"
    );
    ensure!(
        history.inbox == vec![kept],
        "the task's answer and the dropped event are gone, the other event kept: {:?}",
        history.inbox
    );
    ensure!(
        history.arrival_floor == last.arrival,
        "every arrival handed out so far ({}) is below the floor: {}",
        last.arrival,
        history.arrival_floor
    );
    ensure!(
        leftover_work(&*storage).await?.is_empty(),
        "the old generation's work is gone"
    );
    ensure!(
        storage.next_timer_due().await?.is_none(),
        "the old generation's timer is gone"
    );
    Ok(())
}

pub(super) async fn suspension_outlives_a_running_episode(
    storage: Arc<dyn DurableStorage>,
) -> anyhow::Result<()> {
    let a = id("a")?;
    create(&*storage, &a).await?;
    storage.commit_episode(episode(&a)).await?;
    ensure!(
        storage.set_suspended(&a, true).await? == ChangeOutcome::Done,
        "suspended"
    );
    ensure!(
        status(&*storage, &a).await? == RuntimeStatus::Suspended,
        "it reads suspended"
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
    let other = "1111111111111111111111111111111111111111111111111111111111111111";
    storage
        .put_component(other.into(), Arc::from(&b"\0asm2"[..]))
        .await?;
    ensure!(
        storage.set_digest(&a, other.into()).await? == ChangeOutcome::Done,
        "repinned"
    );
    let stored = storage.instance(&a).await?.context("the instance")?;
    ensure!(
        stored.digest == other,
        "pinned to the other version: {stored:?}"
    );
    ensure!(
        storage.component(other).await?.as_deref() == Some(&b"\0asm2"[..]),
        "both versions are kept"
    );
    let unknown = storage.set_digest(&id("nope")?, DIGEST.into()).await?;
    ensure!(
        unknown == ChangeOutcome::NotFound,
        "repinning no instance: {unknown:?}"
    );
    Ok(())
}

pub(super) async fn an_instance_keeps_its_newest_log_lines(
    storage: Arc<dyn DurableStorage>,
) -> anyhow::Result<()> {
    let a = id("a")?;
    create(&*storage, &a).await?;
    let total = crate::MAX_LOG_LINES_PER_INSTANCE + crate::LOG_TRIM_SLACK + 1_000;
    let per_episode = 500;
    for first in (0..total).step_by(per_episode) {
        let mut logging = episode(&a);
        logging.logs = (first..(first + per_episode as i64).min(total))
            .map(|i| super::line(&format!("line {i}")))
            .collect();
        storage.commit_episode(logging).await?;
    }
    let kept = storage.logs(&a, 0, usize::MAX).await?;
    let count = kept.len() as i64;
    let most = crate::MAX_LOG_LINES_PER_INSTANCE + crate::LOG_TRIM_SLACK;
    ensure!(
        (crate::MAX_LOG_LINES_PER_INSTANCE..=most).contains(&count),
        "{count} of {total} lines kept; between {} and {most} should be",
        crate::MAX_LOG_LINES_PER_INSTANCE
    );
    let last = format!("line {}", total - 1);
    ensure!(
        kept.last().map(|l| l.line.message.as_str()) == Some(last.as_str()),
        "the newest line is kept: {:?}",
        kept.last()
    );
    let number = |message: &str| message[5..].parse::<i64>().ok();
    ensure!(
        kept.windows(2)
            .all(|w| w[0].id < w[1].id && number(&w[0].line.message) < number(&w[1].line.message)),
        "ids follow the order the lines were logged in"
    );
    let page = storage.logs(&a, kept[0].id, 10).await?;
    ensure!(
        page.len() == 10 && page[0].id == kept[1].id,
        "a page starts past `after`: {page:?}"
    );
    Ok(())
}
