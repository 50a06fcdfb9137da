//! The host's metrics, served at `/metrics` in Prometheus text format
//! (version 0.0.4) with `prometheus-client`.
//!
//! Invariants:
//! - One [`Metrics`] per host (hosts embedded in one process, as the tests
//!   run them, do not mix their figures).
//! - Every label value comes from a bounded set: route templates (never raw
//!   paths), loaded function names, fixed outcome and status names.
//! - Counters and histograms are updated where the work happens; the
//!   figures that describe the database (instances by status, queues,
//!   timers) are read from it at scrape time ([`Sampled`]), so they are
//!   true after a restart.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry, Unit};

use crate::model::FunctionKind;
use perdure_records::RuntimeStatus;

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Buckets for request and invocation durations, in seconds: 100 µs to
/// 60 s.
const SECONDS_BUCKETS: [f64; 18] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// Buckets for the jobs of one database commit.
const BATCH_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

fn seconds_histogram() -> Histogram {
    Histogram::new(SECONDS_BUCKETS)
}

type SecondsFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn seconds_family<L: Clone + std::hash::Hash + Eq>() -> SecondsFamily<L> {
    Family::new_with_constructor(seconds_histogram as fn() -> _)
}

/// How an invocation ended, as the `outcome` label spells it.
/// `stopped` is an orchestrator run the host ended (eviction, shutdown):
/// not a failure.
pub const OUTCOMES: [&str; 8] = [
    "ok",
    "stopped",
    "error",
    "trapped",
    "timeout",
    "memory",
    "overloaded",
    "output-too-large",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: Cow<'static, str>,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: Cow<'static, str>,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InvocationLabels {
    app: Arc<str>,
    function: Arc<str>,
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionLabels {
    app: Arc<str>,
    function: Arc<str>,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

/// The database writer's figures, shared with the storage that records
/// them.
#[derive(Clone, Debug)]
pub struct CommitMetrics {
    /// Jobs (writes) per committed transaction.
    pub batch_jobs: Histogram,
    /// Time of one transaction's `COMMIT` (the fsync), in seconds.
    pub commit_seconds: Histogram,
}

impl perdure_storage::CommitObserver for CommitMetrics {
    fn committed(&self, jobs: usize, commit: Duration) {
        self.commit_seconds.observe(commit.as_secs_f64());
        self.batch_jobs.observe(jobs as f64);
    }
}

impl Default for CommitMetrics {
    fn default() -> Self {
        Self {
            batch_jobs: Histogram::new(BATCH_BUCKETS),
            commit_seconds: seconds_histogram(),
        }
    }
}

/// Figures read at scrape time from the database and the engine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sampled {
    pub backlog: perdure_storage::Backlog,
    /// Age of the oldest queued work item.
    pub oldest_work_item: Option<Duration>,
    pub apps_loaded: u64,
    pub load_failures: u64,
    pub hot_instances: u64,
    /// The partition leases, on a database several hosts share.
    pub placement: Option<perdure_storage::placement::PlacementCounters>,
}

/// Invocations of one function, by outcome (for the dashboard).
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InvocationCounts {
    pub total: u64,
    pub failed: u64,
    /// Count per outcome name of [`OUTCOMES`], zeros left out.
    pub by_outcome: std::collections::BTreeMap<&'static str, u64>,
}

/// Every metric of one host.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_seconds: SecondsFamily<RouteLabels>,
    invocations: Family<InvocationLabels, Counter>,
    invocation_seconds: SecondsFamily<FunctionLabels>,
    instantiation_seconds: SecondsFamily<KindLabels>,
    code_cache: Family<ResultLabels, Counter>,
    commits: CommitMetrics,
    instances: Family<StatusLabels, Gauge>,
    work_items: Gauge,
    work_item_age: Gauge<f64, AtomicU64>,
    timers_pending: Gauge,
    entity_messages: Gauge,
    apps_loaded: Gauge,
    load_failures: Gauge,
    hot_instances: Gauge,
    partitions_held: Gauge,
    lease_renewals: Counter,
    partitions_gained: Counter,
    partitions_lost: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn kind_name(kind: FunctionKind) -> &'static str {
    match kind {
        FunctionKind::Http => "http",
        FunctionKind::Orchestrator => "orchestrator",
        FunctionKind::Activity => "activity",
        FunctionKind::Entity => "entity",
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("perdure");
        let mut add = Register(&mut registry);
        let http_requests = add.metric(
            "http_requests",
            "HTTP requests answered, by route template, method and status",
            Family::default(),
        );
        let http_seconds = add.seconds(
            "http_request_duration",
            "Time from a request's arrival to its response, by route template and method",
            seconds_family(),
        );
        let invocations = add.metric(
            "invocations",
            "Function invocations, by app, function, kind and outcome",
            Family::default(),
        );
        let invocation_seconds = add.seconds(
            "invocation_duration",
            "Time of one invocation, instantiation included (an orchestrator's runs as long as its session)",
            seconds_family(),
        );
        let instantiation_seconds = add.seconds(
            "instantiation_duration",
            "Time to instantiate a component in a fresh store, by function kind",
            seconds_family(),
        );
        let code_cache = add.metric(
            "code_cache_lookups",
            "Loads of an app version: compiled code found in the cache (hit) or compiled (miss)",
            Family::default(),
        );
        let defaults = CommitMetrics::default();
        let commits = CommitMetrics {
            batch_jobs: add.metric(
                "db_commit_batch_jobs",
                "Writes committed together in one database transaction (group commit)",
                defaults.batch_jobs,
            ),
            commit_seconds: add.seconds(
                "db_commit_duration",
                "Time of one database COMMIT, the fsync included",
                defaults.commit_seconds,
            ),
        };
        let instances = add.metric(
            "instances",
            "Orchestration instances in the database, by runtime status",
            Family::default(),
        );
        let work_items = add.metric(
            "work_items_queued",
            "Activity work items not yet completed (queued, leased or waiting to retry)",
            Gauge::default(),
        );
        let work_item_age = add.seconds(
            "work_item_oldest_age",
            "Age of the oldest work item not yet completed (0 when there is none)",
            Gauge::<f64, AtomicU64>::default(),
        );
        let timers_pending = add.metric(
            "timers_pending",
            "Durable timers (and retry and restart timers) not yet fired",
            Gauge::default(),
        );
        let entity_messages = add.metric(
            "entity_messages_queued",
            "Entity operations, signals and lock messages not yet processed",
            Gauge::default(),
        );
        let apps_loaded = add.metric("apps_loaded", "Function apps serving", Gauge::default());
        let load_failures = add.metric(
            "app_load_failures",
            "Files in the functions folder whose latest version failed to load",
            Gauge::default(),
        );
        let hot_instances = add.metric(
            "hot_instances",
            "Orchestration instances held in memory",
            Gauge::default(),
        );
        let partitions_held = add.metric(
            "partitions_held",
            "Partitions of a shared database this host holds (0 on SQLite)",
            Gauge::default(),
        );
        let lease_renewals = add.metric(
            "lease_renewals",
            "Renewals of this host's partition leases",
            Counter::default(),
        );
        let partitions_gained = add.metric(
            "partitions_gained",
            "Partitions this host took: at start, and over from hosts that left or died",
            Counter::default(),
        );
        let partitions_lost = add.metric(
            "partitions_lost",
            "Partitions this host gave back or that another host took over",
            Counter::default(),
        );
        Self {
            registry,
            partitions_held,
            lease_renewals,
            partitions_gained,
            partitions_lost,
            http_requests,
            http_seconds,
            invocations,
            invocation_seconds,
            instantiation_seconds,
            code_cache,
            commits,
            instances,
            work_items,
            work_item_age,
            timers_pending,
            entity_messages,
            apps_loaded,
            load_failures,
            hot_instances,
        }
    }

    /// The histograms the database writer records into.
    pub fn commits(&self) -> CommitMetrics {
        self.commits.clone()
    }

    /// One answered HTTP request; `route` is its route template.
    pub fn http_request(
        &self,
        route: Cow<'static, str>,
        method: &str,
        status: u16,
        elapsed: Duration,
    ) {
        let labels = RouteLabels {
            route,
            method: method_label(method),
        };
        self.http_seconds
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        let RouteLabels { route, method } = labels;
        self.http_requests
            .get_or_create(&HttpLabels {
                route,
                method,
                status,
            })
            .inc();
    }

    /// One invocation that ended with `outcome` (one of [`OUTCOMES`]).
    pub fn invocation(
        &self,
        app: &Arc<str>,
        function: &Arc<str>,
        kind: FunctionKind,
        outcome: &'static str,
        elapsed: Duration,
    ) {
        let kind = kind_name(kind);
        self.invocations
            .get_or_create(&InvocationLabels {
                app: app.clone(),
                function: function.clone(),
                kind,
                outcome,
            })
            .inc();
        self.invocation_seconds
            .get_or_create(&FunctionLabels {
                app: app.clone(),
                function: function.clone(),
                kind,
            })
            .observe(elapsed.as_secs_f64());
    }

    pub fn instantiation(&self, kind: FunctionKind, elapsed: Duration) {
        self.instantiation_seconds
            .get_or_create(&KindLabels {
                kind: kind_name(kind),
            })
            .observe(elapsed.as_secs_f64());
    }

    pub fn code_cache(&self, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.code_cache
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// Invocations of one function so far, by outcome.
    pub fn invocation_counts(
        &self,
        app: &str,
        function: &str,
        kind: FunctionKind,
    ) -> InvocationCounts {
        let (app, function): (Arc<str>, Arc<str>) = (app.into(), function.into());
        let mut counts = InvocationCounts::default();
        for outcome in OUTCOMES {
            let labels = InvocationLabels {
                app: app.clone(),
                function: function.clone(),
                kind: kind_name(kind),
                outcome,
            };
            let n = self.invocations.get(&labels).map_or(0, |c| c.get());
            if n > 0 {
                counts.by_outcome.insert(outcome, n);
                counts.total += n;
                if !matches!(outcome, "ok" | "stopped") {
                    counts.failed += n;
                }
            }
        }
        counts
    }

    /// The text exposition of every metric, with `sampled` as the figures
    /// read at scrape time.
    pub fn render(&self, sampled: &Sampled) -> String {
        let backlog = &sampled.backlog;
        for status in RuntimeStatus::ALL {
            self.instances
                .get_or_create(&StatusLabels {
                    status: status.as_str(),
                })
                .set(gauge_value(backlog.count(status)));
        }
        self.work_items.set(gauge_value(backlog.work_items));
        self.work_item_age.set(
            sampled
                .oldest_work_item
                .map_or(0.0, |age| age.as_secs_f64()),
        );
        self.timers_pending.set(gauge_value(backlog.timers));
        self.entity_messages
            .set(gauge_value(backlog.entity_messages));
        self.apps_loaded.set(gauge_value(sampled.apps_loaded));
        self.load_failures.set(gauge_value(sampled.load_failures));
        self.hot_instances.set(gauge_value(sampled.hot_instances));
        if let Some(placement) = &sampled.placement {
            self.partitions_held.set(gauge_value(placement.held));
            // Counted by the leases; the counters catch up at each scrape.
            for (counter, total) in [
                (&self.lease_renewals, placement.renewals),
                (&self.partitions_gained, placement.gained),
                (&self.partitions_lost, placement.lost),
            ] {
                counter.inc_by(total.saturating_sub(counter.get()));
            }
        }
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry);
        text
    }
}

/// Registers metrics and hands back the handle kept to update them (the
/// registry holds a clone that shares its state).
struct Register<'a>(&'a mut Registry);

impl Register<'_> {
    fn metric<M: Metric + Clone>(&mut self, name: &str, help: &str, metric: M) -> M {
        self.0.register(name, help, metric.clone());
        metric
    }

    fn seconds<M: Metric + Clone>(&mut self, name: &str, help: &str, metric: M) -> M {
        self.0
            .register_with_unit(name, help, Unit::Seconds, metric.clone());
        metric
    }
}

/// The `method` label: a standard method's name, or `other` (a client may
/// send any token as a method; labels must stay a bounded set).
fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
    ];
    KNOWN
        .into_iter()
        .find(|known| *known == method)
        .unwrap_or("other")
}

fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_renders_with_route_templates_as_labels() {
        let metrics = Metrics::new();
        metrics.http_request("/api/greet".into(), "GET", 200, Duration::from_millis(2));
        let (app, function): (Arc<str>, Arc<str>) = ("hello".into(), "Greet".into());
        metrics.invocation(
            &app,
            &function,
            FunctionKind::Http,
            "ok",
            Duration::from_millis(1),
        );
        metrics.invocation(
            &app,
            &function,
            FunctionKind::Http,
            "trapped",
            Duration::from_millis(1),
        );
        let counts = metrics.invocation_counts("hello", "Greet", FunctionKind::Http);
        assert_eq!((counts.total, counts.failed), (2, 1));
        let text = metrics.render(&Sampled {
            backlog: perdure_storage::Backlog {
                instances: vec![(RuntimeStatus::Running, 3)],
                ..Default::default()
            },
            ..Sampled::default()
        });
        assert!(text.contains(
            r#"perdure_http_requests_total{route="/api/greet",method="GET",status="200"} 1"#
        ));
        assert!(text.contains(r#"perdure_instances{status="Running"} 3"#));
        assert!(text.contains(r#"perdure_instances{status="Completed"} 0"#));
    }
}
