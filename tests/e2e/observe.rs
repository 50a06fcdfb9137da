//! What the dashboard reads besides the durable API: guest log lines per
//! instance (each once, however often the orchestrator replays), an
//! instance's timeline, and the counts of instances and queues.

use std::time::Duration;

use perdure_tests::{TestHost, guests};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(30);

fn messages(logs: &Value) -> Vec<String> {
    logs["lines"]
        .as_array()
        .map(|lines| {
            lines
                .iter()
                .map(|l| {
                    format!(
                        "{} {}",
                        l["level"].as_str().unwrap_or("?"),
                        l["message"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_logs_are_kept_per_instance_once_despite_replays() -> anyhow::Result<()> {
    // Evicted after every episode: each step replays the whole journal.
    let mut host = TestHost::start_with(&[("durable-probe.wasm", guests::DURABLE_PROBE)], |c| {
        c.durable.idle_eviction = Duration::ZERO;
    })
    .await?;
    let id = host.start_instance("ChattyChain", "3").await?;
    let done = host.wait_for_instance(&id, DEADLINE).await?;
    assert_eq!(done["runtimeStatus"], "Completed", "{done}");
    // A restart replays it once more (reading its status does not, but an
    // upgrade check does); the log must not grow.
    host.restart().await?;
    let r = host
        .get_admin(&format!("/admin/instances/{id}/logs"))
        .await?;
    assert_eq!(r.status, 200, "{}", r.text());
    let logs = r.json()?;
    let mut expected = Vec::new();
    for step in 0..3 {
        expected.push(format!("info step {step} starts"));
        expected.push(format!("info step {step} scheduled"));
        expected.push(format!("stdout shouting step {step}"));
        expected.push(format!("stderr (to stderr) step {step}"));
    }
    expected.push("stdout chatty chain done after 3 steps".to_owned());
    assert_eq!(messages(&logs), expected, "{logs}");
    let activity_line = &logs["lines"][2];
    assert_eq!(activity_line["function"], "Shout");
    assert_eq!(activity_line["attempt"], 1);
    assert!(activity_line["taskId"].is_u64(), "{activity_line}");
    assert_eq!(logs["lines"][0]["function"], "ChattyChain");
    assert!(logs["lines"][0]["taskId"].is_null());

    // Paging: two at a time, from where the last page ended.
    let first = host
        .get_admin(&format!("/admin/instances/{id}/logs?top=2"))
        .await?
        .json()?;
    assert_eq!(messages(&first), expected[..2]);
    let after = first["next"].as_i64().unwrap_or_default();
    let second = host
        .get_admin(&format!("/admin/instances/{id}/logs?top=2&after={after}"))
        .await?
        .json()?;
    assert_eq!(messages(&second), expected[2..4]);

    let r = host.get_admin("/admin/instances/nope/logs").await?;
    assert_eq!(r.status, 404, "{}", r.text());
    let r = host
        .get_admin(&format!("/admin/instances/{id}/logs?top=many"))
        .await?;
    assert_eq!(r.status, 400, "{}", r.text());
    let r = host.get(&format!("/admin/instances/{id}/logs")).await?;
    assert_eq!(r.status, 401, "{}", r.text());

    // Purging the instance deletes its lines with it.
    let r = host
        .send_with_master_key(
            http::Method::DELETE,
            &format!("{}/instances/{id}", perdure_tests::DURABLE),
            "",
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = host
        .get_admin(&format!("/admin/instances/{id}/logs"))
        .await?;
    assert_eq!(r.status, 404, "{}", r.text());
    Ok(())
}

#[tokio::test]
async fn a_fan_out_timeline_has_one_parallel_bar_per_activity() -> anyhow::Result<()> {
    let host =
        TestHost::start_with(&[("fan-out-fan-in.wasm", guests::FAN_OUT_FAN_IN)], |_| {}).await?;
    let id = host
        .start_instance("FanOutFanInOrchestrator", r#"{"count": 6}"#)
        .await?;
    host.wait_for_instance(&id, DEADLINE).await?;
    let r = host
        .get_admin(&format!("/admin/instances/{id}/timeline"))
        .await?;
    assert_eq!(r.status, 200, "{}", r.text());
    let timeline = r.json()?;
    assert_eq!(timeline["status"], "Completed");
    let bars = timeline["bars"].as_array().cloned().unwrap_or_default();
    assert_eq!(bars.len(), 6, "{timeline}");
    let started = timeline["startedMs"].as_i64().unwrap_or_default();
    let ended = timeline["endedMs"].as_i64().unwrap_or_default();
    for bar in &bars {
        assert_eq!(bar["kind"], "activity");
        assert_eq!(bar["name"], "ProcessTask");
        assert_eq!(bar["outcome"], "completed");
        let (from, to) = (
            bar["scheduledMs"].as_i64().unwrap_or(-1),
            bar["endedMs"].as_i64().unwrap_or(-1),
        );
        assert!(
            started <= from && from <= to && to <= ended,
            "{bar} in {started}..{ended}"
        );
    }
    // Scheduled together (one episode): every bar starts at the same time,
    // before any ends.
    let first_end = bars
        .iter()
        .filter_map(|b| b["endedMs"].as_i64())
        .min()
        .unwrap_or_default();
    assert!(
        bars.iter()
            .all(|b| b["scheduledMs"] == bars[0]["scheduledMs"])
    );
    assert!(bars[0]["scheduledMs"].as_i64().unwrap_or_default() <= first_end);

    let stats = host.get_admin("/admin/stats").await?.json()?;
    assert_eq!(stats["instances"]["Completed"], 1, "{stats}");
    assert_eq!(stats["instances"]["Running"], 0, "{stats}");
    assert_eq!(stats["workItems"], 0, "{stats}");
    assert_eq!(stats["apps"], 1, "{stats}");
    Ok(())
}
