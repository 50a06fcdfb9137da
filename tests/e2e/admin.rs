//! The admin API: master key only; listing, health and key management.

use http::Method;
use perdure_tests::{TestHost, guests};

#[tokio::test]
async fn admin_routes_need_the_master_key() -> anyhow::Result<()> {
    let host = TestHost::start_with(&[("greet.wasm", guests::GREET)], |_| {}).await?;
    let created = host
        .send_with_master_key(Method::POST, "/admin/keys", r#"{"name":"f"}"#)
        .await?
        .json()?;
    let function_key = created["key"].as_str().unwrap_or_default().to_owned();
    for path in ["/admin/health", "/admin/functions", "/admin/keys"] {
        assert_eq!(host.get(path).await?.status, 401, "{path} without a key");
        let with_function_key = host
            .request(Method::GET, path, &[("x-functions-key", &function_key)], "")
            .await?;
        assert_eq!(with_function_key.status, 401, "{path} with a function key");
        assert_eq!(
            host.get_admin(path).await?.status,
            200,
            "{path} with the master key"
        );
    }
    Ok(())
}

#[tokio::test]
async fn functions_listing_describes_each_app() -> anyhow::Result<()> {
    let host = TestHost::start_with(&[("greet.wasm", guests::GREET)], |_| {}).await?;
    let app = host.app_status("greet").await?;
    let app = app.ok_or_else(|| anyhow::anyhow!("greet is not listed"))?;
    assert!(
        app["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("greet.wasm")),
        "{app}"
    );
    assert!(
        app["digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:") && d.len() == 71)
    );
    assert!(app["loadedTime"].is_string());
    assert_eq!(app["functions"][0]["name"], "GreetFunction");
    assert_eq!(app["functions"][0]["kind"], "http");
    assert_eq!(app["functions"][0]["http"]["route"], "greet");
    assert_eq!(app["functions"][0]["http"]["authLevel"], "function");
    assert_eq!(
        app["functions"][0]["http"]["methods"],
        serde_json::json!(["GET", "POST"])
    );
    assert!(app.get("lastError").is_none());

    let health = host.get_admin("/admin/health").await?.json()?;
    assert_eq!(health["status"], "ready");
    assert_eq!(health["apps"], 1);
    Ok(())
}

#[tokio::test]
async fn bad_key_requests_are_400() -> anyhow::Result<()> {
    let host = TestHost::start().await?;
    let bad_json = host
        .send_with_master_key(Method::POST, "/admin/keys", "{")
        .await?;
    assert_eq!(bad_json.status, 400);
    let bad_name = host
        .send_with_master_key(Method::POST, "/admin/keys", r#"{"name":"has space"}"#)
        .await?;
    assert_eq!(bad_name.status, 400);
    // Found by the API fuzzer: a key for the function "" was created.
    let bad_function = host
        .send_with_master_key(Method::POST, "/admin/keys", r#"{"name":"f","function":""}"#)
        .await?;
    assert_eq!(bad_function.status, 400, "{}", bad_function.text());
    assert!(bad_function.error_message().contains("function name"));
    let unknown = host
        .send_with_master_key(Method::DELETE, "/admin/keys/nope", "")
        .await?;
    assert_eq!(unknown.status, 404);
    Ok(())
}

/// Found by the API fuzzer: admin path segments were not percent-decoded
/// (so an id read differently than on the durable routes) and any text
/// passed for an orchestrator name.
#[tokio::test]
async fn admin_path_segments_are_decoded_and_checked() -> anyhow::Result<()> {
    let host = TestHost::start().await?;
    let r = host
        .send_with_master_key(Method::POST, "/admin/orchestrators/%C2%84/upgrade", "")
        .await?;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.error_message().contains("not an orchestrator name"),
        "{}",
        r.text()
    );
    let r = host
        .send_with_master_key(Method::POST, "/admin/instances/a%23b/upgrade", "")
        .await?;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.error_message().contains("\"a#b\""), "{}", r.text());
    Ok(())
}
