"""The ASGI application: routes, error handling, and the gateway's lifespan."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from runapi.config import Settings
from runapi.errors import GatewayError
from runapi.http import account_api, admin_api, models_api
from runapi.http.chat import ChatCompletionsEndpoint
from runapi.http.errors import handle_error
from runapi.http.responses import json_response
from runapi.pipeline.gateway import Gateway


async def health(request: Request) -> Response:
    return json_response({"status": "ok"})


async def metrics(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    return Response(gw.metrics.render(), media_type="text/plain; version=0.0.4")


def create_app(settings: Settings) -> Starlette:
    """The gateway as an ASGI app. The gateway starts (schema check, pools) in the lifespan."""
    gateway = Gateway(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    routes = [
        Route("/v1/chat/completions", ChatCompletionsEndpoint(gateway), methods=["POST"]),
        Route("/v1/models", models_api.list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", models_api.get_model, methods=["GET"]),
        Route("/v1/generations/{generation_id}", account_api.get_generation, methods=["GET"]),
        Route("/v1/usage", account_api.get_usage, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        *admin_api.routes,
    ]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={GatewayError: handle_error, HTTPException: handle_error, Exception: handle_error})
    app.state.gateway = gateway
    return app


def create_app_from_env() -> Starlette:
    """App factory for `uvicorn --factory` and `runapi serve --workers N`: settings from the environment."""
    from runapi.config import load_settings

    return create_app(load_settings())
