"""The one place errors become HTTP: OpenAI-shaped JSON with the right status and headers."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Scope

from runapi.errors import (
    GatewayError,
    NotFound,
    RateLimited,
    ServiceUnavailable,
    UpstreamUnavailable,
)
from runapi.outage import store_outage

log = logging.getLogger("runapi.http")
_encode = msgspec.json.encode

_HTTP_TYPES = {404: "not_found_error", 405: "invalid_request_error", 413: "invalid_request_error"}


def error_parts(exc: BaseException) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """(status, extra headers, JSON body) for any exception; internals are never leaked."""
    headers: list[tuple[bytes, bytes]] = []
    exc = store_outage(exc) or exc  # a lost database or Redis connection: 503, not 500
    if isinstance(exc, GatewayError):
        retry_after = getattr(exc, "retry_after", None)
        if isinstance(exc, (RateLimited, UpstreamUnavailable, ServiceUnavailable)) and retry_after:
            headers.append((b"retry-after", str(max(1, math.ceil(retry_after))).encode()))
        if isinstance(exc, RateLimited):
            headers += [(name.encode(), value.encode()) for name, value in exc.headers.items()]
        return exc.status, headers, _encode(exc.to_dict())
    if isinstance(exc, HTTPException):
        headers += [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in (exc.headers or {}).items()]
        body = {"error": {"message": exc.detail, "type": _HTTP_TYPES.get(exc.status_code, "invalid_request_error"),
                          "param": None, "code": None}}
        return exc.status_code, headers, _encode(body)
    log.exception("unhandled error", exc_info=exc)
    body = {"error": {"message": "The gateway failed unexpectedly; the failure was logged.",
                      "type": "server_error", "param": None, "code": None}}
    return 500, headers, _encode(body)


def error_response(exc: BaseException) -> Response:
    status, headers, body = error_parts(exc)
    response = Response(body, status_code=status, media_type="application/json")
    for name, value in headers:
        response.headers[name.decode()] = value.decode()
    return response


def allowed_methods(routes: Iterable[BaseRoute], scope: Scope) -> str:
    """Every method some route serves at the request's path, for a 405's `Allow` (Starlette names only
    the first route that matched the path, though several routes may serve it, e.g. GET and POST)."""
    methods: set[str] = set()
    for route in routes:
        if isinstance(route, Route) and route.methods and route.matches(scope)[0] != Match.NONE:
            methods |= route.methods
    return ", ".join(sorted(methods))


def api_endpoints(routes: Iterable[BaseRoute], prefix: str = "/v1/") -> list[str]:
    """`METHOD /path` of every route under `prefix`, in routing order (path converters dropped)."""
    endpoints: list[str] = []
    for route in routes:
        if isinstance(route, Route) and route.path.startswith(prefix):
            path = _CONVERTER.sub("}", route.path)
            endpoints += [f"{method} {path}" for method in sorted(route.methods or ()) if method != "HEAD"]
    return list(dict.fromkeys(endpoints))


_CONVERTER = re.compile(r":[a-z]+}")


def unknown_endpoint(method: str, path: str, routes: Iterable[BaseRoute]) -> NotFound:
    """OpenAI's 404 for a URL it does not serve (`unknown_url`), listing the endpoints that exist."""
    error = NotFound(f"Invalid URL ({method} {path}): there is no such endpoint. The endpoints under /v1/ are: "
                     f"{', '.join(api_endpoints(routes))}. The API reference is at /docs.", code="unknown_url")
    error.type = "invalid_request_error"
    return error


async def handle_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, HTTPException) and exc.status_code == 405:
        allow = allowed_methods(request.app.routes, request.scope)
        if allow:
            exc = HTTPException(405, exc.detail, headers={**(exc.headers or {}), "Allow": allow})
    elif (isinstance(exc, HTTPException) and exc.status_code == 404 and "endpoint" not in request.scope
          and (request.url.path + "/").startswith("/v1/")):  # no route matched (a route's own 404 has its endpoint)
        exc = unknown_endpoint(request.method, request.url.path, request.app.routes)
    return error_response(exc)
