//! `GreetFunction`: an HTTP-triggered function that greets by name, from the
//! query string (`GET /api/greet?name=Ada`) or a JSON body
//! (`POST /api/greet` with `{"name":"Ada"}`).

use perdure_sdk::prelude::*;

#[derive(Deserialize)]
struct GreetRequest {
    name: Option<String>,
}

fn greet(req: HttpRequest) -> Result<HttpResponse> {
    let name = match req.query("name") {
        Some(name) => Some(name.to_owned()),
        None if !req.body.is_empty() => req.json::<GreetRequest>()?.name,
        None => None,
    };
    let message = match name.filter(|n| !n.is_empty()) {
        Some(name) => format!("Hello, {name}. This HTTP triggered function executed successfully."),
        None => "This HTTP triggered function executed successfully. Pass a name in the query \
                 string or in the request body for a personalized response."
            .to_owned(),
    };
    Ok(HttpResponse::text(200, message))
}

perdure_sdk::export_app! {
    Function::http("GreetFunction", greet)
        .route("greet")
        .methods(["GET", "POST"])
        .auth(AuthLevel::Function),
}
