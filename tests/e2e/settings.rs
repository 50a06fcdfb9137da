//! `perdure serve --config FILE`: the file sets what flags set, relative
//! paths in it are relative to it, flags win over it, and a broken file
//! stops the start with an error naming it.

use std::ffi::OsString;
use std::sync::{Arc, Mutex};

use http::Method;
use perdure_tests::child::ChildHost;
use perdure_tests::guests;

const CHILD: &str = env!("CARGO_BIN_EXE_perdure-child");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settings_file_configures_the_host_and_flags_win_over_it() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("functions"))?;
    std::fs::copy(guests::GREET, dir.path().join("functions/greet.wasm"))?;
    let conf = dir.path().join("conf");
    std::fs::create_dir_all(&conf)?;
    let file = conf.join("perdure.toml");
    std::fs::write(
        &file,
        "functions = \"../functions\"\ndb = \"../perdure.db\"\nlisten = \"127.0.0.1:9\"\nmax_body_bytes = 16\n",
    )?;
    let log = Arc::new(Mutex::new(Vec::new()));
    let args: Vec<OsString> = vec![
        "--config".into(),
        file.into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
    ];
    let host = ChildHost::start_with_args(CHILD, &args, &log).await?;
    assert!(
        !host.base_url().ends_with(":9"),
        "the --listen flag wins: {}",
        host.base_url()
    );
    // The functions folder and database came from the file, relative to it.
    let r = host.send(Method::GET, "/api/greet?name=Ada", "").await?;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(dir.path().join("perdure.db").exists());
    // So did the body limit.
    let r = host
        .send(Method::POST, "/api/greet", r#"{"name":"Ada Lovelace"}"#)
        .await?;
    assert_eq!(r.status, 413, "{}", r.text());
    host.kill()?;
    Ok(())
}

#[test]
fn a_broken_settings_file_stops_the_start_with_its_error() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("perdure.toml");
    std::fs::write(&file, "timeout_sec = 5\n")?;
    let output = perdure_tests::child::run_to_exit(
        std::process::Command::new(CHILD)
            .arg("serve")
            .arg("--config")
            .arg(&file)
            .args(["--listen", "127.0.0.1:0"])
            .current_dir(dir.path()),
        std::time::Duration::from_secs(60),
    )?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("perdure.toml") && stderr.contains("timeout_sec"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("perdure.db").exists(),
        "nothing was created"
    );
    Ok(())
}
