//! The greet example over HTTP: query and JSON input, keys, routing errors
//! and body limits.

use http::Method;
use perdure_tests::{MASTER_KEY, TestHost, guests};

const HELLO_ADA: &str = "Hello, Ada. This HTTP triggered function executed successfully.";

async fn greet_host() -> anyhow::Result<TestHost> {
    TestHost::start_with(&[("greet.wasm", guests::GREET)], |c| {
        c.http.max_body_bytes = 1024
    })
    .await
}

#[tokio::test]
async fn get_with_name_in_query() -> anyhow::Result<()> {
    let host = greet_host().await?;
    let r = host
        .get(&format!("/api/greet?name=Ada&code={MASTER_KEY}"))
        .await?;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), HELLO_ADA);
    assert_eq!(r.headers["content-type"], "text/plain; charset=utf-8");
    Ok(())
}

#[tokio::test]
async fn post_with_json_body() -> anyhow::Result<()> {
    let host = greet_host().await?;
    let r = host
        .send_with_master_key(Method::POST, "/api/greet", r#"{"name":"Ada"}"#)
        .await?;
    assert_eq!((r.status, r.text().as_str()), (200, HELLO_ADA));
    Ok(())
}

#[tokio::test]
async fn without_a_name_answers_the_generic_message() -> anyhow::Result<()> {
    let host = greet_host().await?;
    let r = host.get(&format!("/api/greet?code={MASTER_KEY}")).await?;
    assert_eq!(r.status, 200);
    assert!(
        r.text()
            .starts_with("This HTTP triggered function executed successfully."),
        "{}",
        r.text()
    );
    Ok(())
}

#[tokio::test]
async fn bad_json_is_a_400_from_the_function() -> anyhow::Result<()> {
    let host = greet_host().await?;
    let r = host
        .send_with_master_key(Method::POST, "/api/greet", "{not json")
        .await?;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.error_code().as_deref(), Some("invalid-argument"));
    Ok(())
}

#[tokio::test]
async fn missing_or_wrong_key_is_401() -> anyhow::Result<()> {
    let host = greet_host().await?;
    let missing = host.get("/api/greet?name=Ada").await?;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.error_code().as_deref(), Some("unauthenticated"));
    let wrong = host.get("/api/greet?name=Ada&code=nope").await?;
    assert_eq!(wrong.status, 401);
    Ok(())
}

#[tokio::test]
async fn function_keys_work_until_revoked() -> anyhow::Result<()> {
    let host = greet_host().await?;
    let created = host
        .send_with_master_key(Method::POST, "/admin/keys", r#"{"name":"ci"}"#)
        .await?;
    assert_eq!(created.status, 201, "{}", created.text());
    let created = created.json()?;
    let key = created["key"].as_str().unwrap_or_default().to_owned();
    let id = created["id"].as_str().unwrap_or_default().to_owned();

    let ok = host
        .request(
            Method::GET,
            "/api/greet?name=Ada",
            &[("x-functions-key", &key)],
            "",
        )
        .await?;
    assert_eq!((ok.status, ok.text().as_str()), (200, HELLO_ADA));

    let listed = host.get_admin("/admin/keys").await?;
    assert!(
        listed.text().contains(&id) && !listed.text().contains(&key),
        "{}",
        listed.text()
    );

    let scoped = host
        .send_with_master_key(
            Method::POST,
            "/admin/keys",
            r#"{"name":"other","function":"SomethingElse"}"#,
        )
        .await?
        .json()?;
    let scoped_key = scoped["key"].as_str().unwrap_or_default();
    let refused = host
        .request(
            Method::GET,
            "/api/greet",
            &[("x-functions-key", scoped_key)],
            "",
        )
        .await?;
    assert_eq!(
        refused.status, 401,
        "a key scoped to another function must not work"
    );

    let revoked = host
        .send_with_master_key(Method::DELETE, &format!("/admin/keys/{id}"), "")
        .await?;
    assert_eq!(revoked.status, 204);
    let after = host
        .request(Method::GET, "/api/greet", &[("x-functions-key", &key)], "")
        .await?;
    assert_eq!(after.status, 401);
    Ok(())
}

#[tokio::test]
async fn unknown_route_is_404_and_wrong_method_is_405() -> anyhow::Result<()> {
    let host = greet_host().await?;
    let missing = host
        .get(&format!("/api/nothing-here?code={MASTER_KEY}"))
        .await?;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.error_code().as_deref(), Some("not-found"));
    let outside = host.get("/elsewhere").await?;
    assert_eq!(outside.status, 404);
    let wrong = host
        .send_with_master_key(Method::DELETE, "/api/greet", "")
        .await?;
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.headers["allow"], "GET, POST");
    Ok(())
}

#[tokio::test]
async fn oversized_body_is_413() -> anyhow::Result<()> {
    let host = greet_host().await?;
    let body = format!(r#"{{"name":"{}"}}"#, "a".repeat(2000));
    let r = host
        .send_with_master_key(Method::POST, "/api/greet", body)
        .await?;
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.error_code().as_deref(), Some("payload-too-large"));
    Ok(())
}
