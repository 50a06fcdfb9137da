"""The orchestrator's side of durable execution.

Orchestrators are plain sequential Python: `ctx.call_activity(...)` returns
the activity's result (the host suspends the orchestrator until it is
known). Every call is journaled; after a crash, a restart or an eviction
the orchestrator runs again from the start and the host answers each call
from the journal. The code must therefore be deterministic: take time from
`ctx.current_utc_datetime`, ids from `ctx.new_guid()`, and do I/O only in
activities. `random`, `time.time()`, `os.urandom` and hashing are made
deterministic by the host and the build, so they replay identically too.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence

from componentize_py_types import Ok
from wit_world.imports import orchestration as host
from wit_world.imports import types as wit

from . import _json
from ._entity import EntityId
from ._errors import Error, ErrorCode, host_call


@dataclass
class RetryOptions:
    """How to retry a failed activity or sub-orchestration: attempts in all
    (the first included), the first interval, and each next interval the
    previous one times `backoff_coefficient`."""

    max_number_of_attempts: int
    first_retry_interval: _dt.timedelta | float
    backoff_coefficient: float = 2.0
    max_retry_interval: Optional[_dt.timedelta | float] = None
    retry_timeout: Optional[_dt.timedelta | float] = None

    def _to_wit(self) -> wit.RetryPolicy:
        return wit.RetryPolicy(
            max_attempts=self.max_number_of_attempts,
            first_retry_interval=_millis(self.first_retry_interval),
            backoff_coefficient=float(self.backoff_coefficient),
            max_retry_interval=None if self.max_retry_interval is None else _millis(self.max_retry_interval),
            retry_timeout=None if self.retry_timeout is None else _millis(self.retry_timeout),
        )


def _millis(value: _dt.timedelta | float) -> int:
    """A duration in seconds (or a timedelta) as milliseconds."""
    seconds = value.total_seconds() if isinstance(value, _dt.timedelta) else float(value)
    return max(0, round(seconds * 1000))


def _options(retry: Optional[RetryOptions]) -> host.TaskOptions:
    return host.TaskOptions(retry=None if retry is None else retry._to_wit())


_PENDING = object()


class Task:
    """Work scheduled and not awaited yet: pass it to `ctx.when_all` or
    `ctx.when_any`, or read `result` once one of them has completed it."""

    def __init__(self, task_id: int, hint: Any = None):
        self.id = task_id
        self._hint = hint
        self._value: Any = _PENDING
        self._error: Optional[Error] = None

    @property
    def done(self) -> bool:
        return self._value is not _PENDING or self._error is not None

    @property
    def result(self) -> Any:
        """The task's value; raises its `Error` if it failed."""
        if self._error is not None:
            raise self._error
        if self._value is _PENDING:
            raise Error(ErrorCode.FAILED_PRECONDITION, f"task {self.id} has not completed")
        return self._value

    @property
    def error(self) -> Optional[Error]:
        return self._error

    def _complete(self, outcome) -> None:
        if isinstance(outcome, Ok):
            self._value = _json.loads(outcome.value, self._hint)
        else:
            self._error = Error._from_wit(outcome.value)

    def __repr__(self) -> str:
        state = "failed" if self._error else ("done" if self.done else "pending")
        return f"Task({self.id}, {state})"


class OrchestrationContext:
    """What an orchestrator calls; see the module's documentation."""

    def __init__(self, instance_id: str):
        self.instance_id = instance_id

    # Time, ids, status.

    @property
    def current_utc_datetime(self) -> _dt.datetime:
        """The deterministic current time: when the current episode started."""
        return _dt.datetime.fromtimestamp(host.now() / 1000, tz=_dt.timezone.utc)

    def new_guid(self) -> str:
        """A UUID derived from the instance id and the call's position."""
        return host.new_guid()

    @property
    def is_replaying(self) -> bool:
        return host.is_replaying()

    def set_custom_status(self, status: Any) -> None:
        host.set_custom_status(None if status is None else _json.dumps(status))

    # Activities and sub-orchestrations.

    def call_activity(
        self, name: str, input: Any = None, *, retry: Optional[RetryOptions] = None, hint: Any = None
    ) -> Any:
        """Runs activity `name` and returns its result (as `hint`, e.g. a
        dataclass); its failure raises `Error`."""
        output = host_call(host.call_activity, name, _json.dumps(input), _options(retry))
        return _json.loads(output, hint)

    def call_activity_with_retry(self, name: str, retry: RetryOptions, input: Any = None) -> Any:
        return self.call_activity(name, input, retry=retry)

    def schedule_activity(
        self, name: str, input: Any = None, *, retry: Optional[RetryOptions] = None, hint: Any = None
    ) -> Task:
        return Task(host.schedule_activity(name, _json.dumps(input), _options(retry)), hint)

    def call_sub_orchestrator(
        self,
        name: str,
        input: Any = None,
        *,
        instance_id: Optional[str] = None,
        retry: Optional[RetryOptions] = None,
        hint: Any = None,
    ) -> Any:
        output = host_call(
            host.call_sub_orchestration, name, instance_id, _json.dumps(input), _options(retry)
        )
        return _json.loads(output, hint)

    def schedule_sub_orchestrator(
        self,
        name: str,
        input: Any = None,
        *,
        instance_id: Optional[str] = None,
        retry: Optional[RetryOptions] = None,
        hint: Any = None,
    ) -> Task:
        task_id = host.schedule_sub_orchestration(
            name, instance_id, _json.dumps(input), _options(retry)
        )
        return Task(task_id, hint)

    # Timers and events.

    def _fire_at(self, when: _dt.datetime | _dt.timedelta) -> int:
        if isinstance(when, _dt.timedelta):
            return host.now() + _millis(when)
        if when.tzinfo is None:
            when = when.replace(tzinfo=_dt.timezone.utc)
        return max(0, round(when.timestamp() * 1000))

    def create_timer(self, fire_at: _dt.datetime | _dt.timedelta) -> None:
        """Waits on a durable timer until `fire_at` (a UTC datetime, or a
        timedelta from `current_utc_datetime`)."""
        host.create_timer(self._fire_at(fire_at))

    def schedule_timer(self, fire_at: _dt.datetime | _dt.timedelta) -> Task:
        return Task(host.schedule_timer(self._fire_at(fire_at)))

    def wait_for_external_event(
        self, name: str, timeout: Optional[_dt.timedelta | float] = None, *, hint: Any = None
    ) -> Any:
        """The data of the next event `name`. With a `timeout` (seconds or a
        timedelta), raises `Error` with code `TIMEOUT` if none arrives."""
        millis = None if timeout is None else _millis(timeout)
        return _json.loads(host_call(host.wait_for_event, name, millis), hint)

    def schedule_event_wait(self, name: str, *, hint: Any = None) -> Task:
        return Task(host.schedule_event_wait(name), hint)

    # Waiting on several tasks.

    def when_all(self, tasks: Sequence[Task]) -> list[Any]:
        """Waits for every task; their results in the order of `tasks`. The
        first failure (in that order) raises its `Error`."""
        self.when_all_settled(tasks)
        return [task.result for task in tasks]

    def when_all_settled(self, tasks: Sequence[Task]) -> list[Task]:
        """Waits for every task, failed or not, and returns them."""
        pending = [task for task in tasks if not task.done]
        if pending:
            for task, outcome in zip(pending, host.await_all([t.id for t in pending])):
                task._complete(outcome)
        return list(tasks)

    def when_any(self, tasks: Sequence[Task]) -> Task:
        """Waits for the first task to complete and returns it; the others
        stay pending (cancel the timers and event waits you no longer need)."""
        for task in tasks:
            if task.done:
                return task
        index, outcome = host.await_any([t.id for t in tasks])
        winner = tasks[index]
        winner._complete(outcome)
        return winner

    task_all = when_all
    task_any = when_any

    def cancel(self, task: Task) -> None:
        """Cancels a pending timer or event wait; for other tasks only
        discards their result."""
        if not task.done:
            host.cancel_task(task.id)

    # Entities.

    def call_entity(self, entity: EntityId, operation: str, input: Any = None, *, hint: Any = None) -> Any:
        payload = None if input is None else _json.dumps(input)
        output = host_call(host.call_entity, entity._to_wit(), operation, payload)
        return _json.loads(output, hint)

    def signal_entity(self, entity: EntityId, operation: str, input: Any = None) -> None:
        payload = None if input is None else _json.dumps(input)
        host.signal_entity(entity._to_wit(), operation, payload)

    def schedule_entity_call(self, entity: EntityId, operation: str, input: Any = None) -> Task:
        payload = None if input is None else _json.dumps(input)
        return Task(host.schedule_entity_call(entity._to_wit(), operation, payload))

    def lock_entities(self, *entities: EntityId) -> None:
        """Locks entities until `unlock_entities` (or the orchestration's
        end): no other operation reaches them meanwhile."""
        host_call(host.lock_entities, [e._to_wit() for e in entities])

    def unlock_entities(self) -> None:
        host.unlock_entities()

    @contextlib.contextmanager
    def critical_section(self, *entities: EntityId) -> Iterator[None]:
        """`with ctx.critical_section(a, b): ...` locks, runs, unlocks."""
        self.lock_entities(*entities)
        try:
            yield
        finally:
            self.unlock_entities()

    # Other orchestrations.

    def start_orchestration(self, name: str, input: Any = None, instance_id: Optional[str] = None) -> str:
        """Starts an orchestration without waiting for it; its id."""
        return host.start_orchestration(name, instance_id, _json.dumps(input))

    def continue_as_new(self, input: Any = None, preserve_unprocessed_events: bool = False) -> None:
        """Restarts this orchestration with `input` once it returns."""
        host.continue_as_new(_json.dumps(input), preserve_unprocessed_events)
