//! The master key and function keys.
//!
//! Invariants: keys are compared by their sha256 hashes in constant time
//! and never logged; function keys are stored hashed and shown once, when
//! created; the in-memory key set is replaced only after the database
//! write committed, so a key that works is a key that survives a restart.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use crate::model::AuthLevel;
use perdure_storage::{Storage, StorageError, StoredKey};

const MASTER_KEY_SETTING: &str = "master_key";
/// The secret instance keys are derived from; never leaves the database.
const INSTANCE_SECRET_SETTING: &str = "instance_key_secret";

/// Where the master key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MasterKeySource {
    /// `--master-key` or `PERDURE_MASTER_KEY`.
    Configured,
    /// Generated on an earlier start and kept in the database.
    Stored,
    /// Generated on this start and kept in the database.
    Generated,
}

/// A function key as the admin API shows it (never the key itself).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyInfo {
    pub id: String,
    pub name: String,
    /// The function it is valid for; absent for a host key (every function).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    pub created_time: String,
}

/// Why a key could not be created.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key name must be 1-64 letters, digits, '_', '-' or '.'")]
    BadName,
    #[error("a key's function must be a function name: 1-128 letters, digits, '_', '-' or '.'")]
    BadFunction,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

type Hash = [u8; 32];

fn hash(key: &str) -> Hash {
    Sha256::digest(key.as_bytes()).into()
}

/// A random secret: 32 bytes as 64 hex digits.
fn random_secret() -> Result<String, StorageError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| StorageError::Database(format!("no randomness for a key: {e}")))?;
    Ok(hex::encode(bytes))
}

fn random_epoch() -> Result<[u8; 16], StorageError> {
    let mut epoch = [0u8; 16];
    getrandom::fill(&mut epoch)
        .map_err(|e| StorageError::Database(format!("no randomness for a session epoch: {e}")))?;
    Ok(epoch)
}

/// Checks presented keys against the master key and the function keys.
pub struct Keys {
    storage: Arc<dyn Storage>,
    master: Hash,
    /// Function keys by hash; the value is the function a key is limited
    /// to, or `None` for a host key.
    function_keys: RwLock<HashMap<Hash, Option<String>>>,
    /// HMAC key of the instance keys.
    instance_secret: Vec<u8>,
    /// Mixed into dashboard session tokens: random per start and replaced
    /// by [`Self::end_sessions`], so a restart or a logout ends sessions.
    session_epoch: RwLock<[u8; 16]>,
}

impl Keys {
    /// Loads the keys; uses `configured` as the master key, or the stored
    /// one, or generates and stores one. Returns the master key when it
    /// was not configured, so that it can be shown to the operator.
    pub async fn load(
        storage: Arc<dyn Storage>,
        configured: Option<&str>,
    ) -> Result<(Self, MasterKeySource, Option<String>), StorageError> {
        let (master, source, shown) = match configured {
            Some(key) => (hash(key), MasterKeySource::Configured, None),
            None => match storage.setting(MASTER_KEY_SETTING).await? {
                Some(key) => (hash(&key), MasterKeySource::Stored, Some(key)),
                None => {
                    let fresh = random_secret()?;
                    let kept = storage.init_setting(MASTER_KEY_SETTING, &fresh).await?;
                    (hash(&kept), MasterKeySource::Generated, Some(kept))
                }
            },
        };
        let instance_secret = match storage.setting(INSTANCE_SECRET_SETTING).await? {
            Some(secret) => secret,
            None => {
                storage
                    .init_setting(INSTANCE_SECRET_SETTING, &random_secret()?)
                    .await?
            }
        };
        let keys = Self {
            storage,
            master,
            function_keys: RwLock::new(HashMap::new()),
            instance_secret: instance_secret.into_bytes(),
            session_epoch: RwLock::new(random_epoch()?),
        };
        keys.reload().await?;
        Ok((keys, source, shown))
    }

    /// Reads the function keys again (another host may have changed them).
    pub async fn reload(&self) -> Result<(), StorageError> {
        let stored = self.storage.keys().await?;
        let map = stored.into_iter().map(|k| (k.hash, k.function)).collect();
        match self.function_keys.write() {
            Ok(mut guard) => *guard = map,
            Err(poisoned) => *poisoned.into_inner() = map,
        }
        Ok(())
    }

    /// The key that the management URLs of one orchestration instance
    /// carry: valid for that instance's routes only.
    pub fn instance_key(&self, instance_id: &str) -> String {
        self.mac(&[b"perdure-instance:", instance_id.as_bytes()])
    }

    /// HMAC-SHA256 of `parts` under the database's secret, as hex; empty
    /// only if HMAC refused the key (it takes keys of any length).
    fn mac(&self, parts: &[&[u8]]) -> String {
        use hmac::{Mac as _, SimpleHmac};
        let Ok(mut mac) = SimpleHmac::<Sha256>::new_from_slice(&self.instance_secret) else {
            return String::new();
        };
        for part in parts {
            mac.update(part);
        }
        hex::encode(mac.finalize().into_bytes())
    }

    /// A dashboard session token valid until `expires_ms`: the expiry and
    /// its MAC, bound to the master key and to this run's session epoch (a
    /// new master key, a restart or a logout ends every session).
    pub fn session_token(&self, expires_ms: i64) -> String {
        let expires = expires_ms.to_string();
        let epoch = *self.session_epoch.read().unwrap_or_else(|p| p.into_inner());
        let mac = self.mac(&[
            b"perdure-session:",
            &self.master,
            &epoch,
            b":",
            expires.as_bytes(),
        ]);
        format!("{expires}.{mac}")
    }

    /// Ends every dashboard session (a logout: one key, one operator).
    pub fn end_sessions(&self) {
        if let Ok(epoch) = random_epoch() {
            *self
                .session_epoch
                .write()
                .unwrap_or_else(|p| p.into_inner()) = epoch;
        }
    }

    /// True if `token` came from [`Self::session_token`] with this master
    /// key and has not expired by `now_ms` (constant-time).
    pub fn is_session(&self, token: &str, now_ms: i64) -> bool {
        let Some((expires, _)) = token.split_once('.') else {
            return false;
        };
        let Ok(expires_ms) = expires.parse::<i64>() else {
            return false;
        };
        let expected = self.session_token(expires_ms);
        expires_ms > now_ms && bool::from(expected.as_bytes().ct_eq(token.as_bytes()))
    }

    /// True if `key` is the instance key of `instance_id` (constant-time).
    pub fn is_instance_key(&self, instance_id: &str, key: &str) -> bool {
        let expected = self.instance_key(instance_id);
        !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(key.as_bytes()))
    }

    /// True if `key` is the master key (constant-time).
    pub fn is_master(&self, key: &str) -> bool {
        hash(key).ct_eq(&self.master).into()
    }

    /// True if `key` may call `function` at `level`.
    pub fn authorizes(&self, key: Option<&str>, function: &str, level: AuthLevel) -> bool {
        match level {
            AuthLevel::Anonymous => true,
            AuthLevel::Admin => key.is_some_and(|k| self.is_master(k)),
            AuthLevel::Function => key.is_some_and(|k| {
                if self.is_master(k) {
                    return true;
                }
                // The lookup is by hash: its timing tells nothing about
                // the key itself.
                let keys = match self.function_keys.read() {
                    Ok(guard) => guard,
                    Err(poisoned) => poisoned.into_inner(),
                };
                match keys.get(&hash(k)) {
                    Some(None) => true,
                    Some(Some(only)) => only == function,
                    None => false,
                }
            }),
        }
    }

    /// Creates a function key (a host key if `function` is `None`);
    /// returns its description and the key, which is not stored.
    pub async fn create(
        &self,
        name: &str,
        function: Option<String>,
    ) -> Result<(KeyInfo, String), KeyError> {
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !name_ok {
            return Err(KeyError::BadName);
        }
        if function
            .as_deref()
            .is_some_and(|f| !crate::model::is_plain_name(f))
        {
            return Err(KeyError::BadFunction);
        }
        let secret = random_secret()?;
        let id = random_secret()?[..16].to_owned();
        let stored = StoredKey {
            id,
            name: name.to_owned(),
            function,
            hash: hash(&secret),
            created_ms: crate::time::now_ms(),
        };
        let info = info(&stored);
        self.storage.insert_key(stored).await?;
        self.reload().await?;
        Ok((info, secret))
    }

    pub async fn list(&self) -> Result<Vec<KeyInfo>, StorageError> {
        Ok(self.storage.keys().await?.iter().map(info).collect())
    }

    /// Revokes a key; false if there was no such key.
    pub async fn revoke(&self, id: &str) -> Result<bool, StorageError> {
        let deleted = self.storage.delete_key(id).await?;
        self.reload().await?;
        Ok(deleted)
    }
}

fn info(k: &StoredKey) -> KeyInfo {
    KeyInfo {
        id: k.id.clone(),
        name: k.name.clone(),
        function: k.function.clone(),
        created_time: crate::time::rfc3339_ms(k.created_ms),
    }
}
