//! Python apps in tests: the built components (or why there are none), and
//! one compiled-code cache shared by every test of the process, since a
//! CPython component takes 10-15 s to compile.

use std::collections::HashSet;
use std::path::PathBuf;

use anyhow::bail;
use perdure::HostConfig;

use crate::TestHost;

/// Set (as `.ci/run` does) to fail, not skip, tests whose Python apps
/// could not be built.
pub const REQUIRE_ENV: &str = "PERDURE_REQUIRE_PYTHON";

/// The component `built` (a `guests::PY_*` constant); `None` after a
/// SKIPPED notice when this machine could not build it, an error when
/// [`REQUIRE_ENV`] is set.
pub fn app(built: Result<&'static str, &'static str>) -> anyhow::Result<Option<&'static str>> {
    match built {
        Ok(wasm) => Ok(Some(wasm)),
        Err(why) if std::env::var_os(REQUIRE_ENV).is_some() => {
            bail!("the Python apps are required ({REQUIRE_ENV} is set): {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED: this test needs the Python apps: {why}");
            Ok(None)
        }
    }
}

/// The folder every test host that serves Python apps caches compiled code
/// in (`target/test-code-cache`; entries are named by digest and engine,
/// so builds never mix).
pub fn shared_cache() -> PathBuf {
    crate::repo_path("target/test-code-cache")
}

/// Compiles each of `apps` into [`shared_cache`] once per process, so that
/// tests starting together do not all compile the same component.
async fn warm(apps: &[(&str, &str)]) -> anyhow::Result<()> {
    static WARMED: tokio::sync::Mutex<Option<HashSet<String>>> =
        tokio::sync::Mutex::const_new(None);
    let mut warmed = WARMED.lock().await;
    let warmed = warmed.get_or_insert_with(HashSet::new);
    let cold: Vec<(&str, &str)> = apps
        .iter()
        .copied()
        .filter(|(_, wasm)| !warmed.contains(*wasm))
        .collect();
    if cold.is_empty() {
        return Ok(());
    }
    let host = TestHost::start_with(&cold, |c| c.cache_dir = Some(shared_cache())).await?;
    host.shutdown().await;
    warmed.extend(cold.iter().map(|(_, wasm)| (*wasm).to_owned()));
    Ok(())
}

/// A test host serving `apps`, with compiled code from [`shared_cache`].
pub async fn host(
    apps: &[(&str, &str)],
    configure: impl FnOnce(&mut HostConfig),
) -> anyhow::Result<TestHost> {
    warm(apps).await?;
    TestHost::start_with(apps, |c| {
        c.cache_dir = Some(shared_cache());
        configure(c);
    })
    .await
}
