"""The web routes: catalog pages, dashboards, shipped assets, and the skill API route.

`skill_routes` must be placed before `/v1/models/{model_id:path}`, which would swallow
`/v1/models/{id}/skill`; `web_routes(settings)` can go anywhere.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from runapi.config import Settings
from runapi.errors import GatewayError
from runapi.web.admin_dashboard import AdminDashboard
from runapi.web.api_docs import api_reference, swagger_ui_asset
from runapi.web.catalog_pages import model_page, models_index
from runapi.web.dashboard import CustomerDashboard
from runapi.web.pricing_page import pricing_page
from runapi.web.rendering import ASSETS_PATH, SECURITY_HEADERS, render_page, see_other
from runapi.web.sessions import SessionCodec, session_secret
from runapi.web.skill_api import get_skill

Endpoint = Callable[[Request], Awaitable[Response]]
STATIC_DIR = Path(__file__).parent / "static"


def html_errors(endpoint: Endpoint) -> Endpoint:
    """Render a refused page request (bad CSRF token, bad form, unknown ID) as HTML, not JSON."""

    @functools.wraps(endpoint)
    async def wrapped(request: Request) -> Response:
        try:
            return await endpoint(request)
        except GatewayError as exc:
            return render_page(request, "error.html", {"status": exc.status, "message": exc.message, "code": exc.code},
                               status_code=exc.status, private=True)

    return wrapped


class StaticAssets:
    """The shipped CSS, JS and icons, with `nosniff` and a day of caching."""

    def __init__(self) -> None:
        self._files = StaticFiles(directory=STATIC_DIR)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []),
                                      (b"x-content-type-options", SECURITY_HEADERS["x-content-type-options"].encode()),
                                      (b"cache-control", b"public, max-age=86400")]
            await send(message)

        await self._files(scope, receive, send_with_headers)


async def home(request: Request) -> Response:
    return see_other("/models")


def web_routes(settings: Settings, env: Mapping[str, str] | None = None) -> list[BaseRoute]:
    """Pages and assets. The session secret is fixed here, at start-up (see `session_secret`)."""
    secret = session_secret(os.environ if env is None else env, settings.admin_token)
    customer = CustomerDashboard(SessionCodec(secret, "customer-dashboard"))
    admin = AdminDashboard(SessionCodec(secret, "admin-dashboard"), settings.admin_token)
    return [
        Route("/", home, methods=["GET"]),
        Route("/models", models_index, methods=["GET"]),
        Route("/models/{model_id:path}", model_page, methods=["GET"]),
        Route("/pricing", pricing_page, methods=["GET"]),
        Route("/docs", api_reference, methods=["GET"]),
        Route("/docs/assets/{name}", swagger_ui_asset, methods=["GET"]),
        Route("/dashboard", html_errors(customer.index), methods=["GET"]),
        Route("/dashboard/login", html_errors(customer.login_form), methods=["GET"]),
        Route("/dashboard/login", html_errors(customer.login), methods=["POST"]),
        Route("/dashboard/logout", html_errors(customer.logout), methods=["POST"]),
        Route("/dashboard/keys", html_errors(customer.create_key), methods=["POST"]),
        Route("/dashboard/keys/{key_id}/revoke", html_errors(customer.revoke_key), methods=["POST"]),
        Route("/dashboard/generations/{generation_id}/feedback", html_errors(customer.report_generation),
              methods=["POST"]),
        Route("/admin/dashboard", html_errors(admin.index), methods=["GET"]),
        Route("/admin/dashboard/login", html_errors(admin.login_form), methods=["GET"]),
        Route("/admin/dashboard/login", html_errors(admin.login), methods=["POST"]),
        Route("/admin/dashboard/logout", html_errors(admin.logout), methods=["POST"]),
        Route("/admin/dashboard/topup", html_errors(admin.topup), methods=["POST"]),
        Mount(ASSETS_PATH, app=StaticAssets(), name="assets"),
    ]


skill_routes: list[BaseRoute] = [Route("/v1/models/{model_id:path}/skill", get_skill, methods=["GET"])]
