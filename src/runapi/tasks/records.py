"""Plain records of the task stores: tasks, webhook events and their delivery attempts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from runapi.clock import as_utc

TERMINAL = ("succeeded", "failed", "cancelled")
ENDPOINTS = {"chat.completions": "/v1/chat/completions", "messages": "/v1/messages", "videos": "/v1/videos"}


class Task(msgspec.Struct, frozen=True):
    id: str
    account_id: str
    key_id: str
    model: str
    endpoint: str  # a key of ENDPOINTS
    request: str  # the input, JSON text
    status: str  # queued | running | succeeded | failed | cancelled
    runs: int
    created_at: datetime
    run_after: datetime
    origin: str = ""
    callback_url: str | None = None
    metadata: dict[str, str] | None = None
    locked_until: datetime | None = None
    worker: str | None = None
    cancel_requested: bool = False
    generation_id: str | None = None
    cost_nanos: int | None = None
    error: dict[str, Any] | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # Video jobs (`endpoint` "videos"): the upstream job and the credit held for it (see `video_store`).
    upstream_id: str | None = None
    upstream_state: str | None = None  # None | submitting | submitted
    provider_name: str | None = None
    upstream_model: str | None = None
    hold_nanos: int | None = None
    price_nanos: int | None = None
    units: int | None = None
    deadline_at: datetime | None = None
    polls: int = 0

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def is_video(self) -> bool:
        return self.endpoint == "videos"

    @classmethod
    def from_row(cls, row: Any) -> Task:
        data = dict(row._mapping)
        metadata_json = data.pop("metadata_json")
        data["metadata"] = None if metadata_json is None else msgspec.json.decode(metadata_json)
        data["error"] = None if data["error"] is None else msgspec.json.decode(data["error"])
        for name in ("created_at", "run_after", "locked_until", "started_at", "finished_at", "deadline_at"):
            data[name] = as_utc(data[name])
        data["cancel_requested"] = bool(data["cancel_requested"])
        return cls(**data)


class TaskOutput(msgspec.Struct, frozen=True):
    task_id: str
    body: bytes
    content_type: str
    expires_at: datetime


class WebhookEvent(msgspec.Struct, frozen=True):
    """One event in the outbox; `id` is the `webhook-id` every attempt carries."""

    id: str
    task_id: str
    account_id: str
    url: str
    event_type: str
    payload: str
    status: str  # pending | delivered | failed
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    locked_until: datetime | None = None
    finished_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Any) -> WebhookEvent:
        data = dict(row._mapping)
        for name in ("next_attempt_at", "created_at", "locked_until", "finished_at"):
            data[name] = as_utc(data[name])
        return cls(**data)


class DeliveryAttempt(msgspec.Struct, frozen=True):
    id: int
    event_id: str
    task_id: str
    attempt: int
    url: str
    status_code: int | None
    error: str | None
    duration_ms: float
    outcome: str  # delivered | retrying | failed
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> DeliveryAttempt:
        data = dict(row._mapping)
        data["created_at"] = as_utc(data["created_at"])
        return cls(**data)
