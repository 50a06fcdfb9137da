//! A real PostgreSQL server for the tests of the PostgreSQL storage
//! backend: Debian's `postgresql` programs, a fresh cluster in a temporary
//! directory, one database per test.
//!
//! Most tests share one server per test binary ([`PgServer::shared`], or
//! just [`database`]) and take a database of their own from it; a test that
//! crashes or stops the server starts a dedicated one ([`PgServer::start_new`]).
//!
//! It needs PostgreSQL 14 or newer (Debian 12 has 15). Without the
//! programs the tests skip with a notice, so that `cargo test` works on a
//! machine with only rustup and cargo; CI installs them and sets
//! `PERDURE_REQUIRE_POSTGRES=1`, which turns a missing PostgreSQL into a
//! failure.
//!
//! ```ignore
//! let Some(db) = postgres::database().await? else { return Ok(()) };
//! let client = db.connect().await?;
//! ```
//!
//! The server never outlives the test process: the postmaster is a child
//! spawned with `PR_SET_PDEATHSIG = SIGKILL` from one thread that lives as
//! long as the process, and its own children leave when it dies. `fsync`
//! stays on: durability across a crash is what these tests check.

use std::ffi::CString;
use std::hash::{BuildHasher as _, Hasher as _};
use std::io::{self, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row};

/// Set (to anything) to make a missing PostgreSQL an error instead of a
/// skipped test; `.ci/run` sets it.
pub const REQUIRE_ENV: &str = "PERDURE_REQUIRE_POSTGRES";

/// The role every connection uses: the cluster's superuser, trusted
/// without a password on loopback.
pub const USER: &str = "perdure";

/// How long a server may take to accept connections after it is started
/// (crash recovery included).
pub const START_DEADLINE: Duration = Duration::from_secs(60);

/// How long a stopping server may take before it is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(30);

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A PostgreSQL cluster in a temporary directory, served by a postmaster
/// that is a child of this process on a loopback port.
///
/// Invariants: the port and the data directory never change, so URLs stay
/// valid across [`Self::stop_immediate`] and [`Self::start`]; at most one
/// postmaster runs over the directory; dropping the server stops it before
/// the directory is removed.
pub struct PgServer {
    bin: PathBuf,
    port: u16,
    /// Holds `data/` (the cluster), the unix socket and `postgres.log`.
    dir: tempfile::TempDir,
    /// The running postmaster, if any.
    postmaster: Mutex<Option<Child>>,
    /// Set for [`Self::shared`], whose databases outlive their tests.
    shared: bool,
}

/// A database of its own for one test. The shared server's are dropped
/// (connections and all) soon after this is dropped.
pub struct TestDb {
    name: String,
    url: String,
    admin_url: String,
    /// Set for the shared server's databases, which outlive their tests.
    drop_when_done: bool,
}

impl PgServer {
    /// Whether PostgreSQL's server programs are installed.
    pub fn available() -> bool {
        bin_dir().is_some()
    }

    /// The directory of the server programs; `None` after a SKIPPED notice
    /// when they are missing, an error naming what to install when they are
    /// missing and [`REQUIRE_ENV`] is set.
    pub fn require() -> anyhow::Result<Option<&'static Path>> {
        if let Some(bin) = bin_dir() {
            return Ok(Some(bin));
        }
        if std::env::var_os(REQUIRE_ENV).is_some() {
            bail!(
                "PostgreSQL's server programs (initdb, postgres) are required ({REQUIRE_ENV} is set) but neither /usr/lib/postgresql/*/bin nor `pg_config --bindir` has them (apt-get install postgresql)"
            );
        }
        eprintln!(
            "SKIPPED: this test needs PostgreSQL's server programs (initdb, postgres) in /usr/lib/postgresql/*/bin or `pg_config --bindir` (apt-get install postgresql; .ci/run installs it)"
        );
        Ok(None)
    }

    /// The one server of this test binary, started on first use and
    /// stopped when the process exits; `None` (with a notice) when
    /// PostgreSQL is not installed and not required.
    ///
    /// Tests must not stop or restart it: they share it. A test that
    /// crashes the server uses [`Self::start_new`].
    pub async fn shared() -> anyhow::Result<Option<&'static PgServer>> {
        static SHARED: tokio::sync::OnceCell<PgServer> = tokio::sync::OnceCell::const_new();
        if Self::require()?.is_none() {
            return Ok(None);
        }
        let server = SHARED
            .get_or_try_init(|| async {
                let mut server = Self::start_new()
                    .await?
                    .context("PostgreSQL vanished while starting the shared server")?;
                server.shared = true;
                // Statics are never dropped: stop it and remove its
                // directory when the process exits.
                extern "C" fn stop_shared() {
                    if let Some(server) = SHARED.get() {
                        server.stop_at_exit();
                    }
                }
                // SAFETY: registers a function that takes no arguments and
                // does not unwind (`stop_at_exit` does not panic).
                if unsafe { libc::atexit(stop_shared) } != 0 {
                    eprintln!(
                        "the shared PostgreSQL server's directory {} will be left behind",
                        server.dir().display()
                    );
                }
                anyhow::Ok(server)
            })
            .await?;
        Ok(Some(server))
    }

    /// Creates a cluster in a new temporary directory and starts a server
    /// of its own over it; returns once it accepts connections. `None`
    /// (with a notice) when PostgreSQL is not installed and not required.
    pub async fn start_new() -> anyhow::Result<Option<PgServer>> {
        let Some(bin) = Self::require()? else {
            return Ok(None);
        };
        let owner = server_user()?;
        let dir = tempfile::Builder::new().prefix("perdure-pg-").tempdir()?;
        if let Some(owner) = owner {
            std::os::unix::fs::chown(dir.path(), Some(owner.uid), Some(owner.gid))
                .with_context(|| format!("cannot give {} to postgres", dir.path().display()))?;
        }
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(dir.path().join("data"))
            .args([
                "-U",
                USER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "-N",
            ])
            .current_dir(dir.path())
            .stdin(Stdio::null());
        as_server_user(&mut initdb, owner);
        let output = tokio::task::spawn_blocking(move || initdb.output())
            .await?
            .context("cannot run initdb")?;
        if !output.status.success() {
            bail!(
                "initdb failed ({}): {}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let mut server = PgServer {
            bin: bin.to_owned(),
            port: free_port()?,
            dir,
            postmaster: Mutex::new(None),
            shared: false,
        };
        // A port taken between choosing and binding makes the postmaster
        // exit at once; a few others are tried before giving up. The port
        // changes only here, before the server has ever run.
        let mut attempt = 1;
        loop {
            match server.start().await {
                Ok(()) => return Ok(Some(server)),
                Err(e) if attempt < 5 && server.log().contains("could not bind") => {
                    eprintln!(
                        "PostgreSQL could not use port {}, trying another: {e:#}",
                        server.port
                    );
                    server.port = free_port()?;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Starts the postmaster over the existing cluster (after
    /// [`Self::stop_immediate`], a crash recovery) and returns once it
    /// accepts connections. An error if a postmaster is running.
    pub async fn start(&self) -> anyhow::Result<()> {
        {
            let mut postmaster = self.lock();
            if let Some(running) = postmaster.as_mut()
                && running.try_wait()?.is_none()
            {
                bail!("PostgreSQL on port {} is already running", self.port);
            }
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.log_path())?;
            let mut command = Command::new(self.bin.join("postgres"));
            command
                .arg("-D")
                .arg(self.data_dir())
                .arg("-p")
                .arg(self.port.to_string())
                .arg("-k")
                .arg(self.dir())
                .args([
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "max_connections=300",
                    "-c",
                    "shared_buffers=32MB",
                    // Explicit, whatever a default file says: crash tests
                    // check that commits survive.
                    "-c",
                    "fsync=on",
                    "-c",
                    "synchronous_commit=on",
                    // Before crash recovery the data directory is flushed
                    // to disk: one syncfs(2) instead of an fsync per file
                    // (initdb -N flushed none) takes 0.2 s, not 0.5 to 2.
                    "-c",
                    "recovery_init_sync_method=syncfs",
                ])
                .current_dir(self.dir())
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log);
            as_server_user(&mut command, server_user()?);
            *postmaster = Some(spawn_tied_to_process(command).context("cannot start postgres")?);
        }
        self.wait_until_ready().await
    }

    /// Crashes the server the way `pg_ctl stop -m immediate` does (SIGQUIT:
    /// no shutdown checkpoint, the next start runs crash recovery) and
    /// returns once the postmaster and its children have exited. Does
    /// nothing if it is not running.
    pub async fn stop_immediate(&self) -> anyhow::Result<()> {
        let Some(mut postmaster) = self.lock().take() else {
            return Ok(());
        };
        signal(&mut postmaster, libc::SIGQUIT)?;
        let started = Instant::now();
        loop {
            if postmaster.try_wait()?.is_some() {
                return Ok(());
            }
            if started.elapsed() > STOP_DEADLINE {
                let _ = postmaster.kill();
                let _ = postmaster.wait();
                bail!(
                    "PostgreSQL on port {} ignored an immediate stop for {STOP_DEADLINE:?}; killed",
                    self.port
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// What `pg_ctl restart -m immediate` does: a crash, then a start on
    /// the same port and cluster; returns once it accepts connections
    /// again, with every committed transaction recovered.
    pub async fn restart_immediate(&self) -> anyhow::Result<()> {
        self.stop_immediate().await?;
        self.start().await
    }

    /// Whether a postmaster was started and has not been stopped or exited.
    pub fn is_running(&self) -> bool {
        let mut postmaster = self.lock();
        postmaster
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// The loopback port it listens on; the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The temporary directory: the cluster (`data/`), the unix socket and
    /// the server's log (`postgres.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The cluster's data directory (every server process's working
    /// directory).
    pub fn data_dir(&self) -> PathBuf {
        self.dir().join("data")
    }

    /// What the server has logged so far, across restarts.
    pub fn log(&self) -> String {
        std::fs::read(self.log_path())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// The URL of database `postgres` as the superuser.
    pub fn admin_url(&self) -> String {
        self.url("postgres")
    }

    /// The URL of database `name` as the superuser.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs `sql` (one or more statements, no parameters) as the superuser
    /// on a connection of its own.
    pub async fn admin_execute(&self, sql: &str) -> anyhow::Result<()> {
        let client = connect(&self.admin_url()).await?;
        client
            .batch_execute(sql)
            .await
            .with_context(|| format!("as superuser: {sql}"))
    }

    /// Runs query `sql` with `params` as the superuser on a connection of
    /// its own, e.g. `SELECT pg_terminate_backend(pid) FROM
    /// pg_stat_activity WHERE datname = $1`.
    pub async fn admin_query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> anyhow::Result<Vec<Row>> {
        let client = connect(&self.admin_url()).await?;
        client
            .query(sql, params)
            .await
            .with_context(|| format!("as superuser: {sql}"))
    }

    /// A fresh database with a name no other test of this process uses.
    pub async fn create_database(&self) -> anyhow::Result<TestDb> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let name = format!(
            "perdure_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        self.admin_execute(&format!("CREATE DATABASE {name}"))
            .await?;
        Ok(TestDb {
            url: self.url(&name),
            admin_url: self.admin_url(),
            name,
            drop_when_done: self.shared,
        })
    }

    fn log_path(&self) -> PathBuf {
        self.dir().join("postgres.log")
    }

    fn lock(&self) -> MutexGuard<'_, Option<Child>> {
        // A panic while holding the lock leaves the child as it was.
        self.postmaster
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Polls until the server answers a query, failing at once if the
    /// postmaster exits and after [`START_DEADLINE`] otherwise.
    async fn wait_until_ready(&self) -> anyhow::Result<()> {
        let started = Instant::now();
        let url = self.admin_url();
        loop {
            let exited = match self.lock().as_mut() {
                None => bail!(
                    "PostgreSQL on port {} was stopped while starting",
                    self.port
                ),
                Some(child) => child.try_wait()?,
            };
            if let Some(status) = exited {
                self.lock().take();
                bail!(
                    "PostgreSQL on port {} exited while starting ({status}); its log:\n{}",
                    self.port,
                    self.log()
                );
            }
            let last_error = match connect(&url).await {
                Ok(client) => match client.simple_query("SELECT 1").await {
                    Ok(_) => return Ok(()),
                    Err(e) => anyhow::Error::from(e),
                },
                Err(e) => e,
            };
            if started.elapsed() > START_DEADLINE {
                bail!(
                    "PostgreSQL on port {} did not accept connections within {START_DEADLINE:?}; last error: {last_error:#}; its log:\n{}",
                    self.port,
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the postmaster: a signal, then a wait of at most
    /// [`STOP_DEADLINE`] (polled; this is synchronous), then SIGKILL.
    fn stop_blocking(&self, signal_number: libc::c_int) {
        let Some(mut postmaster) = self.lock().take() else {
            return;
        };
        if signal(&mut postmaster, signal_number).is_ok() {
            let started = Instant::now();
            while started.elapsed() < STOP_DEADLINE {
                if !matches!(postmaster.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            // Not `eprintln!`, which panics if stderr is gone.
            let _ = writeln!(
                io::stderr(),
                "PostgreSQL on port {} did not stop within {STOP_DEADLINE:?}; killing it",
                self.port
            );
        }
        let _ = postmaster.kill();
        let _ = postmaster.wait();
    }

    /// The shared server at process exit: an immediate stop (its data is
    /// thrown away) and its directory removed. Never panics.
    fn stop_at_exit(&self) {
        self.stop_blocking(libc::SIGQUIT);
        let _ = std::fs::remove_dir_all(self.dir());
    }
}

impl Drop for PgServer {
    /// An immediate stop, then the directory goes with `self.dir`. Not a
    /// fast shutdown: its checkpoint (1 to 2 s here) would write out a
    /// cluster about to be deleted.
    fn drop(&mut self) {
        self.stop_blocking(libc::SIGQUIT);
    }
}

impl TestDb {
    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `postgres://perdure@127.0.0.1:PORT/NAME`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A new connection to it, driven by a task on the current runtime.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        connect(&self.url).await
    }

    /// Ends every connection to the database (`pg_terminate_backend`), as
    /// a database restart or an administrator would; returns how many.
    pub async fn terminate_connections(&self) -> anyhow::Result<i64> {
        let admin = connect(&self.admin_url).await?;
        let row = admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&self.name],
            )
            .await?;
        Ok(row.try_get(0)?)
    }
}

impl Drop for TestDb {
    /// A database of the shared server is dropped (its connections ended)
    /// in the background, so that a long run does not fill the disk and no
    /// test waits for the checkpoint `DROP DATABASE` makes. A dedicated
    /// server's go with its directory.
    fn drop(&mut self) {
        if self.drop_when_done {
            drop_in_background(&self.admin_url, &self.name);
        }
    }
}

/// Queues `DROP DATABASE name` for a thread of its own (`drop` may run
/// inside a runtime, which cannot block on a future); best effort.
fn drop_in_background(admin_url: &str, name: &str) {
    static DROPPER: Mutex<Option<mpsc::Sender<(String, String)>>> = Mutex::new(None);
    let mut dropper = DROPPER.lock().unwrap_or_else(|p| p.into_inner());
    if dropper.is_none() {
        let (queue, queued) = mpsc::channel::<(String, String)>();
        let started = std::thread::Builder::new()
            .name("postgres-dropper".into())
            .spawn(move || {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                for (admin_url, name) in queued {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = runtime.block_on(async {
                        connect(&admin_url).await?.batch_execute(&sql).await?;
                        anyhow::Ok(())
                    });
                }
            });
        if started.is_err() {
            return;
        }
        *dropper = Some(queue);
    }
    if let Some(queue) = dropper.as_ref() {
        let _ = queue.send((admin_url.to_owned(), name.to_owned()));
    }
}

/// A fresh database on the shared server, or `None` (with a notice) when
/// PostgreSQL is not installed and not required:
/// `let Some(db) = postgres::database().await? else { return Ok(()) };`
pub async fn database() -> anyhow::Result<Option<TestDb>> {
    match PgServer::shared().await? {
        Some(server) => Ok(Some(server.create_database().await?)),
        None => Ok(None),
    }
}

/// Connects to `url` without TLS; the connection is driven by a task on the
/// current runtime and ends when the client is dropped.
pub async fn connect(url: &str) -> anyhow::Result<Client> {
    let mut config: tokio_postgres::Config = url.parse().with_context(|| format!("URL {url}"))?;
    config.connect_timeout(CONNECT_TIMEOUT);
    let (client, connection) = config
        .connect(NoTls)
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    tokio::spawn(async move {
        // Its error reaches the client's next query too.
        let _ = connection.await;
    });
    Ok(client)
}

/// The directory of the newest PostgreSQL's server programs: Debian's
/// `/usr/lib/postgresql/VERSION/bin`, else `pg_config --bindir` from `PATH`.
pub fn bin_dir() -> Option<&'static Path> {
    static BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    BIN.get_or_init(find_bin_dir).as_deref()
}

fn find_bin_dir() -> Option<PathBuf> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            has_server(&bin).then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version);
    if let Some((_, bin)) = debian {
        return Some(bin);
    }
    let output = Command::new("pg_config")
        .arg("--bindir")
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let bin = PathBuf::from(String::from_utf8(output.stdout).ok()?.trim());
    (output.status.success() && has_server(&bin)).then_some(bin)
}

/// The user and group the server programs run as.
#[derive(Clone, Copy)]
struct ServerUser {
    uid: u32,
    gid: u32,
}

/// `postgres` when this process is root (initdb and postgres refuse root),
/// `None` (this process's own user) otherwise.
fn server_user() -> anyhow::Result<Option<ServerUser>> {
    static SERVER_USER: OnceLock<Result<Option<ServerUser>, String>> = OnceLock::new();
    SERVER_USER.get_or_init(|| {
        // SAFETY: geteuid cannot fail and touches no memory of ours.
        if unsafe { libc::geteuid() } != 0 {
            return Ok(None);
        }
        let name = CString::new("postgres").map_err(|e| e.to_string())?;
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut buffer = vec![0 as libc::c_char; 16 * 1024];
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call and `buffer.len()`
        // is the buffer's size; `entry` is only read if `found` is set.
        let status = unsafe {
            libc::getpwnam_r(
                name.as_ptr(),
                &mut entry,
                buffer.as_mut_ptr(),
                buffer.len(),
                &mut found,
            )
        };
        if status != 0 || found.is_null() {
            return Err(
                "running as root, the PostgreSQL server must run as user `postgres`, which does not exist (apt-get install postgresql creates it)"
                    .to_owned(),
            );
        }
        Ok(Some(ServerUser {
            uid: entry.pw_uid,
            gid: entry.pw_gid,
        }))
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

fn as_server_user(command: &mut Command, user: Option<ServerUser>) {
    if let Some(user) = user {
        command.uid(user.uid).gid(user.gid);
    }
}

/// A port for the server: below the kernel's range of ephemeral ports, so
/// that no outgoing connection of another test takes it between a crash
/// and the restart; free when chosen.
fn free_port() -> anyhow::Result<u16> {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let low = ephemeral_low.saturating_sub(10_000).max(1024);
    if ephemeral_low - low < 1000 {
        // An odd range: any free port.
        return Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port());
    }
    for _ in 0..100 {
        let random = std::hash::RandomState::new().build_hasher().finish();
        let port = low + (random % u64::from(ephemeral_low - low)) as u16;
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port in {low}..{ephemeral_low} for PostgreSQL")
}

/// Sends `signal_number` to the child unless it has exited.
fn signal(child: &mut Child, signal_number: libc::c_int) -> io::Result<()> {
    if child.try_wait()?.is_some() {
        // Reaped: its pid may belong to another process by now.
        return Ok(());
    }
    let pid = libc::pid_t::try_from(child.id()).map_err(io::Error::other)?;
    // SAFETY: kill only sends a signal; the child is not reaped (only this
    // `&mut Child` could reap it), so the pid is still its own.
    if unsafe { libc::kill(pid, signal_number) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Spawns `command` so that it gets SIGKILL when this process ends, even
/// by SIGKILL: `PR_SET_PDEATHSIG`, set in the child after its user has
/// changed (a change of credentials clears it).
///
/// The signal comes when the *thread* that spawned the child exits, so
/// every such child is spawned by one thread that lives as long as the
/// process (a test's thread, or tokio's blocking pool, would end first).
fn spawn_tied_to_process(mut command: Command) -> io::Result<Child> {
    struct Spawn {
        command: Command,
        reply: mpsc::Sender<io::Result<Child>>,
    }
    static SPAWNER: Mutex<Option<mpsc::Sender<Spawn>>> = Mutex::new(None);

    let parent = libc::pid_t::try_from(std::process::id()).map_err(io::Error::other)?;
    // SAFETY: the closure only makes async-signal-safe calls (prctl,
    // getppid) and builds errors without allocating.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // This process may have died before the prctl took effect.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }

    let (reply, answer) = mpsc::channel();
    {
        let mut spawner = SPAWNER.lock().unwrap_or_else(|p| p.into_inner());
        if spawner.is_none() {
            let (requests, incoming) = mpsc::channel::<Spawn>();
            std::thread::Builder::new()
                .name("postgres-spawner".into())
                .spawn(move || {
                    // Never ends: the sender lives in a static.
                    for mut spawn in incoming {
                        let _ = spawn.reply.send(spawn.command.spawn());
                    }
                })?;
            *spawner = Some(requests);
        }
        spawner
            .as_ref()
            .ok_or_else(|| io::Error::other("no spawner thread"))?
            .send(Spawn { command, reply })
            .map_err(|_| io::Error::other("the spawner thread has ended"))?;
    }
    answer
        .recv()
        .map_err(|_| io::Error::other("the spawner thread has ended"))?
}
