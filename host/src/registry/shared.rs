//! Apps and keys shared by the hosts of one database (decision 6 of
//! `shared/design/scale-out.md`): what a host loads from its folder (a
//! dropped file, `PUT /admin/apps`, a removal) is published to the
//! database, and what another host published is written into this host's
//! folder and loaded from there, as if it had been dropped. Function keys
//! are read again whenever they may have changed.
//!
//! Invariants:
//! - The folder stays what a host serves: a version from the database is
//!   deployed through [`Registry::deploy`], so a restart loads it again
//!   from the file, and a version that fails to load here changes nothing.
//! - Steady state: the latest change wins, whichever host made it. At
//!   start, a file and the database's row for its app disagree when one
//!   changed while the host was down: the newer wins (the file's mtime
//!   against the row's time).
//! - No loops: a version is published only when it differs from what this
//!   host last published or took from the database for that app.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use perdure_storage::placement::{Placement, SharedApp};
use perdure_storage::{DurableStorage, StorageError};

use super::Registry;
use crate::keys::Keys;
use crate::time::now_ms;

/// What this host shares, and what it knows of the database's share.
struct Sharing {
    registry: Arc<Registry>,
    storage: Arc<dyn DurableStorage>,
    placement: Arc<dyn Placement>,
    keys: Arc<Keys>,
    /// Per app: the digest this host last published or took (`None`:
    /// removed).
    known: HashMap<String, Option<String>>,
    /// Versions from the database that do not load here (not tried again).
    failed: HashSet<(String, String)>,
}

/// Brings this host's apps in line with the database's (before it
/// serves), then follows the database's apps and keys and publishes this
/// host's in a task, until that task is aborted. Nothing on a database
/// of one host's own.
pub async fn start(
    registry: Arc<Registry>,
    storage: Arc<dyn DurableStorage>,
    keys: Arc<Keys>,
) -> tokio::task::JoinHandle<()> {
    let Some(placement) = storage.placement() else {
        return tokio::spawn(async {});
    };
    // Subscribed before the first look, so no change after it is missed.
    let mut local = registry.changes();
    let mut shared = placement.shared_changes();
    let mut sharing = Sharing {
        registry,
        storage,
        placement,
        keys,
        known: HashMap::new(),
        failed: HashSet::new(),
    };
    if let Err(e) = sharing.reconcile(true).await {
        tracing::warn!("cannot share apps through the database (tried again shortly): {e}");
    }
    local.mark_unchanged();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = local.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if let Err(e) = sharing.publish_local().await {
                        tracing::warn!("cannot publish this host's apps (tried again shortly): {e}");
                    }
                }
                changed = shared.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if let Err(e) = sharing.reconcile(false).await {
                        tracing::warn!("cannot read the shared apps (tried again shortly): {e}");
                    }
                    if let Err(e) = sharing.keys.reload().await {
                        tracing::warn!("cannot read the function keys (tried again shortly): {e}");
                    }
                }
            }
        }
    })
}

/// When `path` was last written, in ms since the epoch (0 if unknown).
fn modified_ms(path: &std::path::Path) -> i64 {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Sharing {
    /// Brings this host in line with the database: takes every version it
    /// has not published or taken itself. At `start`, a local version that
    /// differs from the database's is kept (and published) if its file is
    /// newer than the database's row, and apps only this host has are
    /// published.
    async fn reconcile(&mut self, start: bool) -> Result<(), StorageError> {
        let rows = self.placement.shared_apps().await?;
        let snapshot = self.registry.snapshot();
        for row in &rows {
            let local = snapshot.apps.get(&row.name);
            let local_digest = local.map(|app| app.digest.hex());
            if local_digest == row.digest {
                self.known.insert(row.name.clone(), row.digest.clone());
                continue;
            }
            if self.known.get(&row.name) == Some(&row.digest) {
                // This host's own publication, since changed here:
                // published at the next local change.
                continue;
            }
            if start && local.is_some_and(|app| modified_ms(&app.path) > row.updated_ms) {
                // Changed here while this host was down: this host's wins.
                continue;
            }
            self.take(row).await;
        }
        if start {
            self.publish_local().await?;
        }
        Ok(())
    }

    /// Deploys (or removes) the database's version of an app here.
    async fn take(&mut self, row: &SharedApp) {
        let Some(digest) = &row.digest else {
            self.known.insert(row.name.clone(), None);
            match self.registry.remove(&row.name).await {
                Ok(_) => tracing::info!(app = %row.name, "app removed on another host"),
                Err(e) => {
                    tracing::warn!(app = %row.name, "cannot remove an app removed on another host: {e}")
                }
            }
            return;
        };
        let version = (row.name.clone(), digest.clone());
        if self.failed.contains(&version) {
            return;
        }
        let bytes = match self.storage.component(digest).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                tracing::warn!(app = %row.name, %digest, "a shared app's component is missing");
                self.failed.insert(version);
                return;
            }
            Err(e) => {
                tracing::warn!(app = %row.name, "cannot read a shared app (tried again shortly): {e}");
                return;
            }
        };
        self.known.insert(row.name.clone(), Some(digest.clone()));
        match self
            .registry
            .deploy(&row.name, Some(bytes), Some(row.config.clone()))
            .await
        {
            Ok(_) => tracing::info!(app = %row.name, %digest, "app deployed from another host"),
            Err(e) => {
                tracing::error!(app = %row.name, %digest, "an app deployed on another host does not load here: {e}");
                self.failed.insert(version);
            }
        }
    }

    /// Publishes every app whose loaded version differs from what this
    /// host last published or took, and the removal of those no longer
    /// loaded.
    async fn publish_local(&mut self) -> Result<(), StorageError> {
        let snapshot = self.registry.snapshot();
        for (name, app) in &snapshot.apps {
            let digest = app.digest.hex();
            if self.known.get(name) == Some(&Some(digest.clone())) {
                continue;
            }
            let config_path = crate::config::config_path(&app.path);
            let config =
                tokio::task::spawn_blocking(move || std::fs::read_to_string(config_path).ok())
                    .await
                    .ok()
                    .flatten();
            let published = SharedApp {
                name: name.clone(),
                digest: Some(digest.clone()),
                config,
                updated_ms: now_ms(),
            };
            if self
                .placement
                .publish_app(published, Some(app.bytes.clone()))
                .await?
            {
                tracing::info!(app = %name, %digest, "app published to the other hosts");
            }
            self.known.insert(name.clone(), Some(digest));
        }
        // A failed load keeps the previous version serving, so an app that
        // left the snapshot was removed here.
        let removed: Vec<String> = self
            .known
            .iter()
            .filter(|(name, digest)| digest.is_some() && !snapshot.apps.contains_key(*name))
            .map(|(name, _)| name.clone())
            .collect();
        for name in removed {
            let tombstone = SharedApp {
                name: name.clone(),
                digest: None,
                config: None,
                updated_ms: now_ms(),
            };
            if self.placement.publish_app(tombstone, None).await? {
                tracing::info!(app = %name, "app removal published to the other hosts");
            }
            self.known.insert(name, None);
        }
        Ok(())
    }
}
