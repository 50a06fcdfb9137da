//! The watched folder: apps appear, change, break and disappear while the
//! host keeps serving.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use perdure_tests::{MASTER_KEY, TestHost, eventually, guests};

const DEADLINE: Duration = Duration::from_secs(20);
const V1: &str = "Hello, Ada. This HTTP triggered function executed successfully.";
const V2: &str = "Greetings from v2, Ada.";

fn greet_path() -> String {
    format!("/api/greet?name=Ada&code={MASTER_KEY}")
}

async fn wait_for_answer(host: &TestHost, expected: &str) -> anyhow::Result<()> {
    eventually(
        DEADLINE,
        &format!("greet to answer {expected:?}"),
        || async {
            let r = host.get(&greet_path()).await?;
            Ok((r.status == 200 && r.text() == expected).then_some(()))
        },
    )
    .await
}

async fn wait_for_error(host: &TestHost, app: &str) -> anyhow::Result<String> {
    eventually(DEADLINE, &format!("a load error for {app}"), || async {
        let status = host.app_status(app).await?;
        Ok(status.and_then(|s| s["lastError"]["message"].as_str().map(str::to_owned)))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_are_added_replaced_broken_and_removed_while_serving() -> anyhow::Result<()> {
    let host = Arc::new(TestHost::start().await?);
    assert_eq!(host.get(&greet_path()).await?.status, 404);

    host.deploy("greet.wasm", guests::GREET)?;
    wait_for_answer(&host, V1).await?;

    // Requests keep flowing while the new version is swapped in: every one
    // gets the old answer or the new one, never an error.
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let host = host.clone();
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let r = host.get(&greet_path()).await?;
                seen.push((r.status, r.text()));
            }
            anyhow::Ok(seen)
        }));
    }
    host.deploy("greet.wasm", guests::GREET_V2)?;
    wait_for_answer(&host, V2).await?;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for client in clients {
        for (status, text) in client.await?? {
            total += 1;
            assert!(
                status == 200 && (text == V1 || text == V2),
                "during the swap: {status} {text}"
            );
        }
    }
    assert!(total > 0, "the clients made no request during the swap");

    // A broken file is reported and changes nothing else.
    host.deploy_bytes(
        "broken.wasm",
        b"\0asm\x0d\0\x01\0 definitely not a component",
    )?;
    let error = wait_for_error(&host, "broken").await?;
    assert!(error.contains("component"), "{error}");
    assert_eq!(host.get(&greet_path()).await?.text(), V2);

    // A broken new version leaves the previous one serving.
    host.deploy_bytes("greet.wasm", b"garbage")?;
    let error = wait_for_error(&host, "greet").await?;
    assert!(!error.is_empty());
    assert_eq!(host.get(&greet_path()).await?.text(), V2);
    let listed = host.app_status("greet").await?.unwrap_or_default();
    assert_eq!(listed["functions"][0]["name"], "GreetFunction", "{listed}");

    host.undeploy("greet.wasm")?;
    eventually(DEADLINE, "greet to be gone", || async {
        Ok((host.get(&greet_path()).await?.status == 404).then_some(()))
    })
    .await?;
    assert!(host.app_status("greet").await?.is_none());
    Ok(())
}

#[tokio::test]
async fn a_half_written_file_is_never_served() -> anyhow::Result<()> {
    let host = TestHost::start_with(&[("greet.wasm", guests::GREET)], |_| {}).await?;
    let v2 = std::fs::read(guests::GREET_V2)?;
    let target = host.functions_dir().join("greet.wasm");
    // Written in place, in two steps, as a slow copy would.
    std::fs::write(&target, &v2[..v2.len() / 2])?;
    let during = host.get(&greet_path()).await?;
    assert_eq!(during.status, 200, "{}", during.text());
    std::fs::write(&target, &v2)?;
    wait_for_answer(&host, V2).await?;
    eventually(DEADLINE, "the interim error to clear", || async {
        let status = host.app_status("greet").await?.unwrap_or_default();
        Ok(status.get("lastError").is_none().then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_clashing_app_is_refused_naming_both_files() -> anyhow::Result<()> {
    let host = TestHost::start_with(&[("greet.wasm", guests::GREET)], |_| {}).await?;
    host.deploy("other.wasm", guests::GREET_V2)?;
    let error = wait_for_error(&host, "other").await?;
    assert!(
        error.contains("other.wasm") && error.contains("greet.wasm"),
        "{error}"
    );
    assert_eq!(host.get(&greet_path()).await?.text(), V1);
    Ok(())
}

/// A file in the watched folder that links outside it, or that is not a
/// regular file, is refused with its reason; a link that stays inside is
/// followed.
#[tokio::test]
async fn links_out_of_the_folder_and_non_files_are_refused() -> anyhow::Result<()> {
    let host = TestHost::start().await?;
    let outside = tempfile::tempdir()?;
    let target = outside.path().join("greet.wasm");
    std::fs::copy(guests::GREET, &target)?;
    std::os::unix::fs::symlink(&target, host.functions_dir().join("escape.wasm"))?;
    let message = wait_for_error(&host, "escape").await?;
    assert!(
        message.contains("links outside the functions folder"),
        "{message}"
    );

    std::fs::create_dir(host.functions_dir().join("folder.wasm"))?;
    let message = wait_for_error(&host, "folder").await?;
    assert!(message.contains("not a regular file"), "{message}");

    let inside = host.temp_dir().join("functions/real/greet.wasm");
    std::fs::create_dir_all(inside.parent().unwrap_or(host.functions_dir()))?;
    std::fs::copy(guests::GREET, &inside)?;
    std::os::unix::fs::symlink(&inside, host.functions_dir().join("greet.wasm"))?;
    wait_for_answer(
        &host,
        "Hello, Ada. This HTTP triggered function executed successfully.",
    )
    .await?;
    Ok(())
}
