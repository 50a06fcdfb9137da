//! Restarting over the same folder reuses the compiled code.

use perdure_tests::{MASTER_KEY, TestHost, guests};

#[tokio::test]
async fn a_restart_loads_compiled_code_from_the_cache_and_serves_at_once() -> anyhow::Result<()> {
    let mut host = TestHost::start_with(&[("greet.wasm", guests::GREET)], |_| {}).await?;
    let first = host.app_status("greet").await?.unwrap_or_default();
    assert_eq!(first["compiledCode"], "compiled", "{first}");

    host.restart().await?;
    // No polling: apps in the folder are loaded before start returns.
    let r = host
        .get(&format!("/api/greet?name=Ada&code={MASTER_KEY}"))
        .await?;
    assert_eq!(r.status, 200, "{}", r.text());
    let second = host.app_status("greet").await?.unwrap_or_default();
    assert_eq!(second["compiledCode"], "hit", "{second}");
    assert_eq!(second["digest"], first["digest"]);
    host.shutdown().await;
    Ok(())
}

const CHILD: &str = env!("CARGO_BIN_EXE_perdure-child");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_host_on_the_same_database_refuses_to_start() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("functions"))?;
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let first = perdure_tests::child::ChildHost::start(CHILD, dir.path(), &log).await?;

    let db = dir.path().to_path_buf();
    let second = tokio::task::spawn_blocking(move || {
        perdure_tests::child::run_to_exit(
            std::process::Command::new(CHILD)
                .arg("serve")
                .arg("--functions")
                .arg(db.join("functions"))
                .arg("--db")
                .arg(db.join("perdure.db"))
                .args(["--listen", "127.0.0.1:0"])
                .env("PERDURE_MASTER_KEY", MASTER_KEY),
            std::time::Duration::from_secs(60),
        )
    })
    .await??;
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("in use by another perdure") && stderr.contains("perdure.db"),
        "{stderr}"
    );
    let r = first.send(http::Method::GET, "/admin/health", "").await?;
    assert_eq!(r.status, 200, "the first host keeps serving");

    // A killed owner leaves no lock behind.
    first.kill()?;
    let again = perdure_tests::child::ChildHost::start(CHILD, dir.path(), &log).await?;
    again.kill()?;
    Ok(())
}
