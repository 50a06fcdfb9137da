"""`PyGreet`: greets by name, from the query string
(`GET /api/py/greet?name=Ada`) or a JSON body (`{"name": "Ada"}`)."""

import perdure

bp = perdure.Blueprint()


@bp.http(name="PyGreet", route="py/greet", methods=["GET", "POST"], auth="function")
def greet(req: perdure.HttpRequest) -> perdure.HttpResponse:
    name = req.params.get("name")
    if name is None and req.body:
        body = req.get_json()
        name = body.get("name") if isinstance(body, dict) else None
    if name:
        return perdure.HttpResponse(
            f"Hello, {name}. This HTTP triggered function executed successfully."
        )
    return perdure.HttpResponse(
        "This HTTP triggered function executed successfully. Pass a name in the query "
        "string or in the request body for a personalized response."
    )
