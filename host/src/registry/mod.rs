//! The registry of loaded function apps: which version of which app serves
//! which function and route.
//!
//! Invariants:
//! - Readers take an `Arc<Snapshot>` and never block a load: a new version
//!   is swapped in atomically, so a request sees the old app or the new one,
//!   never a mix.
//! - Loads are serialised, so clash checks see a consistent set of apps.
//! - A file that fails to load leaves the previous version serving; the
//!   failure is kept for the admin API and logged.
//! - Function names and HTTP routes are unique across all loaded apps.

mod routes;
pub mod shared;
mod upload;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime};

pub use routes::RouteMatch;

use crate::config::AppConfig;
use crate::model::{AppDescription, Digest, FunctionDef, FunctionKind, validate_function_name};
use crate::sandbox::{AppCode, CacheOutcome, CodeCache, LoadError, Sandbox};

/// One loaded version of an app.
#[derive(Clone)]
pub struct LoadedApp {
    /// The file stem, e.g. `greet` for `greet.wasm`.
    pub name: String,
    pub path: PathBuf,
    pub digest: Digest,
    /// The component's bytes, kept so that instances can pin this version.
    pub bytes: Arc<[u8]>,
    pub loaded_at: SystemTime,
    pub description: AppDescription,
    pub code: AppCode,
    pub cache: CacheOutcome,
    /// Compile (or cache load) plus validation time.
    pub load_ms: f64,
    /// `NAME.toml` beside the file, or the default.
    pub config: Arc<AppConfig>,
    /// Invocations of this app that may run at once (HTTP functions and
    /// activities), if its configuration limits them.
    pub concurrency: Option<Arc<tokio::sync::Semaphore>>,
}

impl LoadedApp {
    /// A permit to run one of this app's HTTP functions or activities, if
    /// one is free (always, without a concurrency limit).
    pub fn try_invocation_permit(&self) -> Result<InvocationPermit, AtCapacity> {
        match &self.concurrency {
            None => Ok(InvocationPermit { _slot: None }),
            Some(slots) => match slots.clone().try_acquire_owned() {
                Ok(permit) => Ok(InvocationPermit {
                    _slot: Some(permit),
                }),
                Err(_) => Err(AtCapacity {
                    limit: self.config.limits.max_concurrency.unwrap_or_default(),
                }),
            },
        }
    }

    /// A permit to run one of this app's HTTP functions or activities,
    /// waiting for one if the app is at its concurrency limit.
    pub async fn invocation_permit(&self) -> InvocationPermit {
        match &self.concurrency {
            None => InvocationPermit { _slot: None },
            Some(slots) => InvocationPermit {
                _slot: slots.clone().acquire_owned().await.ok(),
            },
        }
    }
}

/// Held while one invocation of an app runs.
pub struct InvocationPermit {
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// An app is running as many invocations as its configuration allows.
#[derive(Debug, Clone, Copy)]
pub struct AtCapacity {
    pub limit: usize,
}

/// Invocation slots for an app's `[limits] max_concurrency`: the previous
/// version's while the limit is the same, so that invocations running
/// across a reload still count against it.
fn concurrency_of(
    config: &AppConfig,
    previous: Option<&Arc<LoadedApp>>,
) -> Option<Arc<tokio::sync::Semaphore>> {
    let limit = config.limits.max_concurrency?;
    match previous {
        Some(app) if app.config.limits.max_concurrency == Some(limit) => app.concurrency.clone(),
        _ => Some(Arc::new(tokio::sync::Semaphore::new(limit))),
    }
}

/// The last failed attempt to load a file.
#[derive(Debug, Clone)]
pub struct LoadFailure {
    pub path: PathBuf,
    pub error: String,
    pub at: SystemTime,
}

/// An immutable view of every loaded app.
#[derive(Default)]
pub struct Snapshot {
    pub apps: BTreeMap<String, Arc<LoadedApp>>,
    pub failures: BTreeMap<String, LoadFailure>,
    routes: routes::RouteTable,
}

impl Snapshot {
    /// Finds the HTTP function for `method` and `path` (below `/api/`).
    pub fn route(&self, method: &str, path: &str) -> RouteMatch {
        self.routes.resolve(method, path)
    }

    /// Finds a function by name in any app.
    pub fn function(&self, name: &str) -> Option<(&Arc<LoadedApp>, &FunctionDef)> {
        self.apps
            .values()
            .find_map(|app| app.description.function(name).map(|f| (app, f)))
    }

    /// Finds a function by name in any app, if it is of `kind`.
    pub fn function_of_kind(
        &self,
        name: &str,
        kind: FunctionKind,
    ) -> Option<(&Arc<LoadedApp>, &FunctionDef)> {
        self.function(name).filter(|(_, f)| f.kind == kind)
    }

    fn with(
        &self,
        change: impl FnOnce(&mut BTreeMap<String, Arc<LoadedApp>>, &mut BTreeMap<String, LoadFailure>),
    ) -> Self {
        let mut apps = self.apps.clone();
        let mut failures = self.failures.clone();
        change(&mut apps, &mut failures);
        let routes = routes::RouteTable::build(apps.values());
        Self {
            apps,
            failures,
            routes,
        }
    }
}

/// Why a file was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("{0}")]
    Load(#[from] LoadError),
    #[error("invalid description: {0}")]
    Description(#[from] crate::model::DescriptionError),
    #[error("app name {0:?} (the file name) is not valid: use letters, digits, '_', '-' or '.'")]
    BadAppName(String),
    #[error("{what} is also declared by {other}; the first loaded keeps it")]
    Clash { what: String, other: String },
    #[error("{0}")]
    File(String),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// What happened to a file on [`Registry::sync`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncOutcome {
    Loaded { digest: Digest, cache: CacheOutcome },
    Unchanged,
    Unloaded,
    Absent,
    Failed(String),
}

/// The loaded apps of one functions folder.
pub struct Registry {
    sandbox: Arc<Sandbox>,
    cache: CodeCache,
    dir: PathBuf,
    current: RwLock<Arc<Snapshot>>,
    load_lock: tokio::sync::Mutex<()>,
    /// Bumped at every new snapshot.
    changes: tokio::sync::watch::Sender<u64>,
}

impl Registry {
    pub fn new(sandbox: Arc<Sandbox>, cache: CodeCache, dir: PathBuf) -> Self {
        Self {
            sandbox,
            cache,
            dir,
            current: RwLock::new(Arc::new(Snapshot::default())),
            load_lock: tokio::sync::Mutex::new(()),
            changes: tokio::sync::watch::Sender::new(0),
        }
    }

    pub fn sandbox(&self) -> &Arc<Sandbox> {
        &self.sandbox
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current set of apps. Cheap; never blocks on a load.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Changes whenever the set of apps does.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn publish(&self, next: Snapshot) {
        let next = Arc::new(next);
        match self.current.write() {
            Ok(mut guard) => *guard = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Every `*.wasm` path in the folder.
    pub async fn scan(&self) -> std::io::Result<Vec<PathBuf>> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            let mut paths = Vec::new();
            for entry in std::fs::read_dir(&dir)? {
                let path = entry?.path();
                if is_component_file(&path) {
                    paths.push(path);
                }
            }
            paths.sort();
            Ok(paths)
        })
        .await
        .map_err(std::io::Error::other)?
    }

    /// Brings the app of `path` in line with the file: loads a new or
    /// changed file, unloads a removed one.
    pub async fn sync(&self, path: &Path) -> SyncOutcome {
        let _serialised = self.load_lock.lock().await;
        let Some(name) = app_name(path) else {
            return SyncOutcome::Absent;
        };
        let outcome = self.sync_locked(&name, path).await;
        match &outcome {
            Ok(SyncOutcome::Loaded { digest, cache }) => {
                tracing::info!(app = %name, %digest, ?cache, "app loaded");
            }
            Ok(SyncOutcome::Unloaded) => tracing::info!(app = %name, "app unloaded"),
            Ok(_) => {}
            Err(e) => {
                tracing::error!(app = %name, file = %path.display(), "app not loaded: {e}");
                let failure = LoadFailure {
                    path: path.to_path_buf(),
                    error: e.to_string(),
                    at: SystemTime::now(),
                };
                let next = self.snapshot().with(|_, failures| {
                    failures.insert(name.clone(), failure);
                });
                self.publish(next);
            }
        }
        outcome.unwrap_or_else(|e| SyncOutcome::Failed(e.to_string()))
    }

    /// Compiles (or loads from the code cache) a component, on a blocking
    /// thread.
    pub async fn compile(
        &self,
        digest: Digest,
        bytes: Arc<[u8]>,
    ) -> Result<(AppCode, CacheOutcome), DeployError> {
        let sandbox = self.sandbox.clone();
        let cache = self.cache.clone();
        Ok(
            tokio::task::spawn_blocking(move || sandbox.load(&cache, &digest, &bytes))
                .await
                .map_err(|e| DeployError::File(e.to_string()))??,
        )
    }

    async fn sync_locked(&self, name: &str, path: &Path) -> Result<SyncOutcome, DeployError> {
        let started = Instant::now();
        let file = path.to_path_buf();
        let dir = self.dir.clone();
        let read = tokio::task::spawn_blocking(move || {
            let Some(bytes) = read_component(&dir, &file)? else {
                return Ok::<_, DeployError>(None);
            };
            Ok(Some((bytes, AppConfig::load_beside(&file)?)))
        })
        .await
        .map_err(|e| DeployError::File(e.to_string()))??;
        let current = self.snapshot();
        let Some((bytes, config)) = read else {
            if current.apps.contains_key(name) || current.failures.contains_key(name) {
                self.publish(current.with(|apps, failures| {
                    apps.remove(name);
                    failures.remove(name);
                }));
                return Ok(SyncOutcome::Unloaded);
            }
            return Ok(SyncOutcome::Absent);
        };
        validate_function_name(name).map_err(|_| DeployError::BadAppName(name.to_owned()))?;
        let digest = Digest::of(&bytes);
        let host_limits = self.sandbox.limits();
        config
            .limits
            .check(
                host_limits.timeout,
                host_limits.memory_bytes,
                host_limits.max_instances,
            )
            .map_err(|message| crate::config::ConfigError::Invalid {
                path: crate::config::config_path(path).display().to_string(),
                message,
            })?;
        let limits = host_limits.for_app(&config.limits);
        let config = Arc::new(config);
        if let Some(loaded) = current.apps.get(name).filter(|a| a.digest == digest) {
            if *loaded.config != *config {
                // Same code, new configuration: no recompilation.
                let app = Arc::new(LoadedApp {
                    code: loaded.code.with_limits(limits),
                    concurrency: concurrency_of(&config, current.apps.get(name)),
                    config,
                    loaded_at: SystemTime::now(),
                    ..LoadedApp::clone(loaded)
                });
                self.publish(current.with(|apps, failures| {
                    apps.insert(name.to_owned(), app);
                    failures.remove(name);
                }));
                return Ok(SyncOutcome::Loaded {
                    digest,
                    cache: CacheOutcome::Hit,
                });
            }
            if current.failures.contains_key(name) {
                self.publish(current.with(|_, failures| {
                    failures.remove(name);
                }));
            }
            return Ok(SyncOutcome::Unchanged);
        }
        let bytes: Arc<[u8]> = bytes.into();
        let (code, cache_outcome) = self.compile(digest, bytes.clone()).await?;
        let code = code.with_limits(limits);
        let raw = self
            .sandbox
            .describe(&code, name)
            .await
            .map_err(LoadError::from)?;
        let description = AppDescription::validate(raw)?;
        check_clashes(&current, name, path, &description)?;
        let app = Arc::new(LoadedApp {
            name: name.to_owned(),
            path: path.to_path_buf(),
            digest,
            bytes,
            loaded_at: SystemTime::now(),
            description,
            code,
            cache: cache_outcome,
            load_ms: started.elapsed().as_secs_f64() * 1000.0,
            concurrency: concurrency_of(&config, current.apps.get(name)),
            config,
        });
        self.publish(current.with(|apps, failures| {
            apps.insert(name.to_owned(), app);
            failures.remove(name);
        }));
        Ok(SyncOutcome::Loaded {
            digest,
            cache: cache_outcome,
        })
    }
}

/// Refuses a description whose function names or routes another app has.
fn check_clashes(
    current: &Snapshot,
    name: &str,
    path: &Path,
    description: &AppDescription,
) -> Result<(), DeployError> {
    for other in current.apps.values().filter(|a| a.name != name) {
        for f in &description.functions {
            let clash = if other.description.function(&f.name).is_some() {
                Some(format!("function {} in {}", f.name, path.display()))
            } else {
                f.http.as_ref().and_then(|trigger| {
                    other
                        .description
                        .functions
                        .iter()
                        .filter_map(|g| g.http.as_ref().map(|h| (g, h)))
                        .find(|(_, h)| h.overlaps(trigger))
                        .map(|(g, _)| {
                            format!(
                                "route /api/{} of {} in {} (as function {})",
                                trigger.route,
                                f.name,
                                path.display(),
                                g.name
                            )
                        })
                })
            };
            if let Some(what) = clash {
                return Err(DeployError::Clash {
                    what,
                    other: other.path.display().to_string(),
                });
            }
        }
    }
    Ok(())
}

/// True for `*.wasm` files (by name; content is checked on load).
pub fn is_component_file(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "wasm")
}

/// The component a folder entry belongs to: itself for `NAME.wasm`,
/// `NAME.wasm` for its configuration `NAME.toml`.
pub fn component_of(path: &Path) -> Option<PathBuf> {
    match path.extension() {
        Some(e) if e == "wasm" => Some(path.to_path_buf()),
        Some(e) if e == "toml" => Some(path.with_extension("wasm")),
        _ => None,
    }
}

fn app_name(path: &Path) -> Option<String> {
    if !is_component_file(path) {
        return None;
    }
    path.file_stem().and_then(|s| s.to_str()).map(str::to_owned)
}

/// Largest component file the host reads; bigger files are refused rather
/// than read into memory.
pub(crate) const MAX_COMPONENT_BYTES: u64 = 256 << 20;

/// Reads a component file, or `None` if it is gone. Refuses anything that
/// is not a regular file inside `dir` (e.g. a symlink out of the folder).
fn read_component(dir: &Path, path: &Path) -> Result<Option<Vec<u8>>, DeployError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(DeployError::File(format!(
                "cannot stat {}: {e}",
                path.display()
            )));
        }
    };
    if meta.file_type().is_symlink() {
        let target = std::fs::canonicalize(path)
            .map_err(|e| DeployError::File(format!("broken symlink {}: {e}", path.display())))?;
        let root = std::fs::canonicalize(dir)
            .map_err(|e| DeployError::File(format!("cannot resolve {}: {e}", dir.display())))?;
        if !target.starts_with(&root) {
            return Err(DeployError::File(format!(
                "{} links outside the functions folder; refused",
                path.display()
            )));
        }
    }
    let meta = std::fs::metadata(path)
        .map_err(|e| DeployError::File(format!("cannot stat {}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(DeployError::File(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    if meta.len() > MAX_COMPONENT_BYTES {
        return Err(DeployError::File(format!(
            "{} is {} bytes; the limit is {MAX_COMPONENT_BYTES}",
            path.display(),
            meta.len()
        )));
    }
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(DeployError::File(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}
