//! The engine's side of a database shared by several hosts: it runs the
//! instances and entities of the partitions this host holds, and follows
//! the backend's placement events (see `perdure_storage::placement`).
//!
//! - A partition gained: its unfinished instances and entities with queued
//!   messages are woken, as at start-up, and the activities of dead hosts
//!   run again here.
//! - A partition lost: the sessions of its instances stop without writing
//!   (their writes would be refused by the fence anyway); the new owner
//!   replays them from their journals.
//! - A wake-up from another host: the instance's new inbox messages,
//!   suspension and end reach its session (or a session starts); the
//!   entity runs its queued messages.

use std::sync::Arc;

use perdure_records::{InstanceId, RuntimeStatus};
use perdure_storage::placement::PlacementEvent;
use tokio::sync::mpsc;

use super::{Shared, Signal, entities};

/// Follows the placement's events until the engine is gone.
pub(crate) async fn follow(
    shared: std::sync::Weak<Shared>,
    mut events: mpsc::UnboundedReceiver<PlacementEvent>,
) {
    while let Some(event) = events.recv().await {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        match event {
            PlacementEvent::Gained(partitions) => {
                tracing::debug!(?partitions, "resuming the instances of gained partitions");
                if let Err(e) = wake_unfinished(&shared).await {
                    tracing::error!("cannot list the unfinished instances: {e}");
                }
                tokio::spawn(entities::resume(shared.clone()));
                // A partition is free after its owner stopped renewing: the
                // activities that host ran are taken over too.
                super::sweep_expired(&shared).await;
            }
            PlacementEvent::Lost(_) => {
                for id in shared.hot_ids() {
                    if !shared.owns_instance(&id) {
                        shared.notify_if_hot(&id, Signal::Cancel);
                    }
                }
            }
            PlacementEvent::Wake {
                instances,
                entities,
            } => {
                for id in instances {
                    tokio::spawn(refresh(shared.clone(), id));
                }
                for id in entities {
                    shared.wake_entity(id);
                }
            }
        }
    }
}

/// Wakes every unfinished instance this host holds (the others are left
/// to their owners).
pub(crate) async fn wake_unfinished(
    shared: &Arc<Shared>,
) -> Result<usize, perdure_storage::StorageError> {
    let unfinished = shared.storage().unfinished_instances().await?;
    let mut woken = 0;
    for id in unfinished {
        if shared.owns_instance(&id) {
            shared.deliver(&id, Signal::Wake);
            woken += 1;
        }
    }
    Ok(woken)
}

/// After a write that failed without knowing whether it committed (the
/// database became unreachable), once the database answers again: runs
/// this host's leased activities that are not running (a committed
/// episode's dispatch was lost), and brings every session in memory what
/// its inbox holds (a committed completion's delivery was lost). Runs
/// until the engine stops.
pub(crate) async fn resync(shared: Arc<Shared>) {
    const RETRY: std::time::Duration = std::time::Duration::from_secs(1);
    loop {
        shared.uncertain.notified().await;
        loop {
            if shared.stopping.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            tokio::time::sleep(RETRY).await;
            match super::claim_all_and_dispatch(&shared, i64::MAX).await {
                Ok(activities) => {
                    tracing::info!(
                        activities,
                        sessions = shared.hot_count(),
                        "the database answers again: looking for work a failed write may have left"
                    );
                    for id in shared.hot_ids() {
                        tokio::spawn(refresh(shared.clone(), id));
                    }
                    break;
                }
                Err(e) => tracing::debug!("the database does not answer yet: {e}"),
            }
        }
    }
}

/// Brings what another host wrote for instance `id` to its session here:
/// a session in memory gets the inbox messages it lacks (it ignores those
/// it has), the suspension, or its end; otherwise a session starts from
/// the journal.
async fn refresh(shared: Arc<Shared>, id: InstanceId) {
    if !shared.is_hot(&id) {
        shared.deliver(&id, Signal::Wake);
        return;
    }
    let history = match shared.storage().history(&id).await {
        Ok(Some(history)) => history,
        Ok(None) => {
            shared.notify_if_hot(&id, Signal::Cancel);
            return;
        }
        Err(e) => {
            tracing::warn!(instance = %id, "cannot read a woken instance (evicted; it runs again from its journal): {e}");
            shared.notify_if_hot(&id, Signal::Cancel);
            shared.deliver(&id, Signal::Wake);
            return;
        }
    };
    let status = history.record.status;
    if status.is_finished() {
        shared.notify_if_hot(&id, Signal::Cancel);
        shared.announce_finished();
        return;
    }
    for message in history.inbox {
        shared.deliver(&id, Signal::Message(Box::new(message)));
    }
    shared.deliver(&id, Signal::Suspend(status == RuntimeStatus::Suspended));
}
