"""Typed errors, as they cross the WIT boundary (`types.error`).

Every failure a function reports, and every failure the host reports to a
function, is an `Error` with a machine-readable `code`, a `message` for
people and optional JSON `details`.
"""

from __future__ import annotations

import enum
import json
import traceback
from typing import Any, Optional

from componentize_py_types import Err
from wit_world.imports import types as wit


class ErrorCode(str, enum.Enum):
    """What an error means to the caller (the WIT `error-code`)."""

    INVALID_ARGUMENT = "invalid-argument"
    NOT_FOUND = "not-found"
    ALREADY_EXISTS = "already-exists"
    FAILED_PRECONDITION = "failed-precondition"
    PERMISSION_DENIED = "permission-denied"
    RESOURCE_EXHAUSTED = "resource-exhausted"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    APPLICATION = "application"
    TRAPPED = "trapped"
    NONDETERMINISM = "nondeterminism"
    INTERNAL = "internal"

    def _wit(self) -> wit.ErrorCode:
        return wit.ErrorCode[self.name]


class Error(Exception):
    """A typed error. Raise it from any function; catch it around durable
    calls (`call_activity`, `wait_for_external_event`, ...) to branch on
    `code` without parsing messages."""

    def __init__(self, code: ErrorCode, message: str, details: Any = None):
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message
        self.details = details

    @classmethod
    def application(cls, message: str, details: Any = None) -> "Error":
        """A failure of the function's own: the message is the author's."""
        return cls(ErrorCode.APPLICATION, message, details)

    @classmethod
    def invalid_argument(cls, message: str, details: Any = None) -> "Error":
        return cls(ErrorCode.INVALID_ARGUMENT, message, details)

    @classmethod
    def not_found(cls, message: str, details: Any = None) -> "Error":
        return cls(ErrorCode.NOT_FOUND, message, details)

    def __repr__(self) -> str:
        return f"Error({self.code.value}: {self.message})"

    def __str__(self) -> str:
        return f"{self.code.value}: {self.message}"

    def _to_wit(self) -> wit.Error:
        details = None
        if self.details is not None:
            try:
                details = json.dumps(self.details, separators=(",", ":"), default=str)
            except (TypeError, ValueError):
                details = json.dumps(str(self.details))
        return wit.Error(code=self.code._wit(), message=self.message, details=details)

    @classmethod
    def _from_wit(cls, error: wit.Error) -> "Error":
        details = None
        if error.details is not None:
            try:
                details = json.loads(error.details)
            except ValueError:
                details = error.details
        return cls(ErrorCode[error.code.name], error.message, details)


def to_wit_error(exc: BaseException) -> Err:
    """Any exception a function raised, as the `Err` its export returns. An
    `Error` keeps its code; anything else is the function's own failure
    (`application`) with its type and traceback in the details."""
    if isinstance(exc, Error):
        return Err(exc._to_wit())
    if isinstance(exc, Err) and isinstance(exc.value, wit.Error):
        return exc
    details = {
        "type": type(exc).__name__,
        "traceback": "".join(traceback.format_exception(exc)),
    }
    error = Error(ErrorCode.APPLICATION, f"{type(exc).__name__}: {exc}", details)
    return Err(error._to_wit())


def host_call(function, *args):
    """Calls a host function, turning its `Err` into an `Error`."""
    try:
        return function(*args)
    except Err as err:
        if isinstance(err.value, wit.Error):
            raise Error._from_wit(err.value) from None
        raise


