"""Z.ai's asynchronous video wire format, as pure translation (the I/O is `OpenAICompatible`'s).

`POST /paas/v4/videos/generations` takes `{model, prompt, image_url, quality, with_audio, size, fps,
duration, request_id, user_id}` and answers `{model, id, request_id, task_status: "PROCESSING"}`;
`GET /paas/v4/async-result/{id}` answers `task_status` PROCESSING, SUCCESS (with
`video_result: [{url, cover_image_url}]`) or FAIL.
Sources: https://docs.z.ai/api-reference/video/generate-video and
https://docs.z.ai/api-reference/video/get-video-status.
"""

from __future__ import annotations

from typing import Any

import msgspec

from runapi.errors import UpstreamUnavailable
from runapi.providers.base import VideoJobState

__all__ = ["SUBMIT_PATH", "parse_job_state", "parse_submission", "result_path", "submit_body"]

SUBMIT_PATH = "/videos/generations"


class _Submitted(msgspec.Struct):
    id: str
    task_status: str = ""


class _VideoResult(msgspec.Struct):
    url: str = ""
    cover_image_url: str = ""


class _JobResult(msgspec.Struct):
    task_status: str
    video_result: list[_VideoResult] = []
    error: dict[str, Any] | None = None


def result_path(job_id: str) -> str:
    return "/async-result/" + job_id


def submit_body(request: dict[str, Any], upstream_model: str, request_id: str) -> dict[str, Any]:
    """The submission body: the request with the upstream model and our request ID (for reconciliation)."""
    return {**request, "model": upstream_model, "request_id": request_id}


def parse_submission(raw: bytes) -> str:
    """The job ID of a submission answer; `UpstreamUnavailable` if it has none."""
    try:
        submitted = msgspec.json.decode(raw, type=_Submitted)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise UpstreamUnavailable("the upstream sent a malformed video submission answer") from exc
    if not submitted.id or submitted.task_status == "FAIL":
        raise UpstreamUnavailable("the upstream did not accept the video job")
    return submitted.id


def parse_job_state(raw: bytes) -> VideoJobState:
    """One `async-result` answer as a `VideoJobState`; `UpstreamUnavailable` if it is malformed."""
    try:
        result = msgspec.json.decode(raw, type=_JobResult)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise UpstreamUnavailable("the upstream sent a malformed video status") from exc
    if result.task_status == "SUCCESS":
        first = next((r for r in result.video_result if r.url), None)
        if first is None:
            return VideoJobState("failed", error="the provider reported success without a video URL")
        return VideoJobState("succeeded", video_url=first.url, cover_url=first.cover_image_url)
    if result.task_status == "FAIL":
        reason = (result.error or {}).get("message") if isinstance(result.error, dict) else None
        return VideoJobState("failed", error=str(reason or "the provider could not generate the video"))
    return VideoJobState("processing")
