//! Faults of the database under a cluster: a server crash and restart in
//! the middle of the work, and a host's wake-up listener cut off.

use std::time::{Duration, Instant};

use http::Method;
use perdure_tests::postgres::PgServer;
use perdure_tests::{DURABLE, eventually};

use super::{DEADLINE, Member, finished, split_between, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_is_an_outage_not_a_loss() -> anyhow::Result<()> {
    perdure_tests::init_logging();
    // A server of its own: this test crashes it.
    let Some(server) = PgServer::start_new().await? else {
        return Ok(());
    };
    let db = server.create_database().await?;
    let members = [
        Member::start(&db, "a").await?,
        Member::start(&db, "b").await?,
    ];
    split_between(&db, &["a", "b"]).await?;
    const CHAINS: usize = 20;
    // About a second of work each, so the crash lands in the middle.
    let chain = r#"{"steps": 4, "sleepMs": 250}"#;
    for i in 0..CHAINS {
        start(
            &members[i % 2],
            "SleepyChain",
            &format!("outage-{i}"),
            chain,
        )
        .await?;
    }

    server.stop_immediate().await?;
    let down = Instant::now();
    for member in &members {
        let refused = eventually(DEADLINE, "new work refused", || async {
            let r = member
                .host
                .send(
                    Method::POST,
                    &format!("{DURABLE}/orchestrators/SleepyChain"),
                    chain,
                )
                .await?;
            Ok((r.status != 202).then_some(r))
        })
        .await?;
        assert_eq!(refused.status, 503, "{}", refused.text());
        assert!(
            refused.headers.contains_key(http::header::RETRY_AFTER),
            "{:?}",
            refused.headers
        );
        assert!(
            refused.error_message().contains("unreachable"),
            "says why: {}",
            refused.text()
        );
    }

    server.start().await?;
    println!("the database was down for {:?}", down.elapsed());
    let back = Instant::now();
    for i in 0..CHAINS {
        let status = finished(&members[(i + 1) % 2], &format!("outage-{i}")).await?;
        assert_eq!(status["runtimeStatus"], "Completed", "outage-{i}: {status}");
        assert_eq!(status["output"], 4, "outage-{i}: {status}");
    }
    println!(
        "every instance completed {:?} after the restart",
        back.elapsed()
    );
    for (n, member) in members.iter().enumerate() {
        let id = format!("after-{n}");
        start(member, "SleepyChain", &id, r#"{"steps": 1, "sleepMs": 1}"#).await?;
        let status = finished(member, &id).await?;
        assert_eq!(status["output"], 1, "{id}: {status}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_flows_while_a_hosts_listener_is_cut_off_and_it_comes_back() -> anyhow::Result<()> {
    perdure_tests::init_logging();
    let Some(db) = super::database().await? else {
        return Ok(());
    };
    let members = [
        Member::start(&db, "a").await?,
        Member::start(&db, "b").await?,
    ];
    split_between(&db, &["a", "b"]).await?;
    let client = db.connect().await?;
    let listeners = "SELECT pid FROM pg_stat_activity
                     WHERE datname = current_database() AND query LIKE 'LISTEN%'";
    let count = |rows: Vec<tokio_postgres::Row>| rows.len();
    eventually(DEADLINE, "both hosts listen", || async {
        Ok((count(client.query(listeners, &[]).await?) == 2).then_some(()))
    })
    .await?;
    let terminated = client
        .query(
            &format!("SELECT pg_terminate_backend(pid) FROM ({listeners}) l"),
            &[],
        )
        .await?;
    assert_eq!(terminated.len(), 2, "both listeners cut off");

    // Events raised through the host that does not hold the instance
    // reach it by its wake-up rows, polled.
    for i in 0..6 {
        let input = r#"{"name": "Ping", "count": 1}"#;
        start(&members[i % 2], "CollectEvents", &format!("cut-{i}"), input).await?;
        let r = members[(i + 1) % 2]
            .host
            .send(
                Method::POST,
                &format!("{DURABLE}/instances/cut-{i}/raiseEvent/Ping"),
                "7",
            )
            .await?;
        assert_eq!(r.status, 202, "{}", r.text());
    }
    for i in 0..6 {
        let status = finished(&members[i % 2], &format!("cut-{i}")).await?;
        assert_eq!(
            status["output"],
            serde_json::json!([7]),
            "cut-{i}: {status}"
        );
    }
    eventually(Duration::from_secs(30), "both listeners back", || async {
        Ok((count(client.query(listeners, &[]).await?) == 2).then_some(()))
    })
    .await?;
    assert!(
        members
            .iter()
            .all(|m| m.log_contains("wake-up listener lost its connection")),
        "each host noticed"
    );
    Ok(())
}
