//! The management URLs of an instance, shaped like Azure Durable Functions'
//! check-status payload so that its clients work unchanged.
//!
//! Each URL carries the instance's own key (`code=`), which is valid for
//! that instance's routes only: handing the payload to a client does not
//! hand out the master key.

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde::Serialize;

use perdure_records::InstanceId;

/// The base path of the durable management API.
pub const BASE_PATH: &str = "/runtime/webhooks/durabletask";

/// Characters escaped in a path segment or query value.
const COMPONENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'+')
    .add(b'/')
    .add(b':')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'@')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// Percent-encodes a path segment or a query value.
pub fn encode_component(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

/// The check-status payload: `{id, statusQueryGetUri, sendEventPostUri,
/// ...}`. `{eventName}` and `{text}` are placeholders the caller fills in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagementUrls {
    pub id: String,
    pub status_query_get_uri: String,
    pub send_event_post_uri: String,
    pub terminate_post_uri: String,
    pub purge_history_delete_uri: String,
    pub restart_post_uri: String,
    pub suspend_post_uri: String,
    pub resume_post_uri: String,
}

impl ManagementUrls {
    /// `base_url` is scheme, host and port, e.g. `http://127.0.0.1:7071`.
    pub fn new(base_url: &str, id: &InstanceId, key: &str) -> Self {
        let instance = format!(
            "{}{BASE_PATH}/instances/{}",
            base_url.trim_end_matches('/'),
            encode_component(id.as_str())
        );
        let code = format!("code={}", encode_component(key));
        Self {
            id: id.to_string(),
            status_query_get_uri: format!("{instance}?{code}"),
            send_event_post_uri: format!("{instance}/raiseEvent/{{eventName}}?{code}"),
            terminate_post_uri: format!("{instance}/terminate?reason={{text}}&{code}"),
            purge_history_delete_uri: format!("{instance}?{code}"),
            restart_post_uri: format!("{instance}/restart?{code}"),
            suspend_post_uri: format!("{instance}/suspend?reason={{text}}&{code}"),
            resume_post_uri: format!("{instance}/resume?reason={{text}}&{code}"),
        }
    }
}

/// An HTTP answer built here for both the HTTP API and the guests' durable
/// client (each turns it into its own response type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Seconds a client is asked to wait between status polls.
pub const RETRY_AFTER_SECS: u32 = 10;

impl PlainResponse {
    fn json(status: u16, body: Vec<u8>) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body,
        }
    }

    /// 202 Accepted with `Location` (the status URL), `Retry-After` and
    /// the management URLs as the body.
    pub fn check_status(urls: &ManagementUrls) -> Self {
        let mut response = Self::json(202, serde_json::to_vec(urls).unwrap_or_default());
        response
            .headers
            .push(("location".into(), urls.status_query_get_uri.clone()));
        response
            .headers
            .push(("retry-after".into(), RETRY_AFTER_SECS.to_string()));
        response
    }

    /// 200 with a finished instance's output (JSON text) as the body.
    pub fn output(output: Option<&str>) -> Self {
        Self::json(200, output.unwrap_or("null").as_bytes().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_keys_are_escaped() -> Result<(), Box<dyn std::error::Error>> {
        let id = InstanceId::parse("a b&c")?;
        let urls = ManagementUrls::new("http://h:1/", &id, "k+y");
        assert_eq!(
            urls.status_query_get_uri,
            "http://h:1/runtime/webhooks/durabletask/instances/a%20b%26c?code=k%2By"
        );
        assert!(
            urls.send_event_post_uri
                .ends_with("/instances/a%20b%26c/raiseEvent/{eventName}?code=k%2By")
        );
        Ok(())
    }
}
