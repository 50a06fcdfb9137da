//! Several `perdure serve` processes on one PostgreSQL database: they
//! split the partitions, any of them answers for any instance, a killed
//! one's instances finish on the others once its lease runs out, and one
//! paused past its lease is fenced off and rejoins.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

use http::Method;
use perdure_tests::child::{ChildHost, LogLines, nap_executions};
use perdure_tests::postgres::{PgServer, TestDb};
use perdure_tests::{DURABLE, MASTER_KEY, TestHost, eventually, guests};

const CHILD: &str = env!("CARGO_BIN_EXE_perdure-child");
/// Short, so that a dead host's partitions move within the test's time.
const LEASE_MS: u64 = 2000;
const DEADLINE: Duration = Duration::from_secs(60);

/// A host of the cluster: its process, its log, its folder.
struct Member {
    id: String,
    host: ChildHost,
    log: LogLines,
    _dir: tempfile::TempDir,
}

impl Member {
    /// Starts host `id` on `db` over a functions folder of its own holding
    /// the durable probe and the fan-out, approval and counter examples.
    async fn start(db: &TestDb, id: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir_all(dir.path().join("functions"))?;
        for (name, wasm) in [
            ("durable-probe", guests::DURABLE_PROBE),
            ("fan-out-fan-in", guests::FAN_OUT_FAN_IN),
            ("approval", guests::APPROVAL),
            ("counter", guests::COUNTER),
        ] {
            std::fs::copy(wasm, dir.path().join(format!("functions/{name}.wasm")))?;
        }
        let log = LogLines::default();
        let host = ChildHost::start_with_args(CHILD, &args(dir.path(), db, id), &log).await?;
        Ok(Self {
            id: id.to_owned(),
            host,
            log,
            _dir: dir,
        })
    }

    fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status = std::process::Command::new("kill")
            .args([signal, &self.host.pid().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill {signal} failed: {status}");
        Ok(())
    }

    fn log_contains(&self, text: &str) -> bool {
        self.log
            .lock()
            .map(|l| l.iter().any(|line| line.contains(text)))
            .unwrap_or(false)
    }
}

fn args(dir: &Path, db: &TestDb, id: &str) -> Vec<OsString> {
    let mut args = ChildHost::args_for(dir);
    if let Some(at) = args.iter().position(|a| a == "--db") {
        args[at + 1] = db.url().into();
    }
    args.extend([
        "--cache-dir".into(),
        dir.join("perdure.cache").into(),
        "--host-id".into(),
        id.into(),
        "--lease-ms".into(),
        LEASE_MS.to_string().into(),
    ]);
    args
}

/// Partitions per owner (`None`: free), read from the database.
async fn owners(db: &TestDb) -> anyhow::Result<BTreeMap<Option<String>, i64>> {
    let client = db.connect().await?;
    let rows = client
        .query("SELECT owner, count(*) FROM partitions GROUP BY owner", &[])
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect()
}

/// Waits until exactly `ids` hold every partition, each at least one and
/// none more than its fair share (the split the hosts settle on).
async fn split_between(db: &TestDb, ids: &[&str]) -> anyhow::Result<BTreeMap<Option<String>, i64>> {
    eventually(
        DEADLINE,
        &format!("the partitions split between {ids:?}"),
        || async {
            let owners = owners(db).await?;
            let all_held = owners
                .keys()
                .all(|o| o.as_deref().is_some_and(|o| ids.contains(&o)));
            let fair = 64_u64.div_ceil(ids.len().max(1) as u64) as i64;
            let settled = owners.values().all(|&n| n <= fair);
            Ok((all_held && settled && owners.len() == ids.len()).then_some(owners))
        },
    )
    .await
}

async fn start(member: &Member, name: &str, id: &str, input: &str) -> anyhow::Result<()> {
    let r = member
        .host
        .send(
            Method::POST,
            &format!("{DURABLE}/orchestrators/{name}/{id}"),
            input,
        )
        .await?;
    anyhow::ensure!(r.status == 202, "start {id} on {}: {}", member.id, r.text());
    Ok(())
}

/// Waits for `id` to finish, asking `member`; returns its status.
async fn finished(member: &Member, id: &str) -> anyhow::Result<serde_json::Value> {
    let path = format!("{DURABLE}/instances/{id}");
    eventually(DEADLINE, &format!("{id} finished"), || async {
        let r = member.host.send(Method::GET, &path, "").await?;
        let status = r.json().unwrap_or_default();
        let done = matches!(
            status["runtimeStatus"].as_str(),
            Some("Completed" | "Failed" | "Terminated")
        );
        Ok(done.then_some(status))
    })
    .await
}

/// The balance of `Account` entity `account`, read through `member`
/// (`None` while it has no state).
async fn balance(member: &Member, account: &str) -> anyhow::Result<Option<i64>> {
    let path = format!("{DURABLE}/entities/Account/{account}");
    let r = member.host.send(Method::GET, &path, "").await?;
    Ok(if r.status == 200 {
        r.json()?.as_i64()
    } else {
        None
    })
}

/// `perdure cluster` against `member`: its table.
async fn cluster_cli(member: &Member) -> anyhow::Result<String> {
    let run = perdure_tests::child::cli_at(
        CHILD,
        member.host.base_url(),
        Some(MASTER_KEY),
        &["cluster"],
    )
    .await?;
    anyhow::ensure!(run.code == 0, "perdure cluster: {}", run.stderr);
    Ok(run.stdout)
}

async fn database() -> anyhow::Result<Option<TestDb>> {
    let Some(server) = PgServer::shared().await? else {
        return Ok(None);
    };
    Ok(Some(server.create_database().await?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_share_the_work_and_the_others_finish_a_killed_ones() -> anyhow::Result<()> {
    perdure_tests::init_logging();
    let Some(db) = database().await? else {
        return Ok(());
    };
    let mut members = Vec::new();
    for id in ["h1", "h2", "h3"] {
        members.push(Member::start(&db, id).await?);
    }
    let split = split_between(&db, &["h1", "h2", "h3"]).await?;
    println!("partitions per host: {split:?}");
    // Any host shows the cluster: every host, where it serves, its share.
    let cluster = eventually(DEADLINE, "every host announced its address", || async {
        let r = members[1]
            .host
            .send(Method::GET, "/admin/cluster", "")
            .await?;
        let cluster = r.json()?;
        let hosts = cluster["hosts"].as_array().cloned().unwrap_or_default();
        let announced = members.iter().all(|m| {
            hosts.iter().any(|h| {
                h["id"] == m.id.as_str()
                    && h["alive"] == true
                    && m.host
                        .base_url()
                        .ends_with(h["address"].as_str().unwrap_or("-"))
            })
        });
        Ok(announced.then_some(cluster))
    })
    .await?;
    assert_eq!(cluster["shared"], true, "{cluster}");
    assert_eq!(cluster["thisHost"], "h2", "{cluster}");
    assert_eq!(
        cluster["partitions"].as_array().map(Vec::len),
        Some(64),
        "{cluster}"
    );
    let shares: i64 = cluster["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| h["partitions"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(shares, 64, "{cluster}");
    let table = cluster_cli(&members[0]).await?;
    assert!(
        ["h1 *", "h2", "h3", "64 partitions, 0 free"]
            .iter()
            .all(|text| table.contains(text)),
        "{table}"
    );
    let metrics = members[0]
        .host
        .send(Method::GET, "/metrics", "")
        .await?
        .text();
    let held = split.get(&Some("h1".to_owned())).copied().unwrap_or(0);
    assert!(
        metrics.contains(&format!("perdure_partitions_held {held}")),
        "h1 holds {held}: {metrics}"
    );

    // A mix, each started through a host in turn: chains of activities,
    // sub-orchestrations (parent and child mostly in partitions of
    // different hosts) and events raised through another host than the
    // one that started the instance.
    const CHAINS: usize = 30;
    let chain = r#"{"steps": 4, "sleepMs": 200}"#;
    for i in 0..CHAINS {
        start(&members[i % 3], "SleepyChain", &format!("chain-{i}"), chain).await?;
    }
    for i in 0..6 {
        let input = format!(r#"{{"fail": false, "childId": "child-{i}"}}"#);
        start(&members[i % 3], "Parent", &format!("parent-{i}"), &input).await?;
    }
    for i in 0..6 {
        let input = r#"{"name": "Ping", "count": 2}"#;
        start(
            &members[i % 3],
            "CollectEvents",
            &format!("events-{i}"),
            input,
        )
        .await?;
    }
    for i in 0..6 {
        for n in 0..2 {
            let through = &members[(i + 1 + n) % 3];
            let r = through
                .host
                .send(
                    Method::POST,
                    &format!("{DURABLE}/instances/events-{i}/raiseEvent/Ping"),
                    &n.to_string(),
                )
                .await?;
            assert_eq!(r.status, 202, "raise through {}: {}", through.id, r.text());
        }
    }

    // A fan-out of 1,000; approvals answered through another host, and
    // two left to time out; transfers between accounts under locks, with
    // audits that must never see money in flight.
    start(
        &members[1],
        "FanOutFanInOrchestrator",
        "fan-out",
        r#"{"count": 1000}"#,
    )
    .await?;
    for i in 0..6 {
        let timeout = if i < 4 { 60 } else { 1 };
        let input = format!(r#"{{"document": "doc {i}", "timeoutSeconds": {timeout}}}"#);
        start(
            &members[i % 3],
            "DocumentApprovalOrchestrator",
            &format!("approval-{i}"),
            &input,
        )
        .await?;
        if i < 4 {
            let r = members[(i + 2) % 3]
                .host
                .send(
                    Method::POST,
                    &format!("{DURABLE}/instances/approval-{i}/raiseEvent/ApprovalEvent"),
                    r#"{"approved": true}"#,
                )
                .await?;
            assert_eq!(r.status, 202, "{}", r.text());
        }
    }
    const ACCOUNTS: [&str; 4] = ["acc-a", "acc-b", "acc-c", "acc-d"];
    for (n, account) in ACCOUNTS.iter().enumerate() {
        let r = members[n % 3]
            .host
            .send(
                Method::POST,
                &format!("{DURABLE}/entities/Account/{account}?op=deposit"),
                "1000",
            )
            .await?;
        assert_eq!(r.status, 202, "{}", r.text());
    }
    for account in ACCOUNTS {
        eventually(DEADLINE, &format!("{account} funded"), || async {
            Ok((balance(&members[2], account).await? == Some(1000)).then_some(()))
        })
        .await?;
    }
    for i in 0..12usize {
        let input = serde_json::json!({
            "from": ACCOUNTS[i % 4],
            "to": ACCOUNTS[(i * 3 + 1) % 4],
            "amount": 10 + i,
        });
        start(
            &members[i % 3],
            "TransferFunds",
            &format!("transfer-{i}"),
            &input.to_string(),
        )
        .await?;
    }
    let audit = serde_json::json!({ "accounts": ACCOUNTS }).to_string();
    for (i, member) in members.iter().enumerate() {
        start(member, "AuditAccounts", &format!("audit-{i}"), &audit).await?;
    }

    // Killed in the middle of the chains, once every host ran some.
    eventually(DEADLINE, "every host ran activities", || async {
        let ran: Vec<usize> = members
            .iter()
            .map(|m| nap_executions(&m.log).values().sum())
            .collect();
        Ok(ran.iter().all(|&n| n >= 3).then_some(()))
    })
    .await?;
    let victim = members.pop().ok_or_else(|| anyhow::anyhow!("no host"))?;
    victim.host.kill()?;
    let killed = Instant::now();

    let taken_over = split_between(&db, &["h1", "h2"]).await?;
    let takeover = killed.elapsed();
    println!(
        "h3 killed; its partitions were taken over after {takeover:?} (lease {LEASE_MS} ms): {taken_over:?}"
    );
    assert!(
        takeover >= Duration::from_millis(LEASE_MS / 2),
        "a killed host's partitions are not taken before its lease runs out ({takeover:?})"
    );

    let cluster = members[0]
        .host
        .send(Method::GET, "/admin/cluster", "")
        .await?
        .json()?;
    let h3 = cluster["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|h| h["id"] == "h3")
        .cloned()
        .unwrap_or_default();
    assert_eq!(h3["alive"], false, "the killed host shows dead: {cluster}");
    assert_eq!(h3["partitions"], 0, "{cluster}");

    for i in 0..CHAINS {
        let status = finished(&members[i % 2], &format!("chain-{i}")).await?;
        assert_eq!(status["runtimeStatus"], "Completed", "chain-{i}: {status}");
        assert_eq!(status["output"], 4, "chain-{i}: {status}");
    }
    let progressed = killed.elapsed();
    println!("every chain completed {progressed:?} after the kill");
    for i in 0..6 {
        let status = finished(&members[(i + 1) % 2], &format!("parent-{i}")).await?;
        assert_eq!(status["runtimeStatus"], "Completed", "parent-{i}: {status}");
        assert_eq!(
            status["output"]["child"], "child done",
            "parent-{i}: {status}"
        );
        let status = finished(&members[i % 2], &format!("events-{i}")).await?;
        assert_eq!(status["runtimeStatus"], "Completed", "events-{i}: {status}");
        assert_eq!(
            status["output"],
            serde_json::json!([0, 1]),
            "events-{i}: {status}"
        );
    }

    let status = finished(&members[0], "fan-out").await?;
    let results = status["output"].as_array().cloned().unwrap_or_default();
    assert_eq!(results.len(), 1000, "fan-out: {}", status["runtimeStatus"]);
    assert_eq!(results[999], "Task1000 completed");
    for i in 0..6 {
        let status = finished(&members[i % 2], &format!("approval-{i}")).await?;
        let outcome = if i < 4 { "approved" } else { "escalated" };
        assert_eq!(
            status["output"]["outcome"], outcome,
            "approval-{i}: {status}"
        );
    }
    for i in 0..12 {
        let status = finished(&members[i % 2], &format!("transfer-{i}")).await?;
        assert_eq!(
            status["runtimeStatus"], "Completed",
            "transfer-{i}: {status}"
        );
    }
    for i in 0..3 {
        let status = finished(&members[(i + 1) % 2], &format!("audit-{i}")).await?;
        assert_eq!(
            status["output"]["total"], 4000,
            "audit-{i} saw money in flight: {status}"
        );
    }
    let mut total = 0;
    for account in ACCOUNTS {
        total += balance(&members[0], account).await?.unwrap_or_default();
    }
    assert_eq!(total, 4000, "every transfer applied exactly once");
    println!(
        "the whole mix completed {:?} after the kill",
        killed.elapsed()
    );

    // New work is still taken, by either host, for any partition.
    for (n, member) in members.iter().enumerate() {
        let id = format!("after-{n}");
        start(member, "SleepyChain", &id, r#"{"steps": 2, "sleepMs": 1}"#).await?;
        let status = finished(&members[(n + 1) % 2], &id).await?;
        assert_eq!(status["output"], 2, "{id}: {status}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_paused_past_its_lease_is_fenced_off_and_rejoins() -> anyhow::Result<()> {
    perdure_tests::init_logging();
    let Some(db) = database().await? else {
        return Ok(());
    };
    let a = Member::start(&db, "a").await?;
    let b = Member::start(&db, "b").await?;
    split_between(&db, &["a", "b"]).await?;

    const CHAINS: usize = 16;
    let chain = r#"{"steps": 6, "sleepMs": 150}"#;
    for i in 0..CHAINS {
        start(&b, "SleepyChain", &format!("paused-{i}"), chain).await?;
    }
    eventually(DEADLINE, "b ran activities", || async {
        let ran: usize = nap_executions(&b.log).values().sum();
        Ok((ran >= 4).then_some(()))
    })
    .await?;
    // Paused with sessions and activities in flight: past its lease, a
    // takes every partition.
    b.signal("-STOP")?;
    let owners = split_between(&db, &["a"]).await;
    // Resumed whatever happened, so that a failure leaves no stopped
    // process behind.
    let resumed = b.signal("-CONT");
    owners?;
    resumed?;

    // b's late writes as owner are refused; what it finished as a plain
    // activity runner counts once.
    for i in 0..CHAINS {
        let status = finished(&a, &format!("paused-{i}")).await?;
        assert_eq!(status["runtimeStatus"], "Completed", "paused-{i}: {status}");
        assert_eq!(status["output"], 6, "paused-{i}: {status}");
    }
    // b rejoins: it takes its share again and runs new work.
    split_between(&db, &["a", "b"]).await?;
    for i in 0..4 {
        let id = format!("rejoined-{i}");
        start(&b, "SleepyChain", &id, r#"{"steps": 2, "sleepMs": 1}"#).await?;
        let status = finished(&a, &id).await?;
        assert_eq!(status["output"], 2, "{id}: {status}");
    }
    println!(
        "b logged a refused write: {}",
        b.log_contains("moved to another host")
    );
    Ok(())
}

/// A host in this process on `db`, under id `id`, with no apps of its own.
async fn in_process(db: &TestDb, id: &str) -> anyhow::Result<TestHost> {
    let (url, id) = (db.url().to_owned(), id.to_owned());
    TestHost::start_with(&[], |c| {
        c.db = perdure::Database::Postgres(url);
        c.host_id = Some(id);
    })
    .await
}

/// Polls `host` with `path` (and `key`, if any) until it answers `status`.
async fn answers(
    host: &TestHost,
    path: &str,
    key: Option<&str>,
    status: u16,
) -> anyhow::Result<()> {
    let headers: Vec<(&str, &str)> = key.map(|k| ("x-functions-key", k)).into_iter().collect();
    eventually(DEADLINE, &format!("{path} answering {status}"), || async {
        let r = host.request(Method::GET, path, &headers, "").await?;
        Ok((r.status == status).then_some(()))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_and_keys_deployed_on_one_host_serve_on_all() -> anyhow::Result<()> {
    let Some(db) = database().await? else {
        return Ok(());
    };
    let a = in_process(&db, "a").await?;
    let b = in_process(&db, "b").await?;
    let greet = format!("/api/greet?name=Ada&code={MASTER_KEY}");

    // Deployed over the API on a: b serves it, from a file of its own.
    let r = a
        .send_with_master_key(
            Method::PUT,
            "/admin/apps/greet",
            std::fs::read(guests::GREET)?,
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.text());
    answers(&b, &greet, None, 200).await?;
    assert!(b.functions_dir().join("greet.wasm").exists());

    // Dropped into b's folder: a serves it.
    b.deploy("durable-probe.wasm", guests::DURABLE_PROBE)?;
    let probe = eventually(DEADLINE, "a loads b's app", || async {
        Ok(a.app_status("durable-probe")
            .await?
            .filter(|app| app["digest"].is_string()))
    })
    .await?;
    let digest = probe["digest"].clone();
    let instance = a
        .start_instance("SleepyChain", r#"{"steps": 1, "sleepMs": 1}"#)
        .await?;
    let status = b.wait_for_instance(&instance, DEADLINE).await?;
    assert_eq!(status["output"], 1, "{status}");

    // A key made on a opens b's functions; revoked on b, it closes a's.
    let created = a
        .send_with_master_key(Method::POST, "/admin/keys", r#"{"name":"shared"}"#)
        .await?
        .json()?;
    let key = created["key"].as_str().unwrap_or_default().to_owned();
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    answers(&b, "/api/greet?name=Ada", Some(&key), 200).await?;
    let r = b
        .send_with_master_key(Method::DELETE, &format!("/admin/keys/{id}"), "")
        .await?;
    assert_eq!(r.status, 204, "{}", r.text());
    answers(&a, "/api/greet?name=Ada", Some(&key), 401).await?;

    // Removed on b: a unloads it.
    let r = b
        .send_with_master_key(Method::DELETE, "/admin/apps/greet", "")
        .await?;
    assert_eq!(r.status, 204, "{}", r.text());
    answers(&a, &greet, None, 404).await?;

    // A host that joins later serves what the others share, from its
    // first answer.
    let c = in_process(&db, "c").await?;
    let probe = c.app_status("durable-probe").await?;
    assert_eq!(probe.map(|p| p["digest"].clone()), Some(digest));
    assert!(c.app_status("greet").await?.is_none(), "greet was removed");
    Ok(())
}

mod faults;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_hosts_and_their_partitions() -> anyhow::Result<()> {
    let Some(browser) = perdure_tests::browser::Browser::start().await? else {
        return Ok(());
    };
    let result = async {
        let Some(db) = database().await? else {
            return Ok(());
        };
        let a = in_process(&db, "a").await?;
        let _b = in_process(&db, "b").await?;
        split_between(&db, &["a", "b"]).await?;
        let client = &browser.client;
        client.goto(&a.dashboard_url("/")).await?;
        browser.submit_key(MASTER_KEY).await?;
        browser.wait_for_count("body[data-route]", 1).await?;
        client.goto(&a.dashboard_url("/#/cluster")).await?;
        browser.wait_for_count("tr.host-row", 2).await?;
        browser.wait_for_count("tr.partition-row", 64).await?;
        browser
            .wait_for_text("tr.host-row[data-host=a] td:nth-child(1)", "a (this host)")
            .await?;
        browser
            .wait_for_text("tr.host-row[data-host=b] td:nth-child(3)", "alive")
            .await?;
        browser.screenshot("cluster.png").await?;
        anyhow::Ok(())
    }
    .await;
    browser.close().await?;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_stops_hands_its_partitions_over_at_once() -> anyhow::Result<()> {
    let Some(db) = database().await? else {
        return Ok(());
    };
    // Long enough that a takeover by expiry could not pass for a handover.
    const LEASE: Duration = Duration::from_secs(6);
    let start = |id: &'static str| {
        let url = db.url().to_owned();
        TestHost::start_with(&[("durable-probe.wasm", guests::DURABLE_PROBE)], move |c| {
            c.db = perdure::Database::Postgres(url);
            c.host_id = Some(id.into());
            c.lease = LEASE;
        })
    };
    let a = start("a").await?;
    let b = start("b").await?;
    split_between(&db, &["a", "b"]).await?;
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(
            a.start_instance("SleepyChain", r#"{"steps": 3, "sleepMs": 100}"#)
                .await?,
        );
    }
    let stopped = Instant::now();
    a.shutdown().await;
    split_between(&db, &["b"]).await?;
    let handed_over = stopped.elapsed();
    println!("a stopped; b held every partition {handed_over:?} later (lease {LEASE:?})");
    assert!(
        handed_over < LEASE,
        "handed over, not expired: {handed_over:?}"
    );
    for id in &ids {
        let status = b.wait_for_instance(id, DEADLINE).await?;
        assert_eq!(status["output"], 3, "{id}: {status}");
    }
    Ok(())
}
