"""The ASGI application: routes, error handling, and the gateway's lifespan."""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from runapi.config import Settings
from runapi.errors import GatewayError
from runapi.http import (
    account_api,
    admin_api,
    feedback_api,
    limits_api,
    media_api,
    models_api,
    responses_api,
    tasks_api,
    usage_api,
    videos_api,
)
from runapi.http.access_log import AccessLog
from runapi.http.chat import ChatCompletionsEndpoint
from runapi.http.completions import CompletionsEndpoint
from runapi.http.embeddings import EmbeddingsEndpoint
from runapi.http.errors import handle_error
from runapi.http.images import ImagesEndpoint
from runapi.http.messages import CountTokensEndpoint, MessagesEndpoint
from runapi.http.metrics_api import metrics
from runapi.http.openapi import openapi_json
from runapi.http.probes import answers_probe, probe
from runapi.http.responses import json_response
from runapi.limits import Clock
from runapi.runtime import Gateway
from runapi.web import skill_routes, web_routes


async def health(request: Request) -> Response:
    return json_response({"status": "ok"})


class GatewayApp(Starlette):
    """Starlette, with the hot endpoints (raw ASGI, POST only) dispatched before its router and
    middleware: they handle their own errors, and skipping the stack saves per-request CPU.
    Every HTTP request gets its access line (`AccessLog`) when the access logger is enabled."""

    def __init__(self, *, hot: Mapping[str, ASGIApp], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._hot = hot
        self._access_log = AccessLog()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._access_log.enabled():
            await self._access_log.run(self._dispatch, scope, receive, send)
        else:
            await self._dispatch(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = self._hot.get(scope["path"])
            if endpoint is not None:
                scope["app"] = self
                await endpoint(scope, receive, send)
                return
        elif scope["type"] == "http" and answers_probe(scope["method"], scope["path"]):
            await probe(scope, receive, send)  # HEAD / and Claude Code's /api/hello: 200, not a redirect or 404
            return
        await super().__call__(scope, receive, send)


GC_THRESHOLD0 = 20_000  # net container allocations between gen-0 collections in `runapi serve` (default 700)


def create_app(settings: Settings, *, clock: Clock = time.time,
               health_clock: Callable[[], float] = time.monotonic, freeze_gc: bool = False) -> Starlette:
    """The gateway as an ASGI app. The gateway starts (schema check, pools) in the lifespan.
    `clock` (wall-clock seconds) drives the rate limiter, `health_clock` (monotonic seconds) the model
    health windows and circuit breakers; tests pass ones they control. `freeze_gc` (for a process that
    is only the gateway, as `runapi serve`'s) moves what start-up made out of the collector's sight."""
    gateway = Gateway(settings, clock=clock, health_clock=health_clock)  # the composition root (`runtime.py`)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            if freeze_gc:
                # What start-up made (modules, catalog, pools) lives as long as the process: out of the
                # collector's sight, a full collection no longer walks it while requests wait (50-75 ms
                # pauses, the p99 of a busy gateway, before this).
                gc.freeze()
                # A gen-0 collection every 700 net allocations ran on the transient peaks of the requests in
                # flight (c=16: ~70 a second, 11 µs of CPU per request, and the p99's pauses); the
                # requests' objects die by reference counting, so 20,000 still bounds cyclic garbage
                # (bench/RESULTS.md, "Tail latency"; `runapi_gc_pause_seconds` shows them).
                gc.set_threshold(GC_THRESHOLD0, *gc.get_threshold()[1:])
            yield
        finally:
            await gateway.stop()

    hot: dict[str, ASGIApp] = {
        "/v1/chat/completions": ChatCompletionsEndpoint(gateway), "/v1/messages": MessagesEndpoint(gateway),
        "/v1/responses": responses_api.ResponsesEndpoint(gateway), "/v1/completions": CompletionsEndpoint(gateway),
        "/v1/embeddings": EmbeddingsEndpoint(gateway), "/v1/images/generations": ImagesEndpoint(gateway)}
    routes = [
        *(Route(path, endpoint, methods=["POST"]) for path, endpoint in hot.items()),  # for 405s and the docs
        Route("/v1/messages/count_tokens", CountTokensEndpoint(gateway), methods=["POST"]),
        Route("/v1/models", models_api.list_models, methods=["GET"]),
        *skill_routes,  # before /v1/models/{model_id:path}, which would swallow /v1/models/{id}/skill
        Route("/v1/models/{model_id:path}", models_api.get_model, methods=["GET"]),
        Route("/v1/generations/{generation_id}", account_api.get_generation, methods=["GET"]),
        *feedback_api.routes,
        *responses_api.routes,
        Route("/v1/usage", usage_api.get_usage, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        *admin_api.routes,
        *tasks_api.routes,
        *media_api.routes,
        *videos_api.routes,
        *limits_api.routes,
        *usage_api.routes,
        *web_routes(settings),
    ]
    app = GatewayApp(hot=hot, routes=routes, lifespan=lifespan,
                    exception_handlers={GatewayError: handle_error, HTTPException: handle_error, Exception: handle_error})
    app.state.gateway = gateway
    app.state.tasks = gateway.tasks
    app.state.media = gateway.media
    return app


def create_app_from_env() -> Starlette:
    """App factory for `uvicorn --factory` and `runapi serve --workers N`: settings from the environment,
    in a process of its own (the collector does not walk what start-up made)."""
    from runapi.config import load_settings

    return create_app(load_settings(), freeze_gc=True)
