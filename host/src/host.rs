//! Assembles a running host: storage, keys, sandbox, registry, durable
//! engine, watcher and HTTP server, started in that order and stopped in
//! reverse.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::database::{Database, OpenDatabase};
use crate::durable::{Engine, EngineConfig};
use crate::http::{HttpContext, HttpLimits, Listener};
use crate::keys::{Keys, MasterKeySource};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::sandbox::{
    CodeCache, EngineError, OutboundClient, OutboundSetupError, Sandbox, SandboxLimits,
};
use crate::watcher::{FolderEvent, FolderWatch, WatchError, run_deployer, watch_folder};
use perdure_storage::StorageError;

/// Everything `perdure serve` can be told.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The watched folder of `*.wasm` function apps.
    pub functions_dir: PathBuf,
    /// The database: a SQLite file, or a PostgreSQL URL.
    pub db: Database,
    /// Compiled code cache; defaults to `<db>.cache` beside the database.
    pub cache_dir: Option<PathBuf>,
    pub listen: SocketAddr,
    /// Where the dashboard is served, on a listener of its own (`None`:
    /// no dashboard). Its own origin: pages that functions serve under
    /// `/api/` cannot act with its session.
    pub dashboard_listen: Option<SocketAddr>,
    /// Without one, a key is generated on first start and kept in the
    /// database.
    pub master_key: Option<String>,
    pub sandbox: SandboxLimits,
    /// PEM certificates trusted for activities' outbound HTTPS, besides
    /// the built-in Mozilla roots.
    pub outbound_ca_file: Option<PathBuf>,
    pub http: HttpLimits,
    /// The durable engine; its slot caps are also bounded by the sandbox's
    /// (see [`HostConfig::engine_config`]).
    pub durable: EngineConfig,
    /// The database may not grow past this; writes that would are refused
    /// as a full disk is (HTTP 503). `None`: as large as the disk allows.
    pub max_db_bytes: Option<u64>,
    /// `/metrics` answers without the master key (for a scraper on a
    /// trusted network); by default it needs the key.
    pub metrics_open: bool,
    /// An OTLP/HTTP collector (e.g. `http://127.0.0.1:4318`) that receives
    /// instances' traces; `None`: no traces leave the host.
    pub otlp_endpoint: Option<String>,
    /// This host's id on a shared database; `None`: the machine's name and
    /// a random suffix.
    pub host_id: Option<String>,
    /// How long a host's partitions of a shared database outlive its last
    /// renewal.
    pub lease: std::time::Duration,
}

impl HostConfig {
    pub fn new(functions_dir: impl Into<PathBuf>, db: impl Into<Database>) -> Self {
        Self {
            functions_dir: functions_dir.into(),
            db: db.into(),
            cache_dir: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 7071)),
            dashboard_listen: Some(SocketAddr::from(([127, 0, 0, 1], 7072))),
            master_key: None,
            sandbox: SandboxLimits::default(),
            outbound_ca_file: None,
            http: HttpLimits::default(),
            durable: EngineConfig::default(),
            max_db_bytes: None,
            metrics_open: false,
            otlp_endpoint: None,
            host_id: None,
            lease: std::time::Duration::from_secs(10),
        }
    }

    /// The engine's settings, with its sandbox slot caps fitted into the
    /// sandbox's: orchestrators may hold at most half of the slots and
    /// activities a quarter, so HTTP functions always find some free.
    pub fn engine_config(&self) -> EngineConfig {
        let slots = self.sandbox.max_instances as usize;
        let mut config = self.durable.clone();
        config.max_hot_instances = config.max_hot_instances.min(slots / 2).max(1);
        config.max_activities = config.max_activities.min(slots / 4).max(1);
        config
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .unwrap_or_else(|| self.db.default_cache_dir())
    }
}

/// Why the host could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("cannot open the database: {0}")]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Outbound(#[from] OutboundSetupError),
    #[error(transparent)]
    Watch(#[from] WatchError),
    #[error(transparent)]
    Traces(#[from] crate::traces::TraceSetupError),
    #[error("the master key must be at least {MIN_MASTER_KEY_LEN} characters")]
    WeakMasterKey,
}

/// Shortest master key accepted: a short key can be guessed.
pub const MIN_MASTER_KEY_LEN: usize = 12;

/// Connections the kernel queues for `accept` (tokio's default is 1,024):
/// a burst of clients connecting at once past the queue is dropped by the
/// kernel before the server can answer, let alone shed, them. The kernel
/// caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 8192;

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartError {
    let what = what.into();
    move |source| StartError::Io { what, source }
}

/// A running host.
pub struct Host {
    addr: SocketAddr,
    registry: Arc<Registry>,
    engine: Arc<Engine>,
    storage: OpenDatabase,
    master_key_source: MasterKeySource,
    master_key: Option<String>,
    shutdown: watch::Sender<bool>,
    /// What in-flight requests and activities get to finish on shutdown.
    shutdown_grace: std::time::Duration,
    server: JoinHandle<()>,
    dashboard_addr: Option<SocketAddr>,
    dashboard_server: Option<JoinHandle<()>>,
    deployer: JoinHandle<()>,
    /// Shares apps and keys with the other hosts of the database.
    sharing: JoinHandle<()>,
    watch: Option<FolderWatch>,
}

impl Host {
    /// Starts a host: every app already in the folder is loaded before this
    /// returns, and the server is accepting connections when it does.
    pub async fn start(config: HostConfig) -> Result<Self, StartError> {
        // For hosts embedded in other programs (tests, benches); the CLI
        // has done it before its runtime started.
        crate::memory::limit_malloc_arenas();
        if config
            .master_key
            .as_ref()
            .is_some_and(|k| k.len() < MIN_MASTER_KEY_LEN)
        {
            return Err(StartError::WeakMasterKey);
        }
        let dir = config.functions_dir.clone();
        std::fs::create_dir_all(&dir).map_err(io(format!("cannot create {}", dir.display())))?;
        let dir =
            std::fs::canonicalize(&dir).map_err(io(format!("cannot resolve {}", dir.display())))?;

        let metrics = Arc::new(Metrics::new());
        let storage = OpenDatabase::open(&config, Arc::new(metrics.commits())).await?;
        let (keys, master_key_source, master_key) =
            Keys::load(storage.storage(), config.master_key.as_deref()).await?;
        let keys = Arc::new(keys);

        let limits = config.sandbox.clone();
        let ca_file = config.outbound_ca_file.clone();
        let sandbox_metrics = metrics.clone();
        let sandbox = tokio::task::spawn_blocking(move || {
            let outbound = OutboundClient::new(ca_file.as_deref())?;
            Ok::<_, StartError>(Sandbox::new(limits, outbound, sandbox_metrics)?)
        })
        .await
        .map_err(|e| EngineError::from_join(&e))??;
        let cache_dir = config.cache_dir();
        let cache = CodeCache::open(&cache_dir)
            .map_err(io(format!("cannot create {}", cache_dir.display())))?;
        let registry = Arc::new(Registry::new(Arc::new(sandbox), cache, dir.clone()));
        let mut engine_config = config.engine_config();
        if let Some(endpoint) = &config.otlp_endpoint {
            let client = registry.sandbox().outbound().clone();
            engine_config.traces = crate::traces::Traces::otlp(endpoint, client)?;
        }
        let engine = Engine::new(
            storage.durable(),
            registry.clone(),
            keys.clone(),
            engine_config,
        );
        let client: Arc<dyn crate::sandbox::DurableClient> = engine.clone();
        registry.sandbox().set_client(&client);

        // Watch before the first scan, so nothing dropped in between is
        // missed; the deployer only starts after it, so the scan's loads
        // and the events' loads do not race.
        let (events_tx, events_rx) = mpsc::channel::<FolderEvent>(1024);
        let watch = watch_folder(&dir, events_tx)?;
        let initial = registry
            .scan()
            .await
            .map_err(io(format!("cannot list {}", dir.display())))?;
        for path in initial {
            registry.sync(&path).await;
        }
        let deployer = tokio::spawn(run_deployer(registry.clone(), events_rx));
        // With other hosts on the database: the folder as loaded is the
        // starting point; the database's newer versions follow.
        let sharing =
            crate::registry::shared::start(registry.clone(), storage.durable(), keys.clone()).await;
        // Apps are loaded: instances left by the previous run can resume.
        engine.recover().await?;

        let listener =
            listen(config.listen).map_err(io(format!("cannot listen on {}", config.listen)))?;
        let addr = listener
            .local_addr()
            .map_err(io("cannot read the listening address"))?;
        engine.announce(addr);
        let dashboard_listener = match config.dashboard_listen {
            Some(at) => {
                Some(listen(at).map_err(io(format!("cannot listen on {at} (the dashboard)")))?)
            }
            None => None,
        };
        let dashboard_addr = match &dashboard_listener {
            Some(l) => Some(
                l.local_addr()
                    .map_err(io("cannot read the dashboard's address"))?,
            ),
            None => None,
        };
        let ctx = HttpContext {
            registry: registry.clone(),
            engine: engine.clone(),
            keys,
            limits: config.http.clone(),
            local_addr: addr,
            metrics,
            metrics_open: config.metrics_open,
            listener: Listener::Api,
            dashboard_addr,
            login_failures: Default::default(),
        };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let dashboard_server = dashboard_listener.zip(dashboard_addr).map(|(l, at)| {
            let ctx = Arc::new(ctx.for_dashboard(at));
            tokio::spawn(crate::http::serve(l, ctx, shutdown_rx.clone()))
        });
        let server = tokio::spawn(crate::http::serve(listener, Arc::new(ctx), shutdown_rx));
        Ok(Self {
            addr,
            registry,
            engine,
            storage,
            master_key_source,
            master_key,
            shutdown,
            shutdown_grace: config.http.shutdown_grace,
            server,
            dashboard_addr,
            dashboard_server,
            deployer,
            sharing,
            watch: Some(watch),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The dashboard's address, if it is served.
    pub fn dashboard_addr(&self) -> Option<SocketAddr> {
        self.dashboard_addr
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub fn master_key_source(&self) -> MasterKeySource {
        self.master_key_source
    }

    /// The master key, unless it was configured (the operator has it).
    pub fn generated_master_key(&self) -> Option<&str> {
        self.master_key.as_deref()
    }

    /// Stops accepting and starting work; lets in-flight requests and
    /// running activities finish within the grace period (the HTTP
    /// shutdown grace); stops the watcher and flushes the database.
    /// Whatever did not finish resumes at the next start: leases left by a
    /// stopped host are taken back then (one host owns a database).
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        let grace = self.shutdown_grace;
        let engine = self.engine.clone();
        let dashboard = self.dashboard_server.take();
        let (_, _, drained) = tokio::join!(
            &mut self.server,
            async {
                if let Some(server) = dashboard {
                    let _ = server.await;
                }
            },
            engine.drain(grace)
        );
        if !drained {
            tracing::warn!(
                "activities still running after {grace:?}; they run again at the next start"
            );
        }
        self.watch.take();
        self.deployer.abort();
        self.sharing.abort();
        // Instances stop where they are; their journals resume them at the
        // next start.
        self.engine.stop();
        self.storage.close().await;
    }
}
