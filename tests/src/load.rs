//! A load generator for the benchmarks: many HTTP/1.1 keep-alive
//! connections (hyper's client connection, one task each) issuing GETs back
//! to back, with latency statistics.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Latency statistics of a set of samples.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub count: usize,
    pub mean: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Summary {
    pub fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        let count = samples.len();
        let total: Duration = samples.iter().sum();
        let mean = if count == 0 {
            Duration::ZERO
        } else {
            total / u32::try_from(count).unwrap_or(u32::MAX)
        };
        Self {
            count,
            mean,
            p50: percentile(&samples, 50.0),
            p99: percentile(&samples, 99.0),
            max: samples.last().copied().unwrap_or_default(),
        }
    }
}

/// Nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let n = sorted.len();
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// What to send, how hard and for how long.
#[derive(Debug, Clone)]
pub struct Load {
    pub addr: SocketAddr,
    /// Path and query of every request.
    pub path: String,
    /// Sent as `x-functions-key` if set.
    pub key: Option<String>,
    /// A 200 with another body counts as an error.
    pub expected_body: Option<String>,
    pub connections: usize,
    /// Requests per second over all connections, sent on a fixed schedule
    /// (an open loop); `None` sends each connection's requests back to
    /// back (a closed loop, as fast as the server answers).
    pub rate: Option<f64>,
    /// Requests before this are not measured.
    pub warmup: Duration,
    pub duration: Duration,
}

/// The greet example's request, as the benchmarks send it (with the
/// master key), and the answer it must get.
pub const GREET_PATH: &str = "/api/greet?name=x";
pub const GREET_ANSWER: &str = "Hello, x. This HTTP triggered function executed successfully.";

impl Load {
    /// `GET` [`GREET_PATH`] with the test master key, expecting
    /// [`GREET_ANSWER`].
    pub fn greet(
        addr: SocketAddr,
        connections: usize,
        warmup: Duration,
        duration: Duration,
    ) -> Self {
        Self {
            addr,
            path: GREET_PATH.to_owned(),
            key: Some(crate::MASTER_KEY.to_owned()),
            expected_body: Some(GREET_ANSWER.to_owned()),
            connections,
            rate: None,
            warmup,
            duration,
        }
    }

    /// The same load sent at `rate` requests per second in all: each
    /// connection sends on its own fixed schedule, and a request sent late
    /// because a slow answer held its connection counts its latency from
    /// when it was due, so that time is measured rather than hidden (see
    /// `Schedule::next`).
    pub fn paced(self, rate: f64) -> Self {
        Self {
            rate: Some(rate),
            ..self
        }
    }
}

/// What the measured part of a load saw.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// 200s with the expected body per second.
    pub rps: f64,
    /// Latencies of those 200s.
    pub summary: Summary,
    /// 429 and 503 answers that carried `Retry-After`: load shed.
    pub shed: u64,
    /// Anything else: other statuses, wrong bodies, connection errors.
    pub errors: BTreeMap<String, u64>,
    pub connections: u64,
}

impl LoadReport {
    /// Requests answered at all (served or shed).
    pub fn answered(&self) -> u64 {
        self.summary.count as u64 + self.shed
    }

    pub fn print(&self, label: &str) {
        println!(
            "{label:<14} {:>9.0} req/s  p50 {:>7.3} ms  p99 {:>7.3} ms  mean {:>7.3} ms  max {:>8.3} ms  ({} ok responses, {} shed, {} connections opened)",
            self.rps,
            ms(self.summary.p50),
            ms(self.summary.p99),
            ms(self.summary.mean),
            ms(self.summary.max),
            self.summary.count,
            self.shed,
            self.connections
        );
        if self.errors.is_empty() {
            println!("{:<14} errors: none", "");
        } else {
            for (what, n) in &self.errors {
                println!("{:<14} error x{n}: {what}", "");
            }
        }
    }
}

#[derive(Default)]
struct Worker {
    latencies: Vec<Duration>,
    shed: u64,
    errors: BTreeMap<String, u64>,
    connections: u64,
}

impl Worker {
    fn error(&mut self, what: String) {
        *self.errors.entry(what).or_default() += 1;
    }
}

/// Runs `load` and reports its measured part.
pub async fn run(load: &Load) -> anyhow::Result<LoadReport> {
    let measure_from = Instant::now() + load.warmup;
    let end = measure_from + load.duration;
    let workers: Vec<_> = (0..load.connections)
        .map(|index| {
            let schedule = Schedule::new(load, index);
            tokio::spawn(connection(load.clone(), schedule, measure_from, end))
        })
        .collect();
    let mut report = LoadReport::default();
    let mut latencies = Vec::new();
    for worker in workers {
        let worker = worker.await?;
        latencies.extend(worker.latencies);
        report.shed += worker.shed;
        for (what, n) in worker.errors {
            *report.errors.entry(what).or_default() += n;
        }
        report.connections += worker.connections;
    }
    report.summary = Summary::of(latencies);
    report.rps = report.summary.count as f64 / load.duration.as_secs_f64();
    Ok(report)
}

async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Empty<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// When one connection sends its requests.
enum Schedule {
    /// Each as soon as the previous one is answered.
    BackToBack,
    /// One every `every`, the first at `next`.
    Paced { next: Instant, every: Duration },
}

impl Schedule {
    /// Connection `index`'s share of `load`: paced connections are
    /// staggered evenly over one period so that they do not send in bursts.
    fn new(load: &Load, index: usize) -> Self {
        match load.rate {
            Some(rate) if rate > 0.0 => {
                let every = Duration::from_secs_f64(load.connections as f64 / rate);
                let offset = every.mul_f64(index as f64 / load.connections as f64);
                Self::Paced {
                    next: Instant::now() + offset,
                    every,
                }
            }
            _ => Self::BackToBack,
        }
    }

    /// Waits until the next request is due; returns the time its latency
    /// counts from: when it was due if that had already passed (the server
    /// kept it waiting), else when the wait ended (tokio's timers round up
    /// to the millisecond: the generator's lateness, not the server's).
    async fn next(&mut self) -> Instant {
        match self {
            Self::BackToBack => Instant::now(),
            Self::Paced { next, every } => {
                let due = *next;
                *next += *every;
                if due <= Instant::now() {
                    return due;
                }
                tokio::time::sleep_until(due.into()).await;
                Instant::now()
            }
        }
    }
}

/// One connection issuing requests on `schedule` until `end` (opening a
/// new one when the server closes it); records the requests due after
/// `measure_from` that finish before `end`.
async fn connection(
    load: Load,
    mut schedule: Schedule,
    measure_from: Instant,
    end: Instant,
) -> Worker {
    let mut worker = Worker::default();
    let host = load.addr.to_string();
    'connect: while Instant::now() < end {
        let mut sender = match connect(load.addr).await {
            Ok(sender) => sender,
            Err(e) => {
                if Instant::now() >= measure_from {
                    worker.error(format!("connect: {e}"));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        worker.connections += 1;
        loop {
            let mut request = Request::builder()
                .method(Method::GET)
                .uri(&load.path)
                .header(header::HOST, &host);
            if let Some(key) = &load.key {
                request = request.header("x-functions-key", key);
            }
            let Ok(request) = request.body(Empty::new()) else {
                worker.error(format!("invalid request path {}", load.path));
                break 'connect;
            };
            let started = schedule.next().await;
            if started >= end {
                break 'connect;
            }
            let outcome = async {
                sender.ready().await?;
                let response = sender.send_request(request).await?;
                let status = response.status();
                let retry_after = response.headers().contains_key(header::RETRY_AFTER);
                let closing = response
                    .headers()
                    .get(header::CONNECTION)
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
                let body = response.into_body().collect().await?.to_bytes();
                Ok::<_, hyper::Error>((status, retry_after, closing, body))
            }
            .await;
            let finished = Instant::now();
            let measured = started >= measure_from && finished <= end;
            match outcome {
                // A connection the server closes (e.g. after refusing it)
                // is opened again, measured or not.
                Ok((_, _, true, _)) if !measured => continue 'connect,
                Ok(_) if !measured => {}
                Ok((StatusCode::OK, _, _, body)) => match &load.expected_body {
                    Some(expected) if body != expected.as_bytes() => worker.error(format!(
                        "unexpected body {:?}",
                        String::from_utf8_lossy(&body)
                    )),
                    _ => worker.latencies.push(finished - started),
                },
                Ok((
                    StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE,
                    true,
                    closing,
                    _,
                )) => {
                    worker.shed += 1;
                    // A refused connection is closed after its answer.
                    if closing {
                        continue 'connect;
                    }
                }
                Ok((status, _, _, _)) => worker.error(format!("HTTP {status}")),
                Err(e) => {
                    if measured || Instant::now() >= measure_from {
                        worker.error(format!("request: {e}"));
                    }
                    continue 'connect;
                }
            }
        }
    }
    worker
}
