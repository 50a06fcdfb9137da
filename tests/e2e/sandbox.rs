//! Hostile guests fail their own invocation with a clear error; the host
//! and every other function keep working.

use std::time::Duration;

use perdure_tests::{MASTER_KEY, TestHost, TestResponse, guests};

/// Greet and the hostile guest, with small limits (3 s, 32 MiB, 1 MiB of
/// output) so that hostile calls end quickly.
pub(crate) async fn hostile_host() -> anyhow::Result<TestHost> {
    TestHost::start_with(
        &[
            ("greet.wasm", guests::GREET),
            ("hostile.wasm", guests::HOSTILE),
        ],
        |c| {
            c.sandbox.timeout = Duration::from_secs(3);
            c.sandbox.memory_bytes = 32 << 20;
            c.sandbox.max_output_bytes = 1 << 20;
        },
    )
    .await
}

pub(crate) async fn greet_still_answers(host: &TestHost) -> anyhow::Result<()> {
    let r = host
        .get(&format!("/api/greet?name=Ada&code={MASTER_KEY}"))
        .await?;
    assert_eq!(r.status, 200, "greet after a hostile call: {}", r.text());
    Ok(())
}

fn error_of(r: &TestResponse) -> (u16, String, String) {
    (
        r.status,
        r.error_code().unwrap_or_default(),
        r.error_message(),
    )
}

#[tokio::test]
async fn a_trap_is_a_500_with_the_trap() -> anyhow::Result<()> {
    let host = hostile_host().await?;
    let (status, code, message) = error_of(&host.get("/api/hostile/trap").await?);
    assert_eq!((status, code.as_str()), (500, "trapped"), "{message}");
    assert!(
        message.contains("Trap") && message.contains("unreachable"),
        "{message}"
    );
    greet_still_answers(&host).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_loops_in_wasm_or_in_host_calls_are_stopped_at_the_deadline_while_others_are_served()
-> anyhow::Result<()> {
    let host = std::sync::Arc::new(hostile_host().await?);
    let spinning: Vec<_> = ["/api/hostile/spin", "/api/hostile/host-call-spin"]
        .into_iter()
        .map(|path| {
            let host = host.clone();
            tokio::spawn(async move { host.get(path).await })
        })
        .collect();
    for _ in 0..5 {
        greet_still_answers(&host).await?;
    }
    assert!(
        spinning.iter().all(|s| !s.is_finished()),
        "a loop ended before the deadline"
    );
    for spin in spinning {
        let (status, code, message) = error_of(&spin.await??);
        assert_eq!((status, code.as_str()), (500, "timeout"), "{message}");
        assert!(message.contains("3s"), "{message}");
    }
    greet_still_answers(&host).await
}

#[tokio::test]
async fn an_enormous_output_is_refused_not_sent() -> anyhow::Result<()> {
    let host = hostile_host().await?;
    let (status, code, message) = error_of(&host.get("/api/hostile/huge?mib=2").await?);
    assert_eq!(
        (status, code.as_str()),
        (500, "resource-exhausted"),
        "{message}"
    );
    assert!(
        message.contains("larger than the limit of 1048576 bytes"),
        "{message}"
    );
    greet_still_answers(&host).await
}

#[tokio::test]
async fn allocating_past_the_cap_is_stopped() -> anyhow::Result<()> {
    let host = hostile_host().await?;
    let (status, code, message) = error_of(&host.get("/api/hostile/hog").await?);
    assert_eq!(
        (status, code.as_str()),
        (500, "resource-exhausted"),
        "{message}"
    );
    assert!(message.contains("32 MiB"), "{message}");
    greet_still_answers(&host).await
}

#[tokio::test]
async fn unbounded_recursion_is_a_stack_overflow() -> anyhow::Result<()> {
    let host = hostile_host().await?;
    let (status, code, message) = error_of(&host.get("/api/hostile/stack").await?);
    assert_eq!((status, code.as_str()), (500, "trapped"), "{message}");
    assert!(message.contains("stack overflow"), "{message}");
    greet_still_answers(&host).await
}

#[tokio::test]
async fn files_environment_and_sockets_are_not_there() -> anyhow::Result<()> {
    let host = hostile_host().await?;
    let (status, code, message) = error_of(&host.get("/api/hostile/file").await?);
    assert_eq!(
        (status, code.as_str()),
        (403, "permission-denied"),
        "{message}"
    );
    assert!(message.contains("cannot read /etc/passwd"), "{message}");
    let (status, code, message) = error_of(&host.get("/api/hostile/env").await?);
    assert_eq!(
        (status, code.as_str()),
        (403, "permission-denied"),
        "{message}"
    );
    assert!(message.contains("environment has 0 variables"), "{message}");
    let (status, code, message) = error_of(&host.get("/api/hostile/socket").await?);
    assert_eq!(
        (status, code.as_str()),
        (403, "permission-denied"),
        "{message}"
    );
    assert!(message.contains("cannot open a socket"), "{message}");
    greet_still_answers(&host).await
}

#[tokio::test]
async fn a_log_flood_is_cut_without_failing_the_function() -> anyhow::Result<()> {
    let host = hostile_host().await?;
    let r = host.get("/api/hostile/chatty").await?;
    assert_eq!((r.status, r.text().as_str()), (200, "done"));
    greet_still_answers(&host).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sandbox_sheds_load_with_503() -> anyhow::Result<()> {
    let host = std::sync::Arc::new(
        TestHost::start_with(
            &[
                ("greet.wasm", guests::GREET),
                ("hostile.wasm", guests::HOSTILE),
            ],
            |c| {
                c.sandbox.timeout = Duration::from_secs(2);
                c.sandbox.max_instances = 1;
            },
        )
        .await?,
    );
    let greet = format!("/api/greet?name=Ada&code={MASTER_KEY}");
    // A looping function holds the only slot until its deadline. Whether
    // it or a greet request gets the slot first is a race, so try again
    // until the loop wins it.
    for _attempt in 0..10 {
        let spinning = {
            let host = host.clone();
            tokio::spawn(async move { host.get("/api/hostile/spin").await })
        };
        let mut shed = None;
        while !spinning.is_finished() {
            let r = host.get(&greet).await?;
            if r.status == 503 {
                shed = Some(r);
                break;
            }
        }
        let spin = spinning.await??;
        if let Some(shed) = shed {
            assert_eq!(shed.error_code().as_deref(), Some("overloaded"));
            assert_eq!(shed.headers["retry-after"], "1");
            assert_eq!(spin.status, 500, "the loop ends at its deadline");
            return greet_still_answers(&host).await;
        }
    }
    anyhow::bail!("the looping function never held the slot while greet was called")
}

#[tokio::test]
async fn a_guest_cannot_break_the_connection_framing() -> anyhow::Result<()> {
    let host = hostile_host().await?;
    let r = host.get("/api/hostile/framing").await?;
    assert_eq!((r.status, r.text().as_str()), (200, "the whole body"));
    assert_eq!(r.headers["content-length"], "14");
    assert_eq!(r.headers["x-kept"], "yes");
    assert!(r.headers.get("transfer-encoding").is_none());
    let (status, code, message) = error_of(&host.get("/api/hostile/switching").await?);
    assert_eq!(
        (status, code.as_str()),
        (500, "invalid-response"),
        "{message}"
    );
    // The connection is still usable after both.
    greet_still_answers(&host).await
}
