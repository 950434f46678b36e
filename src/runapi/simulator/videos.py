"""Asynchronous video jobs as the development simulator plays them, in Z.ai's and OpenAI's shapes.

Z.ai (https://docs.z.ai/api-reference/video/generate-video, .../get-video-status): `POST
/paas/v4/videos/generations` answers `{model, id, request_id, task_status: "PROCESSING"}`;
`GET /paas/v4/async-result/{id}` reports PROCESSING, then SUCCESS with
`video_result: [{url, cover_image_url}]`, or FAIL. OpenAI (openai-python `types/video.py`,
`resources/videos.py`): `POST /v1/videos` (multipart form or JSON) answers a `video` object with
`status: "queued"`; `GET /v1/videos/{id}` moves through `in_progress` to `completed` or `failed`;
`GET /v1/videos/{id}/content[?variant=thumbnail]` downloads the file.

A job finishes `video_delay_ms` after its submission (`SimulatorConfig`); the fault "fail" makes
it end FAIL, "stall" keeps it PROCESSING for ever.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any, Literal

import msgspec

from .embeddings import Shape

__all__ = ["JobBoard", "Status", "VideoJob", "openai_video_body", "parse_form", "parse_video", "zai_result_body",
           "zai_submit_body"]

_encode = msgspec.json.Encoder().encode
Status = Literal["processing", "succeeded", "failed"]
_MAX_JOBS = 1024
_OPENAI_SIZES = frozenset({"720x1280", "1280x720", "1024x1792", "1792x1024"})


class VideoJob(msgspec.Struct, kw_only=True):
    """One simulated video job; `finish_at` is a monotonic time, None for a job that never ends."""

    id: str
    request_id: str
    model: str
    prompt: str
    seconds: str
    size: str
    created_at: int
    finish_at: float | None
    fails: bool
    url_ttl: float
    video_url: str = ""
    cover_url: str = ""
    completed_at: int | None = None

    def status(self, now: float) -> Status:
        """The job's state at monotonic time `now`."""
        if self.finish_at is None or now < self.finish_at:
            return "processing"
        return "failed" if self.fails else "succeeded"


def parse_video(raw: dict[str, Any], shape: Shape) -> tuple[str, str, str, str]:
    """(model, prompt, seconds, size) of a video request; raises `ValueError` naming the bad field."""
    model = raw.get("model") or ("sora-2" if shape == "openai" else "")
    if not isinstance(model, str) or not model:
        raise ValueError("model: expected a model name")
    prompt = raw.get("prompt", "")
    if shape == "zai":
        if not isinstance(prompt, str) or not (prompt.strip() or raw.get("image_url")):
            raise ValueError("prompt: give a prompt, an image_url or both")
        duration, size = raw.get("duration", 5), raw.get("size", "1920x1080")
        if not isinstance(duration, int) or isinstance(duration, bool) or duration <= 0:
            raise ValueError("duration: expected a positive integer")
        return model, prompt, str(duration), str(size)
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("prompt: expected a non-empty string")
    seconds, size = str(raw.get("seconds", "4")), str(raw.get("size", "720x1280"))
    if not seconds.isascii() or not seconds.isdigit() or int(seconds) <= 0:
        raise ValueError("seconds: expected a positive whole number of seconds")
    if size not in _OPENAI_SIZES:
        raise ValueError(f"size: expected one of {sorted(_OPENAI_SIZES)}")
    return model, prompt, seconds, size


def parse_form(content_type: str, body: bytes) -> dict[str, Any]:
    """The text fields of a `multipart/form-data` body (the OpenAI SDK posts videos so); files are skipped.

    An `x_sim` field is decoded as JSON (the simulator's per-request knobs).
    """
    message = BytesParser(policy=HTTP).parsebytes(b"content-type: " + content_type.encode() + b"\r\n\r\n" + body)
    fields: dict[str, Any] = {}
    if not message.is_multipart():
        raise ValueError("body: expected a multipart/form-data or JSON body")
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str) and part.get_filename() is None:
            payload = part.get_payload(decode=True)
            fields[name] = payload.decode() if isinstance(payload, bytes) else ""
    if "x_sim" in fields:
        try:
            fields["x_sim"] = msgspec.json.decode(fields["x_sim"])
        except msgspec.DecodeError as exc:
            raise ValueError(f"x_sim: {exc}") from None
    return fields


class JobBoard:
    """The jobs of one simulator instance, the newest `_MAX_JOBS` kept."""

    def __init__(self) -> None:
        self._jobs: OrderedDict[str, VideoJob] = OrderedDict()

    def add(self, shape: Shape, fields: tuple[str, str, str, str], created_at: int, finish_at: float | None,
            fails: bool, url_ttl: float) -> VideoJob:
        """Register a new job; its id starts with "video_" in OpenAI's shape."""
        model, prompt, seconds, size = fields
        job_id = ("video_" if shape == "openai" else "") + secrets.token_hex(12)
        job = VideoJob(id=job_id, request_id=secrets.token_hex(8), model=model, prompt=prompt, seconds=seconds,
                       size=size, created_at=created_at, finish_at=finish_at, fails=fails, url_ttl=url_ttl)
        self._jobs[job_id] = job
        while len(self._jobs) > _MAX_JOBS:
            self._jobs.popitem(last=False)
        return job

    def get(self, job_id: str) -> VideoJob | None:
        return self._jobs.get(job_id)

    def clear(self) -> None:
        self._jobs.clear()


def zai_submit_body(job: VideoJob) -> bytes:
    """`POST /paas/v4/videos/generations` answer."""
    return _encode({"model": job.model, "id": job.id, "request_id": job.request_id, "task_status": "PROCESSING"})


def zai_result_body(job: VideoJob, status: Status) -> bytes:
    """`GET /paas/v4/async-result/{id}` answer; the URLs must be set on a succeeded job."""
    body: dict[str, Any] = {"model": job.model, "request_id": job.request_id,
                            "task_status": {"processing": "PROCESSING", "succeeded": "SUCCESS", "failed": "FAIL"}[status]}
    if status == "succeeded":
        body["video_result"] = [{"url": job.video_url, "cover_image_url": job.cover_url}]
    return _encode(body)


def openai_video_body(job: VideoJob, status: Status | Literal["queued"], completed_at: int | None) -> bytes:
    """A `video` object (openai-python `types/video.py`)."""
    state = {"queued": "queued", "processing": "in_progress", "succeeded": "completed", "failed": "failed"}[status]
    error = {"code": "video_generation_failed", "message": "The video could not be generated (simulated)."}
    return _encode({
        "id": job.id, "object": "video", "created_at": job.created_at, "status": state, "model": job.model,
        "progress": 100 if status in ("succeeded", "failed") else 0, "seconds": job.seconds, "size": job.size,
        "prompt": job.prompt, "completed_at": completed_at, "expires_at": None,
        "error": error if status == "failed" else None, "remixed_from_video_id": None,
    })
