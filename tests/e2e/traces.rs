//! Traces: with `--otlp-endpoint`, each orchestration instance is one
//! trace (its root span, a span per task, a span per activity run, its
//! sub-orchestrations under their tasks), in the trace of the
//! `traceparent` that started it, exported by OTLP/HTTP to a collector
//! that decodes the protobuf here; activities' outbound requests carry the
//! trace on.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt as _, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use perdure_tests::{DURABLE, MASTER_KEY, TestHost, eventually, guests};
use prost::Message as _;

const DEADLINE: Duration = Duration::from_secs(30);

/// An OTLP/HTTP collector that keeps the spans it is sent, and an echo
/// service that keeps the `traceparent` of each request.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
    traceparents: Arc<Mutex<Vec<String>>>,
}

impl Collector {
    async fn start() -> anyhow::Result<(Self, SocketAddr)> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let collector = Self::default();
        let state = collector.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let state = state.clone();
                        async move {
                            let path = req.uri().path().to_owned();
                            let traceparent = req
                                .headers()
                                .get("traceparent")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned);
                            let body = req.into_body().collect().await?.to_bytes();
                            if path == "/v1/traces" {
                                if let Ok(request) = ExportTraceServiceRequest::decode(body) {
                                    let spans = request
                                        .resource_spans
                                        .into_iter()
                                        .flat_map(|r| r.scope_spans)
                                        .flat_map(|s| s.spans);
                                    lock(&state.spans).extend(spans);
                                }
                            } else if let Some(header) = traceparent {
                                lock(&state.traceparents).push(header);
                            }
                            Ok::<_, hyper::Error>(hyper::Response::new(Full::new(
                                Bytes::from_static(b"\"hello\""),
                            )))
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok((collector, addr))
    }

    fn spans(&self) -> Vec<Span> {
        lock(&self.spans).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Waits until the collector holds a span named `name`.
async fn span_named(collector: &Collector, name: &str) -> anyhow::Result<Span> {
    eventually(DEADLINE, &format!("a span named {name:?}"), || async {
        Ok(collector.spans().into_iter().find(|s| s.name == name))
    })
    .await
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|a| a.key == key).and_then(|a| {
        match a.value.as_ref()?.value.as_ref()? {
            opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s) => {
                Some(s.clone())
            }
            _ => None,
        }
    })
}

async fn traced_host(collector: SocketAddr) -> anyhow::Result<TestHost> {
    let host = TestHost::start_with(&[], |c| {
        c.otlp_endpoint = Some(format!("http://{collector}"));
    })
    .await?;
    let config = format!("[outbound]\nallowed_hosts = [\"http://{collector}\"]\n");
    host.deploy_configured("durable-probe", guests::DURABLE_PROBE, &config)
        .await?;
    Ok(host)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_is_one_trace_in_its_callers_trace_and_activities_carry_it_on()
-> anyhow::Result<()> {
    let (collector, addr) = Collector::start().await?;
    let host = traced_host(addr).await?;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let traceparent = format!("00-{trace_id}-{caller_span}-01");
    let url = format!("http://{addr}/echo");
    let r = host
        .request(
            Method::POST,
            &format!("{DURABLE}/orchestrators/Fetch"),
            &[
                ("x-functions-key", MASTER_KEY),
                ("traceparent", &traceparent),
            ],
            serde_json::to_string(&url)?,
        )
        .await?;
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()?["id"].as_str().unwrap_or_default().to_owned();
    let done = host.wait_for_instance(&id, DEADLINE).await?;
    assert_eq!(done["runtimeStatus"], "Completed", "{done}");

    let root = span_named(&collector, "orchestration Fetch").await?;
    let task = span_named(&collector, "activity FetchUrl").await?;
    let run = span_named(&collector, "run FetchUrl").await?;
    for span in [&root, &task, &run] {
        assert_eq!(hex(&span.trace_id), trace_id, "{}", span.name);
        assert!(span.start_time_unix_nano <= span.end_time_unix_nano);
    }
    assert_eq!(
        hex(&root.parent_span_id),
        caller_span,
        "the root's parent is the caller's span"
    );
    assert_eq!(task.parent_span_id, root.span_id);
    assert_eq!(run.parent_span_id, task.span_id);
    assert!(root.start_time_unix_nano <= task.start_time_unix_nano);
    assert!(task.start_time_unix_nano <= run.start_time_unix_nano);
    assert_eq!(
        attribute(&root, "perdure.instance_id").as_deref(),
        Some(id.as_str())
    );
    assert_eq!(
        attribute(&root, "perdure.status").as_deref(),
        Some("Completed")
    );
    assert_eq!(attribute(&run, "perdure.attempt").as_deref(), Some("1"));

    // The activity's request carried the trace on, naming its run span.
    let sent = lock(&collector.traceparents).clone();
    assert_eq!(
        sent,
        vec![format!("00-{trace_id}-{}-01", hex(&run.span_id))]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_orchestrations_timers_and_event_waits_join_the_parents_trace() -> anyhow::Result<()> {
    let (collector, addr) = Collector::start().await?;
    let host = traced_host(addr).await?;
    let parent = host.start_instance("Parent", r#"{"fail": false}"#).await?;
    host.wait_for_instance(&parent, DEADLINE).await?;
    let waited = host.start_instance("EventOrTimer", "30").await?;
    host.wait_for_instance(&waited, DEADLINE).await?;

    let parent_root = span_named(&collector, "orchestration Parent").await?;
    let child_task = span_named(&collector, "sub-orchestration Child").await?;
    let child_root = span_named(&collector, "orchestration Child").await?;
    let child_activity = span_named(&collector, "activity Echo").await?;
    assert_eq!(child_task.parent_span_id, parent_root.span_id);
    assert_eq!(
        child_root.parent_span_id, child_task.span_id,
        "the child hangs under its task"
    );
    assert_eq!(child_activity.parent_span_id, child_root.span_id);
    for span in [&child_task, &child_root, &child_activity] {
        assert_eq!(span.trace_id, parent_root.trace_id, "{}", span.name);
    }
    assert!(
        parent_root.parent_span_id.is_empty(),
        "started without a traceparent: a new trace"
    );

    let timer = span_named(&collector, "timer timer").await?;
    let event = span_named(&collector, "event Go").await?;
    let waited_root = span_named(&collector, "orchestration EventOrTimer").await?;
    assert_eq!(timer.parent_span_id, waited_root.span_id);
    assert_eq!(event.parent_span_id, waited_root.span_id);
    assert_eq!(
        attribute(&event, "perdure.outcome").as_deref(),
        Some("cancelled")
    );
    assert_ne!(
        waited_root.trace_id, parent_root.trace_id,
        "one trace per instance"
    );

    // Each span once: the two instances make eight (two roots, the child's
    // root, its task, the child's activity task and run, the timer, the
    // event wait), with distinct ids.
    let spans = eventually(DEADLINE, "eight spans", || async {
        let spans = collector.spans();
        Ok((spans.len() >= 8).then_some(spans))
    })
    .await?;
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(spans.len(), 8, "{names:?}");

    // Continue-as-new: each generation is a trace of its own.
    let eternal = host
        .start_instance("Generations", r#"{"generations": 3}"#)
        .await?;
    host.wait_for_instance(&eternal, DEADLINE).await?;
    let roots = eventually(DEADLINE, "three generations' roots", || async {
        let roots: Vec<Span> = collector
            .spans()
            .into_iter()
            .filter(|s| s.name == "orchestration Generations")
            .collect();
        Ok((roots.len() >= 3).then_some(roots))
    })
    .await?;
    let mut generations: Vec<(String, String)> = roots
        .iter()
        .map(|s| {
            (
                attribute(s, "perdure.generation").unwrap_or_default(),
                attribute(s, "perdure.status").unwrap_or_default(),
            )
        })
        .collect();
    generations.sort();
    assert_eq!(
        generations,
        [
            ("0".to_owned(), "ContinuedAsNew".to_owned()),
            ("1".to_owned(), "ContinuedAsNew".to_owned()),
            ("2".to_owned(), "Completed".to_owned()),
        ]
    );
    let traces: std::collections::HashSet<&Vec<u8>> = roots.iter().map(|s| &s.trace_id).collect();
    assert_eq!(traces.len(), 3);
    let mut seen = HashMap::new();
    for span in &spans {
        *seen.entry(span.span_id.clone()).or_insert(0) += 1;
    }
    assert!(
        seen.values().all(|n| *n == 1),
        "{:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
