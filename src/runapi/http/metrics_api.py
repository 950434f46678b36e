"""`GET /metrics` (Prometheus), for the operator's scraper only.

It was public through the shipped proxy (issue 20.9): model names, traffic, error rates and
spend are the operator's business. With `RUNAPI_METRICS_TOKEN` set, a scrape must send it as
`Authorization: Bearer` (401 otherwise); without one, only clients on the host itself (loopback)
may read it, and `deploy/nginx.conf` does not pass `/metrics` on at all.
"""

from __future__ import annotations

import hmac
import ipaddress

from starlette.requests import Request
from starlette.responses import Response

from runapi.errors import AuthError, PermissionDenied
from runapi.http.asgi import client_address
from runapi.runtime import Gateway


async def metrics(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    token = gw.settings.metrics_token
    if token:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise AuthError("Send the metrics token as `Authorization: Bearer <RUNAPI_METRICS_TOKEN>`.")
    elif not _loopback(client_address(request.scope)):
        raise PermissionDenied("Metrics are served to this host only; set RUNAPI_METRICS_TOKEN to scrape "
                               "from elsewhere.", code="metrics_restricted")
    return Response(gw.metrics.render(), media_type="text/plain; version=0.0.4")


def _loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False
