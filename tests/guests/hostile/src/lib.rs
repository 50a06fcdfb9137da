//! Functions that misbehave on purpose; the sandbox must stop each one with
//! a clear error and keep serving everything else. All are anonymous so the
//! tests exercise the sandbox, not the keys.

use perdure_sdk::prelude::*;

fn trap(_req: HttpRequest) -> Result<HttpResponse> {
    panic!("this function always panics");
}

fn spin(_req: HttpRequest) -> Result<HttpResponse> {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

fn hog(_req: HttpRequest) -> Result<HttpResponse> {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        // Touch every page so the allocation is real.
        chunks.push(vec![1u8; 16 << 20]);
        std::hint::black_box(&chunks);
    }
}

#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    std::hint::black_box(recurse(std::hint::black_box(depth + 1)) + 1)
}

fn stack(_req: HttpRequest) -> Result<HttpResponse> {
    Ok(HttpResponse::text(200, recurse(0).to_string()))
}

fn read_file(_req: HttpRequest) -> Result<HttpResponse> {
    match std::fs::read_to_string("/etc/passwd") {
        Ok(text) => Ok(HttpResponse::text(200, text)),
        Err(e) => Err(Error::new(
            ErrorCode::PermissionDenied,
            format!("cannot read /etc/passwd: {e}"),
        )),
    }
}

fn read_env(_req: HttpRequest) -> Result<HttpResponse> {
    let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
    match std::env::var("PATH") {
        Ok(path) => Ok(HttpResponse::text(200, path)),
        Err(e) => Err(Error::new(
            ErrorCode::PermissionDenied,
            format!(
                "cannot read PATH: {e}; environment has {} variables",
                vars.len()
            ),
        )),
    }
}

fn chatty(_req: HttpRequest) -> Result<HttpResponse> {
    for i in 0..100_000 {
        println!("log line {i} of a guest that floods its log");
    }
    Ok(HttpResponse::text(200, "done"))
}

fn framing(_req: HttpRequest) -> Result<HttpResponse> {
    // Lies about the framing: the host must not pass these on.
    Ok(HttpResponse::text(200, "the whole body")
        .header("content-length", "3")
        .header("transfer-encoding", "chunked")
        .header("connection", "close")
        .header("x-kept", "yes"))
}

fn switching(_req: HttpRequest) -> Result<HttpResponse> {
    Ok(HttpResponse::new(101).header("upgrade", "websocket"))
}

perdure_sdk::export_app! {
    Function::http("Trap", trap).route("hostile/trap").auth(AuthLevel::Anonymous),
    Function::http("Spin", spin).route("hostile/spin").auth(AuthLevel::Anonymous),
    Function::http("Hog", hog).route("hostile/hog").auth(AuthLevel::Anonymous),
    Function::http("Stack", stack).route("hostile/stack").auth(AuthLevel::Anonymous),
    Function::http("ReadFile", read_file).route("hostile/file").auth(AuthLevel::Anonymous),
    Function::http("ReadEnv", read_env).route("hostile/env").auth(AuthLevel::Anonymous),
    Function::http("Framing", framing)
        .route("hostile/framing")
        .auth(AuthLevel::Anonymous),
    Function::http("Switching", switching)
        .route("hostile/switching")
        .auth(AuthLevel::Anonymous),
    Function::http("Chatty", chatty).route("hostile/chatty").auth(AuthLevel::Anonymous),
}
