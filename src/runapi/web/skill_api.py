"""`GET /v1/models/{id}/skill`: the model family's SKILL.md, for agents and `runapi skill install`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from runapi.errors import NotFound
from runapi.runtime import Gateway
from runapi.web.features import gateway_features
from runapi.web.rendering import public_base_url
from runapi.web.skills import render_skill


async def get_skill(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    model_id = request.path_params["model_id"]
    entry = gw.catalog.resolve(model_id)
    if entry is None:
        raise NotFound(f"The model `{model_id}` does not exist.", param="model", code="model_not_found")
    skill = render_skill(gw.catalog, entry, public_base_url(request), gateway_features(request.app))
    return Response(skill.text, media_type="text/markdown; charset=utf-8",
                    headers={"content-disposition": 'inline; filename="SKILL.md"', "x-skill-name": skill.name,
                             "x-content-type-options": "nosniff"})
