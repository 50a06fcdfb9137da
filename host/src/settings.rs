//! Host-wide settings of `perdure serve`: its flags, and the same settings
//! in an optional TOML file (`--config FILE`).
//!
//! ```toml
//! functions = "functions"        # relative paths are relative to this file
//! db = "perdure.db"              # or "postgres://perdure@db.internal/perdure"
//! listen = "0.0.0.0:7071"
//! memory_limit_mib = 256
//! timeout_secs = 60
//! max_instances = 2000
//! max_body_bytes = 1048576
//! outbound_ca_file = "corporate-ca.pem"
//! ```
//!
//! Invariants: one struct is both the flags and the file, so a setting
//! cannot exist in one and not the other; a flag given on the command line
//! wins over the file, and the file over the built-in default; unknown keys
//! in the file are errors, so a typo is reported rather than ignored.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use crate::{Database, HostConfig, HttpLimits, SandboxLimits};

/// Every host-wide setting; `None` is "not given here".
#[derive(Debug, Clone, Default, PartialEq, Eq, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeSettings {
    /// A TOML file with any of these settings, named as the flags are but
    /// with `_` for `-` (e.g. `timeout_secs = 60`). Relative paths in it
    /// are relative to the file. Flags given here win over the file.
    #[arg(long, env = "PERDURE_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// The watched folder of function apps (`*.wasm` components). Created if
    /// missing. [default: ./functions]
    #[arg(long, value_name = "DIR")]
    pub functions: Option<PathBuf>,

    /// The database: a SQLite file (created if missing; compiled code is
    /// cached beside it in `<db>.cache/` unless --cache-dir says
    /// otherwise), or a PostgreSQL database that several hosts share,
    /// `postgres://user[:password]@host[:port]/database`.
    /// [default: ./perdure.db]
    #[arg(long, value_name = "PATH|URL", env = "PERDURE_DB")]
    pub db: Option<Database>,

    /// Where compiled code is cached by digest, so restarts do not
    /// recompile. [default: <db>.cache]
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// This host's id among the hosts of a shared PostgreSQL database
    /// (unique among them). A host restarted under the same id takes its
    /// partitions back at once rather than after the lease.
    /// [default: the machine's name and a random suffix]
    #[arg(long, value_name = "ID", env = "PERDURE_HOST_ID")]
    pub host_id: Option<String>,

    /// On a shared PostgreSQL database: how long a host's partitions stay
    /// its own without renewal, in milliseconds (renewed every third of
    /// it). A killed host's instances move to the others after this.
    /// [default: 10000]
    #[arg(long, value_name = "MS")]
    pub lease_ms: Option<u64>,

    /// Address and port to listen on. [default: 127.0.0.1:7071]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// Where the dashboard is served, on a listener of its own so that no
    /// page a function serves shares its origin; `off` for none.
    /// [default: 127.0.0.1, at the port after --listen's (7072)]
    #[arg(long, value_name = "ADDR|off")]
    pub dashboard_listen: Option<DashboardListen>,

    /// The master key: admin API, admin-level functions, and every
    /// function. Without one, a key is generated on first start, kept in
    /// the database and printed at start-up.
    #[arg(
        long,
        env = "PERDURE_MASTER_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub master_key: Option<String>,

    /// Linear memory one invocation may use, in MiB; an app's `[limits]`
    /// may lower it. [default: 128]
    #[arg(long, value_name = "MIB")]
    pub memory_limit_mib: Option<usize>,

    /// Wall-clock time one invocation may take, in seconds; an app's
    /// `[limits]` may lower it. [default: 30]
    #[arg(long, value_name = "SECS")]
    pub timeout_secs: Option<u64>,

    /// Instances that may run at once; past this, requests get 503.
    /// [default: 1000]
    #[arg(long, value_name = "N")]
    pub max_instances: Option<u32>,

    /// Largest output one invocation may return, in MiB: an HTTP response
    /// body, an activity's result, an orchestration's output or custom
    /// status. Larger ones fail the invocation. [default: 16]
    #[arg(long, value_name = "MIB")]
    pub max_output_mib: Option<usize>,

    /// HTTP connections served at once; past this, a new connection gets
    /// one 503 with Retry-After and is closed. [default: 10000]
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,

    /// Largest request body accepted, in bytes; larger ones get 413.
    /// [default: 4194304]
    #[arg(long, value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,

    /// PEM file of CA certificates that activities' outbound HTTPS trusts
    /// besides the built-in Mozilla roots (e.g. a company's own CA).
    #[arg(long, value_name = "FILE")]
    pub outbound_ca_file: Option<PathBuf>,

    /// On SIGTERM or SIGINT: how long in-flight requests get to finish, in
    /// seconds, before their connections are closed. Instances and
    /// activities stop where they are and resume from the journal at the
    /// next start. [default: 10]
    #[arg(long, value_name = "SECS")]
    pub shutdown_timeout_secs: Option<u64>,

    /// Largest size the database may grow to, in MiB. Past it, writes are
    /// refused as on a full disk: new work gets 503 and the host keeps
    /// serving; purging finished instances makes room. [default: no limit]
    #[arg(long, value_name = "MIB")]
    pub max_db_size_mib: Option<u64>,

    /// Serve `/metrics` without the master key, for a Prometheus scraper
    /// on a trusted network. Everything else still needs the key.
    /// [default: false]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub metrics_open: Option<bool>,

    /// Export each orchestration instance's trace (its activities, timers,
    /// event waits and sub-orchestrations as spans) to this OTLP/HTTP
    /// collector, e.g. http://127.0.0.1:4318 (spans are POSTed, protobuf,
    /// to /v1/traces). [default: no export, no connection]
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
}

/// `--dashboard-listen`: an address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum DashboardListen {
    Off,
    At(SocketAddr),
}

impl std::str::FromStr for DashboardListen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(Self::Off);
        }
        s.parse().map(Self::At).map_err(|e| {
            format!("{s:?} is neither an address such as 127.0.0.1:7072 nor `off`: {e}")
        })
    }
}

impl TryFrom<String> for DashboardListen {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// The dashboard's default address: loopback, at the port after the API's
/// (an ephemeral port if the API's is one).
pub fn dashboard_beside(api: SocketAddr) -> SocketAddr {
    let port = match api.port() {
        0 => 0,
        port => port.saturating_add(1),
    };
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Why the settings file was refused.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read the settings file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a valid settings file: {message}")]
    Invalid { path: String, message: String },
}

impl ServeSettings {
    /// These settings over the file's, if `--config` names one. Blocking
    /// (reads the file).
    pub fn with_file(self) -> Result<Self, SettingsError> {
        // `PERDURE_CONFIG=` (empty) names no file.
        let Some(path) = self.config.clone().filter(|p| !p.as_os_str().is_empty()) else {
            return Ok(self);
        };
        let file = Self::load(&path)?;
        Ok(self.over(file))
    }

    /// Reads a settings file; its relative paths become relative to it.
    pub fn load(path: &Path) -> Result<Self, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut file: Self = toml::from_str(&text).map_err(|e| SettingsError::Invalid {
            path: path.display().to_string(),
            message: e.message().to_owned(),
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        if let Some(Database::Sqlite(p)) = &mut file.db
            && p.is_relative()
        {
            *p = base.join(&*p);
        }
        for p in [
            &mut file.functions,
            &mut file.cache_dir,
            &mut file.outbound_ca_file,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(file)
    }

    /// Each setting from `self` if given, else from `under`. An empty
    /// master key (e.g. `PERDURE_MASTER_KEY=`) counts as not given.
    fn over(self, under: Self) -> Self {
        Self {
            config: self.config.or(under.config),
            functions: self.functions.or(under.functions),
            db: self.db.or(under.db),
            cache_dir: self.cache_dir.or(under.cache_dir),
            host_id: self.host_id.filter(|h| !h.is_empty()).or(under.host_id),
            lease_ms: self.lease_ms.or(under.lease_ms),
            listen: self.listen.or(under.listen),
            dashboard_listen: self.dashboard_listen.or(under.dashboard_listen),
            master_key: self
                .master_key
                .filter(|k| !k.is_empty())
                .or(under.master_key),
            memory_limit_mib: self.memory_limit_mib.or(under.memory_limit_mib),
            timeout_secs: self.timeout_secs.or(under.timeout_secs),
            max_instances: self.max_instances.or(under.max_instances),
            max_output_mib: self.max_output_mib.or(under.max_output_mib),
            max_connections: self.max_connections.or(under.max_connections),
            max_body_bytes: self.max_body_bytes.or(under.max_body_bytes),
            outbound_ca_file: self.outbound_ca_file.or(under.outbound_ca_file),
            shutdown_timeout_secs: self.shutdown_timeout_secs.or(under.shutdown_timeout_secs),
            max_db_size_mib: self.max_db_size_mib.or(under.max_db_size_mib),
            metrics_open: self.metrics_open.or(under.metrics_open),
            otlp_endpoint: self
                .otlp_endpoint
                .filter(|e| !e.is_empty())
                .or(under.otlp_endpoint),
        }
    }

    /// The host configuration: these settings, defaults for the rest.
    pub fn host_config(self) -> HostConfig {
        let mut config = HostConfig::new(
            self.functions.unwrap_or_else(|| "./functions".into()),
            self.db
                .unwrap_or_else(|| Database::Sqlite("./perdure.db".into())),
        );
        let sandbox = SandboxLimits::default();
        let http = HttpLimits::default();
        config.cache_dir = self.cache_dir;
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        config.dashboard_listen = match self.dashboard_listen {
            Some(DashboardListen::Off) => None,
            Some(DashboardListen::At(addr)) => Some(addr),
            None => Some(dashboard_beside(config.listen)),
        };
        config.master_key = self.master_key.filter(|k| !k.is_empty());
        config.sandbox = SandboxLimits {
            memory_bytes: self
                .memory_limit_mib
                .map_or(sandbox.memory_bytes, |mib| mib.saturating_mul(1 << 20)),
            timeout: self
                .timeout_secs
                .map_or(sandbox.timeout, Duration::from_secs),
            max_instances: self.max_instances.unwrap_or(sandbox.max_instances),
            max_output_bytes: self
                .max_output_mib
                .map_or(sandbox.max_output_bytes, |mib| mib.saturating_mul(1 << 20)),
            ..sandbox
        };
        config.http = HttpLimits {
            max_body_bytes: self.max_body_bytes.unwrap_or(http.max_body_bytes),
            max_connections: self.max_connections.unwrap_or(http.max_connections),
            shutdown_grace: self
                .shutdown_timeout_secs
                .map_or(http.shutdown_grace, Duration::from_secs),
            ..http
        };
        config.outbound_ca_file = self.outbound_ca_file;
        config.max_db_bytes = self.max_db_size_mib.map(|mib| mib.saturating_mul(1 << 20));
        config.metrics_open = self.metrics_open.unwrap_or(false);
        config.host_id = self.host_id.filter(|h| !h.is_empty());
        if let Some(ms) = self.lease_ms {
            config.lease = Duration::from_millis(ms.max(300));
        }
        config.otlp_endpoint = self.otlp_endpoint.filter(|e| !e.is_empty());
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("perdure.toml");
        std::fs::write(
            &path,
            "functions = \"apps\"\ndb = \"/var/lib/perdure.db\"\ntimeout_secs = 5\nmax_instances = 10\n",
        )?;
        let flags = ServeSettings {
            config: Some(path.clone()),
            max_instances: Some(20),
            ..ServeSettings::default()
        };
        let config = flags.with_file()?.host_config();
        assert_eq!(config.functions_dir, dir.path().join("apps"));
        assert_eq!(
            config.db,
            Database::Sqlite(PathBuf::from("/var/lib/perdure.db"))
        );
        assert_eq!(config.sandbox.timeout, Duration::from_secs(5));
        assert_eq!(config.sandbox.max_instances, 20);
        assert_eq!(
            config.sandbox.memory_bytes,
            SandboxLimits::default().memory_bytes
        );
        Ok(())
    }

    #[test]
    fn a_bad_file_is_reported() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("perdure.toml");
        std::fs::write(&path, "timeout_sec = 5\n")?;
        let error = ServeSettings::load(&path).err().map(|e| e.to_string());
        assert!(
            error.as_deref().is_some_and(|e| e.contains("timeout_sec")),
            "{error:?}"
        );
        assert!(ServeSettings::load(&dir.path().join("missing.toml")).is_err());
        Ok(())
    }
}
