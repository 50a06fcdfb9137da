//! Entities benchmark, on the durable SQLite default, driven in process
//! through `Engine` (the same calls the HTTP API makes).
//!
//! 1. Signals on one entity: `SIGNALS` `add 1` signals sent by 64 tasks at
//!    once to `Counter@one`; signals/s from the first send until the count
//!    is complete (sending and processing overlap).
//! 2. The same number of signals spread over 1,000 counters.
//! 3. 1,000,000 idle entities: a database with a million queued `add`
//!    signals (one per counter, written straight into storage), a host
//!    started over it processes them all; then the database's size and the
//!    host's RSS once they are idle.
//!
//! Run with `cargo bench -p perdure-tests --bench entities`
//! (`PERDURE_BENCH_IDLE=N` changes the 1,000,000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use perdure::durable::Engine;
use perdure_records::{EntityId, EntityOpKind, NewEntityOp};
use perdure_sqlite::SqliteStorage;
use perdure_storage::DurableStorage as _;
use perdure_tests::{TestHost, guests};

const DEADLINE: Duration = Duration::from_secs(900);
const SIGNALS: usize = 20_000;
const SENDERS: usize = 64;
const WRITE_CHUNK: usize = 10_000;

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

fn file_mib(path: &std::path::Path) -> f64 {
    std::fs::metadata(path).map_or(0.0, |m| m.len() as f64 / (1024.0 * 1024.0))
}

fn counter(key: &str) -> anyhow::Result<EntityId> {
    Ok(EntityId::parse("Counter", key)?)
}

/// Polls until every counter in `keys` holds `expected`.
async fn wait_for_counts(engine: &Engine, keys: &[String], expected: i64) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut next = 0;
    while next < keys.len() {
        let state = engine
            .entity(&counter(&keys[next])?)
            .await?
            .and_then(|r| r.state);
        if state.as_deref().and_then(|s| s.parse::<i64>().ok()) == Some(expected) {
            next += 1;
            continue;
        }
        if started.elapsed() > DEADLINE {
            bail!("counter {} holds {state:?}, not {expected}", keys[next]);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

/// Sends `SIGNALS` signals round-robin over `keys` from `SENDERS` tasks
/// and waits until every counter has its count. Returns signals/s.
async fn signal_rate(engine: &Arc<Engine>, keys: Vec<String>) -> anyhow::Result<f64> {
    let per_key = (SIGNALS / keys.len()) as i64;
    let keys = Arc::new(keys);
    let started = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..SENDERS {
        let (engine, keys) = (engine.clone(), keys.clone());
        senders.spawn(async move {
            let mut i = sender;
            while i < SIGNALS {
                let id = counter(&keys[i % keys.len()])?;
                engine.signal_entity(id, "add", Some("1".into())).await?;
                i += SENDERS;
            }
            anyhow::Ok(())
        });
    }
    while let Some(sent) = senders.join_next().await {
        sent??;
    }
    let sent = started.elapsed();
    wait_for_counts(engine, &keys, per_key).await?;
    let done = started.elapsed();
    println!(
        "  {SIGNALS} signals to {} entities: all sent (committed) in {:.2} s, all applied in {:.2} s",
        keys.len(),
        sent.as_secs_f64(),
        done.as_secs_f64()
    );
    Ok(SIGNALS as f64 / done.as_secs_f64())
}

async fn run() -> anyhow::Result<()> {
    println!("Perdure entities benchmark");
    println!("==========================");
    println!(
        "machine: {} CPUs; release build; SQLite WAL, synchronous=FULL",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let host = TestHost::start_with(&[("counter.wasm", guests::COUNTER)], |c| {
        c.sandbox.max_instances = 256;
    })
    .await?;
    let engine = host.engine().clone();

    println!("1. signals on one entity ({SENDERS} senders)");
    let one = signal_rate(&engine, vec!["one".to_owned()]).await?;
    println!(
        "  -> {one:.0} signals/s on one entity (target 5,000/s: {})",
        if one >= 5000.0 { "MET" } else { "NOT MET" }
    );
    println!("2. signals on 1,000 entities ({SENDERS} senders)");
    let keys: Vec<String> = (0..1000).map(|i| format!("spread-{i}")).collect();
    let spread = signal_rate(&engine, keys).await?;
    println!(
        "  -> {spread:.0} signals/s over 1,000 entities (target 20,000/s: {})",
        if spread >= 20000.0 { "MET" } else { "NOT MET" }
    );
    host.shutdown().await;

    let idle: usize = std::env::var("PERDURE_BENCH_IDLE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    println!("3. {idle} idle entities");
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("idle.db");
    let written = Instant::now();
    {
        let storage = SqliteStorage::open(&db)?;
        let mut next = 0;
        while next < idle {
            let end = (next + WRITE_CHUNK).min(idle);
            let ops = (next..end)
                .map(|i| {
                    Ok(NewEntityOp {
                        target: counter(&format!("idle-{i:07}"))?,
                        kind: EntityOpKind::Operation {
                            operation: "add".into(),
                            input: Some("1".into()),
                        },
                        sender: None,
                        reply_task: None,
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            storage.send_to_entities(ops).await?;
            next = end;
        }
        storage.close();
    }
    println!(
        "  queued {idle} signals (one per counter) in {:.1} s",
        written.elapsed().as_secs_f64()
    );
    let rss_before = perdure_tests::rss_mib()?;
    let started = Instant::now();
    let host = TestHost::start_with(&[("counter.wasm", guests::COUNTER)], |c| {
        c.db = db.clone().into();
        c.sandbox.max_instances = 256;
    })
    .await?;
    let engine = host.engine().clone();
    let last = vec![format!("idle-{:07}", idle - 1), "idle-0000000".to_owned()];
    wait_for_counts(&engine, &last, 1).await?;
    // Every counter exists once the queue is empty.
    loop {
        let page = engine.list_entities("Counter", 1, None).await?;
        let listed = page.entities.len();
        let queued = idle_queue_len(&db)?;
        if queued == 0 && listed == 1 {
            break;
        }
        if started.elapsed() > DEADLINE {
            bail!("{queued} signals still queued");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let processed = started.elapsed();
    println!(
        "  a host started over them applied all {idle} in {:.1} s ({:.0} entities/s)",
        processed.as_secs_f64(),
        idle as f64 / processed.as_secs_f64()
    );
    let rss = perdure_tests::rss_mib()?;
    let db_mib = file_mib(&db);
    let wal_mib = file_mib(&db.with_extension("db-wal"));
    println!(
        "  -> database {db_mib:.1} MiB (+ WAL {wal_mib:.1} MiB) for {idle} entities; host RSS {rss:.1} MiB (process before the host started: {rss_before:.1} MiB)"
    );
    host.shutdown().await;
    Ok(())
}

/// Messages still queued, read with a connection of our own.
fn idle_queue_len(db: &std::path::Path) -> anyhow::Result<i64> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .context("open the database")?;
    Ok(conn.query_row("SELECT COUNT(*) FROM entity_ops", [], |r| r.get(0))?)
}
