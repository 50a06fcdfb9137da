//! Overload is shed, not absorbed: past `max_connections`, a new
//! connection gets one 503 with `Retry-After` and is closed, while the
//! connections already served keep working; when one closes, a new one is
//! served again.

use std::time::Duration;

use perdure_tests::{MASTER_KEY, TestHost, eventually, guests};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const LIMIT: usize = 2;

/// Sends one GET on `stream` and reads the answer's head and body (the
/// greet answer and the refusal both fit in one read of 64 KiB).
async fn get(stream: &mut TcpStream, path: &str) -> anyhow::Result<String> {
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nx-functions-key: {MASTER_KEY}\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut buffer = vec![0u8; 64 << 10];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer)).await??;
    Ok(String::from_utf8_lossy(&buffer[..n]).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_get_503_and_the_rest_are_served() -> anyhow::Result<()> {
    let host = TestHost::start_with(&[("greet.wasm", guests::GREET)], |c| {
        c.http.max_connections = LIMIT;
    })
    .await?;
    let addr = host.addr().to_string();
    let mut open = Vec::new();
    for _ in 0..LIMIT {
        let mut stream = TcpStream::connect(&addr).await?;
        let answer = get(&mut stream, "/api/greet?name=Ada").await?;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        open.push(stream);
    }

    let mut extra = TcpStream::connect(&addr).await?;
    let answer = get(&mut extra, "/api/greet?name=Ada").await?;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    assert!(answer.contains("\"overloaded\""), "{answer}");
    let mut rest = Vec::new();
    let closed =
        tokio::time::timeout(Duration::from_secs(10), extra.read_to_end(&mut rest)).await??;
    assert_eq!(
        closed, 0,
        "the refused connection is closed after its answer"
    );

    // The connections already served still are.
    let answer = get(&mut open[0], "/api/greet?name=Bo").await?;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // One closes: its slot frees, and a new connection is served.
    drop(open.pop());
    eventually(Duration::from_secs(10), "a freed connection slot", || {
        let addr = addr.clone();
        async move {
            let mut stream = TcpStream::connect(&addr).await?;
            Ok(get(&mut stream, "/api/greet?name=Cy")
                .await?
                .starts_with("HTTP/1.1 200")
                .then_some(()))
        }
    })
    .await?;
    Ok(())
}

/// Slow clients cannot hold a connection: one that never finishes its
/// headers is closed at `header_timeout`, one that never finishes its
/// body gets 408 at `body_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off() -> anyhow::Result<()> {
    let host = TestHost::start_with(&[("greet.wasm", guests::GREET)], |c| {
        c.http.header_timeout = Duration::from_millis(300);
        c.http.body_timeout = Duration::from_millis(300);
    })
    .await?;
    let addr = host.addr().to_string();

    let mut silent = TcpStream::connect(&addr).await?;
    silent
        .write_all(b"GET /api/greet HTTP/1.1\r\nHost: te")
        .await?;
    let mut rest = Vec::new();
    // Closed by the server (a deadline far past the timeout, not a wait).
    tokio::time::timeout(Duration::from_secs(10), silent.read_to_end(&mut rest)).await??;

    let mut trickle = TcpStream::connect(&addr).await?;
    let request = format!(
        "POST /api/greet HTTP/1.1\r\nHost: test\r\nx-functions-key: {MASTER_KEY}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"na"
    );
    trickle.write_all(request.as_bytes()).await?;
    let mut buffer = vec![0u8; 16 << 10];
    let n = tokio::time::timeout(Duration::from_secs(10), trickle.read(&mut buffer)).await??;
    let answer = String::from_utf8_lossy(&buffer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request-timeout"), "{answer}");
    Ok(())
}
