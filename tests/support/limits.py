"""Helpers for tests of tiers and limits: pin a tier, find a key's ID, call the gateway."""

from __future__ import annotations

from typing import Any

import httpx

from runapi.money import cost_nanos, estimate_tokens
from runapi.pipeline.chat_request import decode_chat_request, prompt_bytes
from runapi.pipeline.hold_bound import hold_usage, prompt_shape
from tests.support.gateway import RunningGateway
from tests.support.sse import decode

# Custom tiers nobody qualifies for by top-ups; tests pin accounts to them.
UNREACHABLE = "1000000000"


def tier(rpm: int = 1_000_000, tpm: int = 1_000_000_000, concurrent: int = 100_000, monthly_cap: str = "1000000",
         qualifying: str = UNREACHABLE) -> dict[str, Any]:
    return {"requests_per_minute": rpm, "tokens_per_minute": tpm, "concurrent_requests": concurrent,
            "monthly_spend_cap_usd": monthly_cap, "qualifying_topup_usd": qualifying}


def account_in_tier(gw: RunningGateway, tier_name: str, credit: str = "10") -> tuple[str, str]:
    """A new account with `credit` and one key, pinned to `tier_name`: (account ID, secret key)."""
    account, key = gw.create_account(credit)
    gw.admin.put(f"/admin/accounts/{account}/tier", json={"tier": tier_name}).raise_for_status()
    return account, key


def key_id(gw: RunningGateway, account: str) -> str:
    keys = gw.admin.get(f"/admin/accounts/{account}/keys").raise_for_status().json()["data"]
    return str(keys[0]["id"])


def new_key(gw: RunningGateway, account: str) -> tuple[str, str]:
    data = gw.admin.post(f"/admin/accounts/{account}/keys", json={"name": "second"}).raise_for_status().json()
    return data["id"], data["key"]


def chat_body(model: str = "glm-4.5-air", max_tokens: int = 50, **x_sim: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hello there"}],
                            "max_tokens": max_tokens}
    if x_sim:
        body["x_sim"] = x_sim
    return body


def chat(gw: RunningGateway, key: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.post(f"{gw.base_url}/v1/chat/completions", json=body or chat_body(),
                      headers={"authorization": f"Bearer {key}"}, timeout=30)


def estimated_prompt_tokens(body: dict[str, Any]) -> int:
    request, _ = decode_chat_request(httpx.Request("POST", "/", json=body).content)
    return estimate_tokens(prompt_bytes(request))


def hold_nanos(gw: RunningGateway, body: dict[str, Any]) -> int:
    """The most a call with `body` may cost: what the gateway holds for it (a model without fallbacks)."""
    entry = gw.settings.catalog.resolve(body["model"])
    assert entry is not None
    request, _ = decode_chat_request(httpx.Request("POST", "/", json=body).content)
    return cost_nanos(hold_usage(request, prompt_shape(request), entry), entry.pricing)


def error_of(response: httpx.Response) -> dict[str, Any]:
    return dict(decode(response.content)["error"])
