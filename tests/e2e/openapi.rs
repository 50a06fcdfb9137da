//! The OpenAPI document at `/openapi.json` is served without a key and
//! every route it documents reaches its handler (whatever the handler then
//! says of the sample values); a method a path lacks gets 405 with
//! `Allow`. (A unit test checks the document against the router's table.)

use http::Method;
use perdure_tests::{TestHost, guests};

/// A sample value for each path parameter of the document.
fn sample(param: &str) -> &'static str {
    match param {
        "eventName" => "Go",
        "key" => "k1",
        _ => "nope",
    }
}

#[tokio::test]
async fn every_documented_route_reaches_its_handler() -> anyhow::Result<()> {
    let host = TestHost::start_with(&[("greet.wasm", guests::GREET)], |_| {}).await?;
    let r = host.get("/openapi.json").await?;
    assert_eq!(r.status, 200, "{}", r.text());
    let doc = r.json()?;
    assert_eq!(doc["openapi"], "3.0.3");
    let paths = doc["paths"].as_object().cloned().unwrap_or_default();
    assert!(paths.len() >= 18, "{} paths", paths.len());
    for (template, item) in &paths {
        let path = template
            .split('/')
            .map(
                |segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(param) => sample(param),
                    None => segment,
                },
            )
            .collect::<Vec<_>>()
            .join("/");
        for method in item.as_object().into_iter().flat_map(|o| o.keys()) {
            let method = Method::from_bytes(method.to_uppercase().as_bytes())?;
            let r = host.send_with_master_key(method.clone(), &path, "").await?;
            let message = r.error_message();
            assert!(
                r.status != 405
                    && !["no route", "no durable route", "no admin route"]
                        .iter()
                        .any(|unrouted| message.starts_with(unrouted)),
                "{method} {path} did not reach a handler: {} {message}",
                r.status
            );
        }
    }
    let r = host
        .send_with_master_key(Method::PUT, "/runtime/webhooks/durabletask/instances/x", "")
        .await?;
    assert_eq!(r.status, 405, "{}", r.text());
    assert_eq!(
        r.headers.get("allow").and_then(|v| v.to_str().ok()),
        Some("GET, DELETE")
    );
    Ok(())
}
