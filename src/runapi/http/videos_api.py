"""OpenAI's video API over video tasks: `POST /v1/videos` (JSON or the openai SDK's multipart form),
`GET /v1/videos[/{id}]`, `GET /v1/videos/{id}/content[?variant=thumbnail]` and `DELETE /v1/videos/{id}`.

A video is a task (`endpoint` "videos"): the same ID works at `/v1/tasks/{id}` (and its `/cancel`),
and a task created at `POST /v1/tasks` with `endpoint: "/v1/videos"` is a video here. Only the
owning account sees its videos (404 for any other).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from runapi.errors import NotFound
from runapi.http.account_api import principal_of
from runapi.http.asgi import bounded_body
from runapi.http.media_api import stored_media_response
from runapi.http.responses import json_response
from runapi.media.runtime import MediaRuntime
from runapi.pipeline import Principal
from runapi.public_url import public_root
from runapi.query import choice_param, int_param, text_param
from runapi.tasks import (
    NewVideo,
    Task,
    TaskRuntime,
    decode_video_body,
    idempotency_key,
    video_object,
)

__all__ = ["routes"]


def _runtime(request: Request) -> TaskRuntime:
    runtime: TaskRuntime = request.app.state.tasks
    return runtime


async def _video(request: Request, runtime: TaskRuntime, principal: Principal) -> Task:
    video_id = request.path_params["video_id"]
    task = await runtime.store.get(video_id, principal.account_id)
    if not task.is_video:
        raise NotFound(f"No video {video_id!r}.", param="video_id", code="video_not_found")
    return task


async def _video_json(runtime: TaskRuntime, task: Task) -> Response:
    return json_response(video_object(task, await runtime.video_output(task)))


async def create_video(request: Request) -> Response:
    runtime = _runtime(request)
    principal = await principal_of(request)
    body = await bounded_body(request, runtime.gw.settings.server.max_body_bytes)
    fields = decode_video_body(request.headers.get("content-type", ""), body)
    key = idempotency_key({k.encode("latin-1"): v.encode("latin-1") for k, v in request.headers.items()})
    origin = public_root(runtime.gw.settings.server, request.scope)
    task, replayed = await runtime.submit_video(principal, NewVideo(fields=fields, origin=origin), key)
    response = await _video_json(runtime, task)
    if replayed:
        response.headers["idempotent-replayed"] = "true"
    return response


async def list_videos(request: Request) -> Response:
    runtime = _runtime(request)
    principal = await principal_of(request)
    params = request.query_params
    limit = int_param(params, "limit", 20, 1, 100)
    choice_param(params, "order", ("desc",))  # newest first; "asc" is not offered
    rows = await runtime.store.list(principal.account_id, limit=limit + 1, after=text_param(params, "after"),
                                    endpoint="videos")
    data = [video_object(task, await runtime.video_output(task)) for task in rows[:limit]]
    return json_response({"object": "list", "data": data, "has_more": len(rows) > limit,
                          "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None})


async def get_video(request: Request) -> Response:
    runtime = _runtime(request)
    return await _video_json(runtime, await _video(request, runtime, await principal_of(request)))


async def get_video_content(request: Request) -> Response:
    """The video (or its thumbnail) from the media store, with byte ranges; 404 until it is completed."""
    runtime = _runtime(request)
    principal = await principal_of(request)
    variant = choice_param(request.query_params, "variant", ("video", "thumbnail")) or "video"
    task = await _video(request, runtime, principal)
    output = await runtime.video_output(task)
    if output is None:
        state = "was deleted or has expired" if task.status == "succeeded" else f"is {video_object(task)['status']}"
        raise NotFound(f"Video {task.id} has no content: it {state}.", param="video_id", code="video_not_ready")
    key = output.video_key if variant == "video" else output.thumbnail_key
    if key is None:
        raise NotFound(f"Video {task.id} has no thumbnail (the provider's could not be kept).", param="variant")
    media: MediaRuntime = request.app.state.media
    return await stored_media_response(request, media, key, output.expires_at,
                                       f"The content of video {task.id} is no longer kept.")


async def delete_video(request: Request) -> Response:
    """Cancel a video still in progress (free), or delete a finished one's stored files."""
    runtime = _runtime(request)
    principal = await principal_of(request)
    task = await _video(request, runtime, principal)
    if not task.terminal:
        await runtime.cancel(principal, task.id)
    else:
        output = await runtime.video_output(task)
        if output is not None:
            media: MediaRuntime = request.app.state.media
            for key in (output.video_key, output.thumbnail_key):
                if key is not None:
                    await media.store.delete(key)
            await runtime.store.delete_output(task.id)
    return json_response({"id": task.id, "object": "video.deleted", "deleted": True})


routes = [
    Route("/v1/videos", create_video, methods=["POST"]),
    Route("/v1/videos", list_videos, methods=["GET"]),
    Route("/v1/videos/{video_id}", get_video, methods=["GET"]),
    Route("/v1/videos/{video_id}", delete_video, methods=["DELETE"]),
    Route("/v1/videos/{video_id}/content", get_video_content, methods=["GET"]),
]
