//! Version 2 of `GreetFunction`: same function and route as the greet
//! example, a different answer, so a test can tell which version served.

use perdure_sdk::prelude::*;

fn greet(req: HttpRequest) -> Result<HttpResponse> {
    let name = req.query("name").unwrap_or("stranger");
    Ok(HttpResponse::text(
        200,
        format!("Greetings from v2, {name}."),
    ))
}

perdure_sdk::export_app! {
    Function::http("GreetFunction", greet).route("greet").methods(["GET", "POST"]),
}
