//! Durable storage behind a trait, so that a server database shared by
//! several hosts can replace the embedded SQLite default.
//!
//! Invariants: only this module touches rusqlite; every blocking database
//! call runs on the writer thread or a blocking-pool thread, never on
//! tokio's async threads; a write is acknowledged only after its
//! transaction committed.

mod sqlite;

use std::future::Future;
use std::pin::Pin;

pub use sqlite::SqliteStorage;

/// Why a storage call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    /// The database refused or failed the statement (disk full, I/O error,
    /// constraint violation, ...).
    #[error("database error: {0}")]
    Database(String),
    /// The writer thread has stopped (the host is shutting down).
    #[error("the database writer has stopped")]
    Closed,
    /// The database belongs to a newer version of Perdure.
    #[error("the database schema version {found} is newer than this host supports ({supported})")]
    TooNew { found: i64, supported: i64 },
}

impl From<rusqlite::Error> for StorageError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Database(e.to_string())
    }
}

/// A boxed storage future; keeps [`Storage`] object-safe.
pub type StorageFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StorageError>> + Send + 'a>>;

/// A function key as stored: the hash, never the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub id: String,
    pub name: String,
    /// `None` for a host key (every function).
    pub function: Option<String>,
    pub hash: [u8; 32],
    pub created_ms: i64,
}

/// What the host keeps in its database.
pub trait Storage: Send + Sync + 'static {
    /// A host setting.
    fn setting(&self, key: &str) -> StorageFuture<'_, Option<String>>;

    /// Stores `value` under `key` unless the key exists; returns the value
    /// that is stored afterwards (so concurrent initialisers agree).
    fn init_setting(&self, key: &str, value: &str) -> StorageFuture<'_, String>;

    fn insert_key(&self, key: StoredKey) -> StorageFuture<'_, ()>;

    fn keys(&self) -> StorageFuture<'_, Vec<StoredKey>>;

    /// Deletes a key; false if there was none with this id.
    fn delete_key(&self, id: &str) -> StorageFuture<'_, bool>;
}
