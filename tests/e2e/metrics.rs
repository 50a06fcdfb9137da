//! `/metrics`: Prometheus text that a strict parser accepts, counters that
//! move as requests and instances run, and the master key unless the host
//! opened it.

use openmetrics_parser::prometheus::parse_prometheus;
use openmetrics_parser::{MetricsExposition, PrometheusType, PrometheusValue};
use perdure_tests::{TestHost, guests};

type Exposition = MetricsExposition<PrometheusType, PrometheusValue>;

async fn scrape(host: &TestHost) -> anyhow::Result<Exposition> {
    let r = host.get_admin("/metrics").await?;
    anyhow::ensure!(
        r.status == 200,
        "/metrics answered {}: {}",
        r.status,
        r.text()
    );
    let content_type = r
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    anyhow::ensure!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    parse_prometheus(&r.text())
        .map_err(|e| anyhow::anyhow!("unparsable metrics: {e:?}\n{}", r.text()))
}

/// The value of the sample of `family` whose labels include `labels`
/// (summed over the others); a histogram gives its count. 0 if none.
fn value(metrics: &Exposition, family: &str, labels: &[(&str, &str)]) -> f64 {
    let Some(family) = metrics.families.get(family) else {
        return 0.0;
    };
    family
        .iter_samples()
        .filter(|sample| {
            sample.get_labelset().is_ok_and(|set| {
                labels
                    .iter()
                    .all(|(name, value)| set.get_label_value(name) == Some(*value))
            })
        })
        .map(|sample| match &sample.value {
            PrometheusValue::Counter(c) => c.value.as_f64(),
            PrometheusValue::Gauge(n) | PrometheusValue::Unknown(n) => n.as_f64(),
            PrometheusValue::Histogram(h) => h.count.unwrap_or_default() as f64,
            PrometheusValue::Summary(s) => s.count.unwrap_or_default() as f64,
        })
        .sum()
}

const GREET_ROUTE: [(&str, &str); 3] = [
    ("route", "/api/greet"),
    ("method", "GET"),
    ("status", "200"),
];

#[tokio::test]
async fn metrics_parse_and_move_with_requests_and_instances() -> anyhow::Result<()> {
    let host = TestHost::start_with(
        &[
            ("greet.wasm", guests::GREET),
            ("fan-out-fan-in.wasm", guests::FAN_OUT_FAN_IN),
        ],
        |_| {},
    )
    .await?;
    let before = scrape(&host).await?;
    assert_eq!(value(&before, "perdure_apps_loaded", &[]), 2.0);
    assert_eq!(
        value(&before, "perdure_http_requests_total", &GREET_ROUTE),
        0.0
    );
    assert!(
        value(&before, "perdure_code_cache_lookups_total", &[]) >= 2.0,
        "each app's load looked its code up"
    );

    for _ in 0..3 {
        let r = host.get_admin("/api/greet?name=Ada").await?;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let r = host.get("/api/nowhere/at/all").await?;
    assert_eq!(r.status, 404);
    // Any token is a method to HTTP; the label keeps a bounded set.
    let made_up = http::Method::from_bytes(b"BREW")?;
    let r = host.request(made_up, "/api/nowhere", &[], "").await?;
    assert_eq!(r.status, 404);
    let id = host
        .start_instance("FanOutFanInOrchestrator", r#"{"count": 5}"#)
        .await?;
    let done = host
        .wait_for_instance(&id, std::time::Duration::from_secs(30))
        .await?;
    assert_eq!(done["runtimeStatus"], "Completed", "{done}");

    let after = scrape(&host).await?;
    assert_eq!(
        value(&after, "perdure_http_requests_total", &GREET_ROUTE),
        3.0
    );
    assert_eq!(
        value(
            &after,
            "perdure_http_request_duration_seconds",
            &[("route", "/api/greet")]
        ),
        3.0,
        "one latency observation per request"
    );
    assert_eq!(
        value(
            &after,
            "perdure_http_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        ),
        2.0,
        "an unknown path is counted under one bounded label"
    );
    assert_eq!(
        value(
            &after,
            "perdure_http_requests_total",
            &[("method", "other")]
        ),
        1.0
    );
    assert_eq!(
        value(&after, "perdure_http_requests_total", &[("method", "BREW")]),
        0.0
    );
    assert_eq!(
        value(
            &after,
            "perdure_http_requests_total",
            &[
                (
                    "route",
                    "/runtime/webhooks/durabletask/orchestrators/{name}"
                ),
                ("status", "202")
            ]
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "perdure_invocations_total",
            &[("function", "GreetFunction"), ("outcome", "ok")]
        ),
        3.0
    );
    assert_eq!(
        value(
            &after,
            "perdure_invocations_total",
            &[
                ("function", "ProcessTask"),
                ("kind", "activity"),
                ("outcome", "ok")
            ]
        ),
        5.0
    );
    assert_eq!(
        value(
            &after,
            "perdure_invocation_duration_seconds",
            &[("function", "ProcessTask")]
        ),
        5.0
    );
    assert!(
        value(
            &after,
            "perdure_instantiation_duration_seconds",
            &[("kind", "activity")]
        ) >= 5.0
    );
    assert_eq!(
        value(&after, "perdure_instances", &[("status", "Completed")]),
        1.0
    );
    assert_eq!(
        value(&after, "perdure_instances", &[("status", "Running")]),
        0.0
    );
    assert_eq!(value(&after, "perdure_work_items_queued", &[]), 0.0);
    assert!(
        value(&after, "perdure_db_commit_batch_jobs", &[])
            > value(&before, "perdure_db_commit_batch_jobs", &[]),
        "the instance's writes were committed"
    );
    assert!(value(&after, "perdure_db_commit_duration_seconds", &[]) >= 1.0);
    Ok(())
}

#[tokio::test]
async fn metrics_need_the_master_key_unless_opened() -> anyhow::Result<()> {
    let host = TestHost::start().await?;
    let r = host.get("/metrics").await?;
    assert_eq!(r.status, 401, "{}", r.text());
    let r = host
        .request(
            http::Method::GET,
            "/metrics",
            &[("x-functions-key", "not-the-key")],
            "",
        )
        .await?;
    assert_eq!(r.status, 401, "{}", r.text());
    drop(host);

    let open = TestHost::start_with(&[], |c| c.metrics_open = true).await?;
    let r = open.get("/metrics").await?;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("perdure_instances"), "{}", r.text());
    let r = open.get("/admin/functions").await?;
    assert_eq!(
        r.status,
        401,
        "opening metrics opens nothing else: {}",
        r.text()
    );
    Ok(())
}
