//! Versions are pinned: replacing an app's file starts new instances on the
//! new version while running ones finish on theirs; an upgrade moves a
//! running instance only if its journal replays identically.

use std::time::Duration;

use http::Method;
use perdure_tests::{TestHost, eventually, guests};
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(30);

/// Deploys `wasm` as `versioned.wasm` and waits until it serves.
async fn deploy_version(host: &TestHost, wasm: &str) -> anyhow::Result<String> {
    let before = host
        .app_status("versioned")
        .await?
        .map(|a| a["digest"].clone());
    host.deploy("versioned.wasm", wasm)?;
    eventually(DEADLINE, "the new version to load", || async {
        let app = host.app_status("versioned").await?;
        Ok(app
            .map(|a| a["digest"].clone())
            .filter(|d| d.is_string() && Some(d) != before.as_ref())
            .and_then(|d| d.as_str().map(str::to_owned)))
    })
    .await
}

/// Starts `VersionedFlow` waiting on gate `gate` and waits until its first
/// activity is scheduled (so its journal has an entry).
async fn start_flow(host: &TestHost, id: &str, gate: &str) -> anyhow::Result<()> {
    let input = json!({ "gate": gate }).to_string();
    let r = host
        .start_orchestration("VersionedFlow", Some(id), &input)
        .await?;
    anyhow::ensure!(r.status == 202, "start {id}: {}", r.text());
    eventually(
        DEADLINE,
        &format!("{id} to schedule its first step"),
        || async {
            let status = host.instance(id).await?.unwrap_or_default();
            Ok((status["runtimeStatus"] == "Running").then_some(()))
        },
    )
    .await
}

async fn open_gate(host: &TestHost, gate: &str) -> anyhow::Result<()> {
    let r = host.start_orchestration("Gate", Some(gate), "null").await?;
    anyhow::ensure!(r.status == 202, "gate {gate}: {}", r.text());
    Ok(())
}

async fn upgrade(host: &TestHost, id: &str) -> anyhow::Result<perdure_tests::TestResponse> {
    host.send_with_master_key(Method::POST, &format!("/admin/instances/{id}/upgrade"), "")
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_stay_on_their_version_unless_upgraded_compatibly() -> anyhow::Result<()> {
    let host = TestHost::start().await?;
    let v1 = deploy_version(&host, guests::VERSIONED_V1).await?;
    for id in ["pinned", "moved", "refused"] {
        start_flow(&host, id, &format!("gate-{id}")).await?;
    }

    // v2 changes only the output: compatible.
    let v2 = deploy_version(&host, guests::VERSIONED_V2).await?;
    start_flow(&host, "fresh", "gate-fresh").await?;
    let r = upgrade(&host, "moved").await?;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json()?;
    assert_eq!(body["upgraded"], true, "{body}");
    assert_eq!(body["fromDigest"], v1.as_str());
    assert_eq!(body["toDigest"], v2.as_str());
    let r = upgrade(&host, "moved").await?;
    assert_eq!(
        r.json()?["upgraded"],
        false,
        "a second upgrade has nothing to do"
    );

    // v3 calls another activity first: incompatible with every journal.
    deploy_version(&host, guests::VERSIONED_V3).await?;
    let r = upgrade(&host, "refused").await?;
    assert_eq!(r.status, 409, "{}", r.text());
    let report = r.json()?;
    assert_eq!(report["error"]["code"], "nondeterminism", "{report}");
    assert_eq!(report["error"]["details"]["seq"], 0, "{report}");
    let recorded = report["error"]["details"]["recorded"]
        .as_str()
        .unwrap_or_default();
    let new = report["error"]["details"]["new"]
        .as_str()
        .unwrap_or_default();
    assert!(
        recorded.contains("StepA") && new.contains("StepC"),
        "{report}"
    );

    let all = host
        .send_with_master_key(
            Method::POST,
            "/admin/orchestrators/VersionedFlow/upgrade",
            "",
        )
        .await?;
    assert_eq!(all.status, 200, "{}", all.text());
    let all = all.json()?;
    assert_eq!(all["upgraded"], json!([]), "{all}");
    assert_eq!(all["refused"].as_array().map(Vec::len), Some(4), "{all}");

    let r = upgrade(&host, "no-such-instance").await?;
    assert_eq!(r.status, 404, "{}", r.text());

    for id in ["pinned", "moved", "refused", "fresh"] {
        open_gate(&host, &format!("gate-{id}")).await?;
    }
    let expected = [
        ("pinned", "v1: a b"),
        ("moved", "v2: a b"),
        ("refused", "v1: a b"),
        ("fresh", "v2: a b"),
    ];
    for (id, output) in expected {
        let status = host.wait_for_instance(id, DEADLINE).await?;
        assert_eq!(status["runtimeStatus"], "Completed", "{id}: {status}");
        assert_eq!(status["output"], output, "{id}: {status}");
    }
    let r = upgrade(&host, "pinned").await?;
    assert_eq!(
        r.status,
        410,
        "finished instances are not upgraded: {}",
        r.text()
    );

    // New instances start on the current version, v3.
    start_flow(&host, "newest", "gate-newest").await?;
    open_gate(&host, "gate-newest").await?;
    let status = host.wait_for_instance("newest", DEADLINE).await?;
    assert_eq!(status["output"], "v3: c b", "{status}");
    Ok(())
}

perdure_tests::also_on_postgres!(instances_stay_on_their_version_unless_upgraded_compatibly);
