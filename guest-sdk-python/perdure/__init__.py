"""Perdure's Python SDK: function apps as WebAssembly components.

Build an app with componentize-py against Perdure's WIT (`cargo xtask
build` does it for the examples; see the README), drop the `.wasm` into the
watched folder, and `perdure` serves it.
"""

from . import _log as log
from ._activity import ActivityInfo, OutboundResponse, activity_info, http_get, http_request
from ._app import Blueprint, FunctionApp
from ._client import DurableClient, InstanceStatus, RuntimeStatus
from ._entity import Entity, EntityId
from ._errors import Error, ErrorCode
from ._http import HttpRequest, HttpResponse
from ._orchestration import OrchestrationContext, RetryOptions, Task

__all__ = [
    "ActivityInfo",
    "Blueprint",
    "DurableClient",
    "Entity",
    "EntityId",
    "Error",
    "ErrorCode",
    "FunctionApp",
    "HttpRequest",
    "HttpResponse",
    "InstanceStatus",
    "OrchestrationContext",
    "OutboundResponse",
    "RetryOptions",
    "RuntimeStatus",
    "Task",
    "activity_info",
    "http_get",
    "http_request",
    "log",
]
