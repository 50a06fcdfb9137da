//! Foundation benchmark: the figures the host's design rests on.
//!
//! 1. In-process: instantiate + call of the greet example's HTTP function
//!    through `Sandbox::handle_http` (pooling allocator), one task and two.
//! 2. End to end: `GET /api/greet?name=x` over loopback against a real host
//!    and against a native hyper server returning the same text, with 64
//!    keep-alive connections issuing requests back to back; three rounds
//!    alternating the two, the median ratio is the figure.
//! 3. Deploy latency: from a `.wasm` landing in the watched folder to its
//!    first 200, cold (empty compiled-code cache) and warm (same digest
//!    under another file name, so the on-disk cache hits).
//!
//! Run with `cargo bench -p perdure-tests --bench foundation`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use perdure::SandboxLimits;
use perdure::model::{Digest, FunctionKind};
use perdure::sandbox::bindings::types::HttpRequest;
use perdure::sandbox::{AppCode, Caller, CodeCache, OutboundClient, Sandbox};
use perdure_tests::load::{self, GREET_ANSWER, GREET_PATH, Load, LoadReport, Summary, ms};
use perdure_tests::{TestHost, guests};
use tokio::net::TcpListener;

/// In-process calls before measuring.
const WARMUP_CALLS: usize = 2_000;
/// In-process calls measured (per task in the two-task run).
const MEASURED_CALLS: usize = 20_000;
/// Concurrent keep-alive connections of the load generator.
const CONNECTIONS: usize = 64;
const LOAD_WARMUP: Duration = Duration::from_secs(1);
const LOAD_DURATION: Duration = Duration::from_secs(5);
/// Rounds of (perdure, native) load, alternating, so that both targets see
/// the same machine: on a shared machine the speed drifts within a minute.
const LOAD_ROUNDS: usize = 3;
/// Rounds of the deploy-latency measurement.
const DEPLOY_ROUNDS: usize = 5;
const POLL_INTERVAL: Duration = Duration::from_millis(1);
const POLL_DEADLINE: Duration = Duration::from_secs(120);

fn main() -> anyhow::Result<()> {
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let workers = runtime.metrics().num_workers();

    println!("Perdure foundation benchmark");
    println!("============================");
    println!(
        "machine: {} CPUs available; tokio multi-threaded runtime with {workers} worker threads; release build",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("greet component: {}", guests::GREET);
    println!();

    // `cargo bench --bench foundation -- in-process` (or `end-to-end`,
    // `deploy`) runs one part; no argument runs them all.
    let wanted = perdure_tests::bench_parts();
    if wanted("in-process") {
        runtime.block_on(in_process())?;
    }
    if wanted("end-to-end") {
        runtime.block_on(end_to_end())?;
    }
    if wanted("deploy") {
        runtime.block_on(deploy_latency())?;
    }

    println!();
    println!(
        "total wall time of the bench run: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Statistics

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

// ---------------------------------------------------------------------------
// 1. In-process instantiate + call

fn greet_request() -> HttpRequest {
    HttpRequest {
        method: "GET".into(),
        path: "/api/greet".into(),
        query: vec![("name".into(), "x".into())],
        params: Vec::new(),
        headers: Vec::new(),
        body: Vec::new(),
        base_url: "http://127.0.0.1".into(),
    }
}

fn greet_caller() -> Caller {
    Caller {
        app: "greet".into(),
        function: "GreetFunction".into(),
        kind: FunctionKind::Http,
    }
}

/// Runs `calls` invocations back to back and returns each one's duration.
async fn call_loop(
    sandbox: Arc<Sandbox>,
    code: Arc<AppCode>,
    calls: usize,
) -> anyhow::Result<Vec<Duration>> {
    let caller = greet_caller();
    let request = greet_request();
    let mut times = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        let response = sandbox
            .handle_http(&code, caller.clone(), request.clone())
            .await?;
        times.push(started.elapsed());
        if response.status != 200 {
            bail!("greet answered {}", response.status);
        }
    }
    Ok(times)
}

async fn in_process() -> anyhow::Result<()> {
    println!(
        "1. In-process: Sandbox::handle_http (fresh store + instantiate + call), pooling allocator"
    );
    println!(
        "---------------------------------------------------------------------------------------"
    );
    let bytes = std::fs::read(guests::GREET).with_context(|| format!("read {}", guests::GREET))?;
    let cache_dir = tempfile::tempdir()?;
    let limits = SandboxLimits::default();
    println!(
        "SandboxLimits::default(): max_instances {}, memory {} MiB, timeout {:?}",
        limits.max_instances,
        limits.memory_bytes >> 20,
        limits.timeout
    );
    let sandbox = Arc::new(
        tokio::task::spawn_blocking(move || {
            anyhow::Ok(Sandbox::new(
                limits,
                OutboundClient::new(None)?,
                Default::default(),
            )?)
        })
        .await??,
    );
    let cache = CodeCache::open(cache_dir.path())?;
    let digest = Digest::of(&bytes);
    let load_sandbox = sandbox.clone();
    let load_started = Instant::now();
    let (code, outcome) =
        tokio::task::spawn_blocking(move || load_sandbox.load(&cache, &digest, &bytes)).await??;
    println!(
        "component load: {:.0} ms ({outcome:?}, {} bytes)",
        ms(load_started.elapsed()),
        std::fs::metadata(guests::GREET)?.len()
    );
    let code = Arc::new(code);

    // Check the answer once.
    let response = sandbox
        .handle_http(&code, greet_caller(), greet_request())
        .await?;
    let body = String::from_utf8_lossy(&response.body);
    if response.status != 200 || body != GREET_ANSWER {
        bail!("unexpected greet answer: {} {body:?}", response.status);
    }
    println!("answer: {} {body:?}", response.status);

    // One task.
    tokio::spawn(call_loop(sandbox.clone(), code.clone(), WARMUP_CALLS)).await??;
    let wall_started = Instant::now();
    let times = tokio::spawn(call_loop(sandbox.clone(), code.clone(), MEASURED_CALLS)).await??;
    let wall = wall_started.elapsed();
    let one = Summary::of(times);
    println!(
        "1 task, {} calls after {WARMUP_CALLS} warm-up: mean {:.1} µs, p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs; {:.0} calls/s",
        one.count,
        us(one.mean),
        us(one.p50),
        us(one.p99),
        us(one.max),
        one.count as f64 / wall.as_secs_f64()
    );

    // Two tasks.
    let warm = [
        tokio::spawn(call_loop(sandbox.clone(), code.clone(), WARMUP_CALLS)),
        tokio::spawn(call_loop(sandbox.clone(), code.clone(), WARMUP_CALLS)),
    ];
    for task in warm {
        task.await??;
    }
    let wall_started = Instant::now();
    let tasks = [
        tokio::spawn(call_loop(sandbox.clone(), code.clone(), MEASURED_CALLS)),
        tokio::spawn(call_loop(sandbox.clone(), code.clone(), MEASURED_CALLS)),
    ];
    let mut all = Vec::with_capacity(2 * MEASURED_CALLS);
    for task in tasks {
        all.extend(task.await??);
    }
    let wall = wall_started.elapsed();
    let two = Summary::of(all);
    println!(
        "2 concurrent tasks, {} calls each: {:.0} calls/s total; per call mean {:.1} µs, p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        MEASURED_CALLS,
        two.count as f64 / wall.as_secs_f64(),
        us(two.mean),
        us(two.p50),
        us(two.p99),
        us(two.max)
    );
    println!(
        "target: under 20 µs per call (1 task mean) -> {}",
        if one.mean < Duration::from_micros(20) {
            "MET"
        } else {
            "NOT MET"
        }
    );
    println!();
    Ok(())
}

// ---------------------------------------------------------------------------
// 2. End to end over loopback

/// A plain hyper HTTP/1.1 server answering what the greet function does.
async fn start_native() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(|request: Request<Incoming>| async move {
                    let name = request
                        .uri()
                        .query()
                        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("name=")))
                        .unwrap_or("");
                    let body = format!(
                        "Hello, {name}. This HTTP triggered function executed successfully."
                    );
                    let response = Response::builder()
                        .status(StatusCode::OK)
                        .header(header::CONTENT_TYPE, "text/plain")
                        .body(Full::new(Bytes::from(body)))
                        .expect("a static response is valid");
                    Ok::<_, Infallible>(response)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// One round of load against `addr`, as the end-to-end figures are taken.
async fn generate_load(addr: SocketAddr) -> anyhow::Result<LoadReport> {
    load::run(&Load::greet(addr, CONNECTIONS, LOAD_WARMUP, LOAD_DURATION)).await
}

async fn end_to_end() -> anyhow::Result<()> {
    println!("2. End to end: GET {GREET_PATH} over loopback (HTTP/1.1 keep-alive)");
    println!("--------------------------------------------------------------------");
    let host = TestHost::start_with(&[("greet.wasm", guests::GREET)], |_| {}).await?;
    let check = host.get_admin(GREET_PATH).await?;
    if check.status != 200 || check.text() != GREET_ANSWER {
        bail!(
            "unexpected host answer: {} {:?}",
            check.status,
            check.text()
        );
    }
    println!(
        "perdure host: {} -> {} {:?}, content-type {:?}",
        host.url(GREET_PATH),
        check.status,
        check.text(),
        check.headers.get(header::CONTENT_TYPE)
    );
    let native = start_native().await?;
    println!("native hyper 1 server: http://{native}{GREET_PATH}");
    println!(
        "load: {CONNECTIONS} tasks, each with its own HTTP/1.1 connection (hyper::client::conn::http1), requests back to back, \
         {} s warm-up then {} s measured, per target and round; {LOAD_ROUNDS} rounds alternating perdure and native",
        LOAD_WARMUP.as_secs(),
        LOAD_DURATION.as_secs()
    );
    println!(
        "NOTE: the load generator runs in the same process and on the same tokio runtime as the server under test \
         (they share the CPUs), so these are lower bounds on server capacity."
    );
    let perdure_addr = host.addr();
    let mut ratios = Vec::with_capacity(LOAD_ROUNDS);
    for round in 1..=LOAD_ROUNDS {
        let perdure = generate_load(perdure_addr).await?;
        let native_report = generate_load(native).await?;
        println!("round {round}:");
        perdure.print("perdure");
        native_report.print("native");
        let ratio = if native_report.rps > 0.0 {
            perdure.rps / native_report.rps
        } else {
            0.0
        };
        println!(
            "ratio perdure/native throughput, round {round}: {:.1}%",
            ratio * 100.0
        );
        ratios.push(ratio);
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    println!(
        "ratio perdure/native throughput: median {:.1}% of {LOAD_ROUNDS} rounds (min {:.1}%, max {:.1}%; target at least 50% -> {})",
        median * 100.0,
        ratios[0] * 100.0,
        ratios[ratios.len() - 1] * 100.0,
        if median >= 0.5 { "MET" } else { "NOT MET" }
    );
    host.shutdown().await;
    println!();
    Ok(())
}

// ---------------------------------------------------------------------------
// 3. Deploy latency

struct Poll {
    elapsed: Duration,
    polls: u64,
    seen: BTreeMap<String, u64>,
}

/// Polls the greet route with the master key every millisecond until it
/// answers `want`; counts every other answer seen on the way.
async fn poll_until(host: &TestHost, want: u16, started: Instant) -> anyhow::Result<Poll> {
    let mut seen = BTreeMap::new();
    let mut polls = 0;
    loop {
        polls += 1;
        match host.get_admin(GREET_PATH).await {
            Ok(response) if response.status == want => {
                if want == 200 && response.text() != GREET_ANSWER {
                    bail!("unexpected body {:?}", response.text());
                }
                return Ok(Poll {
                    elapsed: started.elapsed(),
                    polls,
                    seen,
                });
            }
            Ok(response) => {
                let code = response.error_code().unwrap_or_default();
                *seen
                    .entry(format!("{} {code}", response.status))
                    .or_default() += 1;
            }
            Err(e) => *seen.entry(format!("error: {e:#}")).or_default() += 1,
        }
        if started.elapsed() > POLL_DEADLINE {
            bail!("no {want} after {POLL_DEADLINE:?}; seen {seen:?}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Writes `bytes` beside the folder, then renames it in and polls until the
/// greet route answers 200. The clock starts at the rename.
async fn timed_deploy(host: &TestHost, file_name: &str, bytes: &[u8]) -> anyhow::Result<Poll> {
    let staged = host.temp_dir().join(format!("{file_name}.partial"));
    std::fs::write(&staged, bytes)?;
    let started = Instant::now();
    std::fs::rename(&staged, host.functions_dir().join(file_name))?;
    poll_until(host, 200, started).await
}

async fn describe_app(host: &TestHost, app: &str) -> String {
    match host.app_status(app).await {
        Ok(Some(status)) => format!(
            "compiledCode {}, loadMs {}",
            status["compiledCode"], status["loadMs"]
        ),
        Ok(None) => "not listed".into(),
        Err(e) => format!("admin API error: {e:#}"),
    }
}

fn seen_text(seen: &BTreeMap<String, u64>) -> String {
    if seen.is_empty() {
        return "-".into();
    }
    seen.iter()
        .map(|(what, n)| format!("{what} x{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_min_median_max(label: &str, mut times: Vec<Duration>) {
    times.sort_unstable();
    if times.is_empty() {
        return;
    }
    println!(
        "{label}: min {:.1} ms, median {:.1} ms, max {:.1} ms (n = {})",
        ms(times[0]),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1]),
        times.len()
    );
}

async fn deploy_latency() -> anyhow::Result<()> {
    println!(
        "3. Deploy latency: .wasm renamed into the watched folder -> first 200 on GET {GREET_PATH}"
    );
    println!(
        "-----------------------------------------------------------------------------------------"
    );
    println!(
        "polling every {} ms with the master key; a rename into the folder is loaded at once \
         (writes in place are debounced for {} ms)",
        POLL_INTERVAL.as_millis(),
        perdure::watcher::QUIET_PERIOD.as_millis()
    );
    println!(
        "cold = fresh host, empty compiled-code cache; warm = same host after removing greet.wasm and seeing 404, \
         same bytes deployed as greet2.wasm (on-disk code cache hit)"
    );
    let bytes = std::fs::read(guests::GREET)?;
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for round in 1..=DEPLOY_ROUNDS {
        let host = TestHost::start().await?;
        let first = timed_deploy(&host, "greet.wasm", &bytes).await?;
        println!(
            "round {round}: cold {:>7.1} ms ({} polls; before 200: {}; {})",
            ms(first.elapsed),
            first.polls,
            seen_text(&first.seen),
            describe_app(&host, "greet").await
        );
        cold.push(first.elapsed);

        let removed = Instant::now();
        host.undeploy("greet.wasm")?;
        let gone = poll_until(&host, 404, removed).await?;
        let second = timed_deploy(&host, "greet2.wasm", &bytes).await?;
        println!(
            "round {round}: warm {:>7.1} ms ({} polls; before 200: {}; {}); removal -> 404 took {:.1} ms",
            ms(second.elapsed),
            second.polls,
            seen_text(&second.seen),
            describe_app(&host, "greet2").await,
            ms(gone.elapsed)
        );
        warm.push(second.elapsed);
        host.shutdown().await;
    }
    print_min_median_max("cold deploy -> first 200", cold);
    print_min_median_max("warm deploy -> first 200", warm);
    Ok(())
}
