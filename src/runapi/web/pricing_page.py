"""`/pricing`: every model's prices in its unit and the usage tiers, from the data the gateway enforces
(the running catalog and tier table, the config file's overrides included)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from runapi.runtime import Gateway
from runapi.web.catalog_pages import model_card
from runapi.web.rendering import render_page


async def pricing_page(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    return render_page(request, "pricing.html", {
        "cards": [model_card(gw, entry) for entry in gw.catalog.models.values()],
        "tiers": gw.limits.tiers.tiers,
    })
