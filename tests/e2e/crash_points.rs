//! Crash points: the real binary, built with the `failpoints` feature,
//! aborts (no cleanup at all) at its writer's N-th commit, just before
//! SQLite's `COMMIT` or just after it and before anyone is told, while the
//! examples run: chaining, fan-out/fan-in, approval with a timeout, entity
//! signals, an order. A restart over the same database must complete every
//! instance with the output a run without faults gives, apply every entity
//! signal exactly once, and run every activity at least once.
//!
//! The README's test command tries a few points. The sweep over every
//! point (`tests/crash-sweep.sh`) runs the ignored test below.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

use http::Method;
use perdure_tests::child::{ChildHost, LogLines, nap_executions};
use perdure_tests::{DURABLE, guests};

const CHILD: &str = env!("CARGO_BIN_EXE_perdure-child");

/// The instances each run starts: id, orchestrator, input.
const WORKLOAD: &[(&str, &str, &str)] = &[
    ("chain", "SleepyChain", r#"{"steps": 3, "sleepMs": 1}"#),
    ("fan", "FanOutFanInOrchestrator", r#"{"count": 20}"#),
    (
        "approval",
        "DocumentApprovalOrchestrator",
        r#"{"document": "Q3 report", "timeoutSeconds": 0.2}"#,
    ),
    (
        "signals",
        "SignalThenCall",
        r#"{"key": "crash", "times": 5}"#,
    ),
    (
        "order",
        "ProcessOrderOrchestrator",
        r#"{"id": "o-1", "item": "book", "quantity": 2, "amount": 30.0, "customerEmail": "a@example.com"}"#,
    ),
];

/// Activity calls of `chain` (each logs its idempotency key).
const CHAIN_STEPS: usize = 3;
/// Signals `signals` sends to `Counter@crash`.
const SIGNALS: i64 = 5;

/// What one run showed after its restart.
struct Outcome {
    /// The failpoint fired (false: the workload ended before point N).
    crashed: bool,
    outputs: BTreeMap<String, serde_json::Value>,
    /// Executions of the chain's activities beyond one per call.
    duplicates: usize,
}

fn wasm_files(functions: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(functions)?;
    for (name, wasm) in [
        ("durable-probe.wasm", guests::DURABLE_PROBE),
        ("fan-out-fan-in.wasm", guests::FAN_OUT_FAN_IN),
        ("approval.wasm", guests::APPROVAL),
        ("counter.wasm", guests::COUNTER),
        ("orders.wasm", guests::ORDERS),
    ] {
        std::fs::copy(wasm, functions.join(name))?;
    }
    Ok(())
}

/// Starts every workload instance the host does not know yet (a start the
/// crash cut off is a start the client retries).
async fn start_missing(host: &ChildHost) -> anyhow::Result<()> {
    for (id, name, input) in WORKLOAD {
        let known = host
            .send(Method::GET, &format!("{DURABLE}/instances/{id}"), "")
            .await?;
        if known.status == 404 {
            let path = format!("{DURABLE}/orchestrators/{name}/{id}");
            let r = host.send(Method::POST, &path, input).await?;
            anyhow::ensure!(r.status == 202, "starting {id}: {} {}", r.status, r.text());
        }
    }
    Ok(())
}

async fn all_finished(host: &ChildHost) -> anyhow::Result<bool> {
    for (id, _, _) in WORKLOAD {
        let r = host
            .send(Method::GET, &format!("{DURABLE}/instances/{id}"), "")
            .await?;
        if r.status != 200 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// One run: a first life with `failpoint` set, then a restart without it.
async fn run(cache: &Path, failpoint: Option<&str>) -> anyhow::Result<Outcome> {
    let dir = tempfile::tempdir()?;
    wasm_files(&dir.path().join("functions"))?;
    let mut args: Vec<OsString> = ChildHost::args_for(dir.path());
    args.extend(["--cache-dir".into(), cache.into()]);
    let log = LogLines::default();
    let env: Vec<(&str, &str)> = failpoint
        .map(|f| ("PERDURE_FAILPOINT", f))
        .into_iter()
        .collect();

    let mut crashed = true;
    // The point may be reached before the host is ready (start-up writes).
    if let Ok(mut host) = ChildHost::start_with_env(CHILD, &args, &env, &log).await {
        // Requests fail once the host is gone; the second life retries.
        let _ = start_missing(&host).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if host.exited()?.is_some() {
                break;
            }
            if matches!(all_finished(&host).await, Ok(true)) {
                crashed = false;
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the first life neither crashed nor finished"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        host.kill()?;
    }
    let fired = log
        .lock()
        .map(|l| l.iter().any(|l| l.contains("failpoint")))
        .unwrap_or(false);
    anyhow::ensure!(
        crashed == fired,
        "the first life ended without its failpoint: {failpoint:?}"
    );

    let host = ChildHost::start_with_args(CHILD, &args, &log).await?;
    start_missing(&host).await?;
    let mut outputs = BTreeMap::new();
    for (id, _, _) in WORKLOAD {
        let status = host.finished_status(id).await?;
        anyhow::ensure!(
            status["runtimeStatus"] == "Completed",
            "{id} after {failpoint:?}: {status}"
        );
        outputs.insert((*id).to_owned(), status["output"].clone());
    }
    let counter = host
        .send(
            Method::GET,
            &format!("{DURABLE}/entities/Counter/crash"),
            "",
        )
        .await?;
    anyhow::ensure!(
        counter.json()? == serde_json::json!(SIGNALS),
        "Counter@crash after {failpoint:?} is {}, not {SIGNALS}: a signal was lost or applied twice",
        counter.text()
    );
    let naps = nap_executions(&log);
    let chain: Vec<usize> = naps
        .iter()
        .filter(|(k, _)| k.starts_with("chain"))
        .map(|(_, n)| *n)
        .collect();
    anyhow::ensure!(
        chain.len() == CHAIN_STEPS,
        "chain activities after {failpoint:?}: {naps:?}"
    );
    let duplicates = chain.iter().map(|n| n - 1).sum();
    host.kill()?;

    let db = rusqlite::Connection::open(dir.path().join("perdure.db"))?;
    let integrity: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    anyhow::ensure!(
        integrity == "ok",
        "integrity after {failpoint:?}: {integrity}"
    );
    Ok(Outcome {
        crashed,
        outputs,
        duplicates,
    })
}

/// Runs `points` after a reference run without faults; every run must end
/// with the reference outputs. Returns (points that crashed, duplicates).
async fn sweep(
    points: impl IntoIterator<Item = String>,
    until_unreached: bool,
) -> anyhow::Result<(usize, usize)> {
    perdure_tests::init_logging();
    let cache = tempfile::tempdir()?;
    let reference = run(cache.path(), None).await?;
    let (mut crashed, mut duplicates) = (0, 0);
    for point in points {
        let outcome = run(cache.path(), Some(&point)).await?;
        assert_eq!(outcome.outputs, reference.outputs, "outputs after {point}");
        println!(
            "{point}: {}, {} duplicate activity runs",
            if outcome.crashed {
                "crashed and recovered"
            } else {
                "not reached"
            },
            outcome.duplicates
        );
        duplicates += outcome.duplicates;
        if outcome.crashed {
            crashed += 1;
        } else if until_unreached {
            break;
        }
    }
    Ok((crashed, duplicates))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_sampled_commit_points_loses_nothing() -> anyhow::Result<()> {
    let points = [1, 3, 8, 15, 25]
        .into_iter()
        .flat_map(|n| [format!("before-commit:{n}"), format!("after-commit:{n}")]);
    let (crashed, duplicates) = sweep(points, false).await?;
    println!("{crashed} of 10 sampled points crashed; {duplicates} duplicate activity runs");
    assert!(crashed >= 6, "most sampled points are inside the workload");
    Ok(())
}

/// Every commit point, both sides of `COMMIT`, and timed points: run by
/// `tests/crash-sweep.sh`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: every commit point; run by tests/crash-sweep.sh"]
async fn a_crash_at_every_commit_point_loses_nothing() -> anyhow::Result<()> {
    let started = Instant::now();
    let mut total = (0, 0);
    for side in ["before-commit", "after-commit"] {
        let (crashed, duplicates) = sweep((1..).map(|n| format!("{side}:{n}")), true).await?;
        println!(
            "{side}: {crashed} points crashed and recovered, {duplicates} duplicate activity runs"
        );
        total = (total.0 + crashed, total.1 + duplicates);
    }
    let timed = (1..=20).map(|i| format!("after-ms:{}", 40 + i * 17));
    let (crashed, duplicates) = sweep(timed, false).await?;
    println!(
        "timed: {crashed} of 20 points crashed and recovered, {duplicates} duplicate activity runs"
    );
    println!(
        "sweep: {} points crashed and recovered, {} instances checked, {} duplicate activity runs, {:.0} s",
        total.0 + crashed,
        (total.0 + crashed) * WORKLOAD.len(),
        total.1 + duplicates,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
