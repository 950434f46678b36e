"""A video task as OpenAI's video object (openai-python `types/video.py`), and its kept output."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from runapi.tasks.records import Task

__all__ = ["VideoOutput", "video_object", "video_status"]


class VideoOutput(msgspec.Struct, frozen=True):
    """What a delivered video task keeps (its task output, JSON): the media store's signed URLs and keys."""

    video_url: str
    video_key: str
    expires_at: int
    object: str = "video.output"
    thumbnail_url: str | None = None
    thumbnail_key: str | None = None
    size_bytes: int = 0


def _unix(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp())


def video_status(task: Task) -> str:
    """queued (not yet with the provider) | in_progress | completed | failed (cancelled included)."""
    if task.status == "succeeded":
        return "completed"
    if task.terminal:
        return "failed"
    return "in_progress" if task.upstream_state is not None else "queued"


def video_object(task: Task, output: VideoOutput | None = None) -> dict[str, Any]:
    """The `video` object of a video task; a cancelled one is `failed` with error code `cancelled`."""
    request = msgspec.json.decode(task.request)
    status = video_status(task)
    error = task.error
    if task.status == "cancelled":
        error = {"code": "cancelled", "message": "The video was cancelled; nothing was charged."}
    return {
        "id": task.id,
        "object": "video",
        "created_at": _unix(task.created_at),
        "status": status,
        "model": task.model,
        "progress": 100 if task.terminal else (50 if status == "in_progress" else 0),
        "seconds": str(request.get("duration", "")),
        "size": str(request.get("size", "")),
        "prompt": request.get("prompt"),
        "completed_at": _unix(task.finished_at) if task.terminal else None,
        "expires_at": output.expires_at if output is not None else None,
        "error": None if error is None else {"code": str(error.get("code") or "video_generation_failed"),
                                              "message": str(error.get("message") or "")},
        "remixed_from_video_id": None,
    }
