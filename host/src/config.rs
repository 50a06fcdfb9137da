//! An app's configuration: the optional `NAME.toml` beside `NAME.wasm` in
//! the watched folder, loaded and reloaded with the app.
//!
//! ```toml
//! [outbound]
//! # Where the app's activities may send HTTP requests: scheme, host and
//! # port. A host may start with `*.` to allow every subdomain of a domain
//! # (not the domain itself). The port defaults to the scheme's.
//! allowed_hosts = ["http://127.0.0.1:8080", "https://api.example.com"]
//! # Per-request deadline (connect, send and read the whole response).
//! timeout_ms = 10000
//! # Largest response body read; a bigger one fails the request.
//! max_response_bytes = 4194304
//!
//! [limits]
//! # Each may only lower the host's own limit (`perdure serve` flags).
//! # Wall-clock time one invocation may take.
//! timeout_ms = 5000
//! # Linear memory one invocation may use.
//! memory_mib = 64
//! # HTTP invocations and activities of this app running at once; past it,
//! # HTTP requests get 429 and activities wait their turn.
//! max_concurrency = 16
//! ```
//!
//! Unknown keys are errors, so a typo is reported rather than ignored; a
//! broken file keeps the app from loading, like a broken module.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// Everything an app's configuration file says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    #[serde(default)]
    pub outbound: OutboundConfig,
    #[serde(default)]
    pub limits: AppLimits,
}

/// Limits of one app's invocations. Each may only lower the host's limit
/// of the same name; `None` keeps the host's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppLimits {
    /// Wall-clock time one invocation may take, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Linear memory one invocation may use, in MiB.
    pub memory_mib: Option<usize>,
    /// HTTP invocations and activities of this app running at once.
    pub max_concurrency: Option<usize>,
}

impl AppLimits {
    /// Refuses zero limits (nothing could run) and limits above the host's
    /// (`host_timeout`, `host_memory_bytes`, `host_instances` sandbox
    /// slots): an app cannot grant itself more than the operator allows.
    pub fn check(
        &self,
        host_timeout: Duration,
        host_memory_bytes: usize,
        host_instances: u32,
    ) -> Result<(), String> {
        if let Some(ms) = self.timeout_ms {
            let limit = host_timeout.as_millis();
            if ms == 0 || u128::from(ms) > limit {
                return Err(format!(
                    "[limits] timeout_ms = {ms}: must be between 1 and the host's limit of {limit}"
                ));
            }
        }
        if let Some(mib) = self.memory_mib {
            let limit = host_memory_bytes >> 20;
            if mib == 0 || mib > limit {
                return Err(format!(
                    "[limits] memory_mib = {mib}: must be between 1 and the host's limit of {limit}"
                ));
            }
        }
        if let Some(n) = self.max_concurrency
            && (n == 0 || n > host_instances as usize)
        {
            return Err(format!(
                "[limits] max_concurrency = {n}: must be between 1 and the host's {host_instances} instances"
            ));
        }
        Ok(())
    }
}

/// Outbound HTTP from activities.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundConfig {
    #[serde(default)]
    pub allowed_hosts: Vec<AllowedHost>,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
}

fn default_timeout_ms() -> u64 {
    10_000
}

fn default_max_response_bytes() -> usize {
    4 << 20
}

impl Default for OutboundConfig {
    fn default() -> Self {
        Self {
            allowed_hosts: Vec::new(),
            timeout_ms: default_timeout_ms(),
            max_response_bytes: default_max_response_bytes(),
        }
    }
}

/// One allowed origin: `scheme://host[:port]`, host optionally `*.domain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    pub scheme: String,
    /// Lower case; starts with `*.` for a subdomain wildcard.
    pub host: String,
    pub port: u16,
}

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a valid app configuration: {message}")]
    Invalid { path: String, message: String },
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl std::str::FromStr for AllowedHost {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("allowed host {s:?}: {why} (expected scheme://host[:port])");
        let (scheme, rest) = s.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let scheme = scheme.to_ascii_lowercase();
        let port = default_port(&scheme).ok_or_else(|| bad("the scheme must be http or https"))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(bad("only scheme, host and port are allowed"));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, p)) if !host.ends_with(']') || rest.starts_with('[') => (
                host,
                p.parse().map_err(|_| bad("the port is not a number"))?,
            ),
            _ => (rest, port),
        };
        let name = host.strip_prefix("*.").unwrap_or(host);
        if name.is_empty() || name.contains('*') {
            return Err(bad("a host may only start with `*.`"));
        }
        Ok(Self {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

impl<'de> Deserialize<'de> for AllowedHost {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl AllowedHost {
    /// True if a request to `scheme://host:port` is allowed by this entry.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        if !self.scheme.eq_ignore_ascii_case(scheme) || self.port != port {
            return false;
        }
        let host = host.to_ascii_lowercase();
        match self.host.strip_prefix("*.") {
            Some(domain) => host
                .strip_suffix(domain)
                .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
            None => self.host == host,
        }
    }
}

impl OutboundConfig {
    /// True if any entry allows the origin.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.allowed_hosts
            .iter()
            .any(|a| a.allows(scheme, host, port))
    }
}

impl AppConfig {
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: path.display().to_string(),
            message: e.message().to_owned(),
        })
    }

    /// The configuration beside `component` (`NAME.toml` for `NAME.wasm`);
    /// the default if there is none. Blocking: call off the async threads.
    pub fn load_beside(component: &Path) -> Result<Self, ConfigError> {
        let path = config_path(component);
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(ConfigError::Read {
                path: path.display().to_string(),
                source,
            }),
        }
    }
}

/// `NAME.toml` for `NAME.wasm`.
pub fn config_path(component: &Path) -> std::path::PathBuf {
    component.with_extension("toml")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Result<AppConfig, ConfigError> {
        AppConfig::parse(text, Path::new("app.toml"))
    }

    #[test]
    fn allowed_hosts_match_scheme_host_and_port() -> anyhow::Result<()> {
        let c = config(
            r#"[outbound]
               allowed_hosts = ["http://127.0.0.1:8080", "https://API.example.com", "https://*.svc.test"]"#,
        )?;
        let o = &c.outbound;
        assert!(o.allows("http", "127.0.0.1", 8080));
        assert!(!o.allows("http", "127.0.0.1", 8081));
        assert!(!o.allows("https", "127.0.0.1", 8080));
        assert!(o.allows("https", "api.example.com", 443));
        assert!(!o.allows("http", "api.example.com", 80));
        assert!(o.allows("https", "a.svc.test", 443));
        assert!(!o.allows("https", "svc.test", 443));
        assert!(!o.allows("https", "evilsvc.test", 443));
        assert_eq!(o.timeout_ms, 10_000);
        Ok(())
    }

    #[test]
    fn mistakes_are_reported() {
        for bad in [
            "[outbound]\nallowed_hosts = [\"127.0.0.1:8080\"]",
            "[outbound]\nallowed_hosts = [\"ftp://x\"]",
            "[outbound]\nallowed_hosts = [\"http://x/path\"]",
            "[outbound]\nallowed_hosts = [\"http://a*b\"]",
            "[outbound]\nallowed_host = []",
            "[outbund]",
            "not toml",
        ] {
            assert!(config(bad).is_err(), "{bad} was accepted");
        }
        assert_eq!(config("").ok(), Some(AppConfig::default()));
    }

    #[test]
    fn limits_may_only_lower_the_hosts() -> anyhow::Result<()> {
        let host = (Duration::from_secs(30), 128 << 20, 1000);
        let c = config("[limits]\ntimeout_ms = 500\nmemory_mib = 16\nmax_concurrency = 2\n")?;
        assert_eq!(c.limits.timeout_ms, Some(500));
        assert_eq!(c.limits.memory_mib, Some(16));
        assert_eq!(c.limits.max_concurrency, Some(2));
        assert!(c.limits.check(host.0, host.1, host.2).is_ok());
        for bad in [
            "[limits]\ntimeout_ms = 30001",
            "[limits]\ntimeout_ms = 0",
            "[limits]\nmemory_mib = 129",
            "[limits]\nmax_concurrency = 0",
            "[limits]\nmax_concurrency = 1001",
            "[limits]\nmax_concurrency = 4000000000000000000",
        ] {
            let limits = config(bad)?.limits;
            assert!(
                limits.check(host.0, host.1, host.2).is_err(),
                "{bad} was accepted"
            );
        }
        assert!(config("[limits]\nmemory = 1").is_err());
        Ok(())
    }
}
