"""The JSON shape of a task, shared by the API and the webhook events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from runapi.money import nanos_to_usd
from runapi.tasks.records import ENDPOINTS, Task

_encode = msgspec.json.Encoder(decimal_format="number").encode


def _unix(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp())


def task_object(task: Task, *, result: bytes | None = None, output_url: str | None = None,
                output_expires_at: datetime | None = None) -> dict[str, Any]:
    """A task as the API shows it. `result` (JSON bytes) is embedded as is."""
    return {
        "id": task.id,
        "object": "task",
        "model": task.model,
        "endpoint": ENDPOINTS[task.endpoint],
        "status": "running" if task.is_video and task.status == "queued" and task.upstream_state else task.status,
        "created_at": _unix(task.created_at),
        "started_at": _unix(task.started_at),
        "finished_at": _unix(task.finished_at),
        "runs": task.runs,
        "metadata": task.metadata,
        "callback_url": task.callback_url,
        "generation_id": task.generation_id,
        "cost": None if task.cost_nanos is None else nanos_to_usd(task.cost_nanos),
        "cancel_requested": task.cancel_requested,
        "error": task.error,
        "result": None if result is None else msgspec.Raw(result),
        "output_url": output_url,
        "output_expires_at": _unix(output_expires_at),
    }


def event_payload(event_type: str, task: dict[str, Any]) -> str:
    """A Standard Webhooks payload: `{"type", "timestamp", "data"}`, as the exact text that is signed."""
    timestamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return _encode({"type": event_type, "timestamp": timestamp, "data": task}).decode()
