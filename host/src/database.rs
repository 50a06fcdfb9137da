//! Which database a host keeps its state in, and opening it: a SQLite file
//! (the embedded default, one host) or a PostgreSQL URL (a server that
//! several hosts share).
//!
//! Invariant: the rest of the host sees only the storage traits; this is
//! the one place that names a backend.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use perdure_postgres::PgStorage;
use perdure_sqlite::SqliteStorage;
use perdure_storage::{CommitObserver, DurableStorage, Storage, StorageError};

/// Where a host's state lives, as `--db` names it.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file, created if missing.
    Sqlite(PathBuf),
    /// A PostgreSQL database (`postgres://user[:password]@host[:port]/db`).
    Postgres(String),
}

/// Why a `--db` value names no database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is neither a file path nor a PostgreSQL URL: give a SQLite file (e.g. ./perdure.db) or postgres://user[:password]@host[:port]/database"
)]
pub struct DatabaseError(String);

impl FromStr for Database {
    type Err = DatabaseError;

    /// A `postgres://` or `postgresql://` URL is PostgreSQL; any other
    /// `scheme://` is refused (a mistyped URL must not become a file of
    /// that name); anything else is a SQLite file's path.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if perdure_postgres::is_postgres_url(s) {
            return Ok(Self::Postgres(s.to_owned()));
        }
        let looks_like_url = s.split_once("://").is_some_and(|(scheme, _)| {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        });
        if s.is_empty() || looks_like_url {
            return Err(DatabaseError(s.to_owned()));
        }
        Ok(Self::Sqlite(PathBuf::from(s)))
    }
}

/// In a settings file, the same text as the flag.
impl<'de> serde::Deserialize<'de> for Database {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl From<PathBuf> for Database {
    fn from(path: PathBuf) -> Self {
        Self::Sqlite(path)
    }
}

impl From<&Path> for Database {
    fn from(path: &Path) -> Self {
        Self::Sqlite(path.to_path_buf())
    }
}

/// Shown without a PostgreSQL password.
impl fmt::Display for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "{}", path.display()),
            Self::Postgres(url) => f.write_str(&perdure_postgres::redacted(url)),
        }
    }
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Database({self})")
    }
}

impl Database {
    /// Where compiled code is cached unless the host is told: beside a
    /// SQLite file (`<db>.cache`), or `./perdure.cache` for a server
    /// database (compiled code is per machine, never shared).
    pub fn default_cache_dir(&self) -> PathBuf {
        match self {
            Self::Sqlite(path) => path.with_extension("cache"),
            Self::Postgres(_) => PathBuf::from("perdure.cache"),
        }
    }
}

/// An open database, whichever backend.
#[derive(Clone)]
pub(crate) enum OpenDatabase {
    Sqlite(Arc<SqliteStorage>),
    Postgres(Arc<PgStorage>),
}

impl OpenDatabase {
    /// Opens (creating and migrating) the database `config.db`. Its
    /// `max_db_bytes` bounds a SQLite file (a server database is bounded by
    /// its server); on a server this host joins the database's hosts.
    pub(crate) async fn open(
        config: &crate::HostConfig,
        commits: Arc<dyn CommitObserver>,
    ) -> Result<Self, StorageError> {
        let max_bytes = config.max_db_bytes;
        match &config.db {
            Database::Sqlite(path) => {
                let path = path.clone();
                let storage = tokio::task::spawn_blocking(move || {
                    SqliteStorage::open_with(&path, max_bytes, commits)
                })
                .await
                .map_err(|e| StorageError::Database(e.to_string()))??;
                Ok(Self::Sqlite(Arc::new(storage)))
            }
            Database::Postgres(url) => {
                let options = perdure_postgres::ClusterOptions {
                    host_id: config
                        .host_id
                        .clone()
                        .unwrap_or_else(perdure_postgres::default_host_id),
                    address: config.listen.to_string(),
                    lease: config.lease,
                    ..Default::default()
                };
                Ok(Self::Postgres(Arc::new(
                    PgStorage::open_with(url, commits, options).await?,
                )))
            }
        }
    }

    pub(crate) fn storage(&self) -> Arc<dyn Storage> {
        match self {
            Self::Sqlite(s) => s.clone(),
            Self::Postgres(s) => s.clone(),
        }
    }

    pub(crate) fn durable(&self) -> Arc<dyn DurableStorage> {
        match self {
            Self::Sqlite(s) => s.clone(),
            Self::Postgres(s) => s.clone(),
        }
    }

    /// Commits what is queued and releases the database.
    pub(crate) async fn close(&self) {
        match self {
            Self::Sqlite(s) => {
                let s = s.clone();
                let _ = tokio::task::spawn_blocking(move || s.close()).await;
            }
            Self::Postgres(s) => s.close().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_db_value_is_a_url_or_a_path_and_nothing_else() {
        assert_eq!(
            "postgres://u@h:5432/d".parse::<Database>(),
            Ok(Database::Postgres("postgres://u@h:5432/d".into()))
        );
        assert_eq!(
            "./perdure.db".parse::<Database>(),
            Ok(Database::Sqlite("./perdure.db".into()))
        );
        assert!("postgress://u@h/d".parse::<Database>().is_err());
        assert!("mysql://u@h/d".parse::<Database>().is_err());
        assert!("".parse::<Database>().is_err());
        assert_eq!(
            Database::Postgres("postgres://u:secret@h/d".into()).to_string(),
            "postgres://u:***@h/d"
        );
    }
}
