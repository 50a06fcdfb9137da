//! Reliability benchmark: the figures behind the overload and
//! hostile-guest promises.
//!
//! 1. Overload: the real binary (`perdure-child`, a child process) with 64
//!    sandbox slots and `--max-connections 500` under 1,000 concurrent
//!    keep-alive connections calling greet for 60 s. Every request must be answered (served, or shed with
//!    429/503 and `Retry-After`); the child's RSS is sampled every 250 ms
//!    and its peak (`VmHWM`) read at the end.
//! 2. Hostile neighbours: the real binary again (a child process, so that
//!    the load comes from outside it, as a client's would), serving greet
//!    and the hostile guests. Greet's latency over 16 connections alone, then
//!    while hostile guests run next to it without pause (wasm loops,
//!    host-call loops, memory hogs, log floods, enormous outputs, a
//!    never-yielding orchestrator); each as fast as greet answers (a closed
//!    loop: the machine saturated, greet sharing it with its neighbours)
//!    and at a steady 5,000 requests/s (an open loop, latency counted from
//!    when each request was due). `HOSTILE_KINDS=hog,huge` (parts of the
//!    paths below; `never` for the orchestrator) runs only those kinds.
//!    With the hog among the kinds, last, greet's latency next to a native
//!    process doing what the hog guest does at the rate the guest did it
//!    (fresh 16 MiB chunks of memory filled, 48 MiB at a time, then
//!    returned): the floor that the same work costs greet when the
//!    operating system, not the host, keeps them apart. The bench fails
//!    if greet got an error or a shed answer next to the hostile guests.
//!
//! Run with `cargo bench -p perdure-tests --bench reliability [-- overload|hostile]`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use perdure_tests::child::{ChildClient, ChildHost, LogLines};
use perdure_tests::load::{self, Load, ms};
use perdure_tests::{DURABLE, guests};

const CHILD: &str = env!("CARGO_BIN_EXE_perdure-child");

const OVERLOAD_CONNECTIONS: usize = 1_000;
const OVERLOAD_DURATION: Duration = Duration::from_secs(60);
const OVERLOAD_SLOTS: &str = "64";
/// Half the load's connections: the rest are shed (503, closed) and
/// reconnect at once.
const OVERLOAD_MAX_CONNECTIONS: &str = "500";

const NEIGHBOUR_CONNECTIONS: usize = 16;
const NEIGHBOUR_DURATION: Duration = Duration::from_secs(10);
/// Greet's requests per second in the paced runs: a busy app's steady
/// traffic, well below what greet can serve alone or beside the hostile
/// guests, so its latency shows what its neighbours cost it rather than
/// the queueing of a saturated machine.
const PACED_RATE: f64 = 5_000.0;

/// Set, to the rounds a second to make, in the environment of the bench's
/// own copy that plays the native hog (see [`native_hog`]).
const NATIVE_HOG_ENV: &str = "PERDURE_BENCH_NATIVE_HOG";

/// The hog guest's chunk: `vec![1u8; 16 << 20]`.
const HOG_CHUNK: usize = 16 << 20;
/// Chunks the hog guest fills before its 64 MiB limit stops it (its
/// memory starts at about 1 MiB).
const HOG_CHUNKS: usize = 3;

fn main() -> anyhow::Result<()> {
    if let Ok(rate) = std::env::var(NATIVE_HOG_ENV) {
        return native_hog(rate.parse()?);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!("Perdure reliability benchmark");
    println!("=============================");
    println!(
        "machine: {} CPUs available; release build",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let wanted = perdure_tests::bench_parts();
    if wanted("overload") {
        runtime.block_on(overload())?;
    }
    if wanted("hostile") {
        runtime.block_on(hostile_neighbours())?;
    }
    Ok(())
}

/// `VmRSS` and `VmHWM` of process `pid`, in MiB.
fn rss_of(pid: u32) -> anyhow::Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<f64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("no {name} in /proc/{pid}/status"))?;
        let kib: f64 = line
            .split_whitespace()
            .nth(1)
            .context("no value")?
            .parse()?;
        Ok(kib / 1024.0)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

async fn overload() -> anyhow::Result<()> {
    println!();
    println!(
        "1. Overload: {OVERLOAD_CONNECTIONS} connections for {} s against {OVERLOAD_SLOTS} sandbox slots and --max-connections {OVERLOAD_MAX_CONNECTIONS}",
        OVERLOAD_DURATION.as_secs()
    );
    println!("----------------------------------------------------------------------------");
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("functions"))?;
    std::fs::copy(guests::GREET, dir.path().join("functions/greet.wasm"))?;
    let mut args = ChildHost::args_for(dir.path());
    // The harness's default of 200 slots, lowered: more connections than
    // slots is the point.
    set_flag(&mut args, "--max-instances", OVERLOAD_SLOTS);
    set_flag(&mut args, "--max-connections", OVERLOAD_MAX_CONNECTIONS);
    let log = LogLines::default();
    let host = ChildHost::start_with_args(CHILD, &args, &log).await?;
    let pid = host.pid();
    let (rss_start, _) = rss_of(pid)?;
    let addr = host.addr()?;

    let sampling = Arc::new(AtomicBool::new(true));
    let peak_sampled = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (sampling, peak) = (sampling.clone(), peak_sampled.clone());
        tokio::spawn(async move {
            let mut samples = Vec::new();
            while sampling.load(Ordering::Relaxed) {
                if let Ok((rss, _)) = rss_of(pid) {
                    samples.push(rss);
                    peak.fetch_max(rss as u64, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            samples
        })
    };
    let started = Instant::now();
    let report = load::run(&Load::greet(
        addr,
        OVERLOAD_CONNECTIONS,
        Duration::from_secs(2),
        OVERLOAD_DURATION,
    ))
    .await?;
    sampling.store(false, Ordering::Relaxed);
    let samples = sampler.await?;
    let (rss_end, hwm) = rss_of(pid)?;
    let alive = host.send(http::Method::GET, "/admin/health", "").await?;
    report.print("perdure");
    let quarter = samples.len() / 4;
    let first_quarter = samples[..quarter.max(1).min(samples.len())]
        .iter()
        .copied()
        .fold(0.0, f64::max);
    let last_quarter = samples[samples.len().saturating_sub(quarter.max(1))..]
        .iter()
        .copied()
        .fold(0.0, f64::max);
    println!(
        "answered {} requests ({} served, {} shed with Retry-After), {} errors, in {:.0} s",
        report.answered(),
        report.summary.count,
        report.shed,
        report.errors.values().sum::<u64>(),
        started.elapsed().as_secs_f64()
    );
    println!(
        "child RSS: {rss_start:.1} MiB at start, peak {hwm:.1} MiB (VmHWM), max of the first quarter of samples {first_quarter:.1} MiB, of the last quarter {last_quarter:.1} MiB, {rss_end:.1} MiB at the end ({} samples)",
        samples.len()
    );
    println!(
        "after the load: /admin/health -> {}; every request answered -> {}; RSS bounded (last quarter within 10% of the first) -> {}",
        alive.status,
        if report.errors.is_empty() {
            "yes"
        } else {
            "NO"
        },
        if last_quarter <= first_quarter * 1.1 {
            "yes"
        } else {
            "NO"
        }
    );
    host.kill()?;
    Ok(())
}

/// Sets `flag` to `value` in a child's `args`: replaces the value it has
/// (e.g. one of [`ChildHost::args_for`]'s), or adds the pair.
fn set_flag(args: &mut Vec<std::ffi::OsString>, flag: &str, value: &str) {
    match args.iter().position(|a| a == flag) {
        Some(i) if i + 1 < args.len() => args[i + 1] = value.into(),
        _ => args.extend([flag.into(), value.into()]),
    }
}

/// Loops `path` on the host until `stop`; counts the calls.
fn hammer(
    host: &ChildClient,
    path: &'static str,
    stop: &Arc<AtomicBool>,
    calls: &Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    let (host, stop, calls) = (host.clone(), stop.clone(), calls.clone());
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let _ = host.send(http::Method::GET, path, "").await;
            calls.fetch_add(1, Ordering::Relaxed);
        }
    })
}

async fn hostile_neighbours() -> anyhow::Result<()> {
    println!();
    println!(
        "2. Greet's latency alone and next to hostile guests ({NEIGHBOUR_CONNECTIONS} connections, {} s each)",
        NEIGHBOUR_DURATION.as_secs()
    );
    println!(
        "--------------------------------------------------------------------------------------"
    );
    let dir = tempfile::tempdir()?;
    let functions = dir.path().join("functions");
    std::fs::create_dir_all(&functions)?;
    std::fs::copy(guests::GREET, functions.join("greet.wasm"))?;
    std::fs::copy(guests::HOSTILE, functions.join("hostile.wasm"))?;
    let mut args = ChildHost::args_for(dir.path());
    for (flag, value) in [
        ("--max-instances", "256"),
        ("--timeout-secs", "1"),
        ("--memory-limit-mib", "64"),
        ("--max-output-mib", "1"),
    ] {
        set_flag(&mut args, flag, value);
    }
    let log = LogLines::default();
    let host = ChildHost::start_with_args(CHILD, &args, &log).await?;
    let client = host.client();
    let greet = Load::greet(
        host.addr()?,
        NEIGHBOUR_CONNECTIONS,
        Duration::from_secs(1),
        NEIGHBOUR_DURATION,
    );
    let paced = greet.clone().paced(PACED_RATE);
    let alone = load::run(&greet).await?;
    alone.print("alone");
    let alone_paced = load::run(&paced).await?;
    alone_paced.print("alone, paced");

    let stop = Arc::new(AtomicBool::new(false));
    let paths = [
        "/api/hostile/spin",
        "/api/hostile/host-call-spin",
        "/api/hostile/hog",
        "/api/hostile/chatty",
        "/api/hostile/huge?mib=4",
        "/api/hostile/stack",
        "/api/hostile/trap",
    ];
    let only = std::env::var("HOSTILE_KINDS").unwrap_or_default();
    let chosen = |kind: &str| only.is_empty() || only.split(',').any(|part| kind.contains(part));
    let paths: Vec<_> = paths.into_iter().filter(|p| chosen(p)).collect();
    // One count per kind, so that the hog's rate is known.
    let calls: Vec<_> = paths.iter().map(|_| Arc::new(AtomicU64::new(0))).collect();
    let hostiles: Vec<_> = paths
        .iter()
        .zip(&calls)
        .map(|(p, count)| hammer(&client, p, &stop, count))
        .collect();
    let mut never_yielding = 0;
    for _ in 0..if chosen("never") { 4 } else { 0 } {
        let path = format!("{DURABLE}/orchestrators/NeverYields");
        let started = client.send(http::Method::POST, &path, "null").await;
        if started.is_ok_and(|r| r.status == 202) {
            never_yielding += 1;
        }
    }
    let hostile_since = Instant::now();
    let beside = load::run(&greet).await?;
    let beside_paced = load::run(&paced).await?;
    stop.store(true, Ordering::Relaxed);
    let hostile_secs = hostile_since.elapsed().as_secs_f64();
    for task in hostiles {
        task.await?;
    }
    beside.print("hostile");
    beside_paced.print("hostile, paced");
    let made: Vec<_> = paths
        .iter()
        .zip(&calls)
        .map(|(p, count)| format!("{p} {}", count.load(Ordering::Relaxed)))
        .collect();
    println!(
        "hostile calls made meanwhile, in {hostile_secs:.1} s (one loop per kind): {}; plus {never_yielding} never-yielding orchestrations",
        made.join(", ")
    );
    for (how, alone, beside) in [
        ("as fast as it answers".to_owned(), &alone, &beside),
        (
            format!("at {PACED_RATE} req/s"),
            &alone_paced,
            &beside_paced,
        ),
    ] {
        println!(
            "greet {how}: p99 {:.3} ms alone, {:.3} ms next to hostile guests; p50 {:.3} -> {:.3} ms",
            ms(alone.summary.p99),
            ms(beside.summary.p99),
            ms(alone.summary.p50),
            ms(beside.summary.p50)
        );
    }
    if let Some(hog) = paths.iter().position(|p| p.contains("hog")) {
        let rate = calls[hog].load(Ordering::Relaxed) as f64 / hostile_secs;
        let native = beside_native_hog(&greet, &paced, rate).await?;
        println!(
            "greet next to a native process doing the hog's work at the hog guest's {rate:.1} calls/s ({}): p99 {:.3} ms as fast as it answers, {:.3} ms at {PACED_RATE} req/s",
            native.hog_rounds.trim(),
            ms(native.saturated.summary.p99),
            ms(native.paced.summary.p99),
        );
    }
    host.kill()?;
    // Contained means greet is still served, every request of it, however
    // slower: an error here is a broken promise, not a figure (checked
    // after the figures are printed, so a failing run still shows them).
    for (what, report) in [("hostile", &beside), ("hostile, paced", &beside_paced)] {
        anyhow::ensure!(
            report.errors.is_empty() && report.shed == 0,
            "greet failed next to hostile guests ({what}): {:?}, {} shed",
            report.errors,
            report.shed
        );
    }
    Ok(())
}

/// Greet's latency while a native process does the hog guest's work.
struct BesideNativeHog {
    saturated: load::LoadReport,
    paced: load::LoadReport,
    /// What the native hog printed: how much work it did.
    hog_rounds: String,
}

/// Runs `saturated` and then `paced` while a copy of this bench plays the
/// native hog (see [`native_hog`]) at `rate` rounds a second; closing its
/// stdin stops it.
async fn beside_native_hog(
    saturated: &Load,
    paced: &Load,
    rate: f64,
) -> anyhow::Result<BesideNativeHog> {
    anyhow::ensure!(rate > 0.0, "the hog guest made no call to match");
    let mut hog = std::process::Command::new(std::env::current_exe()?)
        .env(NATIVE_HOG_ENV, rate.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("cannot start the native hog")?;
    let loads = async { anyhow::Ok((load::run(saturated).await?, load::run(paced).await?)) }.await;
    drop(hog.stdin.take());
    let (saturated, paced) = loads?;
    saturated.print("native");
    paced.print("native, paced");
    let output = tokio::task::spawn_blocking(move || hog.wait_with_output()).await??;
    anyhow::ensure!(
        output.status.success(),
        "the native hog failed: {}",
        output.status
    );
    Ok(BesideNativeHog {
        saturated,
        paced,
        hog_rounds: String::from_utf8_lossy(&output.stdout).into_owned(),
    })
}

/// What the hog guest does, natively, until stdin ends: fills fresh
/// chunks of memory (first touches, so every page faults in) and returns
/// them, on one thread, at most `rate` rounds a second (the guest's rate,
/// so that both do the same work). Prints how many rounds it made.
fn native_hog(rate: f64) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let stopper = stop.clone();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        stopper.store(true, Ordering::Relaxed);
    });
    let bytes = HOG_CHUNK * HOG_CHUNKS;
    let started = Instant::now();
    let mut rounds = 0u64;
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: a fresh private anonymous mapping of `bytes`, written
        // only within them and unmapped once, after the last write.
        unsafe {
            let memory = libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            anyhow::ensure!(memory != libc::MAP_FAILED, "mmap failed");
            for chunk in 0..HOG_CHUNKS {
                std::ptr::write_bytes(memory.cast::<u8>().add(chunk * HOG_CHUNK), 1, HOG_CHUNK);
            }
            libc::munmap(memory, bytes);
        }
        rounds += 1;
        let due = Duration::from_secs_f64(rounds as f64 / rate);
        if let Some(early) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(early);
        }
    }
    println!(
        "{rounds} rounds of {} MiB, {:.1}/s",
        bytes >> 20,
        rounds as f64 / started.elapsed().as_secs_f64()
    );
    Ok(())
}
