"""Registering functions, and the component's exports.

    import perdure

    app = perdure.FunctionApp()

    @app.http(route="greet", methods=["GET", "POST"], auth="function")
    def greet(req: perdure.HttpRequest) -> perdure.HttpResponse: ...

    @app.orchestrator(name="Chain")
    def chain(ctx: perdure.OrchestrationContext, input): ...

    @app.activity(name="SayHello")
    def say_hello(name: str) -> str: ...

    App = app.export()   # componentize-py calls the class named App

Function names default to the Python name and must be unique across every
app a host serves. Inputs are decoded from JSON by the parameter's
annotation (see `perdure._json`), outputs encoded to JSON.
"""

from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from wit_world import exports
from wit_world.exports import app as app_types
from wit_world.imports import types as wit

from . import _json, _log
from ._entity import EntityClass
from ._errors import Error, ErrorCode, to_wit_error
from ._http import HttpRequest, response_of
from ._orchestration import OrchestrationContext

_AUTH = {
    "anonymous": wit.AuthLevel.ANONYMOUS,
    "function": wit.AuthLevel.FUNCTION,
    "admin": wit.AuthLevel.ADMIN,
}


@dataclass
class _Function:
    name: str
    kind: wit.FunctionKind
    handler: Any
    http: Optional[wit.HttpTrigger] = None
    operations: list[str] = field(default_factory=list)
    input_hint: Any = None
    takes_input: bool = True

    def descriptor(self) -> wit.FunctionDescriptor:
        return wit.FunctionDescriptor(
            name=self.name, kind=self.kind, http=self.http, operations=self.operations
        )


def _input_of(handler: Callable, skip: int) -> tuple[bool, Any]:
    """Whether `handler` takes an input after `skip` leading parameters, and
    the input's annotation."""
    params = list(inspect.signature(handler).parameters.values())[skip:]
    if not params:
        return False, None
    try:
        hints = typing.get_type_hints(handler)
    except Exception:  # noqa: BLE001: annotations that do not resolve
        hints = {}
    return True, hints.get(params[0].name)


class Blueprint:
    """A set of functions; a `FunctionApp` registers blueprints, so that an
    app's functions can live in several modules."""

    def __init__(self) -> None:
        self._functions: dict[str, _Function] = {}

    def _add(self, function: _Function) -> None:
        if function.name in self._functions:
            raise ValueError(f"two functions are named {function.name}")
        self._functions[function.name] = function

    def _decorator(self, make, target, name):
        def register(handler):
            self._add(make(handler, name or handler.__name__))
            return handler

        return register(target) if target is not None else register

    def http(
        self,
        target: Optional[Callable] = None,
        *,
        route: Optional[str] = None,
        methods: Optional[list[str]] = None,
        auth: str = "function",
        name: Optional[str] = None,
    ):
        """An HTTP function on `/api/{route}` (default: its name). It takes
        an `HttpRequest` and returns an `HttpResponse`, text, or JSON."""
        if auth not in _AUTH:
            raise ValueError(f"auth must be one of {', '.join(_AUTH)}, not {auth!r}")

        def make(handler, fname):
            trigger = wit.HttpTrigger(
                route=route or fname,
                methods=[m.upper() for m in (methods or [])],
                auth_level=_AUTH[auth],
            )
            return _Function(fname, wit.FunctionKind.HTTP, handler, http=trigger)

        return self._decorator(make, target, name)

    def orchestrator(self, target: Optional[Callable] = None, *, name: Optional[str] = None):
        """An orchestrator: `(ctx, input) -> output`, or `(ctx) -> output`."""

        def make(handler, fname):
            takes, hint = _input_of(handler, 1)
            return _Function(fname, wit.FunctionKind.ORCHESTRATOR, handler, input_hint=hint, takes_input=takes)

        return self._decorator(make, target, name)

    def activity(self, target: Optional[Callable] = None, *, name: Optional[str] = None):
        """An activity: `(input) -> output`, or `() -> output`."""

        def make(handler, fname):
            takes, hint = _input_of(handler, 0)
            return _Function(fname, wit.FunctionKind.ACTIVITY, handler, input_hint=hint, takes_input=takes)

        return self._decorator(make, target, name)

    def entity(self, target: Optional[type] = None, *, name: Optional[str] = None):
        """An entity class (a subclass of `perdure.Entity`)."""

        def make(cls, fname):
            entity = EntityClass(cls)
            return _Function(
                fname, wit.FunctionKind.ENTITY, entity, operations=sorted(entity.operations)
            )

        return self._decorator(make, target, name)


class FunctionApp(Blueprint):
    """The app: its functions and those of the blueprints it registers."""

    def register_functions(self, blueprint: Blueprint) -> None:
        for function in blueprint._functions.values():
            self._add(function)

    def export(self) -> type:
        """The class componentize-py instantiates as the `app` export: assign
        it to `App` in the app's module."""
        functions = self._functions
        _log.install()

        def find(name: str, kind: wit.FunctionKind) -> _Function:
            function = functions.get(name)
            if function is None:
                raise Error(ErrorCode.NOT_FOUND, f"no function named {name}")
            if function.kind != kind:
                raise Error.invalid_argument(f"function {name} is not {kind.name.lower()}")
            return function

        def call(function: _Function, leading: list, input_json: Optional[str]) -> Any:
            args = list(leading)
            if function.takes_input:
                args.append(_json.loads(input_json, function.input_hint))
            return function.handler(*args)

        class App(exports.App):
            def describe(self) -> wit.AppDescriptor:
                return wit.AppDescriptor(functions=[f.descriptor() for f in functions.values()])

            def handle_http(self, function: str, request: wit.HttpRequest) -> wit.HttpResponse:
                try:
                    handler = find(function, wit.FunctionKind.HTTP).handler
                    return response_of(handler(HttpRequest(request)))._to_wit()
                except BaseException as e:  # noqa: BLE001: every failure is typed
                    raise to_wit_error(e) from None

            def run_orchestrator(self, function: str, instance_id: str, input: str) -> str:
                try:
                    f = find(function, wit.FunctionKind.ORCHESTRATOR)
                    return _json.dumps(call(f, [OrchestrationContext(instance_id)], input))
                except BaseException as e:  # noqa: BLE001
                    raise to_wit_error(e) from None

            def run_activity(self, function: str, input: str) -> str:
                try:
                    f = find(function, wit.FunctionKind.ACTIVITY)
                    return _json.dumps(call(f, [], input))
                except BaseException as e:  # noqa: BLE001
                    raise to_wit_error(e) from None

            def run_entity(self, function: str, request):
                try:
                    entity = find(function, wit.FunctionKind.ENTITY).handler
                    state, output = entity.run(function, request)
                    return app_types.EntityResponse(state=state, output=output)
                except BaseException as e:  # noqa: BLE001
                    raise to_wit_error(e) from None

        return App
