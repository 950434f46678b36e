"""`GET /v1/models` and `GET /v1/models/{id}`: OpenAI's list shape, extended with catalog facts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from runapi.catalog import ModelEntry, pricing_json
from runapi.errors import NotFound
from runapi.http.responses import json_response
from runapi.runtime import Gateway


def _created(entry: ModelEntry) -> int:
    try:
        return int(datetime.fromisoformat(entry.released).replace(tzinfo=UTC).timestamp())
    except ValueError:
        return 0


def model_json(gw: Gateway, entry: ModelEntry) -> dict[str, Any]:
    provider = gw.catalog.providers.get(entry.provider)
    status, health, deployments = gw.model_health(entry)
    return {
        "id": entry.id,
        "object": "model",
        "created": _created(entry),
        "owned_by": provider.name if provider and provider.name else entry.provider,
        "name": entry.name,
        "family": entry.family,
        "variant": entry.variant,
        "provider": provider.name if provider and provider.name else entry.provider,
        "mode": entry.mode,
        "task_type": entry.task_type,
        "endpoint": entry.endpoint,
        "protocol": entry.protocol,
        "context_length": entry.context_length,
        "max_output": entry.max_output,
        "billing_unit": entry.billing_unit,
        "license": entry.license,
        "aliases": entry.aliases,
        "unit": entry.unit,
        "pricing": pricing_json(entry),
        "input_schema": entry.input_schema(),
        "status": status,
        "health": {"success_rate": health.success_rate, "samples": health.samples,
                   "p50_latency_ms": health.p50_latency_ms, "p50_ttft_ms": health.p50_ttft_ms,
                   "deployments": [msgspec.structs.asdict(d) for d in deployments]},
    }


async def list_models(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    return json_response({"object": "list", "data": [model_json(gw, e) for e in gw.catalog.models.values()]})


async def get_model(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    entry = gw.model(request.path_params["model_id"])
    if entry is None:
        raise NotFound(f"The model `{request.path_params['model_id']}` does not exist.", param="model",
                       code="model_not_found")
    return json_response(model_json(gw, entry))
