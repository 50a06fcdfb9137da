//! Keys never reach the log: the real binary, logging at debug level, is
//! sent the master key (header and `code` parameter), a wrong key and a
//! function key; no log line holds any of them.

use std::time::Duration;

use http::Method;
use perdure_tests::child::{ChildHost, LogLines};
use perdure_tests::{MASTER_KEY, eventually, guests};

const CHILD: &str = env!("CARGO_BIN_EXE_perdure-child");
const WRONG_KEY: &str = "not-the-key-4f1c9e2b7a";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_never_reach_the_log() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("functions"))?;
    std::fs::copy(guests::GREET, dir.path().join("functions/greet.wasm"))?;
    let log = LogLines::default();
    let args = ChildHost::args_for(dir.path());
    let host = ChildHost::start_with_env(CHILD, &args, &[("PERDURE_LOG", "debug")], &log).await?;

    let created = host
        .send(
            Method::POST,
            "/admin/keys",
            r#"{"name":"ci","function":"GreetFunction"}"#,
        )
        .await?;
    assert_eq!(created.status, 201, "{}", created.text());
    let function_key = created.json()?["key"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(function_key.len() >= 32);
    let client = host.client();
    for path in [
        "/api/greet?name=Ada".to_owned(),
        format!("/api/greet?name=Ada&code={MASTER_KEY}"),
        format!("/api/greet?name=Ada&code={function_key}"),
        format!("/api/greet?name=Ada&code={WRONG_KEY}"),
        format!("/admin/functions?code={WRONG_KEY}"),
    ] {
        client.send(Method::GET, &path, "").await?;
    }
    // The requests are logged (at debug) once answered.
    eventually(
        Duration::from_secs(10),
        "the requests in the log",
        || async {
            let logged = log
                .lock()
                .map(|l| l.iter().filter(|l| l.contains("request")).count())
                .unwrap_or(0);
            Ok((logged >= 6).then_some(()))
        },
    )
    .await?;
    host.kill()?;
    let lines = log.lock().map(|l| l.clone()).unwrap_or_default();
    for secret in [MASTER_KEY, function_key.as_str(), WRONG_KEY] {
        let leaked: Vec<&String> = lines.iter().filter(|l| l.contains(secret)).collect();
        assert!(leaked.is_empty(), "a key reached the log: {leaked:?}");
    }
    Ok(())
}
