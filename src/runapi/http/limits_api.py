"""The operator's limits API: tiers, pinning an account's tier, and a key's own limits."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from runapi.errors import InvalidRequest
from runapi.http.admin_api import account_json, admin_gateway, key_json
from runapi.http.responses import json_response, read_json
from runapi.limits import TierSpec, pin_tier
from runapi.money import nanos_to_usd, usd_to_nanos
from runapi.pipeline.gateway import Gateway
from runapi.storage import ApiKey, Change, KeyLimits

PositiveOrNull = int | None


class TierPin(msgspec.Struct, forbid_unknown_fields=True):
    tier: str | None  # null: unpin, back to the tier the account's top-ups earn


class KeyLimitsPatch(msgspec.Struct, forbid_unknown_fields=True):
    """Fields left out keep their value; `null` removes a limit (the tier decides again)."""

    requests_per_minute: PositiveOrNull | msgspec.UnsetType = msgspec.UNSET
    tokens_per_minute: PositiveOrNull | msgspec.UnsetType = msgspec.UNSET
    concurrent_requests: PositiveOrNull | msgspec.UnsetType = msgspec.UNSET
    spend_cap_usd: str | int | None | msgspec.UnsetType = msgspec.UNSET
    monthly_spend_cap_usd: str | int | None | msgspec.UnsetType = msgspec.UNSET
    allowed_models: list[str] | None | msgspec.UnsetType = msgspec.UNSET
    expires_at: datetime | None | msgspec.UnsetType = msgspec.UNSET


def tier_json(name: str, spec: TierSpec) -> dict[str, Any]:
    return {"name": name, "requests_per_minute": spec.requests_per_minute,
            "tokens_per_minute": spec.tokens_per_minute, "concurrent_requests": spec.concurrent_requests,
            "monthly_spend_cap": spec.monthly_spend_cap_usd, "qualifying_topup": spec.qualifying_topup_usd}


def key_limits_json(limits: KeyLimits) -> dict[str, Any]:
    cap, monthly = limits.spend_cap_nanos, limits.monthly_spend_cap_nanos
    return {"requests_per_minute": limits.requests_per_minute, "tokens_per_minute": limits.tokens_per_minute,
            "concurrent_requests": limits.concurrent_requests,
            "spend_cap": None if cap is None else nanos_to_usd(cap),
            "monthly_spend_cap": None if monthly is None else nanos_to_usd(monthly),
            "allowed_models": None if limits.allowed_models is None else list(limits.allowed_models)}


def _key_with_limits(key: ApiKey) -> dict[str, Any]:
    return {**key_json(key), "limits": key_limits_json(key.limits)}


def _usd(value: str | int | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        nanos = usd_to_nanos(Decimal(str(value)))
    except (InvalidOperation, ValueError) as exc:
        raise InvalidRequest(f"`{name}` must be a decimal number of USD, got {value!r}", param=name) from exc
    if nanos < 0:
        raise InvalidRequest(f"`{name}` must not be negative", param=name)
    return nanos


def apply_patch(gw: Gateway, current: KeyLimits, patch: KeyLimitsPatch) -> KeyLimits:
    """The key's limits after `patch`, validated (positive rates, known models, exact USD)."""
    changes: dict[str, Any] = {}
    for name in ("requests_per_minute", "tokens_per_minute", "concurrent_requests"):
        value = getattr(patch, name)
        if value is not msgspec.UNSET:
            if value is not None and value <= 0:
                raise InvalidRequest(f"`{name}` must be a positive integer or null", param=name)
            changes[name] = value
    if patch.spend_cap_usd is not msgspec.UNSET:
        changes["spend_cap_nanos"] = _usd(patch.spend_cap_usd, "spend_cap_usd")
    if patch.monthly_spend_cap_usd is not msgspec.UNSET:
        changes["monthly_spend_cap_nanos"] = _usd(patch.monthly_spend_cap_usd, "monthly_spend_cap_usd")
    if patch.allowed_models is not msgspec.UNSET:
        models = None
        if patch.allowed_models is not None:
            models = []
            for name in patch.allowed_models:
                entry = gw.model(name)
                if entry is None:
                    raise InvalidRequest(f"unknown model {name!r} in allowed_models", param="allowed_models")
                models.append(entry.id)
        changes["allowed_models"] = None if models is None else tuple(dict.fromkeys(models))
    return msgspec.structs.replace(current, **changes)


async def list_tiers(request: Request) -> Response:
    gw = admin_gateway(request)
    return json_response({"object": "list", "data": [tier_json(n, s) for n, s in gw.limits.tiers.tiers.items()]})


async def set_account_tier(request: Request) -> Response:
    """Pin an account's tier (`{"tier": "tier-3"}`), or unpin it (`{"tier": null}`)."""
    gw = admin_gateway(request)
    body: TierPin = await read_json(request, TierPin)
    account = await gw.accounts.find_account(request.path_params["account_id"])
    await pin_tier(gw.engine, gw.limits.tiers, account.id, body.tier)
    await gw.announce(Change("account", account.id))  # the pinned tier's limits on every instance at once
    account = await gw.accounts.get_account(account.id)
    return json_response({**account_json(account), "tier_pinned": account.tier_pinned})


async def get_key_limits(request: Request) -> Response:
    gw = admin_gateway(request)
    return json_response(_key_with_limits(await gw.accounts.get_key(request.path_params["key_id"])))


async def patch_key_limits(request: Request) -> Response:
    """Set a key's own limits, spend caps, model allow-list and expiry."""
    gw = admin_gateway(request)
    patch: KeyLimitsPatch = await read_json(request, KeyLimitsPatch)
    key = await gw.accounts.get_key(request.path_params["key_id"])
    limits = apply_patch(gw, key.limits, patch)
    expires_at = key.expires_at if patch.expires_at is msgspec.UNSET else patch.expires_at
    key = await gw.accounts.set_key_limits(key.id, limits, expires_at)
    await gw.announce(Change("key", key.id))  # the new limits on every instance at once
    return json_response(_key_with_limits(key))


routes = [
    Route("/admin/tiers", list_tiers, methods=["GET"]),
    Route("/admin/accounts/{account_id}/tier", set_account_tier, methods=["PUT"]),
    Route("/admin/keys/{key_id}/limits", get_key_limits, methods=["GET"]),
    Route("/admin/keys/{key_id}/limits", patch_key_limits, methods=["PATCH"]),
]
