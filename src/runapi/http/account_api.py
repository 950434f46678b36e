"""The caller's own data: `GET /v1/generations/{id}` (usage reports live in `usage_api`)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from runapi.http.asgi import bearer_token, client_address
from runapi.http.responses import json_response
from runapi.money import nanos_to_usd
from runapi.pipeline import Principal
from runapi.protocols.responses import RESPONSE_PREFIX, generation_of
from runapi.runtime import Gateway
from runapi.services import Generation


async def principal_of(request: Request) -> Principal:
    gw: Gateway = request.app.state.gateway
    headers = {k.encode("latin-1"): v.encode("latin-1") for k, v in request.headers.items()}
    return await gw.auth.authenticate(bearer_token(headers), client_address(request.scope))


def generation_json(row: Generation) -> dict[str, Any]:
    return {
        "id": row.id,
        "object": "generation",
        "model": row.model,
        "provider": row.provider,
        "upstream_model": row.upstream_model,
        "status": row.status,
        "stream": row.stream,
        "created": int(row.created_at.timestamp()),
        "usage": {
            "prompt_tokens": row.input_tokens + row.cache_read_tokens + row.cache_write_tokens,
            "completion_tokens": row.output_tokens,
            "input_tokens": row.input_tokens,
            "output_tokens": row.output_tokens,
            "cache_read_tokens": row.cache_read_tokens,
            "cache_write_tokens": row.cache_write_tokens,
            "reasoning_tokens": row.reasoning_tokens,
        },
        "pricing": {"input": row.price_input, "output": row.price_output, "cache_read": row.price_cache_read,
                    "cache_write": row.price_cache_write, "unit": "USD per 1M tokens"},
        "unit": row.unit,  # tokens, or image / video / second: media calls bill `units` at `price_unit` USD each
        "units": row.units,
        "price_unit": row.price_unit,
        "cost": nanos_to_usd(row.cost_nanos),
        "estimated": row.estimated,
        "latency_ms": row.latency_ms,
        "ttft_ms": row.ttft_ms,
        "overhead_ms": row.overhead_ms,
        "error": row.error,
        "client_request_id": row.client_request_id,
    }


async def get_generation(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    principal = await principal_of(request)
    generation_id = request.path_params["generation_id"]
    if generation_id.startswith(RESPONSE_PREFIX):  # a Responses API response: its ID is its generation's
        generation_id = generation_of(generation_id)
    row = await gw.usage.generation(generation_id, account_id=principal.account_id)
    return json_response(generation_json(row))
