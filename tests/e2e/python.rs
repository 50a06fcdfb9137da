//! Python function apps (`examples-python/`, `tests/guests-python/`), built
//! with componentize-py: the examples answer as the Rust ones do, their
//! orchestrations survive a SIGKILL and replay deterministically, hostile
//! Python is contained, and CPython's size fits the sandbox's slots.

use std::time::Duration;

use http::Method;
use perdure_tests::child::{ChildHost, LogLines};
use perdure_tests::{DURABLE, MASTER_KEY, TestHost, eventually, guests, python};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(60);
const CHILD: &str = env!("CARGO_BIN_EXE_perdure-child");

/// The Rust example apps the Python ones are compared with, and the Python
/// examples; `None` when the Python apps were not built (and not required).
async fn side_by_side() -> anyhow::Result<Option<TestHost>> {
    let Some(py) = python::app(guests::PY_EXAMPLES)? else {
        return Ok(None);
    };
    let apps = [
        ("greet.wasm", guests::GREET),
        ("orders.wasm", guests::ORDERS),
        ("fan-out-fan-in.wasm", guests::FAN_OUT_FAN_IN),
        ("approval.wasm", guests::APPROVAL),
        ("counter.wasm", guests::COUNTER),
        ("py-examples.wasm", py),
    ];
    Ok(Some(python::host(&apps, |_| {}).await?))
}

/// `value` with the Python examples' `Py` prefix taken out of every name.
fn unprefixed(value: &Value) -> Value {
    serde_json::from_str(&value.to_string().replace("Py", "")).unwrap_or(Value::Null)
}

/// Runs orchestrator `name` and its `Py` twin on `input`; asserts that
/// they end alike and returns the Rust one's status.
async fn same_run(host: &TestHost, name: &str, input: &str) -> anyhow::Result<Value> {
    let rust = host.run_orchestration(name, input).await?;
    let py = host.run_orchestration(&format!("Py{name}"), input).await?;
    for field in ["runtimeStatus", "output", "customStatus"] {
        assert_eq!(
            unprefixed(&py[field]),
            rust[field],
            "{name}({input}) {field}: Python {py} vs Rust {rust}"
        );
    }
    Ok(rust)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_examples_answer_as_the_rust_ones_do() -> anyhow::Result<()> {
    let Some(host) = side_by_side().await? else {
        return Ok(());
    };
    let key = [("x-functions-key", MASTER_KEY)];

    // Greet: query, body, neither, and a body that is not JSON.
    for (method, query, body) in [
        (Method::GET, "?name=Ada", ""),
        (Method::POST, "", r#"{"name":"Grace"}"#),
        (Method::GET, "", ""),
        (Method::POST, "", "{not json"),
    ] {
        let rust = host
            .request(method.clone(), &format!("/api/greet{query}"), &key, body)
            .await?;
        let py = host
            .request(method.clone(), &format!("/api/py/greet{query}"), &key, body)
            .await?;
        assert_eq!(
            py.status,
            rust.status,
            "{method} {query} {body}: {}",
            py.text()
        );
        if rust.status == 200 {
            assert_eq!(py.text(), rust.text());
        } else {
            assert_eq!(py.error_code(), rust.error_code(), "{}", py.text());
        }
    }
    let anonymous = host.get("/api/py/greet?name=Ada").await?;
    assert_eq!(anonymous.status, 401, "auth=\"function\" needs a key");

    // Every branch of the order, and the chained workflow.
    let order = |id: &str, item: &str, quantity: i64, amount: f64| {
        json!({"id": id, "item": item, "quantity": quantity, "amount": amount,
               "customerEmail": "a@example.com"})
        .to_string()
    };
    for input in [
        order("o-1", "book", 2, 30.5),
        order("o-2", "book", 0, 30.5),
        order("o-3", "out-of-stock", 1, 30.5),
        order("o-4", "book", 1, 3000.5),
    ] {
        let status = same_run(&host, "ProcessOrderOrchestrator", &input).await?;
        assert_eq!(status["runtimeStatus"], "Completed", "{status}");
        let status = same_run(&host, "OrderWorkflow", &input).await?;
        assert!(status["runtimeStatus"].is_string(), "{status}");
    }

    // Fan-out/fan-in keeps task order.
    let status = same_run(&host, "FanOutFanInOrchestrator", r#"{"count": 12}"#).await?;
    assert_eq!(status["output"][11], "Task12 completed");
    same_run(&host, "FanOutFanInOrchestrator", "null").await?;

    // Approval: approved, rejected, escalated.
    for (answer, outcome) in [
        (Some(true), "approved"),
        (Some(false), "rejected"),
        (None, "escalated"),
    ] {
        let timeout = if answer.is_some() { 3600.0 } else { 0.2 };
        let input = json!({"document": "Q3 report", "timeoutSeconds": timeout}).to_string();
        let mut outputs = Vec::new();
        for name in [
            "DocumentApprovalOrchestrator",
            "PyDocumentApprovalOrchestrator",
        ] {
            let id = format!("{name}-{outcome}");
            let r = host.start_orchestration(name, Some(&id), &input).await?;
            assert_eq!(r.status, 202, "{}", r.text());
            if let Some(approved) = answer {
                host.wait_for_status(&id, "the approval to wait", |s| {
                    s["customStatus"]["waitingFor"] == "ApprovalEvent"
                })
                .await?;
                let r = host
                    .raise_event(
                        &id,
                        "ApprovalEvent",
                        &json!({ "approved": approved }).to_string(),
                    )
                    .await?;
                assert!(r.status < 300, "{}", r.text());
            }
            let status = host.wait_for_instance(&id, DEADLINE).await?;
            assert_eq!(status["output"]["outcome"], outcome, "{status}");
            let mut output = status["output"].clone();
            output["document"]["id"] = Value::Null;
            outputs.push(output);
        }
        assert_eq!(outputs[0], outputs[1], "approval {outcome}");
    }

    // Counters: concurrent signals each count exactly once.
    const SIGNALS: usize = 40;
    for route in ["counters", "py/counters"] {
        let path = format!("/api/{route}/c1");
        let sends = (0..SIGNALS).map(|_| host.request(Method::POST, &path, &key, "1"));
        for r in futures::future::join_all(sends).await {
            let r = r?;
            assert_eq!(r.status, 202, "{route}: {}", r.text());
        }
        let count = eventually(
            DEADLINE,
            &format!("{route}/c1 to count {SIGNALS}"),
            || async {
                let r = host
                    .request(Method::GET, &format!("/api/{route}/c1"), &key, "")
                    .await?;
                let body = r.json().unwrap_or_default();
                Ok((body["count"] == SIGNALS).then_some(body))
            },
        )
        .await?;
        assert_eq!(count["key"], "c1");
        let missing = host
            .request(Method::GET, &format!("/api/{route}/none"), &key, "")
            .await?;
        assert_eq!(
            missing.status, 404,
            "{route}: reading a counter does not create it"
        );
    }
    Ok(())
}

/// The test guests on a host with default limits but for `configure`.
async fn guests_host(
    configure: impl FnOnce(&mut perdure::HostConfig),
) -> anyhow::Result<Option<TestHost>> {
    let Some(py) = python::app(guests::PY_GUESTS)? else {
        return Ok(None);
    };
    Ok(Some(
        python::host(&[("py-guests.wasm", py)], configure).await?,
    ))
}

async fn start_probe(host: &TestHost, id: &str) -> anyhow::Result<()> {
    let r = host
        .start_orchestration("PyTReplayProbe", Some(id), "null")
        .await?;
    anyhow::ensure!(r.status == 202, "start {id}: {}", r.text());
    host.wait_for_status(id, &format!("{id} to wait"), |s| {
        s["customStatus"] == "waiting"
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_clock_randomness_iteration_and_hashing_replay_identically() -> anyhow::Result<()> {
    let Some(mut host) = guests_host(|_| {}).await? else {
        return Ok(());
    };
    for id in ["probe-1", "probe-2"] {
        start_probe(&host, id).await?;
    }
    // A restart evicts both: they resume by replaying their journals,
    // whose first activity's input is everything the probe computed.
    host.restart().await?;
    let mut fingerprints = Vec::new();
    for id in ["probe-1", "probe-2"] {
        let r = host.raise_event(id, "Go", "\"go\"").await?;
        assert!(r.status < 300, "{}", r.text());
        let status = host.wait_for_instance(id, DEADLINE).await?;
        assert_eq!(
            status["runtimeStatus"], "Completed",
            "no nondeterminism: {status}"
        );
        fingerprints.push(status["output"]["before"].clone());
    }
    let (a, b) = (&fingerprints[0], &fingerprints[1]);
    for field in ["random", "randbytes", "urandom", "uuid"] {
        assert_ne!(
            a[field], b[field],
            "instances draw different numbers: {field}"
        );
    }
    assert_eq!(a["hash"], b["hash"], "one build, one hash seed");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_builds_of_one_python_source_pass_the_upgrade_replay_check() -> anyhow::Result<()> {
    let (Some(v1), Some(v2)) = (
        python::app(guests::PY_GUESTS)?,
        python::app(guests::PY_GUESTS_REBUILT)?,
    ) else {
        return Ok(());
    };
    python::host(&[("py-guests.wasm", v2)], |_| {})
        .await?
        .shutdown()
        .await;
    let host = python::host(&[("py-guests.wasm", v1)], |_| {}).await?;
    start_probe(&host, "upgraded").await?;
    let before = host.app_status("py-guests").await?.unwrap_or_default()["digest"].clone();
    host.deploy("py-guests.wasm", v2)?;
    let after = eventually(DEADLINE, "the second build to load", || async {
        let digest = host.app_status("py-guests").await?.unwrap_or_default()["digest"].clone();
        Ok((digest.is_string() && digest != before).then_some(digest))
    })
    .await;
    let Ok(after) = after else {
        // The builds came out byte-identical: nothing to upgrade.
        assert_eq!(std::fs::read(v1)?, std::fs::read(v2)?);
        return Ok(());
    };
    let r = host
        .send_with_master_key(Method::POST, "/admin/instances/upgraded/upgrade", "")
        .await?;
    assert_eq!(r.status, 200, "the replay check passes: {}", r.text());
    assert_eq!(r.json()?["toDigest"], after);
    host.raise_event("upgraded", "Go", "1").await?;
    let status = host.wait_for_instance("upgraded", DEADLINE).await?;
    assert_eq!(status["runtimeStatus"], "Completed", "{status}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_python_is_contained_and_the_rest_keeps_serving() -> anyhow::Result<()> {
    let Some(host) = guests_host(|c| {
        c.sandbox.timeout = Duration::from_secs(3);
        c.sandbox.memory_bytes = 64 << 20;
        c.sandbox.max_output_bytes = 1 << 20;
    })
    .await?
    else {
        return Ok(());
    };
    let cases = [
        ("spin", "timeout", "3s"),
        ("hog", "resource-exhausted", "64 MiB"),
        ("huge?mib=2", "resource-exhausted", "larger than the limit"),
        ("raise", "application", "ValueError: the guest raised"),
        ("recurse", "application", "RecursionError"),
    ];
    for (act, code, says) in cases {
        let r = host.get(&format!("/api/py-hostile/{act}")).await?;
        assert_eq!(
            (r.status, r.error_code().as_deref()),
            (500, Some(code)),
            "{act}: {}",
            r.text()
        );
        assert!(r.error_message().contains(says), "{act}: {}", r.text());
        let id = host.start_instance("PyTWaiter", "\"after\"").await?;
        host.raise_event(&id, "Go", "1").await?;
        let status = host.wait_for_instance(&id, DEADLINE).await?;
        assert_eq!(status["output"], "after: 1", "after {act}: {status}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_python_orchestrations_wait_at_once_at_the_default_limits() -> anyhow::Result<()>
{
    const WAITING: usize = 200;
    let Some(host) = guests_host(|c| c.sandbox = perdure::SandboxLimits::default()).await? else {
        return Ok(());
    };
    for i in 0..WAITING {
        let r = host
            .start_orchestration("PyTWaiter", Some(&format!("w-{i}")), &format!("\"w-{i}\""))
            .await?;
        assert_eq!(r.status, 202, "{}", r.text());
    }
    eventually(DEADLINE, "every waiter to run", || async {
        let mut running = 0;
        for i in 0..WAITING {
            let status = host.instance(&format!("w-{i}")).await?.unwrap_or_default();
            running += usize::from(status["runtimeStatus"] == "Running");
        }
        Ok((running == WAITING).then_some(()))
    })
    .await?;
    let r = host.get("/api/py-hostile/none").await?;
    assert_eq!(
        r.status,
        404,
        "Python HTTP is served while they wait: {}",
        r.text()
    );
    for i in 0..WAITING {
        host.raise_event(&format!("w-{i}"), "Go", &i.to_string())
            .await?;
    }
    for i in 0..WAITING {
        let status = host.wait_for_instance(&format!("w-{i}"), DEADLINE).await?;
        assert_eq!(status["output"], format!("w-{i}: {i}"), "{status}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_three_slots_a_python_app_loads_and_runs() -> anyhow::Result<()> {
    let Some(host) = guests_host(|c| c.sandbox.max_instances = 3).await? else {
        return Ok(());
    };
    let app = host.app_status("py-guests").await?.unwrap_or_default();
    assert!(app["digest"].is_string(), "loaded: {app}");
    let id = host.start_instance("PyTWaiter", "\"small\"").await?;
    host.wait_for_status(&id, "the waiter to run", |s| {
        s["runtimeStatus"] == "Running"
    })
    .await?;
    host.raise_event(&id, "Go", "3").await?;
    let status = host.wait_for_instance(&id, DEADLINE).await?;
    assert_eq!(status["output"], "small: 3", "{status}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_orchestrations_complete_after_a_sigkill() -> anyhow::Result<()> {
    let (Some(examples), Some(test_guests)) = (
        python::app(guests::PY_EXAMPLES)?,
        python::app(guests::PY_GUESTS)?,
    ) else {
        return Ok(());
    };
    perdure_tests::init_logging();
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("functions"))?;
    std::fs::copy(examples, dir.path().join("functions/py-examples.wasm"))?;
    std::fs::copy(test_guests, dir.path().join("functions/py-guests.wasm"))?;
    let mut args = ChildHost::args_for(dir.path());
    args.extend(["--cache-dir".into(), python::shared_cache().into()]);
    let log = LogLines::default();
    let host = ChildHost::start_with_args(CHILD, &args, &log).await?;
    const FAN_OUTS: usize = 10;
    const WAITERS: usize = 10;
    for i in 0..FAN_OUTS {
        let path = format!("{DURABLE}/orchestrators/PyFanOutFanInOrchestrator/fan-{i}");
        let r = host.send(Method::POST, &path, r#"{"count": 20}"#).await?;
        assert_eq!(r.status, 202, "{}", r.text());
    }
    for i in 0..WAITERS {
        let path = format!("{DURABLE}/orchestrators/PyTWaiter/wait-{i}");
        let r = host
            .send(Method::POST, &path, &format!("\"wait-{i}\""))
            .await?;
        assert_eq!(r.status, 202, "{}", r.text());
    }
    host.kill()?;
    let host = ChildHost::start_with_args(CHILD, &args, &log).await?;
    for i in 0..WAITERS {
        let path = format!("{DURABLE}/instances/wait-{i}/raiseEvent/Go");
        eventually(DEADLINE, &path, || async {
            let r = host.send(Method::POST, &path, &i.to_string()).await?;
            Ok((r.status < 300).then_some(()))
        })
        .await?;
    }
    for i in 0..FAN_OUTS {
        let status = host.finished_status(&format!("fan-{i}")).await?;
        assert_eq!(status["runtimeStatus"], "Completed", "{status}");
        assert_eq!(status["output"][19], "Task20 completed", "{status}");
    }
    for i in 0..WAITERS {
        let status = host.finished_status(&format!("wait-{i}")).await?;
        assert_eq!(status["output"], format!("wait-{i}: {i}"), "{status}");
    }
    host.kill()?;
    Ok(())
}
