//! Graceful shutdown: SIGTERM under load stops the real binary within its
//! `--shutdown-timeout-secs`, even with a request that would wait a
//! minute; every request it answered was answered properly; it starts no
//! new work once told to stop; the database is sound; and a restart
//! completes every instance, with every activity run at least once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use http::Method;
use perdure_tests::child::{ChildHost, LogLines, nap_executions};
use perdure_tests::{DURABLE, eventually, guests};

const CHILD: &str = env!("CARGO_BIN_EXE_perdure-child");
const INSTANCES: usize = 20;
const STEPS: usize = 10;
const SHUTDOWN_SECS: u64 = 2;
const LOADERS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_stops_in_time_and_loses_nothing() -> anyhow::Result<()> {
    perdure_tests::init_logging();
    let dir = tempfile::tempdir()?;
    let functions = dir.path().join("functions");
    std::fs::create_dir_all(&functions)?;
    std::fs::copy(guests::DURABLE_PROBE, functions.join("durable-probe.wasm"))?;
    std::fs::copy(guests::GREET, functions.join("greet.wasm"))?;
    let log = LogLines::default();
    let mut args = ChildHost::args_for(dir.path());
    args.extend([
        "--shutdown-timeout-secs".into(),
        SHUTDOWN_SECS.to_string().into(),
    ]);
    let host = ChildHost::start_with_args(CHILD, &args, &log).await?;

    let input = format!(r#"{{"steps": {STEPS}, "sleepMs": 30}}"#);
    for i in 0..INSTANCES {
        let path = format!("{DURABLE}/orchestrators/SleepyChain/term-{i}");
        let r = host.send(Method::POST, &path, &input).await?;
        assert_eq!(r.status, 202, "{}", r.text());
    }
    // A client waiting up to a minute for an instance that takes longer:
    // the shutdown deadline, not this request, decides when the host ends.
    let waiting = {
        let client = host.client();
        tokio::spawn(async move {
            let path = format!("{DURABLE}/orchestrators/SleepyChain/term-long?timeout=60");
            client
                .send(Method::POST, &path, r#"{"steps": 1000, "sleepMs": 30}"#)
                .await
        })
    };
    // HTTP load until the host is gone: every answer must be a proper one.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let loaders: Vec<_> = (0..LOADERS)
        .map(|_| {
            let (client, stop, answered) = (host.client(), stop.clone(), answered.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match client.send(Method::GET, "/api/greet?name=Ada", "").await {
                        Ok(r) => {
                            anyhow::ensure!(r.status == 200, "{} {}", r.status, r.text());
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                        // Refused or closed once the host stops accepting.
                        Err(_) => break,
                    }
                }
                Ok(())
            })
        })
        .collect();
    eventually(Duration::from_secs(60), "activities under way", || async {
        let done: usize = nap_executions(&log).values().sum();
        Ok((done >= INSTANCES && answered.load(Ordering::Relaxed) >= 20).then_some(()))
    })
    .await?;

    let (exit, took) = host.terminate(Duration::from_secs(30)).await?;
    stop.store(true, Ordering::Relaxed);
    assert!(exit.success(), "exit status {exit}");
    println!(
        "stopped {took:?} after SIGTERM, {} greet answers under load",
        answered.load(Ordering::Relaxed)
    );
    for loader in loaders {
        loader.await??;
    }
    // The minute-long request was cut at the deadline, not answered late.
    assert!(waiting.await?.is_err(), "the long poll outlived the host");
    let lines = log.lock().map(|l| l.clone()).unwrap_or_default();
    assert!(
        lines.iter().any(|l| l.contains("perdure stopped")),
        "no orderly stop in the log"
    );

    let db = rusqlite::Connection::open(dir.path().join("perdure.db"))?;
    let integrity: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    assert_eq!(integrity, "ok");
    drop(db);

    let restarted_at = log.lock().map(|l| l.len()).unwrap_or(0);
    let host = ChildHost::start_with_args(CHILD, &args, &log).await?;
    // The chains were mid-way: SIGTERM stopped them rather than letting
    // them run to the end during the grace period.
    let resumed = log
        .lock()
        .map(|l| {
            l[restarted_at..]
                .iter()
                .any(|l| l.contains("resuming unfinished instances"))
        })
        .unwrap_or(false);
    assert!(
        resumed,
        "the restart found no unfinished instance to resume"
    );
    for i in 0..INSTANCES {
        let status = host.finished_status(&format!("term-{i}")).await?;
        assert_eq!(status["runtimeStatus"], "Completed", "term-{i}: {status}");
        assert_eq!(status["output"], STEPS, "term-{i}: {status}");
    }
    let counts = nap_executions(&log);
    let ours = counts
        .keys()
        .filter(|k| k.starts_with("term-") && !k.starts_with("term-long"))
        .count();
    assert_eq!(
        ours,
        INSTANCES * STEPS,
        "every activity call ran at least once"
    );
    host.kill()?;
    Ok(())
}
