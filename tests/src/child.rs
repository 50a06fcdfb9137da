//! The real `perdure` command line as a child process, for tests that kill
//! it (SIGKILL) and start it again over the same folder and database.
//!
//! The child logs to stderr; every line is kept, so a test can find the
//! address it listens on and count what its guests logged across runs.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::{DURABLE, MASTER_KEY, TestResponse, eventually, send};

/// Log lines of every child started over one directory, in order.
pub type LogLines = Arc<Mutex<Vec<String>>>;

/// A running `perdure serve` child.
pub struct ChildHost {
    child: Child,
    client: ChildClient,
}

/// Sends requests to a child with the master key; cheap to clone into
/// tasks that load the child while the test does something else.
#[derive(Clone)]
pub struct ChildClient {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl ChildClient {
    /// Sends a request with the master key.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: &str,
    ) -> anyhow::Result<TestResponse> {
        let request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("x-functions-key", MASTER_KEY)
            .body(Full::new(Bytes::from(body.to_owned())))?;
        send(&self.client, request).await
    }
}

impl ChildClient {
    /// Polls instance `id` until it has finished (within a minute) and
    /// returns its status document.
    pub async fn finished_status(&self, id: &str) -> anyhow::Result<serde_json::Value> {
        let path = format!("{DURABLE}/instances/{id}");
        eventually(Duration::from_secs(60), &path, || async {
            let r = self.send(Method::GET, &path, "").await?;
            Ok((r.status == 200).then_some(r))
        })
        .await?
        .json()
    }
}

/// The child's requests go through its [`ChildClient`].
impl std::ops::Deref for ChildHost {
    type Target = ChildClient;

    fn deref(&self) -> &ChildClient {
        &self.client
    }
}

/// Activity executions the `durable-probe` guest's `Nap` logged in `log`,
/// by idempotency key.
pub fn nap_executions(log: &LogLines) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in log.lock().map(|l| l.clone()).unwrap_or_default() {
        if let Some((_, rest)) = line.split_once("nap executed ")
            && let Some(key) = rest.split_whitespace().next()
        {
            *counts.entry(key.to_owned()).or_default() += 1;
        }
    }
    counts
}

impl ChildHost {
    /// Starts `binary serve` over `dir/functions` and `dir/perdure.db` on a
    /// free loopback port; returns once it reports ready. Its log lines are
    /// appended to `log`.
    /// On PostgreSQL (see [`crate::on_postgres`]) the database is the
    /// test's database for `dir` instead of `dir/perdure.db`.
    pub async fn start(binary: &str, dir: &Path, log: &LogLines) -> anyhow::Result<Self> {
        let mut args = Self::args_for(dir);
        if let Some(url) = crate::child_database_url(dir).await? {
            if let Some(db) = args.iter().position(|a| a == "--db") {
                args[db + 1] = url.into();
            }
            // The host id stays across restarts: a child killed and started
            // again takes its partitions back at once.
            args.extend([
                "--cache-dir".into(),
                dir.join("perdure.cache").into(),
                "--host-id".into(),
                format!("child-{}", dir.display()).into(),
            ]);
        }
        Self::start_with_args(binary, &args, log).await
    }

    /// The arguments [`Self::start`] passes: `dir/functions`,
    /// `dir/perdure.db`, a free loopback port, 200 sandbox slots.
    pub fn args_for(dir: &Path) -> Vec<OsString> {
        let functions: PathBuf = dir.join("functions");
        vec![
            "--functions".into(),
            functions.into(),
            "--db".into(),
            dir.join("perdure.db").into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--max-instances".into(),
            "200".into(),
        ]
    }

    /// Starts `binary serve ARGS` with the test master key; returns once it
    /// reports ready. Its log lines are appended to `log`.
    pub async fn start_with_args(
        binary: &str,
        args: &[OsString],
        log: &LogLines,
    ) -> anyhow::Result<Self> {
        Self::start_with_env(binary, args, &[], log).await
    }

    /// As [`Self::start_with_args`], with `env` added to the child's
    /// environment. Fails at once if the child exits before it is ready.
    pub async fn start_with_env(
        binary: &str,
        args: &[OsString],
        env: &[(&str, &str)],
        log: &LogLines,
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(binary)
            .arg("serve")
            .args(args)
            .env("PERDURE_MASTER_KEY", MASTER_KEY)
            .env("PERDURE_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {binary}"))?;
        let stderr = child.stderr.take().context("no stderr pipe")?;
        let first_line = log.lock().map(|l| l.len()).unwrap_or(0);
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut lines) = sink.lock() {
                    lines.push(line);
                }
            }
        });
        let ready = |log: &LogLines| {
            let lines = log
                .lock()
                .map(|l| l[first_line..].to_vec())
                .unwrap_or_default();
            lines.iter().find_map(|line| {
                let (_, rest) = line.split_once("functions at ")?;
                let (base, _) = rest.split_once("/api/")?;
                Some(base.to_owned())
            })
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let base = loop {
            if let Some(base) = ready(log) {
                break base;
            }
            if let Some(status) = child.try_wait()? {
                // Everything it wrote is in the log once its pipe closes.
                let _ = reader.join();
                let lines = log
                    .lock()
                    .map(|l| l[first_line..].to_vec())
                    .unwrap_or_default();
                let last = lines
                    .iter()
                    .rev()
                    .take(3)
                    .rev()
                    .cloned()
                    .collect::<Vec<_>>();
                bail!("the child exited ({status}) before it was ready: {last:?}");
            }
            if std::time::Instant::now() > deadline {
                bail!("the child did not report ready within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        Ok(Self {
            child,
            client: ChildClient {
                base,
                client: Client::builder(TokioExecutor::new()).build_http(),
            },
        })
    }

    /// Where it serves, e.g. `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.client.base
    }

    /// The address it serves on.
    pub fn addr(&self) -> anyhow::Result<std::net::SocketAddr> {
        Ok(self.client.base.trim_start_matches("http://").parse()?)
    }

    /// A client for tasks of the test's own.
    pub fn client(&self) -> ChildClient {
        self.client.clone()
    }

    /// Sends SIGKILL without waiting, e.g. while requests are in flight;
    /// [`Self::kill`] reaps the process afterwards.
    pub fn sigkill(&self) -> anyhow::Result<()> {
        let status = std::process::Command::new("kill")
            .args(["-KILL", &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill failed: {status}");
        Ok(())
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the process has exited; does not wait.
    pub fn exited(&mut self) -> anyhow::Result<Option<std::process::ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Kills the process without warning (SIGKILL) and reaps it.
    pub fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Sends SIGTERM and waits for the process to exit; fails if it runs
    /// past `deadline`. Returns its exit status and how long it took.
    pub async fn terminate(
        mut self,
        deadline: Duration,
    ) -> anyhow::Result<(std::process::ExitStatus, Duration)> {
        let started = std::time::Instant::now();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed: {status}");
        let child = &mut self.child;
        let exit = eventually(deadline, "the child to exit after SIGTERM", || {
            let exited = child.try_wait();
            async move { Ok(exited?) }
        })
        .await?;
        Ok((exit, started.elapsed()))
    }
}

/// Runs `command` to its exit and returns what it wrote; kills it and
/// fails if it runs past `deadline` (e.g. a host that should have refused
/// to start but serves).
pub fn run_to_exit(
    command: &mut Command,
    deadline: Duration,
) -> anyhow::Result<std::process::Output> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let until = std::time::Instant::now() + deadline;
    while child.try_wait()?.is_none() {
        if std::time::Instant::now() > until {
            let _ = child.kill();
            let output = child.wait_with_output()?;
            bail!(
                "still running after {deadline:?}; stderr: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(child.wait_with_output()?)
}

impl Drop for ChildHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one run of the CLI did.
#[derive(Debug)]
pub struct CliRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliRun {
    /// Stdout as the one JSON document `--json` promises.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_str(&self.stdout)
            .with_context(|| format!("not one JSON document: {self:?}"))
    }

    /// The stdout line that starts with `label` (a status field).
    pub fn field(&self, label: &str) -> &str {
        self.stdout
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_default()
    }
}

/// Runs `binary ARGS --url URL` (the CLI) with `key` (if any) in
/// PERDURE_MASTER_KEY and nothing else of the test's environment that the
/// CLI reads. Blocking, so on the blocking pool: the host keeps serving.
pub async fn cli_at(
    binary: &str,
    url: &str,
    key: Option<&str>,
    args: &[&str],
) -> anyhow::Result<CliRun> {
    let mut command = Command::new(binary);
    command
        .args(args)
        .args(["--url", url])
        .env_remove("PERDURE_URL")
        .env_remove("PERDURE_MASTER_KEY")
        .env_remove("PERDURE_LOG")
        .stdin(Stdio::null());
    if let Some(key) = key {
        command.env("PERDURE_MASTER_KEY", key);
    }
    let output = tokio::task::spawn_blocking(move || command.output()).await??;
    Ok(CliRun {
        code: output
            .status
            .code()
            .ok_or_else(|| anyhow::anyhow!("the CLI was killed: {:?}", output.status))?,
        stdout: String::from_utf8(output.stdout)?,
        stderr: String::from_utf8(output.stderr)?,
    })
}
