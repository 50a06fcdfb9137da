"""JSON in and out of functions: inputs, outputs, events and entity state
cross the boundary as JSON text.

Values are plain JSON types, or dataclasses: a parameter annotated with a
dataclass is built from the JSON object (each field read by its name, or
by its camelCase form, so `customer_email` reads `customerEmail`), and a
dataclass returned is written as an object of its fields.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import typing
from typing import Any

from ._errors import Error


def _default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, enum.Enum):
        return value.value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> str:
    """`value` as compact JSON text; fails with `invalid-argument`."""
    try:
        return json.dumps(value, default=_default, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise Error.invalid_argument(f"cannot write JSON: {e}") from None


def loads(text: str | None, hint: Any = None) -> Any:
    """JSON text as a value of type `hint` (or plain JSON without one)."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as e:
        raise Error.invalid_argument(f"not JSON: {e}") from None
    return convert(value, hint)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def convert(value: Any, hint: Any) -> Any:
    """A parsed JSON value as `hint`: dataclasses, lists and optionals of
    them; other hints leave the value as it is."""
    if hint is None or hint is Any or value is None:
        return value
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        for arg in typing.get_args(hint):
            if arg is not type(None):
                return convert(value, arg)
        return value
    if origin in (list, tuple) and isinstance(value, list):
        args = typing.get_args(hint)
        item = args[0] if args else None
        return [convert(v, item) for v in value]
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if not isinstance(value, dict):
            raise Error.invalid_argument(
                f"expected a JSON object for {hint.__name__}, got {type(value).__name__}"
            )
        try:
            hints = typing.get_type_hints(hint)
        except Exception:  # noqa: BLE001: unresolvable annotations
            hints = {}
        fields = {}
        for field in dataclasses.fields(hint):
            for key in (field.name, _camel(field.name)):
                if key in value:
                    fields[field.name] = convert(value[key], hints.get(field.name))
                    break
        try:
            return hint(**fields)
        except TypeError as e:
            raise Error.invalid_argument(f"{hint.__name__}: {e}") from None
    return value
