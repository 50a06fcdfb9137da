//! A database that cannot be written (its files made immutable, which even
//! root cannot write) refuses new work with 503 and a clear error while
//! the host keeps serving; once it can be written again, work resumes.
//! Needs `chattr` and a file system with the immutable flag (ext4 and the
//! like, as root); elsewhere the test says so and checks nothing.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use perdure_tests::{TestHost, guests};

fn chattr(flag: &str, file: &Path) -> bool {
    Command::new("chattr")
        .arg(flag)
        .arg(file)
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_database_refuses_new_work_and_resumes() -> anyhow::Result<()> {
    let host = TestHost::start_with(
        &[
            ("durable-probe.wasm", guests::DURABLE_PROBE),
            ("greet.wasm", guests::GREET),
        ],
        |_| {},
    )
    .await?;
    let input = r#"{"steps": 2, "sleepMs": 1}"#;
    let done = host.run_orchestration("SleepyChain", input).await?;
    assert_eq!(done["runtimeStatus"], "Completed", "{done}");

    let db = host.temp_dir().join("perdure.db");
    let files: Vec<_> = ["perdure.db", "perdure.db-wal", "perdure.db-shm"]
        .iter()
        .map(|f| host.temp_dir().join(f))
        .filter(|f| f.exists())
        .collect();
    if !files.iter().all(|f| chattr("+i", f)) {
        for f in &files {
            chattr("-i", f);
        }
        println!("skipped: cannot make {} immutable here", db.display());
        return Ok(());
    }
    let refused = host.start_orchestration("SleepyChain", None, input).await;
    let greet = host.get_admin("/api/greet?name=Ada").await;
    for f in &files {
        chattr("-i", f);
    }
    let refused = refused?;
    assert_eq!(refused.status, 503, "{}", refused.text());
    let message = refused.error_message();
    assert!(message.contains("check the disk"), "{message}");
    assert!(refused.headers.contains_key("retry-after"));
    assert_eq!(greet?.status, 200);

    let again = host.start_instance("SleepyChain", input).await?;
    let done = host
        .wait_for_instance(&again, Duration::from_secs(30))
        .await?;
    assert_eq!(done["runtimeStatus"], "Completed", "{done}");
    Ok(())
}
