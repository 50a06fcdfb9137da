//! The test harness: a real host on a loopback port with a temporary
//! functions folder and database, a real HTTP client, and the paths of the
//! real components built from `examples-wasm/` and `tests/guests/`.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use perdure::{Host, HostConfig};

// The allocator of the `perdure` binary, so the benches and the child
// host measure what ships.
perdure::perdure_allocator!();

pub mod browser;
pub mod child;
pub mod load;
pub mod postgres;
pub mod python;

/// Paths of the built components, one constant per guest crate.
pub mod service;
pub mod tls;

pub mod guests {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));
}

/// The master key every test host uses.
pub const MASTER_KEY: &str = "test-master-key";

/// A response, fully read.
#[derive(Debug)]
pub struct TestResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl TestResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).with_context(|| format!("not JSON: {}", self.text()))
    }

    /// The `error.code` of a JSON error body.
    pub fn error_code(&self) -> Option<String> {
        self.error_field("code")
    }

    /// The `error.message` of a JSON error body, or empty.
    pub fn error_message(&self) -> String {
        self.error_field("message").unwrap_or_default()
    }

    fn error_field(&self, field: &str) -> Option<String> {
        self.json()
            .ok()?
            .get("error")?
            .get(field)?
            .as_str()
            .map(str::to_owned)
    }
}

/// A host running in this process over real sockets.
pub struct TestHost {
    host: Option<Host>,
    /// The PostgreSQL database the host uses, if it does; dropped (and the
    /// database with it) after the host.
    _database: Option<postgres::TestDb>,
    dir: tempfile::TempDir,
    config: HostConfig,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// Which database the hosts a test starts use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in the host's temporary folder (the default).
    Sqlite,
    /// A fresh database on the test binary's PostgreSQL server.
    Postgres,
}

thread_local! {
    /// The backend of the test running on this thread. A test's body runs
    /// on its own thread (tokio's `block_on` polls it there), which is
    /// where it starts its hosts.
    static BACKEND: std::cell::Cell<Backend> = const { std::cell::Cell::new(Backend::Sqlite) };
}

/// Makes the hosts this thread starts from now on use `backend` (for
/// benchmarks, whose one thread compares the backends in turn).
pub fn set_backend(backend: Backend) {
    BACKEND.set(backend);
}

/// The backends a benchmark compares: SQLite, and PostgreSQL where it is
/// installed (or required); `PERDURE_BENCH_BACKEND=sqlite|postgres` picks
/// one.
pub fn bench_backends() -> anyhow::Result<Vec<Backend>> {
    let only = std::env::var("PERDURE_BENCH_BACKEND").ok();
    let mut backends = Vec::new();
    if only.as_deref().is_none_or(|b| b == "sqlite") {
        backends.push(Backend::Sqlite);
    }
    if only.as_deref().is_none_or(|b| b == "postgres") && postgres::PgServer::require()?.is_some() {
        backends.push(Backend::Postgres);
    }
    Ok(backends)
}

/// The median time of an 8 KiB write and `fdatasync` in the folder of
/// temporary files, over 200 tries: the figure the durable throughput of
/// this machine rests on, printed beside the benchmarks' figures.
pub fn fsync_p50() -> anyhow::Result<Duration> {
    use std::io::Write as _;
    let dir = tempfile::tempdir()?;
    let mut file = std::fs::File::create(dir.path().join("probe"))?;
    let block = [0u8; 8192];
    let mut times = Vec::with_capacity(200);
    for _ in 0..200 {
        let started = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        times.push(started.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2])
}

/// The PostgreSQL database of the child hosts a test runs over `dir`, when
/// the test runs on PostgreSQL: created at the first start, the same at
/// every restart (its URL is kept in `dir/postgres.url`), and dropped with
/// the server when the test binary exits. `None` on SQLite.
pub async fn child_database_url(dir: &Path) -> anyhow::Result<Option<String>> {
    static KEPT: std::sync::Mutex<Vec<postgres::TestDb>> = std::sync::Mutex::new(Vec::new());
    if BACKEND.get() != Backend::Postgres {
        return Ok(None);
    }
    let file = dir.join("postgres.url");
    if let Ok(url) = std::fs::read_to_string(&file) {
        return Ok(Some(url));
    }
    let database = postgres::PgServer::shared()
        .await?
        .context("PostgreSQL is not installed")?
        .create_database()
        .await?;
    let url = database.url().to_owned();
    std::fs::write(&file, &url)?;
    KEPT.lock()
        .map_err(|_| anyhow::anyhow!("the kept databases' lock is poisoned"))?
        .push(database);
    Ok(Some(url))
}

/// Runs `test` with every host it starts on PostgreSQL, so that a test
/// written for the default backend also checks the other. Skips it (with
/// a notice) when PostgreSQL is not installed, unless
/// `PERDURE_REQUIRE_POSTGRES` is set, as CI does.
pub fn on_postgres(test: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<()> {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            BACKEND.set(Backend::Sqlite);
        }
    }
    if postgres::PgServer::require()?.is_none() {
        return Ok(());
    }
    BACKEND.set(Backend::Postgres);
    let _reset = Reset;
    test()
}

/// Runs the named tests of the enclosing module again with their hosts on
/// PostgreSQL (in a child module `on_postgres`, under the same names).
#[macro_export]
macro_rules! also_on_postgres {
    ($($test:ident),* $(,)?) => {
        mod on_postgres {
            $(
                #[test]
                fn $test() -> anyhow::Result<()> {
                    $crate::on_postgres(super::$test)
                }
            )*
        }
    };
}

/// Installs a log subscriber once, so that host logs show up in failing
/// tests' output (`PERDURE_LOG=debug` for more).
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PERDURE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

impl TestHost {
    /// A host with an empty functions folder.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(&[], |_| {}).await
    }

    /// A host whose folder holds `apps` (file name, component path) before
    /// it starts; `configure` may change limits.
    pub async fn start_with(
        apps: &[(&str, &str)],
        configure: impl FnOnce(&mut HostConfig),
    ) -> anyhow::Result<Self> {
        init_logging();
        let dir = tempfile::tempdir()?;
        let functions = dir.path().join("functions");
        std::fs::create_dir_all(&functions)?;
        for (name, wasm) in apps {
            std::fs::copy(wasm, functions.join(name)).with_context(|| format!("copy {wasm}"))?;
        }
        let database = match BACKEND.get() {
            Backend::Sqlite => None,
            Backend::Postgres => Some(
                postgres::PgServer::shared()
                    .await?
                    .context("PostgreSQL is not installed")?
                    .create_database()
                    .await?,
            ),
        };
        let db = match &database {
            Some(database) => perdure::Database::Postgres(database.url().to_owned()),
            None => perdure::Database::Sqlite(dir.path().join("perdure.db")),
        };
        let mut config = HostConfig::new(&functions, db);
        config.cache_dir = Some(dir.path().join("perdure.cache"));
        config.listen = "127.0.0.1:0".parse()?;
        config.dashboard_listen = Some("127.0.0.1:0".parse()?);
        config.master_key = Some(MASTER_KEY.into());
        // Stable across restarts: a host started again over the same
        // database takes its partitions back at once, whether the last
        // one released them or not.
        config.host_id = Some(format!("test-{}", dir.path().display()));
        // Tests run many hosts in one process: keep each engine's reserved
        // address space small.
        config.sandbox.max_instances = 64;
        configure(&mut config);
        let host = Host::start(config.clone()).await?;
        let client = Client::builder(TokioExecutor::new()).build_http();
        Ok(Self {
            host: Some(host),
            _database: database,
            dir,
            config,
            client,
        })
    }

    fn host(&self) -> &Host {
        // Only `restart` takes the host out, and it puts one back.
        self.host.as_ref().expect("host is running")
    }

    /// The durable engine, for benchmarks that drive it in process.
    pub fn engine(&self) -> &std::sync::Arc<perdure::durable::Engine> {
        self.host().engine()
    }

    pub fn functions_dir(&self) -> &Path {
        &self.config.functions_dir
    }

    pub fn temp_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    /// A URL on the dashboard's own listener.
    pub fn dashboard_url(&self, path: &str) -> String {
        match self.host().dashboard_addr() {
            Some(addr) => format!("http://{addr}{path}"),
            None => format!("http://dashboard-disabled{path}"),
        }
    }

    /// A request to the dashboard's listener.
    pub async fn dashboard_request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> anyhow::Result<TestResponse> {
        self.send_to(self.dashboard_url(path), method, headers, body.into())
            .await
    }

    /// GET on the dashboard's listener, without a session.
    pub async fn dashboard_get(&self, path: &str) -> anyhow::Result<TestResponse> {
        self.dashboard_request(Method::GET, path, &[], Bytes::new())
            .await
    }

    async fn send_to(
        &self,
        url: String,
        method: Method,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> anyhow::Result<TestResponse> {
        let mut builder = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        send(&self.client, builder.body(Full::new(body))?).await
    }

    /// The address it serves on.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.host().local_addr()
    }

    /// Puts a component into the folder the way a careful deployer does:
    /// written beside it, then renamed into place.
    pub fn deploy(&self, file_name: &str, wasm: &str) -> anyhow::Result<()> {
        self.deploy_bytes(file_name, &std::fs::read(wasm)?)
    }

    pub fn deploy_bytes(&self, file_name: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let tmp = self.dir.path().join(format!("{file_name}.partial"));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, self.functions_dir().join(file_name))?;
        Ok(())
    }

    /// Deploys app `name` (`name.wasm` from `wasm`) with `config` as its
    /// `name.toml`, and waits until it is loaded.
    pub async fn deploy_configured(
        &self,
        name: &str,
        wasm: &str,
        config: &str,
    ) -> anyhow::Result<()> {
        std::fs::write(self.functions_dir().join(format!("{name}.toml")), config)?;
        self.deploy(&format!("{name}.wasm"), wasm)?;
        eventually(
            Duration::from_secs(30),
            &format!("{name} to load"),
            || async {
                Ok(self
                    .app_status(name)
                    .await?
                    .filter(|a| a["digest"].is_string()))
            },
        )
        .await?;
        Ok(())
    }

    pub fn undeploy(&self, file_name: &str) -> anyhow::Result<()> {
        std::fs::remove_file(self.functions_dir().join(file_name))?;
        Ok(())
    }

    /// The configuration the next [`Self::restart`] starts with.
    pub fn config_mut(&mut self) -> &mut HostConfig {
        &mut self.config
    }

    /// Stops the host and starts a new one over the same folder, database
    /// and cache.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if let Some(host) = self.host.take() {
            host.shutdown().await;
        }
        self.host = Some(Host::start(self.config.clone()).await?);
        Ok(())
    }

    /// Stops the host, waits for `while_down` (e.g. until a timer is due),
    /// and starts a new one over the same folder, database and cache.
    pub async fn restart_after(
        &mut self,
        while_down: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        if let Some(host) = self.host.take() {
            host.shutdown().await;
        }
        while_down.await;
        self.host = Some(Host::start(self.config.clone()).await?);
        Ok(())
    }

    /// Raises event `name` on instance `id` with JSON `data` (master key).
    pub async fn raise_event(
        &self,
        id: &str,
        name: &str,
        data: &str,
    ) -> anyhow::Result<TestResponse> {
        let path = format!("{DURABLE}/instances/{id}/raiseEvent/{name}");
        self.send_with_master_key(Method::POST, &path, data.to_owned())
            .await
    }

    /// Polls the instance's status until `ready` accepts it.
    pub async fn wait_for_status(
        &self,
        id: &str,
        what: &str,
        ready: impl Fn(&serde_json::Value) -> bool,
    ) -> anyhow::Result<serde_json::Value> {
        eventually(Duration::from_secs(30), what, || async {
            Ok(self.instance(id).await?.filter(|s| ready(s)))
        })
        .await
    }

    pub async fn shutdown(mut self) {
        if let Some(host) = self.host.take() {
            host.shutdown().await;
        }
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> anyhow::Result<TestResponse> {
        self.send_to(self.url(path), method, headers, body.into())
            .await
    }

    /// GET without a key.
    pub async fn get(&self, path: &str) -> anyhow::Result<TestResponse> {
        self.request(Method::GET, path, &[], Bytes::new()).await
    }

    /// GET with the master key.
    pub async fn get_admin(&self, path: &str) -> anyhow::Result<TestResponse> {
        self.request(
            Method::GET,
            path,
            &[("x-functions-key", MASTER_KEY)],
            Bytes::new(),
        )
        .await
    }

    /// Any method with the master key.
    pub async fn send_with_master_key(
        &self,
        method: Method,
        path: &str,
        body: impl Into<Bytes>,
    ) -> anyhow::Result<TestResponse> {
        self.request(method, path, &[("x-functions-key", MASTER_KEY)], body)
            .await
    }

    /// The admin API's entry for app `name`, if it has one.
    pub async fn app_status(&self, name: &str) -> anyhow::Result<Option<serde_json::Value>> {
        let listing = self.get_admin("/admin/functions").await?.json()?;
        Ok(listing["apps"]
            .as_array()
            .and_then(|apps| apps.iter().find(|a| a["name"] == name))
            .cloned())
    }
}

/// Sends a request and reads the whole response.
pub async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> anyhow::Result<TestResponse> {
    let response = client.request(request).await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await?.to_bytes();
    Ok(TestResponse {
        status,
        headers,
        body,
    })
}

/// This process's resident set size in MiB (benchmarks; Linux).
pub fn rss_mib() -> anyhow::Result<f64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0.0);
    Ok(pages * 4096.0 / (1024.0 * 1024.0))
}

/// Which parts of a benchmark to run: `cargo bench --bench NAME -- PART`
/// runs PART alone, no argument runs them all.
pub fn bench_parts() -> impl Fn(&str) -> bool {
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    move |part| only.as_deref().is_none_or(|o| o == part)
}

/// The durable management API's base path.
pub const DURABLE: &str = "/runtime/webhooks/durabletask";

impl TestHost {
    /// Starts orchestrator `name` through the management API with the
    /// master key; `input` is the JSON body.
    pub async fn start_orchestration(
        &self,
        name: &str,
        id: Option<&str>,
        input: &str,
    ) -> anyhow::Result<TestResponse> {
        let path = match id {
            Some(id) => format!("{DURABLE}/orchestrators/{name}/{id}"),
            None => format!("{DURABLE}/orchestrators/{name}"),
        };
        self.send_with_master_key(Method::POST, &path, input.to_owned())
            .await
    }

    /// Starts an orchestration and returns its instance id.
    pub async fn start_instance(&self, name: &str, input: &str) -> anyhow::Result<String> {
        let r = self.start_orchestration(name, None, input).await?;
        if r.status != 202 {
            bail!("starting {name} answered {}: {}", r.status, r.text());
        }
        Ok(r.json()?["id"].as_str().unwrap_or_default().to_owned())
    }

    /// The instance's status JSON (master key), or `None` if unknown.
    pub async fn instance(&self, id: &str) -> anyhow::Result<Option<serde_json::Value>> {
        let r = self.get_admin(&format!("{DURABLE}/instances/{id}")).await?;
        match r.status {
            404 => Ok(None),
            200 | 202 => Ok(Some(r.json()?)),
            other => bail!("status of {id} answered {other}: {}", r.text()),
        }
    }

    /// Polls the instance until it has finished; returns its status JSON.
    pub async fn wait_for_instance(
        &self,
        id: &str,
        deadline: Duration,
    ) -> anyhow::Result<serde_json::Value> {
        eventually(deadline, &format!("instance {id} to finish"), || async {
            Ok(self.instance(id).await?.filter(|status| {
                matches!(
                    status["runtimeStatus"].as_str(),
                    Some("Completed" | "Failed" | "Terminated")
                )
            }))
        })
        .await
    }

    /// Starts an orchestration and waits for it to finish.
    pub async fn run_orchestration(
        &self,
        name: &str,
        input: &str,
    ) -> anyhow::Result<serde_json::Value> {
        let id = self.start_instance(name, input).await?;
        self.wait_for_instance(&id, Duration::from_secs(30)).await
    }
}

/// Polls `check` until it returns `Some`, or fails after `deadline` with
/// `what` and the last value seen. Polls every 10 ms: tests wait for events,
/// never for a fixed time.
pub async fn eventually<T, F, Fut>(
    deadline: Duration,
    what: &str,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let started = Instant::now();
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if started.elapsed() > deadline {
            match last_error {
                Some(e) => {
                    bail!("timed out after {deadline:?} waiting for {what}; last error: {e:#}")
                }
                None => bail!("timed out after {deadline:?} waiting for {what}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A path relative to the repository root.
pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}
