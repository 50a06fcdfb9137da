//! The watched folder as the deployment API: file events in, app loads and
//! unloads out.
//!
//! The deployer reads [`FolderEvent`]s from a channel, so anything can feed
//! it: [`watch_folder`] connects `notify` to it, and tests can send events
//! of their own. A file closed after writing, renamed into place or removed
//! is synced at once; other changes (a copy in progress writes many times)
//! are debounced first. Syncing reads the file as it is at that moment: a
//! torn or half-copied file fails validation and leaves the previous
//! version serving until the next event for that path.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{EventKind, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::registry::{Registry, component_of};

/// Something happened in the functions folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FolderEvent {
    /// The file at this path is being written: load it once it has been
    /// quiet for [`QUIET_PERIOD`].
    Changed(PathBuf),
    /// The file at this path is complete (closed after writing, renamed
    /// into place) or gone: sync it now.
    Settled(PathBuf),
    /// Events may have been lost: look at every file again.
    Rescan,
}

/// How long a path must be quiet before it is loaded.
pub const QUIET_PERIOD: Duration = Duration::from_millis(50);

/// Keeps the OS watcher alive; dropping it stops the events.
pub struct FolderWatch {
    _watcher: notify::RecommendedWatcher,
}

/// Why the folder cannot be watched.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch {path}: {source}")]
pub struct WatchError {
    path: PathBuf,
    source: notify::Error,
}

/// Watches `dir` (not recursively) and sends its events to `events`.
pub fn watch_folder(
    dir: &Path,
    events: mpsc::Sender<FolderEvent>,
) -> Result<FolderWatch, WatchError> {
    let handler = move |result: notify::Result<notify::Event>| {
        let batch = match result {
            Ok(event) if event.need_rescan() => vec![FolderEvent::Rescan],
            Ok(event) => {
                let settled = matches!(
                    event.kind,
                    EventKind::Access(AccessKind::Close(AccessMode::Write))
                        | EventKind::Modify(ModifyKind::Name(_))
                        | EventKind::Remove(_)
                );
                let writing = !settled && !matches!(event.kind, EventKind::Access(_));
                event
                    .paths
                    .into_iter()
                    .filter_map(|p| component_of(&p))
                    .filter_map(|p| {
                        if settled {
                            Some(FolderEvent::Settled(p))
                        } else {
                            writing.then_some(FolderEvent::Changed(p))
                        }
                    })
                    .collect()
            }
            Err(e) => {
                tracing::warn!("file watcher error, rescanning: {e}");
                vec![FolderEvent::Rescan]
            }
        };
        for event in batch {
            // The notify thread is not a tokio thread, so blocking here is
            // fine; it only applies back-pressure to the OS event queue.
            if events.blocking_send(event).is_err() {
                return;
            }
        }
    };
    let mut watcher = notify::recommended_watcher(handler).map_err(|source| WatchError {
        path: dir.to_path_buf(),
        source,
    })?;
    watcher
        .watch(dir, RecursiveMode::NonRecursive)
        .map_err(|source| WatchError {
            path: dir.to_path_buf(),
            source,
        })?;
    Ok(FolderWatch { _watcher: watcher })
}

/// Applies folder events to the registry until the channel closes.
pub async fn run_deployer(registry: Arc<Registry>, mut events: mpsc::Receiver<FolderEvent>) {
    let mut pending: HashMap<PathBuf, Instant> = HashMap::new();
    loop {
        let next_due = pending.values().min().map(|t| *t + QUIET_PERIOD);
        tokio::select! {
            event = events.recv() => match event {
                Some(FolderEvent::Changed(path)) => {
                    pending.insert(path, Instant::now());
                }
                Some(FolderEvent::Settled(path)) => {
                    pending.remove(&path);
                    registry.sync(&path).await;
                }
                Some(FolderEvent::Rescan) => {
                    let now = Instant::now();
                    let mut paths = registry.scan().await.unwrap_or_default();
                    paths.extend(registry.snapshot().apps.values().map(|a| a.path.clone()));
                    for path in paths {
                        pending.insert(path, now);
                    }
                }
                None => return,
            },
            () = sleep_until(next_due), if next_due.is_some() => {
                let now = Instant::now();
                let due: Vec<PathBuf> = pending
                    .iter()
                    .filter(|(_, t)| **t + QUIET_PERIOD <= now)
                    .map(|(p, _)| p.clone())
                    .collect();
                for path in due {
                    pending.remove(&path);
                    registry.sync(&path).await;
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(deadline).await;
    }
}
