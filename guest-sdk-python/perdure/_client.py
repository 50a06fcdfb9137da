"""The durable client: start and manage orchestrations and entities from
HTTP functions and activities."""

from __future__ import annotations

import datetime as _dt
import enum
from dataclasses import dataclass
from typing import Any, Optional

from wit_world.imports import client as wit_client

from . import _json
from ._entity import EntityId
from ._errors import host_call
from ._http import HttpRequest, HttpResponse


class RuntimeStatus(str, enum.Enum):
    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    TERMINATED = "Terminated"
    SUSPENDED = "Suspended"
    CONTINUED_AS_NEW = "ContinuedAsNew"


def _time(ms: int) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(ms / 1000, tz=_dt.timezone.utc)


@dataclass
class InstanceStatus:
    name: str
    instance_id: str
    runtime_status: RuntimeStatus
    input: Any
    output: Any
    custom_status: Any
    created_time: _dt.datetime
    last_updated_time: _dt.datetime
    parent_instance_id: Optional[str]


def _millis(timeout: Any) -> int:
    if isinstance(timeout, _dt.timedelta):
        return max(0, int(timeout.total_seconds() * 1000))
    return max(0, int(float(timeout) * 1000))


class DurableClient:
    """Every method calls the host at once; failures raise `Error`."""

    def start_new(
        self, name: str, input: Any = None, instance_id: Optional[str] = None
    ) -> str:
        """Starts an orchestration; returns its instance id."""
        return host_call(wit_client.start_new, name, instance_id, _json.dumps(input))

    def get_status(self, instance_id: str) -> Optional[InstanceStatus]:
        status = host_call(wit_client.get_status, instance_id)
        if status is None:
            return None
        return InstanceStatus(
            name=status.name,
            instance_id=status.instance_id,
            runtime_status=RuntimeStatus[status.runtime_status.name],
            input=_json.loads(status.input),
            output=_json.loads(status.output),
            custom_status=_json.loads(status.custom_status),
            created_time=_time(status.created_time),
            last_updated_time=_time(status.last_updated_time),
            parent_instance_id=status.parent_instance_id,
        )

    def raise_event(self, instance_id: str, event_name: str, data: Any = None) -> None:
        host_call(wit_client.raise_event, instance_id, event_name, _json.dumps(data))

    def terminate(self, instance_id: str, reason: str = "") -> None:
        host_call(wit_client.terminate, instance_id, reason)

    def suspend(self, instance_id: str, reason: str = "") -> None:
        host_call(wit_client.suspend, instance_id, reason)

    def resume(self, instance_id: str, reason: str = "") -> None:
        host_call(wit_client.resume, instance_id, reason)

    def purge(self, instance_id: str) -> bool:
        """Deletes a finished instance's history; False if there was none."""
        return host_call(wit_client.purge, instance_id)

    def signal_entity(self, entity: EntityId, operation: str, input: Any = None) -> None:
        payload = None if input is None else _json.dumps(input)
        host_call(wit_client.signal_entity, entity._to_wit(), operation, payload)

    def read_entity_state(self, entity: EntityId, hint: Any = None) -> Any:
        """The entity's state, or None if it does not exist."""
        return _json.loads(host_call(wit_client.read_entity_state, entity._to_wit()), hint)

    def create_check_status_response(self, request: HttpRequest, instance_id: str) -> HttpResponse:
        """202 Accepted with `Location` and the management URLs."""
        response = wit_client.create_check_status_response(request.base_url, instance_id)
        return HttpResponse._from_wit(response)

    def wait_for_completion_or_create_check_status_response(
        self, request: HttpRequest, instance_id: str, timeout: Any = 10
    ) -> HttpResponse:
        """200 with the output if the instance finishes within `timeout`
        (seconds or a timedelta), otherwise the check-status response."""
        response = wit_client.wait_for_completion_or_create_check_status_response(
            request.base_url, instance_id, _millis(timeout)
        )
        return HttpResponse._from_wit(response)
