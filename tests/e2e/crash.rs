//! Recovery: SIGKILL the real binary in the middle of many orchestrations,
//! at several moments, start it again over the same database, and see
//! every instance complete with the right output and every activity run.

use std::time::Duration;

use http::Method;
use perdure_tests::child::{ChildHost, LogLines, nap_executions as executions};
use perdure_tests::{DURABLE, eventually, guests};

const CHILD: &str = env!("CARGO_BIN_EXE_perdure-child");
const INSTANCES: usize = 30;
const STEPS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_several_moments_loses_no_instance_and_no_result() -> anyhow::Result<()> {
    perdure_tests::init_logging();
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("functions"))?;
    std::fs::copy(
        guests::DURABLE_PROBE,
        dir.path().join("functions/durable-probe.wasm"),
    )?;
    let log = LogLines::default();
    let mut host = ChildHost::start(CHILD, dir.path(), &log).await?;
    let input = format!(r#"{{"steps": {STEPS}, "sleepMs": 30}}"#);
    for i in 0..INSTANCES {
        let r = host
            .send(
                Method::POST,
                &format!("{DURABLE}/orchestrators/SleepyChain/crash-{i}"),
                &input,
            )
            .await?;
        assert_eq!(r.status, 202, "{}", r.text());
    }

    // Killed right after the starts were acknowledged, then twice more as
    // activities complete.
    for executed_before_kill in [0, 25, 70] {
        eventually(
            Duration::from_secs(60),
            &format!("{executed_before_kill} activity executions"),
            || async {
                let done: usize = executions(&log).values().sum();
                Ok((done >= executed_before_kill).then_some(()))
            },
        )
        .await?;
        host.kill()?;
        host = ChildHost::start(CHILD, dir.path(), &log).await?;
    }

    for i in 0..INSTANCES {
        let status = host.finished_status(&format!("crash-{i}")).await?;
        assert_eq!(status["runtimeStatus"], "Completed", "crash-{i}: {status}");
        assert_eq!(status["output"], STEPS, "crash-{i}: {status}");
    }

    // The kills interrupted work: a restart found instances to resume.
    let resumed = log
        .lock()
        .map(|l| {
            l.iter()
                .filter(|l| l.contains("resuming unfinished instances"))
                .count()
        })
        .unwrap_or(0);
    assert!(resumed >= 1, "no restart found unfinished instances");

    let counts = executions(&log);
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    println!(
        "{} activity calls, {} executions, {duplicates} re-executed after a kill; {resumed} of 3 restarts resumed instances",
        counts.len(),
        counts.values().sum::<usize>()
    );
    assert_eq!(
        counts.len(),
        INSTANCES * STEPS,
        "every activity call ran at least once"
    );
    host.kill()?;
    Ok(())
}

perdure_tests::also_on_postgres!(sigkill_at_several_moments_loses_no_instance_and_no_result);
