//! The monitor pattern: `MonitorExternalServiceOrchestrator` is an eternal
//! orchestration that checks a service, reports what it saw in its custom
//! status, alerts while the service is down, waits on a durable timer and
//! continues as new, so its journal stays small however long it runs.
//!
//! Input: `{"url": "http://127.0.0.1:PORT/health", "intervalSeconds": N}`
//! (default 300 s; fractions allowed), optionally `"alertUrl"`: where
//! `SendAlert` POSTs `{"url", "checks"}` while the service is down (without
//! it, the alert is logged). Custom status: `{"status": "up"|"down",
//! "checks": N}`, where `checks` counts every check since the first
//! generation.
//!
//! Outbound HTTP needs the service's origin (and the alert URL's) in
//! `monitor.toml`:
//!
//! ```toml
//! [outbound]
//! allowed_hosts = ["http://127.0.0.1:8080"]
//! ```

use std::time::Duration;

use perdure_sdk::prelude::*;

const DEFAULT_INTERVAL_SECONDS: f64 = 300.0;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Monitor {
    url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    interval_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    alert_url: Option<String>,
    /// Checks made by earlier generations.
    #[serde(default)]
    checks: u64,
}

fn monitor(ctx: &OrchestrationContext, monitor: Monitor) -> Result<()> {
    let up: bool = ctx.call_activity("CheckExternalServiceStatus", &monitor.url)?;
    let checks = monitor.checks + 1;
    let status = if up { "up" } else { "down" };
    ctx.set_custom_status(&json!({ "status": status, "checks": checks }))?;
    if !up {
        let alert = json!({ "url": monitor.url, "checks": checks, "alertUrl": monitor.alert_url });
        ctx.call_activity::<()>("SendAlert", &alert)?;
    }
    let seconds = monitor.interval_seconds.unwrap_or(DEFAULT_INTERVAL_SECONDS);
    let interval = Duration::try_from_secs_f64(seconds)
        .map_err(|e| Error::invalid_argument(format!("intervalSeconds: {e}")))?;
    ctx.create_timer(ctx.now() + interval);
    ctx.continue_as_new(&Monitor { checks, ..monitor }, true)
}

/// Up means a 2xx answer; no answer at all means down. A request the app's
/// configuration does not allow is an error, not "down".
fn check_status(url: String) -> Result<bool> {
    match perdure_sdk::outbound::get(&url) {
        Ok(response) => Ok(response.is_success()),
        Err(e) if e.code == ErrorCode::PermissionDenied => Err(e),
        Err(e) => {
            perdure_sdk::log::warn(&format!("{url} did not answer: {}", e.message));
            Ok(false)
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Alert {
    url: String,
    checks: u64,
    alert_url: Option<String>,
}

fn send_alert(alert: Alert) -> Result<()> {
    perdure_sdk::log::warn(&format!("ALERT: {} is down (check {})", alert.url, alert.checks));
    if let Some(target) = alert.alert_url {
        let body = json!({ "url": alert.url, "checks": alert.checks });
        let response = perdure_sdk::outbound::Request::new("POST", &target)
            .json(&body)?
            .send()?;
        if !response.is_success() {
            return Err(Error::application(format!(
                "the alert endpoint answered {}",
                response.status
            )));
        }
    }
    Ok(())
}

perdure_sdk::export_app! {
    Function::orchestrator("MonitorExternalServiceOrchestrator", monitor),
    Function::activity("CheckExternalServiceStatus", check_status),
    Function::activity("SendAlert", send_alert),
}
