//! Waits benchmark: durable timers and external events at scale, on the
//! durable SQLite default, driven in process through `Engine`.
//!
//! 1. 100,000 instances each waiting for an event with a 1-hour timeout
//!    (an event wait and a durable timer): the process's RSS and the
//!    database's size once all of them wait.
//! 2. Latency from raising an event on one of those waiting (evicted)
//!    instances to that instance completing, one at a time.
//! 3. Timer accuracy under load: instances whose timers come due over a few
//!    seconds while thousands of hello sequences run; lateness is the time
//!    the timer's completion was recorded minus its due time.
//!
//! Run with `cargo bench -p perdure-tests --bench waits`
//! (`PERDURE_BENCH_WAITING=N` changes the 100,000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use perdure::durable::Engine;
use perdure::durable::journal::kind;
use perdure_records::{InboxBody, InstanceFilter, InstanceId, RuntimeStatus};
use perdure_tests::{TestHost, guests};

const DEADLINE: Duration = Duration::from_secs(600);
const EVENT_RUNS: usize = 200;
const TIMERS: usize = 2_000;
const LOAD_CHAINS: usize = 2_000;
/// Instances started at once; more only queue in memory.
const START_BATCH: usize = 5_000;

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

fn percentile<T: Copy>(sorted: &[T], p: f64) -> T {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Starts `count` instances of `name`, `START_BATCH` at a time.
async fn start_many(
    engine: &Arc<Engine>,
    name: &'static str,
    input: impl Fn(usize) -> String,
    count: usize,
) -> anyhow::Result<Vec<InstanceId>> {
    let mut ids = Vec::with_capacity(count);
    for batch in (0..count).collect::<Vec<_>>().chunks(START_BATCH) {
        let mut starts = tokio::task::JoinSet::new();
        for &i in batch {
            let engine = engine.clone();
            let input = input(i);
            starts.spawn(async move { engine.start_new(name, None, input, None).await });
        }
        while let Some(id) = starts.join_next().await {
            ids.push(id??);
        }
    }
    Ok(ids)
}

/// Waits until no instance of `name` is pending (each has committed its
/// first episode, so it waits).
async fn all_waiting(engine: &Engine, name: &str) -> anyhow::Result<()> {
    let filter = InstanceFilter {
        statuses: vec![RuntimeStatus::Pending],
        name: Some(name.into()),
        ..Default::default()
    };
    let deadline = Instant::now() + DEADLINE;
    while !engine
        .list(filter.clone(), 1, None)
        .await?
        .instances
        .is_empty()
    {
        if Instant::now() > deadline {
            bail!("instances of {name} are still pending");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn file_mib(path: &std::path::Path) -> f64 {
    std::fs::metadata(path).map_or(0.0, |m| m.len() as f64 / (1024.0 * 1024.0))
}

async fn run() -> anyhow::Result<()> {
    let waiting: usize = std::env::var("PERDURE_BENCH_WAITING")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let host = TestHost::start_with(&[("durable-probe.wasm", guests::DURABLE_PROBE)], |c| {
        c.sandbox.max_instances = 1000;
    })
    .await?;
    let engine = host.engine().clone();
    let warm = engine
        .start_new("HelloSequence", None, "null".into(), None)
        .await?;
    engine.wait_for_completion(&warm, DEADLINE).await?;
    let before = perdure_tests::rss_mib()?;
    let started = Instant::now();
    let hour = Duration::from_secs(3600).as_millis().to_string();
    let ids = start_many(&engine, "EventOrTimer", |_| hour.clone(), waiting).await?;
    all_waiting(&engine, "EventOrTimer").await?;
    let took = started.elapsed();
    let db = host.temp_dir().join("perdure.db");
    println!(
        "{waiting} instances waiting on an event or a 1-hour timer (started and waiting in {:.1} s): RSS {:.1} MiB (was {before:.1} MiB: +{:.1} MiB); database {:.1} MiB + WAL {:.1} MiB",
        took.as_secs_f64(),
        perdure_tests::rss_mib()?,
        perdure_tests::rss_mib()? - before,
        file_mib(&db),
        file_mib(&db.with_extension("db-wal")),
    );

    // One event at a time, each to a different waiting instance.
    let step = (ids.len() / EVENT_RUNS).max(1);
    let mut latencies = Vec::with_capacity(EVENT_RUNS);
    for id in ids.iter().step_by(step).take(EVENT_RUNS) {
        let t0 = Instant::now();
        engine.raise_event(id, "Go".into(), "1".into()).await?;
        match engine.wait_for_completion(id, DEADLINE).await? {
            Some(r) if r.status == RuntimeStatus::Completed => latencies.push(t0.elapsed()),
            other => bail!("{id} did not complete: {other:?}"),
        }
    }
    latencies.sort();
    println!(
        "raise event -> instance completed ({} waiting instances, {EVENT_RUNS} runs): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ids.len(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(percentile(&latencies, 1.0)),
    );

    timer_lateness(&engine).await?;
    host.shutdown().await;
    Ok(())
}

/// Timers due 3-5 s after their instances start fire while hello
/// sequences load the host. Every timer is committed before the load
/// starts; one committed after its due time would measure scheduling, not
/// the timer, and is reported apart.
async fn timer_lateness(engine: &Arc<Engine>) -> anyhow::Result<()> {
    let timers = start_many(
        engine,
        "Sleeper",
        |i| format!(r#"{{"delayMs": {}}}"#, 3_000 + (i * 2_000 / TIMERS)),
        TIMERS,
    )
    .await?;
    let filter = InstanceFilter {
        statuses: vec![RuntimeStatus::Pending],
        name: Some("Sleeper".into()),
        ..Default::default()
    };
    while !engine
        .list(filter.clone(), 1, None)
        .await?
        .instances
        .is_empty()
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let all_set = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let load = start_many(engine, "HelloSequence", |_| "null".into(), LOAD_CHAINS).await?;
    for id in timers.iter().chain(&load) {
        match engine.wait_for_completion(id, DEADLINE).await? {
            Some(r) if r.status == RuntimeStatus::Completed => {}
            other => bail!("{id} did not complete: {other:?}"),
        }
    }
    let mut lateness = Vec::with_capacity(TIMERS);
    let mut set_late = 0;
    for id in &timers {
        let history = engine.history(id).await?.context("no history")?;
        let timer = history
            .journal
            .iter()
            .find(|e| e.kind == kind::SCHEDULE_TIMER)
            .context("no timer")?;
        let request: serde_json::Value = serde_json::from_str(&timer.request)?;
        let due = request["fireAt"].as_i64().context("no fireAt")?;
        let fired = history
            .inbox
            .iter()
            .find_map(|m| match m.body {
                InboxBody::TaskCompleted { task_id, .. } if task_id == timer.seq => Some(m.at_ms),
                _ => None,
            })
            .context("the timer's completion is not in the inbox")?;
        if due < all_set {
            set_late += 1;
            continue;
        }
        lateness.push(fired - due);
    }
    if lateness.is_empty() {
        bail!("every timer was set after its due time");
    }
    lateness.sort();
    println!(
        "timer lateness, {} timers due over 2 s under a load of {LOAD_CHAINS} hello sequences: p50 {} ms, p99 {} ms, max {} ms, min {} ms ({set_late} set after their due time, left out)",
        lateness.len(),
        percentile(&lateness, 0.5),
        percentile(&lateness, 0.99),
        percentile(&lateness, 1.0),
        lateness[0],
    );
    Ok(())
}
