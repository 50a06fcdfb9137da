//! Moving a running instance to its app's current version, only if its
//! journal replays identically against the new code.
//!
//! The upgrade runs inside the instance's own session, at a wait point:
//! everything the instance did is committed and nothing else runs it, so
//! the journal cannot grow while it is checked. The check is a verification
//! run (`Session::verifier`): the new code replays the journal, and must
//! make exactly the recorded calls until the journal ends. Then the
//! instance's pinned digest changes and the session starts again on the
//! new code.

use std::str::FromStr as _;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::engine::Shared;
use super::session::{Fault, Session};
use crate::model::Digest;
use perdure_records::{InstanceId, RuntimeStatus};
use perdure_storage::{ChangeOutcome, StorageError};

/// What an upgrade did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpgradeOutcome {
    /// The instance now runs on `to`.
    Upgraded { from: String, to: String },
    /// It already runs on the current version.
    AlreadyCurrent { digest: String },
}

/// Why an instance was not upgraded. It stays on its version.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpgradeError {
    #[error("no instance {0}")]
    NotFound(InstanceId),
    #[error("instance {0} has already finished ({status})", status = .1.as_str())]
    Finished(InstanceId, RuntimeStatus),
    #[error("app {0} is not loaded, so there is no current version to move to")]
    NoCurrentVersion(String),
    #[error(
        "the journal does not replay against the current version: at seq {seq} it recorded `{recorded}` but the new code makes `{new}`"
    )]
    Nondeterminism {
        seq: u64,
        recorded: String,
        new: String,
    },
    #[error("the current version failed while replaying the journal: {0}")]
    Failed(String),
    #[error("the instance finished, or the host stopped, before the upgrade could run")]
    Interrupted,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

type Reply = oneshot::Sender<Result<UpgradeOutcome, UpgradeError>>;

/// An upgrade asked of a session. Cloneable so that it can travel as a
/// signal; answered once.
#[derive(Debug, Clone)]
pub(crate) struct UpgradeRequest(Arc<Mutex<Option<Reply>>>);

impl UpgradeRequest {
    pub(crate) fn new() -> (
        Self,
        oneshot::Receiver<Result<UpgradeOutcome, UpgradeError>>,
    ) {
        let (tx, rx) = oneshot::channel();
        (Self(Arc::new(Mutex::new(Some(tx)))), rx)
    }

    fn answer(self, result: Result<UpgradeOutcome, UpgradeError>) {
        let reply = self.0.lock().ok().and_then(|mut r| r.take());
        if let Some(reply) = reply {
            let _ = reply.send(result);
        }
    }
}

/// Runs the upgrade `request` for instance `id`, whose session stopped at a
/// wait point to let it, and answers it.
pub(crate) async fn perform(shared: &Arc<Shared>, id: &InstanceId, request: UpgradeRequest) {
    let result = try_upgrade(shared, id).await;
    match &result {
        Ok(UpgradeOutcome::Upgraded { from, to }) => {
            tracing::info!(instance = %id, from, to, "upgraded to the current version");
        }
        Ok(UpgradeOutcome::AlreadyCurrent { .. }) => {}
        Err(e) => tracing::warn!(instance = %id, "upgrade refused: {e}"),
    }
    request.answer(result);
}

async fn try_upgrade(
    shared: &Arc<Shared>,
    id: &InstanceId,
) -> Result<UpgradeOutcome, UpgradeError> {
    let history = shared
        .storage()
        .history(id)
        .await?
        .ok_or_else(|| UpgradeError::NotFound(id.clone()))?;
    let record = &history.record;
    if record.status.is_finished() {
        return Err(UpgradeError::Finished(id.clone(), record.status));
    }
    let snapshot = shared.registry().snapshot();
    let current = snapshot
        .apps
        .get(&record.app)
        .ok_or_else(|| UpgradeError::NoCurrentVersion(record.app.clone()))?
        .clone();
    let from = record.digest.clone();
    let to = current.digest.hex();
    if from == to {
        return Ok(UpgradeOutcome::AlreadyCurrent {
            digest: display(&to),
        });
    }
    let verifier = Session::verifier(history, shared.clone());
    let (result, session) = verifier
        .run_in(shared.registry().sandbox(), &current.code)
        .await;
    let mut session =
        session.ok_or_else(|| UpgradeError::Failed("the verification run was lost".into()))?;
    match session.take_fault() {
        Some(Fault::ReplayComplete) => {}
        Some(Fault::Nondeterminism { seq, recorded, new }) => {
            return Err(UpgradeError::Nondeterminism { seq, recorded, new });
        }
        Some(other) => return Err(UpgradeError::Failed(other.to_string())),
        None => match result {
            // It returned: fine if it made every recorded call.
            Ok(Ok(_)) => {
                if let Err(Fault::Nondeterminism { seq, recorded, new }) = session.finish_replay() {
                    return Err(UpgradeError::Nondeterminism { seq, recorded, new });
                }
            }
            Ok(Err(e)) => return Err(UpgradeError::Failed(e.message)),
            Err(e) => return Err(UpgradeError::Failed(e.to_string())),
        },
    }
    shared
        .keep_version(to.clone(), current.bytes.clone())
        .await?;
    match shared.storage().set_digest(id, to.clone()).await? {
        ChangeOutcome::Done => Ok(UpgradeOutcome::Upgraded {
            from: display(&from),
            to: display(&to),
        }),
        ChangeOutcome::NotFound => Err(UpgradeError::NotFound(id.clone())),
        ChangeOutcome::Finished(status) | ChangeOutcome::NotFinished(status) => {
            Err(UpgradeError::Finished(id.clone(), status))
        }
    }
}

/// A stored hex digest as the APIs show digests (`sha256:...`).
fn display(hex: &str) -> String {
    Digest::from_str(hex)
        .map(|d| d.to_string())
        .unwrap_or_else(|_| hex.to_owned())
}
