"""Durable entities: a class whose public methods are the operations.

    @app.entity(name="Counter")
    class Counter(perdure.Entity):
        def initial_state(self):
            return 0

        def add(self, amount: int) -> int:
            self.state += amount
            return self.state

        def get(self) -> int:
            return self.state

Each operation runs on a fresh object whose `state` holds the entity's
state (JSON), or `initial_state()` for an entity that does not exist yet.
The new state is written when the operation returns; an operation that
raises leaves the state as it was, and its signals are discarded. An
operation that leaves the state as it found it writes nothing, so reading
an entity that does not exist does not create it. `delete_state()` deletes
the entity.
"""

from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass
from typing import Any, Optional

from wit_world.imports import entity_context
from wit_world.imports import types as wit

from . import _json
from ._errors import Error, ErrorCode


@dataclass(frozen=True)
class EntityId:
    """An entity's address, `name@key`."""

    name: str
    key: str

    def __str__(self) -> str:
        return f"{self.name}@{self.key}"

    def _to_wit(self) -> wit.EntityId:
        return wit.EntityId(name=self.name, key=self.key)


class Entity:
    """Base class of entities; see the module's documentation."""

    def __init__(self, entity_id: EntityId, state: Any, existed: bool):
        self.id = entity_id
        self.state = state
        self.has_state = existed
        self._deleted = False

    @property
    def key(self) -> str:
        return self.id.key

    def initial_state(self) -> Any:
        """The state of an entity before its first operation."""
        return None

    def delete_state(self) -> None:
        """Deletes the entity once this operation completes."""
        self._deleted = True

    def signal_entity(self, entity: EntityId, operation: str, input: Any = None) -> None:
        """Sends a one-way operation to another entity, exactly once, when
        this operation's new state commits."""
        payload = None if input is None else _json.dumps(input)
        entity_context.signal_entity(entity._to_wit(), operation, payload)

    def start_orchestration(
        self, name: str, input: Any = None, instance_id: Optional[str] = None
    ) -> str:
        """Starts an orchestration when this operation commits; returns its
        instance id."""
        return entity_context.start_orchestration(name, instance_id, _json.dumps(input))


class EntityClass:
    """An entity class's operations, found once when it is registered."""

    def __init__(self, cls: type):
        if not (isinstance(cls, type) and issubclass(cls, Entity)):
            raise TypeError(f"{cls!r}: an entity is a subclass of perdure.Entity")
        self.cls = cls
        self.operations: dict[str, Any] = {}
        base = set(dir(Entity))
        for name, member in inspect.getmembers(cls, inspect.isfunction):
            if not name.startswith("_") and name not in base:
                self.operations[name] = member

    def run(self, function: str, request) -> tuple[Optional[str], Optional[str]]:
        """Applies `request`; returns the new state and the output, as JSON."""
        method = self.operations.get(request.operation)
        if method is None:
            raise Error(
                ErrorCode.NOT_FOUND,
                f"entity {function} has no operation {request.operation!r}; "
                f"it has {', '.join(sorted(self.operations))}",
            )
        entity_id = EntityId(function, request.key)
        instance = self.cls(entity_id, None, request.state is not None)
        if request.state is None:
            instance.state = instance.initial_state()
        else:
            try:
                instance.state = _json.loads(request.state)
            except Error as e:
                raise Error(ErrorCode.INTERNAL, f"stored state of {entity_id}: {e.message}") from None
        before = _json.dumps(instance.state)
        params = list(inspect.signature(method).parameters.values())[1:]
        if params:
            if request.input is None and params[0].default is inspect.Parameter.empty:
                raise Error.invalid_argument(f"operation {request.operation} needs an input")
            hints = _hints(method)
            argument = (
                params[0].default
                if request.input is None
                else _json.loads(request.input, hints.get(params[0].name))
            )
            output = method(instance, argument)
        else:
            output = method(instance)
        if instance._deleted:
            state = None
        else:
            after = _json.dumps(instance.state)
            state = request.state if after == before else after
        return state, None if output is None else _json.dumps(output)


def _hints(function) -> dict[str, Any]:
    try:
        return typing.get_type_hints(function)
    except Exception:  # noqa: BLE001: annotations that do not resolve
        return {}
