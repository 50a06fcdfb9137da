"""What an activity knows about the call that scheduled it, and its
outbound HTTP."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from wit_world.imports import activity_context, outbound_http

from . import _json
from ._errors import host_call


@dataclass(frozen=True)
class ActivityInfo:
    """The activity's name, the instance that scheduled it, a key stable
    across retries of the same call (use it to make side effects
    idempotent: activities run at least once) and the attempt (1 first)."""

    name: str
    instance_id: str
    idempotency_key: str
    attempt: int


def activity_info() -> ActivityInfo:
    """Only while an activity runs (elsewhere the host traps)."""
    info = activity_context.info()
    return ActivityInfo(info.name, info.instance_id, info.idempotency_key, info.attempt)


@dataclass
class OutboundResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def header(self, name: str) -> Optional[str]:
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self, hint: Any = None) -> Any:
        return _json.loads(self.text(), hint)


def http_request(
    method: str,
    url: str,
    *,
    headers: Optional[dict[str, str]] = None,
    body: bytes | str = b"",
    json: Any = None,
) -> OutboundResponse:
    """Sends a request from an activity. Only hosts the app's `[outbound]
    allowed_hosts` lists are reached; others fail with `permission-denied`
    and nothing is sent."""
    pairs = [(k.lower(), str(v)) for k, v in (headers or {}).items()]
    if json is not None:
        body = _json.dumps(json)
        if not any(k == "content-type" for k, _ in pairs):
            pairs.append(("content-type", "application/json"))
    data = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    request = outbound_http.OutgoingRequest(
        method=method.upper(), url=url, headers=pairs, body=data
    )
    response = host_call(outbound_http.send, request)
    return OutboundResponse(response.status, list(response.headers), bytes(response.body))


def http_get(url: str, *, headers: Optional[dict[str, str]] = None) -> OutboundResponse:
    return http_request("GET", url, headers=headers)
