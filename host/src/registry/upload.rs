//! Deploying without file access to the host: an app's component and its
//! `NAME.toml` given by the admin API, written into the watched folder as
//! a careful deployer would (beside it, then renamed into place), and
//! loaded before the answer.
//!
//! Invariant: a deployment that does not load changes nothing. The files
//! it replaced are put back, so the folder (what the next start loads) and
//! the serving version stay as they were, and the error is the answer.

use std::path::{Path, PathBuf};

use super::{DeployError, Registry, SyncOutcome};
use crate::model::validate_function_name;

/// The files of app `name` in `dir`.
fn files(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{name}.wasm")),
        dir.join(format!("{name}.toml")),
    )
}

/// Writes `bytes` as `path`, through a file beside it that the watcher
/// ignores, renamed into place; `None` removes `path`.
fn put(path: &Path, bytes: Option<&[u8]>) -> std::io::Result<()> {
    let Some(bytes) = bytes else {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    };
    let mut staging = path.as_os_str().to_owned();
    staging.push(".upload");
    let staging = PathBuf::from(staging);
    std::fs::write(&staging, bytes)?;
    std::fs::rename(&staging, path)
}

/// What a file held before a deployment replaced it (`None`: nothing).
fn read_if_present(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl Registry {
    /// Deploys app `name`: its component (if given) and its configuration
    /// (if given; `Some(None)` removes it), then loads it. On failure the
    /// folder is as it was and the previous version keeps serving.
    pub async fn deploy(
        &self,
        name: &str,
        component: Option<Vec<u8>>,
        config: Option<Option<String>>,
    ) -> Result<SyncOutcome, DeployError> {
        validate_function_name(name).map_err(|_| DeployError::BadAppName(name.to_owned()))?;
        let _serialised = self.load_lock.lock().await;
        let (wasm, toml) = files(&self.dir, name);
        let (wasm_path, toml_path) = (wasm.clone(), toml.clone());
        let component_given = component.is_some();
        let previous = tokio::task::spawn_blocking(move || {
            if component.is_none() && read_if_present(&wasm)?.is_none() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such app",
                ));
            }
            let previous = (read_if_present(&wasm)?, read_if_present(&toml)?);
            if let Some(config) = &config {
                put(&toml, config.as_deref().map(str::as_bytes))?;
            }
            if let Some(component) = &component {
                put(&wasm, Some(component))?;
            }
            Ok(previous)
        })
        .await
        .map_err(|e| DeployError::File(e.to_string()))?
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound if !component_given => DeployError::File(format!(
                "no app {name} is deployed: upload its component first"
            )),
            _ => DeployError::File(format!("cannot write into the functions folder: {e}")),
        })?;
        let outcome = self.sync_locked(name, &wasm_path).await;
        if outcome.is_err() {
            let (wasm, toml) = (wasm_path.clone(), toml_path);
            let restored = tokio::task::spawn_blocking(move || {
                put(&toml, previous.1.as_deref())?;
                put(&wasm, previous.0.as_deref())
            })
            .await;
            if !matches!(restored, Ok(Ok(()))) {
                tracing::error!(app = %name, "could not restore the files a failed deployment replaced: {restored:?}");
            }
        }
        outcome
    }

    /// Removes app `name`'s component and configuration and unloads it;
    /// false if there was no such app.
    pub async fn remove(&self, name: &str) -> Result<bool, DeployError> {
        validate_function_name(name).map_err(|_| DeployError::BadAppName(name.to_owned()))?;
        let _serialised = self.load_lock.lock().await;
        let (wasm, toml) = files(&self.dir, name);
        let wasm_path = wasm.clone();
        let existed = tokio::task::spawn_blocking(move || {
            let existed = wasm.exists();
            put(&wasm, None)?;
            put(&toml, None)?;
            Ok::<_, std::io::Error>(existed)
        })
        .await
        .map_err(|e| DeployError::File(e.to_string()))?
        .map_err(|e| DeployError::File(format!("cannot remove from the functions folder: {e}")))?;
        self.sync_locked(name, &wasm_path).await?;
        Ok(existed)
    }
}
