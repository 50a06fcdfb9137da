//! Compiled code cached on disk by digest, so that a restart (or a second
//! deployment of the same bytes) does not recompile.
//!
//! Invariants: a cache file is named after the component's digest and the
//! engine's compatibility hash, so code compiled by another wasmtime
//! version or configuration is never loaded; files are written to a
//! temporary name and renamed, so a crash never leaves a torn file under a
//! real name; a file that fails to load is recompiled and replaced.

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

use super::LoadError;
use crate::model::Digest;

/// Whether a component came from the cache or was compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheOutcome {
    Hit,
    Compiled,
}

/// A directory of `*.cwasm` files owned by this host.
#[derive(Debug, Clone)]
pub struct CodeCache {
    dir: PathBuf,
}

impl CodeCache {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, engine: &Engine, digest: &Digest) -> PathBuf {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let name = format!("{}-{:016x}.cwasm", digest.hex(), hasher.finish());
        self.dir.join(name)
    }

    /// Loads the compiled form of `bytes`, compiling and caching it on a
    /// miss. Blocking.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        digest: &Digest,
        bytes: &[u8],
    ) -> Result<(Component, CacheOutcome), LoadError> {
        let path = self.path(engine, digest);
        if path.exists() {
            // SAFETY: files in the cache directory are written only by
            // `store` below, from `Component::serialize` of this engine
            // configuration (the name carries its compatibility hash), and
            // are renamed into place only once complete.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok((component, CacheOutcome::Hit)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "dropping unusable cached code: {e:#}")
                }
            }
        }
        let component = Component::from_binary(engine, bytes)
            .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        if let Err(e) = self.store(&path, &component) {
            tracing::warn!(path = %path.display(), "cannot cache compiled code: {e:#}");
        }
        Ok((component, CacheOutcome::Compiled))
    }

    fn store(&self, path: &Path, component: &Component) -> anyhow::Result<()> {
        let code = component.serialize()?;
        // Unique per writer: two threads (or hosts sharing the folder) may
        // compile the same component at once.
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
        fs::write(&tmp, code)?;
        fs::rename(&tmp, path)?;
        Ok(())
    }
}
