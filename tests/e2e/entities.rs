//! Durable entities end to end: the `counter` example's `Counter` and
//! `Account` entities over the HTTP API, from orchestrators (calls,
//! signals, critical sections) and from a guest's durable client, across
//! a SIGKILL.

use std::time::Duration;

use http::Method;
use perdure_tests::child::{ChildHost, LogLines};
use perdure_tests::{DURABLE, TestHost, eventually, guests};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(30);
const CHILD: &str = env!("CARGO_BIN_EXE_perdure-child");

async fn counter_host() -> anyhow::Result<TestHost> {
    TestHost::start_with(
        &[
            ("counter.wasm", guests::COUNTER),
            ("durable-probe.wasm", guests::DURABLE_PROBE),
        ],
        |_| {},
    )
    .await
}

fn entity_path(name: &str, key: &str) -> String {
    format!("{DURABLE}/entities/{name}/{key}")
}

async fn signal(
    host: &TestHost,
    name: &str,
    key: &str,
    op: &str,
    input: &str,
) -> anyhow::Result<u16> {
    let path = format!("{}?op={op}", entity_path(name, key));
    Ok(host
        .send_with_master_key(Method::POST, &path, input.to_owned())
        .await?
        .status)
}

/// The entity's state once it satisfies `done`.
async fn state_when(
    host: &TestHost,
    name: &str,
    key: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    eventually(DEADLINE, what, || async {
        let r = host.get_admin(&entity_path(name, key)).await?;
        Ok((r.status == 200)
            .then(|| r.json())
            .transpose()?
            .filter(&done))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_counts_every_signal_from_concurrent_clients() -> anyhow::Result<()> {
    let host = counter_host().await?;
    // The README's example.
    assert_eq!(signal(&host, "Counter", "c1", "add", "5").await?, 202);
    assert_eq!(signal(&host, "Counter", "c1", "add", "5").await?, 202);
    state_when(&host, "Counter", "c1", "c1 to be 10", |v| v == &json!(10)).await?;

    const CLIENTS: usize = 8;
    const EACH: usize = 40;
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let host = &host;
        clients.push(async move {
            for i in 0..EACH {
                // Mixed with signals to other counters, which run in parallel.
                let status = signal(host, "Counter", "shared", "add", "1").await?;
                anyhow::ensure!(status == 202, "client {client} signal {i}: {status}");
                signal(host, "Counter", &format!("own-{client}"), "add", "2").await?;
            }
            anyhow::Ok(())
        });
    }
    futures::future::try_join_all(clients).await?;
    let total = (CLIENTS * EACH) as i64;
    state_when(&host, "Counter", "shared", "every signal applied", |v| {
        v == &json!(total)
    })
    .await?;
    for client in 0..CLIENTS {
        let key = format!("own-{client}");
        state_when(&host, "Counter", &key, &key, |v| v == &json!(2 * EACH)).await?;
    }

    // reset, then delete: a deleted entity has no state.
    signal(&host, "Counter", "c1", "reset", "").await?;
    state_when(&host, "Counter", "c1", "c1 reset", |v| v == &json!(0)).await?;
    signal(&host, "Counter", "c1", "delete", "").await?;
    eventually(DEADLINE, "c1 deleted", || async {
        let r = host.get_admin(&entity_path("Counter", "c1")).await?;
        Ok((r.status == 404).then_some(()))
    })
    .await?;

    // The listing pages through the counters with state, in key order.
    let first = host
        .get_admin(&format!("{DURABLE}/entities/Counter?top=5&fetchState=true"))
        .await?;
    assert_eq!(first.status, 200, "{}", first.text());
    let page = first.json()?;
    assert_eq!(page.as_array().map(Vec::len), Some(5), "{page}");
    assert_eq!(
        page[0]["entityId"],
        json!({ "name": "Counter", "key": "own-0" })
    );
    assert_eq!(page[0]["state"], json!(2 * EACH));
    let token = first
        .headers
        .get("x-ms-continuation-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let second = host
        .request(
            Method::GET,
            &format!("{DURABLE}/entities/Counter?top=5"),
            &[
                ("x-functions-key", perdure_tests::MASTER_KEY),
                ("x-ms-continuation-token", &token),
            ],
            "",
        )
        .await?
        .json()?;
    let keys: Vec<&str> = second
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["entityId"]["key"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(keys, ["own-5", "own-6", "own-7", "shared"], "{second}");

    // A guest's durable client signals and reads the same entities.
    let r = host
        .send_with_master_key(Method::POST, "/api/counters/web", "7")
        .await?;
    assert_eq!(r.status, 202, "{}", r.text());
    let read = eventually(DEADLINE, "the guest to read its counter", || async {
        let r = host.get_admin("/api/counters/web").await?;
        (r.status == 200).then(|| r.json()).transpose()
    })
    .await?;
    assert_eq!(read, json!({ "key": "web", "count": 7 }));
    host.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orchestrators_call_signal_and_see_failures_leave_state_unchanged() -> anyhow::Result<()> {
    let host = counter_host().await?;
    signal(&host, "Account", "alice", "deposit", "100").await?;
    let call = |op: &str, input: Value| {
        json!({ "name": "Account", "key": "alice", "op": op, "input": input }).to_string()
    };
    let done = host
        .run_orchestration("CallEntity", &call("withdraw", json!(30)))
        .await?;
    assert_eq!(done["output"], json!({ "ok": 70 }), "{done}");

    // Too much: the operation fails, the orchestrator gets the typed error,
    // and the balance is what it was.
    let done = host
        .run_orchestration("CallEntity", &call("withdraw", json!(500)))
        .await?;
    assert_eq!(done["output"]["error"]["code"], "Application", "{done}");
    let message = done["output"]["error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("insufficient funds"), "{done}");
    let balance = host
        .run_orchestration("CallEntity", &call("balance", Value::Null))
        .await?;
    assert_eq!(balance["output"], json!({ "ok": 70 }), "{balance}");

    // A bad input and an unknown operation or entity are typed errors too.
    let bad = host
        .run_orchestration("CallEntity", &call("withdraw", json!("lots")))
        .await?;
    assert_eq!(bad["output"]["error"]["code"], "InvalidArgument", "{bad}");
    let unknown_op = host
        .run_orchestration("CallEntity", &call("steal", Value::Null))
        .await?;
    assert_eq!(
        unknown_op["output"]["error"]["code"], "InvalidArgument",
        "{unknown_op}"
    );
    let unknown = json!({ "name": "Nope", "key": "k", "op": "get" }).to_string();
    let unknown = host.run_orchestration("CallEntity", &unknown).await?;
    assert_eq!(unknown["output"]["error"]["code"], "NotFound", "{unknown}");

    // Signals from one orchestration arrive in order, before its later call.
    let counted = host
        .run_orchestration(
            "SignalThenCall",
            &json!({ "key": "ordered", "times": 25 }).to_string(),
        )
        .await?;
    assert_eq!(counted["output"], json!(25), "{counted}");

    // Critical-section rules: no second lock, no calls outside the locks.
    let rules = host.run_orchestration("LockTwice", "\"rules\"").await?;
    assert_eq!(
        rules["output"],
        json!({ "relock": "FailedPrecondition", "outside": "FailedPrecondition", "inside": 2 }),
        "{rules}"
    );
    host.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transfers_keep_the_total_and_never_deadlock() -> anyhow::Result<()> {
    let host = counter_host().await?;
    let accounts = ["a", "b", "c", "d"];
    for account in accounts {
        signal(&host, "Account", account, "deposit", "1000").await?;
    }
    for account in accounts {
        state_when(&host, "Account", account, "deposits", |v| v == &json!(1000)).await?;
    }
    // Transfers in both directions between every pair (lock orders that
    // would deadlock without a global order), with audits among them.
    let mut transfers = Vec::new();
    for i in 0..24usize {
        let from = accounts[i % 4];
        let to = accounts[(i * 3 + 1) % 4];
        let input = json!({ "from": from, "to": to, "amount": 10 + i }).to_string();
        transfers.push(host.start_instance("TransferFunds", &input).await?);
    }
    let audit_input = json!({ "accounts": accounts }).to_string();
    let mut audits = Vec::new();
    for _ in 0..6 {
        audits.push(host.start_instance("AuditAccounts", &audit_input).await?);
    }
    for id in transfers.iter().chain(&audits) {
        let status = host.wait_for_instance(id, DEADLINE).await?;
        assert_eq!(status["runtimeStatus"], "Completed", "{status}");
    }
    for id in &audits {
        let status = host.instance(id).await?.unwrap_or_default();
        assert_eq!(
            status["output"]["total"], 4000,
            "an audit saw money in flight: {status}"
        );
    }
    let mut total = 0;
    for account in accounts {
        let r = host.get_admin(&entity_path("Account", account)).await?;
        total += r.json()?.as_i64().unwrap_or_default();
    }
    assert_eq!(total, 4000);
    host.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_entity_requests_are_refused_clearly() -> anyhow::Result<()> {
    let host = counter_host().await?;
    let cases: [(&str, &str, u16, &str); 7] = [
        ("Nope/k?op=add", "1", 404, "no entity named Nope"),
        ("Counter/k?op=steal", "1", 400, "has no operation \"steal\""),
        ("Counter/k", "1", 400, "`op` query parameter"),
        ("Counter/k?op=add", "{not json", 400, "not valid JSON"),
        ("Counter/bad%01key?op=add", "1", 400, "entity key"),
        ("Bad%20Name/k?op=add", "1", 400, "entity name"),
        ("Counter/k/extra?op=add", "1", 404, "no route"),
    ];
    for (path, body, status, message) in cases {
        let r = host
            .send_with_master_key(Method::POST, &format!("{DURABLE}/entities/{path}"), body)
            .await?;
        assert_eq!(r.status, status, "{path}: {}", r.text());
        let error = r.json()?;
        let text = error["error"]["message"].as_str().unwrap_or_default();
        assert!(text.contains(message), "{path}: {error}");
    }
    let long_key = "k".repeat(300);
    let r = host.get_admin(&entity_path("Counter", &long_key)).await?;
    assert_eq!(r.status, 400, "{}", r.text());
    let r = host.get_admin(&entity_path("Counter", "never")).await?;
    assert_eq!(r.status, 404, "{}", r.text());
    let r = host.get(&entity_path("Counter", "never")).await?;
    assert_eq!(r.status, 401, "{}", r.text());
    let r = host
        .request(
            Method::POST,
            &format!("{}?op=add", entity_path("Counter", "k")),
            &[],
            "1",
        )
        .await?;
    assert_eq!(r.status, 401, "{}", r.text());
    // Nothing was queued by the refused requests.
    assert_eq!(
        host.get_admin(&entity_path("Counter", "k")).await?.status,
        404
    );
    host.shutdown().await;
    Ok(())
}

/// The counter's value once every message queued before this call ran: an
/// orchestration's call queues behind them.
async fn count_after_queue(host: &ChildHost, key: &str) -> anyhow::Result<i64> {
    let input = json!({ "name": "Counter", "key": key, "op": "get" }).to_string();
    let r = host
        .send(
            Method::POST,
            &format!("{DURABLE}/orchestrators/CallEntity?timeout=60"),
            &input,
        )
        .await?;
    anyhow::ensure!(
        r.status == 200,
        "the call answered {}: {}",
        r.status,
        r.text()
    );
    Ok(r.json()?["ok"].as_i64().unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_burst_applies_every_signal_exactly_once() -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    perdure_tests::init_logging();
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("functions"))?;
    for (file, wasm) in [
        ("counter.wasm", guests::COUNTER),
        ("durable-probe.wasm", guests::DURABLE_PROBE),
    ] {
        std::fs::copy(wasm, dir.path().join("functions").join(file))?;
    }
    let log = LogLines::default();
    let mut host = ChildHost::start(CHILD, dir.path(), &log).await?;
    const CLIENTS: usize = 8;
    const EACH: usize = 150;
    let path = format!("{}?op=add", entity_path("Counter", "burst"));

    // 1. Killed while clients are signalling: every acknowledged signal is
    //    applied once; one in flight at the kill (no answer) at most once.
    let acked = AtomicUsize::new(0);
    let in_doubt = AtomicUsize::new(0);
    let senders = futures::future::join_all((0..CLIENTS).map(|_| async {
        for _ in 0..EACH {
            match host.send(Method::POST, &path, "1").await {
                Ok(r) if r.status == 202 => acked.fetch_add(1, Ordering::SeqCst),
                _ => {
                    in_doubt.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            };
        }
    }));
    let killer = async {
        eventually(DEADLINE, "half the signals acknowledged", || async {
            Ok((acked.load(Ordering::SeqCst) >= CLIENTS * EACH / 2).then_some(()))
        })
        .await?;
        host.sigkill()
    };
    let (_, killed) = tokio::join!(senders, killer);
    killed?;
    host.kill()?;
    host = ChildHost::start(CHILD, dir.path(), &log).await?;
    let (acked, in_doubt) = (acked.into_inner() as i64, in_doubt.into_inner() as i64);
    let count = count_after_queue(&host, "burst").await?;
    println!(
        "killed mid-burst: {acked} signals acknowledged, {in_doubt} in flight; count after restart {count}"
    );
    assert!(
        (acked..=acked + in_doubt).contains(&count),
        "count {count} for {acked} acknowledged and {in_doubt} in-flight signals"
    );

    // 2. Killed with every signal acknowledged but not all applied yet.
    let base = count;
    futures::future::try_join_all((0..CLIENTS).map(|_| async {
        for _ in 0..EACH {
            let r = host.send(Method::POST, &path, "1").await?;
            anyhow::ensure!(
                r.status == 202,
                "signal answered {}: {}",
                r.status,
                r.text()
            );
        }
        anyhow::Ok(())
    }))
    .await?;
    let at_kill = host
        .send(Method::GET, &entity_path("Counter", "burst"), "")
        .await?
        .text();
    host.kill()?;
    host = ChildHost::start(CHILD, dir.path(), &log).await?;
    let count = count_after_queue(&host, "burst").await?;
    println!(
        "killed after the burst: count {at_kill} at the kill, {count} after restart (expected {})",
        base + (CLIENTS * EACH) as i64
    );
    assert_eq!(count, base + (CLIENTS * EACH) as i64);
    host.kill()?;
    Ok(())
}

perdure_tests::also_on_postgres!(
    counter_counts_every_signal_from_concurrent_clients,
    orchestrators_call_signal_and_see_failures_leave_state_unchanged,
    concurrent_transfers_keep_the_total_and_never_deadlock,
    bad_entity_requests_are_refused_clearly,
    sigkill_during_a_burst_applies_every_signal_exactly_once,
);
