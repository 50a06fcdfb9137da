"""Requests to HTTP functions and their responses."""

from __future__ import annotations

from typing import Any, Iterable, Optional

from wit_world.imports import types as wit

from . import _json
from ._errors import Error


class HttpRequest:
    """A request routed to an HTTP function.

    `params` maps query parameters to their first value (`query` keeps every
    pair in order), `route_params` the route template's placeholders, and
    `headers` lower-case header names to their last value.
    """

    def __init__(self, request: wit.HttpRequest):
        self.method: str = request.method
        self.path: str = request.path
        self.query: list[tuple[str, str]] = list(request.query)
        self.params: dict[str, str] = {}
        for name, value in request.query:
            self.params.setdefault(name, value)
        self.route_params: dict[str, str] = dict(request.params)
        self.headers: dict[str, str] = dict(request.headers)
        self.body: bytes = bytes(request.body)
        self.base_url: str = request.base_url

    @property
    def url(self) -> str:
        return self.base_url + self.path

    def get_body(self) -> bytes:
        return self.body

    def text(self) -> str:
        try:
            return self.body.decode("utf-8")
        except UnicodeDecodeError as e:
            raise Error.invalid_argument(f"the body is not UTF-8: {e}") from None

    def get_json(self, hint: Any = None) -> Any:
        """The body as JSON (as `hint`, e.g. a dataclass); a body that is not
        JSON fails with `invalid-argument`, which the host answers with 400."""
        return _json.loads(self.text(), hint)


class HttpResponse:
    """A response: `body` (bytes or text), `status_code`, headers, and a
    content type from `mimetype` unless the headers set one."""

    def __init__(
        self,
        body: bytes | str = b"",
        status_code: int = 200,
        headers: Optional[dict[str, str] | Iterable[tuple[str, str]]] = None,
        mimetype: Optional[str] = None,
    ):
        self.body = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        self.status_code = status_code
        pairs = headers.items() if isinstance(headers, dict) else (headers or [])
        self.headers: list[tuple[str, str]] = [(str(k), str(v)) for k, v in pairs]
        has_type = any(k.lower() == "content-type" for k, _ in self.headers)
        if not has_type and (mimetype or isinstance(body, str)):
            kind = mimetype or "text/plain"
            if kind.startswith("text/") or kind == "application/json":
                kind += "; charset=utf-8"
            self.headers.append(("content-type", kind))

    @classmethod
    def json(cls, value: Any, status_code: int = 200, headers=None) -> "HttpResponse":
        return cls(_json.dumps(value), status_code, headers, "application/json")

    def _to_wit(self) -> wit.HttpResponse:
        return wit.HttpResponse(status=self.status_code, headers=self.headers, body=self.body)

    @classmethod
    def _from_wit(cls, response: wit.HttpResponse) -> "HttpResponse":
        return cls(bytes(response.body), response.status, list(response.headers))


def response_of(value: Any) -> HttpResponse:
    """What an HTTP function returned, as a response: an `HttpResponse` as
    it is, text as `200 text/plain`, `None` as `204`, anything else as JSON."""
    if isinstance(value, HttpResponse):
        return value
    if value is None:
        return HttpResponse(status_code=204)
    if isinstance(value, (str, bytes)):
        return HttpResponse(value)
    return HttpResponse.json(value)
