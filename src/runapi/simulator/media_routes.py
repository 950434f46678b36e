"""The simulator's media routes: embeddings, images and video jobs in OpenAI's and Z.ai's shapes.

OpenAI paths sit under `/v1`, Z.ai's under `/api/paas/v4` (its real base URL is
`https://api.z.ai/api/paas/v4`, so a deployment's base URL keeps the same suffix). Generated files
are served at `GET /_sim/media/{name}?expires=...` until `media_url_ttl_s` has passed, then 403,
as a provider's expiring URL does. `MediaRoutes` answers with a `SimResponse` value; the ASGI app
writes it. Errors use each provider's body: OpenAI's `{"error": {message, type, param, code}}`,
Z.ai's `{"error": {code, message}}` with its business codes
(https://docs.z.ai/api-reference/api-code: 1214 invalid parameter, 1301 unsafe content,
1302 too many requests, 500 internal error).
"""

from __future__ import annotations

import base64
import importlib.resources
import secrets
import time
from collections import OrderedDict
from typing import Any, Literal

import msgspec

from .config import SimulatorConfig
from .embeddings import Shape, embeddings_body, parse_embeddings
from .images import images_body, parse_images
from .png import render_png
from .tokens import count_words
from .videos import (
    JobBoard,
    VideoJob,
    openai_video_body,
    parse_video,
    zai_result_body,
    zai_submit_body,
)

__all__ = ["MEDIA_POST_PATHS", "SAMPLE_MP4", "ZAI_PREFIX", "MediaRoutes", "SimResponse", "is_media_get",
           "media_error", "shape_of"]

_encode = msgspec.json.Encoder().encode
ZAI_PREFIX = "/api/paas/v4"
MEDIA_POST_PATHS = frozenset({
    "/v1/embeddings", "/v1/images/generations", "/v1/videos",
    f"{ZAI_PREFIX}/embeddings", f"{ZAI_PREFIX}/images/generations", f"{ZAI_PREFIX}/videos/generations",
})
"""Media paths answered to `POST` (JSON bodies; `/v1/videos` takes a multipart form too)."""
_GET_PREFIXES = ("/v1/videos/", f"{ZAI_PREFIX}/async-result/", "/_sim/media/")
SAMPLE_MP4 = importlib.resources.files("runapi.simulator").joinpath("fixtures/sample.mp4").read_bytes()
"""The video every job produces: 1 s of H.264, 160x90 (see fixtures/README.md)."""
_COVER_SIZE = (160, 90)
_MAX_FILES = 512
_ZAI_CODES = {400: "1214", 404: "1222", 405: "1222", 429: "1302", 500: "500"}
_OPENAI_TYPES = {400: "invalid_request_error", 404: "invalid_request_error", 405: "invalid_request_error",
                 429: "requests", 500: "server_error"}
_FAULT_MESSAGES = {429: "Rate limit reached (simulated).", 500: "The server had an error (simulated)."}


class SimResponse(msgspec.Struct, frozen=True):
    """A whole simulator answer: status, body and headers (content type included)."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


def shape_of(path: str) -> Shape:
    """Which provider's wire shape a path speaks."""
    return "zai" if path.startswith(ZAI_PREFIX) else "openai"


def is_media_get(path: str) -> bool:
    """Whether `GET path` is one of the media routes (video status and content, generated files)."""
    return path.startswith(_GET_PREFIXES)


def media_error(shape: Shape, status: int, message: str, code: str | None = None) -> SimResponse:
    """An error answer in the provider's body shape (`code` overrides the default one)."""
    body: dict[str, Any]
    if shape == "zai":
        body = {"error": {"code": code or _ZAI_CODES.get(status, "500"), "message": message}}
    else:
        body = {"error": {"message": message, "type": _OPENAI_TYPES.get(status, "server_error"), "param": None,
                          "code": code}}
    headers = (("retry-after", "1"),) if status == 429 else ()
    return SimResponse(status, _encode(body), headers=headers)


class _File(msgspec.Struct, frozen=True):
    content_type: str
    data: bytes
    expires_at: float  # time.monotonic()


class MediaRoutes:
    """Media endpoints of one simulator instance (a development tool): its jobs and files."""

    def __init__(self) -> None:
        self._jobs = JobBoard()
        self._files: OrderedDict[str, _File] = OrderedDict()

    def post(self, path: str, raw: dict[str, Any], config: SimulatorConfig, fault: str, base_url: str) -> SimResponse:
        """Answer a media `POST` whose decoded body is `raw`, bent by `fault` ("" for none).

        `base_url` (scheme and host the client used) prefixes the file URLs it hands out.
        """
        shape = shape_of(path)
        if fault in ("429", "500"):
            status: Literal[429, 500] = 429 if fault == "429" else 500
            return media_error(shape, status, _FAULT_MESSAGES[status])
        try:
            if path.endswith("/embeddings"):
                return SimResponse(200, embeddings_body(parse_embeddings(raw, shape), shape))
            if path.endswith("/images/generations"):
                return self._images(raw, shape, config, fault, base_url)
            return self._submit_video(raw, shape, config, fault)
        except ValueError as exc:
            return media_error(shape, 400, str(exc))

    def get(self, path: str, query: dict[str, str], base_url: str) -> SimResponse:
        """Answer a media `GET` (`is_media_get(path)` holds)."""
        if path.startswith("/_sim/media/"):
            return self._file(path.removeprefix("/_sim/media/"))
        shape = shape_of(path)
        job_id = path.removeprefix(f"{ZAI_PREFIX}/async-result/").removeprefix("/v1/videos/").removesuffix("/content")
        job = self._jobs.get(job_id)
        if job is None or "/" in job_id:
            return media_error(shape, 404, f"No video task {job_id!r}")
        now = time.monotonic()
        status = job.status(now)
        if status != "processing" and job.completed_at is None:
            job.completed_at = int(time.time())
        if status == "succeeded" and not job.video_url:
            job.video_url = self._keep("video/mp4", SAMPLE_MP4, job.url_ttl, base_url, ".mp4")
            job.cover_url = self._keep("image/png", _cover(job), job.url_ttl, base_url, ".png")
        if shape == "zai":
            return SimResponse(200, zai_result_body(job, status))
        if not path.endswith("/content"):
            return SimResponse(200, openai_video_body(job, status, job.completed_at))
        if status != "succeeded":
            return media_error(shape, 404, f"Video {job_id} is not ready: its status is {status}")
        variant = query.get("variant", "video")
        if variant == "video":
            return SimResponse(200, SAMPLE_MP4, "video/mp4")
        if variant == "thumbnail":
            return SimResponse(200, _cover(job), "image/png")
        return media_error(shape, 400, "variant: expected 'video' or 'thumbnail'")

    def _images(self, raw: dict[str, Any], shape: Shape, config: SimulatorConfig, fault: str,
                base_url: str) -> SimResponse:
        call = parse_images(raw, shape)
        if fault == "filtered":
            message = "Your request was rejected by the safety system (simulated)."
            return media_error(shape, 400, message, "1301" if shape == "zai" else "content_policy_violation")
        items: list[dict[str, str]] = []
        for index in range(call.n):
            png = render_png(f"{call.prompt}#{index}", call.width, call.height)
            broken = fault == "partial" and index == call.n - 1  # the last image cannot be delivered
            if call.response_format == "b64_json":
                items.append({"b64_json": "not base64!" if broken else base64.b64encode(png).decode()})
            else:
                ttl = 0.0 if broken else config.media_url_ttl_s  # expired at once: its GET answers 403
                items.append({"url": self._keep("image/png", png, ttl, base_url, ".png")})
        body = images_body(call, shape, int(time.time()), items, count_words(call.prompt))
        return SimResponse(200, body)

    def _submit_video(self, raw: dict[str, Any], shape: Shape, config: SimulatorConfig, fault: str) -> SimResponse:
        fields = parse_video(raw, shape)
        finish_at = None if fault == "stall" else time.monotonic() + config.video_delay_ms / 1000
        job = self._jobs.add(shape, fields, int(time.time()), finish_at, fault == "fail", config.media_url_ttl_s)
        if shape == "zai":
            return SimResponse(200, zai_submit_body(job))
        return SimResponse(200, openai_video_body(job, "queued", None))

    def _keep(self, content_type: str, data: bytes, ttl: float, base_url: str, suffix: str) -> str:
        """Store a generated file and return its expiring URL."""
        name = secrets.token_hex(12) + suffix
        self._files[name] = _File(content_type, data, time.monotonic() + ttl)
        while len(self._files) > _MAX_FILES:
            self._files.popitem(last=False)
        return f"{base_url}/_sim/media/{name}?expires={int(time.time() + ttl)}"

    def _file(self, name: str) -> SimResponse:
        kept = self._files.get(name)
        if kept is None:
            return SimResponse(404, b"NoSuchKey: the file does not exist (simulated)", "text/plain")
        if time.monotonic() >= kept.expires_at:
            return SimResponse(403, b"AccessDenied: the signed URL has expired (simulated)", "text/plain")
        return SimResponse(200, kept.data, kept.content_type)


def _cover(job: VideoJob) -> bytes:
    return render_png(f"cover:{job.prompt}", *_COVER_SIZE)
