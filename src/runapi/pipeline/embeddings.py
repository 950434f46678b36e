"""`POST /v1/embeddings`: check the typed input, hold its worst case, call a deployment, charge exactly.

The call is billed per input token from the upstream's usage (`prompt_tokens`) at the model's input price;
an upstream that reports none is charged the documented estimate, marked estimated. The hold covers the
most the input can count as (`embeddings_format.input_token_bound`) on the model or any fallback. A
failed call is recorded and free. The answer is OpenAI's `list` of embeddings with the public model ID,
vectors in the `encoding_format` asked for, and `usage.cost` in USD.
"""

from __future__ import annotations

import binascii
import struct
from typing import Any

import msgspec

from runapi.catalog import check_request
from runapi.errors import UpstreamUnavailable
from runapi.money import Usage, cost_nanos, nanos_to_usd
from runapi.pipeline.auth import Principal
from runapi.pipeline.call_services import CallServices, known_model
from runapi.pipeline.chat import Completed, fail_call
from runapi.pipeline.embeddings_format import (
    input_token_bound,
    input_token_estimate,
    relay_vector,
)
from runapi.pipeline.failover import first_answer
from runapi.pipeline.metering import CallRecord
from runapi.pipeline.reservation import Reservation
from runapi.pipeline.routing import attempt_plan
from runapi.providers import Deployment, Embeddings, EmbeddingsReply

__all__ = ["create_embeddings"]

_encode = msgspec.json.Encoder(decimal_format="number").encode




async def _embed(gw: CallServices, deployment: Deployment, raw: dict[str, Any], encoding: str,
                 ) -> tuple[EmbeddingsReply, list[dict[str, Any]]]:
    """The deployment's answer and its `data` with vectors in `encoding`; a malformed answer is an
    upstream failure (the next deployment is tried; nothing is charged)."""
    provider = gw.provider_for(deployment)
    if not isinstance(provider, Embeddings):
        raise UpstreamUnavailable(f"{deployment.provider_name} ({deployment.provider.protocol} protocol) serves no "
                                  "embeddings")
    reply = await provider.embed(raw, deployment)
    try:
        data = [{"object": "embedding", "index": position if item.index is None else item.index,
                 "embedding": relay_vector(item.embedding, encoding)} for position, item in enumerate(reply.data)]
    except (TypeError, ValueError, struct.error, binascii.Error, msgspec.DecodeError) as exc:
        raise UpstreamUnavailable("the upstream sent a malformed embedding") from exc
    return reply, data


async def create_embeddings(gw: CallServices, principal: Principal, model: str, raw: dict[str, Any], *,
                            started: float, client_request_id: str | None = None,
                            generation_id: str | None = None) -> Completed:
    """One embeddings call, settled (durably) before it is returned."""
    entry = known_model(gw, model, "embedding")
    check_request(entry.input_schema(), raw)  # 400 naming the field, before any hold
    bound = input_token_bound(raw["input"])
    order = attempt_plan(entry, gw.fallbacks, gw.deployments, gw.rng)
    models = [entry, *(gw.catalog.models[d.model_id] for d in order)]
    max_cost = max(cost_nanos(Usage(input_tokens=bound), m.pricing) for m in models)
    record = CallRecord(account_id=principal.account_id, key_id=principal.key_id, entry=entry, stream=False,
                        started=started, client_request_id=client_request_id, prompt_bytes=0)
    if generation_id:  # fixed by the caller (an idempotent retry): never charged twice
        record.generation_id = generation_id
    reservation = await Reservation.open(gw.credit, gw.limits, principal, entry.id, prompt_tokens=bound,
                                         output_tokens=0, max_cost_nanos=max_cost)
    record.rate_limit = reservation.status
    if not order:
        reservation.release()
        raise UpstreamUnavailable(f"The model `{entry.id}` has no deployment configured.")
    encoding = raw.get("encoding_format") or "float"
    try:
        reply, data = await first_answer(gw, record, order, lambda d: _embed(gw, d, raw, encoding))
    except BaseException as exc:  # every deployment failed, or cancelled: nothing answered, nothing charged
        await fail_call(gw, record, reservation, exc)
        raise

    reported = reply.prompt_tokens
    estimated = reported is None or reported < 0
    usage = Usage(input_tokens=input_token_estimate(raw["input"]) if estimated else reported or 0)
    cost = nanos_to_usd(cost_nanos(usage, record.entry.pricing))
    body = {"object": "list", "data": data, "model": record.entry.id,
            "usage": {"prompt_tokens": usage.input_tokens, "total_tokens": usage.input_tokens, "cost": cost}}
    settlement = record.settlement("succeeded", usage, estimated=estimated, cap=reservation.cap_charge)
    await gw.settlements.submit(settlement, reservation)
    return Completed(_encode(body), record.generation_id, record.overhead_ms(), record.rate_limit)
