"""Which optional endpoints this gateway serves, read from the app's routes (pages mention only those)."""

from __future__ import annotations

from starlette.applications import Starlette

from runapi.web.skills import Features


def gateway_features(app: Starlette) -> Features:
    paths = {getattr(route, "path", "") for route in app.routes}
    return Features(tasks=any(p.startswith("/v1/tasks") for p in paths),
                    messages=any(p.startswith("/v1/messages") for p in paths))
