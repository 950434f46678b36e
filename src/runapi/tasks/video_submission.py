"""Creating a video task, from `POST /v1/videos` or `POST /v1/tasks` (endpoint `/v1/videos`).

In order: check the request against the model's typed inputs (400, nothing held), replay an
`Idempotency-Key` already used (nothing held again), hold the price (402 when the balance is
short), then one transaction inserts the task and writes the hold into the ledger (`video_store`).
The task is then the workers' (`video_jobs`).
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

import msgspec
from sqlalchemy.exc import IntegrityError

from runapi.clock import utcnow
from runapi.errors import NotFound
from runapi.pipeline import Principal, hold_video
from runapi.tasks.host import TaskHost
from runapi.tasks.idempotency import IdempotencyStore, fingerprint
from runapi.tasks.records import Task
from runapi.tasks.store import TaskStore
from runapi.tasks.video_requests import prepare_video_call
from runapi.tasks.video_store import VideoJobStore, video_generation_id

__all__ = ["NewVideo", "create_video_task"]


class NewVideo(msgspec.Struct, frozen=True):
    """A video to create: the request's fields (OpenAI's `/v1/videos` shape) and the task's settings."""

    fields: dict[str, Any]
    origin: str  # the base URL the client used (for output URLs)
    callback_url: str | None = None
    metadata: dict[str, str] | None = None


def new_video_id() -> str:
    return "task_" + secrets.token_hex(12)


async def create_video_task(gw: TaskHost, store: TaskStore, idempotency: IdempotencyStore, principal: Principal,
                            new: NewVideo, idempotency_key: str | None = None) -> tuple[Task, bool]:
    """Queue a video task with its price held in the ledger: (task, replayed)."""
    model = new.fields.get("model")
    entry = gw.model(model) if isinstance(model, str) and model else None
    if entry is None:
        raise NotFound(f"The model `{model}` does not exist. GET /v1/models lists the video models.",
                       param="model", code="model_not_found")
    call = prepare_video_call(entry, new.fields)
    fp = fingerprint("/v1/videos", {**new.fields, "callback_url": new.callback_url, "metadata": new.metadata})
    if idempotency_key is not None and await idempotency.find(principal.account_id, idempotency_key) is not None:
        existing = await idempotency.existing_resource(principal.account_id, idempotency_key, fp)
        return await store.get(existing, principal.account_id), True
    now = utcnow()
    task_id = new_video_id()
    values = {"id": task_id, "account_id": principal.account_id, "key_id": principal.key_id, "model": entry.id,
              "endpoint": "videos", "request": msgspec.json.encode(call.provider_request).decode(),
              "callback_url": new.callback_url, "origin": new.origin[:500], "status": "queued", "runs": 0,
              "metadata_json": None if new.metadata is None else msgspec.json.encode(new.metadata).decode(),
              "run_after": now, "created_at": now, "generation_id": video_generation_id(task_id),
              "price_nanos": call.price_nanos, "units": call.units,
              "deadline_at": now + timedelta(seconds=gw.settings.tasks.video_timeout)}
    idem = None if idempotency_key is None else idempotency.row(
        principal.account_id, idempotency_key, fp, status="done", resource_id=task_id)
    reservation = await hold_video(gw, principal, entry, call.price_nanos)
    try:
        task, entry_id = await VideoJobStore(store.engine).create(values, call.price_nanos, idem)
    except IntegrityError:
        reservation.release()
        if idempotency_key is None:
            raise
        existing = await idempotency.existing_resource(principal.account_id, idempotency_key, fp)
        return await store.get(existing, principal.account_id), True
    except BaseException:
        reservation.release()
        raise
    reservation.kept_in_ledger(entry_id, principal.key_id, task.created_at)
    return task, False
