//! Deploying through the admin API, without file access to the host:
//! `PUT /admin/apps/{name}` (the component), `PUT /admin/apps/{name}/config`
//! (its `NAME.toml`), `DELETE /admin/apps/{name}`. A deployment that does
//! not load changes nothing.

use http::Method;
use perdure_tests::{MASTER_KEY, TestHost, guests};

fn greet_path() -> String {
    format!("/api/greet?name=Ada&code={MASTER_KEY}")
}

async fn put(
    host: &TestHost,
    path: &str,
    body: Vec<u8>,
) -> anyhow::Result<perdure_tests::TestResponse> {
    host.send_with_master_key(Method::PUT, path, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_is_deployed_configured_and_removed_over_http() -> anyhow::Result<()> {
    let host = TestHost::start().await?;
    // Without a body: the host answers before reading one and closes the
    // connection, which a pooled client could otherwise reuse mid-write.
    let unauthenticated = host
        .request(Method::PUT, "/admin/apps/greet", &[], Vec::new())
        .await?;
    assert_eq!(unauthenticated.status, 401, "{}", unauthenticated.text());

    let r = put(&host, "/admin/apps/greet", std::fs::read(guests::GREET)?).await?;
    assert_eq!(r.status, 200, "{}", r.text());
    let digest = r.json()?["digest"].as_str().unwrap_or_default().to_owned();
    assert!(digest.starts_with("sha256:"), "{}", r.text());
    let greeted = host.get(&greet_path()).await?;
    assert_eq!(greeted.status, 200, "served at once: {}", greeted.text());
    assert!(
        host.functions_dir().join("greet.wasm").exists(),
        "kept in the folder, so a restart loads it"
    );

    // A broken component changes nothing.
    let r = put(&host, "/admin/apps/greet", b"\0asm not really".to_vec()).await?;
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.error_code().as_deref(), Some("invalid-app"));
    assert_eq!(
        host.get(&greet_path()).await?.status,
        200,
        "the old version serves"
    );
    assert_eq!(
        std::fs::read(host.functions_dir().join("greet.wasm"))?,
        std::fs::read(guests::GREET)?,
        "the folder holds the old version"
    );

    // A configuration that does not parse changes nothing either.
    let r = put(
        &host,
        "/admin/apps/greet/config",
        b"[limits\nnot toml".to_vec(),
    )
    .await?;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(!host.functions_dir().join("greet.toml").exists());
    let r = put(
        &host,
        "/admin/apps/greet/config",
        b"[limits]\nmax_concurrency = 4\n".to_vec(),
    )
    .await?;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()?["digest"].as_str(),
        Some(digest.as_str()),
        "same code"
    );
    assert!(host.functions_dir().join("greet.toml").exists());

    let r = host
        .send_with_master_key(Method::DELETE, "/admin/apps/greet", "")
        .await?;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(host.get(&greet_path()).await?.status, 404, "unloaded");
    assert!(!host.functions_dir().join("greet.wasm").exists());
    assert!(!host.functions_dir().join("greet.toml").exists());
    let r = host
        .send_with_master_key(Method::DELETE, "/admin/apps/greet", "")
        .await?;
    assert_eq!(r.status, 404, "{}", r.text());
    let r = put(&host, "/admin/apps/greet/config", b"".to_vec()).await?;
    assert_eq!(r.status, 404, "no app to configure: {}", r.text());
    let r = put(
        &host,
        "/admin/apps/..%2Fescape",
        std::fs::read(guests::GREET)?,
    )
    .await?;
    assert_eq!(r.status, 422, "a name that is no app name: {}", r.text());
    Ok(())
}
