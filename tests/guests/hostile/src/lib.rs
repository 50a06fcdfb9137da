//! Functions that misbehave on purpose; the sandbox must stop each one with
//! a clear error and keep serving everything else. The HTTP ones are
//! anonymous so the tests exercise the sandbox, not the keys; the durable
//! ones (a never-yielding orchestrator, an activity with an enormous
//! result, an entity that fails every operation) run through the
//! management API.

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

fn snoop(req: HttpRequest) -> Result<HttpResponse> {
    // What a guest sees of the request's headers.
    let headers: Vec<String> = req.headers.iter().map(|(n, v)| format!("{n}: {v}")).collect();
    Ok(HttpResponse::text(200, headers.join("\n")))
}

fn framing(_req: HttpRequest) -> Result<HttpResponse> {
    // Lies about the framing: the host must not pass these on.
    Ok(HttpResponse::text(200, "the whole body")
        .header("content-length", "3")
        .header("transfer-encoding", "chunked")
        .header("connection", "close")
        .header("x-kept", "yes"))
}

fn host_call_spin(_req: HttpRequest) -> Result<HttpResponse> {
    // Every iteration is a host call (the wall clock); the wasm between
    // them is tiny.
    let mut n: u128 = 0;
    loop {
        n = n.wrapping_add(std::hint::black_box(std::time::SystemTime::now())
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()));
    }
}

/// `?mib=N` (default 20) MiB of body.
fn huge(req: HttpRequest) -> Result<HttpResponse> {
    let mib: usize = req.query("mib").and_then(|m| m.parse().ok()).unwrap_or(20);
    Ok(HttpResponse::text(200, "x".repeat(mib << 20)))
}

fn socket(_req: HttpRequest) -> Result<HttpResponse> {
    match std::net::TcpStream::connect("127.0.0.1:7071") {
        Ok(_) => Ok(HttpResponse::text(200, "connected")),
        Err(e) => Err(Error::new(
            ErrorCode::PermissionDenied,
            format!("cannot open a socket: {e}"),
        )),
    }
}

fn never_yields(_ctx: &OrchestrationContext, _input: Value) -> Result<Value> {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

fn huge_result(mib: usize) -> Result<String> {
    Ok("x".repeat(mib << 20))
}

fn calls_huge_result(ctx: &OrchestrationContext, mib: usize) -> Result<String> {
    ctx.call_activity::<String>("HugeResult", &mib).map(|s| s.len().to_string())
}

/// Fails every operation, leaving its state alone.
#[derive(Default, Serialize, Deserialize)]
struct Grumpy(u64);

impl Grumpy {
    fn anything(&mut self, _input: Value) -> Result<()> {
        Err(Error::application("this entity refuses every operation"))
    }
}

impl Entity for Grumpy {
    fn operations() -> Operations<Self> {
        Operations::new().op("poke", Grumpy::anything)
    }
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
    Function::http("Snoop", snoop).route("hostile/snoop").auth(AuthLevel::Anonymous),
    Function::http("HostCallSpin", host_call_spin)
        .route("hostile/host-call-spin")
        .auth(AuthLevel::Anonymous),
    Function::http("Huge", huge).route("hostile/huge").auth(AuthLevel::Anonymous),
    Function::http("Socket", socket).route("hostile/socket").auth(AuthLevel::Anonymous),
    Function::orchestrator("NeverYields", never_yields),
    Function::activity("HugeResult", huge_result),
    Function::orchestrator("CallsHugeResult", calls_huge_result),
    Function::entity::<Grumpy>("Grumpy"),
}
