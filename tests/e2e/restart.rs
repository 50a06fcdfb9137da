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
