//! The PostgreSQL test harness itself (`perdure_tests::postgres`): the
//! shared server's databases are separate, an immediate restart keeps what
//! was committed and ends the connections made before it, and no server
//! process outlives its `PgServer` or a test process killed with SIGKILL.
//!
//! Without PostgreSQL installed these tests skip with a notice, unless
//! `PERDURE_REQUIRE_POSTGRES` is set.

use std::io::{BufRead as _, BufReader, Read as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use perdure_tests::eventually;
use perdure_tests::postgres::{self, PgServer};

const DEADLINE: Duration = Duration::from_secs(30);

/// Set in the copy of this binary that [`HELPER`] runs in.
const HELPER_ENV: &str = "PERDURE_PG_HARNESS_HELPER";

/// The ignored test that the killed process runs.
const HELPER: &str = "postgres_harness::helper_holds_a_server_until_killed";

/// What the helper prints once its server is up: port, then data directory.
const HELPER_LINE: &str = "PERDURE_PG_SERVER";

#[tokio::test]
async fn databases_of_the_shared_server_are_separate() -> anyhow::Result<()> {
    let Some(a) = postgres::database().await? else {
        return Ok(());
    };
    let Some(b) = postgres::database().await? else {
        return Ok(());
    };
    assert_ne!(a.name(), b.name());
    assert_ne!(a.url(), b.url());
    assert!(
        a.url().starts_with("postgres://perdure@127.0.0.1:"),
        "{}",
        a.url()
    );

    let a_client = a.connect().await?;
    a_client
        .batch_execute("CREATE TABLE kept (id int PRIMARY KEY); INSERT INTO kept VALUES (7)")
        .await?;
    let b_client = b.connect().await?;
    let absent: Option<String> = b_client
        .query_one("SELECT to_regclass('kept')::text", &[])
        .await?
        .try_get(0)?;
    assert_eq!(absent, None, "a table of one database is in the other");
    // The same name is free in the other database.
    b_client
        .batch_execute("CREATE TABLE kept (id int PRIMARY KEY)")
        .await?;
    let count: i64 = b_client
        .query_one("SELECT count(*) FROM kept", &[])
        .await?
        .try_get(0)?;
    assert_eq!(count, 0);
    let id: i32 = a_client
        .query_one("SELECT id FROM kept", &[])
        .await?
        .try_get(0)?;
    assert_eq!(id, 7);
    Ok(())
}

#[tokio::test]
async fn terminating_a_databases_connections_spares_the_others() -> anyhow::Result<()> {
    let Some(a) = postgres::database().await? else {
        return Ok(());
    };
    let Some(b) = postgres::database().await? else {
        return Ok(());
    };
    let a_client = a.connect().await?;
    let b_client = b.connect().await?;
    a_client.simple_query("SELECT 1").await?;
    assert_eq!(a.terminate_connections().await?, 1);
    assert!(
        a_client.simple_query("SELECT 1").await.is_err(),
        "a terminated connection still answers"
    );
    b_client.simple_query("SELECT 1").await?;
    a.connect().await?.simple_query("SELECT 1").await?;
    Ok(())
}

#[tokio::test]
async fn an_immediate_restart_keeps_commits_and_ends_old_connections() -> anyhow::Result<()> {
    let Some(server) = PgServer::start_new().await? else {
        return Ok(());
    };
    let db = server.create_database().await?;
    let before = db.connect().await?;
    before
        .batch_execute("CREATE TABLE kept (note text); INSERT INTO kept VALUES ('committed')")
        .await?;
    // Written but never committed: a crash discards it.
    before
        .batch_execute("BEGIN; INSERT INTO kept VALUES ('open')")
        .await?;

    let started = Instant::now();
    server.restart_immediate().await?;
    eprintln!(
        "restart_immediate took {} ms",
        started.elapsed().as_millis()
    );
    assert!(server.is_running());
    assert!(
        server.log().contains("not properly shut down"),
        "no crash recovery in the log:\n{}",
        server.log()
    );

    assert!(
        before.simple_query("SELECT 1").await.is_err(),
        "a connection made before the restart still answers"
    );
    let after = db.connect().await?;
    let notes: Vec<String> = after
        .query("SELECT note FROM kept", &[])
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    assert_eq!(notes, ["committed"]);
    Ok(())
}

#[tokio::test]
async fn a_stopped_server_refuses_connections_until_started() -> anyhow::Result<()> {
    let Some(server) = PgServer::start_new().await? else {
        return Ok(());
    };
    let db = server.create_database().await?;
    server.stop_immediate().await?;
    assert!(!server.is_running());
    assert!(
        db.connect().await.is_err(),
        "a stopped server took a connection"
    );
    assert!(TcpStream::connect_timeout(&server.addr(), Duration::from_secs(1)).is_err());

    server.start().await?;
    assert!(server.start().await.is_err(), "a second postmaster started");
    db.connect().await?.simple_query("SELECT 1").await?;
    Ok(())
}

#[tokio::test]
async fn a_dropped_server_leaves_no_process_and_no_directory() -> anyhow::Result<()> {
    let Some(server) = PgServer::start_new().await? else {
        return Ok(());
    };
    let addr = server.addr();
    let dir = server.dir().to_owned();
    let data = server.data_dir();
    let running = server_processes(&data)?;
    // The postmaster, its checkpointer, writers, launchers…
    assert!(running.len() >= 3, "server processes: {running:?}");

    drop(server);
    assert!(!dir.exists(), "{} is left behind", dir.display());
    gone(addr, &data).await
}

/// A test process killed with SIGKILL cleans nothing up: its server must
/// still die with it.
#[tokio::test]
async fn a_killed_test_process_takes_its_server_with_it() -> anyhow::Result<()> {
    if PgServer::require()?.is_none() {
        return Ok(());
    }
    let mut helper = Command::new(std::env::current_exe()?)
        .args([HELPER, "--exact", "--ignored", "--nocapture"])
        .env(HELPER_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot run this test binary again")?;
    let stdout = helper.stdout.take().context("the helper's stdout")?;
    // Its announcement, read on a thread of its own (the read blocks).
    let announced = tokio::task::spawn_blocking(move || {
        for line in BufReader::new(stdout).lines() {
            let line = line?;
            if let Some(rest) = line.strip_prefix(HELPER_LINE) {
                return Ok(Some(rest.trim().to_owned()));
            }
        }
        anyhow::Ok(None)
    });
    let announced = tokio::time::timeout(DEADLINE * 2, announced).await;
    let announced = match announced {
        Ok(joined) => joined?,
        Err(_) => Ok(None),
    };
    let line = match announced {
        Ok(Some(line)) => line,
        other => {
            let _ = helper.kill();
            let _ = helper.wait();
            anyhow::bail!("the helper announced no server: {other:?}");
        }
    };
    let (port, data) = line
        .split_once(' ')
        .with_context(|| format!("announcement {line:?}"))?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port.parse::<u16>()?));
    let data = PathBuf::from(data);
    let processes = server_processes(&data)?;
    assert!(!processes.is_empty(), "the helper's server has no process");

    helper.kill()?; // SIGKILL
    helper.wait()?;
    let gone = gone(addr, &data).await;
    // Nobody else removes them: the directory, and the small SysV segment
    // a killed postmaster leaves (repeated runs would pile them up).
    if let Some(dir) = data.parent() {
        std::fs::remove_dir_all(dir)?;
    }
    gone?;
    remove_orphaned_segments(&processes)
}

/// Run by [`a_killed_test_process_takes_its_server_with_it`] in a copy of
/// this binary: starts a server, announces it, and waits for stdin to close
/// (it is killed first). Does nothing when run any other way.
#[tokio::test]
#[ignore = "run in a child process by a_killed_test_process_takes_its_server_with_it"]
async fn helper_holds_a_server_until_killed() -> anyhow::Result<()> {
    if std::env::var_os(HELPER_ENV).is_none() {
        return Ok(());
    }
    let Some(server) = PgServer::start_new().await? else {
        return Ok(());
    };
    println!(
        "{HELPER_LINE} {} {}",
        server.port(),
        server.data_dir().display()
    );
    tokio::task::spawn_blocking(|| std::io::stdin().read_to_end(&mut Vec::new())).await??;
    Ok(())
}

/// Polls until nothing listens on `addr` and no process works in `data`.
async fn gone(addr: SocketAddr, data: &Path) -> anyhow::Result<()> {
    eventually(DEADLINE, "the server's processes to exit", || async {
        let listening = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok();
        let processes = server_processes(data)?;
        Ok((!listening && processes.is_empty()).then_some(()))
    })
    .await
    .with_context(|| {
        format!(
            "still there: {:?}",
            server_processes(data).unwrap_or_default()
        )
    })
}

/// The live processes whose working directory is `data` (every PostgreSQL
/// server process works in its data directory); also once it is deleted.
fn server_processes(data: &Path) -> anyhow::Result<Vec<u32>> {
    let data = data.to_string_lossy();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        // Gone meanwhile, or a zombie: neither has a working directory.
        let Ok(cwd) = std::fs::read_link(entry.path().join("cwd")) else {
            continue;
        };
        let cwd = cwd.to_string_lossy();
        // A deleted directory reads as "PATH (deleted)".
        if cwd == data || cwd.strip_suffix(" (deleted)") == Some(&*data) {
            pids.push(pid);
        }
    }
    Ok(pids)
}

/// Removes the SysV shared memory segments that one of `creators` made and
/// nothing is attached to any more.
fn remove_orphaned_segments(creators: &[u32]) -> anyhow::Result<()> {
    let table = std::fs::read_to_string("/proc/sysvipc/shm")?;
    // Columns: key shmid perms size cpid lpid nattch …
    for line in table.lines().skip(1) {
        let columns: Vec<&str> = line.split_whitespace().collect();
        let (Some(shmid), Some(cpid), Some(nattch)) = (
            columns.get(1).and_then(|c| c.parse::<libc::c_int>().ok()),
            columns.get(4).and_then(|c| c.parse::<u32>().ok()),
            columns.get(6).and_then(|c| c.parse::<u64>().ok()),
        ) else {
            continue;
        };
        if creators.contains(&cpid) && nattch == 0 {
            // SAFETY: IPC_RMID takes no buffer; the segment is the dead
            // server's and unattached.
            if unsafe { libc::shmctl(shmid, libc::IPC_RMID, std::ptr::null_mut()) } != 0 {
                anyhow::bail!(
                    "cannot remove shared memory segment {shmid}: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
    }
    Ok(())
}
