//! Checks of durable entities: their queues, the operations they run once,
//! the calls they answer, and the locks orchestrations hold on them.

use std::sync::Arc;

use anyhow::{Context as _, ensure};
use perdure_records::{
    Effects, EntityCommit, EntityId, EntityOpKind, InboxBody, InstanceId, NewEntityOp, OpDone,
};

use super::{completions, create, episode, id};
use crate::DurableStorage;

fn counter(key: &str) -> anyhow::Result<EntityId> {
    Ok(EntityId::parse("Counter", key)?)
}

/// A signal to `target`: operation `add` of `input`, answered to no one.
fn add(target: &EntityId, input: &str) -> NewEntityOp {
    NewEntityOp {
        target: target.clone(),
        kind: EntityOpKind::Operation {
            operation: "add".into(),
            input: Some(input.into()),
        },
        sender: None,
        reply_task: None,
    }
}

/// A message of `kind` from orchestration `sender`, awaited by its task
/// `reply_task` if any.
fn from(
    sender: &InstanceId,
    reply_task: Option<u64>,
    target: &EntityId,
    kind: EntityOpKind,
) -> NewEntityOp {
    NewEntityOp {
        target: target.clone(),
        kind,
        sender: Some(sender.clone()),
        reply_task,
    }
}

/// An operation that ran, returning `result`, and sent nothing.
fn ran(result: Option<&str>) -> OpDone {
    OpDone::Ran {
        result: Ok(result.map(Into::into)),
        sends: Vec::new(),
    }
}

pub(super) async fn an_entity_operation_applies_once(
    storage: Arc<dyn DurableStorage>,
) -> anyhow::Result<()> {
    let counter = counter("c1")?;
    let effects = storage
        .send_to_entities(vec![add(&counter, "1"), add(&counter, "2")])
        .await?;
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
        batch.state.is_none() && batch.ops.len() == 2 && batch.ops[0].id < batch.ops[1].id,
        "both messages, in order: {batch:?}"
    );
    let first = batch.ops[0].id;
    storage
        .commit_entity_batch(EntityCommit {
            entity: counter.clone(),
            state: Some("1".into()),
            done: vec![(first, ran(None))],
        })
        .await?;
    let stored = storage.entity(&counter).await?.context("the entity")?;
    ensure!(
        stored.state.as_deref() == Some("1") && stored.locked_by.is_none(),
        "its state: {stored:?}"
    );
    let again = storage
        .commit_entity_batch(EntityCommit {
            entity: counter.clone(),
            state: Some("100".into()),
            done: vec![(first, ran(None))],
        })
        .await?;
    ensure!(
        again == Effects::default(),
        "a message that is gone is skipped: {again:?}"
    );
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
    Ok(())
}

pub(super) async fn a_call_answers_its_caller(
    storage: Arc<dyn DurableStorage>,
) -> anyhow::Result<()> {
    let caller = id("caller")?;
    create(&*storage, &caller).await?;
    let counter = counter("c1")?;
    storage.send_to_entities(vec![add(&counter, "1")]).await?;
    let mut calling = episode(&caller);
    calling.entity_ops = vec![NewEntityOp {
        sender: Some(caller.clone()),
        reply_task: Some(7),
        ..add(&counter, "5")
    }];
    let effects = storage.commit_episode(calling).await?;
    ensure!(
        effects.entities == vec![counter.clone()],
        "the episode wakes the entity: {effects:?}"
    );
    let batch = storage.entity_batch(&counter, 10).await?;
    let [signal, call] = &batch.ops[..] else {
        anyhow::bail!("the signal and the call: {batch:?}");
    };
    ensure!(
        signal.id < call.id && signal.sender.is_none() && call.sender.as_deref() == Some("caller"),
        "the signal, then the call: {batch:?}"
    );
    let effects = storage
        .commit_entity_batch(EntityCommit {
            entity: counter.clone(),
            state: Some("6".into()),
            done: vec![(signal.id, ran(Some("1"))), (call.id, ran(Some("6")))],
        })
        .await?;
    ensure!(
        completions(&effects.messages, &caller) == vec![(7, Ok("6".into()))]
            && effects.messages.len() == 1,
        "the call answers its caller's task, the signal no one: {:?}",
        effects.messages
    );
    let inbox = storage
        .history(&caller)
        .await?
        .context("its history")?
        .inbox;
    ensure!(
        inbox
            .iter()
            .map(|m| &m.body)
            .eq([&InboxBody::TaskCompleted {
                task_id: 7,
                outcome: Ok("6".into())
            }]),
        "the answer is in the caller's inbox: {inbox:?}"
    );
    Ok(())
}

pub(super) async fn entities_with_messages_page_in_order(
    storage: Arc<dyn DurableStorage>,
) -> anyhow::Result<()> {
    let (a, b) = (counter("a")?, counter("b")?);
    let account = EntityId::parse("Account", "z")?;
    let effects = storage
        .send_to_entities(vec![add(&a, "1"), add(&b, "2"), add(&account, "3")])
        .await?;
    ensure!(
        effects.entities == vec![a.clone(), b.clone(), account.clone()],
        "each entity woken once: {effects:?}"
    );
    let waiting = storage.entities_with_messages(None, 10).await?;
    ensure!(
        waiting == vec![account.clone(), a.clone(), b.clone()],
        "in (name, key) order: {waiting:?}"
    );
    let first = storage.entities_with_messages(None, 1).await?;
    ensure!(first == vec![account.clone()], "`limit` at most: {first:?}");
    let after = storage.entities_with_messages(Some(a.clone()), 10).await?;
    ensure!(after == vec![b.clone()], "after an entity: {after:?}");
    for (entity, state) in [(&a, "1"), (&b, "2")] {
        let batch = storage.entity_batch(entity, 10).await?;
        let done = batch.ops.iter().map(|op| (op.id, ran(None))).collect();
        storage
            .commit_entity_batch(EntityCommit {
                entity: entity.clone(),
                state: Some(state.into()),
                done,
            })
            .await?;
    }
    let waiting = storage.entities_with_messages(None, 10).await?;
    ensure!(
        waiting == vec![account.clone()],
        "the processed ones have no messages left: {waiting:?}"
    );
    let page = storage.list_entities("Counter", 1, None).await?;
    ensure!(
        page.entities.iter().map(|e| &e.id).eq([&a]) && page.continuation.is_some(),
        "the first page of the listing: {page:?}"
    );
    let page = storage
        .list_entities("Counter", 1, page.continuation)
        .await?;
    ensure!(
        page.entities
            .iter()
            .map(|e| (&e.id, e.state.as_deref()))
            .eq([(&b, Some("2"))])
            && page.continuation.is_none(),
        "the last page: {page:?}"
    );
    let accounts = storage.list_entities("Account", 10, None).await?;
    ensure!(
        accounts.entities.is_empty(),
        "an entity without state is not listed: {accounts:?}"
    );
    Ok(())
}

pub(super) async fn locks_pass_in_order_and_are_released(
    storage: Arc<dyn DurableStorage>,
) -> anyhow::Result<()> {
    let (holder, other) = (id("holder")?, id("other")?);
    create(&*storage, &holder).await?;
    let (a, b) = (counter("a")?, counter("b")?);
    storage.send_to_entities(vec![add(&b, "2")]).await?;
    let mut locking = episode(&holder);
    let lock = EntityOpKind::Lock {
        rest: vec![b.clone()],
    };
    locking.entity_ops = vec![from(&holder, Some(8), &a, lock.clone())];
    storage.commit_episode(locking).await?;
    storage
        .send_to_entities(vec![NewEntityOp {
            sender: Some(other.clone()),
            ..add(&a, "1")
        }])
        .await?;
    let batch = storage.entity_batch(&a, 10).await?;
    ensure!(
        batch.locked_by.is_none() && batch.ops.len() == 2 && batch.ops[0].kind == lock,
        "not locked yet: every message, the lock request first: {batch:?}"
    );
    let effects = storage
        .commit_entity_batch(EntityCommit {
            entity: a.clone(),
            state: None,
            done: vec![(batch.ops[0].id, OpDone::Locked)],
        })
        .await?;
    ensure!(
        effects.entities == vec![b.clone()] && effects.messages.is_empty(),
        "the request is passed on to the next entity, not answered yet: {effects:?}"
    );
    let batch = storage.entity_batch(&a, 10).await?;
    ensure!(
        batch.locked_by.as_deref() == Some("holder") && batch.ops.is_empty(),
        "locked: only the holder's messages: {batch:?}"
    );
    let batch = storage.entity_batch(&b, 10).await?;
    let request = batch
        .ops
        .iter()
        .find(|op| op.sender.as_deref() == Some("holder"))
        .with_context(|| format!("the request passed on: {batch:?}"))?;
    ensure!(
        request.kind == EntityOpKind::Lock { rest: Vec::new() },
        "the last entity to lock: {request:?}"
    );
    let effects = storage
        .commit_entity_batch(EntityCommit {
            entity: b.clone(),
            state: None,
            done: vec![(request.id, OpDone::Locked)],
        })
        .await?;
    ensure!(
        completions(&effects.messages, &holder) == vec![(8, Ok("null".into()))],
        "the last lock answers the holder: {effects:?}"
    );

    storage
        .send_to_entities(vec![from(&holder, None, &a, EntityOpKind::Unlock)])
        .await?;
    let batch = storage.entity_batch(&a, 10).await?;
    let [unlock] = &batch.ops[..] else {
        anyhow::bail!("the holder's unlock alone: {batch:?}");
    };
    ensure!(unlock.kind == EntityOpKind::Unlock, "an unlock: {unlock:?}");
    storage
        .commit_entity_batch(EntityCommit {
            entity: a.clone(),
            state: None,
            done: vec![(unlock.id, OpDone::Unlocked)],
        })
        .await?;
    let released = storage.entity(&a).await?;
    ensure!(
        released.is_none(),
        "unlocked, without state: no entity left: {released:?}"
    );
    let batch = storage.entity_batch(&a, 10).await?;
    ensure!(
        batch.locked_by.is_none()
            && batch.ops.len() == 1
            && batch.ops[0].sender.as_deref() == Some("other"),
        "the other's message is free to run: {batch:?}"
    );
    let held = storage.entity(&b).await?.context("b, locked")?;
    ensure!(
        held.locked_by.as_deref() == Some("holder"),
        "b stays locked: {held:?}"
    );
    let (_, effects) = storage.terminate(&holder, "null".into()).await?;
    ensure!(
        effects.entities == vec![b.clone()],
        "ending the holder releases b: {effects:?}"
    );
    let released = storage.entity(&b).await?;
    ensure!(
        released.is_none(),
        "released, without state: no entity left: {released:?}"
    );
    let backlog = storage.backlog().await?;
    ensure!(
        backlog.entity_messages == 2,
        "b's signal and the other's message are left: {backlog:?}"
    );
    Ok(())
}
