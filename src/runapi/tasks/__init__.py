"""Asynchronous tasks: a durable queue in the database, workers on the synchronous pipeline,
signed webhooks with retries, and `Idempotency-Key` replays (the SSRF guard and the signed output URLs
live in `runapi.outbound`)."""

from runapi.tasks.idempotency import (
    IdempotencyStore,
    Reply,
    idempotency_key,
    run_idempotent,
)
from runapi.tasks.records import DeliveryAttempt, Task, TaskOutput, WebhookEvent
from runapi.tasks.runtime import TaskRuntime
from runapi.tasks.store import TaskStore, run_generation_id
from runapi.tasks.submission import MAX_METADATA_KEYS, NewTask, decode_new_task
from runapi.tasks.video_render import VideoOutput, video_object
from runapi.tasks.video_requests import decode_video_body
from runapi.tasks.video_submission import NewVideo
from runapi.tasks.webhook_store import WebhookStore

__all__ = [
    "MAX_METADATA_KEYS",
    "DeliveryAttempt",
    "IdempotencyStore",
    "NewTask",
    "NewVideo",
    "Reply",
    "Task",
    "TaskOutput",
    "TaskRuntime",
    "TaskStore",
    "VideoOutput",
    "WebhookEvent",
    "WebhookStore",
    "decode_new_task",
    "decode_video_body",
    "idempotency_key",
    "run_generation_id",
    "run_idempotent",
    "video_object",
]
