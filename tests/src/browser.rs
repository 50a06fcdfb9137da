//! A real headless browser for the dashboard's tests: Debian's `chromium`
//! driven over WebDriver (`chromedriver`, with fantoccini).
//!
//! Without the two programs the browser tests skip with a notice, so that
//! `cargo test` works on a machine with only rustup and cargo; CI installs
//! them and sets `PERDURE_REQUIRE_BROWSER=1`, which turns a missing
//! browser into a failure.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;

use crate::eventually;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long a page may take to show what a test waits for.
pub const PAGE_DEADLINE: Duration = Duration::from_secs(20);

/// A headless Chromium session; the driver is stopped on drop.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

/// Where screenshots go: `target/screenshots/` for every run (CI keeps it
/// as an artifact).
pub fn screenshot_dir() -> PathBuf {
    crate::repo_path("target/screenshots")
}

impl Browser {
    /// Starts chromedriver and a headless Chromium, or `None` (with a
    /// notice) if they are not installed and not required.
    pub async fn start() -> anyhow::Result<Option<Self>> {
        let installed = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
        if !installed {
            if std::env::var_os("PERDURE_REQUIRE_BROWSER").is_some() {
                bail!(
                    "{CHROMIUM} and {CHROMEDRIVER} are required (apt-get install chromium chromium-driver)"
                );
            }
            eprintln!(
                "SKIPPED: the dashboard's browser test needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver; .ci/run installs them)"
            );
            return Ok(None);
        }
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {CHROMEDRIVER}"))?;
        let profile = tempfile::tempdir()?;
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let mut driver = driver;
        let connected = eventually(
            PAGE_DEADLINE,
            "chromedriver to accept a session",
            || async {
                let mut builder = ClientBuilder::new(HttpConnector::new());
                builder.capabilities(caps.clone());
                Ok(builder.connect(&url).await.ok())
            },
        )
        .await;
        match connected {
            Ok(client) => Ok(Some(Self {
                client,
                driver,
                _profile: profile,
            })),
            Err(e) => {
                let _ = driver.kill();
                let _ = driver.wait();
                Err(e)
            }
        }
    }

    /// Waits until `css` matches at least `count` elements; returns how
    /// many it matched.
    pub async fn wait_for_count(&self, css: &str, count: usize) -> anyhow::Result<usize> {
        eventually(PAGE_DEADLINE, &format!("{count} × {css}"), || async {
            let found = self.client.find_all(Locator::Css(css)).await?.len();
            Ok((found >= count).then_some(found))
        })
        .await
    }

    /// Waits until the text of `css` is `text`.
    pub async fn wait_for_text(&self, css: &str, text: &str) -> anyhow::Result<()> {
        eventually(
            PAGE_DEADLINE,
            &format!("{css} to read {text:?}"),
            || async {
                let Ok(element) = self.client.find(Locator::Css(css)).await else {
                    return Ok(None);
                };
                Ok((element.text().await? == text).then_some(()))
            },
        )
        .await
    }

    /// Types `key` into the login form on the page shown and submits it.
    pub async fn submit_key(&self, key: &str) -> anyhow::Result<()> {
        let input = self.client.find(Locator::Css("input[name=key]")).await?;
        input.send_keys(key).await?;
        self.client
            .find(Locator::Css("button[type=submit]"))
            .await?
            .click()
            .await?;
        Ok(())
    }

    /// Saves a screenshot of the window as `name` in [`screenshot_dir`];
    /// returns its path.
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let png = self.client.screenshot().await?;
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(name);
        std::fs::write(&path, png)?;
        Ok(path)
    }

    /// Ends the session and the driver.
    pub async fn close(mut self) -> anyhow::Result<()> {
        self.client.clone().close().await?;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        Ok(())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
