"""`POST /v1/images/generations`: check the typed input, hold the worst case, call a deployment, keep
each image in the media store, charge per image kept.

The hold is `n` × the most one image can cost (any size or quality) on the model or any fallback. The
charge is the images actually kept × the answering model's unit price at the request's size and
quality; an image the provider failed to deliver is free, and when none could be kept the call fails
and costs nothing. Every image is answered as the gateway's signed cached output URL (`GET
/v1/media/...`) or, when asked, as base64 of the stored copy.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import msgspec

from runapi.catalog import ModelEntry, check_request
from runapi.errors import UpstreamUnavailable
from runapi.media.results import KeptImages, keep_images
from runapi.media.runtime import MediaRuntime
from runapi.money import UnitPricing, nanos_to_usd, usd_to_nanos
from runapi.pipeline.auth import Principal
from runapi.pipeline.call_services import CallServices, known_model
from runapi.pipeline.chat import Completed, fail_call
from runapi.pipeline.failover import first_answer
from runapi.pipeline.metering import CallRecord
from runapi.pipeline.reservation import Reservation
from runapi.pipeline.routing import attempt_plan
from runapi.providers import Deployment, Images

__all__ = ["create_images"]

_encode = msgspec.json.Encoder(decimal_format="number").encode




def _pricing(entry: ModelEntry) -> UnitPricing:
    if entry.unit_pricing is None:  # the catalog refuses an image model without unit prices
        raise UpstreamUnavailable(f"The model `{entry.id}` has no unit price.")
    return entry.unit_pricing


async def _generate(gw: CallServices, media: MediaRuntime, deployment: Deployment, raw: dict[str, Any],
                    response_format: Literal["url", "b64_json"], base_url: str) -> KeptImages:
    """The deployment's images, kept in the store; none kept is an upstream failure (next deployment)."""
    provider = gw.provider_for(deployment)
    if not isinstance(provider, Images):
        raise UpstreamUnavailable(f"{deployment.provider_name} ({deployment.provider.protocol} protocol) serves no "
                                  "images")
    items = await provider.generate_images(raw, deployment)
    return await keep_images(items, response_format, media.store, media.downloader,
                             lambda stored: media.url(base_url, stored))


async def create_images(gw: CallServices, media: MediaRuntime, principal: Principal, model: str, raw: dict[str, Any], *,
                        base_url: str, started: float, client_request_id: str | None = None,
                        generation_id: str | None = None) -> Completed:
    """One images call, settled (durably) before it is returned."""
    entry = known_model(gw, model, "image")
    check_request(entry.input_schema(), raw)  # 400 naming the field, before any hold
    n = int(raw.get("n") or 1)
    size, quality = str(raw.get("size") or ""), str(raw.get("quality") or "")
    response_format: Literal["url", "b64_json"] = "b64_json" if raw.get("response_format") == "b64_json" else "url"
    order = attempt_plan(entry, gw.fallbacks, gw.deployments, gw.rng)
    models = [entry, *(gw.catalog.models[d.model_id] for d in order)]
    max_cost = max(usd_to_nanos(_pricing(m).max_price() * n) for m in models)
    record = CallRecord(account_id=principal.account_id, key_id=principal.key_id, entry=entry, stream=False,
                        started=started, client_request_id=client_request_id, prompt_bytes=0)
    if generation_id:  # fixed by the caller (an idempotent retry): never charged twice
        record.generation_id = generation_id
    reservation = await Reservation.open(gw.credit, gw.limits, principal, entry.id, prompt_tokens=0,
                                         output_tokens=0, max_cost_nanos=max_cost)
    record.rate_limit = reservation.status
    if not order:
        reservation.release()
        raise UpstreamUnavailable(f"The model `{entry.id}` has no deployment configured.")
    try:
        kept = await first_answer(gw, record, order,
                                  lambda d: _generate(gw, media, d, raw, response_format, base_url))
    except BaseException as exc:  # every deployment failed, or cancelled: nothing kept, nothing charged
        await fail_call(gw, record, reservation, exc)
        raise

    images = min(len(kept.data), n)  # never bill more images than were asked (and held) for
    price = _pricing(record.entry).price_for(size, quality)
    settlement = record.unit_settlement("succeeded", images, price, cap=reservation.cap_charge)
    body = {"created": int(time.time()), "data": kept.data[:images], "model": record.entry.id,
            "usage": {"images": images, "failed_images": kept.failed + len(kept.data) - images,
                      "cost": nanos_to_usd(settlement.generation.cost_nanos)}}
    await gw.settlements.submit(settlement, reservation)
    return Completed(_encode(body), record.generation_id, record.overhead_ms(), record.rate_limit)
