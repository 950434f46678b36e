"""`/docs`: the API reference, Swagger UI on `/openapi.json`, served from the pinned
`swagger-ui-bundle-v2` package (no CDN: it works offline and under the pages' CSP)."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

from runapi.errors import NotFound
from runapi.web.rendering import SECURITY_HEADERS, render_page

SWAGGER_UI_FILES = {"swagger-ui.css": "text/css", "swagger-ui-bundle.js": "text/javascript"}
"""The only files of the bundle that are served (not its demo index page, nor its source maps)."""


async def api_reference(request: Request) -> Response:
    return render_page(request, "api_docs.html", {})


async def swagger_ui_asset(request: Request) -> Response:
    name = request.path_params["name"]
    media_type = SWAGGER_UI_FILES.get(name)
    if media_type is None:
        raise NotFound(f"No file {name!r} here.")
    response = FileResponse(Path(str(swagger_ui_path)) / name, media_type=media_type)
    response.headers["x-content-type-options"] = SECURITY_HEADERS["x-content-type-options"]
    response.headers["cache-control"] = "public, max-age=86400"
    return response
