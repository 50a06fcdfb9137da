//! Outbound HTTPS from activities: servers verified against the built-in
//! roots plus the operator's `--outbound-ca-file`; an untrusted certificate
//! is a clear error, and the allow-list applies to https as to http.

use perdure_tests::service::TestService;
use perdure_tests::tls::TestCa;
use perdure_tests::{TestHost, guests};
use serde_json::json;

/// The probe app allowed to reach `origins`, on a host that trusts `ca`.
async fn fetching_host(ca: &TestCa, origins: &[String]) -> anyhow::Result<TestHost> {
    let ca_file = tempfile::NamedTempFile::new()?;
    std::fs::write(ca_file.path(), ca.pem())?;
    let ca_path = ca_file.path().to_path_buf();
    let host = TestHost::start_with(&[], |c| c.outbound_ca_file = Some(ca_path)).await?;
    // The host read the file at start; it need not outlive that.
    drop(ca_file);
    let allowed: Vec<String> = origins.iter().map(|o| format!("{o:?}")).collect();
    let config = format!("[outbound]\nallowed_hosts = [{}]\n", allowed.join(", "));
    host.deploy_configured("probe", guests::DURABLE_PROBE, &config)
        .await?;
    Ok(host)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_to_a_trusted_server_works_and_an_untrusted_one_is_refused() -> anyhow::Result<()> {
    let ca = TestCa::new("Perdure test CA")?;
    let trusted = TestService::start_tls(ca.server_config(&["127.0.0.1", "localhost"])?).await?;
    let stranger = TestCa::new("Some other CA")?;
    let untrusted =
        TestService::start_tls(stranger.server_config(&["127.0.0.1", "localhost"])?).await?;
    assert!(trusted.origin().starts_with("https://"));
    let host = fetching_host(&ca, &[trusted.origin(), untrusted.origin()]).await?;

    let url = format!("{}/health", trusted.origin());
    let status = host
        .run_orchestration("Fetch", &json!(url).to_string())
        .await?;
    assert_eq!(status["runtimeStatus"], "Completed", "{status}");
    assert_eq!(
        status["output"],
        json!({ "status": 200, "body": "hello" }),
        "{status}"
    );
    assert_eq!(trusted.health_checks(), 1);

    let url = format!("{}/health", untrusted.origin());
    let status = host
        .run_orchestration("Fetch", &json!(url).to_string())
        .await?;
    assert_eq!(status["runtimeStatus"], "Failed", "{status}");
    let message = status["output"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("certificate") && message.contains("UnknownIssuer"),
        "the error says why: {status}"
    );
    assert_eq!(untrusted.health_checks(), 0, "nothing was served");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_to_an_origin_not_allowed_is_denied_before_connecting() -> anyhow::Result<()> {
    let ca = TestCa::new("Perdure test CA")?;
    let service = TestService::start_tls(ca.server_config(&["127.0.0.1"])?).await?;
    // Allowed: the same address over plain http only.
    let plain = service.origin().replacen("https://", "http://", 1);
    let host = fetching_host(&ca, &[plain]).await?;
    let url = format!("{}/health", service.origin());
    let status = host
        .run_orchestration("Fetch", &json!(url).to_string())
        .await?;
    assert_eq!(status["runtimeStatus"], "Failed", "{status}");
    assert_eq!(status["output"]["code"], "permission-denied", "{status}");
    assert_eq!(service.connections(), 0, "refused before connecting");
    Ok(())
}
